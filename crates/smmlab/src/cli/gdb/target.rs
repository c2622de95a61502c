//! The machine as gdbstub's target: registers, memory, resuming, stepping and breakpoints.

use super::regs::{SmmRegisters, SmmX86_64, EXTRA};
use gdbstub::common::Signal;
use gdbstub::stub::SingleThreadStopReason;
use gdbstub::target::ext::base::singlethread::{SingleThreadBase, SingleThreadResume, SingleThreadResumeOps, SingleThreadSingleStep, SingleThreadSingleStepOps};
use gdbstub::target::ext::base::reverse_exec::{ReverseContOps, ReverseStepOps};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{BreakpointsOps, WatchKind};
use gdbstub::target::ext::monitor_cmd::MonitorCmdOps;
use gdbstub::target::{Target, TargetError, TargetResult};
use machine::{ExitReason, Machine, RunSummary};

/// Instructions run between two looks at the connection (for gdb's Ctrl-C) while continuing.
const CHUNK: u64 = 1_000_000;

/// gdb's register order (RAX, RBX, RCX, RDX, RSI, RDI, RBP, RSP, R8..R15) to the CPU's
/// encoding order (RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8..R15).
const GDB_TO_ENCODING: [usize; 16] = [0, 3, 1, 2, 6, 7, 5, 4, 8, 9, 10, 11, 12, 13, 14, 15];

/// What gdb asked the CPU to do next.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    Continue,
    Step,
    /// `reverse-stepi` ([`super::reverse`]).
    StepBack,
    /// `reverse-continue`.
    ContinueBack,
}

/// How gdb's memory reads and writes see SMRAM (`monitor view`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum View {
    /// As the CPU sees memory now: SMRAM while it is in SMM.
    Cpu,
    /// As a CPU in SMM sees it.
    Smram,
    /// As a CPU outside SMM (or any other agent) sees it: the chipset hides SMRAM.
    Normal,
}

/// The machine as gdb's target.
pub struct GdbTarget<'m> {
    pub m: &'m mut Machine,
    /// The instruction count at which the run ends (--max-instructions).
    pub end_at: u64,
    pub resume: Resume,
    /// `break` and `hbreak` addresses (RIP values); both are host breakpoints, neither is DR7.
    pub sw_breakpoints: Vec<u64>,
    pub hw_breakpoints: Vec<u64>,
    /// Write watchpoints (`watch`): physical start and length.
    pub watches: Vec<(u64, u64)>,
    /// `monitor break-on-smi`.
    pub break_on_smi: bool,
    /// `monitor break-on-rsm`.
    pub break_on_rsm: bool,
    pub view: View,
    /// The SMIs so far (`monitor timeline`), fed from the machine's events after every stretch.
    pub timeline: trace::Timeline,
    /// How the run ended, once it has.
    pub ended: Option<RunSummary>,
    /// What `reverse-stepi` replays from.
    pub history: Option<super::reverse::History>,
    /// The CPU stopped at an SMI's entry (before its first instruction).
    pub at_smm_entry: bool,
    /// Services the host runs at breakpoints of its own (a module run alone: the SMST's), which
    /// gdb does not see: served and run on.
    pub host: Option<HostServices<'m>>,
    /// Where the host last served (instruction count, RIP): a run that starts there has been.
    served_at: Option<(u64, u64)>,
}

/// The host's breakpoints and what serves them ([`GdbTarget::host`]).
pub struct HostServices<'m> {
    /// Their addresses.
    pub at: Vec<u64>,
    /// Serves the one the CPU stands at; an error ends the run.
    pub serve: &'m mut dyn FnMut(&mut Machine) -> Result<(), String>,
}

impl<'m> GdbTarget<'m> {
    pub fn new(m: &'m mut Machine, max_instructions: u64, ips: u64) -> Self {
        let end_at = m.icount().saturating_add(max_instructions);
        // The timeline needs the machine's events (`smmlab run` turns them off when quiet).
        if let Some(ev) = m.board.events() {
            ev.recording = true;
        }
        let mut t = GdbTarget {
            m,
            end_at,
            resume: Resume::Continue,
            sw_breakpoints: Vec::new(),
            hw_breakpoints: Vec::new(),
            watches: Vec::new(),
            break_on_smi: false,
            break_on_rsm: false,
            view: View::Cpu,
            timeline: trace::Timeline::new(ips),
            ended: None,
            history: None,
            at_smm_entry: false,
            host: None,
            served_at: None,
        };
        // gdb's `break *ADDR` may name any instruction.
        t.m.set_exact_breakpoints(true);
        t.mark_history();
        t
    }

