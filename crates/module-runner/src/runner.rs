//! The runner: one module loaded into the synthetic platform's SMRAM, its entry point run in
//! SMM, its handlers listed and called. This is what `smmlab module run`, `smmlab module call`
//! and `smmlab audit --module` drive.

use crate::efi;
use crate::layout::{self, COMM_BUFFER, MAILBOX, SMRAM_HEAP, TSEG_BASE, TSEG_SIZE};
use crate::loader;
use crate::platform::{self, Tables, RUNNER_SMI};
use crate::services::{self, Env, Service};
use fwimage::Guid;
use machine::host::{SmiRegisters, SwSmiOutcome};
use machine::Machine;
use serde::Serialize;

/// Instructions an entry point may take.
pub const ENTRY_BUDGET: u64 = 50_000_000;
/// Instructions one handler call may take.
pub const CALL_BUDGET: u64 = 50_000_000;

/// What kind of module: a DXE_SMM_DRIVER's entry gets (ImageHandle, EFI_SYSTEM_TABLE*), an
/// MM_STANDALONE driver's (ImageHandle, EFI_MM_SYSTEM_TABLE*).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModuleKind {
    /// FFS type SMM (0x0A) or COMBINED_SMM_DXE (0x0C).
    DxeSmmDriver,
    /// FFS type MM_STANDALONE (0x0E).
    MmStandalone,
}

/// A point of the boot's SMM lifecycle (what edk2's core announces with an SMM protocol).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// gEfiSmmEndOfDxeProtocolGuid: third-party code may run from now on.
    EndOfDxe,
    /// gEfiSmmReadyToLockProtocolGuid: SMRAM is locked, drivers lock their interfaces.
    ReadyToLock,
    /// gEdkiiSmmReadyToBootProtocolGuid: the OS loader is about to start.
    ReadyToBoot,
}

impl Phase {
    /// Every phase, in boot order.
    pub const ALL: [Phase; 3] = [Phase::EndOfDxe, Phase::ReadyToLock, Phase::ReadyToBoot];

    /// The protocol the core installs for it.
    pub fn guid(self) -> Guid {
        let s = match self {
            Phase::EndOfDxe => "24e70042-d5c5-4260-8c39-0ad3aa32e93d",
            Phase::ReadyToLock => "47b7fa8c-f4bd-4af6-8200-333086f0d2c8",
            Phase::ReadyToBoot => "6e057ecf-fa99-4f39-95bc-59f9921d17e4",
        };
        s.parse().expect("a GUID")
    }

    /// The phases up to and including `last`.
    pub fn through(last: Phase) -> Vec<Phase> {
        Phase::ALL.into_iter().filter(|p| *p <= last).collect()
    }
}

/// The module to run.
#[derive(Clone, Debug)]
pub struct Module {
    /// Its name (the UI section, or the file name).
    pub name: String,
    /// Its FFS file GUID, when it came from a firmware volume.
    pub guid: Option<Guid>,
    /// The PE32+ image.
    pub pe: Vec<u8>,
    /// How its entry point is called.
    pub kind: ModuleKind,
}

/// Why a module could not be run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The platform could not be built.
    #[error(transparent)]
    Platform(#[from] platform::PlatformError),
    /// The image could not be loaded.
    #[error("{name}: {source}")]
    Load {
        /// The module.
        name: String,
        /// Why.
        source: loader::LoadError,
    },
    /// SMRAM is full.
    #[error("{0}: the image does not fit in SMRAM")]
    NoRoom(String),
}

/// How a call into the module went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum CallResult {
    /// It returned this EFI_STATUS.
    Returned {
        /// RAX.
        status: u64,
        /// Its name.
        name: String,
        /// Instructions retired in SMM.
        instructions: u64,
    },
    /// The core refused the call before any handler ran (a buffer that overlaps SMRAM).
    Refused {
        /// Why.
        why: String,
    },
    /// The SMI did not come back: a fault, a hang, a triple fault.
    Fault {
        /// What happened.
        why: String,
    },
}

