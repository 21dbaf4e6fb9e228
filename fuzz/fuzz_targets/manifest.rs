//! Fuzzes the reader of the trust folder's manifest (`.certsync-manifest.json`), which anyone
//! who can write the folder, or a crash, may have damaged.
//!
//! Besides "never panics" (the store's `to_bytes` expects every accepted manifest to
//! serialise), it checks that a manifest the reader accepts reads back from the bytes the store
//! would write, and to the same bytes: otherwise a restart would see another state than the one
//! saved. One exception: a non-integer number inside the daemon's opaque `state` (only a hand
//! edit puts one there) may move in its last digit, as serde_json's default float parsing is not
//! exact; for such input only the reading back is checked.
#![no_main]

use certsync::fuzzing::parse_manifest;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn has_float(value: &Value) -> bool {
    match value {
        Value::Number(n) => n.is_f64(),
        Value::Array(items) => items.iter().any(has_float),
        Value::Object(map) => map.values().any(has_float),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(written) = parse_manifest(data) else {
        return;
    };
    let again = parse_manifest(&written)
        .unwrap_or_else(|e| panic!("the store's own manifest bytes are rejected: {e}"));
    let floats = serde_json::from_slice::<Value>(&written)
        .map(|v| has_float(&v))
        .expect("the store's manifest is JSON");
    if !floats {
        assert_eq!(again, written, "the manifest does not read back to itself");
    }
});
