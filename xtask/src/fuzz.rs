//! `cargo xtask fuzz [TARGET] [--seconds N]` and the fuzz step of `cargo xtask
//! test`: the cargo-fuzz targets of `tracer/fuzz` (one per parser of records
//! the kernel hands us), each run by libFuzzer for a fixed time from the
//! committed seeds. Any crash, hang or memory blow-up fails the run and names
//! the input libFuzzer saved.
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, Result, bail};

use crate::{run, workspace_root};

pub const TARGETS: &[&str] = &["fanotify", "statmount", "mountinfo"];
/// Seconds per target in `cargo xtask test`: 3 targets fit in a few minutes
/// of CI's 90 (the build takes about 5 more on a fresh machine).
const DEFAULT_SECONDS: u64 = 60;
const SECONDS_VAR: &str = "MNTTRACE_FUZZ_SECONDS";

/// The fuzz step of the test suite: every target, for `MNTTRACE_FUZZ_SECONDS`
/// (default 60) each; 0 skips fuzzing.
pub fn all() -> Result<()> {
    run_targets(None, None)
}

/// Runs `target` (all when None) for `seconds` each (None: the environment's
/// `MNTTRACE_FUZZ_SECONDS`, else 60).
pub fn run_targets(target: Option<&str>, seconds: Option<u64>) -> Result<()> {
    let seconds = match seconds {
        Some(s) => s,
        None => seconds_from_env(std::env::var(SECONDS_VAR).ok().as_deref())?,
    };
    if seconds == 0 {
        eprintln!("xtask: fuzzing skipped ({SECONDS_VAR}=0)");
        return Ok(());
    }
    let targets: Vec<&str> = match target {
        Some(t) if TARGETS.contains(&t) => vec![t],
        Some(t) => bail!("no fuzz target {t}; there are {}", TARGETS.join(", ")),
        None => TARGETS.to_vec(),
    };
    let dir = workspace_root().join("tracer/fuzz");
    // Built once up front, so each run's time is spent fuzzing. Sanitizer
    // flags stay out of the kernel program: aya-build gives its cargo its own
    // CARGO_ENCODED_RUSTFLAGS.
    let started = Instant::now();
    run(&mut cargo_fuzz(&dir, "build"))?;
    eprintln!(
        "xtask: fuzz targets built in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    for t in targets {
        fuzz_one(&dir, t, seconds)?;
    }
    Ok(())
}

fn seconds_from_env(value: Option<&str>) -> Result<u64> {
    match value {
        None | Some("") => Ok(DEFAULT_SECONDS),
        Some(v) => v
            .trim()
            .parse()
            .with_context(|| format!("{SECONDS_VAR}={v:?} is not a number of seconds")),
    }
}

/// `cargo +nightly fuzz SUB` on the fuzz crate (sanitizers need nightly).
fn cargo_fuzz(dir: &Path, sub: &str) -> Command {
    let mut c = Command::new("rustup");
    c.args(["run", "nightly", "cargo", "fuzz", sub, "--fuzz-dir"])
        .arg(dir)
        .current_dir(workspace_root());
    c
}

fn fuzz_one(dir: &Path, target: &str, seconds: u64) -> Result<()> {
    // New inputs go to corpus/ (ignored by git, kept between local runs);
    // seeds/ is only read.
    let corpus = dir.join("corpus").join(target);
    let seeds = dir.join("seeds").join(target);
    let artifacts = dir.join("artifacts").join(target);
    for d in [&corpus, &artifacts] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let before = files(&artifacts);
    eprintln!("xtask: fuzzing {target} for {seconds} s");
    let status = cargo_fuzz(dir, "run")
        .arg(target)
        .arg(&corpus)
        .arg(&seeds)
        .args([
            "--",
            &format!("-max_total_time={seconds}"),
            // A slow input counts as a hang, a big allocation as a bug.
            "-timeout=10",
            "-rss_limit_mb=2048",
            "-print_final_stats=1",
        ])
        .status()
        .context("starting cargo fuzz (`cargo xtask setup` installs it)")?;
    if !status.success() {
        let new: Vec<String> = files(&artifacts)
            .difference(&before)
            .map(|p| p.display().to_string())
            .collect();
        bail!(
            "fuzz target {target} failed ({status}); input(s) saved: {}\n\
             reproduce with: cargo +nightly fuzz run --fuzz-dir tracer/fuzz {target} INPUT",
            if new.is_empty() {
                "none".to_string()
            } else {
                new.join(", ")
            }
        );
    }
    eprintln!(
        "xtask: {target}: no crash in {seconds} s; corpus {} inputs",
        files(&corpus).len()
    );
    Ok(())
}

fn files(dir: &Path) -> BTreeSet<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_default_and_override() {
        assert_eq!(seconds_from_env(None).ok(), Some(DEFAULT_SECONDS));
        assert_eq!(seconds_from_env(Some("")).ok(), Some(DEFAULT_SECONDS));
        assert_eq!(seconds_from_env(Some(" 20 ")).ok(), Some(20));
        assert!(seconds_from_env(Some("1m")).is_err());
    }

    #[test]
    fn every_target_has_seeds_and_a_source() {
        let dir = workspace_root().join("tracer/fuzz");
        for t in TARGETS {
            let src = dir.join("fuzz_targets").join(format!("{t}.rs"));
            assert!(src.is_file(), "{} missing", src.display());
            assert!(
                !files(&dir.join("seeds").join(t)).is_empty(),
                "no seeds for fuzz target {t}"
            );
        }
    }
}
