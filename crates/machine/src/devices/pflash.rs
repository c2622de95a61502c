//! A CFI parallel flash with the Intel/Sharp command set, as QEMU's `cfi.pflash01` presents it
//! to firmware on q35 and pc (8-bit wide, 4 KiB blocks): read array, read status (0x70), clear
//! status (0x50), byte program (0x10/0x40), block erase (0x20/0x28 then 0xD0), write to buffer
//! (0xE8, count, data, 0xD0), block lock/unlock (0x60 then 0x01/0xD0, accepted and ignored),
//! read identifier (0x90) and the CFI query (0x98). Intel's 28F-series datasheets and the JEDEC
//! CFI specification (JESD68) describe the commands and the query table.
//!
//! With `secure` (QEMU's `secure=on`, what OVMF's SMM variable store needs) only accesses made
//! in SMM may write: other writes are refused and counted, and reads from outside SMM always
//! see the array, whatever mode the flash is in. A read-only unit accepts the commands but a
//! program or erase sets the status register's error bits, as a write-protected part does.
//!
//! In read-array mode the CPU reads the bytes directly (the board hands it the pages); any
//! other mode goes through [`Pflash::read`], and the board flushes the CPU's host pages when the
//! mode changes ([`Pflash::take_mode_change`]).

use crate::memory::MemoryBlock;

/// The erase block size QEMU's PC flash uses.
pub const BLOCK_SIZE: u64 = 4096;
/// Bytes of the write buffer (0xE8) of an 8-bit part.
const WRITE_BUFFER: u64 = 16;

/// Status register bits.
mod sr {
    /// Write state machine ready.
    pub const READY: u8 = 0x80;
    /// Erase error (or a bad command sequence).
    pub const ERASE_ERROR: u8 = 0x20;
    /// Program error.
    pub const PROGRAM_ERROR: u8 = 0x10;
}

/// What the next read returns and what the next write means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Reads see the array.
    ReadArray,
    /// Reads see the status register.
    ReadStatus,
    /// Reads see the manufacturer and device codes.
    ReadId,
    /// Reads see the CFI query table.
    Query,
    /// The next write is the byte to program.
    Program,
    /// The next write confirms (0xD0) the erase of a block.
    EraseSetup,
    /// The next write is the buffer's byte count minus one.
    BufferCount,
    /// `left` more data bytes, then the confirm.
    BufferData { left: u64 },
    /// The next write is the buffer write's confirm (0xD0).
    BufferConfirm,
    /// The next write confirms a block lock (0x01) or unlock (0xD0).
    LockSetup,
}

/// What a write did, for the board's counts and alerts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// A command or data byte was taken.
    Taken,
    /// A write from outside SMM to a secure part: dropped.
    Refused,
}

/// One flash unit.
pub struct Pflash {
    bytes: MemoryBlock,
    readonly: bool,
    secure: bool,
    mode: Mode,
    status: u8,
    /// The buffered write in progress: its start and data.
    buffer: (u64, Vec<u8>),
    /// The array changed since the last [`Pflash::take_dirty`].
    dirty: bool,
    /// The read mode changed (array or not) since the last [`Pflash::take_mode_change`].
    mode_changed: bool,
    /// Writes taken from SMM and refused from outside it.
    pub writes_smm: u64,
    /// Writes refused (from outside SMM to a secure part).
    pub writes_refused: u64,
    /// Writes taken from outside SMM (a part that is not secure).
    pub writes_other: u64,
    /// Program and erase commands a read-only unit failed.
    pub writes_failed: u64,
    /// The array differs from the image the unit was made with (it has to be written back).
    modified: bool,
    cfi: [u8; 0x52],
}

impl Pflash {
    /// A unit holding `image` (a whole number of [`BLOCK_SIZE`] blocks; the caller checks).
    pub fn new(image: &[u8], readonly: bool, secure: bool) -> Self {
        Pflash {
            bytes: MemoryBlock::from_bytes(image),
            readonly,
            secure,
            mode: Mode::ReadArray,
            status: 0,
            buffer: (0, Vec::new()),
            dirty: false,
            mode_changed: false,
            writes_smm: 0,
            writes_refused: 0,
            writes_other: 0,
            writes_failed: 0,
            modified: false,
            cfi: cfi_table(image.len() as u64),
        }
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.bytes.len()
    }

