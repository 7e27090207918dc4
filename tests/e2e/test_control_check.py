#!/usr/bin/env python3
"""test_control_check: `tether-control --check FILE` refuses every broken config with the right JSON path.

User-visible behaviour (issue 4, acceptance 1; docs/operations.md, "--check"):
an operator runs `tether-control --check FILE` before installing a config.

- Every case of tests/fixtures/config/invalid/<case>/ (wrong types, unknown
  keys, duplicate VIP:port, bad CIDR, overflowing numbers, truncated JSON ...):
  exit status 1, and the output names the JSON path of the case's `error` file
  (its first line) in the `FILE: $.path: message` form; the message text of
  the `error` file's second line appears too.
- tests/fixtures/config/multiple: exit 1 and every path of its `errors` file.
- Every valid fixture, every config/*.json and every tests/e2e/configs/*.json
  (the files the lab tests run on): exit 0 with a one-line summary and no
  `FILE: $.path` error line (warnings, e.g. a CA file that is not there yet,
  are allowed).

No lab, no root, no dataplane: --check needs none of them.

Run: python3 tests/e2e/test_control_check.py --build-dir BUILD
"""

import subprocess
import sys
import time

from tetherlab import REPO, parse_args, tail

FIXTURES = REPO / "tests" / "fixtures" / "config"
MIN_INVALID = 20
TIMEOUT_S = 10


def check_file(binary, path):
    """(exit status, stdout + stderr) of tether-control --check path."""
    proc = subprocess.run([str(binary), "--check", str(path)], capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    return proc.returncode, proc.stdout + proc.stderr


def invalid_problems(binary, case):
    """Problems with one invalid case: [] when it is refused with its path."""
    lines = (case / "error").read_text().splitlines()
    path = lines[0].strip()
    message = lines[1].strip() if len(lines) > 1 else ""
    code, out = check_file(binary, case / "input.json")
    problems = []
    if code != 1:
        problems.append("exit %d, expected 1" % code)
    # the error line: "FILE: $.path: message" (an error at the root is "FILE: $: ...")
    wanted = "%s: %s" % (case / "input.json", path)
    matching = [line for line in out.splitlines() if line.startswith(wanted + ":")]
    if not matching:
        problems.append("no line starting '%s:'" % wanted)
    elif message and not any(message in line for line in matching):
        problems.append("the line for %s lacks '%s'" % (path, message))
    return problems, out


def main():
    args = parse_args("test_control_check")
    binary = args.build_dir / "tether-control"
    started = time.monotonic()
    if not binary.exists():
        print("ERROR test_control_check: no %s" % binary, file=sys.stderr)
        return 1
    failures = []
    invalid = sorted(p for p in (FIXTURES / "invalid").iterdir() if (p / "input.json").exists())
    for case in invalid:
        problems, out = invalid_problems(binary, case)
        if problems:
            failures.append("invalid/%s: %s\n    output: %s" % (case.name, "; ".join(problems),
                                                               tail(out, 5).replace("\n", "\n    ")))

    multiple = FIXTURES / "multiple"
    paths = [line.strip() for line in (multiple / "errors").read_text().splitlines() if line.strip()]
    code, out = check_file(binary, multiple / "input.json")
    missing = [p for p in paths if "%s: %s:" % (multiple / "input.json", p) not in out]
    if code != 1 or missing:
        failures.append("multiple: exit %d (expected 1), paths missing: %s\n    output: %s"
                        % (code, missing, tail(out, 8).replace("\n", "\n    ")))

    valid = sorted(FIXTURES.glob("valid/*/input.json")) + sorted((REPO / "config").glob("*.json")) \
        + sorted((REPO / "tests" / "e2e" / "configs").glob("*.json"))
    for path in valid:
        code, out = check_file(binary, path)
        # warnings (a CA file not there yet) are "FILE: warning: $.path: ..."
        errors = [line for line in out.splitlines() if line.startswith("%s: $" % path)]
        if code != 0 or errors:
            failures.append("%s: exit %d (expected 0)\n    output: %s"
                            % (path.relative_to(REPO), code, tail(out, 5).replace("\n", "\n    ")))

    elapsed = time.monotonic() - started
    if len(invalid) < MIN_INVALID:
        failures.append("only %d invalid cases, the acceptance wants %d" % (len(invalid), MIN_INVALID))
    if failures:
        print("FAIL test_control_check (%.1f s): %d of %d files wrong:\n  %s"
              % (elapsed, len(failures), len(invalid) + 1 + len(valid), "\n  ".join(failures)),
              file=sys.stderr)
        return 1
    print("PASS test_control_check (%.1f s)" % elapsed)
    print("  %-34s %s" % ("invalid refused with their path:", "%d of %d (exit 1)"
                          % (len(invalid), len(invalid))))
    print("  %-34s %s" % ("multiple errors:", "%d paths in one run" % len(paths)))
    print("  %-34s %s" % ("valid accepted:", "%d (fixtures, config/, e2e configs; exit 0)"
                          % len(valid)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
