#!/usr/bin/env bash
# Huawei's Python SDK against certsync-sim (issue 3, part 8).
#
# Builds certsync-sim, installs huaweicloudsdkgaussdbfornosql (pinned) from PyPI into a virtual
# environment under target/, starts the simulator with a fresh AK/SK and 130 instances, and runs
# tests/sdk/sdk_check.py against it. Prints `sdk: N passed, M failed` last; exits non-zero on any
# failure. The simulator is stopped and the temporary directory removed on every exit.
#
# Usage: tests/sdk/run.sh            (from anywhere; needs cargo, python3 with venv, and PyPI)
set -euo pipefail

SDK_VERSION=3.1.219
INSTANCES=130

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

work=$(mktemp -d "${TMPDIR:-/tmp}/certsync-sdk.XXXXXX")
sim_pid=""
cleanup() {
    if [[ -n "$sim_pid" ]]; then
        kill -TERM "$sim_pid" 2>/dev/null || true
        wait "$sim_pid" 2>/dev/null || true
    fi
    exec 3<&- 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cargo build -p certsync-sim --locked
sim_bin="$root/target/debug/certsync-sim"

# The venv is kept between runs (keyed by the SDK version); a half-made one is rebuilt.
venv="$root/target/sdk-venv-$SDK_VERSION"
if [[ ! -f "$venv/.installed" ]]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "huaweicloudsdkgaussdbfornosql==$SDK_VERSION"
    touch "$venv/.installed"
fi

# Importing the SDK writes ~/.huaweicloud/application_id: keep it out of the real home.
export HOME="$work/home"
mkdir -p "$HOME"
# No credentials or endpoints from the caller's environment may leak into the SDK.
while IFS= read -r name; do unset "$name"; done < <(compgen -e | grep -E '^HUAWEICLOUD_' || true)

key() { "$venv/bin/python" -c "import secrets, string, sys; a = string.ascii_uppercase + string.digits + (string.ascii_lowercase if sys.argv[1] == 'sk' else ''); print(''.join(secrets.choice(a) for _ in range(int(sys.argv[2]))))" "$@"; }
ak=$(key ak 20)
sk=$(key sk 40)

# The start-up line is read through a FIFO: no polling, and a dead simulator ends the read.
mkfifo "$work/announce"
"$sim_bin" --ak "$ak" --sk "$sk" --instances "$INSTANCES" --dir "$work/sim" \
    >"$work/announce" 2>"$work/sim.log" &
sim_pid=$!
exec 3<"$work/announce"
if ! IFS= read -r -t 300 line <&3; then
    echo "certsync-sim did not announce itself; its log:" >&2
    cat "$work/sim.log" >&2
    echo "sdk: 0 passed, 1 failed"
    exit 1
fi

status=0
"$venv/bin/python" "$root/tests/sdk/sdk_check.py" "$line" | tee "$work/check.out" || status=$?
if [[ $status -ne 0 ]]; then
    echo "--- certsync-sim log ---"
    cat "$work/sim.log"
    # A check script that died early still ends the run with the summary line.
    if ! tail -n 1 "$work/check.out" | grep -q '^sdk: '; then
        echo "sdk: 0 passed, 1 failed"
    fi
fi
exit "$status"
