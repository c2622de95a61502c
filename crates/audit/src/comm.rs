//! The GUID handlers of edk2's SMM core, driven the way an OS-level attacker reaches them:
//! through the firmware's communication path ([`crate::uefi::communicate`]), one call per
//! crafted message, each watched by the SMM access observer and judged by the behaviour
//! oracles ([`crate::behaviour::analyze`]). The handlers come from the SMM inventory
//! (crates/uefi) read out of SMRAM at the hand-off, so each finding names `Module+0xRVA`.
//!
//! The buffer sits right after the core's private data, in the PiSmmIpl runtime image's data:
//! runtime memory, which the core's SmmIsBufferOutsideSmmValid accepts after ReadyToLock
//! (conventional memory it refuses with EFI_ACCESS_DENIED). What the calls overwrite is put back.

use crate::behaviour::{analyze, Pattern};
use crate::report::{ModuleRef, SmiContext, Status, Verdict};
use crate::rules;
use crate::uefi::{self, EFI_ACCESS_DENIED};
use machine::host::SwSmiOutcome;
use machine::Machine;
use std::collections::BTreeSet;

/// Instructions one call may take.
const BUDGET: u64 = 50_000_000;

/// One crafted message.
pub(crate) struct Message {
    /// Its name in findings.
    pub(crate) name: &'static str,
    /// The payload after the header.
    pub(crate) payload: Vec<u8>,
    /// BufferSize as given to the core (None: header + payload).
    pub(crate) size: Option<u64>,
}

/// The crafted messages every GUID handler gets.
pub(crate) fn messages() -> Vec<Message> {
    vec![
        Message { name: "comm-empty", payload: vec![], size: None },
        Message { name: "comm-small", payload: vec![0x11; 8], size: None },
        // A zeroed function header, as edk2's handlers take them ({Function, ReturnStatus, Data}).
        Message { name: "comm-header", payload: vec![0; 0x40], size: None },
        // BufferSize says more than the caller wrote: what the handler reads past the payload is
        // whatever follows it.
        Message { name: "comm-size-past-end", payload: vec![0; 0x18], size: Some(24 + 0x400) },
    ]
}

/// What the GUID-handler checks found.
pub struct CommSweep {
    /// Findings.
    pub verdicts: Vec<Verdict>,
    /// Calls made.
    pub calls: u64,
    /// What was driven, for the report.
    pub notes: Vec<String>,
}

