//! A tiny test machine for guest programs: 16 MiB of RAM at physical 0, a 64 KiB ROM at
//! 0xFFFF0000 (so the reset vector F000:FFF0 is linear 0xFFFFFFF0), a debug console on port
//! 0x402, an exit port on 0xF4 and a record of every I/O write; SMI/NMI/INIT lines the test
//! can raise, an APM_CNT port (0xB2) whose write raises a synchronous SMI, configurable I/O-trap
//! ports, and a record of the CPU's SMM entry/exit reports. Plus builders for the
//! structures the CPU reads from memory (GDT and IDT entries, TSS, page tables) and a fixed
//! memory layout that the tests share.

#![allow(dead_code)]

use cpu::{cr, sreg, Access, AccessKind, Bus, Cpu, CpuModel, Exit, Pending, Segment, SmmEntry, SmmExit};
use iced_x86::code_asm::{CodeAssembler, CodeLabel};
use iced_x86::BlockEncoderOptions;
use std::ptr::NonNull;

pub const RAM_SIZE: usize = 16 << 20;
pub const ROM_BASE: u64 = 0xFFFF_0000;
pub const ROM_SIZE: usize = 64 << 10;

/// Port 0x402: bytes written here are collected as console output.
pub const DEBUGCON: u16 = 0x402;
/// Port 0xF4: a write makes `run` return `Exit::Stopped`.
pub const EXIT_PORT: u16 = 0xF4;
/// Port 0x80: the exception stubs report their vector here.
pub const POST: u16 = 0x80;
/// Port 0xB2 (APM_CNT): a write raises a synchronous SMI, as on PC chipsets.
pub const APM_CNT: u16 = 0xB2;

// Physical memory layout shared by the tests.
pub const GDT: u64 = 0x1000;
pub const IDT: u64 = 0x2000;
pub const TSS: u64 = 0x3000;
/// Where the exception stubs live: vector v at HANDLERS + 16 * v.
pub const HANDLERS: u64 = 0x4000;
pub const REAL_CODE: u64 = 0x7c00;
pub const CODE: u64 = 0x10000;
pub const USER_CODE: u64 = 0x18000;
pub const STACK_TOP: u64 = 0x80000;
pub const KERNEL_STACK_TOP: u64 = 0x70000;
pub const USER_STACK_TOP: u64 = 0x60000;
pub const IST_STACK_TOP: u64 = 0x50000;
/// Page tables start here (paging tests).
pub const PAGE_TABLES: u64 = 0x100000;
/// Scratch data above 1 MiB.
pub const DATA: u64 = 0x200000;

// Selectors of the protected-mode GDT built by `Machine::protected32`.
pub const KCODE32: u16 = 0x08;
pub const KDATA: u16 = 0x10;
pub const UCODE32: u16 = 0x18 | 3;
pub const UDATA: u16 = 0x20 | 3;
pub const TSS_SEL: u16 = 0x28;
pub const CODE16: u16 = 0x30;
pub const DATA16: u16 = 0x38;
/// First free GDT slot for test-specific descriptors.
pub const FREE_SEL: u16 = 0x40;

// Selectors of the long-mode GDT built by `Machine::long64` (laid out for SYSCALL/SYSRET:
// STAR[47:32] = L_KCODE64, STAR[63:48] = L_UCODE32).
pub const L_KCODE32: u16 = 0x08;
pub const L_KCODE64: u16 = 0x10;
pub const L_KDATA: u16 = 0x18;
pub const L_UCODE32: u16 = 0x20 | 3;
pub const L_UDATA: u16 = 0x28 | 3;
pub const L_UCODE64: u16 = 0x30 | 3;
pub const L_TSS: u16 = 0x38;

// Access bytes and flag nibbles for `seg_desc`.
pub const ACC_CODE: u8 = 0x9A;
pub const ACC_DATA: u8 = 0x92;
pub const ACC_DATA_EXPAND_DOWN: u8 = 0x96;
pub const ACC_USER_CODE: u8 = 0xFA;
pub const ACC_USER_DATA: u8 = 0xF2;
pub const ACC_TSS32: u8 = 0x89;
pub const ACC_TSS64: u8 = 0x89;
/// G=1, D/B=1: 32-bit, 4 KiB granular.
pub const FLAGS_32: u8 = 0xC;
/// G=1, L=1: 64-bit code.
pub const FLAGS_64: u8 = 0xA;
pub const FLAGS_16: u8 = 0x0;

