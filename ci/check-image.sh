#!/usr/bin/env bash
# CI check of the container image (SPEC 12): builds it offline (ci/build-image.sh,
# Containerfile.local), starts the simulator (certsync-sim) on the host, and runs the image
# against it as operators are told to: read-only root, user 65532, no capabilities, host
# network, the config and the simulator's CA mounted read-only, a named volume for the trust
# folder. Passes when /readyz answers 200, the volume holds whole certificate files (the CAs the
# simulator serves), the bundle and the manifest, and SIGTERM stops the container with exit 0.
# Every wait is bounded. Runs as root; installs Debian's podman and runc when missing (crun,
# Debian's default, fails on these machines; runc with explicit ulimits works).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "ci/check-image.sh: run as root (podman)" >&2
  exit 1
fi
if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1; then
  echo "== installing: podman runc"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc >/dev/null
fi

fail() { echo "check-image: $*" >&2; exit 1; }
instances=3
names=(orders billing users)
id=$$-$RANDOM
container=certsync-ci-$id
volume=certsync-ci-trust-$id
tmp=$(mktemp -d)
sim_pid=
cleanup() {
  timeout 60 podman rm -f -t 0 "$container" >/dev/null 2>&1 || true
  timeout 60 podman volume rm -f "$volume" >/dev/null 2>&1 || true
  if [ -n "$sim_pid" ]; then
    kill "$sim_pid" 2>/dev/null || true
    wait "$sim_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
logs() { timeout 30 podman logs --tail 40 "$container" 2>&1 | sed 's/^/  container: /' >&2 || true; }

image=$(ci/build-image.sh localhost/certsync:ci | tail -n 1)
echo "check-image: built $image ($(podman image inspect --format '{{.Size}}' "$image") bytes)"

# The simulator, on loopback, announcing itself in one JSON line.
cargo build --locked --quiet -p certsync-sim --bin certsync-sim
target_dir=$(cargo metadata --format-version 1 --no-deps --locked \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
mkdir -p "$tmp/sim"
"$target_dir/debug/certsync-sim" --instances "$instances" --dir "$tmp/sim" >"$tmp/sim.json" 2>"$tmp/sim.log" &
sim_pid=$!
deadline=$((SECONDS + 60))
until [ -s "$tmp/sim.json" ] && [ "$(tail -c 1 "$tmp/sim.json" | od -An -c | tr -d ' ')" = '\n' ]; do
  kill -0 "$sim_pid" 2>/dev/null || { cat "$tmp/sim.log" >&2; fail "certsync-sim exited"; }
  [ "$SECONDS" -lt "$deadline" ] || fail "certsync-sim did not announce itself within 60 s"
  sleep 0.2
done
field() { python3 -c 'import json, sys; print(json.loads(open(sys.argv[1]).readline())[sys.argv[2]])' "$tmp/sim.json" "$1"; }
endpoint=$(field endpoint)
sim_port=${endpoint##*:}
ca=$(field ca_file)
mapfile -t ids < <(python3 -c 'import json, sys; print("\n".join(json.loads(open(sys.argv[1]).readline())["instances"]))' "$tmp/sim.json")
[ "${#ids[@]}" = "$instances" ] || fail "certsync-sim announced ${#ids[@]} instances, not $instances"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# The config, as the container sees it: /etc/certsync (read-only) holds it and the token;
# the API endpoint by name (localhost), so the image's name resolution is exercised too.
mkdir -m 0755 "$tmp/etc"
{
  cat <<EOF
[cloud]
region = "cn-north-4"
endpoint = "https://localhost:$sim_port"
project_id = "$(field project_id)"
ca_file = "/sim/ca.pem"

[auth]
method = "token"
token_file = "token"

[sync]
interval = "1h"
allowed_download_hosts = ["127.0.0.1"]

[trust]
dir = "/var/lib/certsync/trust"
bundle = "ca-bundle.crt"

[server]
listen = "127.0.0.1:$port"

[verify]
enabled = false                  # the simulator's node addresses serve nothing

[log]
format = "json"
EOF
  for i in "${!ids[@]}"; do
    printf '\n[[instance]]\nid = "%s"\nname = "%s"\n' "${ids[$i]}" "${names[$i]}"
  done
} >"$tmp/etc/certsync.toml"
chmod 0644 "$tmp/etc/certsync.toml"
field token >"$tmp/etc/token"
chown 65532:65532 "$tmp/etc/token"
chmod 0600 "$tmp/etc/token"

timeout 60 podman volume create "$volume" >/dev/null
timeout 120 podman --runtime runc run -d --name "$container" \
  --read-only --user 65532:65532 --cap-drop=all --network host \
  --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
  -v "$tmp/etc:/etc/certsync:ro" -v "$ca:/sim/ca.pem:ro" \
  -v "$volume:/var/lib/certsync/trust" \
  "$image" >/dev/null

# As run: read-only root, user 65532, no capabilities (the process as the host sees it).
pid=$(timeout 30 podman inspect --format '{{.State.Pid}}' "$container")
[ "$(timeout 30 podman inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$container")" = true ] \
  || fail "the root file system is not read-only"
uids=$(awk '/^Uid:/ { print $2, $3, $4, $5 }' "/proc/$pid/status")
[ "$uids" = "65532 65532 65532 65532" ] || fail "the container's process runs as uids $uids"
for cap in CapPrm CapEff CapBnd CapAmb; do
  v=$(awk -v c="$cap:" '$1 == c { print $2 }' "/proc/$pid/status")
  [ "$v" = 0000000000000000 ] || fail "the container's process has $cap $v"
done

# Ready once the first pass has written every instance (bounded poll, no fixed sleep).
started=$SECONDS
deadline=$((SECONDS + 90))
until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/readyz")" = 200 ]; do
  state=$(timeout 30 podman inspect --format '{{.State.Status}}' "$container")
  [ "$state" = running ] || { logs; fail "the container is $state before /readyz answered 200"; }
  [ "$SECONDS" -lt "$deadline" ] || { logs; fail "/readyz did not answer 200 within 90 s"; }
  sleep 0.2
done
echo "check-image: /readyz answered 200 (after $((SECONDS - started)) s)"

# The trust volume: whole files, owned by the container's user, holding the CAs the simulator
# serves; the bundle with all of them; the manifest; no temporary file left behind.
mp=$(timeout 30 podman volume inspect --format '{{.Mountpoint}}' "$volume")
state_json=$(curl -sS --max-time 10 --cacert "$ca" "$endpoint/_sim/state")
for i in "${!ids[@]}"; do
  f=$mp/${names[$i]}-international.crt
  [ -f "$f" ] || fail "no ${names[$i]}-international.crt in the volume: $(ls -A "$mp")"
  [ "$(stat -c %u:%g "$f")" = 65532:65532 ] || fail "$f is owned by $(stat -c %u:%g "$f")"
  got=$(openssl x509 -noout -fingerprint -sha256 -in "$f" | sed 's/.*=//; s/://g' | tr 'A-F' 'a-f') \
    || fail "openssl cannot parse $f"
  want=$(python3 -c '
import json, sys
state = json.loads(sys.argv[1])
inst = next(i for i in state["instances"] if i["id"] == sys.argv[2])
print(next(c["sha256_hex"] for c in inst["categories"] if c["category"] == "international"))
' "$state_json" "${ids[$i]}")
  [ "$got" = "$want" ] || fail "$f holds $got, the simulator serves $want"
done
n=$(grep -c 'BEGIN CERTIFICATE' "$mp/ca-bundle.crt") || fail "no ca-bundle.crt"
[ "$n" = "$instances" ] || fail "ca-bundle.crt holds $n certificates, not $instances"
python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$mp/.certsync-manifest.json" \
  || fail "the manifest is missing or not JSON"
# Every other file (the OpenSSL -CApath hash names included) is a whole certificate too.
files=0
for f in "$mp"/*; do
  openssl x509 -noout -in "$f" 2>/dev/null || fail "openssl cannot parse $f"
  files=$((files + 1))
done
leftover=$(find "$mp" -maxdepth 1 -name '.certsync-tmp-*')
[ -z "$leftover" ] || fail "temporary files left: $leftover"
echo "check-image: the volume holds $files whole certificate files ($instances CAs, as the simulator serves them), the bundle and the manifest"

# Its log (JSON lines on stderr) tells of a whole first pass.
pass=$(timeout 30 podman logs "$container" 2>&1 | grep '"message":"pass finished"' | head -n 1)
grep -q '"failed":0' <<<"$pass" || { logs; fail "no pass finished without failures in the log"; }
# SIGTERM (podman stop's signal for this image) ends it cleanly: exit 0.
timeout 60 podman stop -t 30 "$container" >/dev/null
code=$(timeout 30 podman inspect --format '{{.State.ExitCode}}' "$container")
[ "$code" = 0 ] || { logs; fail "the container exited $code after SIGTERM"; }
echo "check-image: SIGTERM stopped it with exit 0"
echo "check-image: ok"
