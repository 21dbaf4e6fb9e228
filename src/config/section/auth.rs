//! `[auth]`: how requests are authenticated (SPEC 4).
//!
//! Owns: the keys of each method (the schema's variants: a key of another method is an
//! error), the SDK's environment fallbacks of `aksk`, the metadata service's default endpoint.
//! Must not: read a credential file (`token_file`, `secret_key_file`, `password_file` are
//! only named here), or echo a secret: inline secrets are held as [`Secret`] and every
//! message about them says "value not shown".

use std::path::{Path, PathBuf};

use toml::Table;

use super::super::keys::{SectionKind, SectionSchema};
use super::super::reader::{Problems, Section, quote};
use super::{non_empty, path_value, service_url};
use crate::secret::Secret;

/// The keys of `[auth]`: `method`, and the keys of each method.
pub(in crate::config) const SCHEMA: SectionSchema = SectionSchema {
    name: "auth",
    kind: SectionKind::Table,
    keys: &["method"],
    variants: &[
        ("token", &["token_file"]),
        (
            "aksk",
            &[
                "access_key",
                "secret_key",
                "secret_key_file",
                "security_token",
            ],
        ),
        ("password", &["user", "domain", "password_file"]),
        ("metadata", &["metadata_endpoint"]),
    ],
};

/// The ECS metadata service, when `auth.metadata_endpoint` is left out.
pub const DEFAULT_METADATA_ENDPOINT: &str = "http://169.254.169.254";
/// Environment fallbacks of the `aksk` method, as Huawei's SDKs name them (SPEC 4).
pub const ENV_AK: &str = "HUAWEICLOUD_SDK_AK";
/// See [`ENV_AK`].
pub const ENV_SK: &str = "HUAWEICLOUD_SDK_SK";
/// See [`ENV_AK`].
pub const ENV_SECURITY_TOKEN: &str = "HUAWEICLOUD_SDK_SECURITY_TOKEN";
/// See [`ENV_AK`].
pub const ENV_PROJECT_ID: &str = "HUAWEICLOUD_SDK_PROJECT_ID";

/// `[auth]`: how requests are authenticated (SPEC 4).
#[derive(Debug, Clone)]
pub enum Auth {
    /// An IAM token read from a file (re-read when it changes), sent as `X-Auth-Token`.
    Token {
        /// Absolute path of the token file. Not read by the config: it may not exist yet.
        token_file: PathBuf,
    },
    /// Requests signed with an AK/SK pair (SDK-HMAC-SHA256).
    AkSk(AkSk),
    /// An IAM token obtained with a user's password, renewed before it expires.
    Password(Password),
    /// Temporary AK/SK and security token from the ECS metadata service.
    Metadata {
        /// `auth.metadata_endpoint`, else [`DEFAULT_METADATA_ENDPOINT`]; http or https.
        metadata_endpoint: url::Url,
    },
}

impl Auth {
    /// The method's name as the config spells it.
    pub fn method(&self) -> &'static str {
        match self {
            Auth::Token { .. } => "token",
            Auth::AkSk(_) => "aksk",
            Auth::Password(_) => "password",
            Auth::Metadata { .. } => "metadata",
        }
    }
}

/// `method = "aksk"`: each value from the file, else from the SDK's environment variable.
#[derive(Debug, Clone)]
pub struct AkSk {
    /// `access_key` or `HUAWEICLOUD_SDK_AK`.
    pub access_key: Secret,
    /// `secret_key`, `secret_key_file` or `HUAWEICLOUD_SDK_SK`.
    pub secret_key: SecretKey,
    /// `security_token` or `HUAWEICLOUD_SDK_SECURITY_TOKEN`: the AK/SK are temporary.
    pub security_token: Option<Secret>,
    /// The environment variables a value came from, for `check` (names only).
    pub from_env: Vec<&'static str>,
}

/// Where the secret key is.
#[derive(Debug, Clone)]
pub enum SecretKey {
    /// In the config file or the environment.
    Inline(Secret),
    /// In a file (absolute), read when needed and again when it changes.
    File(PathBuf),
}

/// `method = "password"`.
#[derive(Debug, Clone)]
pub struct Password {
    /// `user`: the IAM user's name.
    pub user: String,
    /// `domain`: the account (domain) name the user belongs to.
    pub domain: String,
    /// `password_file` (absolute): the password, read when needed; never inline.
    pub password_file: PathBuf,
}

