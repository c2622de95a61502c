//! `smmlab run --gdb ADDR`: a gdb remote stub (the `gdbstub` crate) that drives the machine
//! through its host API only (`machine::host`), so that a real gdb can step through the
//! firmware and its SMM handlers.
//!
//! What gdb sees:
//! - Registers: the GPRs, RIP, EFLAGS and the segment selectors (x86-64 layout, gdb's
//!   `i386:x86-64`); the x87 and SSE registers read as 0. GPRs, RIP and EFLAGS can be written;
//!   writes to segment selectors and the FPU/SSE registers are ignored (a selector without its
//!   descriptor would mean nothing).
//! - RIP is the CPU's RIP as it is, an offset in CS: in real mode at reset gdb shows 0xfff0
//!   (CS 0xf000), and at an SMI entry 0x8000 (CS base SMBASE).
//! - Memory addresses are physical, read and written as the CPU sees memory in its current SMM
//!   state (SMRAM decoding applies: SMRAM is visible while the CPU is in SMM). There is no
//!   segment or paging translation in this first version: identity-mapped firmware, what SMM
//!   runs, reads right; code under an OS's page tables does not.
//! - Software breakpoints (`break *ADDR`) are the CPU's host breakpoints on RIP
//!   ([`Machine::set_breakpoints`]): no 0xCC is written to guest memory, and a breakpoint
//!   catches the RIP where a block of code starts (a function entry, a jump or call target, an
//!   SMI entry at 0x8000), not an instruction in the middle of a block.
//! - `stepi` retires one instruction, `continue` runs until a breakpoint, a Ctrl-C from gdb or
//!   the end of the run (halt, shutdown, power off, reset, the instruction limit...), which gdb
//!   sees as the program exiting with the run's exit code.
//! - `monitor smm`: whether the CPU is in SMM, SMBASE, the SMI count and where the CPU is.
//!
//! A gdb that detaches, kills or drops the connection ends the run.

use gdbstub::common::Signal;
use gdbstub::conn::ConnectionExt;
use gdbstub::stub::run_blocking::{BlockingEventLoop, Event, WaitForStopReasonError};
use gdbstub::stub::{DisconnectReason, GdbStub, SingleThreadStopReason};
use gdbstub::target::ext::base::singlethread::{SingleThreadBase, SingleThreadResume, SingleThreadResumeOps, SingleThreadSingleStep, SingleThreadSingleStepOps};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{Breakpoints, BreakpointsOps, SwBreakpoint, SwBreakpointOps};
use gdbstub::target::ext::monitor_cmd::{ConsoleOutput, MonitorCmd, MonitorCmdOps};
use gdbstub::target::{Target, TargetError, TargetResult};
use gdbstub::outputln;
use gdbstub_arch::x86::reg::X86_64CoreRegs;
use gdbstub_arch::x86::X86_64_SSE;
use machine::{ExitReason, Machine, RunSummary};
use std::net::{TcpListener, TcpStream};

/// Instructions run between two looks at the connection (for gdb's Ctrl-C) while continuing.
const CHUNK: u64 = 1_000_000;

/// gdb's register order (RAX, RBX, RCX, RDX, RSI, RDI, RBP, RSP, R8..R15) to the CPU's
/// encoding order (RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8..R15).
const GDB_TO_ENCODING: [usize; 16] = [0, 3, 1, 2, 6, 7, 5, 4, 8, 9, 10, 11, 12, 13, 14, 15];

/// `--gdb`'s value: `HOST:PORT`, or a bare port on 127.0.0.1.
pub fn parse_addr(arg: &str) -> String {
    match arg.parse::<u16>() {
        Ok(port) => format!("127.0.0.1:{port}"),
        Err(_) => arg.to_string(),
    }
}

/// What gdb asked the CPU to do next.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Resume {
    Continue,
    Step,
}

/// The machine as gdb's target.
struct GdbTarget<'m> {
    m: &'m mut Machine,
    /// The instruction count at which the run ends (--max-instructions).
    end_at: u64,
    resume: Resume,
    breakpoints: Vec<u64>,
    /// How the run ended, once it has.
    ended: Option<RunSummary>,
}

