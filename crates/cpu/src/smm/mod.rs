//! System Management Mode in the CPU: the SMI latch, SMM entry, RSM, SMBASE relocation,
//! I/O-instruction and auto-HALT restart, NMI blocking (Intel SDM vol. 3C chapter 34; AMD APM
//! vol. 2 chapter 10).
//!
//! State that must survive from entry to RSM and that real CPUs keep in hidden registers:
//! 1. whether NMIs were already blocked when the SMI arrived (RSM leaves them blocked then);
//! 2. the I/O instruction that raised a synchronous SMI, so RSM can re-execute it;
//! 3. whether the SMI interrupted HLT;
//! 4. the instruction count at entry, for the time spent in SMM.

pub mod savestate;

use crate::bus::{Bus, SmmEntry, SmmExit};
use crate::cpuid::Vendor;
use crate::cr::*;
use crate::decode::Insn;
use crate::exception::Exc;
use crate::flags::bits;
use crate::segment::{Segment, ATTR_UNUSABLE};
use crate::{sreg, Cpu, TableReg};
use savestate::{Image, MapKind, SegImage};

/// SMBASE after power-on.
pub const DEFAULT_SMBASE: u32 = 0x30000;

/// An I/O instruction as executed, for I/O-instruction restart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoRecord {
    /// Instruction count when it ran (it is the instruction that retires as `icount + 1`).
    pub icount: u64,
    /// RIP of the I/O instruction and of the next one.
    pub rip: u64,
    pub next_rip: u64,
    pub port: u16,
    pub size: u8,
    pub input: bool,
    pub string: bool,
    pub rep: bool,
    /// The port came from an immediate (IN/OUT imm8).
    pub imm: bool,
    /// RCX, RSI, RDI before the access, and the string element's linear address.
    pub rcx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub mem_addr: u64,
}

/// The CPU's SMM registers and hidden state.
#[derive(Clone, Debug)]
pub struct SmmRegs {
    pub smbase: u32,
    /// An SMI was latched (arrived while in SMM, or not yet taken).
    pub smi_latched: bool,
    /// The latched SMI came from an I/O trap on the last I/O instruction.
    pub smi_io_trap: bool,
    /// NMIs were blocked when the SMI arrived.
    pub inside_nmi: bool,
    /// SMIs taken since reset (MSR_SMI_COUNT).
    pub smi_count: u64,
    /// Instruction count at SMM entry.
    pub entry_icount: u64,
    pub from_halt: bool,
    /// The I/O instruction that raised the current SMI.
    pub io: Option<IoRecord>,
    /// The last I/O instruction executed.
    pub last_io: Option<IoRecord>,
    /// IA32_SMRR_PHYSBASE / PHYSMASK (Intel).
    pub smrr_base: u64,
    pub smrr_mask: u64,
    /// MSR_SMM_FEATURE_CONTROL: LOCK bit 0, SMM_CODE_CHK_EN bit 2.
    pub feature_control: u64,
    /// AMD SMM_ADDR, SMM_MASK, HWCR.
    pub amd_addr: u64,
    pub amd_mask: u64,
    pub hwcr: u64,
}

impl Default for SmmRegs {
    fn default() -> Self {
        SmmRegs {
            smbase: DEFAULT_SMBASE,
            smi_latched: false,
            smi_io_trap: false,
            inside_nmi: false,
            smi_count: 0,
            entry_icount: 0,
            from_halt: false,
            io: None,
            last_io: None,
            smrr_base: 0,
            smrr_mask: 0,
            feature_control: 0,
            amd_addr: 0,
            amd_mask: 0,
            hwcr: 0,
        }
    }
}

/// SMRR_PHYSMASK valid bit (SDM vol. 3A, 12.11.2.4).
pub const SMRR_VALID: u64 = 1 << 11;
/// MSR_SMM_FEATURE_CONTROL bits (SDM vol. 4, table 2-...; edk2 SmmCpuFeaturesLib).
pub const FEATURE_CONTROL_LOCK: u64 = 1 << 0;
pub const SMM_CODE_CHK_EN: u64 = 1 << 2;
/// AMD SMM_MASK bits (AMD APM vol. 2, 10.2.5).
pub const AMD_AVALID: u64 = 1 << 0;
pub const AMD_TVALID: u64 = 1 << 1;
pub const AMD_ACLOSE: u64 = 1 << 2;
pub const AMD_TCLOSE: u64 = 1 << 3;
/// AMD HWCR.SmmLock.
pub const HWCR_SMMLOCK: u64 = 1 << 0;

