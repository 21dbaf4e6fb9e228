//! `trust.owner` / `trust.group` end to end with the real binary: as root certsync gives the
//! files to the configured user and group (checked with stat(1)); without the privilege
//! (certsync run as `nobody` through setpriv(1)) every file fails with a clear error naming
//! the path, the owner asked for and the reason, and nothing is left behind.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::*;

fn stat_owner(path: &Path) -> String {
    let out = std::process::Command::new("stat")
        .args(["-c", "%u:%g %a"])
        .arg(path)
        .output()
        .expect("run stat");
    assert!(out.status.success(), "{}", all_output(&out));
    stdout(&out).trim().to_string()
}

/// One instance, no hook, and these `[trust]` keys.
async fn harness(trust: &'static str) -> Harness {
    let extra = Extra {
        trust,
        no_hook: true,
        ..Extra::default()
    };
    Harness::with(1, extra).await
}

#[tokio::test]
async fn as_root_files_belong_to_the_configured_user_and_group() {
    let h = harness(
        "owner = \"nobody\"\ngroup = \"nogroup\"\nmode = \"0640\"\npkcs12 = \"truststore.p12\"",
    )
    .await;
    let out = h.certsync(&["check"]).await;
    assert!(
        stdout(&out).contains("owner: nobody (65534)"),
        "{}",
        all_output(&out)
    );
    let out = h.once().await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let mut checked = 0;
    for entry in std::fs::read_dir(&h.trust).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.starts_with('.') {
            continue;
        }
        assert_eq!(
            stat_owner(&h.trust.join(&name)),
            "65534:65534 640",
            "{name}"
        );
        checked += 1;
    }
    // instance file, bundle, hash file, truststore
    assert_eq!(checked, 4);
}

#[tokio::test]
async fn without_the_privilege_chown_fails_clearly_and_leaves_nothing() {
    let h = harness("owner = \"root\"\ngroup = \"root\"").await;
    // nobody must reach the config, token, simulator CA and trust folder.
    std::fs::set_permissions(h.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(&h.trust).unwrap();
    std::os::unix::fs::chown(&h.trust, Some(65534), Some(65534)).unwrap();

    // `certsync once` as nobody (uid and gid 65534, no other groups).
    let mut as_nobody = tokio::process::Command::new("setpriv");
    as_nobody.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
    as_nobody.arg("--config").arg(&h.config).arg("once");
    as_nobody
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null());
    let out = as_nobody.output().await.expect("run setpriv");
    let text = all_output(&out);
    assert_eq!(code(&out), 1, "{text}");
    let file = h.file(0);
    assert!(
        text.contains(&format!(
            "cannot give {} to uid 0 and gid 0",
            file.display()
        )),
        "{text}"
    );
    assert!(text.contains("Operation not permitted"), "{text}");
    assert!(text.contains("CAP_CHOWN"), "{text}");
    // No file with the wrong owner ever appeared, and no temporary file is left.
    let left: Vec<String> = std::fs::read_dir(&h.trust)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != ".certsync-manifest.json")
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
