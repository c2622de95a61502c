//! The ICH9 LPC interface bridge, 00:1F.0 (8086:2918): PMBASE and the PM I/O block with the
//! SMI logic (SMI_EN, SMI_STS, GBL_SMI_EN, APMC_EN, SMI_LOCK), the periodic and software SMI
//! timers, PM1 and the PM timer. Registers from the Intel I/O Controller Hub 9 (ICH9) Family
//! datasheet (doc. 316972): §13.1 "LPC Interface Bridge Registers (D31:F0)", §13.8.3
//! "Power Management I/O Registers".
//!
//! Departures from QEMU, following the datasheet: GBL_SMI_EN gates every SMI this function
//! raises; APM_STS (SMI_STS bit 5) is set by APM SMIs; SMI_STS is write-one-to-clear; the
//! periodic SMI timer runs from reset (its STS bit sets every period, PERIODIC_EN gates the
//! SMI); the software SMI timer is one-shot, started when SWSMI_TMR_EN goes 0 -> 1. As in
//! QEMU, the APM commands 0x02/0x03 only set/clear SCI_EN and raise no SMI.
//!
//! This function keeps the registers; each SMI source's decision (which enable and status
//! bits gate it, and the raise) is in its file under [`crate::smi`]: [`crate::smi::apm`],
//! [`crate::smi::periodic`], [`crate::smi::sw_timer`], [`crate::smi::io_trap`] (IOTRn),
//! [`crate::smi::memory_error`] (DMISMI), [`crate::smi::bios_write`] (BIOSWR),
//! [`crate::smi::thermal`] (GPI) and [`crate::smi::usb_legacy`] (LEGACY_USB).

use super::mch::VENDOR_INTEL;
use crate::chipset::acpi_pm::AcpiPm;
use crate::clock::{Clock, Ticks};
use crate::pci::config::{ConfigSpace, HEADER_TYPE_MULTI_FUNCTION};
use crate::pci::PciFunction;
use crate::smi::io_trap::{self, IoTrapRegister};
use crate::smi::timer::SmiTimer;
use crate::smi::{apm, bios_write, memory_error, periodic, sw_timer, thermal, usb_legacy};
use crate::smi::{SmiCause, SmiLatch};

/// LPC bridge device ID (ICH9).
pub const LPC_DEVICE_ID: u16 = 0x2918;
/// ISA bridge class code.
pub const LPC_CLASS: u32 = 0x06_01_00;
/// Revision ID as QEMU presents it.
pub const LPC_REVISION: u8 = 0x02;

/// PMBASE, ACPI base address (32 bits): bits 15:7 select a 128-byte I/O block, bit 0 reads 1.
pub const LPC_PMBASE: u8 = 0x40;
/// PMBASE writable bits.
pub const PMBASE_WMASK: u32 = 0x0000_ff80;
/// PMBASE bit 0, resource type indicator (I/O), hard-wired to 1.
pub const PMBASE_RTE: u32 = 1;
/// Size of the PM I/O block.
pub const PM_IO_SIZE: u16 = 128;
/// ACPI_CNTL (8 bits): ACPI_EN bit 7 enables the PM I/O decode, SCI_IRQ_SEL 2:0.
pub const LPC_ACPI_CNTL: u8 = 0x44;
/// ACPI_CNTL.ACPI_EN.
pub const ACPI_CNTL_ACPI_EN: u8 = 1 << 7;
/// ACPI_CNTL writable bits.
pub const ACPI_CNTL_WMASK: u8 = 0x87;
/// GPIOBASE (32 bits, stored).
pub const LPC_GPIOBASE: u8 = 0x48;
/// GC, GPIO control (8 bits, stored).
pub const LPC_GC: u8 = 0x4c;
/// PIRQA_ROUT..PIRQD_ROUT (8 bits each).
pub const LPC_PIRQA_ROUT: u8 = 0x60;
/// PIRQE_ROUT..PIRQH_ROUT (8 bits each).
pub const LPC_PIRQE_ROUT: u8 = 0x68;
/// PIRQx_ROUT reset value (IRQEN = 1: routing disabled).
pub const PIRQ_ROUT_RESET: u8 = 0x80;
/// PIRQx_ROUT writable bits.
pub const PIRQ_ROUT_WMASK: u8 = 0x8f;
/// GEN_PMCON_1 (16 bits).
pub const LPC_GEN_PMCON_1: u8 = 0xa0;
/// GEN_PMCON_1.PER_SMI_SEL (bits 1:0): periodic SMI rate, 00 64 s, 01 32 s, 10 16 s, 11 8 s.
pub const GEN_PMCON_1_PER_SMI_SEL: u16 = 0b11;
/// GEN_PMCON_1.SMI_LOCK (bit 4): sticky; freezes SMI_EN.GBL_SMI_EN until reset.
pub const GEN_PMCON_1_SMI_LOCK: u16 = 1 << 4;
/// GEN_PMCON_1 writable bits.
pub const GEN_PMCON_1_WMASK: u16 = 0x0eff;
/// BIOS_CNTL (8 bits, ICH9 datasheet 13.1.29): BIOSWE bit 0 (BIOS write enable), BLE bit 1
/// (BIOS lock enable, lock-once: it stays set until reset), SMM_BWP bit 5 (SMM BIOS write
/// protect, lock-once as in later PCHs). Setting BIOSWE from 0 to 1 while BLE is set sets
/// TCO1_STS.BIOSWR_STS (and raises an SMI with TCO_EN); the platform lets writes reach the
/// flash as [`Ich9Lpc::flash_writable`] says.
pub const LPC_BIOS_CNTL: u8 = 0xdc;
/// BIOS_CNTL.BIOSWE: BIOS write enable.
pub const BIOS_CNTL_BIOSWE: u8 = 1 << 0;
/// BIOS_CNTL.BLE: BIOS lock enable.
pub const BIOS_CNTL_BLE: u8 = 1 << 1;
/// BIOS_CNTL.SMM_BWP: SMM BIOS write protect.
pub const BIOS_CNTL_SMM_BWP: u8 = 1 << 5;
/// BIOS_CNTL writable bits at reset.
pub const BIOS_CNTL_WMASK: u8 = BIOS_CNTL_BIOSWE | BIOS_CNTL_BLE | BIOS_CNTL_SMM_BWP;
/// GEN_PMCON_2 (8 bits, status bits; stored as zero).
pub const LPC_GEN_PMCON_2: u8 = 0xa2;
/// GEN_PMCON_3 (16 bits).
pub const LPC_GEN_PMCON_3: u8 = 0xa4;
/// GEN_PMCON_3.SWSMI_RATE_SEL (bits 7:6): 00 1.5 ms, 01 16 ms, 10 32 ms, 11 64 ms.
pub const GEN_PMCON_3_SWSMI_RATE_SEL_SHIFT: u16 = 6;
/// GEN_PMCON_3 writable bits.
pub const GEN_PMCON_3_WMASK: u16 = 0x3fff;
/// RCBA, root complex base address (32 bits): base 31:14, enable 0 (ICH9 §13.1.35).
pub const LPC_RCBA: u8 = 0xf0;
/// RCBA writable bits: base 31:14, enable 0.
pub const RCBA_WMASK: u32 = 0xffff_c001;
/// RCBA.EN.
pub const RCBA_EN: u32 = 1;
/// Size of the chipset configuration registers RCBA maps (16 KiB).
pub const RCBA_SIZE: u64 = 0x4000;
/// TRSR, trap status (ICH9 §10.1.48): bits 3:0 CTRS, one per IOTRn, write one to clear.
pub const RCBA_TRSR: u16 = 0x1e00;
/// TRCR, trapped cycle (§10.1.49): bits 15:2 the dword address, 19:16 byte enables, bit 24
/// read (1) or write (0). Read-only.
pub const RCBA_TRCR: u16 = 0x1e10;
/// TWDR, trapped write data (§10.1.50), bits 31:0. Read-only.
pub const RCBA_TWDR: u16 = 0x1e18;
/// IOTR0; IOTR1-IOTR3 follow every 8 bytes (§10.1.51, 64 bits each).
pub const RCBA_IOTR0: u16 = 0x1e80;

