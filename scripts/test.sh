#!/usr/bin/env bash
# test.sh: install dependencies, configure, build, and run the whole suite
# (unit tests, then the end-to-end tests in the namespace lab) through ctest.
# Run as root on Debian 12: the lab needs network namespaces and apt.
# --sanitize does the same with an ASan+UBSan build (docs/reliability.md).
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: sudo scripts/test.sh [--unit] [--sanitize] [--build-dir DIR] [-- CTEST ARGS...]

  --unit           run only the unit tests (no lab, no root needed beyond deps)
  --sanitize       build with AddressSanitizer + UndefinedBehaviorSanitizer
                   (TETHER_SANITIZE=ON) and fail on any report, leaks included
  --build-dir DIR  build tree to use (default: build, or build-sanitize)
  -- ARGS          passed to ctest, e.g. -- -R e2e.test_pmtu -V

Installs packages with scripts/deps.sh, builds with CMake, runs ctest with
--output-on-failure.  End-to-end tests create and remove their own tl-*
network namespaces; none may exist from another run.
USAGE
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=
sanitize=OFF
label_args=()
exclude_args=()
ctest_args=()
while (($#)); do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --unit) label_args=(-L unit); shift ;;
    --sanitize) sanitize=ON; shift ;;
    --build-dir) build_dir=$(realpath -m "$2"); shift 2 ;;
    --) shift; ctest_args=("$@"); break ;;
    *) echo "test.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

if [[ $EUID -ne 0 ]]; then
  echo "test.sh: run as root (sudo scripts/test.sh): apt installs and network namespaces need it" >&2
  exit 1
fi

if [[ -z $build_dir ]]; then
  if [[ $sanitize == ON ]]; then build_dir="$root/build-sanitize"; else build_dir="$root/build"; fi
fi

if [[ $sanitize == ON ]]; then
  # Every sanitized process inherits these: ctest -> the unit tests; ctest ->
  # the e2e scripts -> ip netns exec -> tether-dataplane, tether-control,
  # tetherctl, tether-test-client.  Reports go to stderr (the daemons' logs,
  # which tests/e2e/tetherlab.py scans), and any report fails the test.
  # Options given in the environment come last, so they win.
  #   halt_on_error=1    stop at the first error with a failing status
  #   detect_leaks=1     LeakSanitizer at exit; the daemons free what they
  #                      allocate on a clean stop.  DPDK's own memory (rte_malloc,
  #                      mempools, rings) is outside ASan and never reported.
  #   detect_stack_use_after_return=1  also catch pointers to dead stack frames
  #   strict_string_checks=1  check the whole string read by strchr, strtol...
  # EAL's --no-huge memory (-m 512, anonymous mmap) sits beside ASan's shadow
  # without extra options: no detect_odr_violation or mapping tweaks needed.
  export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:detect_stack_use_after_return=1:strict_string_checks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
  #   halt_on_error=1    UBSan is built recoverable (so suppressions work); this
  #                      makes the first report fatal all the same
  #   print_stacktrace=1 a stack with every report
  #   report_error_type=1  name the check, as a suppression line needs it
  #   suppressions=      findings inside DPDK's headers, each explained there
  export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:report_error_type=1:suppressions=$root/tests/sanitizer/ubsan.supp${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
  # The fuzz entries build their harnesses with clang and ASan+UBSan whatever
  # this tree is; the normal run has them, so this one skips them.
  exclude_args=(-LE fuzz)
fi

"$root/scripts/deps.sh"
cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DTETHER_SANITIZE="$sanitize" >/dev/null
cmake --build "$build_dir" -j "$(nproc)"
# Leftovers from an interrupted run would make the lab tests fail confusingly.
((${#label_args[@]})) || "$root/scripts/lab.sh" down >/dev/null 2>&1 || true
ctest --test-dir "$build_dir" --output-on-failure "${label_args[@]}" "${exclude_args[@]}" \
  "${ctest_args[@]}"
