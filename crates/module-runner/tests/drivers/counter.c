/*
 * counter: a GUID SMI handler that keeps state in SMRAM, for the fuzzer's snapshot test. No
 * planted bug. Each call increments gCounterCalls (the image's .data, in SMRAM) and returns
 * the new count in the message, so a caller sees 1, 2, 3... unless something puts SMRAM back
 * between calls (a snapshot fuzzer restores it before every execution: always 1).
 * A Command of 7 when the count is past 3 takes a path of its own (Status = EFI_NOT_READY), a
 * state-dependent branch a fuzzer without restore would reach only by accident.
 */
#include "smmlib.h"

/* HandlerType: 3c1d6f0e-8f47-4c6a-9b2e-7d5a0c4e91b3 (made up for smmlab). */
static EFI_GUID gCounterHandlerGuid = {
    0x3C1D6F0E, 0x8F47, 0x4C6A, {0x9B, 0x2E, 0x7D, 0x5A, 0x0C, 0x4E, 0x91, 0xB3}};

typedef struct {
  UINT64 Command; /* 0x00 */
  UINT64 Count;   /* 0x08: out: the calls so far, this one included */
  UINT64 Status;  /* 0x10: out */
} COUNTER_MESSAGE;
_Static_assert(sizeof(COUNTER_MESSAGE) == 24, "24-byte message");

/* Global, not static, so the compiler keeps the store. */
volatile UINT64 gCounterCalls;

static EFI_STATUS EFIAPI CounterHandler(EFI_HANDLE DispatchHandle, const VOID *Context,
                                        VOID *CommBuffer, UINTN *CommBufferSize) {
  COUNTER_MESSAGE *Message = CommBuffer;
  (void)DispatchHandle;
  (void)Context;

  if (CommBuffer == NULL || CommBufferSize == NULL || *CommBufferSize < sizeof(COUNTER_MESSAGE) ||
      !IsBufferOutsideSmram((UINT64)(UINTN)CommBuffer, sizeof(COUNTER_MESSAGE))) {
    return EFI_SUCCESS;
  }
  gCounterCalls = gCounterCalls + 1;
  Message->Count = gCounterCalls;
  Message->Status = (Message->Command == 7 && gCounterCalls > 3) ? EFI_NOT_READY : EFI_SUCCESS;
  return EFI_SUCCESS;
}

SMMLAB_GUID_HANDLER gCounterHandlers[] = {
    {&gCounterHandlerGuid, CounterHandler, NULL},
};

EFI_STATUS EFIAPI EfiMain(EFI_HANDLE ImageHandle, EFI_SYSTEM_TABLE *SystemTable) {
  (void)ImageHandle;
  return SmmLibGuidDriver(SystemTable, gCounterHandlers, sizeof(gCounterHandlers) / sizeof(gCounterHandlers[0]));
}
