//! The smmlab command line.

mod cli;

use clap::Parser;

fn main() {
    // `smmlab run | head` must end quietly when the reader goes away, as other Unix tools do,
    // instead of panicking in println!: restore the default action of SIGPIPE (Rust ignores it).
    // SAFETY: called first, before any other thread exists; SIG_DFL is a valid handler.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args = cli::Cli::parse();
    match cli::dispatch(args) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("smmlab: error: {e:#}");
            std::process::exit(2);
        }
    }
}
