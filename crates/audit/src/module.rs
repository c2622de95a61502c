//! `smmlab audit --module`: the behaviour checks on one SMM driver run on its own
//! (crates/module-runner), after its entry point and the boot's lifecycle events, so its
//! handlers are in the state the OS meets. Every handler the module registered is driven the
//! way an OS-level attacker reaches it: GUID handlers through the communication buffer with the
//! crafted messages of [`crate::comm`] and with every word of the message a pointer into SMRAM
//! or at the save state; SW (and root) handlers with the register patterns of
//! [`crate::behaviour`]. The same oracles judge each call ([`crate::behaviour::analyze`]), and
//! each finding names the handler `Module+0xRVA`.
//!
//! The runner's own work (the host playing the SMM core and the services) is not observed;
//! the CPU's fetch of each service slot is, so a handler that calls a boot service at run time
//! is a call-out.

use crate::behaviour::{analyze, patterns, Pattern};
use crate::report::{ModuleRef, Report, SmiContext, Status, Target, Verdict};
use crate::rules;
use cpu::regs::{RBX, RCX, RDI, RSI};
use machine::board::observer::{SmmAccess, SmmAccessKind};
use module_runner::layout::{COMM_BUFFER, SAVE_STATE, TSEG_BASE, TSEG_SIZE};
use module_runner::{report::ModuleReport, CallResult, Runner};
use std::collections::BTreeSet;

/// What the registers that carry no pointer hold in the module audit: a canonical address
/// below 4 GiB that no memory decodes (the synthetic platform has 128 MiB), as a 32-bit
/// caller's registers would. chipsec's 64-bit fill (0x5A5A5A5A5A5A5A5A) is not canonical: a
/// handler that writes through such a register would take #GP and end the run before the
/// SMRAM patterns show why; with this value the write lands nowhere and the patterns that aim
/// the same registers at SMRAM name the bug.
pub const MODULE_FILL: u64 = 0x5a5a_5a5a;

/// The SW register patterns of the module audit: [`patterns`] over TSEG, with the control
/// pattern's registers holding [`MODULE_FILL`], which counts as passed (a handler that uses a
/// register as a pointer is reported by the patterns that aim it at SMRAM).
fn sw_patterns() -> Vec<Pattern> {
    let mut v = patterns(Some((TSEG_BASE, TSEG_SIZE)));
    for p in v.iter_mut().filter(|p| p.name == "control") {
        p.ptr = Some(MODULE_FILL);
        p.window = 0x1000;
    }
    v
}

/// One handler to drive.
struct Handler {
    what: String,
    module: Option<ModuleRef>,
    how: How,
}

enum How {
    Guid(fwimage::Guid),
    Sw(u8),
    Root,
}

fn module_ref(inv: &uefi_smm::Inventory, n: &uefi_smm::inventory::Named) -> Option<ModuleRef> {
    n.module.as_ref().map(|name| ModuleRef { name: name.clone(), file_guid: inv.modules.iter().find(|m| &m.name == name).and_then(|m| m.guid.map(|g| g.to_string())), at: n.at.clone() })
}

fn handlers(rep: &ModuleReport) -> Vec<Handler> {
    let inv = &rep.inventory;
    let mut out: Vec<Handler> = Vec::new();
    for h in &inv.handlers {
        let module = module_ref(inv, &h.handler);
        let how = match (h.kind, &h.guid) {
            ("guid", Some(g)) => match g.parse() {
                Ok(g) => How::Guid(g),
                Err(_) => continue,
            },
            ("root", _) => How::Root,
            ("sw", _) => match h.dispatch.as_deref().and_then(|d| d.strip_prefix("SW SMI 0x")).and_then(|d| u8::from_str_radix(d.split(' ').next().unwrap_or(""), 16).ok()) {
                Some(v) => How::Sw(v),
                None => continue,
            },
            _ => continue,
        };
        let what = match (&how, h.guid_name) {
            (How::Guid(g), Some(n)) => format!("GUID handler {n} ({g}) at {}", h.handler.at),
            (How::Guid(g), None) => format!("GUID handler {g} at {}", h.handler.at),
            (How::Sw(v), _) => format!("SW SMI {v:#04x} handler at {}", h.handler.at),
            (How::Root, _) => format!("root handler at {}", h.handler.at),
        };
        if let How::Guid(g) = &how {
            if out.iter().any(|x| matches!(&x.how, How::Guid(y) if y == g)) {
                continue;
            }
        }
        out.push(Handler { what, module, how });
    }
    out
}

