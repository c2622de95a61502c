//! A UEFI firmware booted whole from flash (OVMF) as a campaign's [`Subject`]: booted once to
//! the UEFI Shell's prompt (`audit::boot`, as `smmlab audit --pflash` boots it: DXE done,
//! SMRAM locked, ReadyToBoot signalled), its GUID handlers read out of SMRAM (the inventory),
//! snapshotted. Each execution restores the snapshot and sends the input to a handler the way
//! an OS-level attacker reaches it: through the SMM core's communication path
//! ([`audit::uefi::communicate`]: the header and message in runtime memory right after the
//! core's private data, then the SMI OVMF's SmmControl2 raises), and judges the SMI with the
//! module subject's oracles ([`crate::judge_message`]) and reruns ([`crate::confirm`]).
//!
//! The input is the message after the 24-byte header. With every handler (`handler` None)
//! its first byte picks the handler (its index among the inventory's GUID handlers, modulo
//! their number) and the message follows.
//!
//! Not judged here: SMM103 (a write outside SMRAM and the message). The firmware's handlers
//! write their own runtime data by design (the variable driver's runtime cache, for one),
//! which the auditor cannot yet tell from a write to memory nobody passed.

use crate::campaign::{Execution, Subject};
use crate::confirm::{self, Judged, Settled};
use crate::{aiming, Broken};
use audit::uefi;
use fwimage::Guid;
use machine::board::observer::{RaceWrite, SmmAccess, SmmAccessKind};
use machine::host::{Snapshot, SwSmiOutcome};
use machine::Machine;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

/// Instructions one SMI may take before it is a hang (OVMF's SMI entry, the core's dispatch
/// and the variable driver's work take tens of thousands).
pub const SMI_BUDGET: u64 = 5_000_000;

/// Why the booted firmware cannot be fuzzed.
#[derive(Debug, thiserror::Error)]
pub enum FlashError {
    /// The boot.
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
    /// The boot ended before the Shell.
    #[error("the firmware did not reach the UEFI Shell: {0}")]
    NoHandoff(String),
    /// No edk2 SMM core found.
    #[error("no SMM core's private data ('smmc') below SMRAM: not an edk2 SMM firmware, or its SMM did not start")]
    NoCore,
    /// The handler asked for is not registered.
    #[error("no GUID handler {0} is registered at the Shell; the firmware's are: {1}")]
    NoHandler(Guid, String),
    /// The firmware registered no GUID handler.
    #[error("the firmware registered no GUID handler")]
    NoHandlers,
}

/// One GUID handler of the inventory.
#[derive(Clone, Debug)]
pub struct Handler {
    /// Its HandlerType.
    pub guid: Guid,
    /// Its name and where it is (`gEfiSmmVariableProtocolGuid (VariableSmm+0x...)`).
    pub label: String,
}

/// The booted firmware, snapshotted at the Shell.
pub struct FlashSubject {
    /// The machine.
    pub machine: Machine,
    snap: Snapshot,
    smmc: u64,
    buffer: u64,
    /// The firmware's GUID handlers.
    pub handlers: Vec<Handler>,
    /// The one fuzzed (an index into `handlers`; None: the input's first byte picks).
    pub handler: Option<usize>,
    smram: Vec<Range<u64>>,
    map: uefi_smm::images::ModuleMap,
    by_design: Vec<Range<u64>>,
    control: BTreeMap<usize, BTreeSet<u64>>,
    settled: Settled,
    race: Option<RaceWrite>,
}

impl FlashSubject {
    /// Boots `o` (flash units in `o.pflash`) to the Shell and picks `handler` (None: all).
    pub fn boot(o: &audit::BootOptions, handler: Option<Guid>) -> Result<Self, FlashError> {
        let booted = audit::boot::boot(o)?;
        if !booted.marker {
            return Err(FlashError::NoHandoff(booted.stopped));
        }
        let mut m = booted.machine;
        let smram = audit::dump::ranges(&m);
        let smmc = uefi::core_private_data(&mut m, &smram).ok_or(FlashError::NoCore)?;
        let fw = uefi::firmware_volumes(&m);
        let snapshot = audit::dump::snapshot_of(&mut m, &smram);
        let inv = uefi_smm::Inventory::build(&snapshot, fw.as_ref());
        let mut handlers: Vec<Handler> = Vec::new();
        for h in inv.handlers.iter().filter(|h| h.kind == "guid") {
            let Some(guid) = h.guid.as_deref().and_then(|g| g.parse::<Guid>().ok()) else { continue };
            if !handlers.iter().any(|x| x.guid == guid) {
                handlers.push(Handler { guid, label: format!("{} ({})", h.guid_name.unwrap_or(h.guid.as_deref().unwrap_or_default()), h.handler.at) });
            }
        }
        if handlers.is_empty() {
            return Err(FlashError::NoHandlers);
        }
        let handler = match handler {
            None => None,
            Some(g) => Some(handlers.iter().position(|h| h.guid == g).ok_or_else(|| FlashError::NoHandler(g, handlers.iter().map(|h| h.guid.to_string()).collect::<Vec<_>>().join(", ")))?),
        };
        let private = smmc..smmc + uefi::SMMC_SIZE;
        // As the audit's sweep: a call-out is seen, not a machine check.
        m.set_smm_code_check(false);
        m.observe_smm(true);
        m.fuzz_mode(true);
        let snap = m.snapshot();
        let map = uefi_smm::images::ModuleMap::new(inv.modules.clone());
        Ok(FlashSubject { machine: m, snap, smmc, buffer: smmc + uefi::SMMC_SIZE, handlers, handler, smram, map, by_design: vec![private], control: BTreeMap::new(), settled: Settled::default(), race: None })
    }

