//! Results the manuals leave undefined, on both CPU models: the `intel64` model must give what
//! an Intel Xeon (family 6, model 0xA7) gave for the same instruction and inputs (recorded
//! below), and the `amd64` model what the AMD manual documents or the project's earlier AMD
//! hosts showed (see `cpu::undefined`). These run on any host; the host-CPU differential suite
//! (`differential.rs`) checks the host's own vendor on random cases.

mod guest;

use cpu::cpuid::Vendor;
use cpu::flags::bits::{AF, ARITH, CF, OF, PF, SF, ZF};
use cpu::regs::{RAX, RCX, RDI, RDX, RSI};
use guest::*;

/// Runs `code` (then HLT) on `vendor`'s model in the machine `setup` builds from it, from the
/// given registers and arithmetic flags; returns the machine and the arithmetic flags after.
fn run_in(setup: fn(&[u8]) -> Machine, vendor: Vendor, code: &[u8], regs: &[(usize, u64)], flags: u64) -> (Machine, u64) {
    let mut prog = code.to_vec();
    prog.push(0xf4);
    let mut m = setup(&prog);
    m.cpu.model.vendor = vendor;
    for &(r, v) in regs {
        m.cpu.regs[r] = v;
    }
    m.cpu.flags.set(0x2 | flags);
    m.run_to_halt();
    assert!(m.vectors().is_empty(), "{vendor:?}: the case faulted: {}", m.describe());
    let f = m.cpu.flags.get() & ARITH;
    (m, f)
}

/// In 64-bit mode: the registers and the arithmetic flags after.
fn run(vendor: Vendor, code: &[u8], regs: &[(usize, u64)], flags: u64) -> ([u64; 16], u64) {
    let (m, f) = run_in(Machine::long64, vendor, code, regs, flags);
    (m.cpu.regs, f)
}

const RCX0: u64 = 0xaaaa_0000_0000_0000;
const RSI0: u64 = 0xbbbb_0000_0020_0100;
const RDI0: u64 = 0xcccc_0000_0020_0200;

/// `a32 rep <op>` with ECX = 0 and garbage in the upper halves of RCX, RSI and RDI.
fn rep_a32_zero_count(vendor: Vendor, op: &[u8]) -> (u64, u64, u64) {
    let code = [&[0x67, 0xf3][..], op].concat();
    let (r, _) = run(vendor, &code, &[(RCX, RCX0), (RSI, RSI0), (RDI, RDI0)], 0);
    (r[RCX], r[RSI], r[RDI])
}

#[test]
fn a_zero_count_rep_with_a_32_bit_address_size_writes_ecx_on_intel_only() {
    let low = |v: u64| v & 0xffff_ffff;
    // Intel: ECX is written (RCX = 0); MOVS also writes ESI and EDI, STOS EDI.
    assert_eq!(rep_a32_zero_count(Vendor::Intel, &[0xa4]), (0, low(RSI0), low(RDI0)), "movsb");
    assert_eq!(rep_a32_zero_count(Vendor::Intel, &[0x48, 0xa5]), (0, low(RSI0), low(RDI0)), "movsq");
    assert_eq!(rep_a32_zero_count(Vendor::Intel, &[0xab]), (0, RSI0, low(RDI0)), "stosd");
    assert_eq!(rep_a32_zero_count(Vendor::Intel, &[0xac]), (0, RSI0, RDI0), "lodsb");
    assert_eq!(rep_a32_zero_count(Vendor::Intel, &[0x48, 0xa7]), (0, RSI0, RDI0), "cmpsq");
    assert_eq!(rep_a32_zero_count(Vendor::Intel, &[0x66, 0xaf]), (0, RSI0, RDI0), "scasw");
    // AMD: the instruction does not execute.
    for op in [&[0xa4][..], &[0xab], &[0xac], &[0x48, 0xa7]] {
        assert_eq!(rep_a32_zero_count(Vendor::Amd, op), (RCX0, RSI0, RDI0), "{op:02x?}");
    }
}

