//! The SMI handlers and the protocol database edk2's SMM core keeps in SMRAM, read from a
//! snapshot. Layouts (x64, edk2-stable202211 `MdeModulePkg/Core/PiSmmCore/PiSmmCore.h`):
//!
//! - SMI_ENTRY `smie`: Signature 0x00, AllEntries 0x08, HandlerType (GUID) 0x18, SmiHandlers
//!   0x28. The root entry (HandlerType all zero) is a static of the core.
//! - SMI_HANDLER `smih`: Signature 0x00, Link 0x08, Handler 0x18, CallerAddr 0x20 (the return
//!   address of the SmiHandlerRegister call: inside the registering module), SmiEntry 0x28.
//! - PROTOCOL_ENTRY `spte`: Signature 0x00, AllEntries 0x08, ProtocolID 0x18, Protocols 0x28,
//!   Notify 0x38.
//! - PROTOCOL_INTERFACE `spif`: Signature 0x00, Link 0x08, Handle 0x18, ByProtocol 0x20,
//!   Protocol 0x30, Interface 0x38.
//! - PROTOCOL_NOTIFY `sptn`: Signature 0x00, Protocol 0x08, Link 0x10, Function 0x20.
//!
//! Signatures are UINTNs (`SIGNATURE_32`, upper half zero). Freed pool keeps its old bytes, so a
//! record counts only if the lists it is on link back to it (each node's neighbours point at
//! it), and a handler or interface only if it is reached from a live entry's list.

use crate::smram::{Memory, Smram};
use fwimage::Guid;

const SMI_ENTRY: u64 = 0x6569_6d73; // "smie"
const SMI_HANDLER: u64 = 0x6869_6d73; // "smih"
const PROTOCOL_ENTRY: u64 = 0x6574_7073; // "spte"
const PROTOCOL_INTERFACE: u64 = 0x6669_7073; // "spif"
const PROTOCOL_NOTIFY: u64 = 0x6e74_7073; // "sptn"
/// The longest list believed.
const MAX_LIST: usize = 4096;

/// One registered SMI handler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handler {
    /// Its HandlerType: None for a root handler (run on every SMI).
    pub handler_type: Option<Guid>,
    /// The handler function.
    pub handler: u64,
    /// Where SmiHandlerRegister was called from.
    pub caller: u64,
    /// The SMI_HANDLER record.
    pub record: u64,
}

/// One protocol in the SMM protocol database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Protocol {
    /// The protocol GUID.
    pub guid: Guid,
    /// Its installed interfaces.
    pub interfaces: Vec<u64>,
    /// The functions registered to be told when it is installed (SmmRegisterProtocolNotify).
    pub notify: Vec<u64>,
}

/// The 8-byte-aligned addresses in `smram` holding `signature`.
fn records(smram: &Smram, signature: u64) -> Vec<u64> {
    let mut out = Vec::new();
    for (base, data) in smram.ranges() {
        for (i, chunk) in data.chunks_exact(8).enumerate() {
            if u64::from_le_bytes(chunk.try_into().expect("8 bytes")) == signature {
                out.push(base + 8 * i as u64);
            }
        }
    }
    out
}

/// Whether the LIST_ENTRY at `link` is on a list: its neighbours point back at it.
fn linked(smram: &(impl Memory + ?Sized), link: u64) -> bool {
    let (Some(flink), Some(blink)) = (smram.u64(link), smram.u64(link.wrapping_add(8))) else { return false };
    smram.u64(flink.wrapping_add(8)) == Some(link) && smram.u64(blink) == Some(link)
}

/// The nodes of the list whose head is at `head` (the LIST_ENTRY addresses, head excluded),
/// as long as each links back to the one before.
fn list(smram: &(impl Memory + ?Sized), head: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut prev = head;
    let mut node = match smram.u64(head) {
        Some(n) => n,
        None => return out,
    };
    while node != head && out.len() < MAX_LIST {
        if smram.u64(node.wrapping_add(8)) != Some(prev) {
            break;
        }
        out.push(node);
        prev = node;
        node = match smram.u64(node) {
            Some(n) => n,
            None => break,
        };
    }
    out
}

