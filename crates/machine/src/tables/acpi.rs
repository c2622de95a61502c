//! The ACPI tables of the `pc` and `q35` boards, built by smmlab (ACPI Specification 6.4,
//! chapter 5): an RSDP (revision 0, ACPI 1.0 form, §5.2.5) pointing to an RSDT (§5.2.7) that
//! lists a FADT (§5.2.9, the 116-byte ACPI 1.0 layout) and a MADT (§5.2.12); the FADT points
//! to a FACS (§5.2.10) and a DSDT (§5.2.11.1).
//!
//! The tables describe the hardware firmware sets up: the ACPI PM I/O block at
//! [`PM_BASE`] (PM1a event at +0, PM1a control at +4, the PM timer at +8; the PIIX4 datasheet
//! §7.1 "Power Management Registers" and the ICH9 datasheet §13.8.3 "ACPI and Legacy I/O
//! Registers" give the offsets), the SMI command port 0xB2 with 0xF1/0xF0 as the ACPI
//! enable/disable commands the boards' APM SMI handlers understand, SCI on ISA IRQ 9, and in
//! the DSDT the PCI root bridge with the PS/2 keyboard and mouse and the RTC. SeaBIOS reads
//! the DSDT to learn whether a PS/2 keyboard exists (its EISA ID PNP0303).
//!
//! The files follow QEMU's fw_cfg interface: `etc/acpi/rsdp` (allocated in the F segment),
//! `etc/acpi/tables` (allocated in high memory) and `etc/table-loader`, the script of
//! [`super::loader`] that allocates them, links the pointers and sets the checksums. Like
//! QEMU, the table blob is padded to [`TABLES_BLOB_SIZE`] so the memory firmware reserves for
//! it does not depend on the tables' exact sizes. A FIRMWARE_CTRL, DSDT or RSDT entry holds
//! the offset of its target inside `etc/acpi/tables`; the loader adds the blob's address.

use super::aml;
use super::loader::{Loader, ZONE_FSEG, ZONE_HIGH};

/// fw_cfg file holding the RSDP.
pub const FILE_RSDP: &str = "etc/acpi/rsdp";
/// fw_cfg file holding the other tables.
pub const FILE_TABLES: &str = "etc/acpi/tables";
/// fw_cfg file holding the table-loader script.
pub const FILE_LOADER: &str = "etc/table-loader";
/// Where the tables say the PM I/O block is (the PMBASE firmware programs when these tables
/// exist; SeaBIOS moves its PM base from 0xB000 to 0x600 when it finds `etc/table-loader`).
pub const PM_BASE: u16 = 0x600;
/// PM1a_EVT_BLK (PM1_STS/PM1_EN), PM1a_CNT_BLK and PM_TMR_BLK offsets from the PM base.
pub const PM1_EVT_OFFSET: u16 = 0x00;
/// PM1a_CNT_BLK offset.
pub const PM1_CNT_OFFSET: u16 = 0x04;
/// PM_TMR_BLK offset.
pub const PM_TMR_OFFSET: u16 = 0x08;
/// The APM control port, where the ACPI enable/disable commands go (SMI_CMD).
pub const SMI_CMD_PORT: u32 = 0xb2;
/// The FADT's ACPI_ENABLE value for SMI_CMD.
pub const ACPI_ENABLE_CMD: u8 = 0xf1;
/// The FADT's ACPI_DISABLE value for SMI_CMD.
pub const ACPI_DISABLE_CMD: u8 = 0xf0;
/// SCI on ISA IRQ 9 (the PIIX4 and ICH9 default SCI routing).
pub const SCI_IRQ: u16 = 9;
/// The table blob's size, as QEMU pads `etc/acpi/tables` (128 KiB).
pub const TABLES_BLOB_SIZE: usize = 0x20000;
/// FADT flags (§5.2.9 table 5.10): WBINVD (bit 0), PROC_C1 (bit 2), SLP_BUTTON (bit 5:
/// no sleep button), RTC_S4 (bit 7).
pub const FADT_FLAGS: u32 = (1 << 0) | (1 << 2) | (1 << 5) | (1 << 7);
/// C2/C3 latencies above 100/1000 µs mean "not supported" (§5.2.9).
pub const P_LVL2_LAT_NONE: u16 = 0x0fff;
/// C3 latency meaning "no C3".
pub const P_LVL3_LAT_NONE: u16 = 0x0fff;
/// CMOS century byte index (the RTC's 0x32).
pub const CENTURY_CMOS_INDEX: u8 = 0x32;
/// MADT constants (§5.2.12): local APIC base, PCAT_COMPAT flag, I/O APIC base.
pub const LAPIC_ADDRESS: u32 = 0xfee0_0000;
/// MADT flag PCAT_COMPAT: the board also has 8259s.
pub const MADT_PCAT_COMPAT: u32 = 1;
/// The I/O APIC's MMIO base.
pub const IOAPIC_ADDRESS: u32 = 0xfec0_0000;

