//! `certsync status [--json]` (SPEC 2): asks the running daemon for its `/status` (at the
//! config's `server.listen`) and prints it: per instance and category the file, the CA
//! fingerprint, notAfter and days left, the overlap CAs with the time each leaves, the last
//! success and error; then each endpoint's verification (SPEC 13) and the next pass.
//!
//! Owns: reaching the daemon and the table. It reads the document the daemon publishes
//! ([`StatusSnapshot`]) and decides nothing of its own beyond the exit status.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use super::{EXIT_FAILED, EXIT_OK, Logging, Printer, errln, load};
use crate::status::StatusSnapshot;
use crate::text::Untrusted;

/// How long the daemon has to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The largest `/status` document read (10,000 instances make a few megabytes).
const MAX_STATUS_BYTES: u64 = 256 << 20;

/// `certsync status [--json]`: 0 when the daemon answered and reports no failure; 1 when it
/// cannot be reached, or is not ready, or an instance, hook or the trust folder failed.
pub async fn status(path: &Path, logging: &Logging, json: bool) -> u8 {
    let config = match load(path, logging) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(listen) = config.server.listen else {
        errln(format_args!(
            "certsync: server.listen is not set in {}: the daemon serves no /status to ask",
            path.display()
        ));
        return EXIT_FAILED;
    };
    let url = format!("http://{}/status", reachable(listen));
    let (doc, body) = match fetch(&url).await {
        Ok(found) => found,
        Err(e) => {
            errln(format_args!(
                "certsync: cannot read the daemon's status at {url}: {e}"
            ));
            return EXIT_FAILED;
        }
    };
    let mut out = Printer::stdout();
    if json {
        // The daemon's document as it is, on one line.
        outln!(out, "{}", String::from_utf8_lossy(&body).trim_end());
    } else {
        print_table(&mut out, &doc);
    }
    out.flush();
    if failing(&doc) { EXIT_FAILED } else { EXIT_OK }
}

/// Where to reach a daemon listening on `listen`: an unspecified address (`0.0.0.0`, `::`)
/// is reached on loopback.
fn reachable(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), listen.port())
        }
        _ => listen,
    }
}

/// GETs the document, parsed, and its bytes.
async fn fetch(url: &str) -> Result<(StatusSnapshot, Vec<u8>), String> {
    let client = crate::cloud::http::build_local_client(TIMEOUT).map_err(|e| e.to_string())?;
    let mut response = client
        .get(url)
        .send()
        .await
        .map_err(|e| crate::cloud::http::TransportError::new(e).to_string())?;
    let code = response.status();
    if !code.is_success() {
        return Err(format!("HTTP {code}"));
    }
    let body = crate::cloud::http::read_capped(&mut response, MAX_STATUS_BYTES)
        .await
        .map_err(|e| e.to_string())?;
    let doc = serde_json::from_slice(&body)
        .map_err(|e| format!("the answer is not a certsync status document: {e}"))?;
    Ok((doc, body))
}

/// Whether the daemon reports a failure: not ready, an instance whose last sync failed, a
/// failing hook, or a trust folder it could not write.
fn failing(doc: &StatusSnapshot) -> bool {
    !doc.ready
        || doc.instances.iter().any(|i| i.last_error.is_some())
        || !doc.failing_hooks.is_empty()
        || !doc.store_errors.is_empty()
        || !doc.source_errors.is_empty()
}

fn dash(v: Option<&str>) -> String {
    v.map(|s| Untrusted(s).to_string())
        .unwrap_or_else(|| "-".to_string())
}

