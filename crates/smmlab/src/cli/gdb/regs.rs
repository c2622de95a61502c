//! The register file gdb sees and its target description (`target.xml`): gdb's x86-64 core and
//! SSE features (the layout `gdbstub_arch`'s [`X86_64CoreRegs`] serializes), then smmlab's own
//! features: the segment bases and limits, CR0/CR2/CR3/CR4/EFER, and SMBASE with an in-SMM
//! flag. Feature and register names for the core and SSE are the ones gdb's manual requires
//! ("i386 Features": `org.gnu.gdb.i386.core`, `org.gnu.gdb.i386.sse`); the flag bits are the
//! SDM's (vol. 1 §3.4.3 EFLAGS, §10.2.3 MXCSR).

use gdbstub::arch::{Arch, Registers};
use gdbstub_arch::x86::reg::X86_64CoreRegs;
use std::fmt::Write;
use std::sync::OnceLock;

/// smmlab's registers after the core and SSE ones, in the order gdb numbers them.
pub const EXTRA: &[ExtraReg] = &[
    seg("cs_base", 64),
    seg("ss_base", 64),
    seg("ds_base", 64),
    seg("es_base", 64),
    seg("fs_base", 64),
    seg("gs_base", 64),
    seg("cs_limit", 32),
    seg("ss_limit", 32),
    seg("ds_limit", 32),
    seg("es_limit", 32),
    seg("fs_limit", 32),
    seg("gs_limit", 32),
    ExtraReg { name: "cr0", bits: 64, feature: SYSTEM },
    ExtraReg { name: "cr2", bits: 64, feature: SYSTEM },
    ExtraReg { name: "cr3", bits: 64, feature: SYSTEM },
    ExtraReg { name: "cr4", bits: 64, feature: SYSTEM },
    ExtraReg { name: "efer", bits: 64, feature: SYSTEM },
    ExtraReg { name: "smbase", bits: 32, feature: SMM },
    ExtraReg { name: "in_smm", bits: 32, feature: SMM },
];

const SEGMENTS: &str = "org.smmlab.x86.segments";
const SYSTEM: &str = "org.smmlab.x86.system";
const SMM: &str = "org.smmlab.x86.smm";

const fn seg(name: &'static str, bits: u32) -> ExtraReg {
    ExtraReg { name, bits, feature: SEGMENTS }
}

/// One register of smmlab's features (read-only to gdb). No register group is named: gdb's
/// x86 code decides groups itself and puts registers it does not know in `general`, so
/// `info registers` lists them all.
pub struct ExtraReg {
    pub name: &'static str,
    /// 32 or 64.
    pub bits: u32,
    feature: &'static str,
}

/// The whole register file: gdb's core and SSE registers, then [`EXTRA`]'s values in order.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SmmRegisters {
    pub core: X86_64CoreRegs,
    pub extra: Vec<u64>,
}

/// The bytes [`X86_64CoreRegs`] takes in gdb's `g` packet (core and SSE).
const CORE_BYTES: usize = 0x218;

impl Registers for SmmRegisters {
    type ProgramCounter = u64;

    fn pc(&self) -> u64 {
        self.core.rip
    }

    fn gdb_serialize(&self, mut write_byte: impl FnMut(Option<u8>)) {
        self.core.gdb_serialize(&mut write_byte);
        for (r, v) in EXTRA.iter().zip(self.extra.iter().chain(std::iter::repeat(&0))) {
            for b in &v.to_le_bytes()[..r.bits as usize / 8] {
                write_byte(Some(*b));
            }
        }
    }

    fn gdb_deserialize(&mut self, bytes: &[u8]) -> Result<(), ()> {
        let (core, mut rest) = bytes.split_at_checked(CORE_BYTES).ok_or(())?;
        self.core.gdb_deserialize(core)?;
        self.extra.clear();
        for r in EXTRA {
            let (v, tail) = rest.split_at_checked(r.bits as usize / 8).ok_or(())?;
            let mut b = [0u8; 8];
            b[..v.len()].copy_from_slice(v);
            self.extra.push(u64::from_le_bytes(b));
            rest = tail;
        }
        Ok(())
    }
}

/// x86-64 with smmlab's system and SMM registers.
pub enum SmmX86_64 {}

impl Arch for SmmX86_64 {
    type Usize = u64;
    type Registers = SmmRegisters;
    type BreakpointKind = usize;
    type RegId = ();

    fn target_description_xml() -> Option<&'static str> {
        static XML: OnceLock<String> = OnceLock::new();
        Some(XML.get_or_init(target_xml))
    }
}

