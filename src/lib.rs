//! certsync: keeps the CA certificates of Huawei Cloud GaussDB NoSQL instances current in a
//! local trust directory. See ARCHITECTURE.md for the map.
#![forbid(unsafe_code)]

pub mod cert;
pub mod store;
