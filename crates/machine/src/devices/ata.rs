//! An ATA hard disk behind a parallel-ATA (IDE) channel, programmed I/O only: the command
//! block registers (offsets 0-7, at 0x1F0 on the primary channel) and the control block
//! register (offset 0, at 0x3F6), two device positions per channel. No ATAPI.
//!
//! References: ATA/ATAPI-6 (T13/1410D) §5 (register definitions), §9 (protocols: PIO data-in,
//! PIO data-out, non-data, software reset) and ATA8-ACS (T13/1699-D) §7 (commands), §7.16
//! (IDENTIFY DEVICE data). The IDENTIFY data and the command-level checks here are shared with
//! the AHCI port ([`crate::devices::ahci`]).
//!
//! Commands complete at once: BSY is never seen set, INTRQ rises when a PIO block is ready or
//! a command ends, and the status register read clears it. Reads and writes to addresses past
//! the end of the disk end with ERR and IDNF; unknown commands end with ERR and ABRT.

use super::disk::{Disk, SECTOR_SIZE};

// Command block register offsets (ATA/ATAPI-6 §5, table 20).
/// Data (16 bits).
pub const REG_DATA: u16 = 0;
/// Error (read) / Features (write).
pub const REG_ERROR: u16 = 1;
/// Sector Count.
pub const REG_COUNT: u16 = 2;
/// LBA Low (sector number).
pub const REG_LBA_LOW: u16 = 3;
/// LBA Mid (cylinder low).
pub const REG_LBA_MID: u16 = 4;
/// LBA High (cylinder high).
pub const REG_LBA_HIGH: u16 = 5;
/// Device (drive/head).
pub const REG_DEVICE: u16 = 6;
/// Status (read) / Command (write).
pub const REG_STATUS: u16 = 7;
/// Control block: Alternate Status (read) / Device Control (write), offset 0.
pub const CTL_ALT_STATUS: u16 = 0;

// Status bits (ATA/ATAPI-6 §5.14.2).
/// BSY: the device is busy.
pub const ST_BSY: u8 = 0x80;
/// DRDY: the device is ready.
pub const ST_DRDY: u8 = 0x40;
/// DF: device fault.
pub const ST_DF: u8 = 0x20;
/// Device Seek Complete (obsolete since ATA-4; still set by devices for old software).
pub const ST_DSC: u8 = 0x10;
/// DRQ: data is ready to transfer.
pub const ST_DRQ: u8 = 0x08;
/// ERR: the command failed (see the error register).
pub const ST_ERR: u8 = 0x01;

// Error bits (ATA8-ACS §6.2).
/// ABRT: command aborted.
pub const ERR_ABRT: u8 = 0x04;
/// IDNF: sector address not found.
pub const ERR_IDNF: u8 = 0x10;
/// UNC: uncorrectable data error.
pub const ERR_UNC: u8 = 0x40;

// Device register bits (ATA/ATAPI-6 §5.6).
/// DEV: selects device 1.
pub const DEV_DEV1: u8 = 0x10;
/// LBA addressing (CHS when clear).
pub const DEV_LBA: u8 = 0x40;

// Device Control bits (ATA/ATAPI-6 §5.5).
/// nIEN: INTRQ disabled.
pub const DC_NIEN: u8 = 0x02;
/// SRST: software reset.
pub const DC_SRST: u8 = 0x04;
/// HOB: read the previous contents of the 48-bit registers.
pub const DC_HOB: u8 = 0x80;

// Command codes (ATA8-ACS §7, table B.2).
/// NOP.
pub const CMD_NOP: u8 = 0x00;
/// READ SECTORS (28-bit LBA, PIO).
pub const CMD_READ_SECTORS: u8 = 0x20;
/// READ SECTORS EXT (48-bit LBA, PIO).
pub const CMD_READ_SECTORS_EXT: u8 = 0x24;
/// READ DMA EXT.
pub const CMD_READ_DMA_EXT: u8 = 0x25;
/// READ MULTIPLE EXT.
pub const CMD_READ_MULTIPLE_EXT: u8 = 0x29;
/// WRITE SECTORS (28-bit LBA, PIO).
pub const CMD_WRITE_SECTORS: u8 = 0x30;
/// WRITE SECTORS EXT (48-bit LBA, PIO).
pub const CMD_WRITE_SECTORS_EXT: u8 = 0x34;
/// WRITE DMA EXT.
pub const CMD_WRITE_DMA_EXT: u8 = 0x35;
/// WRITE MULTIPLE EXT.
pub const CMD_WRITE_MULTIPLE_EXT: u8 = 0x39;
/// READ VERIFY SECTORS.
pub const CMD_READ_VERIFY: u8 = 0x40;
/// READ VERIFY SECTORS EXT.
pub const CMD_READ_VERIFY_EXT: u8 = 0x42;
/// SEEK.
pub const CMD_SEEK: u8 = 0x70;
/// EXECUTE DEVICE DIAGNOSTIC.
pub const CMD_EXECUTE_DEVICE_DIAGNOSTIC: u8 = 0x90;
/// INITIALIZE DEVICE PARAMETERS (CHS geometry).
pub const CMD_INITIALIZE_DEVICE_PARAMETERS: u8 = 0x91;
/// PACKET (ATAPI; aborted by a disk).
pub const CMD_PACKET: u8 = 0xa0;
/// IDENTIFY PACKET DEVICE (aborted by a disk).
pub const CMD_IDENTIFY_PACKET_DEVICE: u8 = 0xa1;
/// READ MULTIPLE.
pub const CMD_READ_MULTIPLE: u8 = 0xc4;
/// WRITE MULTIPLE.
pub const CMD_WRITE_MULTIPLE: u8 = 0xc5;
/// SET MULTIPLE MODE.
pub const CMD_SET_MULTIPLE_MODE: u8 = 0xc6;
/// READ DMA.
pub const CMD_READ_DMA: u8 = 0xc8;
/// WRITE DMA.
pub const CMD_WRITE_DMA: u8 = 0xca;
/// STANDBY IMMEDIATE.
pub const CMD_STANDBY_IMMEDIATE: u8 = 0xe0;
/// IDLE IMMEDIATE.
pub const CMD_IDLE_IMMEDIATE: u8 = 0xe1;
/// STANDBY.
pub const CMD_STANDBY: u8 = 0xe2;
/// IDLE.
pub const CMD_IDLE: u8 = 0xe3;
/// CHECK POWER MODE.
pub const CMD_CHECK_POWER_MODE: u8 = 0xe5;
/// FLUSH CACHE.
pub const CMD_FLUSH_CACHE: u8 = 0xe7;
/// IDENTIFY DEVICE.
pub const CMD_IDENTIFY_DEVICE: u8 = 0xec;
/// FLUSH CACHE EXT.
pub const CMD_FLUSH_CACHE_EXT: u8 = 0xea;
/// SET FEATURES.
pub const CMD_SET_FEATURES: u8 = 0xef;

