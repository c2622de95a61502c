//! The parts every PC board has, around a [`Chipset`]: RAM, the flat ROM (also in the legacy
//! BIOS window), SMRAM routing through [`smram::route`] and PAM for every CPU access, the PCI
//! host (0xCF8/0xCFC), APM (0xB2/0xB3), debugcon (0x402), isa-debug-exit (0xF4), the minimal
//! LAPIC (0xFEE00000), the SMI latch with I/O traps and the SMI pin, the virtual clock and the
//! event queue. `pc.rs` and `q35.rs` choose the chipset.
//!
//! Memory map below 4 GiB: RAM from 0 to the top of low RAM, except 0xA0000-0xBFFFF (VGA/PCI
//! hole unless SMRAM routes it to RAM) and 0xC0000-0xFFFFF (PAM: RAM or the ROM side; the
//! ROM side shows the BIOS at 0xE0000-0xFFFFF and nothing at 0xC0000-0xDFFFF); TSEG inside
//! RAM as SMRAM says; HSEG at 0xFEDA0000; the LAPIC page; the ROM ending at 4 GiB. Unmapped
//! memory and ports read as all ones and drop writes.
//!
//! Which DRAM an access reaches (SMRAM through [`smram::route`], the VGA window, PAM, RAM) is
//! decided by [`DramMap::reach`] for CPU accesses and bus masters alike; bus masters reach
//! memory only through [`DmaView`], and the RAM they write is reported to the machine
//! ([`Platform::take_dma_writes`]) so the CPU drops code it decoded from it.
//!
//! Host pages: the CPU gets direct pointers for RAM and ROM pages. The answer for a page
//! depends only on the SMRAM configuration, PAM, the access kind and the SMM state; the CPU
//! keys its TLBs by kind and flushes them on SMM entry and exit, and whenever SMRAM or PAM
//! change the board asks the machine to flush the CPU ([`Platform::take_flush`], signalled
//! through `Pending::STOP`).

use crate::chipset::Chipset;
use crate::clock::{Clock, Ticks};
use crate::devices::apm::Apm;
use crate::devices::debug_exit::DebugExit;
use crate::devices::debugcon::Debugcon;
use crate::devices::lapic::{Lapic, LAPIC_BASE};
use crate::devices::pflash::WriteOutcome;
use crate::devices::pflash_bank::PflashBank;
// --- legacy devices (platform issue) ---
use super::legacy::LegacyDevices;
use crate::devices::ioapic::{Ioapic, IOAPIC_BASE};
use crate::devices::reset_control::ResetControl;
use crate::devices::PortDevice;
// --- end legacy devices ---
// --- disks: hosted PCI functions (disks issue) ---
use super::dma::{DmaView, DmaWrites};
use crate::pci::slots::PciSlots;
// --- end disks ---
use crate::events::{Events, MachineEvent};
use crate::memory::map::{DramMap, Reach};
use crate::memory::pam::Pam;
use crate::memory::rom::Rom;
use crate::memory::{read_le, write_le, Ram};
use crate::pci::host::{ones, PciHost, CONFIG_ADDRESS, CONFIG_DATA};
use super::port_map::{PortMap, PortOverlap};
use crate::poll::PollForward;
use crate::smi::io_trap::IoTraps;
use crate::smi::pin::SmiPin;
use crate::smi::{lapic_ipi, SmiLatch};
use crate::smram::{self, SmramConfig, Visibility};
use cpu::{Access, AccessKind, Bus, Pending, SmmEntry, SmmExit};
use std::ops::Range;
use std::ptr::NonNull;

/// debugcon port.
pub const PORT_DEBUGCON: u16 = 0x402;
/// isa-debug-exit port.
pub const PORT_DEBUG_EXIT: u16 = 0xf4;
/// APM_CNT port (APM_STS follows at 0xB3).
pub const PORT_APM_CNT: u16 = 0xb2;
// --- legacy devices (platform issue) ---
/// The VGA text buffer (colour, 32 KiB) on the PCI/VGA side of the A/B segment: plain
/// storage for every access that reaches that side (outside SMM, and SMM data under D_CLS);
/// the rest of the window reads as all ones.
const VGA_TEXT: std::ops::Range<u64> = 0xb_8000..0xc_0000;
/// The reset control register (byte port inside the 0xCF8 dword).
pub const PORT_RESET_CONTROL: u16 = 0xcf9;
// --- end legacy devices ---

