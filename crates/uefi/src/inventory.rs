//! The SMM inventory: modules in SMRAM, SMI handlers and protocols, every address named
//! `Module+0xRVA`, as text and as JSON.

use crate::core_lists;
use crate::guid_names;
use crate::images::{self, LoadedImage, ModuleMap};
use crate::registrations::{Moment, Tracker};
use crate::smram::Smram;
use serde::Serialize;
use std::fmt::Write;

/// An address and its name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Named {
    /// The address.
    pub address: u64,
    /// `Module+0xRVA`, or the bare address.
    pub at: String,
    /// The module holding it.
    pub module: Option<String>,
    /// Whether it is in that module's code (None outside every module).
    pub in_code: Option<bool>,
}

/// An SMM module of the firmware volume that is not in SMRAM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AbsentModule {
    /// Its name (UI section) or GUID.
    pub name: String,
    /// Its file GUID.
    pub guid: String,
}

/// One SMI handler.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HandlerEntry {
    /// "root" (run on every SMI) or "guid" (run for a communication buffer of its GUID).
    pub kind: &'static str,
    /// The HandlerType GUID of a GUID handler.
    pub guid: Option<String>,
    /// Its edk2 name, when it is a well-known one.
    pub guid_name: Option<&'static str>,
    /// The handler function.
    pub handler: Named,
    /// Where SmiHandlerRegister was called from (the registering module).
    pub registered_by: Named,
    /// The first look at the core's lists that found it (with a run followed by
    /// [`Inventory::add_registrations`]).
    pub seen: Option<Moment>,
    /// The first look that no longer found it (removed handlers only).
    pub removed: Option<Moment>,
    /// For a handler registered with a child dispatcher (kind "sw", "sx", "periodic"...): its
    /// RegisterContext, as text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dispatch: Option<String>,
}

/// One protocol of the SMM protocol database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProtocolEntry {
    /// Its GUID.
    pub guid: String,
    /// Its edk2 name, when it is a well-known one.
    pub name: Option<&'static str>,
    /// The installed interfaces (an interface structure usually lies in its producer's image).
    pub interfaces: Vec<Named>,
    /// The notification functions waiting for it (in the modules that consume it).
    pub notify: Vec<Named>,
}

/// `a` named by the module holding it.
pub fn named(map: &ModuleMap, a: u64) -> Named {
    let m = map.image_of(a);
    Named { address: a, at: map.name(a), module: m.map(|m| m.name.clone()), in_code: m.map(|m| m.in_code(a)) }
}

fn entry(map: &ModuleMap, h: &core_lists::Handler) -> HandlerEntry {
    HandlerEntry {
        kind: if h.handler_type.is_some() { "guid" } else { "root" },
        guid: h.handler_type.map(|g| g.to_string()),
        guid_name: h.handler_type.as_ref().and_then(guid_names::name),
        handler: named(map, h.handler),
        registered_by: named(map, h.caller),
        seen: None,
        removed: None,
        dispatch: None,
    }
}

/// "after SMI 12 (788.500 ms)".
fn moment(m: &Moment) -> String {
    format!("after SMI {} ({}.{:03} ms)", m.smi, m.ns / 1_000_000, m.ns / 1000 % 1000)
}

/// Everything found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Inventory {
    /// The SMRAM ranges read, as (base, size).
    pub smram: Vec<(u64, u64)>,
    /// The images loaded into SMRAM, lowest first.
    pub modules: Vec<LoadedImage>,
    /// The firmware volume's SMM modules not in SMRAM: never dispatched, or unloaded because
    /// their entry point failed.
    pub not_resident: Vec<AbsentModule>,
    /// The registered SMI handlers: root handlers, then GUID handlers.
    pub handlers: Vec<HandlerEntry>,
    /// Handlers registered during the run and removed before its end (with
    /// [`Inventory::add_registrations`]).
    pub removed_handlers: Vec<HandlerEntry>,
    /// The SMM protocol database.
    pub protocols: Vec<ProtocolEntry>,
    /// Calls through the SMST's services watched during the run (with
    /// [`Inventory::add_calls`]): who located, awaited and installed which protocol, and who
    /// registered which handler.
    pub service_calls: Vec<ServiceCall>,
    /// SMI latency by handler (with [`Inventory::add_latency`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub handler_latency: Vec<crate::handler_latency::HandlerLatency>,
}

/// One watched call through the SMST.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServiceCall {
    /// The service ("locate-protocol", "install-protocol", "register-notify", "handler-register").
    pub service: crate::smst::Service,
    /// The protocol or handler-type GUID.
    pub guid: Option<String>,
    /// Its edk2 name.
    pub guid_name: Option<&'static str>,
    /// The caller (the return address).
    pub caller: Named,
    /// SMM entries before the call.
    pub smi: u64,
    /// A dispatcher registration: which dispatcher and its context.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dispatch: Option<(crate::smst::Dispatch, String)>,
}

