//! `[server]`: where `/metrics`, `/healthz`, `/readyz` and `/status` are served (SPEC 9).
//!
//! Owns: the section's one key and its syntax; no server without it. Must not: bind the
//! address (the server does), or judge it (a non-loopback address is a warning of the fs
//! pass, not an error).

use toml::Table;

use super::super::keys::{SectionKind, SectionSchema};
use super::super::reader::{Problems, Section};

/// The keys of `[server]`.
pub(in crate::config) const SCHEMA: SectionSchema = SectionSchema {
    name: "server",
    kind: SectionKind::Table,
    keys: &["listen"],
    variants: &[],
};

/// `[server]`.
#[derive(Debug, Clone, Default)]
pub struct Server {
    /// `listen`: where `/metrics`, `/healthz`, `/readyz` and `/status` are served; `None`: no
    /// server.
    pub listen: Option<std::net::SocketAddr>,
}

/// Reads `[server]`: `listen` is an IP address and port (`127.0.0.1:9464`, `[::1]:9464`).
pub(in crate::config) fn read(p: &mut Problems, table: &Table) -> Server {
    let sec = Section::open(p, SCHEMA.name, table, SCHEMA.keys);
    let listen = sec.string(p, "listen").and_then(|text| match text.parse() {
        Ok(addr) => Some(addr),
        Err(_) => {
            p.push(
                sec.key("listen"),
                format!("{text:?} is not an IP address and port, like \"127.0.0.1:9464\""),
            );
            None
        }
    });
    Server { listen }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{keys, table, walk};
    use super::*;

    #[test]
    fn listen_is_an_address_and_port_and_defaults_to_no_server() {
        let t = table("listen = \"[::1]:9464\"");
        let (s, problems, _) = walk(|p, _| read(p, &t));
        assert!(problems.is_empty());
        assert_eq!(s.listen, Some("[::1]:9464".parse().unwrap()));

        let t = table("");
        assert_eq!(walk(|p, _| read(p, &t)).0.listen, None);

        for bad in ["localhost:9464", "127.0.0.1", "9464"] {
            let t = table(&format!("listen = {bad:?}"));
            let (_, problems, _) = walk(|p, _| read(p, &t));
            assert_eq!(keys(&problems), ["server.listen"], "{bad}");
        }
    }
}
