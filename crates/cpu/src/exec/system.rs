//! System instructions: port I/O with IOPL and the TSS I/O bitmap, HLT, CLI/STI, descriptor-table
//! registers, control and debug registers, CPUID, RDTSC(P), RDMSR/WRMSR, LAR/LSL/VERR/VERW,
//! ARPL, SWAPGS, INVLPG and cache control (SDM vol. 2 and vol. 3).

use crate::bus::{Access, AccessKind, Bus};
use crate::cr::*;
use crate::decode::Insn;
use crate::exception::{Exc, GP, UD};
use crate::flags::{bits, mask};
use crate::regs::{RAX, RBX, RCX, RDX};
use crate::segment::Segment;
use crate::{sreg, Cpu, TableReg};
use iced_x86::{Mnemonic, OpKind, Register};

type R = Result<(), Exc>;

impl Cpu {
    fn require_cpl0(&self) -> R {
        if self.protected() && (self.cpl != 0 || self.vm86()) {
            return Err(Exc::gp0());
        }
        Ok(())
    }

    /// Checks that the current privilege allows I/O to `size` bytes at `port` (IOPL, then the
    /// TSS I/O permission bitmap; SDM vol. 1, 19.5).
    pub(crate) fn check_io(&mut self, bus: &mut dyn Bus, port: u16, size: u8) -> R {
        if !self.protected() || (!self.vm86() && self.cpl <= self.iopl()) {
            return Ok(());
        }
        let tr = self.tr;
        if tr.typ() & 8 == 0 || tr.limit < 0x67 {
            return Err(Exc::gp0());
        }
        let map = self.read_lin_sys(bus, tr.base.wrapping_add(0x66), 2)?;
        let byte = map + (port as u64 >> 3);
        if byte + 1 > tr.limit as u64 {
            return Err(Exc::gp0());
        }
        let bitsv = self.read_lin_sys(bus, tr.base.wrapping_add(byte), 2)?;
        let m = ((1u64 << size) - 1) << (port & 7);
        if bitsv & m != 0 {
            return Err(Exc::gp0());
        }
        Ok(())
    }

    /// Reads a port through the bus.
    pub(crate) fn port_in(&mut self, bus: &mut dyn Bus, port: u16, size: u8) -> u32 {
        // Port I/O can raise an SMI or remap memory: end the block so the platform's
        // pending lines (SMI, STOP for a TLB flush) are seen before the next instruction.
        self.end_block = true;
        bus.sync_icount(self.icount);
        bus.io_in(Access { addr: port as u64, size, kind: AccessKind::IoIn, smm: self.smm })
    }

    /// Writes a port through the bus.
    pub(crate) fn port_out(&mut self, bus: &mut dyn Bus, port: u16, size: u8, v: u32) {
        self.end_block = true;
        bus.sync_icount(self.icount);
        bus.io_out(Access { addr: port as u64, size, kind: AccessKind::IoOut, smm: self.smm }, v)
    }
}

fn io_port(cpu: &Cpu, d: &Insn, n: u32) -> u16 {
    match d.i.op_kind(n) {
        OpKind::Register => cpu.regs[RDX] as u16,
        _ => d.i.immediate(n) as u16,
    }
}

/// IN from an immediate or DX port (recorded for I/O restart).
pub fn in_(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let sz = crate::regs::gpr_size(d.i.op0_register());
    let port = io_port(cpu, d, 1);
    cpu.check_io(bus, port, sz)?;
    cpu.record_io(port, sz, true, false, false, d.i.op1_kind() != OpKind::Register, 0);
    let v = cpu.port_in(bus, port, sz);
    cpu.set_gpr(RAX, sz, v as u64);
    Ok(())
}

