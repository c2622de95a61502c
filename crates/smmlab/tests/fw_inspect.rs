//! `smmlab fw inspect` driven as users drive it, on Debian's OVMF images (package `ovmf`,
//! installed by scripts/test.sh) and on corrupted copies of them.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const OVMF_SECBOOT: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";
const OVMF_PLAIN: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";

fn smmlab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_smmlab"))
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("smmlab-fw-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn need(path: &str) -> &Path {
    let p = Path::new(path);
    assert!(
        p.exists(),
        "{path} is missing: install the Debian `ovmf` package"
    );
    p
}

fn inspect_json(path: &Path) -> Vec<Value> {
    let o = smmlab()
        .args(["fw", "inspect", "--json"])
        .arg(path)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "stderr: {err}");
    let v: Value = serde_json::from_str(&out).expect("stdout is JSON");
    let obj = v.as_object().unwrap();
    assert_eq!(
        obj.keys().collect::<Vec<_>>(),
        vec!["modules"],
        "exactly one key"
    );
    obj["modules"].as_array().unwrap().clone()
}

fn is_guid(s: &str) -> bool {
    let lens: Vec<usize> = s.split('-').map(str::len).collect();
    lens == [8, 4, 4, 4, 12]
        && s.chars()
            .all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c))
}

#[test]
fn json_lists_the_eight_mm_modules_of_the_secboot_image() {
    let modules = inspect_json(need(OVMF_SECBOOT));
    let smm: BTreeSet<&str> = modules
        .iter()
        .filter(|m| m["smm"] == true)
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    let want: BTreeSet<&str> = [
        "PiSmmCore",
        "PiSmmCpuDxeSmm",
        "SmmLockBox",
        "CpuIo2Smm",
        "CpuHotplugSmm",
        "FvbServicesSmm",
        "SmmFaultTolerantWriteDxe",
        "VariableSmm",
    ]
    .into_iter()
    .collect();
    assert_eq!(smm, want);
    for m in &modules {
        assert!(is_guid(m["guid"].as_str().unwrap()), "{m}");
        assert!(m["type"].is_string() && m["smm"].is_boolean(), "{m}");
        assert!(
            m["offset"].is_u64() && m["size"].is_u64() && m["fv"].is_u64(),
            "{m}"
        );
        assert_ne!(m["type"], "FFS_PAD");
        let t = m["type"].as_str().unwrap();
        assert_eq!(
            m["smm"] == true,
            [
                "MM",
                "COMBINED_MM_DXE",
                "MM_CORE",
                "MM_STANDALONE",
                "MM_CORE_STANDALONE"
            ]
            .contains(&t)
        );
    }
    let core = modules.iter().find(|m| m["name"] == "PiSmmCore").unwrap();
    assert_eq!(core["type"], "MM_CORE");
    assert_eq!(core["machine"], "x86_64");
    assert!(core["entry"].is_u64());
}

#[test]
fn json_of_the_plain_image_has_no_mm_modules() {
    let modules = inspect_json(need(OVMF_PLAIN));
    assert!(modules.iter().all(|m| m["smm"] == false));
    let drivers = modules.iter().filter(|m| m["type"] == "DRIVER").count();
    assert!(drivers > 50, "{drivers} drivers");
    assert!(modules
        .iter()
        .any(|m| m["name"] == "DxeCore" && m["type"] == "DXE_CORE"));
}

#[test]
fn table_marks_mm_modules() {
    let o = smmlab()
        .args(["fw", "inspect"])
        .arg(need(OVMF_SECBOOT))
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "stderr: {err}");
    let line = out
        .lines()
        .find(|l| l.ends_with(" PiSmmCore"))
        .expect("PiSmmCore row");
    assert!(
        line.contains("MM_CORE")
            && line.contains(" SMM ")
            && line.contains("e94f54cd-81eb-47ed-aec3-856f5dc157a9"),
        "{line}"
    );
    assert!(out.contains("140 modules, 8 MM (SMM)"), "{out}");
}

fn assert_clear_failure(path: &Path, problem: &str) {
    let o = smmlab()
        .args(["fw", "inspect", "--json"])
        .arg(path)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "stdout: {out} stderr: {err}");
    assert!(out.is_empty(), "nothing on stdout: {out}");
    assert!(err.starts_with("smmlab: error: "), "{err}");
    assert!(
        err.contains(&path.display().to_string()),
        "names the file: {err}"
    );
    assert!(
        err.contains(problem),
        "names the problem ({problem}): {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn truncated_image_is_a_clear_error() {
    let data = std::fs::read(need(OVMF_SECBOOT)).unwrap();
    let p = tmpdir("trunc").join("truncated.fd");
    std::fs::write(&p, &data[..data.len() / 3]).unwrap();
    assert_clear_failure(&p, "runs past the end of the data");
}

#[test]
fn corrupted_image_is_a_clear_error() {
    let mut data = std::fs::read(need(OVMF_SECBOOT)).unwrap();
    // Break the header checksum of both top-level volumes: no valid volume remains.
    data[0x20] ^= 0x55;
    data[0x348000 + 0x20] ^= 0x55;
    let p = tmpdir("corrupt").join("bad-checksum.fd");
    std::fs::write(&p, &data).unwrap();
    assert_clear_failure(&p, "checksum is wrong");

    // A corrupted file size inside the outer volume.
    let mut data = std::fs::read(need(OVMF_SECBOOT)).unwrap();
    data[0x78 + 22] = 0x7f; // the compressed-volume file now claims ~8 MiB
    let p = tmpdir("corrupt").join("bad-file-size.fd");
    std::fs::write(&p, &data).unwrap();
    assert_clear_failure(
        &p,
        "FFS file 9e21fd93-9c72-4c15-8c4b-e77f1db2d792 at offset 0x78",
    );
}

#[test]
fn missing_and_non_firmware_files_are_clear_errors() {
    let p = tmpdir("missing").join("nope.fd");
    assert_clear_failure(&p, "cannot read");
    let p = tmpdir("text").join("not-firmware.fd");
    std::fs::write(&p, b"hello, world\n".repeat(100)).unwrap();
    assert_clear_failure(&p, "no valid firmware volume");
}