/// How the CPU itself treats a physical address (SMRR on Intel, ASeg/TSeg on AMD).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuSmramView {
    /// The access goes to the bus as usual.
    Normal,
    /// The CPU blocks it: reads return all ones, writes are dropped, fetches get all ones.
    Blocked,
}

/// Descriptor-cache attributes in the save maps' form: access byte in 7:0, flags in 15:12.
fn attr_to_image(s: &Segment) -> u64 {
    if s.unusable() {
        return s.attr as u64 & 0x60; // not present, DPL kept
    }
    (s.attr as u64 & 0xff) | ((s.attr as u64 & 0xf00) << 4)
}

fn seg_to_image(s: &Segment) -> SegImage {
    SegImage { sel: s.selector as u64, attr: attr_to_image(s), limit: s.limit as u64, base: s.base }
}

fn seg_from_image(i: &SegImage, protected: bool) -> Segment {
    let mut attr = ((i.attr & 0xff) | ((i.attr >> 4) & 0xf00)) as u16;
    if protected && attr & 0x80 == 0 {
        attr |= ATTR_UNUSABLE;
    }
    Segment { selector: i.sel as u16, base: i.base, limit: i.limit as u32, attr }
}

impl Cpu {
    /// The save-state map of this CPU model.
    pub fn smm_map(&self) -> MapKind {
        match (self.model.vendor, self.model.long_mode) {
            (Vendor::Amd, true) => MapKind::Amd64,
            (Vendor::Intel, true) => MapKind::Intel64,
            (_, false) => MapKind::Legacy32,
        }
    }

    /// Whether `phys` falls in the SMRR range (Intel, SMRR valid).
    pub fn in_smrr(&self, phys: u64) -> bool {
        let s = &self.smm_regs;
        s.smrr_mask & SMRR_VALID != 0 && (phys & s.smrr_mask & 0xffff_f000) == (s.smrr_base & s.smrr_mask & 0xffff_f000)
    }

    /// The CPU-side SMRAM protection: SMRR outside SMM on Intel; ASeg/TSeg on AMD
    /// (outside SMM both go to MMIO; in SMM with xClose, data accesses do while fetches reach
    /// DRAM — AMD APM vol. 2, 10.2.5).
    #[inline]
    pub fn cpu_smram_view(&self, phys: u64, fetch: bool) -> CpuSmramView {
        match self.model.vendor {
            Vendor::Intel => {
                if !self.smm && self.in_smrr(phys) {
                    return CpuSmramView::Blocked;
                }
            }
            Vendor::Amd => {
                let m = self.smm_regs.amd_mask;
                if m & (AMD_AVALID | AMD_TVALID) == 0 {
                    return CpuSmramView::Normal;
                }
                let in_aseg = m & AMD_AVALID != 0 && (0xa0000..0xc0000).contains(&phys);
                let tmask = m & 0xffff_fffe_0000;
                let in_tseg = m & AMD_TVALID != 0 && (phys & tmask) == (self.smm_regs.amd_addr & tmask);
                if !self.smm && (in_aseg || in_tseg) {
                    return CpuSmramView::Blocked;
                }
                if self.smm && !fetch && ((in_aseg && m & AMD_ACLOSE != 0) || (in_tseg && m & AMD_TCLOSE != 0)) {
                    return CpuSmramView::Blocked;
                }
            }
        }
        CpuSmramView::Normal
    }

    /// Records an I/O access an instruction is about to make (for I/O restart).
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

    /// Latches an SMI request. It is taken at the next instruction boundary outside SMM.
    pub fn latch_smi(&mut self, io_trap: bool) {
        if !self.smm_regs.smi_latched {
            self.smm_regs.smi_io_trap = io_trap;
        }
        self.smm_regs.smi_latched = true;
    }

