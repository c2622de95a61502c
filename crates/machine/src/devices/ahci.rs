//! An AHCI host bus adapter (Serial ATA AHCI 1.3.1 specification; version register 1.2 as the
//! ICH9 reports, Intel ICH9 datasheet §14.4) with ATA disks on its ports: the ABAR registers by
//! offset, and command list processing with the data moved through the PRDT by DMA.
//!
//! When software sets a bit in PxCI while PxCMD.ST is set, the port processes the command at
//! once: it fetches the command header (§4.2.2) and the command table (§4.2.3), decodes the
//! H2D register FIS (SATA 2.6 §10.3.4), moves the data between the disk and the PRDT regions,
//! posts a D2H register FIS (or a PIO setup FIS for PIO commands) into the received-FIS area
//! (§4.2.1) when PxCMD.FRE is set, updates PxTFD, clears the PxCI bit and raises PxIS. A
//! failing command (ERR in the status) sets PxIS.TFES and stops the port with PxCI still set,
//! until software clears PxCMD.ST (§6.2.2.1). NCQ is not offered (CAP.SNCQ = 0).
//!
//! Guest input never panics the model: addresses that reach no memory are host bus errors
//! (PxIS.HBDS/HBFS), out-of-range LBAs end with IDNF.

use super::ata::{self, AtaDisk, Extent};
use super::disk::SECTOR_SIZE;
use crate::pci::slots::Dma;

// Generic host control (§3.1).
/// CAP: HBA capabilities.
pub const HBA_CAP: u64 = 0x00;
/// GHC: global HBA control.
pub const HBA_GHC: u64 = 0x04;
/// IS: interrupt status, one bit per port.
pub const HBA_IS: u64 = 0x08;
/// PI: ports implemented.
pub const HBA_PI: u64 = 0x0c;
/// VS: AHCI version.
pub const HBA_VS: u64 = 0x10;
/// CAP2: extended capabilities.
pub const HBA_CAP2: u64 = 0x24;
/// Port registers start here, 0x80 bytes per port (§3.3).
pub const PORT_BASE: u64 = 0x100;
/// Bytes of registers per port.
pub const PORT_SIZE: u64 = 0x80;

// Port registers (§3.3.1-§3.3.15), offsets within a port.
/// PxCLB: command list base, low 32 bits.
pub const PX_CLB: u64 = 0x00;
/// PxCLBU: command list base, high 32 bits.
pub const PX_CLBU: u64 = 0x04;
/// PxFB: received-FIS base, low 32 bits.
pub const PX_FB: u64 = 0x08;
/// PxFBU: received-FIS base, high 32 bits.
pub const PX_FBU: u64 = 0x0c;
/// PxIS: port interrupt status.
pub const PX_IS: u64 = 0x10;
/// PxIE: port interrupt enable.
pub const PX_IE: u64 = 0x14;
/// PxCMD: command and status.
pub const PX_CMD: u64 = 0x18;
/// PxTFD: task file data (status and error).
pub const PX_TFD: u64 = 0x20;
/// PxSIG: signature of the attached device.
pub const PX_SIG: u64 = 0x24;
/// PxSSTS: SATA status (SStatus).
pub const PX_SSTS: u64 = 0x28;
/// PxSCTL: SATA control (SControl).
pub const PX_SCTL: u64 = 0x2c;
/// PxSERR: SATA error (SError).
pub const PX_SERR: u64 = 0x30;
/// PxSACT: SATA active (native command queuing).
pub const PX_SACT: u64 = 0x34;
/// PxCI: commands issued.
pub const PX_CI: u64 = 0x38;
/// PxSNTF: SATA notification.
pub const PX_SNTF: u64 = 0x3c;

// CAP bits (§3.1.1).
/// CAP.S64A: 64-bit addressing.
pub const CAP_S64A: u32 = 1 << 31;
/// CAP.SAM: AHCI mode only (no legacy IDE).
pub const CAP_SAM: u32 = 1 << 18;
/// CAP.SSS: staggered spin-up.
pub const CAP_SSS: u32 = 1 << 27;
/// Interface speed support: Gen1 (1.5 Gb/s).
pub const CAP_ISS_GEN1: u32 = 1 << 20;
/// Number of command slots - 1 (bits 12:8).
pub const CAP_NCS_SHIFT: u32 = 8;

// GHC bits (§3.1.2).
/// GHC.HR: HBA reset.
pub const GHC_HR: u32 = 1 << 0;
/// GHC.IE: interrupt enable.
pub const GHC_IE: u32 = 1 << 1;
/// GHC.AE: AHCI enable.
pub const GHC_AE: u32 = 1 << 31;

/// VS: AHCI 1.2, as the ICH9 reports (ICH9 datasheet §14.4.1.5).
pub const VERSION: u32 = 0x0001_0200;

