/*
 * smm.h: the few UEFI / PI SMM types the smmlab test drivers use, written for these drivers.
 *
 * Layouts follow the UEFI 2.x specification (EFI_SYSTEM_TABLE, EFI_BOOT_SERVICES), the UEFI PI
 * specification 1.9 Vol. 4 (MM: ch. 3 MMST, ch. 5 MM Base / Access, ch. 7 SW dispatch, MM CPU)
 * and the matching edk2 headers at edk2-stable202211:
 *   MdePkg/Include/Uefi/UefiSpec.h          EFI_SYSTEM_TABLE, EFI_BOOT_SERVICES
 *   MdePkg/Include/Pi/PiSmmCis.h, PiMmCis.h EFI_SMM_SYSTEM_TABLE2 / EFI_MM_SYSTEM_TABLE
 *   MdePkg/Include/Pi/PiMultiPhase.h        EFI_SMRAM_DESCRIPTOR
 *   MdePkg/Include/Protocol/SmmBase2.h      EFI_SMM_BASE2_PROTOCOL
 *   MdePkg/Include/Protocol/MmAccess.h      EFI_SMM_ACCESS2_PROTOCOL / EFI_MM_ACCESS_PROTOCOL
 *   MdePkg/Include/Protocol/MmSwDispatch.h  EFI_SMM_SW_DISPATCH2_PROTOCOL, EFI_SMM_SW_CONTEXT
 *   MdePkg/Include/Protocol/MmCpu.h         EFI_SMM_CPU_PROTOCOL, EFI_SMM_SAVE_STATE_REGISTER
 * Only the members the drivers call are named; the rest is padding, and every named member's
 * offset is checked below with _Static_assert (x64: UINTN and pointers are 8 bytes).
 * (See also /work/shared/reference/uefi-smm.md §1, §2, §5.)
 */
#ifndef SMMLAB_SMM_H
#define SMMLAB_SMM_H

/* No C library headers: a freestanding image. */
#define offsetof(type, member) __builtin_offsetof(type, member)

#define EFIAPI __attribute__((ms_abi))

typedef unsigned char UINT8;
typedef unsigned short UINT16;
typedef unsigned int UINT32;
typedef unsigned long long UINT64;
typedef UINT64 UINTN;
typedef unsigned char BOOLEAN;
typedef void VOID;
typedef UINTN EFI_STATUS;
typedef VOID *EFI_HANDLE;

#define TRUE ((BOOLEAN)1)
#define FALSE ((BOOLEAN)0)
#define NULL ((VOID *)0)
#define MAX_UINT64 0xFFFFFFFFFFFFFFFFULL

_Static_assert(sizeof(UINTN) == 8 && sizeof(VOID *) == 8, "x64 only");

/* EFI_STATUS codes (UEFI spec Appendix D; MdePkg/Include/Uefi/UefiBaseType.h). */
#define EFI_ERROR_BIT 0x8000000000000000ULL
#define EFI_SUCCESS 0ULL
#define EFI_INVALID_PARAMETER (EFI_ERROR_BIT | 2)
#define EFI_UNSUPPORTED (EFI_ERROR_BIT | 3)
#define EFI_BUFFER_TOO_SMALL (EFI_ERROR_BIT | 5)
#define EFI_NOT_READY (EFI_ERROR_BIT | 6)
#define EFI_NOT_FOUND (EFI_ERROR_BIT | 14)
#define EFI_ACCESS_DENIED (EFI_ERROR_BIT | 15)
#define EFI_ERROR(s) (((EFI_STATUS)(s)) & EFI_ERROR_BIT)

/* EFI_GUID: 16 bytes, 4-byte aligned (UefiBaseType.h / Base.h GUID). */
typedef struct {
  UINT32 Data1;
  UINT16 Data2;
  UINT16 Data3;
  UINT8 Data4[8];
} EFI_GUID;
_Static_assert(sizeof(EFI_GUID) == 16, "EFI_GUID is 16 bytes");

