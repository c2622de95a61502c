//! Each MM module of Debian's OVMF secboot image, run alone on the synthetic platform: every
//! one reaches its entry point, and the handlers the runner sees registered are the ones (same
//! GUIDs, same RVAs) a full boot's inventory shows for that module (the README's
//! `smmlab smm inventory --ovmf` output: VariableSmm+0x6b1c, SmmLockBox+0x1963).

use module_runner::{report, source, CallResult, Runner};
use std::path::Path;

const OVMF: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";

fn run(name: &str) -> Option<report::ModuleReport> {
    if !testkit::package_file(OVMF, "ovmf") {
        return None;
    }
    let (mods, fw) = source::modules(Path::new(OVMF), Some(name), false).expect("the module is in the image");
    let mut r = Runner::new(cpu::CpuModel::default(), &mods[0]).expect("loads");
    r.run_entry();
    // Then the lifecycle events, as `smmlab module run` signals them.
    r.signal(&module_runner::Phase::ALL);
    Some(report::report(&mut r, fw.as_ref()))
}

/// The root and GUID handlers (what a boot's inventory lists; child-dispatcher registrations
/// are this platform's: OVMF has no dispatchers).
fn handlers(r: &report::ModuleReport) -> Vec<(String, String)> {
    r.inventory.handlers.iter().filter(|h| h.kind == "guid" || h.kind == "root").map(|h| (h.guid.clone().unwrap_or_default(), h.handler.at.clone())).collect()
}

#[test]
fn variable_smm_registers_its_two_handlers_at_the_boot_rvas() {
    let Some(r) = run("VariableSmm") else { return };
    assert!(matches!(r.entry, Some(CallResult::Returned { status: 0, .. })), "{:?}", r.entry);
    let h = handlers(&r);
    assert!(h.contains(&("ed32d533-99e6-4209-9cc0-2d72cdd998a7".into(), "VariableSmm+0x6b1c".into())), "{h:?}");
    assert!(h.contains(&("da1b0d11-d1a7-46c4-9dc9-f3714875c6eb".into(), "VariableSmm+0x447a9".into())), "{h:?}");
    assert_eq!(r.inventory.modules.len(), 1, "{:?}", r.inventory.modules);
    assert_eq!(r.inventory.modules[0].name, "VariableSmm");
    // It asked DXE for its SMST the way SmmServicesTableLib does.
    assert!(r.dxe_calls.iter().any(|c| c.service == "SmmBase2->GetSmstLocation"), "{:?}", r.dxe_calls);
    // The FTW protocol nobody provides here is a logged stub, called once.
    let ftw = r.stubbed.iter().find(|s| s.guid.to_string() == "3868fc3b-7e45-43a7-906c-4ba47de1754d").expect("FTW stubbed");
    assert!(!ftw.calls.is_empty());
    assert!(r.render().contains("VariableSmm+0x6b1c"), "{}", r.render());
}

#[test]
fn lock_box_registers_its_handler_and_waits_for_ready_to_lock() {
    let Some(r) = run("SmmLockBox") else { return };
    assert!(matches!(r.entry, Some(CallResult::Returned { status: 0, .. })), "{:?}", r.entry);
    assert_eq!(handlers(&r), vec![("2a3cfebd-27e8-4d0a-8b79-d688c2a3e1c0".to_string(), "SmmLockBox+0x1963".to_string())]);
    assert_eq!(r.inventory.handlers[0].registered_by.at, "SmmLockBox+0x14f2");
    let awaited: Vec<&str> = r.inventory.protocols.iter().filter(|p| !p.notify.is_empty()).filter_map(|p| p.name).collect();
    assert!(awaited.contains(&"gEfiSmmReadyToLockProtocolGuid"), "{awaited:?}");
}

#[test]
fn cpu_io2_installs_its_protocol_and_cpu_hotplug_fails_without_the_hotplug_interface() {
    let Some(r) = run("CpuIo2Smm") else { return };
    assert!(matches!(r.entry, Some(CallResult::Returned { status: 0, .. })));
    assert!(r.inventory.protocols.iter().any(|p| p.guid == "3242a9d8-ce70-4aa0-955d-5e7b140de4d2" && p.interfaces[0].at.starts_with("CpuIo2Smm+")), "{:?}", r.inventory.protocols);
    // As in the full boot, where it is not resident: its entry point fails on QEMU's
    // single-CPU machine without the modern CPU hot-plug interface.
    let Some(r) = run("CpuHotplugSmm") else { return };
    assert!(matches!(r.entry, Some(CallResult::Returned { status, .. }) if status != 0), "{:?}", r.entry);
    assert!(r.inventory.handlers.is_empty());
}

