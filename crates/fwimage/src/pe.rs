//! PE32/PE32+ and TE images in PE32 and TE sections (TE: PI spec Vol. 1 "TE Image"), read with
//! goblin: the machine type and the entry point.

use goblin::pe::header::{Header, TeHeader};
use serde::Serialize;

/// The executable format of a section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ImageFormat {
    /// A PE32 or PE32+ image (section type 0x10).
    #[serde(rename = "PE32")]
    Pe32,
    /// A Terse Executable (section type 0x12).
    #[serde(rename = "TE")]
    Te,
}

/// What is known about an executable image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// PE32 or TE.
    pub format: ImageFormat,
    /// COFF `Machine`.
    pub machine: u16,
    /// `AddressOfEntryPoint`, an RVA from the (original, for TE) image base.
    pub entry: u64,
}

/// Size of the TE header (PI Vol. 1, `EFI_TE_IMAGE_HEADER`).
const TE_HEADER_SIZE: u32 = 40;

/// Reads the PE headers of a PE32 section body.
pub fn pe32(data: &[u8]) -> Result<ImageInfo, String> {
    let h = Header::parse(data).map_err(|e| e.to_string())?;
    let opt = h
        .optional_header
        .ok_or_else(|| "PE image has no optional header".to_string())?;
    Ok(ImageInfo {
        format: ImageFormat::Pe32,
        machine: h.coff_header.machine,
        entry: u64::from(opt.standard_fields.address_of_entry_point),
    })
}

/// What identifies a PE image before and after a loader placed it: the COFF header, the entry
/// point, SizeOfImage and the section table. PE loaders (edk2's BasePeCoffLib among them) copy
/// the headers verbatim and change only the optional header's ImageBase, so a file in a
/// firmware volume and the same file loaded into memory have the same fingerprint.
pub fn fingerprint(image: &[u8]) -> Option<Vec<u8>> {
    let h = Header::parse(image).ok()?;
    let opt = h.optional_header?;
    let coff_at = h.dos_header.pe_pointer as usize + 4;
    let sections_at = coff_at + 20 + usize::from(h.coff_header.size_of_optional_header);
    let sections = image.get(sections_at..sections_at + 40 * usize::from(h.coff_header.number_of_sections))?;
    let mut f = image.get(coff_at..coff_at + 20)?.to_vec();
    f.extend_from_slice(&opt.standard_fields.address_of_entry_point.to_le_bytes());
    f.extend_from_slice(&opt.windows_fields.size_of_image.to_le_bytes());
    f.extend_from_slice(sections);
    Some(f)
}

/// Reads the header of a TE section body.
pub fn te(data: &[u8]) -> Result<ImageInfo, String> {
    if data.get(..2) != Some(b"VZ".as_slice()) {
        return Err("TE image does not start with \"VZ\"".into());
    }
    let mut off = 0;
    let h = TeHeader::parse(data, &mut off).map_err(|e| e.to_string())?;
    // goblin moves the entry point to be relative to the TE file; undo that so it is the RVA
    // in the original image, as `AddressOfEntryPoint` in the header is.
    let adj = u32::from(h.stripped_size).saturating_sub(TE_HEADER_SIZE);
    Ok(ImageInfo {
        format: ImageFormat::Te,
        machine: h.machine,
        entry: u64::from(h.entry_point.wrapping_add(adj)),
    })
}

/// A readable name for a COFF machine type.
pub fn machine_name(machine: u16) -> String {
    match machine {
        0x014c => "i386".into(),
        0x8664 => "x86_64".into(),
        0x0200 => "ia64".into(),
        0x01c2 => "arm".into(),
        0x01c4 => "armv7".into(),
        0xaa64 => "aarch64".into(),
        0x0ebc => "ebc".into(),
        0x5032 => "riscv32".into(),
        0x5064 => "riscv64".into(),
        0x6264 => "loongarch64".into(),
        other => format!("{other:#06x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(pe32(b"MZ").is_err());
        assert!(pe32(&[]).is_err());
        assert!(te(b"VZ\x64\x86").is_err());
        assert!(te(b"xx").is_err());
    }

    #[test]
    fn machine_names() {
        assert_eq!(machine_name(0x8664), "x86_64");
        assert_eq!(machine_name(0x1234), "0x1234");
    }
}
