//! Booting to the hand-off point.
//!
//! The hand-off is the end of the first debugcon line that marks it:
//! - the built-in firmware: `fw: handing off to the OS` (every lock is set by then, and the
//!   demo OS has not run a single instruction);
//! - SeaBIOS: `Booting from ...` (the first INT 19h boot attempt) or `No bootable device`
//!   (the boot failure, when nothing is bootable);
//! - otherwise the run ended first (halt, reset, shutdown, debug exit, the instruction limit):
//!   [`Booted::marker`] is false and [`Booted::stopped`] says where. `smmlab audit` refuses
//!   such a target (a firmware that never boots has no configuration to judge);
//!   `smram dump` and `disasm` take the state as the run left it.
//!
//! The run pauses at every debugcon line end (`Board::set_pause_on_debugcon_line`), so the
//! machine stops exactly after the marker's newline.

use crate::AuditError;
use cpu::CpuModel;
use machine::{BoardKind, ExitReason, Machine, MachineConfig};

/// The markers, first match wins.
pub const MARKERS: &[&str] = &["fw: handing off to the OS", "Booting from ", "No bootable device"];

/// The hand-off of firmware booted from flash (UEFI): the UEFI Shell's prompt on the serial
/// port. By then DXE is done, SMRAM is locked and the boot manager has signalled ReadyToBoot.
pub const SERIAL_MARKER: &str = "Shell>";

/// What to boot.
#[derive(Clone, Debug)]
pub struct BootOptions {
    /// The board.
    pub board: BoardKind,
    /// The CPU model.
    pub model: CpuModel,
    /// None: the built-in firmware.
    pub rom: Option<Vec<u8>>,
    /// A built-in firmware scenario (`default` or a planted bug).
    pub scenario: Option<String>,
    /// Guest RAM in MiB.
    pub memory_mib: u64,
    /// Instructions the boot may take to reach its hand-off point.
    pub max_instructions: u64,
    /// Flash units to boot from (UEFI) instead of a ROM: the hand-off is [`SERIAL_MARKER`].
    pub pflash: Vec<machine::devices::pflash_bank::PflashImage>,
    /// Whether only SMM may program the flash.
    pub pflash_secure: bool,
}

/// A machine stopped at its hand-off point.
pub struct Booted {
    /// The machine, stopped.
    pub machine: Machine,
    /// The marker line, or `end of run (<reason>)`.
    pub handoff: String,
    /// Whether a marker was reached (false: the run ended first).
    pub marker: bool,
    /// Where the run was when it stopped: the exit reason, the instruction count, CS:RIP and
    /// mode, and the last debugcon line.
    pub stopped: String,
}

/// Boots to the hand-off point.
pub fn boot(o: &BootOptions) -> Result<Booted, AuditError> {
    if o.board == BoardKind::Minimal {
        return Err(AuditError::Usage("the minimal machine has no chipset to audit (use pc or q35)".into()));
    }
    let flash = !o.pflash.is_empty();
    let builtin = o.rom.is_none() && !flash;
    if builtin {
        firmware_image::check_memory(o.memory_mib).map_err(AuditError::Usage)?;
    }
    let rom = match (&o.rom, flash) {
        (Some(r), _) => r.clone(),
        // The flash replaces the ROM.
        (None, true) => Vec::new(),
        (None, false) => firmware_image::ROM.to_vec(),
    };
    let config = MachineConfig { memory_mib: o.memory_mib, model: o.model, instructions_per_second: 1_000_000_000, ..Default::default() };
    let mut m = Machine::new(o.board, config, rom).map_err(AuditError::Machine)?;
    if builtin {
        m.enable_lab_hardware();
    }
    if flash {
        m.attach_pflash(o.pflash.clone(), o.pflash_secure).map_err(AuditError::Machine)?;
        watch_serial_handoff(&mut m);
    }
    if let Some(name) = &o.scenario {
        if !builtin {
            return Err(AuditError::Usage("--scenario applies to the built-in firmware only".into()));
        }
        apply_scenario(&mut m, name)?;
    }
    if let Some(ev) = m.board.events() {
        ev.recording = false;
    }
    m.board.set_pause_on_debugcon_line(true);
    let mut scanned = 0usize;
    let start = m.icount();
    loop {
        let left = o.max_instructions.saturating_sub(m.icount() - start);
        let s = m.run(left);
        let out = &m.board.debugcon().output;
        if let Some(line) = find_marker(out, &mut scanned) {
            m.board.set_pause_on_debugcon_line(false);
            let stopped = stopped_at(&mut m, &format!("at the hand-off marker {line:?}"));
            return Ok(Booted { machine: m, handoff: line, marker: true, stopped });
        }
        if s.exit == ExitReason::SerialText {
            // The marker has done its work: the checks run the machine on.
            if let Some(u) = m.board.legacy().and_then(|l| l.com1.as_mut()) {
                u.stop_text.clear();
                u.stop_text_seen = false;
            }
            let stopped = stopped_at(&mut m, &format!("at the serial hand-off marker {SERIAL_MARKER:?}"));
            return Ok(Booted { machine: m, handoff: format!("serial {SERIAL_MARKER:?}"), marker: true, stopped });
        }
        if s.exit != ExitReason::Paused {
            m.board.set_pause_on_debugcon_line(false);
            let why = match s.exit.detail() {
                Some(d) => format!("{}: {d}", s.exit.name()),
                None => s.exit.name().to_string(),
            };
            let stopped = stopped_at(&mut m, &format!("with {why}"));
            return Ok(Booted { machine: m, handoff: format!("end of run ({why})"), marker: false, stopped });
        }
    }
}

