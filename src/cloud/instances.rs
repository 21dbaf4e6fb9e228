//! ListInstances (SPEC 5.4), as data: the instances a page lists, the answer's JSON, and the
//! bounded paging that reports a listing it had to cut short instead of looping.
//!
//! Pure: no request is made here (that is `api::ApiClient::list_instances`, which feeds pages
//! to [`Paging`]), so the stopping rules are unit-tested without a server.

use serde::Deserialize;

use crate::endpoint::Endpoint;

/// One instance of ListInstances, the fields discovery uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedInstance {
    /// `id`.
    pub id: String,
    /// `name`.
    pub name: String,
    /// `status` (`normal`, `abnormal`, `creating`, ...).
    pub status: String,
    /// `datastore.type`.
    pub datastore_type: String,
    /// `ssl` is not `"0"`.
    pub ssl: bool,
    /// Its nodes' addresses: `groups[].nodes[].private_ip` with the node's `port`, else the
    /// instance's (a string or a number). Only IP addresses are taken (a name from the API
    /// would let it point the probes anywhere), at most [`MAX_NODES`].
    pub endpoints: Vec<Endpoint>,
}

/// At most this many node addresses are taken from one listed instance.
pub const MAX_NODES: usize = 64;

/// ListInstances' page size (the API's largest).
pub const LIST_PAGE: usize = 100;

/// At most this many pages are read per query (10,000 instances), whatever `total_count` says.
pub const MAX_LIST_PAGES: usize = 100;

/// What one ListInstances query found, and whether paging was cut short.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstanceList {
    /// Every instance listed, each id once, in the order first listed.
    pub instances: Vec<ListedInstance>,
    /// `Some` when paging stopped before the listing was complete: the instances past that
    /// point are missing from [`InstanceList::instances`].
    pub truncated: Option<Truncation>,
}

/// Why a ListInstances query stopped before its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Truncation {
    /// [`MAX_LIST_PAGES`] full pages were read and the API still claims more.
    PageLimit {
        /// Pages read.
        pages: usize,
        /// The `total_count` the API claimed, when it gave one.
        total_count: Option<usize>,
    },
    /// A full page held only ids listed before: the server ignores `offset`.
    OffsetIgnored {
        /// The offset of that page.
        offset: usize,
    },
}

impl std::fmt::Display for Truncation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Truncation::PageLimit { pages, total_count } => {
                write!(
                    f,
                    "stopped after {pages} pages ({} instances)",
                    pages.saturating_mul(LIST_PAGE)
                )?;
                if let Some(total) = total_count {
                    write!(f, " although total_count says {total}")?;
                }
                Ok(())
            }
            Truncation::OffsetIgnored { offset } => write!(
                f,
                "the page at offset {offset} lists only instances already listed: the API ignores offset"
            ),
        }
    }
}

/// The state of one paged ListInstances query: what was listed so far and where the next
/// page starts. Pure, so the stopping rules are unit-tested without a server.
#[derive(Default)]
pub(crate) struct Paging {
    seen: std::collections::HashSet<String>,
    out: Vec<ListedInstance>,
    /// `offset` of the next page: entries received so far (duplicates included, as the
    /// server counts them).
    pub(crate) offset: usize,
    pages: usize,
}

impl Paging {
    /// Takes one page; `Some` when the query is done.
    pub(crate) fn take(&mut self, page: InstancesPage) -> Option<InstanceList> {
        self.pages += 1;
        let got = page.instances.len();
        self.offset = self.offset.saturating_add(got);
        let mut fresh = 0;
        for inst in page.instances {
            if self.seen.insert(inst.id.clone()) {
                fresh += 1;
                self.out.push(inst);
            }
        }
        let truncated = if got >= LIST_PAGE && fresh == 0 {
            // Checked before total_count: a full page of repeats is never the real end, even
            // when the count of entries received reaches total_count.
            Some(Truncation::OffsetIgnored {
                offset: self.offset - got,
            })
        } else if got < LIST_PAGE || page.total_count.is_some_and(|t| self.offset >= t) {
            // A short or empty page is the last; total_count also guards against a server
            // that ignores `limit`.
            None
        } else if self.pages >= MAX_LIST_PAGES {
            Some(Truncation::PageLimit {
                pages: self.pages,
                total_count: page.total_count,
            })
        } else {
            return None;
        };
        Some(InstanceList {
            instances: std::mem::take(&mut self.out),
            truncated,
        })
    }
}

