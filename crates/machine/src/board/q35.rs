//! The `q35` board: the 3 Series MCH at 00:00.0 and the ICH9 LPC bridge at 00:1F.0 (QEMU's
//! `q35` machine), on the common [`Platform`]. The board assembles its chipset
//! ([`Q35Chipset`], in `chipset/q35`), the ICH9 SATA and SMBus functions and, on the built-in
//! platform, the lab hardware beside the chipset ([`LabHardware`], in `lab_devices.rs`), and
//! routes each access to the part that decodes it.

use super::pending_cache::PendingCache;
use super::platform::Platform;
use crate::chipset::q35::ich9_lpc::Ich9Lpc;
use crate::chipset::q35::ich9_sata::Ich9Sata;
use crate::chipset::q35::ich9_smbus::Ich9Smbus;
use crate::chipset::q35::mch::{Mch, DEFAULT_EXT_TSEG_MBYTES};
use crate::chipset::{HostBridge, Southbridge};
use crate::clock::Ticks;
use crate::events::{Events, MachineEvent};
use crate::memory::pam::Pam;
use crate::smi::SmiLatch;
use crate::smram::SmramConfig;

pub use super::lab_devices::LabHardware;
use super::lab_devices::UHCI_SLOT;
pub use crate::chipset::q35::{Q35Chipset, ScheduledError};

/// The chipset-specific half of the `q35` board: the q35 chipset and, when the board is
/// built for the built-in firmware, the lab hardware beside it. It routes each access to the
/// one that decodes it and lends the lab devices the LPC bridge their SMI wires go to.
#[derive(Clone, Debug)]
pub struct Q35Board {
    /// The MCH and the ICH9.
    pub chipset: Q35Chipset,
    /// The lab devices (None: the board is QEMU's q35).
    pub lab: Option<Box<LabHardware>>,
    /// Events the lab devices recorded, waiting for the platform's queue.
    lab_events: Vec<MachineEvent>,
    /// The clock's halted time so far (the thermal model cools while halted).
    idle: u64,
    ips: u64,
}

/// The `q35` board.
pub type Q35 = PendingCache<Platform<Q35Board>>;

/// A `q35` board with `ram_size` bytes of RAM and QEMU's default 16 MiB extended TSEG.
pub fn new(ram_size: u64, rom: Vec<u8>, instructions_per_second: u64) -> Q35 {
    let chipset = Q35Chipset::new(Mch::new(DEFAULT_EXT_TSEG_MBYTES), Ich9Lpc::new(instructions_per_second));
    let board = Q35Board { chipset, lab: None, lab_events: Vec::new(), idle: 0, ips: instructions_per_second };
    let mut board = Platform::new(ram_size, rom, board, instructions_per_second);
    // The ICH9 SATA controller in AHCI mode, 00:1F.2 (disks issue).
    board.pci_slots.add(0x1f, 2, Box::new(Ich9Sata::default()));
    // The ICH9 SMBus host controller, 00:1F.3 (QEMU's q35 has it too).
    board.pci_slots.add(0x1f, 3, Box::new(Ich9Smbus::default()));
    // ACPI tables through fw_cfg's table-loader, as QEMU provides them (smmlab's own tables).
    crate::tables::acpi::build(&crate::tables::acpi::AcpiBoard::q35()).install(&mut board.legacy.fw_cfg);
    crate::tables::smbios::build("q35", ram_size).install(&mut board.legacy.fw_cfg);
    PendingCache::new(board)
}

/// Where `--disk` goes on `q35`: AHCI port 0 of the ICH9 SATA function.
pub const DISK_SLOT: (u8, u8, usize) = (0x1f, 2, 0);

impl Q35Board {
    /// Adds the lab devices (idempotent).
    pub fn enable_lab_hardware(&mut self) {
        if self.lab.is_none() {
            self.lab = Some(Box::new(LabHardware::new(self.ips)));
        }
    }

    /// Schedules a DRAM ECC error at `addr` for guest time `at` (see
    /// [`Q35Chipset::inject_memory_error`]).
    pub fn inject_memory_error(&mut self, at: Ticks, addr: u64, uncorrectable: bool) {
        self.chipset.inject_memory_error(at, addr, uncorrectable);
    }
}

/// The host bridge is the MCH's alone: no lab device sits there.
impl HostBridge for Q35Board {
    fn host_config_read(&self, device: u8, function: u8, offset: u8, size: u8) -> Option<u32> {
        self.chipset.host_config_read(device, function, offset, size)
    }

    fn host_config_write(&mut self, device: u8, function: u8, offset: u8, size: u8, value: u32, now: Ticks) {
        self.chipset.host_config_write(device, function, offset, size, value, now);
    }

    fn smram(&self, low_ram_top: u64) -> SmramConfig {
        self.chipset.smram(low_ram_top)
    }

    fn pam(&self) -> Pam {
        self.chipset.pam()
    }

    fn ecam(&self) -> Option<(u64, u64)> {
        self.chipset.ecam()
    }
}

/// The board's routing: 00:1D.0 is the lab UHCI's; a port goes to the chipset (the PM I/O
/// block) before the lab devices; the UHCI's legacy support traps the i8042 ports before the
/// ICH9's IOTRn do. Everything else is the chipset's.
impl Southbridge for Q35Board {
    fn south_config_read(&self, device: u8, function: u8, offset: u8, size: u8) -> Option<u32> {
        if (device, function) == UHCI_SLOT {
            return self.lab.as_ref().map(|l| l.config_read(offset, size));
        }
        self.chipset.south_config_read(device, function, offset, size)
    }

    fn south_config_write(&mut self, device: u8, function: u8, offset: u8, size: u8, value: u32, now: Ticks, smi: &mut SmiLatch) {
        if (device, function) == UHCI_SLOT {
            if let Some(lab) = &mut self.lab {
                lab.config_write(offset, size, value, &mut self.chipset.lpc, now, smi);
            }
            return;
        }
        self.chipset.south_config_write(device, function, offset, size, value, now, smi);
    }

    fn io_read(&mut self, port: u16, size: u8, now: Ticks) -> Option<u32> {
        if let Some(v) = self.chipset.io_read(port, size, now) {
            return Some(v);
        }
        self.lab.as_mut()?.io_read(port, size)
    }

