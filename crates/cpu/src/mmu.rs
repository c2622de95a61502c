//! Linear-to-physical translation: paging (32-bit, PAE, 4-level; 4K/2M/4M/1G pages; WP, NX,
//! U/S, accessed and dirty bits; Intel SDM vol. 3, chapter 4), a soft TLB with host pointers,
//! and the memory accessors every instruction uses.
//!
//! The TLB is flushed whenever anything that decides a translation's outcome changes: CR0, CR3,
//! CR4, EFER, CPL, SMM entry or exit, A20, or the platform's memory map.

use crate::bus::{Access, AccessKind, Bus};
use crate::cr::*;
use crate::exception::{Exc, PF};
use crate::Cpu;
use std::ptr::NonNull;

const TLB_ENTRIES: usize = 256;

#[derive(Clone, Copy)]
pub(crate) struct TlbEntry {
    /// Linear page | 1 when valid.
    tag: u64,
    /// Physical page.
    phys: u64,
    /// Host pointer to the page, or null when accesses must go through the bus.
    host: *mut u8,
}

const EMPTY: TlbEntry = TlbEntry { tag: 0, phys: 0, host: std::ptr::null_mut() };

/// Separate direct-mapped TLBs for reads, writes and fetches, so that each entry already holds
/// the permission check's outcome for its kind.
///
/// An entry's tag is its linear page ORed with the TLB's current epoch (an odd number below
/// 4096), so a flush is one increment; the arrays are cleared only when the epoch wraps. SMM
/// entry and RSM flush, so this keeps the SMI round trip cheap.
pub(crate) struct Tlb {
    read: [TlbEntry; TLB_ENTRIES],
    write: [TlbEntry; TLB_ENTRIES],
    fetch: [TlbEntry; TLB_ENTRIES],
    epoch: u64,
}

impl Tlb {
    pub(crate) fn new() -> Self {
        Tlb { read: [EMPTY; TLB_ENTRIES], write: [EMPTY; TLB_ENTRIES], fetch: [EMPTY; TLB_ENTRIES], epoch: 1 }
    }
    pub(crate) fn flush(&mut self) {
        self.epoch += 2;
        if self.epoch >= 0x1000 {
            self.read = [EMPTY; TLB_ENTRIES];
            self.write = [EMPTY; TLB_ENTRIES];
            self.fetch = [EMPTY; TLB_ENTRIES];
            self.epoch = 1;
        }
    }
    #[inline(always)]
    fn tag(&self, lin: u64) -> u64 {
        (lin & !0xfff) | self.epoch
    }
    /// Drops the translations of one linear page (INVLPG).
    pub(crate) fn flush_page(&mut self, lin: u64) {
        let i = slot(lin);
        self.read[i] = EMPTY;
        self.write[i] = EMPTY;
        self.fetch[i] = EMPTY;
    }
    /// Drops the write translations that point at physical page `phys` (it now holds code).
    pub(crate) fn flush_phys_writes(&mut self, phys: u64) {
        for e in self.write.iter_mut() {
            if e.phys == phys {
                *e = EMPTY;
            }
        }
    }
}

#[inline(always)]
fn slot(lin: u64) -> usize {
    (lin >> 12) as usize & (TLB_ENTRIES - 1)
}

/// Marks a TLB entry's physical page as blocked by the CPU's own SMRAM protection (SMRR or
/// AMD ASeg/TSeg): reads return all ones, writes are dropped.
pub(crate) const BLOCKED: u64 = 1;

/// Page-table entry bits.
const P: u64 = 1;
const RW: u64 = 2;
const US: u64 = 4;
const A: u64 = 1 << 5;
const D: u64 = 1 << 6;
const PS: u64 = 1 << 7;
const NX: u64 = 1 << 63;

/// #PF error-code bits.
const PF_P: u32 = 1;
const PF_W: u32 = 2;
const PF_U: u32 = 4;
const PF_RSVD: u32 = 8;
const PF_I: u32 = 16;

/// Whether an access is made on behalf of user code (CPL 3) or is a supervisor access
/// (descriptor tables, TSS, interrupt frames at CPL < 3).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Priv {
    Current,
    Supervisor,
}

impl Cpu {
    #[inline]
    fn smm_access(&self, addr: u64, size: u8, kind: AccessKind) -> Access {
        Access { addr, size, kind, smm: self.smm }
    }

