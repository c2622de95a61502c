//! `smmlab disasm`: the code that ran in SMM, disassembled and annotated.
//!
//! The firmware runs with the CPU's SMM block record on (`cpu::smm_blocks`): every decoded
//! block started in SMM is counted by its start physical address, its code size and the SMM
//! entry it ran in. The SMM entries are matched in order with the board's `SmmEntered` events,
//! which name the SMI taken (`apm 0x01`, `periodic`, ...). The built-in firmware runs to the end
//! of its run (the demo OS calls the SW SMI services after the hand-off); other firmware runs
//! to its hand-off point (the audit's markers, `audit::boot`), or to the end with `--until end`.
//!
//! The output lists, per CPU, the SMI entry (final SMBASE + 0x8000), the relocation entry at
//! the default SMBASE (0x30000 + 0x8000 = 0x38000) when it ran, and every
//! other region the SMIs reached, each block with the SMIs that ran it. The output depends on
//! nothing but the guest run, so two runs print the same text.

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use cpu::cpuid::Vendor;
use cpu::smm_blocks::{BlockRun, SmmBlockRecord};
use cpu::CpuModel;
use iced_x86::{Formatter, IntelFormatter};
use machine::events::MachineEvent;
use machine::smi::SmiCause;
use machine::{BoardKind, ExitReason, Machine, MachineConfig};
use std::fmt::Write as _;
use std::path::PathBuf;

use super::audit::{AuditCpu, AuditMachine};

/// Where the run stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Until {
    /// The hand-off point (`fw: handing off to the OS`, SeaBIOS' `Booting from` / `No bootable
    /// device`), or the end of the run if none is seen.
    Handoff,
    /// The end of the run (exit, halt, shutdown, reset or the instruction limit).
    End,
}

