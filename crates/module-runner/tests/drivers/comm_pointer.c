/*
 * comm_pointer: a GUID SMI handler that writes a result through an address taken from the
 * caller's communication buffer.
 *
 * PLANTED BUG (SMM102 smm-unchecked-pointer): for Command 1 the handler writes
 * COMM_POINTER_RESULT to *(UINT64 *)Message->Address without checking that
 * [Address, Address + 8) is outside SMRAM, and without checking that the buffer holds a whole
 * message: an OS-level caller aims Address at SMRAM and the handler overwrites it.
 * -DCLEAN builds the fixed twin: *CommBufferSize >= sizeof(message), the message itself and
 * [Address, Address + 8) outside SMRAM, else Status = EFI_ACCESS_DENIED.
 */
#include "smmlib.h"

/* HandlerType: 99D0B2AA-EC71-4A07-AE94-44B51113A5F7 (made up for smmlab). */
static EFI_GUID gCommPointerHandlerGuid = {
    0x99D0B2AA, 0xEC71, 0x4A07, {0xAE, 0x94, 0x44, 0xB5, 0x11, 0x13, 0xA5, 0xF7}};

#define COMM_POINTER_CMD_WRITE_RESULT 1
#define COMM_POINTER_RESULT 0x1234ULL

/* The message: CommBuffer points at it (the Data after EFI_MM_COMMUNICATE_HEADER). */
typedef struct {
  UINT64 Command; /* 0x00: 1 = write COMM_POINTER_RESULT to *Address */
  UINT64 Address; /* 0x08: where the result goes (caller memory, outside SMRAM) */
  UINT64 Status;  /* 0x10: out: EFI_SUCCESS, EFI_UNSUPPORTED or (clean) EFI_ACCESS_DENIED */
} COMM_POINTER_MESSAGE;
_Static_assert(sizeof(COMM_POINTER_MESSAGE) == 24, "24-byte message");

static EFI_STATUS EFIAPI CommPointerHandler(EFI_HANDLE DispatchHandle, const VOID *Context,
                                            VOID *CommBuffer, UINTN *CommBufferSize) {
  COMM_POINTER_MESSAGE *Message = CommBuffer;
  UINT64 Address;
  (void)DispatchHandle;
  (void)Context;

  if (CommBuffer == NULL || CommBufferSize == NULL) {
    return EFI_SUCCESS;
  }
  /* Both builds check the buffer itself; the planted bug is only the unchecked Address. */
  if (*CommBufferSize < sizeof(COMM_POINTER_MESSAGE) ||
      !IsBufferOutsideSmram((UINT64)(UINTN)CommBuffer, sizeof(COMM_POINTER_MESSAGE))) {
    return EFI_SUCCESS; /* no room for a Status: leave the buffer alone */
  }
  if (Message->Command != COMM_POINTER_CMD_WRITE_RESULT) {
    Message->Status = EFI_UNSUPPORTED;
    return EFI_SUCCESS;
  }
  Address = Message->Address;
#ifdef CLEAN
  if (!IsBufferOutsideSmram(Address, sizeof(UINT64))) {
    Message->Status = EFI_ACCESS_DENIED;
    return EFI_SUCCESS;
  }
#endif
  *(volatile UINT64 *)(UINTN)Address = COMM_POINTER_RESULT; /* the bug without CLEAN */
  Message->Status = EFI_SUCCESS;
  return EFI_SUCCESS;
}

SMMLAB_GUID_HANDLER gCommPointerHandlers[] = {
    {&gCommPointerHandlerGuid, CommPointerHandler, NULL},
};

EFI_STATUS EFIAPI EfiMain(EFI_HANDLE ImageHandle, EFI_SYSTEM_TABLE *SystemTable) {
  (void)ImageHandle;
  return SmmLibGuidDriver(SystemTable, gCommPointerHandlers, sizeof(gCommPointerHandlers) / sizeof(gCommPointerHandlers[0]));
}
