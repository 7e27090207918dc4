#!/usr/bin/env bash
# fuzz.sh: build the libFuzzer harnesses (tests/fuzz/) with clang and the
# sanitizers, replay every saved regression input, then fuzz each harness for
# a bounded time starting from its checked-in seed corpus.  Fails, printing the
# reproducer's path, if any input crashes, leaks, trips a sanitizer or a check.
set -euo pipefail

HARNESSES=(tls_hello pipeline config control_request)

usage() {
  cat <<'USAGE'
usage: scripts/fuzz.sh [SECONDS] [--seconds N] [--build-dir DIR] [--log-dir DIR]
                       [--parallel] [HARNESS...]

  SECONDS, --seconds N  fuzz each harness for N seconds (default 60)
  --build-dir DIR       clang build tree (default build-fuzz)
  --log-dir DIR         where each harness's libFuzzer log goes (default DIR/logs)
  --parallel            run the harnesses at the same time (default: one by one)
  HARNESS               any of: tls_hello pipeline config control_request
                        (default: all)

Each run replays tests/fuzz/regressions/HARNESS/* first, then fuzzes with the
seeds of tests/fuzz/corpus/HARNESS (read only; new inputs go to
BUILD/run/HARNESS/corpus).  Crash inputs land in BUILD/run/HARNESS/artifacts;
keep one as a regression by copying it to tests/fuzz/regressions/HARNESS/.
Needs clang and libclang-rt-14-dev (scripts/deps.sh); the control_request
harness opens a socket whose chown needs root (it fuzzes the parser alone
otherwise).  docs/reliability.md describes the harnesses.
USAGE
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=60
build_dir="$root/build-fuzz"
log_dir=""
parallel=false
selected=()
while (($#)); do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --build-dir) build_dir=$(realpath -m "$2"); shift 2 ;;
    --log-dir) log_dir=$(realpath -m "$2"); shift 2 ;;
    --parallel) parallel=true; shift ;;
    [0-9]*) seconds="$1"; shift ;;
    -*) echo "fuzz.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    *)
      if [[ " ${HARNESSES[*]} " != *" $1 "* ]]; then
        echo "fuzz.sh: unknown harness '$1' (one of: ${HARNESSES[*]})" >&2
        exit 2
      fi
      selected+=("$1"); shift ;;
  esac
done
[[ "$seconds" =~ ^[0-9]+$ && "$seconds" -gt 0 ]] || { echo "fuzz.sh: --seconds needs a positive integer" >&2; exit 2; }
((${#selected[@]})) || selected=("${HARNESSES[@]}")
[[ -n "$log_dir" ]] || log_dir="$build_dir/logs"
command -v clang >/dev/null || { echo "fuzz.sh: clang not found (run scripts/deps.sh)" >&2; exit 1; }

# Per-harness libFuzzer options: the largest input worth trying, memory.
# The pipeline harness holds a 256 MB EAL heap besides ASan's shadow.
declare -A MAX_LEN=([tls_hello]=20000 [pipeline]=32768 [config]=16384 [control_request]=8192)
declare -A RSS_MB=([tls_hello]=2048 [pipeline]=4096 [config]=2048 [control_request]=2048)

# Build once; concurrent callers (ctest -j) wait for each other.
mkdir -p "$build_dir" "$log_dir"
(
  flock 9
  if [[ ! -f "$build_dir/CMakeCache.txt" ]]; then
    CC=clang cmake -S "$root/tests/fuzz/harness" -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  fi
  cmake --build "$build_dir" -j "$(nproc)" >"$build_dir/build.log" 2>&1 ||
    { cat "$build_dir/build.log" >&2; echo "fuzz.sh: build failed" >&2; exit 1; }
) 9>"$build_dir/.build.lock"

# Run one libFuzzer command, logging to $1; returns its status.  The pipeline
# harness's EAL leaves a runtime directory named after its pid: removed here,
# since a crashing process cannot.
run_fuzzer() {
  local log="$1"; shift
  "$@" >"$log" 2>&1 &
  local pid=$! status=0
  wait "$pid" || status=$?
  rm -rf "/var/run/dpdk/tether-fuzz-$pid"
  return "$status"
}

# Replay the regressions, fuzz, report.  Prints one summary line; returns 1
# on a crash.
fuzz_one() {
  local name="$1"
  local binary="$build_dir/fuzz_$name"
  local work="$build_dir/run/$name"
  local seeds="$root/tests/fuzz/corpus/$name"
  local regressions="$root/tests/fuzz/regressions/$name"
  local log="$log_dir/$name.log"
  local options=(-rss_limit_mb="${RSS_MB[$name]}" -max_len="${MAX_LEN[$name]}" -timeout=30)
  local dictionary="$root/tests/fuzz/dict/$name.dict"
  [[ -f "$dictionary" ]] && options+=(-dict="$dictionary")

  rm -rf "$work"
  mkdir -p "$work/corpus" "$work/artifacts"
  local inputs=()
  if [[ -d "$regressions" ]]; then
    while IFS= read -r -d '' file; do inputs+=("$file"); done \
      < <(find "$regressions" -maxdepth 1 -type f ! -name '.*' ! -name '*.md' -print0 | sort -z)
  fi
  if ((${#inputs[@]})); then
    if ! run_fuzzer "$log_dir/$name.regressions.log" "$binary" "${options[@]}" "${inputs[@]}"; then
      echo "fuzz.sh: $name: a regression input fails again; see $log_dir/$name.regressions.log" >&2
      grep -E '^Running: |ERROR|SUMMARY|check failed' "$log_dir/$name.regressions.log" | tail -5 >&2
      return 1
    fi
  fi

  local status=0
  run_fuzzer "$log" "$binary" "${options[@]}" -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/" "$work/corpus" "$seeds" || status=$?
  local executions rate corpus rss
  executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
  corpus=$(grep -oE 'corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -1 | cut -d' ' -f2)
  if ((status != 0)); then
    local reproducer
    reproducer=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    echo "fuzz.sh: $name: FAILED (status $status) after ${executions:-?} executions; log $log" >&2
    grep -E 'ERROR: |SUMMARY: |check failed' "$log" | head -5 >&2 || true
    if [[ -n "$reproducer" ]]; then
      echo "fuzz.sh: $name: reproducer $reproducer" >&2
      echo "fuzz.sh: $name: replay with: $binary $reproducer" >&2
      echo "fuzz.sh: $name: keep it with: cp $reproducer $regressions/" >&2
    fi
    return 1
  fi
  printf 'fuzz.sh: %-16s ok  %ss  %s executions  %s exec/s  corpus %s (inputs/bytes)  peak rss %s MB  regressions %d\n' \
    "$name" "$seconds" "${executions:-?}" "${rate:-?}" "${corpus:-?}" "${rss:-?}" "${#inputs[@]}"
}

failed=0
if $parallel; then
  pids=()
  for name in "${selected[@]}"; do
    fuzz_one "$name" & pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
else
  for name in "${selected[@]}"; do fuzz_one "$name" || failed=1; done
fi
exit "$failed"