/// SMI_EN offset in the PM I/O block (32 bits).
pub const SMI_EN: u16 = 0x30;
/// SMI_EN.GBL_SMI_EN (bit 0): enables SMI# generation at all.
pub const SMI_EN_GBL_SMI_EN: u32 = 1 << 0;
/// SMI_EN.EOS (bit 1): end of SMI (stored; SMI# re-arming is not modelled).
pub const SMI_EN_EOS: u32 = 1 << 1;
/// SMI_EN.LEGACY_USB_EN (bit 3): the UHCI legacy-support block raises SMIs.
pub const SMI_EN_LEGACY_USB_EN: u32 = 1 << 3;
/// SMI_EN.APMC_EN (bit 5): writes to APM_CNT raise an SMI.
pub const SMI_EN_APMC_EN: u32 = 1 << 5;
/// SMI_EN.SWSMI_TMR_EN (bit 6): starts the software SMI timer.
pub const SMI_EN_SWSMI_TMR_EN: u32 = 1 << 6;
/// SMI_EN.BIOS_RLS (bit 7): write-only strobe, reads 0.
pub const SMI_EN_BIOS_RLS: u32 = 1 << 7;
/// SMI_EN.TCO_EN (bit 13): TCO1_STS events (BIOSWR, DMISMI) raise an SMI.
pub const SMI_EN_TCO_EN: u32 = 1 << 13;
/// SMI_EN.PERIODIC_EN (bit 14): the periodic timer raises an SMI.
pub const SMI_EN_PERIODIC_EN: u32 = 1 << 14;
/// SMI_EN writable bits (all but the write-only BIOS_RLS and reserved 31:28).
pub const SMI_EN_WMASK: u32 = 0x0fff_ff7f;
/// SMI_STS offset in the PM I/O block (32 bits, write one to clear).
pub const SMI_STS: u16 = 0x34;
/// SMI_STS.LEGACY_USB_STS (bit 3, RO): the UHCI legacy-support block asserts its SMI.
pub const SMI_STS_LEGACY_USB_STS: u32 = 1 << 3;
/// SMI_STS.APM_STS (bit 5): an APM_CNT write raised an SMI.
pub const SMI_STS_APM_STS: u32 = 1 << 5;
/// SMI_STS.SWSMI_TMR_STS (bit 6).
pub const SMI_STS_SWSMI_TMR_STS: u32 = 1 << 6;
/// SMI_STS.GPI_STS (bit 10, RO): ALT_GP_SMI_STS & ALT_GP_SMI_EN is not zero.
pub const SMI_STS_GPI_STS: u32 = 1 << 10;
/// SMI_STS.TCO_STS (bit 13, RO): TCO1_STS is not zero.
pub const SMI_STS_TCO_STS: u32 = 1 << 13;
/// SMI_STS.PERIODIC_STS (bit 14).
pub const SMI_STS_PERIODIC_STS: u32 = 1 << 14;
/// SMI_STS.MONITOR_STS (bit 21, RO): an I/O trap (TRSR) is pending.
pub const SMI_STS_MONITOR_STS: u32 = 1 << 21;
/// The SMI_STS bits that summarise other registers (read-only, not cleared by writes).
const SMI_STS_SUMMARY: u32 = SMI_STS_LEGACY_USB_STS | SMI_STS_GPI_STS | SMI_STS_TCO_STS | SMI_STS_MONITOR_STS;
/// ALT_GP_SMI_EN (16 bits, RW): bit n lets GPI n raise an SMI (ICH9 §13.8.3.12).
pub const ALT_GP_SMI_EN: u16 = 0x38;
/// ALT_GP_SMI_STS (16 bits, write one to clear): bit n, GPI n asserted (§13.8.3.13).
pub const ALT_GP_SMI_STS: u16 = 0x3a;
/// The GPI the hardware monitor's SMI# is wired to.
pub const GPI_HWMON: u8 = 1;
/// The TCO block, TCOBASE = PMBASE + 0x60 (ICH9 §13.9).
pub const TCO_BASE: u16 = 0x60;
/// TCO1_STS (16 bits, write one to clear) at TCOBASE + 0x04.
pub const TCO1_STS: u16 = TCO_BASE + 0x04;
/// TCO1_STS.BIOSWR_STS (bit 8): BIOSWE was set while BLE was set.
pub const TCO1_STS_BIOSWR: u16 = 1 << 8;
/// TCO1_STS.DMISMI_STS (bit 10): the MCH sent an SMI message over DMI.
pub const TCO1_STS_DMISMI: u16 = 1 << 10;
/// PM1_CNT.SLP_TYP value for S5 (soft off) on the ICH9 (§13.8.3.3).
pub const SLP_TYP_S5: u8 = 7;
/// The APM command that sets SCI_EN (ACPI enable).
pub const APM_CMD_ACPI_ENABLE: u8 = 0x02;
/// The APM command that clears SCI_EN (ACPI disable).
pub const APM_CMD_ACPI_DISABLE: u8 = 0x03;