/// OUT to an immediate or DX port (recorded for I/O restart).
pub fn out(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    let sz = crate::regs::gpr_size(d.i.op1_register());
    let port = io_port(cpu, d, 0);
    cpu.check_io(bus, port, sz)?;
    cpu.record_io(port, sz, false, false, false, d.i.op0_kind() != OpKind::Register, 0);
    let v = cpu.regs[RAX] & mask(sz);
    cpu.port_out(bus, port, sz, v as u32);
    Ok(())
}

/// HLT: CPL 0 only; halts until an interrupt or SMI.
pub fn hlt(cpu: &mut Cpu, _bus: &mut dyn Bus, _d: &Insn) -> R {
    cpu.require_cpl0()?;
    cpu.halted = true;
    cpu.end_block = true;
    Ok(())
}

/// CLI and STI, with the IOPL check and STI's interrupt shadow.
pub fn cli_sti(cpu: &mut Cpu, _bus: &mut dyn Bus, d: &Insn) -> R {
    if cpu.protected() && cpu.cpl > cpu.iopl() || cpu.vm86() && cpu.iopl() < 3 {
        return Err(Exc::gp0());
    }
    let sti = d.i.mnemonic() == Mnemonic::Sti;
    if sti && !cpu.flags.sys(bits::IF) {
        cpu.shadow = true;
    }
    cpu.flags.set_bit(bits::IF, sti);
    cpu.end_block = true;
    Ok(())
}

/// LGDT, LIDT, SGDT, SIDT.
pub fn table_reg(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    if d.i.op0_kind() != OpKind::Memory {
        return Err(Exc::ud());
    }
    let mn = d.i.mnemonic();
    let load = matches!(mn, Mnemonic::Lgdt | Mnemonic::Lidt);
    let gdt = matches!(mn, Mnemonic::Lgdt | Mnemonic::Sgdt);
    let wide = cpu.mode64();
    let bsz = if wide { 8 } else { 4 };
    if load {
        cpu.require_cpl0()?;
        let lin = cpu.mem_linear(d, 2 + bsz, false)?;
        let limit = cpu.read_lin(bus, lin, 2)? as u16;
        let mut base = cpu.read_lin(bus, lin.wrapping_add(2), bsz)?;
        if !wide && d.osize == 2 {
            base &= 0x00ff_ffff;
        }
        if wide && !crate::segment::canonical(base) {
            return Err(Exc::gp0());
        }
        let t = TableReg { base, limit };
        if gdt {
            cpu.gdtr = t
        } else {
            cpu.idtr = t
        }
    } else {
        let t = if gdt { cpu.gdtr } else { cpu.idtr };
        let lin = cpu.mem_linear(d, 2 + bsz, true)?;
        cpu.write_lin(bus, lin, 2, t.limit as u64)?;
        cpu.write_lin(bus, lin.wrapping_add(2), bsz, t.base)?;
    }
    Ok(())
}

/// LLDT, LTR, SLDT, STR.
pub fn ldt_tr(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    if !cpu.protected() || cpu.vm86() {
        return Err(Exc::ud());
    }
    match d.i.mnemonic() {
        Mnemonic::Lldt | Mnemonic::Ltr => {
            cpu.require_cpl0()?;
            let sel = cpu.read_op(bus, d, 0, 2)? as u16;
            if d.i.mnemonic() == Mnemonic::Lldt {
                cpu.load_ldt(bus, sel)
            } else {
                cpu.load_tr(bus, sel)
            }
        }
        mn => {
            let sel = if mn == Mnemonic::Sldt { cpu.ldtr.selector } else { cpu.tr.selector } as u64;
            let sz = if d.i.op0_kind() == OpKind::Memory { 2 } else { d.osize };
            cpu.write_op(bus, d, 0, sz, sel)
        }
    }
}