    /// Reads physical memory through the bus (page walks, descriptor caches).
    pub(crate) fn phys_read(&mut self, bus: &mut dyn Bus, addr: u64, size: u8) -> u64 {
        bus.read(self.smm_access(addr, size, AccessKind::Read))
    }

    pub(crate) fn phys_write(&mut self, bus: &mut dyn Bus, addr: u64, size: u8, v: u64) {
        self.note_phys_write(addr, size);
        bus.write(self.smm_access(addr, size, AccessKind::Write), v);
        // A write the platform must act on before the next access (a flash command that turns
        // reads from the array into reads of the status register, a remapped window): the
        // block ends after this instruction, so that the next one sees the new map.
        if bus.pending().has(crate::bus::Pending::STOP) {
            self.end_block = true;
        }
    }

    /// Translates a linear address, walking the page tables and setting A/D bits.
    #[inline]
    pub(crate) fn translate(&mut self, bus: &mut dyn Bus, lin: u64, kind: AccessKind, pv: Priv) -> Result<u64, Exc> {
        self.walk(bus, lin, kind, pv, true)
    }

    /// The physical address a supervisor read of `lin` reaches now, as a debugger asks: the
    /// page tables are walked as the CPU would walk them (SMRAM decoded as for this CPU), but no
    /// accessed or dirty bit is set, no TLB entry filled and CR2 is left as it was. None when
    /// the read would fault.
    pub fn probe_translate(&mut self, bus: &mut dyn Bus, lin: u64) -> Option<u64> {
        let cr2 = self.cr2;
        let r = self.walk(bus, lin, AccessKind::Read, Priv::Supervisor, false);
        self.cr2 = cr2;
        r.ok()
    }

    /// The walk behind [`Cpu::translate`]; `set_bits` false leaves the A/D bits alone.
    fn walk(&mut self, bus: &mut dyn Bus, lin: u64, kind: AccessKind, pv: Priv, set_bits: bool) -> Result<u64, Exc> {
        // A20 masking does not apply in SMM.
        let a20 = if self.a20 || self.smm { u64::MAX } else { !(1u64 << 20) };
        if self.cr0 & CR0_PG == 0 {
            return Ok(lin & 0xffff_ffff & a20 | (lin & !0xffff_ffff & if self.long_mode() { u64::MAX } else { 0 }));
        }
        let user = pv == Priv::Current && self.cpl == 3;
        let write = kind == AccessKind::Write;
        let fetch = kind == AccessKind::Fetch;
        let fault = |cpu: &mut Cpu, present: bool, rsvd: bool| {
            cpu.cr2 = lin;
            let mut code = 0;
            if present {
                code |= PF_P;
            }
            if write {
                code |= PF_W;
            }
            if user {
                code |= PF_U;
            }
            if rsvd {
                code |= PF_RSVD | PF_P;
            }
            // I/D is reported only with PAE/4-level paging and NXE (no SMEP here); SDM 4.7.
            if fetch && cpu.efer & EFER_NXE != 0 && cpu.cr4 & CR4_PAE != 0 {
                code |= PF_I;
            }
            Exc::code(PF, code)
        };
        let nxe = self.efer & EFER_NXE != 0;
        let maxphys: u64 = 0x000f_ffff_ffff_f000;
        // Walk: collect (entry address, entry) per level.
        let mut entries: [(u64, u64); 4] = [(0, 0); 4];
        let mut n = 0;
        let (page_base, page_mask);
        if self.cr4 & CR4_PAE == 0 {
            // 32-bit paging.
            let pde_addr = (self.cr3 & 0xffff_f000) | ((lin >> 20) & 0xffc);
            let pde = self.phys_read(bus, pde_addr, 4);
            if pde & P == 0 {
                return Err(fault(self, false, false));
            }
            entries[n] = (pde_addr, pde);
            n += 1;
            if pde & PS != 0 && self.cr4 & CR4_PSE != 0 {
                page_base = (pde & 0xffc0_0000) | ((pde >> 13) & 0xff) << 32;
                page_mask = 0x3f_ffff;
            } else {
                let pte_addr = (pde & 0xffff_f000) | ((lin >> 10) & 0xffc);
                let pte = self.phys_read(bus, pte_addr, 4);
                if pte & P == 0 {
                    return Err(fault(self, false, false));
                }
                entries[n] = (pte_addr, pte);
                n += 1;
                page_base = pte & 0xffff_f000;
                page_mask = 0xfff;
            }
        } else {
            let mut table;
            let mut level;
            if self.long_mode() {
                table = self.cr3 & maxphys;
                level = 4;
            } else {
                let pdpte_addr = (self.cr3 & 0xffff_ffe0) + ((lin >> 30) & 3) * 8;
                let pdpte = self.phys_read(bus, pdpte_addr, 8);
                if pdpte & P == 0 {
                    return Err(fault(self, false, false));
                }
                table = pdpte & maxphys;
                level = 2;
            }
            loop {
                let shift = 12 + 9 * (level - 1);
                let addr = table + ((lin >> shift) & 0x1ff) * 8;
                let e = self.phys_read(bus, addr, 8);
                if e & P == 0 {
                    return Err(fault(self, false, false));
                }
                if !nxe && e & NX != 0 {
                    return Err(fault(self, true, true));
                }
                entries[n] = (addr, e);
                n += 1;
                if level == 1 || (e & PS != 0 && (level == 2 || (level == 3 && self.long_mode()))) {
                    let m = (1u64 << shift) - 1;
                    page_base = e & maxphys & !m;
                    page_mask = m;
                    break;
                }
                if e & PS != 0 && level == 4 {
                    return Err(fault(self, true, true));
                }
                table = e & maxphys;
                level -= 1;
            }
        }
        // Permissions: every level must allow the access.
        let mut allow_w = true;
        let mut allow_u = true;
        let mut allow_x = true;
        for &(_, e) in &entries[..n] {
            allow_w &= e & RW != 0;
            allow_u &= e & US != 0;
            allow_x &= !(nxe && e & NX != 0);
        }
        if user && !allow_u {
            return Err(fault(self, true, false));
        }
        if write && !allow_w && (user || self.cr0 & CR0_WP != 0) {
            return Err(fault(self, true, false));
        }
        if fetch && !allow_x {
            return Err(fault(self, true, false));
        }
        // Accessed bits on every level, dirty on the leaf for writes.
        for (k, &(addr, e)) in entries[..n].iter().enumerate().filter(|_| set_bits) {
            let leaf = k == n - 1;
            let mut ne = e | A;
            if leaf && write {
                ne |= D;
            }
            if ne != e {
                let sz = if self.cr4 & CR4_PAE == 0 { 4 } else { 8 };
                self.phys_write(bus, addr, sz, ne);
            }
        }
        Ok((page_base | (lin & page_mask)) & a20)
    }

