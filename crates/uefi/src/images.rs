//! The PE images in SMRAM. edk2's SMM core loads every SMM driver (and PiSmmIpl the core
//! itself) at a page boundary and copies its headers first (BasePeCoffLib), so an image shows
//! as `MZ` at the start of a 4 KiB page with a PE32+ header behind it. Each is named by the
//! firmware-volume file whose PE32 section has the same header fingerprint
//! ([`fwimage::pe::fingerprint`]: the loader changes only ImageBase), else by the file name in
//! its CodeView debug entry (`.../VariableSmm.dll`), else by its address.

use crate::smram::Smram;
use fwimage::Guid;
use goblin::pe::options::ParseOptions;
use serde::Serialize;

/// The page step images are looked for at.
const PAGE: u64 = 0x1000;
/// The largest image believed (SMRAM is at most a few MiB on these boards).
const MAX_IMAGE: u64 = 64 << 20;

/// Where a module's name came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NameSource {
    /// The firmware volume's file (its UI section, or its GUID).
    FirmwareVolume,
    /// The CodeView debug entry's path.
    CodeView,
    /// Nothing named it: `image@<base>`.
    Address,
}

/// One image loaded into SMRAM.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LoadedImage {
    /// Its name.
    pub name: String,
    /// The firmware-volume file it came from.
    pub guid: Option<Guid>,
    /// Where [`LoadedImage::name`] came from.
    pub named_by: NameSource,
    /// Its first address.
    pub base: u64,
    /// SizeOfImage.
    pub size: u64,
    /// The entry point's address.
    pub entry: u64,
    /// The CodeView debug path, if the image keeps one.
    pub debug_path: Option<String>,
    /// Its executable sections, as (start, end) RVAs.
    pub code: Vec<(u64, u64)>,
}

impl LoadedImage {
    /// Whether `addr` is inside the image.
    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr - self.base < self.size
    }

    /// Whether `addr` is in one of the image's executable sections.
    pub fn in_code(&self, addr: u64) -> bool {
        let rva = addr.wrapping_sub(self.base);
        self.code.iter().any(|&(s, e)| rva >= s && rva < e)
    }
}

/// Every image in `smram`, lowest first, named from `fw` where it matches.
pub fn find(smram: &Smram, fw: Option<&fwimage::Image>) -> Vec<LoadedImage> {
    let mut out: Vec<LoadedImage> = Vec::new();
    for (base, data) in smram.ranges() {
        let mut off = 0u64;
        while off + 0x40 <= data.len() as u64 {
            let here = &data[off as usize..];
            match image_at(base + off, here, fw) {
                Some(img) => {
                    off += img.size.div_ceil(PAGE) * PAGE;
                    out.push(img);
                }
                None => off += PAGE,
            }
        }
    }
    out
}

/// The image whose first page is `base` and whose bytes `read(addr, len)` returns, if it
/// holds `addr`: the page of `addr` and up to 1 MiB below it searched for a PE header whose
/// image spans `addr` (images are page-aligned). Its base and bytes.
pub fn enclosing(addr: u64, read: &mut dyn FnMut(u64, usize) -> Vec<u8>) -> Option<(u64, Vec<u8>)> {
    const SEARCH: u64 = 1 << 20;
    let top = addr & !(PAGE - 1);
    let mut page = top;
    while top - page <= SEARCH {
        if read(page, 2) == b"MZ" {
            let head = read(page, PAGE as usize);
            let size = goblin::pe::header::Header::parse(&head).ok().and_then(|h| h.optional_header).map(|o| u64::from(o.windows_fields.size_of_image));
            // The nearest header below `addr` is its image's, or `addr` is in none.
            return match size {
                Some(size) if size <= MAX_IMAGE && addr < page + size => Some((page, read(page, size as usize))),
                _ => None,
            };
        }
        page = page.checked_sub(PAGE)?;
    }
    None
}

