//! The decoded-block cache.
//!
//! A block is a run of instructions decoded once with iced-x86, starting at a physical address
//! and ending at the first instruction that changes control flow or CPU state that decoding
//! depends on, or at the end of the 4 KiB page. Blocks are keyed by physical address and SMM
//! state (SMRAM can hide different bytes at the same address) and check the RIP and code size
//! they were decoded for. A write to a page that holds decoded code drops that page's blocks.

use crate::bus::Bus;
use crate::exception::Exc;
use crate::exec::{self, Handler};
use crate::{sreg, Cpu};
use iced_x86::{Code, Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic};
use rustc_hash::FxHashMap;
use std::rc::Rc;

/// One decoded instruction with its handler.
pub struct Insn {
    /// The instruction as iced-x86 decoded it.
    pub i: Instruction,
    /// The handler chosen for it at decode time.
    pub exec: Handler,
    /// Length in bytes.
    pub len: u8,
    /// Address size in bytes (2, 4 or 8).
    pub asize: u8,
    /// Operand size in bytes of the first operand (or the instruction's natural size).
    pub osize: u8,
    /// Memory operand, pre-resolved: base and index GPR numbers (`NO_REG` if absent), scale,
    /// displacement (absolute target for RIP-relative), segment register number.
    pub mem: MemRef,
    /// Register operand 0 as a [`crate::regs::RegRef`] (kind and number), for handlers that skip
    /// iced's operand dispatch.
    pub r0: crate::regs::RegRef,
    /// Register operand 1, as `r0`.
    pub r1: crate::regs::RegRef,
    /// The instruction's immediate (its last immediate operand), sign-extended as iced gives it.
    pub imm: u64,
    /// The x86 condition code (0-15) of Jcc/SETcc/CMOVcc.
    pub cc: u8,
}

/// No register in a [`MemRef`] slot.
pub const NO_REG: u8 = 0xff;

/// A memory operand's address components, resolved once at decode time.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemRef {
    /// Base GPR number, or [`NO_REG`].
    pub base: u8,
    /// Index GPR number, or [`NO_REG`].
    pub index: u8,
    /// Scale applied to the index (1, 2, 4 or 8).
    pub scale: u8,
    /// Segment register number (see [`crate::sreg`]).
    pub seg: u8,
    /// Displacement; for RIP-relative operands the absolute target.
    pub disp: u64,
}

impl MemRef {
    fn of(i: &Instruction) -> Self {
        let gpr = |r: iced_x86::Register| {
            if r == iced_x86::Register::None || crate::regs::gpr_size(r) == 0 {
                NO_REG
            } else {
                crate::regs::gpr_index(r) as u8
            }
        };
        let has_mem = (0..i.op_count()).any(|n| i.op_kind(n) == iced_x86::OpKind::Memory);
        if !has_mem {
            return MemRef { base: NO_REG, index: NO_REG, scale: 1, seg: 3, disp: 0 };
        }
        MemRef {
            base: gpr(i.memory_base()),
            index: gpr(i.memory_index()),
            scale: i.memory_index_scale() as u8,
            seg: crate::regs::seg_index(i.memory_segment()) as u8,
            disp: i.memory_displacement64(),
        }
    }
}

impl Insn {
    /// Bundles a decoded instruction with its handler and pre-resolved operand data.
    pub fn new(i: Instruction, asize: u8, bitness: u32) -> Self {
        let reg_of = |n: u32| if n < i.op_count() && i.op_kind(n) == iced_x86::OpKind::Register { crate::regs::RegRef::of(i.op_register(n)) } else { crate::regs::RegRef::NONE };
        let imm = (0..i.op_count()).rfind(|&n| matches!(i.op_kind(n), iced_x86::OpKind::Immediate8 | iced_x86::OpKind::Immediate16 | iced_x86::OpKind::Immediate32 | iced_x86::OpKind::Immediate64 | iced_x86::OpKind::Immediate8to16 | iced_x86::OpKind::Immediate8to32 | iced_x86::OpKind::Immediate8to64 | iced_x86::OpKind::Immediate32to64))
            .map(|n| i.immediate(n))
            .unwrap_or_else(|| match i.op0_kind() {
                iced_x86::OpKind::NearBranch16 | iced_x86::OpKind::NearBranch32 | iced_x86::OpKind::NearBranch64 => i.near_branch_target(),
                _ => 0,
            });
        Insn { exec: exec::handler(&i), len: i.len() as u8, asize, osize: operand_size(&i, bitness), mem: MemRef::of(&i), r0: reg_of(0), r1: reg_of(1), imm, cc: (i.condition_code() as u8).wrapping_sub(1), i }
    }
}

