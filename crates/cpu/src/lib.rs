//! The x86 CPU of smmlab.
//!
//! Decoding is done once per basic block with iced-x86 into a cache keyed by physical address
//! (see [`decode`]); execution dispatches each cached instruction to a handler chosen at decode
//! time (see [`exec`]). The CPU owns no memory: it sees the platform only through the [`Bus`]
//! trait, whose every access says its address, size, kind and whether the CPU is in SMM.
//!
//! Guest misbehaviour never panics: faults become x86 exceptions, a fault while delivering a
//! double fault becomes [`Exit::Shutdown`], an instruction this CPU does not implement
//! raises #UD and is counted by mnemonic in [`Cpu::unimplemented`], and a mechanism it does not
//! model is counted by name in [`Cpu::missing_features`].

pub mod bus;
pub mod cpuid;
pub mod decode;
pub mod exception;
pub mod exec;
pub mod flags;
pub mod mmu;
pub mod msr;
pub mod regs;
pub mod segment;
pub mod shutdown;
pub mod single_step;
pub mod smm;
pub mod smm_blocks;
pub mod smm_edges;
pub mod snapshot;
pub mod undefined;
pub mod x87;

pub use bus::{Access, AccessKind, Bus, Pending, SmmEntry, SmmExit};
pub use cpuid::CpuModel;
pub use exception::Exc;
pub use flags::Flags;
pub use segment::Segment;
pub use shutdown::{MachineCheck, ShutdownReason};

use std::collections::BTreeMap;

/// Segment register numbers, in encoding order.
pub mod sreg {
    /// ES's index in [`crate::Cpu::seg`].
    pub const ES: usize = 0;
    /// CS's index in [`crate::Cpu::seg`].
    pub const CS: usize = 1;
    /// SS's index in [`crate::Cpu::seg`].
    pub const SS: usize = 2;
    /// DS's index in [`crate::Cpu::seg`].
    pub const DS: usize = 3;
    /// FS's index in [`crate::Cpu::seg`].
    pub const FS: usize = 4;
    /// GS's index in [`crate::Cpu::seg`].
    pub const GS: usize = 5;
}

/// Control register bits (Intel SDM vol. 3, 2.5).
pub mod cr {
    /// CR0.PE: protected mode.
    pub const CR0_PE: u64 = 1 << 0;
    /// CR0.MP: WAIT honours TS.
    pub const CR0_MP: u64 = 1 << 1;
    /// CR0.EM: x87 instructions raise #NM.
    pub const CR0_EM: u64 = 1 << 2;
    /// CR0.TS: task switched (x87/SSE use raises #NM).
    pub const CR0_TS: u64 = 1 << 3;
    /// CR0.ET: extension type, always one.
    pub const CR0_ET: u64 = 1 << 4;
    /// CR0.NE: native x87 error reporting.
    pub const CR0_NE: u64 = 1 << 5;
    /// CR0.WP: supervisor writes honour read-only pages.
    pub const CR0_WP: u64 = 1 << 16;
    /// CR0.AM: alignment checking allowed.
    pub const CR0_AM: u64 = 1 << 18;
    /// CR0.NW: not write-through.
    pub const CR0_NW: u64 = 1 << 29;
    /// CR0.CD: caching disabled.
    pub const CR0_CD: u64 = 1 << 30;
    /// CR0.PG: paging.
    pub const CR0_PG: u64 = 1 << 31;
    /// CR4.VME: virtual-8086 mode extensions.
    pub const CR4_VME: u64 = 1 << 0;
    /// CR4.PVI: protected-mode virtual interrupts.
    pub const CR4_PVI: u64 = 1 << 1;
    /// CR4.TSD: RDTSC only at CPL 0.
    pub const CR4_TSD: u64 = 1 << 2;
    /// CR4.DE: debugging extensions.
    pub const CR4_DE: u64 = 1 << 3;
    /// CR4.PSE: 4 MiB pages with 32-bit paging.
    pub const CR4_PSE: u64 = 1 << 4;
    /// CR4.PAE: physical address extension (required for long mode).
    pub const CR4_PAE: u64 = 1 << 5;
    /// CR4.MCE: machine-check exception enable.
    pub const CR4_MCE: u64 = 1 << 6;
    /// CR4.PGE: global pages.
    pub const CR4_PGE: u64 = 1 << 7;
    /// CR4.PCE: RDPMC at any CPL.
    pub const CR4_PCE: u64 = 1 << 8;
    /// CR4.OSFXSR: the OS supports FXSAVE/FXRSTOR (SSE enabled).
    pub const CR4_OSFXSR: u64 = 1 << 9;
    /// CR4.OSXMMEXCPT: the OS handles #XM.
    pub const CR4_OSXMMEXCPT: u64 = 1 << 10;
    /// EFER.SCE: SYSCALL/SYSRET.
    pub const EFER_SCE: u64 = 1 << 0;
    /// EFER.LME: long mode enable.
    pub const EFER_LME: u64 = 1 << 8;
    /// EFER.LMA: long mode active (LME with paging on).
    pub const EFER_LMA: u64 = 1 << 10;
    /// EFER.NXE: no-execute page bit.
    pub const EFER_NXE: u64 = 1 << 11;
}

