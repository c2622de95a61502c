//! Segment registers: the descriptor cache, descriptor loads and the checks on them
//! (Intel SDM vol. 3, 3.4 and 5.4-5.8).

use crate::bus::Bus;
use crate::exception::{Exc, GP, NP, SS};
use crate::{sreg, Cpu};

/// A segment register with its hidden descriptor cache.
///
/// `attr` packs the descriptor's access byte (bits 0-7: type, S, DPL, P) and flags nibble
/// (bits 8-11: AVL, L, D/B, G), the 12-bit "attrib" form the AMD64 save-state map uses.
/// Bit 12 marks an unusable (null-loaded) register.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// The selector last loaded.
    pub selector: u16,
    /// Base address from the descriptor cache.
    pub base: u64,
    /// Limit in bytes (granularity already applied).
    pub limit: u32,
    /// Attributes in the form described above.
    pub attr: u16,
}

/// Present, DPL 0, read/write accessed data: what real mode loads leave behind.
pub const ATTR_DATA16: u16 = 0x93;
/// Present, DPL 0, execute/read accessed code, 16-bit.
pub const ATTR_CODE16: u16 = 0x9b;
/// The register was loaded with a null selector.
pub const ATTR_UNUSABLE: u16 = 1 << 12;

impl Segment {
    /// A real-mode segment for `selector` (base = selector * 16, 64 KiB limit).
    pub fn real(selector: u16) -> Self {
        Segment { selector, base: (selector as u64) << 4, limit: 0xffff, attr: ATTR_DATA16 }
    }
    /// Descriptor type field (bits 0-3).
    #[inline]
    pub fn typ(&self) -> u8 {
        (self.attr & 0xf) as u8
    }
    /// S bit: code/data rather than system.
    #[inline]
    pub fn s(&self) -> bool {
        self.attr & 0x10 != 0
    }
    /// Descriptor privilege level.
    #[inline]
    pub fn dpl(&self) -> u8 {
        ((self.attr >> 5) & 3) as u8
    }
    /// The present bit.
    #[inline]
    pub fn present(&self) -> bool {
        self.attr & 0x80 != 0
    }
    /// L bit: a 64-bit code segment.
    #[inline]
    pub fn long(&self) -> bool {
        self.attr & 0x200 != 0
    }
    /// D/B bit: 32-bit default size.
    #[inline]
    pub fn big(&self) -> bool {
        self.attr & 0x400 != 0
    }
    /// Whether it is a code segment (S set, type bit 3 set).
    #[inline]
    pub fn code(&self) -> bool {
        self.s() && self.typ() & 8 != 0
    }
    /// Whether the register was loaded with a null selector (and so cannot be used).
    #[inline]
    pub fn unusable(&self) -> bool {
        self.attr & ATTR_UNUSABLE != 0
    }

    /// Decodes an 8-byte descriptor (the low 8 bytes for system descriptors in long mode).
    pub fn from_descriptor(selector: u16, raw: u64) -> Self {
        let lo = raw as u32;
        let hi = (raw >> 32) as u32;
        let base = ((lo >> 16) | ((hi & 0xff) << 16) | (hi & 0xff00_0000)) as u64;
        let mut limit = (lo & 0xffff) | (hi & 0x000f_0000);
        let attr = (((hi >> 8) & 0xff) | ((hi >> 12) & 0xf00)) as u16;
        if attr & 0x800 != 0 {
            limit = (limit << 12) | 0xfff;
        }
        Segment { selector, base, limit, attr }
    }
}

impl Cpu {
    /// Reads the 8-byte descriptor for `selector` from the GDT or LDT. A selector beyond the
    /// table limit raises `#GP(selector)` (or the vector given in `vec`).
    pub(crate) fn read_descriptor(&mut self, bus: &mut dyn Bus, selector: u16, vec: u8) -> Result<u64, Exc> {
        let (base, limit) = if selector & 4 != 0 {
            if self.ldtr.unusable() || !self.ldtr.present() {
                return Err(Exc::code(vec, selector as u32 & 0xfffc));
            }
            (self.ldtr.base, self.ldtr.limit as u64)
        } else {
            (self.gdtr.base, self.gdtr.limit as u64)
        };
        let off = (selector & 0xfff8) as u64;
        if off + 7 > limit {
            return Err(Exc::code(vec, selector as u32 & 0xfffc));
        }
        self.read_lin_sys(bus, base.wrapping_add(off), 8)
    }

    /// Reads the high 8 bytes of a 16-byte long-mode system descriptor.
    pub(crate) fn read_descriptor_high(&mut self, bus: &mut dyn Bus, selector: u16) -> Result<u64, Exc> {
        let base = if selector & 4 != 0 { self.ldtr.base } else { self.gdtr.base };
        let limit = if selector & 4 != 0 { self.ldtr.limit as u64 } else { self.gdtr.limit as u64 };
        let off = (selector & 0xfff8) as u64 + 8;
        if off + 7 > limit {
            return Err(Exc::code(GP, selector as u32 & 0xfffc));
        }
        self.read_lin_sys(bus, base.wrapping_add(off), 8)
    }

