//! Configuration checks, read from the machine at the hand-off point, with chipsec's rules.

use crate::report::{Bit, Register, Status, Verdict};
use crate::rules;
use cpu::cpuid::Vendor;
use machine::board::Board;
use machine::Machine;

fn verdict(rule: &'static str, status: Status, message: String, registers: Vec<Register>) -> Verdict {
    Verdict { rule, status, message, registers, smi: None }
}

fn bit(name: &'static str, b: u8, value: u64) -> Bit {
    Bit { name, bit: b, value: (value >> b) & 1 }
}

/// The chipset family, for register locations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chipset {
    Q35,
    I440fx,
}

fn chipset(m: &Machine) -> Chipset {
    match m.board {
        Board::Q35(_) => Chipset::Q35,
        _ => Chipset::I440fx,
    }
}

/// TSEG as the chipset decodes it: (base, size), when enabled.
pub fn tseg(m: &Machine) -> Option<(u64, u64)> {
    m.board.smram_config().and_then(|c| c.tseg()).map(|r| (r.start, r.end - r.start))
}

/// Every configuration verdict, in rule order.
pub fn check(m: &mut Machine) -> Vec<Verdict> {
    vec![smram_lock(m), smrr(m), tseg_lock(m), bios_smi(m), bios_wp(m), code_chk(m), amd_smm_lock(m), amd_smm_mask(m)]
}

/// chipsec common.smm: with G_SMRAME, PASS iff D_LCK = 1 and D_OPEN = 0.
fn smram_lock(m: &mut Machine) -> Verdict {
    let (off, loc) = match chipset(m) {
        Chipset::Q35 => (0x9d, "PCI 00:00.0 + 0x9d (MCH SMRAM)"),
        Chipset::I440fx => (0x72, "PCI 00:00.0 + 0x72 (i440FX PMC SMRAM)"),
    };
    let v = m.pci_read(0, 0, off, 1) as u64;
    let reg = Register {
        name: "SMRAMC",
        location: loc.into(),
        value: v,
        bits: vec![bit("G_SMRAME", 3, v), bit("D_LCK", 4, v), bit("D_CLS", 5, v), bit("D_OPEN", 6, v)],
    };
    let (g, lck, open) = (v & 1 << 3 != 0, v & 1 << 4 != 0, v & 1 << 6 != 0);
    let (status, msg) = match (g, lck, open) {
        (false, _, _) => (Status::NotApplicable, format!("SMRAMC={v:#04x}: G_SMRAME (bit 3) = 0, compatible SMRAM not enabled")),
        (true, true, false) => (Status::Pass, format!("SMRAMC={v:#04x}: D_LCK (bit 4) = 1 and D_OPEN (bit 6) = 0: SMRAM locked")),
        (true, false, _) => (Status::Fail, format!("SMRAMC={v:#04x}: D_LCK (bit 4) = 0: ring 0 can set D_OPEN and write SMRAM")),
        (true, true, true) => (Status::Fail, format!("SMRAMC={v:#04x}: D_OPEN (bit 6) = 1: SMRAM open to non-SMM accesses")),
    };
    verdict(rules::SMRAM_LOCK, status, msg, vec![reg])
}

/// SMRR range (base, size) when PHYSMASK is contiguous.
fn smrr_range(base: u64, mask: u64) -> (u64, u64) {
    let m = mask & 0xffff_f000;
    (base & m, (!m & 0xffff_ffff) + 1)
}

