//! `smmlab audit`: boots firmware on an emulated machine to its hand-off point, then
//! - reads the SMM configuration straight from the machine (chipset registers, the CPU's SMM
//!   MSRs) and judges it with chipsec's rules ([`config`]);
//! - raises every SW SMI with chipsec-like register patterns and watches the handler through
//!   the board's SMM access observer: call-outs, writes through caller pointers into SMRAM,
//!   writes to memory nobody passed, double fetches, buffers running into SMRAM
//!   ([`behaviour`]);
//! - reports as text, JSON or SARIF 2.1.0 ([`output`]).
//!
//! Modules: [`boot`] (hand-off), [`regs`] (host-side register access), [`dump`] (SMRAM).

pub mod behaviour;
pub mod comm;
pub mod boot;
pub mod config;
pub mod dump;
pub mod instruction;
pub mod module;
pub mod output;
pub mod report;
pub mod rules;
pub mod uefi;

pub use boot::BootOptions;
pub use report::{Report, Status, Verdict};

/// Host-side errors (exit status 2). Guest misbehaviour after the hand-off is a finding,
/// never an error; a firmware that never reaches its hand-off has nothing to audit.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A bad option or scenario name; the text says what.
    #[error("{0}")]
    Usage(String),
    /// The machine could not be built.
    #[error("cannot build the machine")]
    Machine(#[source] machine::MachineError),
    /// The run ended before a hand-off marker ([`boot::MARKERS`]); the text says where.
    #[error("the firmware never reached a hand-off point (a debugcon line with {}), so there is nothing to audit: {where_}", markers())]
    NoHandoff {
        /// Where the run stopped.
        where_: String,
    },
}

/// The hand-off markers, quoted, for messages.
fn markers() -> String {
    boot::MARKERS.iter().map(|m| format!("{m:?}")).collect::<Vec<_>>().join(", ")
}

/// What to audit.
#[derive(Clone, Debug)]
pub struct Options {
    /// What to boot.
    pub boot: BootOptions,
    /// The machine's name, for the report.
    pub machine_name: &'static str,
    /// The CPU model's name, for the report.
    pub cpu_name: &'static str,
    /// The firmware's name (its file, or "built-in"), for the report.
    pub firmware_name: String,
    /// Run the SW SMI behaviour checks.
    pub behaviour: bool,
}

/// What the failed configuration checks mean on the platform QEMU (and smmlab after it)
/// builds, when the firmware boots from its system flash: findings that follow from the
/// platform's design, not from the firmware's set-up.
fn platform_notes(boot: &BootOptions, verdicts: &[Verdict]) -> Vec<String> {
    if boot.pflash.is_empty() {
        return Vec::new();
    }
    let failed = |rule: &str| verdicts.iter().any(|v| v.rule == rule && v.status == Status::Fail);
    let mut notes = Vec::new();
    if failed(rules::BIOS_WP) && boot.pflash_secure {
        notes.push(format!("{}: QEMU's q35 has no BIOS write protection in BIOS_CNTL; its flash is protected by the pflash 'secure' property instead (only SMM may program it, --pflash-secure on), which OVMF relies on. A platform design finding, not OVMF's", rules::BIOS_WP));
    }
    if failed(rules::AMD_SMM_LOCK) || failed(rules::AMD_SMM_MASK) {
        notes.push(format!("{}/{}: QEMU's CPU models (qemu64, smmlab's amd64 after it) do not provide the AMD SMM_ADDR/SMM_MASK TSEG protection, and OVMF does not program it; on QEMU's q35 the chipset's TSEG decoding is what protects SMRAM (SMM003). A platform design finding", rules::AMD_SMM_LOCK, rules::AMD_SMM_MASK));
    }
    notes
}

/// Boots and audits.
pub fn audit(o: &Options) -> Result<Report, AuditError> {
    let booted = boot::boot(&o.boot)?;
    if !booted.marker {
        return Err(AuditError::NoHandoff { where_: booted.stopped });
    }
    let mut m = booted.machine;
    let instructions = m.icount();
    let mut verdicts = config::check(&mut m);
    let mut notes = platform_notes(&o.boot, &verdicts);
    let mut smis = 0;
    if o.behaviour {
        let smram = dump::largest(&m);
        let s = behaviour::sweep(&mut m, smram);
        verdicts.extend(s.verdicts);
        notes.extend(s.notes);
        smis = s.smis;
        // UEFI: the GUID handlers through the communication path, named from the firmware's
        // own volumes (flash unit 0).
        let fw = uefi::firmware_volumes(&m);
        let c = comm::sweep(&mut m, fw.as_ref());
        verdicts.extend(c.verdicts);
        notes.extend(c.notes);
        smis += c.calls;
    }
    Ok(Report {
        tool: "smmlab-audit",
        version: env!("CARGO_PKG_VERSION"),
        target: report::Target {
            machine: o.machine_name,
            cpu: o.cpu_name,
            firmware: o.firmware_name.clone(),
            scenario: o.boot.scenario.clone(),
            handoff: booted.handoff,
            instructions_at_handoff: instructions,
        },
        verdicts,
        smis_raised: smis,
        notes,
    })
}