#[derive(Args)]
pub struct DisasmArgs {
    /// What to boot (as for `audit`).
    #[command(flatten)]
    pub target: super::audit::Target,
    /// Where to stop [default: end for the built-in firmware, handoff with --bios].
    #[arg(long, value_enum)]
    pub until: Option<Until>,
    /// Write the listing to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Instructions per chunk between event drains.
const CHUNK: u64 = 1 << 24;
/// Blocks closer than this many bytes are one region.
const REGION_GAP: u64 = 0x100;
/// The default SMBASE's entry point (the relocation SMI's handler).
const RELOCATION_ENTRY: u64 = 0x38000;
/// SMI numbers listed per cause before the list is cut short.
const LIST_MAX: usize = 8;
/// Bytes read at an SMI entry that never ran.
const ENTRY_BYTES: usize = 0x100;
/// Instructions shown of an SMI entry that never ran.
const ENTRY_INSNS: usize = 32;

/// `smmlab disasm`.
pub fn run(a: DisasmArgs) -> anyhow::Result<i32> {
    let flash = a.target.flash()?;
    let builtin = a.target.bios.is_none() && flash.is_empty();
    if let Some(p) = &a.output {
        super::check_output("--output", p)?;
    }
    if a.target.scenario.is_some() && !builtin {
        bail!("--scenario selects a built-in firmware scenario; it cannot be combined with --bios");
    }
    let scenario = if builtin { Some(super::scenarios::find(a.target.scenario.as_deref().unwrap_or("default"))?) } else { None };
    let rom = match (&a.target.bios, scenario) {
        (Some(p), _) => machine::load_rom(p)?,
        (None, Some(sc)) => (sc.rom)(),
        (None, None) if !flash.is_empty() => Vec::new(),
        (None, None) => firmware_image::ROM.to_vec(),
    };
    if builtin {
        firmware_image::check_memory(a.target.memory()).map_err(anyhow::Error::msg)?;
    }
    let cpu = a.target.cpu.unwrap_or(if builtin { AuditCpu::Intel64 } else { AuditCpu::Amd64 });
    let vendor = match cpu {
        AuditCpu::Intel64 => Vendor::Intel,
        AuditCpu::Amd64 => Vendor::Amd,
    };
    let (board, machine_name) = match a.target.machine {
        AuditMachine::Pc => (BoardKind::Pc, "pc"),
        AuditMachine::Q35 => (BoardKind::Q35, "q35"),
    };
    let config = MachineConfig { memory_mib: a.target.memory(), model: CpuModel { vendor, long_mode: true, tsc_hz: 1_000_000_000 }, instructions_per_second: 1_000_000_000, ..Default::default() };
    let mut m = Machine::new(board, config, rom)?;
    if builtin {
        m.enable_lab_hardware();
    }
    let firmware = a.target.firmware_name(&flash);
    if !flash.is_empty() {
        m.attach_pflash(flash, a.target.pflash_secure == super::run::Switch::On)?;
        // UEFI's hand-off: the Shell's prompt on the serial port.
        audit::boot::watch_serial_handoff(&mut m);
    }
    if let Some(sc) = scenario {
        super::scenarios::prepare(&mut m, sc, None)?;
    }
    let until = a.until.unwrap_or(if builtin { Until::End } else { Until::Handoff });
    let rec = record(&mut m, until, a.target.max_instructions);
    let mut head = format!("; smmlab disasm: machine {machine_name}, firmware {firmware}");
    if builtin {
        let _ = write!(head, ", scenario {}", a.target.scenario.as_deref().unwrap_or("default"));
    }
    let _ = write!(head, "\n; run: {}\n", rec.stop);
    let text = head + &render(&rec.cpus);
    match &a.output {
        Some(p) => std::fs::write(p, text).with_context(|| format!("cannot write {}", p.display()))?,
        None => print!("{text}"),
    }
    Ok(0)
}

/// What one CPU ran in SMM.
pub struct CpuRecord {
    /// SMBASE at the end of the run.
    pub smbase: u32,
    pub blocks: SmmBlockRecord,
    /// What SMI each SMM entry took, in entry order (from the board's events).
    pub causes: Vec<Option<SmiCause>>,
    /// SMRAM at the SMI entry at the end of the run (for an entry that never ran).
    pub entry_bytes: Vec<u8>,
    /// The images in SMRAM at the end of the run (UEFI: the SMM core and its drivers).
    pub modules: uefi_smm::images::ModuleMap,
    /// The registered SMI handlers: address and what it handles.
    pub handlers: Vec<(u64, String)>,
}

struct Recorded {
    cpus: Vec<CpuRecord>,
    /// How the run stopped.
    stop: String,
}

/// Runs `m` with the SMM block record on.
fn record(m: &mut Machine, until: Until, max: u64) -> Recorded {
    m.record_smm_blocks();
    let has_events = m.board.events().is_some_and(|ev| {
        ev.recording = true;
        true
    });
    let handoff = until == Until::Handoff;
    m.board.set_pause_on_debugcon_line(handoff);
    let mut causes = Vec::new();
    let mut scanned = 0usize;
    let start = m.icount();
    let stop = loop {
        let done = m.icount().saturating_sub(start);
        let s = m.run(max.saturating_sub(done).min(CHUNK));
        for e in m.drain_events() {
            if let MachineEvent::SmmEntered { cause, .. } = e {
                causes.push(cause);
            }
        }
        if handoff {
            if let Some(line) = audit::boot::find_marker(&m.board.debugcon().output, &mut scanned) {
                break format!("stopped at the hand-off: {line}");
            }
            if s.exit == ExitReason::SerialText {
                break format!("stopped at the hand-off: serial {:?}", audit::boot::SERIAL_MARKER);
            }
        }
        let done = m.icount().saturating_sub(start);
        let go_on = matches!(s.exit, ExitReason::Paused | ExitReason::InstructionLimit) && done < max;
        if !go_on {
            break format!("end of run ({}) after {} instructions", s.exit.name(), done);
        }
    };
    m.board.set_pause_on_debugcon_line(false);
    if has_events {
        if let Some(ev) = m.board.events() {
            ev.recording = false;
        }
    }
    let blocks = m.take_smm_blocks();
    let smbase = m.smm_registers().smbase;
    let entry_bytes = m.read_phys(smbase as u64 + 0x8000, ENTRY_BYTES, true);
    let (modules, handlers) = names(m);
    Recorded { cpus: vec![CpuRecord { smbase, blocks, causes, entry_bytes, modules, handlers }], stop }
}

/// The images in SMRAM and the SMI handlers registered with edk2's SMM core (crates/uefi),
/// named from the firmware's own volumes (flash unit 0).
fn names(m: &mut Machine) -> (uefi_smm::images::ModuleMap, Vec<(u64, String)>) {
    let smram = audit::dump::snapshot(m);
    let fw = audit::uefi::firmware_volumes(m);
    let inv = uefi_smm::Inventory::build(&smram, fw.as_ref());
    let handlers = inv
        .handlers
        .iter()
        .map(|h| (h.handler.address, match (&h.guid, h.guid_name) {
            (_, Some(n)) => format!("SMI handler for {n}"),
            (Some(g), None) => format!("SMI handler for {g}"),
            (None, _) => "root SMI handler".to_string(),
        }))
        .collect();
    (uefi_smm::images::ModuleMap::new(inv.modules), handlers)
}

/// The name of SMI `n` (1-based) in the listing: `apm 0x01`, `periodic`, ...
fn cause_name(c: &CpuRecord, n: u32) -> String {
    match c.causes.get((n as usize).wrapping_sub(1)) {
        Some(Some(SmiCause::Apm { cmd, .. })) => format!("apm {cmd:#04x}"),
        Some(Some(SmiCause::IoTrap { port, write })) => format!("io-trap {port:#06x} {}", if *write { "write" } else { "read" }),
        Some(Some(other)) => other.source().to_string(),
        _ => "unknown".to_string(),
    }
}

/// A cause's name, how often its SMIs ran the block, and (SMI number, runs) per SMI.
type CauseGroup = (String, u64, Vec<(u32, u64)>);

/// `SMI#3 (apm 0x01) 2x`-style list, grouped by cause in order of first appearance:
/// `apm 0x01 3x in SMI#4 #5 #6; periodic 2x in SMI#7 (2x)`.
fn annotate(c: &CpuRecord, runs: &[(u32, u64)]) -> String {
    let mut groups: Vec<CauseGroup> = Vec::new();
    for &(smi, n) in runs {
        let name = cause_name(c, smi);
        match groups.iter_mut().find(|g| g.0 == name) {
            Some(g) => {
                g.1 += n;
                g.2.push((smi, n));
            }
            None => groups.push((name, n, vec![(smi, n)])),
        }
    }
    let total: u64 = runs.iter().map(|r| r.1).sum();
    let parts: Vec<String> = groups
        .iter()
        .map(|(name, n, list)| {
            let mut items: Vec<String> = list.iter().take(LIST_MAX).map(|&(s, k)| if k == 1 { format!("#{s}") } else { format!("#{s} ({k}x)") }).collect();
            if list.len() > LIST_MAX {
                items.push(format!("... (+{} more)", list.len() - LIST_MAX));
            }
            format!("{name} {n}x in {} SMI{} {}", list.len(), if list.len() == 1 { "" } else { "s" }, items.join(" "))
        })
        .collect();
    format!("ran {total}x: {}", parts.join("; "))
}

/// One distinct block (first decoding) and its runs by SMI.
struct Distinct<'a> {
    phys: u64,
    bitness: u32,
    run: &'a BlockRun,
    smis: Vec<(u32, u64)>,
}

