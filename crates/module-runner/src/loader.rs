//! Loading a PE32+ image as edk2's BasePeCoffLib does: the headers (SizeOfHeaders bytes) first,
//! then each section at its RVA, zero-filled to SizeOfImage, then the base relocations for
//! the new address and the new ImageBase written into the optional header. goblin parses the
//! file.

use goblin::pe::options::ParseOptions;
use goblin::pe::PE;

/// IMAGE_REL_BASED_ABSOLUTE (padding), HIGHLOW and DIR64 (PE/COFF spec, "Base Relocation Types").
const REL_ABSOLUTE: u8 = 0;
const REL_HIGHLOW: u8 = 3;
const REL_DIR64: u8 = 10;

/// A PE32+ image ready to be written at its base.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// Where it goes.
    pub base: u64,
    /// The image as memory holds it (SizeOfImage bytes).
    pub bytes: Vec<u8>,
    /// The entry point's address.
    pub entry: u64,
    /// The optional header's Subsystem (10 application, 11 boot-service driver, 12 runtime
    /// driver, 13 ROM).
    pub subsystem: u16,
    /// Base relocations applied.
    pub relocations: usize,
}

/// Why an image cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// goblin could not read it.
    #[error("not a PE image: {0}")]
    NotPe(String),
    /// A PE32 (32-bit) or non-x64 image.
    #[error("not an x64 PE32+ image (machine {machine:#x}, {bits}-bit)")]
    NotX64 {
        /// COFF machine.
        machine: u16,
        /// 32 or 64.
        bits: u32,
    },
    /// Headers that contradict the file.
    #[error("malformed image: {0}")]
    Malformed(String),
}

/// The image's SizeOfImage, to allocate its pages before loading.
pub fn image_size(file: &[u8]) -> Result<u64, LoadError> {
    let pe = parse(file)?;
    Ok(pe.header.optional_header.map(|o| o.windows_fields.size_of_image as u64).unwrap_or(0))
}

fn parse(file: &[u8]) -> Result<PE<'_>, LoadError> {
    let mut opts = ParseOptions::default();
    opts.resolve_rva = true;
    opts.parse_attribute_certificates = false;
    let pe = PE::parse_with_opts(file, &opts).map_err(|e| LoadError::NotPe(e.to_string()))?;
    let machine = pe.header.coff_header.machine;
    if !pe.is_64 || machine != goblin::pe::header::COFF_MACHINE_X86_64 {
        return Err(LoadError::NotX64 { machine, bits: if pe.is_64 { 64 } else { 32 } });
    }
    Ok(pe)
}

/// Lays `file` out for address `base`.
pub fn load(file: &[u8], base: u64) -> Result<Loaded, LoadError> {
    let pe = parse(file)?;
    let opt = pe.header.optional_header.ok_or_else(|| LoadError::Malformed("no optional header".into()))?;
    let size = opt.windows_fields.size_of_image as usize;
    let headers = opt.windows_fields.size_of_headers as usize;
    if size == 0 || size > 64 << 20 || headers > size || headers > file.len() {
        return Err(LoadError::Malformed(format!("SizeOfImage {size:#x}, SizeOfHeaders {headers:#x}, file {:#x} bytes", file.len())));
    }
    let mut bytes = vec![0u8; size];
    bytes[..headers].copy_from_slice(&file[..headers]);
    for s in &pe.sections {
        let (va, raw, at) = (s.virtual_address as usize, s.size_of_raw_data as usize, s.pointer_to_raw_data as usize);
        let len = raw.min(if s.virtual_size == 0 { raw } else { s.virtual_size as usize });
        let src = file.get(at..at.saturating_add(len)).ok_or_else(|| LoadError::Malformed(format!("section {} runs past the end of the file", s.name().unwrap_or("?"))))?;
        let dst = bytes.get_mut(va..va.saturating_add(len)).ok_or_else(|| LoadError::Malformed(format!("section {} runs past SizeOfImage", s.name().unwrap_or("?"))))?;
        dst.copy_from_slice(src);
    }
    let delta = base.wrapping_sub(opt.windows_fields.image_base);
    let mut relocations = 0;
    if let Some(r) = &pe.relocation_data {
        for block in r.blocks() {
            let block = block.map_err(|e| LoadError::Malformed(format!("base relocations: {e}")))?;
            for w in block.words() {
                let w = w.map_err(|e| LoadError::Malformed(format!("base relocations: {e}")))?;
                let at = block.rva as usize + w.offset() as usize;
                match w.reloc_type() {
                    REL_ABSOLUTE => continue,
                    REL_DIR64 => {
                        let f = bytes.get_mut(at..at + 8).ok_or_else(|| LoadError::Malformed(format!("relocation at RVA {at:#x} outside the image")))?;
                        let v = u64::from_le_bytes(f.try_into().expect("8 bytes")).wrapping_add(delta);
                        f.copy_from_slice(&v.to_le_bytes());
                    }
                    REL_HIGHLOW => {
                        let f = bytes.get_mut(at..at + 4).ok_or_else(|| LoadError::Malformed(format!("relocation at RVA {at:#x} outside the image")))?;
                        let v = u32::from_le_bytes(f.try_into().expect("4 bytes")).wrapping_add(delta as u32);
                        f.copy_from_slice(&v.to_le_bytes());
                    }
                    t => return Err(LoadError::Malformed(format!("relocation type {t} at RVA {at:#x} is not one an x64 image uses"))),
                }
                relocations += 1;
            }
        }
    }
    // The optional header's ImageBase (PE32+: at +0x18 of the optional header) now says where
    // the image is, as BasePeCoffLib leaves it.
    let pe_off = pe.header.dos_header.pe_pointer as usize;
    let image_base_at = pe_off + 4 + 20 + 0x18;
    if let Some(f) = bytes.get_mut(image_base_at..image_base_at + 8) {
        f.copy_from_slice(&base.to_le_bytes());
    }
    Ok(Loaded { base, bytes, entry: base + opt.standard_fields.address_of_entry_point as u64, subsystem: opt.windows_fields.subsystem, relocations })
}
