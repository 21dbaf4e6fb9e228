//! End-to-end: the real `certsync` binary against the simulator over TLS on loopback, one pass
//! at a time (`once`, `check`, `inspect`).

use std::time::Duration;

use crate::common::*;
use certsync_sim::{BadContent, Fault};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sync_writes_every_file_and_runs_the_hook_once() {
    let h = Harness::new(3).await;
    let out = h.once().await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let text = stdout(&out);
    for i in 0..3 {
        let file = h.file(i);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), h.expected_pem(i));
        assert_eq!(
            openssl_fingerprint(&file),
            h.sim.ca(&h.id(i), "international").sha256_hex
        );
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("inst{i}/international ")))
            .unwrap_or_else(|| panic!("no line for inst{i} in {text}"));
        assert!(line.contains(&file.display().to_string()), "{line}");
        assert!(line.contains(" updated "), "{line}");
        assert!(line.contains("notAfter=20"), "{line}");
    }
    assert!(h.trust.join(".certsync-manifest.json").exists());
    let bundle = std::fs::read_to_string(h.trust.join("ca-bundle.crt")).unwrap();
    assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 3);
    let runs = h.hook_runs();
    assert_eq!(runs.len(), 1, "{runs:?}");
    for i in 0..3 {
        assert!(
            runs[0].contains(&h.file(i).display().to_string()),
            "{}",
            runs[0]
        );
    }
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(h.file(0)).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o644);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_with_nothing_changed_writes_nothing_and_runs_no_hook() {
    let h = Harness::new(2).await;
    assert_eq!(code(&h.once().await), 0);
    let before: Vec<_> = (0..2).map(|i| mtime(&h.file(i))).collect();
    let bundle_before = mtime(&h.trust.join("ca-bundle.crt"));
    let out = h.once().await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert!(
        stdout(&out)
            .lines()
            .filter(|l| l.contains(" unchanged "))
            .count()
            == 2,
        "{}",
        stdout(&out)
    );
    let after: Vec<_> = (0..2).map(|i| mtime(&h.file(i))).collect();
    assert_eq!(before, after);
    assert_eq!(bundle_before, mtime(&h.trust.join("ca-bundle.crt")));
    assert_eq!(
        h.hook_runs().len(),
        1,
        "the hook ran again without a change"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_the_old_ca_during_the_overlap() {
    let h = Harness::new(2).await;
    assert_eq!(code(&h.once().await), 0);
    let old = h.expected_pem(0);
    h.sim.rotate(&h.id(0), "international");
    let new = h.expected_pem(0);
    assert_ne!(old, new);
    let out = h.once().await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(
        std::fs::read_to_string(h.file(0)).unwrap(),
        format!("{new}{old}")
    );
    let bundle = std::fs::read_to_string(h.trust.join("ca-bundle.crt")).unwrap();
    assert!(bundle.contains(&new) && bundle.contains(&old));
    assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 3);
    let runs = h.hook_runs();
    assert_eq!(runs.len(), 2);
    assert!(runs[1].contains(&h.file(0).display().to_string()));
    assert!(
        !runs[1].contains(&h.file(1).display().to_string()),
        "{}",
        runs[1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_without_overlap_replaces_at_once() {
    let h = Harness::with(
        1,
        Extra {
            sync: "rotation_overlap = \"0s\"",
            ..Extra::default()
        },
    )
    .await;
    assert_eq!(code(&h.once().await), 0);
    h.sim.rotate(&h.id(0), "international");
    assert_eq!(code(&h.once().await), 0);
    assert_eq!(
        std::fs::read_to_string(h.file(0)).unwrap(),
        h.expected_pem(0)
    );
}

/// Syncs two instances, then breaks instance 0 with `fault` and rotates its CA: the pass must
/// fail (exit 1) naming the reason, keep instance 0's file byte for byte, leave instance 1 as
/// it is, and run no hook. Returns the output for further checks.
async fn fault_keeps_last_good(fault: Fault, expect: &str) -> std::process::Output {
    let h = Harness::with(
        2,
        Extra {
            cloud: "",
            ..Extra::default()
        },
    )
    .await;
    assert_eq!(code(&h.once().await), 0);
    let before = std::fs::read(h.file(0)).unwrap();
    let before_mtime = mtime(&h.file(0));
    h.sim.rotate(&h.id(0), "international");
    h.sim.set_fault(&h.id(0), fault.clone());
    let out = h.once().await;
    assert_eq!(code(&out), 1, "{fault:?}: {}", all_output(&out));
    assert_eq!(
        std::fs::read(h.file(0)).unwrap(),
        before,
        "{fault:?} changed the file"
    );
    assert_eq!(mtime(&h.file(0)), before_mtime);
    let text = stdout(&out);
    let line = text.lines().find(|l| l.starts_with("inst0/")).unwrap();
    assert!(line.contains("failed: "), "{line}");
    assert!(
        line.contains(expect),
        "{fault:?}: expected {expect:?} in {line}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("inst1/international ") && l.contains(" unchanged ")),
        "{text}"
    );
    assert_eq!(
        h.hook_runs().len(),
        1,
        "{fault:?}: a hook ran after a failed pass"
    );
    let all = all_output(&out);
    assert!(
        !all.contains("Signature="),
        "{fault:?}: a link query leaked: {all}"
    );
    assert!(!all.contains(&h.sim.token()), "{fault:?}: the token leaked");
    out
}

macro_rules! fault_test {
    ($name:ident, $fault:expr, $expect:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            fault_keeps_last_good($fault, $expect).await;
        }
    };
}

fault_test!(
    fault_api_500,
    Fault::ApiStatus {
        status: 500,
        times: None
    },
    "HTTP 500"
);
fault_test!(
    fault_api_404,
    Fault::ApiStatus {
        status: 404,
        times: None
    },
    "HTTP 404"
);
fault_test!(
    fault_429_forever,
    Fault::RateLimited {
        retry_after_secs: 0,
        times: None
    },
    "HTTP 429"
);
fault_test!(fault_truncated_body, Fault::TruncatedDownload, "download");
fault_test!(
    fault_oversize_body,
    Fault::OversizeDownload {
        bytes: 2 * 1024 * 1024
    },
    "max_download_bytes"
);
fault_test!(
    fault_html_page,
    Fault::Content {
        content: BadContent::Html
    },
    "text_outside_pem"
);
fault_test!(
    fault_ca_with_private_key,
    Fault::Content {
        content: BadContent::CaWithPrivateKey
    },
    "forbidden_pem_block"
);
fault_test!(
    fault_not_a_ca,
    Fault::Content {
        content: BadContent::NotCa
    },
    "not_ca"
);
fault_test!(
    fault_expired_ca,
    Fault::Content {
        content: BadContent::Expired
    },
    "expired"
);
fault_test!(
    fault_garbage_json,
    Fault::Content {
        content: BadContent::GarbageJson
    },
    "not the documented JSON"
);
fault_test!(
    fault_empty_cert_list,
    Fault::Content {
        content: BadContent::EmptyCerts
    },
    "listed no certificate"
);
fault_test!(
    fault_redirect_to_other_host,
    Fault::RedirectOtherHost,
    "not in sync.allowed_download_hosts"
);
fault_test!(
    fault_redirect_loop,
    Fault::RedirectLoop,
    "more than 3 redirects"
);
fault_test!(
    fault_expired_link,
    Fault::ExpiredLink,
    "HTTP 403 AccessDenied"
);
fault_test!(fault_plain_http_link, Fault::PlainHttpLink, "only https");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_slow_api_times_out_without_holding_back_others() {
    let h = Harness::with(
        3,
        Extra {
            cloud: "timeout = \"1s\"",
            ..Extra::default()
        },
    )
    .await;
    // timeout appears twice otherwise: rewrite the config with only the short one.
    let text = std::fs::read_to_string(&h.config)
        .unwrap()
        .replace("timeout = \"5s\"\n", "");
    std::fs::write(&h.config, text).unwrap();
    h.sim.set_fault(&h.id(0), Fault::SlowApi { millis: 4000 });
    let out = h.once().await;
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    assert!(!h.file(0).exists());
    assert!(h.file(1).exists() && h.file(2).exists());
    assert!(stdout(&out).contains("timed out"), "{}", stdout(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_instance_does_not_stop_another_from_updating() {
    let h = Harness::new(2).await;
    assert_eq!(code(&h.once().await), 0);
    let kept = std::fs::read(h.file(0)).unwrap();
    h.sim.rotate(&h.id(0), "international");
    h.sim.rotate(&h.id(1), "international");
    h.sim.set_fault(
        &h.id(0),
        Fault::Content {
            content: BadContent::CaWithPrivateKey,
        },
    );
    let out = h.once().await;
    assert_eq!(code(&out), 1);
    assert_eq!(std::fs::read(h.file(0)).unwrap(), kept);
    assert!(
        std::fs::read_to_string(h.file(1))
            .unwrap()
            .starts_with(&h.expected_pem(1))
    );
    let runs = h.hook_runs();
    assert_eq!(runs.len(), 2, "the hook runs for the instance that changed");
    assert!(runs[1].contains(&h.file(1).display().to_string()));
    assert!(!runs[1].contains(&h.file(0).display().to_string()));
    // The bundle still holds instance 0's last good CA.
    let bundle = std::fs::read_to_string(h.trust.join("ca-bundle.crt")).unwrap();
    assert!(bundle.contains(std::str::from_utf8(&kept).unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_brief_429_is_retried_within_the_pass_honouring_retry_after() {
    let h = Harness::new(1).await;
    h.sim.set_fault(
        &h.id(0),
        Fault::RateLimited {
            retry_after_secs: 1,
            times: Some(1),
        },
    );
    let started = std::time::Instant::now();
    let out = h.once().await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was not honoured"
    );
    assert!(h.file(0).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_brief_500_is_retried_within_the_pass() {
    let h = Harness::new(1).await;
    h.sim.set_fault(
        &h.id(0),
        Fault::ApiStatus {
            status: 503,
            times: Some(2),
        },
    );
    let out = h.once().await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_fails_naming_the_method_and_code_and_never_shows_the_token() {
    let h = Harness::new(2).await;
    std::fs::write(&h.token_file, "MIIwrongTOKENvalue0123456789").unwrap();
    let out = h.once().await;
    assert_eq!(code(&out), 1);
    let all = all_output(&out);
    assert!(all.contains("auth method token"), "{all}");
    assert!(all.contains("APIGW.0301"), "{all}");
    assert!(!all.contains("MIIwrongTOKENvalue0123456789"), "{all}");
    assert!(!h.file(0).exists());
    assert!(h.hook_runs().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_exits_78_naming_the_key() {
    let h = Harness::new(1).await;
    let text = std::fs::read_to_string(&h.config)
        .unwrap()
        .replace("concurrency = 4", "concurrency = 0\nbogus = 1");
    std::fs::write(&h.config, text).unwrap();
    for args in [&["once"][..], &["run"], &["check"]] {
        let out = h.certsync(args).await;
        assert_eq!(code(&out), 78, "{args:?}: {}", all_output(&out));
        let err = stderr(&out);
        assert!(err.contains("sync.concurrency"), "{err}");
        assert!(err.contains("sync.bogus"), "{err}");
    }
    assert!(
        !h.trust.exists(),
        "a bad config must not create the trust folder"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_output_even_at_trace_level() {
    let h = Harness::new(2).await;
    h.sim.set_fault(&h.id(1), Fault::ExpiredLink);
    let out = h.certsync_env(&["once"], &[("RUST_LOG", "trace")]).await;
    let all = all_output(&out);
    assert!(
        all.lines().count() > 20,
        "trace logging did not happen: {all}"
    );
    assert!(!all.contains(&h.sim.token()), "token in output");
    for needle in ["Signature=", "AccessKeyId=", "Expires="] {
        assert!(!all.contains(needle), "link query {needle} in output");
    }
    let out = h
        .certsync_env(&["once", "--dry-run"], &[("RUST_LOG", "trace")])
        .await;
    let all = all_output(&out);
    assert!(!all.contains(&h.sim.token()) && !all.contains("Signature="));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_writes_nothing_and_runs_no_hook() {
    let h = Harness::new(2).await;
    let out = h.certsync(&["once", "--dry-run"]).await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert!(!h.trust.exists(), "dry run created the trust folder");
    assert!(h.hook_runs().is_empty());
    let text = stdout(&out);
    assert!(text.contains("would write"), "{text}");
    // What would change is worded as such (issue 8: it said "updated").
    assert_eq!(
        text.lines()
            .filter(|l| l.contains(" would update "))
            .count(),
        2,
        "{text}"
    );
    assert!(!text.contains(" updated "), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_prints_the_plan_and_online_lists_certificates() {
    let h = Harness::new(2).await;
    let out = h.certsync(&["check"]).await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let text = stdout(&out);
    assert!(text.contains(&h.sim.endpoint()), "{text}");
    assert!(text.contains("inst0") && text.contains("token"), "{text}");
    assert!(!h.trust.exists(), "check wrote the trust folder");
    assert!(text.contains("no CA written yet"), "{text}");
    let out = h.certsync(&["check", "--online"]).await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let text = stdout(&out);
    assert!(text.contains("international"), "{text}");
    assert!(!text.contains("Signature="), "{text}");
    assert!(!h.trust.exists());
    h.sim.set_fault(
        &h.id(1),
        Fault::ApiStatus {
            status: 404,
            times: None,
        },
    );
    let out = h.certsync(&["check", "--online"]).await;
    assert_eq!(code(&out), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_reports_what_openssl_reports() {
    let h = Harness::new(2).await;
    assert_eq!(code(&h.once().await), 0);
    let out = h
        .certsync(&["inspect", "--json", h.trust.to_str().unwrap()])
        .await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let items: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    // Two instance files + bundle (2) + two hash files.
    assert_eq!(items.len(), 6, "{items:#?}");
    for item in &items {
        let path = std::path::Path::new(item["path"].as_str().unwrap());
        if path.file_name().unwrap() == "ca-bundle.crt" {
            continue;
        }
        let hash = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-subject_hash", "-in"])
            .arg(path)
            .output()
            .unwrap();
        assert_eq!(
            item["subject_hash"].as_str().unwrap(),
            String::from_utf8_lossy(&hash.stdout).trim()
        );
        assert_eq!(item["sha256"].as_str().unwrap(), openssl_fingerprint(path));
        assert_eq!(item["is_ca"], serde_json::Value::Bool(true));
        for key in ["subject", "issuer", "serial", "not_before", "not_after"] {
            assert!(item[key].is_string(), "{key}");
        }
    }
    let text = h.certsync(&["inspect", h.file(0).to_str().unwrap()]).await;
    assert_eq!(code(&text), 0);
    assert!(stdout(&text).contains("days left"));
    let junk = h.tmp.path().join("junk.txt");
    std::fs::write(&junk, "hello").unwrap();
    let out = h.certsync(&["inspect", junk.to_str().unwrap()]).await;
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("junk.txt"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_verify_capath_accepts_a_server_cert_from_a_synced_ca() {
    let h = Harness::new(2).await;
    let leaf = h.tmp.path().join("leaf.pem");
    let (cert, _key) = h
        .sim
        .issue_server_cert(&h.id(1), "international", &["db.example.internal"]);
    std::fs::write(&leaf, cert).unwrap();
    let verify = || {
        std::process::Command::new("openssl")
            .args(["verify", "-CApath"])
            .arg(&h.trust)
            .arg(&leaf)
            .output()
            .unwrap()
    };
    std::fs::create_dir_all(&h.trust).unwrap();
    assert!(!verify().status.success(), "verified before the sync");
    assert_eq!(code(&h.once().await), 0);
    let out = verify();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listed_category_gets_its_own_file_and_unknown_ones_pass_through() {
    let h = Harness::new(1).await;
    h.sim
        .set_categories(&h.id(0), &["international", "national", "future-kind"]);
    let out = h.once().await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    for category in ["international", "national", "future-kind"] {
        let file = h.trust.join(format!("inst0-{category}.crt"));
        let want = certsync::cert::encode_pem(&h.sim.ca(&h.id(0), category).der);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), want, "{category}");
    }
    // The API stops listing a category: its file is pruned after UNPRODUCED_PASSES passes
    // without it, and the pass that removes it says so.
    h.sim.set_categories(&h.id(0), &["international"]);
    for _ in 1..certsync::store::UNPRODUCED_PASSES {
        assert_eq!(code(&h.once().await), 0);
        assert!(h.trust.join("inst0-national.crt").exists());
    }
    let out = h.once().await;
    assert_eq!(code(&out), 0);
    let national = h.trust.join("inst0-national.crt");
    assert!(!national.exists());
    assert!(
        stdout(&out).contains(&format!("{} removed", national.display())),
        "{}",
        stdout(&out)
    );
    assert!(h.trust.join("inst0-international.crt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_category_that_makes_an_unusable_file_name_is_refused() {
    // With this template an API category can produce a name shaped like a capath hash file.
    let h = Harness::with(
        1,
        Extra {
            trust: "file_name = \"{category}.0\"",
            ..Extra::default()
        },
    )
    .await;
    h.sim.set_categories(&h.id(0), &["abcdef12"]);
    let out = h.once().await;
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    assert!(
        stdout(&out).contains("from the API gives file name"),
        "{}",
        stdout(&out)
    );
    assert!(!h.trust.join("abcdef12.0").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_with_an_instances_filter_runs_only_when_those_instances_change() {
    let h = Harness::new(2).await;
    let filtered_log = h.tmp.path().join("filtered.log");
    let extra = Extra {
        tail: format!(
            "\n[[hook]]\nname = \"only-inst1\"\ninstances = [\"inst1\"]\ncommand = [\"/bin/sh\", \"-c\", \"echo ran >> {}\"]\n",
            filtered_log.display()
        ),
        ..Extra::default()
    };
    h.write_config(&extra);
    assert_eq!(code(&h.once().await), 0);
    assert_eq!(
        std::fs::read_to_string(&filtered_log)
            .unwrap()
            .lines()
            .count(),
        1
    );
    h.sim.rotate(&h.id(0), "international");
    assert_eq!(code(&h.once().await), 0);
    assert_eq!(
        h.hook_runs().len(),
        2,
        "the unfiltered hook runs on any change"
    );
    assert_eq!(
        std::fs::read_to_string(&filtered_log)
            .unwrap()
            .lines()
            .count(),
        1,
        "filtered hook ran for inst0"
    );
    h.sim.rotate(&h.id(1), "international");
    assert_eq!(code(&h.once().await), 0);
    assert_eq!(
        std::fs::read_to_string(&filtered_log)
            .unwrap()
            .lines()
            .count(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_hook_makes_once_fail() {
    let h = Harness::with(
        1,
        Extra {
            no_hook: true,
            tail: "\n[[hook]]\ncommand = [\"/bin/false\"]\n".into(),
            ..Extra::default()
        },
    )
    .await;
    let out = h.once().await;
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    assert!(
        stdout(&out).contains("hook false: failed"),
        "{}",
        stdout(&out)
    );
    assert!(h.file(0).exists(), "the files are written before hooks run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_an_expired_link_says_the_link_was_refused_and_why() {
    let out = fault_keeps_last_good(Fault::ExpiredLink, "HTTP 403 AccessDenied").await;
    let all = all_output(&out);
    let line = stdout(&out)
        .lines()
        .find(|l| l.starts_with("inst0/"))
        .unwrap()
        .to_owned();
    for part in [
        "/obs/",
        "the download host refused the link",
        "links are short-lived",
        "expired before the download",
        "clock is off",
    ] {
        assert!(line.contains(part), "{part:?} missing: {line}");
    }
    for query in ["Signature=", "Expires=", "AccessKeyId=", "ca.crt?"] {
        assert!(!all.contains(query), "{query} in {all}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_truncated_download_says_how_much_arrived() {
    let out = fault_keeps_last_good(
        Fault::TruncatedDownload,
        "the connection closed before the whole body arrived (",
    )
    .await;
    let all = all_output(&out);
    assert!(!all.contains("docs.rs") && !all.contains("rustls"), "{all}");
    for query in ["Signature=", "Expires=", "AccessKeyId=", "ca.crt?"] {
        assert!(!all.contains(query), "{query} in {all}");
    }
    // "(N of M bytes)": the simulator closes after half of the announced length.
    let line = stdout(&out)
        .lines()
        .find(|l| l.starts_with("inst0/"))
        .unwrap()
        .to_owned();
    let counts = line
        .split("arrived (")
        .nth(1)
        .and_then(|rest| rest.split(" bytes)").next())
        .unwrap_or_else(|| panic!("no byte counts: {line}"));
    let (received, total) = counts
        .split_once(" of ")
        .map(|(r, t)| (r.parse::<u64>().unwrap(), t.parse::<u64>().unwrap()))
        .unwrap_or_else(|| panic!("not 'N of M': {line}"));
    assert!(total > 500, "{line}");
    assert_eq!(received, total / 2, "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_an_answer_with_more_than_64_links_fails_the_instance() {
    let h = Harness::new(2).await;
    let categories: Vec<String> = (0..65).map(|i| format!("cat{i}")).collect();
    let refs: Vec<&str> = categories.iter().map(String::as_str).collect();
    h.sim.set_categories(&h.id(0), &refs);
    let out = h.once().await;
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    let text = stdout(&out);
    // inst0 has no file yet: its line says so (issue 8: it read `inst0/- - failed`).
    let line = text
        .lines()
        .find(|l| l.starts_with("inst0 (no file written yet) failed: "))
        .unwrap_or_else(|| panic!("no line for inst0: {text}"));
    assert!(
        line.contains("the answer lists 65 certificate links, more than the limit of 64"),
        "{line}"
    );
    assert!(h.file(1).exists(), "the other instance must sync");
    let inst0_files = std::fs::read_dir(&h.trust)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("inst0-")
        })
        .count();
    assert_eq!(inst0_files, 0);
    assert_eq!(h.sim.stats().downloads, 1, "nothing of inst0 is downloaded");
}

/// A subject made to forge a log line and colour the terminal.
const HOSTILE_NAME: &str = "evil\n2030-01-01T00:00:00Z ERROR forged line\u{1b}[31mred";

/// One instance whose CA has [`HOSTILE_NAME`] as its common name and a pin it fails, so the
/// subject reaches the logs in the rejection.
async fn hostile_subject_harness() -> Harness {
    let h = Harness::new(1).await;
    h.sim.rotate_named(&h.id(0), "international", HOSTILE_NAME);
    let text = std::fs::read_to_string(&h.config).unwrap().replace(
        "name = \"inst0\"\n",
        &format!("name = \"inst0\"\npin_sha256 = [\"{}\"]\n", "0".repeat(64)),
    );
    std::fs::write(&h.config, text).unwrap();
    h
}

fn assert_no_forged_line(log: &str) {
    assert!(
        log.contains("evil\\n2030-01-01T00:00:00Z ERROR forged line\\u{1b}[31mred"),
        "the subject is not in the log, escaped: {log}"
    );
    assert!(
        !log.contains("\u{1b}[31mred"),
        "a raw ESC from the subject: {log}"
    );
    assert!(
        !log.lines().any(|l| l
            .trim_start_matches('\r')
            .starts_with("2030-01-01T00:00:00Z ERROR forged")),
        "a forged log line: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_subject_with_a_newline_and_esc_is_escaped_in_text_logs() {
    let h = hostile_subject_harness().await;
    let out = h.once().await;
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    let log = stderr(&out);
    assert!(log.contains("not_pinned"), "{log}");
    assert_no_forged_line(&log);
    assert!(
        !log.contains('\u{1b}'),
        "no colours when stderr is not a terminal: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_on_a_terminal_keep_their_colours_and_escape_the_subject() {
    let h = hostile_subject_harness().await;
    // `script` gives certsync a terminal for stderr; stdout (the `once` lines) goes elsewhere.
    let command = format!(
        "'{}' --config '{}' once >/dev/null",
        BIN,
        h.config.display()
    );
    let out = tokio::process::Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run script(1)");
    let log = stdout(&out);
    assert!(log.contains("not_pinned"), "{}", all_output(&out));
    assert!(
        log.contains("\u{1b}[33m"),
        "the WARN level is coloured: {log:?}"
    );
    assert!(
        log.contains("\u{1b}[3mreason\u{1b}[0m\u{1b}[2m=\u{1b}[0m"),
        "field names are styled as by default: {log:?}"
    );
    assert_no_forged_line(&log);
}

/// Runs the binary with stdout a pipe whose reading end is already closed: every write fails
/// with EPIPE at once.
async fn into_closed_pipe(h: &Harness, args: &[&str]) -> std::process::Output {
    let (writer, reader) = tokio::net::unix::pipe::pipe().unwrap();
    drop(reader);
    let writer = writer.into_blocking_fd().unwrap();
    tokio::process::Command::new(BIN)
        .arg("--config")
        .arg(&h.config)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::from(writer))
        .stderr(std::process::Stdio::piped())
        // Not `output()`: tokio's makes stdout a pipe of its own whatever was configured.
        .spawn()
        .unwrap()
        .wait_with_output()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_output_into_a_closed_pipe_ends_quietly() {
    let h = Harness::new(1).await;
    let trust = h.trust.display().to_string();
    for (args, expected) in [
        (&["check"][..], 0),
        (&["check", "--online"], 0),
        (&["once"], 0),
        (&["inspect", trust.as_str()], 0),
        (&["inspect", "--json", trust.as_str()], 0),
        (&["inspect", h.config.to_str().unwrap()], 1),
    ] {
        let out = into_closed_pipe(&h, args).await;
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.contains("Broken pipe"), "{args:?}: {err}");
        assert_eq!(code(&out), expected, "{args:?}: {err}");
    }
    assert!(
        h.file(0).exists(),
        "once did its work although nobody read its output"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_json_prints_one_object_per_instance_file_and_the_failure_of_one() {
    let h = Harness::new(2).await;
    h.sim.set_fault(
        &h.id(1),
        Fault::ApiStatus {
            status: 500,
            times: None,
        },
    );
    let out = h.certsync(&["once", "--json"]).await;
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let of = |name: &str| {
        lines
            .iter()
            .find(|l| l["instance"] == name)
            .unwrap_or_else(|| panic!("no line of {name}: {lines:?}"))
    };
    let ok = of("inst0");
    assert_eq!(ok["status"], "updated", "{ok}");
    assert_eq!(ok["category"], "international");
    assert_eq!(ok["file"], h.file(0).display().to_string().as_str());
    assert!(ok["not_after"].as_str().unwrap().starts_with("20"), "{ok}");
    assert!(ok["error"].is_null());
    let failed = of("inst1");
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["error"].as_str().unwrap().contains("500"),
        "{failed}"
    );

    h.sim.clear_fault(&h.id(1));
    let out = h.certsync(&["once", "--json", "--dry-run"]).await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let text = stdout(&out);
    assert!(text.contains("\"status\":\"would_update\""), "{text}");
    assert!(text.contains("\"status\":\"unchanged\""), "{text}");
}
