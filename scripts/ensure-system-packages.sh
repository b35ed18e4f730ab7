#!/usr/bin/env bash
# Make sure the Debian packages the demo and tests need are present.
# Installs with apt when root (or with passwordless sudo); otherwise prints the exact command.
# Usage: scripts/ensure-system-packages.sh [extra-package ...]
set -euo pipefail

missing=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_pg() { have_cmd initdb || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; }

have_pg || missing+=(postgresql)
have_cmd prometheus && have_cmd promtool || missing+=(prometheus)
have_cmd prometheus-alertmanager && have_cmd amtool || missing+=(prometheus-alertmanager)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
for extra in "$@"; do
  case "$extra" in
    prometheus-blackbox-exporter) have_cmd prometheus-blackbox-exporter || missing+=("$extra") ;;
    *) dpkg -s "$extra" >/dev/null 2>&1 || missing+=("$extra") ;;
  esac
done

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif have_cmd sudo && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "Missing system packages: ${missing[*]}" >&2
  echo "Install them with:  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

echo "Installing system packages: ${missing[*]}" >&2
# Keep Debian's maintainer scripts from starting the packaged daemons (prometheus on :9090,
# postgresql's default cluster): the demo and tests start their own on loopback.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
  "${sudo[@]}" chmod +x "$policy"
  created_policy=1
fi
trap '[ "$created_policy" -eq 1 ] && "${sudo[@]}" rm -f "$policy"' EXIT
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
