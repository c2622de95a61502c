//! The reruns that decide whether what the oracles saw in one execution is a finding, shared
//! by the subjects (each says only how it runs an input again, with coverage off: a rerun is
//! a judgement, not coverage):
//! - SMM102: the write into SMRAM follows the input word aimed at it
//!   ([`crate::write_follows_input`]).
//! - SMM104: a byte of the attacker's memory read twice is raced: the input run again with
//!   that byte changed right after SMM's first read of it (what another CPU or a DMA agent
//!   can do between the two fetches) must write SMRAM the unraced run did not, or not come
//!   back ([`audit::behaviour::RaceEffect`]). A memcpy loading overlapping chunks, or a field
//!   read twice whose second value is checked again, is not one. This is the audit's proof
//!   of a double fetch; no distance between the reads is assumed.
//! - SMM106: a fault of an input with wild words counts only if the input with them tamed
//!   faults too ([`crate::tamed`]).

use crate::Broken;
use audit::behaviour::RaceEffect;
use audit::rules;
use machine::board::observer::{RaceWrite, SmmAccess};
use machine::host::SwSmiOutcome;
use std::collections::BTreeSet;

/// One run of an input again: why it did not come back (None: it did) and its accesses.
pub type Rerun = (Option<String>, Vec<SmmAccess>);

/// What a subject keeps between executions about its candidates.
#[derive(Debug, Default)]
pub struct Settled {
    /// Double-fetch instructions whose race changed nothing: not raced again.
    refuted: BTreeSet<u64>,
    /// Findings the campaign has saved ([`crate::Subject::found`]): not proved again.
    found: BTreeSet<(&'static str, u64)>,
}

impl Settled {
    /// The campaign saved the finding `rule` at `key`.
    pub fn found(&mut self, rule: &'static str, key: u64) {
        self.found.insert((rule, key));
    }
}

/// The execution's own run and what the reruns need.
pub struct Judged<'a> {
    /// The input.
    pub input: &'a [u8],
    /// Its accesses.
    pub acc: &'a [SmmAccess],
    /// It did not come back.
    pub faulted: bool,
    /// The SMRAM bytes the control run wrote.
    pub control: &'a BTreeSet<u64>,
    /// The byte offsets of the input's words aimed at an SMRAM address.
    pub aiming: &'a dyn Fn(u64) -> Vec<usize>,
    /// The input with its wild words tamed, when it faulted and has any.
    pub tame: Option<Vec<u8>>,
}

/// A rerun for [`confirm`]: `run` on `subject` with the edge map off (a rerun is a judgement,
/// not coverage), its outcome reduced to why it faulted.
pub fn rerun<S: crate::campaign::Subject>(subject: &mut S, run: impl FnOnce(&mut S) -> (SwSmiOutcome, Vec<SmmAccess>)) -> Rerun {
    let map = subject.machine().cover_smm_edges(None);
    let (outcome, acc) = run(subject);
    subject.machine().cover_smm_edges(map);
    (match outcome {
        SwSmiOutcome::Fault(why) => Some(why),
        _ => None,
    }, acc)
}

/// Keeps in `broken` what the reruns confirm; true when the execution faulted only on its wild
/// words (not a finding). `run` runs an input again, with a race staged when given.
pub fn confirm(broken: &mut Vec<Broken>, j: &Judged, settled: &mut Settled, run: &mut dyn FnMut(&[u8], Option<RaceWrite>) -> Rerun) -> bool {
    if let Some(addr) = broken.iter().find_map(|b| b.written) {
        let offsets = (j.aiming)(addr);
        if !crate::write_follows_input(j.input, &offsets, addr, j.control, &mut |moved| run(moved, None).1) {
            broken.retain(|b| b.written.is_none());
        }
    }
    let mut refuted = BTreeSet::new();
    for b in broken.iter_mut() {
        let Some((addr, was)) = b.reread else { continue };
        if settled.found.contains(&(b.rule, b.key)) {
            continue;
        }
        if j.faulted || settled.refuted.contains(&b.key) {
            refuted.insert(b.key);
            continue;
        }
        let byte = if was == 0xff { 0 } else { 0xff };
        let (fault, raced) = run(j.input, Some(RaceWrite { addr, bytes: vec![byte] }));
        match RaceEffect::of(j.acc, &raced, fault) {
            Some(e) => b.message.push_str(&format!("; raced, proved: with the byte set to {byte:#04x} right after SMM's first read of it, {}", e.describe())),
            None => {
                settled.refuted.insert(b.key);
                refuted.insert(b.key);
            }
        }
    }
    broken.retain(|b| b.reread.is_none() || !refuted.contains(&b.key));
    let mut wild_fault = false;
    if let Some(tame) = &j.tame {
        if run(tame, None).0.is_none() {
            broken.retain(|b| b.rule != rules::HANDLER_FAULT);
            wild_fault = true;
        }
    }
    wild_fault
}

