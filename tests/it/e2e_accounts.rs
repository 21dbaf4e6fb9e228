//! End-to-end: several cloud accounts in one daemon (SPEC 15), each its own endpoint,
//! credentials and budget: the real `certsync` binary against two simulators on loopback
//! (two regions, two projects, two tokens).

use certsync_sim::{SimOptions, Simulator};

use crate::common::*;

/// The harness's simulator is the account `default`; a second simulator (region
/// eu-west-101, its own CA, project and token) is the account `eu`, with `instances`
/// instances named `eu0`, `eu1`, ...
struct TwoAccounts {
    h: Harness,
    eu: Simulator,
    eu_names: Vec<String>,
}

impl TwoAccounts {
    async fn new(default_instances: usize, eu_instances: usize) -> TwoAccounts {
        let h = Harness::new(default_instances).await;
        let eu = Simulator::start(SimOptions {
            instances: eu_instances,
            dir: Some(h.tmp.path().join("sim-eu")),
            region: Some("eu-west-101".into()),
            ..SimOptions::default()
        })
        .await
        .unwrap();
        std::fs::write(h.tmp.path().join("eu-token"), format!("{}\n", eu.token())).unwrap();
        let t = TwoAccounts {
            h,
            eu,
            eu_names: (0..eu_instances).map(|i| format!("eu{i}")).collect(),
        };
        t.write("");
        t
    }

    /// The harness's config plus the `eu` account and its instances; `account_extra` goes
    /// into the `[[account]]` table.
    fn write(&self, account_extra: &str) {
        let mut tail = format!(
            "\n[[account]]\nname = \"eu\"\nregion = \"eu-west-101\"\nendpoint = \"{}\"\n\
             project_id = \"{}\"\nca_file = \"{}\"\ntimeout = \"5s\"\n{account_extra}\n\
             [account.auth]\nmethod = \"token\"\ntoken_file = \"eu-token\"\n",
            self.eu.endpoint(),
            self.eu.project_id(),
            self.eu.ca_file().display()
        );
        for (id, name) in self.eu.instance_ids().iter().zip(&self.eu_names) {
            tail.push_str(&format!(
                "\n[[instance]]\nid = \"{id}\"\nname = \"{name}\"\naccount = \"eu\"\n"
            ));
        }
        self.h.write_config(&Extra {
            tail,
            ..Extra::default()
        });
    }

    fn eu_file(&self, i: usize) -> std::path::PathBuf {
        self.h
            .trust
            .join(format!("{}-international.crt", self.eu_names[i]))
    }

