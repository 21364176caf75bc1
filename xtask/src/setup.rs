//! Installs the toolchain pieces the kernel program needs, each only when
//! missing, so a second run takes a second:
//! nightly `rust-src`, Debian's LLVM 22 development packages, bpf-linker
//! built against that LLVM, checked to match the nightly's LLVM major, and
//! cargo-fuzz.
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::run;

const LLVM: u32 = 22;
const APT: &[&str] = &["llvm-22-dev", "libpolly-22-dev", "libclang-22-dev"];
/// Real peers and tools the tests use (util-linux for unshare/findmnt/setpriv,
/// graphviz to render `snapshot --dot`, runc, crun, busybox-static and docker.io
/// for the container tests, libbpf-tools (mountsnoop) and bpftrace, the
/// peers `cargo xtask bench` measures against).
const APT_TEST: &[&str] = &[
    "libbpf-tools",
    "bpftrace",
    "util-linux",
    "libcap2-bin",
    "graphviz",
    "runc",
    "crun",
    "busybox-static",
    "docker.io",
];

pub fn all() -> Result<()> {
    rust_src()?;
    apt(APT)?;
    apt(APT_TEST)?;
    bpf_linker()?;
    cargo_fuzz()?;
    Ok(())
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn rust_src() -> Result<()> {
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        "nightly",
    ]))
    .context("the nightly toolchain is needed for the eBPF crate")?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        return Ok(());
    }
    eprintln!("xtask: installing rust-src for nightly");
    run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

fn apt(pkgs: &[&str]) -> Result<()> {
    let missing: Vec<&str> = pkgs
        .iter()
        .copied()
        .filter(|p| {
            Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .map(|o| !String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
                .unwrap_or(true)
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    run(Command::new("apt-get").args(["update", "-q"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// LLVM major of `rustc +nightly`.
fn nightly_llvm() -> Result<u32> {
    let v = output(Command::new("rustup").args(["run", "nightly", "rustc", "-vV"]))?;
    major_after(&v, "LLVM version:").context("no LLVM version in `rustc +nightly -vV`")
}

fn major_after(text: &str, key: &str) -> Option<u32> {
    let line = text.lines().find_map(|l| l.trim().strip_prefix(key))?;
    line.trim().split('.').next()?.parse().ok()
}

fn bpf_linker() -> Result<()> {
    let want = nightly_llvm()?;
    if want != LLVM {
        bail!(
            "the nightly toolchain uses LLVM {want}, but this project builds bpf-linker against Debian's LLVM {LLVM}; they must match"
        );
    }
    if let Ok(v) = output(Command::new("bpf-linker").arg("--version")) {
        match major_after(&v, "LLVM version:").or_else(linked_llvm) {
            Some(m) if m == want => return Ok(()),
            Some(m) => {
                eprintln!("xtask: bpf-linker uses LLVM {m}, nightly uses {want}: rebuilding")
            }
            None => eprintln!("xtask: cannot tell bpf-linker's LLVM: rebuilding"),
        }
    }
    eprintln!("xtask: building bpf-linker against LLVM {LLVM} (a few minutes, once)");
    run(Command::new("cargo")
        .args([
            "install",
            "--force",
            "bpf-linker",
            "--no-default-features",
            "--features",
        ])
        .arg(format!("llvm-{LLVM}"))
        .env("LLVM_PREFIX", format!("/usr/lib/llvm-{LLVM}")))
}

/// cargo-fuzz, for `cargo xtask fuzz` and the fuzz step of the tests. The
/// targets build with the nightly that `rust_src` checks for; libFuzzer itself
/// comes with the libfuzzer-sys crate.
fn cargo_fuzz() -> Result<()> {
    if output(Command::new("cargo").args(["fuzz", "--version"])).is_ok() {
        return Ok(());
    }
    eprintln!("xtask: installing cargo-fuzz (a minute or two, once)");
    run(Command::new("cargo").args(["install", "--locked", "cargo-fuzz@^0.13"]))
}

/// The LLVM bpf-linker is dynamically linked against, from its libraries.
fn linked_llvm() -> Option<u32> {
    let path = output(Command::new("sh").args(["-c", "command -v bpf-linker"])).ok()?;
    let libs = output(Command::new("ldd").arg(path.trim())).ok()?;
    libs.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("libLLVM")?;
        let digits: String = rest
            .trim_start_matches(['-', '.', 's', 'o'])
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llvm_major() {
        assert_eq!(
            major_after("host: x\nLLVM version: 22.1.4\n", "LLVM version:"),
            Some(22)
        );
        assert_eq!(major_after("nothing", "LLVM version:"), None);
    }
}