/* EFI_MEMORY_TYPE (UefiMultiPhase.h): an enum, 4 bytes. SMM pools take only 5 and 6. */
typedef enum {
  EfiRuntimeServicesCode = 5,
  EfiRuntimeServicesData = 6,
} EFI_MEMORY_TYPE;
_Static_assert(sizeof(EFI_MEMORY_TYPE) == 4, "enums are 4 bytes");

/* ---- DXE: EFI_BOOT_SERVICES and EFI_SYSTEM_TABLE (UEFI spec ch. 4; UefiSpec.h) ---- */

typedef EFI_STATUS(EFIAPI *EFI_LOCATE_PROTOCOL)(EFI_GUID *Protocol, VOID *Registration,
                                                VOID **Interface);

typedef struct {
  UINT8 Hdr_to_HandleProtocol[0x140]; /* Hdr (24) + 37 services before LocateProtocol */
  EFI_LOCATE_PROTOCOL LocateProtocol; /* 0x140 */
} EFI_BOOT_SERVICES;
_Static_assert(offsetof(EFI_BOOT_SERVICES, LocateProtocol) == 0x140, "gBS->LocateProtocol");

typedef struct {
  UINT8 Hdr_to_StdErr[0x58];       /* Hdr, FirmwareVendor, FirmwareRevision, console handles */
  VOID *RuntimeServices;           /* 0x58 */
  EFI_BOOT_SERVICES *BootServices; /* 0x60 */
  UINTN NumberOfTableEntries;      /* 0x68 */
  VOID *ConfigurationTable;        /* 0x70 */
} EFI_SYSTEM_TABLE;
_Static_assert(offsetof(EFI_SYSTEM_TABLE, RuntimeServices) == 0x58, "gST->RuntimeServices");
_Static_assert(offsetof(EFI_SYSTEM_TABLE, BootServices) == 0x60, "gST->BootServices");
_Static_assert(offsetof(EFI_SYSTEM_TABLE, NumberOfTableEntries) == 0x68,
               "gST->NumberOfTableEntries");
_Static_assert(offsetof(EFI_SYSTEM_TABLE, ConfigurationTable) == 0x70, "gST->ConfigurationTable");

/* ---- SMST: EFI_SMM_SYSTEM_TABLE2 (PI 1.9 Vol. 4 ch. 3; PiSmmCis.h / PiMmCis.h) ---- */

/* A GUID or root SMI handler (EFI_MM_HANDLER_ENTRY_POINT); also the child-dispatch callback. */
typedef EFI_STATUS(EFIAPI *EFI_SMM_HANDLER_ENTRY_POINT2)(EFI_HANDLE DispatchHandle,
                                                         const VOID *Context, VOID *CommBuffer,
                                                         UINTN *CommBufferSize);

typedef EFI_STATUS(EFIAPI *EFI_SMM_ALLOCATE_POOL)(EFI_MEMORY_TYPE PoolType, UINTN Size,
                                                  VOID **Buffer);
typedef EFI_STATUS(EFIAPI *EFI_SMM_FREE_POOL)(VOID *Buffer);
typedef EFI_STATUS(EFIAPI *EFI_SMM_LOCATE_PROTOCOL)(EFI_GUID *Protocol, VOID *Registration,
                                                    VOID **Interface);
typedef EFI_STATUS(EFIAPI *EFI_SMM_INTERRUPT_REGISTER)(EFI_SMM_HANDLER_ENTRY_POINT2 Handler,
                                                       const EFI_GUID *HandlerType,
                                                       EFI_HANDLE *DispatchHandle);
typedef EFI_STATUS(EFIAPI *EFI_SMM_INTERRUPT_UNREGISTER)(EFI_HANDLE DispatchHandle);

