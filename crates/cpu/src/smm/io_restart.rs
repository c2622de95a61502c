//! I/O-instruction restart: the CPU records each I/O instruction; when one raises a synchronous
//! SMI, entry saves its RIP, RCX, RSI, RDI and the string element's address, and RSM re-executes
//! it if the handler wrote 0xFF to the I/O restart field (Intel SDM vol. 3C ch. 34; AMD APM
//! vol. 2 ch. 10).

use super::io_misc::io_info;
use super::savestate::{Image, MapKind};
use crate::Cpu;

/// An I/O instruction as executed, for I/O-instruction restart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoRecord {
    /// Instruction count when it ran (it is the instruction that retires as `icount + 1`).
    pub icount: u64,
    /// RIP of the I/O instruction.
    pub rip: u64,
    /// RIP of the instruction after it.
    pub next_rip: u64,
    /// The I/O port.
    pub port: u16,
    /// Access size in bytes (1, 2 or 4).
    pub size: u8,
    /// IN/INS rather than OUT/OUTS.
    pub input: bool,
    /// A string instruction (INS/OUTS).
    pub string: bool,
    /// With a REP prefix.
    pub rep: bool,
    /// The port came from an immediate (IN/OUT imm8).
    pub imm: bool,
    /// RCX before the access.
    pub rcx: u64,
    /// RSI before the access.
    pub rsi: u64,
    /// RDI before the access.
    pub rdi: u64,
    /// The string element's linear address (0 for IN/OUT).
    pub mem_addr: u64,
}

impl Cpu {
    /// Records an I/O access an instruction is about to make (for I/O restart).
    // One argument per field of the record: the four call sites read best spelled out.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record_io(&mut self, port: u16, size: u8, input: bool, string: bool, rep: bool, imm: bool, mem_addr: u64) {
        self.smm_regs.last_io = Some(IoRecord {
            icount: self.icount,
            rip: self.cur_rip,
            next_rip: self.rip,
            port,
            size,
            input,
            string,
            rep,
            imm,
            rcx: self.regs[crate::regs::RCX],
            rsi: self.regs[crate::regs::RSI],
            rdi: self.regs[crate::regs::RDI],
            mem_addr,
        });
    }

    /// At SMM entry: the I/O instruction that raised an I/O-trap SMI, if any.
    pub(super) fn trapped_io(&self, io_trap: bool) -> Option<IoRecord> {
        // The I/O instruction counts as the one just retired when its record is that recent.
        if io_trap {
            self.smm_regs.last_io.filter(|r| r.icount + 1 >= self.icount)
        } else {
            None
        }
    }

    /// At RSM: re-executes the trapped I/O instruction if the handler asked for it. Returns
    /// whether it did.
    pub(super) fn io_restart(&mut self, img: &Image) -> bool {
        // I/O instruction restart: the handler wrote 0xFF.
        let io = self.smm_regs.io.take();
        let mut io_restarted = false;
        if img.io_restart & 0xff == 0xff {
            if let Some(r) = io {
                self.rip = r.rip;
                self.regs[crate::regs::RCX] = r.rcx;
                self.regs[crate::regs::RSI] = r.rsi;
                self.regs[crate::regs::RDI] = r.rdi;
                io_restarted = true;
            }
        }
        io_restarted
    }
}

/// At SMM entry: the trapped I/O instruction's fields of the save image.
pub(super) fn save_io(img: &mut Image, map: MapKind, r: &IoRecord) {
    img.io_rip = r.rip;
    img.io_rcx = r.rcx;
    img.io_rsi = r.rsi;
    img.io_rdi = r.rdi;
    img.io_mem_addr = r.mem_addr;
    img.io_info = io_info(map, r);
}
