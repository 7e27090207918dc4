#!/usr/bin/env python3
"""test_syn_flood: SYN floods and a forged-ACK flood cost no state, at ssl-session and source-ip VIPs.

User-visible behaviour (tests/e2e/configs/syn_flood.json), while legitimate TLS
clients keep connecting to the flooded VIP from tl-client1 (batches of 40
addresses, one connection each), every flood sent by tether-flood on r-pub in
tl-router from random ports of the unused lab addresses 203.0.113.210-254 (no
lab host: the SYN-ACKs go nowhere), addressed to the dataplane's MAC:
- ssl-session VIP 192.0.2.20:443: 2,100,000 SYNs at up to 150,000 a second
  (paced so that DPDK reads them all: at least 2,000,000 must be answered): every SYN received is answered with a cookie
  and creates nothing: flows_created rises only by the legitimate connections,
  bindings stay free, and at least 99.9 % of the legitimate handshakes started
  during the flood succeed;
- the same VIP, 500,000 bare ACKs with random numbers (forged cookie answers):
  none is accepted (cookies_valid rises only by the legitimate connections),
  each refused one counts in cookies_invalid, the RSTs they provoke are
  rate-limited;
- source-ip VIP 192.0.2.21:443 on "syn_cookies": "always": the same 2,100,000
  SYNs create no flow either (0 beyond the legitimate connections, which come
  in by cookie and are spliced to the backend source-ip persistence picks),
  >= 99.9 % of legitimate handshakes succeed; 500,000 forged ACKs there: none
  accepted, and no RST (a plain service stays silent);
- source-ip VIP 192.0.2.22:443 on the default "auto": 1,000,000 SYNs; the
  overload ladder turns cookies on when 1,024 half-open flows pile up
  (overload.half_open), so the flood creates at most that many flows, the rest
  of its SYNs are answered by cookies, >= 99.9 % of legitimate handshakes
  succeed, and once the flood's half-open flows have timed out (5 s here) the
  VIP is back on its plain path (level "none");
- afterwards every VIP serves as before, and the dataplane is alive.

tether-flood paces itself on the dataplane's public rx_packets (--settle): a full
af_packet ring on a busy machine would otherwise drop frames before DPDK reads
them (a loaded run without it read 73 %).  The test reports how many SYNs the
dataplane answered against how many were sent.  An ASan+UBSan build (scripts/test.sh --sanitize) runs every
flood at a third of the rate and count.

Run as root: python3 tests/e2e/test_syn_flood.py --build-dir BUILD
"""

import json
import sys
import time

from tetherlab import (REPO, ClientLoop, check, client_range, parse_args, run_scenario,
                       sanitized, stats_delta)

CONFIG = REPO / "tests" / "e2e" / "configs" / "syn_flood.json"
SSL_TARGET = "192.0.2.20:443"
COOKIE_TARGET = "192.0.2.21:443"             # source-ip, syn_cookies always
AUTO_TARGET = "192.0.2.22:443"               # source-ip, syn_cookies auto (the default)
SERVER_NAME = "cp.assist.example"
SYNS, SYN_RATE = 2100000, 150000
SYNS_RECEIVED_MIN = 2000000                  # what must reach the dataplane
AUTO_SYNS = 1000000
HALF_OPEN_LIMIT = 1024                       # overload.half_open in the config
SYN_TIMEOUT_S = 5                            # flows.tcp_syn_timeout_s in the config
ACKS, ACK_RATE = 500000, 150000
FLOOD_SOURCES = "203.0.113.210-203.0.113.254"   # no lab host: the SYN-ACKs go nowhere
LEGIT_SOURCES = 40
SUCCESS_MIN = 0.999
SANITIZED_SLOWDOWN = 3                       # an ASan+UBSan dataplane: a third of the
                                             # rate and count (scripts/test.sh --sanitize)


def flood(lab, kind, count, rate, target):
    """Runs tether-flood in tl-router on r-pub; returns its report."""
    mac = lab.dataplane_command({"command": "status"})["ports"]["public"]["mac"]
    binary = lab.build_dir / "tests" / "tether-flood"
    proc = lab.exec("router", binary, "--interface", "r-pub", "--mac", mac, "--kind", kind,
                    "--count", count, "--rate", rate, "--seconds", 60, "--target", target,
                    "--sources", FLOOD_SOURCES, "--seed", 7,
                    # every 256 frames, wait until DPDK has read them: a full
                    # af_packet ring (a busy machine) would lose them uncounted
                    "--settle", lab.dataplane_socket, "--batch", 256, check=False, timeout=90)
    report = json.loads(proc.stdout or "{}")
    check(proc.returncode == 0 and report.get("sent") == count,
          "tether-flood %s: %s %s" % (kind, report, proc.stderr[-500:]))
    return report


