//! The runner: one module loaded into the synthetic platform's SMRAM, its entry point run in
//! SMM, its handlers listed and called. This is what `smmlab module run`, `smmlab module call`
//! and `smmlab audit --module` drive.

use crate::efi;
use crate::entry_stub;
use crate::layout::{self, COMM_BUFFER, MAILBOX, SMRAM_HEAP, TSEG_BASE, TSEG_SIZE};
use crate::loader;
use crate::platform::{self, Tables, RUNNER_SMI};
use crate::services::{self, Env, Service};
use fwimage::Guid;
use machine::host::{OutsideOutcome, SmiRegisters, SwSmiOutcome};
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
    /// FFS type SMM_CORE (0x0D): edk2's PiSmmCore. Its entry gets (&SMM_CORE_PRIVATE_DATA,
    /// EFI_SYSTEM_TABLE*) as PiSmmIpl calls it, with SMRAM of its own to manage.
    SmmCore,
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
    /// The dynamic PCD defaults of the image it came from (see [`fwimage::pcd`]).
    pub pcd: Option<std::sync::Arc<fwimage::pcd::Pcds>>,
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
    /// Whether its entry point runs outside SMM (see [`entry_outside_smm`]).
    pub entry_outside_smm: bool,
}

/// Whether `module`'s entry point runs outside SMM, SMRAM open, as edk2 runs it before any SMM
/// entry exists: an SMM core's (PiSmmIpl calls it directly), and an SMM CPU driver's, which
/// relocates SMBASE and provides the SMM entry (the core dispatches drivers outside SMM until
/// one registers the entry through EFI_SMM_CONFIGURATION_PROTOCOL, then returns EFI_NOT_READY
/// so that the rest run in SMM: PiSmmCore Dispatcher.c). An SMM CPU driver is known by the
/// protocol's GUID in its image, which it installs. Every other driver runs in SMM, through
/// the runner's SMI entry, as the core dispatches it once SMM entry exists.
pub fn entry_outside_smm(module: &Module) -> bool {
    match module.kind {
        ModuleKind::SmmCore => true,
        ModuleKind::DxeSmmDriver => module.pe.windows(16).any(|w| w == efi::SMM_CONFIGURATION.0),
        ModuleKind::MmStandalone => false,
    }
}

/// SMRAM handed to an SMM core module for its own pools and pages.
pub const CORE_SMRAM: u64 = 2 << 20;

/// Builds the SMM_CORE_PRIVATE_DATA PiSmmIpl passes a core as its ImageHandle, in DXE memory
/// as PiSmmIpl's is, with one free SMRAM range (carved from the runner's SMRAM heap) for the
/// core to manage. Layout (x64, edk2-stable202211
/// `MdeModulePkg/Core/PiSmmCore/PiSmmCorePrivateData.h`): Signature "smmc" 0x00,
/// SmmIplImageHandle 0x08, SmramRangeCount 0x10, SmramRanges 0x18, SmmEntryPoint 0x20,
/// SmmEntryPointRegistered 0x28, InSmm 0x29, Smst 0x30, CommunicationBuffer 0x38, BufferSize
/// 0x40, ReturnStatus 0x48, PiSmmCoreImageBase 0x50, PiSmmCoreImageSize 0x58,
/// PiSmmCoreEntryPoint 0x60. EFI_SMRAM_DESCRIPTOR: PhysicalStart, CpuStart, PhysicalSize,
/// RegionState (PI 1.7 vol. 4 §3.4; EFI_SMRAM_CLOSED 0x2 | EFI_CACHEABLE 0x8, not
/// EFI_ALLOCATED 0x10, which the core would skip).
fn core_private_data(m: &mut Machine, env: &mut Env, base: u64, size: u64, entry: u64) -> Option<u64> {
    let range = env.smram.pages(CORE_SMRAM / 0x1000, 0x1000, None)?;
    let desc = env.dxe.pool(32)?;
    let mut d = Vec::with_capacity(32);
    for v in [range, range, CORE_SMRAM, 0xa] {
        d.extend_from_slice(&v.to_le_bytes());
    }
    services::write(m, desc, &d);
    let private = env.dxe.pool(0x68)?;
    let mut p = vec![0u8; 0x68];
    let mut put = |at: usize, v: u64| p[at..at + 8].copy_from_slice(&v.to_le_bytes());
    put(0x00, u64::from(u32::from_le_bytes(*b"smmc")));
    put(0x08, private);
    put(0x10, 1);
    put(0x18, desc);
    put(0x50, base);
    put(0x58, size);
    put(0x60, entry);
    services::write(m, private, &p);
    Some(private)
}