/// `auth.method` as written in the table that holds `auth` (the top level, or an
/// `[[account]]`), if it is a string; the cloud keys need it to know whether `project_id` is
/// required.
pub(in crate::config) fn peek_method(holder: &Table) -> Option<&str> {
    holder.get(SCHEMA.name)?.as_table()?.get("method")?.as_str()
}

/// Reads `[auth]`, or an `[account.auth]` at `path` (`account[1].auth`). `None` when the
/// method is missing or unknown, or a key it needs is bad.
pub(in crate::config) fn read(
    p: &mut Problems,
    path: &str,
    table: &Table,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<Auth> {
    let sec = Section::open(p, path, table, &SCHEMA.all_keys());
    if !sec.require_present(p, "method", "") {
        return None;
    }
    let method = sec.string(p, "method")?;
    let Some((method, keys)) = SCHEMA.variants.iter().find(|(m, _)| *m == method) else {
        p.push(
            sec.key("method"),
            format!(
                "unknown method {} (expected \"aksk\", \"token\", \"password\" or \"metadata\")",
                quote(method)
            ),
        );
        return None;
    };
    // A key of another method is a mistake (a half-edited file), not something to ignore.
    let before = p.len();
    for (other, other_keys) in SCHEMA.variants {
        for key in other_keys
            .iter()
            .filter(|k| !keys.contains(k) && sec.has(k))
        {
            p.push(
                sec.key(key),
                format!(
                    "is a key of method {} but {} = {} (value not shown)",
                    quote(other),
                    sec.key("method"),
                    quote(method)
                ),
            );
        }
    }
    let auth = match *method {
        "token" => {
            if !sec.require_present(p, "token_file", "with method = \"token\"") {
                return None;
            }
            let token_file = path_value(p, &sec, "token_file", base)?;
            Some(Auth::Token { token_file })
        }
        "aksk" => aksk(p, &sec, base, env).map(Auth::AkSk),
        "password" => {
            let why = "with method = \"password\"";
            let user = sec
                .require_present(p, "user", why)
                .then(|| non_empty(p, &sec, "user"))
                .flatten();
            let domain = sec
                .require_present(p, "domain", why)
                .then(|| non_empty(p, &sec, "domain"))
                .flatten();
            let password_file = sec
                .require_present(p, "password_file", why)
                .then(|| path_value(p, &sec, "password_file", base))
                .flatten();
            Some(Auth::Password(Password {
                user: user?,
                domain: domain?,
                password_file: password_file?,
            }))
        }
        "metadata" => {
            let metadata_endpoint = match sec.string(p, "metadata_endpoint") {
                Some(s) => metadata_endpoint(p, &sec.key("metadata_endpoint"), s)?,
                None if sec.has("metadata_endpoint") => return None,
                None => url::Url::parse(DEFAULT_METADATA_ENDPOINT).expect("valid"),
            };
            Some(Auth::Metadata { metadata_endpoint })
        }
        _ => unreachable!("the schema's variants list every method"),
    };
    auth.filter(|_| p.len() == before)
}

/// A secret from the file (`key`), else from the environment variable `var`. `Ok(None)`:
/// neither is set. Values are never echoed.
fn secret(
    p: &mut Problems,
    sec: &Section<'_>,
    key: &str,
    var: &'static str,
    env: &dyn Fn(&str) -> Option<String>,
    from_env: &mut Vec<&'static str>,
) -> Result<Option<Secret>, ()> {
    if sec.has(key) {
        return match sec.secret_string(p, key) {
            Some("") => {
                p.push(sec.key(key), "must not be empty");
                Err(())
            }
            Some(s) => Ok(Some(Secret::new(s))),
            None => Err(()),
        };
    }
    Ok(env(var).map(|v| {
        from_env.push(var);
        Secret::new(v.trim())
    }))
}

/// `method = "aksk"`: every value from the file, else from the SDK's environment variables.
fn aksk(
    p: &mut Problems,
    sec: &Section<'_>,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<AkSk> {
    let mut from_env = Vec::new();
    let access_key = match secret(p, sec, "access_key", ENV_AK, env, &mut from_env) {
        Ok(Some(ak)) => Some(ak),
        Ok(None) => {
            p.push(
                sec.key("access_key"),
                format!("missing (required with method = \"aksk\"; or set {ENV_AK})"),
            );
            None
        }
        Err(()) => None,
    };
    let secret_key = match (sec.has("secret_key"), sec.has("secret_key_file")) {
        (true, true) => {
            p.push(
                sec.key("secret_key_file"),
                "give secret_key or secret_key_file, not both",
            );
            None
        }
        (false, true) => path_value(p, sec, "secret_key_file", base).map(SecretKey::File),
        _ => match secret(p, sec, "secret_key", ENV_SK, env, &mut from_env) {
            Ok(Some(sk)) => Some(SecretKey::Inline(sk)),
            Ok(None) => {
                p.push(
                    sec.key("secret_key"),
                    format!(
                        "missing (required with method = \"aksk\": secret_key or \
                         secret_key_file; or set {ENV_SK})"
                    ),
                );
                None
            }
            Err(()) => None,
        },
    };
    let security_token = secret(
        p,
        sec,
        "security_token",
        ENV_SECURITY_TOKEN,
        env,
        &mut from_env,
    )
    .ok()?;
    Some(AkSk {
        access_key: access_key?,
        secret_key: secret_key?,
        security_token,
        from_env,
    })
}

/// `auth.metadata_endpoint`: http (the link-local service has no TLS) or https, a host, no
/// credentials, query or fragment.
fn metadata_endpoint(p: &mut Problems, key: &str, s: &str) -> Option<url::Url> {
    service_url(p, key, s, &["http", "https"], "must use http or https")
}

#[cfg(test)]
mod tests {
    use super::super::testing::{keys, table, walk};
    use super::*;
    use crate::config::Problem;

    fn read_auth(text: &str, env: &[(&str, &str)]) -> (Option<Auth>, Vec<Problem>) {
        let t = table(text);
        let lookup = |name: &str| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        let (auth, problems, fs) =
            walk(|p, _| read(p, "auth", &t, Path::new("/srv/conf"), &lookup));
        assert!(fs.0.is_empty(), "auth defers no file check");
        (auth, problems)
    }

    #[test]
    fn each_method_reads_its_keys() {
        let (auth, p) = read_auth("method = \"token\"\ntoken_file = \"../t\"", &[]);
        assert!(p.is_empty(), "{p:?}");
        assert!(
            matches!(auth, Some(Auth::Token { token_file }) if token_file == Path::new("/srv/t"))
        );

        let (auth, p) = read_auth(
            "method = \"password\"\nuser = \"u\"\ndomain = \"d\"\npassword_file = \"pw\"",
            &[],
        );
        assert!(p.is_empty(), "{p:?}");
        let Some(Auth::Password(pw)) = auth else {
            panic!("{auth:?}")
        };
        assert_eq!((pw.user.as_str(), pw.domain.as_str()), ("u", "d"));
        assert_eq!(pw.password_file, Path::new("/srv/conf/pw"));

        let (auth, p) = read_auth("method = \"metadata\"", &[]);
        assert!(p.is_empty(), "{p:?}");
        let Some(Auth::Metadata { metadata_endpoint }) = auth else {
            panic!("{auth:?}")
        };
        assert_eq!(
            metadata_endpoint.as_str(),
            format!("{DEFAULT_METADATA_ENDPOINT}/")
        );
    }

    #[test]
    fn aksk_falls_back_to_the_sdk_environment_and_never_echoes_a_secret() {
        let (auth, p) = read_auth(
            "method = \"aksk\"",
            &[(ENV_AK, "AK-ENV"), (ENV_SK, " SK-ENV ")],
        );
        assert!(p.is_empty(), "{p:?}");
        let Some(Auth::AkSk(a)) = auth else {
            panic!("{auth:?}")
        };
        assert_eq!(a.access_key.expose(), "AK-ENV");
        assert!(matches!(&a.secret_key, SecretKey::Inline(s) if s.expose() == "SK-ENV"));
        assert_eq!(a.from_env, [ENV_AK, ENV_SK]);
        assert!(a.security_token.is_none());

        let (auth, p) = read_auth("method = \"aksk\"\naccess_key = 5\nsecret_key = \"\"", &[]);
        assert!(auth.is_none());
        assert_eq!(keys(&p), ["auth.access_key", "auth.secret_key"]);
        assert!(p[0].message.contains("value not shown"), "{p:?}");
    }

    #[test]
    fn a_key_of_another_method_is_an_error() {
        let (auth, p) = read_auth(
            "method = \"token\"\ntoken_file = \"t\"\nsecret_key = \"s3cr3t\"",
            &[],
        );
        assert!(auth.is_none());
        assert_eq!(keys(&p), ["auth.secret_key"]);
        assert!(p[0].message.contains("\"aksk\""), "{p:?}");
        assert!(!p[0].message.contains("s3cr3t"), "{p:?}");
    }
}
