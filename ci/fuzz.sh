#!/usr/bin/env bash
# Fuzzing (issue 8): builds the cargo-fuzz targets of fuzz/ once with the nightly toolchain, then
# runs each for a bounded time, starting from a scratch copy of its seed corpus (fuzz/seeds/<target>).
# Prints per target the executions done and whether it found a crash, and exits non-zero when any
# target crashed, hung or ran out of memory, printing the path of the input that did it.
#
# Environment:
#   FUZZ_SECONDS   seconds per target (default 30)
#   FUZZ_TARGETS   space-separated targets to run (default: every target in fuzz/Cargo.toml)
#   FUZZ_RSS_MB    memory limit per target process in MiB (default 1024; one allocation above it
#                  counts as a crash too)
#
# Scratch corpora, artifacts, logs and the build live under target/ (target/fuzz*), never in fuzz/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

# 0.13.2 builds with rustc 1.95 (stable, for the install) and drives nightly 1.97.
cargo_fuzz_version=0.13.2
seconds=${FUZZ_SECONDS:-30}
rss_mb=${FUZZ_RSS_MB:-1024}
toolchain=nightly

case $seconds in '' | *[!0-9]*) echo "FUZZ_SECONDS must be a whole number of seconds" >&2; exit 2 ;; esac
case $rss_mb in '' | *[!0-9]*) echo "FUZZ_RSS_MB must be a whole number of MiB" >&2; exit 2 ;; esac

if ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
  echo "the $toolchain toolchain is not installed (cargo-fuzz needs it): rustup toolchain install $toolchain" >&2
  exit 1
fi
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $cargo_fuzz_version" ]; then
  echo "== installing cargo-fuzz $cargo_fuzz_version"
  cargo install --locked --quiet cargo-fuzz --version "$cargo_fuzz_version"
fi

targets=${FUZZ_TARGETS:-$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^certsync-fuzz$')}
host=$(rustup run "$toolchain" rustc -vV | sed -n 's/^host: //p')
build_dir=$root/target/fuzz
bin_dir=$build_dir/$host/release
work=$root/target/fuzz-run

echo "== fuzz: building $(echo $targets | wc -w) targets ($(rustup run "$toolchain" rustc --version))"
start=$SECONDS
# fuzz/ is a workspace of its own; its Cargo.lock is committed and must not move.
cargo "+$toolchain" metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null
# No sanitizer: certsync forbids unsafe code, and what is looked for is panics, hangs and
# unbounded allocation, which libFuzzer catches by itself; an ASan build runs about ten times
# fewer inputs here. 16 codegen units: a faster build on 2 cores for slightly slower code.
# Debug assertions and overflow checks stay on (cargo-fuzz's default).
for target in $targets; do
  cargo "+$toolchain" fuzz build --sanitizer none --codegen-units 16 --target-dir "$build_dir" \
    "$target"
done
echo "== fuzz: built in $((SECONDS - start)) s"

rm -rf "$work"
mkdir -p "$work"
failed=0
summary=()
for target in $targets; do
  corpus=$work/corpus/$target
  artifacts=$work/artifacts/$target
  tmp=$work/tmp/$target
  log=$work/$target.log
  mkdir -p "$corpus" "$artifacts" "$tmp"
  cp fuzz/seeds/"$target"/* "$corpus"/
  dict=()
  [ -f fuzz/dicts/"$target".dict ] && dict=(-dict="$root/fuzz/dicts/$target.dict")
  echo "== fuzz: $target for ${seconds}s"
  status=0
  # TMPDIR: the config target makes its empty folder there (kept for the life of the process).
  TMPDIR=$tmp "$bin_dir/$target" \
    -max_total_time="$seconds" -rss_limit_mb="$rss_mb" -timeout=20 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "${dict[@]}" "$corpus" >"$log" 2>&1 \
    || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  [ -n "$runs" ] || runs=$(sed -n 's/^#\([0-9]*\).*/\1/p' "$log" | tail -n 1)
  runs=${runs:-0}
  if [ "$status" -eq 0 ]; then
    summary+=("$(printf '%-14s %10s executions  no crash' "$target" "$runs")")
  else
    failed=1
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    [ -n "$artifact" ] && [ "${artifact#/}" = "$artifact" ] && artifact=$root/$artifact
    summary+=("$(printf '%-14s %10s executions  CRASH (exit %s): %s' "$target" "$runs" "$status" "${artifact:-no input written, see $log}")")
    # What libFuzzer said about it: the panic message or the kind of failure, and the input.
    grep -E -A3 "panicked at|ERROR: libFuzzer|SUMMARY:|Test unit written|^Base64:" "$log" | head -n 40 || true
  fi
  rm -rf "$tmp"
done

echo "== fuzz: results (${seconds}s per target, $((SECONDS - start)) s in all)"
printf '%s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
  echo "fuzzing found a crash: reproduce with $bin_dir/<target> <input>, then make the input a test in tests/it/fuzz_regressions.rs" >&2
  exit 1
fi
