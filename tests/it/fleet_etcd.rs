//! The fleet roles over a real etcd (SPEC 14, issue 12), driving the real `certsync run`:
//! publishers (`[publish]`) elect one leader through etcd's leases, and only it polls the
//! simulator; subscribers (`[source] kind = "etcd"`) watch `{prefix}/bundle`, validate it again
//! and write the same files. Each test starts its own etcd (tests/it/common/etcd.rs) and
//! simulator on loopback. Short leases (`lease_ttl = "2s"`) keep it quick; the tests wait on
//! events (log lines, metrics, etcd's keys, files), never for a fixed time.
//!
//! Two figures for the closing note are printed with `eprintln!` (run with
//! `--nocapture` to see them): the takeover time after a leader's SIGKILL (median of 5) and
//! the API calls of 3 publishers over 10 passes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::process::Signal;
use tokio::time::Instant;

use crate::common::etcd::Etcd;
use crate::common::*;

const LEASE_TTL: Duration = Duration::from_secs(2);
/// Above `lease_ttl`, what a takeover may take besides: etcd revokes expired leases in a loop
/// of its own (every 500 ms), and the machine runs other tests beside this one.
const TAKEOVER_SLACK: Duration = Duration::from_secs(1);
/// How long any awaited event may take.
const DEADLINE: Duration = Duration::from_secs(30);
const USER: &str = "certsync";
const PASSWORD: &str = "etcd-pw-9f3c1a7e5b";

/// An etcd, a simulator with instances (`inst0`, ...), and the prefix the fleet uses.
struct Fleet {
    h: Harness,
    etcd: Etcd,
    prefix: String,
    /// etcd's TLS with client certificates, and its auth (user `certsync`), are on.
    secure: bool,
}

/// One `certsync run` of the fleet, in a folder of its own (config, trust folder, logs).
struct Node {
    name: String,
    dir: PathBuf,
    config: PathBuf,
    /// Its `[server] listen` port.
    port: u16,
    run: Option<Running>,
}

#[derive(Default, Clone, Copy)]
struct Sub {
    /// Lists every instance in `[[instance]]` (otherwise it takes what the bundle holds).
    instances: bool,
    /// A hook that records each run's CERTSYNC_CHANGED_FILES in `hook.log`.
    hook: bool,
}

impl Node {
    fn start(&mut self) {
        self.run = Some(Running::start(&self.config, &["run"]));
    }

    fn run(&self) -> &Running {
        self.run
            .as_ref()
            .unwrap_or_else(|| panic!("{} is not running", self.name))
    }

    fn pid(&self) -> u32 {
        self.run().child.id().expect("running")
    }

    fn trust(&self) -> PathBuf {
        self.dir.join("trust")
    }

    fn log(&self) -> String {
        self.run.as_ref().map(Running::log).unwrap_or_default()
    }

    /// Where its log ends now: what it prints next is read from here on.
    fn mark(&self) -> usize {
        self.log().len()
    }

    fn signal(&self, sig: Signal) {
        self.run().signal(sig);
    }

    /// SIGKILL, and waits until it is gone.
    async fn kill(&mut self) {
        let mut run = self.run.take().expect("running");
        run.signal(Signal::KILL);
        run.exit_code().await;
    }

    /// Waits for a line of its log after `from` containing `needle`, then returns that line.
    async fn wait_line(&self, from: usize, needle: &str) -> String {
        let d = Deadline::new();
        loop {
            let log = self.log();
            if let Some(line) = log[from.min(log.len())..]
                .lines()
                .find(|l| l.contains(needle))
            {
                return line.to_string();
            }
            d.tick(|| format!("{}: no line with {needle:?}; log:\n{log}", self.name))
                .await;
        }
    }

    /// Waits for `"{what} N"` in its log after `from` with N above `above`; returns N.
    async fn wait_generation(&self, from: usize, what: &str, above: u64) -> u64 {
        self.wait_generation_at(from, what, above).await.0
    }

    /// [`Node::wait_generation`], also returning where in the log that line ends.
    async fn wait_generation_at(&self, from: usize, what: &str, above: u64) -> (u64, usize) {
        let d = Deadline::new();
        loop {
            let log = self.log();
            let from = from.min(log.len());
            if let Some((n, end)) = generation_lines(&log[from..], what)
                .into_iter()
                .find(|(n, _)| *n > above)
            {
                return (n, from + end);
            }
            d.tick(|| {
                format!(
                    "{}: no \"{what} N\" with N > {above}; log:\n{log}",
                    self.name
                )
            })
            .await;
        }
    }

    /// `certsync check --online` (with `--json`, its document) on its config.
    async fn check_online(&self, json: bool) -> (i32, String) {
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.arg("--config")
            .arg(&self.config)
            .args(["check", "--online"]);
        if json {
            cmd.arg("--json");
        }
        cmd.env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null());
        let out = cmd.output().await.unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    async fn metrics(&self) -> String {
        wait_listening(self.port).await;
        get(self.port, "/metrics").await.1
    }

    /// Waits until the sample `name{labels}` reads `want`.
    async fn wait_metric(&self, name: &str, labels: &str, want: f64) {
        let d = Deadline::new();
        loop {
            let text = self.metrics().await;
            if sample(&text, name, labels) == Some(want) {
                return;
            }
            d.tick(|| {
                format!(
                    "{}: {name}{{{labels}}} is not {want}: {:?}; log:\n{}",
                    self.name,
                    sample(&text, name, labels),
                    self.log()
                )
            })
            .await;
        }
    }
}

