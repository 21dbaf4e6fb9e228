//! What a planned file holds ([`Content`]), and how a file of PEM is compared and hashed
//! without keeping its bytes ([`pem_file`]).
//!
//! Owns: the bytes of instance files, hash files and the bundle as the PEM of their CAs.
//! Must not: decide which files are written (the parent module does) or write them.

use std::sync::Arc;

use crate::cert::Cert;
use crate::store::write::Existing;

/// What a planned file holds.
///
/// Instance files, hash files and the bundle are the PEM of their CAs, one after the other.
/// Each CA's PEM to write is rendered once per pass and shared: a CA is in its instance file,
/// its hash file and the bundle, and at 10,000 instances holding each of those files' bytes
/// on its own was three copies of every CA (tens of MiB) for the length of the pass. Files
/// that stay as they are hold none (see `pem_file`).
pub(crate) enum Content {
    /// The PEM of these CAs, in order.
    Pem(Vec<Arc<[u8]>>),
    /// Bytes made whole (the truststore).
    Bytes(Vec<u8>),
}

impl Content {
    /// The pieces to write, in order.
    pub(crate) fn pieces(&self) -> Vec<&[u8]> {
        match self {
            Content::Pem(pems) => pems.iter().map(|p| &p[..]).collect(),
            Content::Bytes(bytes) => vec![bytes.as_slice()],
        }
    }
}

/// The SHA-256 (hex) of the PEM of `cas` one after the other, and whether `existing` holds
/// exactly those bytes. Each PEM is rendered here and dropped: a file that stays as it is
/// (every file of a pass that changes nothing) keeps no copy of its bytes in the plan.
pub(super) fn pem_file(cas: &[&Cert], existing: Option<&Existing>) -> (String, bool) {
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    let mut rest = existing.map(|e| e.content.as_slice());
    for cert in cas {
        let pem = cert.to_pem();
        digest.update(pem.as_bytes());
        rest = rest.and_then(|r| r.strip_prefix(pem.as_bytes()));
    }
    let same = rest.is_some_and(<[u8]>::is_empty);
    (hex::encode(digest.finish()), same)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca(cn: &str) -> Cert {
        crate::cert::testing::self_signed_ca(cn)
    }

    fn existing(content: Vec<u8>) -> Existing {
        Existing {
            content,
            mode: 0o644,
            uid: 0,
            gid: 0,
        }
    }

    #[test]
    fn a_pem_file_is_hashed_and_compared_as_its_bytes_joined() {
        let (a, b) = (ca("A"), ca("B"));
        let joined = format!("{}{}", a.to_pem(), b.to_pem()).into_bytes();
        let (sha256, same) = pem_file(&[&a, &b], Some(&existing(joined.clone())));
        assert_eq!(sha256, hex::encode(crate::cert::sha256(&joined)));
        assert!(same);
        assert_eq!(pem_file(&[&a, &b], None), (sha256.clone(), false));
        // Another order, a byte more, a byte less, a CA less: not the same file.
        assert!(!pem_file(&[&b, &a], Some(&existing(joined.clone()))).1);
        let mut longer = joined.clone();
        longer.push(b'\n');
        assert!(!pem_file(&[&a, &b], Some(&existing(longer))).1);
        assert!(
            !pem_file(
                &[&a, &b],
                Some(&existing(joined[..joined.len() - 1].to_vec()))
            )
            .1
        );
        assert!(!pem_file(&[&a], Some(&existing(joined.clone()))).1);
        // No CA: the empty file (a bundle emptied of every CA).
        let (empty, same) = pem_file(&[], Some(&existing(Vec::new())));
        assert!(same);
        assert_eq!(empty, hex::encode(crate::cert::sha256(b"")));
    }

    #[test]
    fn content_pieces_are_the_pems_in_order() {
        let (a, b) = (ca("A"), ca("B"));
        let pem = |c: &Cert| -> Arc<[u8]> { Arc::from(c.to_pem().into_bytes()) };
        let content = Content::Pem(vec![pem(&a), pem(&b)]);
        let joined: Vec<u8> = content.pieces().concat();
        assert_eq!(joined, format!("{}{}", a.to_pem(), b.to_pem()).into_bytes());
        assert_eq!(Content::Bytes(b"p12".to_vec()).pieces(), vec![&b"p12"[..]]);
    }
}
