//! `smmlab run`: boot a ROM and report what happened.

use super::observe;
use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use cpu::cpuid::Vendor;
use cpu::CpuModel;
use machine::{BoardKind, Machine, MachineConfig, RunSummary};
use serde::Serialize;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum MachineKind {
    /// RAM, a flat ROM, debugcon and isa-debug-exit.
    Minimal,
    /// i440FX + PIIX4: SMRAM at 0x72, APM SMIs through PIIX4 PM.
    Pc,
    /// Q35 + ICH9: SMRAM/ESMRAMC/TSEG, ICH9 SMI logic and timers.
    Q35,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum CpuKind {
    /// Intel CPU with long mode.
    Intel64,
    /// AMD CPU with long mode.
    Amd64,
    /// Intel CPU without long mode.
    I686,
}

/// The range of `--ips`.
const MIN_IPS: u64 = 1_000_000;
const MAX_IPS: u64 = 1_000_000_000_000;

#[derive(Args)]
pub struct RunArgs {
    /// Firmware ROM (a multiple of 64 KiB, mapped to end at 4 GiB). Without it, smmlab's
    /// built-in firmware runs on q35 with the hardware SMM exists for (memory errors, thermal
    /// sensor and fan, a USB keyboard, a device to emulate, flash) and a small OS that uses it;
    /// see --scenario.
    #[arg(long, value_name = "FILE")]
    pub bios: Option<PathBuf>,
    /// A system flash unit, as QEMU's `-drive if=pflash,format=raw,file=FILE[,readonly=on]`
    /// (repeatable; pc and q35): the first is unit 0, the firmware code, ending at 4 GiB (its
    /// top 128 KiB also at 0xE0000), each further unit right below the one before; together at
    /// most 8 MiB, each a multiple of 4 KiB. A writable unit the guest programs (UEFI's
    /// variable store) is written back to its file after the run, however the run ends.
    #[arg(long, value_name = "FILE[,readonly]", conflicts_with_all = ["bios", "scenario"])]
    pub pflash: Vec<String>,
    /// Whether only SMM may program the flash (QEMU's `-global
    /// driver=cfi.pflash01,property=secure,value=on`, which OVMF's SMM variable store
    /// expects); writes from outside SMM are refused and counted.
    #[arg(long, value_enum, value_name = "on|off", default_value = "on")]
    pub pflash_secure: Switch,
    /// Do not write the flash units back: the guest's changes last for this run only.
    #[arg(long)]
    pub pflash_snapshot: bool,
    /// Boot Debian's OVMF with SMM and secure boot (package ovmf:
    /// /usr/share/OVMF/OVMF_CODE_4M.secboot.fd read-only, and a per-user copy of
    /// OVMF_VARS_4M.fd in $XDG_STATE_HOME/smmlab or ~/.local/state/smmlab as the variable
    /// store), on q35 with 256 MiB unless --memory says otherwise, as QEMU runs it with
    /// `-machine q35,smm=on`.
    #[arg(long, conflicts_with_all = ["bios", "scenario", "pflash"])]
    pub ovmf: bool,
    /// End the run (exit reason serial-text, status 0) as soon as COM1 has transmitted TEXT;
    /// connects COM1 if --serial did not. `--ovmf --stop-on-serial Shell>` stops at the UEFI
    /// Shell's prompt.
    #[arg(long, value_name = "TEXT", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub stop_on_serial: Option<String>,
    /// Machine type [default: q35 for the built-in firmware and for flash, minimal with --bios].
    #[arg(long, value_enum)]
    pub machine: Option<MachineKind>,
    /// CPU model [default: intel64 for the built-in firmware (SMRR, SMM_CODE_CHK); with --bios
    /// or flash, amd64 on pc and q35 (QEMU's qemu64 also writes the AMD64 save-state map,
    /// revision 0x20064, which SeaBIOS requires), intel64 on minimal].
    #[arg(long, value_enum)]
    pub cpu: Option<CpuKind>,
    /// Guest RAM in MiB (1-3072; the built-in firmware needs at least 16) [default: 128, 256
    /// with --ovmf].
    #[arg(long, value_name = "MiB")]
    pub memory: Option<u64>,
    /// Write the guest's debugcon (port 0x402) output to FILE, or to stdout with '-'.
    #[arg(long, value_name = "FILE")]
    pub debugcon: Option<String>,
    /// Connect a 16550 UART at 0x3F8 (COM1) and write what it transmits to FILE, or to
    /// stdout with '-'. Without it the board has no COM1 (as QEMU with -nodefaults).
    #[arg(long, value_name = "FILE")]
    pub serial: Option<String>,
    /// Raw disk image (whole 512-byte sectors): the IDE primary master on pc, AHCI port 0 on
    /// q35. Guest writes change an in-memory copy only; the file is never modified.
    #[arg(long, value_name = "FILE")]
    pub disk: Option<PathBuf>,
    /// Option ROM for the firmware, as QEMU's -option-rom: passed through fw_cfg as
    /// `genroms/<file name>` (pc and q35; repeatable). SeaBIOS runs them from 0xC0000. QEMU
    /// adds /usr/share/qemu/kvmvapic.bin this way by itself; give it here to match QEMU.
    #[arg(long = "option-rom", value_name = "FILE")]
    pub option_rom: Vec<PathBuf>,
    /// Put FILE into fw_cfg as the file NAME, as QEMU's -fw_cfg name=NAME,file=FILE (pc and
    /// q35; repeatable; names hold at most 55 bytes). Unlike QEMU, a name the board already
    /// has is replaced: etc/acpi/tables, etc/acpi/rsdp, etc/table-loader and
    /// etc/smbios/smbios-tables/-anchor swap smmlab's own ACPI and SMBIOS tables for others.
    #[arg(long = "fw-cfg", value_name = "NAME=FILE")]
    pub fw_cfg: Vec<String>,
    /// Write the run summary as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,
    /// Stop after N instructions (exit reason instruction-limit, status 4). The default,
    /// 10^10, is 10 s of guest time at the default --ips; in wall time about 40 s for typical
    /// firmware code and about 2 minutes for a guest stuck in a tight endless loop, on the
    /// project's 2-core machine (about 250 and 80 MIPS).
    #[arg(long, value_name = "N", default_value_t = 10_000_000_000)]
    pub max_instructions: u64,
    /// Stop when guest time reaches MS milliseconds, whatever made it pass: instructions, time
    /// skipped while halted or polling, --smm-entry-ns/--rsm-ns (exit reason guest-time-limit,
    /// status 4). The default, 60 s, is six times the instruction limit's guest time.
    #[arg(long, value_name = "MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_guest_time: u64,
    /// The SMM watchdog, in milliseconds of guest time: a CPU in SMM this long without RSM
    /// ends the run (exit reason stuck-in-smm), and so do SMIs that keep coming while the code
    /// they interrupt gets less than 1 % of such a window (smi-storm); both exit with status 6.
    /// 0 turns the watchdog off.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub smm_watchdog: u64,
    /// Guest instructions per second (guest time = instructions / rate).
    #[arg(long, value_name = "N", default_value_t = 1_000_000_000)]
    pub ips: u64,
    /// Keep guest time strictly to retired instructions: without it, guest time runs faster
    /// while the guest only busy-waits on the ACPI PM timer (deterministic; the skipped time
    /// is the summary's poll_skipped_ns).
    #[arg(long)]
    pub exact_time: bool,
    /// Do not print the timeline or the summary.
    #[arg(long, short)]
    pub quiet: bool,
    /// Run a named scenario (see `smmlab scenarios`) [default: default].
    #[arg(long, value_name = "NAME", conflicts_with = "bios")]
    pub scenario: Option<String>,
    /// Guest time an SMM entry takes beyond its one instruction, in ns (saving the CPU state;
    /// on real platforms also the rendezvous of all cores: microseconds), at most 10000000
    /// (10 ms). 0: guest time is instructions only. Entry and RSM times longer than the
    /// firmware's SMI period leave the OS no time (an SMI storm, see --smm-watchdog).
    #[arg(long, value_name = "NS", default_value_t = 0)]
    pub smm_entry_ns: u64,
    /// Guest time RSM takes beyond its one instruction, in ns (at most 10000000: 10 ms).
    #[arg(long, value_name = "NS", default_value_t = 0)]
    pub rsm_ns: u64,
    /// Type TEXT on the built-in platform's USB keyboard (from 5 ms, Enter added), instead of
    /// what the scenario types; the default and keyboard scenarios' OS reads the line.
    #[arg(long = "type", value_name = "TEXT", conflicts_with = "bios")]
    pub type_text: Option<String>,
    /// Inject a DRAM ECC error into the built-in platform's memory controller at guest time MS
    /// milliseconds, physical address ADDR (hex with 0x, or decimal); `:uc` makes it
    /// uncorrectable (repeatable).
    #[arg(long, value_name = "MS:ADDR[:uc]", conflicts_with = "bios")]
    pub inject_ecc: Vec<String>,
    /// Scale the built-in platform's heat (the CPU temperature's rise under load), in permille
    /// of normal: 1500 runs half again as hot.
    #[arg(long, value_name = "PERMILLE", conflicts_with = "bios", value_parser = clap::value_parser!(u32).range(100..=5000))]
    pub heat: Option<u32>,
    /// Break the built-in platform's fan (no cooling, no tachometer signal).
    #[arg(long, conflicts_with = "bios")]
    pub fan_fail: bool,
    /// Keep the built-in firmware's settings (its 4 KiB flash sector) in FILE: loaded before
    /// the run if FILE exists, saved after it, so settings persist from one run to the next.
    #[arg(long, value_name = "FILE", conflicts_with = "bios")]
    pub nvram: Option<PathBuf>,
    /// Flag SMIs longer than this many microseconds of guest time (the BITS guideline is 150).
    #[arg(long, value_name = "US", default_value_t = trace::BITS_SMI_LATENCY_US)]
    pub smi_timeout: f64,
    /// Write the SMIs as a VCD waveform (SMI#, SMIACT#, sources, APM_CNT; 1 ns steps) to FILE.
    #[arg(long, value_name = "FILE")]
    pub vcd: Option<PathBuf>,
    /// Write the SMI timeline in the Chrome trace event format (Perfetto) to FILE.
    #[arg(long, value_name = "FILE")]
    pub trace_json: Option<PathBuf>,
    /// Replay the SMIs a `smmlab host --json` report recorded on a real machine: each raised
    /// on SMI# at its recorded time from the moment the firmware locks SMRAM (D_LCK), its
    /// handler taking its recorded length in guest time, the pattern repeating with the
    /// recording's length.
    #[arg(long, value_name = "FILE")]
    pub smi_load: Option<PathBuf>,
    /// Before the first instruction, listen for gdb on ADDR (HOST:PORT, or a bare port on
    /// 127.0.0.1) and let it drive the run, as `smmlab gdb --listen ADDR` does: registers with
    /// the system and SMM ones, physical memory (SMRAM in SMM), stepi and reverse-stepi,
    /// breakpoints and write watchpoints, `monitor help`. The run ends when gdb detaches or
    /// kills it; the timeline, summary and output files are not produced.
    #[arg(long, value_name = "ADDR")]
    pub gdb: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    /// On.
    On,
    /// Off.
    Off,
}

#[derive(Serialize)]
struct SmramJson {
    g_smrame: bool,
    d_open: bool,
    d_cls: bool,
    d_lck: bool,
    t_en: bool,
}

#[derive(Serialize)]
struct SummaryJson<'a> {
    instructions: u64,
    smis: u64,
    smis_by_source: &'a std::collections::BTreeMap<String, u64>,
    smm_instructions: u64,
    smm_guest_ns: u64,
    guest_ns: u64,
    /// Guest time skipped while the guest polled the PM timer (part of guest_ns).
    poll_skipped_ns: u64,
    exit: &'a str,
    exit_detail: Option<&'a str>,
    exit_code: i32,
    unimplemented: &'a std::collections::BTreeMap<String, u64>,
    /// Mechanisms the guest used that smmlab does not model, by name.
    missing_features: &'a std::collections::BTreeMap<String, u64>,
    /// SMBASE when the run ended.
    smbase_after: u32,
    /// SMRAM decoding when the run ended (pc/q35 only).
    smram_after: Option<SmramJson>,
    wall_seconds: f64,
    mips: f64,
    /// SMI latency by source, time in SMM, SMIs over --smi-timeout.
    smi_latency: &'a trace::LatencySummary,
    /// Writes to the flash units taken from SMM (with --pflash/--ovmf).
    pflash_writes_smm: Option<u64>,
    /// Writes from outside SMM a secure flash refused (with --pflash/--ovmf).
    pflash_writes_refused: Option<u64>,
}

