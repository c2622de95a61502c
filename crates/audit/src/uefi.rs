//! What the auditor knows of edk2's SMM core outside SMRAM (the project's UEFI SMM reference,
//! §4): SMM_CORE_PRIVATE_DATA, signature `smmc`, a static of the PiSmmIpl runtime image, is
//! the communication area between DXE (later the OS) and SMM. The core writes it on every SMI
//! by design (InSmm at +0x29, CommunicationBuffer +0x38, BufferSize +0x40, ReturnStatus +0x48),
//! so those writes are not writes to memory nobody passed.

use machine::Machine;
use std::ops::Range;

/// The firmware volumes of the firmware booted from flash (unit 0), to name modules by.
pub fn firmware_volumes(m: &Machine) -> Option<fwimage::Image> {
    let code = m.board.pflash()?.units()[0].flash.contents();
    fwimage::parse(&code).ok()
}

/// `SIGNATURE_32('s','m','m','c')` in a UINTN.
const SMMC: u64 = 0x636d_6d73;
/// sizeof(SMM_CORE_PRIVATE_DATA) on x64.
pub const SMMC_SIZE: u64 = 0x68;
/// Memory is scanned in pieces of this size.
const CHUNK: u64 = 1 << 20;

/// The SMM core's private data: the first `smmc` record below SMRAM whose SMST (+0x30) and
/// SMM entry point (+0x20) both lie in SMRAM.
pub fn core_private_data(m: &mut Machine, smram: &[Range<u64>]) -> Option<u64> {
    let in_smram = |a: u64| smram.iter().any(|r| r.contains(&a));
    let top = smram.iter().map(|r| r.start).filter(|&s| s >= 0x10_0000).min()?;
    let mut base = 0u64;
    while base < top {
        let len = CHUNK.min(top - base);
        let bytes = m.read_phys(base, len as usize + SMMC_SIZE as usize, false);
        let word = |o: usize| bytes.get(o..o + 8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
        for o in (0..len as usize).step_by(8) {
            if word(o) == Some(SMMC) && word(o + 0x30).is_some_and(in_smram) && word(o + 0x20).is_some_and(in_smram) {
                return Some(base + o as u64);
            }
        }
        base += len;
    }
    None
}

/// The firmware's own areas outside SMRAM that SMM writes by design, with what they are.
pub fn firmware_areas(m: &mut Machine, smram: &[Range<u64>]) -> Vec<(Range<u64>, String)> {
    core_private_data(m, smram)
        .map(|a| (a..a + SMMC_SIZE, format!("the UEFI SMM core's private data (SMM_CORE_PRIVATE_DATA 'smmc', the communication area) at {a:#x}")))
        .into_iter()
        .collect()
}

/// What one call through the communication path did.
#[derive(Clone, Debug)]
pub struct CommCall {
    /// ReturnStatus the core wrote back (None: the SMI did not return).
    pub status: Option<u64>,
    /// How the SMI went.
    pub outcome: machine::host::SwSmiOutcome,
    /// The SMM accesses it made.
    pub accesses: Vec<machine::board::observer::SmmAccess>,
}

/// EFI_ACCESS_DENIED, what the core answers for a buffer it refuses.
pub const EFI_ACCESS_DENIED: u64 = 0x8000_0000_0000_000f;
/// EFI_NOT_FOUND, what the core answers for a GUID no handler has.
pub const EFI_NOT_FOUND: u64 = 0x8000_0000_0000_000e;

/// Sends `payload` to the GUID handlers of `guid` the way DXE's SmmCommunicationCommunicate
/// does (the project's UEFI SMM reference, §4): EFI_SMM_COMMUNICATE_HEADER {HeaderGuid,
/// MessageLength} and the payload at `buffer`, its address and size (`size`, else 24 +
/// payload) in the core's private data at `smmc` (+0x38, +0x40), then an SMI (OVMF's
/// SmmControl2 writes 0 to APM_STS and APM_CNT). ReturnStatus (+0x48) is read back. Every byte
/// written is put back after, so the firmware's own state is as before.
pub fn communicate(m: &mut Machine, smmc: u64, buffer: u64, guid: &[u8; 16], payload: &[u8], size: Option<u64>, budget: u64) -> CommCall {
    let len = 24 + payload.len();
    let saved_buffer = m.read_phys(buffer, len, false);
    let saved_private = m.read_phys(smmc, SMMC_SIZE as usize, false);
    let mut msg = guid.to_vec();
    msg.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    msg.extend_from_slice(payload);
    m.write_phys(buffer, &msg);
    m.write_phys(smmc + 0x38, &buffer.to_le_bytes());
    m.write_phys(smmc + 0x40, &size.unwrap_or(len as u64).to_le_bytes());
    m.write_phys(smmc + 0x48, &u64::MAX.to_le_bytes());
    m.take_smm_accesses();
    let outcome = m.raise_sw_smi(0, 0, &[0; 16], budget);
    let accesses = m.take_smm_accesses();
    let status = matches!(outcome, machine::host::SwSmiOutcome::Returned { .. }).then(|| {
        let b = m.read_phys(smmc + 0x48, 8, false);
        u64::from_le_bytes(b.try_into().expect("8 bytes"))
    });
    m.write_phys(buffer, &saved_buffer);
    m.write_phys(smmc, &saved_private);
    CommCall { status, outcome, accesses }
}
