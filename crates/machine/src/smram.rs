//! SMRAM visibility, decided in exactly one place.
//!
//! The chipsets (q35 MCH, i440FX PMC) only decode their registers into a neutral
//! [`SmramConfig`]; [`route`] alone says what a memory access sees. The rules:
//!
//! * **Compatible SMRAM, A/B segment (0xA0000-0xBFFFF)**, when G_SMRAME = 1 and H_SMRAME = 0
//!   (Intel 3 Series Chipset MCH datasheet, doc. 316966, §5.1.35 SMRAM; Intel 440FX PMC
//!   datasheet, doc. 290549, SMRAM register 72h; D_CLS split as the 440FX/440BX table and
//!   Bochs model it):
//!   - code fetches go to DRAM if D_OPEN or in SMM;
//!   - data accesses go to DRAM if D_OPEN or (in SMM and not D_CLS);
//!   - otherwise the access goes to the PCI/VGA side ([`Visibility::VgaWindow`]), the same
//!     side an access from outside SMM sees. With D_CLS = 1 "SMM space DRAM is not accessible
//!     to data references, even if SMM decode is active. Code references may still access SMM
//!     space DRAM", so that a handler running from SMRAM can still update the display through
//!     the window (MCH datasheet 316966 and 440FX datasheet 290549, SMRAM D_CLS).
//!
//!   D_OPEN counts only while D_LCK = 0: a locked SMRAM is never open. When compatible SMRAM
//!   is off (G_SMRAME = 0, or H_SMRAME = 1), the A/B segment is the PCI/VGA side for every
//!   access: [`route`] decides the A/B segment in every case, not only when it is SMRAM.
//! * **High SMRAM (HSEG), 0xFEDA0000-0xFEDBFFFF**, when G_SMRAME = 1 and H_SMRAME = 1: the same
//!   rules, aliasing the A/B-segment DRAM. The A/B segment is then not SMRAM at all: it shows
//!   the PCI/VGA side in and out of SMM (MCH datasheet, ESMRAMC H_SMRAME).
//! * **TSEG**, [top of low RAM - size, top of low RAM), enabled when T_EN = 1 and G_SMRAME = 1:
//!   DRAM in SMM; outside SMM a hole that reads all ones and drops writes, even with D_OPEN
//!   (MCH datasheet ESMRAMC T_EN; QEMU `mch_update_smram` for the blackhole).
//! * **SMRAM at the default SMBASE**, 0x30000-0x4FFFF (QEMU's q35 MCH, register 0x9C
//!   F_SMBASE, `mch_update_smbase_smram`; not an Intel register): once firmware has set its
//!   lock, DRAM in SMM and outside SMM a hole that reads all ones and drops writes, so that
//!   a hot-plugged CPU's first SMI, at the default SMBASE 0x30000, runs from SMRAM. Before the
//!   lock it is ordinary RAM.
//! * Everything else: the normal decoding.
//!
//! CPU accesses carry their SMM state; bus masters (DMA) always decide as an access from
//! outside SMM, as QEMU's DMA address space is the non-SMM one.

use cpu::AccessKind;
use std::ops::Range;

/// The compatible SMRAM window (A/B segment).
pub const AB_SEG: Range<u64> = 0xa_0000..0xc_0000;
/// The high SMRAM alias window (MCH datasheet: 0FEDA_0000h-0FEDB_FFFFh).
pub const HSEG: Range<u64> = 0xfeda_0000..0xfedc_0000;
/// SMRAM at the default SMBASE (QEMU's q35: 128 KiB from 0x30000).
pub const DEFAULT_SMBASE_WINDOW: Range<u64> = 0x3_0000..0x5_0000;

/// SMRAM control, decoded from a chipset's registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SmramConfig {
    /// Global SMRAM enable.
    pub g_smrame: bool,
    /// SMM space open to non-SMM accesses (ignored while `d_lck`).
    pub d_open: bool,
    /// SMM space closed to data accesses in SMM (code fetches still reach DRAM).
    pub d_cls: bool,
    /// SMRAM locked until reset.
    pub d_lck: bool,
    /// High SMRAM: the A/B-segment DRAM is reached at 0xFEDA0000 instead.
    pub h_smrame: bool,
    /// TSEG enable.
    pub t_en: bool,
    /// TSEG size in bytes (0 when the chipset has none).
    pub tseg_size: u64,
    /// Top of RAM below 4 GiB: TSEG ends here.
    pub low_ram_top: u64,
    /// SMRAM at the default SMBASE ([`DEFAULT_SMBASE_WINDOW`]) is locked in.
    pub default_smbase: bool,
}

