//! Guest memory as a bus master sees it, the one view every DMA-capable device gets (fw_cfg
//! DMA, AHCI, and any device added later): the DRAM map ([`DramMap::reach`]) decided as for a
//! CPU access outside SMM, so DMA cannot reach closed SMRAM (the A/B segment shows the PCI/VGA
//! side, TSEG is a hole), the ROM side of PAM, or device registers. QEMU 7.2 does the same: its
//! DMA address space is the non-SMM one.
//!
//! * DRAM: read and written.
//! * The TSEG hole: claimed by the host bridge (QEMU's "tseg-blackhole"): reads all ones,
//!   writes dropped, no error.
//! * Anything else (the VGA window, PAM's ROM side, MMIO, nothing): a master abort, reads all
//!   ones, writes dropped, and the transfer reports failure.
//!
//! Every RAM range written is recorded ([`DmaWrites`]): the CPU sees only its own writes, so
//! the machine drops the code it decoded from those bytes before the CPU runs on.

use crate::memory::map::{DramMap, Reach};
use crate::memory::Ram;
use crate::pci::slots::Dma;
use cpu::AccessKind;
use std::ops::Range;

const PAGE: u64 = 0x1000;

/// Physical ranges bus masters wrote in RAM since the machine last dropped decoded code there.
///
/// The ranges are bus addresses. A bus master decides as a CPU outside SMM, and for a given
/// SMRAM configuration a RAM byte has one physical address (HSEG and the A/B segment never show
/// the same DRAM at once), so these are the addresses the CPU decoded the bytes from; an SMRAM
/// or PAM change flushes all decoded code anyway.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DmaWrites {
    ranges: Vec<Range<u64>>,
    /// Too many ranges to keep: drop all decoded code instead.
    overflow: bool,
}

/// Beyond this many separate ranges the whole decoded-code cache is dropped instead.
const MAX_RANGES: usize = 64;

impl DmaWrites {
    /// Records a write of `r`, merging it with the last range when they touch.
    pub fn add(&mut self, r: Range<u64>) {
        if r.is_empty() || self.overflow {
            return;
        }
        if let Some(last) = self.ranges.last_mut() {
            if r.start <= last.end && last.start <= r.end {
                *last = last.start.min(r.start)..last.end.max(r.end);
                return;
            }
        }
        if self.ranges.len() == MAX_RANGES {
            self.ranges.clear();
            self.overflow = true;
            return;
        }
        self.ranges.push(r);
    }

    /// Adds everything `other` recorded.
    pub fn merge(&mut self, other: &DmaWrites) {
        if other.overflow {
            self.ranges.clear();
            self.overflow = true;
        }
        for r in &other.ranges {
            self.add(r.clone());
        }
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty() && !self.overflow
    }

    /// The written ranges; None when there were too many to keep (treat as everything).
    pub fn ranges(&self) -> Option<&[Range<u64>]> {
        (!self.overflow).then_some(&self.ranges)
    }

    /// Drops the decoded code the writes may have made stale.
    pub fn invalidate(&self, cpu: &mut cpu::Cpu) {
        match self.ranges() {
            Some(rs) => rs.iter().for_each(|r| cpu.invalidate_code(r.clone())),
            None => cpu.flush_code(),
        }
    }
}

/// A bus master's view of RAM for the duration of one device access.
pub struct DmaView<'a> {
    ram: &'a mut Ram,
    map: DramMap,
    /// What this access wrote in RAM.
    pub written: DmaWrites,
    /// A range whose writes are reported page by page (the board's open-TSEG watch).
    watch: Option<Range<u64>>,
    /// The first address written in each watched page, in order.
    pub watched: Vec<u64>,
}

impl<'a> DmaView<'a> {
    /// The view of `ram` under `map`.
    pub fn new(ram: &'a mut Ram, map: DramMap) -> Self {
        DmaView { ram, map, written: DmaWrites::default(), watch: None, watched: Vec::new() }
    }

    /// Also reports the pages of `watch` that writes land in ([`DmaView::watched`]).
    pub fn watching(mut self, watch: Option<Range<u64>>) -> Self {
        self.watch = watch;
        self
    }

    /// Splits `[addr, addr + len)` into page-bounded chunks: (address, offset into the buffer,
    /// length). Stops at the top of the address space. Every decision of the DRAM map is the
    /// same across a 4 KiB page (SMRAM windows, TSEG, PAM segments and the RAM size are all
    /// page-aligned).
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

    fn reach(&self, addr: u64, kind: AccessKind) -> Reach {
        self.map.reach(addr, kind, false)
    }
}

