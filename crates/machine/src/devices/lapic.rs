//! The xAPIC local APIC at 0xFEE00000 for a single CPU (Intel SDM vol. 3A chapter 11, table
//! 11-1 "Local APIC Register Address Map"). Registers are 32 bits at 16-byte strides.
//!
//! Modelled: ID, version, TPR/PPR, EOI, LDR/DFR, SVR, ISR/TMR/IRR, ESR, the ICR (§11.6.1:
//! delivery mode SMI to this CPU raises an SMI; fixed-mode IPIs to this CPU set IRR; INIT
//! and SIPI are accepted and ignored, since there is no other CPU to start), the LVT entries
//! (§11.5.1) and the timer (§11.5.4: one-shot and periodic, TMICT/TMCCT/TDCR) on the
//! virtual clock with a 1 GHz base (as QEMU's APIC timer). Fixed interrupts from the timer
//! and from IPIs are delivered through INTR ahead of the 8259 (the board asks
//! [`Lapic::pending_vector`] first). LINT0/LINT1 only gate the 8259 (ExtINT) path.

use crate::clock::Ticks;

/// Default physical base of the xAPIC page.
pub const LAPIC_BASE: u64 = 0xfee0_0000;
/// Local APIC ID register.
pub const LAPIC_ID: u16 = 0x20;
/// Version register.
pub const LAPIC_VERSION: u16 = 0x30;
/// Task priority register.
pub const LAPIC_TPR: u16 = 0x80;
/// Processor priority register.
pub const LAPIC_PPR: u16 = 0xa0;
/// End-of-interrupt register.
pub const LAPIC_EOI: u16 = 0xb0;
/// Logical destination register.
pub const LAPIC_LDR: u16 = 0xd0;
/// Destination format register.
pub const LAPIC_DFR: u16 = 0xe0;
/// Spurious-interrupt vector register.
pub const LAPIC_SVR: u16 = 0xf0;
/// In-service register (eight 32-bit words).
pub const LAPIC_ISR: u16 = 0x100;
/// Trigger mode register.
pub const LAPIC_TMR: u16 = 0x180;
/// Interrupt request register.
pub const LAPIC_IRR: u16 = 0x200;
/// Error status register.
pub const LAPIC_ESR: u16 = 0x280;
/// Interrupt command register, low half (writing it sends the IPI).
pub const LAPIC_ICR_LOW: u16 = 0x300;
/// Interrupt command register, high half (the destination).
pub const LAPIC_ICR_HIGH: u16 = 0x310;
/// LVT timer.
pub const LAPIC_LVT_TIMER: u16 = 0x320;
/// LVT thermal sensor.
pub const LAPIC_LVT_THERMAL: u16 = 0x330;
/// LVT performance counter.
pub const LAPIC_LVT_PERF: u16 = 0x340;
/// LVT LINT0.
pub const LAPIC_LVT_LINT0: u16 = 0x350;
/// LVT LINT1.
pub const LAPIC_LVT_LINT1: u16 = 0x360;
/// LVT error.
pub const LAPIC_LVT_ERROR: u16 = 0x370;
/// Timer initial count.
pub const LAPIC_TIMER_INITIAL: u16 = 0x380;
/// Timer current count.
pub const LAPIC_TIMER_CURRENT: u16 = 0x390;
/// Timer divide configuration.
pub const LAPIC_TIMER_DIVIDE: u16 = 0x3e0;
/// ICR delivery mode, bits 10:8.
pub const ICR_DELIVERY_MODE_SHIFT: u32 = 8;
/// Fixed: the vector in bits 7:0.
pub const ICR_DELIVERY_MODE_FIXED: u32 = 0b000;
/// SMI.
pub const ICR_DELIVERY_MODE_SMI: u32 = 0b010;
/// INIT.
pub const ICR_DELIVERY_MODE_INIT: u32 = 0b101;
/// Start-up (SIPI).
pub const ICR_DELIVERY_MODE_STARTUP: u32 = 0b110;
/// ICR destination mode, bit 11 (1 = logical).
pub const ICR_DEST_LOGICAL: u32 = 1 << 11;
/// ICR destination shorthand, bits 19:18.
pub const ICR_SHORTHAND_SHIFT: u32 = 18;
/// Version register value: version 0x14 (integrated APIC), max LVT entry 5.
pub const LAPIC_VERSION_VALUE: u32 = 0x0005_0014;
/// SVR bit 8: APIC software enable; reset value 0xFF.
pub const SVR_APIC_ENABLE: u32 = 1 << 8;
/// SVR reset value.
pub const SVR_RESET: u32 = 0xff;
/// LVT bit 16: masked; bits 10:8 delivery mode (111 = ExtINT); timer mode bit 17 (periodic).
pub const LVT_MASKED: u32 = 1 << 16;
/// LVT delivery mode ExtINT.
pub const LVT_DELIVERY_EXTINT: u32 = 0b111 << 8;
/// LVT timer periodic mode.
pub const LVT_TIMER_PERIODIC: u32 = 1 << 17;
/// DFR reset value (flat model).
pub const DFR_RESET: u32 = 0xffff_ffff;
/// The timer's base clock.
pub const TIMER_HZ: u64 = 1_000_000_000;

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
    irr: [u32; 8],
    isr: [u32; 8],
    ips: u64,
    /// Tick at which the running timer count was loaded.
    timer_start: Option<Ticks>,
}

