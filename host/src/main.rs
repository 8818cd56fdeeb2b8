use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    host::main(host::cli::Cli::parse())
}
