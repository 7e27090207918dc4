#!/usr/bin/env bash
# test.sh: install dependencies, configure, build, and run the whole suite
# (unit tests, then the end-to-end tests in the namespace lab) through ctest.
# Run as root on Debian 12: the lab needs network namespaces and apt.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: sudo scripts/test.sh [--unit] [--build-dir DIR] [-- CTEST ARGS...]

  --unit           run only the unit tests (no lab, no root needed beyond deps)
  --build-dir DIR  build tree to use (default: build)
  -- ARGS          passed to ctest, e.g. -- -R e2e.test_pmtu -V

Installs packages with scripts/deps.sh, builds with CMake, runs ctest with
--output-on-failure.  End-to-end tests create and remove their own tl-*
network namespaces; none may exist from another run.
USAGE
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir="$root/build"
label_args=()
ctest_args=()
while (($#)); do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --unit) label_args=(-L unit); shift ;;
    --build-dir) build_dir=$(realpath -m "$2"); shift 2 ;;
    --) shift; ctest_args=("$@"); break ;;
    *) echo "test.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

if [[ $EUID -ne 0 ]]; then
  echo "test.sh: run as root (sudo scripts/test.sh): apt installs and network namespaces need it" >&2
  exit 1
fi

"$root/scripts/deps.sh"
cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build_dir" -j "$(nproc)"
# Leftovers from an interrupted run would make the lab tests fail confusingly.
((${#label_args[@]})) || "$root/scripts/lab.sh" down >/dev/null 2>&1 || true
ctest --test-dir "$build_dir" --output-on-failure "${label_args[@]}" "${ctest_args[@]}"
