//! The parts every PC board has, around a [`Chipset`]: RAM, the flat ROM (also in the legacy
//! BIOS window), SMRAM routing through [`crate::smram::route`] and PAM for every CPU access,
//! the PCI host (0xCF8/0xCFC), APM (0xB2/0xB3), debugcon (0x402), isa-debug-exit (0xF4), the minimal
//! LAPIC (0xFEE00000), the SMI latch with I/O traps and the SMI pin, the virtual clock and the
//! event queue. `pc.rs` and `q35.rs` choose the chipset.
//!
//! This file holds the [`Platform`] itself, its construction and the [`Bus`] the CPU drives,
//! which dispatches to the pieces beside it: `memory_map.rs` (where an address lands),
//! `ports.rs` (the fixed ports and the I/O traps), `pci_glue.rs` (configuration space and the
//! hosted PCI functions), `time.rs` (clock, deadlines, timers), `watches.rs` (the TSEG watch
//! and bus-master writes) and `requests.rs` (what the board asks of the machine and the
//! lines it drives). Unmapped memory and ports read as all ones and drop writes.
//!
//! Bus masters reach memory only through [`super::dma::DmaView`], and the RAM they write is
//! reported to the machine ([`Platform::take_dma_writes`]) so the CPU drops code it decoded
//! from it.
//!
//! Host pages: the CPU gets direct pointers for RAM and ROM pages. The answer for a page
//! depends only on the SMRAM configuration, PAM, the access kind and the SMM state; the CPU
//! keys its TLBs by kind and flushes them on SMM entry and exit, and whenever SMRAM or PAM
//! change the board asks the machine to flush the CPU ([`Platform::take_flush`], signalled
//! through `Pending::STOP`).

use super::dma::DmaWrites;
use super::legacy::LegacyDevices;
use super::memory_map::{crosses_page, Target, VGA_TEXT};
use super::port_map::PortMap;
use crate::chipset::Chipset;
use crate::clock::{Clock, Ticks};
use crate::devices::apm::Apm;
use crate::devices::debug_exit::DebugExit;
use crate::devices::debugcon::Debugcon;
use crate::devices::ioapic::Ioapic;
use crate::devices::lapic::Lapic;
use crate::devices::pflash_bank::PflashBank;
use crate::devices::reset_control::ResetControl;
use crate::devices::PortDevice;
use crate::events::{Events, MachineEvent};
use crate::memory::map::Reach;
use crate::memory::pam::Pam;
use crate::memory::rom::Rom;
use crate::memory::{read_le, write_le, Ram};
use crate::pci::host::{ones, PciHost};
use crate::pci::slots::PciSlots;
use crate::poll::PollForward;
use crate::smi::io_trap::IoTraps;
use crate::smi::pin::SmiPin;
use crate::smi::smi_load::SmiLoad;
use crate::smi::{lapic_ipi, SmiLatch};
use crate::smram::SmramConfig;
use cpu::{Access, AccessKind, Bus, Pending, SmmEntry, SmmExit};
use std::ptr::NonNull;

pub use super::ports::{platform_ports, PlatformPort, PORT_APM_CNT, PORT_DEBUGCON, PORT_DEBUG_EXIT, PORT_RESET_CONTROL};