/// The LPC function and its PM I/O block.
#[derive(Clone, Debug)]
pub struct Ich9Lpc {
    cfg: ConfigSpace,
    pm: AcpiPm,
    smi_en: u32,
    smi_sts: u32,
    periodic: SmiTimer,
    swsmi: SmiTimer,
    clock: Clock,
    alt_gp_smi_en: u16,
    alt_gp_smi_sts: u16,
    tco1_sts: u16,
    /// The UHCI legacy-support block asserts LEGACY_USB_STS.
    legacy_usb: bool,
    /// The chipset configuration registers behind RCBA (plain storage except the trap
    /// registers).
    rcba: Vec<u8>,
    /// IOTR0-IOTR3 decoded; `any_trap` is whether one is enabled (the per-port fast path).
    traps: [IoTrapRegister; 4],
    any_trap: bool,
    /// SLP_EN was written with SLP_TYP = S5.
    power_off: bool,
}

impl Ich9Lpc {
    /// The LPC function at reset; `instructions_per_second` converts timer periods to ticks.
    pub fn new(instructions_per_second: u64) -> Self {
        let clock = Clock::new(instructions_per_second);
        let mut cfg = ConfigSpace::new(VENDOR_INTEL, LPC_DEVICE_ID, LPC_REVISION, LPC_CLASS, HEADER_TYPE_MULTI_FUNCTION);
        cfg.set(LPC_PMBASE, 4, PMBASE_RTE);
        cfg.set_wmask(LPC_PMBASE, 4, PMBASE_WMASK);
        cfg.set_wmask(LPC_ACPI_CNTL, 1, ACPI_CNTL_WMASK as u32);
        cfg.set(LPC_GPIOBASE, 4, 1);
        cfg.set_wmask(LPC_GPIOBASE, 4, 0x0000_ffc0);
        cfg.set_wmask(LPC_GC, 1, 0x11);
        for k in 0..4 {
            for base in [LPC_PIRQA_ROUT, LPC_PIRQE_ROUT] {
                cfg.set(base + k, 1, PIRQ_ROUT_RESET as u32);
                cfg.set_wmask(base + k, 1, PIRQ_ROUT_WMASK as u32);
            }
        }
        cfg.set_wmask(LPC_GEN_PMCON_1, 2, GEN_PMCON_1_WMASK as u32);
        cfg.set_wmask(LPC_GEN_PMCON_3, 2, GEN_PMCON_3_WMASK as u32);
        cfg.set_wmask(LPC_RCBA, 4, RCBA_WMASK);
        cfg.set_wmask(LPC_BIOS_CNTL, 1, BIOS_CNTL_WMASK as u32);
        let mut lpc = Ich9Lpc {
            cfg,
            pm: AcpiPm::new(instructions_per_second),
            smi_en: 0,
            smi_sts: 0,
            periodic: SmiTimer::new(1, true),
            swsmi: SmiTimer::new(1, false),
            clock,
            alt_gp_smi_en: 0,
            alt_gp_smi_sts: 0,
            tco1_sts: 0,
            legacy_usb: false,
            rcba: vec![0; RCBA_SIZE as usize],
            traps: [IoTrapRegister(0); 4],
            any_trap: false,
            power_off: false,
        };
        lpc.periodic = SmiTimer::new(lpc.periodic_period(), true);
        lpc.periodic.arm(Ticks(0));
        lpc.swsmi = SmiTimer::new(lpc.swsmi_period(), false);
        lpc
    }

    /// The PM I/O base, when ACPI_EN enables its decode.
    pub fn pm_base(&self) -> Option<u16> {
        if self.cfg.byte(LPC_ACPI_CNTL) & ACPI_CNTL_ACPI_EN == 0 {
            return None;
        }
        Some((self.cfg.read(LPC_PMBASE, 4) & PMBASE_WMASK) as u16)
    }

    /// SMI_EN.
    pub fn smi_en(&self) -> u32 {
        self.smi_en
    }

    /// SMI_STS as the guest reads it (with the summary bits).
    pub fn smi_sts(&self) -> u32 {
        let mut v = self.smi_sts;
        if self.legacy_usb {
            v |= SMI_STS_LEGACY_USB_STS;
        }
        if self.alt_gp_smi_sts & self.alt_gp_smi_en != 0 {
            v |= SMI_STS_GPI_STS;
        }
        if self.tco1_sts != 0 {
            v |= SMI_STS_TCO_STS;
        }
        if self.trsr() != 0 {
            v |= SMI_STS_MONITOR_STS;
        }
        v
    }

    /// ALT_GP_SMI_STS.
    pub fn alt_gp_smi_sts(&self) -> u16 {
        self.alt_gp_smi_sts
    }

    /// TCO1_STS.
    pub fn tco1_sts(&self) -> u16 {
        self.tco1_sts
    }

