//! The I/O port map: which device decodes which ports. Each device registers its port ranges
//! once, when the board is built; a range that overlaps one already registered is rejected
//! ([`PortOverlap`]), so a port belongs to exactly one device and the order of registration
//! never decides anything. A device registers with the port its offsets count from (a range
//! may start above it, for a device whose window has a hole another device fills, such as
//! the 8042 around port 0x61).
//!
//! The map covers the fixed ports. Ports a guest programs (PCI BARs, the southbridge's
//! PMBASE) are decoded by their owners around it, in the order the board documents.

use std::fmt;
use std::ops::RangeInclusive;

/// One registered range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortRange<T> {
    /// The ports decoded.
    pub ports: RangeInclusive<u16>,
    /// The port offset 0 of the device is at (at or below the range's first port).
    pub base: u16,
    /// The device.
    pub device: T,
}

/// A registration refused because its ports overlap a range already registered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortOverlap<T> {
    /// The range refused.
    pub ports: RangeInclusive<u16>,
    /// Its device.
    pub device: T,
    /// The range already registered it overlaps.
    pub existing: PortRange<T>,
}

impl<T: fmt::Debug> fmt::Display for PortOverlap<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ports {:#06x}-{:#06x} of {:?} overlap {:#06x}-{:#06x} of {:?}",
            self.ports.start(),
            self.ports.end(),
            self.device,
            self.existing.ports.start(),
            self.existing.ports.end(),
            self.existing.device
        )
    }
}

impl<T: fmt::Debug> std::error::Error for PortOverlap<T> {}

/// A registration whose range is empty or starts below its base.
fn check(ports: &RangeInclusive<u16>, base: u16) {
    assert!(ports.start() <= ports.end() && base <= *ports.start(), "bad port range {ports:?} (base {base:#x})");
}

/// The port map of devices `T`.
#[derive(Clone, Debug)]
pub struct PortMap<T> {
    ranges: Vec<PortRange<T>>,
}

impl<T> Default for PortMap<T> {
    fn default() -> Self {
        PortMap { ranges: Vec::new() }
    }
}

impl<T: Copy> PortMap<T> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `ports` for `device`, offsets counted from the range's first port.
    pub fn register(&mut self, ports: RangeInclusive<u16>, device: T) -> Result<(), PortOverlap<T>> {
        let base = *ports.start();
        self.register_at(base, ports, device)
    }

    /// Registers `ports` for `device`, offsets counted from `base` (at or below the first
    /// port). Panics on an empty range or one that starts below `base` (a board bug).
    pub fn register_at(&mut self, base: u16, ports: RangeInclusive<u16>, device: T) -> Result<(), PortOverlap<T>> {
        check(&ports, base);
        if let Some(existing) = self.ranges.iter().find(|r| r.ports.start() <= ports.end() && ports.start() <= r.ports.end()) {
            return Err(PortOverlap { ports, device, existing: existing.clone() });
        }
        self.ranges.push(PortRange { ports, base, device });
        Ok(())
    }

    /// The device that decodes `port` and the offset of `port` in it.
    pub fn lookup(&self, port: u16) -> Option<(T, u16)> {
        self.ranges.iter().find(|r| r.ports.contains(&port)).map(|r| (r.device, port - r.base))
    }

    /// The registered ranges, in registration order.
    pub fn ranges(&self) -> &[PortRange<T>] {
        &self.ranges
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Dev {
        A,
        B,
        C,
    }

    #[test]
    fn lookup_gives_the_device_and_the_offset_from_its_base() {
        let mut m = PortMap::new();
        m.register(0x20..=0x21, Dev::A).unwrap();
        m.register_at(0x60, 0x62..=0x64, Dev::B).unwrap();
        m.register(0x61..=0x61, Dev::C).unwrap();
        assert_eq!(m.lookup(0x21), Some((Dev::A, 1)));
        assert_eq!(m.lookup(0x61), Some((Dev::C, 0)));
        assert_eq!(m.lookup(0x64), Some((Dev::B, 4)));
        assert_eq!(m.lookup(0x22), None);
        assert_eq!(m.ranges().len(), 3);
    }

    #[test]
    fn an_overlapping_range_is_rejected_and_the_map_is_unchanged() {
        let mut m = PortMap::new();
        m.register(0x60..=0x64, Dev::A).unwrap();
        let e = m.register(0x61..=0x61, Dev::B).unwrap_err();
        assert_eq!(e.existing, PortRange { ports: 0x60..=0x64, base: 0x60, device: Dev::A });
        assert_eq!((e.ports, e.device), (0x61..=0x61, Dev::B));
        assert_eq!(m.register(0x64..=0x70, Dev::B).unwrap_err().existing.device, Dev::A, "touching the last port");
        assert_eq!(m.register(0x50..=0x60, Dev::B).unwrap_err().existing.device, Dev::A, "touching the first port");
        assert!(m.register(0x5f..=0x5f, Dev::B).is_ok() && m.register(0x65..=0xffff, Dev::C).is_ok());
        assert_eq!(m.lookup(0x61), Some((Dev::A, 1)));
        assert_eq!(m.lookup(0xffff), Some((Dev::C, 0xffff - 0x65)));
        let msg = m.register(0x0..=0xffff, Dev::C).unwrap_err().to_string();
        assert_eq!(msg, "ports 0x0000-0xffff of C overlap 0x0060-0x0064 of A");
    }

    #[test]
    #[should_panic(expected = "bad port range")]
    fn a_range_below_its_base_is_a_board_bug() {
        let _ = PortMap::new().register_at(0x61, 0x60..=0x64, Dev::A);
    }
}