impl Default for Lapic {
    fn default() -> Self {
        Lapic::new(TIMER_HZ)
    }
}

fn slot(offset: u16) -> usize {
    offset as usize / 16
}

impl Lapic {
    /// A local APIC whose timer runs on a clock of `ips` ticks per second.
    pub fn new(ips: u64) -> Self {
        let mut regs = [0u32; 64];
        regs[slot(LAPIC_SVR)] = SVR_RESET;
        regs[slot(LAPIC_DFR)] = DFR_RESET;
        for r in [LAPIC_LVT_TIMER, LAPIC_LVT_THERMAL, LAPIC_LVT_PERF, LAPIC_LVT_LINT0, LAPIC_LVT_LINT1, LAPIC_LVT_ERROR] {
            regs[slot(r)] = LVT_MASKED;
        }
        Lapic { id: 0, regs, irr: [0; 8], isr: [0; 8], ips: ips.max(1), timer_start: None }
    }

    /// The bootstrap processor's APIC as the platform hands it to firmware: LINT0 unmasked in
    /// ExtINT mode ("virtual wire mode", Intel MultiProcessor Specification 1.4 §3.6.2.2), so
    /// the 8259 keeps reaching the CPU once firmware sets SVR.APIC_ENABLE without touching the
    /// LVTs. QEMU resets CPU 0's LINT0 to 0x700 for this reason, and Bochs feeds the 8259's
    /// INTR to the CPU directly; the Bochs BIOS (rombios32 `smp_probe`) enables the APIC and
    /// relies on it. Every LVT is masked on the other CPUs (SDM vol. 3A §11.4.7.1).
    pub fn new_bsp(ips: u64) -> Self {
        let mut l = Lapic::new(ips);
        l.regs[slot(LAPIC_LVT_LINT0)] = LVT_DELIVERY_EXTINT;
        l
    }

    fn reg(&self, r: u16) -> u32 {
        self.regs[slot(r)]
    }

    fn divide(&self) -> u64 {
        // TDCR bits 3,1:0: 000 → 2, 001 → 4, 010 → 8, 011 → 16, 100 → 32, 101 → 64, 110 → 128, 111 → 1.
        let d = self.reg(LAPIC_TIMER_DIVIDE);
        let code = (d & 3) | ((d >> 1) & 4);
        if code == 7 {
            1
        } else {
            2 << code
        }
    }

    fn timer_elapsed(&self, now: Ticks) -> Option<u64> {
        let start = self.timer_start?;
        let ns = (now.0.saturating_sub(start.0) as u128 * TIMER_HZ as u128 / self.ips as u128) as u64;
        Some(ns / self.divide())
    }