/// chipsec common.smrr, plus coverage of TSEG.
fn smrr(m: &mut Machine) -> Verdict {
    if m.cpu_model().vendor != Vendor::Intel {
        return verdict(rules::SMRR, Status::NotApplicable, "AMD CPU: no SMRR (see SMM_ADDR/SMM_MASK)".into(), vec![]);
    }
    let (base, mask) = (m.smm_registers().smrr_base, m.smm_registers().smrr_mask);
    let regs = vec![
        Register { name: "IA32_SMRR_PHYSBASE", location: "MSR 0x1f2".into(), value: base, bits: vec![Bit { name: "TYPE", bit: 0, value: base & 0xff }, Bit { name: "PHYSBASE", bit: 12, value: (base >> 12) & 0xf_ffff }] },
        Register { name: "IA32_SMRR_PHYSMASK", location: "MSR 0x1f3".into(), value: mask, bits: vec![bit("VALID", 11, mask), Bit { name: "PHYSMASK", bit: 12, value: (mask >> 12) & 0xf_ffff }] },
    ];
    let ty = base & 0xff;
    let status_msg = if mask & 1 << 11 == 0 || mask & 0xffff_f000 == 0 {
        (Status::Fail, format!("IA32_SMRR_PHYSMASK={mask:#x}: VALID (bit 11) = 0 or PHYSMASK = 0: SMRR not programmed, SMRAM open to cache poisoning"))
    } else if base & 0xffff_f000 == 0 {
        (Status::Fail, format!("IA32_SMRR_PHYSBASE={base:#x}: PHYSBASE = 0"))
    } else if !matches!(ty, 0 | 1 | 4 | 5 | 6) {
        (Status::Fail, format!("IA32_SMRR_PHYSBASE={base:#x}: TYPE (bits 7:0) = {ty} is not a valid memory type"))
    } else {
        let (sb, ss) = smrr_range(base, mask);
        match tseg(m) {
            Some((tb, ts)) if !(sb <= tb && tb + ts <= sb + ss) => (
                Status::Fail,
                format!("SMRR {sb:#x}-{:#x} does not cover TSEG {tb:#x}-{:#x} (ESMRAMC/TSEGMB)", sb + ss - 1, tb + ts - 1),
            ),
            Some((tb, ts)) => (Status::Pass, format!("SMRR {sb:#x}-{:#x} (VALID, type {ty}) covers TSEG {tb:#x}-{:#x}", sb + ss - 1, tb + ts - 1)),
            None => (Status::Pass, format!("SMRR {sb:#x}-{:#x} programmed (VALID, type {ty}); no TSEG to cover", sb + ss - 1)),
        }
    };
    verdict(rules::SMRR, status_msg.0, status_msg.1, regs)
}

/// chipsec common.smm_dma, in q35 terms: TSEG enabled, ESMRAMC read-only (probed: a write of
/// T_EN flipped must not stick), and SMRR inside TSEG.
fn tseg_lock(m: &mut Machine) -> Verdict {
    if chipset(m) != Chipset::Q35 {
        return verdict(rules::TSEG_LOCK, Status::NotApplicable, "i440FX: no TSEG".into(), vec![]);
    }
    let Some((tb, ts)) = tseg(m) else {
        let e = m.pci_read(0, 0, 0x9e, 1) as u64;
        let reg = Register { name: "ESMRAMC", location: "PCI 00:00.0 + 0x9e".into(), value: e, bits: vec![bit("T_EN", 0, e), bit("H_SMRAME", 7, e)] };
        return verdict(rules::TSEG_LOCK, Status::NotApplicable, format!("ESMRAMC={e:#04x}: TSEG not enabled (T_EN bit 0 or G_SMRAME = 0)"), vec![reg]);
    };
    let e = m.pci_read(0, 0, 0x9e, 1);
    m.pci_write(0, 0, 0x9e, 1, e ^ 1);
    let after = m.pci_read(0, 0, 0x9e, 1);
    if after != e {
        m.pci_write(0, 0, 0x9e, 1, e);
    }
    let tsegmb = m.pci_read(0, 0, 0xac, 4) as u64;
    let regs = vec![
        Register { name: "ESMRAMC", location: "PCI 00:00.0 + 0x9e".into(), value: e as u64, bits: vec![bit("T_EN", 0, e as u64), Bit { name: "TSEG_SZ", bit: 1, value: (e as u64 >> 1) & 3 }, bit("H_SMRAME", 7, e as u64)] },
        Register { name: "TSEGMB", location: "PCI 00:00.0 + 0xac".into(), value: tsegmb, bits: vec![Bit { name: "TSEGMB", bit: 20, value: tsegmb >> 20 }] },
    ];
    if after != e {
        return verdict(rules::TSEG_LOCK, Status::Fail, format!("ESMRAMC={e:#04x} is writable (a write flipping T_EN, bit 0, read back {after:#04x}): TSEG not locked (D_LCK = 0)"), regs);
    }
    if m.cpu_model().vendor == Vendor::Intel && m.smm_registers().smrr_mask & 1 << 11 != 0 {
        let (sb, ss) = smrr_range(m.smm_registers().smrr_base, m.smm_registers().smrr_mask);
        if !(tb <= sb && sb + ss <= tb + ts) {
            return verdict(rules::TSEG_LOCK, Status::Fail, format!("SMRR {sb:#x}-{:#x} is not inside TSEG {tb:#x}-{:#x}", sb + ss - 1, tb + ts - 1), regs);
        }
    }
    verdict(rules::TSEG_LOCK, Status::Pass, format!("TSEG {tb:#x}-{:#x} enabled; ESMRAMC={e:#04x} read-only (locked by D_LCK)", tb + ts - 1), regs)
}