impl CallResult {
    /// The status, when it returned.
    pub fn status(&self) -> Option<u64> {
        match self {
            CallResult::Returned { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The module, loaded.
#[derive(Clone, Debug, Serialize)]
pub struct LoadedModule {
    /// Its name.
    pub name: String,
    /// Its FFS GUID.
    pub guid: Option<String>,
    /// How its entry point is called.
    pub kind: ModuleKind,
    /// Its base in SMRAM.
    pub base: u64,
    /// SizeOfImage.
    pub size: u64,
    /// The entry point.
    pub entry: u64,
    /// The image handle passed to the entry point.
    pub image_handle: u64,
    /// The PE Subsystem.
    pub subsystem: u16,
    /// Base relocations applied.
    pub relocations: usize,
}

/// A runner with one module.
pub struct Runner {
    /// The machine.
    pub machine: Machine,
    /// The host's services and what they recorded.
    pub env: Env,
    tables: Tables,
    /// The module.
    pub module: LoadedModule,
    /// How its entry point went (None before [`Runner::run_entry`]).
    pub entry_result: Option<CallResult>,
    /// The lifecycle events signalled so far ([`Runner::signal`]) and how each went.
    pub phases: Vec<(Phase, CallResult)>,
}

/// A runner's state at one point ([`Runner::snapshot`]): the machine's and the host's
/// services'.
pub struct RunnerSnapshot {
    machine: machine::host::Snapshot,
    env: Env,
    phases: usize,
}

impl Runner {
    /// Takes a snapshot of the machine ([`Machine::snapshot`]: CPU, devices, RAM by its
    /// dirty-page log) and of the host's services (heaps, protocol databases, registrations,
    /// the record of served calls), replacing the previous one.
    pub fn snapshot(&mut self) -> RunnerSnapshot {
        RunnerSnapshot { machine: self.machine.snapshot(), env: self.env.clone(), phases: self.phases.len() }
    }

    /// Goes back to `s`, the last snapshot taken (see [`Machine::restore`]); returns the RAM
    /// pages put back, None (nothing changed) when `s` is not the last one.
    pub fn restore(&mut self, s: &RunnerSnapshot) -> Option<usize> {
        let pages = self.machine.restore(&s.machine)?;
        self.env.clone_from(&s.env);
        self.phases.truncate(s.phases);
        Some(pages)
    }

    /// Builds the platform for `model` and loads `module` into SMRAM (not yet run).
    pub fn new(model: cpu::CpuModel, module: &Module) -> Result<Runner, RunError> {
        let (mut m, mut env, tables) = platform::build(model)?;
        let load_err = |source| RunError::Load { name: module.name.clone(), source };
        let size = loader::image_size(&module.pe).map_err(load_err)?;
        // As PiSmmCore places drivers: pages for the image, from the top of SMRAM.
        let pages = size.div_ceil(0x1000);
        let base = env.smram.pages(pages, 0x1000, None).ok_or_else(|| RunError::NoRoom(module.name.clone()))?;
        let img = loader::load(&module.pe, base).map_err(load_err)?;
        services::write(&mut m, base, &img.bytes);
        // EFI_LOADED_IMAGE_PROTOCOL (0x60 bytes) in both databases, ImageBase the SMRAM
        // address, code/data types 5/6 (Dispatcher.c): the DXE one on the ImageHandle.
        let mut li = vec![0u8; 0x60];
        li[0..4].copy_from_slice(&0x1000u32.to_le_bytes());
        li[0x10..0x18].copy_from_slice(&tables.system_table.to_le_bytes());
        li[0x40..0x48].copy_from_slice(&base.to_le_bytes());
        li[0x48..0x50].copy_from_slice(&size.to_le_bytes());
        li[0x50..0x54].copy_from_slice(&5u32.to_le_bytes());
        li[0x54..0x58].copy_from_slice(&6u32.to_le_bytes());
        let dxe_li = env.dxe.pool(0x60).expect("room");
        services::write(&mut m, dxe_li, &li);
        let image_handle = env.provide(false, efi::LOADED_IMAGE, dxe_li);
        let smm_li = env.smram.pool(0x60).expect("room");
        services::write(&mut m, smm_li, &li);
        env.provide(true, efi::LOADED_IMAGE, smm_li);
        let module = LoadedModule {
            name: module.name.clone(),
            guid: module.guid.map(|g| g.to_string()),
            kind: module.kind,
            base,
            size,
            entry: img.entry,
            image_handle,
            subsystem: img.subsystem,
            relocations: img.relocations,
        };
        Ok(Runner { machine: m, env, tables, module, entry_result: None, phases: Vec::new() })
    }

    /// Calls `func(args)` in SMM through the entry stub, serving the module's service calls.
    fn call(&mut self, cmd: u8, data: u8, regs: &SmiRegisters, func: u64, args: [u64; 4], budget: u64) -> CallResult {
        let mut mailbox = Vec::with_capacity(48);
        for v in [func, args[0], args[1], args[2], args[3], u64::MAX] {
            mailbox.extend_from_slice(&v.to_le_bytes());
        }
        services::unobserved(&mut self.machine, |m| services::write(m, MAILBOX, &mailbox));
        self.env.smis += 1;
        let env = &mut self.env;
        let r = self.machine.raise_sw_smi_with(cmd, data, regs, budget, &mut |m| env.serve(m));
        match r {
            SwSmiOutcome::Returned { instructions, .. } => {
                let status = services::unobserved(&mut self.machine, |m| services::read_u64(m, MAILBOX + 40));
                CallResult::Returned { status, name: efi::status_name(status), instructions }
            }
            SwSmiOutcome::NoSmi => CallResult::Fault { why: "the APM write raised no SMI".into() },
            SwSmiOutcome::Fault(why) => CallResult::Fault { why: self.name_addresses(why) },
        }
    }

    /// `why` with the module's addresses in it named `Module+0xRVA`.
    fn name_addresses(&self, why: String) -> String {
        let (b, e) = (self.module.base, self.module.base + self.module.size);
        let mut out = String::new();
        for w in why.split_inclusive([' ', ')', '(']) {
            let t = w.trim_end_matches([' ', ')', '(', ';', ',', ':']);
            let v = t.strip_prefix("0x").and_then(|h| u64::from_str_radix(h, 16).ok());
            match v {
                Some(a) if a >= b && a < e => out.push_str(&w.replacen(t, &format!("{}+{:#x}", self.module.name, a - b), 1)),
                _ => out.push_str(w),
            }
        }
        out
    }

    /// Runs the entry point in SMM.
    pub fn run_entry(&mut self) -> &CallResult {
        let second = match self.module.kind {
            ModuleKind::DxeSmmDriver => self.tables.system_table,
            ModuleKind::MmStandalone => layout::SMST,
        };
        let r = self.call(RUNNER_SMI, 0, &[0; 16], self.module.entry, [self.module.image_handle, second, 0, 0], ENTRY_BUDGET);
        self.entry_result = Some(r);
        self.entry_result.as_ref().expect("just set")
    }

    /// Moves the module through the boot's SMM lifecycle events, as edk2's core does when DXE
    /// signals them: it installs each event protocol in the SMM database with a NULL interface
    /// (gEfiSmmEndOfDxeProtocolGuid at EndOfDxe, gEfiSmmReadyToLockProtocolGuid at
    /// ReadyToLock, gEdkiiSmmReadyToBootProtocolGuid at ReadyToBoot), each in an SMI, and the
    /// module's notifications for it run. Returns how each went.
    pub fn signal(&mut self, events: &[Phase]) -> Vec<(Phase, CallResult)> {
        let mut out = Vec::new();
        for &p in events {
            let n = self.env.events.len();
            self.env.events.push(p.guid());
            let slot = self.env.slot(&mut self.machine, Service::Event(n), true);
            self.machine.set_breakpoints(&self.env.breakpoints());
            let r = self.call(RUNNER_SMI, 0, &[0; 16], slot, [0; 4], ENTRY_BUDGET);
            out.push((p, r));
        }
        self.phases.extend(out.iter().cloned());
        out
    }

    /// Calls the GUID handlers of `guid` the way edk2-stable202211's core does for a
    /// communicate request: the buffer at `buffer` holds EFI_SMM_COMMUNICATE_HEADER {HeaderGuid,
    /// MessageLength} and the payload; a buffer that overlaps SMRAM is refused
    /// (SmmIsBufferOutsideSmmValid); each handler gets (DispatchHandle, NULL, Data,
    /// &BufferSize) with BufferSize = size - 24, in list order until one returns EFI_SUCCESS.
    /// `size` is the whole buffer's size (None: header + payload).
    pub fn call_guid_at(&mut self, buffer: u64, guid: &Guid, payload: &[u8], size: Option<u64>) -> CallResult {
        let total = size.unwrap_or(24 + payload.len() as u64);
        if layout::overlaps_smram(buffer, total) {
            return CallResult::Refused { why: format!("the buffer {buffer:#x}+{total:#x} overlaps SMRAM") };
        }
        let mut msg = guid.0.to_vec();
        msg.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        msg.extend_from_slice(payload);
        self.machine.write_phys(buffer, &msg);
        let handlers: Vec<(u64, u64)> = self.env.handlers.iter().filter(|h| h.guid == Some(*guid)).map(|h| (h.handler, h.handle)).collect();
        if handlers.is_empty() {
            return CallResult::Returned { status: efi::NOT_FOUND, name: efi::status_name(efi::NOT_FOUND), instructions: 0 };
        }
        let size_var = MAILBOX + 0x40;
        let mut last = CallResult::Returned { status: efi::NOT_FOUND, name: efi::status_name(efi::NOT_FOUND), instructions: 0 };
        for (handler, handle) in handlers {
            services::unobserved(&mut self.machine, |m| services::write(m, size_var, &(total.saturating_sub(24)).to_le_bytes()));
            last = self.call(RUNNER_SMI, 0, &[0; 16], handler, [handle, 0, buffer + 24, size_var], CALL_BUDGET);
            if last.status() != Some(efi::SUCCESS) && matches!(last, CallResult::Returned { .. }) {
                continue;
            }
            break;
        }
        last
    }

    /// [`Runner::call_guid_at`] with the runner's communication buffer.
    pub fn call_guid(&mut self, guid: &Guid, payload: &[u8], size: Option<u64>) -> CallResult {
        self.call_guid_at(COMM_BUFFER, guid, payload, size)
    }

    /// Raises SW SMI `value` (APM_CNT) with `data` in APM_STS and `regs` in the general
    /// registers, and calls the SW dispatcher's handler for it as edk2's dispatchers do:
    /// (DispatchHandle, &RegisterContext, &EFI_SMM_SW_CONTEXT, &16).
    pub fn call_sw(&mut self, value: u8, data: u8, regs: &SmiRegisters) -> CallResult {
        let ctx = MAILBOX + 0x80;
        let size_var = MAILBOX + 0x40;
        let (func, args) = match self.env.sw_registration(value) {
            Some(r) => {
                let mut sw = vec![0u8; 16];
                sw[8] = value;
                sw[9] = data;
                services::unobserved(&mut self.machine, |m| {
                    services::write(m, ctx, &sw);
                    services::write(m, size_var, &16u64.to_le_bytes());
                });
                (r.handler, [r.handle, r.context, ctx, size_var])
            }
            None => (self.no_handler(), [0; 4]),
        };
        self.call(value, data, regs, func, args, CALL_BUDGET)
    }

    /// Calls the root handlers (HandlerType NULL) in list order, one SMI each, as the core does
    /// on every SMI: (DispatchHandle, NULL, NULL, NULL).
    pub fn call_root(&mut self, value: u8, regs: &SmiRegisters) -> Vec<CallResult> {
        let roots: Vec<(u64, u64)> = self.env.handlers.iter().filter(|h| h.guid.is_none()).map(|h| (h.handler, h.handle)).collect();
        roots.into_iter().map(|(h, d)| self.call(value, 0, regs, h, [d, 0, 0, 0], CALL_BUDGET)).collect()
    }

    fn no_handler(&mut self) -> u64 {
        if let Some(a) = self.env.breakpoints().into_iter().find(|a| self.env.service_at(*a) == Some(Service::NoHandler)) {
            return a;
        }
        let a = self.env.slot(&mut self.machine, Service::NoHandler, true);
        self.machine.set_breakpoints(&self.env.breakpoints());
        a
    }

    /// SMRAM as SMM sees it now.
    pub fn smram(&mut self) -> uefi_smm::Smram {
        uefi_smm::Smram::new(vec![(TSEG_BASE, self.machine.read_phys(TSEG_BASE, TSEG_SIZE as usize, true))])
    }

    /// The SMRAM heap's range (where images and pools are).
    pub fn heap(&self) -> std::ops::Range<u64> {
        SMRAM_HEAP
    }
}
