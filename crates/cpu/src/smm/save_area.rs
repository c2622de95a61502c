//! The state-save area in SMRAM (the 1 KiB below SMBASE + 0x10000): which map this CPU uses,
//! and the copy of an [`Image`] to and from it, straight through the host page when SMRAM is
//! plain memory, else through the bus. Also the segment form the maps store.

use super::savestate::{Image, MapKind, SegImage};
use crate::bus::Bus;
use crate::cpuid::Vendor;
use crate::segment::{Segment, ATTR_UNUSABLE};
use crate::Cpu;

/// Descriptor-cache attributes in the save maps' form: access byte in 7:0, flags in 15:12.
fn attr_to_image(s: &Segment) -> u64 {
    if s.unusable() {
        return s.attr as u64 & 0x60; // not present, DPL kept
    }
    (s.attr as u64 & 0xff) | ((s.attr as u64 & 0xf00) << 4)
}

/// A segment register in the save maps' form.
pub(super) fn seg_to_image(s: &Segment) -> SegImage {
    SegImage { sel: s.selector as u64, attr: attr_to_image(s), limit: s.limit as u64, base: s.base }
}

/// A segment register from the save maps' form; in protected mode a not-present one is
/// unusable.
pub(super) fn seg_from_image(i: &SegImage, protected: bool) -> Segment {
    let mut attr = ((i.attr & 0xff) | ((i.attr >> 4) & 0xf00)) as u16;
    if protected && attr & 0x80 == 0 {
        attr |= ATTR_UNUSABLE;
    }
    Segment { selector: i.sel as u16, base: i.base, limit: i.limit as u32, attr }
}

impl Cpu {
    /// The save-state map of this CPU model.
    pub fn smm_map(&self) -> MapKind {
        match (self.model.vendor, self.model.long_mode) {
            (Vendor::Amd, true) => MapKind::Amd64,
            (Vendor::Intel, true) => MapKind::Intel64,
            (_, false) => MapKind::Legacy32,
        }
    }

    /// Stores `img` in the save area at `base` (SMBASE + 0xFC00). Bytes of the map that no
    /// field covers are zeroed (as KVM and Bochs do).
    pub(super) fn store_save_area(&mut self, bus: &mut dyn Bus, map: MapKind, base: u64, img: &mut Image) {
        let start = (map.start() - 0xfc00) as usize;
        let mut area = [0u8; 0x400];
        img.store(map, &mut area);
        if let Some(p) = self.save_area_page(bus, base, crate::AccessKind::Write) {
            // SAFETY: `p` points at a live 4 KiB page of guest memory (Bus::host_page) whose
            // bytes 0xC00..0x1000 are the save area, so start..0x400 lies inside it; `area`
            // is a local buffer, and guest memory is only ever copied into or out of, never
            // referenced, so nothing aliases the bytes written.
            unsafe { std::ptr::copy_nonoverlapping(area[start..].as_ptr(), p.add(0xc00 + start), 0x400 - start) };
        } else {
            self.write_smram(bus, base, &area, start);
        }
    }

    /// Loads the image saved at `base` (SMBASE + 0xFC00).
    pub(super) fn load_save_area(&mut self, bus: &mut dyn Bus, map: MapKind, base: u64) -> Image {
        let area = match self.save_area_page(bus, base, crate::AccessKind::Read) {
            // SAFETY: the 1 KiB at page offset 0xC00 lies inside the live page
            // (Bus::host_page); it is copied out by value (an unaligned read), never
            // referenced.
            Some(p) => unsafe { p.add(0xc00).cast::<[u8; 0x400]>().read_unaligned() },
            None => {
                let mut area = [0u8; 0x400];
                self.read_smram(bus, base, &mut area);
                area
            }
        };
        Image::load(map, &area)
    }

    /// The host pointer to the page holding the save area (SMBASE + 0xF000), when it is plain
    /// memory for the CPU in SMM and holds no decoded code.
    fn save_area_page(&mut self, bus: &mut dyn Bus, base: u64, kind: crate::AccessKind) -> Option<*mut u8> {
        let page = base & !0xfff;
        if base & 0xfff != 0xc00 || (kind == crate::AccessKind::Write && self.cache.has_code(page)) {
            return None;
        }
        bus.host_page(page, kind, true).map(|p| p.as_ptr())
    }

    /// Reads the 1 KiB below SMBASE + 0x10000 through the bus.
    fn read_smram(&mut self, bus: &mut dyn Bus, base: u64, out: &mut [u8; 0x400]) {
        for (k, chunk) in out.chunks_mut(8).enumerate() {
            let v = self.phys_read(bus, base + 8 * k as u64, 8);
            chunk.copy_from_slice(&v.to_le_bytes());
        }
    }

    /// Writes `data[from..]` to the 1 KiB below SMBASE + 0x10000 through the bus.
    fn write_smram(&mut self, bus: &mut dyn Bus, base: u64, data: &[u8; 0x400], from: usize) {
        for k in (from / 8)..0x80 {
            let v = u64::from_le_bytes(data[8 * k..8 * k + 8].try_into().unwrap_or([0; 8]));
            self.phys_write(bus, base + 8 * k as u64, 8, v);
        }
    }
}