#[test]
fn a_nonzero_count_rep_with_a_32_bit_address_size_writes_32_bit_registers_on_both() {
    for vendor in [Vendor::Intel, Vendor::Amd] {
        // a32 rep movsb with ECX = 1: one byte moved, RCX = 0, RSI/RDI zero-extended and moved.
        let (r, _) = run(vendor, &[0x67, 0xf3, 0xa4], &[(RCX, RCX0 | 1), (RSI, RSI0), (RDI, RDI0)], 0);
        assert_eq!((r[RCX], r[RSI], r[RDI]), (0, (RSI0 & 0xffff_ffff) + 1, (RDI0 & 0xffff_ffff) + 1), "{vendor:?}");
    }
}

#[test]
fn mul_clears_zf_on_intel() {
    // mul rcx with RAX = 0x10, RCX = 2^60: the low half is 0, the high half 1. Recorded on
    // Intel: CF|PF|OF (ZF clear, SF/PF from the low half, AF clear).
    let mul_rcx = [0x48, 0xf7, 0xe1];
    let (r, f) = run(Vendor::Intel, &mul_rcx, &[(RAX, 0x10), (RCX, 1 << 60)], ARITH);
    assert_eq!((r[RAX], r[RDX]), (0, 1));
    assert_eq!(f, CF | PF | OF);
    let (_, f) = run(Vendor::Amd, &mul_rcx, &[(RAX, 0x10), (RCX, 1 << 60)], ARITH);
    assert_eq!(f, CF | PF | OF | ZF, "the AMD model sets ZF from the low half");
    // imul eax, ecx: the same rule for the two-operand form.
    let (_, f) = run(Vendor::Intel, &[0x0f, 0xaf, 0xc1], &[(RAX, 0x4000_0003), (RCX, 0x6000_0000)], 0);
    // 0x40000003 * 0x60000000 = 0x1800_0001_2000_0000: low half 0x20000000 (positive, even
    // low byte), overflow.
    assert_eq!(f, CF | PF | OF);
}

#[test]
fn rotate_of_for_counts_above_one_follows_the_model() {
    // rol ax, 3 (register by an immediate): Intel leaves OF as it was, whatever the operand.
    let rol_ax_3 = [0x66, 0xc1, 0xc0, 0x03];
    for of in [0, OF] {
        let (_, f) = run(Vendor::Intel, &rol_ax_3, &[(RAX, 0x4000)], of);
        assert_eq!(f & OF, of, "rol ax, 3 with OF {of:#x} before");
    }
    // rol ax, cl with CL = 3: Intel computes OF from the first step, bit 15 XOR bit 14 of AX.
    let rol_ax_cl = [0x66, 0xd3, 0xc0];
    let (_, f) = run(Vendor::Intel, &rol_ax_cl, &[(RAX, 0x4000), (RCX, 3)], 0);
    assert_eq!(f & OF, OF, "0x4000: bits 15 and 14 differ");
    let (_, f) = run(Vendor::Intel, &rol_ax_cl, &[(RAX, 0xc000), (RCX, 3)], OF);
    assert_eq!(f & OF, 0, "0xc000: bits 15 and 14 agree");
    // ror al, cl with CL = 2, AL = 0xaf: CF = 1, OF = bit 0 XOR bit 7 = 0 (the rule held for
    // every one of 1,220 recorded cases per operand size).
    let (r, f) = run(Vendor::Intel, &[0xd2, 0xc8], &[(RAX, 0xaf), (RCX, 2)], 0);
    assert_eq!((r[RAX] & 0xff, f & (CF | OF)), (0xeb, CF));
    // The AMD model applies the count-1 formula to the result: rol ax, 3 of 0x4000 gives
    // 0x0002, CF = 0, MSB 0: OF = 0 even when OF was set.
    let (_, f) = run(Vendor::Amd, &rol_ax_3, &[(RAX, 0x4000)], OF);
    assert_eq!(f & OF, 0);
}