    /// GPI `n` asserts (a rising edge): sets ALT_GP_SMI_STS bit n and raises an SMI for
    /// `cause` when ALT_GP_SMI_EN bit n (and GBL_SMI_EN) allow.
    /// The decision is [`thermal::ich9_gpi`].
    pub fn gpi(&mut self, n: u8, cause: SmiCause, now: Ticks, smi: &mut SmiLatch) {
        thermal::ich9_gpi(n, cause, self.alt_gp_smi_en, &mut self.alt_gp_smi_sts, self.smi_en, now, smi);
    }

    /// The MCH's SMI message over DMI (a memory error): TCO1_STS.DMISMI_STS, SMI with TCO_EN.
    /// The decision is [`memory_error::ich9_dmi_smi`].
    pub fn dmi_smi(&mut self, now: Ticks, smi: &mut SmiLatch) {
        memory_error::ich9_dmi_smi(self.smi_en, &mut self.tco1_sts, now, smi);
    }

    /// The UHCI legacy-support block's SMI output is now `level`; `raise` is the SMI of the
    /// event that changed it (raised if level, LEGACY_USB_EN and GBL_SMI_EN allow).
    /// The decision is [`usb_legacy::ich9_legacy_usb`].
    pub fn legacy_usb(&mut self, level: bool, raise: Option<SmiCause>, now: Ticks, smi: &mut SmiLatch) {
        self.legacy_usb = level;
        usb_legacy::ich9_legacy_usb(self.smi_en, level, raise, now, smi);
    }

    /// Whether a write to the BIOS flash stores: BIOSWE, and SMM if SMM_BWP is set.
    pub fn flash_writable(&self, smm: bool) -> bool {
        let b = self.bios_cntl();
        b & BIOS_CNTL_BIOSWE != 0 && (b & BIOS_CNTL_SMM_BWP == 0 || smm)
    }

    /// Whether the guest wrote SLP_EN with SLP_TYP = S5; clears the request.
    pub fn take_power_off(&mut self) -> bool {
        std::mem::take(&mut self.power_off)
    }

    /// The RCBA window's base, when RCBA.EN is set.
    pub fn rcba_base(&self) -> Option<u64> {
        let r = self.cfg.read(LPC_RCBA, 4);
        (r & RCBA_EN != 0).then_some((r & 0xffff_c000) as u64)
    }

    /// TRSR.CTRS.
    pub fn trsr(&self) -> u8 {
        self.rcba[RCBA_TRSR as usize] & 0x0f
    }

    /// IOTRn.
    pub fn iotr(&self, n: usize) -> IoTrapRegister {
        self.traps[n & 3]
    }

    /// Reads the chipset configuration registers at `offset` (bytes past the window read all
    /// ones).
    pub fn rcba_read(&self, offset: u64, size: u8) -> u64 {
        let mut v = 0u64;
        for k in 0..size.min(8) as u64 {
            let b = offset.checked_add(k).and_then(|o| self.rcba.get(usize::try_from(o).ok()?)).copied().unwrap_or(0xff);
            v |= (b as u64) << (8 * k);
        }
        v
    }

    /// Writes the chipset configuration registers at `offset`: TRSR is write-one-to-clear,
    /// TRCR and TWDR are read-only, IOTRn reprogram the traps, the rest is storage.
    pub fn rcba_write(&mut self, offset: u64, size: u8, value: u64) {
        for k in 0..size.min(8) as u64 {
            let Some(Ok(o)) = offset.checked_add(k).map(u16::try_from) else { return };
            if o as u64 >= RCBA_SIZE {
                return;
            }
            let b = (value >> (8 * k)) as u8;
            match o {
                RCBA_TRSR => self.rcba[o as usize] &= !(b & 0x0f),
                0x1e01..=0x1e03 => {}
                0x1e10..=0x1e1f => {}
                _ => self.rcba[o as usize] = b,
            }
        }
        for n in 0..4 {
            let o = (RCBA_IOTR0 as usize) + 8 * n;
            let mut r = [0u8; 8];
            r.copy_from_slice(&self.rcba[o..o + 8]);
            self.traps[n] = IoTrapRegister(u64::from_le_bytes(r));
        }
        self.any_trap = self.traps.iter().any(|t| t.enabled());
    }

    /// An I/O access the IOTRn ranges may trap (ICH9 §10.1.51): on a hit, TRSR, TRCR and
    /// TWDR record it, MONITOR_STS reads 1, a synchronous SMI is raised (with GBL_SMI_EN),
    /// and the caller drops the access (true).
    pub fn io_trap(&mut self, port: u16, size: u8, write: bool, value: u32, now: Ticks, smi: &mut SmiLatch) -> bool {
        if !self.any_trap {
            return false;
        }
        let Some((n, lanes)) = self.traps.iter().enumerate().find_map(|(n, t)| t.hit(port, size, write).map(|l| (n, l))) else {
            return false;
        };
        self.rcba[RCBA_TRSR as usize] |= 1 << n;
        let trcr = (port as u32 & 0xfffc) | (lanes as u32) << 16 | (!write as u32) << 24;
        self.rcba[RCBA_TRCR as usize..RCBA_TRCR as usize + 4].copy_from_slice(&trcr.to_le_bytes());
        if write {
            self.rcba[RCBA_TWDR as usize..RCBA_TWDR as usize + 4].copy_from_slice(&value.to_le_bytes());
        }
        io_trap::ich9_trapped(self.smi_en, port, write, now, smi);
        true
    }

    /// Whether SMI_LOCK is set.
    pub fn smi_locked(&self) -> bool {
        self.cfg.read(LPC_GEN_PMCON_1, 2) as u16 & GEN_PMCON_1_SMI_LOCK != 0
    }

    /// BIOS_CNTL.
    pub fn bios_cntl(&self) -> u8 {
        self.cfg.byte(LPC_BIOS_CNTL)
    }

    /// PM1_CNT.SCI_EN.
    pub fn sci_en(&self) -> bool {
        self.pm.sci_en()
    }