fn drained(r: &mut Runner) -> Vec<SmmAccess> {
    r.machine.take_smm_accesses()
}

fn finding(rule: &'static str, h: &Handler, pattern: &'static str, message: String, addresses: Vec<u64>, command: u8) -> Verdict {
    Verdict { rule, status: Status::Fail, message: format!("{}: {message}", h.what), registers: vec![], smi: Some(SmiContext { commands: vec![command], pattern, addresses, module: h.module.clone() }) }
}

fn what(rule: &'static str, a0: u64, p: &Pattern) -> String {
    match rule {
        rules::CALLOUT => format!("SMM fetched code outside SMRAM at {a0:#x} (call-out)"),
        rules::SMRAM_POINTER => format!("SMM wrote SMRAM at {a0:#x} through a pointer the caller passed ({:#x})", p.ptr.unwrap_or(0)),
        rules::UNPASSED_WRITE => format!("SMM wrote {a0:#x}, outside SMRAM and outside anything the caller passed"),
        rules::DOUBLE_FETCH => format!("SMM read the caller's byte at {a0:#x} twice (double fetch / TOCTOU)"),
        rules::COMM_OVERLAP => format!("SMM accessed {a0:#x}, inside SMRAM, of a buffer that runs into it"),
        _ => format!("{rule} at {a0:#x}"),
    }
}

/// What the behaviour checks found, and how many calls they made.
pub struct ModuleSweep {
    /// Findings.
    pub verdicts: Vec<Verdict>,
    /// Calls made.
    pub calls: u64,
    /// What was driven.
    pub notes: Vec<String>,
}

