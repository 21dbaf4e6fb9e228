#!/usr/bin/env bash
# CI check of the Debian package (SPEC 12): builds it (ci/build-deb.sh), installs it with
# dpkg, checks the installed binary, man pages, completions, user and unit, edits the config,
# removes the package (the edit must stay: it is a conffile), reinstalls it (the edit must still
# be there), then purges it (the config goes) so the machine is left as it was.
#
# Run as root on a Debian machine where nothing else installed a package named certsync: it
# purges that package at the end (and first, if an earlier run left it installed).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "ci/check-deb.sh: run as root (dpkg -i)" >&2
  exit 1
fi

fail() { echo "check-deb: $*" >&2; exit 1; }
# Every dpkg step is bounded; stdin closed so that a conffile prompt fails instead of waiting.
dpkg_() { timeout 300 dpkg "$@" </dev/null; }
installed() { dpkg-query -W -f='${Status}' certsync 2>/dev/null; }

conf=/etc/certsync/certsync.toml
bin=/usr/bin/certsync
unit=/usr/lib/systemd/system/certsync.service

user_existed=false
getent passwd certsync >/dev/null && user_existed=true
if [ -n "$(installed)" ] && [ "$(installed)" != "unknown ok not-installed" ]; then
  echo "check-deb: certsync is installed ($(installed)) from an earlier run: purging it"
  dpkg_ -P certsync
fi
cleanup() {
  if [ -n "$(installed)" ] && [ "$(installed)" != "unknown ok not-installed" ]; then
    dpkg_ -P certsync >/dev/null || true
  fi
  # systemd-sysusers made the user; Debian packages leave users behind on purge, but this
  # check leaves the machine as it found it.
  if ! $user_existed && getent passwd certsync >/dev/null; then
    userdel certsync || true
  fi
}
trap cleanup EXIT

deb=$(ci/build-deb.sh | tail -n 1)
[ -f "$deb" ] || fail "ci/build-deb.sh printed '$deb', not a package"
echo "check-deb: built $deb ($(stat -c %s "$deb") bytes)"

