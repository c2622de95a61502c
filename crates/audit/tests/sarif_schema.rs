//! The audit's SARIF against the real SARIF 2.1.0 JSON schema (draft-04,
//! `sarif-2.1.0-rtm.5.json` from the MIT-licensed npm package `@microsoft/jest-sarif`), which
//! scripts/test.sh fetches into target/sarif-schema/ and names in `SMMLAB_SARIF_SCHEMA`. The
//! schema is not committed: without it this test skips (counted as skipped by scripts/test.sh),
//! or fails when CI=true.
//! `audit::output::check_sarif`'s structural checks must agree with the schema.

use audit::{BootOptions, Options};
use cpu::cpuid::Vendor;
use cpu::CpuModel;
use machine::BoardKind;
use serde_json::Value;
use std::path::PathBuf;

const SCHEMA_ENV: &str = "SMMLAB_SARIF_SCHEMA";

/// The schema, or None (skip, crates/testkit) when it is absent outside CI; under CI=true a
/// missing schema fails the test.
fn schema() -> Option<Value> {
    let path = std::env::var_os(SCHEMA_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/sarif-schema/sarif-2.1.0-rtm.5.json"));
    if !testkit::file(&path, &format!("scripts/test.sh fetches it from the npm package @microsoft/jest-sarif and sets {SCHEMA_ENV}")) {
        return None;
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read the SARIF schema {}: {e}", path.display()));
    Some(serde_json::from_str(&text).expect("the SARIF schema is JSON"))
}

fn sarif(scenario: Option<&str>) -> Value {
    let o = Options {
        boot: BootOptions {
            board: BoardKind::Q35,
            model: CpuModel { vendor: Vendor::Intel, long_mode: true, tsc_hz: 1_000_000_000 },
            rom: None,
            scenario: scenario.map(str::to_string),
            memory_mib: 128,
            max_instructions: 2_000_000_000,
            pflash: Vec::new(),
            pflash_secure: true,
        },
        machine_name: "q35",
        cpu_name: "intel64",
        firmware_name: "built-in".into(),
        behaviour: true,
    };
    let r = audit::audit(&o).expect("the audit runs");
    audit::output::sarif(&r)
}

fn validate(schema: &Value, doc: &Value, what: &str) {
    let v = jsonschema::options().with_draft(jsonschema::Draft::Draft4).build(schema).expect("the SARIF schema compiles");
    let errors: Vec<String> = v.iter_errors(doc).map(|e| format!("{} at {}", e, e.instance_path)).collect();
    assert!(errors.is_empty(), "{what}: the SARIF breaks the 2.1.0 schema:\n{}\n{doc:#}", errors.join("\n"));
    assert_eq!(audit::output::check_sarif(doc), Vec::<String>::new(), "{what}");
}

#[test]
fn clean_and_planted_bug_sarif_match_the_sarif_2_1_0_schema() {
    let Some(schema) = schema() else { return };
    let clean = sarif(None);
    validate(&schema, &clean, "clean run");
    let bug = sarif(Some("bug-callout"));
    validate(&schema, &bug, "bug-callout run");
    assert!(bug["runs"][0]["results"].as_array().is_some_and(|r| !r.is_empty()), "the planted bug gives results: {bug:#}");
}

#[test]
fn the_schema_rejects_broken_sarif() {
    let Some(schema) = schema() else { return };
    let v = jsonschema::options().with_draft(jsonschema::Draft::Draft4).build(&schema).unwrap();
    let mut doc = sarif(Some("bug-callout"));
    doc["version"] = Value::from("2.0.0");
    assert!(!v.is_valid(&doc), "a wrong version is caught");
    let mut doc = sarif(Some("bug-callout"));
    doc["runs"][0]["results"][0]["level"] = Value::from("fatal");
    assert!(!v.is_valid(&doc), "a wrong level is caught");
}