    /// Enters SMM: saves the state map at SMBASE + 0xFE00 (0xFC00 for Intel-64) and loads the
    /// SMM entry state (SDM vol. 3C, table 34-4).
    pub fn enter_smm(&mut self, bus: &mut dyn Bus) {
        let io_trap = std::mem::replace(&mut self.smm_regs.smi_io_trap, false);
        self.smm_regs.smi_latched = false;
        let from_halt = self.halted;
        self.halted = false;
        let map = self.smm_map();
        // The I/O instruction counts as the one just retired when its record is that recent.
        let io = if io_trap { self.smm_regs.last_io.filter(|r| r.icount + 1 >= self.icount) } else { None };
        let mut img = Image {
            gpr: self.regs,
            rip: self.rip,
            rflags: self.flags.get(),
            cr0: self.cr0,
            cr3: self.cr3,
            cr4: self.cr4,
            dr6: self.dr[6],
            dr7: self.dr[7],
            efer: self.efer,
            ldtr: seg_to_image(&self.ldtr),
            tr: seg_to_image(&self.tr),
            gdtr_base: self.gdtr.base,
            gdtr_limit: self.gdtr.limit as u64,
            idtr_base: self.idtr.base,
            idtr_limit: self.idtr.limit as u64,
            smbase: self.smm_regs.smbase as u64,
            revision: map.revision() as u64,
            auto_halt: from_halt as u64,
            nmi_mask: self.nmi_blocked as u64,
            ..Default::default()
        };
        for k in 0..6 {
            img.seg[k] = seg_to_image(&self.seg[k]);
        }
        if let Some(r) = io {
            img.io_rip = r.rip;
            img.io_rcx = r.rcx;
            img.io_rsi = r.rsi;
            img.io_rdi = r.rdi;
            img.io_mem_addr = r.mem_addr;
            img.io_info = match map {
                // IOMisc (SDM table 34-7): SMI flag, length, type, port.
                MapKind::Intel64 | MapKind::Legacy32 => {
                    let typ: u64 = match (r.string, r.rep, r.input, r.imm) {
                        (false, _, false, false) => 0,
                        (false, _, true, false) => 1,
                        (true, false, false, _) => 2,
                        (true, false, true, _) => 3,
                        (true, true, false, _) => 6,
                        (true, true, true, _) => 7,
                        (false, _, false, true) => 8,
                        (false, _, true, true) => 9,
                    };
                    1 | ((r.size as u64) << 1) | (typ << 4) | ((r.port as u64) << 16)
                }
                // AMD I/O trap dword (APM vol. 2, 10.2.4): RW 0, V 1, STR 2, REP 3, SZ8/16/32 4-6.
                MapKind::Amd64 => {
                    let sz = match r.size {
                        1 => 1 << 4,
                        2 => 1 << 5,
                        _ => 1 << 6,
                    };
                    (r.input as u64) | 2 | ((r.string as u64) << 2) | ((r.rep as u64) << 3) | sz | ((r.port as u64) << 16)
                }
            };
        }
        self.smm_regs.inside_nmi = self.nmi_blocked;
        self.nmi_blocked = true;
        self.smm_regs.io = io;
        self.smm_regs.from_halt = from_halt;
        let entry = SmmEntry {
            smbase: self.smm_regs.smbase,
            cs: self.seg[sreg::CS].selector,
            rip: self.rip,
            mode: self.mode_name(),
            icount: self.icount,
            from_halt,
            io_trap: io.is_some(),
        };
        // SMIACT# first, so the save-area stores land in SMRAM.
        self.smm = true;
        self.flush_tlb();
        let base = self.smm_regs.smbase as u64 + 0xfc00;
        // Bytes of the map that no field covers are zeroed (as KVM and Bochs do).
        let start = (map.start() - 0xfc00) as usize;
        let mut area = [0u8; 0x400];
        img.store(map, &mut area);
        if let Some(p) = self.save_area_page(bus, base, crate::AccessKind::Write) {
            // SAFETY: `p` points at a live 4 KiB page of guest memory (Bus::host_page) whose
            // bytes 0xC00..0x1000 are the save area, so start..0x400 lies inside it; `area`
            // is a local buffer, and guest memory is only ever copied into or out of, never
            // referenced, so nothing aliases the bytes written.
            unsafe { std::ptr::copy_nonoverlapping(area[start..].as_ptr(), p.add(0xc00 + start), 0x400 - start) };
        } else {
            self.write_smram(bus, base, &area, start);
        }
        // Entry state.
        let smbase = self.smm_regs.smbase as u64;
        let data = Segment { selector: 0, base: 0, limit: 0xffff_ffff, attr: 0x893 };
        for k in 0..6 {
            self.seg[k] = data;
        }
        self.seg[sreg::CS] = Segment { selector: (smbase >> 4) as u16, base: smbase, limit: 0xffff_ffff, attr: 0x893 };
        self.rip = 0x8000;
        self.flags.set(bits::FIXED);
        self.cr0 &= !(CR0_PE | CR0_EM | CR0_TS | CR0_PG);
        self.cr4 = 0;
        self.efer = 0;
        self.dr[7] = 0x400;
        self.cpl = 0;
        self.shadow = false;
        self.end_block = true;
        self.flush_tlb();
        self.smm_regs.smi_count += 1;
        if let Some(r) = self.smm_blocks.as_deref_mut() {
            r.entered(self.smm_regs.smbase);
        }
        self.smm_regs.entry_icount = self.icount;
        bus.smm_entered(&entry);
    }

