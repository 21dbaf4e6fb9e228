//! Benchmark: `certsync once` against the simulator with 200, 1,000 and 10,000 instances.
//!
//! Prints, per size: the cold pass (empty trust folder), the unchanged pass (nothing to
//! write), each as certsync's own pass time and the whole process's wall time, and the peak
//! RSS of the certsync process in each (GNU time's %M), cold / unchanged. At 200 instances,
//! the idle RSS of `certsync run` after its first pass (`verify.enabled = false`), as
//! VmRSS = RssAnon (heap, stacks) + RssFile (the binary's and libraries' pages it touched). When `../shared/bench/baseline-sync.sh` and
//! its tools are present, the cron-script baseline is timed on the same simulator for
//! comparison. Then the cold pass's cost per instance at 10,000 against that at 1,000 (1.0 is
//! linear). Last, the largest size once more under a request budget of 50 a second
//! (`max_requests_per_second = 50`) against a simulator whose gateway throttles the user at
//! the same rate (429 `APIG.0308`): the pass's time, the 429s seen and whether every instance
//! synced. Run: `cargo bench --bench sync` (figures, not assertions);
//! `CERTSYNC_BENCH_SIZES=1000,10000` picks the sizes, `CERTSYNC_BENCH_THROTTLED=0` skips the
//! throttled pass (it takes about 200 s at 10,000).
//!
//! The cold pass's store step is mostly the kernel creating 20,000 files. On an ext4 without
//! a journal (this machine's disk) each new inode is checked against the inodes deleted in
//! the last minutes, so a run within minutes of deleting tens of thousands of files (a
//! previous run's clean-up, a `cargo clean`) measures that too: on this machine the 10,000
//! cold pass took 2.1-2.4 s on a quiet disk and 3.1-3.9 s right after such deletions.

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use certsync_sim::{RateLimit, SimOptions, Simulator};

const BIN: &str = env!("CARGO_BIN_EXE_certsync");

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