/// A runner with one module.
pub struct Runner {
    /// The machine.
    pub machine: Machine,
    /// Where a debugger wants the next calls stopped (see [`DebugStop`]).
    pub debug_stop: Option<DebugStop>,
    /// The host's services and what they recorded.
    pub env: Env,
    tables: Tables,
    /// The module.
    pub module: LoadedModule,
    /// How its entry point went (None before [`Runner::run_entry`]).
    pub entry_result: Option<CallResult>,
    /// The lifecycle events signalled so far ([`Runner::signal`]) and how each went.
    pub phases: Vec<(Phase, CallResult)>,
    /// For an SMM core module: its own handler lists, followed after every call.
    pub core: Option<uefi_smm::registrations::Tracker>,
    /// Modules run before this one in the same SMRAM ([`Runner::run_first`]), and how their
    /// entry points went.
    pub companions: Vec<(LoadedModule, CallResult)>,
    /// Set when a module relocated SMBASE itself (an SMM CPU driver): the SMI entry is its.
    pub smi_entry: Option<SmiEntryOwner>,
}

/// An SMM CPU driver that took over SMI entry: it relocated SMBASE itself and the runner
/// registered its SMM core entry with the driver's EFI_SMM_CONFIGURATION_PROTOCOL, so the
/// runner's calls go through the driver's SMI entry and rendezvous.
#[derive(Clone, Debug, Serialize)]
pub struct SmiEntryOwner {
    /// SMBASE after the driver's entry point.
    pub smbase: u64,
    /// EFI_SMM_CONFIGURATION_PROTOCOL.
    pub configuration: u64,
    /// What its RegisterSmmEntry returned (None: the driver installed no such protocol).
    pub registered: Option<CallResult>,
}

/// Loads `module` into SMRAM as PiSmmCore places drivers (pages from the top), with its
/// EFI_LOADED_IMAGE_PROTOCOL (0x60 bytes) in both databases, ImageBase the SMRAM address,
/// code/data types 5/6 (Dispatcher.c): the DXE one on the ImageHandle.
fn load(m: &mut Machine, env: &mut Env, tables: &Tables, module: &Module) -> Result<LoadedModule, RunError> {
    let load_err = |source| RunError::Load { name: module.name.clone(), source };
    let size = loader::image_size(&module.pe).map_err(load_err)?;
    let pages = size.div_ceil(0x1000);
    let base = env.smram.pages(pages, 0x1000, None).ok_or_else(|| RunError::NoRoom(module.name.clone()))?;
    let img = loader::load(&module.pe, base).map_err(load_err)?;
    services::write(m, base, &img.bytes);
    let mut li = vec![0u8; 0x60];
    li[0..4].copy_from_slice(&0x1000u32.to_le_bytes());
    li[0x10..0x18].copy_from_slice(&tables.system_table.to_le_bytes());
    li[0x40..0x48].copy_from_slice(&base.to_le_bytes());
    li[0x48..0x50].copy_from_slice(&size.to_le_bytes());
    li[0x50..0x54].copy_from_slice(&5u32.to_le_bytes());
    li[0x54..0x58].copy_from_slice(&6u32.to_le_bytes());
    let no_room = || RunError::NoRoom(module.name.clone());
    let dxe_li = env.dxe.pool(0x60).ok_or_else(no_room)?;
    services::write(m, dxe_li, &li);
    let mut image_handle = env.provide(false, efi::LOADED_IMAGE, dxe_li);
    if module.kind == ModuleKind::SmmCore {
        image_handle = core_private_data(m, env, base, size, img.entry).ok_or_else(no_room)?;
    }
    let smm_li = env.smram.pool(0x60).ok_or_else(no_room)?;
    services::write(m, smm_li, &li);
    env.provide(true, efi::LOADED_IMAGE, smm_li);
    Ok(LoadedModule {
        name: module.name.clone(),
        guid: module.guid.map(|g| g.to_string()),
        kind: module.kind,
        base,
        size,
        entry: img.entry,
        image_handle,
        subsystem: img.subsystem,
        relocations: img.relocations,
        entry_outside_smm: entry_outside_smm(module),
    })
}

