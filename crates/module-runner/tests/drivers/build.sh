#!/usr/bin/env bash
# Builds the planted-bug SMM test drivers and their clean twins as PE32+ images:
#   build.sh OUTDIR  ->  OUTDIR/<name>.efi (bug) and OUTDIR/<name>_clean.efi (-DCLEAN)
# for name in comm_pointer callout double_fetch savestate_pointer, and OUTDIR/counter.efi (no bug,
# no twin: a handler that keeps a count in SMRAM, for the fuzzer's snapshot test).
# Needs Debian's clang and lld (bookworm: 14): apt-get install -y clang lld.
# The images are x64 (machine 0x8664), subsystem 12 (EFI_RUNTIME_DRIVER, as edk2 builds
# DXE_SMM_DRIVER modules), entry EfiMain, no imports, with base relocations (.reloc) and the
# default preferred base 0x140000000 (above 4 GiB, so a loader must relocate them into SMRAM).
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
out=$1

CC=${CC:-clang}
LD=${LD:-lld-link}
for tool in "$CC" "$LD"; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    case $tool in
      *lld-link*) pkg=lld ;;
      *) pkg=clang ;;
    esac
    echo "$0: '$tool' not found; install it with: apt-get install -y $pkg" >&2
    exit 1
  fi
done

mkdir -p "$out"
# OBJDIR keeps the object files (with symbols) for verify.sh; otherwise they are temporary.
if [ -n "${OBJDIR:-}" ]; then
  obj=$OBJDIR
  mkdir -p "$obj"
else
  obj=$(mktemp -d)
  trap 'rm -rf "$obj"' EXIT
fi

# Freestanding MS-x64 code (EFIAPI is the target's default ABI): no C library, no stack
# protector and no __chkstk probes (neither has a runtime here), no red zone, 2-byte wchar_t
# (CHAR16) as in UEFI, no unwind tables (.pdata/.xdata).
cflags=(-target x86_64-unknown-windows -std=c11 -ffreestanding -fno-stack-protector
  -mno-stack-arg-probe -fshort-wchar -mno-red-zone -nostdlib -fno-asynchronous-unwind-tables
  -O2 -Wall -Wextra -Werror)
# No /dll: an EFI image, not a DLL; /dynamicbase (the default) keeps the base relocations.
# /timestamp:0 so the same source gives the same bytes (/Brepro would add a debug directory).
ldflags=(/nologo /subsystem:efi_runtime_driver /entry:EfiMain /nodefaultlib /dynamicbase
  /machine:x64 /timestamp:0)

"$CC" "${cflags[@]}" -c "$here/smmlib.c" -o "$obj/smmlib.obj"
for name in comm_pointer callout double_fetch savestate_pointer; do
  for variant in bug clean; do
    if [ $variant = clean ]; then
      suffix=_clean
      defs=(-DCLEAN)
    else
      suffix=
      defs=()
    fi
    "$CC" "${cflags[@]}" "${defs[@]}" -c "$here/$name.c" -o "$obj/$name$suffix.obj"
    "$LD" "${ldflags[@]}" "/out:$out/$name$suffix.efi" "$obj/$name$suffix.obj" "$obj/smmlib.obj"
    echo "built $out/$name$suffix.efi ($(wc -c <"$out/$name$suffix.efi") bytes)"
  done
done
"$CC" "${cflags[@]}" -c "$here/counter.c" -o "$obj/counter.obj"
"$LD" "${ldflags[@]}" "/out:$out/counter.efi" "$obj/counter.obj" "$obj/smmlib.obj"
echo "built $out/counter.efi ($(wc -c <"$out/counter.efi") bytes)"
