#!/usr/bin/env python3
"""test_ssl_hello_shapes: however the ClientHello is cut, framed or padded, the session sticks.

User-visible behaviour: on an ssl-session VIP with fallback `none`
(192.0.2.20:443, service ssl-strict over be1..be4, tests/e2e/configs/
ssl_session.json), TLS 1.2 sessions by session ID (tickets off) created and
resumed from other client addresses with the ClientHello (every one: the
full handshakes' and the resumptions') shaped as a real client or a
middlebox may shape it -- cut into 2, 3 and 7 TCP segments, cut 3 bytes into
the TLS record header (and at 1, 3 and 7 bytes: header and handshake header),
framed as 3 TLS records, padded to 2.1 KB (a post-quantum key share's size;
one write, so more than one full-sized segment arriving back to back with
the handshake's ACK) and to 8 KB, and combinations -- behaves exactly like
the unshaped hello: every connection succeeds, every resumption lands on the
creating backend and is resumed, hit_session_id counts every resumption, and
the dataplane neither refuses an ACK nor resets anyone.

A 17 KB hello (--pad 17408: 17,413 bytes in two records, over the 16 KB
inspection cap) cannot be inspected: it is placed by the fallback, counted as
fallback_too_large (every connection), and still served.

Each shape is tried and reported before the test fails.

Run as root: python3 tests/e2e/test_ssl_hello_shapes.py --build-dir BUILD
"""

import sys

from tetherlab import REPO, check, run_scenario, stats_delta

CONFIG = REPO / "tests" / "e2e" / "configs" / "ssl_session.json"
TARGET = "192.0.2.20:443"                   # ssl-strict: ssl-session, fallback none
SERVER_NAME = "cp.assist.example"
SESSIONS, RESUMES = 12, 2
CREATE_FROM = "203.0.113.10-203.0.113.49"
RESUME_FROM = "203.0.113.50-203.0.113.109"
TOO_LARGE = 17408

# (what, tether-test-client options, expected (hello bytes at least, records, segments))
SHAPES = [
    ("unshaped (reference)", [], (1, 1, 1)),
    ("2 TCP segments", ["--split", 2], (1, 1, 2)),
    ("3 TCP segments", ["--split", 3], (1, 1, 3)),
    ("7 TCP segments", ["--split", 7], (1, 1, 7)),
    ("2 segments, cut 3 bytes into the record header", ["--split-at", 3], (1, 1, 2)),
    ("4 segments, cut at 1, 3 and 7 (record and handshake headers)", ["--split-at", "1,3,7"],
     (1, 1, 4)),
    ("3 TLS records", ["--records", 3], (1, 3, 1)),
    ("3 TLS records in 3 segments", ["--records", 3, "--split", 3], (1, 3, 3)),
    ("padded to 2.1 KB, one write", ["--pad", 2150], (2150, 1, 1)),
    ("padded to 2.1 KB, cut 3 bytes into the record header", ["--pad", 2150, "--split-at", 3],
     (2150, 1, 2)),
    ("padded to 8 KB, one write", ["--pad", 8192], (8192, 1, 1)),
    ("padded to 8 KB, 3 records in 7 segments", ["--pad", 8192, "--records", 3, "--split", 7],
     (8192, 3, 7)),
]


def brief(results, count=3):
    return "; ".join("session %s attempt %s from %s -> %s (session of %s) reused=%s: %s"
                     % (r["session"], r["attempt"], r["source"], r["server"], r["session_from"],
                        r["reused"], r["error"] or "ok") for r in results[:count])


def run_shape(lab, options):
    """Runs the sessions with one shape; returns (client document, ssl_session rise)."""
    before = lab.stats()
    out = lab.test_client("--target", TARGET, "--tls", "1.2", "--tickets", "off",
                          "--ca", lab.ca_path(), "--server-name", SERVER_NAME,
                          "--sessions", SESSIONS, "--resumes", RESUMES,
                          "--create-from", CREATE_FROM, "--resume-from", RESUME_FROM,
                          "--concurrency", 8, "--timeout", 10, *options, timeout=60)
    total = len(out["results"])
    try:
        after = lab.wait_stats(lambda s: stats_delta(before, s)["bindings_started"] >= total and
                               s["ssl_session"]["bindings_active"] == 0, 5,
                               "every binding to end")
    except AssertionError:
        after = lab.stats()
    return out, stats_delta(before, after)


