//! Issue 8: nothing a user types or a server sends may delete a good CA, crash certsync, or
//! make it write outside its folder. Each test is named for what was seen and drives the real
//! binary against the simulator (SPEC 5.3, 7, 10).

use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use crate::common::*;
use rustix::process::Signal;

/// Every regular file of the folder with its bytes (symlinks and folders by name only).
fn contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            let bytes = if e.file_type().unwrap().is_file() {
                std::fs::read(e.path()).unwrap()
            } else {
                Vec::new()
            };
            (name, bytes)
        })
        .filter(|(n, _)| n != ".certsync-manifest.json")
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mistyped_instance_id_keeps_the_file_of_the_name_it_maps_to() {
    let h = Harness::new(2).await;
    assert_eq!(code(&h.once().await), 0);
    let billing = h.file(1);
    let before = contents(&h.trust);
    let runs = h.hook_runs().len();

    // One character of inst1's id changed: the API answers 404 for it.
    let good = std::fs::read_to_string(&h.config).unwrap();
    let id = h.id(1);
    let typo = format!("{}X", &id[..id.len() - 1]);
    std::fs::write(&h.config, good.replace(&id, &typo)).unwrap();
    for pass in 0..certsync::store::UNPRODUCED_PASSES + 1 {
        let out = h.once().await;
        assert_eq!(code(&out), 1, "pass {pass}: {}", all_output(&out));
        assert!(billing.exists(), "pass {pass}: the CA of inst1 was deleted");
        assert_eq!(contents(&h.trust), before, "pass {pass}: a file changed");
        assert!(
            stdout(&out).contains("inst1") && stdout(&out).contains("failed"),
            "{}",
            stdout(&out)
        );
    }
    assert_eq!(
        h.hook_runs().len(),
        runs,
        "a hook ran though nothing changed"
    );

    // The id corrected: the same name takes its file back, nothing is lost on the way.
    std::fs::write(&h.config, &good).unwrap();
    assert_eq!(code(&h.once().await), 0);
    assert_eq!(contents(&h.trust), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_config_whose_instances_all_fail_removes_nothing() {
    let h = Harness::new(2).await;
    assert_eq!(code(&h.once().await), 0);
    let before = contents(&h.trust);
    // Another team's config: other ids and names, and every one of them fails.
    let good = std::fs::read_to_string(&h.config).unwrap();
    let mut other = good.clone();
    for (i, name) in ["inst0", "inst1"].iter().enumerate() {
        other = other
            .replace(&h.id(i), &format!("other-instance-{i}"))
            .replace(
                &format!("name = \"{name}\""),
                &format!("name = \"other{i}\""),
            );
    }
    std::fs::write(&h.config, other).unwrap();
    for pass in 0..certsync::store::UNPRODUCED_PASSES + 1 {
        let out = h.once().await;
        assert_eq!(code(&out), 1, "{}", all_output(&out));
        assert_eq!(contents(&h.trust), before, "pass {pass}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_category_cannot_aim_one_instance_at_another_ones_file() {
    let mut h = Harness::new(2).await;
    // inst0 is "shop", inst1 "shop-x": shop's category "x-international" renders as
    // shop-x's file.
    h.names = vec!["shop".into(), "shop-x".into()];
    h.write_config(&Extra::default());
    assert_eq!(code(&h.once().await), 0);
    let victim = h.trust.join("shop-x-international.crt");
    let victim_bytes = std::fs::read(&victim).unwrap();
    let before = contents(&h.trust);

    h.sim
        .set_categories(&h.id(0), &["international", "x-international"]);
    let out = h.once().await;
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    assert_eq!(std::fs::read(&victim).unwrap(), victim_bytes);
    assert_eq!(contents(&h.trust), before);
    // Both entries fail, each error naming the other.
    let text = stdout(&out);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("shop-x-international.crt"))
        .collect();
    assert!(
        lines.iter().any(|l| l.starts_with("shop/x-international")
            && l.contains("failed")
            && l.contains(&h.id(1))),
        "{text}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("shop-x/international")
            && l.contains("failed")
            && l.contains(&h.id(0))),
        "{text}"
    );

    // And while shop-x fails, shop still cannot take the name.
    h.sim.set_fault(
        &h.id(1),
        certsync_sim::Fault::ApiStatus {
            status: 500,
            times: None,
        },
    );
    let out = h.once().await;
    assert_eq!(code(&out), 1);
    assert_eq!(std::fs::read(&victim).unwrap(), victim_bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trust_folder_swapped_for_a_symlink_while_idle_is_never_written_through() {
    let h = Harness::new(1).await;
    let port = h.with_server(&Extra::default());
    let mut d = Running::start(&h.config, &["run"]);
    d.passed().await;
    let file = h.file(0);
    let original = std::fs::read(&file).unwrap();

    // A neighbour who can write the parent folder moves the folder away and puts a symlink
    // to a folder of theirs in its place; then a rotation needs a write.
    let elsewhere = h.tmp.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let moved = h.tmp.path().join("trust.moved");
    std::fs::rename(&h.trust, &moved).unwrap();
    symlink(&elsewhere, &h.trust).unwrap();
    h.sim.rotate(&h.id(0), "international");
    d.signal(Signal::USR1);
    d.passed().await;

    assert_eq!(
        std::fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "certsync wrote into the symlink's target"
    );
    assert_eq!(
        std::fs::read(moved.join(file.file_name().unwrap())).unwrap(),
        original,
        "certsync wrote the folder it no longer names"
    );
    let (status, body) = get(port, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not the folder certsync opened"), "{body}");
    assert!(body.contains(&h.trust.display().to_string()), "{body}");
    let (_, metrics) = get(port, "/metrics").await;
    assert!(
        metrics.contains("certsync_store_errors_total{reason=\"folder_moved\"}"),
        "{metrics}"
    );
    assert_eq!(d.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_place_mode_refuses_a_hard_linked_file_instead_of_writing_through_it() {
    let h = Harness::with(
        1,
        Extra {
            trust: "write_mode = \"in-place\"",
            ..Extra::default()
        },
    )
    .await;
    assert_eq!(code(&h.once().await), 0);
    let file = h.file(0);
    // Someone replaces the managed file with a hard link to a file outside the folder.
    let outside = h.tmp.path().join("outside.conf");
    std::fs::write(&outside, "precious\n").unwrap();
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::remove_file(&file).unwrap();
    std::fs::hard_link(&outside, &file).unwrap();
    h.sim.rotate(&h.id(0), "international");

    let out = h.once().await;
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "precious\n");
    assert_eq!(
        std::fs::metadata(&outside).unwrap().permissions().mode() & 0o7777,
        0o600,
        "the outside file's mode changed"
    );
    assert!(stdout(&out).contains("hard links"), "{}", stdout(&out));
    assert_eq!(std::fs::metadata(&file).unwrap().nlink(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trust_folder_error_that_keeps_failing_shows_in_readyz_status_and_metrics() {
    let h = Harness::new(1).await;
    let port = h.with_server(&Extra::default());
    assert_eq!(code(&h.once().await), 0);
    // The hash file of the CA replaced by a symlink to a file elsewhere.
    let hash = std::fs::read_dir(&h.trust)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "0"))
        .expect("a hash file");
    let target = h.tmp.path().join("planted.pem");
    std::fs::copy(&hash, &target).unwrap();
    std::fs::remove_file(&hash).unwrap();
    symlink(&target, &hash).unwrap();

    let mut d = Running::start(&h.config, &["run"]);
    d.passed().await;
    let (status, body) = get(port, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(&hash.display().to_string()), "{body}");
    let (_, status_json) = get(port, "/status").await;
    let status_doc: serde_json::Value = serde_json::from_str(&status_json).unwrap();
    let errors = status_doc["store_errors"].as_array().expect("store_errors");
    assert!(
        errors
            .iter()
            .any(|e| e.as_str().unwrap().contains(&hash.display().to_string())),
        "{status_json}"
    );
    let (_, metrics) = get(port, "/metrics").await;
    assert!(
        metrics.contains("certsync_store_errors_total{reason=\"not_regular_file\"} 1"),
        "{metrics}"
    );
    // Still failing at the next pass: still reported, and counted again.
    d.signal(Signal::USR1);
    d.passed().await;
    assert_eq!(get(port, "/readyz").await.0, 503);
    let (_, metrics) = get(port, "/metrics").await;
    assert!(
        metrics.contains("certsync_store_errors_total{reason=\"not_regular_file\"} 2"),
        "{metrics}"
    );
    // Fixed by hand: ready again after the next pass.
    std::fs::remove_file(&hash).unwrap();
    d.signal(Signal::USR1);
    d.passed().await;
    let (status, body) = get(port, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert!(hash.is_file() && !hash.is_symlink());
    assert_eq!(
        std::fs::read(&target).unwrap(),
        std::fs::read(&hash).unwrap()
    );
    assert_eq!(d.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_are_told_which_files_were_written_and_which_removed() {
    let h = Harness::with(
        2,
        Extra {
            no_hook: true,
            ..Extra::default()
        },
    )
    .await;
    let log = h.tmp.path().join("split.log");
    let hook = format!(
        "\n[[hook]]\nname = \"split\"\ncommand = [\"/bin/sh\", \"-c\", \"printf 'W=%s\\\\nR=%s\\\\n--\\\\n' \\\"$CERTSYNC_WRITTEN_FILES\\\" \\\"$CERTSYNC_REMOVED_FILES\\\" >> {}\"]\n",
        log.display()
    );
    let extra = Extra {
        no_hook: true,
        tail: hook,
        ..Extra::default()
    };
    h.write_config(&extra);
    assert_eq!(code(&h.once().await), 0);
    // inst1 leaves the config; after UNPRODUCED_PASSES passes its file goes.
    let good = std::fs::read_to_string(&h.config).unwrap();
    let cut = good
        .find(&format!("\n[[instance]]\nid = \"{}\"", h.id(1)))
        .unwrap();
    let end = cut + good[cut + 1..].find("\n[[").unwrap() + 1;
    std::fs::write(&h.config, format!("{}{}", &good[..cut], &good[end..])).unwrap();
    for _ in 0..certsync::store::UNPRODUCED_PASSES {
        assert_eq!(code(&h.once().await), 0);
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let runs: Vec<&str> = text.split("--\n").filter(|r| !r.is_empty()).collect();
    assert_eq!(runs.len(), 2, "{text}");
    assert!(runs[0].contains(&h.file(1).display().to_string()), "{text}");
    let (written, removed) = runs[1].split_once("\nR=").expect("both variables");
    let gone = h.file(1).display().to_string();
    assert!(removed.lines().any(|l| l == gone), "{}", runs[1]);
    assert!(!written.contains(&gone), "{}", runs[1]);
    assert!(written.contains("ca-bundle.crt"), "{}", runs[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_that_never_expires_syncs_and_the_other_instances_with_it() {
    let h = Harness::new(2).await;
    // RFC 5280's "no well-defined expiration": notAfter 99991231235959Z.
    let forever = time::macros::datetime!(9999-12-31 23:59:59 UTC);
    h.sim.rotate_until(&h.id(0), "international", forever);
    let port = h.with_server(&Extra::default());
    let out = h.once().await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(
        std::fs::read_to_string(h.file(0)).unwrap(),
        h.expected_pem(0)
    );
    assert_eq!(
        std::fs::read_to_string(h.file(1)).unwrap(),
        h.expected_pem(1)
    );
    assert!(
        stdout(&out).contains("notAfter=9999-12-31T23:59:59Z"),
        "{}",
        stdout(&out)
    );

    // The daemon too: its status, metrics and schedule handle the date.
    let mut d = Running::start(&h.config, &["run"]);
    d.passed().await;
    let (status, body) = get(port, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    let (_, status_json) = get(port, "/status").await;
    assert!(
        status_json.contains("9999-12-31T23:59:59Z"),
        "{status_json}"
    );
    let (_, metrics) = get(port, "/metrics").await;
    assert!(
        metrics.contains(&format!(
            "certsync_cert_not_after_timestamp_seconds{{instance=\"inst0\",category=\"international\"}} {}",
            forever.unix_timestamp()
        )),
        "{metrics}"
    );
    // A rotation away from it keeps the old CA in the overlap with its far notAfter.
    h.sim.rotate(&h.id(0), "international");
    d.signal(Signal::USR1);
    d.passed().await;
    assert_eq!(get(port, "/healthz").await.0, 200);
    assert_eq!(d.stop().await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_lists_the_managed_files_a_new_config_would_no_longer_produce() {
    let h = Harness::new(3).await;
    assert_eq!(code(&h.once().await), 0);
    let out = h.certsync(&["check"]).await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert!(
        stdout(&out).contains("still produces every managed file"),
        "{}",
        stdout(&out)
    );

    // inst1 renamed, inst2's id mistyped: the rename leaves a file behind, the typo does not
    // (the name still maps to its file, so it is kept while the instance fails).
    let good = std::fs::read_to_string(&h.config).unwrap();
    let id = h.id(2);
    let edited = good
        .replace("name = \"inst1\"", "name = \"renamed\"")
        .replace(&id, &format!("{}X", &id[..id.len() - 1]));
    std::fs::write(&h.config, edited).unwrap();
    let out = h.certsync(&["check"]).await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let text = stdout(&out);
    assert!(
        text.contains("would no longer produce 1 managed file(s), removed after 3 passes"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{} (instance {}, category international)",
            h.file(1).display(),
            h.id(1)
        )),
        "{text}"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.contains(&h.file(2).display().to_string()) && l.contains("(instance ")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_lines_name_their_instance_and_once_promises_no_retry() {
    let h = Harness::new(2).await;
    h.sim.set_fault(
        &h.id(1),
        certsync_sim::Fault::ApiStatus {
            status: 404,
            times: None,
        },
    );
    let out = h.once().await;
    assert_eq!(code(&out), 1);
    // `once` exits after its pass: it must not say the instance "will be retried".
    assert!(!stderr(&out).contains("retried"), "{}", stderr(&out));

    let mut d = Running::start(&h.config, &["run"]);
    let line = d.wait_for("instance will be retried").await;
    assert!(line.contains("instance=\"inst1\""), "{line}");
    assert_eq!(d.stop().await, Some(0));
}