/// Why [`Cpu::run`] returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The instruction budget given to `run` was used up.
    InstructionLimit,
    /// The CPU is halted with nothing to wake it.
    Halted,
    /// The bus asserted [`Pending::STOP`].
    Stopped,
    /// Triple fault or another shutdown condition.
    Shutdown(ShutdownReason),
    /// The next block starts at one of [`Cpu::breakpoints`]; `run` again goes on from there.
    Breakpoint,
}

/// A descriptor-table register (GDTR, IDTR).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableReg {
    /// Linear base address of the table.
    pub base: u64,
    /// Limit in bytes, minus one.
    pub limit: u16,
}

/// The architectural state of one logical processor, plus its caches.
pub struct Cpu {
    /// RAX..R15 in encoding order.
    pub regs: [u64; 16],
    /// Instruction pointer (of the next instruction to run).
    pub rip: u64,
    /// RFLAGS, with lazily computed arithmetic flags.
    pub flags: Flags,
    /// ES, CS, SS, DS, FS, GS, indexed by [`sreg`].
    pub seg: [Segment; 6],
    /// The LDT register.
    pub ldtr: Segment,
    /// The task register.
    pub tr: Segment,
    /// The GDT register.
    pub gdtr: TableReg,
    /// The IDT register.
    pub idtr: TableReg,
    /// CR0 (see [`cr`]).
    pub cr0: u64,
    /// CR2: the linear address of the last page fault.
    pub cr2: u64,
    /// CR3: the paging root.
    pub cr3: u64,
    /// CR4 (see [`cr`]).
    pub cr4: u64,
    /// CR8: the task priority (long mode).
    pub cr8: u64,
    /// EFER (see [`cr`]).
    pub efer: u64,
    /// DR0..DR7.
    pub dr: [u64; 8],
    /// XMM0..XMM15.
    pub xmm: [u128; 16],
    /// MXCSR: SSE control and status.
    pub mxcsr: u32,
    /// The x87 FPU (and the MMX registers it holds).
    pub fpu: x87::X87,
    /// Current privilege level.
    pub cpl: u8,
    /// Whether the CPU is in System Management Mode (SMIACT#).
    pub smm: bool,
    /// Whether address bit 20 is passed through (the platform's A20 gate).
    pub a20: bool,
    /// Model-specific registers this CPU keeps.
    pub msr: msr::MsrFile,
    /// The configured CPU model (vendor, long mode, CPUID leaves).
    pub model: CpuModel,
    /// Instructions retired since reset.
    pub icount: u64,
    /// Set by HLT; cleared by an interrupt.
    pub halted: bool,
    /// Instructions the guest executed that this CPU does not implement, by mnemonic.
    pub unimplemented: BTreeMap<String, u64>,
    /// Mechanisms the guest used that this CPU does not model, by name (the name says what the
    /// CPU did instead); see [`Cpu::note_missing_feature`].
    pub missing_features: BTreeMap<String, u64>,
    /// A fault the new task raised while a task switch loaded its state, delivered in the new
    /// task once the switch is done (see [`exec::task_switch`]).
    pub(crate) task_fault: Option<Exc>,
    /// Interrupt shadow after STI / MOV SS: the next instruction runs before INTR.
    pub(crate) shadow: bool,
    /// Whether NMIs are blocked (after an NMI, until IRET).
    pub nmi_blocked: bool,
    pub(crate) shutdown: Option<ShutdownReason>,
    /// The current block must stop after this instruction (code was overwritten, mode changed).
    pub(crate) end_block: bool,
    pub(crate) tlb: Box<mmu::Tlb>,
    pub(crate) cache: decode::BlockCache,
    /// Start of the instruction being executed (for faults).
    pub(crate) cur_rip: u64,
    /// Per-instruction time-stamp counter offset (TSC = icount + tsc_offset).
    pub tsc_offset: u64,
    /// SMBASE, the SMI latch, SMRR and the other SMM registers and hidden state.
    pub smm_regs: smm::SmmRegs,
    /// An NMI arrived and waits until NMIs are unblocked.
    pub nmi_latched: bool,
    /// Events delivered without an instruction retiring (faults, interrupts, SMI entries).
    /// `run`'s budget counts them with retired instructions, so a guest stuck re-faulting on
    /// one instruction still returns control.
    pub stalls: u64,
    /// Optional record of the decoded blocks executed in SMM (`smmlab disasm`); None: off.
    pub smm_blocks: Option<Box<smm_blocks::SmmBlockRecord>>,
    /// Optional edge-coverage map of the code executed in SMM (the fuzzer); None: off.
    pub smm_edges: Option<Box<smm_edges::EdgeMap>>,
    /// RIP values (offsets in CS: linear addresses in flat 64-bit code) where `run` stops before
    /// the block that starts there (the host's tools:
    /// the SMM inventory's watch on the SMM core's services). None: no check at all.
    pub breakpoints: Option<Box<rustc_hash::FxHashSet<u64>>>,
    /// Tell the bus the address of every instruction run in SMM ([`Bus::smm_instruction`]).
    pub trace_smm_rip: bool,
    /// Run one instruction per block, so that a stop the bus asks for during an instruction
    /// (a debugger's watchpoint) comes right after it, and [`Cpu::breakpoints`] match any
    /// instruction, not only block starts. Slow; off by default.
    pub one_at_a_time: bool,
    /// [`Cpu::breakpoints`] match any instruction, not only block starts: a block runs up to
    /// the first breakpoint inside it (a debugger's `break`). Off by default: the host's tools
    /// watch function entries, which start blocks, and pay nothing per instruction.
    pub exact_breakpoints: bool,
    /// The breakpoint just reported: the next block runs without stopping there again.
    bp_resume: bool,
}