const OEM_ID: &[u8; 6] = b"SMMLAB";
const CREATOR_ID: &[u8; 4] = b"SMML";
const HEADER_LEN: usize = 36;

/// What differs between the boards.
#[derive(Clone, Debug)]
pub struct AcpiBoard {
    /// Name for the OEM table ID.
    pub oem_table_id: &'static [u8; 8],
    /// GPE0 block address and length.
    pub gpe0_blk: u32,
    /// GPE0 block length in bytes.
    pub gpe0_len: u8,
    /// The PCI root bridge's _HID (and _CID when it is PCI Express).
    pub root_hid: &'static str,
    /// The PCI root bridge's _CID, if any.
    pub root_cid: Option<&'static str>,
    /// The LPC/ISA bridge's _ADR (device << 16 | function).
    pub isa_adr: u32,
    /// ISA bridge device name.
    pub isa_name: &'static str,
    /// PM1_CNT.SLP_TYP for S5 (soft off).
    pub s5_slp_typ: u32,
}

impl AcpiBoard {
    /// i440FX + PIIX4: GPSTS/GPEN at PMBASE+0Ch (PIIX4 datasheet §7.1, 4 bytes); the PIIX3/4
    /// ISA bridge at 00:01.0; SLP_TYP 000b is soft off (PIIX4 §7.2.2 PMCNTRL).
    pub fn pc() -> Self {
        AcpiBoard {
            oem_table_id: b"SMMLABPC",
            gpe0_blk: PM_BASE as u32 + 0x0c,
            gpe0_len: 4,
            root_hid: "PNP0A03",
            root_cid: None,
            isa_adr: 0x0001_0000,
            isa_name: "ISA",
            s5_slp_typ: 0,
        }
    }

    /// Q35 + ICH9: GPE0_STS/GPE0_EN at PMBASE+20h, 16 bytes (ICH9 §13.8.3); the LPC bridge
    /// at 00:1F.0; the root is a PCI Express root (PNP0A08, compatible with PNP0A03); SLP_TYP
    /// 111b is soft off (ICH9 §13.8.3.3 PM1_CNT).
    pub fn q35() -> Self {
        AcpiBoard {
            oem_table_id: b"SMMLABQ3",
            gpe0_blk: PM_BASE as u32 + 0x20,
            gpe0_len: 16,
            root_hid: "PNP0A08",
            root_cid: Some("PNP0A03"),
            isa_adr: 0x001f_0000,
            isa_name: "LPC",
            s5_slp_typ: 7,
        }
    }
}

/// The three fw_cfg files.
#[derive(Clone, Debug)]
pub struct AcpiFiles {
    /// `etc/acpi/rsdp`.
    pub rsdp: Vec<u8>,
    /// `etc/acpi/tables`.
    pub tables: Vec<u8>,
    /// `etc/table-loader`.
    pub loader: Vec<u8>,
}

fn header(sig: &[u8; 4], len: usize, revision: u8, board: &AcpiBoard) -> Vec<u8> {
    let mut h = Vec::with_capacity(len);
    h.extend_from_slice(sig);
    h.extend_from_slice(&(len as u32).to_le_bytes());
    h.push(revision);
    h.push(0); // checksum, set by the loader
    h.extend_from_slice(OEM_ID);
    h.extend_from_slice(board.oem_table_id);
    h.extend_from_slice(&1u32.to_le_bytes()); // OEM revision
    h.extend_from_slice(CREATOR_ID);
    h.extend_from_slice(&1u32.to_le_bytes()); // creator revision
    h
}

/// A table: header with the final length, then `body`.
fn table(sig: &[u8; 4], revision: u8, board: &AcpiBoard, body: &[u8]) -> Vec<u8> {
    let mut t = header(sig, HEADER_LEN + body.len(), revision, board);
    t.extend_from_slice(body);
    t
}

