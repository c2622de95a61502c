//! The three SMRAM state-save maps, each a single table of fields that SMM entry writes and RSM
//! reads back (one table, both directions).
//!
//! Offsets are relative to SMBASE + 0x8000, the form the Intel SDM (vol. 3C, 34.4) and the AMD
//! APM (vol. 2, 10.2) use: 0x7FFC is physical SMBASE + 0xFFFC.
//! - Legacy 32-bit (P6) map: the layout QEMU, KVM and Bochs write for CPUs without long mode
//!   (SDM table 34-1 plus the P6 descriptor caches).
//! - AMD64 map: AMD APM vol. 2, table 10-2.
//! - Intel-64 map: SDM table 34-3 (edk2 `SMRAM_SAVE_STATE_MAP64`). The documented map holds
//!   selectors only; like real CPUs, which keep descriptor caches in undocumented SMRAM, smmlab
//!   keeps them in the map's reserved area at 0x7C00-0x7C87.

/// Which map a CPU model uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapKind {
    /// The P6-style 32-bit map, for CPUs without long mode (revision level 0x0000).
    Legacy32,
    /// The AMD64 map (revision level 0x0064).
    Amd64,
    /// The Intel-64 map (revision level 0x0101), which starts at SMBASE + 0xFC00.
    Intel64,
}

/// Revision bit 16: I/O instruction restart supported. smmlab implements it.
pub const REV_IO_RESTART: u32 = 1 << 16;
/// Revision bit 17: SMBASE relocation supported.
pub const REV_SMBASE_RELOCATION: u32 = 1 << 17;

impl MapKind {
    /// The SMM revision identifier written at 0x7EFC.
    pub fn revision(self) -> u32 {
        let level = match self {
            MapKind::Legacy32 => 0x0000,
            MapKind::Amd64 => 0x0064,
            MapKind::Intel64 => 0x0101,
        };
        REV_SMBASE_RELOCATION | REV_IO_RESTART | level
    }
    /// First byte of the map, relative to SMBASE (the map always ends at SMBASE + 0xFFFF).
    pub fn start(self) -> u32 {
        match self {
            MapKind::Intel64 => 0xfc00,
            _ => 0xfe00,
        }
    }
    /// The field table.
    pub fn fields(self) -> &'static [Field] {
        match self {
            MapKind::Legacy32 => LEGACY32,
            MapKind::Amd64 => AMD64,
            MapKind::Intel64 => INTEL64,
        }
    }
    /// The field table resolved for the copy loops (built once per map).
    pub fn compiled(self) -> &'static [Compiled] {
        static TABLES: [std::sync::OnceLock<Vec<Compiled>>; 3] = [std::sync::OnceLock::new(), std::sync::OnceLock::new(), std::sync::OnceLock::new()];
        let i = match self {
            MapKind::Legacy32 => 0,
            MapKind::Amd64 => 1,
            MapKind::Intel64 => 2,
        };
        TABLES[i].get_or_init(|| {
            // A slot's word index is its offset inside an Image, measured on a real one.
            let mut probe = Image::default();
            let base = &probe as *const Image as usize;
            self.fields()
                .iter()
                .map(|f| {
                    let word = ((probe.slot_mut(f.slot) as *mut u64 as usize - base) / 8) as u8;
                    let at = f.off - 0x7c00;
                    // The copy loops rely on these bounds.
                    assert!((word as usize) < WORDS && at as usize + f.width as usize <= 0x400 && matches!(f.width, 1 | 2 | 4 | 8));
                    Compiled { at, width: f.width, word, shift: f.shift }
                })
                .collect()
        })
    }

    /// Offset and width of the I/O-restart field (AMD: a byte; Intel and P6: a word).
    pub fn io_restart(self) -> (u16, u8) {
        match self {
            MapKind::Amd64 => (0x7ec8, 1),
            _ => (0x7f00, 2),
        }
    }
    /// Offset and width of the auto-HALT restart field.
    pub fn auto_halt(self) -> (u16, u8) {
        match self {
            MapKind::Amd64 => (0x7ec9, 1),
            _ => (0x7f02, 2),
        }
    }
    /// Offset of SMBASE.
    pub fn smbase_offset(self) -> u16 {
        match self {
            MapKind::Amd64 => 0x7f00,
            _ => 0x7ef8,
        }
    }
}

