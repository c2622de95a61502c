//! Differential tests: random instruction sequences run on the host CPU (in a child process)
//! and in smmlab's CPU in 64-bit mode must leave the same GPRs, RFLAGS, XMM registers and
//! scratch memory.
//!
//! smmlab runs as the model of the host's vendor (CPUID leaf 0: `--cpu intel64` on Intel,
//! `--cpu amd64` on AMD), and the log says which. On Intel every flag is compared, the ones the
//! manuals leave undefined too, since the intel64 model was measured (`cpu::undefined`); on
//! AMD the undefined ones are not, unless `SMMLAB_DIFF_UNMEASURED=1`.
//! `SMMLAB_DIFF_MODEL=amd64` (or `intel64`) runs the other model against the host, to see where
//! the two differ.
//!
//! Longer run with a random seed:
//! `SMMLAB_DIFF_CASES=1000000 SMMLAB_DIFF_SEED=random cargo test -p smmlab-cpu --test differential -- --nocapture`
//! Reproduce one failing case: `SMMLAB_DIFF_SEED=<seed> SMMLAB_DIFF_CASE=<index> cargo test ...`

mod diff_support;

const RUNNER: &str = "native_runner_executes_cases_from_stdin_when_spawned_by_the_harness";

/// Not a test by itself: when the harness re-executes this binary with the runner env var set,
/// this is the child process that runs the cases on the host CPU.
#[test]
fn native_runner_executes_cases_from_stdin_when_spawned_by_the_harness() {
    if std::env::var_os(diff_support::NATIVE_ENV).is_some() {
        diff_support::native_runner_main();
    }
}

#[test]
fn integer_sequences_match_the_host_cpu() {
    diff_support::run_suite("integer", RUNNER, diff_support::Suite::Integer, 64, 40_000, 0x5eed_0001);
}

#[test]
fn sse_integer_sequences_match_the_host_cpu() {
    diff_support::run_suite("sse", RUNNER, diff_support::Suite::Sse, 64, 10_000, 0x5eed_0002);
}

/// The same, in 32-bit code: compatibility mode at CPL 3, as a 64-bit Linux process runs its
/// 32-bit code segment (selector 0x23), with the 32-bit-only instructions (BCD, PUSHA/POPA,
/// segment loads, 16-bit addresses).
#[test]
fn integer_sequences_match_the_host_cpu_in_32_bit_mode() {
    diff_support::run_suite("integer32", RUNNER, diff_support::Suite::Integer, 32, 40_000, 0x5eed_0003);
}

/// x87 instructions from a random FPU state (stack depth, TOP, rounding and precision control,
/// values of every class): the 80-bit registers, status, control and tag words must match the
/// host's.
#[test]
fn x87_sequences_match_the_host_fpu() {
    diff_support::run_suite("x87", RUNNER, diff_support::Suite::X87, 64, 20_000, 0x5eed_0004);
}
