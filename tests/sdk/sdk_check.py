"""Huawei's own Python SDK (huaweicloudsdkgaussdbfornosql) against certsync-sim.

Run by tests/sdk/run.sh, which starts the simulator and passes its JSON start-up line as the
only argument. The SDK is used as a customer would use it: BasicCredentials, an endpoint override
and the simulator's CA file (TLS verification stays on). Each check prints one line; the last
line is `sdk: N passed, M failed`, and the exit status is non-zero when any check failed.

Secrets (SK, security tokens) are never printed.
"""

import json
import re
import sys
import traceback
import urllib.request
import ssl

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.auth.internal import MetadataAccessor
from huaweicloudsdkcore.exceptions import exceptions
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkcore.region.region import Region
from huaweicloudsdkgaussdbfornosql.v3 import (
    GaussDBforNoSQLClient,
    ListInstancesRequest,
    ListSslCertDownloadAddressesRequest,
)

SIM = json.loads(sys.argv[1])
ENDPOINT = SIM["endpoint"]
CA_FILE = SIM["ca_file"]
PROJECT_ID = SIM["project_id"]
INSTANCES = SIM["instances"]
REGION = SIM["region"]

RESULTS = {"passed": 0, "failed": 0}


def check(name):
    def run(fn):
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the run
            RESULTS["failed"] += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}")
            traceback.print_exc(limit=3, file=sys.stdout)
        else:
            RESULTS["passed"] += 1
            print(f"ok   {name}")
        return fn

    return run


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def http_config():
    config = HttpConfig.get_default_config()
    config.ignore_ssl_verification = False
    config.ssl_ca_cert = CA_FILE
    config.timeout = (10, 30)
    return config


def client(credentials, region=None):
    builder = (
        GaussDBforNoSQLClient.new_builder()
        .with_http_config(http_config())
        .with_credentials(credentials)
    )
    if region is not None:
        builder = builder.with_region(region)
    else:
        builder = builder.with_endpoints([ENDPOINT])
    return builder.build()


def aksk_client(sk=None, ak=None):
    return client(BasicCredentials(ak or SIM["ak"], sk or SIM["sk"], PROJECT_ID))


