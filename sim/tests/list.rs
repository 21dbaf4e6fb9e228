//! ListInstances (`GET /v3/{project_id}/instances`) over real TLS: paging, filters, the shape of
//! each instance, descriptions changed through the Rust and control APIs, and its errors.
// A test crate: its helpers are private to it, and `pub` only says which of them the test
// modules share, so the library's `unreachable_pub` rule does not apply here.
#![allow(unreachable_pub)]

mod common;

use certsync_sim::{InstanceMeta, ListFault, SimOptions, Simulator};
use common::{Resp, Signed, curl, list_instances_url};

async fn sim(instances: usize) -> Simulator {
    Simulator::start(SimOptions {
        instances,
        ..SimOptions::default()
    })
    .await
    .expect("simulator starts")
}

async fn list(sim: &Simulator, pairs: &[(&str, &str)]) -> Resp {
    Signed::get(&list_instances_url(sim, pairs))
        .header("X-Project-Id", &sim.project_id())
        .send(sim, &sim.ak(), &sim.sk())
        .await
}

/// (total_count, ids on the page).
async fn page(sim: &Simulator, pairs: &[(&str, &str)]) -> (u64, Vec<String>) {
    let resp = list(sim, pairs).await;
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
async fn pages_newest_first_with_offset_and_limit() {
    let sim = sim(25).await;
    let mut newest_first = sim.instance_ids();
    newest_first.reverse();

    let (total, all) = page(&sim, &[]).await;
    assert_eq!((total, all.clone()), (25, newest_first.clone()));

    let mut paged = Vec::new();
    for offset in ["0", "10", "20", "30"] {
        let (total, ids) = page(&sim, &[("offset", offset), ("limit", "10")]).await;
        assert_eq!(total, 25);
        paged.push(ids.len());
        if offset == "10" {
            assert_eq!(ids, newest_first[10..20]);
        }
    }
    assert_eq!(paged, [10, 10, 5, 0]);

    let (_, one) = page(&sim, &[("limit", "1")]).await;
    assert_eq!(one, [newest_first[0].clone()]);
    let (_, last) = page(&sim, &[("offset", "24"), ("limit", "100")]).await;
    assert_eq!(last, [newest_first[24].clone()]);

    // A removed instance leaves the listing; a new one comes first.
    sim.remove_instance(&newest_first[3]);
    sim.add_instance("fresh-instance");
    let (total, ids) = page(&sim, &[("limit", "5")]).await;
    assert_eq!(total, 25);
    assert_eq!(ids[0], "fresh-instance");
    assert!(!ids.contains(&newest_first[3]));
    assert_eq!(sim.stats().list_requests, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_instance_has_the_apis_fields() {
    let sim = sim(2).await;
    let ids = sim.instance_ids();
    let resp = list(&sim, &[]).await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("content-type"),
        Some("application/json;charset=UTF-8")
    );
    resp.request_id();
    let doc = resp.json();
    let first = &doc["instances"][1];
    assert_eq!(first["id"], ids[0].as_str());
    assert_eq!(first["name"], "inst-1");
    assert_eq!(first["status"], "normal");
    assert_eq!(first["datastore"]["type"], "mongodb");
    assert_eq!(first["datastore"]["version"], "4.0");
    assert_eq!(first["ssl"], "1");
    assert_eq!(first["region"], sim.region());
    assert_eq!(first["mode"], "ReplicaSet");
    assert_eq!(first["port"], "8635");
    assert_eq!(first["pay_mode"], "0");
    assert_eq!(first["enterprise_project_id"], "0");
    assert!(first["created"].as_str().unwrap().len() == 19);
    // One node by default, on loopback at the instance's port.
    let nodes = first["groups"][0]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0]["private_ip"], "127.0.0.1");
    assert_eq!(nodes[0]["port"], "8635");
    assert_eq!(nodes[0]["role"], "Primary");
    assert_eq!(nodes[0]["status"], "normal");
    assert_eq!(doc["instances"][0]["name"], "inst-2");
    // The same network for every instance of the project.
    assert_eq!(doc["instances"][0]["vpc_id"], first["vpc_id"]);
    assert_eq!(sim.instance_meta(&ids[0]), InstanceMeta::numbered(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_by_name_datastore_id_and_mode() {
    let sim = sim(4).await;
    let ids = sim.instance_ids();
    sim.set_instance_meta(
        &ids[0],
        InstanceMeta {
            name: "orders-prod".into(),
            ..InstanceMeta::numbered(1)
        },
    );
    sim.set_instance_meta(
        &ids[1],
        InstanceMeta {
            name: "users-prod".into(),
            datastore_type: "redis".into(),
            datastore_version: "5.0".into(),
            status: "abnormal".into(),
            ssl: false,
        },
    );
    sim.set_instance_meta(
        &ids[2],
        InstanceMeta {
            name: "metrics".into(),
            datastore_type: "cassandra".into(),
            datastore_version: "3.11".into(),
            ..InstanceMeta::numbered(3)
        },
    );

    let names = |pairs: &'static [(&'static str, &'static str)]| {
        let sim = sim.clone();
        async move {
            let resp = list(&sim, pairs).await;
            assert_eq!(resp.status, 200, "{}", resp.text());
            let doc = resp.json();
            let names: Vec<String> = doc["instances"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["name"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(doc["total_count"].as_u64().unwrap() as usize, names.len());
            names
        }
    };
    assert_eq!(names(&[("name", "orders-prod")]).await, ["orders-prod"]);
    assert!(names(&[("name", "prod")]).await.is_empty());
    assert_eq!(
        names(&[("name", "*prod")]).await,
        ["users-prod", "orders-prod"]
    );
    assert_eq!(
        names(&[("name", "*-")]).await,
        ["inst-4", "users-prod", "orders-prod"]
    );
    assert_eq!(names(&[("datastore_type", "redis")]).await, ["users-prod"]);
    assert_eq!(
        names(&[("datastore_type", "mongodb")]).await,
        ["inst-4", "orders-prod"]
    );
    assert!(names(&[("datastore_type", "influxdb")]).await.is_empty());
    assert_eq!(
        names(&[("datastore_type", "mongodb"), ("name", "*prod")]).await,
        ["orders-prod"]
    );
    // `mode` counts only with `datastore_type`.
    assert_eq!(names(&[("mode", "Cluster")]).await.len(), 4);
    assert_eq!(
        names(&[("mode", "Cluster"), ("datastore_type", "cassandra")]).await,
        ["metrics"]
    );
    assert!(
        names(&[("mode", "ReplicaSet"), ("datastore_type", "cassandra")])
            .await
            .is_empty()
    );

    let by_id = list(&sim, &[("id", &ids[1])]).await.json();
    assert_eq!(by_id["total_count"], 1);
    let redis = &by_id["instances"][0];
    assert_eq!(redis["ssl"], "0");
    assert_eq!(redis["status"], "abnormal");
    assert_eq!(redis["datastore"]["version"], "5.0");
    assert_eq!(redis["port"], "6379");
    let fuzzy_id = format!("*{}", &ids[3][5..20]);
    assert_eq!(
        list(&sim, &[("id", &fuzzy_id)]).await.json()["total_count"],
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_paging_parameters_and_credentials_are_refused() {
    let sim = sim(1).await;
    for (key, value) in [
        ("limit", "0"),
        ("limit", "101"),
        ("limit", "ten"),
        ("offset", "-1"),
        ("offset", "x"),
    ] {
        let resp = list(&sim, &[(key, value)]).await;
        assert_eq!(resp.status, 400, "{key}={value}: {}", resp.text());
        let body = resp.json();
        assert_eq!(body["error_code"], "DBS.200001");
        assert!(body["error_msg"].as_str().unwrap().contains(key), "{body}");
    }
    let unsigned = curl(&sim, &[], &list_instances_url(&sim, &[])).await;
    assert_eq!(unsigned.status, 401);
    assert_eq!(unsigned.json()["error_code"], "APIGW.0301");
    let with_token = curl(
        &sim,
        &["-H", &format!("X-Auth-Token: {}", sim.token())],
        &list_instances_url(&sim, &[]),
    )
    .await;
    assert_eq!(with_token.status, 200);
    let other_project = format!("{}/v3/{}/instances", sim.endpoint(), "0".repeat(32));
    let resp = Signed::get(&other_project)
        .send(&sim, &sim.ak(), &sim.sk())
        .await;
    assert_eq!(resp.status, 401);
    // POST to the collection is not an API.
    let post = curl(
        &sim,
        &[
            "-X",
            "POST",
            "-H",
            &format!("X-Auth-Token: {}", sim.token()),
        ],
        &list_instances_url(&sim, &[]),
    )
    .await;
    assert_eq!(post.status, 404);
    assert_eq!(post.json()["error_code"], "APIGW.0101");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptions_change_through_the_control_api() {
    let sim = sim(1).await;
    let id = sim.instance_ids()[0].clone();
    let url = format!("{}/_sim/instances/{id}/meta", sim.endpoint());
    let meta = serde_json::json!({
        "name": "orders", "datastore_type": "cassandra", "datastore_version": "3.11",
        "status": "frozen", "ssl": false
    });
    let put = curl(
        &sim,
        &[
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &meta.to_string(),
        ],
        &url,
    )
    .await;
    assert_eq!(put.status, 204, "{}", put.text());
    let got = sim.instance_meta(&id);
    assert_eq!(
        (got.name.as_str(), got.status.as_str(), got.ssl),
        ("orders", "frozen", false)
    );
    let state = curl(&sim, &[], &format!("{}/_sim/state", sim.endpoint()))
        .await
        .json();
    assert_eq!(state["instances"][0]["name"], "orders");
    assert_eq!(state["projects"][0]["id"], sim.project_id());

    let bad = curl(&sim, &["-X", "PUT", "--data-binary", "{\"name\": 1}"], &url).await;
    assert_eq!(bad.status, 400);
    let missing = curl(
        &sim,
        &["-X", "PUT", "--data-binary", &meta.to_string()],
        &format!("{}/_sim/instances/nope/meta", sim.endpoint()),
    )
    .await;
    assert_eq!(missing.status, 404);

    let projects = curl(
        &sim,
        &["-X", "PUT", "--data-binary", "[]"],
        &format!("{}/_sim/projects", sim.endpoint()),
    )
    .await;
    assert_eq!(projects.status, 204);
    assert!(sim.projects().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_faults_ignore_offset_claim_a_huge_total_and_page_forever() {
    let sim = sim(5).await;
    let mut newest_first = sim.instance_ids();
    newest_first.reverse();

    sim.set_list_faults(&[ListFault::IgnoresOffset]);
    let (total, ids) = page(&sim, &[("offset", "3"), ("limit", "2")]).await;
    assert_eq!((total, ids), (5, newest_first[..2].to_vec()));

    sim.set_list_faults(&[ListFault::HugeTotal]);
    let (total, ids) = page(&sim, &[("offset", "3"), ("limit", "2")]).await;
    assert_eq!(
        (total, ids),
        (1_000_000_000_000, newest_first[3..5].to_vec())
    );
    let (_, past_the_end) = page(&sim, &[("offset", "5")]).await;
    assert!(past_the_end.is_empty());

    sim.set_list_faults(&[ListFault::EndlessPages]);
    let (total, ids) = page(&sim, &[("offset", "3"), ("limit", "10")]).await;
    assert_eq!(total, 5);
    assert_eq!(ids[..2], newest_first[3..5]);
    assert_eq!(
        ids[2..],
        (5..13).map(|n| format!("ghost-{n}")).collect::<Vec<_>>()
    );
    let far = list(&sim, &[("offset", "100000"), ("limit", "3")])
        .await
        .json();
    let ghosts: Vec<_> = far["instances"].as_array().unwrap().iter().collect();
    assert_eq!(ghosts.len(), 3);
    assert_eq!(ghosts[0]["id"], "ghost-100000");
    assert_eq!(ghosts[0]["name"], "ghost-100000");
    assert_eq!(ghosts[0]["ssl"], "0");

    // Combined, and each kind once.
    sim.set_list_faults(&[
        ListFault::IgnoresOffset,
        ListFault::HugeTotal,
        ListFault::IgnoresOffset,
    ]);
    assert_eq!(
        sim.list_faults(),
        [ListFault::IgnoresOffset, ListFault::HugeTotal]
    );
    let (total, ids) = page(&sim, &[("offset", "4"), ("limit", "3")]).await;
    assert_eq!(
        (total, ids),
        (1_000_000_000_000, newest_first[..3].to_vec())
    );

    sim.set_list_faults(&[]);
    let (total, ids) = page(&sim, &[("offset", "4")]).await;
    assert_eq!((total, ids), (5, newest_first[4..].to_vec()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_faults_are_set_and_cleared_through_the_control_api() {
    let sim = sim(2).await;
    let url = format!("{}/_sim/list-faults", sim.endpoint());
    let put = |body: &'static str| {
        let (sim, url) = (sim.clone(), url.clone());
        async move {
            curl(
                &sim,
                &[
                    "-X",
                    "PUT",
                    "-H",
                    "Content-Type: application/json",
                    "--data-binary",
                    body,
                ],
                &url,
            )
            .await
        }
    };
    let set =
        put(r#"[{"kind":"ignores_offset"},{"kind":"huge_total"},{"kind":"endless_pages"}]"#).await;
    assert_eq!(set.status, 204, "{}", set.text());
    assert_eq!(
        sim.list_faults(),
        [
            ListFault::IgnoresOffset,
            ListFault::HugeTotal,
            ListFault::EndlessPages
        ]
    );
    let state = curl(&sim, &[], &format!("{}/_sim/state", sim.endpoint()))
        .await
        .json();
    assert_eq!(
        state["list_faults"],
        serde_json::json!([{"kind":"ignores_offset"},{"kind":"huge_total"},{"kind":"endless_pages"}])
    );
    let (total, ids) = page(&sim, &[("offset", "50"), ("limit", "4")]).await;
    assert_eq!(total, 1_000_000_000_000);
    assert_eq!(ids.len(), 4);

    for bad in [r#"[{"kind":"sometimes"}]"#, r#"{"kind":"huge_total"}"#] {
        let resp = put(bad).await;
        assert_eq!(resp.status, 400, "{bad}: {}", resp.text());
        assert!(
            resp.json()["error"]
                .as_str()
                .unwrap()
                .contains("list faults body")
        );
    }
    assert_eq!(sim.list_faults().len(), 3, "a refused body changes nothing");

    let cleared = curl(&sim, &["-X", "DELETE"], &url).await;
    assert_eq!(cleared.status, 204);
    assert!(sim.list_faults().is_empty());
    assert_eq!(page(&sim, &[]).await.0, 2);
}