/// Drives every GUID handler of the inventory with every message.
pub fn sweep(m: &mut Machine, fw: Option<&fwimage::Image>) -> CommSweep {
    let mut out = CommSweep { verdicts: Vec::new(), calls: 0, notes: Vec::new() };
    let ranges = crate::dump::ranges(m);
    let Some(smmc) = uefi::core_private_data(m, &ranges) else { return out };
    let smram = crate::dump::snapshot_of(m, &ranges);
    let inv = uefi_smm::Inventory::build(&smram, fw);
    let map = uefi_smm::images::ModuleMap::new(inv.modules.clone());
    let mut guids: Vec<(String, String, Option<ModuleRef>)> = Vec::new();
    for h in inv.handlers.iter().filter(|h| h.kind == "guid") {
        let g = h.guid.clone().unwrap_or_default();
        if !guids.iter().any(|(x, _, _)| *x == g) {
            let label = format!("{} ({})", h.guid_name.unwrap_or(&g), h.handler.at);
            let module = h.handler.module.as_ref().map(|name| ModuleRef {
                name: name.clone(),
                file_guid: inv.modules.iter().find(|m| &m.name == name).and_then(|m| m.guid.map(|g| g.to_string())),
                at: h.handler.at.clone(),
            });
            guids.push((g, label, module));
        }
    }
    if guids.is_empty() {
        return out;
    }
    let buffer = smmc + uefi::SMMC_SIZE;
    // Where pointers inside a message aim: the middle of the largest SMRAM range, and the CPU's
    // save state (SMBASE + 0xFC00, the top 1 KiB of the 64 KiB SMRAM window).
    let targets: Vec<(&'static str, u64)> = {
        let mut t = Vec::new();
        if let Some((base, size)) = crate::dump::largest(m) {
            t.push(("comm-pointers-to-smram", base + size / 2 + 0x100));
        }
        t.push(("comm-pointers-to-save-state", u64::from(m.smm_registers().smbase) + 0xfc00));
        t
    };
    let private = std::ops::Range { start: smmc, end: smmc + uefi::SMMC_SIZE };
    let by_design = std::slice::from_ref(&private);
    if m.board.smm_observer().is_none() {
        return out;
    }
    m.observe_smm(true);
    let code_check = m.set_smm_code_check(false);
    let mut statuses = Vec::new();
    let mut found: BTreeSet<(&'static str, String)> = BTreeSet::new();
    for (guid, label, module) in &guids {
        let Ok(g) = guid.parse::<fwimage::Guid>() else { continue };
        for msg in messages() {
            let declared = msg.size.unwrap_or(24 + msg.payload.len() as u64);
            let c = uefi::communicate(m, smmc, buffer, &g.0, &msg.payload, msg.size, BUDGET);
            out.calls += 1;
            if let SwSmiOutcome::Fault(why) = &c.outcome {
                out.verdicts.push(verdict(rules::HANDLER_FAULT, format!("GUID handler {label}, message {}: {why}", msg.name), msg.name, vec![buffer], module));
                continue;
            }
            statuses.push(format!("{} {}: {}", short(label), msg.name, status_name(c.status)));
            // The payload is what was passed; the header the core matches against every
            // handler's GUID (a changed GUID only picks another handler).
            let p = Pattern { name: msg.name, ptr: Some(buffer + 24), window: declared - 24, into_smram: false, header: false };
            for f in analyze(&p, &c.accesses, &BTreeSet::new(), by_design) {
                let a0 = f.addresses.first().copied().unwrap_or(0);
                if !found.insert((f.rule, format!("{guid}{a0:x}"))) {
                    continue;
                }
                let what = match f.rule {
                    rules::CALLOUT => format!("SMM fetched code outside SMRAM at {a0:#x} (call-out)"),
                    rules::UNPASSED_WRITE => format!("SMM wrote {a0:#x}, outside SMRAM and outside the message"),
                    rules::DOUBLE_FETCH => format!("SMM read the message byte at {a0:#x} twice (double fetch)"),
                    _ => format!("{} at {a0:#x}", f.rule),
                };
                let by = crate::instruction::by(m, &map, f.rip);
                out.verdicts.push(verdict(f.rule, format!("GUID handler {label}, message {}: {what}{by}", msg.name), msg.name, f.addresses, module));
            }
        }
        // Every word of the message a pointer into SMRAM: a handler that writes through a
        // pointer it took from the message without checking it writes SMRAM.
        let control: BTreeSet<u64> = {
            let c = uefi::communicate(m, smmc, buffer, &g.0, &[0; 0x40], None, BUDGET);
            out.calls += 1;
            c.accesses.iter().filter(|a| a.smram && a.kind == machine::board::observer::SmmAccessKind::Write).flat_map(|a| a.addr..a.addr + u64::from(a.size)).collect()
        };
        for &(name, target) in &targets {
            let payload: Vec<u8> = (0..8).flat_map(|_| target.to_le_bytes()).collect();
            let c = uefi::communicate(m, smmc, buffer, &g.0, &payload, None, BUDGET);
            out.calls += 1;
            statuses.push(format!("{} {name}: {}", short(label), status_name(c.status)));
            let p = Pattern { name, ptr: Some(target), window: 0x100, into_smram: true, header: false };
            for f in analyze(&p, &c.accesses, &control, by_design).into_iter().filter(|f| f.rule == rules::SMRAM_POINTER) {
                let a0 = f.addresses.first().copied().unwrap_or(0);
                if found.insert((f.rule, format!("{guid}{a0:x}"))) {
                    let by = crate::instruction::by(m, &map, f.rip);
                    out.verdicts.push(verdict(f.rule, format!("GUID handler {label}, message {name}: SMM wrote SMRAM at {a0:#x} through a pointer taken from the message ({target:#x}){by}"), name, f.addresses, module));
                }
            }
        }
        // A buffer overlapping SMRAM must be refused before any handler runs.
        if let Some(tseg) = ranges.iter().map(|r| r.start).filter(|&s| s >= 0x10_0000).min() {
            let c = uefi::communicate(m, smmc, tseg - 0x10, &g.0, &[0; 8], None, BUDGET);
            out.calls += 1;
            if c.status != Some(EFI_ACCESS_DENIED) {
                out.verdicts.push(verdict(rules::COMM_OVERLAP, format!("GUID handler {label}: a communication buffer running into SMRAM at {:#x} was not refused (ReturnStatus {})", tseg - 0x10, status_name(c.status)), "comm-into-smram", vec![tseg - 0x10], module));
            }
        }
    }
    m.set_smm_code_check(code_check);
    m.observe_smm(false);
    out.notes.push(format!(
        "{} GUID handlers driven through the SMM core's communication path (private data at {smmc:#x}, buffer at {buffer:#x}) with {} messages each, {} with every word a pointer into SMRAM, and a buffer running into SMRAM: {}",
        guids.len(),
        messages().len(),
        targets.len(),
        statuses.join("; ")
    ));
    out
}

fn short(label: &str) -> &str {
    label.split(' ').next().unwrap_or(label)
}

fn status_name(s: Option<u64>) -> String {
    match s {
        Some(0) => "EFI_SUCCESS".into(),
        Some(uefi::EFI_ACCESS_DENIED) => "EFI_ACCESS_DENIED".into(),
        Some(uefi::EFI_NOT_FOUND) => "EFI_NOT_FOUND".into(),
        Some(v) => format!("{v:#x}"),
        None => "no return".into(),
    }
}

fn verdict(rule: &'static str, message: String, pattern: &'static str, addresses: Vec<u64>, module: &Option<ModuleRef>) -> Verdict {
    Verdict { rule, status: Status::Fail, message, registers: vec![], smi: Some(SmiContext { commands: vec![0], pattern, addresses, module: module.clone() }) }
}
