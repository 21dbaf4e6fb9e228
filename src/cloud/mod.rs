//! Talking to the cloud: the one pooled HTTPS client, credentials, and the API operations.
//!
//! Owns: [`http`] (client construction, TLS roots, redaction of URLs), [`auth`] (credentials
//! and their refresh), [`api`] (the download-link operation and the API's error bodies).
//! It never touches the trust folder and never downloads certificates (that is `fetch`).

pub mod api;
pub mod auth;
pub mod http;