typedef struct {
  UINT8 Hdr_to_SmmIo[0x50];                          /* Hdr, vendor, revision, config, SmmIo */
  EFI_SMM_ALLOCATE_POOL SmmAllocatePool;             /* 0x50 */
  EFI_SMM_FREE_POOL SmmFreePool;                     /* 0x58 */
  UINT8 AllocatePages_to_LocateHandle[0xD0 - 0x60];  /* pages, CPU info, handle database */
  EFI_SMM_LOCATE_PROTOCOL SmmLocateProtocol;         /* 0xD0 */
  VOID *SmiManage;                                   /* 0xD8 */
  EFI_SMM_INTERRUPT_REGISTER SmiHandlerRegister;     /* 0xE0 */
  EFI_SMM_INTERRUPT_UNREGISTER SmiHandlerUnRegister; /* 0xE8 */
} EFI_SMM_SYSTEM_TABLE2;
_Static_assert(offsetof(EFI_SMM_SYSTEM_TABLE2, SmmAllocatePool) == 0x50, "Smst->SmmAllocatePool");
_Static_assert(offsetof(EFI_SMM_SYSTEM_TABLE2, SmmFreePool) == 0x58, "Smst->SmmFreePool");
_Static_assert(offsetof(EFI_SMM_SYSTEM_TABLE2, SmmLocateProtocol) == 0xD0,
               "Smst->SmmLocateProtocol");
_Static_assert(offsetof(EFI_SMM_SYSTEM_TABLE2, SmiManage) == 0xD8, "Smst->SmiManage");
_Static_assert(offsetof(EFI_SMM_SYSTEM_TABLE2, SmiHandlerRegister) == 0xE0,
               "Smst->SmiHandlerRegister");
_Static_assert(offsetof(EFI_SMM_SYSTEM_TABLE2, SmiHandlerUnRegister) == 0xE8,
               "Smst->SmiHandlerUnRegister");
_Static_assert(sizeof(EFI_SMM_SYSTEM_TABLE2) == 0xF0, "SMST is 0xF0 bytes");

/* ---- EFI_SMM_BASE2_PROTOCOL (PI Vol. 4 ch. 5; SmmBase2.h / MmBase.h) ---- */

typedef struct _EFI_SMM_BASE2_PROTOCOL EFI_SMM_BASE2_PROTOCOL;
typedef EFI_STATUS(EFIAPI *EFI_SMM_INSIDE_OUT2)(EFI_SMM_BASE2_PROTOCOL *This, BOOLEAN *InSmram);
typedef EFI_STATUS(EFIAPI *EFI_SMM_GET_SMST_LOCATION2)(EFI_SMM_BASE2_PROTOCOL *This,
                                                       EFI_SMM_SYSTEM_TABLE2 **Smst);
struct _EFI_SMM_BASE2_PROTOCOL {
  EFI_SMM_INSIDE_OUT2 InSmm;                  /* 0x00 */
  EFI_SMM_GET_SMST_LOCATION2 GetSmstLocation; /* 0x08 */
};
_Static_assert(offsetof(EFI_SMM_BASE2_PROTOCOL, InSmm) == 0x00, "Base2->InSmm");
_Static_assert(offsetof(EFI_SMM_BASE2_PROTOCOL, GetSmstLocation) == 0x08, "Base2->GetSmstLocation");

/* ---- EFI_SMM_ACCESS2_PROTOCOL (PI Vol. 4 ch. 5; MmAccess.h) and EFI_SMRAM_DESCRIPTOR ---- */

/* EFI_SMRAM_DESCRIPTOR = EFI_MMRAM_DESCRIPTOR (PiMultiPhase.h): four UINT64, 32 bytes. */
typedef struct {
  UINT64 PhysicalStart;
  UINT64 CpuStart;
  UINT64 PhysicalSize;
  UINT64 RegionState;
} EFI_SMRAM_DESCRIPTOR;
_Static_assert(sizeof(EFI_SMRAM_DESCRIPTOR) == 32, "EFI_SMRAM_DESCRIPTOR is 32 bytes");
_Static_assert(offsetof(EFI_SMRAM_DESCRIPTOR, CpuStart) == 0x08, "CpuStart");
_Static_assert(offsetof(EFI_SMRAM_DESCRIPTOR, PhysicalSize) == 0x10, "PhysicalSize");

typedef struct _EFI_SMM_ACCESS2_PROTOCOL EFI_SMM_ACCESS2_PROTOCOL;
typedef EFI_STATUS(EFIAPI *EFI_SMM_ACCESS2_SIMPLE)(EFI_SMM_ACCESS2_PROTOCOL *This);
typedef EFI_STATUS(EFIAPI *EFI_SMM_CAPABILITIES2)(const EFI_SMM_ACCESS2_PROTOCOL *This,
                                                  UINTN *SmramMapSize,
                                                  EFI_SMRAM_DESCRIPTOR *SmramMap);
