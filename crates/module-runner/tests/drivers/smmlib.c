/* smmlib.c: see smmlib.h. */
#include "smmlib.h"

EFI_BOOT_SERVICES *gBS;
EFI_SMM_SYSTEM_TABLE2 *gSmst;

static EFI_GUID gEfiSmmBase2ProtocolGuid = EFI_SMM_BASE2_PROTOCOL_GUID;
static EFI_GUID gEfiSmmAccess2ProtocolGuid = EFI_SMM_ACCESS2_PROTOCOL_GUID;

/* The SMRAM map, in SMRAM pool (EfiRuntimeServicesData). */
static EFI_SMRAM_DESCRIPTOR *mSmramRanges;
static UINTN mSmramRangeCount;

EFI_STATUS SmmLibInit(EFI_SYSTEM_TABLE *SystemTable) {
  EFI_SMM_BASE2_PROTOCOL *Base2 = NULL;
  EFI_SMM_ACCESS2_PROTOCOL *Access = NULL;
  EFI_SMRAM_DESCRIPTOR *Map = NULL;
  UINTN Size = 0;
  EFI_STATUS Status;

  if (SystemTable == NULL || SystemTable->BootServices == NULL) {
    return EFI_INVALID_PARAMETER;
  }
  gBS = SystemTable->BootServices;

  /* SmmServicesTableLib's constructor: SmmBase2 from the DXE database, then the SMST. */
  Status = gBS->LocateProtocol(&gEfiSmmBase2ProtocolGuid, NULL, (VOID **)&Base2);
  if (EFI_ERROR(Status) || Base2 == NULL) {
    return EFI_ERROR(Status) ? Status : EFI_NOT_FOUND;
  }
  Status = Base2->GetSmstLocation(Base2, &gSmst);
  if (EFI_ERROR(Status) || gSmst == NULL) {
    return EFI_ERROR(Status) ? Status : EFI_NOT_FOUND;
  }

  /* SmmMemLib's constructor: the SMRAM map from SmmAccess2, asked for its size first. */
  Status = gBS->LocateProtocol(&gEfiSmmAccess2ProtocolGuid, NULL, (VOID **)&Access);
  if (EFI_ERROR(Status) || Access == NULL) {
    return EFI_ERROR(Status) ? Status : EFI_NOT_FOUND;
  }
  Status = Access->GetCapabilities(Access, &Size, NULL);
  if (Status != EFI_BUFFER_TOO_SMALL) {
    return EFI_ERROR(Status) ? Status : EFI_UNSUPPORTED;
  }
  if (Size == 0 || Size % sizeof(EFI_SMRAM_DESCRIPTOR) != 0) {
    return EFI_UNSUPPORTED;
  }
  Status = gSmst->SmmAllocatePool(EfiRuntimeServicesData, Size, (VOID **)&Map);
  if (EFI_ERROR(Status) || Map == NULL) {
    return EFI_ERROR(Status) ? Status : EFI_UNSUPPORTED;
  }
  Status = Access->GetCapabilities(Access, &Size, Map);
  if (EFI_ERROR(Status)) {
    gSmst->SmmFreePool(Map);
    return Status;
  }
  mSmramRanges = Map;
  mSmramRangeCount = Size / sizeof(EFI_SMRAM_DESCRIPTOR);
  return EFI_SUCCESS;
}

/* The highest physical address the CPU supports: CPUID 0x80000008 EAX[7:0] bits (36 when the
 * leaf is absent), as edk2's SmmMemLib computes it (MdePkg/Library/SmmMemLib/SmmMemLib.c,
 * SmmMemLibInternalCalculateMaximumSupportAddress). */
static UINT64 MaximumSupportAddress(void) {
  UINT32 Eax, Ebx, Ecx, Edx;
  UINT32 Bits = 36;
  __asm__ volatile("cpuid" : "=a"(Eax), "=b"(Ebx), "=c"(Ecx), "=d"(Edx) : "a"(0x80000000u), "c"(0));
  if (Eax >= 0x80000008u) {
    __asm__ volatile("cpuid" : "=a"(Eax), "=b"(Ebx), "=c"(Ecx), "=d"(Edx) : "a"(0x80000008u), "c"(0));
    Bits = Eax & 0xff;
  }
  return Bits >= 64 ? MAX_UINT64 : (1ULL << Bits) - 1;
}

BOOLEAN IsBufferOutsideSmram(UINT64 Buffer, UINT64 Length) {
  UINT64 Last; /* the range's last byte; no "end" that could wrap to 0 */
  UINTN Index;
  UINT64 Max = MaximumSupportAddress();

  /* Beyond what the CPU can address (a non-canonical pointer among them): refused, as
   * SmmIsBufferOutsideSmmValid refuses it. */
  if (Buffer > Max || Length > Max || (Length != 0 && Buffer > Max - (Length - 1))) {
    return FALSE;
  }
  if (Length == 0) {
    Last = Buffer;
  } else {
    if (Length - 1 > MAX_UINT64 - Buffer) {
      return FALSE; /* wraps around the address space */
    }
    Last = Buffer + (Length - 1);
  }
  for (Index = 0; Index < mSmramRangeCount; Index++) {
    UINT64 Start = mSmramRanges[Index].CpuStart;
    UINT64 Size = mSmramRanges[Index].PhysicalSize;
    UINT64 RangeLast;
    if (Size == 0) {
      continue;
    }
    RangeLast = (Size - 1 > MAX_UINT64 - Start) ? MAX_UINT64 : Start + (Size - 1);
    if (Buffer <= RangeLast && Start <= Last) {
      return FALSE;
    }
  }
  return TRUE;
}

EFI_STATUS RegisterGuidHandlers(SMMLAB_GUID_HANDLER *Handlers, UINTN Count) {
  UINTN Index;
  for (Index = 0; Index < Count; Index++) {
    EFI_STATUS Status = gSmst->SmiHandlerRegister(
        Handlers[Index].Handler, Handlers[Index].HandlerType, &Handlers[Index].DispatchHandle);
    if (EFI_ERROR(Status)) {
      return Status;
    }
  }
  return EFI_SUCCESS;
}

EFI_STATUS SmmLibGuidDriver(EFI_SYSTEM_TABLE *SystemTable, SMMLAB_GUID_HANDLER *Handlers,
                            UINTN Count) {
  EFI_STATUS Status = SmmLibInit(SystemTable);
  if (EFI_ERROR(Status)) {
    return Status;
  }
  return RegisterGuidHandlers(Handlers, Count);
}