/// What a caller does with the machine once the run has ended (`smmlab smm inventory`),
/// before the run's outputs are written.
pub type AfterRun<'a> = Box<dyn FnOnce(&mut Machine) -> anyhow::Result<()> + 'a>;

/// What a caller adds to a run: a call after every RSM, and one after the run.
#[derive(Default)]
pub struct Hooks<'a> {
    /// Called each time RSM returns from SMM.
    pub on_rsm: Option<observe::OnRsm<'a>>,
    /// Called once the run has ended.
    pub after: Option<AfterRun<'a>>,
    /// Hand the machine to gdb there before the first instruction (`smmlab gdb`; `--gdb`
    /// gives a TCP address).
    pub gdb: Option<super::gdb::Listen>,
}

pub fn run(a: RunArgs) -> anyhow::Result<i32> {
    run_with(a, Hooks::default())
}

/// [`run`] with `hooks`.
pub fn run_with(a: RunArgs, hooks: Hooks) -> anyhow::Result<i32> {
    let Hooks { on_rsm, after, gdb } = hooks;
    let gdb = gdb.or_else(|| a.gdb.as_deref().map(|addr| super::gdb::Listen::Tcp(super::gdb::parse_addr(addr))));
    // First, so that a signal at any time after this ends the run cleanly.
    let interrupt = super::interrupt::Interrupt::install()?;
    let flash_args = if a.ovmf { super::pflash::ovmf_units()? } else { a.pflash.iter().map(|p| super::pflash::PflashArg::parse(p)).collect::<anyhow::Result<Vec<_>>>()? };
    let flash = super::pflash::open(&flash_args)?;
    let external = a.bios.is_some() || !flash.is_empty();
    let scenario = match external {
        true => None,
        false => Some(super::scenarios::find(a.scenario.as_deref().unwrap_or("default"))?),
    };
    if external {
        for (flag, given) in [("--type", a.type_text.is_some()), ("--inject-ecc", !a.inject_ecc.is_empty()), ("--heat", a.heat.is_some()), ("--fan-fail", a.fan_fail), ("--nvram", a.nvram.is_some())] {
            anyhow::ensure!(!given, "{flag} needs the built-in firmware (not --bios, --pflash or --ovmf)");
        }
    }
    let memory = a.memory.unwrap_or(if a.ovmf { 256 } else { 128 });
    if !(a.smi_timeout.is_finite() && a.smi_timeout >= 0.0) {
        bail!("--smi-timeout must be a number of microseconds, 0 or more");
    }
    let rom = match (&a.bios, scenario) {
        (Some(p), _) => machine::load_rom(p)?,
        (None, Some(sc)) => (sc.rom)(),
        // The flash replaces the ROM (Machine::attach_pflash).
        (None, None) => Vec::new(),
    };
    let builtin = !external;
    if builtin {
        firmware_image::check_memory(memory).map_err(anyhow::Error::msg)?;
    }
    for (flag, path) in [("--summary-json", &a.summary_json), ("--vcd", &a.vcd), ("--trace-json", &a.trace_json), ("--nvram", &a.nvram)] {
        if let Some(p) = path {
            super::check_output(flag, p)?;
        }
    }
    let smi_load = a.smi_load.as_deref().map(super::smi_load::read).transpose()?;
    let machine = a.machine.unwrap_or(if a.bios.is_none() { MachineKind::Q35 } else { MachineKind::Minimal });
    let cpu = a.cpu.unwrap_or(match machine {
        _ if builtin => CpuKind::Intel64,
        MachineKind::Minimal => CpuKind::Intel64,
        MachineKind::Pc | MachineKind::Q35 => CpuKind::Amd64,
    });
    let model = match cpu {
        CpuKind::Intel64 => CpuModel { vendor: Vendor::Intel, long_mode: true, tsc_hz: a.ips },
        CpuKind::Amd64 => CpuModel { vendor: Vendor::Amd, long_mode: true, tsc_hz: a.ips },
        CpuKind::I686 => CpuModel { vendor: Vendor::Intel, long_mode: false, tsc_hz: a.ips },
    };
    // Below a million instructions per second the platform's timers (the 1.19 MHz 8254, the
    // 3.58 MHz PM timer) tick more often than instructions retire: runs crawl, one instruction
    // per slice, and timer behaviour stops meaning anything.
    if !(MIN_IPS..=MAX_IPS).contains(&a.ips) {
        bail!("--ips must be between {MIN_IPS} and {MAX_IPS} instructions per second (got {})", a.ips);
    }
    let config = MachineConfig {
        memory_mib: memory,
        model,
        instructions_per_second: a.ips,
        poll_forward: !a.exact_time,
        smm_entry_ns: a.smm_entry_ns,
        rsm_ns: a.rsm_ns,
        max_guest_ns: a.max_guest_time.saturating_mul(1_000_000),
        smm_watchdog_ns: a.smm_watchdog.saturating_mul(1_000_000),
    };
    let kind = match machine {
        MachineKind::Minimal => BoardKind::Minimal,
        MachineKind::Pc => BoardKind::Pc,
        MachineKind::Q35 => BoardKind::Q35,
    };
    let disk = a.disk.as_deref().map(machine::devices::disk::Disk::open).transpose()?;
    let option_roms = a.option_rom.iter().map(|p| machine::devices::option_rom::OptionRom::open(p)).collect::<Result<Vec<_>, _>>()?;
    let fw_cfg_files = a.fw_cfg.iter().map(|arg| machine::devices::fw_cfg_file::FwCfgFile::from_arg(arg)).collect::<Result<Vec<_>, _>>()?;
    machine::devices::fw_cfg_file::check_unique(&fw_cfg_files)?;
    let mut m = Machine::new(kind, config, rom)?;
    if let Some(l) = &smi_load {
        let t = |ns: u64| u64::try_from(u128::from(ns) * u128::from(a.ips) / 1_000_000_000).unwrap_or(u64::MAX);
        let Some(load) = m.board.smi_load() else { bail!("--smi-load: the minimal board has no SMI# input; use --machine pc or q35") };
        *load = machine::smi::smi_load::SmiLoad::new(l.smis.iter().map(|&(s, n)| (t(s), t(n))).collect(), t(l.period_ns));
        if !a.quiet {
            println!("smmlab: {}", l.text);
        }
    }
    m.set_stop_flag(interrupt.flag());
    if builtin {
        // The built-in firmware's board has the lab hardware (docs/builtin-platform.md).
        m.enable_lab_hardware();
    }
    if !flash.is_empty() {
        m.attach_pflash(flash, a.pflash_secure == Switch::On)?;
    }
    if let Some(d) = disk {
        m.attach_disk(d)?;
    }
    for r in option_roms {
        m.add_option_rom(r)?;
    }
    // After the option ROMs, so that a --fw-cfg file can replace one of them too.
    for f in fw_cfg_files {
        m.add_fw_cfg_file(f)?;
    }
    if let Some(sc) = scenario {
        super::scenarios::prepare(&mut m, sc, a.type_text.as_deref())?;
        for e in &a.inject_ecc {
            inject_ecc(&mut m, e)?;
        }
        if let Some(h) = a.heat {
            anyhow::ensure!(m.board.set_heat(h), "--heat needs the built-in platform (q35)");
        }
        if a.fan_fail {
            anyhow::ensure!(m.board.set_fan_failed(true), "--fan-fail needs the built-in platform (q35)");
        }
    }
    if let Some(p) = &a.nvram {
        load_nvram(&mut m, p)?;
    }
    // Events are queued for the timeline and drained after every chunk of the run, when
    // something shows or writes the timeline; otherwise the board keeps only its counters.
    let wants_timeline = !a.quiet || a.vcd.is_some() || a.trace_json.is_some() || a.summary_json.is_some();
    let has_events = m.board.events().is_some_and(|ev| {
        ev.recording = wants_timeline;
        true
    });
    match a.debugcon.as_deref() {
        None => {}
        Some("-") => m.board.debugcon().sink = Some(Box::new(std::io::stdout())),
        Some(path) => {
            let f = std::fs::File::create(path).with_context(|| format!("cannot create debugcon file {path}"))?;
            m.board.debugcon().sink = Some(Box::new(std::io::BufWriter::new(f)));
        }
    }
    if a.serial.is_some() || a.stop_on_serial.is_some() {
        let sink: Option<Box<dyn std::io::Write>> = match a.serial.as_deref() {
            None => None,
            Some("-") => Some(Box::new(std::io::stdout())),
            Some(path) => Some(Box::new(std::io::BufWriter::new(std::fs::File::create(path).with_context(|| format!("cannot create serial file {path}"))?))),
        };
        let flag = if a.serial.is_some() { "--serial" } else { "--stop-on-serial" };
        match m.board.legacy() {
            Some(l) => {
                let mut u = machine::devices::uart16550::Uart16550::default();
                u.sink = sink;
                u.stop_text = a.stop_on_serial.clone().unwrap_or_default().into_bytes();
                l.com1 = Some(u);
            }
            None => bail!("{flag} needs --machine pc or q35"),
        }
    }
    // The built-in firmware's debugcon goes to stdout line by line, between the SMI lines.
    let live_debugcon = a.bios.is_none() && a.debugcon.is_none() && !a.quiet && has_events;
    if let (Some(sc), false) = (scenario, a.quiet) {
        // What the lines below are, for someone who has never seen an SMI.
        println!("smmlab: the built-in firmware on q35, scenario {}: {}", sc.name, sc.summary);
        println!("smmlab: fw: firmware  os: the OS  [time] SMI n: one SMI (source, SMBASE, time in SMM, instructions), then what its handler did (smm:)  -- platform event  !! SMRAM alert");
    }
    if let Some(listen) = &gdb {
        let code = super::gdb::serve(&mut m, listen, a.max_instructions, a.ips)?;
        // What the guest stored survives the session, as it survives any other run.
        if let (Some(bank), false) = (m.board.pflash(), a.pflash_snapshot) {
            for p in super::pflash::write_back(bank)? {
                eprintln!("smmlab: flash written back to {}", p.display());
            }
        }
        if let Some(p) = &a.nvram {
            save_nvram(&m, p)?;
        }
        m.board.debugcon().flush();
        if let Some(u) = m.board.legacy().and_then(|l| l.com1.as_mut()) {
            u.flush();
        }
        return Ok(code);
    }
    let watch = observe::Watch { timeline: !a.quiet, debugcon: live_debugcon, keep_debugcon: a.trace_json.is_some() };
    let t0 = std::time::Instant::now();
    let observed = observe::run(&mut m, a.max_instructions, a.ips, &watch, on_rsm);
    let s = &observed.summary;
    let wall = t0.elapsed().as_secs_f64();
    // The variable store first: whatever fails below, the guest's writes are kept.
    if let (Some(bank), false) = (m.board.pflash(), a.pflash_snapshot) {
        for p in super::pflash::write_back(bank)? {
            if !a.quiet {
                eprintln!("smmlab: flash written back to {}", p.display());
            }
        }
    }
    let flash_counts = m.board.pflash().map(|b| (b.writes_smm(), b.writes_refused()));
    if let Some(f) = after {
        f(&mut m)?;
    }
    m.board.debugcon().flush();
    if let Some(u) = m.board.legacy().and_then(|l| l.com1.as_mut()) {
        u.flush();
    }
    if live_debugcon {
        // A last line without its newline never became an event.
        let out = &m.board.debugcon().output;
        let tail = out.iter().rposition(|b| *b == b'\n').map_or(&out[..], |i| &out[i + 1..]);
        if !tail.is_empty() {
            println!("{}", String::from_utf8_lossy(tail));
        }
    } else if a.bios.is_none() && a.debugcon.is_none() && !a.quiet {
        print!("{}", String::from_utf8_lossy(&m.board.debugcon().output));
    }
    let latency = trace::LatencySummary::new(&observed.timeline, observed.end, a.smi_timeout);
    let signal = interrupt.signal().filter(|_| s.exit == machine::ExitReason::Interrupted);
    let detail = match signal {
        Some(sig) => Some(format!("by {}", super::interrupt::name(sig))),
        None => exit_detail(&s.exit, &observed.timeline),
    };
    let exit_code = signal.map_or(s.exit_code, super::interrupt::exit_code);
    if !a.quiet {
        print_summary(s, detail.as_deref(), exit_code, wall);
        if let Some((smm, refused)) = flash_counts {
            println!("flash writes:     {smm} from SMM, {refused} refused from outside SMM");
        }
        print!("{}", latency.render());
    }
    if let Some(p) = &a.nvram {
        save_nvram(&m, p)?;
    }
    if let Some(p) = &a.vcd {
        let f = std::fs::File::create(p).with_context(|| format!("cannot create VCD file {}", p.display()))?;
        trace::vcd::write_vcd(&observed.timeline, observed.end, f).with_context(|| format!("cannot write VCD file {}", p.display()))?;
    }
    if let Some(p) = &a.trace_json {
        let j = trace::chrome::trace_json(&observed.timeline, &observed.debugcon);
        std::fs::write(p, serde_json::to_string(&j)? + "\n").with_context(|| format!("cannot write trace file {}", p.display()))?;
    }
    if let Some(p) = &a.summary_json {
        let j = SummaryJson {
            instructions: s.instructions,
            smis: s.smis,
            smis_by_source: &s.smis_by_source,
            smm_instructions: s.smm_instructions,
            smm_guest_ns: s.smm_guest_ns,
            guest_ns: s.guest_ns,
            poll_skipped_ns: s.poll_skipped_ns,
            exit: s.exit.name(),
            exit_detail: detail.as_deref(),
            exit_code,
            unimplemented: &s.unimplemented,
            missing_features: &s.missing_features,
            smbase_after: s.smbase_after,
            smram_after: s.smram_after.map(|c| SmramJson { g_smrame: c.g_smrame, d_open: c.d_open, d_cls: c.d_cls, d_lck: c.d_lck, t_en: c.t_en }),
            wall_seconds: wall,
            mips: s.instructions as f64 / wall.max(1e-9) / 1e6,
            smi_latency: &latency,
            pflash_writes_smm: flash_counts.map(|c| c.0),
            pflash_writes_refused: flash_counts.map(|c| c.1),
        };
        let text = serde_json::to_string_pretty(&j)?;
        std::fs::write(p, text + "\n").with_context(|| format!("cannot write summary file {}", p.display()))?;
    }
    if let Some(sig) = signal {
        eprintln!("smmlab: run interrupted by {} after {} instructions; its output files are complete", super::interrupt::name(sig), s.instructions);
    }
    Ok(exit_code)
}