/// The config for `sim`; `budget` is `max_requests_per_second` (the unthrottled runs set it
/// far above what the machine can do, so that only the machine is measured).
fn write_config(
    sim: &Simulator,
    dir: &Path,
    concurrency: usize,
    budget: u32,
) -> std::path::PathBuf {
    std::fs::write(dir.join("token"), sim.token()).unwrap();
    let mut text = format!(
        "[cloud]\nservice = \"gaussdb-nosql\"\nregion = \"cn-north-4\"\nendpoint = \"{}\"\nproject_id = \"{}\"\nca_file = \"{}\"\nmax_requests_per_second = {budget}\n\n[auth]\nmethod = \"token\"\ntoken_file = \"token\"\n\n[sync]\nconcurrency = {concurrency}\nallowed_download_hosts = [\"127.0.0.1\"]\n\n[trust]\ndir = \"trust\"\nbundle = \"ca-bundle.crt\"\n",
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
    let chosen: Option<Vec<usize>> = std::env::var("CERTSYNC_BENCH_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect());
    let sizes: Vec<usize> = match chosen {
        Some(sizes) if !sizes.is_empty() => sizes,
        _ if quick => vec![20],
        _ => vec![200, 1000, 10_000],
    };
    let throttled_run = std::env::var("CERTSYNC_BENCH_THROTTLED").map_or(true, |v| v != "0");
    let largest = sizes.iter().copied().max().unwrap_or(0);
    let mut per_instance: Vec<(usize, f64)> = Vec::new();
    let mut throttled: Option<String> = None;
    let mut idle: Option<String> = None;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("certsync sync benchmark (2-core machine, simulator on loopback over TLS)");
    println!(
        "{:>9} {:>12} {:>16} {:>14} {:>12} {:>14} {:>16} {:>14}",
        "instances",
        "cold pass",
        "(fetch / store)",
        "cold process",
        "unchanged",
        "unchanged proc",
        "peak RSS c/u MiB",
        "baseline cron"
    );
    // Every size's folders are deleted only at the end: on an ext4 without a journal (this
    // machine's) a file created within minutes of many deletions costs a scan past each
    // recently deleted inode (ext4's `recently_deleted`), which made the next size's cold
    // pass up to three times slower in the store than the same pass on a quiet folder.
    let mut folders = Vec::new();
    for &n in &sizes {
        let tmp = tempfile::tempdir().unwrap();
        let sim = runtime
            .block_on(Simulator::start(SimOptions {
                instances: n,
                dir: Some(tmp.path().join("sim")),
                ..SimOptions::default()
            }))
            .unwrap();
        let config = write_config(&sim, tmp.path(), 16, 10_000);
        // Three cold passes (each into an empty folder); the median is shown. The first also
        // warms the page cache for the binary.
        let mut colds: Vec<Run> = Vec::new();
        for _ in 0..3 {
            set_aside(tmp.path());
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
            "{:>9} {:>9.1} ms {:>16} {:>11.1} ms {:>9.1} ms {:>11.1} ms {:>16} {:>14}",
            n,
            cold.pass_ms,
            format!("({:.0} / {:.0} ms)", cold.fetch_ms, cold.store_ms),
            cold.wall_ms,
            unchanged.pass_ms,
            unchanged.wall_ms,
            format!(
                "{:.1} / {:.1}",
                cold.peak_rss_kib as f64 / 1024.0,
                unchanged.peak_rss_kib as f64 / 1024.0
            ),
            base.unwrap_or_else(|| "-".into())
        );
        per_instance.push((n, cold.pass_ms / n as f64));
        if n == 200 {
            idle = Some(idle_rss(&config));
        }
        if n == largest && throttled_run {
            throttled = Some(throttled_pass(&sim, tmp.path()));
        }
        sim.shutdown();
        folders.push(tmp);
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
    if let Some(line) = idle {
        println!("{line}");
    }
    if let Some(line) = throttled {
        println!("{line}");
    }
}

/// How long `run` is left idle after its first pass before its RSS is read: the pass's
/// blocking threads (hooks, the store) have ended and the loop waits for the next pass.
const IDLE_SETTLE: Duration = Duration::from_secs(3);

/// `certsync run` on `config` (with `verify.enabled = false`) until its first pass finished,
/// then idle for [`IDLE_SETTLE`]: its RSS then, the line to print.
fn idle_rss(config: &Path) -> String {
    let text = std::fs::read_to_string(config).unwrap() + "\n[verify]\nenabled = false\n";
    let idle_config = config.with_file_name("certsync-idle.toml");
    std::fs::write(&idle_config, text).unwrap();
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&idle_config)
        .arg("run")
        .env("RUST_LOG", "certsync=info,warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start certsync run");
    // The first pass has finished when its line is logged (or run exited: no figure).
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr).lines();
    let passed = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("pass finished"));
    // Keep draining stderr, so that run never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let status = passed.then(|| {
        std::thread::sleep(IDLE_SETTLE);
        std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default()
    });
    let _ = child.kill();
    let _ = child.wait();
    let Some(status) = status else {
        return "idle RSS of run at 200 instances: its first pass did not finish".into();
    };
    let kib = |key: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    format!(
        "idle RSS of run at 200 instances, {} s after its first pass: {:.1} MiB = RssAnon {:.1} MiB + RssFile {:.1} MiB ({} threads)",
        IDLE_SETTLE.as_secs(),
        kib("VmRSS:") / 1024.0,
        kib("RssAnon:") / 1024.0,
        (kib("RssFile:") + kib("RssShmem:")) / 1024.0,
        kib("Threads:")
    )
}

/// Moves `dir/trust` aside (it is removed with `dir`), so that the next pass starts with an
/// empty folder. Not removed here: ext4 allocates inodes slowly right after 20,000 were
/// freed (its search for recently deleted ones), which would be measured as certsync's.
fn set_aside(dir: &Path) {
    let trust = dir.join("trust");
    if trust.exists() {
        let aside = dir.join(format!("trust-old-{}", next_suffix()));
        std::fs::rename(&trust, aside).unwrap();
    }
}

/// A name suffix unique within the run.
fn next_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The budget and the gateway's per-user limit of the throttled pass, requests a second.
const THROTTLED_RATE: u32 = 50;

/// A cold pass of every instance of `sim` under a budget of [`THROTTLED_RATE`] a second while
/// the simulator throttles the user at that rate: the line to print.
fn throttled_pass(sim: &Simulator, dir: &Path) -> String {
    sim.set_rate_limit(Some(RateLimit {
        per_second: THROTTLED_RATE,
        retry_after: None,
    }));
    let config = write_config(sim, dir, 16, THROTTLED_RATE);
    set_aside(dir);
    let before = sim.stats();
    let run = once(&config);
    let after = sim.stats();
    sim.set_rate_limit(None);
    let n = sim.instance_ids().len();
    let requests = after.api_requests - before.api_requests;
    format!(
        "throttled: {n} instances under max_requests_per_second = {THROTTLED_RATE} against a \
         gateway limit of {THROTTLED_RATE}/s per user: pass {:.1} s ({:.1} s at the budget's \
         rate), {} API requests, {} answered 429, {}",
        run.pass_ms / 1e3,
        n as f64 / f64::from(THROTTLED_RATE),
        requests,
        after.throttled - before.throttled,
        if run.ok {
            "every instance synced".to_string()
        } else {
            "some instances failed (exit status 1)".to_string()
        }
    )
}
