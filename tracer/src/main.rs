//! mnttrace: live tracing of mount-related syscalls. main only wires modules.

use std::io::IsTerminal as _;

use anyhow::Context as _;

use clap::Parser as _;

use tracer::{
    agent, capture,
    cli::{Cli, ColorChoice},
    output::{
        Format, Output,
        human::Human,
        sink::{Rotate, Sink},
    },
    views,
};

fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // One line: clap's first, without its usage block.
            let text = e.render().to_string();
            let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
            let first = lines.next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            // "…were not provided:" names what on its next line.
            let what = match first.ends_with(':') {
                true => format!("{first} {}", lines.next().unwrap_or_default()),
                false => first.to_string(),
            };
            eprintln!("mnttrace: {what} (see mnttrace --help)");
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
        // The views read tables and /proc, and load nothing (privileges.rs).
        capture::privileges::check(capture::privileges::Need::read(&cli))?;
        views::run(view, cli.mount_tables, &cli.runtime_root, cli.show_secrets)?;
        return Ok(std::process::ExitCode::SUCCESS);
    }
    // Before the runtime starts threads: tracefs may need a private mount
    // namespace, and unshare(2) only moves the calling thread.
    capture::privileges::check(capture::privileges::Need::trace(&cli))?;
    // A pid that names no process is a typo, not a wish: pids are not
    // predictable, so one that does not exist now is refused.
    for pid in &cli.pid {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            anyhow::bail!("--pid {pid}: no such process");
        }
    }
    // Opened first, in the user's mount namespace, so a bad path is refused
    // before anything is loaded.
    let sink = match &cli.output {
        Some(path) => {
            let rotate = cli.rotate_size.map(|size| Rotate {
                size,
                keep: cli.rotate_keep,
            });
            Sink::file(path, rotate).with_context(|| format!("--output {}", path.display()))?
        }
        None => Sink::stdout().context("standard output")?,
    };
    let tracefs = capture::tracefs::ensure()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // NO_COLOR (no-color.org) wins over everything.
    let color = std::env::var_os("NO_COLOR").is_none()
        && match cli.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => cli.output.is_none() && std::io::stdout().is_terminal(),
        };
    let format = if cli.json {
        Format::Json {
            node: cli.node_name.clone(),
        }
    } else {
        Format::Human(Human { color })
    };
    let out = Output::new(sink, format);
    let summary = runtime.block_on(agent::run(&cli, &tracefs, out))?;
    eprintln!(
        "mnttrace: detached ({}); {} calls reported, {} events lost",
        summary.stop, summary.reported, summary.lost
    );
    Ok(std::process::ExitCode::SUCCESS)
}
