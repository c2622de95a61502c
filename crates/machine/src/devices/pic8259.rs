//! The two cascaded 8259A programmable interrupt controllers of a PC (in the PIIX3 and the
//! ICH9), with the edge/level control registers (ELCR) at 0x4D0/0x4D1.
//!
//! Register behaviour from the Intel 8259A datasheet (doc. 231468): ICW1-ICW4 (figure 7,
//! "Initialization sequence"), OCW1 (mask), OCW2 (EOI and rotation), OCW3 (read IRR/ISR,
//! poll, special mask); ELCR from the ICH9 datasheet (doc. 316972) §13.4.2.6 / PIIX3
//! datasheet §2.4.6. Each [`Pic8259`] is one chip at two port offsets (0 = command, 1 =
//! data); [`Pics`] is the master/slave pair with the cascade on master IR2.

use super::{ones, PortDevice};
use crate::clock::Ticks;

/// ICW1: bit 4 marks an ICW1 on the command port.
pub const ICW1_SELECT: u8 = 0x10;
/// ICW1: ICW4 needed.
pub const ICW1_IC4: u8 = 0x01;
/// ICW1: single (no ICW3).
pub const ICW1_SNGL: u8 = 0x02;
/// ICW1: level-triggered mode (all inputs).
pub const ICW1_LTIM: u8 = 0x08;
/// ICW4: automatic EOI.
pub const ICW4_AEOI: u8 = 0x02;
/// OCW3 (bit 3 set, bit 4 clear on the command port).
pub const OCW3_SELECT: u8 = 0x08;
/// OCW3: read register command valid (bit 1) and which (bit 0: 1 = ISR).
pub const OCW3_RR: u8 = 0x02;
/// OCW3 RIS: with RR, read the ISR (else the IRR).
pub const OCW3_RIS: u8 = 0x01;
/// OCW3: poll command.
pub const OCW3_POLL: u8 = 0x04;
/// OCW3: special mask mode (ESMM | SMM).
pub const OCW3_ESMM: u8 = 0x40;
/// OCW3 SMM: the special mask mode value ESMM writes.
pub const OCW3_SMM: u8 = 0x20;
/// OCW2 commands (bits 7:5).
pub const OCW2_NONSPECIFIC_EOI: u8 = 0b001;
/// OCW2: specific EOI (the level in bits 2:0).
pub const OCW2_SPECIFIC_EOI: u8 = 0b011;
/// OCW2: rotate on non-specific EOI.
pub const OCW2_ROTATE_NONSPECIFIC_EOI: u8 = 0b101;
/// OCW2: rotate in automatic EOI mode, set.
pub const OCW2_ROTATE_AEOI_SET: u8 = 0b100;
/// OCW2: rotate in automatic EOI mode, clear.
pub const OCW2_ROTATE_AEOI_CLEAR: u8 = 0b000;
/// OCW2: rotate on specific EOI.
pub const OCW2_ROTATE_SPECIFIC_EOI: u8 = 0b111;
/// OCW2: set priority (the lowest level in bits 2:0).
pub const OCW2_SET_PRIORITY: u8 = 0b110;
/// The cascade input on the master.
pub const CASCADE_IRQ: u8 = 2;

/// One 8259A.
#[derive(Clone, Debug, Default)]
pub struct Pic8259 {
    irr: u8,
    isr: u8,
    imr: u8,
    /// Input levels last seen (for edge detection).
    lines: u8,
    /// Edge/level control: bit n set = IRn level-triggered (ELCR).
    elcr: u8,
    /// Mask of ELCR bits the guest can set.
    elcr_mask: u8,
    vector_base: u8,
    /// Which ICW is expected next on the data port (0 = none, 2, 3 or 4).
    init_step: u8,
    icw1: u8,
    auto_eoi: bool,
    rotate_on_aeoi: bool,
    read_isr: bool,
    poll: bool,
    special_mask: bool,
    /// The IR with the lowest priority (rotation); IR(lowest+1) has the highest.
    lowest: u8,
}

impl Pic8259 {
    /// A chip whose ELCR bits in `elcr_mask` are writable.
    pub fn new(elcr_mask: u8) -> Self {
        Pic8259 { elcr_mask, lowest: 7, ..Default::default() }
    }

    /// Drives input `irq` (0-7) to `level`.
    pub fn set_irq(&mut self, irq: u8, level: bool) {
        let bit = 1u8 << (irq & 7);
        let level_mode = self.elcr & bit != 0 || self.icw1 & ICW1_LTIM != 0;
        if level_mode {
            if level {
                self.irr |= bit;
            } else {
                self.irr &= !bit;
            }
        } else if level && self.lines & bit == 0 {
            self.irr |= bit;
        }
        if level {
            self.lines |= bit;
        } else {
            self.lines &= !bit;
        }
    }