fn facs() -> Vec<u8> {
    // §5.2.10: signature, length 64, hardware signature, waking vector, global lock, flags.
    let mut f = b"FACS".to_vec();
    f.extend_from_slice(&64u32.to_le_bytes());
    f.resize(64, 0);
    f
}

fn dsdt_aml(board: &AcpiBoard) -> Vec<u8> {
    use aml::*;
    let present = || name("_STA", integer(0x0f));
    let kbd = device(
        "KBD",
        &[name("_HID", eisa_id("PNP0303")), present(), name("_CRS", resource_template(&[io_port(0x60, 1), io_port(0x64, 1), irq(1)]))],
    );
    let mou = device("MOU", &[name("_HID", eisa_id("PNP0F13")), present(), name("_CRS", resource_template(&[irq(12)]))]);
    let rtc = device("RTC", &[name("_HID", eisa_id("PNP0B00")), name("_CRS", resource_template(&[io_port(0x70, 2), irq(8)]))]);
    let isa = device(board.isa_name, &[name("_ADR", integer(board.isa_adr)), kbd, mou, rtc]);
    let mut root = vec![name("_HID", eisa_id(board.root_hid))];
    if let Some(cid) = board.root_cid {
        root.push(name("_CID", eisa_id(cid)));
    }
    root.extend([name("_ADR", integer(0)), name("_UID", integer(0)), isa]);
    let sb = scope("\\_SB", &[device("PCI0", &root)]);
    let s5 = name("\\_S5", package(&[board.s5_slp_typ, board.s5_slp_typ, 0, 0]));
    [sb, s5].concat()
}

fn fadt_body(board: &AcpiBoard) -> Vec<u8> {
    let mut b = vec![0u8; 116 - HEADER_LEN];
    let put32 = |b: &mut Vec<u8>, off: usize, v: u32| b[off - HEADER_LEN..off - HEADER_LEN + 4].copy_from_slice(&v.to_le_bytes());
    // 36 FIRMWARE_CTRL and 40 DSDT are linked by the loader.
    b[44 - HEADER_LEN] = 1; // INT_MODEL (ACPI 1.0): multiple APIC
    b[46 - HEADER_LEN..48 - HEADER_LEN].copy_from_slice(&SCI_IRQ.to_le_bytes());
    put32(&mut b, 48, SMI_CMD_PORT);
    b[52 - HEADER_LEN] = ACPI_ENABLE_CMD;
    b[53 - HEADER_LEN] = ACPI_DISABLE_CMD;
    put32(&mut b, 56, (PM_BASE + PM1_EVT_OFFSET) as u32);
    put32(&mut b, 64, (PM_BASE + PM1_CNT_OFFSET) as u32);
    put32(&mut b, 76, (PM_BASE + PM_TMR_OFFSET) as u32);
    put32(&mut b, 80, board.gpe0_blk);
    b[88 - HEADER_LEN] = 4; // PM1_EVT_LEN
    b[89 - HEADER_LEN] = 2; // PM1_CNT_LEN
    b[91 - HEADER_LEN] = 4; // PM_TMR_LEN
    b[92 - HEADER_LEN] = board.gpe0_len;
    b[96 - HEADER_LEN..98 - HEADER_LEN].copy_from_slice(&P_LVL2_LAT_NONE.to_le_bytes());
    b[98 - HEADER_LEN..100 - HEADER_LEN].copy_from_slice(&P_LVL3_LAT_NONE.to_le_bytes());
    b[108 - HEADER_LEN] = CENTURY_CMOS_INDEX;
    put32(&mut b, 112, FADT_FLAGS);
    b
}

fn madt_body() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&LAPIC_ADDRESS.to_le_bytes());
    b.extend_from_slice(&MADT_PCAT_COMPAT.to_le_bytes());
    // Processor Local APIC (type 0): UID 0, APIC ID 0, enabled.
    b.extend_from_slice(&[0, 8, 0, 0, 1, 0, 0, 0]);
    // I/O APIC (type 1): ID 0, address, GSI base 0.
    b.extend_from_slice(&[1, 12, 0, 0]);
    b.extend_from_slice(&IOAPIC_ADDRESS.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    // Interrupt Source Overrides (type 2): IRQ 0 → GSI 2 (bus default flags); SCI IRQ 9 →
    // GSI 9, level-triggered active high (flags 0x000D).
    b.extend_from_slice(&[2, 10, 0, 0, 2, 0, 0, 0, 0, 0]);
    b.extend_from_slice(&[2, 10, 0, SCI_IRQ as u8, SCI_IRQ as u8, 0, 0, 0, 0x0d, 0]);
    // Local APIC NMI (type 4): all processors (UID 0xFF), LINT1.
    b.extend_from_slice(&[4, 6, 0xff, 0, 0, 1]);
    b
}

