//! Fuzzes the reader of the download-link API's answer (ListSslCertDownloadAddresses): any
//! body a hostile or broken endpoint could send with a 2xx status.
//!
//! Besides "never panics", the Debug of an accepted listing and the text of a rejection are
//! formatted (both reach logs), and what a link shows must not depend on its query, fragment
//! or user info: a download link's query is a credential.
#![no_main]

use certsync::cloud::http::RedactedUrl;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let url = url::Url::parse(
        "https://gaussdb-nosql.cn-north-4.myhuaweicloud.com/v3/p/instances/i/ssl-cert/download-link",
    )
    .expect("a valid URL");
    let shown = RedactedUrl::new(&url);
    match certsync::fuzzing::parse_listing(body, Some("req-1".into()), &shown) {
        Ok(listing) => {
            let _ = format!("{listing:?}");
            for link in &listing.certs {
                let _ = certsync::text::escape(&link.category);
                // An opaque-path URL can change its path when its query goes (trailing spaces),
                // so the comparison holds only for URLs with a host and a hierarchical path.
                if link.url.cannot_be_a_base() {
                    continue;
                }
                let mut bare = link.clone();
                bare.url.set_query(None);
                bare.url.set_fragment(None);
                let _ = bare.url.set_username("");
                let _ = bare.url.set_password(None);
                assert_eq!(
                    format!("{link:?}"),
                    format!("{bare:?}"),
                    "a link's Debug shows its query, fragment or user info"
                );
                assert_eq!(
                    RedactedUrl::new(&link.url),
                    RedactedUrl::new(&bare.url),
                    "RedactedUrl shows a query, fragment or user info"
                );
            }
        }
        Err(e) => {
            let _ = (e.to_string(), format!("{e:?}"));
        }
    }
});
