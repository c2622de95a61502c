//! The services the host implements for the module: the SMST, the boot and runtime services,
//! the protocols (SMM Base2, SMM Access2, the child dispatchers, SMM CPU, CPU I/O) and logged
//! stubs for everything else.
//!
//! Every service is a *slot*: one `RET` instruction at its own address (SMM services inside
//! SMRAM, DXE services in ordinary RAM, where their real counterparts live), and a CPU
//! breakpoint on it. When the module calls one, the CPU stops at the slot's first block; the
//! host reads the arguments as the MS x64 convention passes them (RCX, RDX, R8, R9, then the
//! stack above the return address and 32 bytes of shadow space), does the work, puts the
//! status in RAX and lets the CPU run the `RET`. So the fetch of the slot is a real fetch:
//! a handler that calls a boot service at run time fetches code outside SMRAM, which is what
//! the audit's call-out oracle sees, and SMM_CODE_CHK_EN would machine-check it. A service
//! that must call back into the module (a protocol notification) sets up a nested call whose
//! return lands on another slot.

mod boot;
mod dispatch;
mod mp;
mod protocols;
mod save_state;
mod smst;
mod stub;

pub use dispatch::DispatchRegistration;
pub use protocols::{Db, Installed};
pub use stub::{StubCall, StubbedProtocol};

use crate::efi;
use crate::heap::Heap;
use crate::layout;
use cpu::regs::{RAX, RCX, RDX, RSP};

const R8: usize = 8;
const R9: usize = 9;
use fwimage::Guid;
use machine::Machine;
use serde::Serialize;
use std::collections::HashMap;

/// What a slot does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// An SMST service, by its offset in the table.
    Smst(u64),
    /// A boot service, by its offset in EFI_BOOT_SERVICES.
    Boot(u64),
    /// A runtime service, by offset (all logged stubs).
    Runtime(u64),
    /// A DXE service, by offset (all logged stubs).
    Dxe(u64),
    /// EFI_SMM_BASE2_PROTOCOL.InSmm.
    Base2InSmm,
    /// EFI_SMM_BASE2_PROTOCOL.GetSmstLocation.
    Base2GetSmst,
    /// EFI_SMM_ACCESS2_PROTOCOL, by offset.
    Access2(u64),
    /// A child dispatcher's Register (0), UnRegister (1) or third function (2).
    Dispatch(uefi_smm::smst::Dispatch, u8),
    /// EFI_SMM_CPU_PROTOCOL.ReadSaveState (false) / WriteSaveState (true).
    SaveState(bool),
    /// EFI_SMM_CPU_IO2_PROTOCOL (and SMST.SmmIo), by offset from the protocol's start.
    CpuIo(u64),
    /// EFI_MP_SERVICES_PROTOCOL, by function index.
    Mp(u64),
    /// Function `index` of stubbed protocol `stub`.
    Stub(usize, usize),
    /// Where a nested call into the module returns.
    NestedReturn,
    /// What a SW SMI with no registered handler calls: returns EFI_NOT_FOUND.
    NoHandler,
    /// The core's installation of event protocol `n` of [`Env::events`] (EndOfDxe,
    /// ReadyToLock...) with a NULL interface, its notifications called.
    Event(usize),
}

/// One call the host served.
#[derive(Clone, Debug, Serialize)]
pub struct ServedCall {
    /// The service's name ("gBS->LocateProtocol", "SMST->SmiHandlerRegister", ...).
    pub service: String,
    /// The return address.
    pub caller: u64,
    /// The arguments (as many as the service takes, at most six).
    pub args: Vec<u64>,
    /// The GUID the call named, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guid: Option<String>,
    /// What RAX returned.
    pub status: u64,
    /// Whether the CPU was in SMM.
    pub in_smm: bool,
}

/// The stopped CPU's call: its arguments and return address, read when it stopped.
pub struct Frame {
    regs: [u64; 16],
    /// The slot's address.
    pub rip: u64,
    /// The return address.
    ret: u64,
    /// Arguments 5 on (the stack above the shadow space).
    stack: [u64; 12],
}