/// Largest READ/WRITE MULTIPLE block (IDENTIFY word 47).
pub const MAX_MULTIPLE: u16 = 16;
/// Default logical geometry: heads and sectors per track (the usual translation for disks
/// larger than 504 MiB, ATA/ATAPI-6 annex B).
const DEFAULT_HEADS: u16 = 16;
const DEFAULT_SPT: u16 = 63;
/// Model string in IDENTIFY words 27-46.
pub const MODEL: &str = "SMMLAB HARDDISK";
/// Firmware revision in words 23-26.
pub const FIRMWARE: &str = "1.0";

/// How the disk is attached: PATA or SATA, with or without DMA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interface {
    /// Serial ATA (IDENTIFY word 76 and no hardware-reset word 93).
    pub sata: bool,
    /// DMA commands supported (word 49 bit 8, words 63 and 88).
    pub dma: bool,
}

/// The device-side state of one ATA disk (what survives between commands).
#[derive(Clone, Debug)]
pub struct AtaDisk {
    /// The disk image.
    pub disk: Disk,
    /// How it is attached: PATA or SATA, with or without DMA.
    pub interface: Interface,
    /// Sectors per READ/WRITE MULTIPLE block; 0 = multiple mode off.
    pub multiple: u16,
    /// Logical heads for CHS addressing.
    pub heads: u16,
    /// Logical sectors per track for CHS addressing.
    pub spt: u16,
    /// SET FEATURES transfer mode (sector count value of subcommand 03h).
    pub transfer_mode: u8,
    serial: String,
}

/// A command's address and length, decoded from the task file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// First sector.
    pub lba: u64,
    /// Number of sectors.
    pub count: u64,
}

impl AtaDisk {
    /// Disk `disk` behind `interface`; `serial_no` makes its IDENTIFY serial number.
    pub fn new(disk: Disk, interface: Interface, serial_no: u32) -> Self {
        AtaDisk {
            disk,
            interface,
            multiple: 0,
            heads: DEFAULT_HEADS,
            spt: DEFAULT_SPT,
            transfer_mode: 0,
            serial: format!("SMMLAB{serial_no:06}"),
        }
    }

    /// Default cylinders (IDENTIFY word 1), at most 16383 (ATA8-ACS §7.16.7.2).
    fn default_cylinders(&self) -> u16 {
        (self.disk.sectors() / (DEFAULT_HEADS as u64 * DEFAULT_SPT as u64)).clamp(1, 16383) as u16
    }

    /// Cylinders under the current logical geometry.
    fn current_cylinders(&self) -> u16 {
        (self.disk.sectors() / (self.heads as u64 * self.spt as u64).max(1)).clamp(1, 65535) as u16
    }

