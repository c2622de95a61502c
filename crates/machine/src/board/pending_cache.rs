//! The cache of the CPU-visible lines ([`Bus::pending`]) around a board. The CPU asks for
//! them at every block boundary, and between two device accesses nothing changes, so the
//! answer is kept until anything that can change it runs. The cache sits outside the board:
//! the board's state is reached only through [`Deref`] (reading: the cache stays) or
//! [`DerefMut`] (any change: the cache goes), and every [`Bus`] entry point that can change
//! device state reaches the board through [`DerefMut`]. A new device path, host method or
//! field written from outside cannot forget to drop it.

use cpu::{Access, AccessKind, Bus, Pending, SmmEntry, SmmExit};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// Board `B` with its answer to [`Bus::pending`] cached until the board changes.
pub struct PendingCache<B> {
    board: B,
    /// What [`Bus::pending`] last answered (None: ask the board).
    cache: Option<Pending>,
}

impl<B> PendingCache<B> {
    /// `board`, nothing cached yet.
    pub fn new(board: B) -> Self {
        PendingCache { board, cache: None }
    }
}

impl<B> Deref for PendingCache<B> {
    type Target = B;

    fn deref(&self) -> &B {
        &self.board
    }
}

impl<B> DerefMut for PendingCache<B> {
    /// Any change to the board may change the lines: the cached answer goes.
    fn deref_mut(&mut self) -> &mut B {
        self.cache = None;
        &mut self.board
    }
}

impl<B: Bus> Bus for PendingCache<B> {
    fn read(&mut self, a: Access) -> u64 {
        self.deref_mut().read(a)
    }

    fn write(&mut self, a: Access, value: u64) {
        self.deref_mut().write(a, value)
    }

    fn io_in(&mut self, a: Access) -> u32 {
        self.deref_mut().io_in(a)
    }

    fn io_out(&mut self, a: Access, value: u32) {
        self.deref_mut().io_out(a, value)
    }

    /// Asking for a direct page changes no line (the board only notes which SMM pages run
    /// code), and the CPU asks often: the cache stays.
    fn host_page(&mut self, page: u64, kind: AccessKind, smm: bool) -> Option<NonNull<u8>> {
        self.board.host_page(page, kind, smm)
    }

    fn sync_icount(&mut self, icount: u64) {
        self.deref_mut().sync_icount(icount)
    }
    fn smm_instruction(&mut self, rip: u64) {
        self.deref_mut().smm_instruction(rip)
    }

    fn smm_block(&mut self, phys: u64) {
        self.deref_mut().smm_block(phys)
    }

    fn idle_ticks(&self) -> u64 {
        self.board.idle_ticks()
    }

    fn pending(&mut self) -> Pending {
        if let Some(p) = self.cache {
            return p;
        }
        let p = self.board.pending();
        self.cache = Some(p);
        p
    }

    fn ack_intr(&mut self) -> u8 {
        self.deref_mut().ack_intr()
    }

    fn ack_smi(&mut self) {
        self.deref_mut().ack_smi()
    }

    fn ack_nmi(&mut self) {
        self.deref_mut().ack_nmi()
    }

    fn ack_init(&mut self) {
        self.deref_mut().ack_init()
    }

    fn smm_entered(&mut self, e: &SmmEntry) {
        self.deref_mut().smm_entered(e)
    }

    fn smm_left(&mut self, e: &SmmExit) {
        self.deref_mut().smm_left(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bus whose lines are a field, counting how often they are computed.
    #[derive(Default)]
    struct Lines {
        p: u32,
        computed: u32,
    }

    impl Bus for Lines {
        fn read(&mut self, _a: Access) -> u64 {
            0
        }
        fn write(&mut self, _a: Access, value: u64) {
            self.p = value as u32;
        }
        fn io_in(&mut self, _a: Access) -> u32 {
            0
        }
        fn io_out(&mut self, _a: Access, _value: u32) {}
        fn host_page(&mut self, _page: u64, _kind: AccessKind, _smm: bool) -> Option<NonNull<u8>> {
            None
        }
        fn pending(&mut self) -> Pending {
            self.computed += 1;
            Pending(self.p)
        }
    }

    #[test]
    fn the_answer_is_kept_until_the_board_changes() {
        let mut b = PendingCache::new(Lines::default());
        assert_eq!(b.pending(), Pending(0));
        assert_eq!(b.pending(), Pending(0));
        b.host_page(0, AccessKind::Read, false);
        assert_eq!((b.pending(), b.computed), (Pending(0), 1), "reads and direct pages keep it");
        b.write(Access { addr: 0, size: 4, kind: AccessKind::Write, smm: false }, Pending::SMI as u64);
        assert_eq!((b.pending(), b.computed), (Pending(Pending::SMI), 2), "a bus access drops it");
        b.p = Pending::INTR;
        assert_eq!((b.pending(), b.computed), (Pending(Pending::INTR), 3), "so does a change from outside");
        b.ack_smi();
        assert_eq!((b.pending(), b.pending(), b.computed), (Pending(Pending::INTR), Pending(Pending::INTR), 4));
    }
}
