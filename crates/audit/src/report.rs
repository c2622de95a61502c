//! Verdicts and the report.

use serde::Serialize;

/// A check's outcome, as chipsec names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The configuration is as the rule wants.
    Pass,
    /// The rule does not apply to this machine or CPU.
    NotApplicable,
    /// A weakness short of a failure (a finding).
    Warning,
    /// The rule is broken (a finding).
    Fail,
}

impl Status {
    /// The status as printed: PASS, N/A, WARNING or FAIL.
    pub fn name(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::NotApplicable => "N/A",
            Status::Warning => "WARNING",
            Status::Fail => "FAIL",
        }
    }

    /// Whether the verdict is a finding (it makes the audit exit with 1).
    pub fn is_finding(self) -> bool {
        matches!(self, Status::Warning | Status::Fail)
    }
}

/// One bit (or field) a verdict rests on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Bit {
    /// The field's name (for example D_LCK).
    pub name: &'static str,
    /// Lowest bit of the field.
    pub bit: u8,
    /// Its value.
    pub value: u64,
}

/// The register a verdict rests on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Register {
    /// For example "SMRAMC" or "IA32_SMRR_PHYSMASK".
    pub name: &'static str,
    /// Where it lives: "PCI 00:00.0 + 0x9d", "MSR 0x1f3", "PMBASE + 0x30".
    pub location: String,
    /// Its value.
    pub value: u64,
    /// The fields the verdict looks at.
    pub bits: Vec<Bit>,
}

/// A configuration or behaviour verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The rule's ID (SMM001...).
    pub rule: &'static str,
    /// Pass, N/A, warning or fail.
    pub status: Status,
    /// What was found, in words.
    pub message: String,
    /// The registers it rests on.
    pub registers: Vec<Register>,
    /// For behaviour findings: the SW SMI value, the register pattern and addresses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smi: Option<SmiContext>,
}

/// Where a behaviour finding was seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SmiContext {
    /// The values written to APM_CNT (0xB2) that showed it (the first pattern's address).
    pub commands: Vec<u8>,
    /// The register pattern ("buffer", "smram", ...).
    pub pattern: &'static str,
    /// The physical addresses involved (first few).
    pub addresses: Vec<u64>,
    /// The SMRAM module whose handler it is (UEFI GUID handlers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<ModuleRef>,
}

/// A module of the firmware image, as the SMM inventory names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ModuleRef {
    /// Its name (the FFS file's UI section, or its CodeView path's stem).
    pub name: String,
    /// The FFS file GUID, when the firmware volume holds it.
    pub file_guid: Option<String>,
    /// The handler, `Module+0xRVA`.
    pub at: String,
}

/// What the auditor booted and where it stopped.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    /// The machine's name.
    pub machine: &'static str,
    /// The CPU model's name.
    pub cpu: &'static str,
    /// The firmware's name.
    pub firmware: String,
    /// The built-in firmware's scenario, if any.
    pub scenario: Option<String>,
    /// The hand-off point reached: the marker line, or how the run ended.
    pub handoff: String,
    /// Instructions retired when the hand-off point was reached.
    pub instructions_at_handoff: u64,
}

/// The whole audit.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// "smmlab-audit".
    pub tool: &'static str,
    /// smmlab's version.
    pub version: &'static str,
    /// What was audited.
    pub target: Target,
    /// Every verdict: the configuration checks, then the behaviour findings.
    pub verdicts: Vec<Verdict>,
    /// SW SMIs raised by the behaviour checks.
    pub smis_raised: u64,
    /// Behaviour checks that could not run, and why.
    pub notes: Vec<String>,
}

impl Report {
    /// The verdicts that are findings.
    pub fn findings(&self) -> impl Iterator<Item = &Verdict> {
        self.verdicts.iter().filter(|v| v.status.is_finding())
    }

    /// 0 when clean, 1 with findings.
    pub fn exit_code(&self) -> i32 {
        if self.findings().next().is_some() {
            1
        } else {
            0
        }
    }
}