impl Distinct<'_> {
    fn end(&self) -> u64 {
        self.phys + self.run.block.insns.iter().map(|d| d.len as u64).sum::<u64>()
    }
}

/// " (Module+0xRVA)" for an address in a known image, else nothing.
fn named(c: &CpuRecord, addr: u64) -> String {
    match c.modules.image_of(addr) {
        Some(_) => format!(" ({})", c.modules.name(addr)),
        None => String::new(),
    }
}

/// The listing for every CPU.
pub fn render(cpus: &[CpuRecord]) -> String {
    let mut out = String::new();
    for (k, c) in cpus.iter().enumerate() {
        render_cpu(&mut out, k, c);
    }
    out
}

fn render_cpu(out: &mut String, k: usize, c: &CpuRecord) {
    // Distinct blocks in address order; a block's first decoding is the one shown.
    let mut blocks: Vec<Distinct> = Vec::new();
    for (&(phys, bitness, smi), run) in &c.blocks.runs {
        match blocks.last_mut() {
            Some(b) if b.phys == phys && b.bitness == bitness => b.smis.push((smi, run.count)),
            _ => blocks.push(Distinct { phys, bitness, run, smis: vec![(smi, run.count)] }),
        }
    }
    // Regions: blocks that overlap or lie within REGION_GAP bytes of each other.
    let mut regions: Vec<(u64, u64, Vec<usize>)> = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        match regions.last_mut() {
            Some(r) if b.phys <= r.1.saturating_add(REGION_GAP) => {
                r.1 = r.1.max(b.end());
                r.2.push(i);
            }
            _ => regions.push((b.phys, b.end(), vec![i])),
        }
    }
    let entry = c.smbase as u64 + 0x8000;
    let _ = writeln!(out, "\ncpu {k}: final SMBASE {:#x}, SMI entry {entry:#x}", c.smbase);
    let _ = writeln!(out, "; {} SMM entries, {} distinct blocks in {} regions", c.blocks.smis, blocks.len(), regions.len());
    if c.blocks.dropped > 0 {
        let _ = writeln!(out, "; {} block runs not recorded (record full)", c.blocks.dropped);
    }
    // The SMIs by cause.
    let all: Vec<(u32, u64)> = (1..=c.blocks.smis).map(|n| (n, 1)).collect();
    if !all.is_empty() {
        let a = annotate(c, &all);
        let _ = writeln!(out, "; SMIs: {}", a.split_once(": ").map_or(a.as_str(), |x| x.1));
    }
    let contains = |r: &(u64, u64, Vec<usize>), a: u64| r.0 <= a && a < r.1.max(r.0 + 1);
    let entry_region = regions.iter().position(|r| contains(r, entry));
    let reloc_region = regions.iter().position(|r| contains(r, RELOCATION_ENTRY)).filter(|&i| blocks.iter().any(|b| b.phys == RELOCATION_ENTRY) && Some(i) != entry_region);
    let mut order: Vec<(usize, String)> = Vec::new();
    match entry_region {
        Some(i) => order.push((i, format!("SMI entry (SMBASE {:#x} + 0x8000)", c.smbase))),
        None => {
            let _ = writeln!(out, "\n== SMI entry (SMBASE {:#x} + 0x8000): {entry:#x}, never ran; its code at the end of the run:", c.smbase);
            let _ = writeln!(out, "\n  ; static (16-bit, rip 0x8000): not executed");
            let mut d = iced_x86::Decoder::with_ip(16, &c.entry_bytes, 0x8000, iced_x86::DecoderOptions::NONE);
            let mut fmt = IntelFormatter::new();
            let mut text = String::new();
            for _ in 0..ENTRY_INSNS {
                if !d.can_decode() {
                    break;
                }
                let i = d.decode();
                text.clear();
                fmt.format(&i, &mut text);
                let _ = writeln!(out, "  {:#010x}  {text}", entry + (i.ip() - 0x8000));
                if i.is_invalid() || !matches!(i.flow_control(), iced_x86::FlowControl::Next | iced_x86::FlowControl::ConditionalBranch | iced_x86::FlowControl::Call) || i.mnemonic() == iced_x86::Mnemonic::Rsm {
                    break;
                }
            }
        }
    }
    if let Some(i) = reloc_region {
        order.push((i, "relocation entry (default SMBASE 0x30000 + 0x8000)".to_string()));
    }
    for i in 0..regions.len() {
        if Some(i) != entry_region && Some(i) != reloc_region {
            order.push((i, "handler region".to_string()));
        }
    }
    let mut fmt = IntelFormatter::new();
    let mut text = String::new();
    // With modules known (UEFI), regions are grouped by the module that holds them.
    if !c.modules.images().is_empty() {
        // The SMI entry and the relocation entry (outside every image) stay first.
        order.sort_by_key(|(i, title)| if title == "handler region" { c.modules.image_of(regions[*i].0).map_or(u64::MAX, |m| m.base) } else { 0 });
    }
    let mut module_shown: Option<u64> = None;
    for (i, title) in order {
        let (start, end, members) = &regions[i];
        if let Some(m) = c.modules.image_of(*start) {
            if module_shown != Some(m.base) {
                let _ = writeln!(out, "\n==== module {} ({:#x}, {:#x} bytes, entry {})", m.name, m.base, m.size, c.modules.name(m.entry));
                module_shown = Some(m.base);
            }
        }
        let _ = writeln!(out, "\n== {title}: {start:#x}-{:#x}{}", end.saturating_sub(1), named(c, *start));
        for &bi in members {
            let b = &blocks[bi];
            let block = &b.run.block;
            let handler = c.handlers.iter().find(|h| h.0 == b.phys).map_or(String::new(), |h| format!(" [{}]", h.1));
            let _ = writeln!(out, "\n  ; block {:#x}{} ({}-bit, rip {:#x}){handler}: {}", b.phys, named(c, b.phys), b.bitness, block.rip, annotate(c, &b.smis));
            let mut at = b.phys;
            for d in &block.insns {
                text.clear();
                fmt.format(&d.i, &mut text);
                let _ = writeln!(out, "  {at:#010x}  {text}");
                at += d.len as u64;
            }
        }
    }
}
