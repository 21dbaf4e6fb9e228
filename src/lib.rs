//! certsync keeps the CA certificates of Huawei Cloud GaussDB NoSQL (and DDS) instances current
//! in a local trust folder, and tells the programs that use them.
//!
//! A pass flows one way, one module per stage; only [`daemon`] knows them all:
//!
//! `config` -> `cloud::api` (list) -> `fetch` (download) -> `validate` -> `store` -> `hooks`
//!
//! Invariants: nothing reaches the trust folder before it validated; only `store` writes there,
//! atomically, and only files it records in its manifest; a failure for one instance never
//! touches its last good files or any other instance; secrets (tokens, a link's query) never
//! reach a log or an error. See ARCHITECTURE.md.
// One call needs `unsafe` (src/memory.rs, with its reasons): everything else is denied it.
#![deny(unsafe_code)]

pub mod cert;
pub mod cli;
pub mod cloud;
pub mod commands;
pub mod config;
pub mod daemon;
#[cfg(feature = "demo")]
pub mod demo;
pub mod endpoint;
pub mod fetch;
pub mod files;
pub mod fleet;
pub mod fuzzing;
pub mod hooks;
pub mod inspect;
pub mod memory;
pub mod metrics;
pub mod names;
pub mod plan;
pub mod schedule;
pub mod secret;
pub mod server;
pub mod sink;
pub mod source;
pub mod status;
pub mod store;
pub mod systemd;
pub mod text;
pub mod validate;
pub mod verify;
pub mod watch;