/// An 8-byte code/data/system segment descriptor. `limit` is the raw 20-bit field.
pub fn seg_desc(base: u32, limit: u32, access: u8, flags: u8) -> u64 {
    let base = base as u64;
    let limit = limit as u64;
    (limit & 0xffff)
        | (base & 0xff_ffff) << 16
        | (access as u64) << 40
        | ((limit >> 16) & 0xf) << 48
        | ((flags & 0xf) as u64) << 52
        | (base >> 24) << 56
}

/// A flat 4 GiB descriptor.
pub fn flat(access: u8, flags: u8) -> u64 {
    seg_desc(0, 0xfffff, access, flags)
}

/// Gate types.
pub const INT_GATE: u8 = 0xE;
pub const TRAP_GATE: u8 = 0xF;

/// An 8-byte 32-bit IDT gate.
pub fn gate32(sel: u16, off: u32, typ: u8, dpl: u8, present: bool) -> u64 {
    let off = off as u64;
    let access = (present as u64) << 7 | ((dpl & 3) as u64) << 5 | (typ & 0xf) as u64;
    (off & 0xffff) | (sel as u64) << 16 | access << 40 | (off >> 16) << 48
}

/// A 16-byte 64-bit IDT gate, as (low, high) quadwords.
pub fn gate64(sel: u16, off: u64, typ: u8, dpl: u8, ist: u8) -> (u64, u64) {
    let lo = gate32(sel, off as u32, typ, dpl, true) | ((ist & 7) as u64) << 32;
    (lo, off >> 32)
}

/// Exception stub: `mov al, v; out 0x80, al; hlt` — the same bytes in 16-, 32- and 64-bit code.
/// It clobbers AL, so tests keep their results in other registers.
pub fn stub(vector: u8) -> [u8; 5] {
    [0xB0, vector, 0xE6, POST as u8, 0xF4]
}

pub fn handler_addr(vector: u8) -> u64 {
    HANDLERS + 16 * vector as u64
}

/// Assembles `a` at `ip`, returning the bytes and the address of each label in `labels`.
pub fn assemble(a: &mut CodeAssembler, ip: u64, labels: &[CodeLabel]) -> (Vec<u8>, Vec<u64>) {
    let r = a
        .assemble_options(ip, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)
        .expect("assemble");
    let addrs = labels.iter().map(|l| r.label_ip(l).expect("label")).collect();
    (r.inner.code_buffer, addrs)
}

/// Page-table entry bits.
pub const PTE_P: u64 = 1;
pub const PTE_W: u64 = 2;
pub const PTE_U: u64 = 4;
pub const PTE_A: u64 = 1 << 5;
pub const PTE_D: u64 = 1 << 6;
pub const PTE_PS: u64 = 1 << 7;
pub const PTE_NX: u64 = 1 << 63;

/// The platform the CPU sees.
pub struct TestBus {
    pub ram: Vec<u8>,
    pub rom: Vec<u8>,
    pub debugcon: Vec<u8>,
    /// Every I/O write: (port, size, value).
    pub io_writes: Vec<(u16, u8, u32)>,
    pub stop: bool,
    /// Every I/O read: (port, size).
    pub io_reads: Vec<(u16, u8)>,
    /// The SMI# request: pending() reports Pending::SMI until the CPU calls ack_smi().
    pub smi: bool,
    /// The pending SMI was raised by an I/O trap (reported as Pending::IO_TRAP).
    pub smi_io_trap: bool,
    /// NMI and INIT requests, held until acknowledged.
    pub nmi: bool,
    pub init: bool,
    /// Ports whose IN/OUT outside SMM raises a synchronous SMI with Pending::IO_TRAP.
    pub trap_ports: Vec<u16>,
    /// Matching accesses to let through before the trap fires (for a trap mid-string).
    pub trap_skip: usize,
    /// A watchdog for runs that may not retire instructions: after this many more `pending()`
    /// polls (one per CPU loop iteration) the bus asserts STOP.
    pub poll_limit: Option<u64>,
    /// The reports the CPU made on SMM entry and exit.
    pub smm_entries: Vec<SmmEntry>,
    pub smm_exits: Vec<SmmExit>,
}

impl TestBus {
    fn byte(&self, addr: u64) -> u8 {
        if (addr as usize) < self.ram.len() {
            self.ram[addr as usize]
        } else if (ROM_BASE..ROM_BASE + ROM_SIZE as u64).contains(&addr) {
            self.rom[(addr - ROM_BASE) as usize]
        } else {
            0xff
        }
    }