def control(method, path, body=None):
    """Calls the simulator's control API (test set-up, not part of the cloud)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(ENDPOINT + "/_sim" + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    ctx = ssl.create_default_context(cafile=CA_FILE)
    with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
        return resp.status


def fetch(url):
    ctx = ssl.create_default_context(cafile=CA_FILE)
    with urllib.request.urlopen(url, context=ctx, timeout=30) as resp:
        return resp.status, resp.read()


def ca_pems_by_instance():
    ctx = ssl.create_default_context(cafile=CA_FILE)
    with urllib.request.urlopen(ENDPOINT + "/_sim/state", context=ctx, timeout=30) as resp:
        state = json.load(resp)
    return {
        i["id"]: {c["category"]: c["pem"] for c in i["categories"]} for i in state["instances"]
    }


@check("download-link call returns the simulator's links, which download its CAs")
def _():
    c = aksk_client()
    pems = ca_pems_by_instance()
    for instance_id in INSTANCES[:3]:
        resp = c.list_ssl_cert_download_addresses(
            ListSslCertDownloadAddressesRequest(instance_id=instance_id)
        )
        expect(resp.status_code == 200, f"status {resp.status_code}")
        expect(len(resp.certs) == 1, f"{len(resp.certs)} certs")
        cert = resp.certs[0]
        expect(cert.category == "international", f"category {cert.category}")
        prefix = f"{ENDPOINT}/obs/certsync-sim-bucket/{instance_id}/international/ca.crt?"
        expect(cert.download_link.startswith(prefix), "link does not point at the simulator")
        status, body = fetch(cert.download_link)
        expect(status == 200, f"download status {status}")
        expect(body.decode() == pems[instance_id]["international"], "downloaded CA differs")


@check("ListInstances pages through all 130 instances (offset/limit)")
def _():
    c = aksk_client()
    seen = []
    offset = 0
    pages = 0
    while True:
        resp = c.list_instances(ListInstancesRequest(offset=offset, limit=50))
        expect(resp.total_count == len(INSTANCES), f"total_count {resp.total_count}")
        if not resp.instances:
            break
        pages += 1
        for inst in resp.instances:
            expect(inst.status == "normal", f"status {inst.status}")
            expect(inst.datastore.type == "mongodb", f"datastore {inst.datastore.type}")
            expect(inst.ssl == "1", f"ssl {inst.ssl!r}")
            expect(re.fullmatch(r"inst-\d+", inst.name), f"name {inst.name}")
        seen += [inst.id for inst in resp.instances]
        offset += len(resp.instances)
    expect(pages == 3, f"{pages} pages of 50 for 130 instances")
    expect(len(seen) == len(set(seen)), "an instance was listed twice")
    expect(sorted(seen) == sorted(INSTANCES), "listed ids differ from the simulator's")
    # Most recently created first.
    expect(seen == list(reversed(INSTANCES)), "not in newest-first order")
    default = c.list_instances(ListInstancesRequest())
    expect(len(default.instances) == 100, f"default page {len(default.instances)}")


@check("ListInstances filters: exact and fuzzy name, datastore_type")
def _():
    c = aksk_client()
    one = c.list_instances(ListInstancesRequest(name="inst-1"))
    expect([i.name for i in one.instances] == ["inst-1"], f"exact: {one.total_count}")
    fuzzy = c.list_instances(ListInstancesRequest(name="*inst-1", limit=100))
    # inst-1, inst-10..19, inst-100..130
    expect(fuzzy.total_count == 1 + 10 + 31, f"fuzzy total {fuzzy.total_count}")
    mongo = c.list_instances(ListInstancesRequest(datastore_type="mongodb", limit=1))
    expect(mongo.total_count == len(INSTANCES), f"mongodb total {mongo.total_count}")
    redis = c.list_instances(ListInstancesRequest(datastore_type="redis"))
    expect(redis.total_count == 0 and redis.instances == [], "redis should be empty")


@check("a wrong SK raises ClientRequestException 401 APIGW.0301")
def _():
    # The simulator's SK is random: flip its first character to one it cannot be.
    first = "X" if SIM["sk"][0] == "W" else "W"
    c = aksk_client(sk=first + SIM["sk"][1:])
    try:
        c.list_ssl_cert_download_addresses(
            ListSslCertDownloadAddressesRequest(instance_id=INSTANCES[0])
        )
    except exceptions.ClientRequestException as e:
        expect(e.status_code == 401, f"status {e.status_code}")
        expect(e.error_code == "APIGW.0301", f"error_code {e.error_code}")
        expect("verify aksk signature fail" in e.error_msg, f"error_msg {e.error_msg}")
        expect(re.fullmatch(r"[0-9a-f]{32}", e.request_id or ""), f"request_id {e.request_id!r}")
    else:
        raise AssertionError("no exception")


@check("an unknown AK raises ClientRequestException 401 APIGW.0301")
def _():
    c = aksk_client(ak="UNKNOWNAK0000000000X")
    try:
        c.list_instances(ListInstancesRequest())
    except exceptions.ClientRequestException as e:
        expect(e.status_code == 401, f"status {e.status_code}")
        expect(e.error_code == "APIGW.0301", f"error_code {e.error_code}")
        expect("not exist" in e.error_msg, f"error_msg {e.error_msg}")
    else:
        raise AssertionError("no exception")


@check("an unknown instance raises ClientRequestException 404 DBS.200002")
def _():
    try:
        aksk_client().list_ssl_cert_download_addresses(
            ListSslCertDownloadAddressesRequest(instance_id="0" * 32 + "in06")
        )
    except exceptions.ClientRequestException as e:
        expect(e.status_code == 404, f"status {e.status_code}")
        expect(e.error_code == "DBS.200002", f"error_code {e.error_code}")
    else:
        raise AssertionError("no exception")


@check("without a project id the SDK finds it with a signed GET /v3/projects?name=REGION")
def _():
    creds = BasicCredentials(SIM["ak"], SIM["sk"]).with_iam_endpoint(SIM["iam_endpoint"])
    c = client(creds, region=Region(REGION, ENDPOINT))
    resp = c.list_instances(ListInstancesRequest(limit=1))
    expect(creds.project_id == PROJECT_ID, "looked-up project id differs")
    expect(resp.total_count == len(INSTANCES), f"total_count {resp.total_count}")


@check("two projects named like the region make the SDK's lookup fail")
def _():
    expect(
        control(
            "PUT",
            "/projects",
            [{"id": PROJECT_ID, "name": REGION}, {"id": "f" * 32, "name": REGION}],
        )
        == 204,
        "control API refused the projects",
    )
    try:
        # The SDK caches project ids per AK and region: empty it so IAM is asked again.
        BasicCredentials._CACHE.clear()
        creds = BasicCredentials(SIM["ak"], SIM["sk"]).with_iam_endpoint(SIM["iam_endpoint"])
        c = client(creds, region=Region(REGION, ENDPOINT))
        c.list_instances(ListInstancesRequest(limit=1))
    except exceptions.SdkException as e:
        expect("Multiple project ids" in str(e), f"message {e}")
    else:
        raise AssertionError("no exception")
    finally:
        control("PUT", "/projects", [{"id": PROJECT_ID, "name": REGION}])
        BasicCredentials._CACHE.clear()


@check("ECS metadata credentials (session token, temporary AK/SK, X-Security-Token) work")
def _():
    # The SDK's metadata address is fixed (http://169.254.169.254); point it at the simulator.
    MetadataAccessor._METADATA_ENDPOINT = SIM["metadata_endpoint"]
    creds = BasicCredentials(project_id=PROJECT_ID)
    c = client(creds)
    resp = c.list_instances(ListInstancesRequest(limit=10))
    expect(resp.total_count == len(INSTANCES), f"total_count {resp.total_count}")
    expect(creds.ak and creds.ak != SIM["ak"], "temporary AK was not used")
    expect(creds.security_token, "no security token")
    links = c.list_ssl_cert_download_addresses(
        ListSslCertDownloadAddressesRequest(instance_id=INSTANCES[0])
    )
    expect(len(links.certs) == 1, "no link with temporary credentials")


print(f"sdk: {RESULTS['passed']} passed, {RESULTS['failed']} failed")
sys.exit(1 if RESULTS["failed"] else 0)
