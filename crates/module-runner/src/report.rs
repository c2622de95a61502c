//! What a module run shows, in the inventory format of `crates/uefi` (the same sections as
//! `smmlab smm inventory` after a boot), plus what only the runner knows: how the entry point
//! went, the protocols answered by stubs with every call made through them, and the boot
//! services used.

use crate::layout::{TSEG_BASE, TSEG_SIZE};
use crate::runner::{CallResult, LoadedModule, Runner};
use crate::services::{ServedCall, StubbedProtocol};
use serde::Serialize;
use std::fmt::Write;
use uefi_smm::images::{self, ModuleMap, NameSource};
use uefi_smm::inventory::{named, HandlerEntry, Inventory, ProtocolEntry};

/// One module's run.
#[derive(Clone, Debug, Serialize)]
pub struct ModuleReport {
    /// The module as loaded.
    pub module: LoadedModule,
    /// How its entry point went.
    pub entry: Option<CallResult>,
    /// The lifecycle events signalled after it, and how each went.
    pub phases: Vec<(crate::Phase, CallResult)>,
    /// What it registered, named.
    pub inventory: Inventory,
    /// Protocols nobody provides, answered by logged stubs.
    pub stubbed: Vec<StubbedProtocol>,
    /// The calls it made to DXE (boot services, DXE protocols), in order.
    pub dxe_calls: Vec<ServedCall>,
    /// Calls the host served in all.
    pub served: usize,
    /// Modules run first in the same SMRAM, and how their entry points went.
    pub companions: Vec<(LoadedModule, CallResult)>,
    /// SMM protocols answered EFI_NOT_FOUND instead of a stub (see [`Runner::start`]).
    pub absent: Vec<String>,
    /// Set when the module took over SMI entry (an SMM CPU driver).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smi_entry: Option<crate::runner::SmiEntryOwner>,
}

fn kind_name(d: uefi_smm::smst::Dispatch) -> &'static str {
    use uefi_smm::smst::Dispatch::*;
    match d {
        Sw => "sw",
        Sx => "sx",
        Periodic => "periodic",
        Usb => "usb",
        Gpi => "gpi",
        StandbyButton => "standby-button",
        PowerButton => "power-button",
        IoTrap => "io-trap",
    }
}

/// The report of `r` now; `fw` (the firmware image the module came from) names it by its file.
pub fn report(r: &mut Runner, fw: Option<&fwimage::Image>) -> ModuleReport {
    let smram = r.smram();
    let mut found = images::find(&smram, fw);
    for img in found.iter_mut().filter(|i| i.base == r.module.base && i.named_by == NameSource::Address) {
        img.name = r.module.name.clone();
    }
    let map = ModuleMap::new(found.clone());
    let env = &r.env;
    let handler_entry = |guid: Option<fwimage::Guid>, handler: u64, caller: u64| HandlerEntry {
        kind: if guid.is_some() { "guid" } else { "root" },
        guid: guid.map(|g| g.to_string()),
        guid_name: guid.as_ref().and_then(uefi_smm::guid_names::name),
        handler: named(&map, handler),
        registered_by: named(&map, caller),
        seen: None,
        removed: None,
        dispatch: None,
    };
    let mut handlers: Vec<HandlerEntry> = env.handlers.iter().map(|h| handler_entry(h.guid, h.handler, h.caller)).collect();
    // An SMM core run as the module keeps its own lists (it registers its handlers with its own
    // SmiHandlerRegister, not through the runner's SMST), followed through the run.
    let core = r.core.clone().unwrap_or_default();
    for reg in core.registrations().iter().filter(|reg| reg.removed.is_none()) {
        handlers.push(handler_entry(reg.handler.handler_type, reg.handler.handler, reg.handler.caller));
    }
    handlers.sort_by_key(|h| h.kind != "root");
    handlers.extend(env.dispatch.iter().map(|d| HandlerEntry {
        kind: kind_name(d.kind),
        guid: None,
        guid_name: None,
        handler: named(&map, d.handler),
        registered_by: named(&map, d.caller),
        seen: None,
        removed: None,
        dispatch: Some(d.describe.clone()),
    }));
    // The module's own protocols and the ones it waits for (not the runner's).
    let mut protocols: Vec<ProtocolEntry> = Vec::new();
    let mut entry = |g: &fwimage::Guid| -> usize {
        let s = g.to_string();
        match protocols.iter().position(|p| p.guid == s) {
            Some(i) => i,
            None => {
                protocols.push(ProtocolEntry { guid: s, name: uefi_smm::guid_names::name(g), interfaces: Vec::new(), notify: Vec::new() });
                protocols.len() - 1
            }
        }
    };
    let mut adds: Vec<(usize, bool, u64)> = Vec::new();
    for i in env.smm_db.installed.iter().filter(|i| i.caller != 0) {
        adds.push((entry(&i.guid), true, i.interface));
    }
    for n in &env.smm_db.notify {
        adds.push((entry(&n.0), false, n.1));
    }
    // An SMM core's own protocol database.
    if r.module.kind == crate::ModuleKind::SmmCore {
        for p in uefi_smm::core_lists::protocols(&smram) {
            let i = entry(&p.guid);
            adds.extend(p.interfaces.iter().map(|&a| (i, true, a)));
            adds.extend(p.notify.iter().map(|&a| (i, false, a)));
        }
    }
    for (i, iface, a) in adds {
        let n = named(&map, a);
        if iface { protocols[i].interfaces.push(n) } else { protocols[i].notify.push(n) }
    }
    let mut inventory = Inventory { smram: vec![(TSEG_BASE, TSEG_SIZE)], modules: found, not_resident: Vec::new(), handlers, removed_handlers: Vec::new(), protocols, service_calls: Vec::new(), handler_latency: Vec::new() };
    inventory.add_calls(&env.calls, None);
    inventory.add_registrations(&core);
    let dxe_calls = env.served.iter().filter(|c| !c.service.starts_with("SMST") && !c.service.starts_with("stub") && !c.service.starts_with("core ") && !is_smm_protocol(&c.service)).cloned().collect();
    ModuleReport { module: r.module.clone(), entry: r.entry_result.clone(), phases: r.phases.clone(), inventory, stubbed: env.stubs.clone(), dxe_calls, served: env.served.len(), companions: r.companions.clone(), absent: env.absent.iter().map(uefi_smm::guid_names::describe).collect(), smi_entry: r.smi_entry.clone() }
}

