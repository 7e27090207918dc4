#!/usr/bin/env python3
"""test_syn_flood: a SYN flood and a forged-ACK flood at an ssl-session VIP cost no state.

User-visible behaviour, on the ssl-session VIP 192.0.2.20:443
(tests/e2e/configs/ssl_session.json), while legitimate TLS clients keep
connecting from tl-client1 (batches of 40 addresses, one connection each):
- 2,600,000 SYNs (at least 2,000,000 of them reaching DPDK) from random ports of the unused lab addresses
  203.0.113.210-254 (tether-flood on r-pub in tl-router, addressed to the
  dataplane's MAC, at most 150,000 a second): every SYN the dataplane receives
  is answered with a cookie and creates nothing: flows_created rises only by
  the legitimate connections, bindings stay free, and at least 99.9 % of the
  legitimate handshakes started during the flood succeed;
- 500,000 bare ACKs with random sequence and acknowledgment numbers (forged
  cookie answers): none is accepted (cookies_valid rises only by the
  legitimate connections, each refused ACK counts in cookies_invalid), and
  the RSTs they provoke are rate-limited;
- afterwards the VIP serves as before, and the dataplane is alive.

Frames the kernel drops before DPDK reads them (a full af_packet ring) are not
the dataplane's to count: the test reports how many SYNs it received
(cookies_sent) against how many were sent.  An ASan+UBSan build (scripts/test.sh
--sanitize) runs both floods at a third of the rate and count.

Run as root: python3 tests/e2e/test_syn_flood.py --build-dir BUILD
"""

import json
import sys
import time

from tetherlab import (REPO, ClientLoop, check, client_range, parse_args, run_scenario,
                       sanitized, stats_delta)

CONFIG = REPO / "tests" / "e2e" / "configs" / "ssl_session.json"
TARGET = "192.0.2.20:443"
SERVER_NAME = "cp.assist.example"
SYNS, SYN_RATE = 2600000, 150000
SYNS_RECEIVED_MIN = 2000000                  # what must reach the dataplane
ACKS, ACK_RATE = 500000, 150000
FLOOD_SOURCES = "203.0.113.210-203.0.113.254"   # no lab host: the SYN-ACKs go nowhere
LEGIT_SOURCES = 40
SUCCESS_MIN = 0.999
SANITIZED_SLOWDOWN = 3                       # an ASan+UBSan dataplane: a third of the
                                             # rate and count (scripts/test.sh --sanitize)


def flood(lab, kind, count, rate):
    """Runs tether-flood in tl-router on r-pub; returns its report."""
    mac = lab.dataplane_command({"command": "status"})["ports"]["public"]["mac"]
    binary = lab.build_dir / "tests" / "tether-flood"
    proc = lab.exec("router", binary, "--interface", "r-pub", "--mac", mac, "--kind", kind,
                    "--count", count, "--rate", rate, "--seconds", 60, "--target", TARGET,
                    "--sources", FLOOD_SOURCES, "--seed", 7, check=False, timeout=90)
    report = json.loads(proc.stdout or "{}")
    check(proc.returncode == 0 and report.get("sent") == count,
          "tether-flood %s: %s %s" % (kind, report, proc.stderr[-500:]))
    return report


def legit_during(lab, action):
    """Runs action() while legitimate TLS clients connect; returns (action's result,
    connections started during it, failures, before and after stats)."""
    loop = ClientLoop(client_range(LEGIT_SOURCES), TARGET, tls=True, ca=lab.ca_path(),
                      server_name=SERVER_NAME, per_source=1, timeout=10, concurrency=8)
    loop.start()
    time.sleep(1.0)                         # the clients are running before the flood
    before = lab.stats()
    started = time.time()
    result = action()
    ended = time.time()
    batches = loop.stop()
    after = lab.stats()
    summary = ClientLoop.summary(batches)
    check(not summary["batch_errors"], "client batches failed: %s" % summary["batch_errors"][:2])
    during = ClientLoop.results(batches, started_after=started - 1.0, started_before=ended)
    failed = [r for r in during if not r["ok"]]
    all_results = [r for b in batches for r in b.get("results", [])]
    return result, during, failed, all_results, before, after