    fn io_write(&mut self, port: u16, size: u8, value: u32, now: Ticks, smi: &mut SmiLatch) -> bool {
        if self.chipset.io_write(port, size, value, now, smi) {
            return true;
        }
        let Some(lab) = self.lab.as_mut() else { return false };
        lab.io_write(port, size, value, now, self.idle, &mut self.chipset.lpc, smi)
    }

    fn apm_command(&mut self, cmd: u8, data: u8, now: Ticks, smi: &mut SmiLatch) {
        self.chipset.apm_command(cmd, data, now, smi);
    }

    fn pm_timer_port(&self) -> Option<u16> {
        self.chipset.pm_timer_port()
    }

    fn next_deadline(&self) -> Option<Ticks> {
        [self.chipset.next_deadline(), self.lab.as_ref().and_then(|l| l.next_deadline())].into_iter().flatten().min()
    }

    fn next_wake(&self) -> Option<Ticks> {
        // A key report can raise an SMI that wakes a halted CPU too.
        [self.chipset.next_wake(), self.lab.as_ref().and_then(|l| l.next_wake())].into_iter().flatten().min()
    }

    fn advance(&mut self, now: Ticks, smi: &mut SmiLatch) {
        self.chipset.advance(now, smi);
        if let Some(lab) = self.lab.as_mut() {
            lab.advance(now, self.idle, &mut self.chipset.lpc, &mut self.lab_events, smi);
        }
    }

    fn smi_feature_negotiation(&self) -> bool {
        self.chipset.smi_feature_negotiation()
    }

    fn s5_sleep_type(&self) -> u8 {
        self.chipset.s5_sleep_type()
    }

    fn io_trap(&mut self, port: u16, size: u8, write: bool, value: u32, now: Ticks, smi: &mut SmiLatch) -> bool {
        if let Some(lab) = &mut self.lab {
            if lab.io_trap(port, write, &mut self.chipset.lpc, now, smi) {
                return true;
            }
        }
        self.chipset.io_trap(port, size, write, value, now, smi)
    }

    fn mmio_claims(&self, addr: u64) -> bool {
        self.chipset.mmio_claims(addr)
    }

    fn mmio_read(&mut self, addr: u64, size: u8) -> u64 {
        self.chipset.mmio_read(addr, size)
    }

    fn mmio_write(&mut self, addr: u64, size: u8, value: u64) {
        self.chipset.mmio_write(addr, size, value)
    }

    fn set_idle(&mut self, idle: u64) {
        self.idle = idle;
        self.chipset.set_idle(idle);
    }

    fn take_power_off(&mut self) -> bool {
        self.chipset.take_power_off()
    }

    fn flash_writable(&self, smm: bool) -> bool {
        self.chipset.flash_writable(smm)
    }