/// Each N of the lines `"... {what} N ..."` in `log`, in order.
fn generations(log: &str, what: &str) -> Vec<u64> {
    generation_lines(log, what)
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

/// Each N of the lines `"... {what} N ..."` in `log`, with where its line ends.
fn generation_lines(log: &str, what: &str) -> Vec<(u64, usize)> {
    let needle = format!("{what} ");
    let mut found = Vec::new();
    let mut end = 0;
    for line in log.split_inclusive('\n') {
        end += line.len();
        let Some(at) = line.find(&needle) else {
            continue;
        };
        let digits: String = line[at + needle.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(n) = digits.parse() {
            found.push((n, end));
        }
    }
    found
}

/// The value of `name{labels}` (`labels` empty: the sample without labels).
fn sample(metrics: &str, name: &str, labels: &str) -> Option<f64> {
    let value = if labels.is_empty() {
        metrics.lines().find_map(|l| {
            l.strip_prefix(&format!("{name} "))
                .or_else(|| l.strip_prefix(&format!("{name}{{}} ")))
                .map(str::to_string)
        })
    } else {
        metric_sample(metrics, name, labels)
    }?;
    value.trim().parse().ok()
}

/// A deadline for one awaited event; `tick` fails with the message once it is past.
struct Deadline(Instant);

impl Deadline {
    fn new() -> Deadline {
        Deadline(Instant::now() + DEADLINE)
    }

    async fn tick(&self, message: impl FnOnce() -> String) {
        assert!(Instant::now() < self.0, "after {DEADLINE:?}: {}", message());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The visible files of a trust folder (instance files, bundle, hash files), byte for byte;
/// hidden ones (the manifest, the lock, the state) are each host's own.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.starts_with('.') || !path.is_file() {
            continue;
        }
        files.insert(name, std::fs::read(&path).unwrap());
    }
    files
}

fn names(files: &BTreeMap<String, Vec<u8>>) -> Vec<&String> {
    files.keys().collect()
}

impl Fleet {
    /// A simulator with `instances` instances and an etcd (TLS and auth when `secure`).
    async fn new(instances: usize, secure: bool) -> Fleet {
        let h = Harness::new(instances).await;
        let prefix = "/certsync/test".to_string();
        let etcd = if secure {
            let mut etcd = Etcd::start_tls().await;
            etcd.enable_auth(&prefix, USER, PASSWORD).await;
            etcd
        } else {
            Etcd::start().await
        };
        Fleet {
            h,
            etcd,
            prefix,
            secure,
        }
    }

    fn key(&self, name: &str) -> String {
        format!("{}/{name}", self.prefix)
    }

    /// The connection keys of `[publish]` or `[source]` for a node in `dir` (writing the
    /// client certificate and the password file there when etcd is secure).
    fn connection(&self, dir: &Path, name: &str) -> String {
        let mut text = format!(
            "endpoints = [\"{}\"]\nprefix = \"{}\"\n",
            self.etcd.endpoint(),
            self.prefix
        );
        if self.secure {
            let files = self.etcd.client_files(dir, &format!("{name}.hosts.test"));
            std::fs::write(dir.join("etcd-pw"), format!("{PASSWORD}\n")).unwrap();
            text.push_str(&format!(
                "ca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\nuser = \"{USER}\"\npassword_file = \"etcd-pw\"\n",
                files.ca_file.display(),
                files.cert_file.display(),
                files.key_file.display(),
            ));
        }
        text
    }

    fn node_dir(&self, name: &str) -> (PathBuf, u16) {
        let dir = self.h.tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        (dir, free_port())
    }

    /// A publisher: the simulator's `[cloud]`, `[auth]`, `[sync]` (interval 1h: it polls when
    /// it becomes the leader and on SIGUSR1), `[trust]` and instances, with `[publish]`.
    /// Endpoint verification is off: the simulator's node addresses answer nothing, and its
    /// ListInstances requests are not what these tests count. Started.
    fn publisher(&self, name: &str) -> Node {
        let (dir, port) = self.node_dir(name);
        let token = dir.join("token");
        std::fs::copy(&self.h.token_file, &token).unwrap();
        std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let text = self.h.config_text(&Extra {
            no_hook: true,
            tail: format!(
                "\n[publish]\nbackend = \"etcd\"\n{}lease_ttl = \"{}s\"\n\n[server]\nlisten = \"127.0.0.1:{port}\"\n\n[verify]\nenabled = false\n",
                self.connection(&dir, name),
                LEASE_TTL.as_secs()
            ),
            ..Extra::default()
        });
        self.node(name, dir, port, &text)
    }

    /// `sub0`, which takes every instance of the set, and `sub1`, which lists them in
    /// `[[instance]]`. Started.
    fn two_subscribers(&self) -> Vec<Node> {
        vec![
            self.subscriber("sub0", Sub::default()),
            self.subscriber(
                "sub1",
                Sub {
                    instances: true,
                    ..Sub::default()
                },
            ),
        ]
    }

    /// A subscriber: `[source] kind = "etcd"`, `[trust]`, `[server]`, no cloud credentials.
    /// Started.
    fn subscriber(&self, name: &str, sub: Sub) -> Node {
        let (dir, port) = self.node_dir(name);
        let mut text = format!(
            "[source]\nkind = \"etcd\"\n{}\n[trust]\ndir = \"trust\"\nbundle = \"ca-bundle.crt\"\n\n[server]\nlisten = \"127.0.0.1:{port}\"\n",
            self.connection(&dir, name)
        );
        if sub.instances {
            for (id, name) in self.h.sim.instance_ids().iter().zip(&self.h.names) {
                text.push_str(&format!(
                    "\n[[instance]]\nid = \"{id}\"\nname = \"{name}\"\n"
                ));
            }
        }
        if sub.hook {
            text.push_str(&format!(
                "\n[[hook]]\nname = \"record\"\ncommand = [\"/bin/sh\", \"-c\", \"printf '%s\\\\n--\\\\n' \\\"$CERTSYNC_CHANGED_FILES\\\" >> {}\"]\n",
                dir.join("hook.log").display()
            ));
        }
        self.node(name, dir, port, &text)
    }

    fn node(&self, name: &str, dir: PathBuf, port: u16, text: &str) -> Node {
        let config = dir.join("certsync.toml");
        std::fs::write(&config, text).unwrap();
        let mut node = Node {
            name: name.to_string(),
            dir,
            config,
            port,
            run: None,
        };
        node.start();
        node
    }

    /// The value of `{prefix}/leader` (`hostname/pid/random`), if any.
    async fn leader_id(&self) -> Option<String> {
        self.etcd.get(&self.key("leader")).await
    }

    /// Waits until `{prefix}/leader` names the process of one of `nodes` (by its pid) and
    /// returns that node's index.
    async fn leader(&self, nodes: &[Node]) -> usize {
        let d = Deadline::new();
        loop {
            let id = self.leader_id().await;
            if let Some(id) = &id {
                let parts: Vec<&str> = id.split('/').collect();
                assert!(
                    parts.len() >= 3,
                    "the leader key holds {id:?}, not hostname/pid/random"
                );
                let pid: u32 = parts[parts.len() - 2].parse().unwrap_or_else(|_| {
                    panic!("the leader key holds {id:?}, not hostname/pid/random")
                });
                if let Some(i) = nodes.iter().position(|n| n.run.is_some() && n.pid() == pid) {
                    return i;
                }
            }
            d.tick(|| {
                let logs: Vec<String> = nodes
                    .iter()
                    .map(|n| format!("--- {}:\n{}", n.name, n.log()))
                    .collect();
                format!(
                    "no leader among the publishers; {}/leader = {id:?}\n{}",
                    self.prefix,
                    logs.join("\n")
                )
            })
            .await;
        }
    }

    /// The bundle as JSON (fails on a value that is not).
    async fn bundle(&self) -> serde_json::Value {
        let text = self
            .etcd
            .get(&self.key("bundle"))
            .await
            .expect("a bundle in etcd");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("bundle not JSON ({e}): {text}"))
    }

    async fn generation(&self) -> u64 {
        self.bundle().await["generation"]
            .as_u64()
            .expect("bundle.generation")
    }

    /// Every subscriber's visible files equal the leader's (or another reference node's), byte
    /// for byte, and hold every instance's file. Waited for: a leader writes its own folder
    /// after it published, so it may be a moment behind its subscribers.
    async fn assert_same(&self, leader: &Node, subs: &[Node]) {
        let d = Deadline::new();
        loop {
            match self.difference(leader, subs) {
                None => return,
                Some(why) => d.tick(|| why).await,
            }
        }
    }

    /// Every publisher of `pubs` but the leader `l` applied `generation` (after its mark in
    /// `from`) in a pass that has ended, and its folder equals the leader's.
    async fn assert_standbys_follow(
        &self,
        pubs: &[Node],
        l: usize,
        from: &[usize],
        generation: u64,
    ) {
        for (i, p) in pubs.iter().enumerate() {
            if i != l {
                wait_applied(std::slice::from_ref(p), &from[i..=i], generation).await;
                self.assert_same(&pubs[l], std::slice::from_ref(p)).await;
            }
        }
    }

    /// How the folders of `subs` differ from the leader's, if they do.
    fn difference(&self, leader: &Node, subs: &[Node]) -> Option<String> {
        let want = snapshot(&leader.trust());
        for i in 0..self.h.names.len() {
            let name = self
                .h
                .file(i)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if !want.contains_key(&name) {
                return Some(format!("{} has no {name}: {:?}", leader.name, names(&want)));
            }
        }
        for s in subs {
            let got = snapshot(&s.trust());
            if names(&got) != names(&want) {
                return Some(format!(
                    "{}'s files {:?}, the leader {}'s {:?}",
                    s.name,
                    names(&got),
                    leader.name,
                    names(&want)
                ));
            }
            for (name, bytes) in &want {
                if got[name] != *bytes {
                    return Some(format!(
                        "{}'s {name} differs from the leader {}'s:\n{}\n--- leader:\n{}",
                        s.name,
                        leader.name,
                        String::from_utf8_lossy(&got[name]),
                        String::from_utf8_lossy(bytes)
                    ));
                }
            }
        }
        None
    }

    /// The PEM of instance `i`'s current CA in the simulator.
    fn current_pem(&self, i: usize) -> String {
        self.h.expected_pem(i)
    }

    /// Instance `i`'s file in `node`'s trust folder.
    fn file_of(&self, node: &Node, i: usize) -> String {
        let name = self.h.file(i).file_name().unwrap().to_owned();
        std::fs::read_to_string(node.trust().join(name)).unwrap_or_default()
    }
}

