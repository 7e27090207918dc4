#!/usr/bin/env bash
# bench.sh: build tether-bench if needed, run every scenario, write
# bench-results.json and bench-results.md, print the table and the CPU model.
# docs/benchmarking.md says what each figure means and how to reproduce it on
# bare metal.  Speed is reported here, never asserted.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/bench.sh [--build-dir DIR] [--out DIR] [--runs N] [--lcore N] [--quick]
       scripts/bench.sh [--build-dir DIR] [--out DIR] --compare [compare options]

  --build-dir DIR  build tree (default: build); configured and built if needed
  --out DIR        where bench-results.json and bench-results.md go (default: .)
  --runs N         runs per figure, the median is reported (default: 5)
  --lcore N        CPU to run on (default: the last one, away from the kernel's
                   housekeeping on CPU 0)
  --quick          small tables and short runs (what the ctest smoke test runs)
  --compare        instead: tether side by side with HAProxy, nginx and
                   nftables in the namespace lab (scripts/compare.sh, as root,
                   about 3 minutes): new and resumed TLS connections/s, how
                   sticky each was, bulk MB/s and each balancer's CPU per
                   100,000 connections, with ratios to tether; writes
                   compare-results.json and compare-results.md.  Every argument
                   after it goes to compare.sh (scripts/compare.sh --help).
                   The lab is shared: run it as
                   flock /run/tether-lab.lock scripts/bench.sh --compare

Runs tether-bench in-process (EAL, no NIC, no root needed beyond what EAL
asks for) with the full scenario set: established NAT flows (1K, 100K, 1M),
new source-ip connections and expiry, ssl-session connections with 1.1 M
sessions held, persistence lookups, Maglev rebuilds, and the overheads the
figures leave out.  Takes about 15 s on a 2-core machine.
USAGE
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir="$root/build"
out_dir=$(pwd)
runs=5
lcore=$(($(nproc) - 1))
quick=()
while (($#)); do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --build-dir) build_dir=$(realpath -m "$2"); shift 2 ;;
    --out) out_dir=$(realpath -m "$2"); shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --lcore) lcore="$2"; shift 2 ;;
    --quick) quick=(--quick); shift ;;
    --compare)
      shift
      exec "$root/scripts/compare.sh" --build-dir "$build_dir" --out "$out_dir" "$@" ;;
    *) echo "bench.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
[[ "$runs" =~ ^[0-9]+$ ]] || { echo "bench.sh: --runs takes a number" >&2; exit 2; }

mkdir -p "$out_dir"
json="$out_dir/bench-results.json"
markdown="$out_dir/bench-results.md"
partial="$out_dir/.bench-results.$$"
cleanup() { rm -f "$partial.json" "$partial.md"; }
trap cleanup EXIT

# Build (idempotent: cmake rebuilds only what changed).
if [[ ! -f "$build_dir/CMakeCache.txt" ]]; then
  cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
if ! cmake --build "$build_dir" --target tether-bench -j "$(nproc)" >/dev/null; then
  echo "bench.sh: building tether-bench failed (cmake --build $build_dir --target tether-bench)" >&2
  exit 1
fi
bench="$build_dir/tests/tether-bench"
[[ -x "$bench" ]] || { echo "bench.sh: $bench not found after the build" >&2; exit 1; }

# What the figures were measured on.
cpu=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)
hypervisor=$(lscpu | sed -n 's/^Hypervisor vendor:[[:space:]]*//p' | head -1)
echo "CPU: ${cpu:-unknown} (${hypervisor:+virtual machine on $hypervisor, }$(nproc) CPUs, running on CPU $lcore)"
echo "kernel: $(uname -r); hugepages free: $(awk '/HugePages_Free/ {print $2}' /proc/meminfo)"
read -r load1 _ < /proc/loadavg
echo "load average before the run: $load1 (the machine may be shared: see the spread column)"
echo "command: $bench --runs $runs --lcore $lcore ${quick[*]} --json $json --markdown $markdown"
echo

# The TLS fixtures are found relative to tests/.
start=$(date +%s)
status=0
(cd "$root/tests" && timeout 600 "$bench" --runs "$runs" --lcore "$lcore" "${quick[@]}" \
    --json "$partial.json" --markdown "$partial.md") || status=$?
if ((status != 0)); then
  echo "bench.sh: tether-bench failed (exit $status): a check did not hold or it timed out" >&2
  exit 1
fi
mv "$partial.json" "$json"
mv "$partial.md" "$markdown"
echo
echo "bench.sh: $(($(date +%s) - start)) s; wrote $json and $markdown"