    /// The host pointer to the page holding the save area (SMBASE + 0xF000), when it is plain
    /// memory for the CPU in SMM and holds no decoded code.
    fn save_area_page(&mut self, bus: &mut dyn Bus, base: u64, kind: crate::AccessKind) -> Option<*mut u8> {
        let page = base & !0xfff;
        if base & 0xfff != 0xc00 || (kind == crate::AccessKind::Write && self.cache.has_code(page)) {
            return None;
        }
        bus.host_page(page, kind, true).map(|p| p.as_ptr())
    }

    /// Reads the 1 KiB below SMBASE + 0x10000 through the bus.
    fn read_smram(&mut self, bus: &mut dyn Bus, base: u64, out: &mut [u8; 0x400]) {
        for (k, chunk) in out.chunks_mut(8).enumerate() {
            let v = self.phys_read(bus, base + 8 * k as u64, 8);
            chunk.copy_from_slice(&v.to_le_bytes());
        }
    }

    /// Writes `data[from..]` to the 1 KiB below SMBASE + 0x10000 through the bus.
    fn write_smram(&mut self, bus: &mut dyn Bus, base: u64, data: &[u8; 0x400], from: usize) {
        for k in (from / 8)..0x80 {
            let v = u64::from_le_bytes(data[8 * k..8 * k + 8].try_into().unwrap_or([0; 8]));
            self.phys_write(bus, base + 8 * k as u64, 8, v);
        }
    }

    /// Ends in shutdown, reporting why RSM failed.
    fn rsm_shutdown(&mut self, bus: &mut dyn Bus, why: String) {
        let reason = format!("shutdown: RSM found an invalid saved state: {why}");
        self.shutdown = Some(reason.clone());
        self.smm = false;
        self.flush_tlb();
        self.end_block = true;
        bus.smm_left(&SmmExit {
            smbase: self.smm_regs.smbase,
            cs: self.seg[sreg::CS].selector,
            rip: self.rip,
            mode: self.mode_name(),
            smm_instructions: self.icount + 1 - self.smm_regs.entry_icount,
            icount: self.icount + 1,
            io_restarted: false,
            halt_restarted: false,
            shutdown: Some(reason),
        });
    }

    /// The checks RSM makes before loading a saved state (SDM vol. 3C, 34.11; the cases Bochs
    /// also checks). Returns what is wrong.
    fn rsm_check(&self, img: &Image) -> Option<String> {
        let cr0 = img.cr0;
        if cr0 >> 32 != 0 {
            return Some(format!("CR0 {cr0:#x} has reserved bits set"));
        }
        if cr0 & CR0_PG != 0 && cr0 & CR0_PE == 0 {
            return Some(format!("CR0 {cr0:#x} has PG set without PE"));
        }
        if cr0 & CR0_NW != 0 && cr0 & CR0_CD == 0 {
            return Some(format!("CR0 {cr0:#x} has NW set without CD"));
        }
        let cr4_ok = CR4_VME | CR4_PVI | CR4_TSD | CR4_DE | CR4_PSE | CR4_PAE | CR4_MCE | CR4_PGE | CR4_PCE | CR4_OSFXSR | CR4_OSXMMEXCPT;
        if img.cr4 & !cr4_ok != 0 {
            return Some(format!("CR4 {:#x} has reserved bits set", img.cr4));
        }
        let efer_ok = if self.model.long_mode { EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE } else { EFER_NXE };
        if img.efer & !efer_ok != 0 {
            return Some(format!("EFER {:#x} has reserved bits set", img.efer));
        }
        let lma = img.efer & EFER_LME != 0 && cr0 & CR0_PG != 0;
        if lma && img.cr4 & CR4_PAE == 0 {
            return Some("long mode (EFER.LME and CR0.PG) without CR4.PAE".into());
        }
        if lma && img.rflags & bits::VM != 0 {
            return Some("RFLAGS.VM set in long mode".into());
        }
        let cs_attr = img.seg[sreg::CS].attr;
        if lma && cs_attr & 0x2000 != 0 && cs_attr & 0x4000 != 0 {
            return Some("CS has both L and D set in long mode".into());
        }
        if lma && cs_attr & 0x2000 != 0 && !crate::segment::canonical(img.rip) {
            return Some(format!("RIP {:#x} is not canonical", img.rip));
        }
        None
    }