/// The `fleet` object of `node`'s `/status`, once its last pass has published it.
async fn status_fleet(node: &Node) -> serde_json::Value {
    let d = Deadline::new();
    loop {
        let (_, body) = get(node.port, "/status").await;
        let doc: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if doc["fleet"]["generation"].is_u64() {
            return doc["fleet"].clone();
        }
        d.tick(|| format!("{}: no fleet generation in /status: {body}", node.name))
            .await;
    }
}

/// A fleet of one publisher (`pub0`) and one subscriber (`sub0`) with `instances`
/// instances, once the subscriber applied the first generation.
async fn one_publisher_one_subscriber(instances: usize) -> (Fleet, Node, Vec<Node>) {
    let f = Fleet::new(instances, false).await;
    let subs = vec![f.subscriber("sub0", Sub::default())];
    let from = marks(&subs);
    let p = f.publisher("pub0");
    p.wait_generation(0, "published generation", 0).await;
    wait_applied(&subs, &from, 1).await;
    (f, p, subs)
}

/// Waits until every node in `subs` logged `applied generation N` (N >= `generation`) after its
/// mark in `from`, and the pass that applies it has ended.
async fn wait_applied(subs: &[Node], from: &[usize], generation: u64) {
    for (s, from) in subs.iter().zip(from) {
        // The line comes when the set is read, at the start of the pass that writes it.
        let (_, end) = s
            .wait_generation_at(*from, "applied generation", generation - 1)
            .await;
        s.wait_line(end, "pass finished").await;
    }
}

