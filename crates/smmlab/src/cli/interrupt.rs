//! SIGINT and SIGTERM during `smmlab run`: the first one sets the machine's stop flag, so the
//! run ends at the next slice boundary with exit reason `interrupted` and everything is still
//! written (debugcon and serial files flushed, the summary, the summary JSON, VCD and trace
//! files, the --nvram file); the process then exits with 128 + the signal number (130, 143),
//! as a shell reports a process the signal killed. A second signal ends the process at once
//! with that status.

use anyhow::Context;
use signal_hook::consts::{SIGINT, SIGTERM};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// The signals that stop a run.
const SIGNALS: [i32; 2] = [SIGINT, SIGTERM];

/// Installed handlers: the stop flag and which signal set it.
pub struct Interrupt {
    flag: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
}

impl Interrupt {
    /// Installs the handlers for the rest of the process.
    pub fn install() -> anyhow::Result<Self> {
        let flag = Arc::new(AtomicBool::new(false));
        let signal = Arc::new(AtomicUsize::new(0));
        for sig in SIGNALS {
            // The second signal: the flag is already set, so this one exits. It must be
            // registered before the handler that sets the flag.
            signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&flag)).context("cannot install a signal handler")?;
            signal_hook::flag::register_usize(sig, Arc::clone(&signal), sig as usize).context("cannot install a signal handler")?;
            signal_hook::flag::register(sig, Arc::clone(&flag)).context("cannot install a signal handler")?;
        }
        Ok(Interrupt { flag, signal })
    }

    /// The flag the machine checks between slices.
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.flag)
    }

    /// The signal that stopped the run, if one did.
    pub fn signal(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s as i32),
        }
    }
}

/// The signal's name.
pub fn name(sig: i32) -> String {
    match sig {
        SIGINT => "SIGINT".into(),
        SIGTERM => "SIGTERM".into(),
        s => format!("signal {s}"),
    }
}

/// The process status for a run the signal stopped.
pub fn exit_code(sig: i32) -> i32 {
    128 + sig
}
