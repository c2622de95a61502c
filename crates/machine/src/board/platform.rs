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
use crate::devices::lapic::{Lapic, LapicAction, LAPIC_BASE};
use crate::events::{Events, MachineEvent};
use crate::memory::pam::Pam;
use crate::memory::rom::Rom;
use crate::memory::{read_le, write_le, Ram};
use crate::pci::host::{ones, PciHost};
use crate::smi::io_trap::IoTraps;
use crate::smi::pin::SmiPin;
use crate::smi::{SmiCause, SmiLatch};
use crate::smram::{self, SmramConfig, Visibility};
use cpu::{Access, AccessKind, Bus, Pending, SmmEntry, SmmExit};
use std::ptr::NonNull;

/// debugcon port.
pub const PORT_DEBUGCON: u16 = 0x402;
/// isa-debug-exit port.
pub const PORT_DEBUG_EXIT: u16 = 0xf4;
/// APM_CNT port (APM_STS follows at 0xB3).
pub const PORT_APM_CNT: u16 = 0xb2;
const VGA_HOLE: std::ops::Range<u64> = 0xa_0000..0xc_0000;
const PAM_AREA: std::ops::Range<u64> = 0xc_0000..0x10_0000;

enum Target {
    Ram(u64),
    Rom(u64),
    Lapic(u16),
    /// Unmapped, a hole, or a dropped write.
    None,
}

/// A PC board around chipset `C`.
pub struct Platform<C: Chipset> {
    pub ram: Ram,
    pub rom: Rom,
    pub chipset: C,
    pub pci: PciHost,
    pub apm: Apm,
    pub lapic: Lapic,
    pub debugcon: Debugcon,
    pub debug_exit: DebugExit,
    pub smi: SmiLatch,
    pub io_traps: IoTraps,
    pub smi_pin: SmiPin,
    pub events: Events,
    clock: Clock,
    smram: SmramConfig,
    pam: Pam,
    flush: bool,
    resync: bool,
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
        Platform {
            ram,
            rom: Rom::new(rom),
            chipset,
            pci: PciHost::default(),
            apm: Apm::default(),
            lapic: Lapic::default(),
            debugcon: Debugcon::default(),
            debug_exit: DebugExit::default(),
            smi: SmiLatch::default(),
            io_traps: IoTraps::default(),
            smi_pin: SmiPin::default(),
            events: Events::default(),
            clock: Clock::new(instructions_per_second),
            smram,
            pam,
            flush: false,
            resync: false,
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
        [self.chipset.next_deadline(), self.smi_pin.deadline()].into_iter().flatten().min()
    }

    /// The next time a timer raises an SMI.
    pub fn next_wake(&self) -> Option<Ticks> {
        [self.chipset.next_wake(), self.smi_pin.deadline()].into_iter().flatten().min()
    }

    /// Whether the CPU's TLB and decoded code must be flushed (SMRAM or PAM changed); clears
    /// the request.
    pub fn take_flush(&mut self) -> bool {
        std::mem::take(&mut self.flush)
    }

    fn advance_timers(&mut self) {
        let now = self.clock.now();
        if self.next_deadline().is_some_and(|d| d <= now) {
            self.chipset.advance(now, &mut self.smi);
            if self.smi_pin.expire(now) {
                self.smi.raise(SmiCause::Pin, now);
            }
        }
        self.after_device_call();
    }