    /// Translation for a whole page, filling the TLB of `kind`.
    #[inline(never)]
    fn tlb_fill(&mut self, bus: &mut dyn Bus, lin: u64, kind: AccessKind, pv: Priv) -> Result<TlbEntry, Exc> {
        let phys = self.translate(bus, lin, kind, pv)?;
        let mut page = phys & !0xfff;
        let mut host = if self.cpu_smram_view(page, kind == AccessKind::Fetch) == crate::smm::CpuSmramView::Blocked {
            // SMRR (or AMD ASeg/TSeg) hides this page from the CPU: mark it.
            page |= BLOCKED;
            std::ptr::null_mut()
        } else {
            bus.host_page(page, kind, self.smm).map(NonNull::as_ptr).unwrap_or(std::ptr::null_mut())
        };
        if kind == AccessKind::Write && self.cache.has_code(page) {
            host = std::ptr::null_mut();
        }
        let e = TlbEntry { tag: self.tlb.tag(lin), phys: page, host };
        // Supervisor-only accesses by CPL-3 code are not cached: the entry would be used by
        // user accesses to the same page.
        if pv == Priv::Current || self.cpl != 3 {
            let i = slot(lin);
            match kind {
                AccessKind::Read => self.tlb.read[i] = e,
                AccessKind::Write => self.tlb.write[i] = e,
                _ => self.tlb.fetch[i] = e,
            }
        }
        Ok(e)
    }

