//! Port I/O.

use core::arch::asm;

pub fn outb(port: u16, v: u8) {
    // SAFETY: port I/O has no memory effects visible to Rust.
    unsafe { asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags)) }
}

pub fn outw(port: u16, v: u16) {
    // SAFETY: as above.
    unsafe { asm!("out dx, ax", in("dx") port, in("ax") v, options(nomem, nostack, preserves_flags)) }
}

pub fn outl(port: u16, v: u32) {
    // SAFETY: as above.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") v, options(nomem, nostack, preserves_flags)) }
}

pub fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: as above.
    unsafe { asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack, preserves_flags)) }
    v
}

pub fn inw(port: u16) -> u16 {
    let v: u16;
    // SAFETY: as above.
    unsafe { asm!("in ax, dx", in("dx") port, out("ax") v, options(nomem, nostack, preserves_flags)) }
    v
}

pub fn inl(port: u16) -> u32 {
    let v: u32;
    // SAFETY: as above.
    unsafe { asm!("in eax, dx", in("dx") port, out("eax") v, options(nomem, nostack, preserves_flags)) }
    v
}

/// RDMSR. Faults (#GP) on an MSR the CPU model does not have.
pub fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the caller knows the MSR exists in the current mode.
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) }
    (hi as u64) << 32 | lo as u64
}

/// WRMSR.
pub fn wrmsr(msr: u32, v: u64) {
    // SAFETY: as for rdmsr; the value is the caller's responsibility.
    unsafe { asm!("wrmsr", in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32, options(nostack, preserves_flags)) }
}

/// CPUID leaf `leaf`, subleaf 0: (eax, ebx, ecx, edx).
pub fn cpuid(leaf: u32) -> (u32, u32, u32, u32) {
    let r = core::arch::x86_64::__cpuid_count(leaf, 0);
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// Whether the CPU reports "GenuineIntel".
pub fn is_intel() -> bool {
    let (_, b, c, d) = cpuid(0);
    (b, d, c) == (0x756e_6547, 0x4965_6e69, 0x6c65_746e)
}

/// A volatile 32-bit read of physical memory (identity-mapped).
pub fn peek32(addr: u64) -> u32 {
    // SAFETY: the firmware's page tables identity-map the low 4 GiB; unmapped reads return ones.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

/// A volatile 32-bit write of physical memory (identity-mapped).
pub fn poke32(addr: u64, v: u32) {
    // SAFETY: as above; the caller owns the location.
    unsafe { core::ptr::write_volatile(addr as *mut u32, v) }
}

/// The time-stamp counter.
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDTSC has no side effects (CR4.TSD is clear at CPL 0 anyway).
    unsafe { core::arch::asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    (hi as u64) << 32 | lo as u64
}