/// Drives every handler of the module in `r` (its entry point run), named as `rep` says.
pub fn sweep(r: &mut Runner, rep: &ModuleReport) -> ModuleSweep {
    let mut out = ModuleSweep { verdicts: Vec::new(), calls: 0, notes: Vec::new() };
    let list = handlers(rep);
    if list.is_empty() {
        out.notes.push(format!("{} registered no SMI handler: nothing to drive", rep.module.name));
        return out;
    }
    let code_check = r.machine.set_smm_code_check(false);
    r.machine.observe_smm(true);
    let map = uefi_smm::images::ModuleMap::new(rep.inventory.modules.clone());
    let mut seen: BTreeSet<(&'static str, String)> = BTreeSet::new();
    let mut statuses = Vec::new();
    for h in &list {
        let mut add = |out: &mut ModuleSweep, rule: &'static str, p: &Pattern, addresses: Vec<u64>, cmd: u8, by: String| {
            let a0 = addresses.first().copied().unwrap_or(0);
            // One bug seen through several messages is one finding: keyed by the offset from
            // the passed pointer when in the window, the address otherwise.
            let at = match p.ptr {
                Some(s) if a0 >= s && a0 < s + p.window => format!("+{:#x}", a0 - s),
                _ => format!("{a0:#x}"),
            };
            if seen.insert((rule, format!("{}{at}", h.what))) {
                out.verdicts.push(finding(rule, h, p.name, format!("{}{by}", what(rule, a0, p)), addresses, cmd));
            }
        };
        match &h.how {
            How::Guid(g) => {
                for msg in crate::comm::messages() {
                    let declared = msg.size.unwrap_or(24 + msg.payload.len() as u64);
                    drained(r);
                    let res = r.call_guid(g, &msg.payload, msg.size);
                    let acc = drained(r);
                    out.calls += 1;
                    if let CallResult::Fault { why } = &res {
                        out.verdicts.push(finding(rules::HANDLER_FAULT, h, msg.name, format!("message {}: {why}", msg.name), vec![COMM_BUFFER], 0));
                        continue;
                    }
                    statuses.push(format!("{} {}: {}", short(&h.what), msg.name, res.status().map_or("no return".into(), module_runner::efi::status_name)));
                    let p = Pattern { name: msg.name, ptr: Some(COMM_BUFFER + 24), window: declared - 24, into_smram: false, header: false };
                    for f in analyze(&p, &acc, &BTreeSet::new(), &[]) {
                        let mut by = by(r, &map, &f);
                        if f.rule == rules::DOUBLE_FETCH {
                            by.push_str(&race(r, g, &msg, &acc, f.addresses[0]));
                        }
                        add(&mut out, f.rule, &p, f.addresses, 0, by);
                    }
                }
                // Every word of the message a pointer into SMRAM, or at the save state.
                drained(r);
                r.call_guid(g, &[0; 0x40], None);
                out.calls += 1;
                let control: BTreeSet<u64> = drained(r).iter().filter(|a| a.smram && a.kind == SmmAccessKind::Write).flat_map(|a| a.addr..a.addr + u64::from(a.size)).collect();
                // The first word also as a function number 0-15 (edk2's messages start with
                // {Function, ReturnStatus}), the others pointers.
                for (name, target) in [("comm-pointers-to-smram", TSEG_BASE + TSEG_SIZE / 2 + 0x100), ("comm-pointers-to-save-state", SAVE_STATE)] {
                    let mut worst = None;
                    for first in std::iter::once(target).chain(0..16) {
                        let payload: Vec<u8> = std::iter::once(first).chain(std::iter::repeat_n(target, 7)).flat_map(u64::to_le_bytes).collect();
                        drained(r);
                        let res = r.call_guid(g, &payload, None);
                        let acc = drained(r);
                        out.calls += 1;
                        worst.get_or_insert(res.status());
                        let p = Pattern { name, ptr: Some(target), window: 0x100, into_smram: true, header: false };
                        for f in analyze(&p, &acc, &control, &[]).into_iter().filter(|f| f.rule == rules::SMRAM_POINTER) {
                            let by = by(r, &map, &f);
                        add(&mut out, f.rule, &p, f.addresses, 0, by);
                        }
                    }
                    statuses.push(format!("{} {name} (first word the pointer, then 0-15): {}", short(&h.what), worst.flatten().map_or("no return".into(), module_runner::efi::status_name)));
                }
            }
            How::Sw(_) | How::Root => {
                let cmd = match h.how {
                    How::Sw(v) => v,
                    _ => 0,
                };
                let mut control = BTreeSet::new();
                for p in sw_patterns() {
                    let mut regs = [MODULE_FILL; 16];
                    regs[0] = 0;
                    if let Some(ptr) = p.ptr {
                        for reg in [RBX, RCX, RSI, RDI] {
                            regs[reg] = ptr;
                        }
                        if !p.into_smram {
                            r.machine.write_phys(ptr, &vec![0x11u8; p.window.min(0x1000) as usize]);
                        }
                    }
                    drained(r);
                    let res = match h.how {
                        How::Sw(v) => r.call_sw(v, 0, &regs),
                        _ => r.call_root(cmd, &regs).into_iter().next().unwrap_or(CallResult::Refused { why: "no root handler".into() }),
                    };
                    let acc = drained(r);
                    out.calls += 1;
                    if let CallResult::Fault { why } = &res {
                        out.verdicts.push(finding(rules::HANDLER_FAULT, h, p.name, format!("pattern {}: {why}", p.name), p.ptr.into_iter().collect(), cmd));
                        break;
                    }
                    if p.name == "control" {
                        control = acc.iter().filter(|a| a.smram && a.kind != SmmAccessKind::Fetch).flat_map(|a| a.addr..a.addr + a.size as u64).collect();
                    }
                    for f in analyze(&p, &acc, &control, &[]) {
                        let by = by(r, &map, &f);
                        add(&mut out, f.rule, &p, f.addresses, cmd, by);
                    }
                }
                statuses.push(format!("{}: {} register patterns", short(&h.what), sw_patterns().len()));
            }
        }
    }
    r.machine.observe_smm(false);
    r.machine.set_smm_code_check(code_check);
    out.verdicts.sort_by(|a, b| a.rule.cmp(b.rule));
    out.notes.push(format!("{} handlers of {} driven ({} calls): {}", list.len(), rep.module.name, out.calls, statuses.join("; ")));
    out
}