def legit_during(lab, target, action):
    """Runs action() while legitimate TLS clients connect to target; returns (action's
    result, connections started during it, failures, before and after stats)."""
    loop = ClientLoop(client_range(LEGIT_SOURCES), target, tls=True, ca=lab.ca_path(),
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


def syn_flood(lab, target, syns, rate, received_min, created_max):
    """A SYN flood at target while legitimate clients connect to it; checks that
    it created at most created_max flows beyond the legitimate ones and that the
    dataplane answered at least received_min SYNs by cookie; returns a figure."""
    report, during, failed, legit, before, after = legit_during(
        lab, target, lambda: flood(lab, "syn", syns, rate, target))
    ratio = check_success(during, failed, "SYN flood at %s" % target)
    delta = stats_delta(before, after)
    received = delta["cookies_sent"]
    created = after["flows"]["created"] - before["flows"]["created"]
    check(received >= received_min, "the dataplane answered only %d of %d SYNs sent at %s "
          "with cookies (%d wanted)" % (received, syns, target, received_min))
    check(created <= len(legit) + created_max,
          "flows_created rose by %d during the SYN flood at %s, with %d legitimate "
          "connections: the flood created %d flows (%d allowed)"
          % (created, target, len(legit), created - len(legit), created_max))
    check(delta["cookies_valid"] <= len(legit), "cookies_valid rose by %d for %d legitimate "
          "connections" % (delta["cookies_valid"], len(legit)))
    check(after["ssl_session"]["bindings_active"] <= LEGIT_SOURCES,
          "%d bindings active after the flood" % after["ssl_session"]["bindings_active"])
    figure = ("%d SYNs in %.1f s (%.0f/s); answered by cookie %d; flows created %d for %d "
              "legitimate connections; legitimate handshakes during it %d/%d ok (%.2f %%)"
              % (report["sent"], report["seconds"], report["sent"] / report["seconds"],
                 received, created, len(legit), len(during) - len(failed), len(during),
                 100 * ratio))
    return figure, before, after


def ack_flood(lab, target, acks, rate, expect_rst):
    """Forged cookie answers at target: none accepted; returns a figure."""
    report, during, failed, legit, before, after = legit_during(
        lab, target, lambda: flood(lab, "ack", acks, rate, target))
    check_success(during, failed, "forged-ACK flood at %s" % target)
    delta = stats_delta(before, after)
    check(delta["cookies_valid"] <= len(legit), "cookies_valid rose by %d for %d legitimate "
          "connections: a forged ACK was accepted" % (delta["cookies_valid"], len(legit)))
    check(delta["cookies_invalid"] >= acks // 2, "only %d forged ACKs were refused of %d sent"
          % (delta["cookies_invalid"], acks))
    created = after["flows"]["created"] - before["flows"]["created"]
    check(created <= len(legit), "flows_created rose by %d for %d legitimate connections"
          % (created, len(legit)))
    if not expect_rst:
        check(delta["rst_sent"] == 0, "a plain service answered forged ACKs with %d RSTs"
              % delta["rst_sent"])
    return ("%d forged ACKs in %.1f s; refused %d (cookies_invalid), accepted 0 "
            "(cookies_valid +%d = legitimate); RSTs sent %d, rate-limited %d; "
            "legitimate handshakes during it %d/%d ok"
            % (report["sent"], report["seconds"], delta["cookies_invalid"],
               delta["cookies_valid"], delta["rst_sent"], delta["rst_rate_limited"],
               len(during) - len(failed), len(during)))


def scenario(lab):
    syns, syn_rate, syns_received_min, auto_syns, acks, ack_rate = \
        SYNS, SYN_RATE, SYNS_RECEIVED_MIN, AUTO_SYNS, ACKS, ACK_RATE
    if sanitized(lab.build_dir):
        syns, syn_rate, syns_received_min, auto_syns, acks, ack_rate = \
            (n // SANITIZED_SLOWDOWN
             for n in (syns, syn_rate, syns_received_min, auto_syns, acks, ack_rate))
    figures = {}
    figures["SYN flood, ssl-session VIP"], _, _ = syn_flood(
        lab, SSL_TARGET, syns, syn_rate, syns_received_min, 0)
    figures["forged-ACK flood, ssl-session VIP"] = ack_flood(lab, SSL_TARGET, acks, ack_rate, True)
    figures["SYN flood, source-ip VIP, syn_cookies always"], _, _ = syn_flood(
        lab, COOKIE_TARGET, syns, syn_rate, syns_received_min, 0)
    figures["forged-ACK flood, source-ip VIP"] = ack_flood(lab, COOKIE_TARGET, acks, ack_rate,
                                                          False)

    # the default: cookies once the half-open flows reach the limit
    figure, before, after = syn_flood(lab, AUTO_TARGET, auto_syns, syn_rate,
                                      auto_syns * 9 // 10 - HALF_OPEN_LIMIT, HALF_OPEN_LIMIT)
    ladder = {k: after["overload"][k] - before["overload"][k]
              for k in ("entered_syn_cookies", "syns_cookied")}
    check(ladder["entered_syn_cookies"] >= 1, "the ladder never turned cookies on: %s" % ladder)
    calm = lab.wait_stats(lambda s: s["overload"]["level"] == "none", SYN_TIMEOUT_S + 10,
                          "the overload level back to none after the flood")
    figures["SYN flood, source-ip VIP, syn_cookies auto"] = (
        "%s; cookies turned on %d time(s), %d SYNs answered by cookie because of it; "
        "level back to none, half-open %d" % (figure, ladder["entered_syn_cookies"],
                                             ladder["syns_cookied"], calm["overload"]["half_open"]))

    # after: business as usual at every VIP
    for target in (SSL_TARGET, COOKIE_TARGET, AUTO_TARGET):
        results = lab.run_clients(client_range(50, first=50), target, tls=True, ca=lab.ca_path(),
                                  server_name=SERVER_NAME, per_source=1, timeout=10,
                                  concurrency=8)
        bad = [r for r in results if not r["ok"]]
        check(not bad, "%d of %d connections to %s failed after the floods"
              % (len(bad), len(results), target))
        figures["after, %s" % target] = "%d/%d TLS connections ok" % (len(results) - len(bad),
                                                                    len(results))
    return figures


if __name__ == "__main__":
    sys.exit(run_scenario("test_syn_flood", scenario, CONFIG))
