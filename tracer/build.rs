//! Builds the kernel program (`tracer-ebpf`) for the bpf target with the
//! nightly toolchain and bpf-linker, into OUT_DIR, where `src/capture/loader.rs`
//! embeds it. A plain `cargo build` thus rebuilds it whenever its source changes.
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../tracer-ebpf");
    println!("cargo:rerun-if-changed={root}/src");
    println!("cargo:rerun-if-changed={root}/Cargo.toml");
    aya_build::build_ebpf(
        [Package {
            name: "tracer-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        Toolchain::default(),
    )
}