/// The double-fetch candidates in `acc`: each instruction that read a byte of `window` (the
/// attacker's memory, from its first address) again, with the first byte it read again and
/// that byte's value in the input (`byte_at`).
pub fn double_fetches(window: &audit::behaviour::Pattern, acc: &[SmmAccess], byte_at: &dyn Fn(u64) -> u8, what: &str, from: u64) -> Vec<Broken> {
    let mut seen = BTreeSet::new();
    audit::behaviour::rereads(window, acc, 0)
        .into_iter()
        .filter(|&(_, rip)| seen.insert(rip))
        .map(|(a, rip)| Broken {
            rule: rules::DOUBLE_FETCH,
            message: format!("SMM read the {what}'s byte at {a:#x} (offset {:#x}) twice (double fetch)", a.wrapping_sub(from)),
            key: rip,
            rip: Some(rip),
            written: None,
            reread: Some((a, byte_at(a))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use machine::board::observer::SmmAccessKind;

    const MSG: u64 = 0x50_0018;

    fn read(seq: u64, addr: u64, size: u8, rip: u64) -> SmmAccess {
        SmmAccess { seq, kind: SmmAccessKind::Read, addr, size, smram: false, rip }
    }

    fn smram_write(addr: u64, size: u8) -> SmmAccess {
        SmmAccess { seq: 9, kind: SmmAccessKind::Write, addr, size, smram: true, rip: 0x2000 }
    }

    fn window(len: u64) -> audit::behaviour::Pattern {
        audit::behaviour::Pattern { name: "fuzz", ptr: Some(MSG), window: len, into_smram: false, header: false }
    }

    fn judged<'a>(input: &'a [u8], acc: &'a [SmmAccess], control: &'a BTreeSet<u64>, aiming: &'a dyn Fn(u64) -> Vec<usize>) -> Judged<'a> {
        Judged { input, acc, faulted: false, control, aiming, tame: None }
    }

    #[test]
    fn a_reread_is_a_candidate_per_instruction_with_the_inputs_byte() {
        // Length read by 0x1010, read again by 0x1020 one access later (no distance assumed).
        let acc = [read(0, MSG, 8, 0x1010), read(1, MSG, 8, 0x1020), read(2, MSG + 8, 8, 0x1030)];
        let input = [0x20u8, 0, 0, 0, 0, 0, 0, 0, 0xaa];
        let c = double_fetches(&window(16), &acc, &|a| input[(a - MSG) as usize], "message", MSG);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!((c[0].key, c[0].reread), (0x1020, Some((MSG, 0x20))));
    }

    #[test]
    fn a_race_that_writes_more_smram_proves_it_and_one_that_does_not_is_refuted_once() {
        let input = [0u8; 16];
        let acc = [read(0, MSG, 8, 0x1010), read(1, MSG, 8, 0x1020), smram_write(0x7ffe000, 8)];
        let control = BTreeSet::new();
        let aiming = |_| Vec::new();
        let candidate = || double_fetches(&window(16), &acc, &|_| 0, "message", MSG);
        // The handler that copies Length bytes: raced to 0xff, it writes past its buffer.
        let mut settled = Settled::default();
        let mut broken = candidate();
        let mut races = Vec::new();
        confirm(&mut broken, &judged(&input, &acc, &control, &aiming), &mut settled, &mut |_, race| {
            races.push(race.clone());
            (None, vec![smram_write(0x7ffe000, 8), smram_write(0x7ffe008, 0xf7)])
        });
        assert_eq!(races, vec![Some(RaceWrite { addr: MSG, bytes: vec![0xff] })]);
        assert_eq!(broken.len(), 1);
        assert!(broken[0].message.contains("raced, proved: with the byte set to 0xff right after SMM's first read of it, the handler wrote 247 more SMRAM bytes"), "{}", broken[0].message);
        // A memcpy's overlapping loads: the race changes what is copied, not where.
        let mut broken = candidate();
        let mut runs = 0;
        let mut same = |_: &[u8], _: Option<RaceWrite>| {
            runs += 1;
            (None, vec![smram_write(0x7ffe000, 8)])
        };
        let mut settled = Settled::default();
        confirm(&mut broken, &judged(&input, &acc, &control, &aiming), &mut settled, &mut same);
        assert!(broken.is_empty());
        // Refuted once, not raced again.
        let mut broken = candidate();
        confirm(&mut broken, &judged(&input, &acc, &control, &aiming), &mut settled, &mut same);
        assert!(broken.is_empty());
        assert_eq!(runs, 1);
    }

    #[test]
    fn a_saved_finding_is_not_raced_again() {
        let input = [0u8; 16];
        let acc = [read(0, MSG, 8, 0x1010), read(1, MSG, 8, 0x1020)];
        let (control, aiming) = (BTreeSet::new(), |_| Vec::new());
        let mut settled = Settled::default();
        settled.found(rules::DOUBLE_FETCH, 0x1020);
        let mut broken = double_fetches(&window(16), &acc, &|_| 0, "message", MSG);
        confirm(&mut broken, &judged(&input, &acc, &control, &aiming), &mut settled, &mut |_, _| panic!("raced again"));
        assert_eq!(broken.len(), 1);
    }
}