    /// gdb's addresses are linear, as the CPU's own accesses are (CS-relative offsets are
    /// gdb's to add): with paging on they go through the CPU's page tables, without paging
    /// they are physical.
    fn physical(&mut self, lin: u64) -> Option<u64> {
        if self.m.system_registers().cr0 & (1 << 31) == 0 {
            return Some(lin);
        }
        self.m.linear_to_physical(lin)
    }

    /// Whether memory accesses see SMRAM now.
    fn smm_view(&self) -> bool {
        match self.view {
            View::Cpu => self.m.cpu_view().in_smm,
            View::Smram => true,
            View::Normal => false,
        }
    }

    /// Hands the breakpoints gdb set to the machine (again: a snapshot's CPU holds the
    /// breakpoints of its time).
    pub fn restore_breakpoints(&mut self) {
        let host = self.host.as_ref().map(|h| h.at.as_slice()).unwrap_or(&[]);
        let all: Vec<u64> = self.sw_breakpoints.iter().chain(&self.hw_breakpoints).chain(host).copied().collect();
        self.m.set_breakpoints(&all);
    }

    /// Whether `rip` is only the host's breakpoint, not gdb's.
    fn host_only(&self, rip: u64) -> bool {
        self.host.as_ref().is_some_and(|h| h.at.contains(&rip)) && !self.sw_breakpoints.contains(&rip) && !self.hw_breakpoints.contains(&rip)
    }

    /// If the CPU stands at a host service not served yet, serves it: Err(why) if that failed.
    fn serve_host(&mut self) -> Result<(), String> {
        let (rip, icount) = (self.m.cpu_view().rip, self.m.icount());
        let is_host = self.host.as_ref().is_some_and(|h| h.at.contains(&rip));
        if !is_host || self.served_at == Some((icount, rip)) {
            return Ok(());
        }
        self.served_at = Some((icount, rip));
        match self.host.as_mut() {
            Some(h) => (h.serve)(self.m),
            None => Ok(()),
        }
    }

    /// Runs at most `budget` instructions; a stop at a breakpoint where the CPU already stood
    /// (gdb resuming from one) runs on, and so does a pause that stopped nothing (no
    /// instruction, no SMM entry: one asked for by an RSM that was a chunk's last instruction).
    fn run(&mut self, budget: u64) -> RunSummary {
        let (start, rip, smis) = (self.m.icount(), self.m.cpu_view().rip, self.m.cpu_view().smi_count);
        let s = self.m.run(budget);
        let v = self.m.cpu_view();
        let nothing_done = self.m.icount() == start && v.smi_count == smis;
        if nothing_done && ((s.exit == ExitReason::Breakpoint && v.rip == rip) || s.exit == ExitReason::Paused) {
            return self.m.run(budget);
        }
        s
    }

    /// One stretch of running: the stop reason, or None to go on (the chunk ran out).
    pub fn run_some(&mut self) -> Option<SingleThreadStopReason<u64>> {
        let left = self.end_at.saturating_sub(self.m.icount());
        if left == 0 {
            return Some(self.end(None));
        }
        match self.resume {
            // Replaying from a snapshot would run the host's services without serving them.
            Resume::StepBack | Resume::ContinueBack if self.host.is_some() => {
                eprintln!("smmlab: gdb: no reverse execution in a module run alone (its SMM services are the host's)");
                return Some(SingleThreadStopReason::Signal(Signal::SIGTRAP));
            }
            Resume::StepBack => return Some(self.step_back()),
            Resume::ContinueBack => return Some(self.continue_back()),
            Resume::Continue | Resume::Step => {}
        }
        self.run_forward(left)
    }