/// LMSW, SMSW, CLTS.
pub fn msw(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    match d.i.mnemonic() {
        Mnemonic::Smsw => {
            let sz = if d.i.op0_kind() == OpKind::Memory { 2 } else { d.osize };
            cpu.write_op(bus, d, 0, sz, cpu.cr0 & mask(sz))
        }
        Mnemonic::Lmsw => {
            cpu.require_cpl0()?;
            let v = cpu.read_op(bus, d, 0, 2)?;
            // LMSW sets PE but never clears it; it touches only MP, EM, TS.
            let nv = (cpu.cr0 & !0xe) | (v & 0xf) | (cpu.cr0 & CR0_PE);
            cpu.set_cr0(nv)
        }
        _ => {
            cpu.require_cpl0()?;
            cpu.cr0 &= !CR0_TS;
            Ok(())
        }
    }
}

impl Cpu {
    /// Writes CR0 with its consistency checks and long-mode activation (SDM vol. 3, 2.5, 9.8.5).
    pub fn set_cr0(&mut self, v: u64) -> R {
        let v = v | CR0_ET;
        if v >> 32 != 0 {
            return Err(Exc::gp0());
        }
        if v & CR0_PG != 0 && v & CR0_PE == 0 {
            return Err(Exc::gp0());
        }
        if v & CR0_NW != 0 && v & CR0_CD == 0 {
            return Err(Exc::gp0());
        }
        let turning_on_paging = v & CR0_PG != 0 && self.cr0 & CR0_PG == 0;
        if turning_on_paging && self.efer & EFER_LME != 0 {
            if self.cr4 & CR4_PAE == 0 || self.seg[sreg::CS].long() {
                return Err(Exc::gp0());
            }
            self.efer |= EFER_LMA;
        }
        if v & CR0_PG == 0 && self.efer & EFER_LMA != 0 {
            if self.mode64() {
                return Err(Exc::gp0());
            }
            self.efer &= !EFER_LMA;
        }
        self.cr0 = v;
        if v & CR0_PE == 0 {
            self.cpl = 0;
        }
        self.flush_tlb();
        self.end_block = true;
        Ok(())
    }

    /// Writes CR4 with its reserved-bit checks.
    pub fn set_cr4(&mut self, v: u64) -> R {
        let allowed = CR4_VME | CR4_PVI | CR4_TSD | CR4_DE | CR4_PSE | CR4_PAE | CR4_MCE | CR4_PGE | CR4_PCE | CR4_OSFXSR | CR4_OSXMMEXCPT;
        if v & !allowed != 0 {
            return Err(Exc::gp0());
        }
        if self.long_mode() && v & CR4_PAE == 0 {
            return Err(Exc::gp0());
        }
        if v & (CR4_VME | CR4_PVI) & !self.cr4 != 0 {
            // Virtual interrupts (SDM vol. 3, 21.3) are not modelled: the bits are kept, the
            // CPU behaves as with them clear.
            self.note_missing_feature("virtual-8086/protected-mode virtual interrupts (CR4.VME/PVI; run as if clear)");
        }
        self.cr4 = v;
        self.flush_tlb();
        self.end_block = true;
        Ok(())
    }
}

