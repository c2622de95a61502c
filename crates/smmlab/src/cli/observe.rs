//! Watching a run as it goes, for `smmlab run`: the machine runs in chunks; after each chunk
//! the machine events are drained into a [`Timeline`], finished SMIs (and, for the built-in
//! firmware, the debugcon lines written outside SMM) are printed, and a progress bar is drawn
//! when stdout is a terminal and the run is long. Guest state is never touched here.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use machine::{ExitReason, Machine, RunSummary};
use std::io::IsTerminal;
use std::time::{Duration, Instant};
use trace::timeline::Line;
use trace::Timeline;

/// Instructions per chunk: the timeline is printed at least this often.
const CHUNK: u64 = 1 << 26;
/// A run shows a progress bar once it has taken this long (wall time).
const PROGRESS_AFTER: Duration = Duration::from_secs(1);

/// What to show while the run goes.
pub struct Watch {
    /// Print one line per SMI.
    pub timeline: bool,
    /// Print the debugcon lines written outside SMM (SMM lines go on their SMI's line).
    pub debugcon: bool,
    /// Keep the debugcon lines for the trace file.
    pub keep_debugcon: bool,
}

/// A finished run and what was seen.
pub struct Observed {
    pub summary: RunSummary,
    pub timeline: Timeline,
    /// Debugcon lines written outside SMM, with their guest time in ticks (if kept).
    pub debugcon: Vec<(u64, String)>,
    /// Guest time at the end of the run, in ticks.
    pub end: u64,
}

/// Called each time RSM returns from SMM (the run pauses there for it) and at each of the
/// host's breakpoints ([`Machine::set_breakpoints`]).
pub type OnRsm<'a> = Box<dyn FnMut(&mut Machine) + 'a>;

/// Runs `m` for up to `max_instructions`, watching as `w` says; `on_rsm` is called after every
/// RSM.
pub fn run(m: &mut Machine, max_instructions: u64, ips: u64, w: &Watch, mut on_rsm: Option<OnRsm>) -> Observed {
    let mut timeline = Timeline::new(ips);
    let mut debugcon = Vec::new();
    let start = m.icount();
    let t0 = Instant::now();
    let tty = w.timeline && std::io::stdout().is_terminal();
    let mut bar: Option<ProgressBar> = None;
    let mut show = |timeline: &mut Timeline, line: Option<Line>, bar: &Option<ProgressBar>| match line {
        Some(Line::Smi(i)) if w.timeline => {
            let text = timeline.format(&timeline.records()[i]);
            print_line(bar, &text);
        }
        Some(Line::Note(i)) if w.timeline => {
            let t = &*timeline;
            print_line(bar, &t.format_note(&t.notes()[i]));
        }
        Some(Line::Debugcon(text)) => {
            if w.debugcon {
                print_line(bar, &text);
            }
            if w.keep_debugcon {
                debugcon.push((timeline.last_time(), text));
            }
        }
        _ => {}
    };
    m.board.set_pause_on_rsm(on_rsm.is_some());
    let summary = loop {
        let done = m.icount().saturating_sub(start);
        let mut s = m.run(max_instructions.saturating_sub(done).min(CHUNK));
        for e in m.drain_events() {
            let line = timeline.feed(&e);
            show(&mut timeline, line, &bar);
        }
        let done = m.icount().saturating_sub(start);
        let paused_at_rsm = matches!(s.exit, ExitReason::Paused | ExitReason::Breakpoint) && on_rsm.is_some();
        if paused_at_rsm {
            if let Some(f) = on_rsm.as_mut() {
                f(m);
            }
            if done >= max_instructions {
                s.exit = ExitReason::InstructionLimit;
                s.exit_code = 4;
            }
        }
        if (s.exit != ExitReason::InstructionLimit && !paused_at_rsm) || done >= max_instructions {
            break s;
        }
        if tty && bar.is_none() && t0.elapsed() >= PROGRESS_AFTER {
            bar = Some(progress_bar(max_instructions));
        }
        if let Some(b) = &bar {
            b.set_position(done);
            b.set_message(format!("{} SMIs, guest {:.3} ms", timeline.records().len(), s.guest_ns as f64 / 1e6));
        }
    };
    if let Some(b) = bar.take() {
        b.finish_and_clear();
    }
    let end = m.board.now(m.icount()).0;
    let line = timeline.finish(end);
    show(&mut timeline, line, &None);
    let line = timeline.unlocked_verdict();
    show(&mut timeline, line, &None);
    Observed { summary, timeline, debugcon, end }
}

fn print_line(bar: &Option<ProgressBar>, text: &str) {
    match bar {
        Some(b) => b.suspend(|| println!("{text}")),
        None => println!("{text}"),
    }
}

fn progress_bar(max: u64) -> ProgressBar {
    let b = ProgressBar::with_draw_target(Some(max), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{spinner} {pos}/{len} instructions [{elapsed}] {msg}") {
        b.set_style(style);
    }
    b
}
