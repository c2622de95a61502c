//! memcpy, memmove, memset, memcmp and bcmp: the host target's compiler_builtins leaves them to
//! libc, which a freestanding image does not have. Written with string instructions so the
//! compiler cannot turn them back into calls to themselves.

use core::arch::asm;

/// # Safety
/// The usual memcpy contract.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller gives `n` readable bytes at `src` and `n` writable ones at `dst`; DF is
    // clear (the ABI's state), so REP MOVSB copies byte by byte forwards (memmove relies on that
    // when dst is below src).
    unsafe { asm!("rep movsb", inout("rdi") dst => _, inout("rsi") src => _, inout("rcx") n => _, options(nostack, preserves_flags)) };
    dst
}

/// # Safety
/// The usual memmove contract.
#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize).wrapping_add(n) {
        // SAFETY: dst is below src or past its end, so a forward copy never reads a byte it has
        // already overwritten; the caller's contract covers both ranges.
        return unsafe { memcpy(dst, src, n) };
    }
    // Overlapping with dst above src: copy backwards.
    // SAFETY: the caller gives `n` readable bytes at `src` and `n` writable ones at `dst`, so
    // `add(n)` stays within (one past) each range; copying from the last byte down with DF set
    // reads every source byte before the overlapping destination overwrites it, and CLD restores
    // the ABI's DF = 0.
    unsafe {
        asm!("std", "rep movsb", "cld",
            inout("rdi") dst.add(n).wrapping_sub(1) => _, inout("rsi") src.add(n).wrapping_sub(1) => _, inout("rcx") n => _,
            options(nostack))
    };
    dst
}

/// # Safety
/// The usual memset contract.
#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller gives `n` writable bytes at `dst`; DF is clear (the ABI's state).
    unsafe { asm!("rep stosb", inout("rdi") dst => _, inout("rcx") n => _, in("al") c as u8, options(nostack, preserves_flags)) };
    dst
}

/// # Safety
/// The usual memcmp contract.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: i < n, and the caller gives `n` readable bytes at `a` and at `b`.
        let (x, y) = unsafe { (core::ptr::read_volatile(a.add(i)), core::ptr::read_volatile(b.add(i))) };
        if x != y {
            return x as i32 - y as i32;
        }
        i += 1;
    }
    0
}

/// # Safety
/// The usual bcmp contract.
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: memcmp's contract is bcmp's.
    unsafe { memcmp(a, b, n) }
}
