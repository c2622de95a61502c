//! The real sources on a Linux x86-64 host: the TSC (RDTSC), the SMI counter (Intel
//! MSR_SMI_COUNT through `/dev/cpu/N/msr`, AMD `ls_smi_rx` through perf_event_open), the NMI
//! count of `/proc/interrupts`, CPU affinity and SCHED_FIFO, the TSC frequency, the CPU list.

use crate::detect::Source;
use crate::report::SourceStatus;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// Intel SDM vol. 4, "MSRs in Processors Based on Intel Core Microarchitecture" and later:
/// MSR_SMI_COUNT (0x34), bits 31:0 count the SMIs since the last reset.
pub const MSR_SMI_COUNT: u64 = 0x34;

/// AMD PPR for family 17h and 19h processors, core performance event PMCx02B
/// (Core::X86::Pmc::Core::LsSmiRx, "SMIs Received"), unit mask 0: the raw event config.
pub const AMD_LS_SMI_RX: u64 = 0x2b;

fn cpuid(leaf: u32, sub: u32) -> core::arch::x86_64::CpuidResult {
    // CPUID exists on every x86-64 CPU (the intrinsic is safe on this target).
    core::arch::x86_64::__cpuid_count(leaf, sub)
}

/// CPUID's vendor string (`GenuineIntel`, `AuthenticAMD`, ...).
pub fn vendor() -> String {
    let r = cpuid(0, 0);
    let mut v = Vec::with_capacity(12);
    for w in [r.ebx, r.edx, r.ecx] {
        v.extend_from_slice(&w.to_le_bytes());
    }
    String::from_utf8_lossy(&v).into_owned()
}

/// CPUID.1:ECX[31]: set by hypervisors for their guests (Intel SDM vol. 2A, CPUID, "Not
/// Used: always returns 0" on hardware; AMD APM vol. 3 E.3.2 "reserved for use by
/// hypervisors to indicate guest status").
pub fn hypervisor() -> bool {
    cpuid(1, 0).ecx >> 31 & 1 == 1
}

/// Whether the process runs as root.
pub fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The TSC frequency and where it comes from: CPUID leaf 0x15 (TSC/crystal ratio times the
/// crystal frequency, Intel SDM vol. 3B §18.7.3) when it is complete, else measured against
/// CLOCK_MONOTONIC_RAW over 100 ms (leaf 0x16's base frequency is not guaranteed to be the
/// TSC's, so it is not used).
pub fn tsc_hz() -> (u64, String) {
    if cpuid(0, 0).eax >= 0x15 {
        let r = cpuid(0x15, 0);
        if r.eax != 0 && r.ebx != 0 && r.ecx != 0 {
            return (u64::from(r.ecx) * u64::from(r.ebx) / u64::from(r.eax), "CPUID leaf 0x15".into());
        }
    }
    let raw = || {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: ts is a valid timespec to write.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_RAW, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    };
    let (n0, t0) = (raw(), rdtsc());
    std::thread::sleep(std::time::Duration::from_millis(100));
    let (n1, t1) = (raw(), rdtsc());
    let hz = u128::from(t1 - t0) * 1_000_000_000 / u128::from((n1 - n0).max(1));
    (hz as u64, "calibrated against CLOCK_MONOTONIC_RAW over 100 ms".into())
}

/// The time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC is unprivileged unless CR4.TSD is set, which Linux does not do.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Parses a CPU list (`0`, `0-3`, `0,2-3`).
pub fn parse_cpu_list(s: &str) -> Result<Vec<u32>, String> {
    let mut v = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        let bad = || format!("bad CPU list {s:?}: {part:?} is not a number or a range N-M");
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<u32>().map_err(|_| bad())?, b.trim().parse::<u32>().map_err(|_| bad())?),
            None => {
                let n = part.trim().parse::<u32>().map_err(|_| bad())?;
                (n, n)
            }
        };
        if b < a || b - a > 4096 {
            return Err(bad());
        }
        v.extend(a..=b);
    }
    if v.is_empty() {
        return Err(format!("bad CPU list {s:?}: no CPU"));
    }
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