/// A debugger's stop in the runner's calls: when a call's SMI reaches `at`, `hook` gets the
/// machine there, the host's services and the addresses of their breakpoints (what the SMM
/// services need while the debugger runs the machine: `env.serve(m)` at each); its error
/// ends the SMI.
pub struct DebugStop {
    /// The RIP to stop at.
    pub at: u64,
    /// What runs there.
    pub hook: Box<StopHook>,
}

/// [`DebugStop::hook`]: (the machine, the host's services, their breakpoints' addresses).
pub type StopHook = dyn FnMut(&mut Machine, &mut Env, &[u64]) -> Result<(), String>;

/// A runner's state at one point ([`Runner::snapshot`]): the machine's and the host's
/// services'.
pub struct RunnerSnapshot {
    machine: machine::host::Snapshot,
    env: Env,
    phases: usize,
    core: Option<uefi_smm::registrations::Tracker>,
}

impl Runner {
    /// Takes a snapshot of the machine ([`Machine::snapshot`]: CPU, devices, RAM by its
    /// dirty-page log) and of the host's services (heaps, protocol databases, registrations,
    /// the record of served calls), replacing the previous one.
    pub fn snapshot(&mut self) -> RunnerSnapshot {
        RunnerSnapshot { machine: self.machine.snapshot(), env: self.env.clone(), phases: self.phases.len(), core: self.core.clone() }
    }

    /// Goes back to `s`, the last snapshot taken (see [`Machine::restore`]); returns the RAM
    /// pages put back, None (nothing changed) when `s` is not the last one.
    pub fn restore(&mut self, s: &RunnerSnapshot) -> Option<usize> {
        let pages = self.machine.restore(&s.machine)?;
        self.env.restore_from(&s.env);
        self.phases.truncate(s.phases);
        self.core.clone_from(&s.core);
        Some(pages)
    }

    /// Builds the platform for `model` and loads `module` into SMRAM (not yet run).
    pub fn new(model: cpu::CpuModel, module: &Module) -> Result<Runner, RunError> {
        let (mut m, mut env, tables) = platform::build(model)?;
        env.pcd = module.pcd.clone();
        let module = load(&mut m, &mut env, &tables, module)?;
        Ok(Runner { machine: m, debug_stop: None, env, tables, module, entry_result: None, phases: Vec::new(), core: None, companions: Vec::new(), smi_entry: None })
    }

    /// Builds a runner for `module`, lets `setup` prepare it (flash, answers, modules to run
    /// first), runs the entry point and signals `phases` (after a successful entry).
    ///
    /// An SMM protocol nobody provides is first answered by a stub. When the module never
    /// called the stub (it only asked whether the protocol exists: edk2 drivers look for their
    /// own protocol to learn whether they are initialised already) or installed that protocol
    /// itself, the run is made again with the protocol absent (EFI_NOT_FOUND), which is what
    /// the module would find in a boot; the new run is kept unless its entry point fails where
    /// the first succeeded.
    pub fn start<E>(model: cpu::CpuModel, module: &Module, phases: &[Phase], setup: &mut dyn FnMut(&mut Runner) -> Result<(), E>) -> Result<Runner, E>
    where
        E: From<RunError>,
    {
        let mut absent = std::collections::BTreeSet::new();
        let mut kept: Option<Runner> = None;
        for _ in 0..4 {
            let mut r = Runner::new(model, module)?;
            r.env.absent = absent.clone();
            setup(&mut r)?;
            r.run_entry();
            let ok = r.entry_result.as_ref().and_then(CallResult::status) == Some(efi::SUCCESS);
            if ok {
                r.signal(phases);
            }
            if let Some(k) = &kept {
                let was_ok = k.entry_result.as_ref().and_then(CallResult::status) == Some(efi::SUCCESS);
                if was_ok && !ok {
                    break;
                }
            }
            let idle: Vec<Guid> = r
                .env
                .stubs
                .iter()
                .filter(|s| s.smm && !absent.contains(&s.guid))
                .filter(|s| s.calls.is_empty() || r.env.smm_db.installed.iter().any(|i| i.caller != 0 && i.guid == s.guid))
                .map(|s| s.guid)
                .collect();
            kept = Some(r);
            if idle.is_empty() {
                break;
            }
            absent.extend(idle);
        }
        Ok(kept.expect("one run at least"))
    }

