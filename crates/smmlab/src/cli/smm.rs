//! `smmlab smm inventory`: boot firmware (as `smmlab run` does), then read out of SMRAM what
//! edk2's SMM core holds: the modules it loaded, the SMI handlers registered with it and the SMM
//! protocol database, every address named `Module+0xRVA` (crates/uefi).

use super::run::{self, RunArgs};
use anyhow::Context;
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct SmmArgs {
    #[command(subcommand)]
    pub command: SmmCommand,
}

#[derive(Subcommand)]
pub enum SmmCommand {
    /// Boot the firmware, then list the modules in SMRAM, the SMI handlers and the SMM
    /// protocols edk2's SMM core has registered, as the machine is when the run ends (use
    /// --stop-on-serial to end it where the OS would start: `--ovmf --stop-on-serial Shell>`).
    Inventory(InventoryArgs),
}

#[derive(Args)]
pub struct InventoryArgs {
    /// Write the inventory as JSON to FILE ('-': stdout, instead of the text).
    #[arg(long, value_name = "FILE")]
    pub json: Option<String>,
    #[command(flatten)]
    pub run: RunArgs,
}

pub fn run(a: SmmArgs) -> anyhow::Result<i32> {
    match a.command {
        SmmCommand::Inventory(i) => inventory(i),
    }
}

fn inventory(a: InventoryArgs) -> anyhow::Result<i32> {
    let InventoryArgs { json, mut run } = a;
    if let Some(p) = json.as_deref().filter(|p| *p != "-") {
        super::check_output("--json", std::path::Path::new(p))?;
    }
    // The inventory is the output: no timeline or summary around it.
    run.quiet = true;
    let bios = run.bios.clone();
    // After every RSM: a look at the core's handler lists, to date each registration.
    let tracker = std::rc::Rc::new(std::cell::RefCell::new(uefi_smm::registrations::Tracker::default()));
    // The SMST's services, once the table exists: breakpoints at their entries.
    let watch = std::rc::Rc::new(std::cell::RefCell::new(Watch::default()));
    let on_rsm = {
        let tracker = tracker.clone();
        let watch = watch.clone();
        Box::new(move |m: &mut machine::Machine| {
            let smi = m.cpu_view().smi_count;
            let mut w = watch.borrow_mut();
            if w.stopped_at_a_service(m, smi) || w.stopped_at_a_handler(m, smi) {
                return;
            }
            w.rsm(m, smi);
            let mut t = tracker.borrow_mut();
            // Until the SMST and the handler lists are found, a snapshot now and then (they
            // appear with the core), one for both.
            if (w.services.is_none() || t.needs_snapshot()) && (smi <= 4 || smi.is_power_of_two() || smi.is_multiple_of(16)) {
                let smram = set_up_snapshot(m);
                if w.services.is_none() {
                    if let Some(svc) = uefi_smm::smst::Services::find(&smram) {
                        w.services = Some(svc);
                        w.arm(m);
                    }
                }
                if t.needs_snapshot() {
                    t.locate(&smram);
                }
            }
            let ns = m.guest_ns();
            t.look(&module_runner::services::LiveMemory::new(m), uefi_smm::registrations::Moment { smi, ns });
            let handlers: Vec<u64> = t.registrations().iter().map(|r| r.handler.handler).collect();
            if handlers != w.handlers {
                w.handlers = handlers;
                w.arm(m);
            }
        }) as super::observe::OnRsm
    };
    let after: run::AfterRun = Box::new(move |m| {
        // Names come from the firmware's own volumes: flash unit 0, or the --bios ROM.
        let fw = match (audit::uefi::firmware_volumes(m), &bios) {
            (Some(fw), _) => Some(fw),
            (None, Some(p)) => fwimage::parse(&std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?).ok(),
            (None, None) => None,
        };
        anyhow::ensure!(!audit::dump::ranges(m).is_empty(), "the machine has no SMRAM decoded when the run ends (pc or q35, with SMRAM enabled)");
        let mut inv = uefi_smm::Inventory::build(&audit::dump::snapshot(m), fw.as_ref());
        inv.add_registrations(&tracker.borrow());
        inv.add_calls(&watch.borrow().calls, fw.as_ref());
        inv.add_latency(&watch.borrow().samples, m.config.instructions_per_second);
        match json.as_deref() {
            Some("-") => println!("{}", serde_json::to_string_pretty(&inv)?),
            Some(p) => {
                std::fs::write(p, serde_json::to_string_pretty(&inv)? + "\n").with_context(|| format!("cannot write {p}"))?;
                print!("{}", inv.render());
            }
            None => print!("{}", inv.render()),
        }
        Ok(())
    });
    run::run_with(run, run::Hooks { on_rsm: Some(on_rsm), after: Some(after), ..Default::default() })
}

