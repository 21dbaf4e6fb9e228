//! The HTTP server's bounds (SPEC 10): request headers within a timeout, idle kept-alive
//! connections closed, a connection limit, a bounded connection life, graceful shutdown, and
//! the daemon's open-files limit raised so no client can starve the sync of descriptors.
//!
//! The server runs in-process on loopback (`certsync::server::start_with`) and is spoken to
//! over raw TCP, so a test can stop half-way through a request; the limits test runs the real
//! binary.

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use certsync::server::{self, Limits, Shared};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

/// The most any awaited event may take before a test fails (generous: a loaded 2-core box).
const BOUND: Duration = Duration::from_secs(30);

/// Long enough that nothing the test does not wait for can happen during a test.
const LONG: Duration = Duration::from_secs(600);

struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

async fn serve(limits: Limits) -> Server {
    let shared = Arc::new(Shared::default());
    let shutdown = CancellationToken::new();
    let (addr, task) = server::start_with(
        "127.0.0.1:0".parse().unwrap(),
        shared.clone(),
        shutdown.clone(),
        limits,
    )
    .await
    .unwrap();
    Server {
        addr,
        shared,
        shutdown,
        task,
    }
}

fn limits(header_read_timeout: Duration, max_connections: usize, age: Duration) -> Limits {
    Limits {
        header_read_timeout,
        max_connections,
        max_connection_age: age,
    }
}

/// One HTTP/1.1 answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A raw HTTP/1.1 client over one TCP connection.
struct Client {
    stream: BufReader<TcpStream>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        Client {
            stream: BufReader::new(TcpStream::connect(addr).await.unwrap()),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.get_mut().write_all(bytes).await.unwrap();
    }

    /// Sends `GET path` (keep-alive) and reads the answer.
    async fn get(&mut self, path: &str) -> Answer {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: certsync\r\n\r\n").as_bytes())
            .await;
        timeout(BOUND, self.answer())
            .await
            .unwrap_or_else(|_| panic!("no answer to GET {path}"))
    }