    fn run_forward(&mut self, left: u64) -> Option<SingleThreadStopReason<u64>> {
        let step = self.resume == Resume::Step;
        // A step may have stopped on a host service's entry: it is served before it runs.
        if let Err(why) = self.serve_host() {
            eprintln!("smmlab: gdb: the host's service failed: {why}");
            return Some(self.end(None));
        }
        // A step that meets an SMI stops at its entry, before the SMI's first instruction, as
        // does a continue with break-on-smi.
        self.m.set_stop_on_smm_entry(step || self.break_on_smi);
        self.m.set_stop_after_rsm(self.break_on_rsm && !step);
        let (smis, was_in_smm) = (self.m.cpu_view().smi_count, self.m.cpu_view().in_smm);
        // (gdb's own memory writes may have hit a watch.)
        self.m.take_watch_hits();
        let s = self.run(if step { 1 } else { left.min(CHUNK) });
        let hit = self.m.take_watch_hits().first().copied();
        self.m.set_stop_on_smm_entry(false);
        self.m.set_stop_after_rsm(false);
        for e in self.m.drain_events() {
            self.timeline.feed(&e);
        }
        let v = self.m.cpu_view();
        let entered = s.exit == ExitReason::Paused && v.in_smm && v.smi_count > smis;
        self.at_smm_entry = entered;
        // An RSM pauses the run right after it, or (the chunk's last instruction) ends the chunk.
        let returned = !v.in_smm && (was_in_smm || v.smi_count > smis) && matches!(s.exit, ExitReason::Paused | ExitReason::InstructionLimit);
        // A watched write pauses the run after its instruction, or (a step) ends the step.
        if let Some(h) = hit.filter(|_| matches!(s.exit, ExitReason::Paused | ExitReason::InstructionLimit)) {
            eprintln!("smmlab: gdb: watched write of {} bytes at {:#x}{}", h.size, h.addr, if h.smm { " from SMM" } else { "" });
            return Some(SingleThreadStopReason::Watch { tid: (), kind: WatchKind::Write, addr: h.addr });
        }
        match s.exit {
            ExitReason::Breakpoint if self.host_only(v.rip) => match self.serve_host() {
                Ok(()) => None,
                Err(why) => {
                    eprintln!("smmlab: gdb: the host's service failed: {why}");
                    Some(self.end(None))
                }
            },
            ExitReason::Breakpoint if self.hw_breakpoints.contains(&v.rip) => Some(SingleThreadStopReason::HwBreak(())),
            ExitReason::Breakpoint => Some(SingleThreadStopReason::SwBreak(())),
            _ if entered && step => Some(SingleThreadStopReason::DoneStep),
            _ if entered => {
                eprintln!("smmlab: gdb: SMI {} entered: stopped at its first instruction, SMBASE {:#x} + 0x8000", v.smi_count, v.smbase);
                Some(SingleThreadStopReason::Signal(Signal::SIGTRAP))
            }
            ExitReason::InstructionLimit | ExitReason::Paused if step => Some(SingleThreadStopReason::DoneStep),
            _ if returned && self.break_on_rsm => {
                eprintln!("smmlab: gdb: SMI {} returned (RSM): stopped at {:#06x}:{:#x}", v.smi_count, v.cs, v.rip);
                Some(SingleThreadStopReason::Signal(Signal::SIGTRAP))
            }
            ExitReason::InstructionLimit | ExitReason::Paused if self.m.icount() < self.end_at => None,
            ExitReason::Interrupted => Some(SingleThreadStopReason::Terminated(Signal::SIGINT)),
            _ => Some(self.end(Some(s))),
        }
    }

    /// The run has ended: tell the user why, and gdb that the program exited.
    fn end(&mut self, s: Option<RunSummary>) -> SingleThreadStopReason<u64> {
        let s = s.unwrap_or_else(|| {
            let mut s = self.m.run(0);
            (s.exit, s.exit_code) = (ExitReason::InstructionLimit, 4);
            s
        });
        let detail = s.exit.detail().map_or(String::new(), |d| format!(" ({d})"));
        eprintln!("smmlab: gdb: the run ended: {}{detail}, exit code {}, after {} instructions", s.exit.name(), s.exit_code, self.m.icount());
        let code = s.exit_code.clamp(0, 255) as u8;
        self.ended = Some(s);
        SingleThreadStopReason::Exited(code)
    }

    /// [`EXTRA`]'s values now.
    fn extra_registers(&self) -> Vec<u64> {
        let sys = self.m.system_registers();
        let v = self.m.cpu_view();
        // gdb's order CS, SS, DS, ES, FS, GS; the CPU's ES, CS, SS, DS, FS, GS.
        let segs = [1, 2, 3, 0, 4, 5].map(|i| sys.segments[i]);
        let mut out: Vec<u64> = segs.iter().map(|s| s.base).collect();
        out.extend(segs.iter().map(|s| s.limit as u64));
        out.extend([sys.cr0, sys.cr2, sys.cr3, sys.cr4, sys.efer, v.smbase as u64, v.in_smm as u64]);
        debug_assert_eq!(out.len(), EXTRA.len());
        out
    }
}

/// `[start, start+len)` cut at page boundaries: (linear address, bytes).
fn pages(start: u64, len: usize) -> impl Iterator<Item = (u64, usize)> {
    let mut at = start;
    let end = start + len as u64;
    std::iter::from_fn(move || {
        (at < end).then(|| {
            let n = ((at | 0xfff) + 1).min(end) - at;
            let r = (at, n as usize);
            at += n;
            r
        })
    })
}

/// gdb may ask for any address: one whose range (read 8 bytes at a time) would wrap past
/// 2^64 is an error to gdb (EFAULT), not an overflow here.
fn in_range(start: u64, len: usize) -> Result<(), TargetError<String>> {
    match start.checked_add(len as u64).and_then(|e| e.checked_add(8)) {
        Some(_) => Ok(()),
        None => Err(TargetError::Errno(14)),
    }
}