fn marks(nodes: &[Node]) -> Vec<usize> {
    nodes.iter().map(Node::mark).collect()
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

// ---- one poller, the same files everywhere ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_publishers_poll_as_one_and_three_subscribers_write_the_leaders_files() {
    let f = Fleet::new(3, false).await;
    // Subscribers first: they start before any bundle exists and must see it appear.
    let subs = vec![
        f.subscriber(
            "sub0",
            Sub {
                hook: true,
                ..Sub::default()
            },
        ),
        f.subscriber("sub1", Sub::default()),
        f.subscriber(
            "sub2",
            Sub {
                instances: true,
                ..Sub::default()
            },
        ),
    ];
    let from = marks(&subs);
    let pubs: Vec<Node> = (0..3).map(|i| f.publisher(&format!("pub{i}"))).collect();
    let l = f.leader(&pubs).await;
    pubs[l].wait_line(0, "became the leader").await;
    assert_eq!(
        pubs[l].wait_generation(0, "published generation", 0).await,
        1
    );
    for (i, p) in pubs.iter().enumerate() {
        p.wait_metric("certsync_leader", "", if i == l { 1.0 } else { 0.0 })
            .await;
    }
    wait_applied(&subs, &from, 1).await;
    f.assert_same(&pubs[l], &subs).await;
    // The publishers that stand by keep their own folders too: they follow the set.
    f.assert_standbys_follow(&pubs, l, &[0; 3], 1).await;
    // `/status` and `certsync status` name each role.
    for (i, p) in pubs.iter().enumerate() {
        let fleet = status_fleet(p).await;
        assert_eq!(fleet["role"], "publisher", "{fleet}");
        assert_eq!(fleet["prefix"], f.prefix.as_str(), "{fleet}");
        assert_eq!(fleet["leading"], i == l, "{}: {fleet}", p.name);
        assert_eq!(fleet["generation"], 1, "{}: {fleet}", p.name);
    }
    let fleet = status_fleet(&subs[0]).await;
    assert_eq!(fleet["role"], "subscriber", "{fleet}");
    assert_eq!(fleet["leading"], serde_json::Value::Null, "{fleet}");
    assert_eq!(fleet["generation"], 1, "{fleet}");
    let out = tokio::process::Command::new(BIN)
        .arg("--config")
        .arg(&pubs[l].config)
        .arg("status")
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "fleet: publisher, leading at {}, generation 1",
            f.prefix
        )),
        "{text}"
    );
    for s in &subs {
        assert!(f.file_of(s, 0).starts_with(&f.current_pem(0)), "{}", s.name);
        s.wait_metric("certsync_source_up", "", 1.0).await;
        s.wait_metric("certsync_source_generation", "", 1.0).await;
        let (code, body) = get(s.port, "/readyz").await;
        assert_eq!(code, 200, "{}: {body}", s.name);
    }
    let hook = std::fs::read_to_string(subs[0].dir.join("hook.log")).unwrap_or_default();
    assert!(
        hook.contains("inst0-international.crt"),
        "sub0's hook ran with: {hook:?}"
    );
    // One pass of one publisher: a download-link request per instance.
    let stats = f.h.sim.stats();
    assert_eq!(stats.api_requests, 3, "{stats:?}");
    for (i, p) in pubs.iter().enumerate() {
        if i != l {
            assert!(
                !p.log().contains("became the leader") && !p.log().contains("published generation"),
                "{} (not the leader): {}",
                p.name,
                p.log()
            );
        }
    }

    // A rotation, and one more pass of the leader: it reaches every subscriber.
    f.h.sim.rotate(&f.h.id(1), "international");
    let (pub_from, from, pubs_from) = (pubs[l].mark(), marks(&subs), marks(&pubs));
    pubs[l].signal(Signal::USR1);
    assert_eq!(
        pubs[l]
            .wait_generation(pub_from, "published generation", 1)
            .await,
        2
    );
    assert_eq!(f.generation().await, 2);
    wait_applied(&subs, &from, 2).await;
    f.assert_same(&pubs[l], &subs).await;
    f.assert_standbys_follow(&pubs, l, &pubs_from, 2).await;
    for (i, p) in pubs.iter().enumerate() {
        if i != l {
            assert!(f.file_of(p, 1).starts_with(&f.current_pem(1)), "{}", p.name);
        }
    }
    for s in &subs {
        assert!(f.file_of(s, 1).starts_with(&f.current_pem(1)), "{}", s.name);
        s.wait_metric("certsync_source_generation", "", 2.0).await;
    }
    let stats = f.h.sim.stats();
    assert_eq!(
        stats.api_requests, 6,
        "two passes of one publisher: {stats:?}"
    );
    pubs[l]
        .wait_metric("certsync_publish_total", "result=\"ok\"", 2.0)
        .await;
}

// ---- a leader's SIGKILL ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_within_the_lease_and_no_subscriber_loses_a_file() {
    const ROUNDS: usize = 5;
    let f = Fleet::new(2, false).await;
    let subs = f.two_subscribers();
    let from = marks(&subs);
    let mut pubs: Vec<Node> = (0..3).map(|i| f.publisher(&format!("pub{i}"))).collect();
    let mut l = f.leader(&pubs).await;
    pubs[l].wait_generation(0, "published generation", 0).await;
    wait_applied(&subs, &from, 1).await;
    f.assert_same(&pubs[l], &subs).await;

    let mut takeovers = Vec::new();
    let mut leader_differs = Vec::new();
    for round in 0..ROUNDS {
        let i = round % f.h.names.len();
        let generation = f.generation().await;
        let before: Vec<_> = subs.iter().map(|s| snapshot(&s.trust())).collect();
        let old_pem = f.file_of(&subs[0], i);
        // Rotated while the leader lives: it does not poll again (interval 1h), so its
        // successor's first pass is what publishes the new CA.
        f.h.sim.rotate(&f.h.id(i), "international");
        let from_pubs = marks(&pubs);
        let from_subs = marks(&subs);
        let old_leader = f.leader_id().await;
        pubs[l].kill().await;
        let killed = Instant::now();
        // The first "became the leader" among the others, with every subscriber holding all
        // of its files the whole time.
        let d = Deadline::new();
        let next = loop {
            for (s, before) in subs.iter().zip(&before) {
                let now = snapshot(&s.trust());
                for name in before.keys() {
                    assert!(
                        now.get(name).is_some_and(|b| !b.is_empty()),
                        "round {round}: {} lost {name} during the takeover",
                        s.name
                    );
                }
            }
            if let Some(n) = (0..pubs.len()).find(|&n| {
                n != l && {
                    let log = pubs[n].log();
                    log[from_pubs[n]..].contains("became the leader")
                }
            }) {
                break n;
            }
            d.tick(|| format!("round {round}: no publisher became the leader"))
                .await;
        };
        let took = killed.elapsed();
        eprintln!(
            "fleet takeover, round {}: {} became the leader {took:?} after {}'s SIGKILL",
            round + 1,
            pubs[next].name,
            pubs[l].name
        );
        assert!(
            took <= LEASE_TTL + TAKEOVER_SLACK,
            "round {round}: the takeover took {took:?}, lease_ttl is {LEASE_TTL:?}"
        );
        takeovers.push(took);
        assert_eq!(f.leader(&pubs).await, next);
        assert_ne!(f.leader_id().await, old_leader);
        pubs[next].wait_metric("certsync_leader", "", 1.0).await;

        // Its first pass publishes the rotation, which reaches every subscriber; the replaced
        // CA stays in each file (the overlap continues from the published set).
        let published = pubs[next]
            .wait_generation(from_pubs[next], "published generation", generation)
            .await;
        wait_applied(&subs, &from_subs, published).await;
        f.assert_same(&subs[0], &subs[1..]).await;
        // The leader's own folder, once its pass (which publishes first) has ended.
        pubs[next].wait_line(from_pubs[next], "pass finished").await;
        if let Some(why) = f.difference(&pubs[next], &subs) {
            leader_differs.push(format!("round {}: {why}", round + 1));
        }
        for s in &subs {
            let file = f.file_of(s, i);
            assert!(
                file.starts_with(&f.current_pem(i)),
                "round {round}: {}: {file}",
                s.name
            );
            assert!(
                file.contains(old_pem.lines().nth(1).unwrap()),
                "round {round}: {} dropped the replaced CA: {file}",
                s.name
            );
        }
        // The killed publisher comes back, as its service manager would restart it.
        pubs[l].start();
        l = next;
    }
    eprintln!(
        "fleet takeover after a leader's SIGKILL (lease_ttl {LEASE_TTL:?}): median of {ROUNDS} = {:?} (each: {takeovers:?})",
        median(takeovers.clone())
    );
    // Each new leader's own trust folder is what it published: the same files as every
    // subscriber's, the replaced CA included.
    assert!(
        leader_differs.is_empty(),
        "a new leader's folder is not its subscribers':\n{}",
        leader_differs.join("\n")
    );
    f.assert_same(&pubs[l], &subs).await;
}

