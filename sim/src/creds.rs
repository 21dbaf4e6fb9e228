//! The simulated cloud's identities (the fixed API token aside, which is the world's): the
//! permanent AK/SK, extra users with their own AK/SK or token, IAM users with the tokens issued
//! to them, the metadata service's temporary credentials and session tokens, IAM's projects.
//!
//! Owns who may call, as which user ([`UserKey`], for throttling), and until when; it answers
//! lookups (is this token valid, what is the secret of this AK) and never builds HTTP answers
//! nor checks signatures (that is `auth`, with the verifier of certsync-sign). Every expiry is
//! compared with the wall clock at lookup time, so a lifetime of zero gives credentials that
//! are already expired.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::model::{MetadataTokenMode, Project};
use crate::throttle::UserKey;
use crate::util::{self, random_alnum, random_hex, random_token, random_upper};

/// How long an IAM token lives unless changed (the real IAM: 24 h).
pub(crate) const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// How long temporary credentials from the metadata service live unless changed (a common agency
/// default: 24 h).
pub(crate) const DEFAULT_TEMPORARY_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The longest session-token TTL the metadata service grants (the SDK asks for exactly this).
pub(crate) const MAX_SESSION_TTL_SECS: u64 = 21600;

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
    /// The id of the IAM user it was issued to.
    user_id: String,
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
    /// Valid for this user, scoped to this project id (`None`: every project of the account).
    Valid {
        project_id: Option<String>,
        user: UserKey,
    },
    /// Issued by IAM but expired at this time.
    Expired { expires_at: SystemTime },
    /// Never issued, or invalidated.
    Unknown,
}

/// What an access key is.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SecretLookup {
    /// A permanent key (the account's, or an extra user's): its secret and its user.
    Permanent { secret: String, owner: UserKey },
    /// A temporary key (the account's, [`UserKey::Account`]): its secret, the security token
    /// that must come with it, and whether it has expired.
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
    /// Extra users' access keys and their secrets.
    extra_keys: HashMap<String, String>,
    /// Extra users' tokens; a token's user is its position.
    extra_tokens: Vec<String>,
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
                extra_keys: HashMap::new(),
                extra_tokens: Vec::new(),
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

    /// Adds a user with its own permanent AK/SK, or replaces the secret of one added before (the
    /// account's own AK is looked up first, so an extra user cannot take it over).
    pub(crate) fn add_ak_sk_user(&self, ak: &str, sk: &str) {
        self.lock().extra_keys.insert(ak.to_owned(), sk.to_owned());
    }

    /// Adds a user whose token is `token` (valid for every project); no change if it was added.
    pub(crate) fn add_token(&self, token: &str) {
        let mut s = self.lock();
        if !s.extra_tokens.iter().any(|t| t == token) {
            s.extra_tokens.push(token.to_owned());
        }
    }

    /// The secret of an access key, permanent or temporary.
    pub(crate) fn secret_of(&self, ak: &str) -> SecretLookup {
        let s = self.lock();
        if ak == s.ak {
            return SecretLookup::Permanent {
                secret: s.sk.clone(),
                owner: UserKey::Account,
            };
        }
        if let Some(sk) = s.extra_keys.get(ak) {
            return SecretLookup::Permanent {
                secret: sk.clone(),
                owner: UserKey::AkSk(ak.to_owned()),
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

    /// The id of the IAM user with this name, domain and password, if any.
    pub(crate) fn password_user(&self, name: &str, domain: &str, password: &str) -> Option<String> {
        self.lock()
            .users
            .iter()
            // A loopback test double: timing side channels are not a concern here.
            .find(|u| u.name == name && u.domain == domain && u.password == password)
            .map(|u| u.id.clone())
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
                user_id: user_id.clone(),
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

    /// What a token is: an extra user's or one IAM issued (the fixed API token is checked by
    /// the world).
    pub(crate) fn check_token(&self, token: &str) -> TokenCheck {
        let s = self.lock();
        if let Some(n) = s.extra_tokens.iter().position(|t| t == token) {
            return TokenCheck::Valid {
                project_id: None,
                user: UserKey::Token(n),
            };
        }
        match s.tokens.get(token) {
            Some(t) if SystemTime::now() >= t.expires_at => TokenCheck::Expired {
                expires_at: t.expires_at,
            },
            Some(t) => TokenCheck::Valid {
                project_id: Some(t.project.id.clone()),
                user: UserKey::Iam(t.user_id.clone()),
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

    /// Adds a project to those IAM lists.
    pub(crate) fn add_project(&self, project: Project) {
        self.lock().projects.push(project);
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
                project_id: Some("p1".to_owned()),
                user: UserKey::Iam(issued.user_id.clone()),
            }
        );
        assert_eq!(c.password_user("alice", "acme", "pw"), Some(issued.user_id));
        assert_eq!(c.password_user("alice", "acme", "wrong"), None);
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
                secret: "sk".to_owned(),
                owner: UserKey::Account,
            }
        );
    }

    #[test]
    fn extra_users_have_their_own_keys_and_tokens() {
        let c = creds();
        c.add_ak_sk_user("AKEXTRA", "sk-extra");
        // The account's own key cannot be taken over.
        c.add_ak_sk_user("AKPERMANENT000000001", "other");
        assert_eq!(
            c.secret_of("AKEXTRA"),
            SecretLookup::Permanent {
                secret: "sk-extra".to_owned(),
                owner: UserKey::AkSk("AKEXTRA".to_owned()),
            }
        );
        assert!(matches!(
            c.secret_of("AKPERMANENT000000001"),
            SecretLookup::Permanent {
                owner: UserKey::Account,
                ..
            }
        ));
        c.add_token("MIIone");
        c.add_token("MIItwo");
        c.add_token("MIIone");
        assert_eq!(
            c.check_token("MIItwo"),
            TokenCheck::Valid {
                project_id: None,
                user: UserKey::Token(1),
            }
        );
        assert_eq!(c.check_token("MIIthree"), TokenCheck::Unknown);
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
