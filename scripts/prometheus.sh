#!/usr/bin/env bash
# Makes `prometheus` and `promtool` available for the tests of deploy/prometheus and
# deploy/grafana: uses them from PATH, else installs Debian's `prometheus` package.
#
#   bash scripts/prometheus.sh      # exit 0: both on PATH (last line names them)
#                                   # exit 3: could not install; one line on stderr says why
#
# Idempotent: when both are on PATH it only prints where they are (no apt-get). The package's
# service is never started by the install (a policy-rc.d that refuses it is put in place while
# apt-get runs, unless the machine already has one), so nothing takes port 9090; the tests run
# their own Prometheus on a free port. Recommends (prometheus-node-exporter, another service on
# port 9100) are not installed.
set -uo pipefail

CANNOT_INSTALL=3

found() {
  command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1
}

cannot() {
  echo "prometheus.sh: cannot install Prometheus: $*" >&2
  exit "$CANNOT_INSTALL"
}

if found; then
  echo "prometheus: $(command -v prometheus), promtool: $(command -v promtool)"
  exit 0
fi

command -v apt-get >/dev/null 2>&1 || cannot "prometheus/promtool not on PATH and no apt-get (install Prometheus 2.x and put both on PATH)"
if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  cannot "prometheus/promtool not on PATH; apt-get needs root, and sudo is missing or asks for a password"
fi

# Debian's maintainer scripts start services through invoke-rc.d, which asks policy-rc.d first:
# exit 101 means "do not start". Only ours is removed afterwards.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# put here by spanledger scripts/prometheus.sh while apt-get runs\nexit 101\n' | "${as_root[@]}" tee "$policy" >/dev/null &&
    "${as_root[@]}" chmod 755 "$policy" && own_policy=1
fi
log=$(mktemp)
cleanup() {
  if [ "$own_policy" -eq 1 ]; then "${as_root[@]}" rm -f "$policy"; fi
  rm -f "$log"
}
trap cleanup EXIT

started=$SECONDS
export DEBIAN_FRONTEND=noninteractive
if ! "${as_root[@]}" apt-get update -q >"$log" 2>&1; then
  cannot "apt-get update failed: $(tail -n 1 "$log")"
fi
if ! "${as_root[@]}" apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=60 prometheus >>"$log" 2>&1; then
  cannot "apt-get install prometheus failed: $(tail -n 1 "$log")"
fi
found || cannot "apt-get installed the prometheus package, but prometheus/promtool are still not on PATH"
echo "prometheus: installed Debian's prometheus package in $((SECONDS - started)) s: $(command -v prometheus), promtool: $(command -v promtool)"
