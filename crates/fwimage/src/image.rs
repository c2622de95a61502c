//! The walk over a whole image: volumes found in the flash image, their files, the sections of
//! each file, and volumes nested in FIRMWARE_VOLUME_IMAGE sections (PI Vol. 3 §2.1.5.2), also
//! after decompression of an encapsulation section.

use crate::bytes::{slice, u16_at, utf16z};
use crate::decompress::{self, CRC32_GUIDED_SECTION_GUID, LZMA_CUSTOM_DECOMPRESS_GUID};
use crate::error::FwError;
use crate::ffs::{self, FileType};
use crate::fv::{self, FileSystem, VolumeHeader};
use crate::guid::Guid;
use crate::pe::{self, ImageFormat};
use crate::section::{self, kind, Compression, GuidDefined, SectionHeader};
use serde::Serialize;

/// Bounds on the work an image may ask for.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Deepest nesting of volumes and encapsulation sections.
    pub max_depth: usize,
    /// Largest decompressed size of one section.
    pub max_decompressed: u64,
    /// Largest decompressed size of all sections together.
    pub max_total_decompressed: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_depth: 16,
            max_decompressed: decompress::DEFAULT_MAX_DECOMPRESSED,
            max_total_decompressed: 4 * decompress::DEFAULT_MAX_DECOMPRESSED,
        }
    }
}

/// A firmware volume found in the image.
#[derive(Debug, Clone)]
pub struct Volume {
    /// Index in [`Image::volumes`]: volumes are numbered in the order the walk meets them
    /// (depth first).
    pub index: usize,
    /// Offset of the header in its buffer (see [`Module::offset`]).
    pub offset: usize,
    /// Whether the buffer is decompressed data rather than the image.
    pub in_decompressed: bool,
    /// Index in [`Image::modules`] of the file holding this volume; `None` at top level.
    pub parent: Option<usize>,
    /// The header.
    pub header: VolumeHeader,
}

/// One FFS file (pad files excluded).
#[derive(Debug, Clone, Serialize)]
pub struct Module {
    /// The file name GUID.
    pub guid: Guid,
    /// The file type, by its PI name ("DRIVER", "MM", ...).
    #[serde(rename = "type")]
    pub file_type: FileType,
    /// The USER_INTERFACE section, if any.
    pub name: Option<String>,
    /// Whether the file type is one of the MM (SMM) types.
    pub smm: bool,
    /// Offset of the file header. For a file in a top-level volume this is the offset in the
    /// image; for a file in a volume that was decompressed (`in_decompressed`), it is the offset
    /// in the decompressed data of the innermost enclosing compressed section.
    pub offset: usize,
    /// Size of the file, header included.
    pub size: u64,
    /// Index of the volume that holds the file (see [`Volume::index`]).
    pub fv: usize,
    /// Whether `offset` is relative to decompressed data rather than the image.
    pub in_decompressed: bool,
    /// PE32 or TE, for files with an executable section.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<ImageFormat>,
    /// The executable's machine type ("x86_64", "i386", ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// The executable's entry point, an RVA.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<u64>,
    /// The VERSION section's string, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Things inside the file that were not understood (unsupported compression, an executable
    /// goblin could not read).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The PE32 image's [`pe::fingerprint`], to recognize it once loaded.
    #[serde(skip)]
    pub pe_fingerprint: Option<Vec<u8>>,
    /// The PE32 section's image (not TE), for tools that load the module (`smmlab module`).
    #[serde(skip)]
    pub pe32: Option<Vec<u8>>,
    /// The RAW sections' bodies (a PCD driver's database, [`crate::pcd`]).
    #[serde(skip)]
    pub raw: Vec<Vec<u8>>,
}

/// A parsed image.
#[derive(Debug, Clone, Default)]
pub struct Image {
    /// Every volume, depth first.
    pub volumes: Vec<Volume>,
    /// Every FFS file except pad files, depth first.
    pub modules: Vec<Module>,
}

/// Parses a flash image with the default [`Limits`].
pub fn parse(data: &[u8]) -> Result<Image, FwError> {
    parse_with_limits(data, Limits::default())
}

/// Parses a flash image: finds every volume in it (headers at 8-byte alignment with a valid
/// checksum) and walks each.
pub fn parse_with_limits(data: &[u8], limits: Limits) -> Result<Image, FwError> {
    let scan = fv::scan(data);
    if scan.volumes.is_empty() {
        return Err(FwError::NoVolume {
            len: data.len(),
            rejected: scan.rejected.len(),
            first_rejection: scan.rejected.into_iter().next(),
        });
    }
    let mut w = Walker {
        limits,
        image: Image::default(),
        decompressed: 0,
    };
    for off in scan.volumes {
        let rest = data.get(off..).unwrap_or(&[]);
        w.volume(rest, off, false, None, 0)?;
    }
    Ok(w.image)
}