/// MOV to and from CR0/2/3/4/8 and DR0-7.
pub fn mov_cr_dr(cpu: &mut Cpu, _bus: &mut dyn Bus, d: &Insn) -> R {
    cpu.require_cpl0()?;
    let (dst, src) = (d.i.op0_register(), d.i.op1_register());
    let m = if cpu.long_mode() { u64::MAX } else { 0xffff_ffff };
    if src.is_cr() || src.is_dr() {
        let v = match src {
            Register::CR0 => cpu.cr0,
            Register::CR2 => cpu.cr2,
            Register::CR3 => cpu.cr3,
            Register::CR4 => cpu.cr4,
            Register::CR8 => cpu.cr8,
            r if r.is_dr() => {
                let n = r.number();
                if (n == 4 || n == 5) && cpu.cr4 & CR4_DE != 0 {
                    return Err(Exc::ud());
                }
                cpu.dr[if n == 4 { 6 } else if n == 5 { 7 } else { n & 7 }]
            }
            _ => return Err(Exc::ud()),
        };
        cpu.set_reg(dst, v & m);
        return Ok(());
    }
    let v = cpu.reg(src) & m;
    match dst {
        Register::CR0 => cpu.set_cr0(v)?,
        Register::CR2 => cpu.cr2 = v,
        Register::CR3 => {
            cpu.cr3 = v;
            cpu.flush_tlb();
            cpu.end_block = true;
        }
        Register::CR4 => cpu.set_cr4(v)?,
        Register::CR8 => {
            if v > 15 {
                return Err(Exc::gp0());
            }
            cpu.cr8 = v
        }
        r if r.is_dr() => {
            let n = r.number();
            if (n == 4 || n == 5) && cpu.cr4 & CR4_DE != 0 {
                return Err(Exc::ud());
            }
            let n = if n == 4 { 6 } else if n == 5 { 7 } else { n & 7 };
            if (n == 6 || n == 7) && v >> 32 != 0 {
                return Err(Exc::gp0());
            }
            if n == 7 && v & 0xff != 0 {
                // Instruction and data breakpoints (SDM vol. 3, 18.2) are not modelled.
                cpu.note_missing_feature("hardware breakpoints in DR0-DR3 (enabled in DR7; never hit)");
            }
            cpu.dr[n] = match n {
                6 => v | 0xffff_0ff0,
                7 => (v | 0x400) & !0xd000,
                _ => v,
            };
        }
        _ => return Err(Exc::ud()),
    }
    Ok(())
}

/// CPUID: the leaves of the configured model.
pub fn cpuid(cpu: &mut Cpu, _bus: &mut dyn Bus, _d: &Insn) -> R {
    let (a, b, c, dd) = cpu.model.cpuid(cpu.regs[RAX] as u32, cpu.regs[RCX] as u32, 0);
    cpu.regs[RAX] = a as u64;
    cpu.regs[RBX] = b as u64;
    cpu.regs[RCX] = c as u64;
    cpu.regs[RDX] = dd as u64;
    Ok(())
}

/// RDTSC and RDTSCP (CR4.TSD makes them CPL 0 only).
pub fn rdtsc(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    if cpu.cr4 & CR4_TSD != 0 && cpu.cpl != 0 && cpu.protected() {
        return Err(Exc::gp0());
    }
    if d.i.mnemonic() == Mnemonic::Rdtscp {
        if !cpu.model.long_mode {
            return Err(Exc::ud());
        }
        cpu.regs[RCX] = cpu.msr.tsc_aux & 0xffff_ffff;
    }
    let t = cpu.tsc().wrapping_add(bus.idle_ticks());
    cpu.regs[RAX] = t & 0xffff_ffff;
    cpu.regs[RDX] = t >> 32;
    Ok(())
}

/// RDMSR and WRMSR at CPL 0.
pub fn msr_access(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    cpu.require_cpl0()?;
    let idx = cpu.regs[RCX] as u32;
    // The TSC counts guest time: retired instructions plus the time the platform let pass
    // without any (halted, fast-forwarded).
    let idle = if idx == crate::msr::IA32_TSC { bus.idle_ticks() } else { 0 };
    if d.i.mnemonic() == Mnemonic::Rdmsr {
        let v = cpu.rdmsr(idx)?.wrapping_add(idle);
        cpu.regs[RAX] = v & 0xffff_ffff;
        cpu.regs[RDX] = v >> 32;
    } else {
        let v = (cpu.regs[RAX] & 0xffff_ffff) | (cpu.regs[RDX] << 32);
        cpu.wrmsr(idx, v.wrapping_sub(idle))?;
        cpu.end_block = true;
    }
    Ok(())
}

