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
# clang and lld-link build the planted-bug SMM test drivers (crates/module-runner/tests/drivers).
command -v clang >/dev/null 2>&1 || need+=(clang)
command -v lld-link >/dev/null 2>&1 || need+=(lld)
# gdb drives `smmlab run --gdb` over the remote protocol (crates/smmlab/tests/gdb.rs).
command -v gdb >/dev/null 2>&1 || need+=(gdb)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
# The SARIF 2.1.0 JSON schema (draft-04) crates/audit/tests/sarif_schema.rs validates the audit's
# SARIF against: one file of the MIT-licensed npm package @microsoft/jest-sarif, fetched once into
# target/sarif-schema/ (never committed). Without it the test skips, or fails when CI=true.
SMMLAB_SARIF_SCHEMA="$PWD/target/sarif-schema/sarif-2.1.0-rtm.5.json"
if [ ! -f "$SMMLAB_SARIF_SCHEMA" ]; then
  mkdir -p target/sarif-schema
  ( cd target/sarif-schema && tgz=$(npm pack --silent @microsoft/jest-sarif@1.0.0-beta.0 | tail -n1) &&
    tar -xzf "$tgz" --strip-components=3 package/lib/schemas/sarif-2.1.0-rtm.5.json && rm -f "$tgz" ) ||
    echo "warning: cannot fetch the SARIF schema from the npm registry" >&2
fi
export SMMLAB_SARIF_SCHEMA

# Lints first, warnings as errors: clippy's defaults plus the root Cargo.toml's [workspace.lints].
# The firmware is its own workspace (a freestanding image), so it gets its own run. rustup's
# default profile has clippy; a minimal one does not, so add it when it is missing.
if ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add clippy
fi
cargo clippy --workspace --all-targets --locked -- -D warnings
( cd firmware && cargo clippy --release --bins --lib --locked --target-dir ../target/smmlab-firmware -- -D warnings )

# Run the tests, keep cargo's exit status, and close with one total line over every test binary
# (cargo's own last line is the last crate's doc-tests, often "0 passed"). A test whose
# prerequisite is missing records a skip in $SMMLAB_SKIP_LOG (crates/testkit; under CI=true it
# fails instead), and scripts/count-tests.awk counts it as skipped, not passed.
log=$(mktemp)
SMMLAB_SKIP_LOG=$(mktemp)
export SMMLAB_SKIP_LOG
trap 'rm -f "$log" "$SMMLAB_SKIP_LOG"' EXIT
status=0
cargo test --workspace --locked "$@" 2>&1 | tee "$log" || status=$?
awk -f scripts/count-tests.awk "$SMMLAB_SKIP_LOG" "$log"
exit "$status"
