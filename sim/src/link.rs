//! OBS-style pre-signed download links: minting them for the API's answers and checking them
//! when a download arrives.
//!
//! A link is `{base}/obs/{bucket}/{id}/{category}/ca.crt?AccessKeyId=..&Expires=..&Signature=..`,
//! where the signature is an HMAC-SHA256 (URL-safe base64) over the method, the expiry and the
//! object path, keyed by a secret of this simulator. Owns only that arithmetic; it must not look
//! at instances or HTTP.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;

/// The bucket that holds every simulated CA object.
pub(crate) const BUCKET: &str = "certsync-sim-bucket";

/// The access key id links carry (a fixed, public value, as on OBS).
pub(crate) const ACCESS_KEY_ID: &str = "SIMOBSAK";

/// How long a minted link stays valid.
pub(crate) const LINK_TTL_SECS: u64 = 300;

/// The object name every CA is stored under.
pub(crate) const OBJECT_NAME: &str = "ca.crt";

/// Why a download link was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LinkError {
    /// AccessKeyId, Expires or Signature is missing or malformed.
    #[error("link query is incomplete")]
    Incomplete,
    /// The signature does not match the path and expiry.
    #[error("link signature does not match")]
    BadSignature,
    /// The link's Expires lies in the past.
    #[error("link expired at {expires}")]
    Expired { expires: u64 },
}

/// The signer and checker of one simulator's links.
pub(crate) struct LinkSigner {
    key: hmac::Key,
}

impl LinkSigner {
    /// A signer with a fresh random secret.
    pub(crate) fn new() -> Self {
        // A link's query is a credential, so its key comes from the OS's CSPRNG.
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
            .expect("the OS random generator is available");
        Self { key }
    }

    /// The object path (below `/obs`) of one instance's CA for a category.
    pub(crate) fn object_path(id: &str, category: &str) -> String {
        format!("/{BUCKET}/{id}/{category}/{OBJECT_NAME}")
    }

    fn signature(&self, object_path: &str, expires: u64) -> String {
        // The same string-to-sign layout as OBS's V2 query authentication (no MD5, no type).
        let to_sign = format!("GET\n\n\n{expires}\n{object_path}");
        URL_SAFE_NO_PAD.encode(hmac::sign(&self.key, to_sign.as_bytes()).as_ref())
    }

    /// The query string (without `?`) of a link to `object_path` that expires at `expires` (unix seconds).
    pub(crate) fn query(&self, object_path: &str, expires: u64) -> String {
        format!(
            "AccessKeyId={ACCESS_KEY_ID}&Expires={expires}&Signature={}",
            self.signature(object_path, expires)
        )
    }

    /// Checks a download's query against its object path at time `now` (unix seconds).
    pub(crate) fn verify(
        &self,
        object_path: &str,
        query: Option<&str>,
        now: u64,
    ) -> Result<(), LinkError> {
        let mut access_key = None;
        let mut expires = None;
        let mut signature = None;
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "AccessKeyId" => access_key = Some(v.into_owned()),
                "Expires" => expires = Some(v.into_owned()),
                "Signature" => signature = Some(v.into_owned()),
                _ => {}
            }
        }
        let (Some(access_key), Some(expires), Some(signature)) = (access_key, expires, signature)
        else {
            return Err(LinkError::Incomplete);
        };
        let expires: u64 = expires.parse().map_err(|_| LinkError::Incomplete)?;
        if access_key != ACCESS_KEY_ID {
            return Err(LinkError::BadSignature);
        }
        let given = URL_SAFE_NO_PAD
            .decode(signature.as_bytes())
            .map_err(|_| LinkError::BadSignature)?;
        let to_sign = format!("GET\n\n\n{expires}\n{object_path}");
        hmac::verify(&self.key, to_sign.as_bytes(), &given).map_err(|_| LinkError::BadSignature)?;
        // Like OBS: a correctly signed but stale link is "expired", not "bad signature".
        if now > expires {
            return Err(LinkError::Expired { expires });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/certsync-sim-bucket/abc/international/ca.crt";

    #[test]
    fn minted_link_verifies_until_it_expires() {
        let s = LinkSigner::new();
        let q = s.query(PATH, 1_000);
        assert_eq!(s.verify(PATH, Some(&q), 999), Ok(()));
        assert_eq!(s.verify(PATH, Some(&q), 1_000), Ok(()));
        assert_eq!(
            s.verify(PATH, Some(&q), 1_001),
            Err(LinkError::Expired { expires: 1_000 })
        );
    }

    #[test]
    fn link_is_bound_to_path_expiry_and_secret() {
        let s = LinkSigner::new();
        let q = s.query(PATH, 1_000);
        let other_path = "/certsync-sim-bucket/abd/international/ca.crt";
        assert_eq!(
            s.verify(other_path, Some(&q), 0),
            Err(LinkError::BadSignature)
        );
        let moved = q.replace("Expires=1000", "Expires=2000");
        assert_eq!(
            s.verify(PATH, Some(&moved), 0),
            Err(LinkError::BadSignature)
        );
        assert_eq!(
            LinkSigner::new().verify(PATH, Some(&q), 0),
            Err(LinkError::BadSignature)
        );
        let other_ak = q.replace(ACCESS_KEY_ID, "OTHERAK");
        assert_eq!(
            s.verify(PATH, Some(&other_ak), 0),
            Err(LinkError::BadSignature)
        );
    }

    #[test]
    fn incomplete_query_is_refused() {
        let s = LinkSigner::new();
        assert_eq!(s.verify(PATH, None, 0), Err(LinkError::Incomplete));
        assert_eq!(
            s.verify(PATH, Some("AccessKeyId=SIMOBSAK&Expires=10"), 0),
            Err(LinkError::Incomplete)
        );
        assert_eq!(
            s.verify(
                PATH,
                Some("AccessKeyId=SIMOBSAK&Expires=ten&Signature=x"),
                0
            ),
            Err(LinkError::Incomplete)
        );
    }
}
