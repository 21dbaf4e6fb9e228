//! Every output shape, used by programs no one here wrote (issue 4): a real TLS server
//! (`openssl s_server`) whose certificate a simulator CA issued, and `curl --cacert` with an
//! instance file and with the bundle, `curl --capath` and `openssl s_client -CApath` with the
//! folder, Java (`keytool -list`, and a handshake through the truststore) — in the flat and
//! the atomic-dir layouts. Each client is also seen refusing: before certsync synced the CA
//! that issued the server's certificate, and with only another instance's CA.

use std::path::Path;
use std::process::Output;

use crate::common::*;

/// curl's exit status for "the peer certificate cannot be authenticated with the known CAs".
const CURL_UNTRUSTED: i32 = 60;

fn curl_refused(what: &str, out: &Output) {
    assert_eq!(
        code(out),
        CURL_UNTRUSTED,
        "{what}: curl should refuse the certificate:\n{}",
        all_output(out)
    );
}

async fn every_shape_is_trusted_by_real_clients(layout: &'static str) {
    let extra = Extra {
        trust: layout,
        no_hook: true,
        ..Extra::default()
    };
    let h = Harness::with(2, extra).await;
    let out = h.once().await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let (file0, file1) = (h.file(0), h.file(1));
    let bundle = h.trust.join("ca-bundle.crt");
    let p12 = h.trust.join("truststore.p12");

    // The server's CA is one certsync has not synced yet: instance 0 rotated after the sync.
    h.sim.rotate(&h.id(0), "international");
    let (cert, key) = h
        .sim
        .issue_server_cert(&h.id(0), "international", &["127.0.0.1"]);
    let server = TlsServer::start(&cert, &key);
    let url = server.url();

    curl_refused(
        "curl --cacert instance file (before)",
        &curl_cacert(&file0, &url),
    );
    curl_refused("curl --cacert bundle (before)", &curl_cacert(&bundle, &url));
    curl_refused("curl --capath (before)", &curl_capath(&h.trust, &url));
    let out = s_client_capath(&h.trust, server.port);
    refused("s_client -CApath (before)", &out);
    assert!(
        all_output(&out).contains("unable to get local issuer certificate"),
        "{}",
        all_output(&out)
    );
    refused(
        "java (before)",
        &java_handshake(&p12, "changeit", server.port),
    );
    let (listed, trusted, count, text) = keytool_list(&p12, "changeit");
    assert!(listed, "{text}");
    assert_eq!((trusted, count), (2, Some(2)), "{text}");

    // The sync: the new CA joins every shape (the old one stays for the overlap).
    let out = h.once().await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert!(stdout(&out).contains("updated"), "{}", stdout(&out));

    accepted("curl --cacert instance file", &curl_cacert(&file0, &url));
    accepted("curl --cacert bundle", &curl_cacert(&bundle, &url));
    accepted("curl --capath", &curl_capath(&h.trust, &url));
    accepted("s_client -CApath", &s_client_capath(&h.trust, server.port));
    let out = java_handshake(&p12, "changeit", server.port);
    accepted("java with the truststore", &out);
    assert!(
        stdout(&out).contains("HANDSHAKE OK"),
        "{}",
        all_output(&out)
    );
    let (listed, trusted, count, text) = keytool_list(&p12, "changeit");
    assert!(listed, "{text}");
    // instance 0: new + replaced (overlap); instance 1: one.
    assert_eq!((trusted, count), (3, Some(3)), "{text}");
    let (listed, _, _, text) = keytool_list(&p12, "wrong-password");
    assert!(!listed, "keytool must refuse a wrong password:\n{text}");

    // Only the other instance's CA: refused even now.
    curl_refused(
        "curl --cacert other instance's file",
        &curl_cacert(&file1, &url),
    );

    // What the clients read are the visible names; in atomic-dir they are symlinks.
    let symlinks = std::fs::symlink_metadata(&file0)
        .unwrap()
        .file_type()
        .is_symlink();
    assert_eq!(
        symlinks,
        layout.contains("atomic-dir"),
        "{}",
        file0.display()
    );
}

#[tokio::test]
async fn flat_folder_every_shape_with_real_clients() {
    every_shape_is_trusted_by_real_clients("pkcs12 = \"truststore.p12\"").await;
}

#[tokio::test]
async fn atomic_dir_folder_every_shape_with_real_clients() {
    every_shape_is_trusted_by_real_clients("pkcs12 = \"truststore.p12\"\nlayout = \"atomic-dir\"")
        .await;
}

#[tokio::test]
async fn java_reads_a_truststore_with_a_password_file() {
    let extra = Extra {
        trust: "pkcs12 = \"truststore.p12\"\npkcs12_password_file = \"p12-password\"",
        no_hook: true,
        ..Extra::default()
    };
    let h = Harness::with(1, extra).await;
    std::fs::write(h.tmp.path().join("p12-password"), "Sup3r-secret\n").unwrap();
    let out = h.once().await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert!(!all_output(&out).contains("Sup3r-secret"));
    let p12 = h.trust.join("truststore.p12");
    let (cert, key) = h
        .sim
        .issue_server_cert(&h.id(0), "international", &["127.0.0.1"]);
    let server = TlsServer::start(&cert, &key);
    accepted(
        "java with the password file's password",
        &java_handshake(&p12, "Sup3r-secret", server.port),
    );
    // The wrong password cannot even open the truststore.
    let out = java_handshake(&p12, "changeit", server.port);
    assert!(!out.status.success());
    assert!(
        all_output(&out).contains("password was incorrect"),
        "{}",
        all_output(&out)
    );
    let (listed, trusted, _, text) = keytool_list(&p12, "Sup3r-secret");
    assert!(listed && trusted == 1, "{text}");
}

#[tokio::test]
async fn a_missing_password_file_fails_only_the_truststore() {
    let extra = Extra {
        trust: "pkcs12 = \"truststore.p12\"\npkcs12_password_file = \"p12-password\"",
        no_hook: true,
        ..Extra::default()
    };
    let h = Harness::with(1, extra).await;
    let out = h.once().await;
    // Reported with the truststore's path and the reason; the pass is a failure ...
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    let text = stdout(&out);
    assert!(
        text.contains("trust folder: failed: cannot write truststore")
            && text.contains(&h.trust.join("truststore.p12").display().to_string())
            && text.contains("p12-password")
            && text.contains("No such file"),
        "{text}"
    );
    // ... but every other shape is there and right.
    assert_eq!(
        std::fs::read_to_string(h.file(0)).unwrap(),
        h.expected_pem(0)
    );
    assert!(h.trust.join("ca-bundle.crt").exists());
    assert!(!h.trust.join("truststore.p12").exists());
    let (cert, key) = h
        .sim
        .issue_server_cert(&h.id(0), "international", &["127.0.0.1"]);
    let server = TlsServer::start(&cert, &key);
    accepted("curl --capath", &curl_capath(&h.trust, &server.url()));
    assert!(is_listed(&h.trust, "ca-bundle.crt"));
}

fn is_listed(dir: &Path, name: &str) -> bool {
    std::fs::read_to_string(dir.join(".certsync-manifest.json"))
        .unwrap()
        .contains(&format!("\"{name}\""))
}
