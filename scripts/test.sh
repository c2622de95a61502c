#!/usr/bin/env bash
# Installs what smmlab's tests need on a fresh Debian machine, then runs them.
# This is the README's test command and what .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use: nasm assembles the test ROMs; QEMU 7.2 is the reference in
# the SMM differential tests; sigrok-cli reads back the VCD traces.
need=()
command -v nasm >/dev/null 2>&1 || need+=(nasm)
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
[ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || need+=(ovmf)
[ -f /usr/share/seabios/bios-256k.bin ] || need+=(seabios)
# sigrok-cli (about 4 MB with its libraries) opens the SMI waveforms `smmlab run --vcd` writes.
command -v sigrok-cli >/dev/null 2>&1 || need+=(sigrok-cli)
[ -f /usr/share/bochs/BIOS-bochs-latest ] || need+=(bochsbios)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Run the tests, keep cargo's exit status, and close with one total line over every test binary
# (cargo's own last line is the last crate's doc-tests, often "0 passed").
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
