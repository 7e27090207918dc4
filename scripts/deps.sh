#!/usr/bin/env bash
# deps.sh: install every Debian package that building, the lab, the demo and the
# test suite need. Idempotent: apt skips what is already installed, and the
# package index is refreshed only when it is missing or older than a day.
set -euo pipefail

usage() { echo "usage: $0   (as root; installs build, lab and test packages via apt)"; }
[[ "${1:-}" == "-h" || "${1:-}" == "--help" ]] && { usage; exit 0; }
[[ $EUID -eq 0 ]] || { echo "deps.sh: must run as root (apt-get install)" >&2; exit 1; }

PACKAGES=(
  # build
  build-essential cmake pkg-config clang
  libdpdk-dev libjansson-dev libssl-dev libcmocka-dev libpcap-dev libnuma-dev
  # fuzzing (scripts/fuzz.sh): clang-14 and its libFuzzer / sanitizer runtimes
  clang-14 libclang-rt-14-dev
  # lab, demo and tests
  iproute2 ethtool iputils-ping curl openssl python3 procps psmisc nftables
  # the lab comparison (scripts/bench.sh --compare): the peers it runs in tl-lb
  haproxy nginx libnginx-mod-stream
)
# Daemons whose packages start a system service on install: the comparison runs
# its own instances inside the lab, never these (see the end of this script).
SERVICES=(haproxy nginx)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "deps.sh: all ${#PACKAGES[@]} packages present"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
stamp=/var/lib/apt/periodic/update-success-stamp
lists=$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)
[[ -n "$lists" ]] || apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
# On a systemd machine the packages above start haproxy and nginx in the root
# namespace (nginx then listens on port 80): stop and disable them.
if [[ -d /run/systemd/system ]]; then
  for s in "${SERVICES[@]}"; do
    systemctl disable --now "$s.service" >/dev/null 2>&1 || true
  done
fi
: "${stamp}"
echo "deps.sh: installed ${missing[*]}"