    /// Loads `other` (a module of the same image, e.g. the one producing a protocol the module
    /// waits for) into the same SMRAM and runs its entry point, before the module's own: its
    /// protocols and handlers join the same databases, as when the core dispatches both.
    pub fn run_first(&mut self, other: &Module) -> Result<&CallResult, RunError> {
        let loaded = load(&mut self.machine, &mut self.env, &self.tables, other)?;
        let r = self.run_entry_of(&loaded);
        self.companions.push((loaded, r));
        Ok(&self.companions.last().expect("just pushed").1)
    }

    /// Calls `func(args)` in SMM through the entry stub, serving the module's service calls.
    fn call(&mut self, cmd: u8, data: u8, regs: &SmiRegisters, func: u64, args: [u64; 4], budget: u64) -> CallResult {
        if let Err(why) = self.smi_entry_ready() {
            return CallResult::Fault { why };
        }
        let mut mailbox = Vec::with_capacity(48);
        for v in [func, args[0], args[1], args[2], args[3], u64::MAX] {
            mailbox.extend_from_slice(&v.to_le_bytes());
        }
        services::unobserved(&mut self.machine, |m| services::write(m, MAILBOX, &mailbox));
        self.env.smis += 1;
        let env = &mut self.env;
        let stop = &mut self.debug_stop;
        // With a debugger's stop: the host's own breakpoints (its services), then the stop
        // among them. Without one (every fuzzing execution) nothing is read or set.
        let services = if stop.is_some() { self.machine.breakpoints() } else { Vec::new() };
        if let Some(s) = stop.as_ref() {
            let mut at = services.clone();
            at.push(s.at);
            self.machine.set_breakpoints(&at);
        }
        let r = self.machine.raise_sw_smi_with(cmd, data, regs, budget, &mut |m| match stop.as_mut() {
            Some(s) if m.registers().1 == s.at => (s.hook)(m, env, &services),
            _ => env.serve(m),
        });
        self.look_at_core();
        match r {
            SwSmiOutcome::Returned { instructions, .. } => {
                let status = services::unobserved(&mut self.machine, |m| services::read_u64(m, MAILBOX + 40));
                CallResult::Returned { status, name: efi::status_name(status), instructions }
            }
            SwSmiOutcome::NoSmi => CallResult::Fault { why: "the APM write raised no SMI".into() },
            SwSmiOutcome::Fault(why) => CallResult::Fault { why: self.name_addresses(why) },
        }
    }

    /// Makes sure an SMI reaches the runner's call: SMBASE still at its reset value is
    /// relocated to the runner's entry now; one a module moved is the module's SMI entry, which
    /// reaches the runner through the SMM core entry registered with it.
    fn smi_entry_ready(&mut self) -> Result<(), String> {
        let smbase = self.machine.cpu_view().smbase as u64;
        if smbase == cpu::smm::DEFAULT_SMBASE as u64 {
            return platform::relocate(&mut self.machine).map_err(|e| e.to_string());
        }
        match &self.smi_entry {
            _ if smbase == layout::SMBASE => Ok(()),
            Some(SmiEntryOwner { registered: Some(r), .. }) if r.status() == Some(efi::SUCCESS) => Ok(()),
            Some(SmiEntryOwner { registered: Some(r), .. }) => Err(format!("SMBASE is {smbase:#x}, moved by a module, and its RegisterSmmEntry did not take the runner's entry: {r:?}")),
            _ => Err(format!("SMBASE is {smbase:#x}, moved by a module that installed no EFI_SMM_CONFIGURATION_PROTOCOL: no SMI reaches the runner")),
        }
    }

