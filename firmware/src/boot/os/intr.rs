//! The OS's interrupts: an IDT whose exception vectors stop the machine with a message, the
//! 8259 pair remapped to vectors 0x20-0x2F with only IRQ 0 unmasked, and the 8254's counter 0
//! as a 1 kHz tick (mode 2, divisor 1193: 1.193182 MHz / 1193 = 1000.15 Hz). The board's
//! local APIC is in virtual-wire mode, so the 8259 reaches the CPU.

use core::sync::atomic::{AtomicU64, Ordering};
use firmware::io::{outb, rdtsc};

/// The 8254's input clock (Hz) and the divisor for a 1 kHz tick.
pub const PIT_HZ: u64 = 1_193_182;
pub const PIT_DIVISOR: u64 = 1193;
pub const VECTOR_TIMER: u8 = 0x20;

/// Ticks received.
pub static TICKS: AtomicU64 = AtomicU64::new(0);
/// TSC at the first tick after [`start`].
pub static TSC_START: AtomicU64 = AtomicU64::new(0);

#[repr(C, align(16))]
struct Idt([u64; 2 * 256]);
static mut IDT: Idt = Idt([0; 512]);

#[no_mangle]
extern "sysv64" fn os_tick() {
    TICKS.fetch_add(1, Ordering::Relaxed);
}

#[no_mangle]
extern "sysv64" fn os_unexpected() -> ! {
    firmware::con::puts("os: unexpected exception, stopping\n");
    firmware::exit(3)
}

core::arch::global_asm!(
    r#"
    .pushsection .text.os_isr, "ax"
    .global os_timer_isr
    .global os_fault_isr
os_timer_isr:
    push rax
    push rcx
    push rdx
    push rsi
    push rdi
    push r8
    push r9
    push r10
    push r11
    call os_tick
    mov al, 0x20
    out 0x20, al
    pop r11
    pop r10
    pop r9
    pop r8
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rax
    iretq
os_fault_isr:
    and rsp, -16
    call os_unexpected
    .popsection
"#
);

extern "sysv64" {
    fn os_timer_isr();
    fn os_fault_isr();
}

fn gate(vector: usize, handler: u64, cs: u16) {
    // 64-bit interrupt gate (SDM vol. 3A 6.14.1): offset 15:0, selector, P|DPL0|type 0xE,
    // offset 31:16, offset 63:32.
    let lo = (handler & 0xffff) | (cs as u64) << 16 | 0x8e00u64 << 32 | ((handler >> 16) & 0xffff) << 48;
    // SAFETY: the IDT is only written here, before interrupts are enabled.
    unsafe {
        let idt = &mut *core::ptr::addr_of_mut!(IDT);
        idt.0[2 * vector] = lo;
        idt.0[2 * vector + 1] = handler >> 32;
    }
}

/// Installs the IDT, programs the 8259s and the 8254, and enables interrupts.
pub fn start() {
    let cs: u16;
    // SAFETY: reading CS has no side effect.
    unsafe { core::arch::asm!("mov {0:x}, cs", out(reg) cs, options(nomem, nostack)) };
    for v in 0..256 {
        gate(v, os_fault_isr as *const () as u64, cs);
    }
    gate(VECTOR_TIMER as usize, os_timer_isr as *const () as u64, cs);
    let idtr: [u16; 5] = {
        let base = core::ptr::addr_of!(IDT) as u64;
        [(16 * 256 - 1) as u16, base as u16, (base >> 16) as u16, (base >> 32) as u16, (base >> 48) as u16]
    };
    // SAFETY: the IDT is static and complete.
    unsafe { core::arch::asm!("lidt [{0}]", in(reg) idtr.as_ptr(), options(nostack)) };
    // 8259: ICW1 (edge, cascade, ICW4), ICW2 vector base, ICW3 wiring, ICW4 8086 mode.
    for (cmd, data, base, wiring, mask) in [(0x20u16, 0x21u16, 0x20u8, 0x04u8, 0xfeu8), (0xa0, 0xa1, 0x28, 0x02, 0xff)] {
        outb(cmd, 0x11);
        outb(data, base);
        outb(data, wiring);
        outb(data, 0x01);
        outb(data, mask);
    }
    // 8254 counter 0: lobyte/hibyte, mode 2 (rate generator).
    outb(0x43, 0x34);
    outb(0x40, PIT_DIVISOR as u8);
    outb(0x40, (PIT_DIVISOR >> 8) as u8);
    TICKS.store(0, Ordering::Relaxed);
    TSC_START.store(rdtsc(), Ordering::Relaxed);
    // SAFETY: the handlers are in place.
    unsafe { core::arch::asm!("sti", options(nomem, nostack)) };
}

/// Since [`start`]: the ticks that elapsed by the TSC (at `tsc_mhz`) and the ticks received.
pub fn since_start(tsc_mhz: u64) -> (u64, u64) {
    let elapsed = rdtsc() - TSC_START.load(Ordering::Relaxed);
    (elapsed * PIT_HZ / (PIT_DIVISOR * tsc_mhz * 1_000_000), ticks())
}

/// Ticks received so far.
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// Halts until the next interrupt.
pub fn wait_for_interrupt() {
    // SAFETY: interrupts are enabled; the timer wakes the CPU.
    unsafe { core::arch::asm!("sti; hlt", options(nomem, nostack)) };
}