    /// The handler `input` goes to and where its message starts in it.
    pub fn split(&self, input: &[u8]) -> (usize, usize) {
        match self.handler {
            Some(i) => (i, 0),
            None => (usize::from(input.first().copied().unwrap_or(0)) % self.handlers.len(), 1),
        }
    }

    /// Where the message starts in guest memory (after the communication header).
    pub fn message_at(&self) -> u64 {
        self.buffer + 24
    }

    /// Runs `input` once from the snapshot: the outcome and the SMI's accesses.
    pub fn raise(&mut self, input: &[u8]) -> (SwSmiOutcome, Vec<SmmAccess>) {
        let (i, skip) = self.split(input);
        let msg = &input[skip.min(input.len())..];
        let msg = &msg[..msg.len().min(crate::MAX_INPUT)];
        let m = &mut self.machine;
        // The snapshot is the machine's only one: restore cannot refuse.
        let _ = m.restore(&self.snap);
        let race = self.race.take();
        let staged = race.is_some();
        if staged {
            m.stage_race_write(race);
        }
        let c = uefi::communicate(m, self.smmc, self.buffer, &self.handlers[i].guid.0, msg, None, SMI_BUDGET);
        if staged {
            m.stage_race_write(None);
        }
        (c.outcome, c.accesses)
    }

    fn control(&mut self, i: usize) -> &BTreeSet<u64> {
        if !self.control.contains_key(&i) {
            let mut zero = vec![0u8; 0x40];
            if self.handler.is_none() {
                zero.insert(0, i as u8);
            }
            // The control is a judgement, not coverage.
            let map = self.machine.cover_smm_edges(None);
            let (_, acc) = self.raise(&zero);
            self.machine.cover_smm_edges(map);
            let set = acc.iter().filter(|a| a.smram && a.kind == SmmAccessKind::Write).flat_map(|a| a.addr..a.addr + u64::from(a.size)).collect();
            self.control.insert(i, set);
        }
        &self.control[&i]
    }
}

impl Subject for FlashSubject {
    fn machine(&mut self) -> &mut Machine {
        &mut self.machine
    }

    fn execute(&mut self, input: &[u8]) -> Execution {
        let (i, skip) = self.split(input);
        self.control(i);
        let (outcome, acc) = self.raise(input);
        let msg = &input[skip.min(input.len())..];
        let fault = match &outcome {
            SwSmiOutcome::Fault(why) => Some(why.as_str()),
            _ => None,
        };
        let smram = &self.smram;
        let in_smram = |a: u64| smram.iter().any(|r| r.contains(&a));
        let mut broken: Vec<Broken> = crate::judge_message(self.message_at(), msg, fault, &acc, &self.control[&i], &in_smram, &self.by_design);
        let instructions = match outcome {
            SwSmiOutcome::Returned { instructions, .. } => instructions,
            _ => 0,
        };
        if broken.is_empty() {
            return Execution { broken, wild_fault: false, instructions };
        }
        // The reruns work on the input: the message's offsets move by the selector byte.
        for b in &mut broken {
            if let Some((a, _)) = b.reread {
                b.reread = Some((a, input.get(skip + (a - self.message_at()) as usize).copied().unwrap_or(0)));
            }
        }
        let faulted = fault.is_some();
        let control = self.control[&i].clone();
        let aim = |addr: u64| aiming(input, skip..input.len().saturating_sub(7), addr);
        let tame = {
            let mut t = input[..skip.min(input.len())].to_vec();
            t.extend(crate::tamed(&crate::Target::Guid(self.handlers[i].guid), msg));
            (faulted && t != input).then_some(t)
        };
        let j = Judged { input, acc: &acc, faulted, control: &control, aiming: &aim, tame };
        let mut settled = std::mem::take(&mut self.settled);
        let wild_fault = confirm::confirm(&mut broken, &j, &mut settled, &mut |i, race| {
            confirm::rerun(self, |s| {
                s.race = race;
                s.raise(i)
            })
        });
        self.settled = settled;
        Execution { broken, wild_fault, instructions }
    }

    fn found(&mut self, rule: &'static str, key: u64) {
        self.settled.found(rule, key);
    }

    fn tokens(&self) -> Vec<Vec<u8>> {
        let mut words = vec![self.message_at(), self.buffer];
        for r in &self.smram {
            let (base, size) = (r.start, r.end - r.start);
            words.extend([base, base + size / 2, base + size / 2 + 0x100, base + size - 8]);
        }
        words.into_iter().chain(0..=16).map(|w| w.to_le_bytes().to_vec()).collect()
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        // Per handler: an all-zero message and edk2's {Function, ReturnStatus} header with
        // function 1.
        let picks: Vec<Option<u8>> = match self.handler {
            Some(_) => vec![None],
            None => (0..self.handlers.len().min(256)).map(|i| Some(i as u8)).collect(),
        };
        let mut out = Vec::new();
        for p in picks {
            for msg in [vec![0u8; 24], [1u64, 0, 0].iter().flat_map(|w| w.to_le_bytes()).collect()] {
                out.push(p.into_iter().chain(msg).collect());
            }
        }
        out
    }

    fn place(&self, rip: u64) -> String {
        self.map.name(rip)
    }
}