impl AcpiFiles {
    /// Adds the three files to `fw_cfg`.
    pub fn install(self, fw_cfg: &mut crate::devices::fw_cfg::FwCfg) {
        fw_cfg.add_file(FILE_RSDP, self.rsdp);
        fw_cfg.add_file(FILE_TABLES, self.tables);
        fw_cfg.add_file(FILE_LOADER, self.loader);
    }
}

/// Builds the tables and the loader script for `board`.
pub fn build(board: &AcpiBoard) -> AcpiFiles {
    let mut blob = Vec::new();
    let place = |blob: &mut Vec<u8>, t: Vec<u8>| {
        let at = blob.len();
        blob.extend(t);
        at
    };
    let facs_at = place(&mut blob, facs());
    let dsdt_at = place(&mut blob, table(b"DSDT", 1, board, &dsdt_aml(board)));
    let facp_at = place(&mut blob, table(b"FACP", 1, board, &fadt_body(board)));
    let madt_at = place(&mut blob, table(b"APIC", 1, board, &madt_body()));
    let rsdt_body: Vec<u8> = [facp_at as u32, madt_at as u32].iter().flat_map(|v| v.to_le_bytes()).collect();
    let rsdt_at = place(&mut blob, table(b"RSDT", 1, board, &rsdt_body));
    let rsdt_len = blob.len() - rsdt_at;
    // Links: FACP → FACS, DSDT; RSDT → FACP, MADT. The fields hold the targets' offsets.
    blob[facp_at + 36..facp_at + 40].copy_from_slice(&(facs_at as u32).to_le_bytes());
    blob[facp_at + 40..facp_at + 44].copy_from_slice(&(dsdt_at as u32).to_le_bytes());
    let len_at = |blob: &Vec<u8>, at: usize| u32::from_le_bytes([blob[at + 4], blob[at + 5], blob[at + 6], blob[at + 7]]);
    let (dsdt_len, facp_len, madt_len) = (len_at(&blob, dsdt_at), len_at(&blob, facp_at), len_at(&blob, madt_at));
    blob.resize(TABLES_BLOB_SIZE.max(blob.len()), 0);

    // RSDP revision 0 (20 bytes): signature, checksum, OEM ID, revision, RSDT address.
    let mut rsdp = b"RSD PTR ".to_vec();
    rsdp.push(0);
    rsdp.extend_from_slice(OEM_ID);
    rsdp.push(0);
    rsdp.extend_from_slice(&(rsdt_at as u32).to_le_bytes());

    let mut l = Loader::default();
    l.allocate(FILE_TABLES, 64, ZONE_HIGH);
    l.allocate(FILE_RSDP, 16, ZONE_FSEG);
    l.add_checksum(FILE_TABLES, dsdt_at as u32 + 9, dsdt_at as u32, dsdt_len);
    l.add_pointer(FILE_TABLES, FILE_TABLES, facp_at as u32 + 36, 4);
    l.add_pointer(FILE_TABLES, FILE_TABLES, facp_at as u32 + 40, 4);
    l.add_checksum(FILE_TABLES, facp_at as u32 + 9, facp_at as u32, facp_len);
    l.add_checksum(FILE_TABLES, madt_at as u32 + 9, madt_at as u32, madt_len);
    for k in 0..2u32 {
        l.add_pointer(FILE_TABLES, FILE_TABLES, rsdt_at as u32 + HEADER_LEN as u32 + 4 * k, 4);
    }
    l.add_checksum(FILE_TABLES, rsdt_at as u32 + 9, rsdt_at as u32, rsdt_len as u32);
    l.add_pointer(FILE_RSDP, FILE_TABLES, 16, 4);
    l.add_checksum(FILE_RSDP, 8, 0, 20);
    AcpiFiles { rsdp, tables: blob, loader: l.into_bytes() }
}

#[cfg(test)]
mod tests {
    use super::super::loader::{COMMAND_ADD_CHECKSUM, COMMAND_ADD_POINTER, COMMAND_ALLOCATE, COMMAND_SIZE};
    use super::*;