/// A segment register as the maps store it; `attr` in the descriptor-high form
/// (type/S/DPL/P in bits 7:0, AVL/L/D/G in bits 15:12).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct SegImage {
    /// Selector.
    pub sel: u64,
    /// Attributes in the maps' form (access byte in 7:0, AVL/L/D/G in 15:12).
    pub attr: u64,
    /// Limit in bytes.
    pub limit: u64,
    /// Base address.
    pub base: u64,
}

/// Every value any map holds. Entry fills it from the CPU, then writes the map's fields;
/// RSM reads the fields into a zeroed image, then loads the CPU from it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Image {
    /// RAX..R15 in encoding order.
    pub gpr: [u64; 16],
    /// RIP of the interrupted program.
    pub rip: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// CR0.
    pub cr0: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// DR6.
    pub dr6: u64,
    /// DR7.
    pub dr7: u64,
    /// EFER.
    pub efer: u64,
    /// ES, CS, SS, DS, FS, GS.
    pub seg: [SegImage; 6],
    /// LDTR.
    pub ldtr: SegImage,
    /// TR.
    pub tr: SegImage,
    /// GDTR base.
    pub gdtr_base: u64,
    /// GDTR limit.
    pub gdtr_limit: u64,
    /// IDTR base.
    pub idtr_base: u64,
    /// IDTR limit.
    pub idtr_limit: u64,
    /// SMBASE (RSM takes a relocated value from here).
    pub smbase: u64,
    /// SMM revision identifier.
    pub revision: u64,
    /// I/O restart field: a handler writes 0xFF to re-execute the trapped I/O instruction.
    pub io_restart: u64,
    /// Auto-HALT restart field: bit 0 set when the SMI interrupted HLT.
    pub auto_halt: u64,
    /// NMI mask: whether NMIs were blocked at entry.
    pub nmi_mask: u64,
    /// Intel IOMisc / AMD I/O trap dword.
    pub io_info: u64,
    /// Intel IOMemAddr.
    pub io_mem_addr: u64,
    /// I/O restart RIP (AMD) or IO_RIP (Intel).
    pub io_rip: u64,
    /// RCX of the trapped I/O instruction (AMD I/O restart; coreboot documents it for Intel).
    pub io_rcx: u64,
    /// RSI of the trapped I/O instruction.
    pub io_rsi: u64,
    /// RDI of the trapped I/O instruction.
    pub io_rdi: u64,
}

/// Which value of an [`Image`] a field holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// A GPR, by encoding number.
    Gpr(u8),
    /// [`Image::rip`].
    Rip,
    /// [`Image::rflags`].
    Rflags,
    /// [`Image::cr0`].
    Cr0,
    /// [`Image::cr3`].
    Cr3,
    /// [`Image::cr4`].
    Cr4,
    /// [`Image::dr6`].
    Dr6,
    /// [`Image::dr7`].
    Dr7,
    /// [`Image::efer`].
    Efer,
    /// Selector of a segment register, by number (see [`crate::sreg`]).
    SegSel(u8),
    /// Attributes of a segment register.
    SegAttr(u8),
    /// Limit of a segment register.
    SegLimit(u8),
    /// Base of a segment register.
    SegBase(u8),
    /// LDTR selector.
    LdtrSel,
    /// LDTR attributes.
    LdtrAttr,
    /// LDTR limit.
    LdtrLimit,
    /// LDTR base.
    LdtrBase,
    /// TR selector.
    TrSel,
    /// TR attributes.
    TrAttr,
    /// TR limit.
    TrLimit,
    /// TR base.
    TrBase,
    /// [`Image::gdtr_base`].
    GdtrBase,
    /// [`Image::gdtr_limit`].
    GdtrLimit,
    /// [`Image::idtr_base`].
    IdtrBase,
    /// [`Image::idtr_limit`].
    IdtrLimit,
    /// [`Image::smbase`].
    Smbase,
    /// [`Image::revision`].
    Revision,
    /// [`Image::io_restart`].
    IoRestart,
    /// [`Image::auto_halt`].
    AutoHalt,
    /// [`Image::nmi_mask`].
    NmiMask,
    /// [`Image::io_info`].
    IoInfo,
    /// [`Image::io_mem_addr`].
    IoMemAddr,
    /// [`Image::io_rip`].
    IoRip,
    /// [`Image::io_rcx`].
    IoRcx,
    /// [`Image::io_rsi`].
    IoRsi,
    /// [`Image::io_rdi`].
    IoRdi,
}

