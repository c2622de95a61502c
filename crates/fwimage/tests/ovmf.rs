//! Acceptance tests on Debian's OVMF images (package `ovmf`, edk2 2022.11).

mod common;

use common::{ovmf, OVMF_PLAIN, OVMF_SECBOOT};
use fwimage::{FileType, FwError};
use std::collections::BTreeSet;

const MM_NAMES: [&str; 8] = [
    "PiSmmCore",
    "PiSmmCpuDxeSmm",
    "SmmLockBox",
    "CpuIo2Smm",
    "CpuHotplugSmm",
    "FvbServicesSmm",
    "SmmFaultTolerantWriteDxe",
    "VariableSmm",
];

#[test]
fn secboot_image_holds_exactly_the_eight_mm_modules() {
    let img = fwimage::parse(&ovmf(OVMF_SECBOOT)).unwrap();
    let names: BTreeSet<&str> = img
        .mm_modules()
        .map(|m| m.name.as_deref().unwrap_or("?"))
        .collect();
    assert_eq!(names, MM_NAMES.into_iter().collect());
    assert_eq!(img.mm_modules().count(), 8);
    let core = img
        .modules
        .iter()
        .find(|m| m.name.as_deref() == Some("PiSmmCore"))
        .unwrap();
    assert_eq!(core.file_type, FileType::MmCore);
    assert_eq!(
        core.guid.to_string(),
        "e94f54cd-81eb-47ed-aec3-856f5dc157a9"
    );
    assert_eq!(core.machine.as_deref(), Some("x86_64"));
    assert!(core.entry.is_some_and(|e| e > 0));
    assert!(core.in_decompressed);
    // The MM modules live in the DXE volume, inside the LZMA-compressed volume.
    let dxe_fv = &img.volumes[core.fv];
    assert!(dxe_fv.in_decompressed && dxe_fv.parent.is_some());
    assert!(img.modules.iter().all(|m| m.file_type != FileType::FfsPad));
}

#[test]
fn plain_image_has_no_mm_modules_but_many_drivers() {
    let img = fwimage::parse(&ovmf(OVMF_PLAIN)).unwrap();
    assert_eq!(img.mm_modules().count(), 0);
    let drivers = img
        .modules
        .iter()
        .filter(|m| m.file_type == FileType::Driver)
        .count();
    assert!(drivers > 50, "{drivers} drivers");
    for name in [
        "DxeCore",
        "PeiCore",
        "SecMain",
        "S3SaveStateDxe",
        "BootScriptExecutorDxe",
    ] {
        assert!(
            img.modules.iter().any(|m| m.name.as_deref() == Some(name)),
            "{name} missing"
        );
    }
    // SEC and PEI are 32-bit, DXE is 64-bit.
    let machine = |n: &str| {
        img.modules
            .iter()
            .find(|m| m.name.as_deref() == Some(n))
            .and_then(|m| m.machine.clone())
    };
    assert_eq!(machine("SecMain").as_deref(), Some("i386"));
    assert_eq!(machine("PeiCore").as_deref(), Some("i386"));
    assert_eq!(machine("DxeCore").as_deref(), Some("x86_64"));
}

#[test]
fn volumes_are_found_top_level_and_nested() {
    let data = ovmf(OVMF_SECBOOT);
    let img = fwimage::parse(&data).unwrap();
    let top: Vec<usize> = img
        .volumes
        .iter()
        .filter(|v| v.parent.is_none())
        .map(|v| v.offset)
        .collect();
    assert_eq!(top.len(), 2, "FVMAIN_COMPACT and SECFV");
    assert_eq!(top[0], 0);
    let nested = img.volumes.iter().filter(|v| v.in_decompressed).count();
    assert_eq!(nested, 2, "PEIFV and DXEFV");
    // Top-level file offsets point at the file header in the image.
    let sec = img
        .modules
        .iter()
        .find(|m| m.name.as_deref() == Some("SecMain"))
        .unwrap();
    assert!(!sec.in_decompressed);
    assert_eq!(data[sec.offset..sec.offset + 16], sec.guid.0);
}

#[test]
fn json_has_the_documented_fields() {
    let img = fwimage::parse(&ovmf(OVMF_SECBOOT)).unwrap();
    let v = serde_json::to_value(&img.modules).unwrap();
    let core = v
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "PiSmmCore")
        .unwrap();
    assert_eq!(core["type"], "MM_CORE");
    assert_eq!(core["smm"], true);
    assert_eq!(core["guid"], "e94f54cd-81eb-47ed-aec3-856f5dc157a9");
    assert_eq!(core["machine"], "x86_64");
    assert!(core["offset"].is_u64() && core["size"].is_u64() && core["fv"].is_u64());
    assert!(core["entry"].is_u64());
}

#[test]
fn truncated_image_names_the_problem() {
    let data = ovmf(OVMF_SECBOOT);
    let e = fwimage::parse(&data[..100_000]).unwrap_err();
    assert!(matches!(&e, FwError::Volume { offset: 0, .. }), "{e}");
    let chain = format!("{:?}", anyhow_like(&e));
    assert!(chain.contains("runs past the end"), "{chain}");
}

#[test]
fn synthetic_image_with_lzma_nested_volume() {
    let img = fwimage::parse(&common::synthetic()).unwrap();
    let names: Vec<_> = img
        .modules
        .iter()
        .map(|m| (m.file_type.to_string(), m.name.clone()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("FIRMWARE_VOLUME_IMAGE".to_string(), None),
            ("DRIVER".to_string(), Some("Dxe".to_string())),
            ("MM".to_string(), Some("SmmThing".to_string())),
            ("RAW".to_string(), None),
        ]
    );
    assert_eq!(img.volumes.len(), 3);
    let dxe = &img.modules[1];
    assert!(dxe.in_decompressed && dxe.machine.is_none() && dxe.notes.len() == 1);
}

fn anyhow_like(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s += ": ";
        s += &c.to_string();
        cur = c.source();
    }
    s
}
