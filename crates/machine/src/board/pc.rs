//! The `pc` board: i440FX PMC at 00:00.0, PIIX3 ISA bridge at 00:01.0 and PIIX4 power
//! management at 00:01.3 (QEMU's `pc` machine), on the common [`Platform`]. The chipset is
//! [`I440fx`] (in `chipset/i440fx`); the board adds the PIIX3 IDE function and the firmware
//! tables.

use super::pending_cache::PendingCache;
use super::platform::Platform;
use crate::chipset::i440fx::piix3_ide::Piix3Ide;
use crate::chipset::i440fx::piix3_isa::Piix3Isa;
use crate::chipset::i440fx::piix4_pm::Piix4Pm;
use crate::chipset::i440fx::pmc::Pmc;

pub use crate::chipset::i440fx::I440fx;

/// The `pc` board.
pub type Pc = PendingCache<Platform<I440fx>>;

/// A `pc` board with `ram_size` bytes of RAM.
pub fn new(ram_size: u64, rom: Vec<u8>, instructions_per_second: u64) -> Pc {
    let chipset = I440fx { pmc: Pmc::new(), isa: Piix3Isa::default(), pm: Piix4Pm::new(instructions_per_second) };
    let mut board = Platform::new(ram_size, rom, chipset, instructions_per_second);
    // The PIIX3 IDE function, 00:01.1 (disks issue).
    board.pci_slots.add(1, 1, Box::new(Piix3Ide::default()));
    // ACPI tables through fw_cfg's table-loader, as QEMU provides them (smmlab's own tables).
    crate::tables::acpi::build(&crate::tables::acpi::AcpiBoard::pc()).install(&mut board.legacy.fw_cfg);
    crate::tables::smbios::build("pc", ram_size).install(&mut board.legacy.fw_cfg);
    PendingCache::new(board)
}

