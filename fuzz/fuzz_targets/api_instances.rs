//! Fuzzes the reader of one ListInstances answer page (discovery, SPEC 5.4): any body a hostile
//! or broken endpoint could send with a 2xx status. The accepted page and the rejection are
//! formatted as logs would.
#![no_main]

use certsync::cloud::http::RedactedUrl;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let url = url::Url::parse(
        "https://gaussdb-nosql.cn-north-4.myhuaweicloud.com/v3/p/instances?offset=0&limit=100",
    )
    .expect("a valid URL");
    let shown = RedactedUrl::new(&url);
    match certsync::fuzzing::parse_instances_page(body, &shown) {
        Ok(page) => {
            for instance in &page.instances {
                let _ = (
                    certsync::text::escape(&instance.id),
                    certsync::text::escape(&instance.name),
                    certsync::text::escape(&instance.status),
                    certsync::text::escape(&instance.datastore_type),
                );
            }
            let _ = format!("{page:?}");
        }
        Err(e) => {
            let _ = (e.to_string(), format!("{e:?}"));
        }
    }
});