/// A PC board around chipset `C`.
pub struct Platform<C: Chipset> {
    /// Guest RAM.
    pub ram: Ram,
    /// The firmware ROM (and its flash); with [`Platform::pflash`], the copy of unit 0's top
    /// in the legacy BIOS window.
    pub rom: Rom,
    /// The system flash units below 4 GiB, in place of the ROM there (`--pflash`).
    pub pflash: Option<PflashBank>,
    /// The chipset's registers and SMRAM/PAM decoding.
    pub chipset: C,
    /// PCI configuration mechanism #1 (0xCF8/0xCFC).
    pub pci: PciHost,
    /// APM_CNT/APM_STS (0xB2/0xB3).
    pub apm: Apm,
    /// The local APIC (SMI and INIT IPIs).
    pub lapic: Lapic,
    /// Port 0x402 output.
    pub debugcon: Debugcon,
    /// Port 0xF4.
    pub debug_exit: DebugExit,
    /// The SMI# request line and the cause of the SMI it carries.
    pub smi: SmiLatch,
    /// The I/O trap ranges.
    pub io_traps: IoTraps,
    /// Scheduled assertions of the SMI# pin.
    pub smi_pin: SmiPin,
    /// A replayed SMI load (`smmlab run --smi-load`).
    pub smi_load: SmiLoad,
    /// The event queue and the run counters.
    pub events: Events,
    /// PCI functions beyond the chipset's own registers: storage controllers (disks issue).
    pub pci_slots: PciSlots,
    /// SMM accesses for the auditor (off by default).
    pub smm_observer: super::observer::SmmObserver,
    /// Pause the run at the end of every debugcon line (the auditor's hand-off watch).
    pub pause_on_debugcon_line: bool,
    /// Ask for a pause when RSM returns from SMM (the host API's SW SMIs stop there).
    pub pause_on_rsm: bool,
    /// Ask for a pause right after every SMM entry (a debugger's break on SMI).
    pub pause_on_smm_entry: bool,
    /// Physical ranges whose writes pause the run (a debugger's write watchpoints): their
    /// pages get no direct write pointer, so every write, from SMM or not, comes here.
    pub write_watches: Vec<std::ops::Range<u64>>,
    /// The watched writes since the last look.
    pub watch_hits: Vec<crate::debug::WatchHit>,
    pub(super) pause: bool,
    /// Guest time runs faster while the guest busy-waits on the PM timer ([`crate::poll`]).
    pub poll: PollForward,
    /// The legacy PC devices and their port map.
    pub legacy: LegacyDevices,
    /// The platform's own fixed ports ([`platform_ports`]).
    pub(super) ports: PortMap<PlatformPort>,
    /// The I/O APIC.
    pub ioapic: Ioapic,
    /// The reset control register (0xCF9).
    pub reset_control: ResetControl,
    pub(super) vga_text: Vec<u8>,
    /// A20 level the guest asked for, waiting for the machine to apply it to the CPU.
    pub(super) a20_request: Option<bool>,
    /// The guest asked for a reset (0xCF9, port 0x92, 8042); the machine ends the run.
    pub(super) reset_requested: bool,
    pub(super) clock: Clock,
    pub(super) smram: SmramConfig,
    pub(super) pam: Pam,
    pub(super) flush: bool,
    /// RAM bus masters wrote since the machine last dropped the code decoded there.
    pub(super) dma_writes: DmaWrites,
    pub(super) resync: bool,
    /// Extra guest time (ticks) for SMM entry and for RSM.
    pub(super) smm_costs: (u64, u64),
    /// The guest asked for soft off (Some(from SMM)); the machine ends the run.
    pub(super) power_off: Option<bool>,
    /// The TSEG range (whatever T_EN says), once TSEG has been enabled.
    pub(super) tseg_watch: Option<std::ops::Range<u64>>,
    /// Whether code outside SMM can write the watched TSEG range now.
    pub(super) tseg_open: bool,
    /// Pages of the TSEG range written from outside SMM (one event each).
    pub(super) tseg_written: std::collections::BTreeSet<u64>,
    /// Of those, the pages SMM has fetched code from (reported once each).
    pub(super) foreign_code_seen: std::collections::BTreeSet<u64>,
    /// Flash blocks a refused write was reported for.
    pub(super) pflash_refused_blocks: std::collections::BTreeSet<u64>,
    /// End of the CPU slice in progress (None outside [`Machine::run`](crate::Machine::run)).
    pub(super) slice_end: Option<Ticks>,
    /// [`Platform::next_deadline`] as the last device call left it (None: not known). The
    /// CPU syncs its instruction count before every port access; this spares recomputing
    /// every timer's deadline each time. Any call that may touch a device forgets it.
    pub(super) deadline: Option<Option<Ticks>>,
}

