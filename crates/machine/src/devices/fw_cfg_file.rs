//! Files given on the command line for fw_cfg, as QEMU's `-fw_cfg name=NAME,file=FILE`
//! (QEMU docs/specs/fw_cfg.rst, "Externally Provided Items"; facts only): the file's bytes
//! become the fw_cfg file NAME. A fw_cfg file name holds at most 55 bytes (the directory's
//! 56-byte name field ends with a NUL), and its size is a 32-bit field.
//!
//! One difference from QEMU, on purpose: QEMU refuses a name the board already uses
//! ("duplicate fw_cfg file name"), while smmlab replaces the board's file. That is what lets
//! a test hand smmlab another machine's `etc/acpi/tables`, `etc/acpi/rsdp`,
//! `etc/table-loader` and `etc/smbios/*` (tests/seabios.rs feeds it QEMU's). Naming the same
//! file twice on the command line is still an error.

use std::path::{Path, PathBuf};

/// Longest fw_cfg file name (56 bytes with the terminating NUL).
pub const MAX_NAME: usize = 55;

/// The largest file read for fw_cfg: 256 MiB (fw_cfg sizes are 32-bit, but firmware reads
/// tables and ROMs, and the guest has at most 3 GiB of RAM).
pub const MAX_SIZE: u64 = 256 << 20;

/// Why a `NAME=FILE` argument cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FwCfgFileError {
    /// The argument has no `=`.
    #[error("--fw-cfg {arg:?}: expected NAME=FILE (a fw_cfg file name, '=', then the file to read)")]
    Syntax {
        /// The argument as given.
        arg: String,
    },
    /// Nothing before the `=`.
    #[error("--fw-cfg {arg:?}: the fw_cfg file name is empty")]
    EmptyName {
        /// The argument as given.
        arg: String,
    },
    /// The name does not fit fw_cfg's directory entry.
    #[error("--fw-cfg: the fw_cfg file name {name:?} is {len} bytes; fw_cfg names hold at most {MAX_NAME} bytes")]
    NameTooLong {
        /// The fw_cfg file name.
        name: String,
        /// Its length in bytes.
        len: usize,
    },
    /// The file cannot be read.
    #[error("cannot read fw_cfg file {path} (for {name})")]
    Read {
        /// The fw_cfg file name.
        name: String,
        /// The host file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is 4 GiB or larger.
    #[error("fw_cfg file {path} (for {name}) is {size} bytes; fw_cfg sizes are 32-bit")]
    TooBig {
        /// The fw_cfg file name.
        name: String,
        /// The host file.
        path: PathBuf,
        /// Its size in bytes.
        size: usize,
    },
    /// The same name given twice.
    #[error("--fw-cfg names {name} twice (second time: {path})")]
    Duplicate {
        /// The fw_cfg file name.
        name: String,
        /// The host file given the second time.
        path: PathBuf,
    },
}

/// A file to put into fw_cfg under `name`.
#[derive(Clone, Debug)]
pub struct FwCfgFile {
    /// The fw_cfg file name.
    pub name: String,
    /// Where it was read from (for messages).
    pub path: PathBuf,
    /// The contents.
    pub data: Vec<u8>,
}

impl FwCfgFile {
    /// Parses `NAME=FILE` (the first '=' splits; the name cannot contain one) and reads FILE.
    pub fn from_arg(arg: &str) -> Result<Self, FwCfgFileError> {
        let (name, path) = split_arg(arg)?;
        let data = crate::input::read_at_most(&path, MAX_SIZE).map_err(|source| FwCfgFileError::Read { name: name.clone(), path: path.clone(), source })?;
        Self::new(name, path, data)
    }

    /// Checks `data` (the contents of `path`) as the fw_cfg file `name`.
    pub fn new(name: String, path: PathBuf, data: Vec<u8>) -> Result<Self, FwCfgFileError> {
        check_name(&name)?;
        if u32::try_from(data.len()).is_err() {
            return Err(FwCfgFileError::TooBig { name, path, size: data.len() });
        }
        Ok(FwCfgFile { name, path, data })
    }
}

