//! Far CALL and JMP through call gates: 16- and 32-bit gates in legacy protected mode and
//! 64-bit gates in IA-32e mode, to the same privilege level or (CALL only) to an inner one on
//! the stack the TSS names, with the gate's parameters copied (SDM vol. 3, 5.8.2-5.8.6; vol. 2,
//! CALL and JMP, "CALL-GATE" and "MORE-PRIVILEGE").
//!
//! Every check is made before anything changes: a fault leaves CS, SS, the stack pointer and
//! the CPL as they were (a failed write to the new stack undoes the switch).

use crate::bus::Bus;
use crate::exception::{Exc, GP, NP, SS as SS_FAULT, TS};
use crate::flags::mask;
use crate::regs::RSP;
use crate::segment::{Segment, ATTR_UNUSABLE};
use crate::{sreg, Cpu};

type R = Result<(), Exc>;

/// What a call gate names: the target code segment, the entry point and how the transfer
/// pushes.
struct Gate {
    /// Target code-segment selector and its raw descriptor.
    cs: u16,
    cs_raw: u64,
    /// Entry point (16 bits for a 286 gate).
    offset: u64,
    /// Push size in bytes: 2 (286 gate), 4 (386 gate) or 8 (64-bit gate).
    size: u8,
    /// Parameters to copy to an inner stack (legacy gates; masked to 5 bits).
    params: u64,
}

impl Cpu {
    /// Far JMP or CALL through the call gate `sel` (raw descriptor `raw`, already read).
    pub(crate) fn far_through_call_gate(&mut self, bus: &mut dyn Bus, sel: u16, raw: u64, call: bool) -> R {
        let gate = self.read_call_gate(bus, sel, raw)?;
        let target = Segment::from_descriptor(gate.cs, gate.cs_raw);
        let conforming = target.typ() & 4 != 0;
        if !call {
            // JMP never changes privilege: a non-conforming target must be at CPL.
            if !conforming && target.dpl() != self.cpl {
                return Err(Exc::code(GP, gate.cs as u32 & 0xfffc));
            }
            self.check_gate_offset(&target, gate.offset)?;
            let cpl = self.cpl;
            self.set_cs((gate.cs & !3) | cpl as u16, gate.cs_raw, cpl);
            self.rip = gate.offset;
            return Ok(());
        }
        if !conforming && target.dpl() < self.cpl {
            return self.call_gate_inner(bus, &gate, &target);
        }
        self.check_gate_offset(&target, gate.offset)?;
        let (ret_cs, ret_ip) = (self.seg[sreg::CS].selector as u64, self.rip);
        let saved_sp = self.regs[RSP];
        let pushed = self.push(bus, gate.size, ret_cs).and_then(|_| self.push(bus, gate.size, ret_ip & mask(gate.size)));
        if let Err(e) = pushed {
            self.regs[RSP] = saved_sp;
            return Err(e);
        }
        let cpl = self.cpl;
        self.set_cs((gate.cs & !3) | cpl as u16, gate.cs_raw, cpl);
        self.rip = gate.offset;
        Ok(())
    }

    /// The gate's own checks and the target code segment's (SDM vol. 2, CALL, "CALL-GATE").
    fn read_call_gate(&mut self, bus: &mut dyn Bus, sel: u16, raw: u64) -> Result<Gate, Exc> {
        let g = Segment::from_descriptor(sel, raw);
        let gate_err = Exc::code(GP, sel as u32 & 0xfffc);
        let rpl = (sel & 3) as u8;
        if g.dpl() < self.cpl || g.dpl() < rpl {
            return Err(gate_err);
        }
        if !g.present() {
            return Err(Exc::code(NP, sel as u32 & 0xfffc));
        }
        let long = self.long_mode();
        let cs = ((raw >> 16) & 0xffff) as u16;
        let low_offset = raw & 0xffff;
        let (size, mut offset, params) = match (g.typ(), long) {
            (0x4, false) => (2, low_offset, (raw >> 32) & 0x1f),
            (0xc, false) => (4, low_offset | ((raw >> 32) & 0xffff_0000), (raw >> 32) & 0x1f),
            (0xc, true) => (8, low_offset | ((raw >> 32) & 0xffff_0000), 0),
            _ => return Err(gate_err),
        };
        if long {
            // The upper half of a 16-byte gate: offset 63:32, and a type field of zero.
            let hi = self.read_descriptor_high(bus, sel)?;
            if (hi >> 40) & 0x1f != 0 {
                return Err(gate_err);
            }
            offset |= (hi & 0xffff_ffff) << 32;
        }
        if cs & 0xfffc == 0 {
            return Err(Exc::gp0());
        }
        let cs_raw = self.read_descriptor(bus, cs, GP)?;
        let t = Segment::from_descriptor(cs, cs_raw);
        let cs_err = Exc::code(GP, cs as u32 & 0xfffc);
        if !t.code() || t.dpl() > self.cpl {
            return Err(cs_err);
        }
        // A 64-bit gate must lead to 64-bit code (L = 1, D = 0).
        if long && (!t.long() || t.big()) {
            return Err(cs_err);
        }
        if !t.present() {
            return Err(Exc::code(NP, cs as u32 & 0xfffc));
        }
        Ok(Gate { cs, cs_raw, offset, size, params })
    }