def shape_problem(what, out, delta, expected):
    """None if the shape behaved like an unshaped hello, else what went wrong."""
    results, summary = out["results"], out["summary"]
    total, resumptions = SESSIONS * (1 + RESUMES), SESSIONS * RESUMES
    problems = []
    failed = [r for r in results if not r["ok"]]
    if len(results) != total or failed:
        problems.append("%d of %d connections failed (first: %s)"
                        % (len(failed) + total - len(results), total, brief(failed)))
    if summary["same_backend_as_creator"] != resumptions or summary["reused"] != resumptions:
        problems.append("%d/%d resumptions on the creating backend, %d/%d reused"
                        % (summary["same_backend_as_creator"], resumptions, summary["reused"],
                           resumptions))
    minimum, records, chunks = expected
    shaped = {(r["hello_records"], r["chunks"]) for r in results if r["ok"]}
    small = [r["hello_bytes"] for r in results if r["ok"] and r["hello_bytes"] < minimum]
    if shaped - {(records, chunks)} or small:
        problems.append("the client did not shape the hello as asked: (records, segments) %s, "
                        "sizes below %d: %s" % (sorted(shaped), minimum, small[:3]))
    if delta["hit_session_id"] < resumptions:
        problems.append("hit_session_id +%d, expected %d" % (delta["hit_session_id"], resumptions))
    fallbacks = {k: v for k, v in delta.items() if k.startswith("fallback_") and v and
                 k != "fallback_new_session"}
    if fallbacks or delta["fallback_new_session"] != SESSIONS:
        problems.append("fallbacks %s, fallback_new_session +%d (expected %d)"
                        % (fallbacks, delta["fallback_new_session"], SESSIONS))
    refused = {k: delta[k] for k in ("cookies_invalid", "rst_sent", "bindings_aborted",
                                      "inspect_timeouts") if delta[k]}
    if refused:
        problems.append("the dataplane refused or reset connections: %s (bindings started "
                        "+%d, bound +%d)" % (refused, delta["bindings_started"],
                                            delta["bindings_bound"]))
    return "%s: %s" % (what, "; ".join(problems)) if problems else None


def scenario(lab):
    figures, problems = {}, []
    for what, options, expected in SHAPES:
        out, delta = run_shape(lab, options)
        problem = shape_problem(what, out, delta, expected)
        sizes = sorted({r["hello_bytes"] for r in out["results"] if r["ok"]})
        line = "%d/%d ok, %d/%d resumptions on the creator and reused, hit_session_id +%d; " \
               "hello %s bytes, %.2f s" % (out["summary"]["ok"], SESSIONS * (1 + RESUMES),
                                            out["summary"]["same_backend_as_creator"],
                                            SESSIONS * RESUMES, delta["hit_session_id"],
                                            "/".join(map(str, sizes)) or "?", out["elapsed_s"])
        if problem:
            problems.append(problem)
            print("  FAILED %s" % problem, file=sys.stderr)
        figures[what] = line if not problem else "FAILED"

    # Over the cap: fallback, counted, still served.
    out, delta = run_shape(lab, ["--pad", TOO_LARGE])
    total = SESSIONS * (1 + RESUMES)
    results = out["results"]
    failed = [r for r in results if not r["ok"]]
    sizes = sorted({r["hello_bytes"] for r in results})
    too_large_problems = []
    if failed or len(results) != total:
        too_large_problems.append("%d of %d connections failed (first: %s)"
                                  % (len(failed), total, brief(failed)))
    if delta["fallback_too_large"] != total:
        too_large_problems.append("fallback_too_large +%d, expected %d"
                                  % (delta["fallback_too_large"], total))
    if not sizes or sizes[0] <= 16384:
        too_large_problems.append("hello sizes %s not over 16 KB" % sizes)
    if delta["cookies_invalid"] or delta["rst_sent"]:
        too_large_problems.append("cookies_invalid +%d, rst_sent +%d"
                                  % (delta["cookies_invalid"], delta["rst_sent"]))
    label = "17 KB hello (--pad %d)" % TOO_LARGE
    if too_large_problems:
        problems.append("%s: %s" % (label, "; ".join(too_large_problems)))
        print("  FAILED %s" % problems[-1], file=sys.stderr)
        figures[label] = "FAILED"
    else:
        figures[label] = ("%d/%d served via fallback (fallback_too_large +%d), hello %s bytes "
                          "in %s records; %d/%d resumptions reused (by chance: fallback none)"
                          % (out["summary"]["ok"], total, delta["fallback_too_large"],
                             "/".join(map(str, sizes)),
                             "/".join(str(n) for n in sorted({r["hello_records"]
                                                              for r in results})),
                             out["summary"]["reused"], SESSIONS * RESUMES))
    check(not problems, "%d of %d hello shapes failed:\n  %s"
          % (len(problems), len(SHAPES) + 1, "\n  ".join(problems)))
    return figures


if __name__ == "__main__":
    sys.exit(run_scenario("test_ssl_hello_shapes", scenario, CONFIG))
