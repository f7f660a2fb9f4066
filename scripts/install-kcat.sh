#!/usr/bin/env bash
# Installs kcat (librdkafka's command-line producer/consumer), which the compression tests use as
# a real non-kafkajs producer. Needs root and apt; prints why not and exits 1 otherwise.
set -euo pipefail

if command -v kcat >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != 0 ]; then echo "install-kcat: not root, cannot apt-get install kcat" >&2; exit 1; fi
if ! command -v apt-get >/dev/null 2>&1; then echo "install-kcat: no apt-get on this machine" >&2; exit 1; fi

export DEBIAN_FRONTEND=noninteractive
# The package lists may be missing or stale on a fresh machine: refresh them only if needed.
if ! apt-get install -y -q kcat >/dev/null 2>&1; then
  apt-get update -q >/dev/null
  apt-get install -y -q kcat >/dev/null
fi
command -v kcat >/dev/null