/// Every SMI handler registered in `smram`, root handlers first, each list in the order the
/// core runs it.
pub fn handlers(smram: &Smram) -> Vec<Handler> {
    let mut out = Vec::new();
    let mut entries: Vec<(Option<Guid>, u64)> = records(smram, SMI_ENTRY)
        .into_iter()
        .filter(|e| linked(smram, e + 0x08))
        .filter_map(|e| {
            let g = smram.guid(e + 0x18)?;
            Some((if g == Guid::default() { None } else { Some(g) }, e))
        })
        .collect();
    entries.sort_by_key(|(g, _)| g.is_some());
    for (handler_type, e) in entries {
        out.extend(entry_handlers(smram, e, handler_type));
    }
    out
}

/// The handlers on SMI_ENTRY `e`'s list, in order.
fn entry_handlers(mem: &(impl Memory + ?Sized), e: u64, handler_type: Option<Guid>) -> Vec<Handler> {
    let mut out = Vec::new();
    for node in list(mem, e.wrapping_add(0x28)) {
        let h = node.wrapping_sub(0x08);
        if mem.u64(h) != Some(SMI_HANDLER) || mem.u64(h.wrapping_add(0x28)) != Some(e) {
            break;
        }
        let (Some(handler), Some(caller)) = (mem.u64(h.wrapping_add(0x18)), mem.u64(h.wrapping_add(0x20))) else { break };
        out.push(Handler { handler_type, handler, caller, record: h });
    }
    out
}

/// Where the SMM core keeps its handlers: its static root entry, and the head of the list of
/// GUID entries (the core's `mSmiEntryList`), found once from a snapshot so that later looks
/// walk the lists without scanning SMRAM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandlerLists {
    /// The root SMI_ENTRY.
    pub root: Option<u64>,
    /// The LIST_ENTRY heading the GUID entries.
    pub head: Option<u64>,
}

impl HandlerLists {
    /// Finds the lists in `smram`; the head is known once a GUID entry exists.
    pub fn find(smram: &Smram) -> HandlerLists {
        let mut lists = HandlerLists::default();
        for e in records(smram, SMI_ENTRY).into_iter().filter(|e| linked(smram, e + 0x08)) {
            match smram.guid(e + 0x18) {
                Some(g) if g == Guid::default() => lists.root = lists.root.or(Some(e)),
                Some(_) if lists.head.is_none() => {
                    // Around the entry list: the one node that is not an SMI_ENTRY is the head.
                    let mut node = e + 0x08;
                    for _ in 0..MAX_LIST {
                        let Some(next) = smram.u64(node) else { break };
                        if smram.u64(next.wrapping_sub(0x08)) != Some(SMI_ENTRY) {
                            lists.head = Some(next);
                            break;
                        }
                        node = next;
                    }
                }
                _ => {}
            }
        }
        lists
    }

    /// Whether both lists are known.
    pub fn complete(&self) -> bool {
        self.root.is_some() && self.head.is_some()
    }

    /// The handlers on the lists now, root handlers first.
    pub fn handlers(&self, mem: &(impl Memory + ?Sized)) -> Vec<Handler> {
        let mut out = Vec::new();
        if let Some(root) = self.root {
            out.extend(entry_handlers(mem, root, None));
        }
        if let Some(head) = self.head {
            for node in list(mem, head) {
                let e = node.wrapping_sub(0x08);
                if mem.u64(e) != Some(SMI_ENTRY) {
                    break;
                }
                let Some(g) = mem.guid(e.wrapping_add(0x18)) else { break };
                out.extend(entry_handlers(mem, e, Some(g)));
            }
        }
        out
    }
}

