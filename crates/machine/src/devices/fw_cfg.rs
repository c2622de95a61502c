//! QEMU's firmware configuration device (fw_cfg), I/O-port flavour, as documented in QEMU's
//! `docs/specs/fw_cfg.rst` (facts only): offset 0 (port 0x510) = 16-bit selector, offset 1
//! (0x511) = data byte, offsets 4-11 (0x514-0x51B) = DMA address, written as two big-endian
//! 32-bit halves (high at 0x514, then low at 0x518; the low write starts the transfer).
//!
//! A DMA transfer reads an `FWCfgDmaAccess` from guest memory: big-endian `u32 control`,
//! `u32 length`, `u64 address`. Control bits: ERROR 0x01, READ 0x02, SKIP 0x04, SELECT 0x08
//! (selector in bits 31:16), WRITE 0x10. On completion the device writes `control` back as 0
//! (or ERROR). The device has no memory access of its own: [`FwCfg::take_dma`] hands the
//! board the descriptor address and the board calls [`FwCfg::dma`] with its bus-master view
//! of memory ([`crate::board::dma`]), never with raw RAM.
//!
//! Items as QEMU 7.2 provides them for `pc`/`q35` with one CPU (`hw/nvram/fw_cfg.c`,
//! `hw/i386/fw_cfg.c`, facts only): signature "QEMU", id 3 (traditional + DMA), the legacy
//! keys firmware reads, and a file directory (key 0x19) whose files are numbered from 0x20
//! in name order. Unknown keys read as zeros, as in QEMU.

use super::{ones, PortDevice};
use crate::clock::Ticks;
use crate::pci::slots::Dma;
use std::collections::BTreeMap;

