#!/usr/bin/env bash
# Installs what the test suite drives as real programs, from Debian's packages: openssl and
# curl (oracles and clients), a JDK (keytool and a small Java TLS client), setpriv (tests that
# run as another user), chattr (an immutable file or folder), mkfifo and the usual shell tools;
# redis-server and redis-cli (a TLS 1.3 Redis the endpoint probes verify, and the client that
# connects with the instance's file) and influxd (an InfluxDB serving HTTPS); prometheus and
# promtool (the shipped alerting rules' checks and unit tests, and a real Prometheus scraping
# certsync in tests/it/prometheus_rules.rs); etcd and etcdctl (the real etcd the fleet roles
# publish to and subscribe from, tests/it/fleet_etcd.rs) and protoc (the `etcd` feature's
# client, etcd-client, compiles etcd's protobuf definitions at build time).
# Idempotent: installs only what is missing. Needs root (apt) when anything is missing.
set -euo pipefail

need_apt=()
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
{ command -v javac >/dev/null 2>&1 && command -v keytool >/dev/null 2>&1; } || need_apt+=(openjdk-17-jdk-headless)
command -v setpriv >/dev/null 2>&1 || need_apt+=(util-linux)
command -v chattr >/dev/null 2>&1 || need_apt+=(e2fsprogs)
command -v mkfifo >/dev/null 2>&1 || need_apt+=(coreutils)
command -v script >/dev/null 2>&1 || need_apt+=(bsdutils)
[ -e /etc/ssl/certs/ca-certificates.crt ] || need_apt+=(ca-certificates)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need_apt+=(redis-tools)
command -v influxd >/dev/null 2>&1 || need_apt+=(influxdb)
{ command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; } || need_apt+=(prometheus)
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need_apt+=(etcd-client)
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
# venv ships with python3 on Debian, but only python3-venv brings ensurepip (pip in a venv).
python3 -c 'import ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)

if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing: ${need_apt[*]}; run this script as root (it installs them with apt-get)" >&2
    exit 1
  fi
  echo "== installing: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Slim images lack the man folders some Java packages' scripts write into.
  mkdir -p /usr/share/man/man1
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}"
fi