impl Frame {
    /// Reads the frame of the call the CPU stopped at.
    fn read(m: &mut Machine, regs: [u64; 16], rip: u64) -> Frame {
        let sp = regs[RSP];
        let ret = read_u64(m, sp);
        let mut stack = [0u64; 12];
        for (i, v) in stack.iter_mut().enumerate() {
            *v = read_u64(m, sp + 0x28 + 8 * i as u64);
        }
        Frame { regs, rip, ret, stack }
    }
    /// Argument `i` (0-based).
    pub fn arg(&self, i: usize) -> u64 {
        match i {
            0 => self.regs[RCX],
            1 => self.regs[RDX],
            2 => self.regs[R8],
            3 => self.regs[R9],
            _ => self.stack.get(i - 4).copied().unwrap_or(0),
        }
    }
    /// The return address.
    pub fn caller(&self) -> u64 {
        self.ret
    }
    /// RSP at the slot.
    pub fn rsp(&self) -> u64 {
        self.regs[RSP]
    }
}

/// The machine's memory as SMM sees it now, for the readers of `crates/uefi` (the SMST
/// records, the dispatchers' contexts, the core's handler lists) without a snapshot.
pub struct LiveMemory<'a>(std::cell::RefCell<&'a mut Machine>);

impl<'a> LiveMemory<'a> {
    /// Reads `m`.
    pub fn new(m: &'a mut Machine) -> Self {
        LiveMemory(std::cell::RefCell::new(m))
    }
}

impl uefi_smm::smram::Memory for LiveMemory<'_> {
    fn u64(&self, addr: u64) -> Option<u64> {
        Some(read_u64(&mut self.0.borrow_mut(), addr))
    }
    fn guid(&self, addr: u64) -> Option<Guid> {
        Guid::from_bytes(&self.0.borrow_mut().read_phys(addr, 16, true))
    }
}

/// Runs `f` with the board's SMM access observer paused: what the host does as the SMM core
/// is not an access of the module's.
pub fn unobserved<T>(m: &mut Machine, f: impl FnOnce(&mut Machine) -> T) -> T {
    let was = m.board.smm_observer().map(|o| std::mem::replace(&mut o.enabled, false));
    let r = f(m);
    if let (Some(w), Some(o)) = (was, m.board.smm_observer()) {
        o.enabled = w;
    }
    r
}

/// The u64 at `addr`, as SMM sees it.
pub fn read_u64(m: &mut Machine, addr: u64) -> u64 {
    u64::from_le_bytes(m.read_phys(addr, 8, true).try_into().expect("8 bytes"))
}

/// The GUID at `addr` (None for NULL).
pub fn read_guid(m: &mut Machine, addr: u64) -> Option<Guid> {
    (addr != 0).then(|| Guid::from_bytes(&m.read_phys(addr, 16, true))).flatten()
}

/// Writes as the CPU in SMM would.
pub fn write(m: &mut Machine, addr: u64, data: &[u8]) {
    m.write_phys_as(addr, data, true);
}

/// Writes a u64 as the CPU in SMM would; a NULL pointer is not written.
pub fn write_u64(m: &mut Machine, addr: u64, v: u64) {
    if addr != 0 {
        write(m, addr, &v.to_le_bytes());
    }
}

/// A nested call into the module in progress: the slot to finish when it returns.
#[derive(Clone)]
struct Nested {
    slot: u64,
    rsp: u64,
    status: u64,
    /// More calls to make before finishing (function, arguments).
    queue: Calls,
}

/// A registered SMI handler (SmiHandlerRegister).
#[derive(Clone, Debug, Serialize)]
pub struct HandlerRegistration {
    /// The handler.
    pub handler: u64,
    /// Its HandlerType (None: root).
    pub guid: Option<Guid>,
    /// The DispatchHandle returned.
    pub handle: u64,
    /// The return address of the registering call.
    pub caller: u64,
}