#[test]
fn the_smm_core_alone_registers_and_removes_its_handlers_as_in_the_boot() {
    let Some(r) = run("PiSmmCore") else { return };
    assert!(matches!(r.entry, Some(CallResult::Returned { status: 0, .. })), "{:?}", r.entry);
    // The boot's inventory after the Shell prompt: two GUID handlers left, four removed at
    // ready-to-lock and ReadyToBoot, all registered from PiSmmCore+0x7158.
    let mut left = handlers(&r);
    left.sort();
    assert_eq!(
        left,
        vec![
            ("27abf055-b1b8-4c26-8048-748f37baa2df".to_string(), "PiSmmCore+0x4f59".to_string()),
            ("2a571201-4966-47f6-8b86-f31e41f32f10".to_string(), "PiSmmCore+0x4ed4".to_string()),
        ]
    );
    let mut gone: Vec<(String, String)> = r.inventory.removed_handlers.iter().map(|h| (h.guid.clone().unwrap_or_default(), h.handler.at.clone())).collect();
    gone.sort();
    assert_eq!(
        gone,
        vec![
            ("02ce967a-dd7e-4ffc-9ee7-810cf0470880".to_string(), "PiSmmCore+0x4a07".to_string()),
            ("60ff8964-e906-41d0-afed-f241e974e08e".to_string(), "PiSmmCore+0x5013".to_string()),
            ("7081e22f-cac6-4053-9468-675782cf88e5".to_string(), "PiSmmCore+0x57fb".to_string()),
            ("7ce88fb3-4bd7-4679-87a8-a8d8dee50d2b".to_string(), "PiSmmCore+0x4fd7".to_string()),
        ]
    );
    assert!(r.inventory.handlers.iter().chain(&r.inventory.removed_handlers).all(|h| h.registered_by.at == "PiSmmCore+0x7158"));
    // Its own protocol database: the lifecycle protocols its event handlers installed.
    let installed: Vec<&str> = r.inventory.protocols.iter().filter(|p| !p.interfaces.is_empty()).filter_map(|p| p.name).collect();
    for p in ["gEfiSmmEndOfDxeProtocolGuid", "gEfiSmmReadyToLockProtocolGuid", "gEdkiiSmmReadyToBootProtocolGuid"] {
        assert!(installed.contains(&p), "{installed:?}");
    }
}

const VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// `name` run with the image as system flash and OVMF's variable store below it, after the
/// modules in `first` in the same SMRAM (`smmlab module run --vars VARS --with ...`).
fn run_on_flash(name: &str, first: &[&str]) -> Option<report::ModuleReport> {
    if !testkit::package_file(OVMF, "ovmf") || !testkit::package_file(VARS, "ovmf") {
        return None;
    }
    let (mods, fw) = source::modules(Path::new(OVMF), Some(name), false).expect("the module is in the image");
    let mut setup = |r: &mut Runner| -> Result<(), Box<dyn std::error::Error>> {
        let code = machine::devices::pflash_bank::PflashImage::open(Path::new(OVMF), true)?;
        let vars = machine::devices::pflash_bank::PflashImage::open(Path::new(VARS), false)?;
        r.attach_flash(vec![code, vars])?;
        for f in first {
            let (m, _) = source::modules(Path::new(OVMF), Some(f), false)?;
            r.run_first(&m[0])?;
        }
        Ok(())
    };
    let mut r = Runner::start(cpu::CpuModel::default(), &mods[0], &module_runner::Phase::ALL, &mut setup).expect("runs");
    Some(report::report(&mut r, fw.as_ref()))
}

#[test]
fn fvb_services_find_the_flash_and_install_the_fvb_as_in_the_boot() {
    // Without flash at PcdOvmfFdBaseAddress its probe fails, as on a board without one.
    let Some(alone) = run("FvbServicesSmm") else { return };
    assert!(matches!(alone.entry, Some(CallResult::Returned { status, .. }) if status != 0), "{:?}", alone.entry);
    let Some(r) = run_on_flash("FvbServicesSmm", &[]) else { return };
    assert!(matches!(r.entry, Some(CallResult::Returned { status: 0, .. })), "{:?}", r.entry);
    let installs: Vec<(String, String)> = r.inventory.service_calls.iter().filter(|c| c.service == uefi_smm::smst::Service::InstallProtocol).map(|c| (c.guid_name.unwrap_or_default().to_string(), c.caller.at.clone())).collect();
    // The boot's inventory: FvbServicesSmm+0x1ea8 and +0x1ec6.
    assert_eq!(
        installs,
        vec![("gEfiSmmFirmwareVolumeBlockProtocolGuid".to_string(), "FvbServicesSmm+0x1ea8".to_string()), ("gEfiDevicePathProtocolGuid".to_string(), "FvbServicesSmm+0x1ec6".to_string())]
    );
}

