//! OpenSSL's subject hash (`X509_NAME_hash`), the name behind `-CApath` hash links.
//!
//! Owns: the canonical encoding of an X.509 Name as OpenSSL computes it (`x509_name_canon`)
//! with the tiny DER walker it needs, and the hash over it. Must not: parse anything but a
//! Name's DER, or decide file names (the store builds `<hash>.<n>` from this).

/// OpenSSL's `X509_NAME_hash` (the hash behind `-subject_hash` and `-CApath` file names):
/// the first four bytes, little-endian, of SHA-1 over the name's canonical encoding.
///
/// The canonical encoding (OpenSSL `x509_name_canon`) is the concatenation of each RDN's SET,
/// without the outer SEQUENCE, where every string value of a "canonicalisable" type is converted
/// to UTF-8, stripped of leading/trailing whitespace, internal whitespace runs collapsed to one
/// space, ASCII lower-cased, and re-tagged as UTF8String. Written by hand (with a tiny DER walker)
/// because no maintained crate exposes it and we need the raw TLV bytes of each value.
pub fn subject_hash(name_der: &[u8]) -> Result<u32, String> {
    let canon = canonical_name(name_der)?;
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &canon);
    let d = digest.as_ref();
    Ok(u32::from_le_bytes([d[0], d[1], d[2], d[3]]))
}

fn canonical_name(name_der: &[u8]) -> Result<Vec<u8>, String> {
    let (name, rest) = Tlv::read(name_der)?;
    if name.tag != 0x30 || !rest.is_empty() {
        return Err("Name is not one SEQUENCE".into());
    }
    let mut out = Vec::new();
    let mut rdns = name.content;
    while !rdns.is_empty() {
        let (set, next) = Tlv::read(rdns)?;
        rdns = next;
        if set.tag != 0x31 {
            return Err("RDN is not a SET".into());
        }
        let mut avas: Vec<Vec<u8>> = Vec::new();
        let mut items = set.content;
        while !items.is_empty() {
            let (ava, next) = Tlv::read(items)?;
            items = next;
            if ava.tag != 0x30 {
                return Err("AttributeTypeAndValue is not a SEQUENCE".into());
            }
            let (oid, after_oid) = Tlv::read(ava.content)?;
            let (value, after_value) = Tlv::read(after_oid)?;
            if oid.tag != 0x06 || !after_value.is_empty() {
                return Err("malformed AttributeTypeAndValue".into());
            }
            let mut body = oid.raw.to_vec();
            match canonical_string(value.tag, value.content) {
                Some(text) => push_tlv(&mut body, 0x0c, &text),
                None => body.extend_from_slice(value.raw),
            }
            let mut encoded = Vec::new();
            push_tlv(&mut encoded, 0x30, &body);
            avas.push(encoded);
        }
        // DER orders the members of a SET OF by their encodings.
        avas.sort();
        let joined: Vec<u8> = avas.concat();
        push_tlv(&mut out, 0x31, &joined);
    }
    Ok(out)
}

/// `asn1_string_canon`: `None` when the type is not one OpenSSL canonicalises (the value is
/// then copied as it is).
fn canonical_string(tag: u8, content: &[u8]) -> Option<Vec<u8>> {
    let utf8: Vec<u8> = match tag {
        // UTF8String, PrintableString, T61String (read as Latin-1 like OpenSSL), IA5String,
        // VisibleString
        0x0c => content.to_vec(),
        0x13 | 0x16 | 0x1a => content.to_vec(),
        0x14 => content
            .iter()
            .map(|&b| b as char)
            .collect::<String>()
            .into_bytes(),
        // BMPString (UCS-2 BE)
        0x1e => {
            let units: Vec<u16> = content
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                .collect();
            String::from_utf16_lossy(&units).into_bytes()
        }
        // UniversalString (UCS-4 BE)
        0x1c => content
            .chunks(4)
            .filter_map(|c| {
                if c.len() == 4 {
                    char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                } else {
                    None
                }
            })
            .collect::<String>()
            .into_bytes(),
        _ => return None,
    };
    let is_space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let mut s = &utf8[..];
    while let [first, rest @ ..] = s {
        if is_space(*first) {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if is_space(*last) {
            s = rest;
        } else {
            break;
        }
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if b >= 0x80 {
            out.push(b);
            i += 1;
        } else if is_space(b) {
            out.push(b' ');
            while i < s.len() && is_space(s[i]) {
                i += 1;
            }
        } else {
            out.push(b.to_ascii_lowercase());
            i += 1;
        }
    }
    Some(out)
}

struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    raw: &'a [u8],
}

impl<'a> Tlv<'a> {
    fn read(data: &'a [u8]) -> Result<(Tlv<'a>, &'a [u8]), String> {
        let too_short = || "truncated DER".to_string();
        let tag = *data.first().ok_or_else(too_short)?;
        if tag & 0x1f == 0x1f {
            return Err("multi-byte DER tags are not supported in names".into());
        }
        let first = *data.get(1).ok_or_else(too_short)?;
        let (len, header) = if first < 0x80 {
            (first as usize, 2)
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 {
                return Err("unsupported DER length".into());
            }
            let bytes = data.get(2..2 + n).ok_or_else(too_short)?;
            (
                bytes.iter().fold(0usize, |acc, &b| (acc << 8) | b as usize),
                2 + n,
            )
        };
        let end = header.checked_add(len).ok_or_else(too_short)?;
        if data.len() < end {
            return Err(too_short());
        }
        Ok((
            Tlv {
                tag,
                content: &data[header..end],
                raw: &data[..end],
            },
            &data[end..],
        ))
    }
}

fn push_tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_string_collapses_and_lowercases() {
        assert_eq!(
            canonical_string(0x13, b"  Foo \t  BAR  ").unwrap(),
            b"foo bar".to_vec()
        );
        assert_eq!(canonical_string(0x12, b"123"), None);
    }
}
