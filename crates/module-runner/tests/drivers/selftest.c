/*
 * selftest.c: runs one test-driver image on the build host (Linux x86_64) with fake UEFI/SMM
 * tables, to check the images before any emulator sees them. It is not the module runner:
 * "SMRAM" is a 1 MiB anonymous mapping, the image is loaded and relocated into it, EfiMain
 * gets a fake gST/gBS/SmmBase2/SmmAccess2/SMST (and for savestate_pointer a SW dispatcher and
 * SMM CPU protocol), and the registered handler is called directly with inputs that trigger the
 * planted bug (for double_fetch, a watched page plays the other CPU that rewrites Length). The
 * bug build must show the bug, the clean build must not.
 *
 *   selftest IMAGE.efi    (the driver is taken from the file name; "_clean" = the fixed twin)
 *
 * Exit status 0 when every expectation holds. Built and run by verify.sh.
 */
#define _GNU_SOURCE /* REG_EFL */
#include "smm.h"
#undef NULL
#undef offsetof
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>

#define SMRAM_SIZE 0x100000u
#define OUTSIDE_SIZE 0x10000u
#define DIR64 10

static UINT8 *gSmram; /* the fake SMRAM */
static UINTN gSmramUsed;
static UINT8 *gOutside; /* ordinary memory, the "OS" buffers */

static int gFailures;
static void Expect(int Ok, const char *What) {
  printf("  %s %s\n", Ok ? "ok  " : "FAIL", What);
  if (!Ok) {
    gFailures++;
  }
}

static VOID *SmramAlloc(UINTN Size, UINTN Align) {
  gSmramUsed = (gSmramUsed + Align - 1) & ~(Align - 1);
  VOID *P = gSmram + gSmramUsed;
  gSmramUsed += Size;
  if (gSmramUsed > SMRAM_SIZE / 2) { /* the top half is the attack target area */
    fprintf(stderr, "selftest: fake SMRAM exhausted\n");
    exit(2);
  }
  return P;
}

/* ---- the fake services (EFIAPI = MS x64 ABI, called from the image) ---- */

static EFI_GUID gBase2Guid = EFI_SMM_BASE2_PROTOCOL_GUID;
static EFI_GUID gAccess2Guid = EFI_SMM_ACCESS2_PROTOCOL_GUID;
static EFI_GUID gSwDispatchGuid = EFI_SMM_SW_DISPATCH2_PROTOCOL_GUID;
static EFI_GUID gSmmCpuGuid = EFI_SMM_CPU_PROTOCOL_GUID;

static EFI_SYSTEM_TABLE gSt;
static EFI_BOOT_SERVICES gBs;
static EFI_SMM_BASE2_PROTOCOL gBase2;
static EFI_SMM_ACCESS2_PROTOCOL gAccess2;
static EFI_SMM_SYSTEM_TABLE2 *gFakeSmst;
static EFI_SMM_SW_DISPATCH2_PROTOCOL *gSwDispatch;
static EFI_SMM_CPU_PROTOCOL *gSmmCpu;

static int gBsLocateCalls;
static EFI_SMM_HANDLER_ENTRY_POINT2 gHandler;
static EFI_GUID gHandlerType;
static int gGuidRegistrations, gSwRegistrations;
static UINTN gSwValue;
static UINT64 gSavedRsi;

static int GuidEq(const EFI_GUID *A, const EFI_GUID *B) { return memcmp(A, B, sizeof *A) == 0; }

static EFI_STATUS EFIAPI FakeLocateProtocol(EFI_GUID *Protocol, VOID *Registration,
                                            VOID **Interface) {
  (void)Registration;
  gBsLocateCalls++;
  if (GuidEq(Protocol, &gBase2Guid)) {
    *Interface = &gBase2;
    return EFI_SUCCESS;
  }
  if (GuidEq(Protocol, &gAccess2Guid)) {
    *Interface = &gAccess2;
    return EFI_SUCCESS;
  }
  return EFI_NOT_FOUND;
}