/// Everything the host keeps for the module.
#[derive(Clone)]
pub struct Env {
    slots: HashMap<u64, Service>,
    next_slot: [u64; 2],
    /// The SMRAM heap.
    pub smram: Heap,
    /// The DXE heap.
    pub dxe: Heap,
    /// The SMM protocol database.
    pub smm_db: Db,
    /// The DXE protocol database.
    pub dxe_db: Db,
    /// SmiHandlerRegister's registrations, in order.
    pub handlers: Vec<HandlerRegistration>,
    /// The child dispatchers' registrations.
    pub dispatch: Vec<DispatchRegistration>,
    /// Protocols answered by stubs.
    pub stubs: Vec<StubbedProtocol>,
    /// Every call the host served.
    pub served: Vec<ServedCall>,
    /// The watched calls in the inventory's form.
    pub calls: Vec<uefi_smm::smst::Call>,
    /// Recorded answers for stub functions: ("GUID#index") -> RAX.
    pub answers: HashMap<String, u64>,
    nested: Vec<Nested>,
    monotonic: u64,
    /// The SMST's configuration table entries (GUID, table).
    pub smst_config: Vec<(Guid, u64)>,
    /// The system table's configuration table entries.
    pub st_config: Vec<(Guid, u64)>,
    /// The SMIs taken so far (for the inventory's call records).
    pub smis: u64,
    /// Event protocols the core has installed (see [`Service::Event`]).
    pub events: Vec<Guid>,
    /// SMM protocols LocateProtocol reports EFI_NOT_FOUND for instead of a stub: the ones
    /// the module produces itself (drivers look for their own protocol to learn whether
    /// they were initialised already; see [`crate::Runner::start`]).
    pub absent: std::collections::BTreeSet<Guid>,
    /// The firmware image's dynamic PCD defaults, for the PCD protocol's stub.
    pub pcd: Option<std::sync::Arc<fwimage::pcd::Pcds>>,
    /// PCD values the module set (token -> value).
    pub pcd_set: std::collections::BTreeMap<u64, u64>,
}

/// The SMST's functions: (offset, name).
pub fn smst_functions() -> &'static [(u64, &'static str)] {
    smst::FUNCTIONS
}

/// sizeof(EFI_BOOT_SERVICES).
pub const BOOT_SERVICES_SIZE: u64 = boot::SIZE;

/// The SW dispatcher's MaximumSwiValue.
pub fn dispatch_max_swi() -> u64 {
    dispatch::MAX_SWI
}

/// The DXE side of the slot regions (index 1); SMM is 0.
const DXE: usize = 1;

impl Env {
    /// Goes back to `s`, a copy of this environment taken earlier (a snapshot's): the two
    /// records that only ever grow, the served calls and the watched calls, are cut back to
    /// their lengths then instead of copied, so a restore costs what changed since, not the
    /// whole record; everything else is copied back.
    pub fn restore_from(&mut self, s: &Env) {
        // Every field by name: a new one cannot be forgotten here.
        let Env { slots, next_slot, smram, dxe, smm_db, dxe_db, handlers, dispatch, stubs, served, calls, answers, nested, monotonic, smst_config, st_config, smis, events, absent, pcd, pcd_set } = s;
        self.served.truncate(served.len());
        self.calls.truncate(calls.len());
        self.slots.clone_from(slots);
        self.next_slot = *next_slot;
        self.smram.clone_from(smram);
        self.dxe.clone_from(dxe);
        self.smm_db.clone_from(smm_db);
        self.dxe_db.clone_from(dxe_db);
        self.handlers.clone_from(handlers);
        self.dispatch.clone_from(dispatch);
        self.stubs.clone_from(stubs);
        self.answers.clone_from(answers);
        self.nested.clone_from(nested);
        self.monotonic = *monotonic;
        self.smst_config.clone_from(smst_config);
        self.st_config.clone_from(st_config);
        self.smis = *smis;
        self.events.clone_from(events);
        self.absent.clone_from(absent);
        self.pcd.clone_from(pcd);
        self.pcd_set.clone_from(pcd_set);
    }

    /// An empty environment.
    pub fn new() -> Self {
        Env {
            slots: HashMap::new(),
            next_slot: [layout::SMM_SLOTS, layout::DXE_SLOTS],
            smram: Heap::new(layout::SMRAM_HEAP),
            dxe: Heap::new(layout::DXE_HEAP),
            smm_db: Db::default(),
            dxe_db: Db::default(),
            handlers: Vec::new(),
            dispatch: Vec::new(),
            stubs: Vec::new(),
            served: Vec::new(),
            calls: Vec::new(),
            answers: HashMap::new(),
            nested: Vec::new(),
            monotonic: 0,
            smst_config: Vec::new(),
            st_config: Vec::new(),
            smis: 0,
            events: Vec::new(),
            absent: Default::default(),
            pcd: None,
            pcd_set: Default::default(),
        }
    }