/// Where `--disk` goes on `pc`: the IDE primary master.
pub const DISK_SLOT: (u8, u8, usize) = (1, 1, 0);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::MachineEvent;
    use cpu::{Access, AccessKind, Bus, Pending};
    use proptest::prelude::*;

    const RAM: u64 = 32 << 20;

    fn rom() -> Vec<u8> {
        (0..0x20000u32).map(|i| (i >> 16) as u8 + 1).collect()
    }

    fn out(b: &mut Pc, port: u16, size: u8, v: u32) {
        b.io_out(Access { addr: port as u64, size, kind: AccessKind::IoOut, smm: false }, v);
    }

    fn cfg_write(b: &mut Pc, devfn: u32, reg: u8, size: u8, v: u32) {
        out(b, 0xcf8, 4, 0x8000_0000 | devfn << 8 | (reg as u32 & 0xfc));
        out(b, 0xcfc + (reg as u16 & 3), size, v);
    }

    fn rd(b: &mut Pc, addr: u64, kind: AccessKind, smm: bool) -> u64 {
        b.read(Access { addr, size: 1, kind, smm })
    }

    #[test]
    fn rom_top_128k_at_e0000_and_pam_shadowing() {
        let mut b = new(RAM, rom(), 1_000_000);
        assert_eq!(rd(&mut b, 0xe_0000, AccessKind::Read, false), 1);
        assert_eq!(rd(&mut b, 0xf_0000, AccessKind::Fetch, false), 2);
        // make_bios_writable: reads and writes go to RAM.
        cfg_write(&mut b, 0, 0x58, 4, 0x3333_3000);
        cfg_write(&mut b, 0, 0x5c, 4, 0x3333_3333);
        assert!(b.take_flush());
        assert!(b.events.drain().iter().any(|e| matches!(e, MachineEvent::PamChanged { .. })));
        assert_eq!(rd(&mut b, 0xf_0000, AccessKind::Read, false), 0);
        b.write(Access { addr: 0xf_0000, size: 1, kind: AccessKind::Write, smm: false }, 0x77);
        // make_bios_readonly: reads from RAM, writes dropped.
        cfg_write(&mut b, 0, 0x58, 4, 0x1111_1000);
        b.write(Access { addr: 0xf_0000, size: 1, kind: AccessKind::Write, smm: false }, 0x55);
        assert_eq!(rd(&mut b, 0xf_0000, AccessKind::Read, false), 0x77);
    }

    #[test]
    fn a_64k_rom_appears_twice_below_1m() {
        let mut b = new(RAM, vec![0xab; 0x10000], 1_000_000);
        assert_eq!(rd(&mut b, 0xe_0000, AccessKind::Read, false), 0xab);
        assert_eq!(rd(&mut b, 0xf_ffff, AccessKind::Read, false), 0xab);
        assert!(b.host_page(0xe_0000, AccessKind::Fetch, false).is_some());
        assert!(b.host_page(0xe_0000, AccessKind::Write, false).is_none());
    }

    #[test]
    fn benchmark_rom_enables_apmc_through_cf8_cfc() {
        let mut b = new(RAM, rom(), 1_000_000);
        out(&mut b, 0xcf8, 4, 0x8000_0b58);
        let v = b.io_in(Access { addr: 0xcfc, size: 4, kind: AccessKind::IoIn, smm: false });
        out(&mut b, 0xcfc, 4, v | 0x0200_0000);
        out(&mut b, 0xb2, 1, 1);
        assert!(b.pending().has(Pending::SMI));
    }

    #[test]
    fn d_cls_in_smm_separates_code_and_data() {
        let mut b = new(RAM, rom(), 1_000_000);
        cfg_write(&mut b, 0, 0x72, 1, 0x4a);
        b.write(Access { addr: 0xa_0000, size: 1, kind: AccessKind::Write, smm: false }, 0xc3);
        cfg_write(&mut b, 0, 0x72, 1, 0x2a);
        assert_eq!(rd(&mut b, 0xa_0000, AccessKind::Fetch, true), 0xc3);
        assert_eq!(rd(&mut b, 0xa_0000, AccessKind::Read, true), 0xff);
        assert!(b.host_page(0xa_0000, AccessKind::Read, true).is_none());
        assert!(b.host_page(0xa_0000, AccessKind::Fetch, true).is_some());
    }

    /// 440FX datasheet 290549, SMRAM 72h D_CLS: SMM data accesses to the A/B segment go where
    /// non-SMM accesses go. The VGA text buffer at 0xB8000 is on that side, so what SMM writes
    /// there a non-SMM read sees (and the reverse), while SMM code still comes from DRAM.
    #[test]
    fn d_cls_smm_data_reaches_the_vga_text_buffer_a_non_smm_access_sees() {
        let mut b = new(RAM, rom(), 1_000_000);
        cfg_write(&mut b, 0, 0x72, 1, 0x4a);
        b.write(Access { addr: 0xb_8000, size: 1, kind: AccessKind::Write, smm: false }, 0xc3);
        cfg_write(&mut b, 0, 0x72, 1, 0x2a);
        b.write(Access { addr: 0xb_8000, size: 2, kind: AccessKind::Write, smm: false }, 0x0741);
        assert_eq!(b.read(Access { addr: 0xb_8000, size: 2, kind: AccessKind::Read, smm: true }), 0x0741, "SMM data sees the text buffer");
        b.write(Access { addr: 0xb_8002, size: 2, kind: AccessKind::Write, smm: true }, 0x0742);
        assert_eq!(b.read(Access { addr: 0xb_8002, size: 2, kind: AccessKind::Read, smm: false }), 0x0742, "SMM data writes the text buffer");
        assert_eq!(rd(&mut b, 0xb_8000, AccessKind::Fetch, true), 0xc3, "SMM code comes from DRAM");
        // Without SMRAM at all, SMM accesses see the window too.
        cfg_write(&mut b, 0, 0x72, 1, 0x02);
        assert_eq!(b.read(Access { addr: 0xb_8000, size: 2, kind: AccessKind::Read, smm: true }), 0x0741);
    }

    /// A guest step outside SMM: a config write to the PMC, or a memory access.
    #[derive(Clone, Debug)]
    enum Step {
        Smram(u8),
        Pam(u8, u8),
        Write(u64, u8),
        Read(u64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            any::<u8>().prop_map(Step::Smram),
            (0u8..7, any::<u8>()).prop_map(|(r, v)| Step::Pam(r, v)),
            (0x9_f000u64..0xc_1000, any::<u8>()).prop_map(|(a, v)| Step::Write(a, v)),
            (0x9_f000u64..0xc_1000).prop_map(Step::Read),
        ]
    }

    proptest! {
        /// Once SMRAM is closed (D_OPEN = 0) or locked, no sequence of non-SMM register writes
        /// and memory accesses reads or changes SMRAM, unless the guest reopens it (which a
        /// lock forbids).
        #[test]
        fn closed_or_locked_smram_is_untouchable_outside_smm(lock in any::<bool>(), steps in proptest::collection::vec(step(), 1..40)) {
            let mut b = new(RAM, rom(), 1_000_000);
            cfg_write(&mut b, 0, 0x72, 1, 0x4a);
            let secret: Vec<u8> = (0..0x20000u64).map(|k| 0x5a ^ (k as u8)).collect();
            b.ram.write(0xa_0000, &secret);
            cfg_write(&mut b, 0, 0x72, 1, if lock { 0x1a } else { 0x0a });
            for s in steps {
                match s {
                    Step::Smram(v) => {
                        if !lock && v & 0x40 != 0 {
                            continue; // reopening an unlocked SMRAM is allowed; not this property
                        }
                        cfg_write(&mut b, 0, 0x72, 1, v as u32);
                    }
                    Step::Pam(r, v) => cfg_write(&mut b, 0, 0x59 + r, 1, v as u32),
                    Step::Write(a, v) => b.write(Access { addr: a, size: 1, kind: AccessKind::Write, smm: false }, v as u64),
                    Step::Read(a) => {
                        let got = rd(&mut b, a, AccessKind::Read, false);
                        // 0xB8000-0xBFFFF is the VGA text buffer in the non-SMM view.
                        if (0xa_0000..0xb_8000).contains(&a) {
                            prop_assert_eq!(got, 0xff, "read SMRAM at {:#x}", a);
                        }
                    }
                }
                prop_assert!(!b.smram_config().open());
            }
            prop_assert!(b.ram.to_vec(0xa_0000..0xc_0000) == secret, "SMRAM changed");
        }
    }
}
