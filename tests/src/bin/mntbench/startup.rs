//! Part 3, start-up and memory: from exec to `mnttrace: tracing` (attached,
//! every namespace's table read), and the peak resident set, with the farm's
//! namespaces on the machine.
use std::time::Duration;

use anyhow::Result;
use serde_json::{Value, json};

use crate::{agent, farm::Farm, proc, stats};

pub fn measure(farm: &Farm, reps: usize, bin: &str) -> Result<Value> {
    let machine_ns = proc::namespaces_on_machine();
    let (mut start, mut hwm, mut rss, mut maxrss, mut cpu) =
        (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..reps {
        let mut a = agent::start(bin, &["--json"], false)?;
        // A moment of steady state (its first tick of housekeeping) before
        // the peak is read.
        std::thread::sleep(Duration::from_millis(500));
        hwm.push(proc::status_kib(a.guard.pid, "VmHWM").unwrap_or(0) as f64);
        rss.push(proc::status_kib(a.guard.pid, "VmRSS").unwrap_or(0) as f64);
        let exit = a.guard.stop(Duration::from_secs(30));
        maxrss.push(exit.maxrss_kib as f64);
        cpu.push(exit.cpu_ms);
        start.push(a.startup_ms);
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = json!({
        "namespaces": farm.n,
        "machine_namespaces": machine_ns,
        "mounts_per_ns": farm.mounts,
        "reps": reps,
        "startup_ms": start,
        "startup_ms_median": stats::median(&start),
        "vmhwm_mib_median": stats::median(&hwm) / 1024.0,
        "maxrss_mib_median": stats::median(&maxrss) / 1024.0,
        // Resident at the same moment: a peak far above it was transient.
        "vmrss_mib_median": stats::median(&rss) / 1024.0,
        // Its whole life's CPU (start-up, 0.5 s idle, exit): how much of the
        // start-up is work rather than waiting.
        "cpu_ms_median": stats::median(&cpu),
    });
    eprintln!(
        "mntbench: startup {:>5} ns ({} on the machine): {:.0} ms (runs {:?}), VmHWM {:.1} MiB",
        farm.n,
        machine_ns,
        r["startup_ms_median"].as_f64().unwrap_or(0.0),
        start.iter().map(|s| s.round()).collect::<Vec<_>>(),
        r["vmhwm_mib_median"].as_f64().unwrap_or(0.0),
    );
    Ok(r)
}
