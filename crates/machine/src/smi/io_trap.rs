//! I/O traps: port ranges whose reads or writes raise an SMI. Two kinds:
//!
//! - [`IoTraps`], generic ranges a scenario or test configures through this API. A trapped
//!   access still completes to whatever device is at the port.
//! - [`IoTrapRegister`], the ICH9 I/O trapping registers IOTR0-3 (ICH9 datasheet §10.1.51) the
//!   firmware programs through RCBA; the LPC bridge checks them and a trapped access goes
//!   nowhere (reads return all ones).
//!
//! Either way the SMI is raised synchronously, so the CPU takes it right after the
//! instruction and records the I/O-restart state ([`cpu::Pending::IO_TRAP`]). An IOTRn hit
//! sets TRSR.CTRS bit n and SMI_STS.MONITOR_STS (bit 21) reads 1; the SMI is gated only by
//! SMI_EN.GBL_SMI_EN (bit 0) (ICH9 datasheet, doc. 316972, §10.1.48-§10.1.51 and §13.8.3
//! "Power Management I/O Registers"). The LPC bridge keeps TRSR, TRCR, TWDR and IOTRn.
//! The UHCI legacy 0x60/0x64 traps are [`super::usb_legacy`].

use super::{raise_ich9, SmiCause, SmiLatch};
use crate::clock::Ticks;
use std::ops::RangeInclusive;

/// One trapped range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoTrapRange {
    /// Ports covered.
    pub ports: RangeInclusive<u16>,
    /// Trap reads (IN/INS).
    pub on_read: bool,
    /// Trap writes (OUT/OUTS).
    pub on_write: bool,
}

/// The configured traps.
#[derive(Clone, Debug, Default)]
pub struct IoTraps {
    ranges: Vec<IoTrapRange>,
}

impl IoTraps {
    /// Adds a trap on `ports` for reads and/or writes.
    pub fn add(&mut self, ports: RangeInclusive<u16>, on_read: bool, on_write: bool) {
        self.ranges.push(IoTrapRange { ports, on_read, on_write });
    }

    /// Removes every trap.
    pub fn clear(&mut self) {
        self.ranges.clear();
    }

    /// The configured traps.
    pub fn ranges(&self) -> &[IoTrapRange] {
        &self.ranges
    }

    /// Whether an access of `size` bytes at `port` hits a trap.
    pub fn hits(&self, port: u16, size: u8, write: bool) -> bool {
        if self.ranges.is_empty() {
            return false;
        }
        let first = port as u32;
        let last = first + size.max(1) as u32 - 1;
        self.ranges.iter().any(|r| {
            (if write { r.on_write } else { r.on_read }) && first <= *r.ports.end() as u32 && last >= *r.ports.start() as u32
        })
    }

    /// Raises the I/O-trap SMI at `now` if an access of `size` bytes at `port` hits a trap.
    pub fn check(&self, port: u16, size: u8, write: bool, now: Ticks, smi: &mut SmiLatch) {
        if self.hits(port, size, write) {
            smi.raise(SmiCause::IoTrap { port, write }, now);
        }
    }
}

/// An IOTRn register trapped an access to `port` on the ICH9 at `now`: raises the
/// synchronous I/O-trap SMI as GBL_SMI_EN in `smi_en` allows.
pub fn ich9_trapped(smi_en: u32, port: u16, write: bool, now: Ticks, smi: &mut SmiLatch) {
    raise_ich9(smi_en, SmiCause::IoTrap { port, write }, now, smi);
}

/// One IOTRn register (64 bits): bit 0 TRSE (enable), bits 15:2 IOAD (dword address), bits
/// 23:18 ADMA (a mask over address bits 7:2), bits 35:32 TBE (byte enables), bit 48 RWIO (1:
/// trap reads, 0: writes), bit 49 RWM (trap both directions).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoTrapRegister(pub u64);

impl IoTrapRegister {
    /// TRSE.
    pub fn enabled(&self) -> bool {
        self.0 & 1 != 0
    }

