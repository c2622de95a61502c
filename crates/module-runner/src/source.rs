//! Where modules come from: a PE32+ file, or the MM modules of a firmware image `crates/fwimage`
//! parses (LZMA sections included), chosen by UI name or file GUID.

use crate::runner::{Module, ModuleKind};
use std::path::Path;

/// Why no module could be taken from a file.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Neither a PE image nor a firmware image.
    #[error("{path}: neither a PE32+ image nor a UEFI firmware image ({why})")]
    Unknown {
        /// The file.
        path: String,
        /// What the firmware parser said.
        why: String,
    },
    /// The firmware image has no MM module of that name.
    #[error("{path}: no MM module named {wanted}; its MM modules: {have}")]
    NoSuchModule {
        /// The file.
        path: String,
        /// The name or GUID asked for.
        wanted: String,
        /// What there is.
        have: String,
    },
    /// A firmware image with several MM modules and no choice made.
    #[error("{path}: a firmware image with {count} MM modules; choose one with --module NAME|GUID, or --all-smm ({have})")]
    Choose {
        /// The file.
        path: String,
        /// How many.
        count: usize,
        /// What there is.
        have: String,
    },
}

/// The modules `path` holds: the file itself if it is a PE image, else the MM modules of the
/// firmware image named `select` (UI name or GUID, case-insensitive), or all of them with
/// `all`. The firmware image comes back too, to name modules by their files.
pub fn modules(path: &Path, select: Option<&str>, all: bool) -> Result<(Vec<Module>, Option<fwimage::Image>), SourceError> {
    let p = path.display().to_string();
    let data = std::fs::read(path).map_err(|source| SourceError::Read { path: p.clone(), source })?;
    if data.starts_with(b"MZ") {
        let name = path.file_stem().map_or_else(|| p.clone(), |s| s.to_string_lossy().into_owned());
        return Ok((vec![Module { name, guid: None, pe: data, kind: ModuleKind::DxeSmmDriver, pcd: None }], None));
    }
    let fw = fwimage::parse(&data).map_err(|e| SourceError::Unknown { path: p.clone(), why: e.to_string() })?;
    let pcd = fwimage::pcd::Pcds::from_image(&fw).map(std::sync::Arc::new);
    let candidates: Vec<Module> = fw
        .mm_modules()
        .filter_map(|m| {
            let pe = m.pe32.clone()?;
            let kind = match m.file_type {
                fwimage::ffs::FileType::MmStandalone => ModuleKind::MmStandalone,
                fwimage::ffs::FileType::MmCore => ModuleKind::SmmCore,
                _ => ModuleKind::DxeSmmDriver,
            };
            Some(Module { name: m.name.clone().unwrap_or_else(|| m.guid.to_string()), guid: Some(m.guid), pe, kind, pcd: pcd.clone() })
        })
        .collect();
    let have = candidates.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ");
    if candidates.is_empty() {
        return Err(SourceError::Unknown { path: p, why: "it holds no MM module with a PE32 section".into() });
    }
    let chosen = match (select, all) {
        (_, true) => candidates,
        (Some(want), false) => {
            let w = want.to_ascii_lowercase();
            let c: Vec<Module> = candidates.into_iter().filter(|m| m.name.to_ascii_lowercase() == w || m.guid.is_some_and(|g| g.to_string() == w)).collect();
            if c.is_empty() {
                return Err(SourceError::NoSuchModule { path: p, wanted: want.into(), have });
            }
            c
        }
        (None, false) if candidates.len() == 1 => candidates,
        (None, false) => return Err(SourceError::Choose { path: p, count: candidates.len(), have }),
    };
    Ok((chosen, Some(fw)))
}