/// Selector of the "QEMU" signature.
pub const FW_CFG_SIGNATURE: u16 = 0x00;
/// Selector of the interface ID (traditional and DMA bits).
pub const FW_CFG_ID: u16 = 0x01;
/// Selector of the machine UUID.
pub const FW_CFG_UUID: u16 = 0x02;
/// Selector of the RAM size (legacy).
pub const FW_CFG_RAM_SIZE: u16 = 0x03;
/// Selector of the no-graphic flag.
pub const FW_CFG_NOGRAPHIC: u16 = 0x04;
/// Selector of the number of CPUs at boot.
pub const FW_CFG_NB_CPUS: u16 = 0x05;
/// Selector of the NUMA table.
pub const FW_CFG_NUMA: u16 = 0x0d;
/// Selector of the boot-menu flag.
pub const FW_CFG_BOOT_MENU: u16 = 0x0e;
/// Selector of the maximum number of CPUs.
pub const FW_CFG_MAX_CPUS: u16 = 0x0f;
/// Selector of the file directory.
pub const FW_CFG_FILE_DIR: u16 = 0x19;
/// The first file selector.
pub const FW_CFG_FILE_FIRST: u16 = 0x20;
/// Selector of the legacy ACPI tables.
pub const FW_CFG_ACPI_TABLES: u16 = 0x8000;
/// Selector of the legacy SMBIOS entries.
pub const FW_CFG_SMBIOS_ENTRIES: u16 = 0x8001;
/// Selector of the IRQ 0 override flag.
pub const FW_CFG_IRQ0_OVERRIDE: u16 = 0x8002;
/// ID bits: traditional interface, DMA interface.
pub const FW_CFG_VERSION: u32 = 0x01;
/// ID bit 1: the DMA interface.
pub const FW_CFG_VERSION_DMA: u32 = 0x02;
/// Port offsets.
pub const FW_CFG_PORT_SEL: u16 = 0;
/// Data port offset (8-bit reads).
pub const FW_CFG_PORT_DATA: u16 = 1;
/// DMA address register, high 32 bits (big-endian).
pub const FW_CFG_PORT_DMA_HIGH: u16 = 4;
/// DMA address register, low 32 bits (writing it starts the transfer).
pub const FW_CFG_PORT_DMA_LOW: u16 = 8;
/// The value the DMA address register reads as: "QEMU CFG", big-endian.
pub const FW_CFG_DMA_SIGNATURE: u64 = 0x5145_4d55_2043_4647;
/// FWCfgDmaAccess control bits.
pub const DMA_CTL_ERROR: u32 = 0x01;
/// DMA control READ: copy item data to guest memory.
pub const DMA_CTL_READ: u32 = 0x02;
/// DMA control SKIP: advance the item offset.
pub const DMA_CTL_SKIP: u32 = 0x04;
/// DMA control SELECT: select the item in bits 31:16 first.
pub const DMA_CTL_SELECT: u32 = 0x08;
/// DMA control WRITE: copy guest memory into the item.
pub const DMA_CTL_WRITE: u32 = 0x10;
/// File names.
pub const FILE_E820: &str = "etc/e820";
/// How long SeaBIOS waits before retrying a failed boot.
pub const FILE_BOOT_FAIL_WAIT: &str = "etc/boot-fail-wait";
/// The SMI features the platform offers (q35).
pub const FILE_SMI_SUPPORTED: &str = "etc/smi/supported-features";
/// The SMI features the firmware asks for (q35).
pub const FILE_SMI_REQUESTED: &str = "etc/smi/requested-features";
/// Writing it confirms the requested SMI features (q35).
pub const FILE_SMI_FEATURES_OK: &str = "etc/smi/features-ok";
/// The ACPI sleep states the platform supports.
pub const FILE_SYSTEM_STATES: &str = "etc/system-states";
/// Files QEMU always lists and smmlab has nothing to put in: the boot order (no device has a
/// bootindex), BIOS disk geometries (none set) and the TPM event log (no TPM). Firmware treats
/// an empty file as an absent one (SeaBIOS `romfile_loadfile`).
pub const EMPTY_FILES: [&str; 3] = ["bios-geometry", "bootorder", "etc/tpm/log"];
/// ICH9 SMI features QEMU 7.2 offers: broadcast (bit 0), CPU hotplug (1), hot-unplug (2).
pub const SMI_FEATURES_SUPPORTED: u64 = 0b111;
/// e820 entry types.
pub const E820_RAM: u32 = 1;
/// e820 reserved range.
pub const E820_RESERVED: u32 = 2;
/// AMD's HyperTransport reserved range just below 1 TiB, 0xFD_0000_0000-0xFF_FFFF_FFFF (AMD
/// I/O Virtualization Technology (IOMMU) Specification, §2.1.2 "IOMMU Restrictions"; the
/// family 10h+ BKDGs list it as reserved system address space). QEMU 7.2 lists it in
/// `etc/e820` as reserved for an AMD CPU with at least 40 physical address bits.
pub const AMD_HT_START: u64 = 0xfd_0000_0000;
/// Size of the HyperTransport range (up to 1 TiB).
pub const AMD_HT_SIZE: u64 = 0x100_0000_0000 - AMD_HT_START;

/// What the board describes to the device.
#[derive(Clone, Debug)]
pub struct FwCfgConfig {
    /// RAM below 4 GiB, in bytes.
    pub ram_size: u64,
    /// Whether the ICH9 SMI negotiation files exist (q35).
    pub smi_features: bool,
    /// The PM1_CNT sleep type of S5 (soft off), for `etc/system-states`.
    pub s5_sleep_type: u8,
    /// Number of CPUs.
    pub cpus: u16,
}

/// The device.
#[derive(Clone, Debug)]
pub struct FwCfg {
    items: BTreeMap<u16, Vec<u8>>,
    files: Vec<(String, u16)>,
    selector: u16,
    offset: usize,
    dma_high: u32,
    dma_request: Option<u64>,
    /// The ICH9 SMI features locked in by reading features-ok (q35).
    smi_negotiated: Option<u64>,
}