    /// Whether the unit has no bytes.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Whether reads see the array, so the CPU may read the bytes directly.
    pub fn reads_array(&self) -> bool {
        self.mode == Mode::ReadArray
    }

    /// Whether an access in SMM (`smm`) or not reads the array, so the CPU may read the bytes
    /// directly: in read-array mode, and always from outside SMM on a secure part.
    pub fn direct_reads(&self, smm: bool) -> bool {
        self.mode == Mode::ReadArray || (self.secure && !smm)
    }

    /// Whether the unit is read-only.
    pub fn readonly(&self) -> bool {
        self.readonly
    }

    /// Whether the array was programmed or erased since the unit was made.
    pub fn modified(&self) -> bool {
        self.modified
    }

    /// A host pointer to the page at `off`, for direct reads while in read-array mode.
    pub fn page_ptr(&self, off: u64) -> Option<std::ptr::NonNull<u8>> {
        self.bytes.page_ptr(off)
    }

    /// The array, as it would be written back to the file.
    pub fn contents(&self) -> Vec<u8> {
        self.bytes.to_vec(0..self.len())
    }

    /// Whether the array changed since the last call.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// Whether the read mode changed since the last call (the CPU's direct pages are stale).
    pub fn take_mode_change(&mut self) -> bool {
        std::mem::take(&mut self.mode_changed)
    }

    fn set_mode(&mut self, m: Mode) {
        if (m == Mode::ReadArray) != (self.mode == Mode::ReadArray) {
            self.mode_changed = true;
        }
        self.mode = m;
    }

    /// A read of `size` bytes at offset `off` by an access in SMM (`smm`) or not.
    pub fn read(&self, off: u64, size: u8, smm: bool) -> u64 {
        if self.secure && !smm {
            return self.bytes.read_le(off, size);
        }
        let repeat = |b: u8| (0..size.min(8)).fold(0u64, |v, k| v | (b as u64) << (8 * k));
        match self.mode {
            Mode::ReadArray => self.bytes.read_le(off, size),
            Mode::ReadId => (0..size.min(8) as u64).fold(0u64, |v, k| v | (id_byte(off + k) as u64) << (8 * k)),
            Mode::Query => (0..size.min(8) as u64).fold(0u64, |v, k| v | (*self.cfi.get((off + k) as usize & 0xff).unwrap_or(&0) as u64) << (8 * k)),
            _ => repeat(self.status),
        }
    }