    /// Period of the periodic SMI timer: 8 s * 2^(3 - PER_SMI_SEL).
    pub fn periodic_period(&self) -> u64 {
        self.clock.ticks_from_ns(periodic::period_ns(self.cfg.read(LPC_GEN_PMCON_1, 2) as u16))
    }

    /// Period of the software SMI timer: 1.5 ms, or 8 ms * 2^SWSMI_RATE_SEL.
    pub fn swsmi_period(&self) -> u64 {
        self.clock.ticks_from_ns(sw_timer::period_ns(self.cfg.read(LPC_GEN_PMCON_3, 2) as u16))
    }

    /// A configuration write at guest time `now` (timer rates may change; setting BIOSWE
    /// while BLE is set raises the BIOSWR SMI).
    pub fn config_write_at(&mut self, offset: u8, size: u8, value: u32, now: Ticks, smi: &mut SmiLatch) {
        let bios_was = self.bios_cntl();
        self.cfg.write(offset, size, value);
        let bios = self.bios_cntl();
        // ICH9 §13.1.29: BIOSWE 0 -> 1 with BLE set sets BIOSWR_STS and asserts SMI# (TCO).
        bios_write::bios_cntl_written(bios_was, bios, self.smi_en, &mut self.tco1_sts, now, smi);
        if self.smi_locked() {
            self.cfg.set_wmask(LPC_GEN_PMCON_1, 2, (GEN_PMCON_1_WMASK & !GEN_PMCON_1_SMI_LOCK) as u32);
        }
        // BLE and SMM_BWP are lock-once: a set bit can no longer be written.
        let sticky = self.bios_cntl() & (BIOS_CNTL_BLE | BIOS_CNTL_SMM_BWP);
        self.cfg.set_wmask(LPC_BIOS_CNTL, 1, (BIOS_CNTL_WMASK & !sticky) as u32);
        let (p, s) = (self.periodic_period(), self.swsmi_period());
        self.periodic.set_period(p, now);
        self.swsmi.set_period(s, now);
    }

    /// A write of `cmd` to APM_CNT.
    pub fn apm_command(&mut self, cmd: u8, data: u8, now: Ticks, smi: &mut SmiLatch) {
        match cmd {
            APM_CMD_ACPI_ENABLE => self.pm.set_sci_en(true),
            APM_CMD_ACPI_DISABLE => self.pm.set_sci_en(false),
            _ => apm::ich9_apm_cnt(self.smi_en, &mut self.smi_sts, cmd, data, now, smi),
        }
    }

    fn read_byte(&self, offset: u16, now: Ticks) -> u8 {
        if let Some(b) = self.pm.read_byte(offset, now) {
            return b;
        }
        match offset {
            SMI_EN..=0x33 => (self.smi_en >> (8 * (offset - SMI_EN))) as u8,
            SMI_STS..=0x37 => (self.smi_sts() >> (8 * (offset - SMI_STS))) as u8,
            ALT_GP_SMI_EN..=0x39 => (self.alt_gp_smi_en >> (8 * (offset - ALT_GP_SMI_EN))) as u8,
            ALT_GP_SMI_STS..=0x3b => (self.alt_gp_smi_sts >> (8 * (offset - ALT_GP_SMI_STS))) as u8,
            TCO1_STS..=0x65 => (self.tco1_sts >> (8 * (offset - TCO1_STS))) as u8,
            _ => 0,
        }
    }

    fn write_byte(&mut self, offset: u16, b: u8) {
        if self.pm.write_byte(offset, b) {
            if let Some(typ) = self.pm.take_sleep() {
                self.power_off |= typ == SLP_TYP_S5;
            }
            return;
        }
        match offset {
            SMI_EN..=0x33 => {
                let shift = 8 * (offset - SMI_EN);
                let mut m = SMI_EN_WMASK;
                if self.smi_locked() {
                    m &= !SMI_EN_GBL_SMI_EN;
                }
                let m = m & (0xff << shift);
                self.smi_en = (self.smi_en & !m) | (((b as u32) << shift) & m);
            }
            SMI_STS..=0x37 => self.smi_sts &= !(((b as u32) << (8 * (offset - SMI_STS))) & !SMI_STS_SUMMARY),
            ALT_GP_SMI_EN..=0x39 => {
                let shift = 8 * (offset - ALT_GP_SMI_EN);
                self.alt_gp_smi_en = (self.alt_gp_smi_en & !(0xff << shift)) | ((b as u16) << shift);
            }
            ALT_GP_SMI_STS..=0x3b => self.alt_gp_smi_sts &= !((b as u16) << (8 * (offset - ALT_GP_SMI_STS))),
            TCO1_STS..=0x65 => self.tco1_sts &= !(((b as u16) << (8 * (offset - TCO1_STS))) & (TCO1_STS_BIOSWR | TCO1_STS_DMISMI)),
            _ => {}
        }
    }

    /// Reads the PM I/O block at `offset` (0..128).
    pub fn pm_read(&self, offset: u16, size: u8, now: Ticks) -> u32 {
        let mut v = 0u32;
        for k in 0..size.min(4) as u16 {
            let b = if offset + k < PM_IO_SIZE { self.read_byte(offset + k, now) } else { 0xff };
            v |= (b as u32) << (8 * k);
        }
        v
    }

    /// Writes the PM I/O block at `offset` (0..128).
    pub fn pm_write(&mut self, offset: u16, size: u8, value: u32, now: Ticks) {
        let smi_en_was = self.smi_en;
        for k in 0..size.min(4) as u16 {
            if offset + k < PM_IO_SIZE {
                self.write_byte(offset + k, (value >> (8 * k)) as u8);
            }
        }
        sw_timer::smi_en_written(smi_en_was, self.smi_en, &mut self.swsmi, now);
    }

    /// The next timer expiry.
    pub fn next_deadline(&self) -> Option<Ticks> {
        [self.periodic.deadline(), self.swsmi.deadline()].into_iter().flatten().min()
    }

