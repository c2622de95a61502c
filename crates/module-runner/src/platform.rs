//! The synthetic platform: a q35 machine whose "firmware" is the host. It programs the chipset
//! as firmware would (PMBASE, ACPI_EN, GBL_SMI_EN and APMC_EN; TSEG 8 MiB; SMRAM closed and
//! D_LCK set), relocates SMBASE into TSEG with a real SMI, writes the SMI entry, page tables and
//! GDT into TSEG, and builds the tables an SMM driver meets: the SMST and the SMM protocols in
//! SMRAM, the system table, boot/runtime/DXE services, a HOB list and the DXE protocols
//! (SMM Base2, SMM Access2) outside it. After [`build`], SMRAM is locked: only SMM (and the
//! host writing as SMM) reaches it.

use crate::efi;
use crate::entry_stub;
use crate::layout::*;
use crate::services::{self, Env, Service};
use fwimage::Guid;
use machine::chipset::q35::{ich9_lpc, mch};
use machine::host::SwSmiOutcome;
use machine::{BoardKind, Machine, MachineConfig};
use uefi_smm::smst::{Dispatch, DISPATCH_PROTOCOLS};

/// PMBASE the runner programs.
pub const PMBASE: u16 = 0x600;
/// The SW SMI value the runner's own SMIs use (its entry stub ignores the value).
pub const RUNNER_SMI: u8 = 0x00;
/// Instructions the relocation SMI may take.
const RELOCATION_BUDGET: u64 = 10_000;

/// Why the platform could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// The machine refused its configuration.
    #[error("cannot build the q35 machine: {0}")]
    Machine(String),
    /// The relocation SMI did not do its work.
    #[error("SMBASE relocation failed: {0}")]
    Relocation(String),
}

/// A 64 KiB ROM that halts at the reset vector (HLT; JMP back): the CPU waits outside SMM for
/// the host's SMIs. At its start, `start`: the way to long mode ([`entry_stub::outside`]).
fn rom(start: &[u8]) -> Vec<u8> {
    let mut r = vec![0xf4u8; 0x1_0000];
    r[..start.len()].copy_from_slice(start);
    r[0xfff0..0xfff3].copy_from_slice(&[0xf4, 0xeb, 0xfd]);
    r
}

/// Builds the platform for `model`.
pub fn build(model: cpu::CpuModel) -> Result<(Machine, Env, Tables), PlatformError> {
    let config = MachineConfig { memory_mib: MEMORY_MIB, model, ..MachineConfig::default() };
    let outside = entry_stub::outside(OUTSIDE_CODE, OUTSIDE_PML4, OUTSIDE_MAILBOX, OUTSIDE_STACK_TOP);
    let mut m = Machine::new(BoardKind::Q35, config, rom(&outside.rom)).map_err(|e| PlatformError::Machine(e.to_string()))?;
    // The PM I/O block and its SMI logic (ICH9 datasheet §13.8.3, §13.8.3.13).
    m.pci_write(31, 0, ich9_lpc::LPC_PMBASE, 4, PMBASE as u32);
    m.pci_write(31, 0, ich9_lpc::LPC_ACPI_CNTL, 1, ich9_lpc::ACPI_CNTL_ACPI_EN as u32);
    m.io_out(PMBASE + ich9_lpc::SMI_EN, 4, ich9_lpc::SMI_EN_GBL_SMI_EN | ich9_lpc::SMI_EN_APMC_EN);
    if !m.cpu_model().long_mode {
        return Err(PlatformError::Relocation("the CPU model has no long mode, which UEFI SMM drivers need".into()));
    }
    m.write_phys(PML4, &entry_stub::page_tables(PML4));
    m.write_phys(GDT, &entry_stub::gdt(GDT));
    m.write_phys(SMI_ENTRY, &entry_stub::entry(SMI_ENTRY));
    m.write_phys(CORE_ENTRY, &entry_stub::core_entry(CORE_ENTRY));
    m.write_phys(OUTSIDE_PML4, &entry_stub::page_tables(OUTSIDE_PML4));
    m.write_phys(OUTSIDE_CODE, &outside.ram);
    // Long mode outside SMM now, halted in RAM: a boot's DXE phase, before any SMI; system
    // flash mapped later over the ROM changes nothing for it.
    match m.run_outside_smm(0, RELOCATION_BUDGET, &mut |_| Ok(())) {
        machine::host::OutsideOutcome::Halted { .. } if m.cpu_view().mode == "long" => {}
        other => return Err(PlatformError::Machine(format!("the switch to long mode failed: {other:?}"))),
    }
    let mut env = Env::new();
    let tables = tables(&mut m, &mut env);
    // TSEG 8 MiB (TSEG_SZ = 10b) and compatible SMRAM off, closed: SMBASE stays at its reset
    // value until the first SMI the runner makes relocates it (or an SMM CPU driver run here
    // relocates it itself), and SMRAM is locked at ReadyToLock ([`lock_smram`]).
    close_smram(&mut m);
    m.set_breakpoints(&env.breakpoints());
    Ok((m, env, tables))
}

