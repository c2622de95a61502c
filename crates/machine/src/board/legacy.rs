//! The legacy PC devices every board around [`super::platform::Platform`] has, and the port
//! map that places them: the 8237 DMA sink, the 8259 pair and ELCR, the 8254 and port 0x61,
//! the 8042, the CMOS/RTC, port 0x92, fw_cfg and (when configured) COM1.
//!
//! Each device is a [`PortDevice`] that knows offsets only; [`LEGACY_PORTS`] says where it
//! sits, registered in a [`PortMap`] that refuses overlapping ranges.
//! This module also wires the interrupt lines: the 8254's counter 0 to IRQ 0, the 8042 to
//! IRQ 1/12 and the UART to IRQ 4, all into the 8259 pair. A20 and reset requests from port
//! 0x92 and the 8042 are collected for the platform.

use crate::clock::Ticks;
use crate::devices::cmos_rtc::CmosRtc;
use crate::devices::fw_cfg::{FwCfg, FwCfgConfig};
use crate::devices::i8042::I8042;
use crate::devices::isa_dma::{DmaPages, IsaDma};
use crate::devices::pic8259::{ElcrPort, Pics};
use crate::devices::pit8254::Pit8254;
use crate::devices::port92::Port92;
use crate::devices::uart16550::Uart16550;
use crate::devices::{ones, PortDevice};
use super::port_map::{PortMap, PortOverlap};

/// A device in the port map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegacyDevice {
    /// The first 8237 (ports 0x00-0x0F).
    Dma1,
    /// The DMA page registers (0x80-0x8F; 0x80 is also the POST code port).
    DmaPages,
    /// The second 8237 (0xC0-0xDF).
    Dma2,
    /// The master 8259 (0x20-0x21).
    PicMaster,
    /// The slave 8259 (0xA0-0xA1).
    PicSlave,
    /// The edge/level control registers of the 8259 pair (0x4D0-0x4D1).
    Elcr,
    /// The 8254 timer (0x40-0x43).
    Pit,
    /// Port 0x61 (NMI status and control: speaker gate, refresh toggle, counter 2 output).
    Port61,
    /// The 8042 keyboard controller (0x60, 0x64).
    I8042,
    /// The CMOS/RTC index and data ports (0x70-0x71).
    Rtc,
    /// Port 0x92 (fast A20 and INIT).
    Port92,
    /// QEMU's fw_cfg (0x510-0x51B).
    FwCfg,
    /// COM1 (0x3F8-0x3FF), when configured.
    Com1,
}

/// (base, first port, last port, device): the ranges each device registers, the offset
/// passed to the device counted from its base. The 8042's window 0x60-0x64 has port 0x61 cut
/// out of it (it belongs to the 8254's port 0x61), so the 8042 registers 0x60 and 0x62-0x64.
pub const LEGACY_PORTS: &[(u16, u16, u16, LegacyDevice)] = &[
    (0x0000, 0x0000, 0x000f, LegacyDevice::Dma1),
    (0x0020, 0x0020, 0x0021, LegacyDevice::PicMaster),
    (0x0040, 0x0040, 0x0043, LegacyDevice::Pit),
    (0x0061, 0x0061, 0x0061, LegacyDevice::Port61),
    (0x0060, 0x0060, 0x0060, LegacyDevice::I8042),
    (0x0060, 0x0062, 0x0064, LegacyDevice::I8042),
    (0x0070, 0x0070, 0x0071, LegacyDevice::Rtc),
    (0x0080, 0x0080, 0x008f, LegacyDevice::DmaPages),
    (0x0092, 0x0092, 0x0092, LegacyDevice::Port92),
    (0x00a0, 0x00a0, 0x00a1, LegacyDevice::PicSlave),
    (0x00c0, 0x00c0, 0x00df, LegacyDevice::Dma2),
    (0x03f8, 0x03f8, 0x03ff, LegacyDevice::Com1),
    (0x04d0, 0x04d0, 0x04d1, LegacyDevice::Elcr),
    (0x0510, 0x0510, 0x051b, LegacyDevice::FwCfg),
];