/// Every protocol of the SMM protocol database with an interface or a notification.
pub fn protocols(smram: &Smram) -> Vec<Protocol> {
    let mut out = Vec::new();
    for e in records(smram, PROTOCOL_ENTRY) {
        if !linked(smram, e + 0x08) {
            continue;
        }
        let Some(guid) = smram.guid(e + 0x18) else { continue };
        let interfaces = list(smram, e + 0x28)
            .into_iter()
            .map(|n| n.wrapping_sub(0x20))
            .take_while(|&i| smram.u64(i) == Some(PROTOCOL_INTERFACE) && smram.u64(i.wrapping_add(0x30)) == Some(e))
            .filter_map(|i| smram.u64(i.wrapping_add(0x38)))
            .collect::<Vec<_>>();
        let notify = list(smram, e + 0x38)
            .into_iter()
            .map(|n| n.wrapping_sub(0x10))
            .take_while(|&p| smram.u64(p) == Some(PROTOCOL_NOTIFY) && smram.u64(p.wrapping_add(0x08)) == Some(e))
            .filter_map(|p| smram.u64(p.wrapping_add(0x20)))
            .collect::<Vec<_>>();
        if !interfaces.is_empty() || !notify.is_empty() {
            out.push(Protocol { guid, interfaces, notify });
        }
    }
    out.sort_by_key(|p| p.guid);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A writable model of SMRAM at `base` for building records.
    pub(crate) struct Ram {
        pub base: u64,
        pub bytes: Vec<u8>,
    }

    impl Ram {
        pub fn new(base: u64, len: usize) -> Self {
            Ram { base, bytes: vec![0; len] }
        }
        pub fn put(&mut self, addr: u64, v: u64) {
            let o = (addr - self.base) as usize;
            self.bytes[o..o + 8].copy_from_slice(&v.to_le_bytes());
        }
        pub fn guid(&mut self, addr: u64, g: Guid) {
            let o = (addr - self.base) as usize;
            self.bytes[o..o + 16].copy_from_slice(&g.0);
        }
        /// A list head at `head` holding the LIST_ENTRYs `nodes`, in order.
        pub fn link(&mut self, head: u64, nodes: &[u64]) {
            let all: Vec<u64> = std::iter::once(head).chain(nodes.iter().copied()).collect();
            for (i, &n) in all.iter().enumerate() {
                self.put(n, all[(i + 1) % all.len()]);
                self.put(n + 8, all[(i + all.len() - 1) % all.len()]);
            }
        }
        pub fn smram(&self) -> Smram {
            Smram::new(vec![(self.base, self.bytes.clone())])
        }
    }

    /// SMRAM with a root entry (one handler), a GUID entry (two handlers) on a list headed at
    /// 0x100, and a freed GUID entry whose bytes are still there.
    pub(crate) fn sample() -> (Ram, Guid) {
        let g: Guid = "ed32d533-99e6-4209-9cc0-2d72cdd998a7".parse().unwrap();
        let mut r = Ram::new(0x7f0_0000, 0x4000);
        let b = r.base;
        // Root entry at 0x200: AllEntries on no list (itself), one handler at 0x400.
        let root = b + 0x200;
        r.put(root, SMI_ENTRY);
        r.link(root + 0x08, &[]);
        r.link(root + 0x28, &[b + 0x408]);
        r.put(b + 0x400, SMI_HANDLER);
        r.put(b + 0x418, 0x7f1_1000);
        r.put(b + 0x420, 0x7f1_2000);
        r.put(b + 0x428, root);
        // GUID entry at 0x300 on the entry list headed at 0x100, handlers at 0x500 and 0x600.
        let e = b + 0x300;
        r.put(e, SMI_ENTRY);
        r.link(b + 0x100, &[e + 0x08]);
        r.guid(e + 0x18, g);
        r.link(e + 0x28, &[b + 0x508, b + 0x608]);
        for (h, f) in [(b + 0x500, 0x7f2_0000u64), (b + 0x600, 0x7f2_0100)] {
            r.put(h, SMI_HANDLER);
            r.put(h + 0x18, f);
            r.put(h + 0x20, f + 0x40);
            r.put(h + 0x28, e);
        }
        // A freed entry at 0x800: its links point at the list head, which no longer points back.
        let freed = b + 0x800;
        r.put(freed, SMI_ENTRY);
        r.put(freed + 0x08, b + 0x100);
        r.put(freed + 0x10, b + 0x100);
        r.guid(freed + 0x18, g);
        (r, g)
    }

    #[test]
    fn handlers_are_read_from_live_lists_only() {
        let (r, g) = sample();
        let h = handlers(&r.smram());
        let got: Vec<_> = h.iter().map(|h| (h.handler_type, h.handler, h.caller)).collect();
        assert_eq!(got, vec![(None, 0x7f1_1000, 0x7f1_2000), (Some(g), 0x7f2_0000, 0x7f2_0040), (Some(g), 0x7f2_0100, 0x7f2_0140)]);
    }

    #[test]
    fn the_lists_once_found_are_walked_without_a_scan() {
        let (r, g) = sample();
        let lists = HandlerLists::find(&r.smram());
        assert_eq!(lists, HandlerLists { root: Some(r.base + 0x200), head: Some(r.base + 0x100) });
        let h = lists.handlers(&r.smram());
        assert_eq!(h, handlers(&r.smram()));
        assert_eq!(h.iter().filter(|h| h.handler_type == Some(g)).count(), 2);
    }

    #[test]
    fn a_broken_list_stops_the_walk() {
        let (mut r, g) = sample();
        // The second handler's record no longer names its entry (its pool was reused).
        r.put(r.base + 0x628, 0);
        let h = handlers(&r.smram());
        assert_eq!(h.iter().filter(|h| h.handler_type == Some(g)).count(), 1);
    }

    proptest::proptest! {
        /// SMRAM is guest memory: any bytes, with the signatures sprinkled in, are read without
        /// a panic, and every handler reported sits on a record that carries its signature.
        #[test]
        fn any_smram_is_read_without_panicking(words in proptest::collection::vec(proptest::prelude::any::<u64>(), 0..512), marks in proptest::collection::vec((0usize..512, 0usize..5), 0..64)) {
            let mut words = words;
            let sigs = [SMI_ENTRY, SMI_HANDLER, PROTOCOL_ENTRY, PROTOCOL_INTERFACE, PROTOCOL_NOTIFY];
            for (at, sig) in marks {
                if at < words.len() {
                    words[at] = sigs[sig];
                }
            }
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            let s = Smram::new(vec![(0x7f0_0000, bytes)]);
            for h in handlers(&s) {
                proptest::prop_assert_eq!(s.u64(h.record), Some(SMI_HANDLER));
            }
            let _ = protocols(&s);
            let _ = crate::Inventory::build(&s, None).render();
        }
    }

    #[test]
    fn protocols_with_interfaces_and_notifications() {
        let g: Guid = "d326d041-bd31-4c01-b5a8-628be87f0653".parse().unwrap();
        let mut r = Ram::new(0x7f0_0000, 0x2000);
        let b = r.base;
        let e = b + 0x200;
        r.put(e, PROTOCOL_ENTRY);
        r.link(b + 0x100, &[e + 0x08]);
        r.guid(e + 0x18, g);
        let i = b + 0x400;
        r.put(i, PROTOCOL_INTERFACE);
        r.put(i + 0x30, e);
        r.put(i + 0x38, 0x7f3_0000);
        r.link(e + 0x28, &[i + 0x20]);
        let n = b + 0x500;
        r.put(n, PROTOCOL_NOTIFY);
        r.put(n + 0x08, e);
        r.put(n + 0x20, 0x7f4_0000);
        r.link(e + 0x38, &[n + 0x10]);
        assert_eq!(protocols(&r.smram()), vec![Protocol { guid: g, interfaces: vec![0x7f3_0000], notify: vec![0x7f4_0000] }]);
    }
}