# Images made for containers often tell dpkg to skip documentation (path-exclude
# /usr/share/man/*); include our pages again for this install if so.
dpkg_opts=()
if grep -qsE '^[[:space:]]*path-exclude[[:space:]=]+/usr/share/man' /etc/dpkg/dpkg.cfg /etc/dpkg/dpkg.cfg.d/*; then
  echo "check-deb: dpkg is configured to drop /usr/share/man: installing with --path-include for our pages"
  dpkg_opts+=(--path-include='/usr/share/man/man1/certsync*')
fi

echo "check-deb: dpkg -i"
dpkg_ "${dpkg_opts[@]}" -i "$deb" >/dev/null
[ "$(installed)" = "install ok installed" ] || fail "status after dpkg -i: $(installed)"

# The package's binary, not the /usr/local/bin/certsync .ci/run installs for its unit check.
[ "$(dpkg-query -S "$bin" 2>/dev/null | cut -d: -f1)" = certsync ] || fail "$bin is not the package's"
want_version=$(dpkg-deb -f "$deb" Version | sed 's/-[^-]*$//')
got=$("$bin" --version)
[ "$got" = "certsync $want_version" ] || fail "$bin --version: '$got', want 'certsync $want_version'"
# Built without `demo`: no simulator in the package (SPEC 12).
if out=$("$bin" demo 2>&1); then fail "$bin demo ran: the package's binary has the demo feature"; fi
grep -q "unrecognized subcommand 'demo'" <<<"$out" || fail "$bin demo: $out"
echo "check-deb: $got, without demo"

# Man pages: where man finds them, and what they say.
page=$(man -w certsync) || fail "man -w certsync found nothing"
[ "$page" = /usr/share/man/man1/certsync.1.gz ] || fail "man -w certsync: $page"
# A page for each command (whatever src/cli.rs has), each found by its name.
pages=$(dpkg-query -L certsync | grep '^/usr/share/man/man1/certsync-.*\.1\.gz$' || true)
for c in run once check inspect; do
  grep -qx "/usr/share/man/man1/certsync-$c.1.gz" <<<"$pages" || fail "no man page for certsync $c"
done
for p in $pages; do
  name=$(basename "$p" .1.gz)
  [ "$(man -w "$name")" = "$p" ] || fail "man -w $name does not find $p"
done
text=$(MANPAGER=cat MANWIDTH=100 man certsync 2>/dev/null)
for heading in SYNOPSIS OPTIONS SUBCOMMANDS "EXIT STATUS" FILES; do
  grep -q "^$heading" <<<"$text" || fail "man certsync has no $heading section"
done
if grep -q 'certsync-demo' <<<"$text"; then fail "man certsync lists demo"; fi
echo "check-deb: man -w certsync: $page"

# Completions, where each shell looks for them.
bash -c 'source /usr/share/bash-completion/completions/certsync && complete -p certsync' >/dev/null \
  || fail "the bash completion does not register for certsync"
for f in /usr/share/zsh/vendor-completions/_certsync /usr/share/fish/vendor_completions.d/certsync.fish; do
  grep -q inspect "$f" || fail "$f missing or without the inspect command"
done

# The user (sysusers) and the config's permissions.
IFS=: read -r _ _ _ _ _ home _ < <(getent passwd certsync) || fail "no certsync user after install"
[ "$home" = /var/lib/certsync ] || fail "certsync's home: $home"
[ "$(stat -c '%U:%G %a' /etc/certsync)" = "root:certsync 750" ] \
  || fail "/etc/certsync: $(stat -c '%U:%G %a' /etc/certsync)"
[ "$(stat -c '%U:%G %a' "$conf")" = "root:certsync 640" ] || fail "$conf: $(stat -c '%U:%G %a' "$conf")"

# The installed unit runs the package's binary, and systemd finds nothing to say about it.
grep -q "^ExecStart=$bin " "$unit" || fail "$unit does not start $bin"
out=$(systemd-analyze verify "$unit" 2>&1) || fail "systemd-analyze verify $unit: $out"
[ -z "$out" ] || fail "systemd-analyze verify $unit warned: $out"
security=$(systemd-analyze security --offline=true "$unit" 2>&1) || fail "$security"
exposure=$(sed -n 's/.*Overall exposure level for certsync.service: \([0-9.]*\).*/\1/p' <<<"$security")
awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 2.0) }' || fail "exposure '$exposure' above 2.0"
# Not enabled on install: the example config cannot sync before it is edited.
if [ -e /etc/systemd/system/multi-user.target.wants/certsync.service ]; then
  fail "the unit was enabled on install"
fi
echo "check-deb: $unit verified (exposure $exposure), not enabled"

# An edited conffile survives dpkg -r and a reinstall.
marker="# edited by ci/check-deb.sh $$-$RANDOM"
echo "$marker" >>"$conf"
echo "check-deb: dpkg -r"
dpkg_ -r certsync >/dev/null
[ "$(installed)" = "deinstall ok config-files" ] || fail "status after dpkg -r: $(installed)"
[ ! -e "$bin" ] || fail "$bin still there after dpkg -r"
grep -qxF "$marker" "$conf" || fail "dpkg -r lost the edit of $conf"
echo "check-deb: dpkg -i again"
dpkg_ "${dpkg_opts[@]}" -i "$deb" >/dev/null
[ "$(installed)" = "install ok installed" ] || fail "status after reinstalling: $(installed)"
grep -qxF "$marker" "$conf" || fail "reinstalling lost the edit of $conf"
"$bin" --version >/dev/null
echo "check-deb: the edit of $conf was kept through dpkg -r and dpkg -i"

echo "check-deb: dpkg -P"
dpkg_ -P certsync >/dev/null
[ ! -e "$conf" ] || fail "dpkg -P left $conf"
[ -z "$(installed)" ] || [ "$(installed)" = "unknown ok not-installed" ] || fail "status after purge: $(installed)"
echo "check-deb: ok"
