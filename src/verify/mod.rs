//! Live verification of the endpoints (SPEC 13): does a client that trusts what certsync
//! wrote for an instance connect to that instance's database?
//!
//! Owns: the probe ([`probe`]: a TLS handshake and the served chain checked against the
//! instance's CAs). Must not: write the trust folder, or delay a pass.

pub mod probe;

pub use probe::{Anchor, Outcome, Probed, anchors, probe, verify_chain};