// PxCMD bits (§3.3.7).
/// PxCMD.ST: start processing the command list.
pub const CMD_ST: u32 = 1 << 0;
/// PxCMD.SUD: spin up device.
pub const CMD_SUD: u32 = 1 << 1;
/// PxCMD.POD: power on device.
pub const CMD_POD: u32 = 1 << 2;
/// PxCMD.CLO: command list override.
pub const CMD_CLO: u32 = 1 << 3;
/// PxCMD.FRE: FIS receive enable.
pub const CMD_FRE: u32 = 1 << 4;
/// PxCMD.FR: FIS receive running.
pub const CMD_FR: u32 = 1 << 14;
/// PxCMD.CR: command list running.
pub const CMD_CR: u32 = 1 << 15;
/// Bits software writes: ST, SUD, POD, CLO, FRE, and ICC/ASP/ALPE/DLAE/ATAPI (31:24).
const CMD_WMASK: u32 = 0xff00_001f;

// PxIS bits (§3.3.5).
/// PxIS.DHRS: device-to-host register FIS received.
pub const IS_DHRS: u32 = 1 << 0;
/// PxIS.PSS: PIO setup FIS received.
pub const IS_PSS: u32 = 1 << 1;
/// PxIS.DPS: descriptor processed.
pub const IS_DPS: u32 = 1 << 5;
/// PxIS.PCS: port connect change.
pub const IS_PCS: u32 = 1 << 6;
/// PxIS.OFS: overflow.
pub const IS_OFS: u32 = 1 << 24;
/// PxIS.HBDS: host bus data error.
pub const IS_HBDS: u32 = 1 << 28;
/// PxIS.HBFS: host bus fatal error.
pub const IS_HBFS: u32 = 1 << 29;
/// PxIS.TFES: task file error.
pub const IS_TFES: u32 = 1 << 30;
/// PxIS bits that are write-one-to-clear (PCS and PRCS follow SERR and PHY state).
const IS_W1C: u32 = 0xfd80_00af;

/// PxSERR.DIAG.X: device presence changed (COMINIT received).
pub const SERR_DIAG_X: u32 = 1 << 26;
/// PxSSTS with a device: DET = 3 (present, PHY communication), SPD = 1 (Gen1), IPM = 1 (active).
pub const SSTS_DEVICE: u32 = 0x113;
/// PxSIG of an ATA disk (count 01h, LBA 01h/00h/00h).
pub const SIG_ATA: u32 = 0x0000_0101;

// Received-FIS area offsets (§4.2.1).
/// Offset of the PIO setup FIS.
pub const RFIS_PSFIS: u64 = 0x20;
/// Offset of the device-to-host register FIS.
pub const RFIS_RFIS: u64 = 0x40;

// FIS types (SATA 2.6 §10.3).
/// Register FIS, host to device.
pub const FIS_H2D: u8 = 0x27;
/// Register FIS, device to host.
pub const FIS_D2H: u8 = 0x34;
/// PIO setup FIS.
pub const FIS_PIO_SETUP: u8 = 0x5f;

/// Command header size and the command table's PRDT offset (§4.2.2, §4.2.3).
const HEADER_SIZE: u64 = 32;
const PRDT_OFFSET: u64 = 0x80;
/// The most PRDT entries a command may have (PRDTL is 16 bits).
const MAX_PRDT: usize = 65535;

/// One port.
#[derive(Clone, Debug, Default)]
pub struct Port {
    /// The attached disk, if any.
    pub disk: Option<AtaDisk>,
    clb: u64,
    fb: u64,
    is: u32,
    ie: u32,
    cmd: u32,
    tfd: u32,
    sctl: u32,
    serr: u32,
    sact: u32,
    ci: u32,
    /// Stopped after an error until ST is cleared.
    halted: bool,
}

impl Port {
    fn reset(&mut self) {
        let disk = self.disk.take();
        *self = Port { disk, ..Port::default() };
        self.comreset_done();
    }

    /// Link up after power-on or COMRESET: the device's signature FIS loads PxTFD and PxSIG.
    fn comreset_done(&mut self) {
        if self.disk.is_some() {
            self.tfd = 0x0150; // error 01h (diagnostics passed), status DRDY | DSC
            self.serr |= SERR_DIAG_X;
        } else {
            self.tfd = 0x7f;
        }
    }

    fn ssts(&self) -> u32 {
        if self.disk.is_some() && self.sctl & 0xf != 1 {
            SSTS_DEVICE
        } else {
            0
        }
    }

    fn sig(&self) -> u32 {
        if self.disk.is_some() {
            SIG_ATA
        } else {
            0xffff_ffff
        }
    }

    fn cmd_read(&self) -> u32 {
        let mut v = self.cmd;
        if v & CMD_ST != 0 {
            v |= CMD_CR;
        }
        if v & CMD_FRE != 0 {
            v |= CMD_FR;
        }
        v
    }

    fn is_read(&self) -> u32 {
        self.is | if self.serr & SERR_DIAG_X != 0 { IS_PCS } else { 0 }
    }

