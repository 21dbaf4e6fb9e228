//! What a planned file holds ([`Content`]), and how a file of PEM is compared and hashed
//! without keeping its bytes ([`pem_file`]).
//!
//! Owns: the bytes of instance files, hash files and the bundle as the PEM of their CAs.
//! Must not: decide which files are written (the parent module does) or write them.

use std::collections::HashMap;
use std::io::{self, Read};

use crate::cert::Cert;
use crate::store::write::{Existing, Fill, Opened};

/// What a planned file holds.
///
/// Instance files, hash files and the bundle are the PEM of their CAs, one after the other,
/// named here by SHA-256 and rendered only as the file is written ([`Filled`]): a CA is in its
/// instance file, its hash file and the bundle, and at 10,000 instances holding each of those
/// files' bytes on its own was three copies of every CA (tens of MiB) for the length of the
/// pass; holding each CA's PEM once, shared, was still 8 MB of a cold pass. Files that stay
/// as they are hold nothing (see `pem_file`).
pub(crate) enum Content {
    /// The PEM of these CAs (by SHA-256), in order.
    Pem(Vec<[u8; 32]>),
    /// Bytes made whole (the truststore).
    Bytes(Vec<u8>),
}

impl Content {
    /// The content to write, its CAs found in `certs`.
    pub(crate) fn filled<'a>(&'a self, certs: &'a Certs<'a>) -> Filled<'a> {
        match self {
            Content::Pem(cas) => Filled::Pem(cas, certs),
            Content::Bytes(bytes) => Filled::Bytes(bytes),
        }
    }
}

/// The certificates a plan's contents name, by SHA-256: the pass's input and what the plan
/// read from the folder (see [`Plan::certs`](super::Plan::certs)).
pub(crate) struct Certs<'a>(pub(super) HashMap<[u8; 32], &'a Cert>);

/// A planned file's content as it is written.
pub(crate) enum Filled<'a> {
    /// Each CA's PEM rendered as it is written.
    Pem(&'a [[u8; 32]], &'a Certs<'a>),
    Bytes(&'a [u8]),
}

impl Fill for Filled<'_> {
    fn size_hint(&self) -> usize {
        match self {
            // PEM is 4/3 of the DER, a newline every 64 characters and two lines around it.
            Filled::Pem(cas, certs) => cas
                .iter()
                .filter_map(|d| certs.0.get(d))
                .map(|c| c.der.len() * 4 / 3 + c.der.len() / 48 + 64)
                .sum(),
            Filled::Bytes(bytes) => bytes.len(),
        }
    }

    fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Filled::Pem(..) => None,
            Filled::Bytes(bytes) => Some(bytes),
        }
    }

    fn fill(&self, out: &mut dyn io::Write) -> io::Result<()> {
        match self {
            Filled::Pem(cas, certs) => {
                for d in *cas {
                    // The plan names only CAs it had: a missing one is a bug, and fails
                    // the write (the file keeps its old content) rather than writing a file
                    // without it.
                    let cert = certs.0.get(d).ok_or_else(|| {
                        io::Error::other(format!(
                            "internal error: the CA {} of the plan is not among its certificates",
                            hex::encode(d)
                        ))
                    })?;
                    out.write_all(cert.to_pem().as_bytes())?;
                }
                Ok(())
            }
            Filled::Bytes(bytes) => out.write_all(bytes),
        }
    }
}