#[derive(Deserialize)]
struct InstancesBody {
    #[serde(default)]
    instances: Vec<InstanceBody>,
    total_count: Option<usize>,
}

#[derive(Deserialize)]
struct InstanceBody {
    id: String,
    #[serde(default)]
    name: String,
    status: Option<String>,
    datastore: Option<DatastoreBody>,
    ssl: Option<String>,
    port: Option<serde_json::Value>,
    #[serde(default)]
    groups: Vec<GroupBody>,
}

#[derive(Deserialize)]
struct GroupBody {
    #[serde(default)]
    nodes: Vec<NodeBody>,
}

#[derive(Deserialize)]
struct NodeBody {
    private_ip: Option<String>,
    port: Option<serde_json::Value>,
}

/// A port written as a number or a string of digits.
fn port_of(value: Option<&serde_json::Value>) -> Option<u16> {
    match value? {
        serde_json::Value::Number(n) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|p| *p > 0)
}

/// The node addresses of one listed instance (IP addresses only, each once, in order).
fn node_endpoints(instance: &InstanceBody) -> Vec<Endpoint> {
    let mut out: Vec<Endpoint> = Vec::new();
    for node in instance.groups.iter().flat_map(|g| g.nodes.iter()) {
        let Some(ip) = node
            .private_ip
            .as_deref()
            .and_then(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
        else {
            continue;
        };
        let Some(port) = port_of(node.port.as_ref()).or_else(|| port_of(instance.port.as_ref()))
        else {
            continue;
        };
        let endpoint = Endpoint {
            host: ip.to_string(),
            port,
        };
        if !out.contains(&endpoint) {
            out.push(endpoint);
        }
        if out.len() == MAX_NODES {
            break;
        }
    }
    out
}

#[derive(Deserialize)]
struct DatastoreBody {
    #[serde(rename = "type", default)]
    kind: String,
}

/// One page of ListInstances: its instances and its `total_count`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstancesPage {
    /// The instances of this page.
    pub instances: Vec<ListedInstance>,
    /// `total_count`, when the answer has it.
    pub total_count: Option<usize>,
}

