//! SMI latency by handler: what each SMI handler of the inventory costs the interrupted
//! program. Each SMI that entered a handler (the run stopped at the handler's first
//! instruction) is one sample for that handler: its instructions in SMM from entry to RSM, and
//! the guest time they take at the run's instruction rate. An SMI that entered several
//! handlers (the core's root list) is a sample of each.

use crate::inventory::{HandlerEntry, Inventory};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// One SMI that entered `handler`, which ran `instructions` in SMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// The handler's address.
    pub handler: u64,
    /// Instructions in SMM, SMM entry to RSM.
    pub instructions: u64,
}

/// One handler's figures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HandlerLatency {
    /// The handler as the inventory lists it (kind, GUID, `Module+0xRVA`).
    pub handler: HandlerEntry,
    /// SMIs that entered it.
    pub smis: u64,
    /// Median instructions per SMI (nearest rank).
    pub p50_instructions: u64,
    /// Most instructions in one SMI.
    pub max_instructions: u64,
    /// Median guest time per SMI, ns.
    pub p50_ns: u64,
    /// Longest SMI, ns.
    pub max_ns: u64,
    /// Guest time in SMM over all its SMIs, ns.
    pub total_ns: u64,
}

fn ns(instructions: u64, ips: u64) -> u64 {
    (instructions as u128 * 1_000_000_000 / ips.max(1) as u128) as u64
}

/// The figures of every handler of `inv` (current or removed) that `samples` name, most
/// expensive (total time) first; samples at addresses the inventory does not list as a
/// handler are left out.
pub fn summarise(inv: &Inventory, samples: &[Sample], ips: u64) -> Vec<HandlerLatency> {
    let mut by: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for s in samples {
        by.entry(s.handler).or_default().push(s.instructions);
    }
    let mut out: Vec<HandlerLatency> = by
        .into_iter()
        .filter_map(|(at, mut v)| {
            let h = inv.handlers.iter().chain(&inv.removed_handlers).find(|h| h.handler.address == at)?;
            v.sort_unstable();
            let p50 = v[(v.len() - 1) / 2];
            let max = *v.last().expect("one sample at least");
            Some(HandlerLatency { handler: h.clone(), smis: v.len() as u64, p50_instructions: p50, max_instructions: max, p50_ns: ns(p50, ips), max_ns: ns(max, ips), total_ns: ns(v.iter().sum(), ips) })
        })
        .collect();
    out.sort_by(|a, b| b.total_ns.cmp(&a.total_ns).then(a.handler.handler.address.cmp(&b.handler.handler.address)));
    out
}

/// The figures as a table.
pub fn render(rows: &[HandlerLatency]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\nSMI latency by handler ({} handlers entered):", rows.len());
    let _ = writeln!(s, "  {:<4} {:<40} {:<34} {:>6} {:>10} {:>10} {:>11}", "kind", "GUID", "handler", "SMIs", "p50 µs", "max µs", "total µs");
    for r in rows {
        let h = &r.handler;
        let guid = h.guid_name.map(str::to_string).or_else(|| h.guid.clone()).unwrap_or_else(|| "-".into());
        let us = |n: u64| format!("{:.1}", n as f64 / 1000.0);
        let _ = writeln!(s, "  {:<4} {:<40} {:<34} {:>6} {:>10} {:>10} {:>11}", h.kind, guid, h.handler.at, r.smis, us(r.p50_ns), us(r.max_ns), us(r.total_ns));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Named;

    fn handler(at: u64, guid: &str) -> HandlerEntry {
        let named = |a: u64| Named { address: a, at: format!("Mod+{:#x}", a - 0x1000), module: Some("Mod".into()), in_code: Some(true) };
        HandlerEntry { kind: "guid", guid: Some(guid.into()), guid_name: None, handler: named(at), registered_by: named(at + 0x10), seen: None, removed: None, dispatch: None }
    }

    #[test]
    fn samples_are_grouped_by_handler_with_median_max_and_total() {
        let inv = Inventory { handlers: vec![handler(0x1100, "a"), handler(0x1200, "b")], ..Inventory::default() };
        let s = |h, i| Sample { handler: h, instructions: i };
        let rows = summarise(&inv, &[s(0x1100, 1000), s(0x1200, 100), s(0x1100, 3000), s(0x1100, 2000), s(0x9999, 5)], 1_000_000_000);
        assert_eq!(rows.len(), 2, "the unknown address is left out");
        assert_eq!(rows[0].handler.handler.at, "Mod+0x100");
        assert_eq!((rows[0].smis, rows[0].p50_instructions, rows[0].max_instructions, rows[0].total_ns), (3, 2000, 3000, 6000));
        assert_eq!((rows[1].smis, rows[1].max_ns), (1, 100));
        let text = render(&rows);
        assert!(text.contains("Mod+0x100") && text.contains("6.0"), "{text}");
    }
}