impl Inventory {
    /// Reads the inventory out of `smram`; `fw` (the firmware image, if known) names the
    /// modules.
    pub fn build(smram: &Smram, fw: Option<&fwimage::Image>) -> Inventory {
        let map = ModuleMap::new(images::find(smram, fw));
        let named = |a: u64| named(&map, a);
        let resident: Vec<_> = map.images().iter().filter_map(|m| m.guid).collect();
        let not_resident = fw
            .map(|fw| fw.mm_modules().filter(|m| m.pe_fingerprint.is_some() && !resident.contains(&m.guid)).map(|m| AbsentModule { name: m.name.clone().unwrap_or_else(|| m.guid.to_string()), guid: m.guid.to_string() }).collect())
            .unwrap_or_default();
        let handlers = core_lists::handlers(smram).iter().map(|h| entry(&map, h)).collect();
        let protocols = core_lists::protocols(smram)
            .into_iter()
            .map(|p| ProtocolEntry {
                guid: p.guid.to_string(),
                name: guid_names::name(&p.guid),
                interfaces: p.interfaces.into_iter().map(named).collect(),
                notify: p.notify.into_iter().map(named).collect(),
            })
            .collect();
        Inventory { smram: smram.ranges().map(|(b, d)| (b, d.len() as u64)).collect(), modules: map.images().to_vec(), not_resident, handlers, removed_handlers: Vec::new(), protocols, service_calls: Vec::new(), handler_latency: Vec::new() }
    }

    /// Adds the SMST service calls watched during the run, callers named by the image they
    /// ran in at the call when it was recorded (named from `fw` as [`Inventory::build`]
    /// names), else by the images resident at the end.
    pub fn add_calls(&mut self, calls: &[crate::smst::Call], fw: Option<&fwimage::Image>) {
        let map = ModuleMap::new(self.modules.clone());
        for c in calls {
            let guid_name = c.guid.as_deref().and_then(|g| g.parse().ok()).and_then(|g: fwimage::Guid| guid_names::name(&g));
            let then = c.image.as_ref().and_then(|(base, bytes)| crate::images::image_at(*base, bytes, fw));
            let caller = match then {
                Some(img) => named(&ModuleMap::new(vec![img]), c.caller),
                None => named(&map, c.caller),
            };
            self.service_calls.push(ServiceCall { service: c.service, guid: c.guid.clone(), guid_name, caller, smi: c.smi, dispatch: c.dispatch.clone() });
        }
    }

    /// Dates the handlers from a run's `tracker`, and adds those removed before the end.
    pub fn add_registrations(&mut self, tracker: &Tracker) {
        let map = ModuleMap::new(self.modules.clone());
        for r in tracker.registrations() {
            match r.removed {
                None => {
                    if let Some(h) = self.handlers.iter_mut().find(|h| h.handler.address == r.handler.handler && h.guid == r.handler.handler_type.map(|g| g.to_string())) {
                        h.seen = Some(r.seen);
                    }
                }
                Some(gone) => {
                    let mut e = entry(&map, &r.handler);
                    e.seen = Some(r.seen);
                    e.removed = Some(gone);
                    self.removed_handlers.push(e);
                }
            }
        }
    }

    /// Adds the latency by handler of the SMIs sampled (see [`crate::handler_latency`]) at
    /// `ips` instructions per second.
    pub fn add_latency(&mut self, samples: &[crate::handler_latency::Sample], ips: u64) {
        self.handler_latency = crate::handler_latency::summarise(self, samples, ips);
    }

    /// Handlers by kind: (root, guid).
    pub fn counts(&self) -> (usize, usize) {
        let root = self.handlers.iter().filter(|h| h.kind == "root").count();
        let guid = self.handlers.iter().filter(|h| h.kind == "guid").count();
        (root, guid)
    }

    /// Handlers registered with a child dispatcher (SW, Sx, periodic...).
    pub fn dispatched(&self) -> usize {
        self.handlers.iter().filter(|h| h.dispatch.is_some()).count()
    }

