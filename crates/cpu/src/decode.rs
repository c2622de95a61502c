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
use rustc_hash::{FxHashMap, FxHashSet};
use std::rc::Rc;

/// One decoded instruction with its handler.
pub struct Insn {
    pub i: Instruction,
    pub exec: Handler,
    /// Length in bytes.
    pub len: u8,
    /// Address size in bytes (2, 4 or 8).
    pub asize: u8,
    /// Operand size in bytes of the first operand (or the instruction's natural size).
    pub osize: u8,
}

/// A decoded basic block.
pub struct Block {
    pub rip: u64,
    pub bitness: u32,
    pub insns: Vec<Insn>,
}

/// Blocks by (physical address, SMM), and which physical pages hold decoded code.
#[derive(Default)]
pub struct BlockCache {
    blocks: FxHashMap<u64, Rc<Block>>,
    pages: FxHashMap<u64, Vec<u64>>,
    code_pages: FxHashSet<u64>,
}

const MAX_BLOCK: usize = 64;

fn key(phys: u64, smm: bool) -> u64 {
    phys | ((smm as u64) << 63)
}

impl BlockCache {
    pub fn clear(&mut self) {
        self.blocks.clear();
        self.pages.clear();
        self.code_pages.clear();
    }
    #[inline]
    pub fn has_code(&self, page: u64) -> bool {
        !self.code_pages.is_empty() && self.code_pages.contains(&page)
    }
    pub fn invalidate_page(&mut self, page: u64) {
        if let Some(keys) = self.pages.remove(&page) {
            for k in keys {
                self.blocks.remove(&k);
            }
        }
        self.code_pages.remove(&page);
    }
    /// Number of cached blocks.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }
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
        (32, false) | (64, true) => 4,
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
        if bitness != 64 && self.rip > cs.limit as u64 && self.protected() {
            return Err(Exc::gp0());
        }
        let (phys_page, host) = self.fetch_page(bus, lin)?;
        let phys = phys_page | (lin & 0xfff);
        let k = key(phys, self.smm);
        if let Some(b) = self.cache.blocks.get(&k) {
            if b.rip == self.rip && b.bitness == bitness {
                return Ok(b.clone());
            }
        }
        let block = Rc::new(self.decode_block(bus, lin, phys, host, bitness)?);
        let page = phys_page;
        if !self.cache.code_pages.contains(&page) {
            self.cache.code_pages.insert(page);
            self.tlb.flush_phys_writes(page);
        }
        self.cache.pages.entry(page).or_default().push(k);
        self.cache.blocks.insert(k, block.clone());
        Ok(block)
    }

    fn decode_block(&mut self, bus: &mut dyn Bus, lin: u64, phys: u64, host: *mut u8, bitness: u32) -> Result<Block, Exc> {
        let off = (lin & 0xfff) as usize;
        let avail = 4096 - off;
        let mut buf = [0u8; 4096 + 16];
        if host.is_null() {
            for k in 0..avail {
                buf[k] = bus.read(crate::Access { addr: phys + k as u64, size: 1, kind: crate::AccessKind::Fetch, smm: self.smm }) as u8;
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
                    let len = i.len();
                    let asize = address_size(&tmp, bitness);
                    let osize = operand_size(&i, bitness);
                    insns.push(Insn { exec: exec::handler(&i), i, len: len as u8, asize, osize });
                    break;
                }
            } else {
                let mut d = Decoder::with_ip(bitness, &buf[pos..pos + 15], ip, opts);
                d.decode_out(&mut i);
            }
            let len = i.len();
            let asize = address_size(&buf[pos..pos + 15.min(remaining)], bitness);
            let osize = operand_size(&i, bitness);
            let end = ends_block(&i) || i.is_invalid();
            insns.push(Insn { exec: exec::handler(&i), i, len: len as u8, asize, osize });
            pos += len;
            ip = ip.wrapping_add(len as u64);
            if end || pos >= avail || insns.len() >= MAX_BLOCK {
                break;
            }
        }
        Ok(Block { rip: self.rip, bitness, insns })
    }
}