impl GdbTarget<'_> {
    fn smm(&self) -> bool {
        self.m.cpu_view().in_smm
    }

    /// Runs at most `budget` instructions; a stop at a breakpoint where the CPU already stood
    /// (gdb resuming from one) runs on.
    fn run(&mut self, budget: u64) -> RunSummary {
        let (start, rip) = (self.m.icount(), self.m.cpu_view().rip);
        let s = self.m.run(budget);
        if s.exit == ExitReason::Breakpoint && self.m.icount() == start && self.m.cpu_view().rip == rip {
            return self.m.run(budget);
        }
        s
    }

    /// One stretch of running: the stop reason, or None to go on (the chunk ran out).
    fn run_some(&mut self) -> Option<SingleThreadStopReason<u64>> {
        let left = self.end_at.saturating_sub(self.m.icount());
        if left == 0 {
            return Some(self.end(None));
        }
        let step = self.resume == Resume::Step;
        let s = self.run(if step { 1 } else { left.min(CHUNK) });
        match s.exit {
            ExitReason::Breakpoint => Some(SingleThreadStopReason::SwBreak(())),
            ExitReason::InstructionLimit | ExitReason::Paused if step => Some(SingleThreadStopReason::DoneStep),
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
    type Arch = X86_64_SSE;
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
    fn read_registers(&mut self, regs: &mut X86_64CoreRegs) -> TargetResult<(), Self> {
        let (gprs, rip) = self.m.registers();
        for (i, enc) in GDB_TO_ENCODING.iter().enumerate() {
            regs.regs[i] = gprs[*enc];
        }
        regs.rip = rip;
        regs.eflags = self.m.flags() as u32;
        let [es, cs, ss, ds, fs, gs] = self.m.segment_selectors().map(u32::from);
        regs.segments.es = es;
        regs.segments.cs = cs;
        regs.segments.ss = ss;
        regs.segments.ds = ds;
        regs.segments.fs = fs;
        regs.segments.gs = gs;
        Ok(())
    }

    fn write_registers(&mut self, regs: &X86_64CoreRegs) -> TargetResult<(), Self> {
        let (gprs, rip) = self.m.registers();
        for (i, enc) in GDB_TO_ENCODING.iter().enumerate() {
            if gprs[*enc] != regs.regs[i] {
                self.m.set_register(*enc, regs.regs[i]);
            }
        }
        if rip != regs.rip {
            self.m.set_rip(regs.rip);
        }
        let flags = self.m.flags();
        if flags as u32 != regs.eflags {
            self.m.set_flags((flags & !0xffff_ffff) | regs.eflags as u64);
        }
        Ok(())
    }

    fn read_addrs(&mut self, start_addr: u64, data: &mut [u8]) -> TargetResult<usize, Self> {
        in_range(start_addr, data.len())?;
        let smm = self.smm();
        let bytes = self.m.read_phys(start_addr, data.len(), smm);
        data.copy_from_slice(&bytes);
        Ok(data.len())
    }

    fn write_addrs(&mut self, start_addr: u64, data: &[u8]) -> TargetResult<(), Self> {
        in_range(start_addr, data.len())?;
        let smm = self.smm();
        self.m.write_phys_as(start_addr, data, smm);
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
}

impl SingleThreadSingleStep for GdbTarget<'_> {
    fn step(&mut self, _signal: Option<Signal>) -> Result<(), Self::Error> {
        self.resume = Resume::Step;
        Ok(())
    }
}

impl Breakpoints for GdbTarget<'_> {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }
}

impl SwBreakpoint for GdbTarget<'_> {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        if !self.breakpoints.contains(&addr) {
            self.breakpoints.push(addr);
            self.m.set_breakpoints(&self.breakpoints);
        }
        Ok(true)
    }

    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        let Some(i) = self.breakpoints.iter().position(|b| *b == addr) else {
            return Ok(false);
        };
        self.breakpoints.remove(i);
        self.m.set_breakpoints(&self.breakpoints);
        Ok(true)
    }
}

