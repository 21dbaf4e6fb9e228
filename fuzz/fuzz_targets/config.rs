//! Fuzzes the configuration loader (SPEC 3) with any text: it must never panic, whatever the
//! TOML, and only read the file system, never write it.
//!
//! The text is parsed as if read from `certsync.toml` inside a fresh empty folder made once per
//! process, so relative paths (`ca_file`, `secret_key_file`, ...) resolve there; after every
//! input the folder must still be empty. Each input is parsed twice: with no environment and
//! with the SDK's variables set (the `aksk` fallbacks). A config it accepts is also rendered
//! as `certsync check` prints it, with its instance file names, and neither that text nor the
//! config's Debug may show the secret key taken from the environment.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// The secret key the environment lookup gives for `HUAWEICLOUD_SDK_SK`.
const ENV_SK: &str = "FuzzEnvSecretKey7f3a9c2e";

/// The folder the configuration pretends to live in. Kept for the life of the process (a
/// static is never dropped; ci/fuzz.sh points TMPDIR at a scratch folder it removes).
fn folder() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("certsync-fuzz-config")
            .tempdir()
            .expect("a temporary folder")
    })
    .path()
}

/// An environment lookup, as `parse_with_env` takes it.
type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

fn sdk_env(name: &str) -> Option<String> {
    match name {
        "HUAWEICLOUD_SDK_AK" => Some("QTWAOYTTINDUT2QVKYUC".into()),
        "HUAWEICLOUD_SDK_SK" => Some(ENV_SK.into()),
        "HUAWEICLOUD_SDK_PROJECT_ID" => Some("619d3e78f61b4be68bc5aa0b59edcf7b".into()),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let dir = folder();
    let source: PathBuf = dir.join("certsync.toml");
    let no_env = |_: &str| None;
    let envs: [Env; 2] = [&no_env, &sdk_env];
    for env in envs {
        match certsync::config::parse_with_env(text, &source, env) {
            Ok(config) => {
                let plan = config.describe();
                let debug = format!("{config:?}");
                if !text.contains(ENV_SK) {
                    assert!(!plan.contains(ENV_SK), "check's plan shows the secret key");
                    assert!(
                        !debug.contains(ENV_SK),
                        "the config's Debug shows the secret key"
                    );
                }
                for instance in &config.instances {
                    for category in ["international", "national", "x/../y"] {
                        let name = config.trust.file_name_for(instance, category);
                        let _ = config.trust.file_name_problem(&name);
                    }
                    let _ = (instance.display_name(), instance.wants("international"));
                }
            }
            Err(e) => {
                let _ = (e.to_string(), format!("{e:?}"));
            }
        }
        let left = std::fs::read_dir(dir)
            .expect("the config folder is readable")
            .count();
        assert_eq!(left, 0, "parsing a config wrote into its folder");
    }
});