    /// Whether an access of `size` bytes at `port` hits the trap: some byte of it lies in a
    /// dword the address and mask select, on a lane TBE enables, in a trapped direction.
    /// Returns the byte enables of the access within its first matching dword.
    pub fn hit(&self, port: u16, size: u8, write: bool) -> Option<u8> {
        if !self.enabled() {
            return None;
        }
        let (rwio, rwm) = (self.0 >> 48 & 1 != 0, self.0 >> 49 & 1 != 0);
        if !rwm && rwio == write {
            return None;
        }
        let ioad = (self.0 & 0xfffc) as u32;
        let amask = ((self.0 >> 18) & 0x3f) as u32 * 4;
        let tbe = ((self.0 >> 32) & 0xf) as u8;
        let first = port as u32;
        let last = first + size.clamp(1, 4) as u32 - 1;
        let mut p = first;
        while p <= last {
            let d = p & !3;
            let lanes = (p..=last.min(d + 3)).fold(0u8, |m, q| m | 1 << (q & 3));
            if (d & !amask) == (ioad & !amask) && tbe & lanes != 0 {
                return Some(lanes);
            }
            p = d + 4;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iotr_matches_dword_mask_byte_enables_and_direction() {
        // 0x60..0x63 dword, byte 0 only (TBE = 0001), writes.
        let t = IoTrapRegister(1 | 0x60 | 1 << 32);
        assert_eq!(t.hit(0x60, 1, true), Some(1));
        assert_eq!(t.hit(0x61, 1, true), None, "lane not enabled");
        assert_eq!(t.hit(0x60, 1, false), None, "reads not trapped");
        assert_eq!(t.hit(0x60, 2, true), Some(3));
        assert_eq!(t.hit(0x64, 1, true), None);
        assert_eq!(IoTrapRegister(t.0 & !1).hit(0x60, 1, true), None, "TRSE off");
        // Reads (RWIO), all lanes, ADMA masking bit 2: 0x60..0x67.
        let r = IoTrapRegister(1 | 0x60 | 1 << 18 | 0xf << 32 | 1 << 48);
        assert_eq!(r.hit(0x64, 1, false), Some(1));
        assert_eq!(r.hit(0x66, 2, false), Some(0xc));
        assert_eq!(r.hit(0x64, 1, true), None);
        assert_eq!(r.hit(0x68, 1, false), None);
        // Both directions (RWM); an access straddling into the trapped dword.
        let b = IoTrapRegister(1 | 0x80 | 0xf << 32 | 1 << 49);
        assert!(b.hit(0x80, 4, false).is_some() && b.hit(0x80, 4, true).is_some());
        assert_eq!(b.hit(0x7e, 4, true), Some(3));
        assert_eq!(b.hit(0xffff, 4, true), None);
    }

    #[test]
    fn a_trap_matches_overlapping_accesses_of_its_direction() {
        let mut t = IoTraps::default();
        t.add(0x80..=0x80, false, true);
        assert!(t.hits(0x80, 1, true));
        assert!(t.hits(0x7f, 2, true));
        assert!(!t.hits(0x7c, 4, true) && !t.hits(0x81, 1, true));
        assert!(!t.hits(0x80, 1, false));
        let mut s = SmiLatch::default();
        t.check(0x80, 1, false, Ticks(1), &mut s);
        assert!(!s.is_pending());
        t.check(0x7f, 2, true, Ticks(2), &mut s);
        assert!(s.is_io_trap());
        assert_eq!(s.drain_raised().collect::<Vec<_>>(), vec![(SmiCause::IoTrap { port: 0x7f, write: true }, Ticks(2))]);
    }

    #[test]
    fn no_traps_no_hits_even_at_the_top_port() {
        let mut t = IoTraps::default();
        assert!(!t.hits(0xffff, 4, true));
        t.add(0xfffe..=0xffff, true, true);
        assert!(t.hits(0xffff, 4, false));
    }
}
