//! String instructions with REP/REPE/REPNE: MOVS, CMPS, SCAS, LODS, STOS, INS, OUTS.
//! The count register and the index registers follow the address size; the source segment of
//! MOVS/CMPS/LODS/OUTS may be overridden, the destination is always ES.

use crate::bus::Bus;
use crate::decode::Insn;
use crate::exception::Exc;
use crate::flags::{bits, mask, FlagOp};
use crate::regs::{RAX, RCX, RDI, RDX, RSI};
use crate::{sreg, undefined, Cpu};
use iced_x86::Mnemonic;

type R = Result<(), Exc>;

fn elem_size(d: &Insn) -> u8 {
    match d.i.mnemonic() {
        Mnemonic::Movsb | Mnemonic::Cmpsb | Mnemonic::Scasb | Mnemonic::Lodsb | Mnemonic::Stosb | Mnemonic::Insb | Mnemonic::Outsb => 1,
        Mnemonic::Movsw | Mnemonic::Cmpsw | Mnemonic::Scasw | Mnemonic::Lodsw | Mnemonic::Stosw | Mnemonic::Insw | Mnemonic::Outsw => 2,
        Mnemonic::Movsd | Mnemonic::Cmpsd | Mnemonic::Scasd | Mnemonic::Lodsd | Mnemonic::Stosd | Mnemonic::Insd | Mnemonic::Outsd => 4,
        _ => 8,
    }
}

/// Source segment: DS unless overridden.
fn src_seg(d: &Insn) -> usize {
    match d.i.segment_prefix() {
        iced_x86::Register::None => sreg::DS,
        r => crate::regs::seg_index(r),
    }
}