static EFI_STATUS EFIAPI FakeGetSmstLocation(EFI_SMM_BASE2_PROTOCOL *This,
                                             EFI_SMM_SYSTEM_TABLE2 **Smst) {
  (void)This;
  *Smst = gFakeSmst;
  return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI FakeGetCapabilities(const EFI_SMM_ACCESS2_PROTOCOL *This, UINTN *Size,
                                             EFI_SMRAM_DESCRIPTOR *Map) {
  (void)This;
  if (*Size < sizeof *Map) {
    *Size = sizeof *Map;
    return EFI_BUFFER_TOO_SMALL;
  }
  Map->PhysicalStart = Map->CpuStart = (UINT64)(UINTN)gSmram;
  Map->PhysicalSize = SMRAM_SIZE;
  Map->RegionState = 0x2 | 0x8 | 0x10; /* closed, cacheable, allocated */
  *Size = sizeof *Map;
  return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI FakeAllocatePool(EFI_MEMORY_TYPE Type, UINTN Size, VOID **Buffer) {
  if (Type != EfiRuntimeServicesCode && Type != EfiRuntimeServicesData) {
    return EFI_INVALID_PARAMETER;
  }
  *Buffer = SmramAlloc(Size, 16);
  return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI FakeFreePool(VOID *Buffer) {
  (void)Buffer;
  return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI FakeSmmLocateProtocol(EFI_GUID *Protocol, VOID *Registration,
                                               VOID **Interface) {
  (void)Registration;
  if (GuidEq(Protocol, &gSwDispatchGuid)) {
    *Interface = gSwDispatch;
    return EFI_SUCCESS;
  }
  if (GuidEq(Protocol, &gSmmCpuGuid)) {
    *Interface = gSmmCpu;
    return EFI_SUCCESS;
  }
  return EFI_NOT_FOUND;
}

static EFI_STATUS EFIAPI FakeSmiHandlerRegister(EFI_SMM_HANDLER_ENTRY_POINT2 Handler,
                                                const EFI_GUID *HandlerType, EFI_HANDLE *Handle) {
  if (Handler == NULL || Handle == NULL || HandlerType == NULL) {
    return EFI_INVALID_PARAMETER;
  }
  gHandler = Handler;
  gHandlerType = *HandlerType;
  gGuidRegistrations++;
  *Handle = (EFI_HANDLE)(UINTN)0x5111;
  return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI FakeSwRegister(const EFI_SMM_SW_DISPATCH2_PROTOCOL *This,
                                        EFI_SMM_HANDLER_ENTRY_POINT2 Handler,
                                        EFI_SMM_SW_REGISTER_CONTEXT *Context, EFI_HANDLE *Handle) {
  (void)This;
  gHandler = Handler;
  gSwValue = Context->SwSmiInputValue;
  gSwRegistrations++;
  *Handle = (EFI_HANDLE)(UINTN)0x5222;
  return EFI_SUCCESS;
}

static EFI_STATUS EFIAPI FakeReadSaveState(const EFI_SMM_CPU_PROTOCOL *This, UINTN Width,
                                           EFI_SMM_SAVE_STATE_REGISTER Register, UINTN CpuIndex,
                                           VOID *Buffer) {
  (void)This;
  if (Width != 8 || Register != EFI_SMM_SAVE_STATE_REGISTER_RSI || CpuIndex != 0) {
    return EFI_INVALID_PARAMETER;
  }
  memcpy(Buffer, &gSavedRsi, 8);
  return EFI_SUCCESS;
}

/* ---- loading: headers, sections, DIR64 base relocations (as BasePeCoffLib) ---- */

static UINT16 Rd16(const UINT8 *P) {
  UINT16 V;
  memcpy(&V, P, 2);
  return V;
}
static UINT32 Rd32(const UINT8 *P) {
  UINT32 V;
  memcpy(&V, P, 4);
  return V;
}
static UINT64 Rd64(const UINT8 *P) {
  UINT64 V;
  memcpy(&V, P, 8);
  return V;
}

static UINT8 *gImage;
static UINT32 gImageSize;

static UINT8 *Load(const UINT8 *File, size_t FileSize, UINT32 *Entry, int *Relocations) {
  if (FileSize < 0x40 || Rd16(File) != 0x5A4D) {
    return NULL;
  }
  const UINT8 *Pe = File + Rd32(File + 0x3C);
  if (Pe + 24 + 240 > File + FileSize || Rd32(Pe) != 0x4550 || Rd16(Pe + 4) != 0x8664) {
    return NULL;
  }
  UINT16 Sections = Rd16(Pe + 6), OptSize = Rd16(Pe + 20);
  const UINT8 *Opt = Pe + 24;
  if (Rd16(Opt) != 0x20B) {
    return NULL;
  }
  *Entry = Rd32(Opt + 16);
  UINT64 PreferredBase = Rd64(Opt + 24);
  gImageSize = Rd32(Opt + 56);
  UINT32 HeaderSize = Rd32(Opt + 60);
  UINT32 RelocRva = Rd32(Opt + 112 + 5 * 8), RelocSize = Rd32(Opt + 112 + 5 * 8 + 4);
  gImage = SmramAlloc(gImageSize, 0x1000);
  memset(gImage, 0, gImageSize);
  memcpy(gImage, File, HeaderSize);
  const UINT8 *Sec = Opt + OptSize;
  for (UINT16 I = 0; I < Sections; I++, Sec += 40) {
    UINT32 Va = Rd32(Sec + 12), Raw = Rd32(Sec + 16), Ptr = Rd32(Sec + 20);
    if ((UINT64)Va + Raw > gImageSize || (UINT64)Ptr + Raw > FileSize) {
      return NULL;
    }
    memcpy(gImage + Va, File + Ptr, Raw);
  }
  UINT64 Delta = (UINT64)(UINTN)gImage - PreferredBase;
  *Relocations = 0;
  for (UINT32 Off = 0; Off + 8 <= RelocSize;) {
    UINT32 Page = Rd32(gImage + RelocRva + Off), Block = Rd32(gImage + RelocRva + Off + 4);
    if (Block < 8) {
      return NULL;
    }
    for (UINT32 K = 8; K + 2 <= Block; K += 2) {
      UINT16 E = Rd16(gImage + RelocRva + Off + K);
      if (E >> 12 == DIR64) {
        UINT8 *At = gImage + Page + (E & 0xFFF);
        UINT64 V = Rd64(At) + Delta;
        memcpy(At, &V, 8);
        ++*Relocations;
      }
    }
    Off += Block;
  }
  return gImage;
}

/* ---- the double-fetch "other CPU": a page that counts the handler's reads of Length ----
 * The message page is PROT_NONE while the handler runs. Each access faults; the SIGSEGV
 * handler opens the page, and when the access is to Length it stores the value the "other CPU"
 * has put there by now (8 for the first fetch, which passes the check, 200 for any later one),
 * then single-steps the instruction (EFLAGS.TF) and the SIGTRAP handler closes the page again.
 * Deterministic, and it counts how many times one SMI fetches Length. */

static UINT8 *gWatched; /* one page */
static volatile int gLengthFetches;

static void OnFault(int Sig, siginfo_t *Info, void *Context) {
  UINT8 *At = Info->si_addr;
  ucontext_t *Uc = Context;
  if (Sig != SIGSEGV || At < gWatched || At >= gWatched + 0x1000) {
    signal(SIGSEGV, SIG_DFL); /* a real crash: let it happen */
    return;
  }
  mprotect(gWatched, 0x1000, PROT_READ | PROT_WRITE);
  if (At < gWatched + 8) {
    UINT64 Length = ++gLengthFetches == 1 ? 8 : 200;
    memcpy(gWatched, &Length, 8);
  }
  Uc->uc_mcontext.gregs[REG_EFL] |= 0x100; /* TF: trap after this one instruction */
}

static void OnStep(int Sig, siginfo_t *Info, void *Context) {
  ucontext_t *Uc = Context;
  (void)Sig;
  (void)Info;
  Uc->uc_mcontext.gregs[REG_EFL] &= ~0x100;
  mprotect(gWatched, 0x1000, PROT_NONE);
}

static EFI_STATUS CallHandler(VOID *CommBuffer, UINTN Size) {
  return gHandler((EFI_HANDLE)(UINTN)0x5111, NULL, CommBuffer, &Size);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s IMAGE.efi\n", argv[0]);
    return 2;
  }
  const char *Path = argv[1];
  const char *Base = strrchr(Path, '/') ? strrchr(Path, '/') + 1 : Path;
  int Clean = strstr(Base, "_clean") != NULL;

  static UINT8 File[1 << 20];
  FILE *F = fopen(Path, "rb");
  if (F == NULL) {
    perror(Path);
    return 2;
  }
  size_t FileSize = fread(File, 1, sizeof File, F);
  fclose(F);

  gSmram = mmap(NULL, SMRAM_SIZE, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS,
                -1, 0);
  gOutside = mmap(NULL, OUTSIDE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (gSmram == MAP_FAILED || gOutside == MAP_FAILED) {
    perror("mmap");
    return 2;
  }
  gFakeSmst = SmramAlloc(sizeof *gFakeSmst, 16);
  memset(gFakeSmst, 0, sizeof *gFakeSmst);
  gFakeSmst->SmmAllocatePool = FakeAllocatePool;
  gFakeSmst->SmmFreePool = FakeFreePool;
  gFakeSmst->SmmLocateProtocol = FakeSmmLocateProtocol;
  gFakeSmst->SmiHandlerRegister = FakeSmiHandlerRegister;
  gSwDispatch = SmramAlloc(sizeof *gSwDispatch, 16);
  memset(gSwDispatch, 0, sizeof *gSwDispatch);
  gSwDispatch->Register = FakeSwRegister;
  gSwDispatch->MaximumSwiValue = 0xFF;
  gSmmCpu = SmramAlloc(sizeof *gSmmCpu, 16);
  memset(gSmmCpu, 0, sizeof *gSmmCpu);
  gSmmCpu->ReadSaveState = FakeReadSaveState;
  gBase2.GetSmstLocation = FakeGetSmstLocation;
  gAccess2.GetCapabilities = FakeGetCapabilities;
  gBs.LocateProtocol = FakeLocateProtocol;
  gSt.BootServices = &gBs;

  UINT32 Entry;
  int Relocations;
  UINT8 *Image = Load(File, FileSize, &Entry, &Relocations);
  if (Image == NULL) {
    fprintf(stderr, "%s: not a loadable x64 PE32+ image\n", Path);
    return 1;
  }
  printf("%s (%s build): loaded at %p, %d DIR64 relocations applied\n", Base,
         Clean ? "clean" : "bug", (void *)Image, Relocations);
  EFI_STATUS(EFIAPI * EfiMain)(EFI_HANDLE, EFI_SYSTEM_TABLE *) = (VOID *)(Image + Entry);
  EFI_STATUS Status = EfiMain((EFI_HANDLE)(UINTN)0x1000, &gSt);
  Expect(Status == EFI_SUCCESS, "EfiMain returns EFI_SUCCESS");
  Expect(gHandler != NULL && (UINT8 *)gHandler >= Image && (UINT8 *)gHandler < Image + gImageSize,
         "a handler inside the image is registered");
  if (gHandler == NULL) {
    return 1;
  }

  UINT64 *Target = (UINT64 *)(gSmram + SMRAM_SIZE - 64); /* an SMRAM address the caller aims at */
  if (strncmp(Base, "comm_pointer", 12) == 0) {
    EFI_GUID Want = {0x99D0B2AA, 0xEC71, 0x4A07, {0xAE, 0x94, 0x44, 0xB5, 0x11, 0x13, 0xA5, 0xF7}};
    Expect(gGuidRegistrations == 1 && GuidEq(&gHandlerType, &Want),
           "HandlerType 99D0B2AA-EC71-4A07-AE94-44B51113A5F7");
    UINT64 *Msg = (UINT64 *)gOutside;
    Msg[0] = 1, Msg[1] = (UINT64)(UINTN)Target, Msg[2] = 0;
    *Target = 0;
    CallHandler(Msg, 24);
    if (Clean) {
      Expect(*Target == 0 && Msg[2] == EFI_ACCESS_DENIED,
             "Address in SMRAM: refused, Status EFI_ACCESS_DENIED");
    } else {
      Expect(*Target == 0x1234, "Address in SMRAM: 0x1234 written into SMRAM (the bug)");
    }
    Msg[1] = (UINT64)(UINTN)(gOutside + 0x100), Msg[2] = 0xFF;
    CallHandler(Msg, 24);
    Expect(Rd64(gOutside + 0x100) == 0x1234 && Msg[2] == EFI_SUCCESS,
           "Address outside SMRAM: 0x1234 written, Status EFI_SUCCESS");
    if (Clean) {
      Msg[1] = (UINT64)(UINTN)gSmram - 4, Msg[2] = 0xFF;
      CallHandler(Msg, 24);
      Expect(Msg[2] == EFI_ACCESS_DENIED, "Address straddling the SMRAM base: refused");
      Msg[1] = (UINT64)-4, Msg[2] = 0xFF;
      CallHandler(Msg, 24);
      Expect(Msg[2] == EFI_ACCESS_DENIED, "Address wrapping the address space: refused");
      Msg[1] = (UINT64)(UINTN)(gOutside + 0x100), Msg[2] = 0xFF;
      CallHandler(Msg, 16);
      Expect(Msg[2] == 0xFF, "*CommBufferSize 16 < 24: buffer untouched");
    }
  } else if (strncmp(Base, "callout", 7) == 0) {
    EFI_GUID Want = {0xD9398575, 0x3EA0, 0x47FC, {0xB4, 0x31, 0x3D, 0x45, 0x8F, 0xE4, 0x7A, 0xB4}};
    Expect(gGuidRegistrations == 1 && GuidEq(&gHandlerType, &Want),
           "HandlerType D9398575-3EA0-47FC-B431-3D458FE47AB4");
    int Before = gBsLocateCalls;
    UINT64 *Msg = (UINT64 *)gOutside;
    Msg[0] = 0;
    for (int I = 0; I < 3; I++) {
      CallHandler(Msg, 8);
    }
    char Line[100];
    snprintf(Line, sizeof Line, "3 SMIs: %d calls to gBS->LocateProtocol from the handler (%s)",
             gBsLocateCalls - Before, Clean ? "want 0" : "want 3, the bug");
    Expect(gBsLocateCalls - Before == (Clean ? 0 : 3), Line);
    Expect(Msg[0] == EFI_NOT_FOUND, "Status = EFI_NOT_FOUND (the protocol is not installed)");
    UINT64 *InSmram = (UINT64 *)(gSmram + SMRAM_SIZE - 8);
    *InSmram = 7;
    CallHandler(InSmram, 8);
    Expect(*InSmram == 7, "CommBuffer in SMRAM: untouched");
  } else if (strncmp(Base, "double_fetch", 12) == 0) {
    EFI_GUID Want = {0xF41BCF43, 0xBF26, 0x4287, {0x87, 0xD4, 0x0B, 0xF9, 0x14, 0xD4, 0x7F, 0xEA}};
    Expect(gGuidRegistrations == 1 && GuidEq(&gHandlerType, &Want),
           "HandlerType F41BCF43-BF26-4287-87D4-0BF914D47FEA");
    /* The copy's destination is a 64-byte SMRAM buffer in the image's .data: find it by the
     * bytes a first, legal call copies (0xCC; .text's int3 padding is 0xCC too, so count only
     * what changed). */
    UINT8 *Msg = gOutside;
    memset(Msg + 8, 0xCC, 256);
    static UINT8 Before[0x10000];
    if (gImageSize > sizeof Before) {
      return 2;
    }
    memcpy(Before, Image, gImageSize);
    *(UINT64 *)Msg = 16;
    CallHandler(Msg, 8 + 256);
    UINT8 *Buffer = NULL;
    int Copied = 0;
    for (UINT32 I = 0; I < gImageSize; I++) {
      if (Image[I] == 0xCC && Before[I] != 0xCC) {
        Buffer = Buffer ? Buffer : Image + I;
        Copied++;
      }
    }
    Expect(Copied == 16 && Buffer != NULL && Buffer + 64 + 200 <= Image + gImageSize,
           "Length 16: 16 bytes copied into the image's SMRAM buffer");
    if (Buffer == NULL || Buffer + 64 + 200 > Image + gImageSize) {
      return 1;
    }
    memset(Buffer, 0, 64);
    *(UINT64 *)Msg = 65;
    CallHandler(Msg, 8 + 256);
    Expect(Buffer[0] == 0, "Length 65: refused");
    *(UINT64 *)Msg = 40;
    CallHandler(Msg, 8 + 39);
    Expect(Buffer[0] == 0, "Length 40 in a 47-byte buffer: refused");
    /* One SMI with the watched page: a second fetch of Length sees 200 and copies past the
     * buffer, over the driver's globals (gBS, gSmst, the SMRAM map), so it is the last call. */
    gWatched = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memset(gWatched + 8, 0xCC, 256);
    struct sigaction Segv = {0}, Trap = {0};
    Segv.sa_sigaction = OnFault;
    Segv.sa_flags = SA_SIGINFO;
    Trap.sa_sigaction = OnStep;
    Trap.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &Segv, NULL);
    sigaction(SIGTRAP, &Trap, NULL);
    mprotect(gWatched, 0x1000, PROT_NONE);
    CallHandler(gWatched, 8 + 256);
    mprotect(gWatched, 0x1000, PROT_READ | PROT_WRITE);
    signal(SIGSEGV, SIG_DFL);
    signal(SIGTRAP, SIG_DFL);
    int Overrun = 0;
    for (int I = 64 + 8; I < 200; I++) { /* past the buffer and the UINT64 after it */
      Overrun |= Buffer[I] == 0xCC;
    }
    char Line[120];
    snprintf(Line, sizeof Line,
             "Length changed to 200 after its first fetch: fetched %d time(s), %s", gLengthFetches,
             Overrun ? "copied past the SMRAM buffer" : "no overrun");
    Expect(Clean ? gLengthFetches == 1 && !Overrun : gLengthFetches == 2 && Overrun, Line);
  } else if (strncmp(Base, "savestate_pointer", 17) == 0) {
    Expect(gSwRegistrations == 1 && gSwValue == 0x61, "SW SMI 0x61 registered");
    EFI_SMM_SW_CONTEXT Context = {0, 0x61, 0};
    *Target = 0;
    gSavedRsi = (UINT64)(UINTN)Target;
    CallHandler(&Context, sizeof Context);
    Expect(Clean ? *Target == 0 : *Target == 0x5678,
           Clean ? "RSI in SMRAM: nothing written"
                 : "RSI in SMRAM: 0x5678 written into SMRAM (the bug)");
    gSavedRsi = (UINT64)(UINTN)(gOutside + 0x200);
    CallHandler(&Context, sizeof Context);
    Expect(Rd64(gOutside + 0x200) == 0x5678, "RSI outside SMRAM: 0x5678 written");
  } else {
    fprintf(stderr, "%s: unknown driver name\n", Base);
    return 2;
  }
  return gFailures ? 1 : 0;
}
