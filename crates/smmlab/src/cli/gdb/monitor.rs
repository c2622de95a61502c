//! gdb's `monitor` commands: SMM state, raising an SMI, breaking on every SMI, the memory view,
//! the SMM inventory and the SMI timeline.

use super::target::{GdbTarget, View};
use gdbstub::outputln;
use gdbstub::target::ext::monitor_cmd::{ConsoleOutput, MonitorCmd};

const HELP: &str = "monitor commands:
  smm                    SMM state: in SMM, SMBASE, the SMI count, where the CPU is
  smi [CMD [DATA]]       raise a software SMI as the OS does: DATA to APM_STS (0xB3), CMD to
                         APM_CNT (0xB2) (default 0 0); the CPU takes it at its next instruction
  break-on-smi [on|off]  stop at the first instruction of every SMI (SMBASE+0x8000)
  break-on-rsm [on|off]  stop after every RSM, where the interrupted program goes on
  view [smram|normal|cpu]  memory as a CPU in SMM sees it, as one outside SMM sees it (SMRAM
                         hidden), or as the CPU sees it now (the default)
  inventory              the SMM modules, SMI handlers and protocols in SMRAM (edk2 firmware)
  timeline               the SMIs so far, one line each, as `smmlab run` prints them
  help";

/// A byte given as 0x-hex or decimal.
fn byte(arg: &str) -> Option<u8> {
    match arg.strip_prefix("0x").or_else(|| arg.strip_prefix("0X")) {
        Some(h) => u8::from_str_radix(h, 16).ok(),
        None => arg.parse().ok(),
    }
}

fn on_off(arg: Option<&str>) -> Result<Option<bool>, String> {
    match arg {
        None => Ok(None),
        Some("on") => Ok(Some(true)),
        Some("off") => Ok(Some(false)),
        Some(other) => Err(format!("expected on or off, not {other:?}")),
    }
}

impl MonitorCmd for GdbTarget<'_> {
    fn handle_monitor_cmd(&mut self, cmd: &[u8], mut out: ConsoleOutput<'_>) -> Result<(), Self::Error> {
        let text = String::from_utf8_lossy(cmd);
        let mut words = text.split_whitespace();
        let name = words.next().unwrap_or("help");
        let args: Vec<&str> = words.collect();
        let reply = match (name, args.as_slice()) {
            ("smm", []) => Ok(self.smm_state()),
            ("smi", _) if args.len() <= 2 => self.smi(&args),
            ("break-on-smi", [] | [_]) => on_off(args.first().copied()).map(|on| {
                self.break_on_smi = on.unwrap_or(self.break_on_smi);
                format!("break-on-smi: {}", if self.break_on_smi { "on (continue stops at the first instruction of every SMI)" } else { "off" })
            }),
            ("break-on-rsm", [] | [_]) => on_off(args.first().copied()).map(|on| {
                self.break_on_rsm = on.unwrap_or(self.break_on_rsm);
                format!("break-on-rsm: {}", if self.break_on_rsm { "on (continue stops after every RSM)" } else { "off" })
            }),
            ("view", [] | [_]) => self.set_view(args.first().copied()),
            ("inventory", []) => Ok(self.inventory()),
            ("timeline", []) => Ok(self.timeline()),
            ("help", _) => Ok(HELP.to_string()),
            _ => Err(format!("unknown monitor command {:?}\n{HELP}", text.trim())),
        };
        match reply {
            Ok(s) => outputln!(out, "{}", s.trim_end()),
            Err(e) => outputln!(out, "error: {e}"),
        }
        Ok(())
    }
}

impl GdbTarget<'_> {
    fn smm_state(&self) -> String {
        let v = self.m.cpu_view();
        let latched = if v.smi_latched { " (one latched, waiting for RSM)" } else { "" };
        format!(
            "in SMM: {}\nSMBASE: {:#x} (SMI entry at {:#x})\nSMIs: {}{latched}\nCPU: {:#06x}:{:#x}, {} mode, {} instructions retired",
            if v.in_smm { "yes" } else { "no" },
            v.smbase,
            v.smbase as u64 + 0x8000,
            v.smi_count,
            v.cs,
            v.rip,
            v.mode,
            self.m.icount()
        )
    }

    fn smi(&mut self, args: &[&str]) -> Result<String, String> {
        let parse = |i: usize| args.get(i).map_or(Some(0), |a| byte(a)).ok_or_else(|| format!("{:?} is not a byte (0-255 or 0x00-0xff)", args[i]));
        let (cmd, data) = (parse(0)?, parse(1)?);
        let in_smm = self.m.cpu_view().in_smm;
        let pending = self.m.apm_write(cmd, data);
        // A replay would not redo the write: reverse stepping starts here now.
        self.mark_history();
        if !pending {
            return Ok(format!("APM_CNT written with {cmd:#04x}; no SMI is pending (the chipset's APM SMI is not enabled yet?)"));
        }
        Ok(match in_smm {
            true => format!("SW SMI {cmd:#04x} raised (APM_CNT write); the CPU is in SMM, so it stays latched until RSM"),
            false => format!("SW SMI {cmd:#04x} raised (APM_CNT write, APM_STS {data:#04x}); the CPU enters SMM at its next instruction: stepi stops at the entry"),
        })
    }

    fn set_view(&mut self, arg: Option<&str>) -> Result<String, String> {
        self.view = match arg {
            None => self.view,
            Some("smram" | "smm") => View::Smram,
            Some("normal") => View::Normal,
            Some("cpu") => View::Cpu,
            Some(other) => return Err(format!("expected smram, normal or cpu, not {other:?}")),
        };
        Ok(match self.view {
            View::Smram => "view: smram (memory as a CPU in SMM sees it)",
            View::Normal => "view: normal (memory as a CPU outside SMM sees it: SMRAM hidden by the chipset)",
            View::Cpu => "view: cpu (memory as the CPU sees it now)",
        }
        .to_string())
    }

    /// `smmlab smm inventory`'s reading of SMRAM, as SMRAM holds it now (the registration
    /// history that command collects over the whole run is not kept here).
    fn inventory(&mut self) -> String {
        if audit::dump::ranges(self.m).is_empty() {
            return "inventory unavailable: the machine has no SMRAM decoded now (the minimal board, or before the firmware enables SMRAM)".into();
        }
        let fw = audit::uefi::firmware_volumes(self.m);
        let inv = uefi_smm::Inventory::build(&audit::dump::snapshot(self.m), fw.as_ref());
        let mut text = inv.render();
        if inv.modules.is_empty() && inv.handlers.is_empty() {
            text.push_str("\nno edk2 SMM core in SMRAM: inventory unavailable for this firmware (the built-in firmware's SMI handlers are its dispatcher's, firmware/src/smm; see docs/builtin-platform.md)\n");
        }
        text
    }

    fn timeline(&self) -> String {
        let t = &self.timeline;
        let mut lines: Vec<String> = t.records().iter().filter(|r| r.finished()).map(|r| t.format(r)).collect();
        if lines.is_empty() {
            lines.push("no SMI has returned yet".into());
        }
        let v = self.m.cpu_view();
        if v.in_smm {
            lines.push(format!("SMI {} is running now (SMBASE {:#x})", v.smi_count, v.smbase));
        }
        lines.join("\n")
    }
}