struct Walker {
    limits: Limits,
    image: Image,
    decompressed: u64,
}

/// Where a section stream sits, for offsets and context.
#[derive(Clone, Copy)]
struct Place {
    /// Offset of the stream's first byte in its buffer.
    base: usize,
    in_decompressed: bool,
    /// The module the stream belongs to.
    module: usize,
    depth: usize,
}

impl Walker {
    fn deeper(&self, depth: usize) -> Result<usize, FwError> {
        let d = depth + 1;
        if d > self.limits.max_depth {
            return Err(FwError::TooDeep {
                limit: self.limits.max_depth,
            });
        }
        Ok(d)
    }

    /// Walks the volume at the start of `data`, which sits at `offset` in its buffer.
    fn volume(
        &mut self,
        data: &[u8],
        offset: usize,
        in_decompressed: bool,
        parent: Option<usize>,
        depth: usize,
    ) -> Result<(), FwError> {
        let ctx = |e: FwError| FwError::Volume {
            offset,
            source: Box::new(e),
        };
        let header = VolumeHeader::parse(data).map_err(ctx)?;
        let len = usize::try_from(header.length).unwrap_or(usize::MAX);
        let fv_data = data.get(..len).unwrap_or(&[]);
        let index = self.image.volumes.len();
        let is_ffs = header.file_system.is_ffs();
        self.image.volumes.push(Volume {
            index,
            offset,
            in_decompressed,
            parent,
            header: header.clone(),
        });
        if !is_ffs {
            return Ok(());
        }
        let files = ffs::files(fv_data, &header).map_err(ctx)?;
        for f in files {
            if f.header.file_type == FileType::FfsPad {
                continue;
            }
            let file_off = offset.saturating_add(f.offset);
            let module = self.image.modules.len();
            self.image.modules.push(Module {
                guid: f.header.name,
                file_type: f.header.file_type,
                name: None,
                smm: f.header.file_type.is_mm(),
                offset: file_off,
                size: f.header.size,
                fv: index,
                in_decompressed,
                format: None,
                machine: None,
                entry: None,
                version: None,
                notes: Vec::new(),
                pe_fingerprint: None,
                pe32: None,
                raw: Vec::new(),
            });
            if !f.header.file_type.has_sections() {
                continue;
            }
            let end = usize::try_from(f.header.size).unwrap_or(usize::MAX);
            let body = fv_data
                .get(f.offset..)
                .and_then(|r| r.get(f.header.header_size..end))
                .unwrap_or(&[]);
            let place = Place {
                base: file_off.saturating_add(f.header.header_size),
                in_decompressed,
                module,
                depth,
            };
            self.sections(body, place).map_err(|e| {
                ctx(FwError::File {
                    offset: file_off,
                    guid: f.header.name,
                    source: Box::new(e),
                })
            })?;
        }
        Ok(())
    }

    /// Walks a section stream.
    fn sections(&mut self, stream: &[u8], place: Place) -> Result<(), FwError> {
        let depth = self.deeper(place.depth)?;
        for s in section::sections(stream)? {
            let sec_off = place.base.saturating_add(s.offset);
            let whole = slice(stream, s.offset, s.header.size).unwrap_or(&[]);
            self.section(whole, &s.header, sec_off, Place { depth, ..place })
                .map_err(|e| FwError::Section {
                    offset: sec_off,
                    kind: s.header.kind,
                    source: Box::new(e),
                })?;
        }
        Ok(())
    }

    fn note(&mut self, module: usize, text: String) {
        if let Some(m) = self.image.modules.get_mut(module) {
            m.notes.push(text);
        }
    }

