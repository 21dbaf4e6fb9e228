//! The canonical request and the string to sign, as `signer.py` builds them.
//!
//! Owns the encoding rules (Python `quote(s, safe='~')`: RFC 3986 unreserved characters kept,
//! everything else `%XX` in upper-case hex) and the decoding rule (`unquote`: a `%` not followed
//! by two hex digits stays as it is; invalid UTF-8 becomes U+FFFD). Holds no key.

use std::fmt::Write as _;

/// Percent-encodes `s` as Python's `quote(s, safe='~')` does (what the SDK's `_url_encode` is).
fn encode(s: &str, out: &mut String) {
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            write!(out, "%{b:02X}").expect("writing to a String");
        }
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Python's `unquote`: `%XX` becomes the byte, anything else is kept; the bytes are read as
/// UTF-8 with U+FFFD for invalid sequences (Python's `errors='replace'`).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex_val(bytes[i + 1]), hex_val(bytes[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The canonical URI of a resource path: percent-decoded, split on `/`, each segment encoded,
/// joined, and ending in `/` (added here only: the wire path keeps its own form).
pub fn canonical_uri(path: &str) -> String {
    let decoded = decode(path);
    let mut out = String::with_capacity(decoded.len() + 1);
    for (i, segment) in decoded.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        encode(segment, &mut out);
    }
    if !out.ends_with('/') {
        out.push('/');
    }
    out
}

/// The canonical query of `(key, value)` pairs: sorted by key then value (raw, by code point),
/// each written `enc(key)=enc(value)`, joined with `&`. The SDK sends exactly this string as the
/// request's query, so callers put it on the wire as it is. Booleans are the caller's to write
/// as `true`/`false`; a list is the caller's to pass as repeated pairs.
pub fn canonical_query<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let mut sorted: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .collect();
    sorted.sort_unstable();
    let mut out = String::new();
    for (i, (k, v)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode(k, &mut out);
        out.push('=');
        encode(v, &mut out);
    }
    out
}

/// The canonical query of a query string as received: split on `&` (empty pieces dropped), each
/// piece split at its first `=` (none: an empty value), both sides percent-decoded (`+` stays a
/// `+`: the SDK never sends one unencoded), then [`canonical_query`].
pub fn canonical_query_from_raw(raw: &str) -> String {
    let pairs: Vec<(String, String)> = raw
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect();
    canonical_query(&pairs)
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn hex_sha256(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

/// `METHOD\nURI\nQUERY\nHEADERS\nSIGNED\nBODY_HASH`: `headers` are the signed headers as
/// `(lower-case name, value)`, already sorted by name; each value is trimmed here.
pub fn canonical_request(
    method: &str,
    canonical_uri: &str,
    canonical_query: &str,
    headers: &[(String, &str)],
    body_hash: &str,
) -> String {
    let mut out = String::new();
    out.push_str(method);
    out.push('\n');
    out.push_str(canonical_uri);
    out.push('\n');
    out.push_str(canonical_query);
    out.push('\n');
    for (name, value) in headers {
        out.push_str(name);
        out.push(':');
        out.push_str(value.trim());
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed_header_list(headers));
    out.push('\n');
    out.push_str(body_hash);
    out
}

/// `SDK-HMAC-SHA256\n<X-Sdk-Date>\n<hex sha256(canonical request)>`.
pub fn string_to_sign(date: &str, canonical_request: &str) -> String {
    format!(
        "{}\n{date}\n{}",
        crate::ALGORITHM,
        hex_sha256(canonical_request.as_bytes())
    )
}

/// `h1;h2;...` of sorted, lower-case header names.
pub(crate) fn signed_header_list(headers: &[(String, &str)]) -> String {
    let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
    names.join(";")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_segments_are_encoded_and_end_in_a_slash() {
        assert_eq!(canonical_uri("/v3/p/instances"), "/v3/p/instances/");
        assert_eq!(canonical_uri("/v3/p/instances/"), "/v3/p/instances/");
        assert_eq!(canonical_uri("/a b/%7Ec*d"), "/a%20b/~c%2Ad/");
        // An encoded slash is decoded first, so it splits the path as the SDK's does.
        assert_eq!(canonical_uri("/a%2Fb"), "/a/b/");
        assert_eq!(canonical_uri("/%E6%B5%8B"), "/%E6%B5%8B/");
        assert_eq!(canonical_uri("/%zz%4"), "/%25zz%254/");
        assert_eq!(canonical_uri("/%ff"), "/%EF%BF%BD/");
        assert_eq!(canonical_uri(""), "/");
    }

    #[test]
    fn query_is_sorted_by_key_then_value() {
        assert_eq!(
            canonical_query(&[("b", "2"), ("a", "z"), ("a", "y"), ("c", "")]),
            "a=y&a=z&b=2&c="
        );
        assert_eq!(
            canonical_query_from_raw("name=%2Amy%20db&&flag&a=1+1"),
            "a=1%2B1&flag=&name=%2Amy%20db"
        );
        assert_eq!(canonical_query::<&str, &str>(&[]), "");
    }
}
