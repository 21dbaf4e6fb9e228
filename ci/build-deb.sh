#!/usr/bin/env bash
# Builds the Debian package with cargo-deb ([package.metadata.deb] in Cargo.toml) and prints
# its path as the last line of stdout:
#   1. certsync-gen-docs writes the man pages and the bash/zsh/fish completions from the clap
#      definition (src/cli.rs) into target/deb-assets/gen/;
#   2. target/deb-assets/debian/ gets the package's unit (systemd/certsync.service with
#      ExecStart=/usr/bin/certsync: a package never installs into /usr/local), the sysusers
#      file and the postinst;
#   3. `cargo deb` builds the release binary without default features (no `demo`) and the .deb
#      ($CARGO_TARGET_DIR/debian/, default target/debian/).
# Installs cargo-deb from crates.io (pinned) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo_deb_version=3.8.0
if ! cargo deb --version 2>/dev/null | grep -qx "cargo-deb $cargo_deb_version"; then
  echo "== installing cargo-deb $cargo_deb_version" >&2
  cargo install --locked --quiet cargo-deb --version "$cargo_deb_version"
fi

assets=target/deb-assets
rm -rf "$assets"
mkdir -p "$assets/debian"

# Built alone, so the library has the package's features (no `demo`): the pages list exactly
# the commands /usr/bin/certsync has.
cargo run --locked --quiet -p certsync-gen-docs -- "$assets/gen" >/dev/null

sed 's|^ExecStart=/usr/local/bin/certsync |ExecStart=/usr/bin/certsync |' \
  systemd/certsync.service >"$assets/debian/certsync.service"
if ! grep -q '^ExecStart=/usr/bin/certsync ' "$assets/debian/certsync.service"; then
  echo "ci/build-deb.sh: systemd/certsync.service has no ExecStart=/usr/local/bin/certsync to rewrite" >&2
  exit 1
fi
cp systemd/certsync.sysusers "$assets/debian/certsync.sysusers"

# cargo-deb puts the systemd and sysusers snippets (create the user, daemon-reload, try-restart
# on upgrade) where #DEBHELPER# is: the user exists before the lines after it.
cat >"$assets/debian/postinst" <<'EOF'
#!/bin/sh
set -e

#DEBHELPER#

# First install only (an upgrade keeps what the administrator set): the config folder and the
# example config readable by the certsync group, not by everyone; secrets the config names
# (secret_key_file, token_file, ...) belong beside it, root:certsync 0640.
if [ "$1" = configure ] && [ -z "$2" ]; then
  chgrp certsync /etc/certsync /etc/certsync/certsync.toml
  chmod 0750 /etc/certsync
  chmod 0640 /etc/certsync/certsync.toml
fi

exit 0
EOF
chmod 0755 "$assets/debian/postinst"

# cargo-deb prints the package's path on stdout.
cargo deb --locked -p certsync