    /// Sets the accessed bit of a code/data descriptor in memory, as the CPU does on load.
    pub(crate) fn set_accessed(&mut self, bus: &mut dyn Bus, selector: u16, raw: u64) -> Result<(), Exc> {
        if raw & (1 << 40) != 0 {
            return Ok(());
        }
        let base = if selector & 4 != 0 { self.ldtr.base } else { self.gdtr.base };
        let lin = base.wrapping_add((selector & 0xfff8) as u64 + 5);
        let b = self.read_lin_sys(bus, lin, 1)?;
        self.write_lin_sys(bus, lin, 1, b | 1)
    }

    /// Loads data or stack segment register `idx` with `selector`, with the protected-mode
    /// checks of MOV/POP to a segment register (SDM vol. 2, MOV).
    pub fn load_seg(&mut self, bus: &mut dyn Bus, idx: usize, selector: u16) -> Result<(), Exc> {
        if !self.protected() || self.vm86() {
            let vm86 = self.vm86();
            let s = &mut self.seg[idx];
            s.selector = selector;
            s.base = (selector as u64) << 4;
            if vm86 {
                s.limit = 0xffff;
                s.attr = if idx == sreg::CS { 0xfb } else { 0xf3 };
            } else if s.unusable() {
                s.attr = ATTR_DATA16;
            }
            if idx == sreg::SS {
                self.shadow = true;
                self.end_block = true;
            }
            return Ok(());
        }
        let rpl = (selector & 3) as u8;
        if selector & 0xfffc == 0 {
            if idx == sreg::SS && !(self.mode64() && self.cpl != 3 && rpl == self.cpl) {
                return Err(Exc::code(GP, 0));
            }
            self.seg[idx] = Segment { selector, base: 0, limit: 0, attr: ATTR_UNUSABLE };
            if idx == sreg::SS {
                self.seg[idx].attr |= (self.cpl as u16) << 5;
                self.shadow = true;
                self.end_block = true;
            }
            return Ok(());
        }
        let raw = self.read_descriptor(bus, selector, GP)?;
        let d = Segment::from_descriptor(selector, raw);
        let err = Exc::code(GP, selector as u32 & 0xfffc);
        if idx == sreg::SS {
            if rpl != self.cpl || d.dpl() != self.cpl || !d.s() || d.code() || d.typ() & 2 == 0 {
                return Err(err);
            }
            if !d.present() {
                return Err(Exc::code(SS, selector as u32 & 0xfffc));
            }
            self.shadow = true;
            self.end_block = true;
        } else {
            // Data, or readable code.
            if !d.s() || (d.code() && d.typ() & 2 == 0) {
                return Err(err);
            }
            let conforming_code = d.code() && d.typ() & 4 != 0;
            if !conforming_code && (d.dpl() < self.cpl || d.dpl() < rpl) {
                return Err(err);
            }
            if !d.present() {
                return Err(Exc::code(NP, selector as u32 & 0xfffc));
            }
        }
        self.set_accessed(bus, selector, raw)?;
        let mut d = d;
        d.attr |= 1; // accessed
        self.seg[idx] = d;
        Ok(())
    }

    /// Loads CS for a far transfer to `selector` at privilege `new_cpl` after the caller has
    /// checked the descriptor (raw 8 bytes given).
    pub(crate) fn set_cs(&mut self, selector: u16, raw: u64, new_cpl: u8) {
        let mut d = Segment::from_descriptor((selector & !3) | new_cpl as u16, raw);
        d.attr |= 1;
        self.seg[sreg::CS] = d;
        if self.cpl != new_cpl {
            self.cpl = new_cpl;
            self.flush_tlb();
            self.note_alignment_checking();
        }
        self.end_block = true;
    }

    /// Alignment checking (#AC at CPL 3 with CR0.AM and EFLAGS.AC; SDM vol. 3, 6.15) is not
    /// modelled: counted when CPL 3 code runs with both set.
    pub(crate) fn note_alignment_checking(&mut self) {
        if self.cpl == 3 && self.cr0 & crate::cr::CR0_AM != 0 && self.flags.sys(crate::flags::bits::AC) {
            self.note_missing_feature("alignment checking (CR0.AM and EFLAGS.AC at CPL 3; #AC never raised)");
        }
    }

    /// Checks a code-segment descriptor as the target of a far JMP/CALL (non-gate case) and
    /// returns the CPL it runs at.
    pub(crate) fn check_code_target(&mut self, selector: u16, raw: u64) -> Result<u8, Exc> {
        let d = Segment::from_descriptor(selector, raw);
        let err = Exc::code(GP, selector as u32 & 0xfffc);
        if !d.code() {
            return Err(err);
        }
        let rpl = (selector & 3) as u8;
        if d.typ() & 4 != 0 {
            // Conforming: DPL <= CPL.
            if d.dpl() > self.cpl {
                return Err(err);
            }
        } else if rpl > self.cpl || d.dpl() != self.cpl {
            return Err(err);
        }
        if !d.present() {
            return Err(Exc::code(NP, selector as u32 & 0xfffc));
        }
        if self.long_mode() && d.long() && d.big() {
            return Err(err);
        }
        Ok(self.cpl)
    }