impl<C: Chipset> Platform<C> {
    /// A board with `ram_size` bytes of RAM (all below 4 GiB), `rom` and `chipset`, with time
    /// running at `instructions_per_second`.
    pub fn new(ram_size: u64, rom: Vec<u8>, chipset: C, instructions_per_second: u64) -> Self {
        let ram = Ram::new(ram_size);
        let smram = chipset.smram(ram.len());
        let pam = chipset.pam();
        let legacy = LegacyDevices::new(ram_size, chipset.smi_feature_negotiation(), chipset.s5_sleep_type(), instructions_per_second);
        Platform {
            ram,
            rom: Rom::new(rom),
            pflash: None,
            chipset,
            pci: PciHost::default(),
            apm: Apm::default(),
            lapic: Lapic::new_bsp(instructions_per_second),
            debugcon: Debugcon::default(),
            debug_exit: DebugExit::default(),
            smi: SmiLatch::default(),
            io_traps: IoTraps::default(),
            smi_pin: SmiPin::default(),
            smi_load: SmiLoad::default(),
            events: Events::default(),
            pci_slots: PciSlots::default(),
            smm_observer: Default::default(),
            pause_on_debugcon_line: false,
            pause_on_rsm: false,
            pause_on_smm_entry: false,
            write_watches: Vec::new(),
            watch_hits: Vec::new(),
            pause: false,
            poll: PollForward::default(),
            legacy,
            ports: platform_ports().expect("the platform's fixed port ranges do not overlap"),
            ioapic: Ioapic::default(),
            reset_control: ResetControl::default(),
            vga_text: vec![0; (VGA_TEXT.end - VGA_TEXT.start) as usize],
            a20_request: None,
            reset_requested: false,
            clock: Clock::new(instructions_per_second),
            smram,
            pam,
            flush: false,
            dma_writes: DmaWrites::default(),
            resync: false,
            smm_costs: (0, 0),
            power_off: None,
            tseg_watch: None,
            tseg_open: false,
            tseg_written: Default::default(),
            foreign_code_seen: Default::default(),
            pflash_refused_blocks: Default::default(),
            slice_end: None,
            deadline: None,
        }
    }
}

impl<C: Chipset> Platform<C> {
    /// After SMM's read `a`: the staged race write ([`super::observer::RaceWrite`]) if this
    /// read was the one it waits for, made as an agent outside SMM would make it.
    fn race_write(&mut self, a: &Access) {
        let Some(r) = self.smm_observer.race_due(a.kind, a.addr, a.size) else { return };
        for (i, b) in r.bytes.iter().enumerate() {
            let at = r.addr.wrapping_add(i as u64);
            if let Target::Ram(o) = self.route(at, AccessKind::Write, false) {
                self.ram.write_le(o, 1, u64::from(*b));
            }
        }
    }
}