def check_success(during, failed, what):
    check(len(during) >= 100, "only %d legitimate connections ran during the %s"
          % (len(during), what))
    ratio = 1 - len(failed) / len(during)
    check(ratio >= SUCCESS_MIN, "%d of %d legitimate handshakes failed during the %s "
          "(%.2f %% succeeded); first: %s" % (len(failed), len(during), what, 100 * ratio,
                                              [r["error"] for r in failed[:3]]))
    return ratio


def scenario(lab):
    syns, syn_rate, syns_received_min, acks, ack_rate = \
        SYNS, SYN_RATE, SYNS_RECEIVED_MIN, ACKS, ACK_RATE
    if sanitized(lab.build_dir):
        syns, syn_rate, syns_received_min, acks, ack_rate = \
            (n // SANITIZED_SLOWDOWN for n in (syns, syn_rate, syns_received_min, acks, ack_rate))
    # the SYN flood
    report, during, failed, legit, before, after = legit_during(
        lab, lambda: flood(lab, "syn", syns, syn_rate))
    ratio = check_success(during, failed, "SYN flood")
    delta = stats_delta(before, after)
    received = delta["cookies_sent"]
    created = after["flows"]["created"] - before["flows"]["created"]
    check(received >= syns_received_min, "the dataplane answered only %d of %d SYNs sent "
          "(%d wanted): the rest were lost before DPDK read them" % (received, syns,
                                                                    syns_received_min))
    check(created <= len(legit), "flows_created rose by %d during the SYN flood, with %d "
          "legitimate connections: the flood created state" % (created, len(legit)))
    check(delta["cookies_valid"] <= len(legit), "cookies_valid rose by %d for %d legitimate "
          "connections" % (delta["cookies_valid"], len(legit)))
    check(after["ssl_session"]["bindings_active"] <= LEGIT_SOURCES,
          "%d bindings active after the flood" % after["ssl_session"]["bindings_active"])
    syn_figure = ("%d SYNs in %.1f s (%.0f/s); the dataplane answered %d with cookies; "
                  "flows created %d for %d legitimate connections; legitimate handshakes "
                  "during it %d/%d ok (%.2f %%)"
                  % (report["sent"], report["seconds"], report["sent"] / report["seconds"],
                     received, created, len(legit), len(during) - len(failed), len(during),
                     100 * ratio))

    # the forged-ACK flood
    report, during, failed, legit, before, after = legit_during(
        lab, lambda: flood(lab, "ack", acks, ack_rate))
    ratio = check_success(during, failed, "forged-ACK flood")
    delta = stats_delta(before, after)
    check(delta["cookies_valid"] <= len(legit), "cookies_valid rose by %d for %d legitimate "
          "connections: a forged ACK was accepted" % (delta["cookies_valid"], len(legit)))
    check(delta["cookies_invalid"] >= acks // 2, "only %d forged ACKs were refused of %d sent"
          % (delta["cookies_invalid"], acks))
    created = after["flows"]["created"] - before["flows"]["created"]
    check(created <= len(legit), "flows_created rose by %d for %d legitimate connections"
          % (created, len(legit)))
    ack_figure = ("%d forged ACKs in %.1f s; refused %d (cookies_invalid), accepted 0 "
                  "(cookies_valid +%d = legitimate); RSTs sent %d, rate-limited %d; "
                  "legitimate handshakes during it %d/%d ok"
                  % (report["sent"], report["seconds"], delta["cookies_invalid"],
                     delta["cookies_valid"], delta["rst_sent"], delta["rst_rate_limited"],
                     len(during) - len(failed), len(during)))

    # after: business as usual
    results = lab.run_clients(client_range(50, first=50), TARGET, tls=True, ca=lab.ca_path(),
                              server_name=SERVER_NAME, per_source=1, timeout=10, concurrency=8)
    bad = [r for r in results if not r["ok"]]
    check(not bad, "%d of %d connections failed after the floods" % (len(bad), len(results)))
    return {"SYN flood": syn_figure, "forged-ACK flood": ack_figure,
            "after": "%d/%d TLS connections ok" % (len(results) - len(bad), len(results))}


if __name__ == "__main__":
    sys.exit(run_scenario("test_syn_flood", scenario, CONFIG))