/// `--inject-ecc MS:ADDR[:uc]`.
fn inject_ecc(m: &mut Machine, spec: &str) -> anyhow::Result<()> {
    let bad = || anyhow::anyhow!("--inject-ecc {spec:?}: expected MS:ADDR or MS:ADDR:uc (milliseconds of guest time, a physical address)");
    let mut parts = spec.split(':');
    let ms: f64 = parts.next().and_then(|x| x.trim().parse().ok()).filter(|v: &f64| v.is_finite() && *v >= 0.0).ok_or_else(bad)?;
    let addr = parts.next().map(str::trim).ok_or_else(bad)?;
    let addr = match addr.strip_prefix("0x").or_else(|| addr.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => addr.parse().ok(),
    }
    .ok_or_else(bad)?;
    let uncorrectable = match parts.next() {
        None => false,
        Some("uc") => true,
        Some(_) => return Err(bad()),
    };
    if parts.next().is_some() {
        return Err(bad());
    }
    // ECC protects DRAM: an address past the end of RAM has no memory to fail.
    let ram = m.config.memory_mib << 20;
    anyhow::ensure!(addr < ram, "--inject-ecc {spec:?}: address {addr:#x} is past the end of RAM ({} MiB: 0x0-{:#x})", m.config.memory_mib, ram - 1);
    let at = m.ticks_at_ns((ms * 1e6) as u64);
    anyhow::ensure!(m.board.inject_memory_error(at, addr, uncorrectable), "--inject-ecc needs the q35 machine");
    Ok(())
}