    /// Drives the cascade input: the slave's INT is a level the master follows whatever its
    /// trigger mode.
    fn set_cascade(&mut self, ir: u8, level: bool) {
        let bit = 1u8 << (ir & 7);
        if level {
            self.irr |= bit;
            self.lines |= bit;
        } else {
            self.irr &= !bit;
            self.lines &= !bit;
        }
    }

    /// The highest-priority bit of `mask` in rotation order, as an IR number.
    fn highest(&self, mask: u8) -> Option<u8> {
        (1..=8).map(|k| (self.lowest + k) & 7).find(|&ir| mask & (1 << ir) != 0)
    }

    /// The IR the chip would present now, if any (INT asserted).
    pub fn pending_irq(&self) -> Option<u8> {
        // Fast path: polled at every instruction-block boundary, and usually nothing is asked.
        if self.irr & !self.imr == 0 {
            return None;
        }
        let ir = self.highest(self.irr & !self.imr)?;
        // The in-service IRs block equal and lower priorities, unless in special mask mode
        // (then only the masked-in-service ones count, which IMR already removed).
        let isr = if self.special_mask { self.isr & !self.imr } else { self.isr };
        match self.highest(isr) {
            Some(s) if self.priority(s) <= self.priority(ir) => None,
            _ => Some(ir),
        }
    }

    /// 0 = highest priority.
    fn priority(&self, ir: u8) -> u8 {
        ir.wrapping_sub(self.lowest).wrapping_sub(1) & 7
    }

    /// The INTA cycle for IR `ir`: returns the vector.
    pub fn ack(&mut self, ir: u8) -> u8 {
        let bit = 1u8 << ir;
        let level_mode = self.elcr & bit != 0 || self.icw1 & ICW1_LTIM != 0;
        if !level_mode {
            self.irr &= !bit;
        }
        if self.auto_eoi {
            if self.rotate_on_aeoi {
                self.lowest = ir;
            }
        } else {
            self.isr |= bit;
        }
        self.vector_base.wrapping_add(ir)
    }

    /// The vector of a spurious interrupt (IR7).
    pub fn spurious(&self) -> u8 {
        self.vector_base.wrapping_add(7)
    }

    /// The interrupt mask register.
    pub fn imr(&self) -> u8 {
        self.imr
    }

    /// Whether IR `irq` is masked.
    pub fn masked(&self, irq: u8) -> bool {
        self.imr & (1 << (irq & 7)) != 0
    }

    /// The ELCR.
    pub fn elcr(&self) -> u8 {
        self.elcr
    }

    /// Writes the ELCR (only the bits the chipset allows).
    pub fn set_elcr(&mut self, v: u8) {
        self.elcr = v & self.elcr_mask;
    }

    fn command(&mut self, v: u8) {
        if v & ICW1_SELECT != 0 {
            self.icw1 = v;
            self.imr = 0;
            self.isr = 0;
            self.irr = 0;
            self.lines = 0;
            self.lowest = 7;
            self.auto_eoi = false;
            self.rotate_on_aeoi = false;
            self.read_isr = false;
            self.special_mask = false;
            self.poll = false;
            self.init_step = 2;
        } else if v & OCW3_SELECT != 0 {
            if v & OCW3_RR != 0 {
                self.read_isr = v & OCW3_RIS != 0;
            }
            self.poll = v & OCW3_POLL != 0;
            if v & OCW3_ESMM != 0 {
                self.special_mask = v & OCW3_SMM != 0;
            }
        } else {
            let ir = v & 7;
            match v >> 5 {
                OCW2_NONSPECIFIC_EOI | OCW2_ROTATE_NONSPECIFIC_EOI => {
                    if let Some(s) = self.highest(self.isr) {
                        self.isr &= !(1 << s);
                        if v >> 5 == OCW2_ROTATE_NONSPECIFIC_EOI {
                            self.lowest = s;
                        }
                    }
                }
                OCW2_SPECIFIC_EOI => self.isr &= !(1 << ir),
                OCW2_ROTATE_SPECIFIC_EOI => {
                    self.isr &= !(1 << ir);
                    self.lowest = ir;
                }
                OCW2_SET_PRIORITY => self.lowest = ir,
                OCW2_ROTATE_AEOI_SET => self.rotate_on_aeoi = true,
                OCW2_ROTATE_AEOI_CLEAR => self.rotate_on_aeoi = false,
                _ => {} // 010b: no operation
            }
        }
    }

