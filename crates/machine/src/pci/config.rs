//! A 256-byte PCI configuration space with per-bit write masks and write-one-to-clear masks
//! (PCI Local Bus Specification 3.0, §6.1 "Configuration Space Organization", §6.2 "Functions
//! of the Configuration Space").

/// Vendor ID (16 bits, read-only).
pub const VENDOR_ID: u8 = 0x00;
/// Device ID (16 bits, read-only).
pub const DEVICE_ID: u8 = 0x02;
/// Command register (16 bits).
pub const COMMAND: u8 = 0x04;
/// Status register (16 bits).
pub const STATUS: u8 = 0x06;
/// Revision ID (8 bits).
pub const REVISION_ID: u8 = 0x08;
/// Class code: programming interface, subclass, base class (24 bits at 0x09).
pub const CLASS_CODE: u8 = 0x09;
/// Header type (bit 7: multi-function device).
pub const HEADER_TYPE: u8 = 0x0e;
/// Subsystem vendor ID and subsystem ID (type 0 header, PCI Local Bus spec 3.0 §6.2.4).
pub const SUBSYSTEM_VENDOR_ID: u8 = 0x2c;
/// Subsystem ID.
pub const SUBSYSTEM_ID: u8 = 0x2e;
/// The subsystem IDs QEMU gives its devices (Red Hat/Qumranet 1AF4, "QEMU" 1100); SeaBIOS
/// reads them from the host bridge to decide it runs on QEMU.
pub const SUBSYSTEM_VENDOR_QEMU: u16 = 0x1af4;
/// The subsystem ID QEMU's devices carry.
pub const SUBSYSTEM_ID_QEMU: u16 = 0x1100;
/// Interrupt line (scratch for firmware).
pub const INTERRUPT_LINE: u8 = 0x3c;
/// Interrupt pin (1 = INTA# .. 4 = INTD#, 0 = none).
pub const INTERRUPT_PIN: u8 = 0x3d;
/// Command bits software may write: I/O space, memory space, bus master, special cycles,
/// parity error response, SERR# enable, interrupt disable (PCI 3.0 §6.2.2).
pub const COMMAND_WMASK: u16 = 0x0547;
/// Header-type bit marking a multi-function device.
pub const HEADER_TYPE_MULTI_FUNCTION: u8 = 0x80;

/// One function's configuration space.
#[derive(Clone, Debug)]
pub struct ConfigSpace {
    bytes: [u8; 256],
    wmask: [u8; 256],
    w1cmask: [u8; 256],
}

impl ConfigSpace {
    /// A type-0 header with the given IDs, class (base << 16 | sub << 8 | prog-if) and header
    /// type. Only the command register and the interrupt line are writable; devices add their
    /// registers with [`ConfigSpace::set_wmask`].
    pub fn new(vendor: u16, device: u16, revision: u8, class: u32, header_type: u8) -> Self {
        let mut c = ConfigSpace { bytes: [0; 256], wmask: [0; 256], w1cmask: [0; 256] };
        c.set(VENDOR_ID, 2, vendor as u32);
        c.set(DEVICE_ID, 2, device as u32);
        c.set(REVISION_ID, 1, revision as u32);
        c.set(CLASS_CODE, 3, class);
        c.set(HEADER_TYPE, 1, header_type as u32);
        c.set(SUBSYSTEM_VENDOR_ID, 2, SUBSYSTEM_VENDOR_QEMU as u32);
        c.set(SUBSYSTEM_ID, 2, SUBSYSTEM_ID_QEMU as u32);
        c.set_wmask(COMMAND, 2, COMMAND_WMASK as u32);
        c.set_wmask(INTERRUPT_LINE, 1, 0xff);
        c
    }

    /// Reads `size` bytes little-endian at `offset` (bytes past 0xFF read as 0xFF).
    pub fn read(&self, offset: u8, size: u8) -> u32 {
        let mut v = 0u32;
        for k in 0..size.min(4) as usize {
            let b = self.bytes.get(offset as usize + k).copied().unwrap_or(0xff);
            v |= (b as u32) << (8 * k);
        }
        v
    }

    /// A guest write: each bit changes only where the write mask allows, and bits in the
    /// write-one-to-clear mask are cleared where the value has a one.
    pub fn write(&mut self, offset: u8, size: u8, value: u32) {
        for k in 0..size.min(4) as usize {
            let i = offset as usize + k;
            if i >= 256 {
                break;
            }
            let b = (value >> (8 * k)) as u8;
            let (m, c) = (self.wmask[i], self.w1cmask[i]);
            self.bytes[i] = (self.bytes[i] & !m) | (b & m);
            self.bytes[i] &= !(b & c);
        }
    }

    /// Sets bytes directly (device logic and reset values), ignoring the masks.
    pub fn set(&mut self, offset: u8, size: u8, value: u32) {
        Self::put(&mut self.bytes, offset, size, value);
    }

    /// The writable bits of the byte at `offset`.
    pub fn wmask_byte(&self, offset: u8) -> u8 {
        self.wmask[offset as usize]
    }

    /// Sets which bits a guest write may change.
    pub fn set_wmask(&mut self, offset: u8, size: u8, mask: u32) {
        Self::put(&mut self.wmask, offset, size, mask);
    }

    /// Sets which bits a guest clears by writing one.
    pub fn set_w1cmask(&mut self, offset: u8, size: u8, mask: u32) {
        Self::put(&mut self.w1cmask, offset, size, mask);
    }

    /// One byte.
    pub fn byte(&self, offset: u8) -> u8 {
        self.bytes[offset as usize]
    }

    fn put(buf: &mut [u8; 256], offset: u8, size: u8, value: u32) {
        for k in 0..size.min(4) as usize {
            if let Some(b) = buf.get_mut(offset as usize + k) {
                *b = (value >> (8 * k)) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space() -> ConfigSpace {
        ConfigSpace::new(0x8086, 0x1234, 2, 0x06_00_00, 0)
    }

    #[test]
    fn ids_are_read_only() {
        let mut c = space();
        c.write(VENDOR_ID, 4, 0);
        assert_eq!(c.read(VENDOR_ID, 4), 0x1234_8086);
        assert_eq!(c.read(CLASS_CODE, 1), 0);
        assert_eq!(c.read(0x0a, 2), 0x0600);
    }

    #[test]
    fn write_mask_limits_writes() {
        let mut c = space();
        c.write(COMMAND, 2, 0xffff);
        assert_eq!(c.read(COMMAND, 2), COMMAND_WMASK as u32);
    }

    #[test]
    fn write_one_clears() {
        let mut c = space();
        c.set(0x40, 1, 0xff);
        c.set_w1cmask(0x40, 1, 0x0f);
        c.write(0x40, 1, 0x05);
        assert_eq!(c.byte(0x40), 0xfa);
    }

    #[test]
    fn access_past_the_end_reads_ones_and_drops_writes() {
        let mut c = space();
        assert_eq!(c.read(0xfe, 4), 0xffff_0000);
        c.write(0xfe, 4, 0xffff_ffff);
        assert_eq!(c.read(0xff, 1), 0);
    }
}