impl Cpu {
    /// A CPU of `model` in its power-on state (Intel SDM vol. 3, table 10-1): real mode,
    /// CS:IP = F000:FFF0 with CS base 0xFFFF0000.
    pub fn new(model: CpuModel) -> Self {
        let mut cpu = Cpu {
            regs: [0; 16],
            rip: 0,
            flags: Flags::default(),
            seg: [Segment::default(); 6],
            ldtr: Segment::default(),
            tr: Segment::default(),
            gdtr: TableReg::default(),
            idtr: TableReg::default(),
            cr0: 0,
            cr2: 0,
            cr3: 0,
            cr4: 0,
            cr8: 0,
            efer: 0,
            dr: [0; 8],
            xmm: [0; 16],
            mxcsr: 0x1f80,
            fpu: x87::X87::reset(),
            cpl: 0,
            smm: false,
            a20: true,
            msr: msr::MsrFile::default(),
            model,
            icount: 0,
            halted: false,
            unimplemented: BTreeMap::new(),
            missing_features: BTreeMap::new(),
            task_fault: None,
            shadow: false,
            nmi_blocked: false,
            shutdown: None,
            end_block: false,
            tlb: Box::new(mmu::Tlb::new()),
            cache: decode::BlockCache::default(),
            cur_rip: 0,
            tsc_offset: 0,
            smm_regs: smm::SmmRegs::default(),
            nmi_latched: false,
            stalls: 0,
            smm_blocks: None,
            smm_edges: None,
            breakpoints: None,
            trace_smm_rip: false,
            one_at_a_time: false,
            exact_breakpoints: false,
            bp_resume: false,
        };
        cpu.reset();
        cpu
    }

    /// Resets to the power-on state, keeping the model and counters.
    pub fn reset(&mut self) {
        self.regs = [0; 16];
        self.regs[regs::RDX] = self.model.reset_edx() as u64;
        self.rip = 0xfff0;
        self.flags = Flags::default();
        for s in self.seg.iter_mut() {
            *s = Segment::real(0);
        }
        self.seg[sreg::CS] = Segment { selector: 0xf000, base: 0xffff_0000, limit: 0xffff, attr: segment::ATTR_CODE16 };
        self.ldtr = Segment { selector: 0, base: 0, limit: 0xffff, attr: 0x82 };
        self.tr = Segment { selector: 0, base: 0, limit: 0xffff, attr: 0x8b };
        self.gdtr = TableReg { base: 0, limit: 0xffff };
        self.idtr = TableReg { base: 0, limit: 0xffff };
        self.cr0 = cr::CR0_ET | cr::CR0_CD | cr::CR0_NW;
        self.cr2 = 0;
        self.cr3 = 0;
        self.cr4 = 0;
        self.efer = 0;
        self.dr = [0, 0, 0, 0, 0, 0, 0xffff0ff0, 0x400];
        self.xmm = [0; 16];
        self.mxcsr = 0x1f80;
        self.fpu = x87::X87::reset();
        self.cpl = 0;
        self.smm = false;
        self.halted = false;
        self.shadow = false;
        self.nmi_blocked = false;
        self.shutdown = None;
        self.task_fault = None;
        self.msr = msr::MsrFile::default();
        self.smm_regs = smm::SmmRegs::default();
        self.nmi_latched = false;
        self.flush_tlb();
        self.cache.clear();
    }