impl FwCfg {
    /// The device with the items `cfg` describes.
    pub fn new(cfg: &FwCfgConfig) -> Self {
        let mut items = BTreeMap::new();
        items.insert(FW_CFG_SIGNATURE, b"QEMU".to_vec());
        items.insert(FW_CFG_ID, (FW_CFG_VERSION | FW_CFG_VERSION_DMA).to_le_bytes().to_vec());
        items.insert(FW_CFG_UUID, vec![0; 16]);
        items.insert(FW_CFG_RAM_SIZE, cfg.ram_size.to_le_bytes().to_vec());
        items.insert(FW_CFG_NOGRAPHIC, 0u16.to_le_bytes().to_vec());
        items.insert(FW_CFG_NB_CPUS, cfg.cpus.to_le_bytes().to_vec());
        // Node count 0, then one u64 per possible APIC ID (no NUMA).
        items.insert(FW_CFG_NUMA, vec![0; 8 * (1 + cfg.cpus as usize)]);
        items.insert(FW_CFG_BOOT_MENU, 0u16.to_le_bytes().to_vec());
        items.insert(FW_CFG_MAX_CPUS, cfg.cpus.to_le_bytes().to_vec());
        items.insert(FW_CFG_ACPI_TABLES, 0u16.to_le_bytes().to_vec());
        items.insert(FW_CFG_IRQ0_OVERRIDE, 1u32.to_le_bytes().to_vec());
        let mut d = FwCfg { items, files: Vec::new(), selector: 0, offset: 0, dma_high: 0, dma_request: None, smi_negotiated: None };
        let mut e820 = Vec::new();
        e820.extend_from_slice(&0u64.to_le_bytes());
        e820.extend_from_slice(&cfg.ram_size.to_le_bytes());
        e820.extend_from_slice(&E820_RAM.to_le_bytes());
        d.add_file(FILE_E820, e820);
        // 0 ms: reboot at once after a boot failure (QEMU `-boot reboot-timeout=0`).
        d.add_file(FILE_BOOT_FAIL_WAIT, 0u32.to_le_bytes().to_vec());
        // The sleep states the platform has, indexed by state: bit 7 advertised, bits 6:0 the
        // PM1_CNT sleep type (QEMU's format; OVMF tests S3 in byte 3, bit 7). smmlab models S0
        // and S5 (soft off) only; QEMU also offers S3 and S4.
        let mut states = vec![0u8; 6];
        states[0] = 0x80;
        states[5] = 0x80 | (cfg.s5_sleep_type & 0x7f);
        d.add_file(FILE_SYSTEM_STATES, states);
        for name in EMPTY_FILES {
            d.add_file(name, Vec::new());
        }
        if cfg.smi_features {
            d.add_file(FILE_SMI_SUPPORTED, SMI_FEATURES_SUPPORTED.to_le_bytes().to_vec());
            d.add_file(FILE_SMI_REQUESTED, vec![0; 8]);
            d.add_file(FILE_SMI_FEATURES_OK, vec![0]);
        }
        d
    }

    /// Adds (or replaces) a file; keys are renumbered in name order as QEMU does.
    pub fn add_file(&mut self, name: &str, data: Vec<u8>) {
        let mut named: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for (n, k) in std::mem::take(&mut self.files) {
            named.insert(n, self.items.remove(&k).unwrap_or_default());
        }
        named.insert(name.to_string(), data);
        let mut dir = (named.len() as u32).to_be_bytes().to_vec();
        for (i, (n, data)) in named.into_iter().enumerate() {
            let key = FW_CFG_FILE_FIRST + i as u16;
            dir.extend_from_slice(&(data.len() as u32).to_be_bytes());
            dir.extend_from_slice(&key.to_be_bytes());
            dir.extend_from_slice(&[0, 0]);
            let mut nm = [0u8; 56];
            let b = n.as_bytes();
            nm[..b.len().min(55)].copy_from_slice(&b[..b.len().min(55)]);
            dir.extend_from_slice(&nm);
            self.items.insert(key, data);
            self.files.push((n, key));
        }
        self.items.insert(FW_CFG_FILE_DIR, dir);
    }

    /// Appends an entry to `etc/e820`.
    pub fn add_e820(&mut self, start: u64, len: u64, kind: u32) {
        let mut e820 = self.file(FILE_E820).map(<[u8]>::to_vec).unwrap_or_default();
        e820.extend_from_slice(&start.to_le_bytes());
        e820.extend_from_slice(&len.to_le_bytes());
        e820.extend_from_slice(&kind.to_le_bytes());
        self.add_file(FILE_E820, e820);
    }