    /// Moves raised SMIs into the event queue and notices timers armed inside the slice.
    fn after_device_call(&mut self) {
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
        }
        let pam = self.chipset.pam();
        if pam != self.pam {
            self.events.push(MachineEvent::PamChanged { pam: pam.0, icount: now });
            self.pam = pam;
            self.flush = true;
        }
    }

    fn route(&self, addr: u64, kind: AccessKind, smm: bool) -> Target {
        if smram::covers(&self.smram, addr) {
            match smram::route(&self.smram, addr, kind, smm) {
                Visibility::Ram(o) => return Target::Ram(o),
                Visibility::Hole => return Target::None,
                Visibility::Normal => {}
            }
        }
        let write = kind == AccessKind::Write;
        if addr < VGA_HOLE.start {
            return Target::Ram(addr);
        }
        if VGA_HOLE.contains(&addr) {
            return Target::None;
        }
        if PAM_AREA.contains(&addr) {
            let dram = if write { self.pam.write_dram(addr) } else { self.pam.read_dram(addr) };
            return match (dram, write) {
                (true, _) => Target::Ram(addr),
                (false, true) => Target::None,
                (false, false) => self.rom.isa_offset(addr).map_or(Target::None, Target::Rom),
            };
        }
        if addr < self.ram.len() {
            return Target::Ram(addr);
        }
        if (LAPIC_BASE..LAPIC_BASE + 0x1000).contains(&addr) {
            return Target::Lapic((addr - LAPIC_BASE) as u16);
        }
        if let Some(o) = self.rom.high_offset(addr) {
            if !write {
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
        let v = if t.bus == 0 { self.chipset.config_read(t.device, t.function, t.offset, t.size) } else { None };
        let v = v.unwrap_or(ones(t.size));
        // Bytes of a straddling access past 0xCFF read as all ones.
        v | (ones(size) & !ones(t.size))
    }

    fn pci_write(&mut self, port: u16, size: u8, value: u32) {
        if self.pci.write_address(port, size, value) {
            return;
        }
        if let Some(t) = self.pci.target(port, size) {
            if t.bus == 0 {
                let now = self.clock.now();
                self.chipset.config_write(t.device, t.function, t.offset, t.size, value, now, &mut self.smi);
                self.refresh_decode();
            }
        }
    }

    fn trap(&mut self, port: u16, size: u8, write: bool) {
        if self.io_traps.hits(port, size, write) {
            self.smi.raise(SmiCause::IoTrap { port, write }, self.clock.now());
        }
    }
}

impl<C: Chipset> Bus for Platform<C> {
    fn read(&mut self, a: Access) -> u64 {
        match self.route(a.addr, a.kind, a.smm) {
            Target::Ram(o) => read_le(self.ram.as_slice(), o as usize, a.size),
            Target::Rom(o) => read_le(self.rom.as_slice(), o as usize, a.size),
            Target::Lapic(o) => self.lapic.read(o, a.size) as u64,
            Target::None => u64::MAX >> (64 - 8 * a.size.clamp(1, 8) as u32),
        }
    }

    fn write(&mut self, a: Access, value: u64) {
        match self.route(a.addr, AccessKind::Write, a.smm) {
            Target::Ram(o) => write_le(self.ram.as_mut_slice(), o as usize, a.size, value),
            Target::Lapic(o) => {
                if self.lapic.write(o, a.size, value as u32) == Some(LapicAction::SmiSelf) {
                    self.smi.raise(SmiCause::Ipi, self.clock.now());
                    self.after_device_call();
                }
            }
            Target::Rom(_) | Target::None => {}
        }
    }

    fn io_in(&mut self, a: Access) -> u32 {
        let (port, size) = (a.addr as u16, a.size.clamp(1, 4));
        self.trap(port, size, false);
        let now = self.clock.now();
        let v = if PciHost::claims(port) {
            self.pci_read(port, size)
        } else if (PORT_APM_CNT..PORT_APM_CNT + 2).contains(&port) {
            self.apm.read(port - PORT_APM_CNT, size)
        } else if port == PORT_DEBUGCON {
            Debugcon::READBACK
        } else if let Some(v) = self.chipset.io_read(port, size, now) {
            v
        } else {
            ones(size)
        };
        self.after_device_call();
        v
    }

    fn io_out(&mut self, a: Access, value: u32) {
        let (port, size) = (a.addr as u16, a.size.clamp(1, 4));
        self.trap(port, size, true);
        let now = self.clock.now();
        if PciHost::claims(port) {
            self.pci_write(port, size, value);
        } else if (PORT_APM_CNT..PORT_APM_CNT + 2).contains(&port) {
            if let Some(cmd) = self.apm.write(port - PORT_APM_CNT, size, value) {
                let data = self.apm.data();
                self.chipset.apm_command(cmd, data, now, &mut self.smi);
            }
        } else if port == PORT_DEBUGCON {
            self.debugcon.write(value as u8);
        } else if port == PORT_DEBUG_EXIT {
            self.debug_exit.write(value);
        } else {
            self.chipset.io_write(port, size, value, now, &mut self.smi);
        }
        self.after_device_call();
    }

    fn host_page(&mut self, page: u64, kind: AccessKind, smm: bool) -> Option<NonNull<u8>> {
        match self.route(page, kind, smm) {
            Target::Ram(o) if o + 4096 <= self.ram.len() => NonNull::new(self.ram.as_mut_slice()[o as usize..].as_mut_ptr()),
            Target::Rom(o) if kind != AccessKind::Write => self.rom.page_ptr(o),
            _ => None,
        }
    }

    fn sync_icount(&mut self, icount: u64) {
        self.clock.set_icount(icount);
        if self.next_deadline().is_some_and(|d| d <= self.clock.now()) {
            self.advance_timers();
        }
    }

    fn pending(&mut self) -> Pending {
        let mut p = 0;
        if self.smi.is_pending() {
            p |= Pending::SMI;
            if self.smi.is_io_trap() {
                p |= Pending::IO_TRAP;
            }
        }
        if self.flush || self.resync || self.debug_exit.code().is_some() {
            p |= Pending::STOP;
        }
        Pending(p)
    }

    fn ack_smi(&mut self) {
        self.smi.ack();
    }

    fn smm_entered(&mut self, e: &SmmEntry) {
        let cause = self.smi.take_taken();
        let icount = e.icount.saturating_add(self.clock.idle());
        self.events.push(MachineEvent::SmmEntered { cause, smbase: e.smbase, cs: e.cs, rip: e.rip, mode: e.mode, icount });
    }

    fn smm_left(&mut self, e: &SmmExit) {
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