// ---- a deposed leader's late write ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_paused_past_its_lease_cannot_overwrite_its_successor() {
    let f = Fleet::new(2, false).await;
    let subs = vec![f.subscriber("sub0", Sub::default())];
    let from = marks(&subs);
    let pubs: Vec<Node> = (0..2).map(|i| f.publisher(&format!("pub{i}"))).collect();
    let a = f.leader(&pubs).await;
    let b = 1 - a;
    pubs[a].wait_generation(0, "published generation", 0).await;
    wait_applied(&subs, &from, 1).await;

    // A stops where it stands, believing it leads; B takes over and publishes a rotation.
    let (b_from, from) = (pubs[b].mark(), marks(&subs));
    pubs[a].signal(Signal::STOP);
    f.h.sim.rotate(&f.h.id(0), "international");
    pubs[b].wait_line(b_from, "became the leader").await;
    let g2 = pubs[b]
        .wait_generation(b_from, "published generation", 1)
        .await;
    wait_applied(&subs, &from, g2).await;
    let b_id = f.leader_id().await.expect("B leads");
    assert_eq!(f.leader(&pubs).await, b);
    let bundle = f.bundle().await;
    assert_eq!(bundle["generation"].as_u64(), Some(g2));
    assert_eq!(bundle["publisher"].as_str(), Some(b_id.as_str()));

    // Another rotation that A has never seen: a pass of A would want to publish it. A gets
    // SIGUSR1 while still stopped, so its pass starts the moment it runs again.
    f.h.sim.rotate(&f.h.id(1), "international");
    let a_from = pubs[a].mark();
    let published_before = generations(&pubs[a].log(), "published generation");
    pubs[a].signal(Signal::USR1);
    pubs[a].signal(Signal::CONT);
    let d = Deadline::new();
    loop {
        let log = pubs[a].log();
        let after = &log[a_from..];
        if let Some(line) = after
            .lines()
            .find(|l| l.contains("publish refused") || l.contains("lost the leadership"))
        {
            eprintln!("the deposed leader {}: {line}", pubs[a].name);
            break;
        }
        d.tick(|| {
            format!("A logged neither \"publish refused\" nor \"lost the leadership\":\n{log}")
        })
        .await;
    }
    // Nothing A wrote made it: the bundle is still B's, at B's generation.
    let bundle = f.bundle().await;
    assert_eq!(bundle["generation"].as_u64(), Some(g2), "{bundle}");
    assert_eq!(bundle["publisher"].as_str(), Some(b_id.as_str()));
    assert_eq!(f.leader(&pubs).await, b);

    // B goes on: its next pass publishes the second rotation, above A's attempt.
    let (b_from, from) = (pubs[b].mark(), marks(&subs));
    pubs[b].signal(Signal::USR1);
    let g3 = pubs[b]
        .wait_generation(b_from, "published generation", g2)
        .await;
    wait_applied(&subs, &from, g3).await;
    assert!(f.file_of(&subs[0], 1).starts_with(&f.current_pem(1)));
    let bundle = f.bundle().await;
    assert_eq!(bundle["generation"].as_u64(), Some(g3));
    assert_eq!(bundle["publisher"].as_str(), Some(b_id.as_str()));
    assert_eq!(
        generations(&pubs[a].log(), "published generation"),
        published_before,
        "A published after it lost its lease:\n{}",
        pubs[a].log()
    );
    // The subscriber's generations never went back.
    let applied = generations(&subs[0].log(), "applied generation");
    assert!(
        applied.windows(2).all(|w| w[0] <= w[1]),
        "applied: {applied:?}"
    );
    subs[0]
        .wait_metric("certsync_source_generation", "", g3 as f64)
        .await;
    f.assert_same(&pubs[b], &subs).await;
}

