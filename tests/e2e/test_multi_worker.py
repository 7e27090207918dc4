#!/usr/bin/env python3
"""test_multi_worker: two worker lcores forward as one balancer.

User-visible behaviour: with "workers": 2 (tests/e2e/configs/multi_worker.json;
af_packet with two queue pairs on each port, whose kernel fanout spreads
frames by its own hash, so both workers receive frames of every kind):
- 300 TLS 1.2 sessions to the ssl-session VIP 192.0.2.20:443 (fallback none),
  each resumed twice from other client addresses than the creator's: every
  connection succeeds and every resumption lands on, and is resumed by, the
  creating backend.  The resuming address is hashed to the other worker about
  half the time, so this holds only if a session learned by one worker reaches
  the other (worker_share_session);
- 150 client addresses x 4 TLS connections to the source-ip VIP 192.0.2.30:443:
  all succeed, each address on one backend;
- the dataplane agrees: two workers, each created flows, frames were handed
  between them (received == handed off: none lost), no handoff_full drops,
  no message lost, no cookie refused.

EAL runs three lcores on this 2-CPU machine (main and worker 1 share CPU 0;
the lab config's idle_sleep_us lets them).

Run as root: python3 tests/e2e/test_multi_worker.py --build-dir BUILD
"""

import sys

from tetherlab import REPO, check, client_range, run_scenario, stats_delta

CONFIG = REPO / "tests" / "e2e" / "configs" / "multi_worker.json"
EAL = ("--lcores=0@0,1@0,2@1",)
SSL_TARGET = "192.0.2.20:443"
SOURCE_IP_TARGET = "192.0.2.30:443"
SERVER_NAME = "cp.assist.example"
SESSIONS, RESUMES = 300, 2
CREATE_FROM = "203.0.113.10-203.0.113.59"
RESUME_FROM = "203.0.113.60-203.0.113.109"
SOURCES, PER_SOURCE = 150, 4


def brief(results, count=3):
    return "; ".join("%s -> %s: %s" % (r.get("source"), r.get("server"), r.get("error") or "ok")
                     for r in results[:count])


def check_ssl_sessions(lab):
    out = lab.test_client("--target", SSL_TARGET, "--tls", "1.2", "--tickets", "off",
                          "--ca", lab.ca_path(), "--server-name", SERVER_NAME,
                          "--sessions", SESSIONS, "--resumes", RESUMES,
                          "--create-from", CREATE_FROM, "--resume-from", RESUME_FROM,
                          "--concurrency", 16, "--timeout", 10, timeout=90)
    summary, results = out["summary"], out["results"]
    total, resumptions = SESSIONS * (1 + RESUMES), SESSIONS * RESUMES
    failed = [r for r in results if not r["ok"]]
    check(summary["connections"] == total and not failed,
          "%d of %d TLS connections failed; first: %s" % (len(failed), total, brief(failed)))
    creators = {r["session"]: r for r in results if r["attempt"] == 0}
    moved = [r for r in results if r["attempt"] > 0
             and r["server"] != creators[r["session"]]["server"]]
    check(not moved, "%d of %d resumptions from another address left the creating backend "
          "(a session learned on one worker not known on the other?); first: %s"
          % (len(moved), resumptions, brief(moved)))
    check(summary["reused"] == resumptions, "%d of %d resumptions were resumed"
          % (summary["reused"], resumptions))
    return "%d/%d ok in %.1f s, %d/%d resumptions from other addresses on the creator" % (
        summary["ok"], total, out["elapsed_s"], resumptions - len(moved), resumptions)


def check_source_ip(lab):
    results = lab.run_clients(client_range(SOURCES), SOURCE_IP_TARGET, tls=True,
                              ca=lab.ca_path(), server_name=SERVER_NAME,
                              per_source=PER_SOURCE, order="interleaved", concurrency=16,
                              timeout=10)
    total = SOURCES * PER_SOURCE
    failed = [r for r in results if not r["ok"]]
    check(len(results) == total and not failed, "%d of %d source-ip connections failed; "
          "first: %s" % (len(failed), total, brief(failed)))
    by_source = {}
    for r in results:
        by_source.setdefault(r["source"], set()).add(r["server"])
    unsticky = {s: sorted(b) for s, b in by_source.items() if len(b) != 1}
    check(not unsticky, "%d addresses reached more than one backend: %s"
          % (len(unsticky), dict(list(unsticky.items())[:5])))
    return "%d/%d ok, %d addresses each on one backend" % (total - len(failed), total,
                                                          len(by_source))


def scenario(lab):
    before = lab.stats()
    check(before["steering"]["workers"] == 2, "the dataplane runs %s workers, expected 2"
          % before["steering"]["workers"])
    ssl_figure = check_ssl_sessions(lab)
    source_ip_figure = check_source_ip(lab)

    after = lab.stats()
    steering = after["steering"]
    per_worker = steering["per_worker"]
    check(all(w["flows_created"] > 0 for w in per_worker),
          "a worker created no flow: %s" % per_worker)
    check(steering["handed_off"] > 0, "no frame was handed between the workers: the fanout "
          "never put a frame on the wrong worker's queue? %s" % steering)
    check(steering["received_from_peers"] == steering["handed_off"],
          "handed off %d frames, received %d" % (steering["handed_off"],
                                                   steering["received_from_peers"]))
    check(after["drops"]["handoff_full"] == 0, "handoff_full drops: %d"
          % after["drops"]["handoff_full"])
    check(steering["messages_lost"] == 0, "worker messages lost: %d" % steering["messages_lost"])
    delta = stats_delta(before, after)
    check(delta["cookies_invalid"] == 0, "cookies refused: %s" % delta)
    check(delta["learned_session_id"] > 0, "no session learned: %s" % delta)
    return {
        "ssl-session (roaming resumptions)": ssl_figure,
        "source-ip": source_ip_figure,
        "flows created per worker": ", ".join(str(w["flows_created"]) for w in per_worker),
        "frames handed between workers": "%d (of %d received on the public port)"
                                         % (steering["handed_off"],
                                            after["ports"]["public"]["rx_packets"]),
    }


if __name__ == "__main__":
    sys.exit(run_scenario("test_multi_worker", scenario, CONFIG, extra_eal=EAL))
