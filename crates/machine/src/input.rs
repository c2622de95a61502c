//! Reading the files a user names (ROMs, disk images, option ROMs, fw_cfg files, settings)
//! with a bound: a regular file larger than the bound is refused before it is read, and a
//! device or pipe (`/dev/zero`, `/dev/stdin`) once more than the bound has come, so that no
//! input makes smmlab allocate without end.

use std::io::Read;
use std::path::Path;

/// The error a too-large input gives, inside the [`std::io::Error`] that
/// [`read_at_most`] returns (`get_ref()` and `downcast_ref` find it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLarge {
    /// The file's size, when it is a regular file.
    pub size: Option<u64>,
    /// The most that is read.
    pub max: u64,
}

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.size {
            Some(size) => write!(f, "it is {size} bytes, more than the {} smmlab takes for it", bytes(self.max)),
            None => write!(f, "it holds more than the {} smmlab takes for it", bytes(self.max)),
        }
    }
}

impl std::error::Error for TooLarge {}

/// `n` bytes in the largest binary unit that divides it.
pub fn bytes(n: u64) -> String {
    match n {
        0 => "0 bytes".into(),
        n if n.is_multiple_of(1 << 30) => format!("{} GiB", n >> 30),
        n if n.is_multiple_of(1 << 20) => format!("{} MiB", n >> 20),
        n if n.is_multiple_of(1 << 10) => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// Reads `path`, at most `max` bytes of it: a larger file is an error holding [`TooLarge`].
pub fn read_at_most(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let f = std::fs::File::open(path)?;
    let meta = f.metadata()?;
    let too_large = |size| std::io::Error::new(std::io::ErrorKind::InvalidData, TooLarge { size, max });
    if meta.is_file() && meta.len() > max {
        return Err(too_large(Some(meta.len())));
    }
    let mut data = Vec::new();
    f.take(max.saturating_add(1)).read_to_end(&mut data)?;
    if data.len() as u64 > max {
        return Err(too_large(meta.is_file().then_some(data.len() as u64)));
    }
    Ok(data)
}

/// The [`TooLarge`] inside `e`, if that is what it is.
pub fn too_large(e: &std::io::Error) -> Option<TooLarge> {
    e.get_ref().and_then(|i| i.downcast_ref::<TooLarge>()).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_devices_and_directories() {
        let d = std::env::temp_dir().join(format!("smmlab-input-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let f = d.join("ten.bin");
        std::fs::write(&f, [7u8; 10]).unwrap();
        assert_eq!(read_at_most(&f, 10).unwrap(), vec![7u8; 10]);
        let e = read_at_most(&f, 9).unwrap_err();
        assert_eq!(too_large(&e), Some(TooLarge { size: Some(10), max: 9 }));
        assert_eq!(e.to_string(), "it is 10 bytes, more than the 9 bytes smmlab takes for it");
        // A device without end is cut off at the bound.
        let e = read_at_most(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert_eq!(e.to_string(), "it holds more than the 1 MiB smmlab takes for it");
        assert!(read_at_most(&d, 100).is_err(), "a directory");
        assert!(too_large(&read_at_most(&d.join("missing"), 1).unwrap_err()).is_none());
        assert_eq!(bytes(16 << 20), "16 MiB");
        assert_eq!(bytes(2 << 30), "2 GiB");
        assert_eq!(bytes(4096), "4 KiB");
        assert_eq!(bytes(1000), "1000 bytes");
    }
}
