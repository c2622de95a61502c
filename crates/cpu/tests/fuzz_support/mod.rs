//! Runs arbitrary bytes as guest code in every CPU mode. Shared by the `guest_bytes` cargo-fuzz
//! target (fuzz/) and the `random_guest_bytes_never_panic` test.
//!
//! Input layout: byte 0 picks the mode and CPU model, the rest is copied to guest RAM at
//! `CODE` (where execution starts) and, repeated, over the descriptor tables, the IDT and the
//! page-table area, so random descriptors, gates and page-table entries get exercised too.

use cpu::cpuid::Vendor;
use cpu::segment::Segment;
use cpu::{cr, sreg, Access, AccessKind, Bus, Cpu, CpuModel, Pending};
use std::ptr::NonNull;

pub const RAM: usize = 4 << 20;
const CODE: u64 = 0x10000;
const GDT: u64 = 0x1000;
const IDT: u64 = 0x2000;
const PML4: u64 = 0x200000;

/// Flat RAM with every port answering all ones; port 0xF4 stops; every 64th access to port
/// 0xB2 raises an SMI so SMM entry and RSM are exercised too.
pub struct FuzzBus {
    pub ram: Vec<u8>,
    stop: bool,
    smi: bool,
}

impl Bus for FuzzBus {
    fn read(&mut self, a: Access) -> u64 {
        let mut v = 0u64;
        for k in 0..a.size as usize {
            let b = self.ram.get(a.addr as usize + k).copied().unwrap_or(0xff);
            v |= (b as u64) << (8 * k);
        }
        v
    }
    fn write(&mut self, a: Access, value: u64) {
        for k in 0..a.size as usize {
            if let Some(b) = self.ram.get_mut(a.addr as usize + k) {
                *b = (value >> (8 * k)) as u8;
            }
        }
    }
    fn io_in(&mut self, _a: Access) -> u32 {
        u32::MAX
    }
    fn io_out(&mut self, a: Access, _v: u32) {
        match a.addr {
            0xf4 => self.stop = true,
            0xb2 => self.smi = true,
            _ => {}
        }
    }
    fn host_page(&mut self, page: u64, _kind: AccessKind, _smm: bool) -> Option<NonNull<u8>> {
        if (page as usize) + 4096 <= self.ram.len() {
            NonNull::new(self.ram[page as usize..].as_mut_ptr())
        } else {
            None
        }
    }
    fn pending(&mut self) -> Pending {
        let mut p = 0;
        if self.stop {
            p |= Pending::STOP;
        }
        if self.smi {
            p |= Pending::SMI;
        }
        Pending(p)
    }
    fn ack_smi(&mut self) {
        self.smi = false;
    }
}

/// Runs `data` as described in the module docs; returns the CPU for inspection.
pub fn run(data: &[u8], budget: u64) -> Cpu {
    let sel = data.first().copied().unwrap_or(0);
    let body = data.get(1..).unwrap_or(&[]);
    let vendor = if sel & 0x80 != 0 { Vendor::Amd } else { Vendor::Intel };
    let long_mode = sel & 0x40 == 0;
    let mut cpu = Cpu::new(CpuModel { vendor, long_mode, tsc_hz: 1_000_000_000 });
    let mut bus = FuzzBus { ram: vec![0; RAM], stop: false, smi: false };
    if !body.is_empty() {
        for (k, b) in bus.ram[GDT as usize..IDT as usize + 0x1000].iter_mut().enumerate() {
            *b = body[k % body.len()];
        }
        let n = body.len().min(0x8000);
        bus.ram[CODE as usize..CODE as usize + n].copy_from_slice(&body[..n]);
    }
    // Sane first GDT entries so the modes below start from a consistent state.
    let gdt: [u64; 4] = [0, 0x00cf_9b00_0000_ffff, 0x00cf_9300_0000_ffff, 0x00af_9b00_0000_ffff];
    for (k, d) in gdt.iter().enumerate() {
        bus.ram[GDT as usize + 8 * k..GDT as usize + 8 * k + 8].copy_from_slice(&d.to_le_bytes());
    }
    cpu.gdtr = cpu::TableReg { base: GDT, limit: 0xfff };
    cpu.idtr = cpu::TableReg { base: IDT, limit: 0xfff };
    let flat32 = |sel: u16, attr: u16| Segment { selector: sel, base: 0, limit: 0xffff_ffff, attr };
    match sel & 3 {
        0 => {
            // Real mode at 1000:0000.
            cpu.seg[sreg::CS] = Segment { selector: 0x1000, base: CODE, limit: 0xffff, attr: 0x9b };
            cpu.rip = 0;
        }
        1 => {
            cpu.cr0 |= cr::CR0_PE;
            cpu.seg[sreg::CS] = flat32(0x08, 0xc9b);
            for s in [sreg::DS, sreg::ES, sreg::SS, sreg::FS, sreg::GS] {
                cpu.seg[s] = flat32(0x10, 0xc93);
            }
            cpu.rip = CODE;
        }
        2 if long_mode => {
            // 64-bit mode, identity-mapped with 2 MiB pages.
            let pdpt = PML4 + 0x1000;
            let pd = PML4 + 0x2000;
            bus.ram[PML4 as usize..PML4 as usize + 8].copy_from_slice(&(pdpt | 3).to_le_bytes());
            bus.ram[pdpt as usize..pdpt as usize + 8].copy_from_slice(&(pd | 3).to_le_bytes());
            for k in 0..2u64 {
                let e = (k << 21) | 0x83;
                bus.ram[(pd + 8 * k) as usize..(pd + 8 * k + 8) as usize].copy_from_slice(&e.to_le_bytes());
            }
            cpu.cr3 = PML4;
            cpu.cr4 = cr::CR4_PAE | cr::CR4_OSFXSR;
            cpu.efer = cr::EFER_LME | cr::EFER_LMA | cr::EFER_SCE | cr::EFER_NXE;
            cpu.cr0 |= cr::CR0_PE | cr::CR0_PG;
            cpu.seg[sreg::CS] = flat32(0x18, 0xa9b);
            for s in [sreg::DS, sreg::ES, sreg::SS] {
                cpu.seg[s] = flat32(0x10, 0xc93);
            }
            cpu.rip = CODE;
        }
        _ => {
            // 16-bit protected mode.
            cpu.cr0 |= cr::CR0_PE;
            cpu.seg[sreg::CS] = Segment { selector: 0x08, base: CODE, limit: 0xffff, attr: 0x9b };
            cpu.rip = 0;
        }
    }
    cpu.regs[cpu::regs::RSP] = 0x8000;
    cpu.flush_code();
    // Run in slices so a halted CPU gets woken by an SMI now and then.
    let mut left = budget;
    while left > 0 {
        let before = cpu.icount;
        match cpu.run(&mut bus, left.min(2000)) {
            cpu::Exit::Shutdown(_) | cpu::Exit::Stopped | cpu::Exit::Breakpoint => break,
            cpu::Exit::Halted => bus.smi = true,
            cpu::Exit::InstructionLimit => {}
        }
        left = left.saturating_sub((cpu.icount - before).max(1));
    }
    cpu
}