impl MonitorCmd for GdbTarget<'_> {
    fn handle_monitor_cmd(&mut self, cmd: &[u8], mut out: ConsoleOutput<'_>) -> Result<(), Self::Error> {
        match String::from_utf8_lossy(cmd).trim() {
            "smm" => {
                let v = self.m.cpu_view();
                outputln!(out, "in SMM: {}", if v.in_smm { "yes" } else { "no" });
                outputln!(out, "SMBASE: {:#x} (SMI entry at {:#x})", v.smbase, v.smbase as u64 + 0x8000);
                outputln!(out, "SMIs: {}{}", v.smi_count, if v.smi_latched { " (one latched, waiting for RSM)" } else { "" });
                outputln!(out, "CPU: {:#06x}:{:#x}, {} mode, {} instructions retired", v.cs, v.rip, v.mode, self.m.icount());
            }
            other => {
                if !other.is_empty() && other != "help" {
                    outputln!(out, "unknown monitor command {other:?}");
                }
                outputln!(out, "monitor commands: smm (SMM state: in SMM, SMBASE, SMI count), help");
            }
        }
        Ok(())
    }
}

/// gdbstub's blocking event loop over the machine.
struct EventLoop<'m>(std::marker::PhantomData<&'m mut Machine>);

impl<'m> BlockingEventLoop for EventLoop<'m> {
    type Target = GdbTarget<'m>;
    type Connection = TcpStream;
    type StopReason = SingleThreadStopReason<u64>;

    fn wait_for_stop_reason(target: &mut GdbTarget<'m>, conn: &mut TcpStream) -> Result<Event<Self::StopReason>, WaitForStopReasonError<String, std::io::Error>> {
        loop {
            if let Some(stop) = target.run_some() {
                return Ok(Event::TargetStopped(stop));
            }
            // Between chunks: gdb's Ctrl-C (or whatever else it sent).
            if conn.peek().map_err(WaitForStopReasonError::Connection)?.is_some() {
                let byte = ConnectionExt::read(conn).map_err(WaitForStopReasonError::Connection)?;
                return Ok(Event::IncomingData(byte));
            }
        }
    }

    fn on_interrupt(_target: &mut GdbTarget<'m>) -> Result<Option<Self::StopReason>, String> {
        Ok(Some(SingleThreadStopReason::Signal(Signal::SIGINT)))
    }
}

/// Listens on `addr`, waits for one gdb and serves it until it detaches or the run ends.
/// Returns the run's exit code if the run ended, 0 if gdb left first.
pub fn serve(m: &mut Machine, addr: &str, max_instructions: u64) -> anyhow::Result<i32> {
    use anyhow::Context;
    let listener = TcpListener::bind(addr).with_context(|| format!("--gdb: cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    eprintln!("smmlab: gdb: waiting for gdb on {local} (gdb -ex 'target remote {local}')");
    let (stream, peer) = listener.accept().context("--gdb: accepting the connection")?;
    drop(listener);
    eprintln!("smmlab: gdb: connected from {peer}");
    let end_at = m.icount().saturating_add(max_instructions);
    let mut target = GdbTarget { m, end_at, resume: Resume::Continue, breakpoints: Vec::new(), ended: None };
    let result = GdbStub::new(stream).run_blocking::<EventLoop>(&mut target);
    target.m.set_breakpoints(&[]);
    let code = target.ended.as_ref().map_or(0, |s| s.exit_code);
    match result {
        Ok(DisconnectReason::Disconnect) => eprintln!("smmlab: gdb: gdb detached; the run ends here"),
        Ok(DisconnectReason::Kill) => eprintln!("smmlab: gdb: gdb killed the program; the run ends here"),
        Ok(DisconnectReason::TargetExited(_)) | Ok(DisconnectReason::TargetTerminated(_)) => {}
        Err(e) if e.is_target_error() => anyhow::bail!("--gdb: {e}"),
        Err(e) if e.is_connection_error() => eprintln!("smmlab: gdb: the connection ended ({e}); the run ends here"),
        Err(e) => eprintln!("smmlab: gdb: the session failed ({e}); the run ends here"),
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_forms() {
        assert_eq!(parse_addr("1234"), "127.0.0.1:1234");
        assert_eq!(parse_addr("0.0.0.0:99"), "0.0.0.0:99");
    }
}