    fn data(&mut self, v: u8) {
        match self.init_step {
            2 => {
                self.vector_base = v & 0xf8;
                self.init_step = if self.icw1 & ICW1_SNGL == 0 {
                    3
                } else if self.icw1 & ICW1_IC4 != 0 {
                    4
                } else {
                    0
                };
            }
            3 => self.init_step = if self.icw1 & ICW1_IC4 != 0 { 4 } else { 0 },
            4 => {
                self.auto_eoi = v & ICW4_AEOI != 0;
                self.init_step = 0;
            }
            _ => self.imr = v,
        }
    }

    /// A poll command read: acknowledges the highest request (bit 7 = request present).
    fn poll_read(&mut self) -> u8 {
        self.poll = false;
        match self.pending_irq() {
            Some(ir) => {
                self.ack(ir);
                0x80 | ir
            }
            None => 0,
        }
    }
}

impl PortDevice for Pic8259 {
    fn read(&mut self, offset: u16, size: u8, _now: Ticks) -> u32 {
        let v = match offset {
            0 if self.poll => self.poll_read(),
            0 if self.read_isr => self.isr,
            0 => self.irr,
            1 if self.poll => self.poll_read(),
            1 => self.imr,
            _ => return ones(size),
        };
        v as u32 | (ones(size) & !0xff)
    }

    fn write(&mut self, offset: u16, _size: u8, value: u32, _now: Ticks) {
        match offset {
            0 => self.command(value as u8),
            1 => self.data(value as u8),
            _ => {}
        }
    }
}

/// The ELCR pair at 0x4D0 (master) / 0x4D1 (slave): the board maps it and forwards here.
pub struct ElcrPort<'a>(pub &'a mut Pics);

impl PortDevice for ElcrPort<'_> {
    fn read(&mut self, offset: u16, size: u8, _now: Ticks) -> u32 {
        match offset {
            0 => self.0.master.elcr() as u32 | (ones(size) & !0xff),
            1 => self.0.slave.elcr() as u32 | (ones(size) & !0xff),
            _ => ones(size),
        }
    }

    fn write(&mut self, offset: u16, size: u8, value: u32, _now: Ticks) {
        for k in 0..size as u16 {
            let v = (value >> (8 * k)) as u8;
            match offset + k {
                0 => self.0.master.set_elcr(v),
                1 => self.0.slave.set_elcr(v),
                _ => {}
            }
        }
    }
}

/// The master/slave pair.
#[derive(Clone, Debug)]
pub struct Pics {
    /// The master (IRQ 0-7, cascade on 2).
    pub master: Pic8259,
    /// The slave (IRQ 8-15).
    pub slave: Pic8259,
}

impl Default for Pics {
    fn default() -> Self {
        // IRQ 0, 1, 2, 8 and 13 are always edge-triggered (ICH9 §13.4.2.6; PIIX3 ELCR masks).
        Pics { master: Pic8259::new(0xf8), slave: Pic8259::new(0xde) }
    }
}

impl Pics {
    /// Drives ISA IRQ `irq` (0-15) to `level`.
    pub fn set_irq(&mut self, irq: u8, level: bool) {
        if irq < 8 {
            self.master.set_irq(irq, level);
        } else if irq < 16 {
            self.slave.set_irq(irq - 8, level);
            self.update_cascade();
        }
    }

    /// An edge on `irq`: raise then lower (for edge-triggered sources such as the PIT).
    pub fn pulse_irq(&mut self, irq: u8) {
        self.set_irq(irq, true);
        self.set_irq(irq, false);
    }

    fn update_cascade(&mut self) {
        let level = self.slave.pending_irq().is_some();
        self.master.set_cascade(CASCADE_IRQ, level);
    }

    /// Whether INTR is asserted.
    pub fn intr(&mut self) -> bool {
        self.update_cascade();
        self.master.pending_irq().is_some()
    }

    /// The INTA cycle: the vector to deliver (a spurious IR7 vector if the request went away).
    pub fn ack(&mut self) -> u8 {
        self.update_cascade();
        let v = match self.master.pending_irq() {
            None => self.master.spurious(),
            Some(CASCADE_IRQ) => {
                self.master.ack(CASCADE_IRQ);
                match self.slave.pending_irq() {
                    Some(ir) => self.slave.ack(ir),
                    None => self.slave.spurious(),
                }
            }
            Some(ir) => self.master.ack(ir),
        };
        self.update_cascade();
        v
    }

