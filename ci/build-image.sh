#!/usr/bin/env bash
# Builds the container image offline with Podman from Containerfile.local (README "Install"):
# stages the release binary (without default features: no `demo`), the shared libraries and
# loader it links (from ldd), Debian's CA bundle and an nsswitch.conf into a build context
# under the cargo target dir, and builds `FROM scratch`, so nothing is pulled. Prints the
# image's name (default localhost/certsync:local, or $1) as the last line of stdout.
# Needs podman (Debian's podman and runc: ci/check-image.sh installs them when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-localhost/certsync:local}

target_dir=$(cargo metadata --format-version 1 --no-deps --locked \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
cargo build --release --locked --no-default-features --features etcd -p certsync --bin certsync
bin=$target_dir/release/certsync
if "$bin" demo --help >/dev/null 2>&1; then
  echo "ci/build-image.sh: $bin has the demo feature" >&2
  exit 1
fi

ctx=$target_dir/image-context
rm -rf "$ctx"
mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/etc/ssl/certs" "$ctx/trust"
strip -o "$ctx/rootfs/usr/local/bin/certsync" "$bin"
# Every library the dynamic loader resolves for the binary, and the loader itself, at the
# paths ldd names (copied, not linked: the image has no /usr/lib to point into).
libs=$(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
[ -n "$libs" ] || { echo "ci/build-image.sh: ldd found no libraries for $bin" >&2; exit 1; }
for lib in $libs; do
  mkdir -p "$ctx/rootfs$(dirname "$lib")"
  cp -L "$lib" "$ctx/rootfs$lib"
done
# System roots for the cloud API, IAM and downloads (certsync trusts them plus cloud.ca_file).
cp -L /etc/ssl/certs/ca-certificates.crt "$ctx/rootfs/etc/ssl/certs/ca-certificates.crt"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$ctx/rootfs/etc/nsswitch.conf"

previous=$(podman image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
timeout 300 podman build --pull=never --quiet -f Containerfile.local -t "$tag" "$ctx" >/dev/null
# The image this tag named before (now untagged) goes, so rebuilds do not pile up.
if [ -n "$previous" ] && [ "$previous" != "$(podman image inspect --format '{{.Id}}' "$tag")" ]; then
  podman rmi "$previous" >/dev/null 2>&1 || true
fi
echo "$tag"