/// The CPUs online (`/sys/devices/system/cpu/online`).
pub fn online_cpus() -> Result<Vec<u32>, String> {
    let s = std::fs::read_to_string("/sys/devices/system/cpu/online").map_err(|e| format!("/sys/devices/system/cpu/online: {e}"))?;
    parse_cpu_list(&s)
}

/// The NMI count of `cpu` in the text of `/proc/interrupts`: the `NMI:` line's column under
/// the header's `CPUn`.
pub fn parse_nmi(text: &str, cpu: u32) -> Option<u64> {
    let mut lines = text.lines();
    let header = lines.next()?;
    let col = header.split_whitespace().position(|c| c == format!("CPU{cpu}"))?;
    let nmi = lines.find(|l| l.trim_start().starts_with("NMI:"))?;
    nmi.split_whitespace().nth(1 + col)?.parse().ok()
}

fn read_nmi(cpu: u32) -> Option<u64> {
    parse_nmi(&std::fs::read_to_string("/proc/interrupts").ok()?, cpu)
}

/// The NMI source's status.
pub fn nmi_status(cpu: u32) -> SourceStatus {
    let what = "NMI count of /proc/interrupts";
    match std::fs::read_to_string("/proc/interrupts") {
        Err(e) => SourceStatus::missing(what, format!("/proc/interrupts: {e}")),
        Ok(t) if parse_nmi(&t, cpu).is_none() => SourceStatus::missing(what, format!("no NMI line or no CPU{cpu} column")),
        Ok(_) => SourceStatus::ok(what),
    }
}

