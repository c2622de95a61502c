//! Boards: which devices sit where. `minimal` is RAM, ROM and the debug ports; `pc` and `q35`
//! are the common [`platform::Platform`] around the i440FX and q35 chipsets
//! ([`crate::chipset`]), `q35` with the lab hardware of `lab_devices` beside its chipset on
//! the built-in platform. The platform's pieces sit beside it: `memory_map`, `ports`,
//! `pci_glue`, `time`, `watches`, `requests`, with `dma`, `legacy`, `observer`,
//! `pending_cache` and `port_map`.

pub mod dma;
pub mod lab_devices;
pub mod legacy;
mod memory_map;
pub mod minimal;
pub mod observer;
pub mod pc;
mod pci_glue;
pub mod pending_cache;
pub mod platform;
pub mod port_map;
pub mod ports;
pub mod q35;
mod requests;
pub mod snapshot;
mod time;
mod watches;

use crate::clock::Ticks;
use crate::devices::debugcon::Debugcon;
use crate::events::Events;
use crate::smi::io_trap::IoTraps;
use crate::smi::pin::SmiPin;
use cpu::Bus;

/// A board's device state ([`Board::device_state`]).
#[derive(Clone, Debug)]
pub enum BoardState {
    /// The minimal board keeps none.
    Minimal,
    /// `pc`.
    Pc(Box<snapshot::DeviceState<crate::chipset::i440fx::I440fx>>),
    /// `q35`.
    Q35(Box<snapshot::DeviceState<q35::Q35Board>>),
}

/// One of the boards, chosen at run time.
pub enum Board {
    /// RAM, a flat ROM, debugcon and isa-debug-exit.
    Minimal(minimal::Minimal),
    /// i440FX + PIIX4.
    Pc(Box<pc::Pc>),
    /// Q35 + ICH9.
    Q35(Box<q35::Q35>),
}

macro_rules! platform {
    ($self:expr, $p:ident => $e:expr, $minimal:expr) => {
        match $self {
            Board::Pc($p) => $e,
            Board::Q35($p) => $e,
            Board::Minimal(_) => $minimal,
        }
    };
}

impl Board {
    /// Guest RAM.
    pub fn ram(&mut self) -> &mut crate::memory::Ram {
        match self {
            Board::Minimal(b) => &mut b.ram,
            Board::Pc(b) => &mut b.ram,
            Board::Q35(b) => &mut b.ram,
        }
    }

    /// The device state a snapshot keeps ([`snapshot`]).
    pub fn device_state(&self) -> BoardState {
        match self {
            Board::Minimal(_) => BoardState::Minimal,
            Board::Pc(b) => BoardState::Pc(Box::new(b.device_state())),
            Board::Q35(b) => BoardState::Q35(Box::new(b.device_state())),
        }
    }

    /// Goes back to `s` (taken on this board; one of another board changes nothing).
    pub fn restore_device_state(&mut self, s: &BoardState) {
        match (self, s) {
            (Board::Pc(b), BoardState::Pc(s)) => b.restore_device_state(s),
            (Board::Q35(b), BoardState::Q35(s)) => b.restore_device_state(s),
            _ => {}
        }
    }

    /// The board as the CPU's bus.
    pub fn bus(&mut self) -> &mut dyn Bus {
        match self {
            Board::Minimal(b) => b,
            Board::Pc(b) => b.as_mut(),
            Board::Q35(b) => b.as_mut(),
        }
    }

    /// The debug console.
    pub fn debugcon(&mut self) -> &mut Debugcon {
        match self {
            Board::Minimal(b) => &mut b.debugcon,
            Board::Pc(b) => &mut b.debugcon,
            Board::Q35(b) => &mut b.debugcon,
        }
    }

    /// The value the guest wrote to isa-debug-exit, once it has.
    pub fn debug_exit_code(&self) -> Option<u8> {
        match self {
            Board::Minimal(b) => b.debug_exit.code(),
            Board::Pc(b) => b.debug_exit.code(),
            Board::Q35(b) => b.debug_exit.code(),
        }
    }

    /// Records the CPU's retired-instruction count and fires due timers.
    pub fn set_now(&mut self, icount: u64) {
        platform!(self, p => p.set_now(icount), ())
    }

    /// Guest time (ticks) given the CPU's count `icount` (the minimal board has no idle time).
    pub fn now(&self, icount: u64) -> Ticks {
        platform!(self, p => p.now(), Ticks(icount))
    }

    /// The poll fast-forward state ([`crate::poll`]); None on the minimal board (no PM timer).
    pub fn poll(&mut self) -> Option<&mut crate::poll::PollForward> {
        platform!(self, p => Some(&mut p.poll), None)
    }

    /// Moves guest time forward while the CPU is halted.
    pub fn skip_to(&mut self, t: Ticks) {
        platform!(self, p => p.skip_to(t), ())
    }

    /// Starts a CPU slice ending at `end`.
    pub fn begin_slice(&mut self, end: Ticks) {
        platform!(self, p => p.begin_slice(end), ())
    }

    /// The next timer deadline.
    pub fn next_deadline(&self) -> Option<Ticks> {
        platform!(self, p => p.next_deadline(), None)
    }

    /// The next timer deadline that raises an SMI.
    pub fn next_wake(&self) -> Option<Ticks> {
        platform!(self, p => p.next_wake(), None)
    }

    /// Extra guest time for SMM entry and RSM, in ticks (nothing on the minimal board).
    pub fn set_smm_costs(&mut self, entry: u64, exit: u64) {
        platform!(self, p => p.set_smm_costs(entry, exit), ())
    }

    /// Whether the CPU must be flushed (SMRAM or PAM changed); clears the request.
    pub fn take_flush(&mut self) -> bool {
        platform!(self, p => p.take_flush(), false)
    }

