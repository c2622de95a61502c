/*
 * double_fetch: a GUID SMI handler that copies the caller's data into an SMRAM buffer.
 *
 * PLANTED BUG (SMM104 smm-double-fetch): the handler checks Message->Length <= 64 and
 * Length + 8 <= *CommBufferSize, then reads Message->Length from the caller's buffer AGAIN for
 * the copy. Another CPU (or a DMA agent) that changes Length between the two fetches makes the
 * copy overrun the 64-byte SMRAM buffer. The buffer is read through a volatile pointer so the
 * compiler really fetches twice.
 * -DCLEAN builds the fixed twin: Length is fetched once into a local, checked, and used.
 */
#include "smmlib.h"

/* HandlerType: F41BCF43-BF26-4287-87D4-0BF914D47FEA (made up for smmlab). */
static EFI_GUID gDoubleFetchHandlerGuid = {
    0xF41BCF43, 0xBF26, 0x4287, {0x87, 0xD4, 0x0B, 0xF9, 0x14, 0xD4, 0x7F, 0xEA}};

#define DOUBLE_FETCH_MAX_DATA 64

/* The message: CommBuffer points at it. */
typedef struct {
  UINT64 Length; /* 0x00: bytes of Data, at most 64 */
  UINT8 Data[];  /* 0x08: Length bytes */
} DOUBLE_FETCH_MESSAGE;
_Static_assert(offsetof(DOUBLE_FETCH_MESSAGE, Data) == 8, "Data at 8");

/* SMRAM (the image's .data/.bss). Global, not static, so the compiler keeps the copy. */
UINT8 gDoubleFetchBuffer[DOUBLE_FETCH_MAX_DATA];
UINT64 gDoubleFetchCopied; /* bytes copied by the last call */

static EFI_STATUS EFIAPI DoubleFetchHandler(EFI_HANDLE DispatchHandle, const VOID *Context,
                                            VOID *CommBuffer, UINTN *CommBufferSize) {
  volatile DOUBLE_FETCH_MESSAGE *Message = CommBuffer;
  UINT64 Length;
  UINT64 CopyLength;
  UINTN Size;
  UINT64 Index;
  (void)DispatchHandle;
  (void)Context;

  if (CommBuffer == NULL || CommBufferSize == NULL) {
    return EFI_SUCCESS;
  }
  Size = *CommBufferSize; /* an SMRAM local of the core, not the caller's memory */
  if (Size < sizeof(DOUBLE_FETCH_MESSAGE) ||
      !IsBufferOutsideSmram((UINT64)(UINTN)CommBuffer, Size)) {
    return EFI_SUCCESS;
  }

  Length = Message->Length; /* first fetch */
  if (Length > DOUBLE_FETCH_MAX_DATA || Length + sizeof(DOUBLE_FETCH_MESSAGE) > Size) {
    return EFI_SUCCESS;
  }
#ifdef CLEAN
  CopyLength = Length;
#else
  CopyLength = Message->Length; /* BUG: second fetch of the checked field */
#endif
  for (Index = 0; Index < CopyLength; Index++) {
    gDoubleFetchBuffer[Index] = Message->Data[Index];
  }
  gDoubleFetchCopied = CopyLength;
  return EFI_SUCCESS;
}

SMMLAB_GUID_HANDLER gDoubleFetchHandlers[] = {
    {&gDoubleFetchHandlerGuid, DoubleFetchHandler, NULL},
};

EFI_STATUS EFIAPI EfiMain(EFI_HANDLE ImageHandle, EFI_SYSTEM_TABLE *SystemTable) {
  (void)ImageHandle;
  return SmmLibGuidDriver(SystemTable, gDoubleFetchHandlers, sizeof(gDoubleFetchHandlers) / sizeof(gDoubleFetchHandlers[0]));
}
