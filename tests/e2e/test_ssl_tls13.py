#!/usr/bin/env python3
"""test_ssl_tls13: TLS 1.3 resumptions stick: same address by fallback, new ones by key name.

User-visible behaviour, on an ssl-session VIP with fallback `source-ip`
(192.0.2.21:443, service ssl-sourceip over be1..be4, tests/e2e/configs/
ssl_session.json), TLS 1.3 only, the client offering the newest ticket it
holds (OpenSSL servers accept a TLS 1.3 ticket once):

1. Same address: 40 client addresses each create 3 sessions and resume each
   twice from the same address: every resumption reaches the session's
   server and is resumed.  The first resumptions to a server are placed by
   the source-IP fallback (fallback_tls13_unknown_ticket); once a server has
   accepted one, the dataplane knows its ticket key name (learned_key_name).
   The phase must see an accepted resumption on every backend.
2. New addresses: 120 sessions created from 30 addresses never used before,
   each resumed twice from 30 other new addresses: every resumption reaches
   the session's server and is resumed, placed by key name (hit_key_name
   counts every one, no TLS 1.3 unknown-ticket fallback).  Source IP could
   not have done it: a first connection from each resuming address (a
   probe, afterwards) shows where the fallback would have sent it, and the
   test requires that to differ from the session's server for some.
3. TLS 1.3 legacy session IDs never enter the session table: every TLS 1.3
   ServerHello echoes the client's random legacy_session_id, and the
   dataplane counts them (tls13_session_id_ignored) without storing any:
   learned_session_id stays 0 and the table holds only the key names, one
   per backend.  Nor do they count as sessions offered: a first connection
   is fallback_new_session, never fallback_unknown_session.

Run as root: python3 tests/e2e/test_ssl_tls13.py --build-dir BUILD
"""

import sys
import threading

from tetherlab import REPO, check, run_scenario, stats_delta

CONFIG = REPO / "tests" / "e2e" / "configs" / "ssl_session.json"
TARGET = "192.0.2.21:443"                   # ssl-sourceip: ssl-session, fallback source-ip
SERVER_NAME = "cp.assist.example"
BACKENDS = ("be1", "be2", "be3", "be4")
SAME_SOURCES = ["203.0.113.%d" % i for i in range(10, 50)]   # phase 1: 40 addresses
SAME_SESSIONS, SAME_RESUMES = 3, 2
NEW_CREATE = "203.0.113.50-203.0.113.79"    # phase 2: 30 + 30 addresses unused so far
NEW_RESUME = "203.0.113.80-203.0.113.109"
NEW_SESSIONS, NEW_RESUMES = 120, 2
PARALLEL = 8                                # phase 1 client processes at once


def brief(results, count=3):
    return "; ".join("session %s attempt %s from %s -> %s (session of %s) %s reused=%s: %s"
                     % (r["session"], r["attempt"], r["source"], r["server"], r["session_from"],
                        r["version"], r["reused"], r["error"] or "ok")
                     for r in results[:count])


def check_chains(results, what):
    """Every connection ok and TLS 1.3; every resumption on its creator's server and
    resumed.  Returns the resumptions."""
    failed = [r for r in results if not r["ok"]]
    check(not failed, "%s: %d of %d connections failed; first: %s"
          % (what, len(failed), len(results), brief(failed)))
    not13 = [r for r in results if r["version"] != "TLSv1.3"]
    check(not not13, "%s: connections not TLS 1.3: %s" % (what, brief(not13)))
    creators = {(r["creator"], r["session"]): r for r in results if r["attempt"] == 0}
    resumptions = [r for r in results if r["attempt"] > 0]
    moved = [r for r in resumptions
             if r["server"] != creators[(r["creator"], r["session"])]["server"]]
    check(not moved, "%s: %d of %d resumptions left the session's server; first: %s"
          % (what, len(moved), len(resumptions), brief(moved)))
    not_reused = [r for r in resumptions if not (r["reused"] and r["server_reused"])]
    check(not not_reused, "%s: %d of %d resumptions not resumed; first: %s"
          % (what, len(not_reused), len(resumptions), brief(not_reused)))
    return resumptions