/// The sum of `certsync_publish_total` over its results.
fn publishes(metrics: &str) -> f64 {
    ["ok", "unchanged", "refused", "too_large", "failed"]
        .iter()
        .filter_map(|r| {
            sample(
                metrics,
                "certsync_publish_total",
                &format!("result=\"{r}\""),
            )
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_bundle_put_behind_the_leaders_back_is_never_overwritten_by_an_older_one() {
    let (f, p, subs) = one_publisher_one_subscriber(2).await;

    // While it leads, a newer generation of the same set appears at the key.
    let mut newer = f.bundle().await;
    newer["generation"] = 5.into();
    let from = marks(&subs);
    f.etcd
        .put(&f.key("bundle"), &serde_json::to_vec(&newer).unwrap())
        .await;
    wait_applied(&subs, &from, 5).await;

    // Its next pass has something to publish: it must not write below generation 5.
    f.h.sim.rotate(&f.h.id(0), "international");
    let before = publishes(&p.metrics().await);
    let p_from = p.mark();
    p.signal(Signal::USR1);
    let d = Deadline::new();
    while publishes(&p.metrics().await) <= before {
        d.tick(|| format!("no publish step after SIGUSR1:\n{}", p.log()))
            .await;
    }
    let generation = f.generation().await;
    let log = p.log();
    if let Some(line) = log[p_from..]
        .lines()
        .find(|l| l.contains("publish refused"))
    {
        eprintln!("over a newer bundle: {line}");
        assert_eq!(generation, 5, "refused, yet the bundle changed");
        p.wait_metric("certsync_publish_total", "result=\"refused\"", 1.0)
            .await;
    } else {
        let published = generations(&log[p_from..], "published generation");
        assert!(
            generation > 5 && published == [generation],
            "generation {generation} after a pass over generation 5; published {published:?}:\n{log}"
        );
    }
    let applied = generations(&subs[0].log(), "applied generation");
    assert!(
        applied.windows(2).all(|w| w[0] <= w[1]),
        "applied: {applied:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_key_was_taken_has_its_write_refused_and_stops_polling() {
    let (f, p, subs) = one_publisher_one_subscriber(2).await;
    let files = snapshot(&subs[0].trust());

    // Another id at the leader key, put by hand: pub0's lease lives on, so nothing tells it
    // it lost the key, and it still believes it leads. Its next pass has a rotation to
    // publish: the transaction must refuse it.
    f.etcd.put(&f.key("leader"), b"another-publisher").await;
    f.h.sim.rotate(&f.h.id(0), "international");
    let p_from = p.mark();
    p.signal(Signal::USR1);
    let line = p
        .wait_line(
            p_from,
            "publish refused: the leader key is no longer this publisher's",
        )
        .await;
    assert!(line.contains("another-publisher"), "{line}");
    p.wait_metric("certsync_publish_total", "result=\"refused\"", 1.0)
        .await;
    // It lets go of the leadership it believed it had.
    p.wait_line(p_from, "lost the leadership").await;
    p.wait_metric("certsync_leader", "", 0.0).await;
    assert_eq!(f.generation().await, 1, "the refused set was written");
    assert_eq!(
        f.etcd.get(&f.key("leader")).await.as_deref(),
        Some("another-publisher")
    );

    // Standing by, it polls the cloud no more: a pass follows the set.
    let before = f.h.sim.stats();
    let p_from = p.mark();
    p.signal(Signal::USR1);
    let started = p.wait_line(p_from, "pass started").await;
    assert!(started.contains("standby=true"), "{started}");
    p.wait_line(p_from, "pass finished").await;
    assert_eq!(f.h.sim.stats().api_requests, before.api_requests);
    assert_eq!(
        snapshot(&subs[0].trust()),
        files,
        "a subscriber's files changed"
    );

    // The key is free again: pub0 takes it, polls at once and publishes the rotation.
    let (p_from, from) = (p.mark(), marks(&subs));
    f.etcd.delete(&f.key("leader")).await;
    p.wait_line(p_from, "became the leader").await;
    let g = p.wait_generation(p_from, "published generation", 1).await;
    wait_applied(&subs, &from, g).await;
    assert!(f.file_of(&subs[0], 0).starts_with(&f.current_pem(0)));
    f.assert_same(&p, &subs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_on_a_standby_publisher_follows_the_published_set() {
    let (f, p, _subs) = one_publisher_one_subscriber(2).await;
    // A second publisher's folder, filled by nothing yet: its `run` stands by, then stops.
    let mut q = f.publisher("pub1");
    q.wait_metric("certsync_leader", "", 0.0).await;
    q.kill().await;
    std::fs::remove_dir_all(q.trust()).unwrap();
    let before = f.h.sim.stats();
    let out = tokio::process::Command::new(BIN)
        .arg("--config")
        .arg(&q.config)
        .arg("once")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("this pass follows the set it published"),
        "{text}"
    );
    assert_eq!(
        f.h.sim.stats().api_requests,
        before.api_requests,
        "a standby polled the cloud"
    );
    f.assert_same(&p, std::slice::from_ref(&q)).await;
}

// ---- check --online ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_online_reads_the_fleets_etcd_in_both_roles() {
    let f = Fleet::new(2, false).await;
    let s = f.subscriber("sub0", Sub::default());
    // Nothing published yet: a subscriber has nothing to write.
    let (code, out) = s.check_online(false).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("etcd (source, ") && out.contains("nothing is published at"),
        "{out}"
    );

    let from = marks(std::slice::from_ref(&s));
    let p = f.publisher("pub0");
    p.wait_generation(0, "published generation", 0).await;
    wait_applied(std::slice::from_ref(&s), &from, 1).await;
    let id = f.leader_id().await.expect("pub0 leads");

    // The publisher: its etcd, who leads, what is published; then its cloud steps.
    let (code, out) = p.check_online(false).await;
    assert_eq!(code, 0, "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("etcd (publish, "))
        .unwrap_or_else(|| panic!("no publish step:\n{out}"));
    assert!(
        line.contains(&format!("{id} leads"))
            && line.contains(&format!(
                "generation 1 published by {id}: 2 instance(s), 2 CA(s)"
            )),
        "{line}"
    );
    assert!(out.contains("authenticate (auth method"), "{out}");

    // The subscriber: the set, and what it would write from it.
    let (code, out) = s.check_online(false).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("reachable; generation 1 published by"),
        "{out}"
    );
    for i in 0..2 {
        let file =
            f.h.file(i)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
        assert!(out.contains(&file), "no {file}:\n{out}");
    }
    assert!(
        !out.contains("authenticate"),
        "a subscriber has no credentials:\n{out}"
    );
    let (code, out) = s.check_online(true).await;
    assert_eq!(code, 0, "{out}");
    let doc: serde_json::Value = serde_json::from_str(out.lines().next().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(
        doc["no_longer_produced"],
        serde_json::json!([]),
        "a subscriber's instances are its set's: {doc}"
    );
    assert_eq!(doc["online"]["fleet"][0]["name"], "source", "{doc}");
    assert_eq!(doc["online"]["fleet"][0]["ok"], true, "{doc}");
    let instances = doc["online"]["instances"].as_array().expect("instances");
    assert_eq!(instances.len(), 2, "{doc}");
    assert!(instances.iter().all(|i| i["ok"] == true), "{doc}");

    // A value that is no set: the subscriber's check fails and says why; the publisher's
    // says its next pass replaces it.
    f.etcd.put(&f.key("bundle"), b"{\"generation\": 9}").await;
    let (code, out) = s.check_online(false).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("is refused"), "{out}");
    let (code, out) = p.check_online(false).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("the published set is not valid") && out.contains("replaces it"),
        "{out}"
    );
}

// ---- etcd down ----

/// A subscriber reports its source down: `/readyz` 503, `certsync_source_up 0`, and `/status`
/// lists source errors; its files stay as they were.
async fn assert_reports_down(s: &Node, files: &BTreeMap<String, Vec<u8>>) {
    s.wait_metric("certsync_source_up", "", 0.0).await;
    // (`/readyz` follows at the end of the pass the change starts.)
    let d = Deadline::new();
    loop {
        let (code, body) = get(s.port, "/readyz").await;
        if code == 503 {
            break;
        }
        d.tick(|| format!("{}: /readyz {code} with etcd down: {body}", s.name))
            .await;
    }
    let (_, status) = get(s.port, "/status").await;
    let doc: serde_json::Value = serde_json::from_str(&status).unwrap();
    let errors = &doc["source_errors"];
    assert!(
        match errors {
            serde_json::Value::Array(a) => !a.is_empty(),
            serde_json::Value::Object(o) => !o.is_empty(),
            serde_json::Value::String(s) => !s.is_empty(),
            serde_json::Value::Number(n) => n.as_f64() > Some(0.0),
            _ => false,
        },
        "{}: /status source_errors = {errors}: {status}",
        s.name
    );
    let now = snapshot(&s.trust());
    assert!(
        now == *files,
        "{}'s files changed: {:?} -> {:?}; log:\n{}",
        s.name,
        names(files),
        names(&now),
        s.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_etcd_down_subscribers_keep_their_files_and_say_so_then_converge() {
    let mut f = Fleet::new(2, false).await;
    let subs = f.two_subscribers();
    let from = marks(&subs);
    let p = f.publisher("pub0");
    p.wait_generation(0, "published generation", 0).await;
    wait_applied(&subs, &from, 1).await;
    let files: Vec<_> = subs.iter().map(|s| snapshot(&s.trust())).collect();

    let p_from = p.mark();
    let from = marks(&subs);
    f.etcd.kill();
    for ((s, files), from) in subs.iter().zip(&files).zip(&from) {
        assert_reports_down(s, files).await;
        s.wait_line(*from, "etcd unreachable").await;
    }
    // The publisher's lease cannot be kept alive: it steps down.
    p.wait_line(p_from, "lost the leadership").await;
    p.wait_metric("certsync_leader", "", 0.0).await;

    // Restarted while etcd is down, a subscriber still knows its instances (saved with its
    // folder): passes that cannot read the set remove nothing, however many (prune is on).
    let mut subs = subs;
    for s in subs.iter_mut() {
        s.kill().await;
        s.start();
    }
    for (s, files) in subs.iter().zip(&files) {
        s.wait_line(0, "pass finished").await;
        for _ in 0..4 {
            let from = s.mark();
            s.signal(Signal::USR1);
            s.wait_line(from, "pass finished").await;
        }
        let now = snapshot(&s.trust());
        assert!(
            now == *files,
            "{}: files changed while etcd was down: {:?}, before {:?}\n{}",
            s.name,
            names(&now),
            names(files),
            s.log()
        );
        assert_reports_down(s, files).await;
    }

    // A rotation while etcd is down arrives once it is back.
    f.h.sim.rotate(&f.h.id(0), "international");
    let (p_from, from) = (p.mark(), marks(&subs));
    f.etcd.restart().await;
    p.wait_line(p_from, "became the leader").await;
    let g2 = p.wait_generation(p_from, "published generation", 1).await;
    wait_applied(&subs, &from, g2).await;
    f.assert_same(&p, &subs).await;
    for s in &subs {
        assert!(
            f.file_of(s, 0).starts_with(&f.current_pem(0)),
            "{}: the rotation made while etcd was down did not arrive: bundle generation {g2} holds {} for {}, the simulator's current CA is {}\n--- {}:\n{}\n--- {}:\n{}",
            s.name,
            f.bundle().await["instances"][0]["entries"][0],
            f.h.names[0],
            f.h.sim.ca(&f.h.id(0), "international").sha256_hex,
            p.name,
            p.log(),
            s.name,
            s.log()
        );
        s.wait_metric("certsync_source_up", "", 1.0).await;
        let (code, body) = get(s.port, "/readyz").await;
        assert_eq!(code, 200, "{}: {body}", s.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_etcd_is_reported_by_subscribers_which_keep_their_files() {
    let (f, _publisher, subs) = one_publisher_one_subscriber(1).await;
    let files = snapshot(&subs[0].trust());

    // SIGSTOP: etcd's sockets stay open, but nothing answers (a partition without resets).
    f.etcd.pause();
    assert_reports_down(&subs[0], &files).await;
    f.etcd.resume();
    subs[0].wait_metric("certsync_source_up", "", 1.0).await;
    let (code, body) = get(subs[0].port, "/readyz").await;
    assert_eq!(code, 200, "{body}");
    assert!(snapshot(&subs[0].trust()) == files);
}

// ---- hostile values in {prefix}/bundle ----

/// A self-signed certificate without the CA flag (basicConstraints CA:FALSE).
fn non_ca() -> (String, Vec<u8>) {
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "not a CA");
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), cert.der().to_vec())
}

/// A valid self-signed CA (PEM, DER) nobody published.
fn stranger_ca(cn: &str) -> (String, Vec<u8>) {
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(90);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), cert.der().to_vec())
}

fn sha256_hex(der: &[u8]) -> String {
    certsync::cert::Cert::from_der(der).unwrap().fingerprint()
}

/// `bundle` with instance 0's first entry's current CAs set to `[fp]`, the PEM `pem` under
/// `fp` in `cas` (and no CA left there that nothing refers to), and `generation`.
fn with_current(bundle: &serde_json::Value, fp: &str, pem: &str, generation: u64) -> Vec<u8> {
    let mut b = bundle.clone();
    b["cas"][fp] = pem.into();
    b["instances"][0]["entries"][0]["current"] = serde_json::json!([fp]);
    b["generation"] = generation.into();
    let mut used = std::collections::BTreeSet::new();
    for inst in b["instances"].as_array().unwrap() {
        for entry in inst["entries"].as_array().unwrap() {
            for c in entry["current"].as_array().unwrap() {
                used.insert(c.as_str().unwrap().to_string());
            }
            for o in entry["overlap"].as_array().into_iter().flatten() {
                used.insert(o["sha256"].as_str().unwrap().to_string());
            }
        }
    }
    b["cas"]
        .as_object_mut()
        .unwrap()
        .retain(|k, _| used.contains(k));
    serde_json::to_vec(&b).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bundles_put_by_hand_change_no_subscriber_file() {
    let f = Fleet::new(2, false).await;
    let subs = f.two_subscribers();
    let from = marks(&subs);
    let mut p = f.publisher("pub0");
    p.wait_generation(0, "published generation", 0).await;
    // A second generation, so that a lower one is a real earlier generation.
    f.h.sim.rotate(&f.h.id(1), "international");
    let p_from = p.mark();
    p.signal(Signal::USR1);
    let g = p.wait_generation(p_from, "published generation", 1).await;
    wait_applied(&subs, &from, g).await;
    // The publisher goes: only the hand-made values below reach etcd.
    p.run.take().unwrap().stop().await;
    let bundle = f.bundle().await;
    assert_eq!(bundle["generation"].as_u64(), Some(g));
    let files: Vec<_> = subs.iter().map(|s| snapshot(&s.trust())).collect();

    let fp0 = bundle["instances"][0]["entries"][0]["current"][0]
        .as_str()
        .expect("instances[0].entries[0].current[0]")
        .to_string();
    assert_eq!(fp0, f.h.sim.ca(&f.h.id(0), "international").sha256_hex);
    let (leaf_pem, leaf_der) = non_ca();
    let (other_pem, _) = stranger_ca("a CA under another's fingerprint");
    let (new_pem, new_der) = stranger_ca("a valid CA in a stale generation");
    let new_fp = sha256_hex(&new_der);
    let key_pem = f.h.sim.ca(&f.h.id(0), "international").key_pem;
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        (
            "a private key as a CA",
            with_current(&bundle, &fp0, &key_pem, g + 1),
        ),
        (
            "a certificate that is not a CA",
            with_current(&bundle, &sha256_hex(&leaf_der), &leaf_pem, g + 1),
        ),
        (
            "a fingerprint that is not its PEM's",
            with_current(&bundle, &fp0, &other_pem, g + 1),
        ),
        (
            "a valid set at a lower generation",
            with_current(&bundle, &new_fp, &new_pem, g - 1),
        ),
        (
            "garbage bytes",
            b"\xff\xfe\x00garbage{\"format\": 1, \"generation\": 99".to_vec(),
        ),
    ];
    let refusal = format!("refusing the bundle at {}/bundle", f.prefix);
    for (what, value) in &hostile {
        let from = marks(&subs);
        f.etcd.put(&f.key("bundle"), value).await;
        for (s, (files, from)) in subs.iter().zip(files.iter().zip(&from)) {
            let line = s.wait_line(*from, &refusal).await;
            eprintln!("{what}: {}: {line}", s.name);
            assert!(
                snapshot(&s.trust()) == *files,
                "{what}: {}'s files changed",
                s.name
            );
            s.wait_metric("certsync_source_generation", "", g as f64)
                .await;
            assert!(
                !s.log()[*from..].contains("applied generation"),
                "{what}: {} applied it:\n{}",
                s.name,
                s.log()
            );
        }
    }

    // The same valid set at the next generation is applied: what was refused above was
    // refused for what it held, not for how it was put.
    let from = marks(&subs);
    f.etcd
        .put(
            &f.key("bundle"),
            &with_current(&bundle, &new_fp, &new_pem, g + 1),
        )
        .await;
    wait_applied(&subs, &from, g + 1).await;
    let want = certsync::cert::encode_pem(&new_der);
    for s in &subs {
        let file = f.file_of(s, 0);
        assert!(file.starts_with(&want), "{}: {file}", s.name);
        assert!(
            snapshot(&s.trust())[&format!("{}-international.crt", f.h.names[1])]
                == files[0][&format!("{}-international.crt", f.h.names[1])]
        );
    }
}

// ---- etcd's TLS and auth ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_with_client_certificates_and_a_password_they_sync_and_never_log_it() {
    let f = Fleet::new(2, true).await;
    assert!(f.etcd.endpoint().starts_with("https://"));
    let subs = vec![f.subscriber("sub0", Sub::default())];
    let from = marks(&subs);
    let p = f.publisher("pub0");
    p.wait_line(0, "became the leader").await;
    assert_eq!(p.wait_generation(0, "published generation", 0).await, 1);
    wait_applied(&subs, &from, 1).await;
    f.assert_same(&p, &subs).await;
    subs[0].wait_metric("certsync_source_up", "", 1.0).await;
    for n in [&p, &subs[0]] {
        assert!(
            !n.log().contains(PASSWORD),
            "{} logged the password:\n{}",
            n.name,
            n.log()
        );
        for path in ["/status", "/metrics"] {
            let (_, body) = get(n.port, path).await;
            assert!(
                !body.contains(PASSWORD),
                "{}'s {path} shows the password",
                n.name
            );
        }
    }
}

// ---- API calls (for the closing note) ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_publishers_over_ten_passes_make_the_api_calls_of_one() {
    const INSTANCES: usize = 3;
    const PASSES: u64 = 10;
    let f = Fleet::new(INSTANCES, false).await;
    let pubs: Vec<Node> = (0..3).map(|i| f.publisher(&format!("pub{i}"))).collect();
    let l = f.leader(&pubs).await;
    pubs[l].wait_generation(0, "published generation", 0).await;
    pubs[l]
        .wait_metric("certsync_publish_total", "result=\"ok\"", 1.0)
        .await;
    let first = f.h.sim.stats();
    for pass in 1..=PASSES {
        pubs[l].signal(Signal::USR1);
        // Each pass ends with a publish step: nothing changed, so nothing is written.
        pubs[l]
            .wait_metric(
                "certsync_publish_total",
                "result=\"unchanged\"",
                pass as f64,
            )
            .await;
    }
    let last = f.h.sim.stats();
    let (api, list) = (
        last.api_requests - first.api_requests,
        last.list_requests - first.list_requests,
    );
    eprintln!(
        "fleet API calls: 3 publishers, {INSTANCES} instances, {PASSES} passes: {api} download-link + {list} ListInstances requests = {} (after the leader's first pass: {} + {}); 3 hosts polling alone would make {}",
        api + list,
        first.api_requests,
        first.list_requests,
        3 * (api + list)
    );
    assert_eq!(api, PASSES * INSTANCES as u64, "{last:?}");
    assert_eq!(
        f.generation().await,
        1,
        "nothing changed: no new generation"
    );
    for (i, p) in pubs.iter().enumerate() {
        if i != l {
            p.wait_metric("certsync_leader", "", 0.0).await;
            assert!(!p.log().contains("published generation"), "{}", p.log());
        }
    }
}

// ---- the etcd the tests run ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_etcd_keeps_bytes_and_its_tls_and_auth_refuse_strangers() {
    let mut etcd = Etcd::start_tls().await;
    etcd.enable_auth("/certsync/x", USER, PASSWORD).await;
    let value = b"\xff\x00-not a flag\n".to_vec();
    etcd.put("/certsync/x/bundle", &value).await;
    assert_eq!(etcd.get_bytes("/certsync/x/bundle").await, Some(value));
    assert_eq!(etcd.get("/certsync/x/nothing").await, None);
    // Without a client certificate, or with one but no user, etcd refuses.
    let files = etcd.client_files(&tempfile::tempdir().unwrap().keep(), "stranger");
    let ctl = |args: &[&str]| {
        std::process::Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", etcd.endpoint()))
            .arg("--command-timeout=3s")
            .arg("--cacert")
            .arg(&files.ca_file)
            .args(args)
            .output()
            .unwrap()
    };
    assert!(!ctl(&["get", "/certsync/x/bundle"]).status.success());
    let cert = files.cert_file.to_str().unwrap();
    let key = files.key_file.to_str().unwrap();
    let with_cert = |user: Option<&str>, key_name: &str| {
        let mut args = vec!["--cert", cert, "--key", key];
        let login = user.map(|u| format!("--user={u}"));
        if let Some(login) = &login {
            args.push(login);
        }
        args.extend_from_slice(&["put", key_name, "v"]);
        ctl(&args)
    };
    let login = format!("{USER}:{PASSWORD}");
    assert!(!with_cert(None, "/certsync/x/bundle").status.success());
    let out = with_cert(Some(&login), "/certsync/x/bundle");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!with_cert(Some(&login), "/certsync/y").status.success());
}
