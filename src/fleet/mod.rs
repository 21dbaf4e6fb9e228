//! The fleet roles (SPEC 14): one publisher, elected over etcd, polls the cloud and writes
//! the validated set at `{prefix}/bundle`; subscribers read it, validate it again and run
//! the normal store and hooks.
//!
//! Owns: the published format (`bundle`, pure, always built) and, with the `etcd` feature,
//! the etcd client, the election and the publication (`etcd`), and the subscriber's watch
//! (`subscriber`). Must not: write the trust folder (subscribers hand what they read to the
//! engine as a source; the store writes).

pub mod bundle;
#[cfg(feature = "etcd")]
pub mod etcd;