    /// Whether this port asks for an interrupt.
    fn pending(&self) -> bool {
        self.is_read() & self.ie != 0
    }
}

/// The HBA.
#[derive(Clone, Debug)]
pub struct Ahci {
    /// The ports, in port-number order.
    pub ports: Vec<Port>,
    ghc: u32,
    /// Interrupt status: port bits latched when a port's PxIS & PxIE becomes nonzero.
    is: u32,
}

/// What a command did.
struct Outcome {
    status: u8,
    error: u8,
    pio: bool,
    bytes: u32,
    /// A PRD with the I bit was completed.
    dps: bool,
    extra_is: u32,
}

impl Ahci {
    /// An HBA with `ports` ports (1..=32).
    pub fn new(ports: usize) -> Self {
        let mut a = Ahci { ports: vec![Port::default(); ports.clamp(1, 32)], ghc: GHC_AE, is: 0 };
        a.reset();
        a
    }

    /// Attaches a disk to `port`.
    pub fn attach(&mut self, port: usize, disk: AtaDisk) {
        if let Some(p) = self.ports.get_mut(port) {
            p.disk = Some(disk);
            p.reset();
        }
    }

    /// HBA reset (GHC.HR, §10.4.3): every port and the global registers to their defaults.
    pub fn reset(&mut self) {
        for p in &mut self.ports {
            p.reset();
        }
        self.ghc = GHC_AE;
        self.is = 0;
    }

    fn cap(&self) -> u32 {
        CAP_S64A | CAP_SSS | CAP_SAM | CAP_ISS_GEN1 | 31 << CAP_NCS_SHIFT | (self.ports.len() as u32 - 1)
    }

    fn pi(&self) -> u32 {
        if self.ports.len() >= 32 {
            u32::MAX
        } else {
            (1u32 << self.ports.len()) - 1
        }
    }

    /// The interrupt line: GHC.IE and a pending port.
    pub fn irq(&self) -> bool {
        self.ghc & GHC_IE != 0 && self.is != 0
    }

    fn update_is(&mut self) {
        for (n, p) in self.ports.iter().enumerate() {
            if p.pending() {
                self.is |= 1 << n;
            }
        }
    }

    /// Reads an ABAR register (sub-dword reads return the addressed bytes).
    pub fn read(&mut self, offset: u64, size: u8) -> u32 {
        let dword = self.read32(offset & !3);
        let shift = 8 * (offset & 3) as u32;
        (dword >> shift) & crate::pci::host::ones(size)
    }

    fn read32(&self, offset: u64) -> u32 {
        match offset {
            HBA_CAP => self.cap(),
            HBA_GHC => self.ghc,
            HBA_IS => self.is,
            HBA_PI => self.pi(),
            HBA_VS => VERSION,
            HBA_CAP2 => 0,
            o if o >= PORT_BASE => {
                let (n, r) = ((o - PORT_BASE) / PORT_SIZE, (o - PORT_BASE) % PORT_SIZE);
                let Some(p) = self.ports.get(n as usize) else { return 0 };
                match r {
                    PX_CLB => p.clb as u32,
                    PX_CLBU => (p.clb >> 32) as u32,
                    PX_FB => p.fb as u32,
                    PX_FBU => (p.fb >> 32) as u32,
                    PX_IS => p.is_read(),
                    PX_IE => p.ie,
                    PX_CMD => p.cmd_read(),
                    PX_TFD => p.tfd,
                    PX_SIG => p.sig(),
                    PX_SSTS => p.ssts(),
                    PX_SCTL => p.sctl,
                    PX_SERR => p.serr,
                    PX_SACT => p.sact,
                    PX_CI => p.ci,
                    _ => 0,
                }
            }
            _ => 0,
        }
    }

