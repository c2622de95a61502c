//! `smmlab bench`: the interpreter's speed on two built-in workloads, the same ones
//! `../shared/bench/loop-rom.asm` runs on QEMU and Bochs: a 7-instruction ALU and memory loop
//! (MIPS) on the minimal machine, and an `out 0xB2` loop whose SMI handler is a bare RSM (µs
//! per SMI round trip) on the pc machine. Each figure is (time with N iterations − time with 0
//! iterations) / N, so start-up cost cancels. Wall-clock figures vary with the host's load:
//! compare them with a peer measured in the same run, never alone.

use anyhow::bail;
use clap::Args;
use machine::{BoardKind, ExitReason, Machine, MachineConfig};
use std::time::Instant;

#[derive(Args)]
pub struct BenchArgs {
    /// Iterations of the ALU loop (at least 1: a figure per iteration needs iterations).
    #[arg(long, value_name = "N", default_value_t = 50_000_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub alu: u32,
    /// Iterations of the SMI loop (at least 1).
    #[arg(long, value_name = "N", default_value_t = 1_000_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub smi: u32,
    /// Best of R runs for each figure (at least 1).
    #[arg(long, value_name = "R", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
}

/// Real-mode code at F000:0000 with the reset vector jumping to it; 64 KiB.
fn rom(body: &[u8]) -> Vec<u8> {
    let mut r = vec![0xffu8; 0x10000];
    r[..body.len()].copy_from_slice(body);
    // jmp far f000:0000
    r[0xfff0..0xfff5].copy_from_slice(&[0xea, 0x00, 0x00, 0x00, 0xf0]);
    r
}

/// The loop body's prologue: cli; xor ax,ax; mov ds,ax; mov ss,ax; mov sp,0x7000.
const PROLOGUE: [u8; 10] = [0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0x8e, 0xd0, 0xbc, 0x00, 0x70];
/// mov al,0; out 0xf4,al; hlt.
const EPILOGUE: [u8; 5] = [0xb0, 0x00, 0xe6, 0xf4, 0xf4];

fn loop_rom(iterations: u32, body: &[u8], setup: &[u8]) -> Vec<u8> {
    let mut c = PROLOGUE.to_vec();
    c.extend_from_slice(setup);
    c.extend_from_slice(&[0x66, 0xb9]); // mov ecx, N
    c.extend_from_slice(&iterations.to_le_bytes());
    c.extend_from_slice(&[0xbe, 0x00, 0x10]); // mov si, 0x1000
    c.extend_from_slice(&[0x66, 0x85, 0xc9]); // test ecx, ecx
    c.extend_from_slice(&[0x74, (body.len() + 2) as u8]); // jz done
    let top = c.len();
    c.extend_from_slice(body);
    let rel = top as isize - (c.len() as isize + 2);
    c.extend_from_slice(&[0x75, rel as i8 as u8]); // jnz top
    c.extend_from_slice(&EPILOGUE);
    rom(&c)
}

/// add eax,ebx; xor ebx,eax; mov [si],eax; add si,4; and si,0x1ffc; dec ecx.
const ALU_BODY: [u8; 18] = [0x66, 0x01, 0xd8, 0x66, 0x31, 0xc3, 0x66, 0x89, 0x04, 0x83, 0xc6, 0x04, 0x81, 0xe6, 0xfc, 0x1f, 0x66, 0x49];
/// mov al,1; out 0xb2,al; dec ecx.
const SMI_BODY: [u8; 6] = [0xb0, 0x01, 0xe6, 0xb2, 0x66, 0x49];
/// RSM at 0x38000, then APMC_EN in PIIX4 PM (00:01.3, dword 0x58 bit 25).
const SMI_SETUP: [u8; 39] = [
    0xb8, 0x00, 0x38, 0x8e, 0xc0, // mov ax,0x3800; mov es,ax
    0x26, 0xc7, 0x06, 0x00, 0x00, 0x0f, 0xaa, // mov word [es:0], 0xAA0F (RSM)
    0x66, 0xb8, 0x58, 0x0b, 0x00, 0x80, // mov eax, 0x80000B58
    0xba, 0xf8, 0x0c, 0x66, 0xef, // mov dx,0xcf8; out dx,eax
    0xba, 0xfc, 0x0c, 0x66, 0xed, // mov dx,0xcfc; in eax,dx
    0x66, 0x0d, 0x00, 0x00, 0x00, 0x02, // or eax, 0x02000000
    0x66, 0xef, // out dx,eax
    0x90, 0x90, 0x90,
];

