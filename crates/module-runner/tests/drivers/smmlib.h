/*
 * smmlib.h: what every test driver does at entry, in the way edk2's libraries do it (our own
 * code): find the SMST as SmmServicesTableLib does, and keep the SMRAM map for an
 * "is this range outside SMRAM" check as SmmMemLib does.
 */
#ifndef SMMLAB_SMMLIB_H
#define SMMLAB_SMMLIB_H

#include "smm.h"

/* Saved at entry by SmmLibInit. gBS is DXE memory: calling through it from an SMI handler is
 * a call-out (see callout.c). */
extern EFI_BOOT_SERVICES *gBS;
extern EFI_SMM_SYSTEM_TABLE2 *gSmst;

/* At entry: gBS->LocateProtocol(SmmBase2) -> GetSmstLocation -> gSmst; then
 * gBS->LocateProtocol(SmmAccess2) -> GetCapabilities (size query, then the map into a pool from
 * gSmst->SmmAllocatePool(EfiRuntimeServicesData)). Returns the first failing status. */
EFI_STATUS SmmLibInit(EFI_SYSTEM_TABLE *SystemTable);

/* TRUE when [Buffer, Buffer + Length) does not wrap and overlaps no SMRAM range (CpuStart,
 * PhysicalSize). A zero-length range is outside when Buffer itself is not in SMRAM. */
BOOLEAN IsBufferOutsideSmram(UINT64 Buffer, UINT64 Length);

/* A GUID SMI handler to register with gSmst->SmiHandlerRegister. The drivers keep these in
 * initialised, writable globals: the pointers are absolute (IMAGE_REL_BASED_DIR64 base
 * relocations), so an image loaded without relocating calls into nowhere. */
typedef struct {
  const EFI_GUID *HandlerType;
  EFI_SMM_HANDLER_ENTRY_POINT2 Handler;
  EFI_HANDLE DispatchHandle;
} SMMLAB_GUID_HANDLER;

/* Registers each entry's Handler for its HandlerType; returns the first failing status. */
EFI_STATUS RegisterGuidHandlers(SMMLAB_GUID_HANDLER *Handlers, UINTN Count);

/* The whole entry point of a driver whose work is its GUID handlers: SmmLibInit, then
 * RegisterGuidHandlers. */
EFI_STATUS SmmLibGuidDriver(EFI_SYSTEM_TABLE *SystemTable, SMMLAB_GUID_HANDLER *Handlers,
                            UINTN Count);

#endif /* SMMLAB_SMMLIB_H */
