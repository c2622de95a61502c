//! Where a CPU or host access lands on the [`Platform`]: [`Platform::route`] turns an address
//! into a [`Target`] (DRAM as [`DramMap::reach`] decides it, the VGA text buffer, the ROM, the
//! system flash, the LAPIC and I/O APIC pages, ECAM, the chipset's and the hosted PCI
//! functions' memory windows), and the decoding it follows is re-read from the chipset after
//! every configuration write ([`Platform::refresh_decode`]).
//!
//! Memory map below 4 GiB: RAM from 0 to the top of low RAM, except 0xA0000-0xBFFFF (VGA/PCI
//! hole unless SMRAM routes it to RAM) and 0xC0000-0xFFFFF (PAM: RAM or the ROM side; the
//! ROM side shows the BIOS at 0xE0000-0xFFFFF and nothing at 0xC0000-0xDFFFF); TSEG inside
//! RAM as SMRAM says; HSEG at 0xFEDA0000; the LAPIC page; the ROM ending at 4 GiB. Unmapped
//! memory reads as all ones and drops writes.
//!
//! Which DRAM an access reaches (SMRAM through [`crate::smram::route`], the VGA window, PAM,
//! RAM) is decided by [`DramMap::reach`] for CPU accesses and bus masters alike.

use super::platform::Platform;
use crate::chipset::Chipset;
use crate::devices::ioapic::IOAPIC_BASE;
use crate::devices::lapic::LAPIC_BASE;
use crate::devices::pflash::WriteOutcome;
use crate::events::MachineEvent;
use crate::memory::map::{DramMap, Reach};
use crate::memory::pam::Pam;
use crate::smram::SmramConfig;
use cpu::{Access, AccessKind};

/// The VGA text buffer (colour, 32 KiB) on the PCI/VGA side of the A/B segment: plain
/// storage for every access that reaches that side (outside SMM, and SMM data under D_CLS);
/// the rest of the window reads as all ones.
pub(super) const VGA_TEXT: std::ops::Range<u64> = 0xb_8000..0xc_0000;

/// Where one access lands, as [`Platform::route`] decides it.
pub(super) enum Target {
    Ram(u64),
    Rom(u64),
    /// A system flash unit and the offset into it.
    Pflash(usize, u64),
    Lapic(u16),
    Ioapic(u16),
    /// ECAM: bus, device, function, register.
    Ecam(u8, u8, u8, u16),
    VgaText(u64),
    /// A memory BAR of a hosted PCI function (disks issue).
    PciMmio,
    /// Chipset registers in memory space (the ICH9 RCBA window).
    Chipset,
    /// Unmapped, a hole, or a dropped write.
    None,
}

/// Whether `a` runs past the end of its 4 KiB page: the board decodes each page on its own
/// (SMRAM, ROM and device windows are page-aligned), so such an access is split into bytes.
pub(super) fn crosses_page(a: &Access) -> bool {
    (a.addr & 0xfff) + u64::from(a.size.max(1)) > 0x1000
}

impl<C: Chipset> Platform<C> {
    /// The SMRAM decoding in force.
    pub fn smram_config(&self) -> SmramConfig {
        self.smram
    }

    /// The PAM decoding in force.
    pub fn pam(&self) -> Pam {
        self.pam
    }

    /// The DRAM decoding in force, for CPU accesses and bus masters.
    pub(super) fn dram_map(&self) -> DramMap {
        DramMap { smram: self.smram, pam: self.pam, ram_len: self.ram.len() }
    }

    /// Where an access at `addr` of `kind` (from SMM if `smm`) lands.
    pub(super) fn route(&self, addr: u64, kind: AccessKind, smm: bool) -> Target {
        let write = kind == AccessKind::Write;
        match self.dram_map().reach(addr, kind, smm) {
            Reach::Ram(o) => return Target::Ram(o),
            Reach::Hole => return Target::None,
            Reach::VgaWindow if VGA_TEXT.contains(&addr) => return Target::VgaText(addr - VGA_TEXT.start),
            Reach::VgaWindow => return Target::None,
            Reach::PamRom if write => return Target::None,
            Reach::PamRom => return self.rom.isa_offset(addr).map_or(Target::None, Target::Rom),
            Reach::Beyond => {}
        }
        if (LAPIC_BASE..LAPIC_BASE + 0x1000).contains(&addr) {
            return Target::Lapic((addr - LAPIC_BASE) as u16);
        }
        if (IOAPIC_BASE..IOAPIC_BASE + 0x1000).contains(&addr) {
            return Target::Ioapic((addr - IOAPIC_BASE) as u16);
        }
        if let Some(t) = self.ecam_target(addr) {
            return t;
        }
        if self.chipset.mmio_claims(addr) {
            return Target::Chipset;
        }
        if self.pci_slots.claims_mmio(addr) {
            return Target::PciMmio;
        }
        if let Some((unit, o)) = self.pflash.as_ref().and_then(|b| b.locate(addr)) {
            return Target::Pflash(unit, o);
        }
        if let Some(o) = self.rom.high_offset(addr) {
            // Flash: writes store only as the chipset's BIOS write protection allows.
            if !write || self.chipset.flash_writable(smm) {
                return Target::Rom(o);
            }
        }
        Target::None
    }

    /// The configuration register `addr` names when the chipset's ECAM window covers it.
    pub(super) fn ecam_target(&self, addr: u64) -> Option<Target> {
        let (base, size) = self.chipset.ecam()?;
        if !(base..base + size).contains(&addr) {
            return None;
        }
        let o = addr - base;
        Some(Target::Ecam((o >> 20) as u8, ((o >> 15) & 0x1f) as u8, ((o >> 12) & 7) as u8, (o & 0xfff) as u16))
    }

    /// Re-reads SMRAM and PAM from the chipset after a configuration write.
    pub(super) fn refresh_decode(&mut self) {
        let now = self.clock.now().0;
        let smram = self.chipset.smram(self.ram.len());
        if smram != self.smram {
            self.events.push(MachineEvent::SmramConfigChanged { old: self.smram, new: smram, icount: now });
            if smram.d_lck && !self.smram.d_lck {
                self.events.push(MachineEvent::SmramLocked { icount: now });
                self.smi_load.start(crate::clock::Ticks(now));
            }
            self.smram = smram;
            self.flush = true;
            self.watch_tseg();
        }
        let pam = self.chipset.pam();
        if pam != self.pam {
            self.events.push(MachineEvent::PamChanged { pam: pam.0, icount: now });
            self.pam = pam;
            self.flush = true;
        }
    }

    /// A write to a flash unit: a refused one (from outside SMM to a secure unit) is an event
    /// for the first refused write to each block; when the unit leaves read-array mode or its
    /// array changes, the CPU's direct pages and the code it decoded from flash are stale.
    pub(super) fn pflash_write(&mut self, unit: usize, off: u64, a: Access, value: u64) {
        let Some(bank) = self.pflash.as_mut() else { return };
        let outcome = bank.units_mut()[unit].flash.write(off, a.size, value, a.smm);
        if outcome == WriteOutcome::Refused && self.pflash_refused_blocks.insert(a.addr & !(crate::devices::pflash::BLOCK_SIZE - 1)) {
            self.events.push(MachineEvent::PflashWriteRefused { addr: a.addr, unit: unit as u8, icount: self.clock.now().0 });
        }
        if bank.take_stale() {
            self.flush = true;
        }
    }
}