impl SmramConfig {
    /// D_OPEN as it takes effect: a locked SMRAM is never open.
    pub fn open(&self) -> bool {
        self.d_open && !self.d_lck
    }

    /// The TSEG range, when TSEG is enabled (T_EN and G_SMRAME, nonzero size that fits).
    pub fn tseg(&self) -> Option<Range<u64>> {
        if self.t_en && self.g_smrame && self.tseg_size != 0 && self.tseg_size <= self.low_ram_top {
            Some(self.low_ram_top - self.tseg_size..self.low_ram_top)
        } else {
            None
        }
    }
}

/// What an access sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visibility {
    /// SMRAM: guest RAM at this offset.
    Ram(u64),
    /// A hole: reads return all ones, writes are dropped.
    Hole,
    /// The PCI/VGA side of the A/B segment (the legacy video window): whatever the video
    /// device decodes there, for SMM and non-SMM accesses alike.
    VgaWindow,
    /// Not SMRAM: the board's normal decoding (RAM, PAM, ROM, MMIO...).
    Normal,
}

/// What an access of `kind` at physical address `addr` sees, from a CPU whose SMM state is
/// `smm`. Port I/O kinds count as data accesses.
#[inline]
pub fn route(cfg: &SmramConfig, addr: u64, kind: AccessKind, smm: bool) -> Visibility {
    // Compatible SMRAM at `ram`; `otherwise` is what the window shows when DRAM is not reached.
    let compat = |ram: u64, otherwise: Visibility| -> Visibility {
        let dram = match kind {
            AccessKind::Fetch => cfg.open() || smm,
            _ => cfg.open() || (smm && !cfg.d_cls),
        };
        if dram {
            Visibility::Ram(ram)
        } else {
            otherwise
        }
    };
    if AB_SEG.contains(&addr) {
        return if cfg.g_smrame && !cfg.h_smrame { compat(addr, Visibility::VgaWindow) } else { Visibility::VgaWindow };
    }
    if cfg.default_smbase && DEFAULT_SMBASE_WINDOW.contains(&addr) {
        return if smm { Visibility::Ram(addr) } else { Visibility::Hole };
    }
    if !cfg.g_smrame {
        return Visibility::Normal;
    }
    if HSEG.contains(&addr) {
        return if cfg.h_smrame { compat(addr - HSEG.start + AB_SEG.start, Visibility::Normal) } else { Visibility::Normal };
    }
    if let Some(t) = cfg.tseg() {
        if t.contains(&addr) {
            return if smm { Visibility::Ram(addr) } else { Visibility::Hole };
        }
    }
    Visibility::Normal
}

