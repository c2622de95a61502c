//! The I/O APIC at 0xFEC00000 (Intel 82093AA datasheet, doc. 290566, §3 "Register
//! descriptions"): IOREGSEL at offset 0x00 selects a register, IOWIN at 0x10 reads or writes
//! it. Registers: 0x00 ID, 0x01 version (24 redirection entries), 0x02 arbitration, 0x10-0x3F
//! the redirection table (two dwords per entry, masked at reset). smmlab's firmware targets
//! run on the 8259s, so the table is storage only: no interrupt is routed through it.

/// Register offsets in the MMIO page.
pub const IOAPIC_IOREGSEL: u16 = 0x00;
/// IOWIN: the data window for the selected register.
pub const IOAPIC_IOWIN: u16 = 0x10;
/// Indirect registers.
pub const IOAPIC_ID: u8 = 0x00;
/// Version register.
pub const IOAPIC_VER: u8 = 0x01;
/// Arbitration ID register.
pub const IOAPIC_ARB: u8 = 0x02;
/// The first redirection-table register (two per entry).
pub const IOAPIC_REDTBL: u8 = 0x10;
/// Redirection entries.
pub const IOAPIC_PINS: usize = 24;
/// Version register: max redirection entry 23 (bits 23:16), version 0x20 (as QEMU reports).
pub const IOAPIC_VER_VALUE: u32 = ((IOAPIC_PINS as u32 - 1) << 16) | 0x20;
/// Redirection entry bit 16: masked.
pub const REDTBL_MASKED: u32 = 1 << 16;
/// Default physical base.
pub const IOAPIC_BASE: u64 = 0xfec0_0000;

/// The I/O APIC register file.
#[derive(Clone, Debug)]
pub struct Ioapic {
    regsel: u8,
    id: u32,
    redtbl: [u32; 2 * IOAPIC_PINS],
}

impl Default for Ioapic {
    fn default() -> Self {
        let mut redtbl = [0u32; 2 * IOAPIC_PINS];
        for e in redtbl.iter_mut().step_by(2) {
            *e = REDTBL_MASKED;
        }
        Ioapic { regsel: 0, id: 0, redtbl }
    }
}

impl Ioapic {
    /// A dword read at `offset` in the page; other sizes and offsets read all ones.
    pub fn read(&self, offset: u16, size: u8) -> u32 {
        if size != 4 {
            return u32::MAX;
        }
        match offset {
            IOAPIC_IOREGSEL => self.regsel as u32,
            IOAPIC_IOWIN => match self.regsel {
                IOAPIC_ID => self.id,
                IOAPIC_VER => IOAPIC_VER_VALUE,
                IOAPIC_ARB => self.id,
                r if (IOAPIC_REDTBL as usize..IOAPIC_REDTBL as usize + 2 * IOAPIC_PINS).contains(&(r as usize)) => {
                    self.redtbl[r as usize - IOAPIC_REDTBL as usize]
                }
                _ => u32::MAX,
            },
            _ => u32::MAX,
        }
    }

    /// A dword write; other sizes and offsets are dropped.
    pub fn write(&mut self, offset: u16, size: u8, value: u32) {
        if size != 4 {
            return;
        }
        match offset {
            IOAPIC_IOREGSEL => self.regsel = value as u8,
            IOAPIC_IOWIN => match self.regsel {
                IOAPIC_ID => self.id = value & 0x0f00_0000,
                r if (IOAPIC_REDTBL as usize..IOAPIC_REDTBL as usize + 2 * IOAPIC_PINS).contains(&(r as usize)) => {
                    // Delivery status (12) and remote IRR (14) are read-only.
                    let i = r as usize - IOAPIC_REDTBL as usize;
                    self.redtbl[i] = if i.is_multiple_of(2) { value & !(1 << 12 | 1 << 14) } else { value };
                }
                _ => {}
            },
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rd(a: &mut Ioapic, reg: u8) -> u32 {
        a.write(IOAPIC_IOREGSEL, 4, reg as u32);
        a.read(IOAPIC_IOWIN, 4)
    }

    #[test]
    fn id_version_and_masked_redirection_entries() {
        let mut a = Ioapic::default();
        assert_eq!(rd(&mut a, IOAPIC_VER), 0x0017_0020);
        assert_eq!(rd(&mut a, IOAPIC_ID), 0);
        a.write(IOAPIC_IOWIN, 4, 0x0100_0000);
        assert_eq!(rd(&mut a, IOAPIC_ID), 0x0100_0000);
        assert_eq!(rd(&mut a, IOAPIC_REDTBL), REDTBL_MASKED);
        a.write(IOAPIC_IOREGSEL, 4, IOAPIC_REDTBL as u32 + 1);
        a.write(IOAPIC_IOWIN, 4, 0xff00_0000);
        assert_eq!(rd(&mut a, IOAPIC_REDTBL + 1), 0xff00_0000);
        assert_eq!(a.read(IOAPIC_IOREGSEL, 4), IOAPIC_REDTBL as u32 + 1);
    }

    #[test]
    fn invalid_accesses_read_ones() {
        let mut a = Ioapic::default();
        assert_eq!(a.read(IOAPIC_IOWIN, 1), u32::MAX);
        assert_eq!(a.read(0x20, 4), u32::MAX);
        assert_eq!(rd(&mut a, 0x70), u32::MAX);
        a.write(IOAPIC_IOWIN, 2, 5);
    }
}
