//! What a memory access reaches in the DRAM part of the address map: below 1 MiB (the A/B
//! segment and PAM), SMRAM (through [`smram::route`], the one place it is decided), and RAM up
//! to the top of low RAM. CPU accesses and bus masters both decide here, so a DMA transfer
//! meets exactly the rules of a CPU access outside SMM.

use super::pam::Pam;
use crate::smram::{self, SmramConfig, Visibility};
use cpu::AccessKind;
use std::ops::Range;

/// The PAM-controlled BIOS area (PAM registers: 0xC0000-0xFFFFF).
pub const PAM_AREA: Range<u64> = 0xc_0000..0x10_0000;

/// The decoding that decides DRAM accesses: SMRAM, PAM and the RAM size.
#[derive(Clone, Copy, Debug)]
pub struct DramMap {
    /// The SMRAM decoding in force.
    pub smram: SmramConfig,
    /// The PAM (shadow RAM) settings.
    pub pam: Pam,
    /// Bytes of RAM.
    pub ram_len: u64,
}

/// Where an access lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// DRAM at this offset.
    Ram(u64),
    /// A hole (TSEG outside SMM): reads return all ones, writes are dropped.
    Hole,
    /// The PCI/VGA side of the A/B segment.
    VgaWindow,
    /// The ROM side of a PAM segment (reads show the BIOS image where it appears; writes are
    /// dropped).
    PamRom,
    /// Not DRAM space: the board's devices, MMIO and the high ROM decide.
    Beyond,
}

impl DramMap {
    /// What an access of `kind` at `addr` reaches, from a CPU in SMM or not (bus masters:
    /// `smm` = false).
    #[inline(always)]
    pub fn reach(&self, addr: u64, kind: AccessKind, smm: bool) -> Reach {
        if smram::covers(&self.smram, addr) {
            match smram::route(&self.smram, addr, kind, smm) {
                Visibility::Ram(o) => return Reach::Ram(o),
                Visibility::Hole => return Reach::Hole,
                Visibility::VgaWindow => return Reach::VgaWindow,
                Visibility::Normal => {}
            }
        }
        if addr < smram::AB_SEG.start {
            return Reach::Ram(addr);
        }
        if PAM_AREA.contains(&addr) {
            let dram = if kind == AccessKind::Write { self.pam.write_dram(addr) } else { self.pam.read_dram(addr) };
            return if dram { Reach::Ram(addr) } else { Reach::PamRom };
        }
        if addr < self.ram_len {
            return Reach::Ram(addr);
        }
        Reach::Beyond
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_memory_vga_window_pam_and_the_top_of_ram() {
        let m = DramMap { smram: SmramConfig::default(), pam: Pam::default(), ram_len: 32 << 20 };
        assert_eq!(m.reach(0x9_ffff, AccessKind::Read, false), Reach::Ram(0x9_ffff));
        for smm in [false, true] {
            assert_eq!(m.reach(0xb_8000, AccessKind::Write, smm), Reach::VgaWindow, "no SMRAM: the window for everyone");
        }
        assert_eq!(m.reach(0xf_0000, AccessKind::Read, false), Reach::PamRom);
        assert_eq!(m.reach(0x10_0000, AccessKind::Read, false), Reach::Ram(0x10_0000));
        assert_eq!(m.reach(32 << 20, AccessKind::Read, false), Reach::Beyond);
    }
}
