//! Where one execution's time goes on a module: `cargo run --release -p smmlab-fuzz-smm
//! --example restore_cost -- DRIVER.efi GUID`. Times the runner's restore alone, a call from
//! the snapshot, and clones of the host services' state.

use fuzz_smm::{Snapshotted, Target};
use module_runner::{Module, ModuleKind, Phase, Runner};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(file), Some(guid)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: restore_cost DRIVER.efi GUID");
        std::process::exit(2);
    };
    let pe = std::fs::read(file).unwrap_or_else(|e| {
        eprintln!("{file}: {e}");
        std::process::exit(2)
    });
    let m = Module { name: file.clone(), guid: None, pe, kind: ModuleKind::DxeSmmDriver, pcd: None };
    let mut r = Runner::new(cpu::CpuModel::default(), &m).expect("loads");
    r.run_entry();
    r.signal(&Phase::through(Phase::ReadyToBoot));
    r.machine.observe_smm(true);
    let target = Target::Guid(guid.parse().expect("a GUID"));
    println!("served {} calls {} handlers {}", r.env.served.len(), r.env.calls.len(), r.env.handlers.len());
    let mut s = Snapshotted::new(r);
    let n = 20000;
    let (res, acc) = s.call(&target, &[0; 24]);
    println!("one call: {res:?}, {} SMM accesses", acc.len());
    let t = Instant::now();
    for _ in 0..n {
        s.call(&target, &[0; 24]);
    }
    let call = t.elapsed() / n;
    let t = Instant::now();
    for _ in 0..n {
        s.restore();
    }
    let restore = t.elapsed() / n;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(s.runner.env.clone());
    }
    let env = t.elapsed() / n;
    println!("call from the snapshot {call:?}, restore alone {restore:?}, Env clone {env:?}, pages put back {}", s.restored_pages);
}
