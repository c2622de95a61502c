//! A minimal xAPIC local APIC at 0xFEE00000, enough for SMI inter-processor interrupts
//! (Intel SDM vol. 3A §11.6.1 "Interrupt Command Register (ICR)", table 11-1 "Local APIC
//! Register Address Map"). Registers are 32 bits at 16-byte strides; the ICR low dword at
//! 0x300 sends the IPI when written, the ICR high dword at 0x310 holds the destination.
//! Only delivery mode SMI (010b) addressed to this CPU does anything; the platform issue
//! completes the APIC.

/// Default physical base of the xAPIC page.
pub const LAPIC_BASE: u64 = 0xfee0_0000;
/// Local APIC ID register.
pub const LAPIC_ID: u16 = 0x20;
/// Local APIC version register.
pub const LAPIC_VERSION: u16 = 0x30;
/// ICR bits 31:0.
pub const LAPIC_ICR_LOW: u16 = 0x300;
/// ICR bits 63:32.
pub const LAPIC_ICR_HIGH: u16 = 0x310;
/// ICR delivery mode, bits 10:8.
pub const ICR_DELIVERY_MODE_SHIFT: u32 = 8;
/// Delivery mode 010b: SMI.
pub const ICR_DELIVERY_MODE_SMI: u32 = 0b010;
/// ICR destination mode, bit 11 (1 = logical).
pub const ICR_DEST_LOGICAL: u32 = 1 << 11;
/// ICR destination shorthand, bits 19:18.
pub const ICR_SHORTHAND_SHIFT: u32 = 18;
/// Version register value: version 0x14 (integrated APIC), max LVT entry 5.
pub const LAPIC_VERSION_VALUE: u32 = 0x0005_0014;

/// What a register write asks the platform to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LapicAction {
    /// An SMI IPI addressed to this CPU.
    SmiSelf,
}

/// The APIC register file.
#[derive(Clone, Debug)]
pub struct Lapic {
    id: u8,
    regs: [u32; 64],
}

impl Default for Lapic {
    fn default() -> Self {
        Lapic { id: 0, regs: [0; 64] }
    }
}

impl Lapic {
    /// Reads `size` bytes at `offset` in the 4 KiB page. Only aligned dword accesses reach a
    /// register; other accesses read 0.
    pub fn read(&self, offset: u16, size: u8) -> u32 {
        if !offset.is_multiple_of(16) || size != 4 {
            return 0;
        }
        match offset {
            LAPIC_ID => (self.id as u32) << 24,
            LAPIC_VERSION => LAPIC_VERSION_VALUE,
            _ => self.regs.get(offset as usize / 16).copied().unwrap_or(0),
        }
    }

    /// Writes a register; unaligned or narrow writes are dropped.
    pub fn write(&mut self, offset: u16, size: u8, value: u32) -> Option<LapicAction> {
        if !offset.is_multiple_of(16) || size != 4 || matches!(offset, LAPIC_ID | LAPIC_VERSION) {
            return None;
        }
        let slot = self.regs.get_mut(offset as usize / 16)?;
        *slot = value;
        if offset != LAPIC_ICR_LOW {
            return None;
        }
        let mode = (value >> ICR_DELIVERY_MODE_SHIFT) & 7;
        if mode != ICR_DELIVERY_MODE_SMI {
            return None;
        }
        let dest = (self.regs[LAPIC_ICR_HIGH as usize / 16] >> 24) as u8;
        let to_self = match (value >> ICR_SHORTHAND_SHIFT) & 3 {
            0 => value & ICR_DEST_LOGICAL == 0 && (dest == self.id || dest == 0xff),
            1 | 2 => true,
            _ => false,
        };
        to_self.then_some(LapicAction::SmiSelf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ovmf_relocation_ipi_is_an_smi_to_self() {
        let mut l = Lapic::default();
        assert_eq!(l.write(LAPIC_ICR_HIGH, 4, 0), None);
        assert_eq!(l.write(LAPIC_ICR_LOW, 4, 0x0000_4200), Some(LapicAction::SmiSelf));
        assert_eq!(l.read(LAPIC_ICR_LOW, 4), 0x4200);
    }

    #[test]
    fn other_delivery_modes_and_other_cpus_do_nothing() {
        let mut l = Lapic::default();
        assert_eq!(l.write(LAPIC_ICR_LOW, 4, 0x0000_4030), None); // fixed
        l.write(LAPIC_ICR_HIGH, 4, 0x0100_0000);
        assert_eq!(l.write(LAPIC_ICR_LOW, 4, 0x0000_4200), None); // APIC ID 1
        assert_eq!(l.write(LAPIC_ICR_LOW, 4, 0x000c_4200), None); // all excluding self
        assert_eq!(l.write(LAPIC_ICR_LOW, 4, 0x0004_4200), Some(LapicAction::SmiSelf)); // self
    }

    #[test]
    fn narrow_or_unaligned_accesses_are_ignored() {
        let mut l = Lapic::default();
        assert_eq!(l.write(LAPIC_ICR_LOW, 2, 0x4200), None);
        assert_eq!(l.write(LAPIC_ICR_LOW + 4, 4, 0x4200), None);
        assert_eq!(l.read(LAPIC_VERSION + 1, 1), 0);
        assert_eq!(l.read(LAPIC_VERSION, 4), LAPIC_VERSION_VALUE);
        assert_eq!(l.write(0xff0, 4, 1), None);
    }
}
