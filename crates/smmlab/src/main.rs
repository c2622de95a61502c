//! The smmlab command line.

mod cli;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    match cli::dispatch(args) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("smmlab: error: {e:#}");
            std::process::exit(2);
        }
    }
}