/// How a call went, in words.
pub fn describe(r: &CallResult) -> String {
    match r {
        CallResult::Returned { name, instructions, .. } => format!("returned {name} after {instructions} instructions"),
        CallResult::Refused { why } => format!("refused: {why}"),
        CallResult::Fault { why } => format!("did not return: {why}"),
    }
}

fn is_smm_protocol(service: &str) -> bool {
    ["SmmCpu->", "CpuIo.", "SwDispatch2", "SxDispatch2", "PeriodicDispatch2", "UsbDispatch2", "GpiDispatch2", "StandbyButtonDispatch2", "PowerButtonDispatch2", "IoTrapDispatch2", "(no handler)"].iter().any(|p| service.starts_with(p))
}

impl ModuleReport {
    /// The report as text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let m = &self.module;
        for (c, r) in &self.companions {
            let _ = writeln!(s, "module {} run first in the same SMRAM: loaded at {:#x}; entry point {}", c.name, c.base, describe(r));
        }
        let _ = writeln!(s, "module {} ({}), {:?}", m.name, m.guid.as_deref().unwrap_or("from a file"), m.kind);
        let _ = writeln!(s, "  loaded at {:#x}, {:#x} bytes, entry +{:#x}, {} relocations", m.base, m.size, m.entry - m.base, m.relocations);
        let entry = self.entry.as_ref().map_or("not run".to_string(), describe);
        let outside = if m.entry_outside_smm { " (outside SMM, SMRAM open, as before SMM entry exists)" } else { "" };
        let _ = writeln!(s, "  entry point{outside} {entry}; {} service calls served", self.served);
        if let Some(o) = &self.smi_entry {
            let how = match &o.registered {
                Some(r) => format!("the runner's SMM core entry registered through its EFI_SMM_CONFIGURATION_PROTOCOL at {:#x}: {}", o.configuration, describe(r)),
                None => "it installed no EFI_SMM_CONFIGURATION_PROTOCOL, so no SMI reaches the runner".into(),
            };
            let _ = writeln!(s, "  SMI entry is the module's: SMBASE relocated to {:#x}; {how}", o.smbase);
        }
        for (p, r) in &self.phases {
            let _ = writeln!(s, "  {p:?} signalled: {}", describe(r));
        }
        s.push('\n');
        s.push_str(&self.inventory.render());
        if !self.stubbed.is_empty() {
            let _ = writeln!(s, "\nprotocols nobody provides, answered by logged stubs ({}):", self.stubbed.len());
            for p in &self.stubbed {
                let label = p.name.map_or_else(|| p.guid.to_string(), |n| format!("{n} ({})", p.guid));
                let _ = writeln!(s, "  {} {label}: {} call{}", if p.smm { "SMM" } else { "DXE" }, p.calls.len(), if p.calls.len() == 1 { "" } else { "s" });
                for c in p.calls.iter().take(8) {
                    let _ = writeln!(s, "      [{}]({:#x}, {:#x}, {:#x}, {:#x}) -> {:#x}", c.index, c.args[0], c.args[1], c.args[2], c.args[3], c.returned);
                }
            }
        }
        if !self.absent.is_empty() {
            let _ = writeln!(s, "\nSMM protocols answered EFI_NOT_FOUND (the module only checked for them, or produces them): {}", self.absent.join(", "));
        }
        let mut names: Vec<&str> = self.dxe_calls.iter().map(|c| c.service.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        if !names.is_empty() {
            let _ = writeln!(s, "\nDXE services called ({} calls): {}", self.dxe_calls.len(), names.join(", "));
        }
        s
    }
}