    /// Asserts SMI# (taken at the CPU's next instruction boundary outside SMM).
    pub fn raise_smi(&mut self) {
        self.smi = true;
    }
    pub fn raise_nmi(&mut self) {
        self.nmi = true;
    }
    pub fn raise_init(&mut self) {
        self.init = true;
    }

    fn io_trap(&mut self, a: Access) {
        if !a.smm && self.trap_ports.contains(&(a.addr as u16)) {
            if self.trap_skip > 0 {
                self.trap_skip -= 1;
                return;
            }
            self.smi = true;
            self.smi_io_trap = true;
        }
    }
}

impl Bus for TestBus {
    fn read(&mut self, a: Access) -> u64 {
        (0..a.size as u64).fold(0, |v, k| v | (self.byte(a.addr + k) as u64) << (8 * k))
    }
    fn write(&mut self, a: Access, value: u64) {
        for k in 0..a.size as u64 {
            if let Some(b) = self.ram.get_mut((a.addr + k) as usize) {
                *b = (value >> (8 * k)) as u8;
            }
        }
    }
    fn io_in(&mut self, a: Access) -> u32 {
        self.io_reads.push((a.addr as u16, a.size));
        self.io_trap(a);
        0xffff_ffff
    }
    fn io_out(&mut self, a: Access, value: u32) {
        let port = a.addr as u16;
        self.io_writes.push((port, a.size, value));
        match port {
            DEBUGCON => self.debugcon.push(value as u8),
            EXIT_PORT => self.stop = true,
            APM_CNT => self.smi = true,
            _ => {}
        }
        self.io_trap(a);
    }
    fn host_page(&mut self, page: u64, kind: AccessKind, _smm: bool) -> Option<NonNull<u8>> {
        if page as usize + 4096 <= self.ram.len() {
            return NonNull::new(self.ram[page as usize..].as_mut_ptr());
        }
        if kind != AccessKind::Write && (ROM_BASE..ROM_BASE + ROM_SIZE as u64).contains(&page) {
            return NonNull::new(self.rom[(page - ROM_BASE) as usize..].as_mut_ptr());
        }
        None
    }
    fn pending(&mut self) -> Pending {
        if let Some(n) = self.poll_limit.as_mut() {
            if *n == 0 {
                self.stop = true;
            } else {
                *n -= 1;
            }
        }
        let mut p = 0;
        if self.stop {
            p |= Pending::STOP;
        }
        if self.smi {
            p |= Pending::SMI;
            if self.smi_io_trap {
                p |= Pending::IO_TRAP;
            }
        }
        if self.nmi {
            p |= Pending::NMI;
        }
        if self.init {
            p |= Pending::INIT;
        }
        Pending(p)
    }
    fn ack_smi(&mut self) {
        self.smi = false;
        self.smi_io_trap = false;
    }
    fn ack_nmi(&mut self) {
        self.nmi = false;
    }
    fn ack_init(&mut self) {
        self.init = false;
    }
    fn smm_entered(&mut self, e: &SmmEntry) {
        self.smm_entries.push(e.clone());
    }
    fn smm_left(&mut self, e: &SmmExit) {
        self.smm_exits.push(e.clone());
    }
}

pub struct Machine {
    pub cpu: Cpu,
    pub bus: TestBus,
}

impl Machine {
    /// A CPU in its reset state; RAM zeroed, ROM filled with HLT.
    pub fn new() -> Self {
        Machine {
            cpu: Cpu::new(CpuModel::default()),
            bus: TestBus {
                ram: vec![0; RAM_SIZE],
                rom: vec![0xF4; ROM_SIZE],
                debugcon: Vec::new(),
                io_writes: Vec::new(),
                stop: false,
                io_reads: Vec::new(),
                smi: false,
                smi_io_trap: false,
                nmi: false,
                init: false,
                trap_ports: Vec::new(),
                trap_skip: 0,
                poll_limit: None,
                smm_entries: Vec::new(),
                smm_exits: Vec::new(),
            },
        }
    }

    /// A machine whose reset vector holds `jmp far 0000:7C00`, with `code` at 0x7C00.
    pub fn boot(code: &[u8]) -> Self {
        let mut m = Machine::new();
        let far_jmp = [0xEA, 0x00, 0x7C, 0x00, 0x00];
        m.bus.rom[0xFFF0..0xFFF5].copy_from_slice(&far_jmp);
        m.load(REAL_CODE, code);
        m
    }