enum Target {
    Ram(u64),
    Rom(u64),
    /// A system flash unit and the offset into it.
    Pflash(usize, u64),
    Lapic(u16),
    // --- legacy devices (platform issue) ---
    Ioapic(u16),
    /// ECAM: bus, device, function, register.
    Ecam(u8, u8, u8, u16),
    VgaText(u64),
    // --- end legacy devices ---
    /// A memory BAR of a hosted PCI function (disks issue).
    PciMmio,
    /// Chipset registers in memory space (the ICH9 RCBA window).
    Chipset,
    /// Unmapped, a hole, or a dropped write.
    None,
}

/// The fixed ports the platform decodes itself, ahead of the chipset, the PCI functions and
/// the legacy devices (those decode only the ports left over, in that order for reads; for
/// writes the PCI functions come before the chipset).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlatformPort {
    /// CONFIG_ADDRESS (0xCF8-0xCFB). A byte access at 0xCF9 is the reset control register
    /// instead ([`PORT_RESET_CONTROL`]); wider accesses there stay the PCI host's.
    ConfigAddress,
    /// CONFIG_DATA (0xCFC-0xCFF).
    ConfigData,
    /// APM_CNT and APM_STS (0xB2-0xB3).
    Apm,
    /// debugcon (0x402).
    Debugcon,
    /// isa-debug-exit (0xF4), write-only: reads go on to the other decoders.
    DebugExit,
}