    /// A new slot for `s` on the SMM (`smm`) or DXE side; its `RET` is written.
    pub fn slot(&mut self, m: &mut Machine, s: Service, smm: bool) -> u64 {
        let side = if smm { 0 } else { DXE };
        let at = self.next_slot[side];
        let base = if smm { layout::SMM_SLOTS } else { layout::DXE_SLOTS };
        assert!(at + 8 <= base + layout::SLOTS_SIZE, "service slots exhausted");
        self.next_slot[side] += 8;
        // RET, then INT3s: nothing runs past it.
        write(m, at, &[0xc3, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc]);
        self.slots.insert(at, s);
        at
    }

    /// The slots' addresses, for the CPU's breakpoints.
    pub fn breakpoints(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.slots.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// The name of the service whose slot is at `addr` ("gBS->LocateProtocol"), if one is.
    pub fn service_name(&self, addr: u64) -> Option<String> {
        Some(match self.service_at(addr)? {
            Service::Smst(off) => format!("SMST->{}", smst::FUNCTIONS.iter().find(|f| f.0 == off).map_or("?", |f| f.1)),
            Service::Boot(off) => format!("gBS->{}", boot::FUNCTIONS.iter().find(|f| f.0 == off).map_or("?", |f| f.1)),
            Service::Runtime(off) => format!("gRT+{off:#x}, a runtime service"),
            Service::Dxe(off) => format!("gDS+{off:#x}, a DXE service"),
            Service::Base2InSmm => "SmmBase2->InSmm".into(),
            Service::Base2GetSmst => "SmmBase2->GetSmstLocation".into(),
            Service::Access2(off) => format!("SmmAccess2+{off:#x}"),
            Service::Mp(i) => format!("MpServices->{}", mp::FUNCTIONS.get(i as usize).unwrap_or(&"?")),
            Service::Stub(p, i) => format!("function {i} of {}, a DXE protocol nobody provides", self.stubs[p].name.map_or_else(|| self.stubs[p].guid.to_string(), str::to_string)),
            other => format!("{other:?}"),
        })
    }

    /// The slot the CPU stopped at, if it is one.
    pub fn service_at(&self, rip: u64) -> Option<Service> {
        self.slots.get(&rip).copied()
    }

    /// Serves the call the CPU stopped at. The host's own accesses are not the module's: the
    /// board's SMM access observer does not see them (the CPU's fetch of the slot, after, it
    /// does).
    pub fn serve(&mut self, m: &mut Machine) -> Result<(), String> {
        unobserved(m, |m| self.serve_here(m))
    }

    fn serve_here(&mut self, m: &mut Machine) -> Result<(), String> {
        let (regs, rip) = m.registers();
        let Some(s) = self.service_at(rip) else { return Err(format!("stopped at {rip:#x}, which is no service")) };
        let f = Frame::read(m, regs, rip);
        if s == Service::NestedReturn {
            return self.nested_returned(m, regs[RAX]);
        }
        let before = self.slots.len();
        let (name, nargs, guid, flow) = match s {
            Service::Smst(off) => self.smst(m, &f, off),
            Service::Boot(off) => self.boot(m, &f, off),
            Service::Runtime(off) => (format!("gRT+{off:#x}"), 4, None, Flow::Return(efi::UNSUPPORTED)),
            Service::Dxe(off) => (format!("gDS+{off:#x}"), 4, None, Flow::Return(efi::UNSUPPORTED)),
            Service::Base2InSmm => {
                write(m, f.arg(1), &[1]);
                ("SmmBase2->InSmm".into(), 2, None, Flow::Return(efi::SUCCESS))
            }
            Service::Base2GetSmst => {
                let p = f.arg(1);
                write_u64(m, p, layout::SMST);
                ("SmmBase2->GetSmstLocation".into(), 2, None, Flow::Return(if p == 0 { efi::INVALID_PARAMETER } else { efi::SUCCESS }))
            }
            Service::Access2(off) => self.access2(m, &f, off),
            Service::Dispatch(kind, op) => self.dispatcher(m, &f, kind, op),
            Service::SaveState(w) => self.save_state(m, &f, w),
            Service::CpuIo(off) => self.cpu_io(m, &f, off),
            Service::Mp(i) => self.mp(m, &f, i),
            Service::Stub(p, i) => self.stub_call(&f, p, i),
            Service::NoHandler => ("(no handler)".into(), 4, None, Flow::Return(efi::NOT_FOUND)),
            Service::Event(n) => {
                let g = self.events[n];
                let var = layout::MAILBOX + 0x60;
                write_u64(m, var, 0);
                let flow = match self.install(m, true, var, g, 0, 0) {
                    Ok((_, calls)) => Flow::Call { status: efi::SUCCESS, calls },
                    Err(st) => Flow::Return(st),
                };
                (format!("core installs {}", uefi_smm::guid_names::name(&g).unwrap_or("an event protocol")), 0, Some(g), flow)
            }
            Service::NestedReturn => unreachable!("handled above"),
        };
        let args = (0..nargs.min(6)).map(|i| f.arg(i)).collect();
        let caller = f.caller();
        let status = match &flow {
            Flow::Return(s) => *s,
            Flow::Call { status, .. } => *status,
        };
        self.served.push(ServedCall { service: name, caller, args, guid: guid.map(|g: Guid| g.to_string()), status, in_smm: m.cpu_view().in_smm });
        match flow {
            Flow::Return(s) => m.set_register(RAX, s),
            Flow::Call { status, calls } => self.start_nested(m, &f, status, calls),
        }
        if self.slots.len() != before {
            m.set_breakpoints(&self.breakpoints());
        }
        Ok(())
    }

    fn start_nested(&mut self, m: &mut Machine, f: &Frame, status: u64, mut calls: Calls) {
        if calls.is_empty() {
            m.set_register(RAX, status);
            return;
        }
        calls.reverse();
        self.nested.push(Nested { slot: f.rip, rsp: f.rsp(), status, queue: calls });
        self.next_nested(m);
    }

    /// Starts the next queued nested call below the stopped frame: a fresh 16-aligned stack
    /// area, the return address a [`Service::NestedReturn`] slot, the arguments in registers.
    fn next_nested(&mut self, m: &mut Machine) {
        let ret = match self.slots.iter().find(|(_, s)| **s == Service::NestedReturn) {
            Some((a, _)) => *a,
            None => self.slot(m, Service::NestedReturn, true),
        };
        let n = self.nested.last_mut().expect("a nested call");
        let (func, args) = n.queue.pop().expect("a queued call");
        let sp = ((n.rsp - 0x200) & !0xf) - 8;
        write_u64(m, sp, ret);
        for (r, v) in [RCX, RDX, R8, R9].into_iter().zip(args) {
            m.set_register(r, v);
        }
        m.set_register(RSP, sp);
        m.set_rip(func);
    }

    fn nested_returned(&mut self, m: &mut Machine, _rax: u64) -> Result<(), String> {
        let Some(n) = self.nested.last() else { return Err("a nested call returned, but none was made".into()) };
        if !n.queue.is_empty() {
            self.next_nested(m);
            return Ok(());
        }
        let n = self.nested.pop().expect("checked");
        m.set_register(RSP, n.rsp);
        m.set_register(RAX, n.status);
        m.set_rip(n.slot);
        Ok(())
    }

    /// The next GetNextMonotonicCount value.
    fn monotonic(&mut self) -> u64 {
        self.monotonic += 1;
        self.monotonic
    }
}

impl Default for Env {
    fn default() -> Self {
        Env::new()
    }
}

/// What a service does when it is done.
pub enum Flow {
    /// Return this status.
    Return(u64),
    /// Call these module functions first (notifications), then return `status`.
    Call {
        /// The status to return at the end.
        status: u64,
        /// (function, arguments) in order.
        calls: Calls,
    },
}

/// Module functions to call, with their arguments, in order.
pub type Calls = Vec<(u64, [u64; 4])>;

/// A service's result: its name, how many arguments it takes, the GUID it named, and what it
/// does next.
pub type Served = (String, usize, Option<Guid>, Flow);
