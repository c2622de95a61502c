//! `smmlab run --pflash` and `--ovmf`: the system flash units a UEFI firmware boots from,
//! and writing the variable store back after the run.

use anyhow::Context;
use machine::devices::pflash_bank::{PflashBank, PflashImage};
use std::path::{Path, PathBuf};

/// Debian's OVMF secure-boot build with SMM (package `ovmf`).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";
/// The variable store template that goes with it.
pub const OVMF_VARS_TEMPLATE: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// One `--pflash FILE[,readonly]` argument.
pub struct PflashArg {
    /// The image.
    pub path: PathBuf,
    /// Whether the guest may not change it.
    pub readonly: bool,
}

impl PflashArg {
    /// Parses `FILE` or `FILE,readonly` (also `readonly=on|off`, as QEMU spells it).
    pub fn parse(arg: &str) -> anyhow::Result<Self> {
        let (file, opt) = match arg.rsplit_once(',') {
            Some((f, o)) if matches!(o, "readonly" | "readonly=on" | "readonly=off" | "ro") => (f, Some(o)),
            _ => (arg, None),
        };
        anyhow::ensure!(!file.is_empty(), "--pflash {arg:?}: expected FILE or FILE,readonly");
        Ok(PflashArg { path: PathBuf::from(file), readonly: matches!(opt, Some("readonly" | "readonly=on" | "ro")) })
    }
}

/// The per-user copy of the OVMF variable store `--ovmf` boots with, made from the template
/// on first use: `$XDG_STATE_HOME/smmlab/OVMF_VARS_4M.fd`, else `~/.local/state/smmlab/...`.
pub fn ovmf_vars_path() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").context("--ovmf: neither XDG_STATE_HOME nor HOME is set, so there is no place for the variable store")?).join(".local/state"),
    };
    Ok(base.join("smmlab").join("OVMF_VARS_4M.fd"))
}

/// The flash units for `--ovmf`: Debian's code read-only and the per-user variable store
/// (created from the template when missing).
pub fn ovmf_units() -> anyhow::Result<Vec<PflashArg>> {
    for f in [OVMF_CODE, OVMF_VARS_TEMPLATE] {
        anyhow::ensure!(Path::new(f).is_file(), "--ovmf needs {f} (Debian package ovmf: apt-get install ovmf)");
    }
    let vars = ovmf_vars_path()?;
    if !vars.exists() {
        let dir = vars.parent().expect("a file in a directory");
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::copy(OVMF_VARS_TEMPLATE, &vars).with_context(|| format!("cannot copy {OVMF_VARS_TEMPLATE} to {}", vars.display()))?;
    }
    Ok(vec![PflashArg { path: OVMF_CODE.into(), readonly: true }, PflashArg { path: vars, readonly: false }])
}

/// Reads every unit's image.
pub fn open(args: &[PflashArg]) -> anyhow::Result<Vec<PflashImage>> {
    Ok(args.iter().map(|a| PflashImage::open(&a.path, a.readonly)).collect::<Result<Vec<_>, _>>()?)
}

/// After the run: writes each writable unit the guest changed back to its file (a new file
/// renamed over the old one, so an interrupted write never leaves half a variable store), and
/// warns about writes a read-only unit dropped. Returns the files written.
pub fn write_back(bank: &PflashBank) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (i, u) in bank.units().iter().enumerate() {
        if u.flash.readonly() {
            if u.flash.writes_failed > 0 {
                eprintln!("smmlab: warning: pflash unit {i} ({}) is read-only: {} program or erase commands failed", u.path.display(), u.flash.writes_failed);
            }
            continue;
        }
        if !u.flash.modified() {
            continue;
        }
        let mut tmp = u.path.clone().into_os_string();
        tmp.push(".smmlab-new");
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, u.flash.contents()).with_context(|| format!("cannot write pflash file {}", tmp.display()))?;
        std::fs::rename(&tmp, &u.path).with_context(|| format!("cannot replace pflash file {}", u.path.display()))?;
        written.push(u.path.clone());
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_parse_as_qemu_spells_them() {
        let a = PflashArg::parse("code.fd,readonly").unwrap();
        assert_eq!((a.path.to_str(), a.readonly), (Some("code.fd"), true));
        let a = PflashArg::parse("vars.fd").unwrap();
        assert_eq!((a.path.to_str(), a.readonly), (Some("vars.fd"), false));
        assert!(PflashArg::parse("x.fd,readonly=on").unwrap().readonly);
        assert!(!PflashArg::parse("x.fd,readonly=off").unwrap().readonly);
        // A comma that is not an option belongs to the name.
        assert_eq!(PflashArg::parse("a,b.fd").unwrap().path.to_str(), Some("a,b.fd"));
        assert!(PflashArg::parse(",readonly").is_err());
    }
}