impl Dma for DmaView<'_> {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> bool {
        let mut ok = addr.checked_add(buf.len() as u64).is_some();
        buf.fill(0xff);
        for (a, off, n) in Self::chunks(addr, buf.len()) {
            ok &= match self.reach(a, AccessKind::Read) {
                Reach::Ram(o) => self.ram.read(o, &mut buf[off..off + n]),
                Reach::Hole => true,
                _ => false,
            };
        }
        ok
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> bool {
        let mut ok = addr.checked_add(data.len() as u64).is_some();
        for (a, off, n) in Self::chunks(addr, data.len()) {
            ok &= match self.reach(a, AccessKind::Write) {
                Reach::Ram(o) => {
                    let wrote = self.ram.write(o, &data[off..off + n]);
                    if wrote {
                        self.written.add(a..a + n as u64);
                        // A chunk lies inside one page: one report per page.
                        let page = a & !(PAGE - 1);
                        if self.watch.as_ref().is_some_and(|w| w.contains(&a)) && self.watched.last().is_none_or(|&l| l & !(PAGE - 1) != page) {
                            self.watched.push(a);
                        }
                    }
                    wrote
                }
                Reach::Hole => true,
                _ => false,
            };
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::pam::Pam;
    use crate::smram::SmramConfig;

    fn map(smram: SmramConfig) -> DramMap {
        DramMap { smram, pam: Pam::default(), ram_len: 2 << 20 }
    }

    #[test]
    fn dma_reaches_ram_but_not_holes_or_closed_smram() {
        let mut ram = Ram::new(2 << 20);
        let mut d = DmaView::new(&mut ram, map(SmramConfig::default()));
        assert!(!d.write(0x9_fffe, &[1, 2, 3, 4]), "runs into the VGA hole");
        let mut b = [0u8; 4];
        assert!(!d.read(0x9_fffe, &mut b));
        assert_eq!(b, [1, 2, 0xff, 0xff]);
        assert!(d.write(0x7c00, &[9; 600]));
        assert_eq!(d.written.ranges(), Some(&[0x9_fffe..0xa_0000, 0x7c00..0x7e58][..]));
        assert!(!d.read(u64::MAX - 1, &mut b), "no wrap-around");
        assert!(!d.write(0x20_0000, &[0]), "past the end of RAM");
        assert!(!d.write(0xb_8000, &[0]), "the VGA text buffer is not DRAM");
    }

    #[test]
    fn dma_sees_smram_as_a_cpu_outside_smm_does() {
        let mut ram = Ram::new(2 << 20);
        ram.write(0xa_0000, &[0x5a; 16]);
        ram.write(0x1f_0000, &[0x11; 16]);
        let tseg = SmramConfig { g_smrame: true, t_en: true, tseg_size: 0x1_0000, low_ram_top: 2 << 20, ..Default::default() };
        let mut d = DmaView::new(&mut ram, map(tseg));
        let mut b = [0u8; 4];
        assert!(!d.write(0xa_0000, &[1; 4]), "closed A/B segment: the VGA side");
        assert!(!d.read(0xa_0000, &mut b));
        assert_eq!(b, [0xff; 4]);
        assert!(d.write(0x1f_0008, &[2; 4]), "TSEG: a claimed hole, writes dropped");
        assert!(d.read(0x1f_0000, &mut b));
        assert_eq!(b, [0xff; 4], "TSEG reads as all ones");
        assert!(!d.write(0xe_0000, &[3; 4]), "PAM 0: the ROM side");
        assert!(d.written.is_empty());
        let open = SmramConfig { d_open: true, ..tseg };
        let mut d = DmaView::new(&mut ram, map(open));
        assert!(d.write(0xa_0000, &[1; 4]), "open A/B segment: DRAM");
        let locked = SmramConfig { d_lck: true, ..open };
        let mut d = DmaView::new(&mut ram, map(locked));
        assert!(!d.write(0xa_0004, &[1; 4]), "D_LCK: never open");
        assert_eq!(ram.to_vec(0xa_0000..0xa_0008), [1, 1, 1, 1, 0x5a, 0x5a, 0x5a, 0x5a]);
        assert_eq!(ram.to_vec(0x1f_0000..0x1f_0010), [0x11; 16]);
    }

    #[test]
    fn written_ranges_merge_and_overflow_to_everything() {
        let mut w = DmaWrites::default();
        w.add(0x1000..0x1010);
        w.add(0x1010..0x1020);
        w.add(0x0ff0..0x1000);
        assert_eq!(w.ranges(), Some(std::slice::from_ref(&(0x0ff0..0x1020))));
        for k in 0..MAX_RANGES as u64 {
            w.add(0x10_0000 + 0x100 * k..0x10_0000 + 0x100 * k + 1);
        }
        assert_eq!(w.ranges(), None);
        assert!(!w.is_empty());
    }
}
