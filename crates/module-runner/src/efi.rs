//! UEFI and PI constants the runner needs: status codes, protocol GUIDs, table offsets. From
//! UEFI 2.10 (`MdePkg/Include/Uefi/UefiSpec.h`, `UefiBaseType.h`), PI 1.9 vol. 4 and the
//! edk2-stable202211 headers, as gathered in the project's UEFI SMM reference.

use fwimage::Guid;

/// EFI_SUCCESS.
pub const SUCCESS: u64 = 0;
/// EFI_INVALID_PARAMETER.
pub const INVALID_PARAMETER: u64 = 0x8000_0000_0000_0002;
/// EFI_UNSUPPORTED.
pub const UNSUPPORTED: u64 = 0x8000_0000_0000_0003;
/// EFI_BUFFER_TOO_SMALL.
pub const BUFFER_TOO_SMALL: u64 = 0x8000_0000_0000_0005;
/// EFI_OUT_OF_RESOURCES.
pub const OUT_OF_RESOURCES: u64 = 0x8000_0000_0000_0009;
/// EFI_NOT_FOUND.
pub const NOT_FOUND: u64 = 0x8000_0000_0000_000e;
/// EFI_ACCESS_DENIED.
pub const ACCESS_DENIED: u64 = 0x8000_0000_0000_000f;

/// The name of an EFI_STATUS.
pub fn status_name(s: u64) -> String {
    let n = match s {
        SUCCESS => "EFI_SUCCESS",
        0x8000_0000_0000_0001 => "EFI_LOAD_ERROR",
        INVALID_PARAMETER => "EFI_INVALID_PARAMETER",
        UNSUPPORTED => "EFI_UNSUPPORTED",
        0x8000_0000_0000_0004 => "EFI_BAD_BUFFER_SIZE",
        BUFFER_TOO_SMALL => "EFI_BUFFER_TOO_SMALL",
        0x8000_0000_0000_0006 => "EFI_NOT_READY",
        0x8000_0000_0000_0007 => "EFI_DEVICE_ERROR",
        0x8000_0000_0000_0008 => "EFI_WRITE_PROTECTED",
        OUT_OF_RESOURCES => "EFI_OUT_OF_RESOURCES",
        NOT_FOUND => "EFI_NOT_FOUND",
        ACCESS_DENIED => "EFI_ACCESS_DENIED",
        0x8000_0000_0000_0015 => "EFI_ABORTED",
        0x8000_0000_0000_001a => "EFI_SECURITY_VIOLATION",
        0xa000_0000_0000_0002 => "EFI_NOT_AVAILABLE_YET",
        _ => return format!("{s:#x}"),
    };
    n.into()
}