    /// The inventory as text, one section per part.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let ranges: Vec<String> = self.smram.iter().map(|(b, n)| format!("{b:#x}-{:#x}", b + n.max(&1) - 1)).collect();
        let _ = writeln!(s, "SMRAM {}", ranges.join(", "));
        let _ = writeln!(s, "\nmodules in SMRAM ({}):", self.modules.len());
        let _ = writeln!(s, "  {:<28} {:<12} {:<10} {:<12} file", "name", "base", "size", "entry");
        for m in &self.modules {
            let file = match (&m.guid, &m.debug_path) {
                (Some(g), _) => g.to_string(),
                (None, Some(p)) => p.clone(),
                (None, None) => "(not in the firmware volume)".into(),
            };
            let _ = writeln!(s, "  {:<28} {:<#12x} {:<#10x} +{:<#11x} {}", m.name, m.base, m.size, m.entry - m.base, file);
        }
        for m in &self.not_resident {
            // A module that called the SMST ran its entry point: it was unloaded after it.
            let calls = self.service_calls.iter().filter(|c| c.caller.module.as_deref() == Some(m.name.as_str())).count();
            let why = match calls {
                0 => "never dispatched, or its entry point failed".to_string(),
                n => format!("dispatched, made {n} SMST call(s), then unloaded: its entry point failed"),
            };
            let _ = writeln!(s, "  {:<28} not in SMRAM ({why})  {}", m.name, m.guid);
        }
        let (root, guid) = self.counts();
        let dispatched = match self.dispatched() {
            0 => String::new(),
            n => format!(", {n} with child dispatchers"),
        };
        let _ = writeln!(s, "\nSMI handlers ({root} root, {guid} GUID{dispatched}):");
        for h in &self.handlers {
            let what = match (&h.guid, h.guid_name, &h.dispatch) {
                (_, _, Some(d)) => d.clone(),
                (Some(_), Some(n), _) => n.to_string(),
                (Some(g), None, _) => g.clone(),
                (None, _, _) => "root (every SMI)".into(),
            };
            let _ = writeln!(s, "  {:<4} {:<42} {:<34} registered at {}", h.kind, what, h.handler.at, h.registered_by.at);
            let mut more = Vec::new();
            if let (Some(g), Some(_)) = (&h.guid, h.guid_name) {
                more.push(g.clone());
            }
            if let Some(m) = &h.seen {
                more.push(format!("seen {}", moment(m)));
            }
            if let Some(m) = &h.removed {
                more.push(format!("removed {}", moment(m)));
            }
            if !more.is_empty() {
                let _ = writeln!(s, "       {}", more.join(", "));
            }
        }
        if !self.removed_handlers.is_empty() {
            let _ = writeln!(s, "\nSMI handlers registered and removed during the run ({}):", self.removed_handlers.len());
            for h in &self.removed_handlers {
                let what = h.guid_name.map(str::to_string).or(h.guid.clone()).unwrap_or_else(|| "root (every SMI)".into());
                let (seen, gone) = (h.seen.as_ref().map(moment).unwrap_or_default(), h.removed.as_ref().map(moment).unwrap_or_default());
                let _ = writeln!(s, "  {:<4} {:<42} {:<34} registered at {}\n       seen {seen}, removed {gone}", h.kind, what, h.handler.at, h.registered_by.at);
            }
        }
        if !self.service_calls.is_empty() {
            let _ = writeln!(s, "\nSMST service calls watched ({}; each after the SMI count shown, from when the table was found):", self.service_calls.len());
            for c in &self.service_calls {
                let what = c.guid_name.map(str::to_string).or(c.guid.clone()).unwrap_or_else(|| "NULL (root)".into());
                let verb = match c.service {
                    crate::smst::Service::LocateProtocol => "located",
                    crate::smst::Service::InstallProtocol => "installed",
                    crate::smst::Service::RegisterNotify => "awaited",
                    crate::smst::Service::HandlerRegister => "registered a handler for",
                    crate::smst::Service::DispatchRegister => "registered with a dispatcher:",
                };
                let what = c.dispatch.as_ref().map_or(what, |d| format!("{:?} {}", d.0, d.1));
                let _ = writeln!(s, "  after SMI {:>4}  {:<34} {verb} {what}", c.smi, c.caller.at);
            }
        }
        if !self.handler_latency.is_empty() {
            s.push_str(&crate::handler_latency::render(&self.handler_latency));
        }
        let _ = writeln!(s, "\nSMM protocols ({}):", self.protocols.len());
        for p in &self.protocols {
            let _ = writeln!(s, "  {}", p.name.map_or(p.guid.clone(), |n| format!("{n} ({})", p.guid)));
            for i in &p.interfaces {
                let _ = writeln!(s, "      interface {}", i.at);
            }
            for n in &p.notify {
                let _ = writeln!(s, "      notify    {}", n.at);
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core_lists::tests::sample;

    #[test]
    fn handlers_are_named_by_the_images_holding_them() {
        let (mut r, _) = sample();
        // An image at 0x7f0_2000 with the root handler inside it; the GUID handlers point
        // outside every image.
        let img = crate::images::tests::pe(0x1000 + 0x1000, 0x1010, 1);
        let at = 0x7f0_2000u64;
        r.bytes[(at - r.base) as usize..][..img.len()].copy_from_slice(&img);
        r.put(r.base + 0x418, at + 0x1234);
        let inv = Inventory::build(&r.smram(), None);
        assert_eq!(inv.modules.len(), 1);
        assert_eq!(inv.handlers[0].kind, "root");
        assert_eq!(inv.handlers[0].handler.at, "image@0x7f02000+0x1234");
        assert_eq!(inv.handlers[1].guid_name, Some("gEfiSmmVariableProtocolGuid"));
        assert_eq!(inv.counts(), (1, 2));
        let text = inv.render();
        assert!(text.contains("SMI handlers (1 root, 2 GUID)"), "{text}");
        assert!(text.contains("gEfiSmmVariableProtocolGuid"), "{text}");
    }
}
