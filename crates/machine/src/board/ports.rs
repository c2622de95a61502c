//! The ports the [`Platform`] decodes itself, ahead of the chipset, the PCI functions and the
//! legacy devices ([`PlatformPort`], registered in a [`PortMap`] that rejects overlapping
//! ranges), and the I/O traps every port access is checked against first.

use super::platform::Platform;
use super::port_map::{PortMap, PortOverlap};
use crate::chipset::Chipset;
use crate::pci::host::{CONFIG_ADDRESS, CONFIG_DATA};

/// debugcon port.
pub const PORT_DEBUGCON: u16 = 0x402;
/// isa-debug-exit port.
pub const PORT_DEBUG_EXIT: u16 = 0xf4;
/// APM_CNT port (APM_STS follows at 0xB3).
pub const PORT_APM_CNT: u16 = 0xb2;
/// The reset control register (byte port inside the 0xCF8 dword).
pub const PORT_RESET_CONTROL: u16 = 0xcf9;

/// The fixed ports the platform decodes itself, ahead of the chipset, the PCI functions and
/// the legacy devices (those decode only the ports left over, in that order for reads; for
/// writes the PCI functions come before the chipset).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlatformPort {
    /// CONFIG_ADDRESS (0xCF8-0xCFB). A byte access at 0xCF9 is the reset control register
    /// instead ([`PORT_RESET_CONTROL`]); wider accesses there stay the PCI host's.
    ConfigAddress,
    /// CONFIG_DATA (0xCFC-0xCFF).
    ConfigData,
    /// APM_CNT and APM_STS (0xB2-0xB3).
    Apm,
    /// debugcon (0x402).
    Debugcon,
    /// isa-debug-exit (0xF4), write-only: reads go on to the other decoders.
    DebugExit,
}

/// The platform's fixed ports, registered.
pub fn platform_ports() -> Result<PortMap<PlatformPort>, PortOverlap<PlatformPort>> {
    let mut m = PortMap::new();
    m.register(CONFIG_ADDRESS..=CONFIG_ADDRESS + 3, PlatformPort::ConfigAddress)?;
    m.register(CONFIG_DATA..=CONFIG_DATA + 3, PlatformPort::ConfigData)?;
    m.register(PORT_APM_CNT..=PORT_APM_CNT + 1, PlatformPort::Apm)?;
    m.register(PORT_DEBUGCON..=PORT_DEBUGCON, PlatformPort::Debugcon)?;
    m.register(PORT_DEBUG_EXIT..=PORT_DEBUG_EXIT, PlatformPort::DebugExit)?;
    Ok(m)
}

impl<C: Chipset> Platform<C> {
    /// Checks the I/O traps; true if the chipset trapped the access (it goes nowhere).
    pub(super) fn trap(&mut self, port: u16, size: u8, write: bool, value: u32) -> bool {
        let now = self.clock.now();
        self.io_traps.check(port, size, write, now, &mut self.smi);
        self.chipset.io_trap(port, size, write, value, now, &mut self.smi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::legacy::{self, LEGACY_PORTS};

    #[test]
    fn the_fixed_ports_register_and_decode() {
        let m = platform_ports().unwrap();
        assert_eq!(m.lookup(PORT_RESET_CONTROL), Some((PlatformPort::ConfigAddress, 1)), "0xCF9 sits in the CONFIG_ADDRESS dword");
        assert_eq!(m.lookup(CONFIG_DATA + 3), Some((PlatformPort::ConfigData, 3)));
        assert_eq!(m.lookup(PORT_APM_CNT + 1), Some((PlatformPort::Apm, 1)));
        assert_eq!(m.lookup(PORT_DEBUGCON), Some((PlatformPort::Debugcon, 0)));
        assert_eq!(m.lookup(PORT_DEBUG_EXIT), Some((PlatformPort::DebugExit, 0)));
        assert_eq!(m.lookup(PORT_APM_CNT + 2), None);
        assert!(legacy::port_map().is_ok());
        let mut m = m;
        assert!(m.register(0xcf9..=0xcf9, PlatformPort::ConfigAddress).is_err(), "the reset register is not a range of its own");
    }

    #[test]
    fn no_legacy_range_hides_behind_a_fixed_port() {
        let mut m = platform_ports().unwrap();
        for &(base, first, last, _) in LEGACY_PORTS {
            // Any device value will do: the ranges are what is checked.
            m.register_at(base, first..=last, PlatformPort::Debugcon).unwrap();
        }
    }
}