    /// The chipset's events, then the lab devices' (they record theirs only while advancing,
    /// after the chipset's timers, and every call's events are drained before the next).
    fn drain_events(&mut self, events: &mut Events) {
        self.chipset.drain_events(events);
        if self.lab_events.is_empty() {
            return;
        }
        for e in self.lab_events.drain(..) {
            events.push(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chipset::q35::ich9_lpc::{SMI_EN, SMI_EN_APMC_EN, SMI_EN_GBL_SMI_EN, SMI_STS};
    use crate::events::MachineEvent;
    use crate::smi::SmiCause;
    use cpu::{Access, AccessKind, Bus, Pending};

    const RAM: u64 = 128 << 20;

    fn board() -> Q35 {
        new(RAM, vec![0x90; 0x10000], 1_000_000)
    }

    fn out(b: &mut Q35, port: u16, size: u8, v: u32) {
        b.io_out(Access { addr: port as u64, size, kind: AccessKind::IoOut, smm: false }, v);
    }

    fn inp(b: &mut Q35, port: u16, size: u8) -> u32 {
        b.io_in(Access { addr: port as u64, size, kind: AccessKind::IoIn, smm: false })
    }

    fn cfg_write(b: &mut Q35, dev: u8, reg: u8, size: u8, v: u32) {
        out(b, 0xcf8, 4, 0x8000_0000 | (dev as u32) << 11 | (reg as u32 & 0xfc));
        out(b, 0xcfc + (reg as u16 & 3), size, v);
    }

    fn cfg_read(b: &mut Q35, dev: u8, reg: u8, size: u8) -> u32 {
        out(b, 0xcf8, 4, 0x8000_0000 | (dev as u32) << 11 | (reg as u32 & 0xfc));
        inp(b, 0xcfc + (reg as u16 & 3), size)
    }

    fn rd(b: &mut Q35, addr: u64, smm: bool) -> u64 {
        b.read(Access { addr, size: 4, kind: AccessKind::Read, smm })
    }

    fn wr(b: &mut Q35, addr: u64, v: u64, smm: bool) {
        b.write(Access { addr, size: 4, kind: AccessKind::Write, smm }, v)
    }

    #[test]
    fn host_bridge_and_lpc_answer_on_bus_0() {
        let mut b = board();
        assert_eq!(cfg_read(&mut b, 0, 0, 4), 0x29c0_8086);
        assert_eq!(cfg_read(&mut b, 0x1f, 0, 4), 0x2918_8086);
        assert_eq!(cfg_read(&mut b, 3, 0, 4), 0xffff_ffff, "empty slot");
        assert_eq!(cfg_read(&mut b, 0, 0x9d, 1), 0x02);
    }

    #[test]
    fn accesses_across_a_page_into_closed_smram_are_decoded_per_byte() {
        let mut b = board();
        // SMRAM at 0xA0000 enabled and closed (G_SMRAME, D_OPEN clear); SMM puts a secret there.
        cfg_write(&mut b, 0, 0x9d, 1, 0x0a);
        b.write(Access { addr: 0xa0000, size: 4, kind: AccessKind::Write, smm: true }, 0x5ec2_e7aa);
        // From outside SMM, 8 bytes at 0x9FFFC: the low half is RAM, the high half is SMRAM.
        b.write(Access { addr: 0x9fffc, size: 8, kind: AccessKind::Write, smm: false }, 0x1111_1111_2222_2222);
        assert_eq!(b.read(Access { addr: 0xa0000, size: 4, kind: AccessKind::Read, smm: true }), 0x5ec2_e7aa, "the write did not reach SMRAM");
        let v = b.read(Access { addr: 0x9fffc, size: 8, kind: AccessKind::Read, smm: false });
        assert_eq!(v & 0xffff_ffff, 0x2222_2222, "the RAM half was written");
        assert_ne!(v >> 32, 0x5ec2_e7aa, "the read did not see SMRAM");
    }

    #[test]
    fn ovmf_smram_sequence_hides_tseg_and_locks() {
        let mut b = board();
        cfg_write(&mut b, 0, 0x50, 2, 0xffff);
        assert_eq!(cfg_read(&mut b, 0, 0x50, 2), 16);
        cfg_write(&mut b, 0, 0x9e, 1, 0x3f);
        cfg_write(&mut b, 0, 0x9d, 1, 0x0a);
        assert!(b.take_flush(), "SMRAM changes flush the CPU");
        assert!(b.pending().has(Pending::STOP) || !b.take_flush());
        let tseg = RAM - (16 << 20);
        wr(&mut b, tseg, 0x1234_5678, true);
        assert_eq!(rd(&mut b, tseg, true), 0x1234_5678);
        assert_eq!(rd(&mut b, tseg, false), 0xffff_ffff);
        wr(&mut b, tseg, 0, false);
        assert_eq!(rd(&mut b, tseg, true), 0x1234_5678, "writes from outside SMM are dropped");
        cfg_write(&mut b, 0, 0x9d, 1, 0x1a);
        let ev = b.events.drain();
        assert!(ev.iter().any(|e| matches!(e, MachineEvent::SmramLocked { .. })), "{ev:?}");
        cfg_write(&mut b, 0, 0x9e, 1, 0x3e);
        assert_eq!(rd(&mut b, tseg, false), 0xffff_ffff, "TSEG stays closed after D_LCK");
    }

    #[test]
    fn flush_request_stops_the_cpu_until_taken() {
        let mut b = board();
        assert!(!b.pending().has(Pending::STOP));
        cfg_write(&mut b, 0, 0x9d, 1, 0x4a);
        assert!(b.pending().has(Pending::STOP));
        assert!(b.take_flush());
        assert!(!b.pending().has(Pending::STOP));
    }

    #[test]
    fn a_b_segment_is_vga_hole_until_opened() {
        let mut b = board();
        assert_eq!(rd(&mut b, 0xa_0000, false), 0xffff_ffff);
        cfg_write(&mut b, 0, 0x9d, 1, 0x4a);
        wr(&mut b, 0xa_0000, 0xdead_beef, false);
        cfg_write(&mut b, 0, 0x9d, 1, 0x0a);
        assert_eq!(rd(&mut b, 0xa_0000, false), 0xffff_ffff);
        assert_eq!(rd(&mut b, 0xa_0000, true), 0xdead_beef);
        // High SMRAM: the same DRAM at 0xFEDA0000, and the A/B segment becomes VGA in SMM.
        cfg_write(&mut b, 0, 0x9e, 1, 0xb8);
        assert_eq!(rd(&mut b, 0xfeda_0000, true), 0xdead_beef);
        assert_eq!(rd(&mut b, 0xfeda_0000, false), 0xffff_ffff);
        assert_eq!(rd(&mut b, 0xa_0000, true), 0xffff_ffff);
    }

    #[test]
    fn apm_smi_through_the_ich9_with_apm_sts() {
        let mut b = board();
        cfg_write(&mut b, 0x1f, 0x40, 4, 0x601);
        cfg_write(&mut b, 0x1f, 0x44, 1, 0x80);
        out(&mut b, 0x600 + SMI_EN, 4, SMI_EN_GBL_SMI_EN | SMI_EN_APMC_EN);
        assert_eq!(inp(&mut b, 0x600 + SMI_EN, 4), SMI_EN_GBL_SMI_EN | SMI_EN_APMC_EN);
        out(&mut b, 0xb3, 1, 0x5a);
        out(&mut b, 0xb2, 1, 0x01);
        assert!(b.pending().has(Pending::SMI));
        assert!(!b.pending().has(Pending::IO_TRAP));
        assert_eq!(inp(&mut b, 0x600 + SMI_STS, 4) & (1 << 5), 1 << 5);
        b.ack_smi();
        assert!(!b.pending().has(Pending::SMI));
        let e = cpu::SmmEntry { smbase: 0x30000, cs: 0xf000, rip: 0x10, mode: "real", icount: 7, from_halt: false, io_trap: false };
        b.smm_entered(&e);
        let ev = b.events.drain();
        assert!(matches!(ev[0], MachineEvent::SmiRaised { cause: SmiCause::Apm { cmd: 1, data: 0x5a }, .. }), "{ev:?}");
        assert!(matches!(ev[1], MachineEvent::SmmEntered { cause: Some(SmiCause::Apm { .. }), icount: 7, .. }), "{ev:?}");
        assert_eq!(b.events.stats.smis_by_source.get("apm"), Some(&1));
    }

    #[test]
    fn pm_timer_reads_the_virtual_clock_at_the_io_instruction() {
        let mut b = board();
        cfg_write(&mut b, 0x1f, 0x40, 4, 0x601);
        cfg_write(&mut b, 0x1f, 0x44, 1, 0x80);
        b.sync_icount(1_000_000);
        assert_eq!(inp(&mut b, 0x608, 4), 3_579_545);
        b.sync_icount(1_000_001);
        assert_eq!(inp(&mut b, 0x608, 4), 3_579_548);
    }

    /// The poll fast-forward (crate::poll): a tight PM timer loop speeds guest time up, never
    /// past a timer deadline; a port write in the loop, SMM, or `enabled = false` keep
    /// time to the instruction count.
    #[test]
    fn pm_timer_polling_skips_time_up_to_the_next_deadline() {
        fn poll(b: &mut Q35, from: u64, n: u64, smm: bool, write: bool) -> u64 {
            let mut worst = 0;
            for i in 0..n {
                let before = b.now().0;
                let deadline = b.next_deadline().map_or(u64::MAX, |d| d.0);
                b.sync_icount(from + 100 * i);
                b.io_in(Access { addr: 0x608, size: 4, kind: AccessKind::IoIn, smm });
                assert!(b.now().0 <= deadline.max(before + 100), "skipped past the deadline {deadline}: {}", b.now().0);
                worst = worst.max(b.now().0 - before);
                if write {
                    out(b, 0x80, 1, 0);
                }
            }
            worst
        }
        let mut b = board();
        cfg_write(&mut b, 0x1f, 0x40, 4, 0x601);
        cfg_write(&mut b, 0x1f, 0x44, 1, 0x80);
        assert_eq!(poll(&mut b, 0, 1000, false, true), 100, "a write in the loop: no skip");
        assert_eq!(poll(&mut b, 100_000, 1000, true, false), 100, "SMM: no skip");
        assert_eq!(b.poll.skipped(), 0);
        // PIT channel 0, mode 2, count 11932: a deadline every 10 ms, 10,000 ticks on this
        // 1 MIPS board, shorter than the largest skips (100 × 1023 ticks).
        out(&mut b, 0x43, 1, 0x34);
        out(&mut b, 0x40, 1, 11932 & 0xff);
        out(&mut b, 0x40, 1, 11932 >> 8);
        let start = b.now().0;
        let worst = poll(&mut b, 200_000, 1000, false, false);
        assert!(worst > 100, "time sped up");
        assert!(b.poll.skipped() > 0);
        assert_eq!(b.now().0 - start, 100 * 1000 + b.poll.skipped(), "skipped ticks are counted");
        let mut off = board();
        off.poll.enabled = false;
        cfg_write(&mut off, 0x1f, 0x40, 4, 0x601);
        cfg_write(&mut off, 0x1f, 0x44, 1, 0x80);
        assert_eq!(poll(&mut off, 0, 1000, false, false), 100, "off: time is the instruction count");
    }

    #[test]
    fn pm_block_is_not_decoded_before_acpi_en() {
        let mut b = board();
        cfg_write(&mut b, 0x1f, 0x40, 4, 0x601);
        assert_eq!(inp(&mut b, 0x630, 4), 0xffff_ffff);
    }

    #[test]
    fn io_trap_raises_smi_with_io_trap_pending() {
        let mut b = board();
        b.io_traps.add(0x80..=0x80, false, true);
        inp(&mut b, 0x80, 1);
        assert!(!b.pending().has(Pending::SMI));
        out(&mut b, 0x80, 1, 0x12);
        assert_eq!(b.pending().0 & (Pending::SMI | Pending::IO_TRAP), Pending::SMI | Pending::IO_TRAP);
        b.ack_smi();
        assert!(!b.pending().has(Pending::IO_TRAP));
    }

    #[test]
    fn lapic_smi_ipi_to_self() {
        let mut b = board();
        b.write(Access { addr: 0xfee0_0310, size: 4, kind: AccessKind::Write, smm: false }, 0);
        b.write(Access { addr: 0xfee0_0300, size: 4, kind: AccessKind::Write, smm: false }, 0x4200);
        assert!(b.pending().has(Pending::SMI));
        assert!(matches!(b.events.drain()[0], MachineEvent::SmiRaised { cause: SmiCause::Ipi, .. }));
    }

    #[test]
    fn smi_pin_fires_at_its_guest_time() {
        let mut b = board();
        b.smi_pin.raise_at(Ticks(500));
        assert_eq!(b.next_deadline(), Some(Ticks(500)));
        b.set_now(499);
        assert!(!b.pending().has(Pending::SMI));
        b.set_now(500);
        assert!(b.pending().has(Pending::SMI));
    }

    #[test]
    fn timer_armed_inside_a_slice_stops_the_cpu() {
        let mut b = board();
        cfg_write(&mut b, 0x1f, 0x40, 4, 0x601);
        cfg_write(&mut b, 0x1f, 0x44, 1, 0x80);
        b.begin_slice(Ticks(1 << 40));
        inp(&mut b, 0x80, 1);
        assert!(b.pending().has(Pending::STOP), "the periodic timer (64 s) is earlier than the slice end");
        b.begin_slice(Ticks(1_000));
        assert!(!b.pending().has(Pending::STOP));
        out(&mut b, 0x600 + SMI_EN, 4, 1 << 6); // SWSMI_TMR_EN: 1.5 ms = 1500 ticks
        assert!(!b.pending().has(Pending::STOP));
        b.begin_slice(Ticks(2_000));
        out(&mut b, 0x600 + SMI_EN, 4, 0);
        out(&mut b, 0x600 + SMI_EN, 4, 1 << 6);
        assert!(b.pending().has(Pending::STOP));
    }

    /// PMBASE 0x600 with ACPI_EN, and SMI_EN as given.
    fn pm(b: &mut Q35, smi_en: u32) {
        cfg_write(b, 0x1f, 0x40, 4, 0x601);
        cfg_write(b, 0x1f, 0x44, 1, 0x80);
        out(b, 0x600 + SMI_EN, 4, smi_en);
    }

    fn lab_board() -> Q35 {
        let mut b = board();
        b.chipset.enable_lab_hardware();
        b
    }

    fn raised(b: &mut Q35) -> Vec<SmiCause> {
        b.events.drain().into_iter().filter_map(|e| if let MachineEvent::SmiRaised { cause, .. } = e { Some(cause) } else { None }).collect()
    }

    #[test]
    fn slp_en_with_s5_powers_off_and_other_sleep_types_do_not() {
        let mut b = board();
        pm(&mut b, 0);
        out(&mut b, 0x604, 2, 5 << 10 | 1 << 13);
        assert_eq!(b.power_off(), None, "S3 is not modelled as power-off");
        assert_eq!(inp(&mut b, 0x604, 2) & (1 << 13), 0, "SLP_EN reads 0");
        out(&mut b, 0x605, 1, (7 << 2) | (1 << 5));
        assert_eq!(b.power_off(), Some(false));
        assert!(b.pending().has(Pending::STOP));
        assert!(b.events.drain().iter().any(|e| matches!(e, MachineEvent::PowerOff { from_smm: false, .. })));
        let mut b = board();
        pm(&mut b, 0);
        b.io_out(Access { addr: 0x604, size: 2, kind: AccessKind::IoOut, smm: true }, 7 << 10 | 1 << 13);
        assert_eq!(b.power_off(), Some(true));
    }

    #[test]
    fn machine_run_ends_with_power_off() {
        let mut rom = vec![0x90u8; 0x10000];
        // mov dx, 0x604; mov ax, 0x3c00 (SLP_EN | SLP_TYP = 7); out dx, ax; hlt
        rom[0xfff0..0xfff8].copy_from_slice(&[0xba, 0x04, 0x06, 0xb8, 0x00, 0x3c, 0xef, 0xf4]);
        let mut m = crate::Machine::q35(crate::MachineConfig::default(), rom).unwrap();
        let crate::board::Board::Q35(b) = &mut m.board else { unreachable!() };
        pm(b, 0);
        let s = m.run(1000);
        assert_eq!(s.exit, crate::ExitReason::PowerOff { from_smm: false });
        assert_eq!((s.exit.name(), s.exit_code), ("power-off", 0));
        assert!(s.instructions < 10);
    }

    #[test]
    fn bioswe_with_ble_raises_the_tco_smi_and_flash_writes_follow_bios_cntl() {
        use crate::chipset::q35::ich9_lpc::{SMI_EN_TCO_EN, TCO1_STS};
        let mut b = board();
        pm(&mut b, SMI_EN_GBL_SMI_EN | SMI_EN_TCO_EN);
        let rom_at = |b: &Q35| b.rom.read_le(0x100, 1) as u8;
        wr(&mut b, 0xffff_0100, 0x1122_3344, false);
        assert_eq!(rom_at(&b), 0x90, "BIOSWE = 0: the write is dropped");
        cfg_write(&mut b, 0x1f, 0xdc, 1, 0x01);
        assert!(!b.pending().has(Pending::SMI), "no BLE, no SMI");
        wr(&mut b, 0xffff_0100, 0x1122_3344, false);
        assert_eq!(rom_at(&b), 0x44);
        assert_eq!(rd(&mut b, 0xffff_0100, false), 0x1122_3344);
        assert!(b.take_flush(), "decoded code is flushed after a flash write");
        cfg_write(&mut b, 0x1f, 0xdc, 1, 0x00);
        cfg_write(&mut b, 0x1f, 0xdc, 1, 0x22); // BLE | SMM_BWP
        assert!(!b.pending().has(Pending::SMI));
        cfg_write(&mut b, 0x1f, 0xdc, 1, 0x23);
        assert!(b.pending().has(Pending::SMI));
        assert_eq!(raised(&mut b), vec![SmiCause::BiosWrite]);
        assert_eq!(inp(&mut b, 0x600 + TCO1_STS, 2), 1 << 8);
        assert_ne!(inp(&mut b, 0x600 + SMI_STS, 4) & (1 << 13), 0, "TCO_STS");
        wr(&mut b, 0xffff_0100, 0, false);
        assert_eq!(rom_at(&b), 0x44, "SMM_BWP: only SMM writes the flash");
        wr(&mut b, 0xffff_0100, 0x55, true);
        assert_eq!(rom_at(&b), 0x55);
        out(&mut b, 0x600 + TCO1_STS, 2, 1 << 8);
        assert_eq!(inp(&mut b, 0x600 + TCO1_STS, 2), 0);
        assert_eq!(inp(&mut b, 0x600 + SMI_STS, 4) & (1 << 13), 0);
    }

    #[test]
    fn memory_error_at_its_time_sets_errsts_and_sends_the_dmi_smi() {
        use crate::chipset::q35::ich9_lpc::{SMI_EN_TCO_EN, TCO1_STS};
        let mut b = board();
        pm(&mut b, SMI_EN_GBL_SMI_EN | SMI_EN_TCO_EN);
        cfg_write(&mut b, 0, 0xcc, 2, 2); // SMICMD.DMESMI
        b.chipset.inject_memory_error(Ticks(5_000), 0x0123_4567, true);
        b.chipset.inject_memory_error(Ticks(3_000), 0x2000, false);
        assert_eq!(b.next_deadline(), Some(Ticks(3_000)));
        assert_eq!(b.next_wake(), Some(Ticks(3_000)));
        b.set_now(3_000);
        assert!(!b.pending().has(Pending::SMI), "DSESMI off: no SMI for a correctable error");
        assert_eq!((cfg_read(&mut b, 0, 0xc8, 2), cfg_read(&mut b, 0, 0xd0, 4), cfg_read(&mut b, 0, 0xd4, 2)), (1, 0x2000, 1));
        b.set_now(4_999);
        assert!(!b.pending().has(Pending::SMI));
        b.set_now(5_000);
        assert!(b.pending().has(Pending::SMI));
        assert_eq!(cfg_read(&mut b, 0, 0xc8, 2), 3);
        assert_eq!(cfg_read(&mut b, 0, 0xd0, 4), 0x0123_4000);
        assert_eq!(inp(&mut b, 0x600 + TCO1_STS, 2), 1 << 10, "DMISMI_STS");
        let ev = b.events.drain();
        assert_eq!(ev.iter().filter(|e| matches!(e, MachineEvent::MemoryErrorInjected { .. })).count(), 2, "{ev:?}");
        assert!(ev.iter().any(|e| matches!(e, MachineEvent::SmiRaised { cause: SmiCause::MemoryError, icount: 5_000 })));
        assert_eq!(SmiCause::MemoryError.source(), "memory-error");
    }

    #[test]
    fn hardware_monitor_is_absent_without_lab_hardware_and_idle_until_started() {
        let mut b = board();
        assert_eq!(inp(&mut b, 0x295, 1), 0xff);
        let mut b = lab_board();
        let idle_deadline = b.next_deadline();
        out(&mut b, 0x295, 1, 0x10);
        assert_eq!(inp(&mut b, 0x296, 1), 35);
        assert_eq!(b.next_deadline(), idle_deadline, "no monitor timer before START");
        out(&mut b, 0x295, 2, 0x01_00); // index 0 (CONFIG), data 1 (START)
        assert_eq!(b.next_deadline(), Some(Ticks(1_000)), "1 ms samples once started");
    }

    #[test]
    fn hot_cpu_raises_the_thermal_smi_through_gpi_1() {
        use crate::chipset::q35::ich9_lpc::{ALT_GP_SMI_EN, ALT_GP_SMI_STS};
        let mut b = lab_board();
        pm(&mut b, SMI_EN_GBL_SMI_EN);
        out(&mut b, 0x600 + ALT_GP_SMI_EN, 2, 1 << 1);
        out(&mut b, 0x295, 1, 0x11);
        out(&mut b, 0x296, 1, 45); // HIGH
        out(&mut b, 0x295, 1, 0x00);
        out(&mut b, 0x296, 1, 0x03); // START | SMI_EN
        let mut t = 0;
        while !b.pending().has(Pending::SMI) && t < 100_000 {
            t += 1_000;
            b.set_now(t);
        }
        assert!(b.pending().has(Pending::SMI), "the busy CPU heats past 45 C");
        out(&mut b, 0x295, 1, 0x10);
        assert!(inp(&mut b, 0x296, 1) >= 45);
        out(&mut b, 0x295, 1, 0x01);
        assert_eq!(inp(&mut b, 0x296, 1), 1, "INT_STS.HIGH");
        assert_eq!(inp(&mut b, 0x600 + ALT_GP_SMI_STS, 2), 1 << 1);
        assert_ne!(inp(&mut b, 0x600 + SMI_STS, 4) & (1 << 10), 0, "GPI_STS");
        let ev = b.events.drain();
        assert!(ev.iter().any(|e| matches!(e, MachineEvent::ThermalLimit { crit: false, .. })), "{ev:?}");
        assert!(ev.iter().any(|e| matches!(e, MachineEvent::SmiRaised { cause: SmiCause::Thermal, .. })));
        out(&mut b, 0x600 + ALT_GP_SMI_STS, 2, 1 << 1);
        assert_eq!(inp(&mut b, 0x600 + SMI_STS, 4) & (1 << 10), 0);
    }

    #[test]
    fn halted_time_cools_the_cpu() {
        let mut b = lab_board();
        out(&mut b, 0x295, 2, 0x01_00);
        b.set_now(50_000);
        let hot = b.chipset.lab.as_ref().unwrap().hwmon.temperature_mc();
        b.skip_to(Ticks(150_000));
        let cool = b.chipset.lab.as_ref().unwrap().hwmon.temperature_mc();
        assert!(cool < hot && cool < 25_000, "{hot} -> {cool}");
    }

    fn uhci_setup(b: &mut Q35, legsup: u32) {
        use crate::chipset::q35::ich9_lpc::SMI_EN_LEGACY_USB_EN;
        pm(b, SMI_EN_GBL_SMI_EN | SMI_EN_LEGACY_USB_EN);
        cfg_write(b, 0x1d, 0x20, 4, 0xc000);
        cfg_write(b, 0x1d, 0x04, 2, 1);
        cfg_write(b, 0x1d, 0xc0, 2, legsup);
    }

    #[test]
    fn uhci_is_only_on_the_lab_board() {
        let mut b = board();
        assert_eq!(cfg_read(&mut b, 0x1d, 0, 4), 0xffff_ffff);
        let mut b = lab_board();
        assert_eq!(cfg_read(&mut b, 0x1d, 0, 4), 0x2934_8086);
        assert_eq!(cfg_read(&mut b, 0x1d, 0x08, 4) >> 8, 0x0c0300);
    }

    #[test]
    fn key_report_raises_the_usb_smi_and_waits_in_the_report_window() {
        let mut b = lab_board();
        uhci_setup(&mut b, 1 << 4);
        b.chipset.lab.as_mut().unwrap().uhci.queue_report(Ticks(500), [0, 0, 0x04, 0, 0, 0, 0, 0]);
        b.chipset.lab.as_mut().unwrap().uhci.queue_report(Ticks(600), [0, 0, 0x05, 0, 0, 0, 0, 0]);
        assert_eq!(b.next_wake(), Some(Ticks(500)));
        b.set_now(499);
        assert!(!b.pending().has(Pending::SMI));
        b.set_now(700);
        assert!(b.pending().has(Pending::SMI));
        assert!(!b.pending().has(Pending::IO_TRAP));
        assert_eq!(raised(&mut b), vec![SmiCause::Usb]);
        assert_ne!(inp(&mut b, 0x600 + SMI_STS, 4) & (1 << 3), 0, "LEGACY_USB_STS");
        assert_ne!(cfg_read(&mut b, 0x1d, 0xc0, 2) & (1 << 12), 0, "USBIRQS");
        assert_eq!(inp(&mut b, 0xc018, 1), 1);
        assert_eq!(inp(&mut b, 0xc020, 4), 0x0004_0000);
        b.ack_smi();
        out(&mut b, 0xc018, 1, 1);
        assert!(b.pending().has(Pending::SMI), "the second report was due: a new SMI");
        assert_eq!(inp(&mut b, 0xc022, 1), 0x05);
        b.ack_smi();
        out(&mut b, 0xc018, 1, 1);
        assert!(!b.pending().has(Pending::SMI));
        assert_eq!(inp(&mut b, 0x600 + SMI_STS, 4) & (1 << 3), 0);
        assert_eq!(inp(&mut b, 0xc018, 1), 0);
    }

    #[test]
    fn trapped_0x60_0x64_accesses_skip_the_i8042_and_raise_an_io_trap_smi() {
        let mut b = lab_board();
        uhci_setup(&mut b, 0b1111);
        out(&mut b, 0x64, 1, 0xaa); // controller self-test, trapped
        assert_eq!(b.pending().0 & (Pending::SMI | Pending::IO_TRAP), Pending::SMI | Pending::IO_TRAP);
        assert_eq!(raised(&mut b), vec![SmiCause::IoTrap { port: 0x64, write: true }]);
        b.ack_smi();
        assert_eq!(inp(&mut b, 0x64, 1), 0xff, "a trapped read returns all ones");
        assert_eq!(inp(&mut b, 0x60, 1), 0xff);
        assert_eq!(cfg_read(&mut b, 0x1d, 0xc0, 2) >> 8 & 0xf, 0b1101);
        cfg_write(&mut b, 0x1d, 0xc0, 2, 0x0f00);
        assert_eq!(inp(&mut b, 0x600 + SMI_STS, 4) & (1 << 3), 0, "status cleared, traps off");
        assert_eq!(inp(&mut b, 0x64, 1) & 1, 0, "the i8042 never saw the self-test command");
        out(&mut b, 0x64, 1, 0xaa);
        assert_eq!(inp(&mut b, 0x64, 1) & 1, 1);
        assert_eq!(inp(&mut b, 0x60, 1), 0x55);
    }

    #[test]
    fn rcba_iotr_traps_an_access_and_records_it() {
        use crate::chipset::q35::ich9_lpc::SMI_STS_MONITOR_STS;
        let mut b = board();
        pm(&mut b, SMI_EN_GBL_SMI_EN);
        let rcba = 0xfed1_c000u64;
        assert_eq!(rd(&mut b, rcba + 0x1e80, false), 0xffff_ffff, "RCBA disabled");
        cfg_write(&mut b, 0x1f, 0xf0, 4, rcba as u32 | 1);
        assert_eq!(rd(&mut b, rcba + 0x1e80, false), 0);
        // IOTR0: port 0x200 dword, byte 0, both directions.
        b.write(Access { addr: rcba + 0x1e80, size: 8, kind: AccessKind::Write, smm: false }, 1 | 0x200 | 1 << 32 | 1 << 49);
        assert_eq!(b.read(Access { addr: rcba + 0x1e80, size: 8, kind: AccessKind::Read, smm: false }), 1 | 0x200 | 1 << 32 | 1 << 49);
        inp(&mut b, 0x201, 1);
        assert!(!b.pending().has(Pending::SMI), "byte 1 is not enabled");
        out(&mut b, 0x200, 1, 0x5a);
        assert_eq!(b.pending().0 & (Pending::SMI | Pending::IO_TRAP), Pending::SMI | Pending::IO_TRAP);
        assert_eq!(raised(&mut b), vec![SmiCause::IoTrap { port: 0x200, write: true }]);
        assert_eq!(rd(&mut b, rcba + 0x1e00, false) & 0xf, 1, "TRSR");
        assert_eq!(rd(&mut b, rcba + 0x1e10, false), 0x200 | 1 << 16, "TRCR: write, byte 0");
        assert_eq!(rd(&mut b, rcba + 0x1e18, false), 0x5a, "TWDR");
        assert_ne!(inp(&mut b, 0x600 + SMI_STS, 4) & SMI_STS_MONITOR_STS, 0);
        b.ack_smi();
        assert_eq!(inp(&mut b, 0x200, 1), 0xff);
        assert_eq!(rd(&mut b, rcba + 0x1e10, false), 0x200 | 1 << 16 | 1 << 24, "TRCR: read");
        wr(&mut b, rcba + 0x1e10, 0, false);
        assert_eq!(rd(&mut b, rcba + 0x1e10, false), 0x200 | 1 << 16 | 1 << 24, "TRCR is read-only");
        wr(&mut b, rcba + 0x1e00, 1, false);
        assert_eq!(inp(&mut b, 0x600 + SMI_STS, 4) & SMI_STS_MONITOR_STS, 0);
        // Other RCBA registers are storage.
        wr(&mut b, rcba + 0x3410, 0x1234, false);
        assert_eq!(rd(&mut b, rcba + 0x3410, false), 0x1234);
        assert_eq!(b.read(Access { addr: rcba + 0x3ffe, size: 4, kind: AccessKind::Read, smm: false }), 0xffff_0000, "bytes past the window read all ones");
    }

    #[test]
    fn d_lck_violations_are_reported() {
        let mut b = board();
        cfg_write(&mut b, 0, 0x9d, 1, 0x1a);
        b.events.drain();
        cfg_write(&mut b, 0, 0x9d, 1, 0x4a);
        cfg_write(&mut b, 0, 0x9e, 1, 0x39);
        let ev = b.events.drain();
        let regs: Vec<_> = ev.iter().filter_map(|e| if let MachineEvent::SmramLockViolation { register, .. } = e { Some(*register) } else { None }).collect();
        assert_eq!(regs, vec!["SMRAM", "ESMRAMC"]);
    }

    #[test]
    fn writes_to_an_opened_tseg_from_outside_smm_are_reported_once_per_page() {
        let mut b = board();
        let tseg = RAM - (16 << 20);
        wr(&mut b, tseg, 1, false);
        assert!(b.events.drain().iter().all(|e| !matches!(e, MachineEvent::SmramWrittenOutsideSmm { .. })), "never enabled: not watched");
        cfg_write(&mut b, 0, 0x9e, 1, 0x07);
        cfg_write(&mut b, 0, 0x9d, 1, 0x0a);
        wr(&mut b, tseg, 2, false);
        assert_eq!(rd(&mut b, tseg, true), 1, "closed: dropped");
        cfg_write(&mut b, 0, 0x9e, 1, 0x06); // T_EN cleared: TSEG is plain RAM
        b.events.drain();
        assert!(b.host_page(tseg + 0x1000, AccessKind::Write, false).is_none(), "writes must go through the board");
        assert!(b.host_page(tseg + 0x1000, AccessKind::Read, false).is_some());
        assert!(b.host_page(tseg + 0x1000, AccessKind::Write, true).is_some());
        wr(&mut b, tseg + 0x1008, 3, false);
        wr(&mut b, tseg + 0x1010, 4, false);
        wr(&mut b, tseg + 0x2000, 5, true);
        let ev = b.events.drain();
        let hits: Vec<_> = ev.iter().filter_map(|e| if let MachineEvent::SmramWrittenOutsideSmm { addr, .. } = e { Some(*addr) } else { None }).collect();
        assert_eq!(hits, vec![tseg + 0x1008]);
        assert_eq!(rd(&mut b, tseg + 0x1010, false), 4);
        assert!(b.host_page(tseg - 0x1000, AccessKind::Write, false).is_some(), "below TSEG: unaffected");
    }

    #[test]
    fn secure_flash_takes_commands_from_smm_only_and_remaps_for_the_cpu() {
        use crate::devices::pflash_bank::{PflashBank, PflashImage};
        let mut b = board();
        let code = PflashImage::from_bytes(std::path::Path::new("code.fd"), vec![0xc3; 64 << 10], true).unwrap();
        let vars = PflashImage::from_bytes(std::path::Path::new("vars.fd"), vec![0x5a; 16 << 10], false).unwrap();
        b.pflash = Some(PflashBank::new(vec![code, vars], true).unwrap());
        b.take_flush();
        let vars_base = (1u64 << 32) - (80 << 10);
        let byte = |b: &mut Q35, addr: u64, smm: bool| b.read(Access { addr, size: 1, kind: AccessKind::Read, smm });
        let poke = |b: &mut Q35, addr: u64, v: u64, smm: bool| b.write(Access { addr, size: 1, kind: AccessKind::Write, smm }, v);
        assert_eq!(byte(&mut b, 0xffff_fff0, false), 0xc3, "unit 0 ends at 4 GiB");
        assert_eq!(byte(&mut b, vars_base, false), 0x5a, "unit 1 right below it");
        assert!(b.host_page(vars_base, AccessKind::Read, true).is_some(), "read-array mode: direct pages");
        // From outside SMM: refused, reported once per block, the array unchanged.
        for _ in 0..2 {
            poke(&mut b, vars_base + 1, 0x10, false);
            poke(&mut b, vars_base + 1, 0x00, false);
        }
        let refused: Vec<_> = b.events.drain().into_iter().filter(|e| matches!(e, MachineEvent::PflashWriteRefused { unit: 1, .. })).collect();
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(byte(&mut b, vars_base + 1, false), 0x5a);
        assert_eq!(b.pflash.as_ref().unwrap().writes_refused(), 4);
        // From SMM, OVMF's probe: clear status, read status (0x00), back to the array.
        poke(&mut b, vars_base, 0x50, true);
        poke(&mut b, vars_base, 0x70, true);
        assert!(b.pending().has(Pending::STOP), "the CPU must drop its direct pages now");
        assert!(b.take_flush());
        assert!(b.host_page(vars_base, AccessKind::Read, true).is_none(), "status mode: reads go through the board");
        assert_eq!(byte(&mut b, vars_base, true), 0x00, "status after clear status");
        assert_eq!(byte(&mut b, vars_base, false), 0x5a, "outside SMM a secure part shows the array");
        // Program a byte, then read the array again.
        poke(&mut b, vars_base + 2, 0x10, true);
        poke(&mut b, vars_base + 2, 0xa5, true);
        assert_eq!(byte(&mut b, vars_base + 2, true), 0x80, "ready");
        poke(&mut b, vars_base + 2, 0xff, true);
        assert_eq!(byte(&mut b, vars_base + 2, true), 0xa5);
        let bank = b.pflash.as_ref().unwrap();
        assert!(bank.units()[1].flash.modified() && !bank.units()[0].flash.modified());
        assert_eq!(bank.writes_smm(), 5);
        // The read-only code unit fails a program.
        poke(&mut b, 0xffff_0000, 0x10, true);
        poke(&mut b, 0xffff_0000, 0x00, true);
        assert_eq!(byte(&mut b, 0xffff_0000, true) & 0x90, 0x90, "ready, program error");
        poke(&mut b, 0xffff_0000, 0xff, true);
        assert_eq!(byte(&mut b, 0xffff_0000, true), 0xc3);
        assert_eq!(b.pflash.as_ref().unwrap().units()[0].flash.writes_failed, 1);
    }

    #[test]
    fn unmapped_ports_and_memory_read_all_ones() {
        let mut b = board();
        assert_eq!(inp(&mut b, 0x1234, 2), 0xffff);
        assert_eq!(inp(&mut b, 0xcf9, 1), 0x00, "RST_CNT (reset control) at reset");
        assert_eq!(rd(&mut b, 0xd0000, false), 0xffff_ffff);
        assert_eq!(rd(&mut b, 0xf000_0000, false), 0xffff_ffff);
        assert_eq!(b.read(Access { addr: 0xffff_fff0, size: 8, kind: AccessKind::Fetch, smm: false }), 0x9090_9090_9090_9090);
    }

    use proptest::prelude::*;

    /// One guest access of any kind, size and value to the places the lab hardware lives.
    #[derive(Clone, Debug)]
    enum Poke {
        Out(u16, u8, u32, bool),
        In(u16, u8, bool),
        Config(u8, u8, u8, u32),
        Mmio(u64, u8, u64, bool),
        Advance(u32),
    }

    fn poke() -> impl Strategy<Value = Poke> {
        let port = prop_oneof![0x600u16..0x680, 0x290u16..0x298, 0x5fu16..0x66, 0x2f0u16..0x300, 0xc000u16..0xc040, any::<u16>()];
        let size = prop_oneof![Just(1u8), Just(2u8), Just(4u8), 0u8..9];
        prop_oneof![
            (port.clone(), size.clone(), any::<u32>(), any::<bool>()).prop_map(|(p, s, v, smm)| Poke::Out(p, s, v, smm)),
            (port, size.clone(), any::<bool>()).prop_map(|(p, s, smm)| Poke::In(p, s, smm)),
            (prop_oneof![Just(0u8), Just(0x1du8), Just(0x1fu8)], any::<u8>(), size.clone(), any::<u32>()).prop_map(|(d, r, s, v)| Poke::Config(d, r, s, v)),
            (prop_oneof![0xfed1_c000u64..0xfed2_0000, 0xfffe_0000u64..0x1_0000_0000, 0x7f0_0000u64..0x800_0000], size, any::<u64>(), any::<bool>())
                .prop_map(|(a, s, v, smm)| Poke::Mmio(a, s, v, smm)),
            (1u32..5_000_000).prop_map(Poke::Advance),
        ]
    }

    proptest! {
        /// Whatever the guest does to the lab hardware's registers, in any size, inside or
        /// outside SMM, and however time passes, the board answers without panicking.
        #[test]
        fn lab_hardware_survives_any_register_traffic(pokes in proptest::collection::vec(poke(), 1..200)) {
            let mut b = lab_board();
            b.chipset.enable_lab_hardware();
            let mut now = 0u64;
            for p in pokes {
                match p {
                    Poke::Out(port, size, v, smm) => b.io_out(Access { addr: port as u64, size, kind: AccessKind::IoOut, smm }, v),
                    Poke::In(port, size, smm) => {
                        b.io_in(Access { addr: port as u64, size, kind: AccessKind::IoIn, smm });
                    }
                    Poke::Config(dev, reg, size, v) => cfg_write(&mut b, dev, reg, size.clamp(1, 4), v),
                    Poke::Mmio(a, size, v, smm) => {
                        let size = size.clamp(1, 8);
                        b.write(Access { addr: a, size, kind: AccessKind::Write, smm }, v);
                        b.read(Access { addr: a, size, kind: AccessKind::Read, smm });
                    }
                    Poke::Advance(t) => {
                        now += t as u64;
                        b.set_now(now);
                    }
                }
                if b.pending().has(Pending::SMI) {
                    b.ack_smi();
                }
                b.events.drain();
            }
        }
    }
}