/// Pins the calling thread to `cpu`.
pub fn pin(cpu: u32) -> Result<(), String> {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes within it for cpu < 1024.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu as usize >= libc::CPU_SETSIZE as usize {
            return Err(format!("CPU {cpu} is past the affinity mask"));
        }
        libc::CPU_SET(cpu as usize, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(format!("sched_setaffinity to CPU {cpu}: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// Makes the calling thread SCHED_FIFO at priority 1 (above every normal task; Linux's RT
/// throttling still leaves the others 5 %).
pub fn realtime() -> Result<(), String> {
    let p = libc::sched_param { sched_priority: 1 };
    // SAFETY: p is a valid sched_param.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &p) } != 0 {
        return Err(format!("sched_setscheduler SCHED_FIFO: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Where SMIs are counted.
pub enum SmiReader {
    /// `/dev/cpu/N/msr`, read at MSR_SMI_COUNT.
    Msr(File),
    /// perf_event_open on `ls_smi_rx`.
    Perf(perf_event::Counter),
    /// Nothing could be read.
    None,
}

impl SmiReader {
    fn read(&mut self) -> Option<u64> {
        match self {
            SmiReader::Msr(f) => {
                let mut b = [0u8; 8];
                f.read_exact_at(&mut b, MSR_SMI_COUNT).ok()?;
                Some(u64::from_le_bytes(b) & 0xffff_ffff)
            }
            SmiReader::Perf(c) => c.read().ok(),
            SmiReader::None => None,
        }
    }
}

fn open_msr(cpu: u32) -> Result<File, String> {
    let path = format!("/dev/cpu/{cpu}/msr");
    if !std::path::Path::new(&path).exists() && root() {
        // The msr driver is a module on most distributions.
        let _ = std::process::Command::new("modprobe").arg("msr").stderr(std::process::Stdio::null()).status();
    }
    if !std::path::Path::new(&path).exists() {
        return Err(format!("no {path} (the msr driver is not loaded{})", if root() { " and modprobe msr did not load it" } else { "; as root smmlab loads it" }));
    }
    let f = File::open(&path).map_err(|e| format!("{path}: {e}{}", if root() { "" } else { " (not root)" }))?;
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, MSR_SMI_COUNT).map_err(|e| format!("{path} at {MSR_SMI_COUNT:#x}: {e} (the CPU or its hypervisor refuses MSR_SMI_COUNT)"))?;
    Ok(f)
}

fn open_perf(cpu: u32) -> Result<perf_event::Counter, String> {
    let ev = perf_event::events::Raw::new(AMD_LS_SMI_RX);
    // Every task on the CPU (root, or perf_event_paranoid <= 0), else this thread (pinned to
    // the CPU) with the kernel included, else user time only.
    let attempts: [(&str, bool, bool); 3] = [("cpu-wide", true, false), ("this thread", false, false), ("this thread, user only", false, true)];
    let mut why = Vec::new();
    for (name, wide, user_only) in attempts {
        let mut b = perf_event::Builder::new(ev);
        if wide {
            b.one_cpu(cpu as usize).any_pid();
        } else {
            b.observe_self();
        }
        b.exclude_kernel(user_only).exclude_hv(false);
        match b.build() {
            Ok(mut c) => {
                c.enable().map_err(|e| format!("perf_event enable: {e}"))?;
                return Ok(c);
            }
            Err(e) => why.push(format!("{name}: {e}")),
        }
    }
    let paranoid = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid").map(|s| s.trim().to_string()).unwrap_or_else(|_| "?".into());
    Err(format!("perf_event_open refused ({}; perf_event_paranoid {paranoid})", why.join("; ")))
}

/// Opens the SMI counter for `cpu` (call on a thread pinned to it): what it is and whether it
/// works.
pub fn open_smi(cpu: u32, vendor: &str) -> (SmiReader, SourceStatus) {
    let hv = if hypervisor() { "; a virtual machine (CPUID hypervisor bit): its hypervisor hides or fakes the host's SMI counters" } else { "" };
    match vendor {
        "GenuineIntel" => {
            let what = format!("MSR_SMI_COUNT ({MSR_SMI_COUNT:#x}) through /dev/cpu/N/msr");
            match open_msr(cpu) {
                Ok(f) => (SmiReader::Msr(f), SourceStatus::ok(what)),
                Err(e) => (SmiReader::None, SourceStatus::missing(what, format!("{e}{hv}"))),
            }
        }
        "AuthenticAMD" | "HygonGenuine" => {
            let what = format!("ls_smi_rx (PMC {AMD_LS_SMI_RX:#x}) through perf_event_open");
            match open_perf(cpu) {
                Ok(c) => (SmiReader::Perf(c), SourceStatus::ok(what)),
                Err(e) => (SmiReader::None, SourceStatus::missing(what, format!("{e}{hv}"))),
            }
        }
        v => (SmiReader::None, SourceStatus::missing("SMI counter", format!("no known SMI counter on a {v} CPU{hv}"))),
    }
}

/// The sources of one CPU, on a thread pinned to it.
pub struct HostSource {
    /// The CPU.
    pub cpu: u32,
    /// The SMI counter.
    pub smi: SmiReader,
    /// Whether to read `/proc/interrupts`.
    pub nmi: bool,
    /// TSC ticks per second (for [`Source::sleep_until`]).
    pub tsc_hz: u64,
}

impl Source for HostSource {
    fn tsc(&mut self) -> u64 {
        rdtsc()
    }

    fn smi_count(&mut self) -> Option<u64> {
        self.smi.read()
    }

    fn nmi_count(&mut self) -> Option<u64> {
        if self.nmi {
            read_nmi(self.cpu)
        } else {
            None
        }
    }

    fn wall_ns(&mut self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
    }

    fn sleep_until(&mut self, tsc: u64) {
        let now = rdtsc();
        if tsc > now {
            let ns = u128::from(tsc - now) * 1_000_000_000 / u128::from(self.tsc_hz.max(1));
            std::thread::sleep(std::time::Duration::from_nanos(ns as u64));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0").unwrap(), vec![0]);
        assert_eq!(parse_cpu_list("0,2-4\n").unwrap(), vec![0, 2, 3, 4]);
        assert_eq!(parse_cpu_list("3,1,1").unwrap(), vec![1, 3]);
        for bad in ["", "x", "1-", "4-2", "1,,a"] {
            assert!(parse_cpu_list(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn nmi_column_of_each_cpu() {
        let t = "           CPU0       CPU1       CPU2\n  0:         31          0          0  IO-APIC   2-edge      timer\nNMI:          7         12          0   Non-maskable interrupts\nLOC:   1 2 3   Local timer interrupts\n";
        assert_eq!(parse_nmi(t, 0), Some(7));
        assert_eq!(parse_nmi(t, 1), Some(12));
        assert_eq!(parse_nmi(t, 2), Some(0));
        assert_eq!(parse_nmi(t, 3), None);
        assert_eq!(parse_nmi("           CPU0\n 0: 1\n", 0), None);
    }
}