struct _EFI_SMM_ACCESS2_PROTOCOL {
  EFI_SMM_ACCESS2_SIMPLE Open;           /* 0x00 */
  EFI_SMM_ACCESS2_SIMPLE Close;          /* 0x08 */
  EFI_SMM_ACCESS2_SIMPLE Lock;           /* 0x10 */
  EFI_SMM_CAPABILITIES2 GetCapabilities; /* 0x18 */
  BOOLEAN LockState;                     /* 0x20 */
  BOOLEAN OpenState;                     /* 0x21 */
};
_Static_assert(offsetof(EFI_SMM_ACCESS2_PROTOCOL, GetCapabilities) == 0x18,
               "Access2->GetCapabilities");
_Static_assert(offsetof(EFI_SMM_ACCESS2_PROTOCOL, LockState) == 0x20, "Access2->LockState");
_Static_assert(offsetof(EFI_SMM_ACCESS2_PROTOCOL, OpenState) == 0x21, "Access2->OpenState");

/* ---- EFI_SMM_SW_DISPATCH2_PROTOCOL (PI Vol. 4 ch. 7; MmSwDispatch.h) ---- */

typedef struct {
  UINTN SwSmiInputValue; /* the byte written to APM_CNT (0xB2) */
} EFI_SMM_SW_REGISTER_CONTEXT;

/* What the SW dispatcher hands the callback as CommBuffer. */
typedef struct {
  UINTN SwSmiCpuIndex; /* 0x00 */
  UINT8 CommandPort;   /* 0x08 */
  UINT8 DataPort;      /* 0x09 */
} EFI_SMM_SW_CONTEXT;
_Static_assert(offsetof(EFI_SMM_SW_CONTEXT, CommandPort) == 0x08, "SwContext.CommandPort");
_Static_assert(offsetof(EFI_SMM_SW_CONTEXT, DataPort) == 0x09, "SwContext.DataPort");
_Static_assert(sizeof(EFI_SMM_SW_CONTEXT) == 16, "EFI_SMM_SW_CONTEXT is 16 bytes");

typedef struct _EFI_SMM_SW_DISPATCH2_PROTOCOL EFI_SMM_SW_DISPATCH2_PROTOCOL;
typedef EFI_STATUS(EFIAPI *EFI_SMM_SW_REGISTER2)(const EFI_SMM_SW_DISPATCH2_PROTOCOL *This,
                                                 EFI_SMM_HANDLER_ENTRY_POINT2 DispatchFunction,
                                                 EFI_SMM_SW_REGISTER_CONTEXT *RegisterContext,
                                                 EFI_HANDLE *DispatchHandle);
typedef EFI_STATUS(EFIAPI *EFI_SMM_SW_UNREGISTER2)(const EFI_SMM_SW_DISPATCH2_PROTOCOL *This,
                                                   EFI_HANDLE DispatchHandle);
struct _EFI_SMM_SW_DISPATCH2_PROTOCOL {
  EFI_SMM_SW_REGISTER2 Register;     /* 0x00 */
  EFI_SMM_SW_UNREGISTER2 UnRegister; /* 0x08 */
  UINTN MaximumSwiValue;             /* 0x10 */
};
_Static_assert(offsetof(EFI_SMM_SW_DISPATCH2_PROTOCOL, Register) == 0x00, "SwDispatch->Register");
_Static_assert(offsetof(EFI_SMM_SW_DISPATCH2_PROTOCOL, UnRegister) == 0x08,
               "SwDispatch->UnRegister");
_Static_assert(offsetof(EFI_SMM_SW_DISPATCH2_PROTOCOL, MaximumSwiValue) == 0x10,
               "SwDispatch->MaximumSwiValue");

/* ---- EFI_SMM_CPU_PROTOCOL = EFI_MM_CPU_PROTOCOL (PI Vol. 4, MM CPU protocol; MmCpu.h) ---- */