/// Reads one ListInstances answer. The error is serde's: the caller says where the JSON went
/// wrong, never its text.
pub(crate) fn parse_page(body: &[u8]) -> Result<InstancesPage, serde_json::Error> {
    let page: InstancesBody = serde_json::from_slice(body)?;
    Ok(InstancesPage {
        instances: page
            .instances
            .into_iter()
            .map(|i| {
                let endpoints = node_endpoints(&i);
                ListedInstance {
                    id: i.id,
                    name: i.name,
                    status: i.status.unwrap_or_default(),
                    datastore_type: i.datastore.map(|d| d.kind).unwrap_or_default(),
                    ssl: i.ssl.as_deref() != Some("0"),
                    endpoints,
                }
            })
            .collect(),
        total_count: page.total_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(ids: impl IntoIterator<Item = usize>) -> Vec<ListedInstance> {
        ids.into_iter()
            .map(|n| ListedInstance {
                id: format!("id-{n}"),
                name: format!("inst-{n}"),
                status: "normal".into(),
                datastore_type: "mongodb".into(),
                ssl: true,
                endpoints: Vec::new(),
            })
            .collect()
    }

    fn page(ids: impl IntoIterator<Item = usize>, total_count: Option<usize>) -> InstancesPage {
        InstancesPage {
            instances: listed(ids),
            total_count,
        }
    }

    /// Feeds pages until the query is done (failing after 1,000 pages); gives the result and
    /// the offsets asked for.
    fn run(mut next: impl FnMut(usize) -> InstancesPage) -> (InstanceList, Vec<usize>) {
        let mut paging = Paging::default();
        let mut offsets = Vec::new();
        for _ in 0..1000 {
            offsets.push(paging.offset);
            if let Some(done) = paging.take(next(paging.offset)) {
                return (done, offsets);
            }
        }
        panic!("paging did not stop after 1000 pages");
    }

    #[test]
    fn paging_stops_at_a_short_page_an_empty_page_or_total_count() {
        let (done, offsets) = run(|o| page(o..(o + 100).min(250), Some(250)));
        assert_eq!((done.instances.len(), done.truncated), (250, None));
        assert_eq!(offsets, [0, 100, 200]);
        // Exactly two full pages without total_count: the empty third page ends it.
        let (done, offsets) = run(|o| page(o..(o + 100).min(200), None));
        assert_eq!((done.instances.len(), done.truncated), (200, None));
        assert_eq!(offsets, [0, 100, 200]);
        // total_count reached on a full page: no request for an empty page.
        let (done, offsets) = run(|o| page(o..o + 100, Some(200)));
        assert_eq!((done.instances.len(), offsets.len()), (200, 2));
    }

    #[test]
    fn regression_paging_stops_when_offset_is_ignored_even_with_a_huge_total() {
        let (done, offsets) = run(|_| page(0..100, Some(1_000_000_000_000)));
        assert_eq!(done.instances.len(), 100);
        assert_eq!(offsets, [0, 100]);
        assert_eq!(
            done.truncated,
            Some(Truncation::OffsetIgnored { offset: 100 })
        );
        // With a truthful total_count the old rule (entries received >= total) stopped here
        // too, but called a listing with a third of the instances missing complete.
        let (done, _) = run(|_| page(0..100, Some(150)));
        assert_eq!(
            done.truncated,
            Some(Truncation::OffsetIgnored { offset: 100 })
        );
        let text = done.truncated.unwrap().to_string();
        assert!(text.contains("ignores offset"), "{text}");
    }

    #[test]
    fn regression_paging_stops_after_100_pages_of_an_endless_listing() {
        let (done, offsets) = run(|o| page(o..o + 100, Some(1_000_000_000_000)));
        assert_eq!(offsets.len(), MAX_LIST_PAGES);
        assert_eq!(done.instances.len(), 10_000);
        assert_eq!(
            done.truncated,
            Some(Truncation::PageLimit {
                pages: 100,
                total_count: Some(1_000_000_000_000)
            })
        );
        let text = done.truncated.unwrap().to_string();
        assert!(text.contains("100 pages (10000 instances)"), "{text}");
        // Without total_count at all, too.
        let (done, offsets) = run(|o| page(o..o + 100, None));
        assert_eq!(offsets.len(), MAX_LIST_PAGES);
        assert!(matches!(done.truncated, Some(Truncation::PageLimit { .. })));
    }

    #[test]
    fn an_id_listed_on_two_pages_is_kept_once() {
        // An instance created while paging shifts the listing by one: the last id of a page
        // comes again first on the next.
        let (done, offsets) = run(|o| {
            let start = o.saturating_sub(usize::from(o > 0));
            page(start..(start + 100).min(230), Some(230))
        });
        assert_eq!(offsets, [0, 100, 200]);
        let ids: std::collections::HashSet<_> = done.instances.iter().map(|i| &i.id).collect();
        assert_eq!(ids.len(), done.instances.len());
        assert_eq!(done.instances.len(), 230);
        assert_eq!(done.truncated, None);
    }

    #[test]
    fn node_addresses_take_the_nodes_port_else_the_instances_and_only_ip_addresses() {
        let body = br#"{"instances":[
            {"id":"a","port":"8635","groups":[{"nodes":[
                {"private_ip":"192.168.0.5"},
                {"private_ip":"192.168.0.6","port":6379},
                {"private_ip":"192.168.0.5"},
                {"private_ip":"db.attacker.example"},
                {"private_ip":"fd00::7","port":"99999"},
                {"private_ip":"fd00::8"}
            ]}]},
            {"id":"b","port":8636,"groups":[{"nodes":[{"private_ip":"10.0.0.1","port":"x"}]}]},
            {"id":"c","groups":[{"nodes":[{"private_ip":"10.0.0.2"}]}]},
            {"id":"d"}
        ],"total_count":4}"#;
        let page = parse_page(body).unwrap();
        let shown: Vec<Vec<String>> = page
            .instances
            .iter()
            .map(|i| i.endpoints.iter().map(ToString::to_string).collect())
            .collect();
        assert_eq!(
            shown,
            [
                // A node's unusable port falls back to the instance's.
                vec![
                    "192.168.0.5:8635",
                    "192.168.0.6:6379",
                    "[fd00::7]:8635",
                    "[fd00::8]:8635"
                ],
                vec!["10.0.0.1:8636"],
                vec![],
                vec![],
            ]
        );
    }
}