#[test]
fn shl_of_for_counts_above_one_is_the_first_step_on_intel() {
    // shl al, 2 with AL = 0xd2 (recorded on Intel: result 0x48, CF|PF, OF clear because bits 7
    // and 6 of 0xd2 agree; AF clear).
    let shl_al_2 = [0xc0, 0xe0, 0x02];
    let (r, f) = run(Vendor::Intel, &shl_al_2, &[(RAX, 0xd2)], AF | OF);
    assert_eq!((r[RAX] & 0xff, f), (0x48, CF | PF));
    // The AMD model: MSB(0x48) XOR CF = 1.
    let (_, f) = run(Vendor::Amd, &shl_al_2, &[(RAX, 0xd2)], 0);
    assert_eq!(f & OF, OF);
}

#[test]
fn shld_and_shrd_by_more_than_16_on_a_16_bit_operand() {
    // Recorded on Intel: shld ax, dx, 17 with AX = 0x4870, DX = 0x83c1 gives 0x0782 with
    // CF|PF|OF; shrd ax, dx, 24 with AX = 0x9f11, DX = 0x2b93 gives 0x112b with CF|PF.
    let (r, f) = run(Vendor::Intel, &[0x66, 0x0f, 0xa4, 0xd0, 17], &[(RAX, 0x4870), (RDX, 0x83c1)], 0);
    assert_eq!((r[RAX] & 0xffff, f), (0x0782, CF | PF | OF));
    let (r, f) = run(Vendor::Intel, &[0x66, 0x0f, 0xac, 0xd0, 24], &[(RAX, 0x9f11), (RDX, 0x2b93)], 0);
    assert_eq!((r[RAX] & 0xffff, f), (0x112b, CF | PF));
    // With bit 15 of AX set, Intel brings it back in after DX; the AMD model shifts in zeros.
    let (r, _) = run(Vendor::Intel, &[0x66, 0x0f, 0xa4, 0xd0, 17], &[(RAX, 0xc870), (RDX, 0x83c1)], 0);
    assert_eq!(r[RAX] & 0xffff, 0x0783);
    let (r, _) = run(Vendor::Amd, &[0x66, 0x0f, 0xa4, 0xd0, 17], &[(RAX, 0xc870), (RDX, 0x83c1)], 0);
    assert_eq!(r[RAX] & 0xffff, 0x0782);
}

#[test]
fn bsf_and_bsr_of_zero_keep_the_destination() {
    let dest = 0x1234_5678_90ab_cdef;
    for (name, code) in [("bsf rax", &[0x48, 0x0f, 0xbc, 0xc2][..]), ("bsr eax", &[0x0f, 0xbd, 0xc2]), ("bsf ax", &[0x66, 0x0f, 0xbc, 0xc2])] {
        // Recorded on Intel: all 64 bits kept, flags ZF|PF whatever they were.
        let (r, f) = run(Vendor::Intel, code, &[(RAX, dest), (RDX, 0)], ARITH);
        assert_eq!((r[RAX], f), (dest, ZF | PF), "{name}");
        // AMD documents the destination unchanged and ZF set; the other flags stay.
        let (r, f) = run(Vendor::Amd, code, &[(RAX, dest), (RDX, 0)], CF | SF);
        assert_eq!((r[RAX], f), (dest, ZF | CF | SF), "{name}");
    }
    // A nonzero source on Intel: the flags of a logic result, PF from the index (48 = 0b110000).
    let (r, f) = run(Vendor::Intel, &[0x48, 0x0f, 0xbd, 0xc2], &[(RDX, 0x0001_d13c_85ed_9fcf)], ARITH);
    assert_eq!((r[RAX], f), (48, PF));
}

#[test]
fn tzcnt_and_lzcnt_clear_the_undefined_flags_on_intel() {
    // tzcnt rax, rdx with RDX = 8: result 3; recorded flags 0 from all set.
    let (r, f) = run(Vendor::Intel, &[0xf3, 0x48, 0x0f, 0xbc, 0xc2], &[(RDX, 8)], ARITH);
    assert_eq!((r[RAX], f), (3, 0));
    let (_, f) = run(Vendor::Amd, &[0xf3, 0x48, 0x0f, 0xbc, 0xc2], &[(RDX, 8)], ARITH);
    assert_eq!(f, ARITH & !(CF | ZF));
}

