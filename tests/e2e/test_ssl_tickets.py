#!/usr/bin/env python3
"""test_ssl_tickets: TLS 1.2 sessions resumed by ticket from new addresses stay on their server.

User-visible behaviour: on an ssl-session VIP whose fallback is `none`
(192.0.2.20:443, service ssl-strict over be1..be4, tests/e2e/configs/
ssl_session.json), 500 TLS 1.2 sessions with session tickets, each resumed 3
times, every resumption from a different client address than the one that
created the session: all 2,000 connections succeed, and all 1,500
resumptions land on the backend that issued the ticket and are resumed there.

Why this is the ticket path: OpenSSL gives a session that is issued a ticket
an empty session ID (the servers keep nothing to resume it by but the
ticket), and an OpenSSL client resuming it offers SHA-256(ticket) as its
session ID, which no server has echoed before that first resumption.  So
each session's first resumption can only be placed by the ticket learned
from the server's NewSessionTicket: hit_ticket >= 500.  The servers echo
that session ID when they resume, the dataplane learns it, and later
resumptions may hit by session ID; the test asserts the sum of hits.

Run as root: python3 tests/e2e/test_ssl_tickets.py --build-dir BUILD
"""

import sys

from tetherlab import REPO, check, run_scenario, stats_delta

CONFIG = REPO / "tests" / "e2e" / "configs" / "ssl_session.json"
TARGET = "192.0.2.20:443"                   # ssl-strict: ssl-session, fallback none
SERVER_NAME = "cp.assist.example"
SESSIONS, RESUMES = 500, 3
CREATE_FROM = "203.0.113.10-203.0.113.59"
RESUME_FROM = "203.0.113.60-203.0.113.109"
TIME_LIMIT_S = 60


def brief(results, count=3):
    return "; ".join("session %s attempt %s from %s -> %s (session of %s) reused=%s: %s"
                     % (r["session"], r["attempt"], r["source"], r["server"], r["session_from"],
                        r["reused"], r["error"] or "ok") for r in results[:count])


def check_sessions(results):
    """Every resumption: another address than its creator's, same server, resumed;
    every connection TLS 1.2 holding a ticket."""
    creators = {r["session"]: r for r in results if r["attempt"] == 0}
    resumptions = [r for r in results if r["attempt"] > 0]
    check(len(creators) == SESSIONS and len(resumptions) == SESSIONS * RESUMES,
          "%d full handshakes and %d resumptions, expected %d and %d"
          % (len(creators), len(resumptions), SESSIONS, SESSIONS * RESUMES))
    same_source = [r for r in resumptions if r["source"] == creators[r["session"]]["source"]]
    check(not same_source, "resumed from the creating address (test setup): %s"
          % brief(same_source))
    moved = [r for r in resumptions if r["server"] != creators[r["session"]]["server"]]
    check(not moved, "%d of %d resumptions left the backend that issued the ticket; first: %s"
          % (len(moved), len(resumptions), brief(moved)))
    not_reused = [r for r in resumptions if not (r["reused"] and r["server_reused"])]
    check(not not_reused, "%d of %d resumptions were not resumed; first: %s"
          % (len(not_reused), len(resumptions), brief(not_reused)))
    no_ticket = [r for r in results if r["version"] != "TLSv1.2" or not r["ticket_length"]]
    check(not no_ticket, "connections that were not TLS 1.2 with a ticket: %s" % brief(no_ticket))
    return {r["ticket_length"] for r in creators.values()}


def scenario(lab):
    before = lab.stats()
    out = lab.test_client("--target", TARGET, "--tls", "1.2", "--tickets", "on",
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
    ticket_lengths = check_sessions(results)
    check(summary["same_backend_as_creator"] == resumptions and summary["reused"] == resumptions,
          "client summary: %s" % summary)

    def hits(s):
        d = stats_delta(before, s)
        return d["hit_ticket"] + d["hit_session_id"] + d["hit_key_name"]
    after = lab.wait_stats(lambda s: hits(s) >= resumptions, 5,
                           "the hit counters to count %d resumptions" % resumptions)
    delta = stats_delta(before, after)
    check(delta["learned_ticket"] > 0, "learned_ticket did not rise: %s" % delta)
    check(delta["hit_ticket"] >= SESSIONS,
          "hit_ticket rose by %d: each of the %d sessions' first resumption can only be "
          "placed by its ticket (its session ID is SHA-256(ticket), never seen before)"
          % (delta["hit_ticket"], SESSIONS))
    check(delta["fallback_unknown_session"] == 0 and delta["fallback_backend_down"] == 0,
          "resumptions fell back: %s" % delta)
    check(delta["fallback_new_session"] == SESSIONS, "fallback_new_session rose by %d, expected "
          "%d" % (delta["fallback_new_session"], SESSIONS))
    check(delta["bindings_bound"] == total and delta["cookies_invalid"] == 0,
          "bindings_bound +%d (expected %d), cookies_invalid +%d"
          % (delta["bindings_bound"], total, delta["cookies_invalid"]))
    check(delta["cookies_sent"] == total and delta["cookies_valid"] == total,
          "one cookie per connection: cookies_sent +%d, cookies_valid +%d for %d connections"
          % (delta["cookies_sent"], delta["cookies_valid"], total))

    seconds = out["elapsed_s"]
    return {
        "connections": "%d/%d ok in %.2f s (%.0f conn/s), TLS 1.2 with tickets (%s bytes)"
                       % (summary["ok"], total, seconds, total / seconds,
                          "/".join(str(n) for n in sorted(ticket_lengths))),
        "resumptions from another address": "%d/%d on the issuing backend, %d/%d reused"
                                            % (summary["same_backend_as_creator"], resumptions,
                                               summary["reused"], resumptions),
        "hits (rise)": "ticket +%d, session ID +%d (echoed SHA-256(ticket)), key name +%d; "
                       "sum %d" % (delta["hit_ticket"], delta["hit_session_id"],
                                   delta["hit_key_name"], hits(after)),
        "learned (rise)": "ticket +%d, key name +%d, session ID +%d"
                          % (delta["learned_ticket"], delta["learned_key_name"],
                             delta["learned_session_id"]),
        "session table": "%d entries live" % after["ssl_session"]["sessions_live"],
    }


if __name__ == "__main__":
    sys.exit(run_scenario("test_ssl_tickets", scenario, CONFIG))