    /// Reads one answer (status line, headers, a Content-Length body).
    async fn answer(&mut self) -> Answer {
        let mut line = String::new();
        self.stream.read_line(&mut line).await.unwrap();
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not a status line: {line:?}"));
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.stream.read_line(&mut line).await.unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (name, value) = l.split_once(':').expect("a header line");
            headers.push((name.to_string(), value.trim().to_string()));
        }
        let mut answer = Answer {
            status,
            headers,
            body: String::new(),
        };
        let length: usize = answer
            .header("content-length")
            .expect("a Content-Length")
            .parse()
            .unwrap();
        let mut body = vec![0; length];
        self.stream.read_exact(&mut body).await.unwrap();
        answer.body = String::from_utf8(body).unwrap();
        answer
    }

    /// Waits (up to [`BOUND`]) until the server closes the connection; anything it sends
    /// first (an error answer) is skipped. Returns how long that took.
    async fn closed_by_server(&mut self) -> Duration {
        let start = Instant::now();
        let mut buf = [0u8; 4096];
        let result = timeout(BOUND, async {
            loop {
                match self.stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(
            result.is_ok(),
            "the server kept the connection open for {BOUND:?}"
        );
        start.elapsed()
    }
}

#[tokio::test]
async fn a_request_that_stops_half_way_through_its_request_line_is_closed_after_the_header_timeout()
{
    let timeout = Duration::from_secs(1);
    let s = serve(limits(timeout, 4, LONG)).await;
    let mut c = Client::connect(s.addr).await;
    c.send(b"GET /metr").await;
    let took = c.closed_by_server().await;
    // Not closed for another reason: the header timeout (which started at the accept, no
    // later than our connect returned) had to run out.
    assert!(took >= timeout / 2, "closed after {took:?}");
    // The server still serves others.
    let mut other = Client::connect(s.addr).await;
    assert_eq!(other.get("/status").await.status, 200);
}

#[tokio::test]
async fn the_endpoints_answer_on_a_kept_alive_connection_that_is_closed_once_idle() {
    let timeout = Duration::from_secs(1);
    let s = serve(limits(timeout, 4, LONG)).await;
    let mut c = Client::connect(s.addr).await;

    let a = c.get("/healthz").await;
    assert_eq!((a.status, a.body.as_str()), (503, "scheduler stopped\n"));
    s.shared.alive.store(true, Ordering::Relaxed);
    s.shared.touch();
    let a = c.get("/healthz").await;
    assert_eq!((a.status, a.body.as_str()), (200, "ok\n"));

    let a = c.get("/readyz").await;
    assert_eq!(a.status, 503);
    assert!(
        a.body.contains("the first pass has not finished"),
        "{}",
        a.body
    );

    let a = c.get("/status").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("application/json"));
    let doc: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(doc["ready"], false);

    let a = c.get("/metrics").await;
    assert_eq!(a.status, 200);
    assert!(
        a.header("content-type")
            .is_some_and(|t| t.starts_with("application/openmetrics-text")),
        "{a:?}"
    );
    assert!(a.body.ends_with("# EOF\n"), "{}", a.body);

    let a = c.get("/nothing-here").await;
    assert_eq!(a.status, 404);

    // Kept alive, then idle: closed once no next request came within the timeout.
    let took = c.closed_by_server().await;
    assert!(took >= timeout / 2, "closed after {took:?}");
}

#[tokio::test]
async fn beyond_the_connection_limit_a_client_waits_until_a_connection_closes() {
    let s = serve(limits(LONG, server::MAX_CONNECTIONS, LONG)).await;
    assert_eq!(server::MAX_CONNECTIONS, 64);
    // Each served once, so the server holds all of them (kept alive, idle).
    let mut held = Vec::new();
    for _ in 0..server::MAX_CONNECTIONS {
        let mut c = Client::connect(s.addr).await;
        assert_eq!(c.get("/status").await.status, 200);
        held.push(c);
    }
    // One more: the kernel completes its handshake, but the server does not take it.
    let mut waiting = Client::connect(s.addr).await;
    waiting
        .send(b"GET /status HTTP/1.1\r\nHost: certsync\r\n\r\n")
        .await;
    // Not answered while the limit's connections are open. (Waiting longer could only make
    // a wrong server answer it; a right one never does, so this cannot fail spuriously.)
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(
        Duration::from_millis(500),
        waiting.stream.get_mut().peek(&mut byte),
    )
    .await;
    assert!(
        early.is_err(),
        "answered beyond the limit of {}",
        server::MAX_CONNECTIONS
    );
    // One closes: the waiting one is taken and answered.
    drop(held.remove(0));
    let a = timeout(BOUND, waiting.answer())
        .await
        .expect("the waiting connection was not served after a slot freed");
    assert_eq!(a.status, 200);
    // The others were kept meanwhile.
    assert_eq!(held[0].get("/healthz").await.status, 503);
}

#[tokio::test]
async fn a_client_that_never_reads_its_answers_holds_its_connection_no_longer_than_the_age_limit() {
    let s = serve(limits(Duration::from_secs(1), 1, Duration::from_secs(1))).await;
    // A small receive window, so the server's writes stall soon.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(s.addr).await.unwrap();
    let mut hog = Client {
        stream: BufReader::new(stream),
    };
    assert_eq!(hog.get("/status").await.status, 200);
    // Now it takes the only slot and pipelines requests without ever reading an answer: the
    // header timeout never applies (each request arrives at once; then the server is stuck
    // writing).
    let (_reader, mut writer) = hog.stream.into_inner().into_split();
    let flood = tokio::spawn(async move {
        let request = b"GET /metrics HTTP/1.1\r\nHost: certsync\r\n\r\n";
        while writer.write_all(request).await.is_ok() {}
    });
    let mut next = Client::connect(s.addr).await;
    let a = timeout(BOUND, next.get("/healthz"))
        .await
        .expect("the hog kept the only connection slot");
    assert_eq!(a.status, 503);
    flood.abort();
}

/// The send and receive queues (bytes) of the IPv4 socket from `local` to `remote`, from
/// `/proc/net/tcp`.
fn tcp_queues(local: SocketAddr, remote: SocketAddr) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let hex = |a: SocketAddr| format!(":{:04X}", a.port());
    text.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 4 && f[1].ends_with(&hex(local)) && f[2].ends_with(&hex(remote)) {
            let (tx, rx) = f[4].split_once(':')?;
            Some((
                u64::from_str_radix(tx, 16).ok()?,
                u64::from_str_radix(rx, 16).ok()?,
            ))
        } else {
            None
        }
    })
}