    fn eu_expected(&self, i: usize) -> String {
        let id = &self.eu.instance_ids()[i];
        certsync::cert::encode_pem(&self.eu.ca(id, "international").der)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_of_two_accounts_sync_each_through_their_own_endpoint_and_credentials() {
    let t = TwoAccounts::new(2, 2).await;
    let out = t.h.once().await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    for i in 0..2 {
        assert_eq!(
            std::fs::read_to_string(t.h.file(i)).unwrap(),
            t.h.expected_pem(i)
        );
        assert_eq!(
            std::fs::read_to_string(t.eu_file(i)).unwrap(),
            t.eu_expected(i)
        );
    }
    // Each simulator saw only its own account's requests (a request with the other's token
    // or for the other's project would have been refused, and the pass would have failed).
    let (default_stats, eu_stats) = (t.h.sim.stats(), t.eu.stats());
    assert_eq!(default_stats.api_requests, 2, "{default_stats:?}");
    assert_eq!(eu_stats.api_requests, 2, "{eu_stats:?}");
    let bundle = std::fs::read_to_string(t.h.trust.join("ca-bundle.crt")).unwrap();
    assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_whose_credentials_fail_is_named_and_costs_no_other_account_its_files() {
    let t = TwoAccounts::new(1, 1).await;
    assert_eq!(code(&t.h.once().await), 0);
    let before = std::fs::read_to_string(t.eu_file(0)).unwrap();
    // The eu token is revoked (the simulator accepts another one now) and the default
    // account's CA rotates: the default instance updates, the eu instance keeps its file.
    t.eu.set_token("a-new-token-certsync-does-not-have");
    t.h.sim.rotate(&t.h.id(0), "international");
    let out = t.h.once().await;
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    let text = all_output(&out);
    assert!(
        text.contains("instance eu0 (account eu): ") && text.contains("auth method token"),
        "{text}"
    );
    assert!(!text.contains(&t.eu.token()), "{text}");
    assert_eq!(std::fs::read_to_string(t.eu_file(0)).unwrap(), before);
    // The default instance took its new CA (the old one stays beside it for the overlap).
    assert!(
        std::fs::read_to_string(t.h.file(0))
            .unwrap()
            .contains(&t.h.expected_pem(0)),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_shows_every_account_with_its_endpoint_budget_and_instances() {
    let t = TwoAccounts::new(1, 2).await;
    t.write("max_requests_per_second = 0.5");
    let out = t.h.certsync(&["check"]).await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let text = stdout(&out);
    let eu_block = text
        .split("account eu (account[0]):")
        .nth(1)
        .unwrap_or_else(|| panic!("no eu account in {text}"));
    assert!(
        eu_block.contains(&format!("endpoint: {}", t.eu.endpoint())),
        "{text}"
    );
    assert!(eu_block.contains("max_requests_per_second: 0.5"), "{text}");
    assert!(eu_block.contains("instances: 2 configured"), "{text}");
    assert!(
        eu_block.contains("account eu auth (account[0].auth):"),
        "{text}"
    );
    let default_block = text.split("account eu").next().unwrap();
    assert!(
        default_block.contains(&format!("endpoint: {}", t.h.sim.endpoint()))
            && default_block.contains("max_requests_per_second: 5 ")
            && default_block.contains("instances: 1 configured"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_error_of_an_account_names_the_account_and_its_key() {
    let t = TwoAccounts::new(1, 1).await;
    let text = std::fs::read_to_string(&t.h.config).unwrap();
    let text = text
        .replace("account = \"eu\"", "account = \"us\"")
        .replace(
            "token_file = \"eu-token\"",
            "token_file = \"eu-token\"\nuser = \"x\"",
        );
    std::fs::write(&t.h.config, format!("{text}\n[[account]]\nname = \"eu\"\n")).unwrap();
    let out = t.h.certsync(&["check"]).await;
    // EX_CONFIG.
    assert_eq!(code(&out), 78, "{}", all_output(&out));
    let err = stderr(&out);
    for needle in [
        "account[0].auth.user: is a key of method \"password\" but account[0].auth.method = \"token\"",
        "instance[1].account: \"us\" names no account (the accounts are \"default\", \"eu\")",
        "account[1].name: \"eu\" is used twice",
        "account[1].region: missing (required)",
    ] {
        assert!(err.contains(needle), "no {needle:?} in {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_lists_each_account_and_its_instances_sync_through_that_account() {
    let t = TwoAccounts::new(1, 0).await;
    let found = ["eu-a", "eu-b"];
    for id in found {
        t.eu.add_instance(id);
    }
    t.write("");
    let text = std::fs::read_to_string(&t.h.config).unwrap();
    std::fs::write(
        &t.h.config,
        format!("{text}\n[[discover]]\naccount = \"eu\"\n"),
    )
    .unwrap();
    let out = t.h.once().await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    for id in found {
        let name = t.eu.instance_meta(id).name;
        let file = t.h.trust.join(format!("{name}-international.crt"));
        assert_eq!(
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file:?}: {e}")),
            certsync::cert::encode_pem(&t.eu.ca(id, "international").der)
        );
    }
    // ListInstances went to the eu account's endpoint only.
    assert_eq!(t.eu.stats().list_requests, 1);
    assert_eq!(t.h.sim.stats().list_requests, 0);
}