/// The settings sector's bytes in the machine's flash.
fn nvram_range() -> std::ops::Range<usize> {
    firmware_image::SETTINGS_SECTOR_OFFSET..firmware_image::SETTINGS_SECTOR_OFFSET + firmware_image::SETTINGS_SECTOR_SIZE
}

fn load_nvram(m: &mut Machine, p: &std::path::Path) -> anyhow::Result<()> {
    let data = match machine::input::read_at_most(p, firmware_image::SETTINGS_SECTOR_SIZE as u64) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) if machine::input::too_large(&e).is_some_and(|t| t.size.is_some()) => {
            let size = machine::input::too_large(&e).and_then(|t| t.size).unwrap_or_default();
            bail!("settings file {} is {size} bytes; the settings sector is {} bytes", p.display(), firmware_image::SETTINGS_SECTOR_SIZE);
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read settings file {}", p.display())),
    };
    if data.len() != firmware_image::SETTINGS_SECTOR_SIZE {
        bail!("settings file {} is {} bytes; the settings sector is {} bytes", p.display(), data.len(), firmware_image::SETTINGS_SECTOR_SIZE);
    }
    if !m.board.write_flash(nvram_range().start as u64, &data).context("--nvram needs a board with flash")? {
        bail!("the flash is too small for the settings sector at {:#x}", nvram_range().start);
    }
    Ok(())
}