/// ISA IRQ lines.
pub const IRQ_PIT: u8 = 0;
/// Keyboard.
pub const IRQ_KBD: u8 = 1;
/// COM1.
pub const IRQ_COM1: u8 = 4;
/// RTC.
pub const IRQ_RTC: u8 = 8;
/// PS/2 mouse.
pub const IRQ_MOUSE: u8 = 12;

/// The legacy devices' port map, [`LEGACY_PORTS`] registered.
pub fn port_map() -> Result<PortMap<LegacyDevice>, PortOverlap<LegacyDevice>> {
    let mut m = PortMap::new();
    for &(base, first, last, dev) in LEGACY_PORTS {
        m.register_at(base, first..=last, dev)?;
    }
    Ok(m)
}

/// The devices.
pub struct LegacyDevices {
    /// The 8237 pair (a sink: no transfers).
    pub dma: IsaDma,
    /// The DMA page registers.
    pub dma_pages: DmaPages,
    /// The 8259 pair.
    pub pics: Pics,
    /// The 8254 timer.
    pub pit: Pit8254,
    /// The 8042 keyboard controller.
    pub i8042: I8042,
    /// The CMOS/RTC.
    pub rtc: CmosRtc,
    /// Port 0x92.
    pub port92: Port92,
    /// QEMU's fw_cfg.
    pub fw_cfg: FwCfg,
    /// COM1, present only when the user asked for a serial console (QEMU `-nodefaults`
    /// has none either).
    pub com1: Option<Uart16550>,
    a20_request: Option<bool>,
    reset_request: bool,
    ports: PortMap<LegacyDevice>,
}

impl LegacyDevices {
    /// The devices for `ram_size` bytes of RAM (all below 4 GiB) with a clock of `ips`.
    pub fn new(ram_size: u64, smi_features: bool, s5_sleep_type: u8, ips: u64) -> Self {
        LegacyDevices {
            dma: IsaDma::default(),
            dma_pages: DmaPages::default(),
            pics: Pics::default(),
            pit: Pit8254::new(ips),
            i8042: I8042::default(),
            rtc: CmosRtc::new(ram_size, 0, ips),
            port92: Port92::default(),
            fw_cfg: FwCfg::new(&FwCfgConfig { ram_size, smi_features, s5_sleep_type, cpus: 1 }),
            com1: None,
            a20_request: None,
            reset_request: false,
            ports: port_map().expect("the legacy port ranges do not overlap"),
        }
    }

    /// Reads a port; `None` if no legacy device decodes it.
    pub fn io_read(&mut self, port: u16, size: u8, now: Ticks) -> Option<u32> {
        let (dev, off) = self.ports.lookup(port)?;
        let v = match dev {
            LegacyDevice::Dma1 | LegacyDevice::Dma2 => self.dma.read(off, size, now),
            LegacyDevice::DmaPages => self.dma_pages.read(off, size, now),
            LegacyDevice::PicMaster => self.pics.master.read(off, size, now),
            LegacyDevice::PicSlave => self.pics.slave.read(off, size, now),
            LegacyDevice::Elcr => ElcrPort(&mut self.pics).read(off, size, now),
            LegacyDevice::Pit => self.pit.read(off, size, now),
            LegacyDevice::Port61 => self.pit.port61_read(now) as u32 | (ones(size) & !0xff),
            LegacyDevice::I8042 => {
                let v = self.i8042.read(off, size, now);
                self.sync_i8042_irqs();
                v
            }
            LegacyDevice::Rtc => {
                let v = self.rtc.read(off, size, now);
                self.pics.set_irq(IRQ_RTC, self.rtc.irq());
                v
            }
            LegacyDevice::Port92 => self.port92.read(off, size, now),
            LegacyDevice::FwCfg => self.fw_cfg.read(off, size, now),
            LegacyDevice::Com1 => match self.com1.as_mut() {
                Some(u) => {
                    let v = u.read(off, size, now);
                    let irq = u.irq();
                    self.pics.set_irq(IRQ_COM1, irq);
                    v
                }
                None => return None,
            },
        };
        Some(v)
    }

