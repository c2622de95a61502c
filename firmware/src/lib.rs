//! Code shared by the boot image and the SMM image of smmlab's built-in firmware: port I/O,
//! debugcon output, PCI configuration access, the memory layout, the context the boot code
//! hands to SMM, the save-state maps, the SW SMI numbers and the communication-buffer format.
//!
//! Everything runs in 64-bit mode with CR4.OSFXSR set (the compiler uses SSE moves).

#![no_std]

pub mod con;
pub mod hw;
pub mod io;
pub mod layout;
pub mod mem;
pub mod pci;
pub mod savestate;
pub mod scenario;
pub mod sw;

/// Stops the machine through isa-debug-exit with `code` (smmlab exits with that status).
pub fn exit(code: u8) -> ! {
    io::outb(layout::PORT_DEBUG_EXIT, code);
    loop {
        // SAFETY: halting is harmless; nothing follows the exit request.
        unsafe { core::arch::asm!("cli; hlt", options(nomem, nostack)) };
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    con::puts("fw: panic");
    if let Some(l) = info.location() {
        con::puts(" at ");
        con::puts(l.file());
        con::puts(":");
        con::dec(l.line() as u64);
    }
    con::puts("\n");
    exit(layout::EXIT_FIRMWARE_FAILED)
}