    /// Loads the task register (LTR): the descriptor must be an available TSS; it is marked busy.
    pub(crate) fn load_tr(&mut self, bus: &mut dyn Bus, selector: u16) -> Result<(), Exc> {
        if selector & 0xfffc == 0 || selector & 4 != 0 {
            return Err(Exc::code(GP, selector as u32 & 0xfffc));
        }
        let raw = self.read_descriptor(bus, selector, GP)?;
        let mut d = Segment::from_descriptor(selector, raw);
        if d.s() || (d.typ() != 1 && d.typ() != 9) {
            return Err(Exc::code(GP, selector as u32 & 0xfffc));
        }
        if !d.present() {
            return Err(Exc::code(NP, selector as u32 & 0xfffc));
        }
        if self.long_mode() {
            let hi = self.read_descriptor_high(bus, selector)?;
            d.base |= (hi & 0xffff_ffff) << 32;
        }
        // Mark busy in the GDT.
        let lin = self.gdtr.base.wrapping_add((selector & 0xfff8) as u64 + 5);
        let b = self.read_lin_sys(bus, lin, 1)?;
        self.write_lin_sys(bus, lin, 1, b | 2)?;
        d.attr |= 2;
        self.tr = d;
        Ok(())
    }

    /// Loads the LDT register (LLDT).
    pub(crate) fn load_ldt(&mut self, bus: &mut dyn Bus, selector: u16) -> Result<(), Exc> {
        if selector & 0xfffc == 0 {
            self.ldtr = Segment { selector, base: 0, limit: 0, attr: ATTR_UNUSABLE };
            return Ok(());
        }
        if selector & 4 != 0 {
            return Err(Exc::code(GP, selector as u32 & 0xfffc));
        }
        let raw = self.read_descriptor(bus, selector, GP)?;
        let mut d = Segment::from_descriptor(selector, raw);
        if d.s() || d.typ() != 2 {
            return Err(Exc::code(GP, selector as u32 & 0xfffc));
        }
        if !d.present() {
            return Err(Exc::code(NP, selector as u32 & 0xfffc));
        }
        if self.long_mode() {
            let hi = self.read_descriptor_high(bus, selector)?;
            d.base |= (hi & 0xffff_ffff) << 32;
        }
        self.ldtr = d;
        Ok(())
    }

    /// Translates segment `idx` + `offset` to a linear address with the limit and type checks
    /// of the current mode. `write` asks for a writable segment.
    #[inline(always)]
    pub fn seg_linear(&self, idx: usize, offset: u64, size: u8, write: bool) -> Result<u64, Exc> {
        let s = &self.seg[idx];
        // Real mode: only the (cached) limit matters.
        if self.cr0 & crate::cr::CR0_PE == 0 {
            let last = offset.wrapping_add(size as u64 - 1);
            if last > s.limit as u64 || last < offset {
                return Err(Exc::code(if idx == sreg::SS { SS } else { GP }, 0));
            }
            return Ok(s.base.wrapping_add(offset) & 0xffff_ffff);
        }
        self.seg_linear_protected(idx, offset, size, write)
    }

    fn seg_linear_protected(&self, idx: usize, offset: u64, size: u8, write: bool) -> Result<u64, Exc> {
        let s = &self.seg[idx];
        if self.long_mode() && self.seg[sreg::CS].long() {
            let base = if idx >= sreg::FS { s.base } else { 0 };
            let lin = base.wrapping_add(offset);
            if !canonical(lin) {
                return Err(Exc::code(if idx == sreg::SS { SS } else { GP }, 0));
            }
            return Ok(lin);
        }
        let fault = || Exc::code(if idx == sreg::SS { SS } else { GP }, 0);
        if self.protected() && !self.vm86() {
            if s.unusable() {
                return Err(fault());
            }
            if write && (s.code() || s.typ() & 2 == 0) {
                return Err(fault());
            }
            if !write && s.code() && s.typ() & 2 == 0 && idx != sreg::CS {
                return Err(fault());
            }
        }
        let last = offset.wrapping_add(size as u64 - 1);
        if !s.code() && s.typ() & 4 != 0 && self.protected() {
            // Expand-down: valid offsets are (limit, top].
            let top = if s.big() { 0xffff_ffff } else { 0xffff };
            if offset <= s.limit as u64 || last > top {
                return Err(fault());
            }
        } else if last > s.limit as u64 || last < offset {
            return Err(fault());
        }
        Ok(s.base.wrapping_add(offset) & 0xffff_ffff)
    }
}

/// Whether a 64-bit linear address is canonical (48-bit).
#[inline]
pub fn canonical(a: u64) -> bool {
    ((a as i64) << 16 >> 16) as u64 == a
}