/// One field: where, how wide, which value, and which bits of it (`shift` selects the high
/// half of a base split over two fields).
#[derive(Clone, Copy, Debug)]
pub struct Field {
    /// Offset in the SDM form (relative to SMBASE + 0x8000).
    pub off: u16,
    /// Width in bytes: 1, 2, 4 or 8.
    pub width: u8,
    /// The value it holds.
    pub slot: Slot,
    /// Right shift applied to the value before it is stored (32 for a high half).
    pub shift: u8,
}

const fn f(off: u16, width: u8, slot: Slot) -> Field {
    Field { off, width, slot, shift: 0 }
}
const fn hi(off: u16, slot: Slot) -> Field {
    Field { off, width: 4, slot, shift: 32 }
}

impl Image {
    /// The value a slot names.
    pub fn slot_mut(&mut self, s: Slot) -> &mut u64 {
        match s {
            Slot::Gpr(n) => &mut self.gpr[(n & 15) as usize],
            Slot::Rip => &mut self.rip,
            Slot::Rflags => &mut self.rflags,
            Slot::Cr0 => &mut self.cr0,
            Slot::Cr3 => &mut self.cr3,
            Slot::Cr4 => &mut self.cr4,
            Slot::Dr6 => &mut self.dr6,
            Slot::Dr7 => &mut self.dr7,
            Slot::Efer => &mut self.efer,
            Slot::SegSel(n) => &mut self.seg[(n as usize).min(5)].sel,
            Slot::SegAttr(n) => &mut self.seg[(n as usize).min(5)].attr,
            Slot::SegLimit(n) => &mut self.seg[(n as usize).min(5)].limit,
            Slot::SegBase(n) => &mut self.seg[(n as usize).min(5)].base,
            Slot::LdtrSel => &mut self.ldtr.sel,
            Slot::LdtrAttr => &mut self.ldtr.attr,
            Slot::LdtrLimit => &mut self.ldtr.limit,
            Slot::LdtrBase => &mut self.ldtr.base,
            Slot::TrSel => &mut self.tr.sel,
            Slot::TrAttr => &mut self.tr.attr,
            Slot::TrLimit => &mut self.tr.limit,
            Slot::TrBase => &mut self.tr.base,
            Slot::GdtrBase => &mut self.gdtr_base,
            Slot::GdtrLimit => &mut self.gdtr_limit,
            Slot::IdtrBase => &mut self.idtr_base,
            Slot::IdtrLimit => &mut self.idtr_limit,
            Slot::Smbase => &mut self.smbase,
            Slot::Revision => &mut self.revision,
            Slot::IoRestart => &mut self.io_restart,
            Slot::AutoHalt => &mut self.auto_halt,
            Slot::NmiMask => &mut self.nmi_mask,
            Slot::IoInfo => &mut self.io_info,
            Slot::IoMemAddr => &mut self.io_mem_addr,
            Slot::IoRip => &mut self.io_rip,
            Slot::IoRcx => &mut self.io_rcx,
            Slot::IoRsi => &mut self.io_rsi,
            Slot::IoRdi => &mut self.io_rdi,
        }
    }

    /// The image as a flat array of u64 (every field is a u64; `repr(C)`).
    fn words_mut(&mut self) -> &mut [u64; WORDS] {
        // SAFETY: Image is repr(C) and made only of u64 fields (SegImage too), so it has the
        // size and alignment of [u64; WORDS] (checked by the const assertion below).
        unsafe { &mut *(self as *mut Image as *mut [u64; WORDS]) }
    }