impl<C: Chipset> Bus for Platform<C> {
    fn read(&mut self, a: Access) -> u64 {
        if crosses_page(&a) {
            // The CPU splits its own page-crossing accesses; bus masters and the host may not.
            return (0..u64::from(a.size)).fold(0, |v, k| v | self.read(Access { addr: a.addr.wrapping_add(k), size: 1, ..a }) << (8 * k));
        }
        if a.smm && self.smm_observer.enabled {
            self.observe(&a, a.kind);
        }
        if a.smm && a.kind == AccessKind::Fetch && !self.tseg_written.is_empty() {
            self.smm_fetch(a.addr & !0xfff);
        }
        let target = self.route(a.addr, a.kind, a.smm);
        if !matches!(target, Target::Ram(_) | Target::Rom(_) | Target::VgaText(_) | Target::None) {
            // A device register may change state when read.
            self.deadline = None;
        }
        let v = match target {
            Target::Ram(o) => self.ram.read_le(o, a.size),
            Target::Rom(o) => self.rom.read_le(o, a.size),
            Target::Pflash(u, o) => self.pflash.as_ref().map_or(0, |b| b.units()[u].flash.read(o, a.size, a.smm)),
            Target::Lapic(o) => self.lapic.read(o, a.size, self.clock.now()) as u64,
            Target::Ioapic(o) => self.ioapic.read(o, a.size) as u64,
            Target::VgaText(o) => read_le(&self.vga_text, o as usize, a.size),
            Target::Ecam(b, d, f, r) => {
                let size = a.size.clamp(1, 4);
                self.config_read(b, d, f, r, size).unwrap_or(ones(size)) as u64
            }
            Target::PciMmio => self.slot_access(a.addr, a.size, None) as u64,
            Target::Chipset => self.chipset.mmio_read(a.addr, a.size),
            Target::None => u64::MAX >> (64 - 8 * a.size.clamp(1, 8) as u32),
        };
        if a.smm && self.smm_observer.race.is_some() {
            self.race_write(&a);
        }
        v
    }

    fn write(&mut self, a: Access, value: u64) {
        if crosses_page(&a) {
            for k in 0..u64::from(a.size) {
                self.write(Access { addr: a.addr.wrapping_add(k), size: 1, ..a }, value >> (8 * k));
            }
            return;
        }
        if a.smm && self.smm_observer.enabled {
            self.observe(&a, AccessKind::Write);
        }
        if !self.write_watches.is_empty() {
            let end = a.addr.saturating_add(u64::from(a.size));
            if self.write_watches.iter().any(|w| w.start < end && a.addr < w.end) {
                self.watch_hits.push(crate::debug::WatchHit { addr: a.addr, size: a.size, smm: a.smm });
                self.pause = true;
            }
        }
        let target = self.route(a.addr, AccessKind::Write, a.smm);
        if !matches!(target, Target::Ram(_) | Target::VgaText(_) | Target::None) {
            self.deadline = None;
        }
        match target {
            Target::Ram(o) => {
                if !a.smm && self.in_open_tseg(a.addr) {
                    self.tseg_written_outside_smm(a.addr);
                }
                self.ram.write_le(o, a.size, value)
            }
            Target::Rom(o) => {
                self.rom.write_le(o, a.size, value);
                // The CPU may have decoded code from these bytes.
                self.flush = true;
            }
            Target::Pflash(u, o) => self.pflash_write(u, o, a, value),
            Target::Chipset => self.chipset.mmio_write(a.addr, a.size, value),
            Target::Lapic(o) => {
                self.poll.disturb();
                let action = self.lapic.write(o, a.size, value as u32, self.clock.now());
                lapic_ipi::lapic_written(action, self.clock.now(), &mut self.smi);
                self.after_device_call();
            }
            Target::Ioapic(o) => {
                self.poll.disturb();
                self.ioapic.write(o, a.size, value as u32);
            }
            Target::VgaText(o) => write_le(&mut self.vga_text, o as usize, a.size, value),
            Target::Ecam(b, d, f, r) => {
                self.poll.disturb();
                self.config_write(b, d, f, r, a.size.clamp(1, 4), value as u32);
            }
            Target::PciMmio => {
                self.poll.disturb();
                self.slot_access(a.addr, a.size, Some(value as u32));
            }
            Target::None => {}
        }
    }