/// The SHA-256 (hex) of the PEM of `cas` one after the other, and whether `existing` holds
/// exactly those bytes. Each PEM is rendered here and dropped, and `existing` is read as far
/// as it matches, a piece at a time: a file that stays as it is (every file of a pass that
/// changes nothing) costs no copy of its bytes, neither of the plan's nor of the file's (the
/// bundle of 10,000 CAs is 8 MB, once read whole to be compared). An error reading it is
/// the caller's, as an error opening it would be.
pub(super) fn pem_file(
    cas: &[&Cert],
    existing: Option<&mut Existing<Opened>>,
) -> io::Result<(String, bool)> {
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    let mut reader = existing.map(|e| io::BufReader::with_capacity(1 << 16, &mut e.content.file));
    let mut same = reader.is_some();
    let mut buf = Vec::new();
    for cert in cas {
        let pem = cert.to_pem();
        digest.update(pem.as_bytes());
        if same && let Some(r) = reader.as_mut() {
            buf.resize(pem.len(), 0);
            same = fill(r, &mut buf)? == pem.len() && buf == pem.as_bytes();
        }
    }
    // Nothing after the last CA.
    if same && let Some(r) = reader.as_mut() {
        same = fill(r, &mut [0])? == 0;
    }
    Ok((hex::encode(digest.finish()), same))
}

/// Reads into `buf` until it is full or the file ends: how many bytes it read.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca(cn: &str) -> Cert {
        crate::cert::testing::self_signed_ca(cn)
    }

    fn existing(content: Vec<u8>) -> Existing<Opened> {
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, &content).unwrap();
        std::io::Seek::rewind(&mut file).unwrap();
        Existing {
            content: Opened {
                file,
                size: content.len() as u64,
            },
            mode: 0o644,
            uid: 0,
            gid: 0,
        }
    }

    fn pem_file(cas: &[&Cert], existing: Option<Existing<Opened>>) -> (String, bool) {
        let mut existing = existing;
        super::pem_file(cas, existing.as_mut()).unwrap()
    }

    #[test]
    fn a_pem_file_is_hashed_and_compared_as_its_bytes_joined() {
        let (a, b) = (ca("A"), ca("B"));
        let joined = format!("{}{}", a.to_pem(), b.to_pem()).into_bytes();
        let (sha256, same) = pem_file(&[&a, &b], Some(existing(joined.clone())));
        assert_eq!(sha256, hex::encode(crate::cert::sha256(&joined)));
        assert!(same);
        assert_eq!(pem_file(&[&a, &b], None), (sha256.clone(), false));
        // Another order, a byte more, a byte less, a CA less: not the same file.
        assert!(!pem_file(&[&b, &a], Some(existing(joined.clone()))).1);
        let mut longer = joined.clone();
        longer.push(b'\n');
        assert!(!pem_file(&[&a, &b], Some(existing(longer))).1);
        assert!(
            !pem_file(
                &[&a, &b],
                Some(existing(joined[..joined.len() - 1].to_vec()))
            )
            .1
        );
        assert!(!pem_file(&[&a], Some(existing(joined.clone()))).1);
        // No CA: the empty file (a bundle emptied of every CA).
        let (empty, same) = pem_file(&[], Some(existing(Vec::new())));
        assert!(same);
        assert_eq!(empty, hex::encode(crate::cert::sha256(b"")));
    }

    #[test]
    fn content_is_written_as_the_pems_in_order() {
        let (a, b) = (ca("A"), ca("B"));
        let certs = Certs([(a.sha256, &a), (b.sha256, &b)].into_iter().collect());
        let written = |content: &Content| {
            let mut out = Vec::new();
            content.filled(&certs).fill(&mut out).unwrap();
            out
        };
        let content = Content::Pem(vec![a.sha256, b.sha256]);
        let joined = format!("{}{}", a.to_pem(), b.to_pem()).into_bytes();
        assert_eq!(written(&content), joined);
        assert!(content.filled(&certs).as_bytes().is_none());
        // The hint is close: it sizes a buffer of at most 64 KiB.
        let hint = content.filled(&certs).size_hint();
        assert!(
            hint.abs_diff(joined.len()) < joined.len() / 10,
            "{hint} for {}",
            joined.len()
        );
        let bytes = Content::Bytes(b"p12".to_vec());
        assert_eq!(written(&bytes), b"p12");
        assert_eq!(bytes.filled(&certs).as_bytes(), Some(&b"p12"[..]));
        // A CA the plan does not have fails the write.
        let unknown = Content::Pem(vec![a.sha256, [7; 32]]);
        assert!(unknown.filled(&certs).fill(&mut Vec::new()).is_err());
    }
}
