#!/usr/bin/env python3
"""test_inbound_rules: everything the edge does not serve is dropped, silently, counted.

User-visible behaviour (REQUIREMENTS.md, inbound rules):
 (a) TCP to a VIP port with no service (192.0.2.20:22) gets no answer at all:
     the connect times out (no RST, no ICMP), and drops.no_service rises;
 (b) the T10/portal service 192.0.2.10:443 is source-restricted to
     203.0.113.0/26: sources outside it (203.0.113.64, 203.0.113.100) get no
     answer and drops.acl_denied rises, while 203.0.113.20 and 203.0.113.63
     complete TLS; the same outside source still reaches 192.0.2.10:80, which
     has no restriction;
 (c) UDP to a VIP port without a service is dropped (no ICMP port
     unreachable comes back) and counted in drops.no_service, one per datagram.

Run as root: python3 tests/e2e/test_inbound_rules.py --build-dir BUILD
"""

import json
import sys
import threading
import time
import traceback

from tetherlab import REPO, Lab, check, parse_args, source_namespace, tail

CONFIG = REPO / "config" / "lab.json"
PORTAL_VIP = "192.0.2.10"
CP_VIP = "192.0.2.20"
ALLOWED = ["203.0.113.20", "203.0.113.63"]
DENIED = ["203.0.113.64", "203.0.113.100"]
NO_ANSWER_WAIT_S = 2.5                      # the SYN and one retransmission (at 1 s)
UDP_DATAGRAMS = 5

# Runs in a client namespace; prints one JSON object: what the probe saw.
PROBE = r'''
import json, socket, sys
kind, source, host, port, count, wait = sys.argv[1:7]
port, count, wait = int(port), int(count), float(wait)
if kind == "tcp":
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.settimeout(wait)
    try:
        sock.connect((host, port))
        outcome = "connected"
    except socket.timeout:
        outcome = "no answer"
    except OSError as e:
        outcome = "%s: %s" % (type(e).__name__, e)
else:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source, 0))
    sock.connect((host, port))
    sock.settimeout(wait)
    outcome = "no answer"
    try:
        for i in range(count):
            sock.send(b"tether-lab probe %d" % i)
        sock.recv(2048)
        outcome = "answered"
    except socket.timeout:
        pass
    except OSError as e:                     # ICMP port unreachable: ConnectionRefusedError
        outcome = "%s: %s" % (type(e).__name__, e)
print(json.dumps({"outcome": outcome}))
'''


def brief(results, count=3):
    """The first few client results, one line each, for a failure message."""
    return "; ".join("%s -> %s port %s peer %s: %s" % (r["source"], r["server"], r["port"],
                                                      r["peer"], r["error"] or "ok")
                     for r in results[:count])


def stats(lab):
    return lab.dataplane_command({"command": "stats"})


def service_stats(snapshot, name):
    return next(s for s in snapshot["services"] if s["name"] == name)