/// The platform's fixed ports, registered.
pub fn platform_ports() -> Result<PortMap<PlatformPort>, PortOverlap<PlatformPort>> {
    let mut m = PortMap::new();
    m.register(CONFIG_ADDRESS..=CONFIG_ADDRESS + 3, PlatformPort::ConfigAddress)?;
    m.register(CONFIG_DATA..=CONFIG_DATA + 3, PlatformPort::ConfigData)?;
    m.register(PORT_APM_CNT..=PORT_APM_CNT + 1, PlatformPort::Apm)?;
    m.register(PORT_DEBUGCON..=PORT_DEBUGCON, PlatformPort::Debugcon)?;
    m.register(PORT_DEBUG_EXIT..=PORT_DEBUG_EXIT, PlatformPort::DebugExit)?;
    Ok(m)
}

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
    pause: bool,
    /// Guest time runs faster while the guest busy-waits on the PM timer ([`crate::poll`]).
    pub poll: PollForward,
    // --- legacy devices (platform issue) ---
    /// The legacy PC devices and their port map.
    pub legacy: LegacyDevices,
    /// The platform's own fixed ports ([`platform_ports`]).
    ports: PortMap<PlatformPort>,
    /// The I/O APIC.
    pub ioapic: Ioapic,
    /// The reset control register (0xCF9).
    pub reset_control: ResetControl,
    vga_text: Vec<u8>,
    /// A20 level the guest asked for, waiting for the machine to apply it to the CPU.
    a20_request: Option<bool>,
    /// The guest asked for a reset (0xCF9, port 0x92, 8042); the machine ends the run.
    reset_requested: bool,
    // --- end legacy devices ---
    clock: Clock,
    smram: SmramConfig,
    pam: Pam,
    flush: bool,
    /// RAM bus masters wrote since the machine last dropped the code decoded there.
    dma_writes: DmaWrites,
    resync: bool,
    /// Extra guest time (ticks) for SMM entry and for RSM.
    smm_costs: (u64, u64),
    /// The guest asked for soft off (Some(from SMM)); the machine ends the run.
    power_off: Option<bool>,
    /// The TSEG range (whatever T_EN says), once TSEG has been enabled.
    tseg_watch: Option<std::ops::Range<u64>>,
    /// Whether code outside SMM can write the watched TSEG range now.
    tseg_open: bool,
    /// Pages of the TSEG range written from outside SMM (one event each).
    tseg_written: std::collections::BTreeSet<u64>,
    /// Of those, the pages SMM has fetched code from (reported once each).
    foreign_code_seen: std::collections::BTreeSet<u64>,
    /// Flash blocks a refused write was reported for.
    pflash_refused_blocks: std::collections::BTreeSet<u64>,
    /// End of the CPU slice in progress (None outside [`Machine::run`](crate::Machine::run)).
    slice_end: Option<Ticks>,
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
            events: Events::default(),
            pci_slots: PciSlots::default(),
            smm_observer: Default::default(),
            pause_on_debugcon_line: false,
            pause_on_rsm: false,
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
        }
    }

    /// The SMRAM decoding in force.
    pub fn smram_config(&self) -> SmramConfig {
        self.smram
    }

    /// The PAM decoding in force.
    pub fn pam(&self) -> Pam {
        self.pam
    }

    /// Guest time now.
    pub fn now(&self) -> Ticks {
        self.clock.now()
    }

    /// The virtual clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Records the CPU's retired-instruction count and fires the timers that are due.
    pub fn set_now(&mut self, icount: u64) {
        self.clock.set_icount(icount);
        self.advance_timers();
    }

    /// Moves guest time to `t` while the CPU is halted, firing the timers due by then.
    pub fn skip_to(&mut self, t: Ticks) {
        self.clock.skip_to(t);
        self.advance_timers();
    }

    /// The machine starts a CPU slice that ends at `end`: a timer armed for earlier during
    /// the slice makes the board ask the CPU to stop.
    pub fn begin_slice(&mut self, end: Ticks) {
        self.slice_end = Some(end);
        self.resync = false;
    }

    /// The next time any timer expires.
    pub fn next_deadline(&self) -> Option<Ticks> {
        [self.chipset.next_deadline(), self.smi_pin.deadline(), self.legacy.next_deadline(), self.lapic.next_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next time a timer raises an SMI.
    pub fn next_wake(&self) -> Option<Ticks> {
        [self.chipset.next_wake(), self.smi_pin.deadline()].into_iter().flatten().min()
    }

    // --- legacy devices (platform issue) ---
    /// The next time a timer can interrupt a CPU halted with interrupts enabled (also the
    /// SMI timers).
    pub fn next_interrupt_wake(&self) -> Option<Ticks> {
        [self.next_wake(), self.legacy.next_interrupt(), self.lapic.next_deadline()].into_iter().flatten().min()
    }

    /// A new A20 level for the CPU, once.
    pub fn take_a20(&mut self) -> Option<bool> {
        self.a20_request.take()
    }

    /// Whether the guest asked for a reset.
    pub fn reset_requested(&self) -> bool {
        self.reset_requested
    }

    /// Whether the guest powered the machine off, and if so whether from SMM.
    pub fn power_off(&self) -> Option<bool> {
        self.power_off
    }

    /// Collects A20/reset requests and runs fw_cfg DMA after a legacy port write.
    fn after_legacy_write(&mut self) {
        if let Some(a) = self.legacy.take_a20_request() {
            self.a20_request = Some(a);
        }
        self.reset_requested |= self.legacy.take_reset_request() | self.reset_control.take_reset();
        if let Some(desc) = self.legacy.fw_cfg.take_dma() {
            let (map, watch) = (self.dram_map(), self.open_tseg());
            let mut dma = DmaView::new(&mut self.ram, map).watching(watch);
            self.legacy.fw_cfg.dma(desc, &mut dma);
            let (written, watched) = (dma.written, dma.watched);
            self.after_dma(&written, &watched);
        }
    }

    /// A configuration read on bus 0-255 (shared by 0xCF8/0xCFC and ECAM); `None` if no
    /// function answers. `offset` above 0xFF (PCIe extended space) reads as absent.
    fn config_read(&mut self, bus: u8, device: u8, function: u8, offset: u16, size: u8) -> Option<u32> {
        if bus != 0 || offset > 0xff {
            return None;
        }
        self.chipset.config_read(device, function, offset as u8, size).or_else(|| self.pci_slots.config_read(device, function, offset as u8, size))
    }

    /// A configuration write (shared by 0xCF8/0xCFC and ECAM).
    fn config_write(&mut self, bus: u8, device: u8, function: u8, offset: u16, size: u8, value: u32) {
        if bus != 0 || offset > 0xff {
            return;
        }
        let now = self.clock.now();
        if !self.pci_slots.config_write(device, function, offset as u8, size, value) {
            self.chipset.config_write(device, function, offset as u8, size, value, now, &mut self.smi);
        }
        self.refresh_decode();
        self.after_device_call();
    }

    fn ecam_target(&self, addr: u64) -> Option<Target> {
        let (base, size) = self.chipset.ecam()?;
        if !(base..base + size).contains(&addr) {
            return None;
        }
        let o = addr - base;
        Some(Target::Ecam((o >> 20) as u8, ((o >> 15) & 0x1f) as u8, ((o >> 12) & 7) as u8, (o & 0xfff) as u16))
    }
    // --- end legacy devices ---

    // --- disks: hosted PCI functions (disks issue) ---
    /// A memory access (read if `value` is None) to a hosted function's BAR, with DMA to RAM
    /// for the duration of the access.
    fn slot_access(&mut self, addr: u64, size: u8, value: Option<u32>) -> u32 {
        let size = size.clamp(1, 4);
        let (map, watch) = (self.dram_map(), self.open_tseg());
        let mut dma = DmaView::new(&mut self.ram, map).watching(watch);
        let v = match value {
            None => self.pci_slots.mmio_read(addr, size, &mut dma).unwrap_or(ones(size)),
            Some(v) => {
                self.pci_slots.mmio_write(addr, size, v, &mut dma);
                0
            }
        };
        let (written, watched) = (dma.written, dma.watched);
        self.after_dma(&written, &watched);
        self.after_slot_access();
        v
    }

    /// A port access (read if `value` is None) to a hosted function; `None` if none claims it.
    fn slot_io(&mut self, port: u16, size: u8, value: Option<u32>) -> Option<u32> {
        let (map, watch) = (self.dram_map(), self.open_tseg());
        let mut dma = DmaView::new(&mut self.ram, map).watching(watch);
        let v = match value {
            None => self.pci_slots.io_read(port, size, &mut dma),
            Some(v) => self.pci_slots.io_write(port, size, v, &mut dma).then_some(0),
        };
        let (written, watched) = (dma.written, dma.watched);
        self.after_dma(&written, &watched);
        if v.is_some() {
            self.after_slot_access();
        }
        v
    }

    /// The DRAM decoding in force, for CPU accesses and bus masters.
    fn dram_map(&self) -> DramMap {
        DramMap { smram: self.smram, pam: self.pam, ram_len: self.ram.len() }
    }

    /// After a bus master wrote `written`: the CPU may have decoded code from those bytes (it
    /// sees only its own writes), and writes that landed in an open TSEG (`watched`) are
    /// reported as CPU writes from outside SMM are.
    fn after_dma(&mut self, written: &DmaWrites, watched: &[u64]) {
        if written.is_empty() {
            return;
        }
        self.dma_writes.merge(written);
        for &a in watched {
            self.tseg_written_outside_smm(a);
        }
    }

    /// The watched TSEG range while writes from outside SMM reach it.
    fn open_tseg(&self) -> Option<Range<u64>> {
        self.tseg_open.then(|| self.tseg_watch.clone()).flatten()
    }

    /// After an access to a hosted function: interrupt lines may have changed.
    fn after_slot_access(&mut self) {
        let irqs = self.pci_slots.isa_irqs();
        for irq in [14u8, 15] {
            self.legacy.pics.set_irq(irq, irqs & (1 << irq) != 0);
        }
    }
    // --- end disks ---

    /// Whether the CPU's TLB and decoded code must be flushed (SMRAM or PAM changed, or bus
    /// masters wrote RAM that [`Platform::take_dma_writes`] was not asked for); clears the
    /// request.
    pub fn take_flush(&mut self) -> bool {
        let dma = !std::mem::take(&mut self.dma_writes).is_empty();
        std::mem::take(&mut self.flush) | dma
    }

    /// The RAM bus masters wrote since the last call: the machine drops the code the CPU
    /// decoded there ([`DmaWrites::invalidate`]) before the CPU runs on.
    pub fn take_dma_writes(&mut self) -> DmaWrites {
        std::mem::take(&mut self.dma_writes)
    }

    fn advance_timers(&mut self) {
        self.chipset.set_idle(self.clock.idle());
        let now = self.clock.now();
        if self.next_deadline().is_some_and(|d| d <= now) {
            self.chipset.advance(now, &mut self.smi);
            self.smi_pin.raise_due(now, &mut self.smi);
            self.legacy.advance(now);
            self.lapic.advance(now);
        }
        self.after_device_call();
    }

    /// Moves raised SMIs into the event queue and notices timers armed inside the slice.
    fn after_device_call(&mut self) {
        self.chipset.drain_events(&mut self.events);
        if self.smi.has_raised() {
            for (cause, t) in self.smi.drain_raised() {
                self.events.push(MachineEvent::SmiRaised { cause, icount: t.0 });
            }
        }
        if let (Some(d), Some(end)) = (self.next_deadline(), self.slice_end) {
            self.resync |= d < end;
        }
    }

    /// Re-reads SMRAM and PAM from the chipset after a configuration write.
    fn refresh_decode(&mut self) {
        let now = self.clock.now().0;
        let smram = self.chipset.smram(self.ram.len());
        if smram != self.smram {
            self.events.push(MachineEvent::SmramConfigChanged { old: self.smram, new: smram, icount: now });
            if smram.d_lck && !self.smram.d_lck {
                self.events.push(MachineEvent::SmramLocked { icount: now });
            }
            self.smram = smram;
            self.flush = true;
            self.watch_tseg();
        }
        let pam = self.chipset.pam();
        if pam != self.pam {
            self.events.push(MachineEvent::PamChanged { pam: pam.0, icount: now });
            self.pam = pam;
            self.flush = true;
        }
    }

    /// Follows the TSEG range for [`MachineEvent::SmramWrittenOutsideSmm`]: watched once
    /// TSEG has been enabled, open while writes from outside SMM reach its RAM.
    fn watch_tseg(&mut self) {
        let c = self.smram;
        if c.tseg().is_some() || self.tseg_watch.is_some() {
            let start = c.low_ram_top.saturating_sub(c.tseg_size);
            self.tseg_watch = Some(start..c.low_ram_top);
            self.tseg_open = start < c.low_ram_top && matches!(self.route(start, AccessKind::Write, false), Target::Ram(_));
        }
    }

    /// A RAM write from outside SMM landed at `addr` in the open TSEG range.
    fn tseg_written_outside_smm(&mut self, addr: u64) {
        if self.tseg_written.insert(addr & !0xfff) {
            self.events.push(MachineEvent::SmramWrittenOutsideSmm { addr, icount: self.clock.now().0 });
        }
    }

    /// An SMM instruction fetch from `page`: reports a page written from outside SMM.
    fn smm_fetch(&mut self, page: u64) {
        if self.tseg_written.contains(&page) && self.foreign_code_seen.insert(page) {
            self.events.push(MachineEvent::SmmRanCodeWrittenOutsideSmm { addr: page, icount: self.clock.now().0 });
        }
    }

    /// A write to a flash unit: a refused one (from outside SMM to a secure unit) is an event
    /// for the first refused write to each block; when the unit leaves read-array mode or its
    /// array changes, the CPU's direct pages and the code it decoded from flash are stale.
    fn pflash_write(&mut self, unit: usize, off: u64, a: Access, value: u64) {
        let Some(bank) = self.pflash.as_mut() else { return };
        let outcome = bank.units_mut()[unit].flash.write(off, a.size, value, a.smm);
        if outcome == WriteOutcome::Refused && self.pflash_refused_blocks.insert(a.addr & !(crate::devices::pflash::BLOCK_SIZE - 1)) {
            self.events.push(MachineEvent::PflashWriteRefused { addr: a.addr, unit: unit as u8, icount: self.clock.now().0 });
        }
        if bank.take_stale() {
            self.flush = true;
        }
    }

    fn in_open_tseg(&self, addr: u64) -> bool {
        self.tseg_open && self.tseg_watch.as_ref().is_some_and(|r| r.contains(&addr))
    }

    fn route(&self, addr: u64, kind: AccessKind, smm: bool) -> Target {
        let write = kind == AccessKind::Write;
        match self.dram_map().reach(addr, kind, smm) {
            Reach::Ram(o) => return Target::Ram(o),
            Reach::Hole => return Target::None,
            Reach::VgaWindow if VGA_TEXT.contains(&addr) => return Target::VgaText(addr - VGA_TEXT.start),
            Reach::VgaWindow => return Target::None,
            Reach::PamRom if write => return Target::None,
            Reach::PamRom => return self.rom.isa_offset(addr).map_or(Target::None, Target::Rom),
            Reach::Beyond => {}
        }
        if (LAPIC_BASE..LAPIC_BASE + 0x1000).contains(&addr) {
            return Target::Lapic((addr - LAPIC_BASE) as u16);
        }
        // --- legacy devices (platform issue) ---
        if (IOAPIC_BASE..IOAPIC_BASE + 0x1000).contains(&addr) {
            return Target::Ioapic((addr - IOAPIC_BASE) as u16);
        }
        if let Some(t) = self.ecam_target(addr) {
            return t;
        }
        // --- end legacy devices ---
        if self.chipset.mmio_claims(addr) {
            return Target::Chipset;
        }
        if self.pci_slots.claims_mmio(addr) {
            return Target::PciMmio;
        }
        if let Some((unit, o)) = self.pflash.as_ref().and_then(|b| b.locate(addr)) {
            return Target::Pflash(unit, o);
        }
        if let Some(o) = self.rom.high_offset(addr) {
            // Flash: writes store only as the chipset's BIOS write protection allows.
            if !write || self.chipset.flash_writable(smm) {
                return Target::Rom(o);
            }
        }
        Target::None
    }

    fn pci_read(&mut self, port: u16, size: u8) -> u32 {
        if let Some(v) = self.pci.read_address(port, size) {
            return v;
        }
        let Some(t) = self.pci.target(port, size) else { return ones(size) };
        let v = self.config_read(t.bus, t.device, t.function, t.offset as u16, t.size);
        let v = v.unwrap_or(ones(t.size));
        // Bytes of a straddling access past 0xCFF read as all ones.
        v | (ones(size) & !ones(t.size))
    }

    fn pci_write(&mut self, port: u16, size: u8, value: u32) {
        if self.pci.write_address(port, size, value) {
            return;
        }
        if let Some(t) = self.pci.target(port, size) {
            self.config_write(t.bus, t.device, t.function, t.offset as u16, t.size, value);
        }
    }

    /// A read of the PM timer port outside SMM: when the guest is polling, moves guest time
    /// forward (never past the next timer deadline) before the timer is read.
    fn poll_timer(&mut self) {
        let skip = self.poll.timer_read(self.clock.icount());
        if skip == 0 {
            return;
        }
        let now = self.clock.now().0;
        let mut to = now.saturating_add(skip);
        if let Some(d) = self.next_deadline() {
            to = to.min(d.0.max(now));
        }
        if to > now {
            self.skip_to(Ticks(to));
            self.poll.add_skipped(to - now);
            // The CPU's slice was sized in instructions for the time before the skip.
            if self.slice_end.is_some_and(|e| Ticks(to) >= e) {
                self.resync = true;
            }
        }
    }

    /// Lets `ticks` of guest time pass without instructions (the CPU is busy saving or
    /// restoring its state), firing every timer at its own time on the way.
    fn pass_time(&mut self, ticks: u64) {
        let target = self.clock.now().0.saturating_add(ticks);
        while self.clock.now().0 < target {
            let now = self.clock.now().0;
            let to = self.next_deadline().map_or(target, |d| d.0.max(now + 1)).min(target);
            self.skip_to(Ticks(to));
        }
        if self.slice_end.is_some_and(|e| Ticks(target) >= e) {
            self.resync = true;
        }
    }

    /// Guest time SMM entry and RSM take beyond their one instruction, in ticks (a CPU saves
    /// and restores hundreds of bytes of state, and real platforms rendezvous every core):
    /// `smmlab run --smm-entry-ns/--rsm-ns`. Zero by default: time is instructions only.
    pub fn set_smm_costs(&mut self, entry: u64, exit: u64) {
        self.smm_costs = (entry, exit);
    }

    /// Checks the I/O traps; true if the chipset trapped the access (it goes nowhere).
    fn trap(&mut self, port: u16, size: u8, write: bool, value: u32) -> bool {
        let now = self.clock.now();
        self.io_traps.check(port, size, write, now, &mut self.smi);
        self.chipset.io_trap(port, size, write, value, now, &mut self.smi)
    }
}

impl<C: Chipset> Platform<C> {
    /// Whether the run must pause (a debugcon line ended); clears the request.
    pub fn take_pause(&mut self) -> bool {
        std::mem::take(&mut self.pause)
    }

    /// Records an SMM access when the observer is on.
    fn observe(&mut self, a: &Access, kind: AccessKind) {
        let in_smram = smram::covers(&self.smram, a.addr) && matches!(smram::route(&self.smram, a.addr, kind, true), Visibility::Ram(_));
        self.smm_observer.record(kind, a.addr, a.size, in_smram);
    }
}

impl<C: Chipset> Platform<C> {
    /// Whether COM1 has transmitted its stop text (`--stop-on-serial`).
    pub fn serial_text_seen(&self) -> bool {
        self.legacy.com1.as_ref().is_some_and(|u| u.stop_text_seen)
    }

    /// The lines the board drives now (what [`Bus::pending`] answers; [`super::pending_cache::PendingCache`] keeps it).
    fn compute_pending(&mut self) -> Pending {
        let mut p = 0;
        if self.smi.is_pending() {
            p |= Pending::SMI;
            if self.smi.is_io_trap() {
                p |= Pending::IO_TRAP;
            }
        }
        if self.flush || !self.dma_writes.is_empty() || self.resync || self.pause || self.debug_exit.code().is_some() || self.a20_request.is_some() || self.reset_requested || self.power_off.is_some() || self.serial_text_seen() {
            p |= Pending::STOP;
        }
        // --- legacy devices (platform issue) ---
        if self.lapic.pending_vector().is_some() || (self.lapic.accepts_extint() && self.legacy.pics.intr()) {
            p |= Pending::INTR;
        }
        // --- end legacy devices ---
        Pending(p)
    }
}

/// Whether `a` runs past the end of its 4 KiB page: the board decodes each page on its own
/// (SMRAM, ROM and device windows are page-aligned), so such an access is split into bytes.
fn crosses_page(a: &Access) -> bool {
    (a.addr & 0xfff) + u64::from(a.size.max(1)) > 0x1000
}

impl<C: Chipset> Bus for Platform<C> {
    fn read(&mut self, a: Access) -> u64 {
        if crosses_page(&a) {
            // The CPU splits its own page-crossing accesses; bus masters and the host may not.
            return (0..u64::from(a.size)).fold(0, |v, k| v | self.read(Access { addr: a.addr + k, size: 1, ..a }) << (8 * k));
        }
        if a.smm && self.smm_observer.enabled {
            self.observe(&a, a.kind);
        }
        if a.smm && a.kind == AccessKind::Fetch && !self.tseg_written.is_empty() {
            self.smm_fetch(a.addr & !0xfff);
        }
        match self.route(a.addr, a.kind, a.smm) {
            Target::Ram(o) => self.ram.read_le(o, a.size),
            Target::Rom(o) => self.rom.read_le(o, a.size),
            Target::Pflash(u, o) => self.pflash.as_ref().map_or(0, |b| b.units()[u].flash.read(o, a.size, a.smm)),
            Target::Lapic(o) => self.lapic.read(o, a.size, self.clock.now()) as u64,
            // --- legacy devices (platform issue) ---
            Target::Ioapic(o) => self.ioapic.read(o, a.size) as u64,
            Target::VgaText(o) => read_le(&self.vga_text, o as usize, a.size),
            Target::Ecam(b, d, f, r) => {
                let size = a.size.clamp(1, 4);
                self.config_read(b, d, f, r, size).unwrap_or(ones(size)) as u64
            }
            // --- end legacy devices ---
            Target::PciMmio => self.slot_access(a.addr, a.size, None) as u64,
            Target::Chipset => self.chipset.mmio_read(a.addr, a.size),
            Target::None => u64::MAX >> (64 - 8 * a.size.clamp(1, 8) as u32),
        }
    }

    fn write(&mut self, a: Access, value: u64) {
        if crosses_page(&a) {
            for k in 0..u64::from(a.size) {
                self.write(Access { addr: a.addr + k, size: 1, ..a }, value >> (8 * k));
            }
            return;
        }
        if a.smm && self.smm_observer.enabled {
            self.observe(&a, AccessKind::Write);
        }
        match self.route(a.addr, AccessKind::Write, a.smm) {
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
            // --- legacy devices (platform issue) ---
            Target::Ioapic(o) => {
                self.poll.disturb();
                self.ioapic.write(o, a.size, value as u32);
            }
            Target::VgaText(o) => write_le(&mut self.vga_text, o as usize, a.size, value),
            Target::Ecam(b, d, f, r) => {
                self.poll.disturb();
                self.config_write(b, d, f, r, a.size.clamp(1, 4), value as u32);
            }
            // --- end legacy devices ---
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
        if smm && self.smm_observer.enabled {
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
            Reach::Ram(o) => return self.ram.page_ptr(o),
            Reach::PamRom => self.rom.isa_offset(page),
            Reach::Beyond => match self.route(page, kind, smm) {
                Target::Ram(o) => return self.ram.page_ptr(o),
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

    fn sync_icount(&mut self, icount: u64) {
        self.clock.set_icount(icount);
        if self.next_deadline().is_some_and(|d| d <= self.clock.now()) {
            self.advance_timers();
        }
    }

    /// Computed at every call: the boards cache it ([`super::pending_cache::PendingCache`]).
    fn pending(&mut self) -> Pending {
        self.compute_pending()
    }

    fn ack_intr(&mut self) -> u8 {
        self.poll.disturb();
        if let Some(v) = self.lapic.ack() {
            return v;
        }
        self.legacy.pics.ack()
    }

    fn ack_smi(&mut self) {
        self.smi.ack();
    }

    fn smm_entered(&mut self, e: &SmmEntry) {
        self.poll.disturb();
        let cause = self.smi.take_taken();
        let icount = e.icount.saturating_add(self.clock.idle());
        self.events.push(MachineEvent::SmmEntered { cause, smbase: e.smbase, cs: e.cs, rip: e.rip, mode: e.mode, icount });
        if self.smm_costs.0 > 0 {
            self.clock.set_icount(e.icount);
            self.pass_time(self.smm_costs.0);
        }
    }

    fn smm_left(&mut self, e: &SmmExit) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::legacy::{self, LEGACY_PORTS};

    #[test]
    fn the_fixed_ports_register_and_decode() {
        let m = platform_ports().unwrap();
        assert_eq!(m.lookup(PORT_RESET_CONTROL), Some((PlatformPort::ConfigAddress, 1)), "0xCF9 sits in the CONFIG_ADDRESS dword");
        assert_eq!(m.lookup(CONFIG_DATA + 3), Some((PlatformPort::ConfigData, 3)));
        assert_eq!(m.lookup(PORT_APM_CNT + 1), Some((PlatformPort::Apm, 1)));
        assert_eq!(m.lookup(PORT_DEBUGCON), Some((PlatformPort::Debugcon, 0)));
        assert_eq!(m.lookup(PORT_DEBUG_EXIT), Some((PlatformPort::DebugExit, 0)));
        assert_eq!(m.lookup(PORT_APM_CNT + 2), None);
        assert!(legacy::port_map().is_ok());
        let mut m = m;
        assert!(m.register(0xcf9..=0xcf9, PlatformPort::ConfigAddress).is_err(), "the reset register is not a range of its own");
    }

    #[test]
    fn no_legacy_range_hides_behind_a_fixed_port() {
        let mut m = platform_ports().unwrap();
        for &(base, first, last, _) in LEGACY_PORTS {
            // Any device value will do: the ranges are what is checked.
            m.register_at(base, first..=last, PlatformPort::Debugcon).unwrap();
        }
    }
}