#[test]
fn fault_tolerant_write_registers_its_handler_once_an_fvb_exists() {
    let Some(r) = run_on_flash("SmmFaultTolerantWriteDxe", &["FvbServicesSmm"]) else { return };
    assert!(matches!(r.entry, Some(CallResult::Returned { status: 0, .. })), "{:?}", r.entry);
    assert_eq!(r.companions.len(), 1);
    assert_eq!(handlers(&r), vec![("3868fc3b-7e45-43a7-906c-4ba47de1754d".to_string(), "SmmFaultTolerantWriteDxe+0x2d80".to_string())]);
    assert_eq!(r.inventory.handlers[0].registered_by.at, "SmmFaultTolerantWriteDxe+0x3811");
    // It looked for its own protocol first: answered absent, not by a stub.
    assert!(r.absent.iter().any(|a| a.contains("3868fc3b-7e45-43a7-906c-4ba47de1754d")), "{:?}", r.absent);
    assert!(r.stubbed.iter().all(|s| !s.smm), "{:?}", r.stubbed);
}

/// PiSmmCpuDxeSmm on its own: its entry point runs outside SMM (as edk2 runs the SMM CPU driver,
/// before any SMM entry exists), relocates SMBASE into SMRAM with an SMI IPI to its own CPU
/// (the MP services report one processor), and takes over SMI entry; the lifecycle events then
/// reach the module's notifications through its own SMI entry and rendezvous. The CPU model is
/// amd64: OVMF's SMM CPU library writes QEMU's AMD64 save-state map.
#[test]
fn the_smm_cpu_driver_relocates_smbase_and_takes_over_smi_entry() {
    if !testkit::package_file(OVMF, "ovmf") {
        return;
    }
    let (mods, fw) = source::modules(Path::new(OVMF), Some("PiSmmCpuDxeSmm"), false).expect("the module is in the image");
    assert!(mods[0].pcd.is_some(), "the image's PCD databases are read");
    let model = cpu::CpuModel { vendor: cpu::cpuid::Vendor::Amd, ..cpu::CpuModel::default() };
    let mut r = Runner::new(model, &mods[0]).expect("loads");
    assert!(r.module.entry_outside_smm);
    assert!(matches!(r.run_entry(), CallResult::Returned { status: 0, .. }), "{:?}", r.entry_result);
    let owner = r.smi_entry.clone().expect("the module took over SMI entry");
    let smbase = r.machine.cpu_view().smbase as u64;
    assert_eq!(owner.smbase, smbase);
    assert!(r.heap().contains(&smbase), "SMBASE {smbase:#x} is in the runner's SMRAM heap");
    assert_eq!(owner.registered.as_ref().and_then(CallResult::status), Some(0), "{owner:?}");
    // The relocation was one SMI at the default SMBASE; the events are SMIs through the module.
    let before = r.machine.cpu_view().smi_count;
    assert_eq!(before, 1);
    for (p, res) in r.signal(&module_runner::Phase::ALL) {
        assert_eq!(res.status(), Some(0), "{p:?}: {res:?}");
    }
    assert_eq!(r.machine.cpu_view().smi_count, before + 3);
    // One processor asked about, as the MP services answer it.
    assert!(r.env.served.iter().any(|c| c.service == "MpServices->GetProcessorInfo" && c.status == 0));
    // PcdCpuMaxLogicalProcessorNumber (token 0x10 in this image) is its default, 64.
    let pcd = r.env.stubs.iter().find(|s| s.guid.to_string() == "11b34006-d85b-4d0a-a290-d5a571310ef7").expect("the PCD protocol");
    assert!(pcd.calls.iter().any(|c| c.index == 3 && c.args[0] == 0x10 && c.returned == 64), "{:?}", pcd.calls);
    let rep = report::report(&mut r, fw.as_ref());
    let installed: Vec<&str> = rep.inventory.protocols.iter().filter_map(|p| p.name).collect();
    assert!(installed.contains(&"gEfiSmmCpuProtocolGuid"), "{installed:?}");
}