fn check_name(name: &str) -> Result<(), FwCfgFileError> {
    if name.len() > MAX_NAME {
        return Err(FwCfgFileError::NameTooLong { name: name.to_string(), len: name.len() });
    }
    Ok(())
}

fn split_arg(arg: &str) -> Result<(String, PathBuf), FwCfgFileError> {
    let (name, path) = arg.split_once('=').ok_or_else(|| FwCfgFileError::Syntax { arg: arg.to_string() })?;
    if name.is_empty() {
        return Err(FwCfgFileError::EmptyName { arg: arg.to_string() });
    }
    if path.is_empty() {
        return Err(FwCfgFileError::Syntax { arg: arg.to_string() });
    }
    check_name(name)?;
    Ok((name.to_string(), Path::new(path).to_owned()))
}

/// Checks that no name is given twice.
pub fn check_unique(files: &[FwCfgFile]) -> Result<(), FwCfgFileError> {
    for (i, f) in files.iter().enumerate() {
        if files[..i].iter().any(|g| g.name == f.name) {
            return Err(FwCfgFileError::Duplicate { name: f.name.clone(), path: f.path.clone() });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_arguments_are_refused_with_what_is_wrong() {
        let long = format!("opt/{}=/dev/null", "x".repeat(52));
        for (arg, what) in [("etc/acpi/tables", "expected NAME=FILE"), ("=/dev/null", "name is empty"), ("opt/x=", "expected NAME=FILE"), (long.as_str(), "is 56 bytes")] {
            let e = FwCfgFile::from_arg(arg).unwrap_err().to_string();
            assert!(e.contains(what), "{arg}: {e}");
        }
        // 55 bytes is the limit.
        let ok = format!("opt/{}", "y".repeat(51));
        assert!(FwCfgFile::new(ok, "f".into(), vec![1]).is_ok());
        let e = FwCfgFile::from_arg("opt/x=/nonexistent/smmlab/blob").unwrap_err().to_string();
        assert!(e.contains("/nonexistent/smmlab/blob") && e.contains("opt/x"), "{e}");
    }

    #[test]
    fn a_name_may_be_given_once() {
        let f = |n: &str, p: &str| FwCfgFile::new(n.into(), p.into(), vec![]).unwrap();
        assert!(check_unique(&[f("a", "1"), f("b", "2")]).is_ok());
        let e = check_unique(&[f("a", "1"), f("b", "2"), f("a", "3")]).unwrap_err().to_string();
        assert!(e.contains("names a twice") && e.contains('3'), "{e}");
    }

    #[test]
    fn files_replace_the_boards_own_and_need_fw_cfg() {
        use crate::{Machine, MachineConfig, MachineError};
        let rom_image = vec![0xf4u8; 0x10000];
        let mut m = Machine::pc(MachineConfig::default(), rom_image.clone()).unwrap();
        let before = m.board.legacy().unwrap().fw_cfg.file("etc/acpi/tables").map(<[u8]>::len);
        assert_eq!(before, Some(128 << 10));
        m.add_fw_cfg_file(FwCfgFile::new("etc/acpi/tables".into(), "t".into(), vec![7; 40]).unwrap()).unwrap();
        m.add_fw_cfg_file(FwCfgFile::new("opt/new".into(), "n".into(), b"hi".to_vec()).unwrap()).unwrap();
        let fw = &mut m.board.legacy().unwrap().fw_cfg;
        assert_eq!(fw.file("etc/acpi/tables"), Some(&[7u8; 40][..]));
        assert_eq!(fw.file("opt/new"), Some(&b"hi"[..]));
        let mut min = Machine::minimal(MachineConfig::default(), rom_image).unwrap();
        let f = FwCfgFile::new("opt/new".into(), "n".into(), vec![]).unwrap();
        assert!(matches!(min.add_fw_cfg_file(f), Err(MachineError::NoFwCfg(_))));
    }
}