    /// RSM (0F AA).
    pub(crate) fn rsm(&mut self, bus: &mut dyn Bus) -> Result<(), Exc> {
        if !self.smm {
            return Err(Exc::ud());
        }
        let map = self.smm_map();
        let smbase = self.smm_regs.smbase as u64;
        let area = match self.save_area_page(bus, smbase + 0xfc00, crate::AccessKind::Read) {
            // SAFETY: as in enter_smm: the 1 KiB at page offset 0xC00 lies inside the live
            // page; it is copied out by value (an unaligned read), never referenced.
            Some(p) => unsafe { p.add(0xc00).cast::<[u8; 0x400]>().read_unaligned() },
            None => {
                let mut area = [0u8; 0x400];
                self.read_smram(bus, smbase + 0xfc00, &mut area);
                area
            }
        };
        let img = Image::load(map, &area);
        if let Some(why) = self.rsm_check(&img) {
            self.rsm_shutdown(bus, why);
            return Ok(());
        }
        let long_mode = img.efer & EFER_LME != 0 && img.cr0 & CR0_PG != 0;
        self.efer = (img.efer & !EFER_LMA) | if long_mode { EFER_LMA } else { 0 };
        self.cr4 = img.cr4;
        self.cr3 = img.cr3;
        self.cr0 = img.cr0 | CR0_ET;
        let protected = img.cr0 & CR0_PE != 0;
        self.gdtr = TableReg { base: img.gdtr_base, limit: img.gdtr_limit as u16 };
        self.idtr = TableReg { base: img.idtr_base, limit: img.idtr_limit as u16 };
        self.ldtr = seg_from_image(&img.ldtr, true);
        self.tr = seg_from_image(&img.tr, true);
        for k in 0..6 {
            self.seg[k] = seg_from_image(&img.seg[k], protected);
        }
        let width_mask = if self.model.long_mode { u64::MAX } else { 0xffff_ffff };
        for k in 0..16 {
            self.regs[k] = img.gpr[k] & width_mask;
        }
        self.rip = img.rip & width_mask;
        self.flags.set(img.rflags);
        self.dr[6] = img.dr6 | 0xffff_0ff0;
        self.dr[7] = img.dr7 | 0x400;
        self.cpl = if !protected {
            0
        } else if img.rflags & bits::VM != 0 {
            3
        } else {
            self.seg[sreg::SS].dpl()
        };
        // SMBASE relocation (revision bit 17; supported on every model smmlab offers).
        let new_base = match map {
            // AMD keeps SMBASE[3:0] zero (SMM_BASE MSR).
            MapKind::Amd64 => img.smbase as u32 & !0xf,
            _ => img.smbase as u32,
        };
        self.smm_regs.smbase = new_base;
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
        // Auto-HALT restart: bit 0 still set returns to the halted state.
        let mut halt_restarted = false;
        if std::mem::replace(&mut self.smm_regs.from_halt, false) && img.auto_halt & 1 != 0 && !io_restarted {
            self.halted = true;
            halt_restarted = true;
        }
        self.nmi_blocked = self.smm_regs.inside_nmi;
        self.smm = false;
        self.shadow = false;
        self.end_block = true;
        self.flush_tlb();
        bus.smm_left(&SmmExit {
            smbase: new_base,
            cs: self.seg[sreg::CS].selector,
            rip: self.rip,
            mode: self.mode_name(),
            smm_instructions: self.icount + 1 - self.smm_regs.entry_icount,
            icount: self.icount + 1,
            io_restarted,
            halt_restarted,
            shutdown: None,
        });
        Ok(())
    }
}

/// The RSM instruction's handler.
pub fn rsm(cpu: &mut Cpu, bus: &mut dyn Bus, _d: &Insn) -> Result<(), Exc> {
    cpu.rsm(bus)
}
