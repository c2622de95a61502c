/*
 * callout: a GUID SMI handler that looks a protocol up through the DXE boot services.
 *
 * PLANTED BUG (SMM101 smm-callout): on every call the handler calls
 * gBS->LocateProtocol(&gEfiStatusCodeRuntimeProtocolGuid, NULL, &p) through the boot-services
 * table saved at entry. gBS and the function it points to are DXE memory outside SMRAM, so the
 * CPU fetches code outside SMRAM in SMM (as a cached DXE protocol in DxeReportStatusCodeLib
 * would be, uefi-smm.md §2, §9).
 * -DCLEAN builds the fixed twin: the lookup happens once at entry (before SMRAM is locked,
 * which is allowed) and the handler uses only the cached result, never calling through gBS.
 */
#include "smmlib.h"

/* HandlerType: D9398575-3EA0-47FC-B431-3D458FE47AB4 (made up for smmlab). */
static EFI_GUID gCalloutHandlerGuid = {
    0xD9398575, 0x3EA0, 0x47FC, {0xB4, 0x31, 0x3D, 0x45, 0x8F, 0xE4, 0x7A, 0xB4}};

/* The DXE protocol looked up: EFI_STATUS_CODE_RUNTIME_PROTOCOL (a runner may install it or
 * answer EFI_NOT_FOUND; either is fine). */
static EFI_GUID gEfiStatusCodeRuntimeProtocolGuid = EFI_STATUS_CODE_RUNTIME_PROTOCOL_GUID;

/* The message: CommBuffer points at it. */
typedef struct {
  UINT64 Status; /* 0x00: out: the LocateProtocol status (EFI_SUCCESS or EFI_NOT_FOUND, ...) */
} CALLOUT_MESSAGE;

#ifdef CLEAN
/* The lookup made once, at entry. */
static EFI_STATUS mStatusCodeLookup = EFI_NOT_FOUND;
static VOID *mStatusCodeProtocol;
#endif

static EFI_STATUS EFIAPI CalloutHandler(EFI_HANDLE DispatchHandle, const VOID *Context,
                                        VOID *CommBuffer, UINTN *CommBufferSize) {
  EFI_STATUS Lookup;
  (void)DispatchHandle;
  (void)Context;

#ifdef CLEAN
  Lookup = mStatusCodeLookup; /* cached at entry: nothing outside SMRAM is called */
#else
  VOID *Protocol = NULL;
  Lookup = gBS->LocateProtocol(&gEfiStatusCodeRuntimeProtocolGuid, NULL, &Protocol); /* bug */
  if (!EFI_ERROR(Lookup) && Protocol == NULL) {
    Lookup = EFI_NOT_FOUND;
  }
#endif

  /* Both builds check the buffer before writing the answer into it. */
  if (CommBuffer == NULL || CommBufferSize == NULL || *CommBufferSize < sizeof(CALLOUT_MESSAGE) ||
      !IsBufferOutsideSmram((UINT64)(UINTN)CommBuffer, sizeof(CALLOUT_MESSAGE))) {
    return EFI_SUCCESS;
  }
  ((CALLOUT_MESSAGE *)CommBuffer)->Status = Lookup;
  return EFI_SUCCESS;
}

SMMLAB_GUID_HANDLER gCalloutHandlers[] = {
    {&gCalloutHandlerGuid, CalloutHandler, NULL},
};

EFI_STATUS EFIAPI EfiMain(EFI_HANDLE ImageHandle, EFI_SYSTEM_TABLE *SystemTable) {
  EFI_STATUS Status;
  (void)ImageHandle;
  Status = SmmLibInit(SystemTable);
  if (EFI_ERROR(Status)) {
    return Status;
  }
#ifdef CLEAN
  mStatusCodeLookup =
      gBS->LocateProtocol(&gEfiStatusCodeRuntimeProtocolGuid, NULL, &mStatusCodeProtocol);
  if (!EFI_ERROR(mStatusCodeLookup) && mStatusCodeProtocol == NULL) {
    mStatusCodeLookup = EFI_NOT_FOUND;
  }
#endif
  return RegisterGuidHandlers(gCalloutHandlers,
                              sizeof(gCalloutHandlers) / sizeof(gCalloutHandlers[0]));
}
