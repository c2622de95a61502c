//! UEFI firmware image parsing per the PI specification, Volume 3 ("Shared Architectural
//! Elements"): firmware volumes (§3.2), FFS files (§2.2.3) and their sections (§2.2.4), with
//! nested volumes inside FIRMWARE_VOLUME_IMAGE sections and inside edk2 LZMA-compressed
//! GUID-defined sections, and the machine type and entry point of PE32/TE images.
//!
//! ```no_run
//! let data = std::fs::read("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd").unwrap();
//! let image = fwimage::parse(&data).unwrap();
//! for m in image.mm_modules() {
//!     println!("{} {}", m.guid, m.name.as_deref().unwrap_or("?"));
//! }
//! ```
//!
//! # Offsets
//! [`Module::offset`] and [`Volume::offset`] are offsets in the buffer that holds the structure:
//! the image for top-level volumes (and volumes nested without compression), otherwise the data
//! produced by the innermost enclosing compressed section (`in_decompressed` is then `true`).
//!
//! # Untrusted input
//! Parsing never panics: every read is bounds-checked, size fields that point outside their
//! container are errors, nesting depth and decompressed sizes are capped ([`Limits`]).

#![warn(missing_docs)]

mod bytes;
pub mod decompress;
mod error;
pub mod ffs;
pub mod fv;
pub mod pcd;
mod guid;
mod image;
pub mod pe;
pub mod section;

pub use error::FwError;
pub use ffs::FileType;
pub use fv::FileSystem;
pub use guid::{Guid, GuidParseError};
pub use image::{parse, parse_with_limits, Image, Limits, Module, Volume};
pub use pe::ImageFormat;