    fn io_in(&mut self, a: Access) -> u32 {
        let (port, size) = (a.addr as u16, a.size.clamp(1, 4));
        if self.trap(port, size, false, 0) {
            self.poll.disturb();
            self.after_device_call();
            return ones(size);
        }
        if !a.smm && Some(port) == self.chipset.pm_timer_port() {
            self.poll_timer();
        }
        let now = self.clock.now();
        let v = match self.ports.lookup(port) {
            Some((PlatformPort::ConfigAddress, _)) if port == PORT_RESET_CONTROL && size == 1 => self.reset_control.read(0, size, now),
            Some((PlatformPort::ConfigAddress | PlatformPort::ConfigData, _)) => self.pci_read(port, size),
            Some((PlatformPort::Apm, o)) => self.apm.read(o, size),
            Some((PlatformPort::Debugcon, _)) => Debugcon::READBACK,
            Some((PlatformPort::DebugExit, _)) | None => {
                if let Some(v) = self.chipset.io_read(port, size, now) {
                    v
                } else if let Some(v) = self.slot_io(port, size, None) {
                    v
                } else if let Some(v) = self.legacy.io_read(port, size, now) {
                    v
                } else {
                    ones(size)
                }
            }
        };
        self.after_device_call();
        v
    }

    fn io_out(&mut self, a: Access, value: u32) {
        let (port, size) = (a.addr as u16, a.size.clamp(1, 4));
        self.poll.disturb();
        if self.trap(port, size, true, value) {
            self.after_device_call();
            return;
        }
        let now = self.clock.now();
        match self.ports.lookup(port) {
            Some((PlatformPort::ConfigAddress, _)) if port == PORT_RESET_CONTROL && size == 1 => {
                self.reset_control.write(0, size, value, now);
                self.after_legacy_write();
            }
            Some((PlatformPort::ConfigAddress | PlatformPort::ConfigData, _)) => self.pci_write(port, size, value),
            Some((PlatformPort::Apm, o)) => {
                if let Some(cmd) = self.apm.write(o, size, value) {
                    let data = self.apm.data();
                    self.chipset.apm_command(cmd, data, now, &mut self.smi);
                }
            }
            Some((PlatformPort::Debugcon, _)) => {
                self.debugcon.write(value as u8);
                self.events.debugcon_byte(value as u8, now.0, a.smm);
                self.pause |= self.pause_on_debugcon_line && value as u8 == b'\n';
                // No device, timer or SMI source moved: nothing for after_device_call.
                return;
            }
            Some((PlatformPort::DebugExit, _)) => self.debug_exit.write(value),
            None => {
                if self.slot_io(port, size, Some(value)).is_some() {
                } else if !self.chipset.io_write(port, size, value, now, &mut self.smi) && self.legacy.io_write(port, size, value, now) {
                    self.after_legacy_write();
                }
            }
        }
        if self.chipset.take_power_off() && self.power_off.is_none() {
            self.power_off = Some(a.smm);
            self.events.push(MachineEvent::PowerOff { from_smm: a.smm, icount: now.0 });
        }
        self.after_device_call();
    }

    fn host_page(&mut self, page: u64, kind: AccessKind, smm: bool) -> Option<NonNull<u8>> {
        if kind == AccessKind::Write && self.write_watches.iter().any(|w| w.start < page.saturating_add(0x1000) && page < w.end) {
            return None;
        }
        // Observed, SMM's accesses come here one by one; in the fuzzer's mode, reads and
        // fetches of pages wholly in SMRAM need not (the oracles judge what SMM does outside
        // SMRAM and what it writes inside).
        if smm && self.smm_observer.enabled && !(self.smm_observer.fuzz_mode && kind != AccessKind::Write && self.smram_page(page)) {
            return None;
        }
        if !smm && kind == AccessKind::Write && self.in_open_tseg(page) {
            return None;
        }
        // The CPU asks for a fetch page again after every SMM entry (the TLB is flushed), so
        // this sees every page SMM runs code from.
        if smm && kind == AccessKind::Fetch && !self.tseg_written.is_empty() {
            self.smm_fetch(page & !0xfff);
        }
        // DRAM space straight from the map (the CPU asks for a few pages after every SMM entry
        // and exit); the rest as `route` decides.
        let rom = match self.dram_map().reach(page, kind, smm) {
            Reach::Ram(o) => return self.ram.page_ptr(o, kind == AccessKind::Write),
            Reach::PamRom => self.rom.isa_offset(page),
            Reach::Beyond => match self.route(page, kind, smm) {
                Target::Ram(o) => return self.ram.page_ptr(o, kind == AccessKind::Write),
                Target::Rom(o) => Some(o),
                Target::Pflash(u, o) if kind != AccessKind::Write => {
                    let f = &self.pflash.as_ref()?.units()[u].flash;
                    return if f.direct_reads(smm) { f.page_ptr(o) } else { None };
                }
                _ => None,
            },
            Reach::Hole | Reach::VgaWindow => None,
        };
        rom.filter(|_| kind != AccessKind::Write).and_then(|o| self.rom.page_ptr(o))
    }

