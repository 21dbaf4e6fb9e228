//! Several projects (regions) in one simulator, extra users, and ListInstances' node addresses,
//! over real TLS, through the Rust API and the control API.
// A test crate: its helpers are private to it, and `pub` only says which of them the test
// modules share, so the library's `unreachable_pub` rule does not apply here.
#![allow(unreachable_pub)]

mod common;

use certsync_sim::{Node, Project, SimOptions, Simulator};
use common::{KeepAlive, KeepResp, Signed, curl};

async fn sim(instances: usize) -> Simulator {
    Simulator::start(SimOptions {
        instances,
        ..SimOptions::default()
    })
    .await
    .expect("simulator starts")
}

fn link_url(sim: &Simulator, project_id: &str, id: &str) -> String {
    format!(
        "{}/v3/{project_id}/instances/{id}/ssl-cert/download-link",
        sim.endpoint()
    )
}

fn list_url(sim: &Simulator, project_id: &str, query: &str) -> String {
    format!("{}/v3/{project_id}/instances{query}", sim.endpoint())
}

fn token(t: &str) -> Vec<(String, String)> {
    vec![("X-Auth-Token".to_owned(), t.to_owned())]
}

/// The ids on a ListInstances page, and its total_count.
fn page(resp: &KeepResp) -> (u64, Vec<String>) {
    assert_eq!(resp.status, 200, "{}", resp.text());
    let doc = resp.json();
    let ids = doc["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    (doc["total_count"].as_u64().unwrap(), ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_answer_only_under_their_projects_path() {
    let sim = sim(2).await;
    let home = sim.project_id();
    let eu = sim.add_project("eu-west-101");
    assert_eq!(eu.name, "eu-west-101");
    assert_eq!(eu.id.len(), 32);
    assert_ne!(eu.id, home);
    assert_eq!(sim.served_projects().len(), 2);
    let added = sim.add_instances_in(&eu.id, 3);
    sim.add_instance_in(&eu.id, "eu-orders");
    let mut eu_ids = added.clone();
    eu_ids.push("eu-orders".to_owned());
    assert_eq!(sim.instance_ids_in(&eu.id), eu_ids);
    assert_eq!(sim.instance_ids().len(), 2);
    assert_eq!(sim.instance_ids_in(&home), sim.instance_ids());
    assert_eq!(sim.instance_project("eu-orders"), eu.id);
    assert_eq!(sim.instance_project(&sim.instance_ids()[0]), home);
    assert!(
        added
            .iter()
            .all(|id| id.len() == 36 && id.ends_with("in06"))
    );

    let fixed = token(&sim.token());
    let mut conn = KeepAlive::connect(&sim).await;
    // Under its own project's path: links that download its CA.
    let ok = conn
        .request("GET", &link_url(&sim, &eu.id, "eu-orders"), &fixed, b"")
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let link = ok.json()["certs"][0]["download_link"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = conn.get(&link, None).await;
    assert_eq!(status, 200);
    assert_eq!(body, sim.ca("eu-orders", "international").pem.as_bytes());
    // Under another project's path: unknown, both ways.
    for (project, id) in [
        (home.as_str(), "eu-orders".to_owned()),
        (eu.id.as_str(), sim.instance_ids()[0].clone()),
    ] {
        let resp = conn
            .request("GET", &link_url(&sim, project, &id), &fixed, b"")
            .await;
        assert_eq!(resp.status, 404, "{}", resp.text());
        assert_eq!(resp.json()["error_code"], "DBS.200002");
    }

    // ListInstances pages over the path's project only, with its region.
    let eu_list = conn
        .request("GET", &list_url(&sim, &eu.id, ""), &fixed, b"")
        .await;
    let mut newest_first = eu_ids.clone();
    newest_first.reverse();
    assert_eq!(page(&eu_list), (4, newest_first.clone()));
    assert_eq!(eu_list.json()["instances"][0]["region"], "eu-west-101");
    let second = conn
        .request(
            "GET",
            &list_url(&sim, &eu.id, "?limit=2&offset=2"),
            &fixed,
            b"",
        )
        .await;
    assert_eq!(page(&second), (4, newest_first[2..].to_vec()));
    let home_list = conn
        .request("GET", &list_url(&sim, &home, ""), &fixed, b"")
        .await;
    assert_eq!(page(&home_list).0, 2);
    assert_eq!(home_list.json()["instances"][0]["region"], sim.region());
    assert_ne!(
        home_list.json()["instances"][0]["vpc_id"],
        eu_list.json()["instances"][0]["vpc_id"]
    );

    // The AK/SK is the account's: every project, with X-Project-Id naming the path's.
    let url = link_url(&sim, &eu.id, "eu-orders");
    let signed = Signed::get(&url).header("X-Project-Id", &eu.id);
    assert_eq!(conn.signed(&signed, &sim.ak(), &sim.sk()).await.status, 200);
    let mismatch = Signed::get(&url).header("X-Project-Id", &home);
    assert_eq!(
        conn.signed(&mismatch, &sim.ak(), &sim.sk()).await.status,
        401
    );
    // A project the simulator does not serve is refused for any credentials.
    let nowhere = "f".repeat(32);
    let resp = conn
        .request("GET", &link_url(&sim, &nowhere, "eu-orders"), &fixed, b"")
        .await;
    assert_eq!(resp.status, 401, "{}", resp.text());
    let resp = conn
        .signed(
            &Signed::get(&list_url(&sim, &nowhere, "")),
            &sim.ak(),
            &sim.sk(),
        )
        .await;
    assert_eq!(resp.status, 401, "{}", resp.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_users_are_valid_for_every_project() {
    let sim = sim(1).await;
    let eu = sim.add_project("eu-west-101");
    sim.add_instance_in(&eu.id, "eu-1");
    sim.add_token("MIIsecond-user");
    sim.add_ak_sk_user("AKSECOND000000000001", "SKsecond");
    let mut conn = KeepAlive::connect(&sim).await;
    for url in [
        link_url(&sim, &sim.project_id(), &sim.instance_ids()[0]),
        link_url(&sim, &eu.id, "eu-1"),
    ] {
        let by_token = conn
            .request("GET", &url, &token("MIIsecond-user"), b"")
            .await;
        assert_eq!(by_token.status, 200, "{}", by_token.text());
        let by_keys = conn
            .signed(&Signed::get(&url), "AKSECOND000000000001", "SKsecond")
            .await;
        assert_eq!(by_keys.status, 200, "{}", by_keys.text());
        let wrong = conn
            .signed(&Signed::get(&url), "AKSECOND000000000001", "SKwrong")
            .await;
        assert_eq!(wrong.status, 401);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_lists_added_projects_and_scopes_tokens_to_them() {
    let sim = sim(1).await;
    let eu = sim.add_project("eu-west-101");
    sim.add_instance_in(&eu.id, "eu-1");
    assert!(sim.projects().contains(&eu));
    let mut conn = KeepAlive::connect(&sim).await;
    let projects = |query: &str| format!("{}/v3/projects{query}", sim.endpoint());
    let ids = |resp: &KeepResp| -> Vec<String> {
        assert_eq!(resp.status, 200, "{}", resp.text());
        resp.json()["projects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = conn
        .signed(&Signed::get(&projects("")), &sim.ak(), &sim.sk())
        .await;
    assert_eq!(ids(&all), [sim.project_id(), eu.id.clone()]);
    let by_name = conn
        .signed(
            &Signed::get(&projects("?name=eu-west-101")),
            &sim.ak(),
            &sim.sk(),
        )
        .await;
    assert_eq!(ids(&by_name), [eu.id.as_str()]);

    // A password token scoped to the new project opens it, and only it.
    sim.add_iam_user("alice", "acme", "pw");
    let body = serde_json::json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "domain": {"name": "acme"}, "name": "alice", "password": "pw"}}},
        "scope": {"project": {"name": "eu-west-101"}}}});
    let json = vec![("Content-Type".to_owned(), "application/json".to_owned())];
    let issued = conn
        .request(
            "POST",
            &format!("{}/v3/auth/tokens", sim.endpoint()),
            &json,
            body.to_string().as_bytes(),
        )
        .await;
    assert_eq!(issued.status, 201, "{}", issued.text());
    assert_eq!(issued.json()["token"]["project"]["id"], eu.id);
    let alice = token(issued.header("x-subject-token").unwrap());
    let ok = conn
        .request("GET", &link_url(&sim, &eu.id, "eu-1"), &alice, b"")
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let other = conn
        .request(
            "GET",
            &link_url(&sim, &sim.project_id(), &sim.instance_ids()[0]),
            &alice,
            b"",
        )
        .await;
    assert_eq!(other.status, 401);
    assert!(
        other.json()["error_msg"]
            .as_str()
            .unwrap()
            .contains("token does not match project")
    );
}

/// The nodes of the only (or first-listed) instance of a ListInstances answer.
fn listed_nodes(resp: &KeepResp) -> Vec<serde_json::Value> {
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.json()["instances"][0]["groups"][0]["nodes"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_are_listed_with_their_addresses() {
    let sim = sim(1).await;
    let id = sim.instance_ids()[0].clone();
    assert_eq!(sim.nodes(&id), [Node::new("127.0.0.1", 8635)]);
    assert_eq!(Node::default(), Node::new("127.0.0.1", 8635));
    let url = list_url(&sim, &sim.project_id(), "");
    let fixed = token(&sim.token());
    let mut conn = KeepAlive::connect(&sim).await;

    let nodes = listed_nodes(&conn.request("GET", &url, &fixed, b"").await);
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0]["private_ip"], "127.0.0.1");
    assert_eq!(nodes[0]["port"], "8635");
    assert_eq!(nodes[0]["status"], "normal");
    assert_eq!(nodes[0]["role"], "Primary");
    assert!(nodes[0]["id"].as_str().unwrap().ends_with("no06"));

    sim.set_nodes(
        &id,
        &[Node::new("127.0.0.2", 44301), Node::new("::1", 44302)],
    );
    let doc = conn.request("GET", &url, &fixed, b"").await;
    let nodes = listed_nodes(&doc);
    let addrs: Vec<(String, String, String)> = nodes
        .iter()
        .map(|n| {
            (
                n["private_ip"].as_str().unwrap().to_owned(),
                n["port"].as_str().unwrap().to_owned(),
                n["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        addrs,
        [
            ("127.0.0.2".into(), "44301".into(), "Primary".into()),
            ("::1".into(), "44302".into(), "Secondary".into()),
        ]
    );
    assert_ne!(nodes[0]["id"], nodes[1]["id"]);
    // The instance's own fields are unchanged.
    let first = &doc.json()["instances"][0];
    assert_eq!(first["port"], "8635");
    assert_eq!(first["groups"][0]["status"], "normal");

    // Through the control API.
    let control = format!("{}/_sim/instances/{id}/nodes", sim.endpoint());
    let set = curl(
        &sim,
        &[
            "-X",
            "PUT",
            "--data-binary",
            r#"[{"private_ip": "10.1.2.3", "port": 6379}]"#,
        ],
        &control,
    )
    .await;
    assert_eq!(set.status, 204, "{}", set.text());
    assert_eq!(sim.nodes(&id), [Node::new("10.1.2.3", 6379)]);
    let nodes = listed_nodes(&conn.request("GET", &url, &fixed, b"").await);
    assert_eq!(
        (&nodes[0]["private_ip"], &nodes[0]["port"]),
        (&"10.1.2.3".into(), &"6379".into())
    );
    let state = curl(&sim, &[], &format!("{}/_sim/state", sim.endpoint())).await;
    assert_eq!(
        state.json()["instances"][0]["nodes"],
        serde_json::json!([{"private_ip": "10.1.2.3", "port": 6379}])
    );
    let none = curl(&sim, &["-X", "PUT", "--data-binary", "[]"], &control).await;
    assert_eq!(none.status, 204);
    assert!(listed_nodes(&conn.request("GET", &url, &fixed, b"").await).is_empty());
    for (body, path, status) in [
        (
            r#"[{"private_ip": "10.1.2.3", "port": 70000}]"#,
            control.clone(),
            400,
        ),
        (r#"{"private_ip": "10.1.2.3"}"#, control.clone(), 400),
        (
            "[]",
            format!("{}/_sim/instances/nope/nodes", sim.endpoint()),
            404,
        ),
    ] {
        let resp = curl(&sim, &["-X", "PUT", "--data-binary", body], &path).await;
        assert_eq!(resp.status, status, "{body}: {}", resp.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_api_adds_projects_instances_and_users() {
    let sim = sim(1).await;
    let control = |path: &str| format!("{}/_sim/{path}", sim.endpoint());
    let post = |body: &'static str| vec!["-X", "POST", "--data-binary", body];

    let created = curl(
        &sim,
        &post(r#"{"region": "ap-southeast-1"}"#),
        &control("projects"),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let project: Project = serde_json::from_slice(&created.body).unwrap();
    assert_eq!(project.name, "ap-southeast-1");
    assert_eq!(sim.served_projects()[1], project);
    assert!(sim.projects().contains(&project));
    for bad in [
        r#"{"region": ""}"#,
        r#"{}"#,
        r#"{"region": "x", "id": "y"}"#,
    ] {
        let resp = curl(&sim, &post(bad), &control("projects")).await;
        assert_eq!(resp.status, 400, "{bad}: {}", resp.text());
    }

    // One instance by id: 201, then 200 unchanged; another project's id is a conflict.
    let one = control(&format!("projects/{}/instances/ap-1", project.id));
    let added = curl(&sim, &["-X", "POST"], &one).await;
    assert_eq!(added.status, 201, "{}", added.text());
    assert_eq!(added.json()["project_id"], project.id);
    assert_eq!(added.json()["nodes"][0]["port"], 8635);
    assert_eq!(curl(&sim, &["-X", "POST"], &one).await.status, 200);
    let home_id = sim.instance_ids()[0].clone();
    let taken = control(&format!("projects/{}/instances/{home_id}", project.id));
    assert_eq!(curl(&sim, &["-X", "POST"], &taken).await.status, 409);
    let nowhere = control(&format!("projects/{}/instances/x-1", "0".repeat(32)));
    assert_eq!(curl(&sim, &["-X", "POST"], &nowhere).await.status, 404);
    // The old route still adds to the simulator's own project.
    let home = curl(&sim, &["-X", "POST"], &control("instances/home-2")).await;
    assert_eq!(home.json()["project_id"], sim.project_id());

    // Several, with random ids.
    let many = control(&format!("projects/{}/instances?count=3", project.id));
    let resp = curl(&sim, &["-X", "POST"], &many).await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    let ids: Vec<String> = serde_json::from_value(resp.json()["ids"].clone()).unwrap();
    assert_eq!(ids.len(), 3);
    let mut expected = vec!["ap-1".to_owned()];
    expected.extend(ids);
    assert_eq!(sim.instance_ids_in(&project.id), expected);
    for query in ["", "?count=0", "?count=x", "?count=10001"] {
        let url = control(&format!("projects/{}/instances{query}", project.id));
        assert_eq!(
            curl(&sim, &["-X", "POST"], &url).await.status,
            400,
            "{query}"
        );
    }

    let state = curl(&sim, &[], &control("state")).await.json();
    let served: Vec<Project> = serde_json::from_value(state["served_projects"].clone()).unwrap();
    assert_eq!(served, sim.served_projects());
    assert_eq!(state["instances"].as_array().unwrap().len(), 6);

    // Users with their own credentials.
    let user = curl(
        &sim,
        &post(r#"{"ak": "AKCONTROL00000000001", "sk": "SKcontrol"}"#),
        &control("ak-sk-users"),
    )
    .await;
    assert_eq!(user.status, 204, "{}", user.text());
    let tok = curl(
        &sim,
        &post(r#"{"token": "MIIcontrol"}"#),
        &control("tokens"),
    )
    .await;
    assert_eq!(tok.status, 204, "{}", tok.text());
    for (bad, path) in [
        (r#"{"ak": "", "sk": "x"}"#, "ak-sk-users"),
        (r#"{"ak": "A"}"#, "ak-sk-users"),
        (r#"{"token": ""}"#, "tokens"),
    ] {
        assert_eq!(
            curl(&sim, &post(bad), &control(path)).await.status,
            400,
            "{bad}"
        );
    }
    let url = link_url(&sim, &project.id, "ap-1");
    let mut conn = KeepAlive::connect(&sim).await;
    assert_eq!(conn.get(&url, Some("MIIcontrol")).await.0, 200);
    let signed = conn
        .signed(&Signed::get(&url), "AKCONTROL00000000001", "SKcontrol")
        .await;
    assert_eq!(signed.status, 200, "{}", signed.text());
}
