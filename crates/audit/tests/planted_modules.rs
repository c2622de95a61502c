//! The planted-bug SMM drivers (crates/module-runner/tests/drivers, C built as real PE32+ with
//! Debian's clang and lld-link at test time), each run on its own and audited: each bug is
//! found by the right rule and by no other, and its clean twin, which differs only in the fix,
//! is clean.

use module_runner::{report, Module, ModuleKind, Phase, Runner};
use std::path::{Path, PathBuf};

/// Builds the drivers once per test binary; None when clang or lld-link is missing (a skip,
/// or a failure under CI).
fn drivers() -> Option<&'static Path> {
    testkit::smm_drivers(&PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("smm-drivers"))
}

/// The rules the audit of driver `name` reports.
fn rules(name: &str) -> Option<(Vec<&'static str>, audit::report::Report)> {
    rules_on(name, cpu::CpuModel::default())
}

fn rules_on(name: &str, model: cpu::CpuModel) -> Option<(Vec<&'static str>, audit::report::Report)> {
    let dir = drivers()?;
    let pe = std::fs::read(dir.join(format!("{name}.efi"))).expect("built");
    let m = Module { name: name.into(), guid: None, pe, kind: ModuleKind::DxeSmmDriver, pcd: None };
    let mut r = Runner::new(model, &m).expect("loads");
    r.run_entry();
    r.signal(&Phase::ALL);
    let rep = report::report(&mut r, None);
    assert!(matches!(rep.entry, Some(module_runner::CallResult::Returned { status: 0, .. })), "{name}: {:?}", rep.entry);
    assert!(!rep.inventory.handlers.is_empty(), "{name} registered nothing");
    let a = audit::module::audit(&mut r, &rep, "intel64", name.into());
    let mut v: Vec<&'static str> = a.findings().map(|f| f.rule).collect();
    v.dedup();
    Some((v, a))
}

fn check(name: &str, rule: &'static str) {
    let Some((bug, a)) = rules(name) else { return };
    assert_eq!(bug, vec![rule], "{name}: {}", audit::output::text(&a));
    // The finding names the handler Module+0xRVA.
    let f = a.findings().next().expect("a finding");
    let at = &f.smi.as_ref().and_then(|s| s.module.as_ref()).expect("named").at;
    assert!(at.starts_with(&format!("{name}+0x")), "{at}");
    // And the instruction that did it, decoded, inside the module's code.
    assert!(f.message.contains(" by `") && f.message.contains(&format!("` at {name}+0x")), "{}", f.message);
    let Some((clean, a)) = rules(&format!("{name}_clean")) else { return };
    assert!(clean.is_empty(), "{name}_clean: {}", audit::output::text(&a));
}

#[test]
fn an_unchecked_pointer_in_the_message_is_an_smram_write() {
    check("comm_pointer", audit::rules::SMRAM_POINTER);
}

#[test]
fn a_boot_service_called_at_run_time_is_a_call_out() {
    check("callout", audit::rules::CALLOUT);
}

#[test]
fn a_length_checked_then_read_again_is_a_double_fetch() {
    check("double_fetch", audit::rules::DOUBLE_FETCH);
    // And the race is staged: the Length byte changed right after the check's read makes the
    // copy overrun its 64-byte SMRAM buffer.
    let Some((_, a)) = rules("double_fetch") else { return };
    let f = a.findings().next().expect("a finding");
    let extra: u64 = f.message.split("wrote ").nth(1).and_then(|t| t.split(' ').next()).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{}", f.message));
    assert!(f.message.contains("raced, proved") && extra > 64, "{}", f.message);
}

#[test]
fn a_save_state_register_trusted_as_a_pointer_is_an_smram_write() {
    check("savestate_pointer", audit::rules::SMRAM_POINTER);
}

#[test]
fn the_save_state_is_read_through_the_amd64_map_on_an_amd_cpu() {
    // RSI comes from AMD's save-state map (AMD APM vol. 2 §10.2.3) on --cpu amd64.
    let amd = cpu::CpuModel { vendor: cpu::cpuid::Vendor::Amd, ..cpu::CpuModel::default() };
    let Some((bug, a)) = rules_on("savestate_pointer", amd) else { return };
    assert_eq!(bug, vec![audit::rules::SMRAM_POINTER], "{}", audit::output::text(&a));
    let Some((clean, a)) = rules_on("savestate_pointer_clean", amd) else { return };
    assert!(clean.is_empty(), "{}", audit::output::text(&a));
}