    /// The 256 words of IDENTIFY DEVICE (ATA8-ACS §7.16.7, table 22).
    pub fn identify(&self) -> [u16; 256] {
        let mut w = [0u16; 256];
        let sectors = self.disk.sectors();
        let lba28 = sectors.min(0x0fff_ffff) as u32;
        w[0] = 0x0040; // ATA device, fixed
        w[1] = self.default_cylinders();
        w[3] = DEFAULT_HEADS;
        // Words 4 and 5 are retired (ATA-1: unformatted bytes per track and per sector), but
        // Bochs (iodev/harddrv.cc) and QEMU (hw/ide/core.c) still fill them, and the Bochs
        // BIOS (bios/rombios.c, ata_detect) takes word 5 as the PIO block size of every
        // read: 0 there makes each INT 13h read transfer nothing and fail.
        w[4] = (SECTOR_SIZE as u16).wrapping_mul(DEFAULT_SPT);
        w[5] = SECTOR_SIZE as u16;
        w[6] = DEFAULT_SPT;
        put_string(&mut w[10..20], &self.serial);
        put_string(&mut w[23..27], FIRMWARE);
        put_string(&mut w[27..47], MODEL);
        w[47] = 0x8000 | MAX_MULTIPLE;
        // Capabilities: LBA (bit 9), IORDY (bit 11), DMA (bit 8).
        w[49] = 0x0a00 | if self.interface.dma { 0x0100 } else { 0 };
        w[50] = 0x4000;
        w[53] = 0x0007; // words 54-58, 64-70 and 88 valid
        let cyl = self.current_cylinders();
        w[54] = cyl;
        w[55] = self.heads;
        w[56] = self.spt;
        let chs = (cyl as u32 * self.heads as u32 * self.spt as u32).min(lba28);
        w[57] = chs as u16;
        w[58] = (chs >> 16) as u16;
        w[59] = if self.multiple != 0 { 0x0100 | self.multiple } else { 0 };
        w[60] = lba28 as u16;
        w[61] = (lba28 >> 16) as u16;
        if self.interface.dma {
            w[63] = 0x0007 | if self.transfer_mode & 0xf8 == 0x20 { 0x100 << (self.transfer_mode & 7) } else { 0 };
        }
        w[64] = 0x0003; // PIO modes 3 and 4
        w[65] = 120;
        w[66] = 120;
        w[67] = 120;
        w[68] = 120;
        if self.interface.sata {
            w[76] = 0x0002; // SATA Gen1 signalling
        }
        w[80] = 0x01f0; // ATA/ATAPI-4 .. ATA8-ACS
        w[82] = 0x4000; // NOP supported
        w[83] = 0x7400; // 48-bit address, FLUSH CACHE, FLUSH CACHE EXT
        w[84] = 0x4000;
        w[85] = 0x4000;
        w[86] = 0x3400;
        w[87] = 0x4000;
        if self.interface.dma {
            w[88] = 0x003f | if self.transfer_mode & 0xf8 == 0x40 { 0x100 << (self.transfer_mode & 7) } else { 0 };
        }
        if !self.interface.sata {
            // Hardware reset result (ATA/ATAPI-7 §6.17.49): word valid (14, 0), device 0
            // passed diagnostics (3), number set by jumper (2:1 = 01), device 0 answers for
            // an absent device 1 (6).
            w[93] = 0x404b;
        }
        for k in 0..4 {
            w[100 + k] = (sectors >> (16 * k)) as u16;
        }
        w[106] = 0x4000; // one 512-byte logical sector per physical sector
                         // Integrity word (§7.16.7.86): signature A5h and a checksum making all bytes sum to 0.
        w[255] = 0x00a5;
        let sum = w.iter().fold(0u8, |s, x| s.wrapping_add(*x as u8).wrapping_add((*x >> 8) as u8));
        w[255] |= (sum.wrapping_neg() as u16) << 8;
        w
    }

    /// IDENTIFY DEVICE as bytes, little-endian words.
    pub fn identify_bytes(&self) -> Vec<u8> {
        self.identify().iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// Whether the extent exists on the disk.
    pub fn in_range(&self, e: Extent) -> bool {
        self.disk.contains(e.lba, e.count)
    }

    /// SET FEATURES (ATA8-ACS §7.48): the subcommands a disk of this kind accepts. Returns
    /// false (abort) for others.
    pub fn set_features(&mut self, feature: u8, count: u8) -> bool {
        match feature {
            // Set transfer mode: default PIO, PIO flow control modes 0-4, and with DMA
            // multiword DMA 0-2 and Ultra DMA 0-5 (table 47).
            0x03 => {
                let ok = match count & 0xf8 {
                    0x00 => count <= 1,
                    0x08 => count & 7 <= 4,
                    0x20 => self.interface.dma && count & 7 <= 2,
                    0x40 => self.interface.dma && count & 7 <= 5,
                    _ => false,
                };
                if ok {
                    self.transfer_mode = count;
                }
                ok
            }
            // Write cache and read look-ahead on/off, reverting to power-on defaults.
            0x02 | 0x82 | 0x55 | 0xaa | 0x66 | 0xcc => true,
            _ => false,
        }
    }

    /// SET MULTIPLE MODE (ATA8-ACS §7.47): 0 disables, otherwise a power of two up to word
    /// 47. False aborts.
    pub fn set_multiple(&mut self, count: u8) -> bool {
        let c = count as u16;
        if c == 0 || (c.is_power_of_two() && c <= MAX_MULTIPLE) {
            self.multiple = c;
            true
        } else {
            false
        }
    }
}

/// Puts an ATA string: ASCII, space-padded, two characters per word with the first in the
/// high byte (ATA8-ACS §3.3.10).
fn put_string(words: &mut [u16], s: &str) {
    let mut bytes: Vec<u8> = s.bytes().take(words.len() * 2).collect();
    bytes.resize(words.len() * 2, b' ');
    for (w, pair) in words.iter_mut().zip(bytes.chunks(2)) {
        *w = (pair[0] as u16) << 8 | pair[1] as u16;
    }
}

/// A task-file register with the previous value kept for 48-bit commands (ATA/ATAPI-6
/// §5.2: writes push the old contents into the "previous" half that HOB reads).
#[derive(Clone, Copy, Debug, Default)]
struct Fifo {
    cur: u8,
    prev: u8,
}

impl Fifo {
    fn write(&mut self, v: u8) {
        self.prev = self.cur;
        self.cur = v;
    }
    fn read(&self, hob: bool) -> u8 {
        if hob {
            self.prev
        } else {
            self.cur
        }
    }
}

/// A PIO transfer in progress.
#[derive(Clone, Debug)]
struct Pio {
    buf: Vec<u8>,
    pos: usize,
    /// Data-out (host to device).
    write: bool,
    /// Next sector to transfer after this block, and sectors left after it.
    lba: u64,
    left: u64,
    /// Sectors per DRQ block.
    block: u64,
}

/// One device position (0 = master, 1 = slave).
#[derive(Clone, Debug, Default)]
struct Device {
    disk: Option<AtaDisk>,
    status: u8,
    error: u8,
    intrq: bool,
}

/// One IDE channel: two device positions sharing the task file.
#[derive(Clone, Debug, Default)]
pub struct IdeChannel {
    devices: [Device; 2],
    features: Fifo,
    count: Fifo,
    lba_low: Fifo,
    lba_mid: Fifo,
    lba_high: Fifo,
    device: u8,
    control: u8,
    pio: Option<Pio>,
}

impl IdeChannel {
    /// Attaches `disk` at position `dev` (0 master, 1 slave).
    pub fn attach(&mut self, dev: usize, disk: AtaDisk) {
        if let Some(d) = self.devices.get_mut(dev) {
            d.disk = Some(disk);
        }
        self.reset();
    }

