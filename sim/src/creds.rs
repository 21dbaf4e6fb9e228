//! The simulated cloud's identities: the fixed API token, the permanent AK/SK, IAM users with the
//! tokens issued to them, the temporary credentials the metadata service hands out, metadata
//! session tokens, and the account's projects.
//!
//! Owns who may call and until when; it answers lookups (is this token valid, what is the secret
//! of this AK) and never builds HTTP answers nor checks signatures (that is `auth`, with the
//! verifier of certsync-sign). Every expiry is compared with the wall clock at lookup time, so a
//! lifetime of zero gives credentials that are already expired.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::model::{MetadataTokenMode, Project};
use crate::util::{self, random_hex};

/// How long an IAM token lives unless changed (the real IAM: 24 h).
pub(crate) const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// How long temporary credentials from the metadata service live unless changed (a common agency
/// default: 24 h).
pub(crate) const DEFAULT_TEMPORARY_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The longest session-token TTL the metadata service grants (the SDK asks for exactly this).
pub(crate) const MAX_SESSION_TTL_SECS: u64 = 21600;

/// A random token shaped like an IAM token (they start with `MII`).
pub(crate) fn random_token() -> String {
    format!("MIIsim{}", random_hex(48))
}

/// `len` random characters of `A-Z0-9`, the alphabet of Huawei access keys.
fn random_upper(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..len)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

/// `len` random characters of `A-Za-z0-9`, the alphabet of Huawei secret keys.
fn random_alnum(len: usize) -> String {
    (0..len).map(|_| fastrand::alphanumeric()).collect()
}

/// A fresh permanent access key: 20 characters of `A-Z0-9`, like the console's.
pub(crate) fn random_ak() -> String {
    random_upper(20)
}

/// A fresh secret key: 40 characters of `A-Za-z0-9`, like the console's.
pub(crate) fn random_sk() -> String {
    random_alnum(40)
}

/// An IAM user who may ask for tokens with a password.
struct User {
    id: String,
    name: String,
    domain: String,
    domain_id: String,
    password: String,
}

/// A token handed out by `POST /v3/auth/tokens`.
struct IssuedToken {
    project: Project,
    expires_at: SystemTime,
}

/// Temporary credentials handed out by the metadata service.
struct Temporary {
    secret: String,
    security_token: String,
    expires_at: SystemTime,
}

/// What a token given in `X-Auth-Token` is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TokenCheck {
    /// Valid, scoped to this project id.
    Valid { project_id: String },
    /// Issued by IAM but expired at this time.
    Expired { expires_at: SystemTime },
    /// Never issued, or invalidated.
    Unknown,
}

/// What an access key is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SecretLookup {
    /// The permanent key: its secret.
    Permanent { secret: String },
    /// A temporary key: its secret, the security token that must come with it, and whether it
    /// has expired.
    Temporary {
        secret: String,
        security_token: String,
        expired: bool,
    },
    /// No such key.
    Unknown,
}

/// Why `POST /v3/auth/tokens` refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TokenRefusal {
    /// No such user in that domain, or the wrong password (IAM does not say which).
    BadPassword,
    /// The scope names no project of the account.
    UnknownProject,
}

/// A token just issued, for the answer's body and `X-Subject-Token`.
pub(crate) struct Issued {
    pub token: String,
    pub issued_at: SystemTime,
    pub expires_at: SystemTime,
    pub user_id: String,
    pub user_name: String,
    pub domain_id: String,
    pub domain_name: String,
    pub project: Project,
}

/// Temporary credentials just issued, for the metadata service's answer.
pub(crate) struct TemporaryIssued {
    pub access: String,
    pub secret: String,
    pub security_token: String,
    pub expires_at: SystemTime,
}

