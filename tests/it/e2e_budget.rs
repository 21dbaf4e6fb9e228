//! End-to-end: the request budget and the gateway's throttling (SPEC 15): the real `certsync`
//! binary against a simulator that throttles each user (429 `APIG.0308`).

use std::time::{Duration, Instant};

use certsync_sim::RateLimit;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_pass_pauses_the_account_retries_and_still_syncs_every_instance() {
    // The gateway lets this user make 2 requests a second (Retry-After: 1); certsync's own
    // budget is far above that, so the gateway throttles, and each 429 pauses the account.
    let h = Harness::new(6).await;
    h.sim.set_rate_limit(Some(RateLimit {
        per_second: 2,
        retry_after: Some(1),
    }));
    let port = h.with_server(&Extra {
        cloud: "max_requests_per_second = 50",
        ..Extra::default()
    });
    let mut d = Running::start(&h.config, &["run"]);
    d.passed().await;
    for i in 0..6 {
        assert_eq!(
            std::fs::read_to_string(h.file(i)).unwrap_or_default(),
            h.expected_pem(i),
            "instance {i}: {}",
            d.log()
        );
    }
    let throttled = h.sim.stats().throttled;
    assert!(
        throttled >= 1,
        "the gateway never throttled: {:?}",
        h.sim.stats()
    );
    let (_, metrics) = get(port, "/metrics").await;
    assert_eq!(
        metric_sample(
            &metrics,
            "certsync_api_throttled_total",
            "account=\"default\""
        ),
        Some(throttled.to_string()),
        "{metrics}"
    );
    assert!(
        d.log()
            .contains("the API gateway throttled the account (429)"),
        "{}",
        d.log()
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_keeps_to_the_accounts_budget_so_a_gateway_above_it_never_throttles() {
    // The gateway allows 5 a second (burst 5); certsync's budget is 4 a second (burst 4),
    // so with 12 instances, 4 in flight (the harness's concurrency), no request is throttled, and the pass cannot take
    // less than the budget allows: 4 at once, then 8 more at 4 a second.
    let h = Harness::new(12).await;
    h.sim.set_rate_limit(Some(RateLimit {
        per_second: 5,
        retry_after: None,
    }));
    h.write_config(&Extra {
        cloud: "max_requests_per_second = 4",
        ..Extra::default()
    });
    let started = Instant::now();
    let out = h.once().await;
    let took = started.elapsed();
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(h.sim.stats().throttled, 0, "{:?}", h.sim.stats());
    assert_eq!(h.sim.stats().api_requests, 12);
    assert!(took >= Duration::from_millis(1_900), "{took:?}");
    for i in 0..12 {
        assert_eq!(
            std::fs::read_to_string(h.file(i)).unwrap(),
            h.expected_pem(i)
        );
    }
    // The output lists the instances in plan order.
    let names: Vec<String> = stdout(&out)
        .lines()
        .filter_map(|l| l.split('/').next().map(str::to_owned))
        .collect();
    let expected: Vec<String> = (0..12).map(|i| format!("inst{i}")).collect();
    assert_eq!(names, expected);
}