    /// The disk at position `dev`.
    pub fn disk(&self, dev: usize) -> Option<&AtaDisk> {
        self.devices.get(dev).and_then(|d| d.disk.as_ref())
    }

    /// Whether any device is attached.
    pub fn is_empty(&self) -> bool {
        self.devices.iter().all(|d| d.disk.is_none())
    }

    fn sel(&self) -> usize {
        usize::from(self.device & DEV_DEV1 != 0)
    }

    /// INTRQ as the channel drives it: the selected device's pending interrupt unless nIEN.
    pub fn irq(&self) -> bool {
        self.devices[self.sel()].intrq && self.control & DC_NIEN == 0 && self.devices[self.sel()].disk.is_some()
    }

    /// Reset (power-on, or SRST released): each present device loads the ATA signature
    /// (ATA/ATAPI-6 §9.2: count 01h, LBA 01h/00h/00h, error 01h "no error detected").
    fn reset(&mut self) {
        self.pio = None;
        for d in &mut self.devices {
            d.status = if d.disk.is_some() { ST_DRDY | ST_DSC } else { 0 };
            d.error = 0x01;
            d.intrq = false;
        }
        self.count = Fifo { cur: 1, prev: 0 };
        self.lba_low = Fifo { cur: 1, prev: 0 };
        self.lba_mid = Fifo::default();
        self.lba_high = Fifo::default();
        self.device = 0;
    }

    /// Reads a command block register.
    pub fn read(&mut self, offset: u16, size: u8) -> u32 {
        if self.is_empty() {
            // No device drives the bus: the host's pull-down on DD7 makes status read 7Fh,
            // everything else floats high (ATA/ATAPI-6 §5.2.13 note).
            return match offset {
                REG_STATUS => 0x7f,
                _ => crate::pci::host::ones(size),
            };
        }
        let hob = self.control & DC_HOB != 0;
        let present = self.devices[self.sel()].disk.is_some();
        match offset {
            REG_DATA => self.data_read(size),
            REG_ERROR if present => self.devices[self.sel()].error as u32,
            REG_COUNT => self.count.read(hob) as u32,
            REG_LBA_LOW => self.lba_low.read(hob) as u32,
            REG_LBA_MID => self.lba_mid.read(hob) as u32,
            REG_LBA_HIGH => self.lba_high.read(hob) as u32,
            REG_DEVICE => self.device as u32,
            REG_STATUS if present => {
                let d = &mut self.devices[self.sel()];
                d.intrq = false;
                d.status as u32
            }
            // Device 0 answers for an absent device 1 with 00h (ATA/ATAPI-6 §9.16.1).
            _ => 0,
        }
    }

    /// Reads the control block (Alternate Status; does not clear INTRQ).
    pub fn read_control(&mut self, offset: u16) -> u32 {
        if offset != CTL_ALT_STATUS {
            return 0xff;
        }
        if self.is_empty() {
            return 0x7f;
        }
        self.devices[self.sel()].disk.as_ref().map_or(0, |_| self.devices[self.sel()].status as u32)
    }

    /// Writes the control block (Device Control).
    pub fn write_control(&mut self, offset: u16, value: u8) {
        if offset != CTL_ALT_STATUS {
            return;
        }
        let was_srst = self.control & DC_SRST != 0;
        self.control = value;
        if value & DC_SRST != 0 {
            // Held in reset: busy, transfer abandoned.
            self.pio = None;
            for d in &mut self.devices {
                if d.disk.is_some() {
                    d.status = ST_BSY;
                }
                d.intrq = false;
            }
        } else if was_srst {
            self.reset();
        }
    }

    /// Writes a command block register. Writes to the task file clear HOB (ATA/ATAPI-6 §5.5).
    pub fn write(&mut self, offset: u16, size: u8, value: u32) {
        if offset != REG_DATA && offset != REG_STATUS {
            self.control &= !DC_HOB;
        }
        let v = value as u8;
        match offset {
            REG_DATA => self.data_write(size, value),
            REG_ERROR => self.features.write(v),
            REG_COUNT => self.count.write(v),
            REG_LBA_LOW => self.lba_low.write(v),
            REG_LBA_MID => self.lba_mid.write(v),
            REG_LBA_HIGH => self.lba_high.write(v),
            REG_DEVICE => self.device = v,
            REG_STATUS => self.command(v),
            _ => {}
        }
    }