impl Target for GdbTarget<'_> {
    type Arch = SmmX86_64;
    type Error = String;

    fn base_ops(&mut self) -> BaseOps<'_, Self::Arch, Self::Error> {
        BaseOps::SingleThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }

    fn support_monitor_cmd(&mut self) -> Option<MonitorCmdOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadBase for GdbTarget<'_> {
    fn read_registers(&mut self, regs: &mut SmmRegisters) -> TargetResult<(), Self> {
        let (gprs, rip) = self.m.registers();
        let core = &mut regs.core;
        for (i, enc) in GDB_TO_ENCODING.iter().enumerate() {
            core.regs[i] = gprs[*enc];
        }
        core.rip = rip;
        core.eflags = self.m.flags() as u32;
        let [es, cs, ss, ds, fs, gs] = self.m.segment_selectors().map(u32::from);
        core.segments.es = es;
        core.segments.cs = cs;
        core.segments.ss = ss;
        core.segments.ds = ds;
        core.segments.fs = fs;
        core.segments.gs = gs;
        regs.extra = self.extra_registers();
        Ok(())
    }

    /// The GPRs, RIP and EFLAGS can be written; everything else is read-only (a selector
    /// without its descriptor, or SMBASE outside RSM, would mean nothing): changing it is an
    /// error to gdb, and nothing is written.
    fn write_registers(&mut self, regs: &SmmRegisters) -> TargetResult<(), Self> {
        let mut now = SmmRegisters::default();
        self.read_registers(&mut now)?;
        let mut want = regs.clone();
        (want.core.regs, want.core.rip, want.core.eflags) = (now.core.regs, now.core.rip, now.core.eflags);
        if want != now {
            eprintln!("smmlab: gdb: only the general registers, RIP and EFLAGS can be written; the others are read-only");
            return Err(TargetError::NonFatal);
        }
        let (gprs, rip) = self.m.registers();
        for (i, enc) in GDB_TO_ENCODING.iter().enumerate() {
            if gprs[*enc] != regs.core.regs[i] {
                self.m.set_register(*enc, regs.core.regs[i]);
            }
        }
        if rip != regs.core.rip {
            self.m.set_rip(regs.core.rip);
        }
        let flags = self.m.flags();
        if flags as u32 != regs.core.eflags {
            self.m.set_flags((flags & !0xffff_ffff) | regs.core.eflags as u64);
        }
        // A replay would not redo this write: reverse stepping starts here now.
        self.mark_history();
        Ok(())
    }

    fn read_addrs(&mut self, start_addr: u64, data: &mut [u8]) -> TargetResult<usize, Self> {
        in_range(start_addr, data.len())?;
        let smm = self.smm_view();
        let mut done = 0;
        for (lin, len) in pages(start_addr, data.len()) {
            let Some(phys) = self.physical(lin) else { break };
            data[done..done + len].copy_from_slice(&self.m.read_phys(phys, len, smm));
            done += len;
        }
        // gdb takes a short read as the end of readable memory, and none as an error.
        if done == 0 {
            return Err(TargetError::Errno(14));
        }
        Ok(done)
    }

    fn write_addrs(&mut self, start_addr: u64, data: &[u8]) -> TargetResult<(), Self> {
        in_range(start_addr, data.len())?;
        let smm = self.smm_view();
        let mut at = Vec::new();
        for (lin, len) in pages(start_addr, data.len()) {
            at.push((self.physical(lin).ok_or(TargetError::Errno(14))?, len));
        }
        let mut done = 0;
        for (phys, len) in at {
            self.m.write_phys_as(phys, &data[done..done + len], smm);
            done += len;
        }
        self.mark_history();
        Ok(())
    }

    fn support_resume(&mut self) -> Option<SingleThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl SingleThreadResume for GdbTarget<'_> {
    fn resume(&mut self, _signal: Option<Signal>) -> Result<(), Self::Error> {
        self.resume = Resume::Continue;
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<SingleThreadSingleStepOps<'_, Self>> {
        Some(self)
    }

    fn support_reverse_step(&mut self) -> Option<ReverseStepOps<'_, (), Self>> {
        Some(self)
    }

    fn support_reverse_cont(&mut self) -> Option<ReverseContOps<'_, (), Self>> {
        Some(self)
    }
}

impl SingleThreadSingleStep for GdbTarget<'_> {
    fn step(&mut self, _signal: Option<Signal>) -> Result<(), Self::Error> {
        self.resume = Resume::Step;
        Ok(())
    }
}