/// (name, bit) pairs of a flags type.
fn flags(out: &mut String, id: &str, bits: &[(&str, u32)]) {
    let _ = write!(out, r#"<flags id="{id}" size="4">"#);
    for (name, bit) in bits {
        let _ = write!(out, r#"<field name="{name}" start="{bit}" end="{bit}"/>"#);
    }
    out.push_str("</flags>");
}

fn reg(out: &mut String, name: &str, bits: u32, ty: &str, group: Option<&str>) {
    let group = group.map_or(String::new(), |g| format!(r#" group="{g}""#));
    let _ = write!(out, r#"<reg name="{name}" bitsize="{bits}" type="{ty}"{group}/>"#);
}

fn target_xml() -> String {
    let mut x = String::from(r#"<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd"><target version="1.0"><architecture>i386:x86-64</architecture>"#);
    x.push_str(r#"<feature name="org.gnu.gdb.i386.core">"#);
    let eflags = [("CF", 0), ("", 1), ("PF", 2), ("AF", 4), ("ZF", 6), ("SF", 7), ("TF", 8), ("IF", 9), ("DF", 10), ("OF", 11), ("NT", 14), ("RF", 16), ("VM", 17), ("AC", 18), ("VIF", 19), ("VIP", 20), ("ID", 21)];
    flags(&mut x, "i386_eflags", &eflags);
    for name in ["rax", "rbx", "rcx", "rdx", "rsi", "rdi"] {
        reg(&mut x, name, 64, "int64", None);
    }
    reg(&mut x, "rbp", 64, "data_ptr", None);
    reg(&mut x, "rsp", 64, "data_ptr", None);
    for n in 8..16 {
        reg(&mut x, &format!("r{n}"), 64, "int64", None);
    }
    reg(&mut x, "rip", 64, "code_ptr", None);
    reg(&mut x, "eflags", 32, "i386_eflags", None);
    for name in ["cs", "ss", "ds", "es", "fs", "gs"] {
        reg(&mut x, name, 32, "int32", None);
    }
    for n in 0..8 {
        reg(&mut x, &format!("st{n}"), 80, "i387_ext", None);
    }
    for name in ["fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop"] {
        reg(&mut x, name, 32, "int", Some("float"));
    }
    x.push_str(r#"</feature><feature name="org.gnu.gdb.i386.sse">"#);
    for (id, ty, n) in [("v4f", "ieee_single", 4), ("v2d", "ieee_double", 2), ("v16i8", "int8", 16), ("v8i16", "int16", 8), ("v4i32", "int32", 4), ("v2i64", "int64", 2)] {
        let _ = write!(x, r#"<vector id="{id}" type="{ty}" count="{n}"/>"#);
    }
    x.push_str(r#"<union id="vec128"><field name="v4_float" type="v4f"/><field name="v2_double" type="v2d"/><field name="v16_int8" type="v16i8"/><field name="v8_int16" type="v8i16"/><field name="v4_int32" type="v4i32"/><field name="v2_int64" type="v2i64"/><field name="uint128" type="uint128"/></union>"#);
    let mxcsr = [("IE", 0), ("DE", 1), ("ZE", 2), ("OE", 3), ("UE", 4), ("PE", 5), ("DAZ", 6), ("IM", 7), ("DM", 8), ("ZM", 9), ("OM", 10), ("UM", 11), ("PM", 12), ("FZ", 15)];
    flags(&mut x, "i386_mxcsr", &mxcsr);
    for n in 0..16 {
        reg(&mut x, &format!("xmm{n}"), 128, "vec128", Some("vector"));
    }
    reg(&mut x, "mxcsr", 32, "i386_mxcsr", Some("vector"));
    x.push_str("</feature>");
    let mut feature = "";
    for r in EXTRA {
        if r.feature != feature {
            if !feature.is_empty() {
                x.push_str("</feature>");
            }
            feature = r.feature;
            let _ = write!(x, r#"<feature name="{feature}">"#);
        }
        reg(&mut x, r.name, r.bits, if r.bits == 64 { "uint64" } else { "uint32" }, None);
    }
    x.push_str("</feature></target>");
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_round_trip_through_the_g_packet_layout() {
        let mut r = SmmRegisters::default();
        r.core.rip = 0x8000;
        r.extra = (1..=EXTRA.len() as u64).map(|v| v << 20 | v).collect();
        let mut bytes = Vec::new();
        r.gdb_serialize(|b| bytes.push(b.unwrap_or(0)));
        let extra_bytes: usize = EXTRA.iter().map(|e| e.bits as usize / 8).sum();
        assert_eq!(bytes.len(), CORE_BYTES + extra_bytes);
        let mut back = SmmRegisters::default();
        back.gdb_deserialize(&bytes).unwrap();
        assert_eq!(back, r);
        assert!(back.gdb_deserialize(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn the_description_names_every_register_once() {
        let xml = SmmX86_64::target_description_xml().unwrap();
        for name in ["rax", "rip", "eflags", "gs", "st7", "fop", "xmm15", "mxcsr"].iter().chain(EXTRA.iter().map(|e| &e.name)) {
            assert_eq!(xml.matches(&format!(r#"<reg name="{name}" "#)).count(), 1, "{name}");
        }
        assert_eq!(xml.matches("<feature ").count(), 5);
        assert_eq!(xml.matches("<feature ").count(), xml.matches("</feature>").count());
    }
}
