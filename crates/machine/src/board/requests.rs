//! What the [`Platform`] asks of the machine and the CPU: a new A20 level, a reset, soft off,
//! a pause, a flush of the CPU's pages and decoded code, COM1's stop text; and the lines it
//! drives ([`Platform::compute_pending`]: SMI#, INTR and STOP while any request waits).

use super::dma::DmaView;
use super::platform::Platform;
use crate::chipset::Chipset;
use cpu::Pending;

impl<C: Chipset> Platform<C> {
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
    pub(super) fn after_legacy_write(&mut self) {
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

    /// Whether the CPU's TLB and decoded code must be flushed (SMRAM or PAM changed, or bus
    /// masters wrote RAM that [`Platform::take_dma_writes`] was not asked for); clears the
    /// request.
    pub fn take_flush(&mut self) -> bool {
        let dma = !std::mem::take(&mut self.dma_writes).is_empty();
        std::mem::take(&mut self.flush) | dma
    }

    /// Whether the run must pause (a debugcon line ended); clears the request.
    pub fn take_pause(&mut self) -> bool {
        std::mem::take(&mut self.pause)
    }

    /// Whether COM1 has transmitted its stop text (`--stop-on-serial`).
    pub fn serial_text_seen(&self) -> bool {
        self.legacy.com1.as_ref().is_some_and(|u| u.stop_text_seen)
    }

    /// The lines the board drives now (what [`Bus::pending`] answers; [`super::pending_cache::PendingCache`] keeps it).
    pub(super) fn compute_pending(&mut self) -> Pending {
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
        if self.lapic.pending_vector().is_some() || (self.lapic.accepts_extint() && self.legacy.pics.intr()) {
            p |= Pending::INTR;
        }
        Pending(p)
    }
}