    /// Puts an entry in front of the others in `etc/e820` (QEMU 7.2 lists the AMD
    /// HyperTransport range before RAM: its e820 table holds entries in the order the board
    /// adds them, and the reserved range comes first).
    pub fn prepend_e820(&mut self, start: u64, len: u64, kind: u32) {
        let mut e820 = Vec::new();
        e820.extend_from_slice(&start.to_le_bytes());
        e820.extend_from_slice(&len.to_le_bytes());
        e820.extend_from_slice(&kind.to_le_bytes());
        e820.extend_from_slice(self.file(FILE_E820).unwrap_or_default());
        self.add_file(FILE_E820, e820);
    }

    /// A file's contents.
    pub fn file(&self, name: &str) -> Option<&[u8]> {
        let (_, k) = self.files.iter().find(|(n, _)| n == name)?;
        self.items.get(k).map(|v| v.as_slice())
    }

    fn key_of(&self, name: &str) -> Option<u16> {
        self.files.iter().find(|(n, _)| n == name).map(|(_, k)| *k)
    }

    fn select(&mut self, key: u16) {
        self.selector = key;
        self.offset = 0;
        if self.key_of(FILE_SMI_FEATURES_OK) == Some(key) {
            self.smi_features_ok_selected();
        }
    }

    fn data_byte(&mut self) -> u8 {
        let b = self.items.get(&self.selector).and_then(|d| d.get(self.offset)).copied().unwrap_or(0);
        self.offset = self.offset.saturating_add(1);
        b
    }

    /// The address of a DMA descriptor the guest asked to process, if any.
    pub fn take_dma(&mut self) -> Option<u64> {
        self.dma_request.take()
    }

    /// Runs the DMA transfer whose descriptor is at `desc`, reaching guest memory only
    /// through `mem`, the board's bus-master view (the descriptor, the buffer and the control
    /// word written back alike). QEMU 7.2's transfer rules (`fw_cfg_dma_transfer` in
    /// `hw/nvram/fw_cfg.c`; facts only):
    /// * a descriptor that cannot be read gets ERROR written to its control word;
    /// * READ copies the item from the current offset and zero-fills what lies past its end;
    ///   WRITE stores into a writable item only when the whole length fits in it, and fails
    ///   past its end; SKIP only advances the offset; no operation bit means length 0;
    /// * the offset advances by the part inside the item; a memory access that fails (a
    ///   master abort) sets ERROR and ends the transfer;
    /// * the control word is then written back: 0, or ERROR.
    pub fn dma(&mut self, desc: u64, mem: &mut dyn Dma) {
        let mut d = [0u8; 16];
        if !mem.read(desc, &mut d) {
            mem.write(desc, &DMA_CTL_ERROR.to_be_bytes());
            return;
        }
        let control = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
        let mut left = u32::from_be_bytes([d[4], d[5], d[6], d[7]]) as u64;
        let mut address = u64::from_be_bytes([d[8], d[9], d[10], d[11], d[12], d[13], d[14], d[15]]);
        if control & DMA_CTL_SELECT != 0 {
            self.select((control >> 16) as u16);
        }
        let op = if control & DMA_CTL_READ != 0 {
            DMA_CTL_READ
        } else if control & DMA_CTL_WRITE != 0 {
            DMA_CTL_WRITE
        } else if control & DMA_CTL_SKIP != 0 {
            DMA_CTL_SKIP
        } else {
            left = 0;
            0
        };
        let writable = self.key_of(FILE_SMI_REQUESTED) == Some(self.selector);
        let mut status = 0;
        while left > 0 && status == 0 {
            let item = self.items.get_mut(&self.selector);
            let avail = item.as_ref().map_or(0, |v| v.len().saturating_sub(self.offset)) as u64;
            let n = if avail == 0 { left } else { left.min(avail) };
            let ok = match (op, item) {
                (DMA_CTL_READ, Some(item)) if avail > 0 => mem.write(address, &item[self.offset..self.offset + n as usize]),
                (DMA_CTL_READ, _) => zero_fill(mem, address, n),
                (DMA_CTL_WRITE, Some(item)) if avail > 0 && writable && n == left => {
                    let mut buf = vec![0u8; n as usize];
                    let ok = mem.read(address, &mut buf);
                    if ok {
                        item[self.offset..self.offset + n as usize].copy_from_slice(&buf);
                    }
                    ok
                }
                (DMA_CTL_WRITE, _) => false,
                _ => true,
            };
            if !ok {
                status = DMA_CTL_ERROR;
            }
            if avail > 0 {
                self.offset = self.offset.saturating_add(n as usize);
            }
            address = address.wrapping_add(n);
            left -= n;
        }
        mem.write(desc, &status.to_be_bytes());
    }