    fn idle_ticks(&self) -> u64 {
        self.clock.idle()
    }

    fn smm_instruction(&mut self, rip: u64) {
        self.smm_observer.rip = rip;
    }

    fn smm_block(&mut self, phys: u64) {
        // In the fuzzer's mode code stays decoded, so a call-out's block fetches nothing the
        // second time: its start is recorded as a fetch (kept only outside SMRAM).
        if self.smm_observer.enabled && self.smm_observer.fuzz_mode {
            self.observe(&Access { addr: phys, size: 1, kind: AccessKind::Fetch, smm: true }, AccessKind::Fetch);
        }
    }

    fn sync_icount(&mut self, icount: u64) {
        self.clock.set_icount(icount);
        let deadline = match self.deadline {
            Some(d) => d,
            None => {
                let d = self.next_deadline();
                self.deadline = Some(d);
                d
            }
        };
        if deadline.is_some_and(|d| d <= self.clock.now()) {
            self.advance_timers();
        }
    }

    /// Computed at every call: the boards cache it ([`super::pending_cache::PendingCache`]).
    fn pending(&mut self) -> Pending {
        self.compute_pending()
    }

    fn ack_intr(&mut self) -> u8 {
        self.deadline = None;
        self.poll.disturb();
        if let Some(v) = self.lapic.ack() {
            return v;
        }
        self.legacy.pics.ack()
    }

    fn ack_smi(&mut self) {
        self.deadline = None;
        self.smi.ack();
    }

    fn smm_entered(&mut self, e: &SmmEntry) {
        self.deadline = None;
        self.pause |= self.pause_on_smm_entry;
        self.poll.disturb();
        let cause = self.smi.take_taken();
        let icount = e.icount.saturating_add(self.clock.idle());
        self.events.push(MachineEvent::SmmEntered { cause, smbase: e.smbase, cs: e.cs, rip: e.rip, mode: e.mode, icount });
        // A replayed SMI's handler takes its recorded time (all SMIs raised by the load so
        // far: SMI# is one wire, so this entry serves them).
        let busy = self.smm_costs.0.saturating_add(self.smi_load.take_owed());
        if busy > 0 {
            self.clock.set_icount(e.icount);
            self.pass_time(busy);
        }
    }

    fn smm_left(&mut self, e: &SmmExit) {
        self.deadline = None;
        self.pause |= self.pause_on_rsm;
        if self.smm_costs.1 > 0 {
            self.clock.set_icount(e.icount);
            self.pass_time(self.smm_costs.1);
        }
        let icount = e.icount.saturating_add(self.clock.idle());
        match &e.shutdown {
            None => self.events.push(MachineEvent::RsmCompleted {
                smbase: e.smbase,
                rip: e.rip,
                mode: e.mode,
                smm_instructions: e.smm_instructions,
                icount,
            }),
            Some(reason) => self.events.push(MachineEvent::RsmFailed { reason: reason.clone(), icount }),
        }
    }
}