/// The image at `base` in `bytes`, named from `fw` where it matches.
pub fn image_at(base: u64, bytes: &[u8], fw: Option<&fwimage::Image>) -> Option<LoadedImage> {
    if bytes.get(..2) != Some(b"MZ") {
        return None;
    }
    let h = goblin::pe::header::Header::parse(bytes).ok()?;
    let opt = h.optional_header?;
    let size = u64::from(opt.windows_fields.size_of_image);
    if size == 0 || size > MAX_IMAGE || size > bytes.len() as u64 {
        return None;
    }
    let image = &bytes[..size as usize];
    let entry = base + u64::from(opt.standard_fields.address_of_entry_point);
    let debug_path = debug_path(image);
    let code = code_sections(image);
    let fingerprint = fwimage::pe::fingerprint(image);
    let file = fw.and_then(|fw| fw.modules.iter().find(|m| m.pe_fingerprint.is_some() && m.pe_fingerprint == fingerprint));
    let (name, guid, named_by) = match (file, &debug_path) {
        (Some(m), _) => (m.name.clone().unwrap_or_else(|| m.guid.to_string()), Some(m.guid), NameSource::FirmwareVolume),
        (None, Some(p)) => (module_name(p), None, NameSource::CodeView),
        (None, None) => (format!("image@{base:#x}"), None, NameSource::Address),
    };
    Some(LoadedImage { name, guid, named_by, base, size, entry, debug_path, code })
}

/// IMAGE_SCN_MEM_EXECUTE (PE format, section flags).
const SCN_MEM_EXECUTE: u32 = 0x2000_0000;

/// The executable sections' RVA ranges.
fn code_sections(image: &[u8]) -> Vec<(u64, u64)> {
    let Ok(h) = goblin::pe::header::Header::parse(image) else { return vec![] };
    let at = h.dos_header.pe_pointer as usize + 24 + usize::from(h.coff_header.size_of_optional_header);
    (0..usize::from(h.coff_header.number_of_sections))
        .filter_map(|i| image.get(at + 40 * i..at + 40 * (i + 1)))
        .filter_map(|s| {
            let word = |o: usize| u32::from_le_bytes(s[o..o + 4].try_into().expect("4 bytes"));
            let (size, rva, flags) = (word(8), word(12), word(36));
            (flags & SCN_MEM_EXECUTE != 0).then_some((u64::from(rva), u64::from(rva) + u64::from(size)))
        })
        .collect()
}

/// The CodeView path of a loaded (memory-layout) image.
fn debug_path(image: &[u8]) -> Option<String> {
    let mut o = ParseOptions::default();
    o.resolve_rva = false;
    o.parse_attribute_certificates = false;
    o.parse_tls_data = false;
    o.parse_resources = false;
    o.parse_imports = false;
    o.parse_mode = goblin::options::ParseMode::Permissive;
    let pe = goblin::pe::PE::parse_with_opts(image, &o).ok()?;
    let d = pe.debug_data?;
    let raw = d.codeview_pdb70_debug_info.map(|c| c.filename).or(d.codeview_pdb20_debug_info.map(|c| c.filename))?;
    let text = String::from_utf8_lossy(raw);
    let text = text.trim_end_matches('\0');
    (!text.is_empty()).then(|| text.to_string())
}

/// "VariableSmm" from ".../VariableSmm/DEBUG/VariableSmm.dll".
fn module_name(path: &str) -> String {
    let file = path.rsplit(['/', '\\']).next().unwrap_or(path);
    file.rsplit_once('.').map_or(file, |(stem, _)| stem).to_string()
}

/// Names addresses by the image holding them.
#[derive(Clone, Debug, Default)]
pub struct ModuleMap {
    images: Vec<LoadedImage>,
}

impl ModuleMap {
    /// A map of `images`.
    pub fn new(mut images: Vec<LoadedImage>) -> Self {
        images.sort_by_key(|i| i.base);
        ModuleMap { images }
    }

    /// The images, lowest first.
    pub fn images(&self) -> &[LoadedImage] {
        &self.images
    }

    /// The image holding `addr`.
    pub fn image_of(&self, addr: u64) -> Option<&LoadedImage> {
        let i = self.images.partition_point(|m| m.base <= addr);
        self.images[..i].last().filter(|m| m.contains(addr))
    }