    /// QEMU 7.2's ICH9 negotiation (`hw/isa/lpc_ich9.c`, the features-ok select callback;
    /// facts only): writing `requested-features` only stores it; selecting `features-ok`
    /// checks the request then. A subset of the supported features (hotplug or hot-unplug only
    /// together with broadcast) is locked in as the negotiated set and features-ok becomes 1;
    /// otherwise it stays 0 and the guest may try again. Once 1, nothing changes any more, so
    /// a guest that reads features-ok before writing a request locks in no features.
    fn smi_features_ok_selected(&mut self) {
        if self.smi_negotiated.is_some() {
            return;
        }
        let Some(req) = self.file(FILE_SMI_REQUESTED) else { return };
        let req = u64::from_le_bytes(req.get(..8).and_then(|r| r.try_into().ok()).unwrap_or([0; 8]));
        const BROADCAST: u64 = 1 << 0;
        const HOTPLUG: u64 = (1 << 1) | (1 << 2);
        if req & !SMI_FEATURES_SUPPORTED != 0 || (req & HOTPLUG != 0 && req & BROADCAST == 0) {
            return;
        }
        self.smi_negotiated = Some(req);
        if let Some(k) = self.key_of(FILE_SMI_FEATURES_OK) {
            self.items.insert(k, vec![1]);
        }
    }

    /// The ICH9 SMI features the guest negotiated (0 until features-ok).
    pub fn smi_features(&self) -> u64 {
        self.smi_negotiated.unwrap_or(0)
    }
}

/// Writes `len` zero bytes at `addr` a page at a time (no buffer as large as the guest asks);
/// false if any part failed.
fn zero_fill(mem: &mut dyn Dma, addr: u64, len: u64) -> bool {
    const ZEROS: [u8; 4096] = [0; 4096];
    let (mut a, mut left, mut ok) = (addr, len, true);
    while left > 0 {
        let n = left.min(ZEROS.len() as u64);
        ok &= mem.write(a, &ZEROS[..n as usize]);
        a = a.wrapping_add(n);
        left -= n;
    }
    ok
}

impl PortDevice for FwCfg {
    fn read(&mut self, offset: u16, size: u8, _now: Ticks) -> u32 {
        match offset {
            FW_CFG_PORT_DATA => {
                let mut v = 0u32;
                for i in 0..size.min(4) {
                    v |= (self.data_byte() as u32) << (8 * i);
                }
                v
            }
            4..=11 => {
                // The signature in guest byte order: "QEMU CFG".
                let bytes = FW_CFG_DMA_SIGNATURE.to_be_bytes();
                let mut v = 0u32;
                for i in 0..size.min(4) as usize {
                    let o = offset as usize - 4 + i;
                    v |= (*bytes.get(o).unwrap_or(&0xff) as u32) << (8 * i);
                }
                v
            }
            _ => ones(size),
        }
    }