    /// A machine already in real mode at 0000:7C00 (no reset-vector detour), SP = 0x7C00.
    pub fn real(code: &[u8]) -> Self {
        let mut m = Machine::new();
        m.load(REAL_CODE, code);
        m.cpu.seg[sreg::CS] = Segment { attr: 0x9b, ..Segment::real(0) };
        m.cpu.rip = REAL_CODE;
        m.cpu.regs[4] = REAL_CODE;
        m
    }

    // ---- memory ----

    pub fn load(&mut self, addr: u64, bytes: &[u8]) {
        self.bus.ram[addr as usize..addr as usize + bytes.len()].copy_from_slice(bytes);
        self.cpu.flush_code();
    }
    pub fn read(&self, addr: u64, size: usize) -> u64 {
        (0..size).fold(0, |v, k| v | (self.bus.ram[addr as usize + k] as u64) << (8 * k))
    }
    pub fn r8(&self, addr: u64) -> u8 {
        self.read(addr, 1) as u8
    }
    pub fn r16(&self, addr: u64) -> u16 {
        self.read(addr, 2) as u16
    }
    pub fn r32(&self, addr: u64) -> u32 {
        self.read(addr, 4) as u32
    }
    pub fn r64(&self, addr: u64) -> u64 {
        self.read(addr, 8)
    }
    pub fn write(&mut self, addr: u64, size: usize, v: u64) {
        for k in 0..size {
            self.bus.ram[addr as usize + k] = (v >> (8 * k)) as u8;
        }
    }
    pub fn w16(&mut self, addr: u64, v: u16) {
        self.write(addr, 2, v as u64)
    }
    pub fn w32(&mut self, addr: u64, v: u32) {
        self.write(addr, 4, v as u64)
    }
    pub fn w64(&mut self, addr: u64, v: u64) {
        self.write(addr, 8, v)
    }

    /// The `n`-th dword above the current ESP (the interrupt frame after delivery).
    pub fn stack32(&self, n: u64) -> u32 {
        self.r32(self.cpu.seg[sreg::SS].base + (self.cpu.regs[4] & 0xffff_ffff) + 4 * n)
    }
    /// The `n`-th qword above RSP.
    pub fn stack64(&self, n: u64) -> u64 {
        self.r64(self.cpu.regs[4] + 8 * n)
    }
    /// The `n`-th word above SS:SP.
    pub fn stack16(&self, n: u64) -> u16 {
        self.r16(self.cpu.seg[sreg::SS].base + ((self.cpu.regs[4] + 2 * n) & 0xffff))
    }

    // ---- running ----

    /// Values the exception stubs wrote to port 0x80, i.e. the vectors taken.
    pub fn vectors(&self) -> Vec<u8> {
        self.bus.io_writes.iter().filter(|w| w.0 == POST).map(|w| w.2 as u8).collect()
    }

    /// CPU state for failure messages.
    pub fn describe(&self) -> String {
        let c = &self.cpu;
        format!(
            "mode {} cs={:04x} rip={:#x} cpl={} rsp={:#x} rax={:#x} cr0={:#x} cr2={:#x} efer={:#x} vectors {:x?} debugcon {:?} unimplemented {:?}",
            c.mode_name(),
            c.seg[sreg::CS].selector,
            c.rip,
            c.cpl,
            c.regs[4],
            c.regs[0],
            c.cr0,
            c.cr2,
            c.efer,
            self.vectors(),
            String::from_utf8_lossy(&self.bus.debugcon),
            c.unimplemented
        )
    }

    pub fn run(&mut self, budget: u64) -> Exit {
        self.cpu.run(&mut self.bus, budget)
    }

    /// Runs until HLT (with nothing to wake the CPU); panics with the CPU state otherwise.
    pub fn run_to_halt(&mut self) {
        let exit = self.run(100_000);
        assert_eq!(exit, Exit::Halted, "guest did not halt: {}", self.describe());
    }

    /// Runs until HLT and returns the vector reported by the exception stub that halted.
    pub fn run_to_exception(&mut self) -> u8 {
        self.run_to_halt();
        *self.vectors().last().unwrap_or_else(|| panic!("halted without an exception: {}", self.describe()))
    }

    // ---- descriptor tables ----

    pub fn set_gdt_entry(&mut self, sel: u16, desc: u64) {
        self.w64(GDT + (sel & !7) as u64, desc);
    }

