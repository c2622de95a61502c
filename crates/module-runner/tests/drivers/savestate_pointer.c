/*
 * savestate_pointer: a SW SMI handler (APM_CNT 0x61) that writes through a pointer the caller
 * left in RSI.
 *
 * PLANTED BUG (SMM102 smm-unchecked-pointer): the handler reads RSI of CPU 0 from the SMM save
 * state (EFI_SMM_CPU_PROTOCOL.ReadSaveState(This, 8, RSI = 44, 0, &Rsi)) and writes
 * SAVESTATE_POINTER_RESULT to *(UINT64 *)Rsi without checking that [Rsi, Rsi + 8) is outside
 * SMRAM: `mov rsi, <SMRAM address>; mov al, 0x61; out 0xB2, al` overwrites SMRAM.
 * -DCLEAN builds the fixed twin: [Rsi, Rsi + 8) must be outside SMRAM, else nothing is written.
 */
#include "smmlib.h"

#define SAVESTATE_POINTER_SWI 0x61
#define SAVESTATE_POINTER_RESULT 0x5678ULL

static EFI_GUID gEfiSmmSwDispatch2ProtocolGuid = EFI_SMM_SW_DISPATCH2_PROTOCOL_GUID;
static EFI_GUID gEfiSmmCpuProtocolGuid = EFI_SMM_CPU_PROTOCOL_GUID;

static EFI_SMM_CPU_PROTOCOL *mSmmCpu;

/* Kept in static storage, so a dispatcher that keeps the pointer (rather than copying the
 * context, as a PI dispatcher does) still passes a valid Context to the handler. */
EFI_SMM_SW_REGISTER_CONTEXT gSavestatePointerSwContext = {SAVESTATE_POINTER_SWI};
EFI_HANDLE gSavestatePointerDispatchHandle;

/* CommBuffer is the dispatcher's EFI_SMM_SW_CONTEXT; the handler does not need it. */
static EFI_STATUS EFIAPI SavestatePointerHandler(EFI_HANDLE DispatchHandle, const VOID *Context,
                                                 VOID *CommBuffer, UINTN *CommBufferSize) {
  UINT64 Rsi = 0;
  EFI_STATUS Status;
  (void)DispatchHandle;
  (void)Context;
  (void)CommBuffer;
  (void)CommBufferSize;

  Status =
      mSmmCpu->ReadSaveState(mSmmCpu, sizeof(UINT64), EFI_SMM_SAVE_STATE_REGISTER_RSI, 0, &Rsi);
  if (EFI_ERROR(Status)) {
    return EFI_SUCCESS;
  }
#ifdef CLEAN
  if (!IsBufferOutsideSmram(Rsi, sizeof(UINT64))) {
    return EFI_SUCCESS;
  }
#endif
  *(volatile UINT64 *)(UINTN)Rsi = SAVESTATE_POINTER_RESULT; /* the bug without CLEAN */
  return EFI_SUCCESS;
}

/* A function pointer in initialised data: a DIR64 base relocation, like the GUID drivers'. */
EFI_SMM_HANDLER_ENTRY_POINT2 gSavestatePointerHandler = SavestatePointerHandler;

EFI_STATUS EFIAPI EfiMain(EFI_HANDLE ImageHandle, EFI_SYSTEM_TABLE *SystemTable) {
  EFI_SMM_SW_DISPATCH2_PROTOCOL *SwDispatch = NULL;
  EFI_STATUS Status;
  (void)ImageHandle;

  Status = SmmLibInit(SystemTable);
  if (EFI_ERROR(Status)) {
    return Status;
  }
  Status = gSmst->SmmLocateProtocol(&gEfiSmmSwDispatch2ProtocolGuid, NULL, (VOID **)&SwDispatch);
  if (EFI_ERROR(Status) || SwDispatch == NULL) {
    return EFI_ERROR(Status) ? Status : EFI_NOT_FOUND;
  }
  Status = gSmst->SmmLocateProtocol(&gEfiSmmCpuProtocolGuid, NULL, (VOID **)&mSmmCpu);
  if (EFI_ERROR(Status) || mSmmCpu == NULL) {
    return EFI_ERROR(Status) ? Status : EFI_NOT_FOUND;
  }
  return SwDispatch->Register(SwDispatch, gSavestatePointerHandler, &gSavestatePointerSwContext,
                              &gSavestatePointerDispatchHandle);
}