/// The watch on the SMST's services, the child dispatchers' Register functions and the
/// handlers on the core's lists.
#[derive(Default)]
struct Watch {
    services: Option<uefi_smm::smst::Services>,
    /// Register functions of installed child dispatch protocols.
    dispatchers: Vec<(u64, uefi_smm::smst::Dispatch)>,
    calls: Vec<uefi_smm::smst::Call>,
    /// The handlers registered so far (their first instructions).
    handlers: Vec<u64>,
    /// Handlers the SMI in progress entered: (SMI, handler).
    entered: Vec<(u64, u64)>,
    /// One per SMI and handler it entered: the SMI's instructions in SMM.
    samples: Vec<uefi_smm::handler_latency::Sample>,
}

impl Watch {
    /// Sets the machine's breakpoints to every entry watched.
    fn arm(&self, m: &mut machine::Machine) {
        let mut at: Vec<u64> = self.services.map(|s| s.entries.map(|e| e.1).to_vec()).unwrap_or_default();
        at.extend(self.dispatchers.iter().map(|d| d.0));
        at.extend(&self.handlers);
        m.set_breakpoints(&at);
    }

    /// If the CPU stopped at a handler's first instruction, notes that this SMI entered it.
    fn stopped_at_a_handler(&mut self, m: &mut machine::Machine, smi: u64) -> bool {
        let rip = m.registers().1;
        let hit = m.cpu_view().in_smm && self.handlers.contains(&rip);
        if hit && !self.entered.contains(&(smi, rip)) {
            self.entered.push((smi, rip));
        }
        hit
    }

    /// At RSM of SMI `smi`: one sample per handler it entered, its instructions in SMM from
    /// entry to RSM.
    fn rsm(&mut self, m: &mut machine::Machine, smi: u64) {
        let instructions = m.icount().saturating_sub(m.smm_registers().entry_icount);
        for (s, h) in self.entered.drain(..) {
            if s == smi {
                self.samples.push(uefi_smm::handler_latency::Sample { handler: h, instructions });
            }
        }
    }

    /// If the CPU stopped at a watched entry, records the call (and, for a child dispatch
    /// protocol being installed, starts watching its Register function).
    fn stopped_at_a_service(&mut self, m: &mut machine::Machine, smi: u64) -> bool {
        let (regs, rip) = m.registers();
        if let Some(&(_, kind)) = self.dispatchers.iter().find(|d| d.0 == rip) {
            let mut call = uefi_smm::smst::dispatch_call(&module_runner::services::LiveMemory::new(m), kind, &regs, smi);
            call.image = caller_image(m, call.caller);
            self.calls.push(call);
            return true;
        }
        let Some(service) = self.services.and_then(|s| s.at(rip)) else { return false };
        let mut call = uefi_smm::smst::call(&module_runner::services::LiveMemory::new(m), service, &regs, smi);
        call.image = caller_image(m, call.caller);
        // InstallProtocolInterface(Handle*, Protocol*, InterfaceType, Interface): R9 is the
        // interface, whose first member is Register.
        let dispatch = (service == uefi_smm::smst::Service::InstallProtocol).then(|| call.guid.as_deref().and_then(uefi_smm::smst::Dispatch::of)).flatten();
        self.calls.push(call);
        if let Some(kind) = dispatch {
            let register = m.read_phys(regs[9], 8, true);
            let register = u64::from_le_bytes(register.try_into().unwrap_or([0; 8]));
            if register != 0 {
                self.dispatchers.push((register, kind));
                self.arm(m);
            }
        }
        true
    }
}

/// The image the return address `caller` is in, now, read as SMM sees memory.
fn caller_image(m: &mut machine::Machine, caller: u64) -> Option<(u64, Vec<u8>)> {
    uefi_smm::images::enclosing(caller, &mut |a, n| m.read_phys(a, n, true))
}

/// SMRAM, and TSEG even while the firmware has it open (T_EN cleared): the SMM IPL loads the
/// core there and the core registers its first handlers before TSEG closes.
fn set_up_snapshot(m: &mut machine::Machine) -> uefi_smm::Smram {
    let mut ranges = audit::dump::ranges(m);
    if let Some(c) = m.board.smram_config() {
        if c.tseg_size != 0 && c.tseg_size <= c.low_ram_top {
            let t = c.low_ram_top - c.tseg_size..c.low_ram_top;
            if !ranges.contains(&t) {
                ranges.push(t);
            }
        }
    }
    audit::dump::snapshot_of(m, &ranges)
}

