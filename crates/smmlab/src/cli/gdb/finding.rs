//! `smmlab gdb --finding RULE-N.json`: a finding of `smmlab fuzz` opened in gdb, stopped at
//! the instruction that broke the rule. The finding is replayed as `smmlab fuzz replay` does
//! (the scenario booted again, its input written, the SW SMI raised) with a breakpoint on
//! that instruction; when the SMI first reaches it, gdb gets the machine there, in SMM, with
//! the SMI's registers and memory as they are at that point.
//!
//! A module run alone gets its SMM services from the host at breakpoints of the CPU's: gdb's
//! target serves those itself ([`super::target::HostServices`]) and gdb sees only its own.

use super::{serve, serve_with, target::HostServices, Listen};
use crate::cli::fuzz::{firmware_subject, handler, module_subject, Handler};
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
        return open_module(file, &f, rip, listen, max_instructions, ips);
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

/// [`open`] for a finding of a module run alone.
fn open_module(file: &Path, f: &fuzz_replay::Saved, rip: u64, listen: &Listen, max_instructions: u64, ips: u64) -> anyhow::Result<i32> {
    let Some(module) = &f.module else {
        if f.ovmf || !f.pflash.is_empty() {
            bail!("{}: a finding of a firmware booted from flash: `smmlab gdb --finding` opens findings of the built-in firmware and of modules run alone; replay it with `smmlab fuzz replay`", file.display());
        }
        bail!("{}: names neither a scenario nor a module", file.display())
    };
    let Handler::One(target) = handler(&f.handler)? else { bail!("{}: handler {} is not one handler of a module", file.display(), f.handler) };
    let (mut s, _) = module_subject(module, f.module_name.as_deref(), Some(f.cpu), &target)?;
    let place = s.place(rip);
    s.snap.runner.machine.set_exact_breakpoints(true);
    let served: std::rc::Rc<std::cell::RefCell<Option<anyhow::Result<i32>>>> = Default::default();
    let (out, listen, name, rule) = (served.clone(), listen.clone(), file.display().to_string(), f.rule.clone());
    s.snap.runner.debug_stop = Some(module_runner::runner::DebugStop {
        at: rip,
        hook: Box::new(move |m, env, services| {
            if out.borrow().is_some() {
                return env.serve(m);
            }
            eprintln!("smmlab: gdb: {name} stopped at {place} ({rip:#x}), where {rule} fired");
            // The host's services (this address too, if it is one: it is served when the CPU
            // goes on).
            let at = services.to_vec();
            let mut serve_host = |m: &mut machine::Machine| env.serve(m);
            let r = serve_with(m, Some(HostServices { at, serve: &mut serve_host }), &listen, max_instructions, ips);
            *out.borrow_mut() = Some(r);
            Err("the gdb session ended".into())
        }),
    });
    let e = s.execute(&f.input);
    let result = served.borrow_mut().take();
    match result {
        Some(r) => r,
        None => bail!("{}: the replay never reached {rip:#x}: {:?}", file.display(), e.broken.iter().map(|b| b.rule).collect::<Vec<_>>()),
    }
}