    /// Writes the exception stubs for vectors 0..=255 at HANDLERS.
    pub fn write_stubs(&mut self) {
        for v in 0..=255u8 {
            self.load(handler_addr(v), &stub(v));
        }
    }

    /// Real-mode IVT: vector v -> 0400:(16 * v), i.e. the stub at handler_addr(v).
    pub fn real_ivt_to_stubs(&mut self) {
        self.write_stubs();
        for v in 0..=255u16 {
            self.set_ivt(v as u8, (HANDLERS >> 4) as u16, 16 * v);
        }
    }

    pub fn set_ivt(&mut self, vector: u8, seg: u16, off: u16) {
        self.w16(4 * vector as u64, off);
        self.w16(4 * vector as u64 + 2, seg);
    }

    pub fn set_gate32(&mut self, vector: u8, gate: u64) {
        self.w64(IDT + 8 * vector as u64, gate);
    }

    pub fn set_gate64(&mut self, vector: u8, gate: (u64, u64)) {
        self.w64(IDT + 16 * vector as u64, gate.0);
        self.w64(IDT + 16 * vector as u64 + 8, gate.1);
    }

    /// Loads segment register `idx` from the GDT in memory, as a successful load would.
    pub fn load_seg_direct(&mut self, idx: usize, sel: u16) {
        let raw = self.r64(GDT + (sel & !7) as u64);
        let mut s = Segment::from_descriptor(sel, raw);
        s.attr |= 1;
        self.cpu.seg[idx] = s;
    }

    /// 32-bit protected mode at CPL 0, set up directly: a flat GDT (see the selector constants),
    /// a 32-bit TSS with SS0:ESP0 = KDATA:KERNEL_STACK_TOP (not yet loaded in TR), an IDT
    /// whose 256 interrupt gates point at the stubs, ESP = STACK_TOP, EIP = CODE.
    pub fn protected32(code: &[u8]) -> Self {
        let mut m = Machine::new();
        m.set_gdt_entry(KCODE32, flat(ACC_CODE, FLAGS_32));
        m.set_gdt_entry(KDATA, flat(ACC_DATA, FLAGS_32));
        m.set_gdt_entry(UCODE32, flat(ACC_USER_CODE, FLAGS_32));
        m.set_gdt_entry(UDATA, flat(ACC_USER_DATA, FLAGS_32));
        m.set_gdt_entry(TSS_SEL, seg_desc(TSS as u32, 0x67, ACC_TSS32, 0));
        m.set_gdt_entry(CODE16, seg_desc(0, 0xffff, ACC_CODE, FLAGS_16));
        m.set_gdt_entry(DATA16, seg_desc(0, 0xffff, ACC_DATA, FLAGS_16));
        m.cpu.gdtr = cpu::TableReg { base: GDT, limit: 0xfff };
        m.w32(TSS + 4, KERNEL_STACK_TOP as u32);
        m.w32(TSS + 8, KDATA as u32);
        m.w16(TSS + 0x66, 0x68); // no I/O bitmap
        m.write_stubs();
        for v in 0..=255u8 {
            m.set_gate32(v, gate32(KCODE32, handler_addr(v) as u32, INT_GATE, 0, true));
        }
        m.cpu.idtr = cpu::TableReg { base: IDT, limit: 256 * 8 - 1 };
        m.cpu.cr0 = cr::CR0_PE | cr::CR0_ET;
        m.load_seg_direct(sreg::CS, KCODE32);
        for idx in [sreg::DS, sreg::ES, sreg::FS, sreg::GS, sreg::SS] {
            m.load_seg_direct(idx, KDATA);
        }
        m.cpu.regs[4] = STACK_TOP;
        m.cpu.rip = CODE;
        m.load(CODE, code);
        m
    }

    /// 32-bit paging: a page directory at PAGE_TABLES whose first 4 MiB are identity-mapped
    /// with 4 KiB user-writable pages from the table at PAGE_TABLES + 0x1000. CR0.PG and
    /// CR0.WP are set.
    pub fn enable_paging32(&mut self) {
        for i in 0..1024u64 {
            self.w32(PAGE_TABLES + 0x1000 + 4 * i, (i << 12 | PTE_P | PTE_W | PTE_U) as u32);
        }
        self.w32(PAGE_TABLES, ((PAGE_TABLES + 0x1000) | PTE_P | PTE_W | PTE_U) as u32);
        self.cpu.cr3 = PAGE_TABLES;
        self.cpu.cr0 |= cr::CR0_PG | cr::CR0_WP;
        self.cpu.flush_tlb();
    }