    /// Calls `func(args)` outside SMM with SMRAM open, as edk2's SMM core dispatches the
    /// drivers it finds before any SMM entry exists (PiSmmIpl's SmmCommunicationCommunicate
    /// calls SmiManage directly, SMRAM open, while SmmEntryPointRegistered is FALSE): the CPU
    /// in long mode outside SMM, the module's service calls served, SMIs it raises taken.
    fn call_outside(&mut self, func: u64, args: [u64; 4], budget: u64) -> CallResult {
        let mut mailbox = Vec::with_capacity(48);
        for v in [func, args[0], args[1], args[2], args[3], u64::MAX] {
            mailbox.extend_from_slice(&v.to_le_bytes());
        }
        services::unobserved(&mut self.machine, |m| m.write_phys(layout::OUTSIDE_MAILBOX, &mailbox));
        let start = layout::OUTSIDE_CODE + entry_stub::outside_layout::CALL;
        if !platform::open_smram(&mut self.machine) {
            return CallResult::Fault { why: "SMRAM is locked: code outside SMM cannot reach it".into() };
        }
        let env = &mut self.env;
        let r = self.machine.run_outside_smm(start, budget, &mut |m| env.serve(m));
        platform::close_smram(&mut self.machine);
        self.look_at_core();
        match r {
            OutsideOutcome::Halted { instructions } => {
                let status = services::unobserved(&mut self.machine, |m| services::read_u64(m, layout::OUTSIDE_MAILBOX + 40));
                CallResult::Returned { status, name: efi::status_name(status), instructions }
            }
            OutsideOutcome::Fault(why) => CallResult::Fault { why: self.name_addresses(why) },
        }
    }

    /// After an entry point: when it moved SMBASE (an SMM CPU driver relocating its CPU),
    /// registers the runner's SMM core entry with the EFI_SMM_CONFIGURATION_PROTOCOL it
    /// installed, as PiSmmIpl does when that protocol appears (SmmIplSmmConfigurationEventNotify).
    fn adopt_smi_entry(&mut self) {
        let smbase = self.machine.cpu_view().smbase as u64;
        if self.smi_entry.is_some() || smbase == cpu::smm::DEFAULT_SMBASE as u64 || smbase == layout::SMBASE {
            return;
        }
        let Some(conf) = self.env.dxe_db.locate(&efi::SMM_CONFIGURATION) else {
            self.smi_entry = Some(SmiEntryOwner { smbase, configuration: 0, registered: None });
            return;
        };
        // EFI_SMM_CONFIGURATION_PROTOCOL: SmramReservedRegions, then RegisterSmmEntry.
        let register = services::unobserved(&mut self.machine, |m| services::read_u64(m, conf + 8));
        let r = self.call_outside(register, [conf, layout::CORE_ENTRY, 0, 0], ENTRY_BUDGET);
        self.smi_entry = Some(SmiEntryOwner { smbase, configuration: conf, registered: Some(r) });
    }

    /// An SMM core registers its handlers on lists of its own (with its own SmiHandlerRegister,
    /// not the runner's SMST): find them once they exist, and look at them after every call,
    /// as a boot's inventory does after every RSM.
    fn look_at_core(&mut self) {
        if self.module.kind != ModuleKind::SmmCore {
            return;
        }
        let mut t = self.core.take().unwrap_or_default();
        if t.needs_snapshot() {
            t.locate(&self.smram());
        }
        let at = uefi_smm::registrations::Moment { smi: self.env.smis, ns: self.machine.guest_ns() };
        services::unobserved(&mut self.machine, |m| t.look(&services::LiveMemory::new(m), at));
        self.core = Some(t);
    }