/// MOVS, CMPS, SCAS, LODS, STOS, INS and OUTS, with and without REP/REPE/REPNE.
pub fn string(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let sz = elem_size(d);
    let asz = d.asize;
    let am = mask(asz);
    let step = if cpu.flags.sys(bits::DF) { (sz as u64).wrapping_neg() } else { sz as u64 };
    let mn = d.i.mnemonic();
    let rep = d.i.has_rep_prefix() || d.i.has_repne_prefix();
    let cmp = matches!(mn, Mnemonic::Cmpsb | Mnemonic::Cmpsw | Mnemonic::Cmpsd | Mnemonic::Cmpsq | Mnemonic::Scasb | Mnemonic::Scasw | Mnemonic::Scasd | Mnemonic::Scasq);
    let io = matches!(mn, Mnemonic::Insb | Mnemonic::Insw | Mnemonic::Insd | Mnemonic::Outsb | Mnemonic::Outsw | Mnemonic::Outsd);
    if io {
        cpu.check_io(bus, cpu.regs[RDX] as u16, sz)?;
    }
    let seg = src_seg(d);
    // Each iteration of a REP string instruction counts as one instruction in the retired
    // count (the run loop adds the first), as Bochs and QEMU's instruction counts do, so guest
    // time follows the work done.
    if rep && asz == 4 && cpu.regs[RCX] & am == 0 && cpu.mode64() {
        // Nothing to repeat (the loop below stops at once); which 32-bit registers are still
        // written (zero-extending) is the CPU model's answer.
        let movs = matches!(mn, Mnemonic::Movsb | Mnemonic::Movsw | Mnemonic::Movsd | Mnemonic::Movsq);
        let stos = matches!(mn, Mnemonic::Stosb | Mnemonic::Stosw | Mnemonic::Stosd | Mnemonic::Stosq);
        let w = undefined::rep_a32_zero_count_writes(cpu.model.vendor, movs, stos);
        for (reg, write) in [(RCX, w.count), (RSI, w.source_index), (RDI, w.destination_index)] {
            if write {
                cpu.set_gpr(reg, 4, cpu.regs[reg]);
            }
        }
    }
    let mut iterations = 0u64;
    loop {
        if rep && cpu.regs[RCX] & am == 0 {
            break;
        }
        let si = cpu.regs[RSI] & am;
        let di = cpu.regs[RDI] & am;
        let mut stop = false;
        match mn {
            Mnemonic::Movsb | Mnemonic::Movsw | Mnemonic::Movsd | Mnemonic::Movsq => {
                let v = cpu.read_seg(bus, seg, si, sz)?;
                cpu.write_seg(bus, sreg::ES, di, sz, v)?;
                cpu.set_gpr(RSI, asz, si.wrapping_add(step));
                cpu.set_gpr(RDI, asz, di.wrapping_add(step));
            }
            Mnemonic::Stosb | Mnemonic::Stosw | Mnemonic::Stosd | Mnemonic::Stosq => {
                cpu.write_seg(bus, sreg::ES, di, sz, cpu.regs[RAX] & mask(sz))?;
                cpu.set_gpr(RDI, asz, di.wrapping_add(step));
            }
            Mnemonic::Lodsb | Mnemonic::Lodsw | Mnemonic::Lodsd | Mnemonic::Lodsq => {
                let v = cpu.read_seg(bus, seg, si, sz)?;
                cpu.set_gpr(RAX, sz, v);
                cpu.set_gpr(RSI, asz, si.wrapping_add(step));
            }
            Mnemonic::Cmpsb | Mnemonic::Cmpsw | Mnemonic::Cmpsd | Mnemonic::Cmpsq => {
                let a = cpu.read_seg(bus, seg, si, sz)?;
                let b = cpu.read_seg(bus, sreg::ES, di, sz)?;
                let r = a.wrapping_sub(b) & mask(sz);
                cpu.flags.set_lazy(FlagOp::Sub, sz, a, b, r);
                cpu.set_gpr(RSI, asz, si.wrapping_add(step));
                cpu.set_gpr(RDI, asz, di.wrapping_add(step));
                stop = true;
            }
            Mnemonic::Scasb | Mnemonic::Scasw | Mnemonic::Scasd | Mnemonic::Scasq => {
                let a = cpu.regs[RAX] & mask(sz);
                let b = cpu.read_seg(bus, sreg::ES, di, sz)?;
                let r = a.wrapping_sub(b) & mask(sz);
                cpu.flags.set_lazy(FlagOp::Sub, sz, a, b, r);
                cpu.set_gpr(RDI, asz, di.wrapping_add(step));
                stop = true;
            }
            Mnemonic::Insb | Mnemonic::Insw | Mnemonic::Insd => {
                // Check the destination before the port is read (a read may have side effects).
                let lin = cpu.seg_linear(sreg::ES, di, sz, true)?;
                cpu.record_io(cpu.regs[RDX] as u16, sz, true, true, rep, false, lin);
                let v = cpu.port_in(bus, cpu.regs[RDX] as u16, sz);
                cpu.write_seg(bus, sreg::ES, di, sz, v as u64)?;
                cpu.set_gpr(RDI, asz, di.wrapping_add(step));
            }
            _ => {
                let lin = cpu.seg_linear(seg, si, sz, false)?;
                let v = cpu.read_lin(bus, lin, sz)?;
                cpu.record_io(cpu.regs[RDX] as u16, sz, false, true, rep, false, lin);
                cpu.port_out(bus, cpu.regs[RDX] as u16, sz, v as u32);
                cpu.set_gpr(RSI, asz, si.wrapping_add(step));
            }
        }
        iterations += 1;
        if !rep {
            break;
        }
        let c = cpu.regs[RCX].wrapping_sub(1) & am;
        cpu.set_gpr(RCX, asz, c);
        if cmp && stop {
            let zf = cpu.flags.zf();
            if (d.i.has_repe_prefix() && !zf) || (d.i.has_repne_prefix() && zf) {
                break;
            }
        }
        if io && bus.pending().has(crate::bus::Pending::SMI) {
            // The port access raised an SMI (an I/O trap): it is taken after this iteration,
            // with RIP left on this instruction so the remaining iterations run after RSM.
            if c != 0 {
                cpu.rip = cpu.cur_rip;
            }
            break;
        }
    }
    cpu.icount += iterations.saturating_sub(1);
    if io {
        // The I/O record belongs to the instruction about to retire.
        if let Some(r) = cpu.smm_regs.last_io.as_mut() {
            r.icount = cpu.icount;
        }
    }
    Ok(())
}