/// SMRAM as edk2's SMM IPL opens it for the SMM core and the drivers it dispatches outside
/// SMM: on Q35, ESMRAMC.T_EN cleared (TSEG becomes plain RAM; OVMF's SmramInternal.c
/// SmramAccessOpen does the same) and D_OPEN for the A/B segment. False when SMRAM is locked
/// (D_LCK freezes both; Q35 MCH datasheet §5.1.15-16).
pub fn open_smram(m: &mut Machine) -> bool {
    if smram_locked(m) {
        return false;
    }
    m.pci_write(0, 0, mch::MCH_ESMRAMC, 1, TSEG_SZ_8M as u32);
    m.pci_write(0, 0, mch::MCH_SMRAM, 1, (mch::SMRAM_G_SMRAME | mch::SMRAM_C_BASE_SEG | mch::SMRAM_D_OPEN) as u32);
    true
}

/// SMRAM closed: TSEG enabled (T_EN) and D_OPEN clear.
pub fn close_smram(m: &mut Machine) {
    m.pci_write(0, 0, mch::MCH_ESMRAMC, 1, (mch::ESMRAMC_T_EN | TSEG_SZ_8M) as u32);
    m.pci_write(0, 0, mch::MCH_SMRAM, 1, (mch::SMRAM_G_SMRAME | mch::SMRAM_C_BASE_SEG) as u32);
}

/// SMRAM closed and locked (D_LCK), as the SMM IPL locks it at ReadyToLock.
pub fn lock_smram(m: &mut Machine) {
    close_smram(m);
    m.pci_write(0, 0, mch::MCH_SMRAM, 1, (mch::SMRAM_G_SMRAME | mch::SMRAM_C_BASE_SEG | mch::SMRAM_D_LCK) as u32);
}

/// Whether D_LCK is set.
pub fn smram_locked(m: &mut Machine) -> bool {
    m.pci_read(0, 0, mch::MCH_SMRAM, 1) as u8 & mch::SMRAM_D_LCK != 0
}

/// ESMRAMC.TSEG_SZ = 10b: 8 MiB.
const TSEG_SZ_8M: u8 = 0b100;

/// The first SMI, at the default SMBASE: its handler moves SMBASE to [`SMBASE`].
pub fn relocate(m: &mut Machine) -> Result<(), PlatformError> {
    let kind = m.smm_map();
    let default = cpu::smm::DEFAULT_SMBASE as u64;
    m.write_phys(default + 0x8000, &entry_stub::relocation(SMBASE as u32, kind.smbase_offset()));
    match m.raise_sw_smi(RUNNER_SMI, 0, &[0; 16], RELOCATION_BUDGET) {
        SwSmiOutcome::Returned { .. } => {}
        SwSmiOutcome::NoSmi => return Err(PlatformError::Relocation("the APM write raised no SMI".into())),
        SwSmiOutcome::Fault(why) => return Err(PlatformError::Relocation(why)),
    }
    let now = m.cpu_view().smbase as u64;
    if now != SMBASE {
        return Err(PlatformError::Relocation(format!("SMBASE is {now:#x} after the relocation SMI, not {SMBASE:#x}")));
    }
    Ok(())
}

/// Where the tables went.
#[derive(Clone, Copy, Debug)]
pub struct Tables {
    /// EFI_SYSTEM_TABLE.
    pub system_table: u64,
}

fn put(m: &mut Machine, at: u64, v: u64) {
    services::write(m, at, &v.to_le_bytes());
}

/// An interface of `n` slots of `mk(i)` on the SMM or DXE side, in that side's heap.
fn interface(m: &mut Machine, env: &mut Env, smm: bool, n: u64, extra: &[u64], mk: impl Fn(u64) -> Service) -> u64 {
    let at = if smm { env.smram.pool(8 * (n + extra.len() as u64)) } else { env.dxe.pool(8 * (n + extra.len() as u64)) }.expect("room for an interface");
    for i in 0..n {
        let s = env.slot(m, mk(i), smm);
        put(m, at + 8 * i, s);
    }
    for (j, v) in extra.iter().enumerate() {
        put(m, at + 8 * (n + j as u64), *v);
    }
    at
}

/// A table header: signature, revision, header size, CRC32 0.
fn header(m: &mut Machine, at: u64, signature: u64, revision: u32, size: u32) {
    put(m, at, signature);
    put(m, at + 8, (size as u64) << 32 | revision as u64);
    put(m, at + 16, 0);
}

