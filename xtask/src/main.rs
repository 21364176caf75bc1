//! `cargo xtask setup|run|test|bench`: everything a fresh machine (Debian, root)
//! needs, installed idempotently, then the build, the live stream or every test.
mod bench;
mod fuzz;
mod setup;
mod test;

use std::process::Command;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what the build and the tests need (idempotent).
    Setup,
    /// Set up, build, and start the live stream; arguments go to mnttrace.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, build, and run every test, the privileged ones included.
    Test,
    /// Set up, then fuzz the record parsers (all targets, or TARGET).
    Fuzz {
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(fuzz::TARGETS))]
        target: Option<String>,
        /// Seconds per target [default: $MNTTRACE_FUZZ_SECONDS, else 60].
        #[arg(long)]
        seconds: Option<u64>,
    },
    /// Set up, build (release), and run the benchmarks (all parts, or PART);
    /// writes docs/benchmarks.md and .json.
    Bench {
        #[arg(value_parser = ["storm", "latency", "startup"])]
        part: Option<String>,
        /// Fewer rounds, a smaller storm, fewer mounts: a development run,
        /// written to target/bench/ instead of docs/ (also MNTBENCH_QUICK=1).
        #[arg(long, env = "MNTBENCH_QUICK")]
        quick: bool,
    },
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Setup => setup::all(),
        Cmd::Run { args } => {
            setup::all()?;
            let bin = build_mnttrace(true)?;
            let status = Command::new(&bin)
                .args(&args)
                .status()
                .with_context(|| format!("starting {bin}"))?;
            std::process::exit(status.code().unwrap_or(1));
        }
        Cmd::Test => {
            setup::all()?;
            test::all()
        }
        Cmd::Fuzz { target, seconds } => {
            setup::all()?;
            fuzz::run_targets(target.as_deref(), seconds)
        }
        Cmd::Bench { part, quick } => {
            setup::all()?;
            bench::run_bench(part.as_deref(), quick)
        }
    }
}

pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(workspace_root());
    c
}

pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// Builds the agent (and through its build script the kernel program);
/// returns the binary's path.
pub fn build_mnttrace(release: bool) -> Result<String> {
    let mut c = cargo();
    c.args(["build", "--package", "tracer"]);
    if release {
        c.arg("--release");
    }
    run(&mut c)?;
    let profile = if release { "release" } else { "debug" };
    Ok(workspace_root()
        .join("target")
        .join(profile)
        .join("mnttrace")
        .display()
        .to_string())
}