    /// Whether ISA IRQ `irq` can reach the CPU (unmasked at its chip and at the cascade).
    pub fn unmasked(&self, irq: u8) -> bool {
        if irq < 8 {
            !self.master.masked(irq)
        } else {
            !self.slave.masked(irq - 8) && !self.master.masked(CASCADE_IRQ)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn init(p: &mut Pics) {
        let t = Ticks(0);
        // SeaBIOS / BIOS sequence: ICW1 0x11, ICW2 base, ICW3 cascade, ICW4 8086 mode.
        p.master.write(0, 1, 0x11, t);
        p.master.write(1, 1, 0x08, t);
        p.master.write(1, 1, 0x04, t);
        p.master.write(1, 1, 0x01, t);
        p.slave.write(0, 1, 0x11, t);
        p.slave.write(1, 1, 0x70, t);
        p.slave.write(1, 1, 0x02, t);
        p.slave.write(1, 1, 0x01, t);
    }

    #[test]
    fn icw_sequence_sets_vector_base_and_leaves_mask_writable() {
        let mut p = Pics::default();
        init(&mut p);
        assert_eq!(p.master.read(1, 1, Ticks(0)), 0);
        p.master.write(1, 1, 0xfb, Ticks(0));
        assert_eq!(p.master.read(1, 1, Ticks(0)), 0xfb);
        p.master.write(1, 1, 0x01, Ticks(0));
        p.pulse_irq(0);
        assert!(!p.intr(), "IRQ0 masked");
        p.master.write(1, 1, 0x00, Ticks(0));
        assert!(p.intr());
        assert_eq!(p.ack(), 0x08);
        assert!(!p.intr(), "in service");
    }

    #[test]
    fn irr_isr_through_ocw3_and_eoi() {
        let mut p = Pics::default();
        init(&mut p);
        p.pulse_irq(1);
        p.pulse_irq(0);
        assert_eq!(p.master.read(0, 1, Ticks(0)), 0x03, "IRR by default");
        assert_eq!(p.ack(), 0x08);
        p.master.write(0, 1, 0x0b, Ticks(0));
        assert_eq!(p.master.read(0, 1, Ticks(0)), 0x01, "ISR");
        p.master.write(0, 1, 0x20, Ticks(0)); // non-specific EOI
        assert_eq!(p.master.read(0, 1, Ticks(0)), 0x00);
        assert_eq!(p.ack(), 0x09);
        p.master.write(0, 1, 0x61, Ticks(0)); // specific EOI IR1
        assert_eq!(p.master.read(0, 1, Ticks(0)), 0x00);
    }

    #[test]
    fn slave_cascades_through_irq2() {
        let mut p = Pics::default();
        init(&mut p);
        p.set_irq(14, true);
        assert!(p.intr());
        assert_eq!(p.ack(), 0x76);
        p.set_irq(14, false);
        p.slave.write(0, 1, 0x20, Ticks(0));
        p.master.write(0, 1, 0x20, Ticks(0));
        assert!(!p.intr());
    }

    #[test]
    fn elcr_level_mode_and_fixed_bits() {
        let mut p = Pics::default();
        init(&mut p);
        ElcrPort(&mut p).write(0, 2, 0x0cff, Ticks(0));
        assert_eq!(ElcrPort(&mut p).read(0, 1, Ticks(0)), 0xf8, "IRQ 0-2 are edge only");
        assert_eq!(ElcrPort(&mut p).read(1, 1, Ticks(0)), 0x0c);
        p.set_irq(11, true);
        assert!(p.intr());
        p.set_irq(11, false);
        assert!(!p.intr(), "a level request goes away with the line");
    }

    #[test]
    fn spurious_and_invalid_accesses() {
        let mut p = Pics::default();
        init(&mut p);
        assert_eq!(p.ack(), 0x0f, "spurious IR7");
        assert_eq!(p.master.read(2, 1, Ticks(0)), 0xff);
        p.master.write(9, 1, 0x11, Ticks(0));
        assert_eq!(p.master.read(1, 2, Ticks(0)), 0xff00);
        assert_eq!(ElcrPort(&mut p).read(3, 1, Ticks(0)), 0xff);
    }

    #[test]
    fn poll_command_acknowledges() {
        let mut p = Pics::default();
        init(&mut p);
        p.pulse_irq(3);
        p.master.write(0, 1, 0x0c, Ticks(0));
        assert_eq!(p.master.read(0, 1, Ticks(0)), 0x83);
        p.master.write(0, 1, 0x0b, Ticks(0));
        assert_eq!(p.master.read(0, 1, Ticks(0)), 0x08);
    }
}
