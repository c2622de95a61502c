//! The SMRAM state-save maps, only the fields the handler uses. Offsets are relative to
//! SMBASE + 0x8000, as in the SDM (vol. 3C, tables 34-1 and 34-3) and the AMD APM (vol. 2,
//! table 10-2). The map is chosen by the revision ID at 0x7EFC (SDM 34.5): level 0x0064 is the
//! AMD64 map, levels 0x0100/0x0101 the Intel-64 map, anything else the 32-bit map.

/// The revision ID's offset.
pub const REVISION: u64 = 0x7efc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Map {
    /// Legacy 32-bit (P6) map.
    Legacy32,
    Amd64,
    Intel64,
}

impl Map {
    pub fn from_revision(rev: u32) -> Map {
        match rev & 0xffff {
            0x0064 => Map::Amd64,
            0x0100 | 0x0101 => Map::Intel64,
            _ => Map::Legacy32,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Map::Legacy32 => "legacy32",
            Map::Amd64 => "amd64",
            Map::Intel64 => "intel64",
        }
    }

    /// The SMBASE field (where relocation writes the new SMBASE).
    pub fn smbase_offset(self) -> u64 {
        match self {
            Map::Amd64 => 0x7f00,
            _ => 0x7ef8,
        }
    }

    /// (offset, width in bytes) of a general-purpose register.
    pub fn gpr(self, r: Gpr) -> (u64, u64) {
        match (self, r) {
            (Map::Intel64, Gpr::Rax) => (0x7f5c, 8),
            (Map::Intel64, Gpr::Rcx) => (0x7f64, 8),
            (Map::Intel64, Gpr::Rdx) => (0x7f6c, 8),
            (Map::Intel64, Gpr::Rbx) => (0x7f74, 8),
            (Map::Amd64, Gpr::Rax) => (0x7ff8, 8),
            (Map::Amd64, Gpr::Rcx) => (0x7ff0, 8),
            (Map::Amd64, Gpr::Rdx) => (0x7fe8, 8),
            (Map::Amd64, Gpr::Rbx) => (0x7fe0, 8),
            (Map::Legacy32, Gpr::Rax) => (0x7fd0, 4),
            (Map::Legacy32, Gpr::Rcx) => (0x7fd4, 4),
            (Map::Legacy32, Gpr::Rdx) => (0x7fd8, 4),
            (Map::Legacy32, Gpr::Rbx) => (0x7fdc, 4),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gpr {
    Rax,
    Rcx,
    Rdx,
    Rbx,
}

/// The save state of the CPU in SMM, at `smbase + 0x8000` (an address the caller can access).
#[derive(Clone, Copy, Debug)]
pub struct SaveState {
    pub base: u64,
    pub map: Map,
}

impl SaveState {
    /// # Safety
    /// `smbase + 0x8000 + 0x8000` bytes must be accessible (SMRAM, in SMM).
    pub unsafe fn new(smbase: u64) -> SaveState {
        let base = smbase + 0x8000;
        // SAFETY: the caller promises the save area below smbase + 0x10000 is accessible; the
        // revision field lies in it.
        let rev = unsafe { core::ptr::read_volatile((base + REVISION) as *const u32) };
        SaveState { base, map: Map::from_revision(rev) }
    }

    pub fn revision(&self) -> u32 {
        // SAFETY: as promised to `new`.
        unsafe { core::ptr::read_volatile((self.base + REVISION) as *const u32) }
    }

    pub fn read(&self, r: Gpr) -> u64 {
        let (off, w) = self.map.gpr(r);
        let p = self.base + off;
        // SAFETY: as promised to `new`; the Intel-64 fields are only 4-byte aligned.
        unsafe {
            if w == 8 {
                core::ptr::read_unaligned(p as *const u64)
            } else {
                core::ptr::read_volatile(p as *const u32) as u64
            }
        }
    }

    pub fn write(&self, r: Gpr, v: u64) {
        let (off, w) = self.map.gpr(r);
        let p = self.base + off;
        // SAFETY: as above.
        unsafe {
            if w == 8 {
                core::ptr::write_unaligned(p as *mut u64, v)
            } else {
                core::ptr::write_volatile(p as *mut u32, v as u32)
            }
        }
    }
}

/// The I/O instruction an I/O-trap SMI interrupted (SDM table 34-7 IO_MISC at 0x7FA4 in the
/// Intel-64 map; AMD APM vol. 2 10.2.4, the I/O trap dword at 0x7EC0 in the AMD64 map).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoInfo {
    pub port: u16,
    /// 1, 2 or 4 bytes.
    pub size: u8,
    /// IN (true) or OUT.
    pub input: bool,
}

impl SaveState {
    /// The trapped I/O instruction, if the SMI came from an I/O trap.
    pub fn io_info(&self) -> Option<IoInfo> {
        let off = if self.map == Map::Amd64 { 0x7ec0 } else { 0x7fa4 };
        // SAFETY: as promised to `new`.
        let v = unsafe { core::ptr::read_volatile((self.base + off) as *const u32) };
        let port = (v >> 16) as u16;
        match self.map {
            Map::Amd64 if v & 2 != 0 => {
                let size = if v & (1 << 4) != 0 { 1 } else if v & (1 << 5) != 0 { 2 } else { 4 };
                Some(IoInfo { port, size, input: v & 1 != 0 })
            }
            Map::Intel64 | Map::Legacy32 if v & 1 != 0 => Some(IoInfo { port, size: ((v >> 1) & 7) as u8, input: (v >> 4) & 1 != 0 }),
            _ => None,
        }
    }

    /// Answers a trapped IN: replaces the low `size` bytes of the saved RAX with `value`.
    pub fn answer_in(&self, io: IoInfo, value: u32) {
        let mask: u64 = match io.size {
            1 => 0xff,
            2 => 0xffff,
            _ => 0xffff_ffff,
        };
        // A 32-bit IN zero-extends into RAX in 64-bit mode; 8/16-bit ones merge.
        let rax = if io.size == 4 { 0 } else { self.read(Gpr::Rax) };
        self.write(Gpr::Rax, (rax & !mask) | (value as u64 & mask));
    }
}