    /// The next timer expiry that raises an SMI.
    pub fn next_wake(&self) -> Option<Ticks> {
        let p = periodic::raises(self.smi_en).then(|| self.periodic.deadline()).flatten();
        let s = sw_timer::raises(self.smi_en).then(|| self.swsmi.deadline()).flatten();
        [p, s].into_iter().flatten().min()
    }

    /// Expires the timers due by `now`.
    pub fn advance(&mut self, now: Ticks, smi: &mut SmiLatch) {
        if self.periodic.expire(now) {
            periodic::expired(self.smi_en, &mut self.smi_sts, now, smi);
        }
        if self.swsmi.expire(now) {
            sw_timer::expired(self.smi_en, &mut self.smi_sts, now, smi);
        }
    }
}

impl PciFunction for Ich9Lpc {
    fn config_read(&self, offset: u8, size: u8) -> u32 {
        self.cfg.read(offset, size)
    }

    fn config_write(&mut self, offset: u8, size: u8, value: u32) {
        self.config_write_at(offset, size, value, Ticks(0), &mut SmiLatch::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::config::{DEVICE_ID, HEADER_TYPE};

    const IPS: u64 = 1_000_000;

    fn lpc() -> Ich9Lpc {
        let mut l = Ich9Lpc::new(IPS);
        l.config_write(LPC_PMBASE, 4, 0x601);
        l.config_write(LPC_ACPI_CNTL, 1, 0x80);
        l
    }

    #[test]
    fn bios_cntl_ble_and_smm_bwp_are_lock_once() {
        let mut l = lpc();
        assert_eq!(l.bios_cntl(), 0);
        l.config_write(LPC_BIOS_CNTL, 1, 0xff);
        assert_eq!(l.bios_cntl(), BIOS_CNTL_WMASK);
        l.config_write(LPC_BIOS_CNTL, 1, 0);
        assert_eq!(l.bios_cntl(), BIOS_CNTL_BLE | BIOS_CNTL_SMM_BWP, "BIOSWE clears; BLE and SMM_BWP stay");
        l.config_write(LPC_BIOS_CNTL, 1, BIOS_CNTL_BIOSWE as u32);
        assert_eq!(l.bios_cntl(), BIOS_CNTL_WMASK);
    }

    #[test]
    fn identifies_as_8086_2918_multifunction() {
        let l = Ich9Lpc::new(IPS);
        assert_eq!(l.config_read(DEVICE_ID, 2), 0x2918);
        assert_eq!(l.config_read(HEADER_TYPE, 1), 0x80);
    }

    #[test]
    fn pmbase_takes_0x601_and_decodes_only_with_acpi_en() {
        let mut l = Ich9Lpc::new(IPS);
        l.config_write(LPC_PMBASE, 4, 0x601);
        assert_eq!(l.config_read(LPC_PMBASE, 4), 0x601);
        assert_eq!(l.pm_base(), None);
        l.config_write(LPC_ACPI_CNTL, 1, 0xff);
        assert_eq!(l.config_read(LPC_ACPI_CNTL, 1), 0x87);
        assert_eq!(l.pm_base(), Some(0x600));
        l.config_write(LPC_PMBASE, 4, 0xffff_ffff);
        assert_eq!(l.config_read(LPC_PMBASE, 4), 0xff81);
    }

    #[test]
    fn apm_write_raises_smi_only_with_apmc_en() {
        let mut l = lpc();
        let mut s = SmiLatch::default();
        l.pm_write(SMI_EN, 4, SMI_EN_GBL_SMI_EN, Ticks(0));
        l.apm_command(0x10, 0, Ticks(1), &mut s);
        assert!(!s.is_pending());
        assert_eq!(l.smi_sts() & SMI_STS_APM_STS, 0);
        l.pm_write(SMI_EN, 4, SMI_EN_GBL_SMI_EN | SMI_EN_APMC_EN, Ticks(0));
        l.apm_command(0x10, 0x77, Ticks(2), &mut s);
        assert!(s.is_pending());
        assert_eq!(s.drain_raised().collect::<Vec<_>>(), vec![(SmiCause::Apm { cmd: 0x10, data: 0x77 }, Ticks(2))]);
        assert_ne!(l.smi_sts() & SMI_STS_APM_STS, 0, "APM_STS is set, unlike QEMU");
    }

    #[test]
    fn gbl_smi_en_gates_apm_smis() {
        let mut l = lpc();
        let mut s = SmiLatch::default();
        l.pm_write(SMI_EN, 4, SMI_EN_APMC_EN, Ticks(0));
        l.apm_command(0x10, 0, Ticks(1), &mut s);
        assert!(!s.is_pending(), "GBL_SMI_EN = 0 blocks every SMI from the LPC");
        assert_ne!(l.smi_sts() & SMI_STS_APM_STS, 0);
    }

    #[test]
    fn acpi_enable_and_disable_commands_toggle_sci_en_without_smi() {
        let mut l = lpc();
        let mut s = SmiLatch::default();
        l.pm_write(SMI_EN, 4, SMI_EN_GBL_SMI_EN | SMI_EN_APMC_EN, Ticks(0));
        l.apm_command(APM_CMD_ACPI_ENABLE, 0, Ticks(1), &mut s);
        assert!(l.sci_en() && !s.is_pending());
        l.apm_command(APM_CMD_ACPI_DISABLE, 0, Ticks(1), &mut s);
        assert!(!l.sci_en() && !s.is_pending());
    }

    #[test]
    fn smi_lock_freezes_gbl_smi_en() {
        // OVMF's SmmControl2Dxe check: set APMC_EN | GBL_SMI_EN, set SMI_LOCK, try to clear.
        let mut l = lpc();
        l.pm_write(SMI_EN, 4, SMI_EN_GBL_SMI_EN | SMI_EN_APMC_EN, Ticks(0));
        let pmcon = l.config_read(LPC_GEN_PMCON_1, 2);
        l.config_write(LPC_GEN_PMCON_1, 4, pmcon | GEN_PMCON_1_SMI_LOCK as u32);
        assert!(l.smi_locked());
        l.pm_write(SMI_EN, 4, SMI_EN_APMC_EN, Ticks(0));
        assert_eq!(l.smi_en() & SMI_EN_GBL_SMI_EN, SMI_EN_GBL_SMI_EN, "GBL_SMI_EN stuck");
        l.pm_write(SMI_EN, 4, 0, Ticks(0));
        assert_eq!(l.smi_en(), SMI_EN_GBL_SMI_EN, "other bits stay writable");
        l.config_write(LPC_GEN_PMCON_1, 2, 0);
        assert!(l.smi_locked(), "SMI_LOCK is sticky");
    }

    #[test]
    fn gbl_smi_en_is_writable_before_lock() {
        let mut l = lpc();
        l.pm_write(SMI_EN, 1, 1, Ticks(0));
        l.pm_write(SMI_EN, 1, 0, Ticks(0));
        assert_eq!(l.smi_en(), 0);
    }

    #[test]
    fn smi_sts_is_write_one_to_clear() {
        let mut l = lpc();
        let mut s = SmiLatch::default();
        l.pm_write(SMI_EN, 4, SMI_EN_APMC_EN, Ticks(0));
        l.apm_command(0x20, 0, Ticks(0), &mut s);
        l.advance(Ticks(64 * IPS), &mut s);
        assert_eq!(l.smi_sts(), SMI_STS_APM_STS | SMI_STS_PERIODIC_STS);
        l.pm_write(SMI_STS, 4, 0, Ticks(0));
        assert_eq!(l.smi_sts(), SMI_STS_APM_STS | SMI_STS_PERIODIC_STS, "writing 0 changes nothing");
        l.pm_write(SMI_STS, 4, SMI_STS_APM_STS, Ticks(0));
        assert_eq!(l.smi_sts(), SMI_STS_PERIODIC_STS);
        l.pm_write(SMI_STS + 1, 1, SMI_STS_PERIODIC_STS >> 8, Ticks(0));
        assert_eq!(l.smi_sts(), 0);
    }

    #[test]
    fn periodic_timer_fires_at_the_right_guest_time() {
        let mut l = lpc();
        let mut s = SmiLatch::default();
        // PER_SMI_SEL = 11b: 8 s.
        l.config_write_at(LPC_GEN_PMCON_1, 2, 0b11, Ticks(0), &mut s);
        l.pm_write(SMI_EN, 4, SMI_EN_GBL_SMI_EN | SMI_EN_PERIODIC_EN, Ticks(0));
        assert_eq!(l.next_deadline(), Some(Ticks(8 * IPS)));
        assert_eq!(l.next_wake(), Some(Ticks(8 * IPS)));
        l.advance(Ticks(8 * IPS - 1), &mut s);
        assert!(!s.is_pending());
        l.advance(Ticks(8 * IPS), &mut s);
        assert!(s.is_pending());
        assert_eq!(s.drain_raised().next(), Some((SmiCause::Periodic, Ticks(8 * IPS))));
        assert_eq!(l.next_deadline(), Some(Ticks(16 * IPS)));
        assert_ne!(l.smi_sts() & SMI_STS_PERIODIC_STS, 0);
    }

    #[test]
    fn periodic_rate_select_sets_the_period() {
        let mut l = lpc();
        for (sel, secs) in [(0u32, 64u64), (1, 32), (2, 16), (3, 8)] {
            l.config_write(LPC_GEN_PMCON_1, 2, sel);
            assert_eq!(l.periodic_period(), secs * IPS);
        }
    }

    #[test]
    fn periodic_timer_without_enable_sets_status_only() {
        let mut l = lpc();
        let mut s = SmiLatch::default();
        l.pm_write(SMI_EN, 4, SMI_EN_GBL_SMI_EN, Ticks(0));
        assert_eq!(l.next_wake(), None);
        l.advance(Ticks(64 * IPS), &mut s);
        assert!(!s.is_pending());
        assert_ne!(l.smi_sts() & SMI_STS_PERIODIC_STS, 0);
    }

    #[test]
    fn swsmi_timer_fires_once_after_its_period() {
        let mut l = lpc();
        let mut s = SmiLatch::default();
        l.pm_write(SMI_EN, 4, SMI_EN_GBL_SMI_EN | SMI_EN_SWSMI_TMR_EN, Ticks(100));
        assert_eq!(l.swsmi_period(), 1_500);
        l.advance(Ticks(1_599), &mut s);
        assert!(!s.is_pending());
        l.advance(Ticks(1_600), &mut s);
        assert_eq!(s.drain_raised().next(), Some((SmiCause::SwSmiTimer, Ticks(1_600))));
        assert_ne!(l.smi_sts() & SMI_STS_SWSMI_TMR_STS, 0);
        assert_eq!(l.next_wake(), None, "one-shot");
        // GEN_PMCON_3 rate 01b: 16 ms.
        l.config_write(LPC_GEN_PMCON_3, 2, 1 << 6);
        assert_eq!(l.swsmi_period(), 16_000);
    }

    #[test]
    fn pm_block_registers_and_invalid_offsets() {
        let mut l = lpc();
        assert_eq!(l.pm_read(0x7f, 4, Ticks(0)), 0xffff_ff00, "bytes past the block read all ones");
        l.pm_write(0x50, 4, 0xffff_ffff, Ticks(0));
        assert_eq!(l.pm_read(0x50, 4, Ticks(0)), 0, "reserved offsets read 0");
        l.pm_write(SMI_EN, 4, 0xffff_ffff, Ticks(0));
        assert_eq!(l.smi_en(), SMI_EN_WMASK);
        assert_eq!(l.pm_read(8, 4, Ticks(IPS)), 3_579_545 & 0xff_ffff);
    }

    #[test]
    fn gpi_sets_alt_gp_smi_sts_and_raises_only_when_enabled() {
        let mut l = lpc();
        let mut s = SmiLatch::default();
        l.pm_write(SMI_EN, 4, SMI_EN_GBL_SMI_EN, Ticks(0));
        l.gpi(GPI_HWMON, SmiCause::Thermal, Ticks(1), &mut s);
        assert!(!s.is_pending());
        assert_eq!(l.pm_read(ALT_GP_SMI_STS, 2, Ticks(0)), 2);
        assert_eq!(l.smi_sts() & SMI_STS_GPI_STS, 0, "GPI_STS needs the enable");
        l.pm_write(ALT_GP_SMI_EN, 2, 0xffff, Ticks(0));
        assert_eq!(l.pm_read(ALT_GP_SMI_EN, 2, Ticks(0)), 0xffff);
        assert_ne!(l.smi_sts() & SMI_STS_GPI_STS, 0);
        l.pm_write(SMI_STS, 4, 0xffff_ffff, Ticks(0));
        assert_ne!(l.smi_sts() & SMI_STS_GPI_STS, 0, "summary bits are read-only");
        l.gpi(GPI_HWMON, SmiCause::Thermal, Ticks(2), &mut s);
        assert_eq!(s.drain_raised().collect::<Vec<_>>(), vec![(SmiCause::Thermal, Ticks(2))]);
        l.pm_write(ALT_GP_SMI_STS + 1, 1, 0xff, Ticks(0));
        assert_eq!(l.alt_gp_smi_sts(), 2, "write one to clear, byte-wise");
        l.pm_write(ALT_GP_SMI_STS, 1, 2, Ticks(0));
        assert_eq!(l.smi_sts(), 0);
    }

    #[test]
    fn tco_events_need_tco_en_and_gbl_smi_en() {
        let mut l = lpc();
        let mut s = SmiLatch::default();
        l.pm_write(SMI_EN, 4, SMI_EN_TCO_EN, Ticks(0));
        l.dmi_smi(Ticks(1), &mut s);
        assert!(!s.is_pending(), "GBL_SMI_EN off");
        assert_eq!(l.tco1_sts(), TCO1_STS_DMISMI);
        assert_ne!(l.smi_sts() & SMI_STS_TCO_STS, 0);
        l.pm_write(SMI_EN, 4, SMI_EN_GBL_SMI_EN, Ticks(0));
        l.dmi_smi(Ticks(1), &mut s);
        assert!(!s.is_pending(), "TCO_EN off");
        l.pm_write(SMI_EN, 4, SMI_EN_GBL_SMI_EN | SMI_EN_TCO_EN, Ticks(0));
        l.dmi_smi(Ticks(1), &mut s);
        assert!(s.is_pending());
        l.pm_write(TCO1_STS, 2, 0xffff, Ticks(0));
        assert_eq!((l.tco1_sts(), l.smi_sts()), (0, 0));
    }

    #[test]
    fn legacy_usb_level_shows_in_smi_sts_and_raises_with_legacy_usb_en() {
        let mut l = lpc();
        let mut s = SmiLatch::default();
        l.pm_write(SMI_EN, 4, SMI_EN_GBL_SMI_EN, Ticks(0));
        l.legacy_usb(true, Some(SmiCause::Usb), Ticks(1), &mut s);
        assert!(!s.is_pending());
        assert_eq!(l.smi_sts(), SMI_STS_LEGACY_USB_STS);
        l.pm_write(SMI_EN, 4, SMI_EN_GBL_SMI_EN | SMI_EN_LEGACY_USB_EN, Ticks(0));
        l.legacy_usb(true, Some(SmiCause::IoTrap { port: 0x60, write: false }), Ticks(2), &mut s);
        assert!(s.is_io_trap());
        l.legacy_usb(false, None, Ticks(3), &mut s);
        assert_eq!(l.smi_sts(), 0);
    }

    #[test]
    fn rcba_window_follows_rcba_en_and_iotr_programs_the_traps() {
        let mut l = lpc();
        let mut s = SmiLatch::default();
        assert_eq!(l.rcba_base(), None);
        l.config_write(LPC_RCBA, 4, 0xfed1_c001);
        assert_eq!(l.rcba_base(), Some(0xfed1_c000));
        l.rcba_write(RCBA_IOTR0 as u64 + 8, 8, 1 | 0xb0 | 0xf << 32);
        assert!(l.iotr(1).enabled());
        assert!(!l.io_trap(0xb0, 1, false, 0, Ticks(0), &mut s), "reads are not trapped");
        assert!(l.io_trap(0xb2, 1, true, 0x12, Ticks(0), &mut s));
        assert_eq!(l.trsr(), 2);
        assert!(!s.is_pending(), "GBL_SMI_EN off: recorded, no SMI");
        l.rcba_write(RCBA_TRSR as u64, 2, 0xffff);
        assert_eq!(l.trsr(), 0);
        l.rcba_write(RCBA_SIZE - 2, 8, u64::MAX);
        assert_eq!(l.rcba_read(RCBA_SIZE - 2, 4), 0xffff_ffff);
        assert_eq!(l.rcba_read(u64::MAX - 2, 8), u64::MAX);
        l.rcba_write(u64::MAX - 2, 8, 0);
    }

    #[test]
    fn pm1_cnt_slp_en_with_s5_requests_power_off() {
        let mut l = lpc();
        l.pm_write(0x04, 4, 5 << 10 | 1 << 13, Ticks(0));
        assert!(!l.take_power_off());
        l.pm_write(0x04, 4, 7 << 10, Ticks(0));
        assert!(!l.take_power_off(), "SLP_TYP alone does nothing");
        l.pm_write(0x05, 1, 1 << 5 | 7 << 2, Ticks(0));
        assert!(l.take_power_off());
        assert!(!l.take_power_off());
    }

    #[test]
    fn rcba_and_pirq_routing_are_stored() {
        let mut l = lpc();
        l.config_write(LPC_RCBA, 4, 0xfed1_c001);
        assert_eq!(l.config_read(LPC_RCBA, 4), 0xfed1_c001);
        assert_eq!(l.config_read(LPC_PIRQA_ROUT, 4), 0x8080_8080);
        l.config_write(LPC_PIRQA_ROUT, 1, 0x0b);
        assert_eq!(l.config_read(LPC_PIRQA_ROUT, 1), 0x0b);
    }
}
