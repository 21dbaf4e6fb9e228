#!/usr/bin/env python3
"""Checks deploy/kubernetes/*.yaml the way a reviewer would: it parses, certsync runs as a
native sidecar sharing an emptyDir trust folder with the app, config comes from a ConfigMap,
credentials from a Secret, readiness is /readyz, and every container has the restricted
security context. It also writes the embedded certsync.toml out for `certsync check`.
Usage: check_kubernetes.py MANIFEST OUT_TOML"""
import sys

import yaml

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)


def main(path, out_toml):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    kinds = {d["kind"]: d for d in docs}
    check({"ConfigMap", "Deployment"} <= kinds.keys(), "a ConfigMap and a Deployment")
    config = kinds["ConfigMap"]["data"]["certsync.toml"]
    with open(out_toml, "w") as f:
        f.write(config)
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    sidecars = [c for c in pod.get("initContainers", []) if c["name"] == "certsync"]
    check(len(sidecars) == 1, "certsync is an init container")
    side = sidecars[0]
    check(side.get("restartPolicy") == "Always", "native sidecar: restartPolicy Always")
    check(side["readinessProbe"]["httpGet"]["path"] == "/readyz", "readiness on /readyz")
    check(side["livenessProbe"]["httpGet"]["path"] == "/healthz", "liveness on /healthz")
    check(any("secretRef" in e for e in side.get("envFrom", [])), "credentials from a Secret")
    volumes = {v["name"]: v for v in pod["volumes"]}
    check("emptyDir" in volumes.get("trust", {}), "trust folder is an emptyDir")
    check("configMap" in volumes.get("certsync-config", {}), "config from a ConfigMap")
    apps = pod["containers"]
    for c in [side] + apps:
        mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
        check("trust" in mounts, f"{c['name']} mounts the trust folder")
        sc = c.get("securityContext", {})
        check(sc.get("allowPrivilegeEscalation") is False, f"{c['name']}: no privilege escalation")
        check(sc.get("readOnlyRootFilesystem") is True, f"{c['name']}: read-only root")
        check(sc.get("runAsNonRoot") is True, f"{c['name']}: non-root")
        check(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{c['name']}: drops ALL capabilities")
    for app in apps:
        trust = [m for m in app["volumeMounts"] if m["name"] == "trust"]
        check(trust and trust[0].get("readOnly") is True, f"{app['name']} mounts trust read-only")
    psc = pod.get("securityContext", {})
    check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "seccomp RuntimeDefault")
    check(psc.get("runAsNonRoot") is True, "pod runs as non-root")
    trust_path = [m for m in side["volumeMounts"] if m["name"] == "trust"][0]["mountPath"]
    check(f'dir = "{trust_path}"' in config, "certsync writes into the shared mount")
    passed = 1 if not failures else 0
    for f in failures:
        print(f"kubernetes: FAILED: {f}")
    print(f"kubernetes: {passed} passed, {1 - passed} failed")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
