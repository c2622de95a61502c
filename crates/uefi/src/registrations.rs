//! When each SMI handler was registered, and which were removed: the core's handler lists
//! looked at after every RSM ([`crate::core_lists::HandlerLists`]). A handler first seen
//! after SMI n was registered during SMI n or between SMI n-1 and n (drivers dispatched
//! before the SMM entry point exists run outside SMM); one gone after SMI m was unregistered
//! then (the core's dispatch and ready-to-lock handlers remove themselves).

use crate::core_lists::{Handler, HandlerLists};
use crate::smram::{Memory, Smram};

/// A moment of the run: after SMI `smi` (the count of SMM entries), at guest time `ns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Moment {
    /// SMM entries so far.
    pub smi: u64,
    /// Guest time in nanoseconds.
    pub ns: u64,
}

/// One handler's life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// The handler.
    pub handler: Handler,
    /// The first look that found it.
    pub seen: Moment,
    /// The first look that no longer found it.
    pub removed: Option<Moment>,
}

/// Follows the handler lists through a run.
#[derive(Clone, Debug, Default)]
pub struct Tracker {
    lists: HandlerLists,
    registrations: Vec<Registration>,
    looks: u64,
}

impl Tracker {
    /// Whether the lists still have to be found in a snapshot ([`Tracker::locate`]).
    pub fn needs_snapshot(&self) -> bool {
        !self.lists.complete()
    }

    /// Finds the lists in `smram`.
    pub fn locate(&mut self, smram: &Smram) {
        let found = HandlerLists::find(smram);
        self.lists.root = self.lists.root.or(found.root);
        self.lists.head = self.lists.head.or(found.head);
    }

    /// Looks at the lists now.
    pub fn look(&mut self, mem: &(impl Memory + ?Sized), at: Moment) {
        if self.lists.root.is_none() && self.lists.head.is_none() {
            return;
        }
        self.looks += 1;
        let now = self.lists.handlers(mem);
        for r in self.registrations.iter_mut().filter(|r| r.removed.is_none()) {
            if !now.contains(&r.handler) {
                r.removed = Some(at);
            }
        }
        for h in now {
            if !self.registrations.iter().any(|r| r.removed.is_none() && r.handler == h) {
                self.registrations.push(Registration { handler: h, seen: at, removed: None });
            }
        }
    }

    /// Every handler seen, in the order first seen.
    pub fn registrations(&self) -> &[Registration] {
        &self.registrations
    }

    /// Looks taken.
    pub fn looks(&self) -> u64 {
        self.looks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core_lists::tests::sample;

    #[test]
    fn handlers_are_dated_and_their_removal_seen() {
        let (mut r, _) = sample();
        let mut t = Tracker::default();
        assert!(t.needs_snapshot());
        t.locate(&r.smram());
        assert!(!t.needs_snapshot());
        t.look(&r.smram(), Moment { smi: 3, ns: 1000 });
        assert_eq!(t.registrations().len(), 3);
        // The GUID entry's second handler is unregistered: its neighbour links around it.
        let (first, second) = (r.base + 0x508, r.base + 0x608);
        let head = r.base + 0x300 + 0x28;
        r.link(head, &[first]);
        let _ = second;
        t.look(&r.smram(), Moment { smi: 7, ns: 5000 });
        let gone: Vec<_> = t.registrations().iter().filter(|x| x.removed.is_some()).collect();
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].handler.handler, 0x7f2_0100);
        assert_eq!((gone[0].seen.smi, gone[0].removed.unwrap().smi), (3, 7));
        assert_eq!(t.looks(), 2);
    }
}