    /// A write of `size` bytes (the low byte is the command or data) at `off`.
    pub fn write(&mut self, off: u64, size: u8, value: u64, smm: bool) -> WriteOutcome {
        if self.secure && !smm {
            self.writes_refused += 1;
            return WriteOutcome::Refused;
        }
        if smm {
            self.writes_smm += 1;
        } else {
            self.writes_other += 1;
        }
        let cmd = value as u8;
        match self.mode {
            Mode::Program => {
                self.program(off, &value.to_le_bytes()[..size.clamp(1, 8) as usize]);
                self.set_mode(Mode::ReadStatus);
            }
            Mode::EraseSetup => match cmd {
                0xd0 => {
                    if self.readonly {
                        self.status |= sr::ERASE_ERROR;
                        self.writes_failed += 1;
                    } else {
                        let start = off & !(BLOCK_SIZE - 1);
                        self.bytes.write(start, &[0xff; BLOCK_SIZE as usize]);
                        self.dirty = true;
                        self.modified = true;
                    }
                    self.status |= sr::READY;
                    self.set_mode(Mode::ReadStatus);
                }
                0xff => self.set_mode(Mode::ReadArray),
                _ => self.bad_sequence(),
            },
            Mode::BufferCount => {
                let n = (value & 0xff) + 1;
                if n > WRITE_BUFFER {
                    self.bad_sequence();
                } else {
                    self.buffer = (off, Vec::new());
                    self.set_mode(Mode::BufferData { left: n });
                }
            }
            Mode::BufferData { left } => {
                let bytes = &value.to_le_bytes()[..size.clamp(1, 8) as usize];
                if self.buffer.1.is_empty() {
                    self.buffer.0 = off;
                }
                self.buffer.1.extend_from_slice(bytes);
                let left = left.saturating_sub(bytes.len() as u64);
                self.set_mode(if left == 0 { Mode::BufferConfirm } else { Mode::BufferData { left } });
            }
            Mode::BufferConfirm => {
                if cmd == 0xd0 {
                    let (start, data) = std::mem::take(&mut self.buffer);
                    self.program(start, &data);
                    self.set_mode(Mode::ReadStatus);
                } else {
                    self.bad_sequence();
                }
            }
            Mode::LockSetup => match cmd {
                0x01 | 0xd0 => {
                    self.status |= sr::READY;
                    self.set_mode(Mode::ReadStatus);
                }
                0xff => self.set_mode(Mode::ReadArray),
                _ => self.bad_sequence(),
            },
            Mode::ReadArray | Mode::ReadStatus | Mode::ReadId | Mode::Query => match cmd {
                0x00 | 0xf0 | 0xff => self.set_mode(Mode::ReadArray),
                0x10 | 0x40 => self.set_mode(Mode::Program),
                0x20 | 0x28 => self.set_mode(Mode::EraseSetup),
                0x50 => {
                    // Clear status: the status reads 0 afterwards (OVMF's probe wants 0x00).
                    self.status = 0;
                    self.set_mode(Mode::ReadArray);
                }
                0x60 => self.set_mode(Mode::LockSetup),
                0x70 => self.set_mode(Mode::ReadStatus),
                0x90 => self.set_mode(Mode::ReadId),
                0x98 => self.set_mode(Mode::Query),
                0xe8 => {
                    self.status |= sr::READY;
                    self.set_mode(Mode::BufferCount);
                }
                _ => self.bad_sequence(),
            },
        }
        WriteOutcome::Taken
    }

    /// Programs `data` at `off`: the bytes are stored as given (as QEMU does; a real part can
    /// only clear bits until the block is erased).
    fn program(&mut self, off: u64, data: &[u8]) {
        if self.readonly || off.saturating_add(data.len() as u64) > self.len() {
            self.status |= sr::PROGRAM_ERROR;
            self.writes_failed += u64::from(self.readonly);
        } else {
            self.bytes.write(off, data);
            self.dirty = true;
            self.modified = true;
        }
        self.status |= sr::READY;
    }

    /// An unknown command or a broken sequence: back to reading the array, the error in the
    /// status register.
    fn bad_sequence(&mut self) {
        self.status |= sr::ERASE_ERROR | sr::PROGRAM_ERROR;
        self.set_mode(Mode::ReadArray);
    }
}

/// Read-identifier mode: manufacturer code at offset 0 and device code at offset 1 (QEMU's PC
/// flash sets neither: both 0), block lock status (unlocked) at 2, the rest 0 too.
fn id_byte(_off: u64) -> u8 {
    0
}

