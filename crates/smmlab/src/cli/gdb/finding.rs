//! `smmlab gdb --finding RULE-N.json`: a finding of `smmlab fuzz` opened in gdb, stopped at
//! the instruction that broke the rule. The finding is replayed as `smmlab fuzz replay` does
//! (the scenario booted again, its input written, the SW SMI raised) with a breakpoint on
//! that instruction; when the SMI first reaches it, gdb gets the machine there, in SMM, with
//! the SMI's registers and memory as they are at that point.
//!
//! Findings of the built-in firmware only: a module run alone gets its SMM services from the
//! host at the CPU's breakpoints, which gdb's own breakpoints would replace.

use super::{serve, Listen};
use crate::cli::fuzz::{firmware_subject, handler, Handler};
use crate::cli::fuzz_replay;
use anyhow::bail;
use fuzz_smm::{Subject, Target};
use std::path::Path;

/// Replays `file` to its instruction and serves gdb there; the exit code of [`serve`].
pub fn open(file: &Path, listen: &Listen, max_instructions: u64, ips: u64) -> anyhow::Result<i32> {
    let f = fuzz_replay::read(file)?;
    let Some(rip) = f.rip else {
        bail!("{}: the finding names no instruction ({} fired without one): nothing to stop at; `smmlab fuzz replay` shows it", file.display(), f.rule)
    };
    let Some(scenario) = &f.scenario else {
        bail!("{}: gdb opens findings of the built-in firmware (fuzz --scenario) only: a module run alone gets its SMM services at the CPU's breakpoints, which gdb's would displace", file.display())
    };
    let value = match handler(&f.handler)? {
        Handler::One(Target::Sw(v)) => Some(v),
        Handler::All => None,
        Handler::One(Target::Guid(_)) => bail!("{}: handler {} is not a SW SMI of the built-in firmware", file.display(), f.handler),
    };
    let mut s = firmware_subject(scenario, f.cpu, value)?;
    let place = s.place(rip);
    s.machine.set_exact_breakpoints(true);
    let mut served: Option<anyhow::Result<i32>> = None;
    let (outcome, _) = s.raise_with(&f.input, &[rip], &mut |m| {
        if served.is_some() || m.registers().1 != rip {
            return Ok(());
        }
        eprintln!("smmlab: gdb: {} stopped at {place} ({rip:#x}), where {} fired", file.display(), f.rule);
        served = Some(serve(m, listen, max_instructions, ips));
        Err("the gdb session ended".into())
    });
    match served {
        Some(r) => r,
        None => bail!("{}: the replay never reached {place} ({rip:#x}): {outcome:?}", file.display()),
    }
}