    /// Writes the image into `area` (the bytes from SMBASE + 0x8000 + 0x7C00 .. SMBASE + 0x10000,
    /// i.e. `area[off - 0x7C00]`), leaving bytes no field covers as they are.
    pub fn store(&mut self, kind: MapKind, area: &mut [u8; 0x400]) {
        let words = self.words_mut();
        for c in kind.compiled() {
            let (v, at) = (words[c.word as usize] >> c.shift, c.at as usize);
            match c.width {
                1 => area[at] = v as u8,
                2 => put(area, at, (v as u16).to_le_bytes()),
                4 => put(area, at, (v as u32).to_le_bytes()),
                _ => put(area, at, v.to_le_bytes()),
            }
        }
    }

    /// Reads an image from `area` (laid out as for [`Image::store`]).
    pub fn load(kind: MapKind, area: &[u8; 0x400]) -> Image {
        let mut img = Image::default();
        let words = img.words_mut();
        for c in kind.compiled() {
            let at = c.at as usize;
            let v = match c.width {
                1 => area[at] as u64,
                2 => u16::from_le_bytes(get(area, at)) as u64,
                4 => u32::from_le_bytes(get(area, at)) as u64,
                _ => u64::from_le_bytes(get(area, at)),
            };
            words[c.word as usize] |= v << c.shift;
        }
        img
    }
}

/// `N` bytes of the area at `at` (fixed-size, so the copy is one load; `compiled` keeps every
/// field inside the area, bytes past it would read as 0).
#[inline(always)]
fn get<const N: usize>(area: &[u8; 0x400], at: usize) -> [u8; N] {
    area.get(at..at + N).and_then(|s| s.try_into().ok()).unwrap_or([0; N])
}

/// Stores `N` bytes into the area at `at` (dropped if they would not fit; `compiled` keeps
/// every field inside the area).
#[inline(always)]
fn put<const N: usize>(area: &mut [u8; 0x400], at: usize, b: [u8; N]) {
    if let Some(s) = area.get_mut(at..at + N) {
        s.copy_from_slice(&b);
    }
}

/// Number of u64 words in an [`Image`].
const WORDS: usize = std::mem::size_of::<Image>() / 8;
const _: () = assert!(std::mem::size_of::<Image>() == WORDS * 8 && std::mem::align_of::<Image>() == 8);

/// A field resolved for the copy loops: byte offset in the 1 KiB area, width, word, shift.
#[derive(Clone, Copy, Debug)]
pub struct Compiled {
    at: u16,
    width: u8,
    word: u8,
    shift: u8,
}

use Slot::*;

/// Legacy 32-bit P6 map (revision level 0x0000). Descriptor caches are 12 bytes: attr, limit,
/// base. EFER at 0x7F10 as Bochs keeps it (a reserved dword in the SDM table).
static LEGACY32: &[Field] = &[
    f(0x7ffc, 4, Cr0),
    f(0x7ff8, 4, Cr3),
    f(0x7ff4, 4, Rflags),
    f(0x7ff0, 4, Rip),
    f(0x7fec, 4, Gpr(7)),
    f(0x7fe8, 4, Gpr(6)),
    f(0x7fe4, 4, Gpr(5)),
    f(0x7fe0, 4, Gpr(4)),
    f(0x7fdc, 4, Gpr(3)),
    f(0x7fd8, 4, Gpr(2)),
    f(0x7fd4, 4, Gpr(1)),
    f(0x7fd0, 4, Gpr(0)),
    f(0x7fcc, 4, Dr6),
    f(0x7fc8, 4, Dr7),
    f(0x7fc4, 4, TrSel),
    f(0x7fc0, 4, LdtrSel),
    f(0x7fa8, 4, SegSel(0)),
    f(0x7fac, 4, SegSel(1)),
    f(0x7fb0, 4, SegSel(2)),
    f(0x7fb4, 4, SegSel(3)),
    f(0x7fb8, 4, SegSel(4)),
    f(0x7fbc, 4, SegSel(5)),
    f(0x7f9c, 4, SegAttr(2)),
    f(0x7fa0, 4, SegLimit(2)),
    f(0x7fa4, 4, SegBase(2)),
    f(0x7f90, 4, SegAttr(1)),
    f(0x7f94, 4, SegLimit(1)),
    f(0x7f98, 4, SegBase(1)),
    f(0x7f84, 4, SegAttr(0)),
    f(0x7f88, 4, SegLimit(0)),
    f(0x7f8c, 4, SegBase(0)),
    f(0x7f78, 4, LdtrAttr),
    f(0x7f7c, 4, LdtrLimit),
    f(0x7f80, 4, LdtrBase),
    f(0x7f70, 4, GdtrLimit),
    f(0x7f74, 4, GdtrBase),
    f(0x7f5c, 4, TrAttr),
    f(0x7f60, 4, TrLimit),
    f(0x7f64, 4, TrBase),
    f(0x7f54, 4, IdtrLimit),
    f(0x7f58, 4, IdtrBase),
    f(0x7f44, 4, SegAttr(5)),
    f(0x7f48, 4, SegLimit(5)),
    f(0x7f4c, 4, SegBase(5)),
    f(0x7f38, 4, SegAttr(4)),
    f(0x7f3c, 4, SegLimit(4)),
    f(0x7f40, 4, SegBase(4)),
    f(0x7f2c, 4, SegAttr(3)),
    f(0x7f30, 4, SegLimit(3)),
    f(0x7f34, 4, SegBase(3)),
    f(0x7f14, 4, Cr4),
    f(0x7f10, 4, Efer),
    f(0x7f02, 2, AutoHalt),
    f(0x7f00, 2, IoRestart),
    f(0x7efc, 4, Revision),
    f(0x7ef8, 4, Smbase),
];