fn print_table(out: &mut Printer, doc: &StatusSnapshot) {
    outln!(out, "ready: {}", if doc.ready { "yes" } else { "no" });
    for reason in &doc.reasons {
        outln!(out, "  {}", Untrusted(reason));
    }
    for hook in &doc.failing_hooks {
        outln!(out, "  hook failing: {}", Untrusted(hook));
    }
    for e in &doc.source_errors {
        outln!(out, "  source: {}", Untrusted(e));
    }
    for e in &doc.store_errors {
        outln!(out, "  trust folder: {}", Untrusted(e));
    }
    if let Some(fleet) = &doc.fleet {
        let leading = match fleet.leading {
            Some(true) => ", leading",
            Some(false) => ", standing by (another publisher leads)",
            None => "",
        };
        let generation = fleet
            .generation
            .map_or_else(|| "no set yet".to_string(), |g| format!("generation {g}"));
        outln!(
            out,
            "fleet: {}{leading} at {}, {generation}",
            Untrusted(&fleet.role),
            Untrusted(&fleet.prefix)
        );
    }
    outln!(
        out,
        "last pass: {}   next pass: {}",
        dash(doc.last_pass.as_deref()),
        dash(doc.next_pass.as_deref())
    );
    outln!(out);

    let mut rows = vec![row(&[
        "INSTANCE",
        "CATEGORY",
        "FILE",
        "SHA256",
        "NOT AFTER",
        "DAYS",
        "LAST SUCCESS",
        "LAST ERROR",
    ])];
    for inst in &doc.instances {
        let name = Untrusted(&inst.name).to_string();
        let last_success = dash(inst.last_success.as_deref());
        let last_error = dash(inst.last_error.as_deref());
        if inst.categories.is_empty() {
            rows.push(vec![
                name.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                last_success.clone(),
                last_error.clone(),
            ]);
        }
        for c in &inst.categories {
            rows.push(vec![
                name.clone(),
                Untrusted(&c.category).to_string(),
                Untrusted(&c.file).to_string(),
                c.fingerprints.join(","),
                dash(c.not_after.as_deref()),
                c.days_left
                    .map_or_else(|| "-".to_string(), |d| d.to_string()),
                last_success.clone(),
                last_error.clone(),
            ]);
            for o in &c.overlap {
                let leaves = if o.kept_by_endpoints {
                    format!(
                        "kept: an endpoint may still use it; leaves by {}",
                        o.leaves_by
                    )
                } else {
                    format!("leaves {}", o.leaves_at)
                };
                rows.push(vec![
                    String::new(),
                    "overlap".into(),
                    format!("replaced {}", o.replaced_at),
                    o.sha256.clone(),
                    leaves,
                    String::new(),
                    String::new(),
                    String::new(),
                ]);
            }
        }
    }
    print_rows(out, &rows);

    if doc.endpoints.is_empty() {
        return;
    }
    outln!(out);
    let mut rows = vec![row(&[
        "INSTANCE",
        "ENDPOINT",
        "RESULT",
        "ANCHOR",
        "LEAF NOT AFTER",
        "PROBED",
    ])];
    for e in &doc.endpoints {
        rows.push(vec![
            Untrusted(&e.name).to_string(),
            Untrusted(&e.endpoint).to_string(),
            if e.verified {
                "verified".to_string()
            } else {
                format!("{}: {}", Untrusted(&e.result), Untrusted(&e.detail))
            },
            dash(e.anchor.as_deref()),
            dash(e.leaf_not_after.as_deref()),
            Untrusted(&e.probed_at).to_string(),
        ]);
    }
    print_rows(out, &rows);
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

/// Prints `rows` with each column as wide as its widest cell (the last one unpadded).
fn print_rows(out: &mut Printer, rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count());
                line.push_str(cell);
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        outln!(out, "{}", line.trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_listen_address_is_reached_on_loopback() {
        let at = |s: &str| reachable(s.parse().unwrap()).to_string();
        assert_eq!(at("0.0.0.0:9464"), "127.0.0.1:9464");
        assert_eq!(at("[::]:9464"), "[::1]:9464");
        assert_eq!(at("10.1.2.3:9464"), "10.1.2.3:9464");
    }

    #[test]
    fn a_failure_anywhere_in_the_document_is_a_failure() {
        let ok = StatusSnapshot {
            ready: true,
            ..StatusSnapshot::default()
        };
        assert!(!failing(&ok));
        assert!(failing(&StatusSnapshot::default()));
        let mut hook = ok.clone();
        hook.failing_hooks.push("reload".into());
        assert!(failing(&hook));
        let mut inst = ok.clone();
        inst.instances.push(crate::status::InstanceStatus {
            last_error: Some("HTTP 500".into()),
            ..Default::default()
        });
        assert!(failing(&inst));
    }
}