fn tables(m: &mut Machine, env: &mut Env) -> Tables {
    // --- SMM side ---
    let smst = SMST;
    header(m, smst, efi::SMST_SIGNATURE, efi::SMST_REVISION, 24);
    for &(off, _) in services::smst_functions() {
        let s = env.slot(m, Service::Smst(off), true);
        put(m, smst + off, s);
    }
    put(m, smst + 0x78, 0);
    put(m, smst + 0x80, 1);
    put(m, SAVE_STATE_TABLES, 0x400);
    put(m, SAVE_STATE_TABLES + 8, SAVE_STATE);
    put(m, smst + 0x88, SAVE_STATE_TABLES);
    put(m, smst + 0x90, SAVE_STATE_TABLES + 8);
    env.write_smst_config(m);
    for &(guid, kind) in DISPATCH_PROTOCOLS {
        let g: Guid = guid.parse().expect("a GUID");
        let iface = match kind {
            Dispatch::Sw => interface(m, env, true, 2, &[crate::services::dispatch_max_swi()], |i| Service::Dispatch(kind, i as u8)),
            Dispatch::Periodic => interface(m, env, true, 3, &[], |i| Service::Dispatch(kind, i as u8)),
            Dispatch::Gpi => interface(m, env, true, 2, &[16], |i| Service::Dispatch(kind, i as u8)),
            _ => interface(m, env, true, 2, &[], |i| Service::Dispatch(kind, i as u8)),
        };
        env.provide(true, g, iface);
    }
    let cpu = interface(m, env, true, 2, &[], |i| Service::SaveState(i == 1));
    env.provide(true, efi::SMM_CPU, cpu);
    let io = interface(m, env, true, 4, &[], |i| Service::CpuIo(8 * i));
    env.provide(true, efi::SMM_CPU_IO2, io);

    // --- DXE side ---
    let st = DXE_TABLES;
    let bs = DXE_TABLES + 0x100;
    let rt = DXE_TABLES + 0x300;
    let ds = DXE_TABLES + 0x400;
    let vendor = DXE_TABLES + 0x800;
    header(m, st, efi::ST_SIGNATURE, 0x0002_0046, efi::ST_SIZE as u32);
    let name: Vec<u8> = "smmlab module runner\0".encode_utf16().flat_map(u16::to_le_bytes).collect();
    services::write(m, vendor, &name);
    put(m, st + 0x18, vendor);
    put(m, st + efi::ST_RUNTIME, rt);
    put(m, st + efi::ST_BOOT, bs);
    header(m, bs, efi::BS_SIGNATURE, 0x0002_0046, services::BOOT_SERVICES_SIZE as u32);
    for off in (0x18..services::BOOT_SERVICES_SIZE).step_by(8) {
        let s = env.slot(m, Service::Boot(off), false);
        put(m, bs + off, s);
    }
    header(m, rt, efi::RT_SIGNATURE, 0x0002_0046, 0x88);
    for off in (0x18..0x88).step_by(8) {
        let s = env.slot(m, Service::Runtime(off), false);
        put(m, rt + off, s);
    }
    header(m, ds, efi::DS_SIGNATURE, 0x0001_0000, 0xb8);
    for off in (0x18..0xb8).step_by(8) {
        let s = env.slot(m, Service::Dxe(off), false);
        put(m, ds + off, s);
    }
    // A HOB list of a PHIT HOB and the end (PI vol. 3 §5.3), so the HOB libraries' walks end.
    let hobs = DXE_TABLES + 0x1000;
    let mut h = Vec::new();
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&0x38u16.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h.extend_from_slice(&9u32.to_le_bytes()); // EFI_HOB_HANDOFF_TABLE_VERSION
    h.extend_from_slice(&0u32.to_le_bytes()); // BOOT_WITH_FULL_CONFIGURATION
    for v in [DXE_HEAP.end, DXE_HEAP.start, DXE_HEAP.end, DXE_HEAP.start, hobs + 0x38] {
        h.extend_from_slice(&v.to_le_bytes());
    }
    h.extend_from_slice(&0xffffu16.to_le_bytes());
    h.extend_from_slice(&8u16.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    services::write(m, hobs, &h);
    env.st_config = vec![(efi::HOB_LIST, hobs), (efi::DXE_SERVICES_TABLE, ds)];
    write_st_config(m, &env.st_config);
    let base2 = interface(m, env, false, 2, &[], |i| if i == 0 { Service::Base2InSmm } else { Service::Base2GetSmst });
    env.provide(false, efi::SMM_BASE2, base2);
    // EFI_SMM_ACCESS2_PROTOCOL: four functions, then LockState (TRUE) and OpenState (FALSE).
    let access = interface(m, env, false, 4, &[1], |i| Service::Access2(8 * i));
    env.provide(false, efi::SMM_ACCESS2, access);
    let mp = interface(m, env, false, 7, &[], Service::Mp);
    env.provide(false, efi::MP_SERVICES, mp);
    Tables { system_table: st }
}

/// Writes the system table's configuration table (NumberOfTableEntries, ConfigurationTable).
pub fn write_st_config(m: &mut Machine, entries: &[(Guid, u64)]) {
    let at = DXE_TABLES + 0x600;
    let mut bytes = Vec::new();
    for (g, t) in entries.iter().take(32) {
        bytes.extend_from_slice(&g.0);
        bytes.extend_from_slice(&t.to_le_bytes());
    }
    services::write(m, at, &bytes);
    put(m, DXE_TABLES + efi::ST_ENTRIES, entries.len().min(32) as u64);
    put(m, DXE_TABLES + efi::ST_CONFIG, at);
}
