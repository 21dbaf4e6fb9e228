//! The [`crate::Simulator`]'s Rust API besides starting and its addresses (which `lib.rs`
//! holds): `accounts` (credentials, users, projects, the rate limit, the metadata service) and
//! `instances` (instances, nodes, CAs, faults), each an `impl Simulator` block over the world.

mod accounts;
mod instances;