/// chipsec common.bios_smi: GBL_SMI_EN = 1 and SMI_LOCK = 1 (ICH9). TCO is not modelled.
fn bios_smi(m: &mut Machine) -> Verdict {
    let Board::Q35(b) = &m.board else {
        return verdict(rules::BIOS_SMI, Status::NotApplicable, "PIIX4 has no SMI_LOCK".into(), vec![]);
    };
    let smi_en = b.chipset.chipset.lpc.smi_en() as u64;
    let pmcon = m.pci_read(0x1f, 0, 0xa0, 2) as u64;
    let regs = vec![
        Register { name: "GEN_PMCON_1", location: "PCI 00:1f.0 + 0xa0".into(), value: pmcon, bits: vec![bit("SMI_LOCK", 4, pmcon)] },
        Register { name: "SMI_EN", location: "PMBASE + 0x30".into(), value: smi_en, bits: vec![bit("GBL_SMI_EN", 0, smi_en), bit("APMC_EN", 5, smi_en)] },
    ];
    let (status, msg) = if smi_en & 1 == 0 {
        (Status::Fail, format!("SMI_EN={smi_en:#x}: GBL_SMI_EN (bit 0) = 0: SMIs are off"))
    } else if pmcon & 1 << 4 == 0 {
        (Status::Fail, format!("GEN_PMCON_1={pmcon:#06x}: SMI_LOCK (bit 4) = 0: ring 0 can clear GBL_SMI_EN"))
    } else {
        (Status::Pass, "GBL_SMI_EN (SMI_EN bit 0) = 1 and SMI_LOCK (GEN_PMCON_1 bit 4) = 1".to_string())
    };
    verdict(rules::BIOS_SMI, status, msg, regs)
}

/// chipsec common.bios_wp, SMM-based scheme: BLE = 1, BIOSWE = 0, SMM_BWP = 1.
fn bios_wp(m: &mut Machine) -> Verdict {
    if chipset(m) != Chipset::Q35 {
        return verdict(rules::BIOS_WP, Status::NotApplicable, "i440FX/PIIX: BIOS_CNTL not modelled".into(), vec![]);
    }
    let v = m.pci_read(0x1f, 0, 0xdc, 1) as u64;
    let regs = vec![Register { name: "BIOS_CNTL", location: "PCI 00:1f.0 + 0xdc".into(), value: v, bits: vec![bit("BIOSWE", 0, v), bit("BLE", 1, v), bit("SMM_BWP", 5, v)] }];
    let (status, msg) = if v & 2 == 0 {
        (Status::Fail, format!("BIOS_CNTL={v:#04x}: BLE (bit 1) = 0: ring 0 can set BIOSWE and write the flash"))
    } else if v & 1 != 0 {
        (Status::Fail, format!("BIOS_CNTL={v:#04x}: BIOSWE (bit 0) = 1: the flash is writable"))
    } else if v & 1 << 5 == 0 {
        (Status::Fail, format!("BIOS_CNTL={v:#04x}: SMM_BWP (bit 5) = 0: writes possible in the BLE SMI race (Speed Racer)"))
    } else {
        (Status::Pass, format!("BIOS_CNTL={v:#04x}: BLE = 1, BIOSWE = 0, SMM_BWP = 1"))
    };
    verdict(rules::BIOS_WP, status, msg, regs)
}

