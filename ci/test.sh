#!/usr/bin/env bash
# The test suite, as README.md gives it: installs what the tests need (ci/install-test-deps.sh)
# and runs every test of the workspace, with certsync's `etcd` feature (the fleet roles, tested
# against a real etcd). Run it as root on a Debian-like machine: some tests change file owners,
# run a command as another user with setpriv, or make a file immutable with chattr, and
# missing packages are installed with apt-get. Nothing outside this checkout is read (no
# ../shared); every server the tests use runs on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "ci/test.sh: run as root (the tests chown files, use setpriv and chattr)" >&2
  exit 1
fi
ci/install-test-deps.sh
echo "== cargo test --locked --workspace --features certsync/etcd"
cargo test --locked --workspace --features certsync/etcd "$@"
