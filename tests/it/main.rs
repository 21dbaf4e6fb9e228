//! The one integration-test binary of the `certsync` crate: each module below was once a
//! binary of its own (`tests/<name>.rs`); together they link the dependency graph once.
//!
//! All tests share this process and run in parallel threads, so no test may change
//! process-wide state (environment variables, current directory, umask, rlimits, signal
//! dispositions, a global tracing subscriber): a test that needs such a change makes it in a
//! child process (the `certsync` binary, run through `prlimit` or with `Command::env`, or the
//! `store_writer` example that the crash tests kill).
//!
//! Shared support, declared once: `common` (the simulator, a config and the real binary as a
//! child process) and `store_support` (CAs, store scenarios, and the writer processes the
//! crash tests SIGKILL).
// A test crate: its helpers are private to it, and `pub` only says which of them the test
// modules share, so the library's `unreachable_pub` rule does not apply here.
#![allow(unreachable_pub)]

mod common;
mod store_support;

mod clients_rotation;
mod clients_tls;
mod config_errors;
mod config_valid;
mod e2e_accounts;
mod e2e_auth;
mod e2e_budget;
mod e2e_daemon;
mod e2e_discover;
mod e2e_once;
mod e2e_ops;
mod e2e_status;
mod e2e_verify;
#[cfg(feature = "etcd")]
mod fleet_etcd;
mod fuzz_regressions;
mod hooks_run;
mod prometheus_rules;
mod safety;
mod server_limits;
mod store_api;
mod store_atomic_crash;
mod store_bench;
mod store_crash;
mod store_files;
mod store_inspect;
mod store_openssl;
mod store_privilege;
mod store_shapes;
mod subject_hash_openssl;
mod validate_rules;
mod validate_system_roots;
mod verify_probe;
mod verify_servers;
