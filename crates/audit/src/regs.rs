//! Host-side access to the machine's registers: PCI configuration space through the host
//! bridge's 0xCF8/0xCFC ports (the guest's CONFIG_ADDRESS is saved and restored), port I/O,
//! and the CPU's SMM MSRs straight from its state. No guest code runs.

use cpu::{Access, AccessKind};
use machine::Machine;

fn io_access(port: u16, size: u8, kind: AccessKind) -> Access {
    Access { addr: port as u64, size, kind, smm: false }
}

/// A port read from outside SMM.
pub fn io_in(m: &mut Machine, port: u16, size: u8) -> u32 {
    m.board.bus().io_in(io_access(port, size, AccessKind::IoIn))
}

/// A port write from outside SMM.
pub fn io_out(m: &mut Machine, port: u16, size: u8, value: u32) {
    m.board.bus().io_out(io_access(port, size, AccessKind::IoOut), value)
}

fn with_address<T>(m: &mut Machine, dev: u8, func: u8, reg: u8, f: impl FnOnce(&mut Machine, u16) -> T) -> T {
    let saved = io_in(m, 0xcf8, 4);
    io_out(m, 0xcf8, 4, 0x8000_0000 | (dev as u32) << 11 | (func as u32) << 8 | (reg as u32 & 0xfc));
    let r = f(m, 0xcfc + (reg as u16 & 3));
    io_out(m, 0xcf8, 4, saved);
    r
}

/// A configuration read on bus 0.
pub fn pci_read(m: &mut Machine, dev: u8, func: u8, reg: u8, size: u8) -> u32 {
    with_address(m, dev, func, reg, |m, port| io_in(m, port, size))
}

/// A configuration write on bus 0.
pub fn pci_write(m: &mut Machine, dev: u8, func: u8, reg: u8, size: u8, value: u32) {
    with_address(m, dev, func, reg, |m, port| io_out(m, port, size, value))
}

/// Reads physical memory as a non-SMM (`smm` false) or SMM agent would, 8 bytes at a time.
pub fn read_phys(m: &mut Machine, addr: u64, len: usize, smm: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut a = addr;
    while out.len() < len {
        let v = m.board.bus().read(Access { addr: a, size: 8, kind: AccessKind::Read, smm });
        let take = (len - out.len()).min(8);
        out.extend_from_slice(&v.to_le_bytes()[..take]);
        a += 8;
    }
    out
}

/// Writes physical memory as a non-SMM agent (RAM outside SMRAM only takes it).
pub fn write_phys(m: &mut Machine, addr: u64, data: &[u8]) {
    for (i, b) in data.iter().enumerate() {
        m.board.bus().write(Access { addr: addr + i as u64, size: 1, kind: AccessKind::Write, smm: false }, *b as u64);
    }
}