/// LAR, LSL, VERR, VERW: they report through ZF instead of faulting.
pub fn descriptor_query(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    if !cpu.protected() || cpu.vm86() {
        return Err(Exc::new(UD));
    }
    let mn = d.i.mnemonic();
    let n = if matches!(mn, Mnemonic::Lar | Mnemonic::Lsl) { 1 } else { 0 };
    let sel = cpu.read_op(bus, d, n, 2)? as u16;
    let ok_raw = if sel & 0xfffc == 0 { None } else { cpu.read_descriptor(bus, sel, GP).ok() };
    let mut ok = false;
    if let Some(raw) = ok_raw {
        let s = Segment::from_descriptor(sel, raw);
        let rpl = (sel & 3) as u8;
        let conforming_code = s.code() && s.typ() & 4 != 0;
        let priv_ok = conforming_code || (s.dpl() >= cpu.cpl && s.dpl() >= rpl);
        ok = match mn {
            Mnemonic::Lar | Mnemonic::Lsl => {
                let sys_ok = if s.s() {
                    true
                } else {
                    let t = s.typ();
                    let allowed_lar: &[u8] = if cpu.long_mode() { &[2, 9, 0xb, 0xc] } else { &[1, 2, 3, 4, 5, 9, 0xb, 0xc] };
                    let allowed_lsl: &[u8] = if cpu.long_mode() { &[2, 9, 0xb] } else { &[1, 2, 3, 9, 0xb] };
                    if mn == Mnemonic::Lar { allowed_lar.contains(&t) } else { allowed_lsl.contains(&t) }
                };
                sys_ok && priv_ok
            }
            Mnemonic::Verr => s.s() && priv_ok && (!s.code() || s.typ() & 2 != 0),
            _ => s.s() && priv_ok && !s.code() && s.typ() & 2 != 0,
        };
        if ok {
            match mn {
                Mnemonic::Lar => {
                    let v = (raw >> 32) & 0x00f0_ff00;
                    cpu.set_reg(d.i.op0_register(), v & mask(d.osize));
                }
                Mnemonic::Lsl => cpu.set_reg(d.i.op0_register(), s.limit as u64 & mask(d.osize)),
                _ => {}
            }
        }
    }
    cpu.flags.set_bit(bits::ZF, ok);
    Ok(())
}

/// ARPL: raises the destination selector's RPL to the source's.
pub fn arpl(cpu: &mut Cpu, bus: &mut dyn Bus, d: &Insn) -> R {
    if !cpu.protected() || cpu.vm86() {
        return Err(Exc::ud());
    }
    let dst = cpu.read_op(bus, d, 0, 2)?;
    let src = cpu.reg(d.i.op1_register());
    if dst & 3 < src & 3 {
        cpu.write_op(bus, d, 0, 2, (dst & !3) | (src & 3))?;
        cpu.flags.set_bit(bits::ZF, true);
    } else {
        cpu.flags.set_bit(bits::ZF, false);
    }
    Ok(())
}

/// SWAPGS: exchanges GS base and KERNEL_GS_BASE (64-bit mode, CPL 0).
pub fn swapgs(cpu: &mut Cpu, _bus: &mut dyn Bus, _d: &Insn) -> R {
    if !cpu.mode64() {
        return Err(Exc::ud());
    }
    cpu.require_cpl0()?;
    std::mem::swap(&mut cpu.seg[sreg::GS].base, &mut cpu.msr.kernel_gs_base);
    Ok(())
}

/// INVLPG: drops the TLB entry of one page.
pub fn invlpg(cpu: &mut Cpu, _bus: &mut dyn Bus, d: &Insn) -> R {
    cpu.require_cpl0()?;
    let lin = cpu.mem_linear(d, 1, false).unwrap_or(0);
    cpu.tlb.flush_page(lin);
    Ok(())
}

/// WBINVD, INVD: no caches to write back.
pub fn cache_control(cpu: &mut Cpu, _bus: &mut dyn Bus, _d: &Insn) -> R {
    cpu.require_cpl0()
}

/// Raises #UD.
pub fn ud(_cpu: &mut Cpu, _bus: &mut dyn Bus, _d: &Insn) -> R {
    Err(Exc::new(UD))
}
