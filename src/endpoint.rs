//! A database endpoint, `host:port` (SPEC 13): what `instance.endpoints` names and what
//! ListInstances' node addresses become, and what the probes connect to.
//!
//! Owns: the syntax (an IPv4 address, a bracketed IPv6 address or a DNS name, then a port
//! 1-65535) and its one display form. A leaf: imports nothing of ours.

use std::fmt;
use std::net::IpAddr;

/// One endpoint of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    /// An IP address (without brackets) or a DNS name, lower case.
    pub host: String,
    /// The TCP port.
    pub port: u16,
}

impl Endpoint {
    /// Parses `host:port`: `10.0.0.5:8635`, `[fd00::5]:6379`, `redis.internal:6379`.
    pub fn parse(text: &str) -> Result<Endpoint, String> {
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, port) = rest
                .split_once("]:")
                .ok_or_else(|| "an IPv6 address is written [address]:port".to_string())?;
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("{host:?} is not an IPv6 address"));
            }
            (host.to_string(), port)
        } else {
            let (host, port) = text
                .rsplit_once(':')
                .ok_or_else(|| "is not host:port".to_string())?;
            if host.contains(':') {
                return Err("an IPv6 address is written [address]:port".to_string());
            }
            if host.parse::<std::net::Ipv4Addr>().is_err() && !is_dns_name(host) {
                return Err(format!("{host:?} is neither an IP address nor a host name"));
            }
            (host.to_ascii_lowercase(), port)
        };
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(format!("{port:?} is not a port (1-65535)")),
        };
        Ok(Endpoint { host, port })
    }

    /// The host as an IP address, when it is one.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A DNS name: labels of letters, digits and hyphens (not at either end), 1-63 each, 253 in
/// all.
fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        // All digits and dots would be a malformed IPv4 address, not a name.
        && !s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_names_and_ports_parse_and_print_back() {
        for (text, host, port) in [
            ("10.0.0.5:8635", "10.0.0.5", 8635),
            ("[fd00::5]:6379", "fd00::5", 6379),
            ("Redis.Internal:6379", "redis.internal", 6379),
            ("localhost:1", "localhost", 1),
        ] {
            let e = Endpoint::parse(text).unwrap();
            assert_eq!((e.host.as_str(), e.port), (host, port), "{text}");
            assert_eq!(Endpoint::parse(&e.to_string()).unwrap(), e);
        }
        assert_eq!(Endpoint::parse("[::1]:80").unwrap().to_string(), "[::1]:80");
        assert!(Endpoint::parse("10.0.0.5:8635").unwrap().ip().is_some());
        assert!(Endpoint::parse("db:8635").unwrap().ip().is_none());
    }

    #[test]
    fn bad_endpoints_say_why() {
        for bad in [
            "10.0.0.5",
            "10.0.0.5:0",
            "10.0.0.5:65536",
            "10.0.0.5:x",
            "fd00::5:6379",
            "[fd00::5]6379",
            "[nope]:1",
            "999.1.1.1:80",
            "-bad.example:80",
            "a b:80",
            ":80",
            "",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
