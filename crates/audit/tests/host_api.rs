//! The machine's host API (machine/src/host.rs) driven the way the audit, the fuzzer and the
//! debugger use it: the built-in firmware booted to its hand-off, then SW SMIs raised with
//! chosen registers, PCI configuration read, memory read as SMM and not.

use audit::boot::{boot, BootOptions};
use machine::host::SwSmiOutcome;
use machine::BoardKind;

fn booted() -> machine::Machine {
    let model = cpu::CpuModel { vendor: cpu::cpuid::Vendor::Intel, long_mode: true, tsc_hz: 1_000_000_000 };
    let o = BootOptions { board: BoardKind::Q35, model, rom: None, scenario: None, memory_mib: 128, max_instructions: 200_000_000, pflash: Vec::new(), pflash_secure: true };
    let b = boot(&o).unwrap();
    assert!(b.marker, "{}", b.stopped);
    b.machine
}

#[test]
fn sw_smis_run_the_handler_and_leave_the_interrupted_program_as_it_was() {
    let mut m = booted();
    let before = m.cpu_view();
    assert!(!before.in_smm);
    let smis = before.smi_count;
    // The built-in firmware's SW SMI 0x01 answers "PONG" in EAX with a count above it.
    let regs = [0x1111; 16];
    let SwSmiOutcome::Returned { instructions, regs: after } = m.raise_sw_smi(0x01, 0, &regs, 1_000_000) else { panic!("no return") };
    assert!(instructions > 10, "{instructions}");
    assert_eq!(after[0] & 0xffff_ffff, 0x504f_4e47, "{:#x}", after[0]);
    let SwSmiOutcome::Returned { regs: again, .. } = m.raise_sw_smi(0x01, 0, &regs, 1_000_000) else { panic!("no return") };
    assert_eq!(again[0] >> 32, (after[0] >> 32) + 1, "the handler counts its calls");
    let now = m.cpu_view();
    assert_eq!((now.cs, now.rip, now.in_smm), (before.cs, before.rip, false), "the interrupted program's position is restored");
    assert_eq!(now.smi_count, smis + 2);
    assert!(m.icount() > 0);
    // Nothing outside SMM ran: the instructions are the handler's.
    let rip_after = m.cpu_view().rip;
    assert_eq!(rip_after, before.rip);
    // A budget too small for the handler is a fault, not a hang.
    assert!(matches!(m.raise_sw_smi(0x01, 0, &regs, 5), SwSmiOutcome::Fault(_)));
}

#[test]
fn pci_and_memory_as_the_platform_sees_them() {
    let mut m = booted();
    assert_eq!(m.pci_read(0, 0, 0, 4), 0x29c0_8086, "the Q35 MCH");
    let tseg = (m.pci_read(0, 0, 0xac, 4) as u64) & !0xf_ffff;
    assert!(tseg > 0);
    // SMRAM is locked: from outside SMM TSEG reads all ones; as SMM, the firmware's bytes.
    assert!(m.read_phys(tseg, 16, false).iter().all(|b| *b == 0xff));
    assert!(m.read_phys(tseg, 4096, true).iter().any(|b| *b != 0xff));
    // A write from outside SMM does not reach it.
    let inside = m.read_phys(tseg, 16, true);
    m.write_phys(tseg, &[0u8; 16]);
    assert_eq!(m.read_phys(tseg, 16, true), inside);
    assert!(m.smm_registers().smbase as u64 >= tseg);
}