    fn data_read(&mut self, size: u8) -> u32 {
        let Some(p) = self.pio.as_mut().filter(|p| !p.write) else { return crate::pci::host::ones(size) };
        let mut v = 0u32;
        for k in 0..size.min(4) as usize {
            let b = p.buf.get(p.pos).copied().unwrap_or(0xff);
            v |= (b as u32) << (8 * k);
            p.pos = (p.pos + 1).min(p.buf.len());
        }
        if p.pos >= p.buf.len() {
            self.block_done();
        }
        v
    }

    fn data_write(&mut self, size: u8, value: u32) {
        let Some(p) = self.pio.as_mut().filter(|p| p.write) else { return };
        for k in 0..size.min(4) as usize {
            if let Some(b) = p.buf.get_mut(p.pos) {
                *b = (value >> (8 * k)) as u8;
                p.pos += 1;
            }
        }
        if p.pos >= p.buf.len() {
            self.block_done();
        }
    }

    /// A DRQ block has been transferred: commit a written block, then set up the next block
    /// or end the command.
    fn block_done(&mut self) {
        let Some(mut p) = self.pio.take() else { return };
        let dev = self.sel();
        if p.write {
            let n = (p.buf.len() / SECTOR_SIZE) as u64;
            let lba = p.lba - n;
            let ok = self.devices[dev].disk.as_mut().is_some_and(|d| d.disk.write(lba, &p.buf));
            if !ok {
                return self.finish_error(ERR_IDNF);
            }
        }
        if p.left == 0 {
            // Data-in ends without an interrupt; data-out interrupts at the end (§9.7, §9.8).
            let d = &mut self.devices[dev];
            d.status = ST_DRDY | ST_DSC;
            d.intrq |= p.write;
            return;
        }
        let n = p.block.min(p.left);
        let buf = if p.write {
            vec![0; n as usize * SECTOR_SIZE]
        } else {
            match self.devices[dev].disk.as_ref().and_then(|d| d.disk.read(p.lba, n)) {
                Some(b) => b.to_vec(),
                None => return self.finish_error(ERR_IDNF),
            }
        };
        p.buf = buf;
        p.pos = 0;
        p.lba += n;
        p.left -= n;
        self.pio = Some(p);
        let d = &mut self.devices[dev];
        d.status = ST_DRDY | ST_DSC | ST_DRQ;
        d.intrq = true;
    }

    fn finish_ok(&mut self) {
        let d = &mut self.devices[self.sel()];
        d.status = ST_DRDY | ST_DSC;
        d.error = 0;
        d.intrq = true;
    }

    fn finish_error(&mut self, error: u8) {
        self.pio = None;
        let d = &mut self.devices[self.sel()];
        d.status = ST_DRDY | ST_ERR;
        d.error = error;
        d.intrq = true;
    }

    /// The address and count of a 28-bit (LBA or CHS) or 48-bit command; `None` for a CHS
    /// address outside the logical geometry.
    fn extent(&self, lba48: bool, heads: u16, spt: u16) -> Option<Extent> {
        if lba48 {
            let lba = (self.lba_high.prev as u64) << 40
                | (self.lba_mid.prev as u64) << 32
                | (self.lba_low.prev as u64) << 24
                | (self.lba_high.cur as u64) << 16
                | (self.lba_mid.cur as u64) << 8
                | self.lba_low.cur as u64;
            let count = (self.count.prev as u64) << 8 | self.count.cur as u64;
            return Some(Extent { lba, count: if count == 0 { 65536 } else { count } });
        }
        let count = if self.count.cur == 0 { 256 } else { self.count.cur as u64 };
        if self.device & DEV_LBA != 0 {
            let lba = ((self.device & 0x0f) as u64) << 24
                | (self.lba_high.cur as u64) << 16
                | (self.lba_mid.cur as u64) << 8
                | self.lba_low.cur as u64;
            return Some(Extent { lba, count });
        }
        // CHS (ATA/ATAPI-6 §6.2.1): LBA = (C * heads + H) * spt + S - 1.
        let (c, h, s) = ((self.lba_high.cur as u64) << 8 | self.lba_mid.cur as u64, (self.device & 0x0f) as u64, self.lba_low.cur as u64);
        if s == 0 || s > spt as u64 || h >= heads as u64 {
            return None;
        }
        Some(Extent { lba: (c * heads as u64 + h) * spt as u64 + s - 1, count })
    }