    /// Runs a loader script the way firmware does, with `etc/acpi/tables` at `tables_at` and
    /// the RSDP at `rsdp_at`, and returns both files.
    fn run(f: &AcpiFiles, tables_at: u32, rsdp_at: u32) -> (Vec<u8>, Vec<u8>) {
        let (mut t, mut r) = (f.tables.clone(), f.rsdp.clone());
        let fname = |b: &[u8]| String::from_utf8_lossy(&b[..b.iter().position(|&c| c == 0).unwrap_or(56)]).to_string();
        for c in f.loader.chunks(COMMAND_SIZE) {
            let cmd = u32::from_le_bytes(c[0..4].try_into().unwrap());
            let u = |o: usize| u32::from_le_bytes(c[o..o + 4].try_into().unwrap());
            match cmd {
                COMMAND_ALLOCATE => {}
                COMMAND_ADD_POINTER => {
                    let (dest, src, off) = (fname(&c[4..60]), fname(&c[60..116]), u(116) as usize);
                    let base = if src == FILE_TABLES { tables_at } else { rsdp_at };
                    let d = if dest == FILE_TABLES { &mut t } else { &mut r };
                    let v = u32::from_le_bytes(d[off..off + 4].try_into().unwrap()) + base;
                    d[off..off + 4].copy_from_slice(&v.to_le_bytes());
                }
                COMMAND_ADD_CHECKSUM => {
                    let (file, off, start, len) = (fname(&c[4..60]), u(60) as usize, u(64) as usize, u(68) as usize);
                    let d = if file == FILE_TABLES { &mut t } else { &mut r };
                    let sum = d[start..start + len].iter().fold(0u8, |a, &b| a.wrapping_add(b));
                    d[off] = d[off].wrapping_sub(sum);
                }
                other => panic!("command {other}"),
            }
        }
        (t, r)
    }

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, &x| a.wrapping_add(x))
    }

    #[test]
    fn linked_tables_are_valid() {
        for board in [AcpiBoard::pc(), AcpiBoard::q35()] {
            let f = build(&board);
            assert_eq!(f.tables.len(), TABLES_BLOB_SIZE);
            let base = 0x07fe_0000u32;
            let (t, r) = run(&f, base, 0xf5000);
            assert_eq!(&r[..8], b"RSD PTR ");
            assert_eq!(sum(&r[..20]), 0);
            let at = |a: u32| (a - base) as usize;
            let rd = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
            let rsdt = at(rd(&r, 16));
            assert_eq!(&t[rsdt..rsdt + 4], b"RSDT");
            let rlen = rd(&t, rsdt + 4) as usize;
            assert_eq!(sum(&t[rsdt..rsdt + rlen]), 0);
            let facp = at(rd(&t, rsdt + 36));
            assert_eq!(&t[facp..facp + 4], b"FACP");
            assert_eq!(rd(&t, facp + 4), 116);
            assert_eq!(sum(&t[facp..facp + 116]), 0);
            assert_eq!(rd(&t, facp + 48), 0xb2, "SMI_CMD");
            assert_eq!(rd(&t, facp + 56), 0x600, "PM1a_EVT_BLK");
            assert_eq!(rd(&t, facp + 76), 0x608, "PM_TMR_BLK");
            let madt = at(rd(&t, rsdt + 40));
            assert_eq!(&t[madt..madt + 4], b"APIC");
            assert_eq!(sum(&t[madt..madt + rd(&t, madt + 4) as usize]), 0);
            let facs = at(rd(&t, facp + 36));
            assert_eq!(&t[facs..facs + 4], b"FACS");
            assert_eq!(facs % 64, 0, "FACS 64-byte aligned");
            let dsdt = at(rd(&t, facp + 40));
            assert_eq!(&t[dsdt..dsdt + 4], b"DSDT");
            let dlen = rd(&t, dsdt + 4) as usize;
            assert_eq!(sum(&t[dsdt..dsdt + dlen]), 0);
            let aml = &t[dsdt + 36..dsdt + dlen];
            let kbd = [0x08, b'_', b'H', b'I', b'D', 0x0c, 0x41, 0xd0, 0x03, 0x03];
            assert!(aml.windows(kbd.len()).any(|w| w == kbd), "PS/2 keyboard PNP0303 in the DSDT");
        }
    }
}
