#!/usr/bin/env bash
# Builds the drivers into a temporary directory and checks what the tests rely on:
# every image is PE32+ (magic 0x20B), machine 0x8664, subsystem 12, has DIR64 base relocations
# and no imports; and in each bug build the compiler kept the planted bug, which the clean build
# does not have (compared on the handler's disassembly in the object files). On an x86_64
# Linux host it then runs each image with selftest.c (fake tables, handler called directly).
# Needs clang, lld-link, llvm-readobj and llvm-objdump (Debian: clang, lld, llvm).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
for tool in llvm-readobj llvm-objdump; do
  command -v $tool >/dev/null 2>&1 || { echo "$0: '$tool' not found; install it with: apt-get install -y llvm" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
OBJDIR=$work/obj "$here/build.sh" "$work/out" >/dev/null
fail=0
bad() { echo "FAIL: $*"; fail=1; }

for efi in "$work"/out/*.efi; do
  name=$(basename "$efi")
  h=$(llvm-readobj --file-headers --coff-basereloc --coff-imports "$efi")
  grep -q 'Magic: 0x20B' <<<"$h" || bad "$name is not PE32+"
  grep -q 'Machine: IMAGE_FILE_MACHINE_AMD64 (0x8664)' <<<"$h" || bad "$name is not x64"
  grep -q 'Subsystem: IMAGE_SUBSYSTEM_EFI_RUNTIME_DRIVER (0xC)' <<<"$h" || bad "$name: subsystem is not 12"
  relocs=$(grep -c 'Type: DIR64' <<<"$h" || true)
  [ "$relocs" -gt 0 ] || bad "$name has no DIR64 base relocations"
  grep -q 'ImportTableSize: 0x0$' <<<"$h" || bad "$name has imports"
  echo "ok $name: $(wc -c <"$efi") bytes, PE32+, subsystem 12, $relocs DIR64 relocations"
done

# The disassembly of one function (with relocations) of an object file.
fn() { llvm-objdump -d -r --no-show-raw-insn "$work/obj/$1.obj" | awk -v f="<$2>:" '$2==f{on=1;next} on&&/^$/{exit} on'; }
count() { grep -cE -- "$1" || true; }

# comm_pointer: both store 0x1234 through the caller's Address; only the clean one checks it.
for v in comm_pointer comm_pointer_clean; do
  fn $v CommPointerHandler | grep -q 'movq	$4660, (' || bad "$v: no store of 0x1234"
done
[ "$(fn comm_pointer CommPointerHandler | count IsBufferOutsideSmram)" = 0 ] || bad "comm_pointer checks the address"
[ "$(fn comm_pointer_clean CommPointerHandler | count IsBufferOutsideSmram)" -ge 2 ] || bad "comm_pointer_clean: missing checks"
# callout: the bug handler calls gBS->LocateProtocol (call *0x140(reg)); the clean one calls nothing through gBS.
[ "$(fn callout CalloutHandler | count 'callq	\*320\(%')" = 1 ] || bad "callout: no call through gBS+0x140 in the handler"
[ "$(fn callout_clean CalloutHandler | count 'callq	\*320\(%')" = 0 ] || bad "callout_clean calls through gBS"
# double_fetch: the bug handler has one more 8-byte load at displacement 0 (the second Length fetch).
b=$(fn double_fetch DoubleFetchHandler | count 'movq	\(%r[a-z0-9]+\), %r')
c=$(fn double_fetch_clean DoubleFetchHandler | count 'movq	\(%r[a-z0-9]+\), %r')
[ "$b" = $((c + 1)) ] || bad "double_fetch: expected one more Length fetch than the clean twin ($b vs $c)"
# savestate_pointer: both read the save state and store 0x5678; only the clean one checks.
for v in savestate_pointer savestate_pointer_clean; do
  fn $v SavestatePointerHandler | grep -q 'movl	$44, %r8d' || bad "$v: no ReadSaveState(RSI)"
  fn $v SavestatePointerHandler | grep -q 'movq	$22136, (' || bad "$v: no store of 0x5678"
done
[ "$(fn savestate_pointer SavestatePointerHandler | count IsBufferOutsideSmram)" = 0 ] || bad "savestate_pointer checks RSI"
[ "$(fn savestate_pointer_clean SavestatePointerHandler | count IsBufferOutsideSmram)" = 1 ] || bad "savestate_pointer_clean: no RSI check"

[ $fail = 0 ] && echo "ok: the four planted bugs are in the bug builds and fixed in the clean ones"

if [ "$(uname -s)-$(uname -m)" = Linux-x86_64 ]; then
  clang -O1 -Wall -Wextra -Werror -o "$work/selftest" "$here/selftest.c"
  for efi in "$work"/out/*.efi; do
    "$work/selftest" "$efi" || bad "selftest $(basename "$efi")"
  done
else
  echo "skip: selftest runs the images on an x86_64 Linux host only"
fi
exit $fail
