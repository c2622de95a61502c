//! `smmlab gdb` and `smmlab run --gdb ADDR`: a gdb remote stub (the `gdbstub` crate) that
//! drives the machine through its host API only (`machine::host`, `machine::debug`), so that a
//! real gdb can step through the firmware and its SMM handlers.
//!
//! What gdb sees:
//! - Registers ([`regs`]'s target description): the GPRs, RIP, EFLAGS and the segment
//!   selectors; the segment bases and limits (`cs_base`, `cs_limit`...), CR0, CR2, CR3, CR4,
//!   EFER, SMBASE and `in_smm` (all in `info registers`). The x87 and SSE registers read as 0.
//!   Only GPRs, RIP and EFLAGS can be written.
//! - RIP is the CPU's RIP as it is, an offset in CS: in real mode at reset gdb shows 0xfff0
//!   (CS 0xf000), and at an SMI entry 0x8000 (CS base SMBASE).
//! - Memory addresses are linear: with paging on they go through the guest's page tables
//!   ([`machine::Machine::linear_to_physical`]), page by page; memory is read and written as
//!   the CPU sees it in its current SMM state (SMRAM decoding applies), or as `monitor view`
//!   says.
//! - Breakpoints (`break *ADDR`, `hbreak *ADDR`) are the CPU's host breakpoints on RIP
//!   ([`machine::Machine::set_breakpoints`], exact: any instruction): no 0xCC is written to
//!   guest memory and DR7 is not used, so they work in SMM.
//! - Write watchpoints (`watch`) are watches on the machine's memory path
//!   ([`machine::Machine::set_write_watches`]): every CPU write in or out of SMM, the SMM
//!   entry's state save included, stops the run right after the instruction that made it.
//!   The CPU runs one instruction at a time while one is set. `rwatch`/`awatch` are refused.
//! - `stepi` retires one instruction; a step that meets an SMI stops at the SMI's entry
//!   before its first instruction, and a step of RSM lands where the interrupted program goes
//!   on. `continue` runs until a breakpoint, an SMI with `monitor break-on-smi on`, an RSM
//!   with `break-on-rsm on`, a Ctrl-C or the end of the run (halt, shutdown, power off,
//!   reset, the instruction limit...), which gdb sees as the program exiting with the run's
//!   exit code.
//! - `reverse-stepi` and `reverse-continue` ([`reverse`]) go back one instruction boundary
//!   (SMI entries included) or to the last stop before now, by replaying from a snapshot.
//! - `monitor` commands ([`monitor`]): smm, smi, break-on-smi, break-on-rsm, view,
//!   inventory, timeline.
//!
//! A gdb that detaches, kills or drops the connection ends the run.

mod breakpoints;
mod finding;
mod link;
mod monitor;
mod regs;
mod reverse;
mod target;

use super::run::RunArgs;
use clap::Args;
use gdbstub::common::Signal;
use gdbstub::conn::ConnectionExt;
use gdbstub::stub::run_blocking::{BlockingEventLoop, Event, WaitForStopReasonError};
use gdbstub::stub::{DisconnectReason, GdbStub, SingleThreadStopReason};
use link::Link;
use machine::Machine;
use std::net::TcpListener;
use target::GdbTarget;

/// `smmlab gdb`: any `smmlab run` options, and where gdb connects.
#[derive(Args)]
pub struct GdbArgs {
    /// Listen for gdb on ADDR (HOST:PORT, or a bare port on 127.0.0.1): `gdb -ex 'target
    /// remote ADDR'`.
    #[arg(long, value_name = "ADDR", required_unless_present = "stdio", conflicts_with = "stdio")]
    pub listen: Option<String>,
    /// Speak gdb's remote protocol on stdin and stdout, for gdb's `target remote | smmlab gdb
    /// --stdio ...` (the run's own output is off; messages go to stderr).
    #[arg(long)]
    pub stdio: bool,
    /// Open a finding of `smmlab fuzz` (its RULE-N.json) instead of a run: the machine is
    /// handed to gdb stopped at the instruction that broke the rule, in its SMI (a module's
    /// SMM services stay the host's, served at breakpoints gdb does not see).
    #[arg(long, value_name = "FINDING.json")]
    pub finding: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Where gdb connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    /// A TCP address, HOST:PORT.
    Tcp(String),
    /// stdin and stdout.
    Stdio,
}