def wait_stats(lab, predicate, timeout, what, interval=0.05):
    """Polls the dataplane's stats until predicate(stats) holds; returns those stats.
    Raises AssertionError naming what on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        snapshot = stats(lab)
        if predicate(snapshot):
            return snapshot
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(interval)


def wait_ready(lab):
    """Waits until the dataplane has resolved every backend and its gateway (ARP):
    every backend neighbor_resolved, and one more address learned (the gateway)."""
    def ready(s):
        unique = {b["address"] for b in s["backends"]}
        return all(b["neighbor_resolved"] for b in s["backends"]) and \
            s["arp"]["learned"] >= len(unique) + 1
    wait_stats(lab, ready, 10, "the dataplane to resolve its backends and gateway by ARP")


def probe(lab, kind, source, host, port, count=1, wait=NO_ANSWER_WAIT_S):
    """Returns what a TCP connect or UDP send from source to host:port saw."""
    proc = lab.exec(source_namespace(source), sys.executable, "-c", PROBE, kind, source, host,
                    port, count, wait, timeout=wait + 10)
    return json.loads(proc.stdout)["outcome"]


def parallel(calls):
    """Runs the zero-argument callables at once; returns their results in order."""
    results = [None] * len(calls)

    def one(i):
        try:
            results[i] = calls[i]()
        except Exception as e:              # noqa: BLE001 - re-raised in the caller
            results[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        if isinstance(r, Exception):
            raise r
    return results


def drop(snapshot, reason):
    return snapshot["drops"][reason]


def scenario(lab):
    figures = {}

    # (a) and (b)'s refused sources at once: each waits for an answer that must not come.
    before = stats(lab)
    outcomes = parallel([lambda: probe(lab, "tcp", "203.0.113.30", CP_VIP, 22)] +
                        [lambda s=s: probe(lab, "tcp", s, PORTAL_VIP, 443) for s in DENIED])
    check(outcomes[0] == "no answer", "TCP to %s:22 (no service): expected no answer (no RST), "
          "got %r" % (CP_VIP, outcomes[0]))
    for source, outcome in zip(DENIED, outcomes[1:]):
        check(outcome == "no answer", "TCP from %s (outside allow_from) to %s:443: expected no "
              "answer, got %r" % (source, PORTAL_VIP, outcome))
    after = wait_stats(lab, lambda s: drop(s, "no_service") > drop(before, "no_service") and
                       drop(s, "acl_denied") - drop(before, "acl_denied") >= len(DENIED),
                       5, "drops.no_service and drops.acl_denied to rise")
    no_service = drop(after, "no_service") - drop(before, "no_service")
    acl_denied = drop(after, "acl_denied") - drop(before, "acl_denied")
    figures["(a) TCP %s:22" % CP_VIP] = "no answer within %.1f s (no RST); drops.no_service +%d " \
        "(SYN + retransmissions)" % (NO_ANSWER_WAIT_S, no_service)
    figures["(b) refused"] = "%s -> %s:443: no answer; drops.acl_denied +%d" \
        % (", ".join(DENIED), PORTAL_VIP, acl_denied)
    portal = service_stats(after, "portal-https")["new_flows"] - \
        service_stats(before, "portal-https")["new_flows"]
    check(portal == 0, "portal-https created %d flows for refused sources" % portal)

    # (b) allowed sources complete TLS; a refused one still reaches the unrestricted port 80.
    allowed = lab.run_clients(ALLOWED, PORTAL_VIP + ":443", tls=True, ca=lab.ca_path(),
                              server_name="portal.assist.example", per_source=3, timeout=10)
    failed = [r for r in allowed if not r["ok"]]
    check(not failed, "allowed sources failed on %s:443: %s" % (PORTAL_VIP, brief(failed)))
    plain = lab.run_clients(DENIED[-1:], PORTAL_VIP + ":80", per_source=2, timeout=10)
    check(all(r["ok"] for r in plain), "%s -> %s:80 (no allow_from) failed: %s"
          % (DENIED[-1], PORTAL_VIP, brief(plain)))
    figures["(b) allowed"] = "%s -> %s:443: %d/%d TLS ok (%s); %s -> :80 ok (%s)" % (
        ", ".join(ALLOWED), PORTAL_VIP, len(allowed) - len(failed), len(allowed),
        ", ".join(sorted({r["server"] for r in allowed})), DENIED[-1],
        ", ".join(sorted({r["server"] for r in plain})))

    # (c) UDP to a VIP port without a service: one drop per datagram, nothing back.
    before = stats(lab)
    outcome = probe(lab, "udp", "203.0.113.31", CP_VIP, 53, count=UDP_DATAGRAMS, wait=1.5)
    check(outcome == "no answer", "UDP to %s:53: expected no answer (no ICMP), got %r"
          % (CP_VIP, outcome))
    after = wait_stats(lab, lambda s: drop(s, "no_service") - drop(before, "no_service")
                       >= UDP_DATAGRAMS, 5, "drops.no_service to count the UDP datagrams")
    udp = drop(after, "no_service") - drop(before, "no_service")
    check(udp == UDP_DATAGRAMS, "drops.no_service rose by %d for %d UDP datagrams"
          % (udp, UDP_DATAGRAMS))
    figures["(c) UDP %s:53" % CP_VIP] = "%d datagrams: no answer, no ICMP; drops.no_service +%d" \
        % (UDP_DATAGRAMS, udp)
    figures["drops (non-zero)"] = str({k: v for k, v in after["drops"].items() if v})
    return figures


def main():
    args = parse_args(__doc__.split("\n", 1)[0])
    name = "test_inbound_rules"
    started = time.monotonic()
    try:
        with Lab() as lab:
            lab.start_dataplane(args.build_dir, CONFIG, lab.state_dir() / "dataplane.sock")
            try:
                wait_ready(lab)
                figures = scenario(lab)
                check(lab.dataplane.poll() is None, "tether-dataplane exited during the test")
            except BaseException:
                print("--- tether-dataplane log (tail) ---\n%s" % tail(lab.dataplane_log(), 30),
                      file=sys.stderr)
                raise
    except AssertionError as e:
        print("FAIL %s: %s" % (name, e), file=sys.stderr)
        return 1
    except Exception:                       # noqa: BLE001 - setup trouble, reported whole
        traceback.print_exc()
        print("ERROR %s: the lab or the dataplane failed (above)" % name, file=sys.stderr)
        return 1
    print("PASS %s (%.1f s)" % (name, time.monotonic() - started))
    for key, value in figures.items():
        print("  %-32s %s" % (key + ":", value))
    return 0


if __name__ == "__main__":
    sys.exit(main())
