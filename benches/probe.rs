//! Benchmark: what an endpoint probe (SPEC 13) costs. 1,000 endpoints (one local TLS server
//! behind 1,000 names in the probes' view: the same address probed 1,000 times) probed as the
//! verifier does, 16 at a time, against a CA of the instance: the round's time, the time per
//! probe, and the process's peak RSS before and after (from /proc/self/status; the round
//! holds every result, as the verifier does). Run: `cargo bench --bench probe` (figures, not
//! assertions); `cargo test --benches` runs 20 probes.

use std::sync::Arc;
use std::time::Instant;

use certsync::endpoint::Endpoint;
use certsync::verify::{Anchor, Outcome, probe};
use futures_util::StreamExt;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let n: usize = if quick { 20 } else { 1_000 };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        // A CA and a leaf for 127.0.0.1, served by a rustls server on loopback.
        let mut ca_params = CertificateParams::default();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "bench CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let mut leaf_params = CertificateParams::default();
        leaf_params.subject_alt_names = vec![SanType::IpAddress("127.0.0.1".parse().unwrap())];
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = leaf_params
            .signed_by(&leaf_key, &Issuer::from_params(&ca_params, &ca_key))
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
                    }
                });
            }
        });
        let anchors = Arc::new(vec![Anchor {
            der: CertificateDer::from(ca.der().to_vec()),
            sha256: String::new(),
        }]);
        let endpoint = Endpoint::parse(&format!("127.0.0.1:{port}")).unwrap();
        let before = rss_kib("VmRSS:");
        let started = Instant::now();
        let results: Vec<_> = futures_util::stream::iter(0..n)
            .map(|_| {
                let (endpoint, anchors) = (endpoint.clone(), anchors.clone());
                async move {
                    probe(
                        &endpoint,
                        &anchors,
                        std::time::Duration::from_secs(5),
                        false,
                    )
                    .await
                }
            })
            .buffered(certsync::daemon::verifier::PROBE_CONCURRENCY)
            .collect()
            .await;
        let took = started.elapsed();
        let verified = results
            .iter()
            .filter(|r| r.outcome == Outcome::Verified)
            .count();
        let (after, peak) = (rss_kib("VmRSS:"), rss_kib("VmHWM:"));
        println!(
            "probe benchmark (2-core machine, one rustls server on loopback, {} at a time)",
            certsync::daemon::verifier::PROBE_CONCURRENCY
        );
        println!(
            "{n} probes: {:.0} ms, {:.2} ms per probe (both ends on this machine), {verified} verified; \
             RSS {:.1} MiB before, {:.1} MiB after, peak {:.1} MiB; {:.1} KiB per endpoint held",
            took.as_secs_f64() * 1e3,
            took.as_secs_f64() * 1e3 / n as f64,
            before as f64 / 1024.0,
            after as f64 / 1024.0,
            peak as f64 / 1024.0,
            after.saturating_sub(before) as f64 / n as f64
        );
        assert_eq!(verified, n, "every probe verifies");
    });
}