/// The CFI query table of an 8-bit part of `len` bytes with uniform 4 KiB blocks (JESD68:
/// "QRY", the Intel command set 0001h, Vcc 4.5-5.5 V, the timeouts, the device size as a power
/// of two, the x8/x16 interface, the write-buffer size and one erase region), as QEMU's
/// `cfi.pflash01` builds it.
fn cfi_table(len: u64) -> [u8; 0x52] {
    let mut t = [0u8; 0x52];
    t[0x10..0x13].copy_from_slice(b"QRY");
    t[0x13] = 0x01; // primary command set: Intel/Sharp extended
    t[0x15] = 0x31; // primary extended table at 0x31
    t[0x1b] = 0x45;
    t[0x1c] = 0x55;
    t[0x1f] = 0x07; // typical byte program: 2^7 us
    t[0x20] = 0x07; // typical buffer write: 2^7 us
    t[0x21] = 0x0a; // typical block erase: 2^10 ms
    t[0x23] = 0x04;
    t[0x24] = 0x04;
    t[0x25] = 0x04;
    t[0x27] = len.max(1).trailing_zeros() as u8; // device size: 2^n bytes
    t[0x28] = 0x02; // x8/x16 interface
    t[0x2a] = WRITE_BUFFER.trailing_zeros() as u8;
    t[0x2c] = 0x01; // one erase block region
    let blocks = (len / BLOCK_SIZE).max(1) - 1;
    t[0x2d] = blocks as u8;
    t[0x2e] = (blocks >> 8) as u8;
    t[0x2f] = (BLOCK_SIZE >> 8) as u8;
    t[0x30] = (BLOCK_SIZE >> 16) as u8;
    t[0x31..0x36].copy_from_slice(b"PRI10");
    t[0x3f] = 0x01; // one protection field
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(secure: bool) -> Pflash {
        Pflash::new(&vec![0x5a; 4 * BLOCK_SIZE as usize], false, secure)
    }

    #[test]
    fn ovmf_probe_sees_flash_not_rom_or_ram() {
        // QemuFlashDetected: write CLEAR_STATUS (0x50) and read back the original byte, then
        // READ_STATUS (0x70) and read 0x00.
        let mut f = unit(true);
        assert_eq!(f.write(0x10, 1, 0x50, true), WriteOutcome::Taken);
        assert_eq!(f.read(0x10, 1, true), 0x5a, "0x50 goes back to read array");
        f.write(0x10, 1, 0x70, true);
        assert_eq!(f.read(0x10, 1, true), 0x00, "status cleared");
        f.write(0x10, 1, 0xff, true);
        assert_eq!(f.read(0x10, 1, true), 0x5a);
    }

    #[test]
    fn byte_program_and_block_erase() {
        let mut f = unit(true);
        f.write(0x1234, 1, 0x10, true);
        f.write(0x1234, 1, 0xa5, true);
        assert_eq!(f.read(0x1234, 1, true), sr::READY as u64, "status after program");
        f.write(0, 1, 0xff, true);
        assert_eq!(f.read(0x1234, 1, true), 0xa5);
        assert!(f.take_dirty());
        f.write(0x1000, 1, 0x20, true);
        f.write(0x1000, 1, 0xd0, true);
        f.write(0, 1, 0xff, true);
        assert_eq!(f.read(0x1234, 1, true), 0xff, "block 1 erased");
        assert_eq!(f.read(0x2000, 1, true), 0x5a, "block 2 kept");
        assert_eq!(f.writes_smm, 6);
    }

    #[test]
    fn secure_parts_refuse_writes_from_outside_smm_and_show_the_array() {
        let mut f = unit(true);
        assert_eq!(f.write(0, 1, 0x10, false), WriteOutcome::Refused);
        assert_eq!(f.writes_refused, 1);
        f.write(0, 1, 0x70, true);
        assert_eq!(f.read(0, 1, false), 0x5a, "outside SMM the array, whatever the mode");
        assert_eq!(f.read(0, 1, true), 0x00);
        let mut open = unit(false);
        assert_eq!(open.write(0, 1, 0x10, false), WriteOutcome::Taken);
        assert_eq!(open.writes_other, 1);
    }

    #[test]
    fn read_only_units_report_errors() {
        let mut f = Pflash::new(&vec![0u8; BLOCK_SIZE as usize], true, false);
        f.write(0, 1, 0x40, false);
        f.write(0, 1, 0x12, false);
        assert_eq!(f.read(0, 1, false) as u8 & sr::PROGRAM_ERROR, sr::PROGRAM_ERROR);
        f.write(0, 1, 0xff, false);
        assert_eq!(f.read(0, 1, false), 0, "nothing programmed");
        assert!(!f.take_dirty());
    }

    #[test]
    fn cfi_query_and_buffered_writes() {
        let mut f = unit(true);
        f.write(0x55, 1, 0x98, true);
        assert_eq!([f.read(0x10, 1, true), f.read(0x11, 1, true), f.read(0x12, 1, true)], [b'Q' as u64, b'R' as u64, b'Y' as u64]);
        assert_eq!(f.read(0x27, 1, true), 14, "16 KiB = 2^14");
        assert!(!f.reads_array() && f.take_mode_change());
        f.write(0, 1, 0xff, true);
        f.write(0x100, 1, 0xe8, true);
        f.write(0x100, 1, 3, true); // four bytes
        f.write(0x100, 4, 0x0403_0201, true);
        f.write(0x100, 1, 0xd0, true);
        f.write(0, 1, 0xff, true);
        assert_eq!(f.read(0x100, 4, true), 0x0403_0201);
    }
}