/// How a project is named in a token request's scope.
pub(crate) enum ProjectScope<'a> {
    Id(&'a str),
    Name(&'a str),
}

struct CredState {
    ak: String,
    sk: String,
    users: Vec<User>,
    tokens: HashMap<String, IssuedToken>,
    token_lifetime: Duration,
    temporary: HashMap<String, Temporary>,
    temporary_lifetime: Duration,
    projects: Vec<Project>,
    metadata_mode: MetadataTokenMode,
    /// Whether the ECS has an agency (without one, the metadata service has no credentials).
    agency: bool,
    /// Metadata session tokens and when they expire.
    sessions: HashMap<String, SystemTime>,
}

/// The identity store of one simulator.
pub(crate) struct Creds {
    state: Mutex<CredState>,
}

impl Creds {
    pub(crate) fn new(ak: String, sk: String, project: Project) -> Self {
        Self {
            state: Mutex::new(CredState {
                ak,
                sk,
                users: Vec::new(),
                tokens: HashMap::new(),
                token_lifetime: DEFAULT_TOKEN_LIFETIME,
                temporary: HashMap::new(),
                temporary_lifetime: DEFAULT_TEMPORARY_LIFETIME,
                projects: vec![project],
                metadata_mode: MetadataTokenMode::default(),
                agency: true,
                sessions: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, CredState> {
        // Every update below is a single assignment or map operation: a poisoned lock holds
        // consistent data.
        util::lock(&self.state)
    }

    pub(crate) fn ak_sk(&self) -> (String, String) {
        let s = self.lock();
        (s.ak.clone(), s.sk.clone())
    }

    pub(crate) fn set_ak_sk(&self, ak: &str, sk: &str) {
        let mut s = self.lock();
        s.ak = ak.to_owned();
        s.sk = sk.to_owned();
    }

    /// The secret of an access key, permanent or temporary.
    pub(crate) fn secret_of(&self, ak: &str) -> SecretLookup {
        let s = self.lock();
        if ak == s.ak {
            return SecretLookup::Permanent {
                secret: s.sk.clone(),
            };
        }
        match s.temporary.get(ak) {
            Some(t) => SecretLookup::Temporary {
                secret: t.secret.clone(),
                security_token: t.security_token.clone(),
                expired: SystemTime::now() >= t.expires_at,
            },
            None => SecretLookup::Unknown,
        }
    }

    /// Adds an IAM user, or replaces the password of an existing one (same name and domain).
    pub(crate) fn add_user(&self, name: &str, domain: &str, password: &str) {
        let mut s = self.lock();
        if let Some(user) = s
            .users
            .iter_mut()
            .find(|u| u.name == name && u.domain == domain)
        {
            user.password = password.to_owned();
            return;
        }
        // A domain keeps one id for all its users.
        let domain_id = s
            .users
            .iter()
            .find(|u| u.domain == domain)
            .map(|u| u.domain_id.clone())
            .unwrap_or_else(|| random_hex(16));
        s.users.push(User {
            id: random_hex(16),
            name: name.to_owned(),
            domain: domain.to_owned(),
            domain_id,
            password: password.to_owned(),
        });
    }

    pub(crate) fn set_token_lifetime(&self, lifetime: Duration) {
        self.lock().token_lifetime = lifetime;
    }

    /// Forgets every token IAM issued (as after a password change); they get 401 from now on.
    pub(crate) fn invalidate_tokens(&self) {
        self.lock().tokens.clear();
    }

    /// Checks a password and issues a token scoped to a project.
    pub(crate) fn issue_token(
        &self,
        name: &str,
        domain: &str,
        password: &str,
        scope: ProjectScope<'_>,
    ) -> Result<Issued, TokenRefusal> {
        let mut s = self.lock();
        let user = s
            .users
            .iter()
            // A loopback test double: timing side channels are not a concern here.
            .find(|u| u.name == name && u.domain == domain && u.password == password)
            .ok_or(TokenRefusal::BadPassword)?;
        let (user_id, user_name, domain_id, domain_name) = (
            user.id.clone(),
            user.name.clone(),
            user.domain_id.clone(),
            user.domain.clone(),
        );
        let project = s
            .projects
            .iter()
            .find(|p| match scope {
                ProjectScope::Id(id) => p.id == id,
                ProjectScope::Name(name) => p.name == name,
            })
            .cloned()
            .ok_or(TokenRefusal::UnknownProject)?;
        let issued_at = SystemTime::now();
        let expires_at = issued_at + s.token_lifetime;
        let token = random_token();
        s.tokens.insert(
            token.clone(),
            IssuedToken {
                project: project.clone(),
                expires_at,
            },
        );
        Ok(Issued {
            token,
            issued_at,
            expires_at,
            user_id,
            user_name,
            domain_id,
            domain_name,
            project,
        })
    }

    /// What an IAM-issued token is (the fixed API token is checked by the world).
    pub(crate) fn check_token(&self, token: &str) -> TokenCheck {
        let s = self.lock();
        match s.tokens.get(token) {
            Some(t) if SystemTime::now() >= t.expires_at => TokenCheck::Expired {
                expires_at: t.expires_at,
            },
            Some(t) => TokenCheck::Valid {
                project_id: t.project.id.clone(),
            },
            None => TokenCheck::Unknown,
        }
    }

    pub(crate) fn projects(&self) -> Vec<Project> {
        self.lock().projects.clone()
    }

    pub(crate) fn set_projects(&self, projects: Vec<Project>) {
        self.lock().projects = projects;
    }

    pub(crate) fn set_temporary_lifetime(&self, lifetime: Duration) {
        self.lock().temporary_lifetime = lifetime;
    }

    /// Forgets every temporary credential issued so far; requests signed with them get 401.
    pub(crate) fn revoke_temporary(&self) {
        self.lock().temporary.clear();
    }

    /// Issues fresh temporary credentials (earlier ones stay valid until they expire, as with a
    /// real agency's rotation).
    pub(crate) fn issue_temporary(&self) -> TemporaryIssued {
        let mut s = self.lock();
        let access = random_upper(20);
        let secret = random_alnum(40);
        // Real security tokens are long base64 blobs; the shape matters less than the length.
        let security_token = format!("gQpjbi1ub3J0aC00sim{}", random_alnum(300));
        let expires_at = SystemTime::now() + s.temporary_lifetime;
        s.temporary.insert(
            access.clone(),
            Temporary {
                secret: secret.clone(),
                security_token: security_token.clone(),
                expires_at,
            },
        );
        TemporaryIssued {
            access,
            secret,
            security_token,
            expires_at,
        }
    }

    pub(crate) fn metadata_mode(&self) -> MetadataTokenMode {
        self.lock().metadata_mode
    }

    pub(crate) fn set_metadata_mode(&self, mode: MetadataTokenMode) {
        self.lock().metadata_mode = mode;
    }

    pub(crate) fn agency(&self) -> bool {
        self.lock().agency
    }

    pub(crate) fn set_agency(&self, agency: bool) {
        self.lock().agency = agency;
    }

    /// A new metadata session token valid for `ttl`.
    pub(crate) fn issue_session(&self, ttl: Duration) -> String {
        let token = random_alnum(56);
        let mut s = self.lock();
        let now = SystemTime::now();
        // Expired sessions are dropped here so the map stays small over a long run.
        s.sessions.retain(|_, expires| *expires > now);
        s.sessions.insert(token.clone(), now + ttl);
        token
    }

    /// Whether a metadata session token is known and unexpired.
    pub(crate) fn session_valid(&self, token: &str) -> bool {
        self.lock()
            .sessions
            .get(token)
            .is_some_and(|expires| SystemTime::now() < *expires)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Creds {
        Creds::new(
            "AKPERMANENT000000001".to_owned(),
            "sk".to_owned(),
            Project {
                id: "p1".to_owned(),
                name: "cn-north-4".to_owned(),
            },
        )
    }

    #[test]
    fn keys_have_the_consoles_shape() {
        let ak = random_ak();
        assert_eq!(ak.len(), 20);
        assert!(
            ak.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        );
        let sk = random_sk();
        assert_eq!(sk.len(), 40);
        assert!(sk.bytes().all(|b| b.is_ascii_alphanumeric()));
    }

    #[test]
    fn tokens_are_scoped_expire_and_can_be_invalidated() {
        let c = creds();
        c.add_user("alice", "acme", "pw");
        assert_eq!(
            c.issue_token("alice", "acme", "wrong", ProjectScope::Name("cn-north-4"))
                .err(),
            Some(TokenRefusal::BadPassword)
        );
        assert_eq!(
            c.issue_token("alice", "other", "pw", ProjectScope::Name("cn-north-4"))
                .err(),
            Some(TokenRefusal::BadPassword)
        );
        assert_eq!(
            c.issue_token("alice", "acme", "pw", ProjectScope::Name("eu-west-101"))
                .err(),
            Some(TokenRefusal::UnknownProject)
        );
        let issued = c
            .issue_token("alice", "acme", "pw", ProjectScope::Id("p1"))
            .unwrap();
        assert_eq!(
            c.check_token(&issued.token),
            TokenCheck::Valid {
                project_id: "p1".to_owned()
            }
        );
        c.set_token_lifetime(Duration::ZERO);
        let expired = c
            .issue_token("alice", "acme", "pw", ProjectScope::Name("cn-north-4"))
            .unwrap();
        assert!(matches!(
            c.check_token(&expired.token),
            TokenCheck::Expired { .. }
        ));
        c.invalidate_tokens();
        assert_eq!(c.check_token(&issued.token), TokenCheck::Unknown);
        // A changed password replaces the old one.
        c.add_user("alice", "acme", "new");
        assert!(
            c.issue_token("alice", "acme", "pw", ProjectScope::Id("p1"))
                .is_err()
        );
    }

    #[test]
    fn temporary_credentials_are_looked_up_and_expire() {
        let c = creds();
        let t = c.issue_temporary();
        assert_ne!(t.access, "AKPERMANENT000000001");
        assert_eq!(
            c.secret_of(&t.access),
            SecretLookup::Temporary {
                secret: t.secret.clone(),
                security_token: t.security_token.clone(),
                expired: false
            }
        );
        c.set_temporary_lifetime(Duration::ZERO);
        let gone = c.issue_temporary();
        assert!(matches!(
            c.secret_of(&gone.access),
            SecretLookup::Temporary { expired: true, .. }
        ));
        c.revoke_temporary();
        assert_eq!(c.secret_of(&t.access), SecretLookup::Unknown);
        assert_eq!(
            c.secret_of("AKPERMANENT000000001"),
            SecretLookup::Permanent {
                secret: "sk".to_owned()
            }
        );
    }

    #[test]
    fn sessions_expire() {
        let c = creds();
        let live = c.issue_session(Duration::from_secs(60));
        let dead = c.issue_session(Duration::ZERO);
        assert!(c.session_valid(&live));
        assert!(!c.session_valid(&dead));
        assert!(!c.session_valid("nope"));
    }
}