    /// `Module+0xRVA`, or the bare address outside every image.
    pub fn name(&self, addr: u64) -> String {
        match self.image_of(addr) {
            Some(m) => format!("{}+{:#x}", m.name, addr - m.base),
            None => format!("{addr:#x}"),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal PE32+ image of `size` bytes: DOS header, PE header, one section.
    pub(crate) fn pe(size: u32, entry: u32, stamp: u32) -> Vec<u8> {
        let mut b = vec![0u8; size as usize];
        b[0..2].copy_from_slice(b"MZ");
        b[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
        b[0x80..0x84].copy_from_slice(b"PE\0\0");
        let coff = 0x84;
        b[coff..coff + 2].copy_from_slice(&0x8664u16.to_le_bytes());
        b[coff + 2..coff + 4].copy_from_slice(&1u16.to_le_bytes()); // sections
        b[coff + 4..coff + 8].copy_from_slice(&stamp.to_le_bytes());
        b[coff + 16..coff + 18].copy_from_slice(&0xf0u16.to_le_bytes()); // optional header size
        b[coff + 18..coff + 20].copy_from_slice(&0x22u16.to_le_bytes());
        let opt = coff + 20;
        b[opt..opt + 2].copy_from_slice(&0x20bu16.to_le_bytes());
        b[opt + 16..opt + 20].copy_from_slice(&entry.to_le_bytes());
        b[opt + 32..opt + 36].copy_from_slice(&0x1000u32.to_le_bytes()); // section alignment
        b[opt + 36..opt + 40].copy_from_slice(&0x200u32.to_le_bytes()); // file alignment
        b[opt + 56..opt + 60].copy_from_slice(&size.to_le_bytes());
        b[opt + 60..opt + 64].copy_from_slice(&0x200u32.to_le_bytes()); // headers
        b[opt + 108..opt + 112].copy_from_slice(&16u32.to_le_bytes()); // data directories
        let sec = opt + 0xf0;
        b[sec..sec + 5].copy_from_slice(b".text");
        b[sec + 8..sec + 12].copy_from_slice(&(size - 0x1000).to_le_bytes());
        b[sec + 12..sec + 16].copy_from_slice(&0x1000u32.to_le_bytes());
        b[sec + 36..sec + 40].copy_from_slice(&0x6000_0020u32.to_le_bytes()); // code, execute, read
        b
    }

    #[test]
    fn images_are_found_at_pages_and_addresses_named_by_them() {
        let mut ram = vec![0u8; 0x8000];
        ram[0x1000..0x3000].copy_from_slice(&pe(0x2000, 0x1010, 7));
        ram[0x5000..0x7000].copy_from_slice(&pe(0x2000, 0x1020, 8));
        ram[0x4000..0x4002].copy_from_slice(b"MZ"); // not an image
        let s = Smram::new(vec![(0x7f0_0000, ram)]);
        let found = find(&s, None);
        assert_eq!(found.iter().map(|i| (i.base, i.entry)).collect::<Vec<_>>(), vec![(0x7f0_1000, 0x7f0_2010), (0x7f0_5000, 0x7f0_6020)]);
        assert_eq!(found[0].named_by, NameSource::Address);
        assert_eq!(found[0].code, vec![(0x1000, 0x2000)]);
        assert!(found[0].in_code(0x7f0_2010) && !found[0].in_code(0x7f0_1010));
        let map = ModuleMap::new(found);
        assert_eq!(map.name(0x7f0_2010), "image@0x7f01000+0x1010");
        assert_eq!(map.name(0x7f0_3000), "0x7f03000", "past the end of the first image");
        assert_eq!(map.name(0x100), "0x100");
    }

    #[test]
    fn debug_paths_give_module_names() {
        assert_eq!(module_name("/build/OvmfX64/RELEASE_GCC5/X64/MdeModulePkg/Universal/Variable/RuntimeDxe/VariableSmm/DEBUG/VariableSmm.dll"), "VariableSmm");
        assert_eq!(module_name("C:\\b\\Foo.efi"), "Foo");
    }
}