/// Best wall time of `runs` runs, and the instruction count and SMIs of the last.
fn time(kind: BoardKind, rom: &[u8], runs: u32) -> anyhow::Result<(f64, u64, u64)> {
    let mut best = f64::INFINITY;
    let mut last = (0, 0);
    for _ in 0..runs.max(1) {
        let mut m = Machine::new(kind, MachineConfig::default(), rom.to_vec())?;
        if let Some(ev) = m.board.events() {
            ev.recording = false;
        }
        let t0 = Instant::now();
        let s = m.run(u64::MAX);
        best = best.min(t0.elapsed().as_secs_f64());
        if s.exit != ExitReason::DebugExit || s.exit_code != 0 {
            bail!("benchmark ROM ended with {} (exit code {})", s.exit.name(), s.exit_code);
        }
        last = (s.instructions, s.smis);
    }
    Ok((best, last.0, last.1))
}

pub fn run(a: BenchArgs) -> anyhow::Result<i32> {
    let (a0, _, _) = time(BoardKind::Minimal, &loop_rom(0, &ALU_BODY, &[]), a.runs)?;
    let (a1, ai, _) = time(BoardKind::Minimal, &loop_rom(a.alu, &ALU_BODY, &[]), a.runs)?;
    let (s0, _, _) = time(BoardKind::Pc, &loop_rom(0, &SMI_BODY, &SMI_SETUP), a.runs)?;
    let (s1, _, smis) = time(BoardKind::Pc, &loop_rom(a.smi, &SMI_BODY, &SMI_SETUP), a.runs)?;
    if smis != a.smi as u64 {
        bail!("the SMI loop raised {smis} SMIs instead of {}", a.smi);
    }
    let alu = match a1 - a0 {
        d if d > 0.0 => format!("{:.0} MIPS", 7.0 * a.alu as f64 / d / 1e6),
        _ => NOISE.to_string(),
    };
    let smi = match s1 - s0 {
        d if d > 0.0 => format!("{:.3} us per SMI round trip", d / a.smi as f64 * 1e6),
        _ => NOISE.to_string(),
    };
    println!("alu loop:  {} iterations, {ai} instructions, {:.3} s - {:.3} s: {alu}", a.alu, a1, a0);
    println!("smi loop:  {} SMIs, {:.3} s - {:.3} s: {smi}", a.smi, s1, s0);
    Ok(0)
}

/// What a figure says when the loop took no longer than the empty run.
const NOISE: &str = "not measurable (no slower than the run without iterations; use more iterations)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alu_loop_retires_seven_instructions_per_iteration() {
        let (_, n0, _) = time(BoardKind::Minimal, &loop_rom(0, &ALU_BODY, &[]), 1).unwrap();
        let (_, n1, _) = time(BoardKind::Minimal, &loop_rom(1000, &ALU_BODY, &[]), 1).unwrap();
        assert_eq!(n1 - n0, 7 * 1000);
    }

    #[test]
    fn smi_loop_raises_one_smi_per_iteration() {
        let (_, _, smis) = time(BoardKind::Pc, &loop_rom(500, &SMI_BODY, &SMI_SETUP), 1).unwrap();
        assert_eq!(smis, 500);
    }
}