    /// Writes an ABAR register. `bus_master` is the PCI command register's bus-master enable:
    /// without it the port cannot fetch commands.
    pub fn write(&mut self, offset: u64, size: u8, value: u32, dma: &mut dyn Dma, bus_master: bool) {
        let shift = 8 * (offset & 3) as u32;
        let mask = crate::pci::host::ones(size) << shift;
        let value = value << shift;
        let merge = |old: u32| (old & !mask) | (value & mask);
        let w1c = value & mask;
        match offset & !3 {
            HBA_GHC => {
                if value & mask & GHC_HR != 0 {
                    self.reset();
                } else {
                    self.ghc = (merge(self.ghc) & GHC_IE) | GHC_AE;
                }
            }
            HBA_IS => self.is &= !w1c,
            o if o >= PORT_BASE => {
                let (n, r) = (((o - PORT_BASE) / PORT_SIZE) as usize, (o - PORT_BASE) % PORT_SIZE);
                let Some(p) = self.ports.get_mut(n) else { return };
                match r {
                    // CLB is 1 KiB aligned, FB 256-byte aligned (§3.3.1, §3.3.3).
                    PX_CLB => p.clb = (p.clb & !0xffff_ffff) | (merge(p.clb as u32) & !0x3ff) as u64,
                    PX_CLBU => p.clb = (p.clb & 0xffff_ffff) | (merge((p.clb >> 32) as u32) as u64) << 32,
                    PX_FB => p.fb = (p.fb & !0xffff_ffff) | (merge(p.fb as u32) & !0xff) as u64,
                    PX_FBU => p.fb = (p.fb & 0xffff_ffff) | (merge((p.fb >> 32) as u32) as u64) << 32,
                    PX_IS => p.is &= !(w1c & IS_W1C),
                    PX_IE => p.ie = merge(p.ie) & 0xfdc0_00ff,
                    PX_CMD => {
                        let new = merge(p.cmd) & CMD_WMASK;
                        let was_st = p.cmd & CMD_ST != 0;
                        p.cmd = new & !CMD_CLO;
                        if was_st && new & CMD_ST == 0 {
                            // Stopping the command list engine clears PxCI and PxSACT (§3.3.14).
                            p.ci = 0;
                            p.sact = 0;
                            p.halted = false;
                        }
                        if new & CMD_CLO != 0 {
                            p.tfd &= !0x88; // command list override clears BSY and DRQ
                        }
                    }
                    PX_SCTL => {
                        let old = p.sctl;
                        p.sctl = merge(p.sctl) & 0xfff;
                        if old & 0xf == 1 && p.sctl & 0xf != 1 {
                            p.comreset_done();
                        }
                    }
                    PX_SERR => p.serr &= !w1c,
                    // PxSACT and PxCI are set-only and ignored while the port is stopped
                    // (§3.3.13, §3.3.14).
                    PX_SACT if p.cmd & CMD_ST != 0 => p.sact |= w1c,
                    PX_CI if p.cmd & CMD_ST != 0 => {
                        p.ci |= w1c;
                        self.run_port(n, dma, bus_master);
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        self.update_is();
    }

    /// Processes the issued commands of port `n`, lowest slot first.
    fn run_port(&mut self, n: usize, dma: &mut dyn Dma, bus_master: bool) {
        let p = &mut self.ports[n];
        while p.ci != 0 && !p.halted {
            let slot = p.ci.trailing_zeros();
            if !bus_master {
                p.is |= IS_HBFS;
                p.halted = true;
                break;
            }
            let hdr_addr = p.clb + slot as u64 * HEADER_SIZE;
            let mut hdr = [0u8; 16];
            if !dma.read(hdr_addr, &mut hdr) {
                p.is |= IS_HBFS; // host bus fatal error fetching the header (§6.1.2)
                p.halted = true;
                break;
            }
            let dw0 = u32::from_le_bytes(hdr[0..4].try_into().unwrap_or_default());
            let ctba = u64::from(u32::from_le_bytes(hdr[8..12].try_into().unwrap_or_default()) & !0x7f)
                | u64::from(u32::from_le_bytes(hdr[12..16].try_into().unwrap_or_default())) << 32;
            let prdtl = (dw0 >> 16) as usize;
            let write = dw0 & (1 << 6) != 0;
            let mut cfis = [0u8; 20];
            if !dma.read(ctba, &mut cfis) {
                p.is |= IS_HBFS;
                p.halted = true;
                break;
            }
            let o = Self::execute(p, &cfis, ctba, prdtl, write, dma);
            // PRDBC: bytes transferred (DW1 of the header).
            dma.write(hdr_addr + 4, &o.bytes.to_le_bytes());
            p.tfd = (o.error as u32) << 8 | o.status as u32;
            p.is |= o.extra_is;
            if p.cmd & CMD_FRE != 0 {
                let mut f = [0u8; 20];
                if o.pio {
                    // PIO setup FIS: data direction device-to-host, interrupt, status at the
                    // start of the block, ending status, transfer count (SATA 2.6 §10.3.11).
                    f[0] = FIS_PIO_SETUP;
                    f[1] = 0x60;
                    f[2] = o.status | ata::ST_DRQ;
                    f[3] = o.error;
                    f[15] = o.status;
                    f[16..18].copy_from_slice(&(o.bytes.min(0xffff) as u16).to_le_bytes());
                    dma.write(p.fb + RFIS_PSFIS, &f);
                } else {
                    f[0] = FIS_D2H;
                    f[1] = 0x40;
                    f[2] = o.status;
                    f[3] = o.error;
                    f[4..8].copy_from_slice(&cfis[4..8]);
                    f[8..11].copy_from_slice(&cfis[8..11]);
                    f[12..14].copy_from_slice(&cfis[12..14]);
                    dma.write(p.fb + RFIS_RFIS, &f);
                }
            }
            p.is |= if o.pio { IS_PSS } else { IS_DHRS } | if o.dps { IS_DPS } else { 0 };
            if o.status & ata::ST_ERR != 0 {
                p.is |= IS_TFES;
                p.halted = true; // PxCI stays set until software clears PxCMD.ST
                break;
            }
            p.ci &= !(1 << slot);
        }
    }

    /// Runs one command FIS against the port's disk.
    fn execute(p: &mut Port, cfis: &[u8; 20], ctba: u64, prdtl: usize, write: bool, dma: &mut dyn Dma) -> Outcome {
        let ok = |pio: bool, bytes: u32| Outcome { status: ata::ST_DRDY | ata::ST_DSC, error: 0, pio, bytes, dps: false, extra_is: 0 };
        let fail = |error: u8| Outcome { status: ata::ST_DRDY | ata::ST_ERR, error, pio: false, bytes: 0, dps: false, extra_is: 0 };
        let Some(disk) = p.disk.as_mut() else { return fail(ata::ERR_ABRT) };
        if cfis[0] != FIS_H2D {
            return fail(ata::ERR_ABRT);
        }
        if cfis[1] & 0x80 == 0 {
            // A device-control update (e.g. SRST): nothing to run; report ready.
            return ok(false, 0);
        }
        let (cmd, feature, count) = (cfis[2], cfis[3], cfis[12]);
        let lba28 = || -> u64 { ((cfis[7] & 0x0f) as u64) << 24 | (cfis[6] as u64) << 16 | (cfis[5] as u64) << 8 | cfis[4] as u64 };
        let lba48 = || -> u64 {
            (cfis[10] as u64) << 40
                | (cfis[9] as u64) << 32
                | (cfis[8] as u64) << 24
                | (cfis[6] as u64) << 16
                | (cfis[5] as u64) << 8
                | cfis[4] as u64
        };
        let count28 = if count == 0 { 256 } else { count as u64 };
        let count48 = match (cfis[13] as u64) << 8 | count as u64 {
            0 => 65536,
            c => c,
        };
        let (extent, dir_write, pio) = match cmd {
            ata::CMD_IDENTIFY_DEVICE => {
                let data = disk.identify_bytes();
                return match scatter(dma, ctba, prdtl, &data) {
                    Ok((n, dps)) => Outcome { dps, ..ok(true, n) },
                    Err(is) => Outcome { extra_is: is, ..fail(ata::ERR_ABRT) },
                };
            }
            ata::CMD_READ_DMA | ata::CMD_READ_SECTORS | ata::CMD_READ_MULTIPLE => {
                (Extent { lba: lba28(), count: count28 }, false, cmd != ata::CMD_READ_DMA)
            }
            ata::CMD_READ_DMA_EXT | ata::CMD_READ_SECTORS_EXT | ata::CMD_READ_MULTIPLE_EXT => {
                (Extent { lba: lba48(), count: count48 }, false, cmd != ata::CMD_READ_DMA_EXT)
            }
            ata::CMD_WRITE_DMA | ata::CMD_WRITE_SECTORS | ata::CMD_WRITE_MULTIPLE => {
                (Extent { lba: lba28(), count: count28 }, true, cmd != ata::CMD_WRITE_DMA)
            }
            ata::CMD_WRITE_DMA_EXT | ata::CMD_WRITE_SECTORS_EXT | ata::CMD_WRITE_MULTIPLE_EXT => {
                (Extent { lba: lba48(), count: count48 }, true, cmd != ata::CMD_WRITE_DMA_EXT)
            }
            ata::CMD_READ_VERIFY => {
                return if disk.in_range(Extent { lba: lba28(), count: count28 }) { ok(false, 0) } else { fail(ata::ERR_IDNF) }
            }
            ata::CMD_READ_VERIFY_EXT => {
                return if disk.in_range(Extent { lba: lba48(), count: count48 }) { ok(false, 0) } else { fail(ata::ERR_IDNF) }
            }
            ata::CMD_SET_FEATURES => return if disk.set_features(feature, count) { ok(false, 0) } else { fail(ata::ERR_ABRT) },
            ata::CMD_SET_MULTIPLE_MODE => return if disk.set_multiple(count) { ok(false, 0) } else { fail(ata::ERR_ABRT) },
            ata::CMD_INITIALIZE_DEVICE_PARAMETERS if count != 0 => {
                disk.heads = (cfis[7] & 0x0f) as u16 + 1;
                disk.spt = count as u16;
                return ok(false, 0);
            }
            ata::CMD_FLUSH_CACHE
            | ata::CMD_FLUSH_CACHE_EXT
            | ata::CMD_SEEK
            | ata::CMD_STANDBY_IMMEDIATE
            | ata::CMD_IDLE_IMMEDIATE
            | ata::CMD_STANDBY
            | ata::CMD_IDLE
            | ata::CMD_CHECK_POWER_MODE => return ok(false, 0),
            _ => return fail(ata::ERR_ABRT),
        };
        if (cmd == ata::CMD_READ_MULTIPLE
            || cmd == ata::CMD_WRITE_MULTIPLE
            || cmd == ata::CMD_READ_MULTIPLE_EXT
            || cmd == ata::CMD_WRITE_MULTIPLE_EXT)
            && disk.multiple == 0
        {
            return fail(ata::ERR_ABRT);
        }
        if !disk.in_range(extent) {
            return fail(ata::ERR_IDNF);
        }
        if dir_write != write {
            // The header's W bit disagrees with the command's direction.
            return fail(ata::ERR_ABRT);
        }
        let len = extent.count as usize * SECTOR_SIZE;
        if dir_write {
            let mut buf = vec![0u8; len];
            match gather(dma, ctba, prdtl, &mut buf) {
                Ok((n, dps)) if n as usize == len => {
                    disk.disk.write(extent.lba, &buf);
                    Outcome { dps, ..ok(pio, n) }
                }
                Ok(_) => Outcome { extra_is: IS_OFS, ..fail(ata::ERR_ABRT) },
                Err(is) => Outcome { extra_is: is, ..fail(ata::ERR_ABRT) },
            }
        } else {
            let data = disk.disk.read(extent.lba, extent.count).unwrap_or_default();
            match scatter(dma, ctba, prdtl, data) {
                Ok((n, dps)) if n as usize == len => Outcome { dps, ..ok(pio, n) },
                Ok(_) => Outcome { extra_is: IS_OFS, ..fail(ata::ERR_ABRT) },
                Err(is) => Outcome { extra_is: is, ..fail(ata::ERR_ABRT) },
            }
        }
    }
}

/// One PRDT entry (§4.2.3.3): data base address and byte count (DBC + 1), interrupt bit.
fn prd(dma: &mut dyn Dma, ctba: u64, k: usize) -> Result<(u64, usize, bool), u32> {
    let mut e = [0u8; 16];
    if !dma.read(ctba + PRDT_OFFSET + 16 * k as u64, &mut e) {
        return Err(IS_HBFS);
    }
    let w = |i: usize| u32::from_le_bytes([e[i], e[i + 1], e[i + 2], e[i + 3]]);
    let addr = (w(0) & !1) as u64 | (w(4) as u64) << 32;
    let dw3 = w(12);
    Ok((addr, ((dw3 & 0x3f_ffff) | 1) as usize + 1, dw3 & (1 << 31) != 0))
}

/// Copies `data` into the PRDT regions; returns the bytes moved (less than `data` when the
/// regions are too small: an overflow) and whether an I-bit PRD completed.
fn scatter(dma: &mut dyn Dma, ctba: u64, prdtl: usize, data: &[u8]) -> Result<(u32, bool), u32> {
    let (mut done, mut dps) = (0usize, false);
    for k in 0..prdtl.min(MAX_PRDT) {
        if done >= data.len() {
            break;
        }
        let (addr, len, i) = prd(dma, ctba, k)?;
        let n = len.min(data.len() - done);
        if !dma.write(addr, &data[done..done + n]) {
            return Err(IS_HBDS);
        }
        done += n;
        dps |= i && n == len;
    }
    Ok((done as u32, dps))
}

/// Fills `buf` from the PRDT regions; returns the bytes moved.
fn gather(dma: &mut dyn Dma, ctba: u64, prdtl: usize, buf: &mut [u8]) -> Result<(u32, bool), u32> {
    let (mut done, mut dps) = (0usize, false);
    for k in 0..prdtl.min(MAX_PRDT) {
        if done >= buf.len() {
            break;
        }
        let (addr, len, i) = prd(dma, ctba, k)?;
        let n = len.min(buf.len() - done);
        if !dma.read(addr, &mut buf[done..done + n]) {
            return Err(IS_HBDS);
        }
        done += n;
        dps |= i && n == len;
    }
    Ok((done as u32, dps))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::ata::Interface;
    use crate::devices::disk::Disk;

    const CLB: u64 = 0x1000;
    const FB: u64 = 0x2000;
    const CT: u64 = 0x3000;
    const BUF: u64 = 0x10000;

    fn hba() -> (Ahci, Vec<u8>) {
        let data: Vec<u8> = (0..64 * 512).map(|i| (i / 512) as u8 ^ 0x5a).collect();
        let mut a = Ahci::new(6);
        a.attach(0, AtaDisk::new(Disk::from_bytes(data).unwrap(), Interface { sata: true, dma: true }, 1));
        let mut ram = vec![0u8; 0x40000];
        let p = PORT_BASE;
        a.write(p + PX_CLB, 4, CLB as u32, &mut ram, true);
        a.write(p + PX_FB, 4, FB as u32, &mut ram, true);
        a.write(p + PX_CMD, 4, CMD_FRE | CMD_ST, &mut ram, true);
        (a, ram)
    }

    fn issue(a: &mut Ahci, ram: &mut Vec<u8>, cmd: u8, lba: u64, count: u16, write: bool, prds: &[(u64, u32)]) {
        let hdr = 5 | if write { 1 << 6 } else { 0 } | (prds.len() as u32) << 16;
        ram[CLB as usize..CLB as usize + 4].copy_from_slice(&hdr.to_le_bytes());
        ram[CLB as usize + 8..CLB as usize + 12].copy_from_slice(&(CT as u32).to_le_bytes());
        let f = [
            FIS_H2D,
            0x80,
            cmd,
            0,
            lba as u8,
            (lba >> 8) as u8,
            (lba >> 16) as u8,
            0x40,
            (lba >> 24) as u8,
            (lba >> 32) as u8,
            (lba >> 40) as u8,
            0,
            count as u8,
            (count >> 8) as u8,
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        ram[CT as usize..CT as usize + 20].copy_from_slice(&f);
        for (k, (addr, len)) in prds.iter().enumerate() {
            let e = CT as usize + 0x80 + 16 * k;
            ram[e..e + 4].copy_from_slice(&(*addr as u32).to_le_bytes());
            ram[e + 4..e + 8].copy_from_slice(&((*addr >> 32) as u32).to_le_bytes());
            ram[e + 12..e + 16].copy_from_slice(&(len - 1).to_le_bytes());
        }
        a.write(PORT_BASE + PX_CI, 4, 1, ram, true);
    }

    fn port(a: &mut Ahci, r: u64) -> u32 {
        a.read(PORT_BASE + r, 4)
    }

    #[test]
    fn global_registers_and_port_presence() {
        let mut a = Ahci::new(6);
        assert_eq!(a.read(HBA_PI, 4), 0x3f);
        assert_eq!(a.read(HBA_CAP, 4) & 0x1f, 5);
        assert_eq!(a.read(HBA_VS, 4), VERSION);
        assert_eq!(a.read(HBA_GHC, 4), GHC_AE);
        assert_eq!(a.read(PORT_BASE + PX_SSTS, 4), 0, "empty port");
        let (mut a, _) = hba();
        assert_eq!(port(&mut a, PX_SSTS), SSTS_DEVICE);
        assert_eq!(port(&mut a, PX_SIG), SIG_ATA);
        assert_eq!(port(&mut a, PX_TFD) & 0x88, 0);
        assert_eq!(port(&mut a, PX_CMD) & (CMD_CR | CMD_FR), CMD_CR | CMD_FR);
        assert_eq!(a.read(PORT_BASE + PX_SSTS, 2), 0x113);
        assert_eq!(a.read(PORT_BASE + PX_SSTS + 1, 1), 0x01);
    }

    #[test]
    fn read_dma_ext_scatters_over_two_prds_and_posts_d2h() {
        let (mut a, mut ram) = hba();
        a.write(PORT_BASE + PX_IE, 4, 0xffff_ffff, &mut ram, true);
        a.write(HBA_GHC, 4, GHC_IE, &mut ram, true);
        issue(&mut a, &mut ram, ata::CMD_READ_DMA_EXT, 3, 2, false, &[(BUF, 100), (BUF + 0x1000, 924)]);
        assert_eq!(port(&mut a, PX_CI), 0);
        assert_eq!(port(&mut a, PX_IS) & IS_DHRS, IS_DHRS);
        assert_eq!(port(&mut a, PX_TFD), 0x50);
        assert_eq!(ram[BUF as usize], 3 ^ 0x5a);
        assert_eq!(ram[BUF as usize + 99], 3 ^ 0x5a);
        assert_eq!(ram[BUF as usize + 100], 0, "first PRD is 100 bytes");
        assert_eq!(ram[0x11000 + 411], 3 ^ 0x5a);
        assert_eq!(ram[0x11000 + 412], 4 ^ 0x5a);
        assert_eq!(u32::from_le_bytes(ram[CLB as usize + 4..CLB as usize + 8].try_into().unwrap()), 1024, "PRDBC");
        assert_eq!(ram[(FB + RFIS_RFIS) as usize], FIS_D2H);
        assert_eq!(ram[(FB + RFIS_RFIS) as usize + 2], 0x50);
        assert!(a.irq());
        assert_eq!(a.read(HBA_IS, 4), 1);
        a.write(PORT_BASE + PX_IS, 4, 0xffff_ffff, &mut ram, true);
        a.write(HBA_IS, 4, 1, &mut ram, true);
        assert!(a.irq(), "PxIS.PCS follows PxSERR.DIAG.X, still set");
        a.write(PORT_BASE + PX_SERR, 4, 0xffff_ffff, &mut ram, true);
        a.write(HBA_IS, 4, 1, &mut ram, true);
        assert!(!a.irq());
    }

    #[test]
    fn write_dma_changes_the_copy_and_identify_uses_pio_setup() {
        let (mut a, mut ram) = hba();
        ram[BUF as usize..BUF as usize + 512].fill(0xee);
        issue(&mut a, &mut ram, ata::CMD_WRITE_DMA, 9, 1, true, &[(BUF, 512)]);
        assert_eq!(port(&mut a, PX_TFD), 0x50);
        assert_eq!(a.ports[0].disk.as_ref().unwrap().disk.read(9, 1).unwrap()[0], 0xee);
        issue(&mut a, &mut ram, ata::CMD_IDENTIFY_DEVICE, 0, 0, false, &[(BUF, 512)]);
        assert_eq!(port(&mut a, PX_IS) & IS_PSS, IS_PSS);
        assert_eq!(ram[(FB + RFIS_PSFIS) as usize], FIS_PIO_SETUP);
        assert_eq!(ram[(FB + RFIS_PSFIS) as usize + 2] & (ata::ST_BSY | ata::ST_ERR | ata::ST_DRDY), ata::ST_DRDY);
        assert_eq!(u16::from_le_bytes([ram[BUF as usize + 200], ram[BUF as usize + 201]]), 64, "word 100: sectors");
        assert_ne!(u16::from_le_bytes([ram[BUF as usize + 98], ram[BUF as usize + 99]]) & 0x100, 0, "word 49: DMA");
    }

    #[test]
    fn errors_set_tfes_and_stop_until_st_cleared() {
        let (mut a, mut ram) = hba();
        issue(&mut a, &mut ram, ata::CMD_IDENTIFY_PACKET_DEVICE, 0, 0, false, &[(BUF, 512)]);
        assert_eq!(port(&mut a, PX_IS) & IS_TFES, IS_TFES);
        assert_eq!(port(&mut a, PX_TFD), (ata::ERR_ABRT as u32) << 8 | 0x41);
        assert_eq!(port(&mut a, PX_CI), 1, "PxCI stays set");
        a.write(PORT_BASE + PX_CMD, 4, CMD_FRE, &mut ram, true);
        assert_eq!(port(&mut a, PX_CI), 0);
        assert_eq!(port(&mut a, PX_CMD) & CMD_CR, 0);
        a.write(PORT_BASE + PX_CMD, 4, CMD_FRE | CMD_ST, &mut ram, true);
        a.write(PORT_BASE + PX_IS, 4, u32::MAX, &mut ram, true);
        issue(&mut a, &mut ram, ata::CMD_READ_DMA_EXT, 64, 1, false, &[(BUF, 512)]);
        assert_eq!(port(&mut a, PX_TFD) >> 8, ata::ERR_IDNF as u32, "past the end");
    }

    #[test]
    fn bad_addresses_are_host_bus_errors_not_panics() {
        let (mut a, mut ram) = hba();
        issue(&mut a, &mut ram, ata::CMD_READ_DMA_EXT, 0, 1, false, &[(0xffff_ffff_ffff_f000, 512)]);
        assert_eq!(port(&mut a, PX_IS) & IS_HBDS, IS_HBDS);
        a.write(PORT_BASE + PX_CMD, 4, 0, &mut ram, true);
        a.write(PORT_BASE + PX_CLB, 4, 0xffff_fc00, &mut ram, true);
        a.write(PORT_BASE + PX_CMD, 4, CMD_ST, &mut ram, true);
        a.write(PORT_BASE + PX_CI, 4, 1, &mut ram, true);
        assert_eq!(port(&mut a, PX_IS) & IS_HBFS, IS_HBFS);
        // Too small a PRDT: overflow.
        let (mut a, mut ram) = hba();
        issue(&mut a, &mut ram, ata::CMD_READ_DMA, 0, 2, false, &[(BUF, 512)]);
        assert_eq!(port(&mut a, PX_IS) & IS_OFS, IS_OFS);
        // Random garbage everywhere.
        let (mut a, mut ram) = hba();
        let mut x = 0x9e37_79b9u32;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let i = (x as usize >> 4) % 0x4000;
            ram[CT as usize + i % 0x200] = x as u8;
            ram[CLB as usize + i % 32] = (x >> 8) as u8;
            let off = (x >> 7) as u64 % 0x500;
            a.write(off & !3, 4, x.rotate_left(7), &mut ram, x & 1 == 0);
            a.write(PORT_BASE + PX_CMD, 4, CMD_ST | CMD_FRE, &mut ram, true);
            a.write(PORT_BASE + PX_CI, 4, x, &mut ram, true);
            a.read(off, 4);
        }
    }

    #[test]
    fn hba_reset_and_comreset() {
        let (mut a, mut ram) = hba();
        a.write(PORT_BASE + PX_SCTL, 4, 1, &mut ram, true);
        assert_eq!(port(&mut a, PX_SSTS), 0);
        a.write(PORT_BASE + PX_SCTL, 4, 0, &mut ram, true);
        assert_eq!(port(&mut a, PX_SSTS), SSTS_DEVICE);
        assert_ne!(port(&mut a, PX_SERR) & SERR_DIAG_X, 0);
        a.write(HBA_GHC, 4, GHC_HR, &mut ram, true);
        assert_eq!(a.read(HBA_GHC, 4), GHC_AE);
        assert_eq!(port(&mut a, PX_CMD), 0);
        assert_eq!(port(&mut a, PX_CLB), 0);
    }
}
