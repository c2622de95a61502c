//! PCI configuration mechanism #1 (PCI Local Bus Specification 3.0, §3.2.2.3.2): the
//! CONFIG_ADDRESS register at port 0xCF8 (dword accesses only) selects bus, device, function
//! and dword register; CONFIG_DATA at 0xCFC-0xCFF reaches that dword with byte, word or dword
//! accesses at any byte offset. The host only decodes; the board owns the functions.

/// CONFIG_ADDRESS.
pub const CONFIG_ADDRESS: u16 = 0xcf8;
/// CONFIG_DATA (first of four ports).
pub const CONFIG_DATA: u16 = 0xcfc;
/// CONFIG_ADDRESS bit 31: enable configuration cycles.
pub const CONFIG_ADDRESS_ENABLE: u32 = 1 << 31;
/// CONFIG_ADDRESS bits software may write: enable, bus, device, function, register.
pub const CONFIG_ADDRESS_WMASK: u32 = 0x80ff_fffc;

/// A decoded configuration access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigTarget {
    /// Bus number.
    pub bus: u8,
    /// Device number (0-31).
    pub device: u8,
    /// Function number (0-7).
    pub function: u8,
    /// Byte offset in the configuration space.
    pub offset: u8,
    /// Bytes of the access that fall in CONFIG_DATA (the rest of a straddling access reads
    /// as all ones).
    pub size: u8,
}

/// The host bridge's configuration-address latch.
#[derive(Clone, Debug, Default)]
pub struct PciHost {
    address: u32,
}

impl PciHost {
    /// Whether `port` belongs to the mechanism.
    pub fn claims(port: u16) -> bool {
        (CONFIG_ADDRESS..CONFIG_ADDRESS + 4).contains(&port) || (CONFIG_DATA..CONFIG_DATA + 4).contains(&port)
    }

    /// CONFIG_ADDRESS as software reads it.
    pub fn address(&self) -> u32 {
        self.address
    }

    /// A port read that is not to CONFIG_DATA: returns the value, or `None` for CONFIG_DATA.
    /// Non-dword accesses to 0xCF8-0xCFB are not configuration-address accesses (on a PC they
    /// go to other devices such as the reset control register at 0xCF9) and read as all ones.
    pub fn read_address(&self, port: u16, size: u8) -> Option<u32> {
        if (CONFIG_DATA..CONFIG_DATA + 4).contains(&port) {
            return None;
        }
        if port == CONFIG_ADDRESS && size == 4 {
            Some(self.address)
        } else {
            Some(ones(size))
        }
    }

    /// A port write outside CONFIG_DATA; returns false for CONFIG_DATA.
    pub fn write_address(&mut self, port: u16, size: u8, value: u32) -> bool {
        if (CONFIG_DATA..CONFIG_DATA + 4).contains(&port) {
            return false;
        }
        if port == CONFIG_ADDRESS && size == 4 {
            self.address = value & CONFIG_ADDRESS_WMASK;
        }
        true
    }

    /// The configuration access a CONFIG_DATA access at `port` of `size` bytes makes, if
    /// configuration cycles are enabled.
    pub fn target(&self, port: u16, size: u8) -> Option<ConfigTarget> {
        if self.address & CONFIG_ADDRESS_ENABLE == 0 || !(CONFIG_DATA..CONFIG_DATA + 4).contains(&port) {
            return None;
        }
        let lane = (port - CONFIG_DATA) as u8;
        Some(ConfigTarget {
            bus: (self.address >> 16) as u8,
            device: ((self.address >> 11) & 0x1f) as u8,
            function: ((self.address >> 8) & 7) as u8,
            offset: (self.address & 0xfc) as u8 + lane,
            size: size.min(4 - lane),
        })
    }
}

/// All ones in `size` bytes.
pub fn ones(size: u8) -> u32 {
    if size >= 4 {
        u32::MAX
    } else {
        (1u32 << (8 * size as u32)) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_register_is_dword_only_and_masked() {
        let mut h = PciHost::default();
        assert!(h.write_address(CONFIG_ADDRESS, 4, 0xffff_ffff));
        assert_eq!(h.read_address(CONFIG_ADDRESS, 4), Some(CONFIG_ADDRESS_WMASK));
        h.write_address(CONFIG_ADDRESS, 1, 0);
        assert_eq!(h.address(), CONFIG_ADDRESS_WMASK);
        assert_eq!(h.read_address(CONFIG_ADDRESS + 1, 2), Some(0xffff));
    }

    #[test]
    fn data_ports_select_byte_lanes() {
        let mut h = PciHost::default();
        h.write_address(CONFIG_ADDRESS, 4, 0x8000_fa9c);
        let t = h.target(0xcfd, 1).unwrap();
        assert_eq!((t.bus, t.device, t.function, t.offset, t.size), (0, 0x1f, 2, 0x9d, 1));
        assert_eq!(h.target(0xcfe, 4).unwrap().size, 2);
        assert_eq!(h.read_address(0xcfc, 4), None);
    }

    #[test]
    fn disabled_address_makes_no_cycle() {
        let mut h = PciHost::default();
        h.write_address(CONFIG_ADDRESS, 4, 0x0000_0000);
        assert_eq!(h.target(CONFIG_DATA, 4), None);
    }
}
