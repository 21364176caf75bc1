//! mnttrace: live tracing of mount-related syscalls. main only wires modules.

use std::io::{BufWriter, IsTerminal as _};

use clap::Parser as _;

use tracer::{
    agent, capture,
    cli::{Cli, ColorChoice},
    output::{Format, Output, human::Human},
    views,
};

fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // One line: clap's first, without its usage block.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("mnttrace: {first} (see mnttrace --help)");
            return std::process::ExitCode::from(2);
        }
    };
    let level = match cli.verbose {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        _ => log::LevelFilter::Debug,
    };
    env_logger::Builder::new()
        .filter_level(level)
        .format_timestamp(None)
        .parse_default_env()
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mnttrace: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    if let Some(view) = &cli.view {
        // Reading other namespaces' tables takes CAP_SYS_ADMIN, not BPF.
        capture::privileges::check(capture::privileges::Need::Read)?;
        views::run(view, cli.mount_tables, &cli.runtime_root)?;
        return Ok(std::process::ExitCode::SUCCESS);
    }
    // Before the runtime starts threads: tracefs may need a private mount
    // namespace, and unshare(2) only moves the calling thread.
    capture::privileges::check(capture::privileges::Need::Trace)?;
    let tracefs = capture::tracefs::ensure()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stdout = std::io::stdout();
    // NO_COLOR (no-color.org) wins over everything.
    let color = std::env::var_os("NO_COLOR").is_none()
        && match cli.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => stdout.is_terminal(),
        };
    let format = if cli.json {
        Format::Json {
            node: cli.node_name.clone(),
        }
    } else {
        Format::Human(Human { color })
    };
    let out = Output::new(BufWriter::with_capacity(1 << 16, stdout.lock()), format);
    let summary = runtime.block_on(agent::run(&cli, &tracefs, out))?;
    if !summary.closed_output {
        eprintln!(
            "mnttrace: detached; {} calls reported, {} events lost",
            summary.reported, summary.lost
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}