    /// The RAM bus masters wrote since the last call (nothing on the minimal board, which
    /// has none); see [`platform::Platform::take_dma_writes`].
    pub fn take_dma_writes(&mut self) -> dma::DmaWrites {
        platform!(self, p => p.take_dma_writes(), dma::DmaWrites::default())
    }

    /// Whether SMI# is asserted.
    pub fn smi_pending(&self) -> bool {
        platform!(self, p => p.smi.is_pending(), false)
    }

    /// Events and counters (None on the minimal board).
    pub fn events(&mut self) -> Option<&mut Events> {
        platform!(self, p => Some(&mut p.events), None)
    }

    /// I/O trap configuration (None on the minimal board).
    pub fn io_traps(&mut self) -> Option<&mut IoTraps> {
        platform!(self, p => Some(&mut p.io_traps), None)
    }

    /// A new A20 level the guest asked for (port 0x92, 8042), once.
    pub fn take_a20(&mut self) -> Option<bool> {
        platform!(self, p => p.take_a20(), None)
    }

    /// Whether the guest asked for a reset (0xCF9, port 0x92, 8042).
    pub fn reset_requested(&self) -> bool {
        platform!(self, p => p.reset_requested(), false)
    }

    /// Whether COM1 has transmitted its stop text (`--stop-on-serial`).
    pub fn serial_text_seen(&self) -> bool {
        platform!(self, p => p.serial_text_seen(), false)
    }

    /// Whether the guest powered the machine off (Some(from SMM)).
    pub fn power_off(&self) -> Option<bool> {
        platform!(self, p => p.power_off(), None)
    }

    /// The next timer that can wake a CPU halted with interrupts enabled.
    pub fn next_interrupt_wake(&self) -> Option<Ticks> {
        platform!(self, p => p.next_interrupt_wake(), None)
    }

    /// The legacy devices (None on the minimal board).
    pub fn legacy(&mut self) -> Option<&mut legacy::LegacyDevices> {
        platform!(self, p => Some(&mut p.legacy), None)
    }

    /// The SMRAM decoding in force (None on the minimal board).
    pub fn smram_config(&self) -> Option<crate::smram::SmramConfig> {
        platform!(self, p => Some(p.smram_config()), None)
    }

    /// Whether the run must pause at a debugcon line end (see
    /// [`platform::Platform::pause_on_debugcon_line`]); clears the request.
    pub fn take_pause(&mut self) -> bool {
        platform!(self, p => p.take_pause(), false)
    }

    /// Pauses [`crate::Machine::run`] at the end of every debugcon line (pc and q35 only).
    pub fn set_pause_on_debugcon_line(&mut self, on: bool) {
        platform!(self, p => p.pause_on_debugcon_line = on, ())
    }

    /// Whether the run pauses when RSM returns from SMM (see [`Board::take_pause`]).
    pub fn set_pause_on_rsm(&mut self, on: bool) {
        platform!(self, p => p.pause_on_rsm = on, ())
    }

    /// Pauses [`crate::Machine::run`] right after every SMM entry, before the SMI's first
    /// instruction (pc and q35 only).
    pub fn set_pause_on_smm_entry(&mut self, on: bool) {
        platform!(self, p => p.pause_on_smm_entry = on, ())
    }

    /// Pauses [`crate::Machine::run`] after a write to any of `ranges` (pc and q35 only:
    /// false on the minimal board).
    pub fn set_write_watches(&mut self, ranges: Vec<std::ops::Range<u64>>) -> bool {
        platform!(self, p => { p.write_watches = ranges; true }, false)
    }

    /// The watched writes since the last call.
    pub fn take_watch_hits(&mut self) -> Vec<crate::debug::WatchHit> {
        platform!(self, p => std::mem::take(&mut p.watch_hits), Vec::new())
    }

    /// The SMM access observer (None on the minimal board).
    pub fn smm_observer(&mut self) -> Option<&mut observer::SmmObserver> {
        platform!(self, p => Some(&mut p.smm_observer), None)
    }

    /// The external SMI pin (None on the minimal board).
    pub fn smi_pin(&mut self) -> Option<&mut SmiPin> {
        platform!(self, p => Some(&mut p.smi_pin), None)
    }

    /// The replayed SMI load (None on the minimal board).
    pub fn smi_load(&mut self) -> Option<&mut crate::smi::smi_load::SmiLoad> {
        platform!(self, p => Some(&mut p.smi_load), None)
    }

    /// Maps `bank` below 4 GiB in place of the ROM there, its unit 0's top 128 KiB copied into
    /// the legacy BIOS window. False on the minimal board (no system flash).
    pub fn attach_pflash(&mut self, bank: crate::devices::pflash_bank::PflashBank) -> bool {
        platform!(self, p => {
            p.rom = crate::memory::rom::Rom::new(bank.isa_bios());
            p.pflash = Some(bank);
            true
        }, false)
    }

    /// The system flash (`--pflash`), if the board has it.
    pub fn pflash(&self) -> Option<&crate::devices::pflash_bank::PflashBank> {
        platform!(self, p => p.pflash.as_ref(), None)
    }

    /// Attaches a disk where the board's firmware looks first: the IDE primary master on
    /// `pc`, AHCI port 0 on `q35`. False on the minimal board (no disk controller).
    pub fn attach_disk(&mut self, disk: crate::devices::disk::Disk) -> bool {
        let ((dev, func, pos), slots) = match self {
            Board::Pc(p) => (pc::DISK_SLOT, &mut p.pci_slots),
            Board::Q35(p) => (q35::DISK_SLOT, &mut p.pci_slots),
            Board::Minimal(_) => return false,
        };
        slots.get_mut(dev, func).is_some_and(|f| f.attach_disk(pos, disk))
    }
}