    fn timer_current(&self, now: Ticks) -> u32 {
        let init = self.reg(LAPIC_TIMER_INITIAL) as u64;
        match self.timer_elapsed(now) {
            None => 0,
            Some(e) if self.reg(LAPIC_LVT_TIMER) & LVT_TIMER_PERIODIC != 0 && init > 0 => (init - e % init) as u32,
            Some(e) => init.saturating_sub(e) as u32,
        }
    }

    /// When the timer next expires.
    pub fn next_deadline(&self) -> Option<Ticks> {
        let start = self.timer_start?;
        let init = self.reg(LAPIC_TIMER_INITIAL) as u64;
        let counts = init * self.divide();
        let ticks = (counts as u128 * self.ips as u128).div_ceil(TIMER_HZ as u128) as u64;
        Some(Ticks(start.0.saturating_add(ticks.max(1))))
    }

    /// Expires the timer if due at `now`: sets the timer vector in IRR unless masked.
    pub fn advance(&mut self, now: Ticks) {
        let Some(d) = self.next_deadline() else { return };
        if d > now {
            return;
        }
        let lvt = self.reg(LAPIC_LVT_TIMER);
        if lvt & LVT_MASKED == 0 {
            self.set_irr(lvt as u8);
        }
        self.timer_start = if lvt & LVT_TIMER_PERIODIC != 0 {
            // Keep the period's phase: restart at the expiry time (missed periods fold).
            let period = d.0 - self.timer_start.map_or(0, |s| s.0);
            let k = (now.0 - d.0) / period.max(1);
            Some(Ticks(d.0 + k * period))
        } else {
            None
        };
    }

    fn set_irr(&mut self, v: u8) {
        if v >= 16 {
            self.irr[v as usize / 32] |= 1 << (v % 32);
        }
    }

    fn highest(bits: &[u32; 8]) -> Option<u8> {
        (0..8).rev().find(|&i| bits[i] != 0).map(|i| (i * 32 + 31 - bits[i].leading_zeros() as usize) as u8)
    }

    /// The vector the APIC would deliver now (highest IRR above ISR and TPR priority).
    pub fn pending_vector(&self) -> Option<u8> {
        if self.reg(LAPIC_SVR) & SVR_APIC_ENABLE == 0 {
            return None;
        }
        let v = Self::highest(&self.irr)?;
        let ppr = self.ppr();
        (v >> 4 > (ppr >> 4) as u8).then_some(v)
    }

    fn ppr(&self) -> u32 {
        let tpr = self.reg(LAPIC_TPR) & 0xff;
        let isrv = Self::highest(&self.isr).map_or(0, |v| v as u32 & 0xf0);
        if tpr & 0xf0 >= isrv {
            tpr
        } else {
            isrv
        }
    }

    /// INTA: moves the pending vector from IRR to ISR and returns it.
    pub fn ack(&mut self) -> Option<u8> {
        let v = self.pending_vector()?;
        self.irr[v as usize / 32] &= !(1 << (v % 32));
        self.isr[v as usize / 32] |= 1 << (v % 32);
        Some(v)
    }

    /// Whether 8259 interrupts (ExtINT through LINT0) reach the CPU: with the APIC software
    /// disabled, or LINT0 unmasked in ExtINT mode.
    pub fn accepts_extint(&self) -> bool {
        let lint0 = self.reg(LAPIC_LVT_LINT0);
        self.reg(LAPIC_SVR) & SVR_APIC_ENABLE == 0 || (lint0 & LVT_MASKED == 0 && lint0 & (7 << 8) == LVT_DELIVERY_EXTINT)
    }

