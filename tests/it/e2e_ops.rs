//! End-to-end operations: the HTTP server (metrics, health, readiness, status), systemd
//! notifications through a real datagram socket, and configuration reload on SIGHUP.

use std::time::Duration;

use crate::common::*;
use rustix::process::Signal;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_reports_metrics_health_readiness_and_status() {
    let h = Harness::new(2).await;
    h.sim.set_fault(
        &h.id(1),
        certsync_sim::Fault::ApiStatus {
            status: 500,
            times: None,
        },
    );
    let port = h.with_server(&Extra::default());
    let mut d = Running::start(&h.config, &["run"]);
    d.passed().await;

    assert_eq!(get(port, "/healthz").await.0, 200);
    let (status, body) = get(port, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("instance inst1: no valid CA on disk"),
        "{body}"
    );

    let (status, metrics) = get(port, "/metrics").await;
    assert_eq!(status, 200);
    for needle in [
        "certsync_pass_total{result=\"partial\"} 1",
        "certsync_pass_duration_seconds_count 1",
        "certsync_last_success_timestamp_seconds{instance=\"inst0\"}",
        "certsync_cert_not_after_timestamp_seconds{instance=\"inst0\",category=\"international\"}",
        "certsync_cert_changes_total{instance=\"inst0\"} 1",
        "certsync_instance_errors_total{instance=\"inst1\",reason=\"api_server_error\"} 1",
        "certsync_hook_runs_total{hook=\"record\",result=\"ok\"} 1",
        "certsync_api_requests_total{operation=\"list_ssl_cert_download_addresses\",status=\"200\"} 1",
        "certsync_api_requests_total{operation=\"list_ssl_cert_download_addresses\",status=\"500\"} 3",
    ] {
        assert!(metrics.contains(needle), "{needle} missing:\n{metrics}");
    }
    assert!(!metrics.contains(&h.sim.token()));

    let (status, body) = get(port, "/status").await;
    assert_eq!(status, 200);
    assert!(!body.contains(&h.sim.token()), "the token is in /status");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["ready"], false);
    let inst0 = &doc["instances"][0];
    assert_eq!(inst0["name"], "inst0");
    assert_eq!(inst0["categories"][0]["category"], "international");
    assert_eq!(
        inst0["categories"][0]["fingerprints"][0],
        h.sim.ca(&h.id(0), "international").sha256_hex
    );
    assert!(inst0["categories"][0]["not_after"].is_string());
    assert!(inst0["last_success"].is_string());
    assert!(
        doc["instances"][1]["last_error"]
            .as_str()
            .unwrap()
            .contains("HTTP 500")
    );

    // The instance recovers: ready.
    h.sim.clear_fault(&h.id(1));
    d.signal(Signal::USR1);
    d.passed().await;
    let (status, body) = get(port, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(d.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_is_a_clear_error() {
    let h = Harness::new(1).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    h.write_config(&Extra {
        tail: format!("\n[server]\nlisten = \"127.0.0.1:{port}\"\n"),
        ..Extra::default()
    });
    let out = h.certsync(&["run"]).await;
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains(&format!("server.listen 127.0.0.1:{port}: cannot listen")),
        "{}",
        stderr(&out)
    );
}

/// A notify socket whose reader stalls (nobody reads it here; its queue holds about ten
/// datagrams) must not freeze the loop: each message that does not fit is dropped with a
/// warning, and every SIGUSR1 still gets its pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notify_socket_nobody_reads_never_stalls_the_passes() {
    let h = Harness::new(1).await;
    let notify = NotifySocket::new(h.tmp.path());
    let socket = notify.path.to_str().unwrap().to_string();
    let mut d = Running::start_env(&h.config, &["run"], &[("NOTIFY_SOCKET", &socket)]);
    d.wait_for("pass finished").await;
    let passes = 2 * std::fs::read_to_string("/proc/sys/net/unix/max_dgram_qlen")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(10)
        .min(100);
    for _ in 0..passes {
        d.signal(Signal::USR1);
        d.wait_for("SIGUSR1: starting a pass now").await;
        d.wait_for("pass finished").await;
    }
    d.wait_for("cannot notify systemd").await;
    assert!(d.log().contains("its queue is full"), "{}", d.log());
    drop(notify);
    assert_eq!(d.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_status_watchdog_reloading_and_stopping() {
    let h = Harness::new(1).await;
    let notify = NotifySocket::new(h.tmp.path());
    let socket = notify.path.to_str().unwrap().to_string();
    let mut d = Running::start_env(
        &h.config,
        &["run"],
        &[("NOTIFY_SOCKET", &socket), ("WATCHDOG_USEC", "400000")],
    );
    let first = notify.until("READY=1").await;
    assert!(
        h.file(0).exists(),
        "READY=1 came before the first pass wrote"
    );
    let ready = first.last().unwrap();
    assert!(
        ready.contains("STATUS=1 of 1 instances synced"),
        "{first:?}"
    );
    notify.until("WATCHDOG=1").await;

    d.signal(Signal::HUP);
    let reload = notify.until("READY=1").await;
    assert!(
        reload.iter().any(|m| m.contains("RELOADING=1")),
        "{reload:?}"
    );

    d.signal(Signal::TERM);
    notify.until("STOPPING=1").await;
    let code = tokio::time::timeout(Duration::from_secs(30), d.child.wait())
        .await
        .unwrap()
        .unwrap()
        .code();
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_never_inherit_the_notify_socket() {
    let h = Harness::new(1).await;
    let env_dump = h.tmp.path().join("hook-env");
    h.write_config(&Extra {
        no_hook: true,
        tail: format!(
            "\n[[hook]]\nname = \"env\"\ncommand = [\"/bin/sh\", \"-c\", \"env > {}\"]\n",
            env_dump.display()
        ),
        ..Extra::default()
    });
    let notify = NotifySocket::new(h.tmp.path());
    let socket = notify.path.to_str().unwrap().to_string();
    let d = Running::start_env(
        &h.config,
        &["run"],
        &[
            ("NOTIFY_SOCKET", &socket),
            ("HUAWEICLOUD_SDK_SK", "sk-never-for-hooks"),
        ],
    );
    notify.pass().await;
    let env = std::fs::read_to_string(&env_dump).unwrap();
    assert!(!env.contains("sk-never-for-hooks"), "a hook got the SK");
    assert!(
        !env.contains("NOTIFY_SOCKET"),
        "a hook could talk to systemd as certsync"
    );
    assert!(env.contains("CERTSYNC_TRUST_DIR="));
    assert_eq!(d.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_valid_config_and_keeps_the_old_one_when_invalid() {
    let h = Harness::new(1).await;
    // Only SIGHUP reloads here (the file watch has its own test).
    let port = h.with_server(&Extra {
        sync: "watch_config = false",
        ..Extra::default()
    });
    let mut d = Running::start(&h.config, &["run"]);
    d.passed().await;

    // Invalid: refused, counted, the daemon goes on with the old config.
    let good = std::fs::read_to_string(&h.config).unwrap();
    std::fs::write(
        &h.config,
        good.replace("concurrency = 4", "concurrency = 0"),
    )
    .unwrap();
    d.signal(Signal::HUP);
    d.reloaded().await;
    // The log says why, on one line.
    let line = d.wait_for("the new configuration is invalid").await;
    assert!(line.contains("sync.concurrency"), "{line}");
    let (_, metrics) = get(port, "/metrics").await;
    assert!(
        metrics.contains("certsync_config_reload_total{result=\"invalid\"} 1"),
        "{metrics}"
    );

    // Valid, with one more instance and the first one removed: applied, a pass runs; the
    // removed instance's file is pruned after UNPRODUCED_PASSES passes without it, each
    // removal logged with the file and the reason.
    h.sim.add_instance("added-instance-0001");
    let old_file = h.file(0);
    let text = good.replace(
        &format!("id = \"{}\"\nname = \"inst0\"", h.id(0)),
        "id = \"added-instance-0001\"\nname = \"added\"",
    );
    std::fs::write(&h.config, text).unwrap();
    d.signal(Signal::HUP);
    d.reloaded().await;
    d.passed().await;
    assert!(h.trust.join("added-international.crt").exists());
    for _ in 1..certsync::store::UNPRODUCED_PASSES {
        assert!(old_file.exists(), "pruned before its time");
        d.signal(Signal::USR1);
        d.passed().await;
    }
    assert!(
        !old_file.exists(),
        "the removed instance's file was not pruned"
    );
    // The line may still be on its way from the pipe when the notify message arrived.
    let removal = d.wait_for("removed a managed file").await;
    assert!(
        removal.contains(&old_file.display().to_string()) && removal.contains("3 passes"),
        "{removal}"
    );
    let (_, metrics) = get(port, "/metrics").await;
    assert!(
        metrics.contains("certsync_config_reload_total{result=\"ok\"} 1"),
        "{metrics}"
    );
    // Counters keep their history; gauges of a removed instance must go.
    for gauge in [
        "certsync_last_success_timestamp_seconds{instance=\"inst0\"}",
        "certsync_cert_not_after_timestamp_seconds{instance=\"inst0\"",
    ] {
        assert!(!metrics.contains(gauge), "{gauge} lingers:\n{metrics}");
    }
    assert_eq!(d.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_with_span_fields() {
    let h = Harness::new(1).await;
    let out = h.certsync(&["--log-format", "json", "once"]).await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let mut updated = None;
    for line in stderr(&out).lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["message"] == "CA file updated" {
            updated = Some(v);
        }
    }
    let v = updated.expect("a 'CA file updated' line");
    for key in ["instance", "category", "path", "fingerprint", "not_after"] {
        assert!(v.get(key).is_some(), "{key} missing in {v}");
    }
    assert_eq!(v["span"]["name"], "pass", "{v}");
    assert_eq!(v["instance"], "inst0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_hook_signals_the_pid_read_fresh_from_its_file() {
    let h = Harness::new(1).await;
    let fifo = h.tmp.path().join("got-signal");
    let pid_file = h.tmp.path().join("app.pid");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    // An "application" that reports SIGUSR2 through the FIFO (a blocking, event-driven read).
    let mut app = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "trap 'echo usr2 > {fifo}' USR2; echo $$ > {pid}.tmp; mv {pid}.tmp {pid}; while :; do sleep 0.05; done",
            fifo = fifo.display(),
            pid = pid_file.display()
        ))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    h.write_config(&Extra {
        no_hook: true,
        tail: format!(
            "\n[[hook]]\nsignal = \"SIGUSR2\"\npid_file = \"{}\"\n",
            pid_file.display()
        ),
        ..Extra::default()
    });
    let reader = {
        let fifo = fifo.clone();
        tokio::task::spawn_blocking(move || std::fs::read_to_string(fifo).unwrap())
    };
    // The pid file appears once the app's trap is set.
    wait_for_file(&pid_file).await;
    let out = h.once().await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(reader.await.unwrap().trim(), "usr2");
    app.kill().await.unwrap();
    let _ = app.wait().await;

    // The process is gone now: the next change makes the hook fail, naming the pid file.
    h.sim.rotate(&h.id(0), "international");
    let out = h.once().await;
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    let err = all_output(&out);
    assert!(
        err.contains("cannot send SIGUSR2") && err.contains("app.pid"),
        "{err}"
    );
    std::fs::remove_file(&pid_file).unwrap();
    h.sim.rotate(&h.id(0), "international");
    let out = h.once().await;
    assert_eq!(code(&out), 1);
    assert!(
        all_output(&out).contains("pid file"),
        "{}",
        all_output(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_editor_rename_save_of_the_config_file_reloads_it() {
    let h = Harness::new(1).await;
    let mut d = Running::start(&h.config, &["run"]);
    d.passed().await;
    h.sim.add_instance("added-by-edit-0001");
    let text = std::fs::read_to_string(&h.config).unwrap()
        + "\n[[instance]]\nid = \"added-by-edit-0001\"\nname = \"edited\"\n";
    // As vim or an atomic writer saves: a new file renamed over the old one.
    let tmp = h.tmp.path().join(".certsync.toml.swp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &h.config).unwrap();
    d.reloaded().await;
    d.passed().await;
    assert!(h.trust.join("edited-international.crt").exists());
    assert_eq!(d.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_says_the_first_pass_has_not_finished() {
    let h = Harness::new(1).await;
    h.sim
        .set_fault(&h.id(0), certsync_sim::Fault::SlowApi { millis: 3000 });
    let port = h.with_server(&Extra::default());
    let mut d = Running::start(&h.config, &["run"]);
    wait_listening(port).await;
    let (status, body) = get(port, "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("the first pass has not finished"), "{body}");
    assert_eq!(get(port, "/healthz").await.0, 200);
    d.passed().await;
    assert_eq!(get(port, "/readyz").await.0, 200);
    assert_eq!(d.stop().await, Some(0));
}
