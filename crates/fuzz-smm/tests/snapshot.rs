//! Snapshot restore on the module runner: the planted `counter` driver (built from C at test
//! time with Debian's clang and lld-link) keeps a count in SMRAM; from a snapshot every call
//! sees the same count, and the same input gives the same accesses and result.

use fuzz_smm::{Snapshotted, Target};
use machine::board::observer::SmmAccess;
use module_runner::{CallResult, Module, ModuleKind, Phase, Runner};
use std::path::{Path, PathBuf};

const GUID: &str = "3c1d6f0e-8f47-4c6a-9b2e-7d5a0c4e91b3";

fn drivers() -> Option<&'static Path> {
    testkit::smm_drivers(&PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("smm-drivers-snapshot"))
}

fn runner(name: &str) -> Option<Runner> {
    let pe = std::fs::read(drivers()?.join(format!("{name}.efi"))).expect("the driver");
    let m = Module { name: name.into(), guid: None, pe, kind: ModuleKind::DxeSmmDriver, pcd: None };
    let mut r = Runner::new(cpu::CpuModel::default(), &m).expect("loads");
    assert_eq!(r.run_entry().status(), Some(0));
    r.signal(&Phase::through(Phase::ReadyToBoot));
    r.machine.set_smm_code_check(false);
    r.machine.observe_smm(true);
    Some(r)
}

/// The message's Count and Status after a call.
fn count(r: &mut Runner) -> (u64, u64) {
    let b = r.machine.read_phys(fuzz_smm::MESSAGE + 8, 16, false);
    (u64::from_le_bytes(b[..8].try_into().unwrap()), u64::from_le_bytes(b[8..].try_into().unwrap()))
}

/// The first difference of two access records.
fn same(a: &[SmmAccess], b: &[SmmAccess]) {
    if let Some(i) = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i)) {
        panic!("the accesses differ at {i} of {}/{}: {:x?} vs {:x?}", a.len(), b.len(), a.get(i), b.get(i));
    }
}

fn message(command: u64) -> Vec<u8> {
    [command, 0, 0].iter().flat_map(|w| w.to_le_bytes()).collect()
}

#[test]
fn without_a_restore_the_count_goes_up() {
    // The control: the driver really keeps state, so the test below can fail.
    let Some(mut r) = runner("counter") else { return };
    let t = Target::Guid(GUID.parse().unwrap());
    let counts: Vec<u64> = (0..5).map(|_| {
        fuzz_smm::call(&mut r, &t, &message(7));
        count(&mut r).0
    }).collect();
    assert_eq!(counts, [1, 2, 3, 4, 5]);
    assert_eq!(count(&mut r).1, 0x8000_0000_0000_0006, "Command 7 past a count of 3: EFI_NOT_READY");
}

#[test]
fn from_a_snapshot_every_call_starts_from_the_same_state() {
    let Some(r) = runner("counter") else { return };
    let t = Target::Guid(GUID.parse().unwrap());
    let mut s = Snapshotted::new(r);
    let (first, first_acc) = s.call(&t, &message(7));
    assert!(matches!(first, CallResult::Returned { status: 0, .. }), "{first:?}");
    assert!(!first_acc.is_empty());
    let icount = s.runner.machine.icount();
    for _ in 0..5 {
        let (res, acc) = s.call(&t, &message(7));
        assert_eq!(count(&mut s.runner), (1, 0), "the count in SMRAM was put back");
        assert_eq!(res, first, "the same result");
        same(&acc, &first_acc);
        assert_eq!(s.runner.machine.icount(), icount, "the same instruction count: the CPU went back too");
        assert!(s.restored_pages > 0, "the pages the call wrote were put back");
    }
    // Another input in between changes nothing for the next.
    s.call(&t, &message(1));
    let (res, acc) = s.call(&t, &message(7));
    assert_eq!(res, first);
    same(&acc, &first_acc);
}

#[test]
fn a_call_that_brings_the_machine_down_is_undone_too() {
    // savestate_pointer writes through the saved RSI: RSI non-canonical faults in SMM.
    let Some(r) = runner("savestate_pointer") else { return };
    let t = Target::Sw(0x61);
    let mut s = Snapshotted::new(r);
    let (ok, ok_acc) = s.call(&t, &[0; 48]);
    assert!(matches!(ok, CallResult::Returned { .. }), "{ok:?}");
    let wild: Vec<u8> = [0u64, 0, 0, 0, 0x8000_0000_0000_0000, 0].iter().flat_map(|w| w.to_le_bytes()).collect();
    let (bad, _) = s.call(&t, &wild);
    assert!(matches!(bad, CallResult::Fault { .. }), "{bad:?}");
    let (again, again_acc) = s.call(&t, &[0; 48]);
    assert_eq!(again, ok, "after the fault, the machine is as it was");
    same(&again_acc, &ok_acc);
}

#[test]
fn a_restore_cuts_the_hosts_records_back_and_copies_the_rest() {
    let Some(r) = runner("counter") else { return };
    let t = Target::Guid(GUID.parse().unwrap());
    let (served, calls, handlers) = (r.env.served.len(), r.env.calls.len(), r.env.handlers.len());
    assert!(served > 0 && handlers > 0, "the entry point was served and registered its handler");
    let mut s = Snapshotted::new(r);
    s.call(&t, &message(7));
    // What a call may leave behind in the records: an entry appended to each, a handler gone.
    let extra = s.runner.env.served[0].clone();
    s.runner.env.served.push(extra);
    let call = s.runner.env.calls.first().cloned();
    s.runner.env.calls.extend(call);
    s.runner.env.handlers.clear();
    s.restore();
    assert_eq!((s.runner.env.served.len(), s.runner.env.calls.len(), s.runner.env.handlers.len()), (served, calls, handlers));
    let (res, _) = s.call(&t, &message(7));
    assert!(matches!(res, CallResult::Returned { status: 0, .. }), "the handler is found again: {res:?}");
}

#[test]
fn in_the_fuzzers_mode_smram_reads_go_unrecorded_and_the_rest_is_kept() {
    use machine::board::observer::SmmAccessKind;
    let t = Target::Guid(GUID.parse().unwrap());
    let kinds = |acc: &[SmmAccess]| {
        let n = |smram: bool, kind: SmmAccessKind| acc.iter().filter(|a| a.smram == smram && a.kind == kind).count();
        (n(true, SmmAccessKind::Read), n(true, SmmAccessKind::Write), n(false, SmmAccessKind::Read))
    };
    let Some(mut r) = runner("counter") else { return };
    let (_, acc) = fuzz_smm::call(&mut r, &t, &message(7));
    let (smram_reads, smram_writes, outside_reads) = kinds(&acc);
    assert!(smram_reads > 0 && smram_writes > 0 && outside_reads > 0, "{acc:x?}");
    let Some(mut r) = runner("counter") else { return };
    r.machine.fuzz_mode(true);
    let (_, fast) = fuzz_smm::call(&mut r, &t, &message(7));
    // What stays of SMRAM's reads are the page walker's (the tables are in TSEG), which do not
    // go through the TLB.
    let (fast_reads, fast_writes, fast_outside) = kinds(&fast);
    assert!(fast_reads * 3 < smram_reads, "{fast_reads} of {smram_reads} SMRAM reads still recorded");
    assert_eq!((fast_writes, fast_outside), (smram_writes, outside_reads), "SMRAM writes and reads of the message stay recorded");
    assert_eq!(count(&mut r).0, 1, "the call did its work");
}