/// Whether [`route`] can answer anything but [`Visibility::Normal`] at `addr` (a cheap
/// pre-check): the A/B segment always, HSEG and TSEG while SMRAM is enabled, the default
/// SMBASE window once locked.
#[inline]
pub fn covers(cfg: &SmramConfig, addr: u64) -> bool {
    AB_SEG.contains(&addr) || (cfg.default_smbase && DEFAULT_SMBASE_WINDOW.contains(&addr)) || (cfg.g_smrame && (HSEG.contains(&addr) || cfg.tseg().is_some_and(|t| t.contains(&addr))))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOW_TOP: u64 = 128 << 20;
    const TSEG_SIZE: u64 = 1 << 20;

    fn cfg(bits: u8) -> SmramConfig {
        SmramConfig {
            d_open: bits & 1 != 0,
            d_cls: bits & 2 != 0,
            d_lck: bits & 4 != 0,
            g_smrame: bits & 8 != 0,
            h_smrame: bits & 16 != 0,
            t_en: bits & 32 != 0,
            tseg_size: TSEG_SIZE,
            low_ram_top: LOW_TOP,
            default_smbase: false,
        }
    }

    #[test]
    fn the_default_smbase_window_is_ram_until_locked_then_smram() {
        let open = SmramConfig::default();
        let locked = SmramConfig { default_smbase: true, ..open };
        for kind in [AccessKind::Fetch, AccessKind::Read, AccessKind::Write] {
            for addr in [0x3_0000u64, 0x3_8000, 0x4_ffff] {
                assert_eq!(route(&open, addr, kind, false), Visibility::Normal);
                assert_eq!(route(&locked, addr, kind, false), Visibility::Hole, "{addr:#x}");
                assert_eq!(route(&locked, addr, kind, true), Visibility::Ram(addr));
                assert!(covers(&locked, addr) && !covers(&open, addr));
            }
            assert_eq!(route(&locked, 0x2_ffff, kind, false), Visibility::Normal);
            assert_eq!(route(&locked, 0x5_0000, kind, false), Visibility::Normal);
        }
    }

    /// What a fetch and a data access see in the compatible SMRAM window that is active
    /// (A/B when H_SMRAME = 0, HSEG when H_SMRAME = 1).
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum See {
        Dram,
        Normal,
    }
    use See::{Dram, Normal as Pci};

    /// The decode table for compatible SMRAM: G_SMRAME, D_LCK, D_OPEN, D_CLS, SMM -> (code,
    /// data); `None` is "any". Rows after the 440FX/440BX datasheet table, D_LCK forcing
    /// D_OPEN off, and D_OPEN winning over D_CLS (the datasheets call D_OPEN with D_CLS
    /// invalid; smmlab opens SMRAM for both).
    #[allow(clippy::type_complexity)]
    const COMPAT_TABLE: &[([Option<bool>; 5], (See, See))] = &[
        // G      D_LCK        D_OPEN       D_CLS        SMM
        ([Some(false), None, None, None, None], (Pci, Pci)),
        ([Some(true), Some(false), Some(true), None, None], (Dram, Dram)),
        ([Some(true), None, Some(false), Some(false), Some(true)], (Dram, Dram)),
        ([Some(true), None, Some(false), Some(true), Some(true)], (Dram, Pci)),
        ([Some(true), None, Some(false), None, Some(false)], (Pci, Pci)),
        ([Some(true), Some(true), Some(true), Some(false), Some(true)], (Dram, Dram)),
        ([Some(true), Some(true), Some(true), Some(true), Some(true)], (Dram, Pci)),
        ([Some(true), Some(true), Some(true), None, Some(false)], (Pci, Pci)),
    ];

    fn table_lookup(c: &SmramConfig, smm: bool) -> (See, See) {
        let key = [c.g_smrame, c.d_lck, c.d_open, c.d_cls, smm];
        let rows: Vec<_> = COMPAT_TABLE
            .iter()
            .filter(|(pat, _)| pat.iter().zip(key).all(|(p, k)| p.is_none_or(|p| p == k)))
            .collect();
        assert_eq!(rows.len(), 1, "the table must have exactly one row for {key:?}");
        rows[0].1
    }

    fn see(v: Visibility, ram: u64) -> See {
        match v {
            Visibility::Ram(o) => {
                assert_eq!(o, ram);
                Dram
            }
            Visibility::Normal | Visibility::VgaWindow => Pci,
            Visibility::Hole => panic!("compatible SMRAM is never a hole"),
        }
    }

    #[test]
    fn every_register_combination_matches_the_decode_table() {
        for bits in 0..64u8 {
            let c = cfg(bits);
            for smm in [false, true] {
                let (code, data) = table_lookup(&c, smm);
                for (addr, ram) in [(0xa_0000, 0xa_0000), (0xb_fffc, 0xb_fffc), (0xfeda_0000, 0xa_0000), (0xfedb_f000, 0xb_f000)] {
                    let active = AB_SEG.contains(&addr) != c.h_smrame;
                    let ctx = format!("bits {bits:06b} smm {smm} addr {addr:#x}");
                    let (fetch, read, write) = (
                        route(&c, addr, AccessKind::Fetch, smm),
                        route(&c, addr, AccessKind::Read, smm),
                        route(&c, addr, AccessKind::Write, smm),
                    );
                    // What the window shows when it does not reach DRAM: the PCI/VGA side in
                    // the A/B segment, the normal decoding at HSEG.
                    let other = if AB_SEG.contains(&addr) { Visibility::VgaWindow } else { Visibility::Normal };
                    if active {
                        assert_eq!(see(fetch, ram), code, "{ctx}");
                        assert_eq!(see(read, ram), data, "{ctx}");
                        assert_eq!(see(write, ram), data, "{ctx}");
                        for v in [fetch, read, write] {
                            assert!(matches!(v, Visibility::Ram(_)) || v == other, "{ctx}: {v:?}");
                        }
                    } else {
                        assert_eq!((fetch, read, write), (other, other, other), "{ctx}");
                    }
                }
                // TSEG: RAM in SMM, a hole outside, when T_EN and G_SMRAME; D_OPEN never opens it.
                for addr in [LOW_TOP - TSEG_SIZE, LOW_TOP - 4] {
                    for kind in [AccessKind::Fetch, AccessKind::Read, AccessKind::Write] {
                        let want = match (c.t_en && c.g_smrame, smm) {
                            (false, _) => Visibility::Normal,
                            (true, true) => Visibility::Ram(addr),
                            (true, false) => Visibility::Hole,
                        };
                        assert_eq!(route(&c, addr, kind, smm), want, "bits {bits:06b} smm {smm} {addr:#x} {kind:?}");
                    }
                }
                // Just outside the windows nothing is SMRAM.
                for addr in [0x9_fffc, 0xc_0000, 0xfed9_f000, 0xfedc_0000, LOW_TOP - TSEG_SIZE - 4, LOW_TOP] {
                    assert_eq!(route(&c, addr, AccessKind::Read, smm), Visibility::Normal, "{addr:#x}");
                }
            }
        }
    }

    #[test]
    fn d_cls_sends_smm_data_to_the_vga_hole_but_code_to_dram() {
        let c = SmramConfig { g_smrame: true, d_cls: true, ..Default::default() };
        assert_eq!(route(&c, 0xa_8000, AccessKind::Fetch, true), Visibility::Ram(0xa_8000));
        assert_eq!(route(&c, 0xa_8000, AccessKind::Read, true), Visibility::VgaWindow);
    }

    /// MCH datasheet 316966 / 440FX datasheet 290549, SMRAM D_CLS: with D_CLS = 1 an SMM data
    /// access to the A/B segment reaches what an access from outside SMM reaches there (the
    /// PCI/VGA side, the VGA text buffer at 0xB8000 included), while SMM code still comes
    /// from DRAM. The same holds whenever compatible SMRAM is off.
    #[test]
    fn smm_data_under_d_cls_sees_what_a_non_smm_access_sees() {
        for bits in 0..64u8 {
            let c = cfg(bits);
            if c.open() {
                continue;
            }
            for addr in [0xa_0000, 0xb_8000, 0xb_8f9e, 0xb_fffc] {
                let outside = route(&c, addr, AccessKind::Read, false);
                assert_eq!(outside, Visibility::VgaWindow, "bits {bits:06b} {addr:#x}");
                if c.d_cls || !c.g_smrame || c.h_smrame {
                    for kind in [AccessKind::Read, AccessKind::Write] {
                        assert_eq!(route(&c, addr, kind, true), outside, "bits {bits:06b} {addr:#x} {kind:?}");
                    }
                }
                if c.g_smrame && !c.h_smrame {
                    assert_eq!(route(&c, addr, AccessKind::Fetch, true), Visibility::Ram(addr), "bits {bits:06b} {addr:#x}");
                }
            }
        }
    }

    #[test]
    fn tseg_is_a_hole_outside_smm_even_when_open() {
        let c = SmramConfig { g_smrame: true, d_open: true, t_en: true, tseg_size: 8 << 20, low_ram_top: 256 << 20, ..Default::default() };
        assert_eq!(route(&c, (256 << 20) - 8, AccessKind::Read, false), Visibility::Hole);
        assert_eq!(route(&c, (248 << 20) - 8, AccessKind::Read, false), Visibility::Normal);
    }

    #[test]
    fn an_oversized_tseg_is_disabled_not_a_panic() {
        let c = SmramConfig { g_smrame: true, t_en: true, tseg_size: 1 << 30, low_ram_top: 1 << 20, ..Default::default() };
        assert_eq!(c.tseg(), None);
        assert_eq!(route(&c, 0x1000, AccessKind::Read, false), Visibility::Normal);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn smram_bytes(c: &SmramConfig) -> Vec<Range<u64>> {
            let mut v = vec![AB_SEG];
            if let Some(t) = c.tseg() {
                v.push(t);
            }
            v
        }

        proptest! {
            /// No access from outside SMM reaches SMRAM DRAM once SMRAM is closed or locked.
            #[test]
            fn closed_or_locked_smram_is_unreachable_outside_smm(
                bits in 0u8..64,
                addr in prop_oneof![0x9_0000u64..0xd_0000, 0xfed9_0000u64..0xfedd_0000, (LOW_TOP - 3 * TSEG_SIZE)..(LOW_TOP + 0x1000)],
                kind in prop_oneof![Just(AccessKind::Fetch), Just(AccessKind::Read), Just(AccessKind::Write)],
            ) {
                let c = cfg(bits);
                prop_assume!(!c.d_open || c.d_lck);
                let smram = smram_bytes(&c);
                if let Visibility::Ram(o) = route(&c, addr, kind, false) {
                    // Only the normal decoding may reach RAM; SMRAM offsets never.
                    prop_assert!(!smram.iter().any(|r| r.contains(&o)), "{addr:#x} -> {o:#x}");
                }
            }
        }
    }
}
