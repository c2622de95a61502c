//! The save-area field that describes the I/O instruction behind a synchronous SMI: Intel's
//! IOMisc (SDM vol. 3C, table 34-7) and AMD's I/O trap dword (APM vol. 2, 10.2.4).

use super::io_restart::IoRecord;
use super::savestate::MapKind;

/// The IOMisc (Intel, P6) or I/O trap dword (AMD) value for the I/O instruction `r`.
pub(super) fn io_info(map: MapKind, r: &IoRecord) -> u64 {
    match map {
        // IOMisc (SDM table 34-7): SMI flag, length, type, port.
        MapKind::Intel64 | MapKind::Legacy32 => {
            let typ: u64 = match (r.string, r.rep, r.input, r.imm) {
                (false, _, false, false) => 0,
                (false, _, true, false) => 1,
                (true, false, false, _) => 2,
                (true, false, true, _) => 3,
                (true, true, false, _) => 6,
                (true, true, true, _) => 7,
                (false, _, false, true) => 8,
                (false, _, true, true) => 9,
            };
            1 | ((r.size as u64) << 1) | (typ << 4) | ((r.port as u64) << 16)
        }
        // AMD I/O trap dword (APM vol. 2, 10.2.4): RW 0, V 1, STR 2, REP 3, SZ8/16/32 4-6.
        MapKind::Amd64 => {
            let sz = match r.size {
                1 => 1 << 4,
                2 => 1 << 5,
                _ => 1 << 6,
            };
            (r.input as u64) | 2 | ((r.string as u64) << 2) | ((r.rep as u64) << 3) | sz | ((r.port as u64) << 16)
        }
    }
}
