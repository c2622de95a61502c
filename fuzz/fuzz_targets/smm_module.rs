//! Arbitrary bytes as an SMM driver (`smmlab module run FILE`): the PE32+ loader must return Ok
//! or Err, never panic; an image it accepts is run on the module runner's platform, where
//! whatever the code does is a guest event (a fault, a hang within the budget), never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if module_runner::loader::load(data, 0x7f0_0000).is_err() {
        return;
    }
    let m = module_runner::Module { name: "fuzz".into(), guid: None, pe: data.to_vec(), kind: module_runner::ModuleKind::DxeSmmDriver, pcd: None };
    if let Ok(mut r) = module_runner::Runner::new(cpu::CpuModel::default(), &m) {
        r.run_entry();
        let _ = module_runner::report::report(&mut r, None);
    }
});
