//! The x87 FPU as far as firmware probes it: FNINIT, FNSTSW, FNSTCW, FLDCW, FNCLEX, FWAIT, with
//! the CR0.EM/TS/MP gating of #NM (SDM vol. 3, 2.5 and table 2-2).

use crate::bus::Bus;
use crate::cr::*;
use crate::decode::Insn;
use crate::exception::{Exc, NM};
use crate::regs::RAX;
use crate::Cpu;
use iced_x86::{Mnemonic, OpKind};

type R = Result<(), Exc>;

/// The x87 subset firmware probes with (FNINIT, FNCLEX, FNSTSW, FNSTCW, FLDCW, WAIT): the
/// control, status and tag words, no arithmetic.
pub fn fpu(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let mn = d.i.mnemonic();
    if mn == Mnemonic::Wait {
        if cpu.cr0 & CR0_MP != 0 && cpu.cr0 & CR0_TS != 0 {
            return Err(Exc::new(NM));
        }
        return Ok(());
    }
    if cpu.cr0 & (CR0_EM | CR0_TS) != 0 {
        return Err(Exc::new(NM));
    }
    match mn {
        Mnemonic::Fninit => {
            cpu.fcw = 0x37f;
            cpu.fsw = 0;
            cpu.ftw = 0xffff;
        }
        Mnemonic::Fnclex => cpu.fsw &= 0x7f00,
        Mnemonic::Fnstsw => {
            if d.i.op0_kind() == OpKind::Register {
                cpu.set_gpr(RAX, 2, cpu.fsw as u64);
            } else {
                cpu.write_mem(bus, d, 2, cpu.fsw as u64)?;
            }
        }
        Mnemonic::Fnstcw => cpu.write_mem(bus, d, 2, cpu.fcw as u64)?,
        Mnemonic::Fldcw => cpu.fcw = cpu.read_mem(bus, d, 2)? as u16,
        _ => {
            *cpu.unimplemented.entry(format!("{mn:?}").to_lowercase()).or_default() += 1;
            return Err(Exc::ud());
        }
    }
    Ok(())
}