/// A decoded basic block.
pub struct Block {
    /// RIP the block was decoded at (a cached block serves only this RIP).
    pub rip: u64,
    /// Physical address of the first instruction.
    pub phys: u64,
    /// Code size it was decoded for: 16, 32 or 64.
    pub bitness: u32,
    /// Its instructions, in order.
    pub insns: Vec<Insn>,
}

/// Blocks by (physical address, SMM), and which 64-byte chunks of which physical pages hold
/// decoded code. A small direct-mapped table in front of the hash map serves hot blocks.
pub struct BlockCache {
    blocks: FxHashMap<u64, Rc<Block>>,
    pages: FxHashMap<u64, Vec<u64>>,
    /// Page -> bit mask of 64-byte chunks holding decoded instructions.
    code_pages: FxHashMap<u64, u64>,
    fast: Vec<(u64, Option<Rc<Block>>)>,
}

impl Default for BlockCache {
    fn default() -> Self {
        BlockCache { blocks: FxHashMap::default(), pages: FxHashMap::default(), code_pages: FxHashMap::default(), fast: vec![(u64::MAX, None); FAST_ENTRIES] }
    }
}

const MAX_BLOCK: usize = 64;
const FAST_ENTRIES: usize = 4096;

#[inline(always)]
fn fast_slot(k: u64) -> usize {
    ((k ^ (k >> 12) ^ (k >> 63)) as usize) & (FAST_ENTRIES - 1)
}

/// Mask of the 64-byte chunks of a page touched by `[off, off + len)`.
fn chunk_mask(off: u64, len: u64) -> u64 {
    let first = off / 64;
    let last = ((off + len.max(1) - 1) / 64).min(63);
    let n = last - first + 1;
    let bits = if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
    bits << first
}

fn key(phys: u64, smm: bool) -> u64 {
    phys | ((smm as u64) << 63)
}

impl BlockCache {
    /// Drops every block and the record of which pages hold code.
    pub fn clear(&mut self) {
        self.blocks.clear();
        self.pages.clear();
        self.code_pages.clear();
        for e in self.fast.iter_mut() {
            *e = (u64::MAX, None);
        }
    }
    /// Whether physical page `page` holds decoded code anywhere.
    #[inline]
    pub fn has_code(&self, page: u64) -> bool {
        !self.code_pages.is_empty() && self.code_pages.contains_key(&page)
    }
    /// Whether a write of `len` bytes at physical `addr` (within one page) hits decoded code.
    #[inline]
    pub fn write_hits_code(&self, addr: u64, len: u64) -> bool {
        match self.code_pages.get(&(addr & !0xfff)) {
            Some(m) => m & chunk_mask(addr & 0xfff, len) != 0,
            None => false,
        }
    }
    /// Drops every block decoded from page `page`.
    pub fn invalidate_page(&mut self, page: u64) {
        if let Some(keys) = self.pages.remove(&page) {
            for k in keys {
                self.blocks.remove(&k);
                let e = &mut self.fast[fast_slot(k)];
                if e.0 == k {
                    *e = (u64::MAX, None);
                }
            }
        }
        self.code_pages.remove(&page);
    }
    /// Number of cached blocks.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }
    /// Whether no block is cached.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }
}