    /// Handles one section; `whole` is the section, header included, at `sec_off`.
    fn section(
        &mut self,
        whole: &[u8],
        header: &SectionHeader,
        sec_off: usize,
        place: Place,
    ) -> Result<(), FwError> {
        let body = whole.get(header.header_size..).unwrap_or(&[]);
        let body_off = sec_off.saturating_add(header.header_size);
        match header.kind {
            kind::USER_INTERFACE => {
                let name = utf16z(body);
                if let Some(m) = self.image.modules.get_mut(place.module) {
                    m.name.get_or_insert(name);
                }
            }
            kind::VERSION => {
                // BuildNumber (u16), then a NUL-terminated UTF-16 string.
                let build = u16_at(body, 0).unwrap_or(0);
                let text = utf16z(body.get(2..).unwrap_or(&[]));
                let v = if text.is_empty() {
                    build.to_string()
                } else {
                    text
                };
                if let Some(m) = self.image.modules.get_mut(place.module) {
                    m.version.get_or_insert(v);
                }
            }
            kind::RAW => {
                if let Some(m) = self.image.modules.get_mut(place.module) {
                    m.raw.push(body.to_vec());
                }
            }
            kind::PE32 | kind::TE => {
                let info = if header.kind == kind::PE32 {
                    pe::pe32(body)
                } else {
                    pe::te(body)
                };
                match info {
                    Ok(i) => {
                        if let Some(m) = self.image.modules.get_mut(place.module) {
                            if m.format.is_none() {
                                m.format = Some(i.format);
                                m.machine = Some(pe::machine_name(i.machine));
                                m.entry = Some(i.entry);
                                m.pe_fingerprint = pe::fingerprint(body);
                                if header.kind == kind::PE32 {
                                    m.pe32 = Some(body.to_vec());
                                }
                            }
                        }
                    }
                    Err(e) => self.note(
                        place.module,
                        format!("executable at offset {body_off:#x} not readable: {e}"),
                    ),
                }
            }
            kind::FIRMWARE_VOLUME_IMAGE => {
                let depth = self.deeper(place.depth)?;
                self.volume(
                    body,
                    body_off,
                    place.in_decompressed,
                    Some(place.module),
                    depth,
                )?;
            }
            kind::DISPOSABLE => {
                self.sections(
                    body,
                    Place {
                        base: body_off,
                        ..place
                    },
                )?;
            }
            kind::COMPRESSION => {
                let c = Compression::parse(whole, header)?;
                let data = whole.get(c.data_offset..).unwrap_or(&[]);
                match c.compression_type {
                    section::EFI_NOT_COMPRESSED => {
                        let base = sec_off.saturating_add(c.data_offset);
                        self.sections(data, Place { base, ..place })?;
                    }
                    section::EFI_STANDARD_COMPRESSION => self.note(
                        place.module,
                        format!(
                            "compression section at offset {sec_off:#x} uses EFI standard compression, which is not supported; its contents are not listed"
                        ),
                    ),
                    t => self.note(
                        place.module,
                        format!("compression section at offset {sec_off:#x} has unknown CompressionType {t:#04x}"),
                    ),
                }
            }
            kind::GUID_DEFINED => {
                let g = GuidDefined::parse(whole, header)?;
                let data = whole.get(g.data_offset..).unwrap_or(&[]);
                let base = sec_off.saturating_add(g.data_offset);
                if g.guid == LZMA_CUSTOM_DECOMPRESS_GUID {
                    self.lzma(data, place)?;
                } else if g.attributes & section::EFI_GUIDED_SECTION_PROCESSING_REQUIRED == 0
                    || g.guid == CRC32_GUIDED_SECTION_GUID
                {
                    // The data is the section stream itself (§2.2.4, Attributes).
                    self.sections(data, Place { base, ..place })?;
                } else {
                    let what = guided_name(&g.guid);
                    self.note(
                        place.module,
                        format!(
                            "GUID-defined section at offset {sec_off:#x} ({what}) is not supported; its contents are not listed"
                        ),
                    );
                }
            }
            // Leaves with nothing to report: PIC, DEPEX, COMPATIBILITY16, FREEFORM_SUBTYPE_GUID,
            // RAW, and unknown types.
            _ => {}
        }
        Ok(())
    }

    fn lzma(&mut self, data: &[u8], place: Place) -> Result<(), FwError> {
        let remaining = self
            .limits
            .max_total_decompressed
            .saturating_sub(self.decompressed);
        let limit = self.limits.max_decompressed.min(remaining);
        let out = match decompress::lzma(data, limit) {
            Err(FwError::DecompressedTooLarge { .. }) if limit < self.limits.max_decompressed => {
                return Err(FwError::DecompressionBudget {
                    limit: self.limits.max_total_decompressed,
                })
            }
            r => r?,
        };
        self.decompressed = self.decompressed.saturating_add(out.len() as u64);
        let inner = Place {
            base: 0,
            in_decompressed: true,
            ..place
        };
        self.sections(&out, inner)
            .map_err(|e| FwError::Decompressed {
                len: out.len(),
                source: Box::new(e),
            })
    }
}

fn guided_name(g: &Guid) -> String {
    use crate::decompress::*;
    let n = if *g == LZMAF86_CUSTOM_DECOMPRESS_GUID {
        "LZMA with the x86 branch filter"
    } else if *g == TIANO_CUSTOM_DECOMPRESS_GUID {
        "Tiano compression"
    } else if *g == BROTLI_CUSTOM_DECOMPRESS_GUID {
        "Brotli compression"
    } else {
        return format!("GUID {g}, processing required");
    };
    format!("{n}, GUID {g}")
}

impl Image {
    /// The modules of MM (SMM) types.
    pub fn mm_modules(&self) -> impl Iterator<Item = &Module> {
        self.modules.iter().filter(|m| m.smm)
    }
}

impl FileSystem {
    /// A short name: "FFS2", "FFS3", or the GUID.
    pub fn name(&self) -> String {
        match self {
            FileSystem::Ffs2 => "FFS2".into(),
            FileSystem::Ffs3 => "FFS3".into(),
            FileSystem::Other(g) => g.to_string(),
        }
    }
}
