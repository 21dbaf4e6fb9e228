//! End-to-end: `certsync run` and `certsync demo` as child processes, driven with real signals,
//! including a crash test that SIGKILLs the daemon while CAs rotate.

use std::path::Path;
use std::time::Duration;

use crate::common::*;
use rustix::process::{Pid, Signal};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_syncs_at_once_starts_a_pass_on_sigusr1_and_stops_cleanly_on_sigterm() {
    let h = Harness::new(2).await;
    let mut d = Running::start(&h.config, &["run"]);
    d.passed().await;
    assert_eq!(
        std::fs::read_to_string(h.file(0)).unwrap(),
        h.expected_pem(0)
    );
    assert_eq!(h.hook_runs().len(), 1);

    h.sim.rotate(&h.id(1), "international");
    d.signal(Signal::USR1);
    d.passed().await;
    assert!(
        std::fs::read_to_string(h.file(1))
            .unwrap()
            .starts_with(&h.expected_pem(1))
    );
    assert_eq!(h.hook_runs().len(), 2);

    d.signal(Signal::TERM);
    assert_eq!(d.exit_code().await, Some(0), "{}", d.log());
    assert!(!d.log().contains(&h.sim.token()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_cleanly_too() {
    let h = Harness::new(1).await;
    let mut d = Running::start(&h.config, &["run"]);
    d.passed().await;
    d.signal(Signal::INT);
    assert_eq!(d.exit_code().await, Some(0));
}

/// Rewrites the token file in place with a token of the same length and puts its mtime
/// back, so certsync's change check cannot see it: only a 401 makes certsync re-read it.
fn swap_token_unseen(path: &Path, token: &str) {
    let meta = std::fs::metadata(path).unwrap();
    assert_eq!(
        meta.len() as usize,
        token.len() + 1,
        "same length keeps the size"
    );
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    std::io::Write::write_all(&mut &file, format!("{token}\n").as_bytes()).unwrap();
    file.set_modified(meta.modified().unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_is_picked_up_after_a_401() {
    let h = Harness::new(1).await;
    let mut d = Running::start(&h.config, &["run"]);
    d.passed().await;
    let new_token: String = h.sim.token().chars().rev().collect();
    assert_ne!(new_token, h.sim.token());
    h.sim.set_token(&new_token);
    h.sim.rotate(&h.id(0), "international");
    swap_token_unseen(&h.token_file, &new_token);
    let before = h.sim.stats();
    d.signal(Signal::USR1);
    let status = d.passed().await;
    assert_eq!(status, "1 of 1 instances synced", "{}", d.log());
    // The line may still be on its way from the pipe when the notify message arrived.
    d.wait_for("API answered 401; refreshing credentials").await;
    assert!(
        std::fs::read_to_string(h.file(0))
            .unwrap()
            .starts_with(&h.expected_pem(0))
    );
    let after = h.sim.stats();
    assert_eq!(after.unauthorized - before.unauthorized, 1);
    assert!(!d.log().contains(&new_token));
    d.signal(Signal::TERM);
    assert_eq!(d.exit_code().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_401_fails_the_instance_after_exactly_two_requests() {
    let h = Harness::new(1).await;
    let wrong: String = h.sim.token().chars().rev().collect();
    std::fs::write(&h.token_file, format!("{wrong}\n")).unwrap();
    let out = h.once().await;
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    let stats = h.sim.stats();
    assert_eq!(
        (stats.api_requests, stats.unauthorized),
        (2, 2),
        "{stats:?}"
    );
    let text = stdout(&out);
    assert!(
        text.contains("auth method token: the API refused the credentials")
            && text.contains("APIGW.0301"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_instance_is_retried_with_backoff_without_waiting_for_the_interval() {
    let h = Harness::new(2).await;
    h.sim.set_fault(
        &h.id(0),
        certsync_sim::Fault::ApiStatus {
            status: 500,
            times: Some(3),
        },
    );
    let mut d = Running::start(&h.config, &["run"]);
    let first = d.passed().await;
    assert_eq!(first, "1 of 2 instances synced, 1 failing");
    assert!(!h.file(0).exists() && h.file(1).exists());
    // retry_initial is 1s in the harness: the retry pass syncs only the failed instance.
    let retry = d.passed().await;
    assert_eq!(retry, "2 of 2 instances synced", "{}", d.log());
    // The retry pass's own line (it may still be on its way from the pipe when the notify
    // message arrived).
    let mut last = d.wait_for("pass finished").await;
    while !last.contains("pass{n=2") {
        last = d.wait_for("pass finished").await;
    }
    assert!(last.contains("instances=1"), "{last}");
    assert!(h.file(0).exists());
    d.signal(Signal::TERM);
    assert_eq!(d.exit_code().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_hook_is_retried_until_it_succeeds() {
    let h = Harness::with(
        1,
        Extra {
            no_hook: true,
            ..Extra::default()
        },
    )
    .await;
    let flag = h.tmp.path().join("hook-may-succeed");
    let count = h.tmp.path().join("hook-count");
    let done = h.tmp.path().join("hook-done");
    let mut extra = Extra {
        no_hook: true,
        ..Extra::default()
    };
    extra.tail = format!(
        "\n[[hook]]\nname = \"flaky\"\ntimeout = \"5s\"\ncommand = [\"/bin/sh\", \"-c\", \"echo run >> {count}; test -e {flag} && touch {done}\"]\n",
        count = count.display(),
        flag = flag.display(),
        done = done.display()
    );
    h.write_config(&extra);
    let mut d = Running::start(&h.config, &["run"]);
    // The first pass ends with the hook failing.
    let status = d.passed().await;
    assert_eq!(status, "1 of 1 instances synced, 1 hook(s) failing");
    std::fs::write(&flag, "").unwrap();
    // Retried on its own backoff, with no pass in between, until it succeeds.
    wait_for_file(&done).await;
    let runs = std::fs::read_to_string(&count).unwrap().lines().count();
    assert!(runs >= 2, "{runs}");
    d.signal(Signal::TERM);
    assert_eq!(d.exit_code().await, Some(0));
}

/// Every non-hidden file of the folder holds whole certificates, exactly as certsync writes
/// them, and the manifest is valid JSON.
fn assert_folder_whole(dir: &Path) {
    if !dir.exists() {
        return;
    }
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let data = std::fs::read(&path).unwrap();
        if name == ".certsync-manifest.json" {
            serde_json::from_slice::<serde_json::Value>(&data)
                .unwrap_or_else(|e| panic!("manifest is not whole: {e}"));
            continue;
        }
        if name.starts_with('.') {
            continue; // temp files are removed at the next start
        }
        let certs = certsync::cert::read_certs_lenient(&data)
            .unwrap_or_else(|e| panic!("{} is not whole: {e}", path.display()));
        let normalised: String = certs.iter().map(|c| c.to_pem()).collect();
        assert_eq!(
            normalised.as_bytes(),
            &data[..],
            "{} is not whole",
            path.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_random_moments_while_cas_rotate_leaves_every_file_whole() {
    let h = Harness::new(12).await;
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    for round in 0..12 {
        let mut d = Running::start(&h.config, &["run"]);
        // Once the first pass is done, the next one (SIGUSR1) is killed at a random moment.
        d.passed().await;
        for i in 0..12 {
            if rng.bool() {
                h.sim.rotate(&h.id(i), "international");
            }
        }
        d.signal(Signal::USR1);
        // The random moment is the point of this test: the kill lands anywhere in a pass.
        tokio::time::sleep(Duration::from_millis(rng.u64(0..250))).await;
        d.signal(Signal::KILL);
        let _ = d.child.wait().await;
        assert_folder_whole(&h.trust);
        let _ = round;
    }
    // After the crashes, a clean pass brings every file to the current CA.
    let out = h.once().await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_folder_whole(&h.trust);
    for i in 0..12 {
        assert!(
            std::fs::read_to_string(h.file(i))
                .unwrap()
                .starts_with(&h.expected_pem(i))
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(&h.trust)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".certsync-tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary files left after a clean start"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_against_its_simulator_and_stops_on_ctrl_c() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo-trust");
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(["demo", "--dir"]).arg(&dir);
    let mut d = Running::spawn(cmd);
    d.wait_for("demo hook: changed files").await;
    for name in ["orders", "sessions", "metrics"] {
        assert!(dir.join(format!("{name}-international.crt")).exists());
    }
    // Each instance's stand-in database is verified against what certsync wrote.
    for _ in 0..3 {
        d.wait_for("endpoint verified").await;
    }
    d.signal(Signal::INT);
    assert_eq!(d.exit_code().await, Some(0), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_owed_when_certsync_dies_runs_at_the_next_start() {
    let h = Harness::with(
        1,
        Extra {
            no_hook: true,
            ..Extra::default()
        },
    )
    .await;
    let flag = h.tmp.path().join("may-finish");
    let started = h.tmp.path().join("hook-started");
    let ran = h.tmp.path().join("hook-ran");
    h.write_config(&Extra {
        no_hook: true,
        tail: format!(
            "\n[[hook]]\nname = \"slow\"\ntimeout = \"60s\"\ncommand = [\"/bin/sh\", \"-c\", \"if [ -e {flag} ]; then echo ran >> {ran}; else echo $$ > {started}.tmp; mv {started}.tmp {started}; exec sleep 60; fi\"]\n",
            flag = flag.display(),
            ran = ran.display(),
            started = started.display()
        ),
        ..Extra::default()
    });
    let mut d = Running::start(&h.config, &["run"]);
    // The files are written, the hook is running: certsync dies before it finishes.
    wait_for_file(&started).await;
    assert!(h.file(0).exists());
    d.signal(Signal::KILL);
    let _ = d.child.wait().await;
    let hook_pid: i32 = std::fs::read_to_string(&started)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = rustix::process::kill_process_group(Pid::from_raw(hook_pid).unwrap(), Signal::KILL);
    std::fs::write(&flag, "").unwrap();
    // Nothing changed since, but the hook is still owed: it runs once, then no more.
    let out = h.once().await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert!(stdout(&out).contains(" unchanged "), "{}", stdout(&out));
    assert_eq!(std::fs::read_to_string(&ran).unwrap().lines().count(), 1);
    assert_eq!(code(&h.once().await), 0);
    assert_eq!(
        std::fs::read_to_string(&ran).unwrap().lines().count(),
        1,
        "ran again without a change"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_that_failed_in_once_is_retried_by_the_next_run() {
    let h = Harness::with(
        1,
        Extra {
            no_hook: true,
            ..Extra::default()
        },
    )
    .await;
    let flag = h.tmp.path().join("ok");
    h.write_config(&Extra {
        no_hook: true,
        tail: format!(
            "\n[[hook]]\nname = \"needs-flag\"\ncommand = [\"/bin/sh\", \"-c\", \"test -e {}\"]\n",
            flag.display()
        ),
        ..Extra::default()
    });
    assert_eq!(code(&h.once().await), 1);
    std::fs::write(&flag, "").unwrap();
    let out = h.once().await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert!(stderr(&out).contains("hook succeeded"), "{}", stderr(&out));
}