/// The double fetch at `addr` raced: the same call again with the byte set to 0xFF right
/// after SMM's first read of it (what another CPU or a DMA agent can do between the two
/// fetches), and what SMM then wrote in SMRAM that it did not write without the race (`acc`).
fn race(r: &mut Runner, g: &fwimage::Guid, msg: &crate::comm::Message, acc: &[SmmAccess], addr: u64) -> String {
    drained(r);
    r.machine.stage_race_write(Some(machine::board::observer::RaceWrite { addr, bytes: vec![0xff] }));
    let res = r.call_guid(g, &msg.payload, msg.size);
    r.machine.stage_race_write(None);
    let fault = match res {
        CallResult::Fault { why } => Some(why),
        _ => None,
    };
    match crate::behaviour::RaceEffect::of(acc, &drained(r), fault) {
        Some(e) => format!("; raced, proved: with the byte set to 0xff right after SMM's first read of it, {}", e.describe()),
        None => "; raced: setting the byte to 0xff right after SMM's first read of it changed no SMRAM write".into(),
    }
}

/// What the finding rests on: the service a call-out reached, and the instruction.
fn by(r: &mut Runner, map: &uefi_smm::images::ModuleMap, f: &crate::behaviour::Finding) -> String {
    let into = match (f.rule, f.addresses.first()) {
        (rules::CALLOUT, Some(a)) => r.env.service_name(*a).map(|n| format!(", into {n}")).unwrap_or_default(),
        _ => String::new(),
    };
    format!("{into}{}", crate::instruction::by(&mut r.machine, map, f.rip))
}

fn short(what: &str) -> String {
    what.split(" at ").next().unwrap_or(what).to_string()
}

/// The audit of one module run on its own: its entry point's outcome as a note, then the
/// behaviour checks. The configuration checks do not apply: the platform is the runner's.
pub fn audit(r: &mut Runner, rep: &ModuleReport, cpu: &'static str, firmware: String) -> Report {
    let s = sweep(r, rep);
    let mut notes = vec![format!(
        "{} run on its own on the module runner's q35 platform: entry point {}{}",
        rep.module.name,
        rep.entry.as_ref().map(module_runner::report::describe).unwrap_or_else(|| "not run".into()),
        if rep.phases.is_empty() { String::new() } else { format!("; then {}", rep.phases.iter().map(|(p, _)| format!("{p:?}")).collect::<Vec<_>>().join(", ")) }
    )];
    if !rep.stubbed.is_empty() {
        notes.push(format!("protocols answered by logged stubs: {}", rep.stubbed.iter().map(|p| p.name.map_or_else(|| p.guid.to_string(), str::to_string)).collect::<Vec<_>>().join(", ")));
    }
    notes.extend(s.notes);
    Report {
        tool: "smmlab-audit",
        version: env!("CARGO_PKG_VERSION"),
        target: Target { machine: "module-runner", cpu, firmware, scenario: None, handoff: format!("{} after its entry point", rep.module.name), instructions_at_handoff: r.machine.icount() },
        verdicts: s.verdicts,
        smis_raised: s.calls,
        notes,
    }
}
