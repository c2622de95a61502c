//! The SW SMI interface between the OS and the SMI handler (the value written to APM_CNT,
//! PI vol. 4 "SW SMI"), and the communication buffer (PI vol. 4 `EFI_MM_COMMUNICATE_HEADER`:
//! HeaderGuid, MessageLength (UINTN), Data[]).
//!
//! Calling convention: the caller puts its arguments in RBX (communication buffer address) and
//! writes the command to 0xB2; the handler answers in the saved RAX.

/// Answers `PING_REPLY | count << 32` in RAX.
pub const SW_PING: u8 = 0x01;
/// Processes the communication buffer at RBX; answers an EFI_STATUS in RAX. (Not 0x02/0x03:
/// on the ICH9 those APM commands toggle SCI_EN without an SMI.)
pub const SW_COMMUNICATE: u8 = 0x10;
/// End of the firmware's SMM set-up: SMRR and SMM_CODE_CHK programmed and locked. Refused
/// once done.
pub const SW_READY_TO_LOCK: u8 = 0xe0;
/// What the relocation SMI is raised with (the handler at the default SMBASE ignores it).
pub const SW_RELOCATE: u8 = 0x00;

/// "PONG" in the low 32 bits of the ping reply.
pub const PING_REPLY: u64 = 0x504f_4e47;

/// EFI_STATUS values (UEFI spec appendix D).
pub const EFI_SUCCESS: u64 = 0;
pub const EFI_INVALID_PARAMETER: u64 = 0x8000_0000_0000_0002;
pub const EFI_BAD_BUFFER_SIZE: u64 = 0x8000_0000_0000_0004;
pub const EFI_BUFFER_TOO_SMALL: u64 = 0x8000_0000_0000_0005;
pub const EFI_UNSUPPORTED: u64 = 0x8000_0000_0000_0003;
pub const EFI_NOT_FOUND: u64 = 0x8000_0000_0000_000e;
pub const EFI_ACCESS_DENIED: u64 = 0x8000_0000_0000_000f;

/// Size of the communication header: GUID (16) + MessageLength (8).
pub const COMM_HEADER_SIZE: u64 = 24;
/// The largest message the handler accepts.
pub const COMM_MAX_MESSAGE: u64 = 4096;

/// The hash service: the reply replaces the message with the 8-byte FNV-1a hash of it.
/// {9b1f0d2e-5c4a-4e33-8f6a-2d7c11e0a5b4}, an smmlab GUID.
pub const GUID_HASH: [u8; 16] = [0x2e, 0x0d, 0x1f, 0x9b, 0x4a, 0x5c, 0x33, 0x4e, 0x8f, 0x6a, 0x2d, 0x7c, 0x11, 0xe0, 0xa5, 0xb4];

/// 64-bit FNV-1a.
pub fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Raises SW SMI `cmd` with `rbx`; returns the RAX the handler left.
pub fn call(cmd: u8, rbx: u64) -> u64 {
    let rax: u64;
    // SAFETY: the OUT raises an SMI; the handler changes only RAX in the saved state. rbx is
    // reserved by LLVM, so it is swapped in and out around the OUT.
    unsafe {
        core::arch::asm!(
            "xchg rbx, {b}",
            "out 0xb2, al",
            "xchg rbx, {b}",
            b = inout(reg) rbx => _,
            inout("rax") cmd as u64 => rax,
            options(nostack),
        )
    };
    rax
}

/// The settings service (system configuration kept in the SMM-only flash sector). Message:
/// op u32 ([`SETTINGS_GET`] or [`SETTINGS_SET`]), key u32, value u64; a get fills the value.
/// {5a1e7c42-0b9d-4f6e-a3c1-7e2d98b4f015}, an smmlab GUID.
pub const GUID_SETTINGS: [u8; 16] = [0x42, 0x7c, 0x1e, 0x5a, 0x9d, 0x0b, 0x6e, 0x4f, 0xa3, 0xc1, 0x7e, 0x2d, 0x98, 0xb4, 0xf0, 0x15];
pub const SETTINGS_MESSAGE_SIZE: usize = 16;
pub const SETTINGS_GET: u32 = 1;
pub const SETTINGS_SET: u32 = 2;
/// The fan's minimum duty cycle in % (0-100); the fan control handler uses it.
pub const SETTING_FAN_MIN_DUTY: u32 = 1;
/// An asset tag (any value).
pub const SETTING_ASSET_TAG: u32 = 2;
pub const EFI_OUT_OF_RESOURCES: u64 = 0x8000_0000_0000_0009;
pub const EFI_DEVICE_ERROR: u64 = 0x8000_0000_0000_0007;