fn save_nvram(m: &Machine, p: &std::path::Path) -> anyhow::Result<()> {
    let flash = m.board.flash().context("--nvram needs a board with flash")?;
    let sector = flash.get(nvram_range()).context("the flash is too small for the settings sector")?;
    std::fs::write(p, sector).with_context(|| format!("cannot write settings file {}", p.display()))
}

/// Why the run ended, in words: the exit reason's detail and, when the SMI handler switched the
/// machine off, what that handler said it was doing.
fn exit_detail(exit: &machine::ExitReason, timeline: &trace::Timeline) -> Option<String> {
    let detail = exit.detail()?;
    if *exit == (machine::ExitReason::PowerOff { from_smm: true }) {
        if let Some(said) = timeline.records().last().and_then(|r| r.log.last()) {
            return Some(format!("{detail}: {said}"));
        }
    }
    Some(detail)
}

fn print_summary(s: &RunSummary, detail: Option<&str>, exit_code: i32, wall: f64) {
    println!("--- smmlab run summary ---");
    println!("exit:             {}{}", s.exit.name(), detail.map_or(String::new(), |d| format!(" ({d})")));
    println!("exit code:        {exit_code}");
    println!("instructions:     {}", s.instructions);
    println!("guest time:       {:.3} ms", s.guest_ns as f64 / 1e6);
    if s.poll_skipped_ns > 0 {
        println!("  skipped polling: {:.3} ms (the PM timer poll fast-forward; --exact-time turns it off)", s.poll_skipped_ns as f64 / 1e6);
    }
    println!("SMIs:             {}", s.smis);
    for (source, n) in &s.smis_by_source {
        println!("  {source:<16} {n}");
    }
    println!("SMM instructions: {}", s.smm_instructions);
    println!("SMBASE after:     {:#x}", s.smbase_after);
    println!("guest time in SMM: {:.3} ms", s.smm_guest_ns as f64 / 1e6);
    println!("wall time:        {:.3} s ({:.0} MIPS)", wall, s.instructions as f64 / wall.max(1e-9) / 1e6);
    if s.unimplemented.is_empty() {
        println!("unimplemented:    none");
    } else {
        println!("unimplemented instructions executed (each raised #UD):");
        for (k, v) in &s.unimplemented {
            println!("  {k:<20} {v}");
        }
    }
    if s.missing_features.is_empty() {
        println!("missing features: none");
    } else {
        println!("features the guest used that smmlab does not model (times used):");
        for (k, v) in &s.missing_features {
            println!("  {k}: {v}");
        }
    }
}
