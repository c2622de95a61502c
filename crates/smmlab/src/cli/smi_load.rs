//! `smmlab run --smi-load FILE`: the SMIs a `smmlab host --json` report recorded, as the
//! pattern [`machine::smi::smi_load::SmiLoad`] replays. The emulated machine has one CPU: the
//! first CPU of the report is replayed (SMIs reach every core of a real machine at once).
//! Gaps the NMI count explains are left out; gaps the SMI counter explains are replayed, and
//! so are the unattributed ones (on a machine whose SMI counter could not be read, those are
//! all there is, and the report says whether it could).

use anyhow::{bail, Context};
use std::path::Path;

/// A recorded load: (start, length) in ns, the period in ns, and a description.
pub struct Loaded {
    pub smis: Vec<(u64, u64)>,
    pub period_ns: u64,
    pub text: String,
}

pub fn read(path: &Path) -> anyhow::Result<Loaded> {
    let text = std::fs::read_to_string(path).with_context(|| format!("--smi-load {}: cannot read it", path.display()))?;
    let r: host_smi::Report = serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("--smi-load {}: not a `smmlab host --json` report: {e}", path.display()))?;
    let Some(cpu) = r.cpus.first() else { bail!("--smi-load {}: the report has no CPU", path.display()) };
    let period_ns = cpu.summary.elapsed_ns.max((r.duration_s * 1e9) as u64);
    if period_ns == 0 {
        bail!("--smi-load {}: the recording is 0 ns long", path.display());
    }
    let mut smis = Vec::new();
    let (mut smi, mut other, mut nmi) = (0, 0, 0);
    for g in &cpu.gaps {
        match g.class {
            host_smi::Class::Nmi => nmi += 1,
            c => {
                smis.push((g.start_ns, g.length_ns));
                if c == host_smi::Class::Smi {
                    smi += 1;
                } else {
                    other += 1;
                }
            }
        }
    }
    let counter = match r.sources.get("smi_counter") {
        Some(s) if s.available => "the SMI counter was read",
        _ => "the SMI counter could not be read",
    };
    let text = format!(
        "SMI load from {}: cpu{}'s {} gaps ({smi} smi, {other} unattributed; {nmi} nmi left out; {counter}) every {}.{:03} ms",
        path.display(),
        cpu.cpu,
        smis.len(),
        period_ns / 1_000_000,
        period_ns / 1000 % 1000
    );
    Ok(Loaded { smis, period_ns, text })
}