/// AMD64 map (AMD APM vol. 2, table 10-2). Segment entries: selector u16, attr u16, limit
/// u32, base u64.
static AMD64: &[Field] = &[
    f(0x7e00, 2, SegSel(0)),
    f(0x7e02, 2, SegAttr(0)),
    f(0x7e04, 4, SegLimit(0)),
    f(0x7e08, 8, SegBase(0)),
    f(0x7e10, 2, SegSel(1)),
    f(0x7e12, 2, SegAttr(1)),
    f(0x7e14, 4, SegLimit(1)),
    f(0x7e18, 8, SegBase(1)),
    f(0x7e20, 2, SegSel(2)),
    f(0x7e22, 2, SegAttr(2)),
    f(0x7e24, 4, SegLimit(2)),
    f(0x7e28, 8, SegBase(2)),
    f(0x7e30, 2, SegSel(3)),
    f(0x7e32, 2, SegAttr(3)),
    f(0x7e34, 4, SegLimit(3)),
    f(0x7e38, 8, SegBase(3)),
    f(0x7e40, 2, SegSel(4)),
    f(0x7e42, 2, SegAttr(4)),
    f(0x7e44, 4, SegLimit(4)),
    f(0x7e48, 8, SegBase(4)),
    f(0x7e50, 2, SegSel(5)),
    f(0x7e52, 2, SegAttr(5)),
    f(0x7e54, 4, SegLimit(5)),
    f(0x7e58, 8, SegBase(5)),
    f(0x7e64, 2, GdtrLimit),
    f(0x7e68, 8, GdtrBase),
    f(0x7e70, 2, LdtrSel),
    f(0x7e72, 2, LdtrAttr),
    f(0x7e74, 4, LdtrLimit),
    f(0x7e78, 8, LdtrBase),
    f(0x7e84, 2, IdtrLimit),
    f(0x7e88, 8, IdtrBase),
    f(0x7e90, 2, TrSel),
    f(0x7e92, 2, TrAttr),
    f(0x7e94, 4, TrLimit),
    f(0x7e98, 8, TrBase),
    f(0x7ea0, 8, IoRip),
    f(0x7ea8, 8, IoRcx),
    f(0x7eb0, 8, IoRsi),
    f(0x7eb8, 8, IoRdi),
    f(0x7ec0, 4, IoInfo),
    f(0x7ec8, 1, IoRestart),
    f(0x7ec9, 1, AutoHalt),
    f(0x7eca, 1, NmiMask),
    f(0x7ed0, 8, Efer),
    f(0x7efc, 4, Revision),
    f(0x7f00, 4, Smbase),
    f(0x7f48, 8, Cr4),
    f(0x7f50, 8, Cr3),
    f(0x7f58, 8, Cr0),
    f(0x7f60, 8, Dr7),
    f(0x7f68, 8, Dr6),
    f(0x7f70, 8, Rflags),
    f(0x7f78, 8, Rip),
    f(0x7f80, 8, Gpr(15)),
    f(0x7f88, 8, Gpr(14)),
    f(0x7f90, 8, Gpr(13)),
    f(0x7f98, 8, Gpr(12)),
    f(0x7fa0, 8, Gpr(11)),
    f(0x7fa8, 8, Gpr(10)),
    f(0x7fb0, 8, Gpr(9)),
    f(0x7fb8, 8, Gpr(8)),
    f(0x7fc0, 8, Gpr(7)),
    f(0x7fc8, 8, Gpr(6)),
    f(0x7fd0, 8, Gpr(5)),
    f(0x7fd8, 8, Gpr(4)),
    f(0x7fe0, 8, Gpr(3)),
    f(0x7fe8, 8, Gpr(2)),
    f(0x7ff0, 8, Gpr(1)),
    f(0x7ff8, 8, Gpr(0)),
];

