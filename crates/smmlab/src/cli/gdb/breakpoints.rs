//! Breakpoints and watchpoints: `break` and `hbreak` are the machine's host breakpoints on
//! RIP, `watch` its write watches on the memory path; none of them uses DR7, which SMM entry
//! clears, so all of them work in SMM.

use super::target::GdbTarget;
use gdbstub::target::ext::breakpoints::{Breakpoints, HwBreakpoint, HwBreakpointOps, HwWatchpoint, HwWatchpointOps, SwBreakpoint, SwBreakpointOps, WatchKind};
use gdbstub::target::TargetResult;

impl Breakpoints for GdbTarget<'_> {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_breakpoint(&mut self) -> Option<HwBreakpointOps<'_, Self>> {
        Some(self)
    }

    fn support_hw_watchpoint(&mut self) -> Option<HwWatchpointOps<'_, Self>> {
        Some(self)
    }
}

/// Adds `addr` to `list`; false if it was there.
fn add(list: &mut Vec<u64>, addr: u64) -> bool {
    let new = !list.contains(&addr);
    if new {
        list.push(addr);
    }
    new
}

/// Removes `addr` from `list`; false if it was not there.
fn remove(list: &mut Vec<u64>, addr: u64) -> bool {
    let Some(i) = list.iter().position(|b| *b == addr) else { return false };
    list.remove(i);
    true
}

impl SwBreakpoint for GdbTarget<'_> {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        add(&mut self.sw_breakpoints, addr);
        self.restore_breakpoints();
        Ok(true)
    }

    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        let found = remove(&mut self.sw_breakpoints, addr);
        self.restore_breakpoints();
        Ok(found)
    }
}

/// `hbreak`: the same host breakpoint as `break` (no byte of guest memory changes either way),
/// so it works in SMM and across SMM entry, where hardware's DR7 is cleared.
impl HwBreakpoint for GdbTarget<'_> {
    fn add_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        add(&mut self.hw_breakpoints, addr);
        self.restore_breakpoints();
        Ok(true)
    }

    fn remove_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        let found = remove(&mut self.hw_breakpoints, addr);
        self.restore_breakpoints();
        Ok(found)
    }
}

/// `watch`: a write watch on the machine's memory path (every CPU write, in SMM or not, and
/// the host's), not DR7. Read and access watchpoints (`rwatch`, `awatch`) are refused.
impl HwWatchpoint for GdbTarget<'_> {
    fn add_hw_watchpoint(&mut self, addr: u64, len: u64, kind: WatchKind) -> TargetResult<bool, Self> {
        if kind != WatchKind::Write || len == 0 {
            return Ok(false);
        }
        self.watches.push((addr, len));
        if !self.set_watches() {
            self.watches.pop();
            return Ok(false);
        }
        Ok(true)
    }

    fn remove_hw_watchpoint(&mut self, addr: u64, len: u64, kind: WatchKind) -> TargetResult<bool, Self> {
        let Some(i) = self.watches.iter().position(|w| *w == (addr, len)) else { return Ok(false) };
        if kind != WatchKind::Write {
            return Ok(false);
        }
        self.watches.remove(i);
        self.set_watches();
        Ok(true)
    }
}

impl GdbTarget<'_> {
    /// Hands [`GdbTarget::watches`] to the machine; false on a board without watches.
    fn set_watches(&mut self) -> bool {
        let ranges: Vec<std::ops::Range<u64>> = self.watches.iter().map(|&(a, l)| a..a.saturating_add(l)).collect();
        self.m.set_write_watches(&ranges)
    }
}