    /// Reads `size` bytes at a linear address.
    #[inline(always)]
    pub fn read_lin(&mut self, bus: &mut dyn Bus, lin: u64, size: u8) -> Result<u64, Exc> {
        let off = (lin & 0xfff) as usize;
        if off + size as usize <= 4096 {
            let e = &self.tlb.read[slot(lin)];
            if e.tag == self.tlb.tag(lin) && !e.host.is_null() {
                // SAFETY: host points at a live 4 KiB page (Bus::host_page contract) and
                // off + size <= 4096.
                return Ok(unsafe { load(e.host.add(off), size) });
            }
        }
        self.read_lin_slow(bus, lin, size, AccessKind::Read, Priv::Current)
    }

    /// Writes `size` bytes at a linear address.
    #[inline(always)]
    pub fn write_lin(&mut self, bus: &mut dyn Bus, lin: u64, size: u8, v: u64) -> Result<(), Exc> {
        let off = (lin & 0xfff) as usize;
        if off + size as usize <= 4096 {
            let e = &self.tlb.write[slot(lin)];
            if e.tag == self.tlb.tag(lin) && !e.host.is_null() {
                // SAFETY: a non-null TLB host pointer is a live 4 KiB page (Bus::host_page
                // contract, valid until flush_tlb) and off + size <= 4096.
                unsafe { store(e.host.add(off), size, v) };
                return Ok(());
            }
        }
        self.write_lin_slow(bus, lin, size, v, Priv::Current)
    }

    /// A supervisor read (descriptor tables, TSS, IDT).
    pub(crate) fn read_lin_sys(&mut self, bus: &mut dyn Bus, lin: u64, size: u8) -> Result<u64, Exc> {
        self.read_lin_slow(bus, lin, size, AccessKind::Read, Priv::Supervisor)
    }

    /// A supervisor write.
    pub(crate) fn write_lin_sys(&mut self, bus: &mut dyn Bus, lin: u64, size: u8, v: u64) -> Result<(), Exc> {
        self.write_lin_slow(bus, lin, size, v, Priv::Supervisor)
    }

    /// A write as user (`user`) or supervisor, for interrupt frames.
    pub(crate) fn write_lin_priv(&mut self, bus: &mut dyn Bus, lin: u64, size: u8, v: u64, user: bool) -> Result<(), Exc> {
        if user {
            self.write_lin(bus, lin, size, v)
        } else {
            self.write_lin_sys(bus, lin, size, v)
        }
    }

    #[inline(never)]
    fn read_lin_slow(&mut self, bus: &mut dyn Bus, lin: u64, size: u8, kind: AccessKind, pv: Priv) -> Result<u64, Exc> {
        let off = lin & 0xfff;
        if off + size as u64 > 4096 {
            // Crosses a page: byte by byte, low page first.
            let mut v = 0u64;
            for k in 0..size as u64 {
                let b = self.read_lin_slow(bus, lin.wrapping_add(k), 1, kind, pv)?;
                v |= b << (8 * k);
            }
            return Ok(v);
        }
        let e = self.tlb_fill(bus, lin, kind, pv)?;
        if !e.host.is_null() {
            // SAFETY: tlb_fill's host pointer is a live 4 KiB page (Bus::host_page contract) and
            // the page-crossing case returned above, so off + size <= 4096.
            return Ok(unsafe { load(e.host.add(off as usize), size) });
        }
        if e.phys & BLOCKED != 0 {
            return Ok(u64::MAX >> (64 - 8 * size as u32));
        }
        Ok(bus.read(self.smm_access(e.phys | off, size, kind)))
    }

    #[inline(never)]
    fn write_lin_slow(&mut self, bus: &mut dyn Bus, lin: u64, size: u8, v: u64, pv: Priv) -> Result<(), Exc> {
        let off = lin & 0xfff;
        if off + size as u64 > 4096 {
            // Check both pages before writing anything, so a #PF leaves memory unchanged.
            let second = (lin | 0xfff).wrapping_add(1);
            self.translate(bus, lin, AccessKind::Write, pv)?;
            self.translate(bus, second, AccessKind::Write, pv)?;
            for k in 0..size as u64 {
                self.write_lin_slow(bus, lin.wrapping_add(k), 1, v >> (8 * k), pv)?;
            }
            return Ok(());
        }
        let e = self.tlb_fill(bus, lin, AccessKind::Write, pv)?;
        if !e.host.is_null() {
            // SAFETY: tlb_fill's host pointer is a live 4 KiB page (Bus::host_page contract) and
            // the page-crossing case returned above, so off + size <= 4096.
            unsafe { store(e.host.add(off as usize), size, v) };
            return Ok(());
        }
        if e.phys & BLOCKED != 0 {
            return Ok(());
        }
        self.phys_write(bus, e.phys | off, size, v);
        Ok(())
    }