/* EFI_SMM_SAVE_STATE_REGISTER (an enum, passed as 4 bytes); only the value used here. */
typedef enum {
  EFI_SMM_SAVE_STATE_REGISTER_RSI = 44,
} EFI_SMM_SAVE_STATE_REGISTER;
_Static_assert(sizeof(EFI_SMM_SAVE_STATE_REGISTER) == 4, "enums are 4 bytes");

typedef struct _EFI_SMM_CPU_PROTOCOL EFI_SMM_CPU_PROTOCOL;
typedef EFI_STATUS(EFIAPI *EFI_SMM_READ_SAVE_STATE)(const EFI_SMM_CPU_PROTOCOL *This, UINTN Width,
                                                    EFI_SMM_SAVE_STATE_REGISTER Register,
                                                    UINTN CpuIndex, VOID *Buffer);
typedef EFI_STATUS(EFIAPI *EFI_SMM_WRITE_SAVE_STATE)(const EFI_SMM_CPU_PROTOCOL *This, UINTN Width,
                                                     EFI_SMM_SAVE_STATE_REGISTER Register,
                                                     UINTN CpuIndex, const VOID *Buffer);
struct _EFI_SMM_CPU_PROTOCOL {
  EFI_SMM_READ_SAVE_STATE ReadSaveState;   /* 0x00 */
  EFI_SMM_WRITE_SAVE_STATE WriteSaveState; /* 0x08 */
};
_Static_assert(offsetof(EFI_SMM_CPU_PROTOCOL, ReadSaveState) == 0x00, "SmmCpu->ReadSaveState");
_Static_assert(offsetof(EFI_SMM_CPU_PROTOCOL, WriteSaveState) == 0x08, "SmmCpu->WriteSaveState");

/* ---- Protocol GUIDs (MdePkg.dec; values as in uefi-smm.md §2 and §5) ---- */
/* clang-format off */

/* EFI_SMM_BASE2_PROTOCOL = EFI_MM_BASE_PROTOCOL: F4CCBFB7-F6E0-47FD-9DD4-10A8F150C191 */
#define EFI_SMM_BASE2_PROTOCOL_GUID \
  {0xF4CCBFB7, 0xF6E0, 0x47FD, {0x9D, 0xD4, 0x10, 0xA8, 0xF1, 0x50, 0xC1, 0x91}}
/* EFI_SMM_ACCESS2_PROTOCOL = EFI_MM_ACCESS_PROTOCOL: C2702B74-800C-4131-8746-8FB5B89CE4AC */
#define EFI_SMM_ACCESS2_PROTOCOL_GUID \
  {0xC2702B74, 0x800C, 0x4131, {0x87, 0x46, 0x8F, 0xB5, 0xB8, 0x9C, 0xE4, 0xAC}}
/* EFI_SMM_SW_DISPATCH2_PROTOCOL: 18A3C6DC-5EEA-48C8-A1C1-B53389F98999 */
#define EFI_SMM_SW_DISPATCH2_PROTOCOL_GUID \
  {0x18A3C6DC, 0x5EEA, 0x48C8, {0xA1, 0xC1, 0xB5, 0x33, 0x89, 0xF9, 0x89, 0x99}}
/* EFI_SMM_CPU_PROTOCOL = EFI_MM_CPU_PROTOCOL: EB346B97-975F-4A9F-8B22-F8E92BB3D569 */
#define EFI_SMM_CPU_PROTOCOL_GUID \
  {0xEB346B97, 0x975F, 0x4A9F, {0x8B, 0x22, 0xF8, 0xE9, 0x2B, 0xB3, 0xD5, 0x69}}
/* EFI_STATUS_CODE_RUNTIME_PROTOCOL (MdePkg.dec): D2B2B828-0826-48A7-B3DF-983C006024F0 */
#define EFI_STATUS_CODE_RUNTIME_PROTOCOL_GUID \
  {0xD2B2B828, 0x0826, 0x48A7, {0xB3, 0xDF, 0x98, 0x3C, 0x00, 0x60, 0x24, 0xF0}}
/* clang-format on */

#endif /* SMMLAB_SMM_H */
