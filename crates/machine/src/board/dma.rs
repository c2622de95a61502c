//! Guest memory as a PCI bus master sees it: DRAM only, through the same SMRAM and PAM
//! decoding the CPU gets outside SMM. DMA cannot reach closed SMRAM (the A/B segment shows the
//! PCI/VGA side, TSEG is blocked), the ROM, or device registers; such transfers are master
//! aborts (reads all ones, writes dropped).

use crate::memory::pam::Pam;
use crate::memory::Ram;
use crate::pci::slots::Dma;
use crate::smram::{self, SmramConfig, Visibility};
use cpu::AccessKind;

const VGA_HOLE: std::ops::Range<u64> = 0xa_0000..0xc_0000;
const PAM_AREA: std::ops::Range<u64> = 0xc_0000..0x10_0000;
const PAGE: u64 = 0x1000;

/// A bus master's view of RAM for the duration of one device access.
pub struct DmaView<'a> {
    /// Guest RAM.
    pub ram: &'a mut Ram,
    /// The SMRAM decoding a non-SMM access sees.
    pub smram: SmramConfig,
    /// The PAM (shadow RAM) settings.
    pub pam: Pam,
    /// Some RAM was written (the CPU's decoded code may be stale).
    pub wrote: bool,
}

impl DmaView<'_> {
    /// The RAM offset a master access at `addr` reaches, if any.
    fn target(&self, addr: u64, write: bool) -> Option<u64> {
        let kind = if write { AccessKind::Write } else { AccessKind::Read };
        if smram::covers(&self.smram, addr) {
            match smram::route(&self.smram, addr, kind, false) {
                Visibility::Ram(o) => return Some(o),
                Visibility::Hole => return None,
                Visibility::Normal => {}
            }
        }
        if addr < VGA_HOLE.start {
            return Some(addr);
        }
        if VGA_HOLE.contains(&addr) {
            return None;
        }
        if PAM_AREA.contains(&addr) {
            let dram = if write { self.pam.write_dram(addr) } else { self.pam.read_dram(addr) };
            return dram.then_some(addr);
        }
        (addr < self.ram.len()).then_some(addr)
    }

    /// Splits `[addr, addr + len)` into page-bounded chunks: (address, offset into the buffer,
    /// length). Stops at the top of the address space.
    fn chunks(addr: u64, len: usize) -> impl Iterator<Item = (u64, usize, usize)> {
        let mut done = 0usize;
        std::iter::from_fn(move || {
            if done >= len {
                return None;
            }
            let a = addr.checked_add(done as u64)?;
            let n = ((PAGE - (a & (PAGE - 1))) as usize).min(len - done);
            let r = (a, done, n);
            done += n;
            Some(r)
        })
    }
}

impl Dma for DmaView<'_> {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> bool {
        let mut ok = addr.checked_add(buf.len() as u64).is_some();
        buf.fill(0xff);
        for (a, off, n) in Self::chunks(addr, buf.len()) {
            match self.target(a, false) {
                Some(o) if o + n as u64 <= self.ram.len() => {
                    buf[off..off + n].copy_from_slice(&self.ram.as_slice()[o as usize..o as usize + n]);
                }
                _ => ok = false,
            }
        }
        ok
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> bool {
        let mut ok = addr.checked_add(data.len() as u64).is_some();
        for (a, off, n) in Self::chunks(addr, data.len()) {
            match self.target(a, true) {
                Some(o) if o + n as u64 <= self.ram.len() => {
                    self.ram.as_mut_slice()[o as usize..o as usize + n].copy_from_slice(&data[off..off + n]);
                    self.wrote = true;
                }
                _ => ok = false,
            }
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dma_reaches_ram_but_not_holes_or_closed_smram() {
        let mut ram = Ram::new(1 << 20);
        let smram = SmramConfig::default();
        let mut d = DmaView { ram: &mut ram, smram, pam: Pam::default(), wrote: false };
        assert!(!d.write(0x9_fffe, &[1, 2, 3, 4]), "runs into the VGA hole");
        let mut b = [0u8; 4];
        assert!(!d.read(0x9_fffe, &mut b));
        assert_eq!(b, [1, 2, 0xff, 0xff]);
        assert!(d.write(0x7c00, &[9; 600]));
        assert!(d.wrote);
        assert!(!d.read(u64::MAX - 1, &mut b), "no wrap-around");
        assert!(!d.write(0x10_0000, &[0]), "past the end of RAM");
    }
}
