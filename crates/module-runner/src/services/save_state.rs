//! EFI_SMM_CPU_PROTOCOL (ReadSaveState/WriteSaveState, PI 1.9 vol. 4 §4.x; register numbers from
//! `MdePkg/Include/Protocol/MmCpu.h`) on the CPU's real save state, decoded with the CPU
//! model's map (Intel64 or AMD64), and EFI_SMM_CPU_IO2_PROTOCOL (= SMST.SmmIo) on the machine's
//! ports and memory.

use super::{read_u64, write, Env, Flow, Frame, Served};
use crate::efi;
use crate::layout;
use cpu::smm::savestate::Image;
use machine::Machine;

/// EFI_SMM_SAVE_STATE_REGISTER numbers the runner answers.
fn slot(img: &mut Image, reg: u64) -> Option<&mut u64> {
    Some(match reg {
        // R8..R15 are 30..37, RAX..RDI 38..45 (RAX, RBX, RCX, RDX, RSP, RBP, RSI, RDI).
        30..=37 => &mut img.gpr[(reg - 30 + 8) as usize],
        38 => &mut img.gpr[0],
        39 => &mut img.gpr[3],
        40 => &mut img.gpr[1],
        41 => &mut img.gpr[2],
        42 => &mut img.gpr[4],
        43 => &mut img.gpr[5],
        44 => &mut img.gpr[6],
        45 => &mut img.gpr[7],
        46 => &mut img.rip,
        51 => &mut img.rflags,
        52 => &mut img.cr0,
        53 => &mut img.cr3,
        54 => &mut img.cr4,
        4 => &mut img.gdtr_base,
        5 => &mut img.idtr_base,
        7 => &mut img.gdtr_limit,
        8 => &mut img.idtr_limit,
        28 => &mut img.dr7,
        29 => &mut img.dr6,
        _ => return None,
    })
}

impl Env {
    /// ReadSaveState / WriteSaveState(This, Width, Register, CpuIndex, Buffer).
    pub(super) fn save_state(&mut self, m: &mut Machine, f: &Frame, write_it: bool) -> Served {
        let (width, reg, cpu_index, buf) = (f.arg(1), f.arg(2), f.arg(3), f.arg(4));
        let name = if write_it { "SmmCpu->WriteSaveState" } else { "SmmCpu->ReadSaveState" }.to_string();
        if cpu_index != 0 || buf == 0 || !matches!(width, 1 | 2 | 4 | 8) {
            return (name, 5, None, Flow::Return(efi::INVALID_PARAMETER));
        }
        let area: [u8; 0x400] = m.read_phys(layout::SAVE_STATE, 0x400, true).try_into().expect("1 KiB");
        let kind = m.smm_map();
        let mut img = Image::load(kind, &area);
        // LMA (513): EFI_MM_SAVE_STATE_REGISTER_LMA_64BIT = 64 when the interrupted code ran
        // in long mode; PROCESSOR_ID (514): the APIC ID, 0.
        let fixed = match reg {
            513 => Some(if img.efer & (1 << 10) != 0 { 64 } else { 32 }),
            514 => Some(0),
            _ => None,
        };
        let st = match (fixed, write_it) {
            (Some(v), false) => {
                write(m, buf, &u64::to_le_bytes(v)[..width as usize]);
                efi::SUCCESS
            }
            (Some(_), true) => efi::INVALID_PARAMETER,
            (None, _) => match slot(&mut img, reg) {
                None => efi::NOT_FOUND,
                Some(v) if !write_it => {
                    let bytes = v.to_le_bytes();
                    write(m, buf, &bytes[..width as usize]);
                    efi::SUCCESS
                }
                Some(v) => {
                    let mut bytes = v.to_le_bytes();
                    bytes[..width as usize].copy_from_slice(&m.read_phys(buf, width as usize, true));
                    *v = u64::from_le_bytes(bytes);
                    let mut area = area;
                    img.store(kind, &mut area);
                    write(m, layout::SAVE_STATE, &area);
                    efi::SUCCESS
                }
            },
        };
        (name, 5, None, Flow::Return(st))
    }

    /// Mem.Read (0), Mem.Write (8), Io.Read (0x10), Io.Write (0x18) (This, Width, Address,
    /// Count, Buffer); Width 0-3 is 1, 2, 4 or 8 bytes.
    pub(super) fn cpu_io(&mut self, m: &mut Machine, f: &Frame, off: u64) -> Served {
        let names = ["CpuIo.Mem.Read", "CpuIo.Mem.Write", "CpuIo.Io.Read", "CpuIo.Io.Write"];
        let name = names[(off / 8).min(3) as usize].to_string();
        let (width, addr, count, buf) = (f.arg(1), f.arg(2), f.arg(3), f.arg(4));
        if width > 3 || buf == 0 || count > 1 << 20 {
            return (name, 5, None, Flow::Return(efi::INVALID_PARAMETER));
        }
        let size = 1u64 << width;
        for i in 0..count {
            let (a, b) = (addr + i * size, buf + i * size);
            match off {
                0x00 => {
                    let v = m.read_phys(a, size as usize, true);
                    write(m, b, &v);
                }
                0x08 => {
                    let v = m.read_phys(b, size as usize, true);
                    write(m, a, &v);
                }
                0x10 if size <= 4 => {
                    let v = m.io_in(a as u16, size as u8);
                    write(m, b, &v.to_le_bytes()[..size as usize]);
                }
                0x18 if size <= 4 => {
                    let v = read_u64(m, b) & (u64::MAX >> (64 - 8 * size));
                    m.io_out(a as u16, size as u8, v as u32);
                }
                _ => return (name, 5, None, Flow::Return(efi::INVALID_PARAMETER)),
            }
        }
        (name, 5, None, Flow::Return(efi::SUCCESS))
    }
}