    /// Counts a use of a mechanism this CPU does not model; `what` names it and what the CPU
    /// does instead (for the run summary: a missing feature is not an instruction).
    pub fn note_missing_feature(&mut self, what: &str) {
        *self.missing_features.entry(what.to_string()).or_default() += 1;
    }

    /// Whether CR0.PE is set.
    #[inline]
    pub fn protected(&self) -> bool {
        self.cr0 & cr::CR0_PE != 0
    }

    /// Whether the CPU runs virtual-8086 code.
    #[inline]
    pub fn vm86(&self) -> bool {
        self.flags.sys(flags::bits::VM)
    }

    /// Whether IA-32e mode is active (EFER.LMA).
    #[inline]
    pub fn long_mode(&self) -> bool {
        self.efer & cr::EFER_LMA != 0
    }

    /// Whether the current code segment is a 64-bit one.
    #[inline]
    pub fn mode64(&self) -> bool {
        self.long_mode() && self.seg[sreg::CS].long()
    }

    /// Code size of the current CS: 16, 32 or 64.
    #[inline]
    pub fn bitness(&self) -> u32 {
        if self.mode64() {
            64
        } else if self.seg[sreg::CS].big() && self.protected() && !self.vm86() {
            32
        } else if self.seg[sreg::CS].big() && !self.protected() {
            // Real mode with a 32-bit CS left over from protected mode (unusual but legal).
            32
        } else {
            16
        }
    }