    /// The entry point must lie within the target segment (canonical for 64-bit code).
    fn check_gate_offset(&self, target: &Segment, offset: u64) -> R {
        let ok = if self.long_mode() { crate::segment::canonical(offset) } else { offset <= target.limit as u64 };
        if ok {
            Ok(())
        } else {
            Err(Exc::gp0())
        }
    }

    /// CALL through a gate to a more privileged non-conforming segment: the stack for the
    /// target's DPL from the TSS, the caller's SS:ESP pushed there, then the gate's parameters
    /// copied from the caller's stack, then the return address (SDM vol. 3, 5.8.5, figure 5-13).
    fn call_gate_inner(&mut self, bus: &mut dyn Bus, gate: &Gate, target: &Segment) -> R {
        let new_cpl = target.dpl();
        let long = self.long_mode();
        let (new_ss, new_sp, new_ss_seg) = if long {
            // 64-bit TSS: RSP0-2; SS becomes a null selector at the new CPL (SDM vol. 3, 5.8.6).
            let off = 4 + new_cpl as u64 * 8;
            if off + 7 > self.tr.limit as u64 {
                return Err(Exc::code(TS, self.tr.selector as u32 & 0xfffc));
            }
            let sp = self.read_lin_sys(bus, self.tr.base.wrapping_add(off), 8)?;
            if !crate::segment::canonical(sp) {
                return Err(Exc::code(SS_FAULT, 0));
            }
            let ss = new_cpl as u16;
            (ss, sp, Segment { selector: ss, base: 0, limit: 0, attr: ATTR_UNUSABLE | ((new_cpl as u16) << 5) })
        } else {
            let (ss, sp) = self.tss_stack(bus, new_cpl)?;
            (ss, sp, self.check_inner_stack(bus, ss, new_cpl)?)
        };
        self.check_gate_offset(target, gate.offset)?;
        // The parameters, read from the caller's stack at the caller's privilege, highest first.
        let mut params = Vec::with_capacity(gate.params as usize);
        for k in (0..gate.params).rev() {
            params.push(self.peek_stack(bus, k * gate.size as u64, gate.size)?);
        }
        let old = (self.seg[sreg::SS], self.regs[RSP], self.cpl);
        let (ret_cs, ret_ip) = (self.seg[sreg::CS].selector as u64, self.rip);
        let frame = (4 + gate.params) * gate.size as u64;
        self.seg[sreg::SS] = new_ss_seg;
        self.cpl = new_cpl;
        self.flush_tlb();
        self.regs[RSP] = new_sp;
        let pushed = self.check_room(frame, new_ss).and_then(|_| {
            self.push(bus, gate.size, old.0.selector as u64)?;
            self.push(bus, gate.size, old.1 & mask(gate.size))?;
            for &p in &params {
                self.push(bus, gate.size, p)?;
            }
            self.push(bus, gate.size, ret_cs)?;
            self.push(bus, gate.size, ret_ip & mask(gate.size))
        });
        if let Err(e) = pushed {
            (self.seg[sreg::SS], self.regs[RSP], self.cpl) = old;
            self.flush_tlb();
            return Err(e);
        }
        if !long {
            let raw = self.read_descriptor(bus, new_ss, TS)?;
            self.set_accessed(bus, new_ss, raw)?;
        }
        self.set_cs((gate.cs & !3) | new_cpl as u16, gate.cs_raw, new_cpl);
        self.rip = gate.offset;
        Ok(())
    }

    /// The checks on the inner stack named by the TSS: #TS(selector) for a null, out-of-table,
    /// misprivileged or non-writable one, #SS(selector) when not present.
    pub(crate) fn check_inner_stack(&mut self, bus: &mut dyn Bus, ss: u16, cpl: u8) -> Result<Segment, Exc> {
        let err = Exc::code(TS, ss as u32 & 0xfffc);
        if ss & 0xfffc == 0 {
            return Err(err);
        }
        let raw = self.read_descriptor(bus, ss, TS)?;
        let d = Segment::from_descriptor(ss, raw);
        if (ss & 3) as u8 != cpl || d.dpl() != cpl || !d.s() || d.code() || d.typ() & 2 == 0 {
            return Err(err);
        }
        if !d.present() {
            return Err(Exc::code(SS_FAULT, ss as u32 & 0xfffc));
        }
        let mut d = d;
        d.attr |= 1;
        Ok(d)
    }

    /// Whether `bytes` below the current stack pointer fit in SS (else #SS(`ss`)).
    fn check_room(&self, bytes: u64, ss: u16) -> R {
        let size = self.stack_size();
        if size == 8 {
            return Ok(());
        }
        let sp = self.regs[RSP];
        let err = Exc::code(SS_FAULT, ss as u32 & 0xfffc);
        let lowest = crate::exec::data::step_stack_pointer(sp, size, bytes) & mask(size);
        let highest = crate::exec::data::step_stack_pointer(sp, size, 1) & mask(size);
        self.seg_linear(sreg::SS, lowest, 1, true).map_err(|_| err)?;
        self.seg_linear(sreg::SS, highest, 1, true).map_err(|_| err)?;
        Ok(())
    }
}