/// Whether an instruction must end its block even though it does not branch: it may change the
/// code size, paging, interrupt shadow, or raise an SMI synchronously.
fn ends_block(i: &Instruction) -> bool {
    match i.flow_control() {
        FlowControl::Next => {}
        _ => return true,
    }
    matches!(
        i.mnemonic(),
        Mnemonic::Out
            | Mnemonic::Outsb
            | Mnemonic::Outsw
            | Mnemonic::Outsd
            | Mnemonic::In
            | Mnemonic::Insb
            | Mnemonic::Insw
            | Mnemonic::Insd
            | Mnemonic::Sti
            | Mnemonic::Cli
            | Mnemonic::Popf
            | Mnemonic::Popfd
            | Mnemonic::Popfq
            | Mnemonic::Lmsw
            | Mnemonic::Clts
            | Mnemonic::Wrmsr
            | Mnemonic::Lgdt
            | Mnemonic::Lidt
            | Mnemonic::Lldt
            | Mnemonic::Ltr
            | Mnemonic::Invlpg
            | Mnemonic::Hlt
            | Mnemonic::Rsm
            | Mnemonic::Swapgs
            | Mnemonic::Lss
            | Mnemonic::Cpuid
            | Mnemonic::Wbinvd
            | Mnemonic::Invd
    ) || matches!(i.code(), Code::Mov_cr_r32 | Code::Mov_cr_r64 | Code::Mov_dr_r32 | Code::Mov_dr_r64)
        || (i.op0_register() == iced_x86::Register::SS && i.op_count() > 0)
}

/// Scans legacy prefixes for 0x67 to find the address size.
fn address_size(bytes: &[u8], bitness: u32) -> u8 {
    let mut flip = false;
    for &b in bytes.iter().take(15) {
        match b {
            0x67 => flip = true,
            0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65 | 0x66 | 0xf0 | 0xf2 | 0xf3 => {}
            _ => break,
        }
    }
    match (bitness, flip) {
        (16, false) | (32, true) => 2,
        // 0x67 in 16-bit code selects 32-bit addressing (SDM Vol. 1 §3.6, table 3-4).
        (16, true) | (32, false) | (64, true) => 4,
        _ => 8,
    }
}

/// The natural operand size of an instruction: its first operand's size.
fn operand_size(i: &Instruction, bitness: u32) -> u8 {
    use iced_x86::OpKind;
    for n in 0..i.op_count() {
        match i.op_kind(n) {
            OpKind::Register => {
                let s = crate::regs::gpr_size(i.op_register(n));
                if s != 0 {
                    return s;
                }
            }
            OpKind::Memory => {
                let s = i.memory_size().size();
                if (1..=8).contains(&s) {
                    return s as u8;
                }
            }
            _ => {}
        }
    }
    match bitness {
        16 => 2,
        _ => 4,
    }
}

impl Cpu {
    /// The decoded block at CS:RIP, decoding it if needed.
    pub(crate) fn block_at_rip(&mut self, bus: &mut dyn Bus) -> Result<Rc<Block>, Exc> {
        let bitness = self.bitness();
        let cs = &self.seg[sreg::CS];
        let lin = if bitness == 64 { self.rip } else { cs.base.wrapping_add(self.rip) & 0xffff_ffff };
        // The CS limit holds for fetches in real mode too (a 16-bit EIP is no longer cut to 16
        // bits, so running off the end of a 64 KiB segment faults as on hardware).
        if bitness != 64 && self.rip > cs.limit as u64 {
            return Err(Exc::gp0());
        }
        let (phys_page, host) = self.fetch_page(bus, lin)?;
        let blocked = phys_page & crate::mmu::BLOCKED != 0;
        let phys_page = phys_page & !crate::mmu::BLOCKED;
        let phys = phys_page | (lin & 0xfff);
        self.smm_code_check(phys)?;
        if blocked {
            // Code the CPU may not see decodes as all ones, never cached.
            return Ok(Rc::new(self.decode_block(bus, lin, phys, std::ptr::null_mut(), bitness, true)?));
        }
        let k = key(phys, self.smm);
        let slot = fast_slot(k);
        if let (fk, Some(b)) = &self.cache.fast[slot] {
            if *fk == k && b.rip == self.rip && b.bitness == bitness {
                return Ok(b.clone());
            }
        }
        if let Some(b) = self.cache.blocks.get(&k) {
            if b.rip == self.rip && b.bitness == bitness {
                let b = b.clone();
                self.cache.fast[slot] = (k, Some(b.clone()));
                return Ok(b);
            }
        }
        let block = Rc::new(self.decode_block(bus, lin, phys, host, bitness, false)?);
        let page = phys_page;
        let len: u64 = block.insns.iter().map(|d| d.len as u64).sum();
        let mask = chunk_mask(phys & 0xfff, len.min(4096 - (phys & 0xfff)));
        let entry = self.cache.code_pages.entry(page).or_insert(0);
        if *entry == 0 {
            self.tlb.flush_phys_writes(page);
        }
        *entry |= mask;
        self.cache.pages.entry(page).or_default().push(k);
        self.cache.blocks.insert(k, block.clone());
        self.cache.fast[slot] = (k, Some(block.clone()));
        Ok(block)
    }

