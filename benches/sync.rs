//! Benchmark: `certsync once` against the simulator with 200, 1,000 and 10,000 instances.
//!
//! Prints, per size: the cold pass (empty trust folder), the unchanged pass (nothing to
//! write), each as certsync's own pass time and the whole process's wall time, and the peak
//! RSS of the certsync process (GNU time's %M). When `../shared/bench/baseline-sync.sh` and
//! its tools are present, the cron-script baseline is timed on the same simulator for
//! comparison. Last, the cold pass's cost per instance at 10,000 against that at 1,000 (1.0 is
//! linear). Run: `cargo bench --bench sync` (figures, not assertions);
//! `CERTSYNC_BENCH_SIZES=10000 cargo bench --bench sync` runs only the sizes listed
//! (comma-separated).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use certsync_sim::{SimOptions, Simulator};

const BIN: &str = env!("CARGO_BIN_EXE_certsync");

/// The request budget of the benchmark's account: the simulator does not throttle, and at the
/// default (5 a second) 10,000 instances would take over half an hour a pass, measuring the
/// budget instead of certsync.
const MAX_REQUESTS_PER_SECOND: u32 = 10_000;

struct Run {
    pass_ms: f64,
    fetch_ms: f64,
    store_ms: f64,
    wall_ms: f64,
    peak_rss_kib: u64,
    ok: bool,
}

fn field(stderr: &str, name: &str) -> f64 {
    let key = format!("{name}=");
    stderr
        .lines()
        .filter(|l| l.contains("pass finished"))
        .find_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix(key.as_str()))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .unwrap_or(f64::NAN)
}

fn once(config: &Path) -> Run {
    // Flush other dirty pages first, so that fsync measures certsync's own writes.
    let _ = Command::new("sync").status();
    let started = Instant::now();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "PEAK_RSS_KIB=%M"])
        .arg(BIN)
        .arg("--config")
        .arg(config)
        .arg("once")
        .env("RUST_LOG", "certsync=info,warn")
        .stdout(Stdio::null())
        .output()
        .expect("run /usr/bin/time (Debian package `time`)");
    let wall_ms = started.elapsed().as_secs_f64() * 1e3;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let peak_rss_kib = stderr
        .lines()
        .find_map(|l| l.strip_prefix("PEAK_RSS_KIB="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Run {
        pass_ms: field(&stderr, "elapsed_ms"),
        fetch_ms: field(&stderr, "fetch_ms"),
        store_ms: field(&stderr, "store_ms"),
        wall_ms,
        peak_rss_kib,
        ok: out.status.success(),
    }
}

fn write_config(sim: &Simulator, dir: &Path, concurrency: usize) -> std::path::PathBuf {
    std::fs::write(dir.join("token"), sim.token()).unwrap();
    let mut text = format!(
        "[cloud]\nservice = \"gaussdb-nosql\"\nregion = \"cn-north-4\"\nendpoint = \"{}\"\nproject_id = \"{}\"\nca_file = \"{}\"\nmax_requests_per_second = {MAX_REQUESTS_PER_SECOND}\n\n[auth]\nmethod = \"token\"\ntoken_file = \"token\"\n\n[sync]\nconcurrency = {concurrency}\nallowed_download_hosts = [\"127.0.0.1\"]\n\n[trust]\ndir = \"trust\"\nbundle = \"ca-bundle.crt\"\n",
        sim.endpoint(),
        sim.project_id(),
        sim.ca_file().display()
    );
    for id in sim.instance_ids() {
        text.push_str(&format!("\n[[instance]]\nid = \"{id}\"\n"));
    }
    let path = dir.join("certsync.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn baseline(sim: &Simulator, dir: &Path, parallel: usize) -> Option<f64> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/baseline-sync.sh");
    if !script.exists() || Command::new("jq").arg("--version").output().is_err() {
        return None;
    }
    let ids = dir.join("ids");
    std::fs::write(&ids, sim.instance_ids().join("\n") + "\n").unwrap();
    let started = Instant::now();
    let status = Command::new("bash")
        .arg(&script)
        .env("ENDPOINT", sim.endpoint())
        .env("PROJECT", sim.project_id())
        .env("TOKEN", sim.token())
        .env("CA_FILE", sim.ca_file())
        .env("DIR", dir.join("baseline-trust"))
        .env("IDS", &ids)
        .env("PARALLEL", parallel.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    status
        .success()
        .then(|| started.elapsed().as_secs_f64() * 1e3)
}

fn main() {
    // `cargo test --benches` runs this with --bench absent: stay quick there.
    let quick = !std::env::args().any(|a| a == "--bench");
    let chosen: Option<Vec<usize>> = std::env::var("CERTSYNC_BENCH_SIZES").ok().map(|v| {
        v.split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .expect("CERTSYNC_BENCH_SIZES: numbers, comma-separated")
            })
            .collect()
    });
    let sizes: &[usize] = match (&chosen, quick) {
        (Some(sizes), _) => sizes,
        (None, true) => &[20],
        (None, false) => &[200, 1000, 10_000],
    };
    let mut per_instance: Vec<(usize, f64)> = Vec::new();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("certsync sync benchmark (2-core machine, simulator on loopback over TLS)");
    println!(
        "{:>9} {:>12} {:>16} {:>14} {:>12} {:>14} {:>12} {:>14}",
        "instances",
        "cold pass",
        "(fetch / store)",
        "cold process",
        "unchanged",
        "unchanged proc",
        "peak RSS",
        "baseline cron"
    );
    for &n in sizes {
        let tmp = tempfile::tempdir().unwrap();
        let sim = runtime
            .block_on(Simulator::start(SimOptions {
                instances: n,
                dir: Some(tmp.path().join("sim")),
                ..SimOptions::default()
            }))
            .unwrap();
        let config = write_config(&sim, tmp.path(), 16);
        // Three cold passes (each into an empty folder); the median is shown. The first also
        // warms the page cache for the binary.
        let mut colds: Vec<Run> = Vec::new();
        for _ in 0..3 {
            let _ = std::fs::remove_dir_all(tmp.path().join("trust"));
            colds.push(once(&config));
        }
        colds.sort_by(|a, b| a.pass_ms.total_cmp(&b.pass_ms));
        let cold = colds.swap_remove(1);
        let unchanged = once(&config);
        assert!(cold.ok && unchanged.ok, "certsync once failed");
        let base = if n <= 200 && !quick {
            baseline(&sim, tmp.path(), 8).map(|ms| format!("{ms:.0} ms (x8)"))
        } else {
            None
        };
        println!(
            "{:>9} {:>9.1} ms {:>16} {:>11.1} ms {:>9.1} ms {:>11.1} ms {:>8.1} MiB {:>14}",
            n,
            cold.pass_ms,
            format!("({:.0} / {:.0} ms)", cold.fetch_ms, cold.store_ms),
            cold.wall_ms,
            unchanged.pass_ms,
            unchanged.wall_ms,
            cold.peak_rss_kib.max(unchanged.peak_rss_kib) as f64 / 1024.0,
            base.unwrap_or_else(|| "-".into())
        );
        per_instance.push((n, cold.pass_ms / n as f64));
        sim.shutdown();
    }
    let at = |n: usize| per_instance.iter().find(|(k, _)| *k == n).map(|(_, v)| *v);
    if let (Some(small), Some(large)) = (at(1000), at(10_000)) {
        println!(
            "cold pass per instance: {:.3} ms at 1,000, {:.3} ms at 10,000: ratio {:.2}",
            small,
            large,
            large / small
        );
    }
}
