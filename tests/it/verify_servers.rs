//! Endpoint verification (SPEC 13) against real database servers from Debian's packages,
//! started on loopback with certificates issued at test time by the simulator's instance CA:
//! `redis-server` with TLS 1.3 only (as GeminiDB for Redis serves it) and `influxd` with
//! HTTPS. Each time the real client (`redis-cli --tls --cacert`, `curl --cacert`) connects
//! with the instance's file too, so "verified" means what a client gets. A rotation is
//! driven by that evidence: the old CA outlives `rotation_overlap` while redis still serves
//! its chain, and leaves once redis serves the new one.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::common::*;

/// A server process, killed on drop.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// `redis-server` on `port`, TLS only and TLS 1.3 only, serving `cert`/`key`.
async fn redis(dir: &Path, port: u16, cert: &str, key: &str, ca: &Path) -> Daemon {
    let cert = write(dir, "redis.crt", cert);
    let key = write(dir, "redis.key", key);
    let child = Command::new("redis-server")
        .current_dir(dir)
        .args(["--port", "0", "--bind", "127.0.0.1"])
        .args(["--tls-port", &port.to_string()])
        .args(["--tls-cert-file", &cert, "--tls-key-file", &key])
        .arg("--tls-ca-cert-file")
        .arg(ca)
        .args(["--tls-auth-clients", "no", "--tls-protocols", "TLSv1.3"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn redis-server (Debian's redis-server)");
    wait_listening(port).await;
    Daemon(child)
}

fn redis_ping(port: u16, cacert: &Path) -> std::process::Output {
    Command::new("redis-cli")
        .args(["--tls", "--cacert"])
        .arg(cacert)
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "ping"])
        .stdin(Stdio::null())
        .output()
        .expect("run redis-cli")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_13_redis_serving_the_instances_chain_verifies_and_redis_cli_connects_with_the_file()
{
    let h = Harness::new(1).await;
    let id = h.id(0);
    let (cert, key) = h
        .sim
        .issue_server_cert(&id, "international", &["127.0.0.1"]);
    let port = free_port();
    let _redis = redis(h.tmp.path(), port, &cert, &key, &h.sim.ca_file()).await;
    let http = h.with_endpoint(Some(&format!("127.0.0.1:{port}")), "");
    let mut d = Running::start(&h.config, &["run"]);
    d.passed().await;
    d.wait_for("endpoint verified").await;
    let status = first_endpoint_status(http).await;
    assert_eq!(status["verified"], true, "{status}");
    assert_eq!(
        status["anchor"],
        h.sim.ca(&id, "international").sha256_hex.as_str()
    );
    let ping = redis_ping(port, &h.file(0));
    assert_eq!(
        String::from_utf8_lossy(&ping.stdout).trim(),
        "PONG",
        "{ping:?}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_serving_a_chain_the_api_never_handed_out_is_reported_and_clients_fail_too() {
    let h = Harness::new(1).await;
    let stranger = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let stranger_ca = h.tmp.path().join("stranger.pem");
    std::fs::write(&stranger_ca, stranger.cert.pem()).unwrap();
    let port = free_port();
    let _redis = redis(
        h.tmp.path(),
        port,
        &stranger.cert.pem(),
        &stranger.signing_key.serialize_pem(),
        &stranger_ca,
    )
    .await;
    let http = h.with_endpoint(Some(&format!("127.0.0.1:{port}")), "");
    let mut d = Running::start(&h.config, &["run"]);
    d.passed().await;
    d.wait_for("endpoint disagrees with the trust folder").await;
    let status = first_endpoint_status(http).await;
    assert_eq!(status["verified"], false, "{status}");
    assert_eq!(status["result"], "unknown_issuer", "{status}");
    // What the probe says is what a client gets.
    let ping = redis_ping(port, &h.file(0));
    assert_ne!(
        String::from_utf8_lossy(&ping.stdout).trim(),
        "PONG",
        "{ping:?}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_influxdb_serving_https_with_the_instances_chain_verifies_and_curl_connects() {
    let h = Harness::new(1).await;
    let id = h.id(0);
    let (cert, key) = h
        .sim
        .issue_server_cert(&id, "international", &["127.0.0.1"]);
    let dir = h.tmp.path().join("influx");
    std::fs::create_dir_all(&dir).unwrap();
    let cert = write(&dir, "influx.crt", &cert);
    let key = write(&dir, "influx.key", &key);
    let (port, rpc) = (free_port(), free_port());
    let conf = format!(
        "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n\
         [meta]\n  dir = \"{d}/meta\"\n\
         [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n\
         [http]\n  bind-address = \"127.0.0.1:{port}\"\n  https-enabled = true\n\
         https-certificate = \"{cert}\"\n  https-private-key = \"{key}\"\n\
         [monitor]\n  store-enabled = false\n",
        d = dir.display()
    );
    let conf = write(&dir, "influxdb.conf", &conf);
    let child = Command::new("influxd")
        .args(["-config", &conf])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn influxd (Debian's influxdb)");
    let _influx = Daemon(child);
    wait_listening(port).await;
    let http = h.with_endpoint(Some(&format!("127.0.0.1:{port}")), "");
    let mut d = Running::start(&h.config, &["run"]);
    d.passed().await;
    d.wait_for("endpoint verified").await;
    let status = first_endpoint_status(http).await;
    assert_eq!(status["verified"], true, "{status}");
    let ping = curl_cacert(&h.file(0), &format!("https://127.0.0.1:{port}/ping"));
    assert!(ping.status.success(), "{ping:?}");
    d.stop().await;
}

/// The instance file's certificates, as normalised PEM blocks in file order.
fn pems(file: &Path) -> Vec<String> {
    let bytes = std::fs::read(file).unwrap();
    certsync::cert::read_certs_lenient(&bytes)
        .unwrap()
        .iter()
        .map(|c| certsync::cert::encode_pem(&c.der))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_keeps_the_old_ca_while_redis_serves_its_chain_and_drops_it_once_redis_moved() {
    let h = Harness::new(1).await;
    let id = h.id(0);
    let (cert, key) = h.server_cert(0);
    let old = h.expected_pem(0);
    let port = free_port();
    let mut redis_old = Some(redis(h.tmp.path(), port, &cert, &key, &h.sim.ca_file()).await);
    let overlap = Duration::from_secs(2);
    let http = h.with_endpoint_extra(
        Some(&format!("127.0.0.1:{port}")),
        &Extra {
            sync: "rotation_overlap = \"2s\"",
            tail: "[verify]\ninterval = \"1s\"\n".to_string(),
            ..Extra::default()
        },
    );
    let pong = |what: &str| {
        let ping = redis_ping(port, &h.file(0));
        assert_eq!(
            String::from_utf8_lossy(&ping.stdout).trim(),
            "PONG",
            "{what}: {ping:?}"
        );
    };
    let mut d = Running::start(&h.config, &["run"]);
    d.passed().await;
    d.wait_for("endpoint verified").await;
    pong("first sync");

    // The cloud rotates; redis still serves the old chain.
    h.sim.rotate(&id, "international");
    let new = h.expected_pem(0);
    let rotated = Instant::now();
    d.signal(Signal::USR1);
    d.passed().await;
    assert_eq!(pems(&h.file(0)), [new.clone(), old.clone()]);
    pong("inside rotation_overlap");

    // The overlap ends (the daemon passes then): the old CA stays, redis-cli still connects.
    d.passed().await;
    assert!(rotated.elapsed() >= overlap, "{:?}", rotated.elapsed());
    assert_eq!(
        pems(&h.file(0)),
        [new.clone(), old.clone()],
        "the old CA left while redis still serves its chain:\n{}",
        d.log()
    );
    pong("after rotation_overlap, redis on the old chain");
    let status = first_endpoint_status(http).await;
    assert_eq!(status["verified"], true, "{status}");

    // redis moves to the new chain: the next round shows it, and a pass drops the old CA.
    drop(redis_old.take());
    let (cert, key) = h.server_cert(0);
    let _redis_new = redis(h.tmp.path(), port, &cert, &key, &h.sim.ca_file()).await;
    d.wait_for("every endpoint now anchors at a current CA")
        .await;
    d.passed().await;
    assert_eq!(pems(&h.file(0)), [new], "{}", d.log());
    pong("redis on the new chain, the old CA dropped");
    let status = first_endpoint_status(http).await;
    assert_eq!(
        status["anchor"],
        h.sim.ca(&id, "international").sha256_hex.as_str(),
        "{status}"
    );
    d.stop().await;
}