/// Intel-64 map (SDM vol. 3C, table 34-3), plus smmlab's descriptor caches in the reserved area
/// at 0x7C00 (attr u32, limit u32, base u64 for ES, CS, SS, DS, FS, GS, LDTR, TR; then the GDTR
/// and IDTR limits).
static INTEL64: &[Field] = &[
    f(0x7c00, 4, SegAttr(0)),
    f(0x7c04, 4, SegLimit(0)),
    f(0x7c08, 8, SegBase(0)),
    f(0x7c10, 4, SegAttr(1)),
    f(0x7c14, 4, SegLimit(1)),
    f(0x7c18, 8, SegBase(1)),
    f(0x7c20, 4, SegAttr(2)),
    f(0x7c24, 4, SegLimit(2)),
    f(0x7c28, 8, SegBase(2)),
    f(0x7c30, 4, SegAttr(3)),
    f(0x7c34, 4, SegLimit(3)),
    f(0x7c38, 8, SegBase(3)),
    f(0x7c40, 4, SegAttr(4)),
    f(0x7c44, 4, SegLimit(4)),
    f(0x7c48, 8, SegBase(4)),
    f(0x7c50, 4, SegAttr(5)),
    f(0x7c54, 4, SegLimit(5)),
    f(0x7c58, 8, SegBase(5)),
    f(0x7c60, 4, LdtrAttr),
    f(0x7c64, 4, LdtrLimit),
    f(0x7c70, 4, TrAttr),
    f(0x7c74, 4, TrLimit),
    f(0x7c78, 8, TrBase),
    f(0x7c80, 4, GdtrLimit),
    f(0x7c84, 4, IdtrLimit),
    hi(0x7dd0, GdtrBase),
    hi(0x7dd4, LdtrBase),
    hi(0x7dd8, IdtrBase),
    f(0x7de0, 8, IoRdi),
    f(0x7de8, 8, IoRip),
    f(0x7df0, 8, IoRcx),
    f(0x7df8, 8, IoRsi),
    f(0x7e40, 4, Cr4),
    f(0x7e8c, 4, GdtrBase),
    f(0x7e94, 4, IdtrBase),
    f(0x7e9c, 4, LdtrBase),
    f(0x7ef8, 4, Smbase),
    f(0x7efc, 4, Revision),
    f(0x7f00, 2, IoRestart),
    f(0x7f02, 2, AutoHalt),
    f(0x7f1c, 8, Gpr(15)),
    f(0x7f24, 8, Gpr(14)),
    f(0x7f2c, 8, Gpr(13)),
    f(0x7f34, 8, Gpr(12)),
    f(0x7f3c, 8, Gpr(11)),
    f(0x7f44, 8, Gpr(10)),
    f(0x7f4c, 8, Gpr(9)),
    f(0x7f54, 8, Gpr(8)),
    f(0x7f5c, 8, Gpr(0)),
    f(0x7f64, 8, Gpr(1)),
    f(0x7f6c, 8, Gpr(2)),
    f(0x7f74, 8, Gpr(3)),
    f(0x7f7c, 8, Gpr(4)),
    f(0x7f84, 8, Gpr(5)),
    f(0x7f8c, 8, Gpr(6)),
    f(0x7f94, 8, Gpr(7)),
    f(0x7f9c, 8, IoMemAddr),
    f(0x7fa4, 4, IoInfo),
    f(0x7fa8, 4, SegSel(0)),
    f(0x7fac, 4, SegSel(1)),
    f(0x7fb0, 4, SegSel(2)),
    f(0x7fb4, 4, SegSel(3)),
    f(0x7fb8, 4, SegSel(4)),
    f(0x7fbc, 4, SegSel(5)),
    f(0x7fc0, 4, LdtrSel),
    f(0x7fc4, 4, TrSel),
    f(0x7fc8, 8, Dr7),
    f(0x7fd0, 8, Dr6),
    f(0x7fd8, 8, Rip),
    f(0x7fe0, 8, Efer),
    f(0x7fe8, 8, Rflags),
    f(0x7ff0, 8, Cr3),
    f(0x7ff8, 8, Cr0),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn overlaps(kind: MapKind) -> Option<(u16, u16)> {
        let mut used = [0u16; 0x400];
        for fl in kind.fields() {
            for b in 0..fl.width as u16 {
                let at = (fl.off + b - 0x7c00) as usize;
                if used[at] != 0 {
                    return Some((used[at], fl.off));
                }
                used[at] = fl.off;
            }
        }
        None
    }

    #[test]
    fn no_two_fields_of_a_map_share_a_byte() {
        for k in [MapKind::Legacy32, MapKind::Amd64, MapKind::Intel64] {
            assert_eq!(overlaps(k), None, "{k:?}");
            for fl in k.fields() {
                assert!(fl.off as u32 + 0x8000 >= k.start(), "{k:?} field {:#x} starts before the map", fl.off);
            }
        }
    }

    #[test]
    fn every_field_round_trips_through_memory() {
        for k in [MapKind::Legacy32, MapKind::Amd64, MapKind::Intel64] {
            let mut img = Image::default();
            // A distinct pattern per field, cut to the field's width.
            for (n, fl) in k.fields().iter().enumerate() {
                let v = 0x1111_1111_1111_1111u64.wrapping_mul(n as u64 + 1) & if fl.width == 8 { u64::MAX } else { (1u64 << (fl.width * 8)) - 1 };
                *img.slot_mut(fl.slot) |= v << fl.shift;
            }
            let mut area = [0u8; 0x400];
            img.store(k, &mut area);
            assert_eq!(Image::load(k, &area), img, "{k:?}");
        }
    }

    #[test]
    fn documented_offsets_hold_what_firmware_reads() {
        let mut img = Image { smbase: 0x30000, revision: MapKind::Amd64.revision() as u64, ..Default::default() };
        img.gpr[0] = 0xaaaa;
        let mut area = [0u8; 0x400];
        img.store(MapKind::Amd64, &mut area);
        let rd = |a: &[u8; 0x400], off: usize| u32::from_le_bytes(a[off - 0x7c00..off - 0x7c00 + 4].try_into().unwrap());
        assert_eq!(rd(&area, 0x7f00), 0x30000, "AMD64 SMBASE at 0x7F00");
        assert_eq!(rd(&area, 0x7efc), 0x00030064);
        assert_eq!(rd(&area, 0x7ff8), 0xaaaa, "RAX at 0x7FF8");
        let mut area = [0u8; 0x400];
        img.store(MapKind::Intel64, &mut area);
        assert_eq!(rd(&area, 0x7ef8), 0x30000, "Intel SMBASE at 0x7EF8");
        assert_eq!(rd(&area, 0x7f5c), 0xaaaa, "Intel RAX at 0x7F5C");
        let mut area = [0u8; 0x400];
        img.store(MapKind::Legacy32, &mut area);
        assert_eq!(rd(&area, 0x7ef8), 0x30000);
        assert_eq!(rd(&area, 0x7fd0), 0xaaaa, "P6 EAX at 0x7FD0");
    }
}