    /// Reads `size` bytes at `offset` in the 4 KiB page at guest time `now`. Only aligned
    /// dword accesses reach a register; other accesses read 0.
    pub fn read(&self, offset: u16, size: u8, now: Ticks) -> u32 {
        if !offset.is_multiple_of(16) || size != 4 {
            return 0;
        }
        match offset {
            LAPIC_ID => (self.id as u32) << 24,
            LAPIC_VERSION => LAPIC_VERSION_VALUE,
            LAPIC_PPR => self.ppr(),
            LAPIC_EOI => 0,
            o if (LAPIC_ISR..LAPIC_ISR + 0x80).contains(&o) => self.isr[(o - LAPIC_ISR) as usize / 16],
            o if (LAPIC_IRR..LAPIC_IRR + 0x80).contains(&o) => self.irr[(o - LAPIC_IRR) as usize / 16],
            // The ICR's delivery-status bit (12) always reads idle.
            LAPIC_ICR_LOW => self.reg(LAPIC_ICR_LOW) & !(1 << 12),
            LAPIC_TIMER_CURRENT => self.timer_current(now),
            _ => self.regs.get(slot(offset)).copied().unwrap_or(0),
        }
    }

    /// Writes a register at guest time `now`; unaligned or narrow writes are dropped.
    pub fn write(&mut self, offset: u16, size: u8, value: u32, now: Ticks) -> Option<LapicAction> {
        if !offset.is_multiple_of(16) || size != 4 {
            return None;
        }
        match offset {
            LAPIC_ID | LAPIC_VERSION | LAPIC_PPR | LAPIC_TIMER_CURRENT => return None,
            o if (LAPIC_ISR..LAPIC_ESR).contains(&o) => return None,
            LAPIC_EOI => {
                if let Some(v) = Self::highest(&self.isr) {
                    self.isr[v as usize / 32] &= !(1 << (v % 32));
                }
                return None;
            }
            LAPIC_TIMER_INITIAL => {
                self.regs[slot(offset)] = value;
                self.timer_start = (value != 0).then_some(now);
                return None;
            }
            LAPIC_SVR => {
                self.regs[slot(offset)] = value & 0x3ff;
                return None;
            }
            _ => {}
        }
        let s = self.regs.get_mut(slot(offset))?;
        *s = value;
        if offset != LAPIC_ICR_LOW {
            return None;
        }
        let mode = (value >> ICR_DELIVERY_MODE_SHIFT) & 7;
        let dest = (self.reg(LAPIC_ICR_HIGH) >> 24) as u8;
        let to_self = match (value >> ICR_SHORTHAND_SHIFT) & 3 {
            0 => value & ICR_DEST_LOGICAL == 0 && (dest == self.id || dest == 0xff),
            1 | 2 => true,
            _ => false,
        };
        match mode {
            m if crate::smi::lapic_ipi::is_smi_to_self(m, to_self) => Some(LapicAction::SmiSelf),
            ICR_DELIVERY_MODE_FIXED if to_self => {
                self.set_irr(value as u8);
                None
            }
            // INIT and STARTUP: there is no other CPU; accepted and ignored.
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Ticks = Ticks(0);

    #[test]
    fn ovmf_relocation_ipi_is_an_smi_to_self() {
        let mut l = Lapic::default();
        assert_eq!(l.write(LAPIC_ICR_HIGH, 4, 0, T), None);
        assert_eq!(l.write(LAPIC_ICR_LOW, 4, 0x0000_4200, T), Some(LapicAction::SmiSelf));
        assert_eq!(l.read(LAPIC_ICR_LOW, 4, T), 0x4200);
    }

    #[test]
    fn other_delivery_modes_and_other_cpus_do_nothing() {
        let mut l = Lapic::default();
        assert_eq!(l.write(LAPIC_ICR_LOW, 4, 0x0000_4030, T), None); // fixed
        l.write(LAPIC_ICR_HIGH, 4, 0x0100_0000, T);
        assert_eq!(l.write(LAPIC_ICR_LOW, 4, 0x0000_4200, T), None); // APIC ID 1
        assert_eq!(l.write(LAPIC_ICR_LOW, 4, 0x000c_4200, T), None); // all excluding self
        assert_eq!(l.write(LAPIC_ICR_LOW, 4, 0x0004_4200, T), Some(LapicAction::SmiSelf)); // self
    }

    #[test]
    fn seabios_init_sipi_broadcast_is_accepted_and_ignored() {
        let mut l = Lapic::default();
        assert_eq!(l.write(LAPIC_ICR_LOW, 4, 0x000c_4500, T), None);
        assert_eq!(l.write(LAPIC_ICR_LOW, 4, 0x000c_4609, T), None);
        assert_eq!(l.pending_vector(), None);
    }

    #[test]
    fn reset_values_svr_and_lvts() {
        let mut l = Lapic::default();
        assert_eq!(l.read(LAPIC_SVR, 4, T), SVR_RESET);
        assert_eq!(l.read(LAPIC_DFR, 4, T), DFR_RESET);
        assert_eq!(l.read(LAPIC_LVT_LINT0, 4, T), LVT_MASKED);
        assert!(l.accepts_extint(), "APIC disabled passes the 8259 through");
        l.write(LAPIC_SVR, 4, 0x1ff, T);
        assert!(!l.accepts_extint());
        l.write(LAPIC_LVT_LINT0, 4, 0x700, T);
        l.write(LAPIC_LVT_LINT1, 4, 0x400, T);
        assert!(l.accepts_extint());
        assert_eq!(l.read(LAPIC_LVT_LINT1, 4, T), 0x400);
    }

    #[test]
    fn bsp_starts_in_virtual_wire_mode() {
        let mut l = Lapic::new_bsp(TIMER_HZ);
        assert_eq!(l.read(LAPIC_LVT_LINT0, 4, T), LVT_DELIVERY_EXTINT);
        l.write(LAPIC_SVR, 4, 0x1ff, T);
        assert!(l.accepts_extint(), "enabling the APIC keeps the 8259 path open");
    }

    #[test]
    fn timer_one_shot_and_periodic_with_eoi_and_tpr() {
        let mut l = Lapic::new(TIMER_HZ);
        l.write(LAPIC_SVR, 4, 0x1ff, T);
        l.write(LAPIC_TIMER_DIVIDE, 4, 0xb, T); // divide by 1
        l.write(LAPIC_LVT_TIMER, 4, 0x40, T);
        l.write(LAPIC_TIMER_INITIAL, 4, 1000, Ticks(100));
        assert_eq!(l.read(LAPIC_TIMER_CURRENT, 4, Ticks(600)), 500);
        assert_eq!(l.next_deadline(), Some(Ticks(1100)));
        l.advance(Ticks(1100));
        assert_eq!(l.read(LAPIC_TIMER_CURRENT, 4, Ticks(1200)), 0);
        assert_eq!(l.next_deadline(), None);
        l.write(LAPIC_TPR, 4, 0x40, T);
        assert_eq!(l.pending_vector(), None, "TPR blocks class 4");
        l.write(LAPIC_TPR, 4, 0, T);
        assert_eq!(l.ack(), Some(0x40));
        assert_eq!(l.read(LAPIC_ISR + 0x20, 4, T), 1);
        l.write(LAPIC_EOI, 4, 0, T);
        assert_eq!(l.read(LAPIC_ISR + 0x20, 4, T), 0);
        l.write(LAPIC_LVT_TIMER, 4, 0x40 | LVT_TIMER_PERIODIC, T);
        l.write(LAPIC_TIMER_INITIAL, 4, 100, Ticks(0));
        l.advance(Ticks(250));
        assert_eq!(l.next_deadline(), Some(Ticks(300)));
    }

    #[test]
    fn narrow_or_unaligned_accesses_are_ignored() {
        let mut l = Lapic::default();
        assert_eq!(l.write(LAPIC_ICR_LOW, 2, 0x4200, T), None);
        assert_eq!(l.write(LAPIC_ICR_LOW + 4, 4, 0x4200, T), None);
        assert_eq!(l.read(LAPIC_VERSION + 1, 1, T), 0);
        assert_eq!(l.read(LAPIC_VERSION, 4, T), LAPIC_VERSION_VALUE);
        assert_eq!(l.write(0xff0, 4, 1, T), None);
        assert_eq!(l.write(LAPIC_IRR, 4, 0xffff_ffff, T), None);
        assert_eq!(l.read(LAPIC_IRR, 4, T), 0);
    }
}
