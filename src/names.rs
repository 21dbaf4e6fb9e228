//! The shared vocabulary of names: instance ids and names, categories, regions, download host
//! patterns, the `file_name` template, trust folder paths, and the sanitising of names that come
//! from the cloud (discovered instances).
//!
//! Owns: pure predicates, the template renderer and the sanitiser, with no I/O and no knowledge
//! of key paths (config turns a `false` or an `Err` into a problem at the right key). A leaf:
//! config, the daemon and the store all use it; it uses none of them.

use std::path::{Component, Path, PathBuf};

/// Name of the store's manifest in the trust folder (SPEC 7); no configured file may take it.
pub const MANIFEST_FILE_NAME: &str = ".certsync-manifest.json";

/// Instance ids go into URL paths and file names: `[A-Za-z0-9-]{1,64}`.
pub fn is_instance_id(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A discovered instance's name in the name alphabet `[A-Za-z0-9._-]{1,64}` (other characters
/// become `-`, a leading `.` is dropped); `None` when nothing usable is left (the id is used then).
pub fn sanitize_name(name: &str) -> Option<String> {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    let clean = clean.trim_start_matches('.').to_string();
    (!clean.is_empty() && clean.chars().any(|c| c.is_ascii_alphanumeric())).then_some(clean)
}

/// Instance names, categories: `[A-Za-z0-9._-]{1,64}`.
pub fn is_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Project ids go into URL paths: `[A-Za-z0-9-]{1,64}` (Huawei's are 32 lower-case hex digits).
pub fn is_project_id(s: &str) -> bool {
    is_instance_id(s)
}

/// The shape of a Huawei Cloud region (`cn-north-4`, `eu-west-101`, `my-kualalumpur-1`,
/// `ae-ad-1`): lower-case, at least two `-`-separated parts, the first letters only, the last
/// digits only. Checked by shape rather than a list so that new regions work; the shape keeps
/// the region a single DNS label inside the default endpoint.
pub fn is_region(s: &str) -> bool {
    if s.len() > 63 {
        return false;
    }
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && parts[0].bytes().all(|b| b.is_ascii_lowercase())
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
}

/// A DNS host name (labels of `[a-z0-9-]`, 1..=63 characters, not starting or ending with `-`),
/// which also covers dotted IPv4 addresses. Expects lower case.
pub fn is_host_name(s: &str) -> bool {
    (1..=253).contains(&s.len())
        && s.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// An entry of `allowed_download_hosts`, already lower-cased: a host name, `*.suffix`, or a
/// bracketed IPv6 address (`[::1]`, as `url::Url::host_str` prints it).
pub fn is_host_pattern(s: &str) -> bool {
    if let Some(suffix) = s.strip_prefix("*.") {
        return is_host_name(suffix);
    }
    if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    is_host_name(s)
}

/// True when `name` looks like an OpenSSL `-CApath` hash file: `^[0-9a-f]{8}\.[0-9]+$`.
pub fn looks_like_hash_file(name: &str) -> bool {
    match name.split_once('.') {
        Some((hash, n)) => {
            hash.len() == 8
                && hash
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                && !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// Why `name` cannot be a file that certsync writes into the trust folder, if it cannot: it
/// must be a plain, visible file name that is neither the manifest, nor the bundle, nor a
/// `-CApath` hash file name.
pub fn file_name_problem(name: &str, bundle: Option<&str>) -> Option<String> {
    if name.is_empty() {
        Some("is empty".into())
    } else if name.contains('/') || name.contains('\0') {
        Some("is not a plain file name (contains '/' or NUL)".into())
    } else if name.starts_with('.') {
        // Covers ".", ".." and hidden files, which the store reserves for its own use.
        Some("starts with '.'".into())
    } else if name == MANIFEST_FILE_NAME {
        Some("is the manifest's name".into())
    } else if bundle == Some(name) {
        Some("is the bundle's name (trust.bundle)".into())
    } else if looks_like_hash_file(name) {
        Some(
            "looks like a -CApath hash file (<8 hex digits>.<n>), which trust.capath manages"
                .into(),
        )
    } else {
        None
    }
}

/// One piece of a parsed `file_name` template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Text copied as is.
    Literal(&'a str),
    /// `{name}`: the instance name, else its id.
    Name,
    /// `{id}`: the instance id.
    Id,
    /// `{category}`: the certificate category.
    Category,
}

/// Splits a `file_name` template into pieces; the only placeholders are `{name}`, `{id}` and
/// `{category}`, and braces appear nowhere else.
pub fn parse_template(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        match rest.find(['{', '}']) {
            None => {
                pieces.push(Piece::Literal(rest));
                break;
            }
            Some(i) if rest.as_bytes()[i] == b'}' => {
                return Err(format!(
                    "unmatched '}}' at byte {}",
                    template.len() - rest.len() + i
                ));
            }
            Some(i) => {
                if i > 0 {
                    pieces.push(Piece::Literal(&rest[..i]));
                }
                let after = &rest[i + 1..];
                let Some(end) = after.find('}') else {
                    return Err("unclosed '{'".into());
                };
                pieces.push(match &after[..end] {
                    "name" => Piece::Name,
                    "id" => Piece::Id,
                    "category" => Piece::Category,
                    other => {
                        return Err(format!(
                            "unknown placeholder {{{other}}} (known: {{name}}, {{id}}, {{category}})"
                        ));
                    }
                });
                rest = &after[end + 1..];
            }
        }
    }
    Ok(pieces)
}

/// Renders a template in one pass, so that a value containing `{...}` is never expanded again.
/// A template that does not parse renders as itself (validated configs never hold one).
pub fn render_template(template: &str, name: &str, id: &str, category: &str) -> String {
    let Ok(pieces) = parse_template(template) else {
        return template.to_string();
    };
    let mut out = String::with_capacity(template.len() + 32);
    for piece in pieces {
        out.push_str(match piece {
            Piece::Literal(s) => s,
            Piece::Name => name,
            Piece::Id => id,
            Piece::Category => category,
        });
    }
    out
}

/// Removes `.` and resolves `..` lexically (never above the root), dropping trailing slashes.
/// `path` must be absolute.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_by_shape() {
        for ok in [
            "cn-north-4",
            "eu-west-101",
            "my-kualalumpur-1",
            "ae-ad-1",
            "ap-southeast-3",
            "cn-southwest-2",
        ] {
            assert!(is_region(ok), "{ok}");
        }
        for bad in [
            "",
            "CN-north-4",
            "cn_north_4",
            "cn-north",
            "cn--4",
            "4-north-4",
            "cn-north-4.evil.com",
            "cn-north-4/",
            "-cn-4",
        ] {
            assert!(!is_region(bad), "{bad}");
        }
    }

    #[test]
    fn host_patterns() {
        for ok in [
            "obs.cn-north-4.myhuaweicloud.com",
            "*.myhuaweicloud.eu",
            "127.0.0.1",
            "localhost",
            "[::1]",
        ] {
            assert!(is_host_pattern(ok), "{ok}");
        }
        for bad in [
            "",
            "*",
            "*.",
            "a..b",
            "-a.com",
            "a_b.com",
            "https://a.com",
            "*.*.com",
            "a.com:443",
            "[zz]",
        ] {
            assert!(!is_host_pattern(bad), "{bad}");
        }
    }

    #[test]
    fn hash_file_names() {
        assert!(looks_like_hash_file("0a1b2c3d.0"));
        assert!(looks_like_hash_file("deadbeef.12"));
        assert!(!looks_like_hash_file("deadbeef.crt"));
        assert!(!looks_like_hash_file("DEADBEEF.0"));
        assert!(!looks_like_hash_file("deadbee.0"));
        assert!(!looks_like_hash_file("deadbeef."));
    }

    #[test]
    fn templates_parse_and_render_in_one_pass() {
        assert_eq!(
            parse_template("{name}-{category}.crt").unwrap(),
            [
                Piece::Name,
                Piece::Literal("-"),
                Piece::Category,
                Piece::Literal(".crt")
            ]
        );
        assert!(parse_template("{nme}.crt").unwrap_err().contains("{nme}"));
        assert!(parse_template("{name.crt").is_err());
        assert!(parse_template("name}.crt").is_err());
        assert_eq!(
            render_template("{id}/{category}", "n", "{category}", "c"),
            "{category}/c"
        );
    }

    #[test]
    fn normalize_is_lexical() {
        assert_eq!(
            normalize(Path::new("/etc/ssl/../ssl/certs/")),
            Path::new("/etc/ssl/certs")
        );
        assert_eq!(normalize(Path::new("/../..")), Path::new("/"));
        assert_eq!(normalize(Path::new("/a/./b")), Path::new("/a/b"));
    }

    #[test]
    fn file_name_rules() {
        assert!(file_name_problem("a.crt", None).is_none());
        assert!(file_name_problem("..", None).is_some());
        assert!(file_name_problem(".hidden", None).is_some());
        assert!(file_name_problem("a/b", None).is_some());
        assert!(file_name_problem(MANIFEST_FILE_NAME, None).is_some());
        assert!(file_name_problem("b.pem", Some("b.pem")).is_some());
        assert!(file_name_problem("01234567.0", None).is_some());
    }
}