pub fn run(a: GdbArgs) -> anyhow::Result<i32> {
    let GdbArgs { listen, stdio, finding, mut run } = a;
    anyhow::ensure!(run.gdb.is_none(), "smmlab gdb: use --listen ADDR or --stdio, not --gdb");
    let listen = match listen {
        Some(addr) => Listen::Tcp(parse_addr(&addr)),
        None => Listen::Stdio,
    };
    if stdio {
        // stdout carries the protocol: nothing else may be written there.
        for (flag, value) in [("--debugcon", &run.debugcon), ("--serial", &run.serial)] {
            anyhow::ensure!(value.as_deref() != Some("-"), "smmlab gdb --stdio: {flag} - would write into gdb's connection; give a file");
        }
        run.quiet = true;
    }
    if let Some(f) = finding {
        return finding::open(&f, &listen, run.max_instructions, run.ips);
    }
    super::run::run_with(run, super::run::Hooks { gdb: Some(listen), ..Default::default() })
}

/// `--gdb`'s and `--listen`'s value: `HOST:PORT`, or a bare port on 127.0.0.1.
pub fn parse_addr(arg: &str) -> String {
    match arg.parse::<u16>() {
        Ok(port) => format!("127.0.0.1:{port}"),
        Err(_) => arg.to_string(),
    }
}

/// gdbstub's blocking event loop over the machine.
struct EventLoop<'m>(std::marker::PhantomData<&'m mut Machine>);

impl<'m> BlockingEventLoop for EventLoop<'m> {
    type Target = GdbTarget<'m>;
    type Connection = Link;
    type StopReason = SingleThreadStopReason<u64>;

    fn wait_for_stop_reason(target: &mut GdbTarget<'m>, conn: &mut Link) -> Result<Event<Self::StopReason>, WaitForStopReasonError<String, std::io::Error>> {
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

/// Waits for one gdb at `listen` and serves it until it detaches or the run ends. Returns
/// the run's exit code if the run ended, 0 if gdb left first.
pub fn serve(m: &mut Machine, listen: &Listen, max_instructions: u64, ips: u64) -> anyhow::Result<i32> {
    serve_with(m, None, listen, max_instructions, ips)
}

/// [`serve`], the host serving `host`'s breakpoints of its own meanwhile.
pub fn serve_with<'m>(m: &'m mut Machine, host: Option<target::HostServices<'m>>, listen: &Listen, max_instructions: u64, ips: u64) -> anyhow::Result<i32> {
    use anyhow::Context;
    let link = match listen {
        Listen::Tcp(addr) => {
            let listener = TcpListener::bind(addr).with_context(|| format!("gdb: cannot listen on {addr}"))?;
            let local = listener.local_addr()?;
            eprintln!("smmlab: gdb: waiting for gdb on {local} (gdb -ex 'target remote {local}')");
            let (stream, peer) = listener.accept().context("gdb: accepting the connection")?;
            eprintln!("smmlab: gdb: connected from {peer}");
            Link::Tcp(stream)
        }
        Listen::Stdio => {
            eprintln!("smmlab: gdb: speaking the remote protocol on stdin and stdout");
            Link::Stdio(link::Stdio::new())
        }
    };
    let mut target = GdbTarget::new(m, max_instructions, ips);
    if host.is_some() {
        target.host = host;
        target.restore_breakpoints();
    }
    let result = GdbStub::new(link).run_blocking::<EventLoop>(&mut target);
    target.m.set_breakpoints(&[]);
    target.m.set_stop_on_smm_entry(false);
    target.m.set_exact_breakpoints(false);
    target.m.set_write_watches(&[]);
    // Reverse execution's snapshot: RAM writes need not be logged any longer.
    target.m.drop_snapshot();
    let code = target.ended.as_ref().map_or(0, |s| s.exit_code);
    match result {
        Ok(DisconnectReason::Disconnect) => eprintln!("smmlab: gdb: gdb detached; the run ends here"),
        Ok(DisconnectReason::Kill) => eprintln!("smmlab: gdb: gdb killed the program; the run ends here"),
        Ok(DisconnectReason::TargetExited(_)) | Ok(DisconnectReason::TargetTerminated(_)) => {}
        Err(e) if e.is_target_error() => anyhow::bail!("gdb: {e}"),
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