/// chipsec common.smm_code_chk.
fn code_chk(m: &mut Machine) -> Verdict {
    if m.cpu_model().vendor != Vendor::Intel {
        return verdict(rules::CODE_CHK, Status::NotApplicable, "AMD CPU: no MSR_SMM_FEATURE_CONTROL".into(), vec![]);
    }
    let v = m.smm_registers().feature_control;
    let regs = vec![Register { name: "MSR_SMM_FEATURE_CONTROL", location: "MSR 0x4e0".into(), value: v, bits: vec![bit("LOCK", 0, v), bit("SMM_CODE_CHK_EN", 2, v)] }];
    let (status, msg) = match (v & 4 != 0, v & 1 != 0) {
        (true, true) => (Status::Pass, format!("MSR 0x4e0={v:#x}: SMM_CODE_CHK_EN (bit 2) = 1 and LOCK (bit 0) = 1")),
        (true, false) => (Status::Fail, format!("MSR 0x4e0={v:#x}: SMM_CODE_CHK_EN set but LOCK (bit 0) = 0")),
        (false, _) => (Status::Warning, format!("MSR 0x4e0={v:#x}: SMM_CODE_CHK_EN (bit 2) = 0 (support is advertised in MSR_SMM_MCA_CAP bit 58)")),
    };
    verdict(rules::CODE_CHK, status, msg, regs)
}

/// chipsec common.smm_lock (AMD).
fn amd_smm_lock(m: &mut Machine) -> Verdict {
    if m.cpu_model().vendor != Vendor::Amd {
        return verdict(rules::AMD_SMM_LOCK, Status::NotApplicable, "Intel CPU".into(), vec![]);
    }
    let v = m.smm_registers().hwcr;
    let regs = vec![Register { name: "HWCR", location: "MSR 0xc0010015".into(), value: v, bits: vec![bit("SmmLock", 0, v)] }];
    if v & 1 != 0 {
        verdict(rules::AMD_SMM_LOCK, Status::Pass, format!("HWCR={v:#x}: SmmLock (bit 0) = 1"), regs)
    } else {
        verdict(rules::AMD_SMM_LOCK, Status::Fail, format!("HWCR={v:#x}: SmmLock (bit 0) = 0: SMM_ADDR/SMM_MASK/SMM_BASE stay writable"), regs)
    }
}

/// chipsec common.smm_close and the TSEG part of common.smm_addr (AMD).
fn amd_smm_mask(m: &mut Machine) -> Verdict {
    if m.cpu_model().vendor != Vendor::Amd {
        return verdict(rules::AMD_SMM_MASK, Status::NotApplicable, "Intel CPU".into(), vec![]);
    }
    let (addr, v) = (m.smm_registers().amd_addr, m.smm_registers().amd_mask);
    let regs = vec![
        Register { name: "SMM_MASK", location: "MSR 0xc0010113".into(), value: v, bits: vec![bit("AValid", 0, v), bit("TValid", 1, v), bit("AClose", 2, v), bit("TClose", 3, v)] },
        Register { name: "SMM_ADDR", location: "MSR 0xc0010112".into(), value: addr, bits: vec![] },
    ];
    if v & 0b1100 != 0 {
        return verdict(rules::AMD_SMM_MASK, Status::Fail, format!("SMM_MASK={v:#x}: TClose (bit 3) or AClose (bit 2) set outside SMM"), regs);
    }
    match tseg(m) {
        None => verdict(rules::AMD_SMM_MASK, Status::Pass, format!("SMM_MASK={v:#x}: TClose = AClose = 0; the chipset has no TSEG"), regs),
        Some((tb, ts)) => {
            let mask = v & 0xffff_fffe_0000;
            let covers = v & 2 != 0 && addr & mask == tb & mask && (!mask & 0xffff_ffff_ffff) + 1 >= ts;
            if covers {
                verdict(rules::AMD_SMM_MASK, Status::Pass, format!("SMM_MASK={v:#x}: TValid (bit 1) = 1 over TSEG {tb:#x}, TClose = AClose = 0"), regs)
            } else {
                verdict(rules::AMD_SMM_MASK, Status::Fail, format!("SMM_MASK={v:#x}, SMM_ADDR={addr:#x}: TValid (bit 1) = 0 or the range misses TSEG {tb:#x}: the CPU does not protect TSEG"), regs)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smrr_range_from_mask() {
        assert_eq!(smrr_range(0x7f00006, 0xfff0_0800), (0x7f00000, 0x10_0000));
    }
}