/// Connects COM1 so that the run stops (exit reason serial-text) at [`SERIAL_MARKER`]: the
/// hand-off of firmware booted from flash.
pub fn watch_serial_handoff(m: &mut Machine) {
    let mut com1 = machine::devices::uart16550::Uart16550::default();
    com1.stop_text = SERIAL_MARKER.as_bytes().to_vec();
    if let Some(l) = m.board.legacy() {
        l.com1 = Some(com1);
    }
}

/// Where the machine is: "the run ended {how} after N instructions at CS:RIP (mode mode, in
/// SMM); last debugcon line: ...".
fn stopped_at(m: &mut Machine, how: &str) -> String {
    let text = String::from_utf8_lossy(&m.board.debugcon().output).into_owned();
    let last = text.lines().rev().find(|l| !l.trim().is_empty());
    let c = m.cpu_view();
    format!(
        "the run ended {how} after {} instructions at {:04x}:{:#x} ({} mode{}); {}",
        m.icount(),
        c.cs,
        c.rip,
        c.mode,
        if c.in_smm { ", in SMM" } else { "" },
        match last {
            Some(l) => format!("last debugcon line: {:?}", l.trim_end()),
            None => "nothing was written to debugcon".to_string(),
        }
    )
}

/// Puts scenario `name` in fw_cfg for the built-in firmware.
pub fn apply_scenario(m: &mut Machine, name: &str) -> Result<(), AuditError> {
    let Some(s) = firmware_image::scenarios::find(name) else {
        let all: Vec<&str> = firmware_image::scenarios::SCENARIOS.iter().map(|s| s.name).collect();
        return Err(AuditError::Usage(format!("unknown scenario {name:?} (known: {})", all.join(", "))));
    };
    if let Some(data) = firmware_image::scenarios::fw_cfg_contents(s.name) {
        match m.board.legacy() {
            Some(l) => l.fw_cfg.add_file(firmware_image::scenarios::FW_CFG_FILE, data),
            None => return Err(AuditError::Usage("scenarios need the pc or q35 machine (fw_cfg)".into())),
        }
    }
    Ok(())
}

/// The first complete debugcon line after byte `scanned` that holds a marker; advances
/// `scanned` past the complete lines looked at.
pub fn find_marker(out: &[u8], scanned: &mut usize) -> Option<String> {
    while let Some(nl) = out.get(*scanned..).and_then(|rest| rest.iter().position(|&b| b == b'\n')) {
        let line = String::from_utf8_lossy(&out[*scanned..*scanned + nl]).trim_end_matches('\r').to_string();
        *scanned += nl + 1;
        if MARKERS.iter().any(|mk| line.contains(mk)) {
            return Some(line);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_found_on_complete_lines_only() {
        let mut at = 0;
        assert_eq!(find_marker(b"fw: a\nfw: handing off to the O", &mut at), None);
        assert_eq!(at, 6);
        let out = b"fw: a\nfw: handing off to the OS\nos: x\n";
        assert_eq!(find_marker(out, &mut at).as_deref(), Some("fw: handing off to the OS"));
        assert_eq!(find_marker(out, &mut at), None);
        let mut at = 0;
        assert_eq!(find_marker(b"Booting from Hard Disk...\n", &mut at).as_deref(), Some("Booting from Hard Disk..."));
    }
}