/// In 32-bit protected mode at CPL 0.
fn run32(vendor: Vendor, code: &[u8], regs: &[(usize, u64)], flags: u64) -> (Machine, u64) {
    run_in(Machine::protected32, vendor, code, regs, flags)
}

#[test]
fn aas_borrows_into_ah_on_both_models() {
    // AX = 0x0205 with AF: AX - 6 = 0x01FF, AH - 1: 0x00FF, masked 0x000F (the SDM's
    // pseudocode; recorded on Intel in 32-bit code). Not 0x010F.
    for vendor in [Vendor::Intel, Vendor::Amd] {
        let (m, f) = run32(vendor, &[0x3f], &[(RAX, 0x0205)], AF);
        assert_eq!(m.cpu.regs[RAX] & 0xffff, 0x000f, "{vendor:?}");
        assert_eq!(f & (CF | AF), CF | AF);
    }
}

#[test]
fn bcd_undefined_flags_follow_the_model() {
    // Recorded on Intel for every AX with CF/AF clear and set: AAA/AAS set ZF and PF from the
    // new AL and clear SF and OF; DAA/DAS clear OF; AAD gives the flags of its byte addition.
    // aaa with AX = 0x0000, all flags set: AL = 6 -> 0x0106 masked 0x0106, CF|AF, PF (6 has two
    // bits), ZF/SF/OF clear.
    let (m, f) = run32(Vendor::Intel, &[0x37], &[(RAX, 0)], ARITH);
    assert_eq!((m.cpu.regs[RAX] & 0xffff, f), (0x0106, CF | AF | PF));
    // The AMD model keeps OF, SF, ZF and PF as they were.
    let (_, f) = run32(Vendor::Amd, &[0x37], &[(RAX, 0)], ARITH);
    assert_eq!(f, ARITH);
    // das with AL = 0x80, CF and AF clear: no adjustment; Intel OF clear, AMD too (no sign flip).
    // daa with AL = 0x7a: AL + 6 = 0x80, sign turned on: the AMD model sets OF, Intel does not.
    let (_, f) = run32(Vendor::Intel, &[0x27], &[(RAX, 0x7a)], 0);
    assert_eq!(f & OF, 0);
    let (_, f) = run32(Vendor::Amd, &[0x27], &[(RAX, 0x7a)], 0);
    assert_eq!(f & OF, OF);
    // aad 10 with AX = 0x0f0f: AL + 150 = 0x0f + 0x96 = 0xa5: no carry, AF (0xf + 0x6), OF
    // clear (positive + negative); SF from 0xa5.
    let (m, f) = run32(Vendor::Intel, &[0xd5, 0x0a], &[(RAX, 0x0f0f)], 0);
    assert_eq!((m.cpu.regs[RAX] & 0xffff, f), (0x00a5, AF | SF | PF));
    let (_, f) = run32(Vendor::Amd, &[0xd5, 0x0a], &[(RAX, 0x0f0f)], 0);
    assert_eq!(f, SF | PF);
}

#[test]
fn a_32_bit_push_of_a_segment_register_writes_the_slot_as_the_model_says() {
    // push ds (o32) over a stack slot holding 0xdeadbeef: Intel writes the 16-bit selector and
    // leaves 0xdead (recorded in compatibility mode); the AMD model zero-extends.
    for (vendor, want) in [(Vendor::Intel, 0xdead_0000 | KDATA as u32), (Vendor::Amd, KDATA as u32)] {
        let mut m = Machine::protected32(&[0x1e, 0xf4]); // push ds; hlt
        m.cpu.model.vendor = vendor;
        m.w32(STACK_TOP - 4, 0xdead_beef);
        m.run_to_halt();
        assert_eq!(m.cpu.regs[cpu::regs::RSP], STACK_TOP - 4, "{vendor:?}");
        assert_eq!(m.stack32(0), want, "{vendor:?}");
    }
}