const fn g(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> Guid {
    Guid::from_fields(d1, d2, d3, d4)
}

/// EFI_SMM_BASE2_PROTOCOL (= EFI_MM_BASE_PROTOCOL).
pub const SMM_BASE2: Guid = g(0xf4ccbfb7, 0xf6e0, 0x47fd, [0x9d, 0xd4, 0x10, 0xa8, 0xf1, 0x50, 0xc1, 0x91]);
/// EFI_SMM_ACCESS2_PROTOCOL.
pub const SMM_ACCESS2: Guid = g(0xc2702b74, 0x800c, 0x4131, [0x87, 0x46, 0x8f, 0xb5, 0xb8, 0x9c, 0xe4, 0xac]);
/// EFI_SMM_CPU_PROTOCOL.
pub const SMM_CPU: Guid = g(0xeb346b97, 0x975f, 0x4a9f, [0x8b, 0x22, 0xf8, 0xe9, 0x2b, 0xb3, 0xd5, 0x69]);
/// EFI_SMM_CPU_IO2_PROTOCOL.
pub const SMM_CPU_IO2: Guid = g(0x3242a9d8, 0xce70, 0x4aa0, [0x95, 0x5d, 0x5e, 0x7b, 0x14, 0x0d, 0xe4, 0xd2]);
/// EFI_SMM_CONFIGURATION_PROTOCOL, which an SMM CPU driver installs in the DXE database once
/// it owns SMI entry (PI 1.9 vol. 4 §4.4).
pub const SMM_CONFIGURATION: Guid = g(0x26eeb3de, 0xb689, 0x492e, [0x80, 0xf0, 0xbe, 0x8b, 0xd7, 0xda, 0x4b, 0xa7]);
/// EFI_MP_SERVICES_PROTOCOL (PI 1.9 vol. 2 §13.4).
pub const MP_SERVICES: Guid = g(0x3fdda605, 0xa76e, 0x4f46, [0xad, 0x29, 0x12, 0xf4, 0x53, 0x1b, 0x3d, 0x08]);
/// EFI_NOT_STARTED.
pub const NOT_STARTED: u64 = 0x8000_0000_0000_0013;
/// EFI_LOADED_IMAGE_PROTOCOL.
pub const LOADED_IMAGE: Guid = g(0x5b1b31a1, 0x9562, 0x11d2, [0x8e, 0x3f, 0x00, 0xa0, 0xc9, 0x69, 0x72, 0x3b]);
/// gEfiHobListGuid (the HOB list in the configuration table).
pub const HOB_LIST: Guid = g(0x7739f24c, 0x93d7, 0x11d4, [0x9a, 0x3a, 0x00, 0x90, 0x27, 0x3f, 0xc1, 0x4d]);
/// gEfiDxeServicesTableGuid.
pub const DXE_SERVICES_TABLE: Guid = g(0x05ad34ba, 0x6f02, 0x4214, [0x95, 0x2e, 0x4d, 0xa0, 0x39, 0x8e, 0x2b, 0xb9]);

/// EFI_SYSTEM_TABLE: RuntimeServices, BootServices, NumberOfTableEntries, ConfigurationTable.
pub const ST_RUNTIME: u64 = 0x58;
/// EFI_SYSTEM_TABLE.BootServices.
pub const ST_BOOT: u64 = 0x60;
/// EFI_SYSTEM_TABLE.NumberOfTableEntries.
pub const ST_ENTRIES: u64 = 0x68;
/// EFI_SYSTEM_TABLE.ConfigurationTable.
pub const ST_CONFIG: u64 = 0x70;
/// sizeof(EFI_SYSTEM_TABLE).
pub const ST_SIZE: u64 = 0x78;
/// 'IBI SYST'.
pub const ST_SIGNATURE: u64 = 0x5453_5953_2049_4249;
/// 'BOOTSERV'.
pub const BS_SIGNATURE: u64 = 0x5652_4553_544f_4f42;
/// 'RUNTSERV'.
pub const RT_SIGNATURE: u64 = 0x5652_4553_544e_5552;
/// 'DXE_SERV'.
pub const DS_SIGNATURE: u64 = 0x5652_4553_5f45_5844;
/// 'SMST'.
pub const SMST_SIGNATURE: u64 = 0x5453_4d53;
/// The SMST revision of edk2-stable202211 ((1 << 16) | 60).
pub const SMST_REVISION: u32 = 0x0001_003c;
/// sizeof(EFI_SMM_SYSTEM_TABLE2).
pub const SMST_SIZE: u64 = 0xf0;

/// EFI_SMRAM_DESCRIPTOR.RegionState bits: CLOSED, LOCKED, CACHEABLE (PiMultiPhase.h).
pub const SMRAM_CLOSED_LOCKED_CACHEABLE: u64 = 0x2 | 0x4 | 0x8;

/// EFI_MEMORY_TYPE values the SMM allocators accept (Pool.c, Page.c).
pub const RUNTIME_SERVICES_CODE: u64 = 5;
/// EfiRuntimeServicesData.
pub const RUNTIME_SERVICES_DATA: u64 = 6;