def same_address_phase(lab):
    """Phase 1: one client process per address, resuming from that address."""
    outcome, errors = {}, []
    pending = list(SAME_SOURCES)
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if not pending:
                    return
                source = pending.pop()
            try:
                out = lab.test_client("--target", TARGET, "--tls", "1.3",
                                      "--ca", lab.ca_path(), "--server-name", SERVER_NAME,
                                      "--sessions", SAME_SESSIONS, "--resumes", SAME_RESUMES,
                                      "--create-from", source, "--resume-from", source,
                                      "--concurrency", SAME_SESSIONS, "--timeout", 10,
                                      timeout=60)
                outcome[source] = out["results"]
            except Exception as e:          # noqa: BLE001 - reported below
                errors.append("%s: %s" % (source, e))

    threads = [threading.Thread(target=worker) for _ in range(PARALLEL)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(not errors, "phase 1 clients failed: %s" % "; ".join(errors[:3]))
    results = []
    for source, got in outcome.items():
        for r in got:
            r["creator"] = source
        results += got
    return results


def scenario(lab):
    start = lab.stats()

    # Phase 1: resumption from the same address.
    results = same_address_phase(lab)
    check(len(results) == len(SAME_SOURCES) * SAME_SESSIONS * (1 + SAME_RESUMES),
          "phase 1: %d results" % len(results))
    same = check_chains(results, "phase 1 (same address)")
    same_source = [r for r in same if r["source"] != r["creator"]]
    check(not same_source, "phase 1 resumed from another address (test setup): %s"
          % brief(same_source))
    accepted_on = sorted({r["server"] for r in same if r["server_reused"]})
    check(accepted_on == list(BACKENDS), "phase 1 saw accepted resumptions only on %s: the "
          "key names of the others cannot be learned; use more addresses" % accepted_on)
    phase1 = lab.wait_stats(lambda s: stats_delta(start, s)["learned_key_name"] >= len(BACKENDS),
                            5, "learned_key_name to rise by %d" % len(BACKENDS))
    d1 = stats_delta(start, phase1)
    check(phase1["ssl_session"]["sessions_live"] == len(BACKENDS),
          "after phase 1 the session table holds %d entries, expected the %d backends' key "
          "names only" % (phase1["ssl_session"]["sessions_live"], len(BACKENDS)))

    # Phase 2: resumption from new addresses, placed by key name.
    out = lab.test_client("--target", TARGET, "--tls", "1.3", "--ca", lab.ca_path(),
                          "--server-name", SERVER_NAME, "--sessions", NEW_SESSIONS,
                          "--resumes", NEW_RESUMES, "--create-from", NEW_CREATE,
                          "--resume-from", NEW_RESUME, "--concurrency", 16, "--timeout", 10,
                          timeout=60)
    new_results = out["results"]
    for r in new_results:
        r["creator"] = "phase2"
    check(len(new_results) == NEW_SESSIONS * (1 + NEW_RESUMES), "phase 2: %d results, expected "
          "%d" % (len(new_results), NEW_SESSIONS * (1 + NEW_RESUMES)))
    new = check_chains(new_results, "phase 2 (new addresses)")
    creators = {r["session"]: r["source"] for r in new_results if r["attempt"] == 0}
    same_source = [r for r in new if r["source"] == creators[r["session"]]]
    check(not same_source, "phase 2 resumed from the creating address (test setup): %s"
          % brief(same_source))
    phase2 = lab.wait_stats(lambda s: stats_delta(phase1, s)["hit_key_name"] >= len(new), 5,
                            "hit_key_name to count the %d phase-2 resumptions (clients saw "
                            "them all stick)" % len(new))
    d2 = stats_delta(phase1, phase2)
    check(d2["fallback_tls13_unknown_ticket"] == 0,
          "phase 2: %d resumptions fell back as unknown TLS 1.3 tickets after every key name "
          "was learned" % d2["fallback_tls13_unknown_ticket"])

    # What the fallback alone would have done: a first connection from each
    # phase-2 resumption address goes where source IP sends it.
    probe = lab.test_client("--target", TARGET, "--tls", "1.3", "--ca", lab.ca_path(),
                            "--server-name", SERVER_NAME, "--sessions", 30,
                            "--create-from", NEW_RESUME, "--concurrency", 8, "--timeout", 10,
                            timeout=60)
    by_source_ip = {r["source"]: r["server"] for r in probe["results"] if r["ok"]}
    check(len(by_source_ip) == 30, "the source-IP probe failed: %s" % brief(
        [r for r in probe["results"] if not r["ok"]]))
    would_move = sum(1 for r in new if by_source_ip[r["source"]] != r["server"])
    check(would_move > 0, "every phase-2 resumption address maps to its session's server by "
          "source IP anyway: the phase proves nothing about key names")
    phase2 = lab.wait_stats(lambda s: stats_delta(phase1, s)["bindings_bound"] >=
                            len(new_results) + 30, 5, "the probe's bindings")

    # Legacy session IDs: seen, counted, never stored.
    total = stats_delta(start, phase2)
    connections = len(results) + len(new_results) + 30
    check(total["tls13_session_id_ignored"] > 0, "tls13_session_id_ignored did not rise")
    check(total["learned_session_id"] == 0 and phase2["ssl_session"]["learned_session_id"] == 0,
          "learned_session_id rose by %d in a TLS 1.3-only run: legacy session IDs were "
          "stored" % total["learned_session_id"])
    check(phase2["ssl_session"]["sessions_live"] == len(BACKENDS),
          "the session table holds %d entries, expected only the %d key names"
          % (phase2["ssl_session"]["sessions_live"], len(BACKENDS)))
    check(total["bindings_bound"] == connections, "bindings_bound +%d, connections %d"
          % (total["bindings_bound"], connections))
    full_handshakes = connections - len(same) - len(new)
    check(total["fallback_new_session"] == full_handshakes and
          total["fallback_unknown_session"] == 0,
          "first connections (a random legacy session ID, no PSK) must count as "
          "fallback_new_session: +%d for %d, fallback_unknown_session +%d"
          % (total["fallback_new_session"], full_handshakes, total["fallback_unknown_session"]))

    per_backend = {}
    for r in same:
        per_backend[r["server"]] = per_backend.get(r["server"], 0) + 1
    return {
        "phase 1, same address": "%d addresses x %d sessions x %d resumptions: %d/%d on the "
                                 "session's server and resumed" % (
                                     len(SAME_SOURCES), SAME_SESSIONS, SAME_RESUMES,
                                     len(same), len(same)),
        "phase 1 resumptions per backend": ", ".join("%s %d" % kv
                                                     for kv in sorted(per_backend.items())),
        "phase 1 counters (rise)": "fallback_tls13_unknown_ticket +%d, hit_key_name +%d, "
                                   "learned_key_name +%d" % (
                                       d1["fallback_tls13_unknown_ticket"], d1["hit_key_name"],
                                       d1["learned_key_name"]),
        "phase 2, new addresses": "%d sessions x %d resumptions from other new addresses: "
                                  "%d/%d on the session's server and resumed, in %.2f s"
                                  % (NEW_SESSIONS, NEW_RESUMES, len(new), len(new),
                                     out["elapsed_s"]),
        "phase 2 by source IP alone": "%d of %d resumptions would have reached another server "
                                      "(probed: a first connection from each address)"
                                      % (would_move, len(new)),
        "phase 2 counters (rise)": "hit_key_name +%d, fallback_tls13_unknown_ticket +%d, "
                                   "learned_key_name +%d" % (
                                       d2["hit_key_name"], d2["fallback_tls13_unknown_ticket"],
                                       d2["learned_key_name"]),
        "legacy session IDs": "%d TLS 1.3 connections, tls13_session_id_ignored +%d, "
                              "learned_session_id +%d, session table %d entries (key names)"
                              % (connections, total["tls13_session_id_ignored"],
                                 total["learned_session_id"],
                                 phase2["ssl_session"]["sessions_live"]),
        "first connections counted as": "fallback_new_session +%d, fallback_unknown_session +%d"
                                        % (total["fallback_new_session"],
                                           total["fallback_unknown_session"]),
    }


if __name__ == "__main__":
    sys.exit(run_scenario("test_ssl_tls13", scenario, CONFIG))