    /// The handlers on the SMM core module's own lists now: (HandlerType, handler, the
    /// DispatchHandle the core passes, which is the SMI_HANDLER record).
    fn core_handlers(&self) -> Vec<(Option<Guid>, u64, u64)> {
        let Some(t) = &self.core else { return Vec::new() };
        t.registrations().iter().filter(|r| r.removed.is_none()).map(|r| (r.handler.handler_type, r.handler.handler, r.handler.record)).collect()
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

    /// Runs `m`'s entry point, outside SMM or in it (see [`entry_outside_smm`]); a standalone
    /// MM module gets the MMST as its second argument, as the MM core calls it.
    fn run_entry_of(&mut self, m: &LoadedModule) -> CallResult {
        let second = match m.kind {
            ModuleKind::DxeSmmDriver | ModuleKind::SmmCore => self.tables.system_table,
            ModuleKind::MmStandalone => layout::SMST,
        };
        let args = [m.image_handle, second, 0, 0];
        let r = if m.entry_outside_smm { self.call_outside(m.entry, args, ENTRY_BUDGET) } else { self.call(RUNNER_SMI, 0, &[0; 16], m.entry, args, ENTRY_BUDGET) };
        self.adopt_smi_entry();
        r
    }

    /// Maps system flash below 4 GiB as a board with this firmware would have it (unit 0, the
    /// image, on top; then the variable store), so that drivers probing the flash
    /// (OVMF's FvbServicesSmm writes CFI commands to it) find a device. Only SMM may program
    /// it, as on a locked platform; the files are never written back.
    pub fn attach_flash(&mut self, images: Vec<machine::devices::pflash_bank::PflashImage>) -> Result<(), machine::MachineError> {
        self.machine.attach_pflash(images, true)
    }

    /// Runs the entry point in SMM.
    pub fn run_entry(&mut self) -> &CallResult {
        let r = self.run_entry_of(&self.module.clone());
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
        if self.module.kind == ModuleKind::SmmCore {
            // What PiSmmIpl sends the core through the communication buffer when DXE signals
            // the event (PiSmmIpl.c's mSmmIplEvents): gEfiEndOfDxeEventGroupGuid,
            // gEfiDxeSmmReadyToLockProtocolGuid, gEfiEventReadyToBootGuid.
            for &p in events {
                let g: Guid = match p {
                    Phase::EndOfDxe => "02ce967a-dd7e-4ffc-9ee7-810cf0470880",
                    Phase::ReadyToLock => "60ff8964-e906-41d0-afed-f241e974e08e",
                    Phase::ReadyToBoot => "7ce88fb3-4bd7-4679-87a8-a8d8dee50d2b",
                }
                .parse()
                .expect("a GUID");
                let r = self.call_guid(&g, &[], None);
                self.lock_at(p);
                out.push((p, r));
            }
            self.phases.extend(out.iter().cloned());
            return out;
        }
        for &p in events {
            let n = self.env.events.len();
            self.env.events.push(p.guid());
            let slot = self.env.slot(&mut self.machine, Service::Event(n), true);
            self.machine.set_breakpoints(&self.env.breakpoints());
            let r = self.call(RUNNER_SMI, 0, &[0; 16], slot, [0; 4], ENTRY_BUDGET);
            self.lock_at(p);
            out.push((p, r));
        }
        self.phases.extend(out.iter().cloned());
        out
    }

    /// SMRAM is locked once ReadyToLock is signalled, as the SMM IPL locks it then
    /// (SmmIplReadyToLockEventNotify: SmmAccess2->Lock).
    fn lock_at(&mut self, p: Phase) {
        if p == Phase::ReadyToLock {
            platform::lock_smram(&mut self.machine);
        }
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
        let mut handlers: Vec<(u64, u64)> = self.env.handlers.iter().filter(|h| h.guid == Some(*guid)).map(|h| (h.handler, h.handle)).collect();
        handlers.extend(self.core_handlers().into_iter().filter(|h| h.0 == Some(*guid)).map(|h| (h.1, h.2)));
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
        let mut roots: Vec<(u64, u64)> = self.env.handlers.iter().filter(|h| h.guid.is_none()).map(|h| (h.handler, h.handle)).collect();
        roots.extend(self.core_handlers().into_iter().filter(|h| h.0.is_none()).map(|h| (h.1, h.2)));
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