    /// Writes a port; false if no legacy device decodes it.
    pub fn io_write(&mut self, port: u16, size: u8, value: u32, now: Ticks) -> bool {
        let Some((dev, off)) = self.ports.lookup(port) else { return false };
        match dev {
            LegacyDevice::Dma1 | LegacyDevice::Dma2 => self.dma.write(off, size, value, now),
            LegacyDevice::DmaPages => self.dma_pages.write(off, size, value, now),
            LegacyDevice::PicMaster => self.pics.master.write(off, size, value, now),
            LegacyDevice::PicSlave => self.pics.slave.write(off, size, value, now),
            LegacyDevice::Elcr => ElcrPort(&mut self.pics).write(off, size, value, now),
            LegacyDevice::Pit => self.pit.write(off, size, value, now),
            LegacyDevice::Port61 => self.pit.port61_write(value as u8, now),
            LegacyDevice::I8042 => {
                self.i8042.write(off, size, value, now);
                if self.i8042.take_a20_change() {
                    self.a20_request = Some(self.i8042.a20());
                }
                self.reset_request |= self.i8042.take_reset();
                self.sync_i8042_irqs();
            }
            LegacyDevice::Rtc => {
                self.rtc.write(off, size, value, now);
                self.pics.set_irq(IRQ_RTC, self.rtc.irq());
            }
            LegacyDevice::Port92 => {
                self.port92.write(off, size, value, now);
                if self.port92.take_a20_change() {
                    self.a20_request = Some(self.port92.a20());
                }
                self.reset_request |= self.port92.take_reset();
            }
            LegacyDevice::FwCfg => self.fw_cfg.write(off, size, value, now),
            LegacyDevice::Com1 => match self.com1.as_mut() {
                Some(u) => {
                    u.write(off, size, value, now);
                    let irq = u.irq();
                    self.pics.set_irq(IRQ_COM1, irq);
                }
                None => return false,
            },
        }
        true
    }

    fn sync_i8042_irqs(&mut self) {
        let (k, m) = (self.i8042.irq1(), self.i8042.irq12());
        self.pics.set_irq(IRQ_KBD, k);
        self.pics.set_irq(IRQ_MOUSE, m);
    }

    /// The next timer deadline (the 8254's next IRQ 0 edge, the RTC's next enabled interrupt).
    pub fn next_deadline(&self) -> Option<Ticks> {
        [self.pit.next_deadline(), self.rtc.next_deadline()].into_iter().flatten().min()
    }

    /// The next deadline that can interrupt a halted CPU (IRQ 0 or IRQ 8 unmasked at the
    /// 8259s).
    pub fn next_interrupt(&self) -> Option<Ticks> {
        let pit = self.pit.next_deadline().filter(|_| self.pics.unmasked(IRQ_PIT));
        let rtc = self.rtc.next_deadline().filter(|_| self.pics.unmasked(IRQ_RTC));
        [pit, rtc].into_iter().flatten().min()
    }

    /// Fires the timers due by `now`.
    pub fn advance(&mut self, now: Ticks) {
        if self.pit.advance(now) {
            self.pics.pulse_irq(IRQ_PIT);
        }
        if self.rtc.next_deadline().is_some_and(|d| d <= now) {
            self.rtc.advance(now);
            self.pics.set_irq(IRQ_RTC, self.rtc.irq());
        }
    }

    /// A new A20 level requested by port 0x92 or the 8042, once.
    pub fn take_a20_request(&mut self) -> Option<bool> {
        self.a20_request.take()
    }

    /// Whether A20 or reset requests wait for the platform.
    pub fn has_requests(&self) -> bool {
        self.a20_request.is_some() || self.reset_request
    }