    /// A human-readable mode name, for summaries and events.
    pub fn mode_name(&self) -> &'static str {
        if !self.protected() {
            "real"
        } else if self.vm86() {
            "vm86"
        } else if self.mode64() {
            "long"
        } else if self.long_mode() {
            "compat"
        } else if self.bitness() == 32 {
            "protected32"
        } else {
            "protected16"
        }
    }

    /// Drops every cached translation (after CR3/CR0/CR4 writes, a CPL or SMM change, or a
    /// change in the platform's memory map).
    pub fn flush_tlb(&mut self) {
        self.tlb.flush();
    }

    /// Drops every decoded block (the platform remapped memory that may hold code).
    pub fn flush_code(&mut self) {
        self.cache.clear();
        self.tlb.flush();
    }

    /// Drops the decoded blocks holding bytes of the physical range `phys`: something other
    /// than this CPU (a bus master) wrote there, and the CPU only notices its own writes.
    pub fn invalidate_code(&mut self, phys: std::ops::Range<u64>) {
        if self.cache.is_empty() {
            return;
        }
        let mut a = phys.start;
        while a < phys.end {
            let page = a & !0xfff;
            let end = page.saturating_add(0x1000).min(phys.end);
            if self.cache.write_hits_code(a, end - a) {
                self.cache.invalidate_page(page);
            }
            if end == a {
                break;
            }
            a = end;
        }
    }

    /// Runs until `budget` more instructions have retired, the CPU halts with nothing pending,
    /// the bus asks to stop, or the CPU shuts down.
    pub fn run(&mut self, bus: &mut dyn Bus, budget: u64) -> Exit {
        let limit = self.icount.saturating_add(budget);
        let stall_limit = self.stalls.saturating_add(budget);
        loop {
            if let Some(r) = self.shutdown.take() {
                self.shutdown = Some(r.clone());
                return Exit::Shutdown(r);
            }
            if self.icount >= limit || self.stalls >= stall_limit {
                return Exit::InstructionLimit;
            }
            let p = bus.pending();
            if p.0 != 0 || self.smm_regs.smi_latched || self.nmi_latched {
                if p.has(Pending::STOP) {
                    return Exit::Stopped;
                }
                if self.take_events(bus, p) {
                    self.stalls += 1;
                    continue;
                }
            }
            if self.halted {
                return Exit::Halted;
            }
            if let Some(bp) = &self.breakpoints {
                if !std::mem::take(&mut self.bp_resume) && bp.contains(&self.rip) {
                    self.bp_resume = true;
                    return Exit::Breakpoint;
                }
            }
            let single = std::mem::replace(&mut self.shadow, false);
            self.run_block(bus, limit, single);
        }
    }

    /// Latches SMI/NMI/INIT requests and takes the highest-priority event the CPU accepts now
    /// (SMI, then INIT, then NMI, then INTR). Returns true if one was taken.
    fn take_events(&mut self, bus: &mut dyn Bus, p: Pending) -> bool {
        if p.has(Pending::SMI) {
            // SMI is an edge: latch it and let the platform drop its request. While in SMM
            // one more SMI stays latched until after RSM.
            bus.ack_smi();
            self.latch_smi(p.has(Pending::IO_TRAP));
        }
        if p.has(Pending::NMI) {
            bus.ack_nmi();
            self.nmi_latched = true;
        }
        // SMI is not masked by IF or the STI/MOV SS shadow.
        if self.smm_regs.smi_latched && !self.smm {
            self.enter_smm(bus);
            return true;
        }
        if p.has(Pending::INIT) && !self.smm {
            // INIT stays pending at the platform while in SMM and is taken after RSM.
            bus.ack_init();
            self.init();
            return true;
        }
        if self.nmi_latched && !self.nmi_blocked && !self.shadow {
            self.nmi_latched = false;
            self.halted = false;
            self.nmi_blocked = true;
            self.raise(bus, Exc::new(exception::NMI), exception::Source::External);
            return true;
        }
        if p.has(Pending::INTR) && self.flags.sys(flags::bits::IF) && !self.shadow {
            self.halted = false;
            let v = bus.ack_intr();
            self.raise(bus, Exc::new(v), exception::Source::External);
            return true;
        }
        false
    }

    /// INIT: the power-on register state, keeping SMBASE, the SMM registers, MTRRs and the TSC
    /// (SDM vol. 3A, table 10-1).
    pub fn init(&mut self) {
        let smm_regs = self.smm_regs.clone();
        let msr = self.msr.clone();
        let tsc = self.tsc_offset;
        self.reset();
        self.smm_regs = smm_regs;
        self.smm_regs.smi_latched = false;
        self.msr = msr;
        self.tsc_offset = tsc;
    }

    /// Executes one decoded block (or a single instruction when `single`).
    fn run_block(&mut self, bus: &mut dyn Bus, limit: u64, single: bool) {
        let block = match self.block_at_rip(bus) {
            Ok(b) => b,
            Err(_) if self.shutdown.is_some() => return,
            Err(e) => {
                self.stalls += 1;
                self.raise(bus, e, exception::Source::Fault);
                return;
            }
        };
        if self.smm {
            if let Some(r) = self.smm_blocks.as_deref_mut() {
                r.record(&block);
            }
            if let Some(e) = self.smm_edges.as_deref_mut() {
                e.hit(block.phys);
            }
        }
        self.end_block = false;
        // Sequential execution advances the full EIP in 16-bit code too: only transfers with a
        // 16-bit operand size truncate it to IP (SDM vol. 2, JMP/CALL/RET), and past the CS
        // limit the fetch faults. SMM's 16-bit entry state with its 4 GiB limit runs code above
        // offset 0xFFFF (OVMF's SMBASE relocation stub jumps there with `jmp ebp`).
        let mask = if block.bitness == 64 { u64::MAX } else { 0xffff_ffff };
        let room = limit.saturating_sub(self.icount) as usize;
        let trap_flag = self.flags.sys(flags::bits::TF);
        let mut n = if single || trap_flag || self.one_at_a_time { 1 } else { block.insns.len().min(room.max(1)) };
        if let (true, Some(bp)) = (self.exact_breakpoints, &self.breakpoints) {
            // Stop before the first breakpoint past the block's start; `run` reports it there.
            let mut at = self.rip;
            for (i, d) in block.insns[..n].iter().enumerate() {
                if i > 0 && bp.contains(&at) {
                    n = i;
                    break;
                }
                at = at.wrapping_add(d.len as u64) & mask;
            }
        }
        // Decided once per block: SMM is entered only between blocks, and RSM ends its block.
        let report_rip = self.trace_smm_rip && self.smm;
        if report_rip {
            bus.smm_block(block.phys);
        }
        for d in &block.insns[..n] {
            let start = self.rip;
            self.cur_rip = start;
            if report_rip {
                bus.smm_instruction(start);
            }
            self.rip = start.wrapping_add(d.len as u64) & mask;
            if let Err(e) = (d.exec)(self, bus, d) {
                self.rip = start;
                self.stalls += 1;
                self.raise(bus, e, exception::Source::Fault);
                return;
            }
            self.icount += 1;
            if trap_flag && self.single_step_trap(bus, d) {
                return;
            }
            if self.end_block {
                return;
            }
        }
    }
}