    fn write(&mut self, offset: u16, size: u8, value: u32, _now: Ticks) {
        match (offset, size) {
            (FW_CFG_PORT_SEL, 2) => self.select(value as u16),
            // The selector is 16 bits wide; a byte write still selects (low byte).
            (FW_CFG_PORT_SEL, 1) => self.select(value as u8 as u16),
            (FW_CFG_PORT_DMA_HIGH, 4) => self.dma_high = u32::from_be(value),
            (FW_CFG_PORT_DMA_LOW, 4) => {
                let addr = (self.dma_high as u64) << 32 | u32::from_be(value) as u64;
                self.dma_high = 0;
                self.dma_request = Some(addr);
            }
            // Data-port writes are ignored (QEMU 2.4 and later).
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(q35: bool) -> FwCfg {
        FwCfg::new(&FwCfgConfig { ram_size: 128 << 20, smi_features: q35, s5_sleep_type: if q35 { 7 } else { 0 }, cpus: 1 })
    }

    fn read_item(f: &mut FwCfg, key: u16, n: usize) -> Vec<u8> {
        f.write(FW_CFG_PORT_SEL, 2, key as u32, Ticks(0));
        (0..n).map(|_| f.read(FW_CFG_PORT_DATA, 1, Ticks(0)) as u8).collect()
    }

    #[test]
    fn signature_id_and_legacy_keys() {
        let mut f = dev(false);
        assert_eq!(read_item(&mut f, FW_CFG_SIGNATURE, 4), b"QEMU");
        assert_eq!(read_item(&mut f, FW_CFG_ID, 4), [3, 0, 0, 0]);
        assert_eq!(read_item(&mut f, FW_CFG_NB_CPUS, 2), [1, 0]);
        assert_eq!(read_item(&mut f, FW_CFG_MAX_CPUS, 2), [1, 0]);
        assert_eq!(read_item(&mut f, FW_CFG_RAM_SIZE, 8), (128u64 << 20).to_le_bytes());
        assert_eq!(read_item(&mut f, FW_CFG_IRQ0_OVERRIDE, 4), [1, 0, 0, 0]);
        assert_eq!(read_item(&mut f, FW_CFG_NOGRAPHIC, 2), [0, 0]);
        assert_eq!(read_item(&mut f, 0x1234, 2), [0, 0], "unknown keys read zeros");
    }

    #[test]
    fn file_directory_sorted_from_0x20() {
        let mut f = dev(true);
        let dir = read_item(&mut f, FW_CFG_FILE_DIR, 4 + 9 * 64);
        assert_eq!(&dir[..4], &9u32.to_be_bytes());
        let names: Vec<String> = (0..9)
            .map(|i| {
                let e = &dir[4 + 64 * i..4 + 64 * (i + 1)];
                assert_eq!(u16::from_be_bytes([e[4], e[5]]), 0x20 + i as u16);
                String::from_utf8_lossy(&e[8..]).trim_end_matches('\0').to_string()
            })
            .collect();
        assert_eq!(names, ["bios-geometry", "bootorder", FILE_BOOT_FAIL_WAIT, FILE_E820, FILE_SMI_OK_NAME, FILE_SMI_REQUESTED, FILE_SMI_SUPPORTED, FILE_SYSTEM_STATES, "etc/tpm/log"]);
        assert_eq!(f.file(FILE_SYSTEM_STATES), Some(&[0x80, 0, 0, 0, 0, 0x87][..]), "S0 and S5 (sleep type 7)");
        assert_eq!(f.file("bootorder").map(|b| b.len()), Some(0));
        assert_eq!(f.file(FILE_E820).map(|e| e.len()), Some(20));
        f.add_e820(AMD_HT_START, AMD_HT_SIZE, E820_RESERVED);
        let e = f.file(FILE_E820).unwrap();
        assert_eq!(e.len(), 40);
        assert_eq!(e[20..28], AMD_HT_START.to_le_bytes());
        assert_eq!(e[36..40], E820_RESERVED.to_le_bytes());
        let mut f = dev(false);
        f.prepend_e820(AMD_HT_START, AMD_HT_SIZE, E820_RESERVED);
        let e = f.file(FILE_E820).unwrap();
        assert_eq!(e.len(), 40);
        assert_eq!(e[0..8], AMD_HT_START.to_le_bytes());
        assert_eq!(e[20..28], 0u64.to_le_bytes(), "RAM second");
        assert_eq!(e[36..40], E820_RAM.to_le_bytes());
        assert!(dev(false).file(FILE_SMI_SUPPORTED).is_none(), "pc has no SMI negotiation");
    }
    const FILE_SMI_OK_NAME: &str = FILE_SMI_FEATURES_OK;

    fn desc(ram: &mut [u8], at: usize, control: u32, len: u32, addr: u64) {
        ram[at..at + 4].copy_from_slice(&control.to_be_bytes());
        ram[at + 4..at + 8].copy_from_slice(&len.to_be_bytes());
        ram[at + 8..at + 16].copy_from_slice(&addr.to_be_bytes());
    }

    #[test]
    fn dma_select_read_and_write_negotiation() {
        let mut f = dev(true);
        let mut ram = vec![0u8; 0x10000];
        desc(&mut ram, 0x100, (FW_CFG_SIGNATURE as u32) << 16 | DMA_CTL_SELECT | DMA_CTL_READ, 4, 0x200);
        f.write(FW_CFG_PORT_DMA_HIGH, 4, 0, Ticks(0));
        f.write(FW_CFG_PORT_DMA_LOW, 4, 0x100u32.to_be(), Ticks(0));
        let d = f.take_dma().unwrap();
        assert_eq!(d, 0x100);
        f.dma(d, &mut ram);
        assert_eq!(&ram[0x200..0x204], b"QEMU");
        assert_eq!(&ram[0x100..0x104], &[0, 0, 0, 0], "control cleared");
        // Negotiate broadcast.
        let key = f.key_of(FILE_SMI_REQUESTED).unwrap() as u32;
        ram[0x300..0x308].copy_from_slice(&1u64.to_le_bytes());
        desc(&mut ram, 0x100, key << 16 | DMA_CTL_SELECT | DMA_CTL_WRITE, 8, 0x300);
        f.dma(0x100, &mut ram);
        assert_eq!(f.file(FILE_SMI_FEATURES_OK), Some(&[0u8][..]), "the write only stores the request");
        let ok = f.key_of(FILE_SMI_FEATURES_OK).unwrap();
        assert_eq!(read_item(&mut f, ok, 1), [1], "selecting features-ok accepts it");
        assert_eq!(f.smi_features(), 1);
        // Locked: a later request changes nothing.
        ram[0x300..0x308].copy_from_slice(&7u64.to_le_bytes());
        f.dma(0x100, &mut ram);
        assert_eq!(read_item(&mut f, ok, 1), [1]);
        assert_eq!(f.smi_features(), 1);
    }

    #[test]
    fn smi_negotiation_refuses_bad_requests_and_locks_on_first_success() {
        let req_ok = |req: u64| {
            let mut f = dev(true);
            let (r, ok) = (f.key_of(FILE_SMI_REQUESTED).unwrap(), f.key_of(FILE_SMI_FEATURES_OK).unwrap());
            f.items.insert(r, req.to_le_bytes().to_vec());
            (read_item(&mut f, ok, 1)[0], f.smi_features())
        };
        assert_eq!(req_ok(0b1000), (0, 0), "unsupported bit");
        assert_eq!(req_ok(0b010), (0, 0), "hotplug without broadcast");
        assert_eq!(req_ok(0b111), (1, 0b111));
        // Reading features-ok first locks in the empty request, as QEMU does.
        let mut f = dev(true);
        let ok = f.key_of(FILE_SMI_FEATURES_OK).unwrap();
        assert_eq!(read_item(&mut f, ok, 1), [1]);
        assert_eq!(f.smi_features(), 0);
    }

    #[test]
    fn invalid_dma_and_port_accesses() {
        let mut f = dev(false);
        let mut ram = vec![0u8; 0x1000];
        // Destination outside RAM.
        desc(&mut ram, 0, (FW_CFG_ID as u32) << 16 | DMA_CTL_SELECT | DMA_CTL_READ, 4, 0x1_0000_0000);
        f.dma(0, &mut ram);
        assert_eq!(&ram[0..4], &DMA_CTL_ERROR.to_be_bytes());
        // Writing a read-only item fails.
        desc(&mut ram, 0, (FW_CFG_ID as u32) << 16 | DMA_CTL_SELECT | DMA_CTL_WRITE, 4, 0x100);
        f.dma(0, &mut ram);
        assert_eq!(&ram[0..4], &DMA_CTL_ERROR.to_be_bytes());
        // Descriptor outside RAM: nothing happens, no panic.
        f.dma(u64::MAX - 3, &mut ram);
        assert_eq!(f.read(2, 1, Ticks(0)), 0xff);
        assert_eq!(f.read(4, 4, Ticks(0)), u32::from_le_bytes(*b"QEMU"));
    }
}
