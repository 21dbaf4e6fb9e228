//! The sink seam: where a pass puts what it validated. The trust folder today ([`trust`]); a
//! fleet publication next, as another member of [`Sinks`] in a module of its own.
//!
//! Owns: handing each sink the pass's input, off the async workers. It must not fetch
//! anything or decide which instances a pass syncs (the source and the plan do).

pub mod trust;

pub use trust::TrustSink;

/// The trust sink's vocabulary, which the daemon speaks: what a pass hands it, what it
/// reports, what the folder holds. The daemon reaches the store only through this seam.
pub use crate::store::{
    Change, EntryState, Evidence, PassInput, StoreError, StoreOptions, StoreReport, StoreState,
    StoreView, UNPRODUCED_PASSES, Verified,
};

/// Every sink a pass writes to; `S` is the daemon's state, saved with the trust folder.
pub struct Sinks<S> {
    /// The trust folder (SPEC 7): its report drives hooks, health and status.
    pub trust: TrustSink<S>,
}