    /// Whether the guest asked for a reset (port 0x92 or the 8042), once.
    pub fn take_reset_request(&mut self) -> bool {
        std::mem::take(&mut self.reset_request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_map_registers_without_overlaps_port_61_cut_out_of_the_8042() {
        let m = port_map().unwrap();
        assert_eq!(m.ranges().len(), LEGACY_PORTS.len());
        assert_eq!(m.lookup(0x60), Some((LegacyDevice::I8042, 0)));
        assert_eq!(m.lookup(0x61), Some((LegacyDevice::Port61, 0)));
        assert_eq!(m.lookup(0x62), Some((LegacyDevice::I8042, 2)));
        assert_eq!(m.lookup(0x64), Some((LegacyDevice::I8042, 4)));
        assert_eq!(m.lookup(0x511), Some((LegacyDevice::FwCfg, 1)));
        assert_eq!(m.lookup(0x3f0), None);
        // The old map's whole 8042 window, registered after port 0x61, is refused.
        let mut m = m;
        let e = m.register(0x60..=0x64, LegacyDevice::I8042).unwrap_err();
        assert_eq!((e.existing.ports, e.existing.device), (0x61..=0x61, LegacyDevice::Port61));
        assert_eq!(m.lookup(0x61), Some((LegacyDevice::Port61, 0)));
    }

    #[test]
    fn pit_drives_irq0_through_the_8259() {
        let mut l = LegacyDevices::new(128 << 20, false, 0, 1_193_182);
        let t = Ticks(0);
        for (p, v) in [(0x20, 0x11), (0x21, 0x08), (0x21, 0x04), (0x21, 0x01), (0x21, 0xfe)] {
            l.io_write(p, 1, v, t);
        }
        l.io_write(0x43, 1, 0x34, t);
        l.io_write(0x40, 1, 0x00, t);
        l.io_write(0x40, 1, 0x01, t);
        assert_eq!(l.next_interrupt(), Some(Ticks(0xff)));
        l.advance(Ticks(0x100));
        assert!(l.pics.intr());
        assert_eq!(l.pics.ack(), 0x08);
    }

    #[test]
    fn rtc_periodic_interrupt_drives_irq8_through_the_slave() {
        let ips = 1_000_000_000;
        let mut l = LegacyDevices::new(128 << 20, false, 0, ips);
        let t = Ticks(0);
        for (p, v) in [(0x20, 0x11), (0x21, 0x08), (0x21, 0x04), (0x21, 0x01), (0x21, 0xfb), (0xa0, 0x11), (0xa1, 0x70), (0xa1, 0x02), (0xa1, 0x01), (0xa1, 0xfe)] {
            l.io_write(p, 1, v, t);
        }
        assert_eq!(l.next_interrupt(), None, "no RTC interrupt enabled");
        // 1024 Hz (RS = 6), PIE.
        l.io_write(0x70, 1, 0x0a, t);
        l.io_write(0x71, 1, 0x26, t);
        l.io_write(0x70, 1, 0x0b, t);
        l.io_write(0x71, 1, 0x42, t);
        let d = l.next_interrupt().unwrap();
        assert_eq!(d, Ticks(976_563), "first tick after 976.5625 us");
        l.advance(Ticks(d.0 - 1));
        assert!(!l.pics.intr());
        l.advance(d);
        assert!(l.pics.intr());
        assert_eq!(l.pics.ack(), 0x70);
        assert_eq!(l.rtc.next_deadline(), None, "IRQF set: nothing more until C is read");
        l.io_write(0x70, 1, 0x0c, d);
        assert_eq!(l.io_read(0x71, 1, d), Some(0xc0), "IRQF | PF, cleared by the read");
        assert_eq!(l.io_read(0x71, 1, d), Some(0x00));
        assert_eq!(l.next_interrupt(), Some(Ticks(1_953_125)));
    }

    #[test]
    fn a20_requests_from_port_92_and_8042() {
        let mut l = LegacyDevices::new(128 << 20, false, 0, 1_000_000);
        l.io_write(0x92, 1, 0x02, Ticks(0));
        assert_eq!(l.take_a20_request(), Some(true));
        l.io_write(0x64, 1, 0xdd, Ticks(0));
        assert_eq!(l.take_a20_request(), Some(false));
        l.io_write(0x64, 1, 0xfe, Ticks(0));
        assert!(l.take_reset_request());
        assert_eq!(l.io_read(0x3f8, 1, Ticks(0)), None, "no COM1 unless configured");
    }
}