    fn decode_block(&mut self, bus: &mut dyn Bus, lin: u64, phys: u64, host: *mut u8, bitness: u32, blocked: bool) -> Result<Block, Exc> {
        let off = (lin & 0xfff) as usize;
        let avail = 4096 - off;
        let mut buf = [0u8; 4096 + 16];
        if blocked {
            buf.fill(0xff);
        } else if host.is_null() {
            for (k, b) in buf[..avail].iter_mut().enumerate() {
                *b = bus.read(crate::Access { addr: phys + k as u64, size: 1, kind: crate::AccessKind::Fetch, smm: self.smm }) as u8;
            }
        } else {
            // SAFETY: host points at a live 4 KiB page and off + avail == 4096.
            unsafe { std::ptr::copy_nonoverlapping(host.add(off), buf.as_mut_ptr(), avail) };
        }
        let mut insns = Vec::new();
        let mut pos = 0usize;
        let mut ip = self.rip;
        let opts = DecoderOptions::NONE;
        loop {
            let remaining = avail - pos;
            let mut i = Instruction::default();
            if remaining < 15 {
                // The instruction may cross into the next page: fetch up to 15 bytes across.
                let mut tmp = [0u8; 15];
                tmp[..remaining].copy_from_slice(&buf[pos..avail]);
                let mut d = Decoder::with_ip(bitness, &tmp[..remaining], ip, opts);
                d.decode_out(&mut i);
                if i.is_invalid() && d.last_error() == iced_x86::DecoderError::NoMoreBytes {
                    if !insns.is_empty() {
                        break;
                    }
                    self.fetch_bytes(bus, lin.wrapping_add(pos as u64), &mut tmp)?;
                    let mut d = Decoder::with_ip(bitness, &tmp, ip, opts);
                    d.decode_out(&mut i);
                    let asize = address_size(&tmp, bitness);
                    insns.push(Insn::new(i, asize, bitness));
                    break;
                }
            } else {
                let mut d = Decoder::with_ip(bitness, &buf[pos..pos + 15], ip, opts);
                d.decode_out(&mut i);
            }
            let len = i.len();
            let asize = address_size(&buf[pos..pos + 15.min(remaining)], bitness);
            let end = ends_block(&i) || i.is_invalid();
            insns.push(Insn::new(i, asize, bitness));
            pos += len;
            ip = ip.wrapping_add(len as u64);
            if end || pos >= avail || insns.len() >= MAX_BLOCK {
                break;
            }
        }
        Ok(Block { rip: self.rip, phys, bitness, insns })
    }
}

#[cfg(test)]
mod address_size_tests {
    use super::address_size;

    #[test]
    fn prefix_67_flips_the_address_size_in_every_mode() {
        assert_eq!(address_size(&[0x8b], 16), 2);
        assert_eq!(address_size(&[0x2e, 0x67, 0x66, 0x8b], 16), 4, "real-mode addr32 wraps at 4 GiB");
        assert_eq!(address_size(&[0x67, 0x8b], 32), 2);
        assert_eq!(address_size(&[0x8b], 32), 4);
        assert_eq!(address_size(&[0x67, 0x8b], 64), 4);
        assert_eq!(address_size(&[0x8b], 64), 8);
    }
}