/// Waits (up to [`BOUND`]) until everything the client sent has been read by the server
/// process: acknowledged by the server's kernel and gone from its socket's receive queue.
async fn server_has_read(c: &Client) {
    let client = c.stream.get_ref().local_addr().unwrap();
    let server = c.stream.get_ref().peer_addr().unwrap();
    let deadline = Instant::now() + BOUND;
    loop {
        let sent = tcp_queues(client, server).is_some_and(|(tx, _)| tx == 0);
        let read = tcp_queues(server, client).is_some_and(|(_, rx)| rx == 0);
        if sent && read {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not read what was sent"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn shutdown_answers_the_request_in_flight_then_the_task_ends() {
    // Long: the request below must not time out while the test drives it.
    let s = serve(limits(LONG, 4, LONG)).await;
    let mut idle = Client::connect(s.addr).await;
    assert_eq!(idle.get("/healthz").await.status, 503);
    let mut c = Client::connect(s.addr).await;
    // A request half-way through its headers, read by the server: in flight.
    c.send(b"GET /status HTTP/1.1\r\nHost: certsync\r\n").await;
    server_has_read(&c).await;

    s.shutdown.cancel();
    // The idle connection is closed at once; the one in flight keeps the task alive.
    idle.closed_by_server().await;
    assert!(!s.task.is_finished());
    // The request completes and is answered, then that connection is closed too.
    c.send(b"\r\n").await;
    let a = timeout(BOUND, c.answer())
        .await
        .expect("the request in flight was not answered after shutdown");
    assert_eq!(a.status, 200);
    assert_eq!(a.header("connection"), Some("close"));
    serde_json::from_str::<serde_json::Value>(&a.body).unwrap();
    c.closed_by_server().await;
    // Then the task ends, and the listener is gone.
    timeout(BOUND, s.task)
        .await
        .expect("the server task did not end after shutdown")
        .unwrap();
    let refused = TcpStream::connect(s.addr).await;
    assert!(refused.is_err(), "still accepting after shutdown");
}

/// "Max open files  SOFT  HARD  files" of `/proc/PID/limits`.
fn open_files_limits(pid: u32) -> (String, String) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let fields: Vec<&str> = line["Max open files".len()..].split_whitespace().collect();
    (fields[0].to_string(), fields[1].to_string())
}

#[tokio::test]
async fn run_raises_its_open_files_soft_limit_to_the_hard_limit() {
    use rustix::process::{Resource, getrlimit};
    let hard = getrlimit(Resource::Nofile).maximum;
    let soft = 256;
    assert!(
        hard.is_none_or(|h| h > soft),
        "the test needs a hard limit above {soft}, got {hard:?}"
    );
    let h = common::Harness::new(1).await;
    let port = h.with_server(&common::Extra {
        no_hook: true,
        ..common::Extra::default()
    });
    // Started with a low soft limit (the hard one unchanged), as a login shell's default.
    let mut cmd = tokio::process::Command::new("prlimit");
    cmd.arg(format!("--nofile={soft}:"))
        .arg(common::BIN)
        .arg("--config")
        .arg(&h.config)
        .arg("run")
        .env_remove("NOTIFY_SOCKET");
    let run = common::Running::spawn(cmd);
    // The server listens before the first pass: the limit is raised by then.
    common::wait_listening(port).await;
    let pid = run.child.id().unwrap();
    let (soft_now, hard_now) = open_files_limits(pid);
    assert_ne!(soft_now, soft.to_string(), "soft limit not raised");
    assert_eq!(soft_now, hard_now);
    assert_eq!(run.stop().await, Some(0));
}
