//! The instruction behind a finding: the observer names the address of the instruction that
//! made each SMM access ([`machine::board::observer::SmmAccess::rip`]); this decodes it (iced-x86)
//! as SMM sees the code, for the reports.

use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};
use machine::Machine;

/// The 64-bit instruction at `rip`, as text ("mov qword ptr [rax],rdx"); None for 0 or bytes
/// that do not decode.
pub fn text(m: &mut Machine, rip: u64) -> Option<String> {
    if rip == 0 {
        return None;
    }
    let bytes = m.read_phys(rip, 15, true);
    let i = Decoder::with_ip(64, &bytes, rip, DecoderOptions::NONE).decode();
    if i.is_invalid() {
        return None;
    }
    let mut s = String::new();
    IntelFormatter::new().format(&i, &mut s);
    Some(s)
}

/// "by `mov qword ptr [rax],rdx` at Module+0x1034", naming the address with `map`.
pub fn by(m: &mut Machine, map: &uefi_smm::images::ModuleMap, rip: u64) -> String {
    match text(m, rip) {
        Some(t) => format!(" by `{t}` at {}", map.name(rip)),
        None => String::new(),
    }
}