    /// Address of the 32-bit page table entry for `lin` (its table at PAGE_TABLES +
    /// 0x1000 * (1 + directory index) is created on first use).
    pub fn pte32_addr(&mut self, lin: u32) -> u64 {
        let pdi = (lin >> 22) as u64;
        let pt = PAGE_TABLES + 0x1000 * (1 + pdi);
        if self.r32(PAGE_TABLES + 4 * pdi) & 1 == 0 {
            self.w32(PAGE_TABLES + 4 * pdi, (pt | PTE_P | PTE_W | PTE_U) as u32);
        }
        pt + 4 * ((lin as u64 >> 12) & 0x3ff)
    }

    pub fn map4k_32(&mut self, lin: u32, phys: u32, flags: u64) {
        let a = self.pte32_addr(lin);
        self.w32(a, phys | flags as u32);
    }

    /// Identity-maps the first 16 MiB with 2 MiB pages for long mode: PML4 at PAGE_TABLES,
    /// PDPT at +0x1000, PD at +0x2000. Returns the CR3 value.
    pub fn build_long_page_tables(&mut self) -> u64 {
        let (pml4, pdpt, pd) = (PAGE_TABLES, PAGE_TABLES + 0x1000, PAGE_TABLES + 0x2000);
        self.w64(pml4, pdpt | PTE_P | PTE_W | PTE_U);
        self.w64(pdpt, pd | PTE_P | PTE_W | PTE_U);
        for i in 0..8 {
            self.w64(pd + 8 * i, (i << 21) | PTE_P | PTE_W | PTE_U | PTE_PS);
        }
        pml4
    }

    /// The long-mode GDT (see the L_* selector constants) with a 64-bit TSS at TSS whose
    /// RSP0 = KERNEL_STACK_TOP and IST1 = IST_STACK_TOP.
    pub fn build_long_gdt(&mut self) {
        self.set_gdt_entry(L_KCODE32, flat(ACC_CODE, FLAGS_32));
        self.set_gdt_entry(L_KCODE64, flat(ACC_CODE, FLAGS_64));
        self.set_gdt_entry(L_KDATA, flat(ACC_DATA, FLAGS_32));
        self.set_gdt_entry(L_UCODE32, flat(ACC_USER_CODE, FLAGS_32));
        self.set_gdt_entry(L_UDATA, flat(ACC_USER_DATA, FLAGS_32));
        self.set_gdt_entry(L_UCODE64, flat(ACC_USER_CODE, FLAGS_64));
        self.set_gdt_entry(L_TSS, seg_desc(TSS as u32, 0x67, ACC_TSS64, 0));
        self.w64(GDT + L_TSS as u64 + 8, 0);
        self.w64(TSS + 4, KERNEL_STACK_TOP);
        self.w64(TSS + 0x24, IST_STACK_TOP);
        self.w16(TSS + 0x66, 0x68);
    }

    /// 64-bit mode at CPL 0, set up directly: long-mode GDT and page tables, an IDT of 16-byte
    /// interrupt gates to the stubs, RSP = STACK_TOP, RIP = CODE, TR not loaded.
    pub fn long64(code: &[u8]) -> Self {
        let mut m = Machine::new();
        m.build_long_gdt();
        m.cpu.gdtr = cpu::TableReg { base: GDT, limit: 0xfff };
        m.write_stubs();
        for v in 0..=255u8 {
            m.set_gate64(v, gate64(L_KCODE64, handler_addr(v), INT_GATE, 0, 0));
        }
        m.cpu.idtr = cpu::TableReg { base: IDT, limit: 256 * 16 - 1 };
        m.cpu.cr3 = m.build_long_page_tables();
        m.cpu.cr4 = cr::CR4_PAE;
        m.cpu.efer = cr::EFER_LME | cr::EFER_LMA;
        m.cpu.cr0 = cr::CR0_PE | cr::CR0_ET | cr::CR0_PG | cr::CR0_WP;
        m.load_seg_direct(sreg::CS, L_KCODE64);
        for idx in [sreg::DS, sreg::ES, sreg::FS, sreg::GS, sreg::SS] {
            m.load_seg_direct(idx, L_KDATA);
        }
        m.cpu.regs[4] = STACK_TOP;
        m.cpu.rip = CODE;
        m.cpu.flush_tlb();
        m.load(CODE, code);
        m
    }
}
