#!/usr/bin/env python3
"""test_ssl_session_ids: TLS 1.2 sessions resumed by ID from new addresses stay on their server.

User-visible behaviour: on an ssl-session VIP whose fallback is `none`
(192.0.2.20:443, service ssl-strict over be1..be4, tests/e2e/configs/
ssl_session.json), 500 TLS 1.2 sessions with tickets off (so the servers
resume by session ID only), each resumed 3 times, every resumption from a
different client address than the one that created the session: all 2,000
connections succeed, and all 1,500 resumptions land on the backend that
created the session and are resumed there (the client and the server both
say so).  With fallback `none` nothing but the session ID can do that: a
5-tuple hash would find the creator one time in four.  The dataplane agrees:
hit_session_id counts every resumption, the first connections are
fallback_new_session, learned_session_id > 0, every connection cost one
cookie that validated once, and no ACK was refused.

Run as root: python3 tests/e2e/test_ssl_session_ids.py --build-dir BUILD
"""

import sys

from tetherlab import REPO, check, run_scenario, stats_delta

CONFIG = REPO / "tests" / "e2e" / "configs" / "ssl_session.json"
TARGET = "192.0.2.20:443"                   # ssl-strict: ssl-session, fallback none
SERVER_NAME = "cp.assist.example"           # every backend holds *.assist.example
SESSIONS, RESUMES = 500, 3
CREATE_FROM = "203.0.113.10-203.0.113.59"   # tl-client1
RESUME_FROM = "203.0.113.60-203.0.113.109"  # tl-client1, never a creator
TIME_LIMIT_S = 60


def brief(results, count=3):
    """The first few client results, one line each, for a failure message."""
    return "; ".join("session %s attempt %s from %s -> %s (session of %s) reused=%s: %s"
                     % (r["session"], r["attempt"], r["source"], r["server"], r["session_from"],
                        r["reused"], r["error"] or "ok") for r in results[:count])


def check_sessions(results):
    """Every resumption: another address than its creator's, same server, resumed."""
    creators = {r["session"]: r for r in results if r["attempt"] == 0}
    resumptions = [r for r in results if r["attempt"] > 0]
    check(len(creators) == SESSIONS, "%d full handshakes, expected %d" % (len(creators), SESSIONS))
    check(len(resumptions) == SESSIONS * RESUMES, "%d resumptions, expected %d"
          % (len(resumptions), SESSIONS * RESUMES))
    same_source = [r for r in resumptions if r["source"] == creators[r["session"]]["source"]]
    check(not same_source, "the client resumed from the creating address (test setup): %s"
          % brief(same_source))
    moved = [r for r in resumptions if r["server"] != creators[r["session"]]["server"]]
    check(not moved, "%d of %d resumptions left the backend that created the session; first: %s"
          % (len(moved), len(resumptions), brief(moved)))
    not_reused = [r for r in resumptions if not (r["reused"] and r["server_reused"])]
    check(not not_reused, "%d of %d resumptions were not resumed (client or server view); "
          "first: %s" % (len(not_reused), len(resumptions), brief(not_reused)))
    wrong = [r for r in results if r["version"] != "TLSv1.2" or r["ticket_length"] != 0
             or r["session_id_length"] != 32]
    check(not wrong, "connections that were not TLS 1.2 with a 32-byte session ID and no "
          "ticket: %s" % brief(wrong))
    per_backend = {}
    for r in creators.values():
        per_backend[r["server"]] = per_backend.get(r["server"], 0) + 1
    return per_backend


def scenario(lab):
    before = lab.stats()
    out = lab.test_client("--target", TARGET, "--tls", "1.2", "--tickets", "off",
                          "--ca", lab.ca_path(), "--server-name", SERVER_NAME,
                          "--sessions", SESSIONS, "--resumes", RESUMES,
                          "--create-from", CREATE_FROM, "--resume-from", RESUME_FROM,
                          "--concurrency", 16, "--timeout", 10, timeout=TIME_LIMIT_S)
    summary, results = out["summary"], out["results"]
    total = SESSIONS * (1 + RESUMES)
    resumptions = SESSIONS * RESUMES
    failed = [r for r in results if not r["ok"]]
    check(summary["connections"] == total and not failed,
          "%d of %d connections failed (%d reported); first: %s"
          % (len(failed), total, summary["connections"], brief(failed)))
    per_backend = check_sessions(results)
    check(summary["same_backend_as_creator"] == resumptions and summary["reused"] == resumptions,
          "client summary: %s" % summary)

    after = lab.wait_stats(lambda s: stats_delta(before, s)["hit_session_id"] >= resumptions,
                           5, "hit_session_id to count %d resumptions (client saw all of "
                           "them stick)" % resumptions)
    delta = stats_delta(before, after)
    check(delta["learned_session_id"] > 0, "learned_session_id did not rise: %s" % delta)
    check(delta["fallback_new_session"] == SESSIONS,
          "fallback_new_session rose by %d, expected %d (one per full handshake)"
          % (delta["fallback_new_session"], SESSIONS))
    check(delta["fallback_unknown_session"] == 0 and delta["fallback_backend_down"] == 0,
          "resumptions fell back: %s" % delta)
    check(delta["bindings_bound"] == total, "bindings_bound rose by %d, expected %d"
          % (delta["bindings_bound"], total))
    check(delta["cookies_invalid"] == 0 and delta["rst_sent"] == 0,
          "cookies refused or RSTs sent during an ordinary run: %s" % delta)
    check(delta["cookies_sent"] == total and delta["cookies_valid"] == total,
          "one cookie per connection: cookies_sent +%d, cookies_valid +%d for %d connections"
          % (delta["cookies_sent"], delta["cookies_valid"], total))

    seconds = out["elapsed_s"]
    return {
        "connections": "%d/%d ok in %.2f s (%.0f conn/s), TLS 1.2, tickets off, verified as %s"
                       % (summary["ok"], total, seconds, total / seconds, SERVER_NAME),
        "resumptions from another address": "%d/%d on the creating backend, %d/%d reused "
                                            "(client and server)"
                                            % (summary["same_backend_as_creator"], resumptions,
                                               summary["reused"], resumptions),
        "sessions created per backend": ", ".join("%s %d" % kv
                                                  for kv in sorted(per_backend.items())),
        "ssl_session counters (rise)": ", ".join(
            "%s +%d" % (k, delta[k]) for k in ("hit_session_id", "hit_ticket", "hit_key_name",
                                               "fallback_new_session", "learned_session_id",
                                               "bindings_bound", "cookies_sent",
                                               "cookies_valid")),
        "session table": "%d entries live" % after["ssl_session"]["sessions_live"],
    }


if __name__ == "__main__":
    sys.exit(run_scenario("test_ssl_session_ids", scenario, CONFIG))
