//! `trust.owner` / `trust.group`: a user or group given by name or number, resolved to its id.
//!
//! Owns: parsing the value and looking names up in the local account files `/etc/passwd` and
//! `/etc/group`. Reading those two files ourselves (rather than calling getpwnam(3) through
//! libc, which needs `unsafe`, or adding a crate for it) covers the accounts a service's files
//! are given to: local system users. Accounts that only NSS modules know (LDAP, sssd,
//! systemd's DynamicUser) are not found by name; give their number instead, which is used as
//! is. It must not do anything else with those files.

use std::path::Path;

/// The system's user database.
pub(super) const PASSWD_FILE: &str = "/etc/passwd";
/// The system's group database.
pub(super) const GROUP_FILE: &str = "/etc/group";

/// The largest id accepted: `(uid_t)-1` means "unchanged" to chown(2), so it is refused.
const MAX_ID: u32 = u32::MAX - 1;

/// A value that is a number: the id itself, if it fits.
pub(super) fn parse_number(text: &str) -> Option<Result<u32, String>> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(match text.parse::<u32>() {
        Ok(id) if id <= MAX_ID => Ok(id),
        _ => Err(format!("is not an id from 0 to {MAX_ID}")),
    })
}

/// Looks `name` up in a colon-separated account file (`name:x:id:...`, the same layout in
/// passwd and group): the id in the third field of the first line whose first field is `name`.
pub(super) fn lookup(file: &Path, name: &str) -> Result<Option<u32>, String> {
    let text = crate::files::read_capped_string(file, crate::files::MAX_CONFIG_FILE)
        .map_err(|e| format!("cannot read {} to look it up: {e}", file.display()))?;
    Ok(text.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next() != Some(name) {
            return None;
        }
        fields.nth(1).and_then(|id| id.trim().parse::<u32>().ok())
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names() {
        assert_eq!(parse_number("0"), Some(Ok(0)));
        assert_eq!(parse_number("65534"), Some(Ok(65534)));
        assert!(matches!(parse_number("4294967295"), Some(Err(_))));
        assert!(matches!(parse_number("99999999999"), Some(Err(_))));
        assert_eq!(parse_number("app"), None);
        assert_eq!(parse_number(""), None);

        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("passwd");
        std::fs::write(
            &file,
            "root:x:0:0:root:/root:/bin/bash\n#comment\napp:x:1234:1234::/srv:/bin/false\n",
        )
        .unwrap();
        assert_eq!(lookup(&file, "app").unwrap(), Some(1234));
        assert_eq!(lookup(&file, "root").unwrap(), Some(0));
        assert_eq!(lookup(&file, "ap").unwrap(), None);
        assert!(lookup(&tmp.path().join("none"), "app").is_err());
    }
}