    fn command(&mut self, cmd: u8) {
        let dev = self.sel();
        let Some(disk) = self.devices[dev].disk.as_ref() else { return };
        let (heads, spt, multiple_now) = (disk.heads, disk.spt, disk.multiple);
        if self.devices[dev].status & ST_BSY != 0 {
            return; // in reset
        }
        self.devices[dev].intrq = false;
        self.pio = None;
        let (feature, count) = (self.features.cur, self.count.cur);
        match cmd {
            CMD_IDENTIFY_DEVICE => {
                let buf = self.devices[dev].disk.as_ref().map(|d| d.identify_bytes()).unwrap_or_default();
                self.pio = Some(Pio { buf, pos: 0, write: false, lba: 0, left: 0, block: 1 });
                let d = &mut self.devices[dev];
                d.status = ST_DRDY | ST_DSC | ST_DRQ;
                d.error = 0;
                d.intrq = true;
            }
            CMD_READ_SECTORS
            | CMD_READ_SECTORS_EXT
            | CMD_READ_MULTIPLE
            | CMD_READ_MULTIPLE_EXT
            | CMD_WRITE_SECTORS
            | CMD_WRITE_SECTORS_EXT
            | CMD_WRITE_MULTIPLE
            | CMD_WRITE_MULTIPLE_EXT => {
                let lba48 = matches!(cmd, CMD_READ_SECTORS_EXT | CMD_READ_MULTIPLE_EXT | CMD_WRITE_SECTORS_EXT | CMD_WRITE_MULTIPLE_EXT);
                let multiple = matches!(cmd, CMD_READ_MULTIPLE | CMD_READ_MULTIPLE_EXT | CMD_WRITE_MULTIPLE | CMD_WRITE_MULTIPLE_EXT);
                let write = matches!(cmd, CMD_WRITE_SECTORS | CMD_WRITE_SECTORS_EXT | CMD_WRITE_MULTIPLE | CMD_WRITE_MULTIPLE_EXT);
                if multiple && multiple_now == 0 {
                    return self.finish_error(ERR_ABRT); // ATA8-ACS §7.26: multiple mode off
                }
                let block = if multiple { multiple_now as u64 } else { 1 };
                let Some(e) = self.extent(lba48, heads, spt) else {
                    return self.finish_error(ERR_IDNF);
                };
                let disk = self.devices[dev].disk.as_ref();
                if !disk.is_some_and(|d| d.in_range(e)) {
                    return self.finish_error(ERR_IDNF);
                }
                self.devices[dev].error = 0;
                // Prime the first block through the common block path.
                self.pio = Some(Pio { buf: Vec::new(), pos: 0, write, lba: e.lba, left: e.count, block });
                if write {
                    let n = block.min(e.count);
                    if let Some(p) = self.pio.as_mut() {
                        p.buf = vec![0; n as usize * SECTOR_SIZE];
                        p.lba += n;
                        p.left -= n;
                    }
                    // The first data-out block is requested without an interrupt (§9.8).
                    self.devices[dev].status = ST_DRDY | ST_DSC | ST_DRQ;
                } else {
                    self.block_done();
                }
            }
            CMD_READ_VERIFY | CMD_READ_VERIFY_EXT => {
                let e = self.extent(cmd == CMD_READ_VERIFY_EXT, heads, spt);
                let ok = e.is_some_and(|e| self.devices[dev].disk.as_ref().is_some_and(|d| d.in_range(e)));
                if ok {
                    self.finish_ok()
                } else {
                    self.finish_error(ERR_IDNF)
                }
            }
            CMD_SET_MULTIPLE_MODE => {
                if self.devices[dev].disk.as_mut().is_some_and(|d| d.set_multiple(count)) {
                    self.finish_ok()
                } else {
                    self.finish_error(ERR_ABRT)
                }
            }
            CMD_SET_FEATURES => {
                if self.devices[dev].disk.as_mut().is_some_and(|d| d.set_features(feature, count)) {
                    self.finish_ok()
                } else {
                    self.finish_error(ERR_ABRT)
                }
            }
            CMD_INITIALIZE_DEVICE_PARAMETERS => {
                // ATA/ATAPI-6 §8.16: heads = device bits 3:0 + 1, sectors per track = count.
                if count == 0 {
                    self.finish_error(ERR_ABRT)
                } else {
                    let heads = (self.device & 0x0f) as u16 + 1;
                    if let Some(d) = self.devices[dev].disk.as_mut() {
                        d.heads = heads;
                        d.spt = count as u16;
                    }
                    self.finish_ok()
                }
            }
            CMD_EXECUTE_DEVICE_DIAGNOSTIC => {
                self.reset();
                self.devices[0].intrq = true;
            }
            CMD_CHECK_POWER_MODE => {
                self.count.write(0xff); // active or idle
                self.finish_ok()
            }
            CMD_FLUSH_CACHE | CMD_FLUSH_CACHE_EXT | CMD_SEEK | CMD_STANDBY_IMMEDIATE | CMD_IDLE_IMMEDIATE | CMD_STANDBY | CMD_IDLE => {
                self.finish_ok()
            }
            // IDENTIFY PACKET DEVICE on an ATA device aborts with the ATA signature in the
            // registers (ATA8-ACS §7.17); PACKET, DMA and everything else abort.
            _ => self.finish_error(ERR_ABRT),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(sectors: usize) -> IdeChannel {
        let data: Vec<u8> = (0..sectors * 512).map(|i| (i / 512) as u8 ^ (i as u8)).collect();
        let mut c = IdeChannel::default();
        c.attach(0, AtaDisk::new(Disk::from_bytes(data).unwrap(), Interface { sata: false, dma: false }, 1));
        c
    }

    fn read_words(c: &mut IdeChannel, n: usize) -> Vec<u16> {
        (0..n).map(|_| c.read(REG_DATA, 2) as u16).collect()
    }

    fn sector_byte(lba: usize, i: usize) -> u8 {
        (lba as u8) ^ ((lba * 512 + i) as u8)
    }

    #[test]
    fn signature_after_reset_and_identify_contents() {
        let mut c = channel(1000);
        assert_eq!(c.read(REG_STATUS, 1), 0x50);
        assert_eq!((c.read(REG_COUNT, 1), c.read(REG_LBA_LOW, 1), c.read(REG_LBA_MID, 1)), (1, 1, 0));
        c.write(REG_DEVICE, 1, 0xa0);
        c.write(REG_STATUS, 1, CMD_IDENTIFY_DEVICE as u32);
        assert!(c.irq());
        assert_eq!(c.read_control(0) as u8 & ST_DRQ, ST_DRQ);
        assert!(c.irq(), "alternate status does not clear INTRQ");
        assert_eq!(c.read(REG_STATUS, 1) as u8, ST_DRDY | ST_DSC | ST_DRQ);
        assert!(!c.irq(), "status read clears INTRQ");
        let w = read_words(&mut c, 256);
        assert_eq!(c.read(REG_STATUS, 1) as u8 & (ST_BSY | ST_DRQ | ST_ERR), 0);
        assert_eq!(w[0], 0x0040);
        assert_eq!((w[4], w[5]), (512 * 63, 512), "retired words 4-5 as Bochs and QEMU fill them (the Bochs BIOS's block size)");
        assert_eq!((w[60] as u32) | (w[61] as u32) << 16, 1000);
        assert_eq!(w[100], 1000);
        assert_ne!(w[83] & (1 << 10), 0, "LBA48");
        let model: String = w[27..47].iter().flat_map(|x| [(*x >> 8) as u8 as char, *x as u8 as char]).collect();
        assert_eq!(model.trim_end(), MODEL);
        let sum = w.iter().fold(0u8, |s, x| s.wrapping_add(*x as u8).wrapping_add((*x >> 8) as u8));
        assert_eq!(sum, 0, "integrity word");
        assert_eq!(w[255] & 0xff, 0xa5);
    }

    #[test]
    fn read_sectors_lba28_two_sectors_with_interrupt_per_block() {
        let mut c = channel(100);
        c.write(REG_COUNT, 1, 2);
        c.write(REG_LBA_LOW, 1, 7);
        c.write(REG_LBA_MID, 1, 0);
        c.write(REG_LBA_HIGH, 1, 0);
        c.write(REG_DEVICE, 1, 0xe0);
        c.write(REG_STATUS, 1, CMD_READ_SECTORS as u32);
        assert!(c.irq());
        assert_eq!(c.read(REG_STATUS, 1) as u8, 0x58);
        let b: Vec<u8> = (0..512).map(|_| c.read(REG_DATA, 1) as u8).collect();
        assert_eq!(b[5], sector_byte(7, 5));
        assert!(c.irq(), "second block ready");
        assert_eq!(c.read(REG_STATUS, 1) as u8, 0x58);
        let d: Vec<u32> = (0..128).map(|_| c.read(REG_DATA, 4)).collect();
        assert_eq!(d[0] as u8, sector_byte(8, 0));
        assert_eq!(c.read(REG_STATUS, 1) as u8, 0x50);
    }

    #[test]
    fn read_ext_uses_the_previous_register_contents_and_hob() {
        let mut c = channel(0x300);
        for (r, v) in [
            (REG_COUNT, 0),
            (REG_LBA_LOW, 0),
            (REG_LBA_MID, 0),
            (REG_LBA_HIGH, 0),
            (REG_COUNT, 1),
            (REG_LBA_LOW, 0),
            (REG_LBA_MID, 2),
            (REG_LBA_HIGH, 0),
        ] {
            c.write(r, 1, v);
        }
        c.write(REG_DEVICE, 1, 0x40);
        c.write(REG_STATUS, 1, CMD_READ_SECTORS_EXT as u32);
        let w = read_words(&mut c, 256);
        assert_eq!(w[0] as u8, sector_byte(0x200, 0));
        c.write_control(0, DC_HOB);
        assert_eq!(c.read(REG_LBA_MID, 1), 0);
        c.write_control(0, 0);
        assert_eq!(c.read(REG_LBA_MID, 1), 2);
    }

    #[test]
    fn out_of_range_reads_and_chs_errors_report_idnf() {
        let mut c = channel(10);
        c.write(REG_COUNT, 1, 2);
        c.write(REG_LBA_LOW, 1, 9);
        c.write(REG_DEVICE, 1, 0xe0);
        c.write(REG_STATUS, 1, CMD_READ_SECTORS as u32);
        assert_eq!(c.read(REG_STATUS, 1) as u8, ST_DRDY | ST_ERR);
        assert_eq!(c.read(REG_ERROR, 1) as u8, ERR_IDNF);
        c.write(REG_DEVICE, 1, 0xa0 | 0x0f);
        c.write(REG_LBA_LOW, 1, 0);
        c.write(REG_STATUS, 1, CMD_READ_SECTORS as u32);
        assert_eq!(c.read(REG_ERROR, 1) as u8, ERR_IDNF, "sector 0 does not exist in CHS");
        c.write(REG_STATUS, 1, 0x12);
        assert_eq!(c.read(REG_ERROR, 1) as u8, ERR_ABRT);
        c.write(REG_STATUS, 1, CMD_READ_MULTIPLE as u32);
        assert_eq!(c.read(REG_ERROR, 1) as u8, ERR_ABRT, "multiple mode is off");
    }

    #[test]
    fn chs_read_uses_the_geometry_from_initialize_device_parameters() {
        let mut c = channel(200);
        c.write(REG_COUNT, 1, 10);
        c.write(REG_DEVICE, 1, 0xa0 | 3); // 4 heads
        c.write(REG_STATUS, 1, CMD_INITIALIZE_DEVICE_PARAMETERS as u32);
        assert_eq!(c.read(REG_STATUS, 1), 0x50);
        // C=1 H=2 S=3 -> (1*4 + 2) * 10 + 2 = 62
        c.write(REG_COUNT, 1, 1);
        c.write(REG_LBA_LOW, 1, 3);
        c.write(REG_LBA_MID, 1, 1);
        c.write(REG_LBA_HIGH, 1, 0);
        c.write(REG_DEVICE, 1, 0xa2);
        c.write(REG_STATUS, 1, CMD_READ_SECTORS as u32);
        assert_eq!(c.read(REG_DATA, 1) as u8, sector_byte(62, 0));
    }

    #[test]
    fn write_multiple_changes_only_the_copy() {
        let mut c = channel(64);
        c.write(REG_COUNT, 1, 4);
        c.write(REG_STATUS, 1, CMD_SET_MULTIPLE_MODE as u32);
        assert_eq!(c.read(REG_STATUS, 1), 0x50);
        c.write(REG_COUNT, 1, 3);
        c.write(REG_STATUS, 1, CMD_SET_MULTIPLE_MODE as u32);
        assert_eq!(c.read(REG_ERROR, 1) as u8, ERR_ABRT, "not a power of two");
        c.write(REG_COUNT, 1, 6);
        c.write(REG_LBA_LOW, 1, 10);
        c.write(REG_LBA_MID, 1, 0);
        c.write(REG_DEVICE, 1, 0xe0);
        c.write(REG_STATUS, 1, CMD_WRITE_MULTIPLE as u32);
        assert!(!c.irq(), "first data-out block without interrupt");
        assert_eq!(c.read(REG_STATUS, 1) as u8, 0x58);
        for i in 0..4 * 256 {
            c.write(REG_DATA, 2, 0xbeef ^ i);
        }
        assert!(c.irq());
        assert_eq!(c.read(REG_STATUS, 1) as u8, 0x58, "second block of 2 sectors");
        for i in 0..2 * 256 {
            c.write(REG_DATA, 2, 0x1234 ^ i);
        }
        assert!(c.irq());
        assert_eq!(c.read(REG_STATUS, 1), 0x50);
        let d = &c.disk(0).unwrap().disk;
        assert_eq!(&d.read(10, 1).unwrap()[..2], &[0xef, 0xbe]);
        assert_eq!(&d.read(15, 1).unwrap()[510..], &(0x1234u16 ^ 511).to_le_bytes());
        assert_eq!(d.read(16, 1).unwrap()[0], sector_byte(16, 0));
    }

    #[test]
    fn srst_busy_then_signature_and_nien_masks_irq() {
        let mut c = channel(8);
        c.write(REG_DEVICE, 1, 0xa0);
        c.write_control(0, DC_SRST | DC_NIEN);
        assert_eq!(c.read_control(0), ST_BSY as u32);
        c.write(REG_STATUS, 1, CMD_IDENTIFY_DEVICE as u32);
        c.write_control(0, DC_NIEN);
        assert_eq!(c.read_control(0), 0x50);
        assert_eq!(c.read(REG_ERROR, 1), 1);
        c.write(REG_STATUS, 1, CMD_FLUSH_CACHE as u32);
        assert!(!c.irq(), "nIEN");
        c.write_control(0, 0);
        assert!(c.irq());
    }

    #[test]
    fn absent_slave_reads_zero_status_and_empty_channel_floats() {
        let mut c = channel(8);
        c.write(REG_DEVICE, 1, 0xb0);
        assert_eq!(c.read(REG_STATUS, 1), 0);
        c.write(REG_COUNT, 1, 0x55);
        assert_eq!(c.read(REG_COUNT, 1), 0x55);
        c.write(REG_STATUS, 1, CMD_IDENTIFY_DEVICE as u32);
        assert_eq!(c.read(REG_STATUS, 1), 0, "commands to an absent device are ignored");
        let mut e = IdeChannel::default();
        assert_eq!(e.read(REG_STATUS, 1), 0x7f);
        assert_eq!(e.read_control(0), 0x7f);
        e.write(REG_COUNT, 1, 0x55);
        assert_eq!(e.read(REG_COUNT, 1), 0xff);
        assert_eq!(e.read(REG_DATA, 2), 0xffff);
    }

    #[test]
    fn set_features_accepts_pio_modes_and_rejects_dma_without_dma() {
        let mut c = channel(8);
        for (f, n, ok) in [(0x03, 0x0c, true), (0x03, 0x45, false), (0x02, 0, true), (0x99, 0, false)] {
            c.write(REG_ERROR, 1, f);
            c.write(REG_COUNT, 1, n);
            c.write(REG_STATUS, 1, CMD_SET_FEATURES as u32);
            assert_eq!(c.read(REG_STATUS, 1) as u8 & ST_ERR == 0, ok, "feature {f:#x} {n:#x}");
        }
    }

    #[test]
    fn guest_input_never_panics() {
        let mut c = channel(3);
        let mut x = 0x1234_5678u32;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let off = (x & 7) as u16;
            match (x >> 3) % 5 {
                0 => {
                    c.read(off, (1 << ((x >> 8) % 3)) as u8);
                }
                1 => c.write_control(0, (x >> 16) as u8 & !DC_SRST),
                2 => c.write(
                    REG_STATUS,
                    1,
                    [0x20, 0x24, 0x29, 0x30, 0x34, 0xc4, 0xc5, 0xc6, 0xec, 0x91, 0xef, 0x40][(x >> 12) as usize % 12],
                ),
                _ => c.write(off, (1 << ((x >> 8) % 3)) as u8, x >> 11),
            }
        }
    }
}