    /// A write reached physical memory outside the TLB fast path: if the page holds decoded
    /// code, drop that code and end the current block (self-modifying code).
    pub(crate) fn note_phys_write(&mut self, addr: u64, size: u8) {
        let end = addr.wrapping_add(size as u64 - 1);
        let first_len = if (addr ^ end) & !0xfff == 0 { size as u64 } else { 0x1000 - (addr & 0xfff) };
        if self.cache.write_hits_code(addr, first_len) {
            self.cache.invalidate_page(addr & !0xfff);
            self.end_block = true;
        }
        if first_len < size as u64 && self.cache.write_hits_code(end & !0xfff, size as u64 - first_len) {
            self.cache.invalidate_page(end & !0xfff);
            self.end_block = true;
        }
    }

    /// Translates a linear page for instruction fetch, returning the physical page address and
    /// the host pointer if the page is direct memory.
    pub(crate) fn fetch_page(&mut self, bus: &mut dyn Bus, lin: u64) -> Result<(u64, *mut u8), Exc> {
        let e = &self.tlb.fetch[slot(lin)];
        if e.tag == self.tlb.tag(lin) {
            return Ok((e.phys, e.host));
        }
        let e = self.tlb_fill(bus, lin, AccessKind::Fetch, Priv::Current)?;
        Ok((e.phys, e.host))
    }

    /// Reads code bytes at a linear address through the bus when the page has no host pointer.
    pub(crate) fn fetch_bytes(&mut self, bus: &mut dyn Bus, lin: u64, out: &mut [u8]) -> Result<(), Exc> {
        for (k, b) in out.iter_mut().enumerate() {
            let a = lin.wrapping_add(k as u64);
            let (phys, host) = self.fetch_page(bus, a)?;
            *b = if phys & BLOCKED != 0 {
                0xff
            } else if host.is_null() {
                bus.read(self.smm_access(phys | (a & 0xfff), 1, AccessKind::Fetch)) as u8
            } else {
                // SAFETY: fetch_page's host pointer is a live 4 KiB page (Bus::host_page contract)
                // and the offset is below 4096.
                unsafe { *host.add((a & 0xfff) as usize) }
            };
        }
        Ok(())
    }

    /// Reads through segment `seg` at `offset`.
    #[inline(always)]
    pub fn read_seg(&mut self, bus: &mut dyn Bus, seg: usize, offset: u64, size: u8) -> Result<u64, Exc> {
        let lin = self.seg_linear(seg, offset, size, false)?;
        self.read_lin(bus, lin, size)
    }

    /// Writes through segment `seg` at `offset`.
    #[inline(always)]
    pub fn write_seg(&mut self, bus: &mut dyn Bus, seg: usize, offset: u64, size: u8, v: u64) -> Result<(), Exc> {
        let lin = self.seg_linear(seg, offset, size, true)?;
        self.write_lin(bus, lin, size, v)
    }
}

/// Reads `size` (1, 2, 4 or 8) little-endian bytes at `p`, which need not be aligned.
///
/// # Safety
/// `p .. p + size` must be valid for reads.
#[inline(always)]
unsafe fn load(p: *const u8, size: u8) -> u64 {
    // SAFETY: the caller guarantees `size` readable bytes at `p`; every read is unaligned.
    unsafe {
        match size {
            1 => *p as u64,
            2 => (p as *const u16).read_unaligned() as u64,
            4 => (p as *const u32).read_unaligned() as u64,
            _ => (p as *const u64).read_unaligned(),
        }
    }
}

/// Writes the low `size` (1, 2, 4 or 8) bytes of `v` at `p`, which need not be aligned.
///
/// # Safety
/// `p .. p + size` must be valid for writes.
#[inline(always)]
unsafe fn store(p: *mut u8, size: u8, v: u64) {
    // SAFETY: the caller guarantees `size` writable bytes at `p`; every write is unaligned.
    unsafe {
        match size {
            1 => *p = v as u8,
            2 => (p as *mut u16).write_unaligned(v as u16),
            4 => (p as *mut u32).write_unaligned(v as u32),
            _ => (p as *mut u64).write_unaligned(v),
        }
    }
}
