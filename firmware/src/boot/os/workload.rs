//! The OS's workload and what it measures: a busy loop over a buffer, sampling the TSC as
//! Linux's hwlat tracer does (any gap between two consecutive reads longer than the threshold
//! is time the OS did not get: here, SMIs), counting the 1 kHz timer ticks it receives against
//! the ticks that elapsed, and polling the firmware's error status block for memory errors.

use super::intr;
use firmware::con::{dec, hex64, puts};
use firmware::hw;
use firmware::io::rdtsc;
use firmware::layout::{ERROR_STATUS_BLOCK, OS_MEMORY};

/// The workload's buffer (the pages memory errors are injected into in the scenarios).
pub const WORK_BUF: u64 = OS_MEMORY + 0x10_0000;
pub const WORK_PAGES: u64 = 64;

/// TSC ticks per microsecond, measured against the ACPI PM timer.
pub fn calibrate_tsc_mhz() -> u64 {
    let t0 = rdtsc();
    hw::delay_us(2000);
    ((rdtsc() - t0 + 1000) / 2000).max(1)
}

/// What a workload run saw.
#[derive(Default)]
pub struct Measured {
    pub gaps: u64,
    pub max_gap_us: u64,
    pub total_gap_us: u64,
    pub ticks_expected: u64,
    pub ticks_received: u64,
    pub corrected: u64,
    pub uncorrectable: u64,
    pub retired: [u64; 8],
    pub retired_count: usize,
}

/// Reads and acknowledges one record of the error status block, if any.
fn poll_errors(m: &mut Measured) {
    let p = ERROR_STATUS_BLOCK;
    // SAFETY: the block is reserved RAM the firmware shares with the OS (e820 type 2).
    let status = unsafe { core::ptr::read_volatile(p as *const u32) };
    if status == 0 {
        return;
    }
    // SAFETY: as above; the layout is ACPI's Generic Error Status Block.
    let (severity, addr, kind) = unsafe {
        (
            core::ptr::read_unaligned((p + 16) as *const u32),
            core::ptr::read_unaligned((p + 20 + 72 + 16) as *const u64),
            core::ptr::read_volatile((p + 20 + 72 + 72) as *const u8),
        )
    };
    let ue = status & 1 != 0;
    puts("os: CPER memory error record: ");
    puts(if ue { "uncorrectable" } else { "corrected" });
    puts(if kind == 3 { " multi-bit ECC" } else { " single-bit ECC" });
    puts(" at ");
    hex64(addr);
    puts(" severity ");
    dec(severity as u64);
    if status & 0xc != 0 {
        puts(" (more errors were lost: multiple)");
    }
    if ue {
        m.uncorrectable += 1;
        let page = addr & !0xfff;
        if m.retired_count < m.retired.len() {
            m.retired[m.retired_count] = page;
            m.retired_count += 1;
        }
        puts(": page ");
        hex64(page);
        puts(" taken out of service");
    } else {
        m.corrected += 1;
    }
    puts("\n");
    // SAFETY: as above; clearing the status hands the block back to the firmware.
    unsafe { core::ptr::write_volatile(p as *mut u32, 0) };
}

/// Runs the workload for `ms` milliseconds of TSC time with interrupts on; gaps longer than
/// `threshold_us` count as stolen time.
pub fn run(ms: u64, tsc_mhz: u64, threshold_us: u64) -> Measured {
    let mut m = Measured::default();
    let threshold = threshold_us * tsc_mhz;
    let ticks0 = intr::ticks();
    let start = rdtsc();
    let end = start + ms * 1000 * tsc_mhz;
    let mut last = start;
    let mut sum = 0u64;
    let mut i = 0u64;
    while last < end {
        // One slice of work: a checksum over 64 bytes of the buffer.
        let page = (i >> 6) % WORK_PAGES;
        let at = WORK_BUF + page * 4096 + (i & 63) * 64;
        if !m.retired[..m.retired_count].contains(&(at & !0xfff)) {
            for k in 0..8 {
                // SAFETY: the workload buffer is OS RAM, identity-mapped.
                sum = sum.wrapping_add(unsafe { core::ptr::read_volatile((at + 8 * k) as *const u64) }).rotate_left(5);
            }
        }
        i += 1;
        if i & 255 == 0 {
            poll_errors(&mut m);
        }
        let now = rdtsc();
        let gap = now - last;
        if gap > threshold {
            m.gaps += 1;
            let us = gap / tsc_mhz;
            m.total_gap_us += us;
            m.max_gap_us = m.max_gap_us.max(us);
        }
        last = now;
    }
    poll_errors(&mut m);
    // SAFETY: keeps the checksum alive.
    unsafe { core::ptr::write_volatile((WORK_BUF - 8) as *mut u64, sum) };
    m.ticks_received = intr::ticks() - ticks0;
    m.ticks_expected = (last - start) * intr::PIT_HZ / (intr::PIT_DIVISOR * tsc_mhz * 1_000_000);
    m
}

/// Prints what the workload measured.
pub fn report(m: &Measured, ms: u64, threshold_us: u64) {
    puts("os: hwlat: ");
    dec(m.gaps);
    puts(" gaps over ");
    dec(threshold_us);
    puts(" us in ");
    dec(ms);
    puts(" ms of workload, max ");
    dec(m.max_gap_us);
    puts(" us, total ");
    dec(m.total_gap_us);
    puts(" us stolen\n");
    puts("os: timer: ");
    dec(m.ticks_expected);
    puts(" ticks elapsed, ");
    dec(m.ticks_received);
    puts(" received, ");
    dec(m.ticks_expected.saturating_sub(m.ticks_received));
    puts(" lost\n");
}
