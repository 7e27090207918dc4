#!/usr/bin/env python3
"""test_ping_vip: the balancer answers ping for every VIP and its own address.

User-visible behaviour: from both client namespaces, ping (iputils) to each
VIP (192.0.2.10, .20, .21, .22, .23) and to the balancer's public address
198.51.100.2 gets every echo answered, from the address pinged; the
dataplane's icmp.echo_replies rises by exactly the number of requests.  A
ping to an address of the VIP range that is not a VIP (192.0.2.99) gets no
answer and is counted as drops.icmp_unhandled.

Run as root: python3 tests/e2e/test_ping_vip.py --build-dir BUILD
"""

import re
import sys
import threading
import time
import traceback

from tetherlab import REPO, Lab, check, parse_args, tail

CONFIG = REPO / "config" / "lab.json"
TARGETS = ["192.0.2.10", "192.0.2.20", "192.0.2.21", "192.0.2.22", "192.0.2.23", "198.51.100.2"]
SOURCES = {"client1": "203.0.113.10", "client2": "203.0.113.200"}
NOT_A_VIP = "192.0.2.99"
COUNT = 3


def stats(lab):
    return lab.dataplane_command({"command": "stats"})


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


def ping(lab, node, source, target, count=COUNT):
    """Pings target from source; returns (replies received, set of reply source addresses)."""
    proc = lab.exec(node, "ping", "-n", "-c", count, "-i", "0.2", "-W", "1", "-I", source, target,
                    check=False, timeout=count + 10)
    received = re.search(r"(\d+) received", proc.stdout)
    responders = set(re.findall(r"bytes from ([\d.]+)", proc.stdout))
    return (int(received.group(1)) if received else 0), responders, proc.stdout


def scenario(lab):
    before = stats(lab)
    jobs = [(node, source, target) for node, source in SOURCES.items() for target in TARGETS]
    outcome = {}

    def one(job):
        try:
            outcome[job] = ping(lab, *job)
        except Exception as e:              # noqa: BLE001 - reported below
            outcome[job] = (0, set(), "%s: %s" % (type(e).__name__, e))

    started = time.monotonic()
    threads = [threading.Thread(target=one, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    for job in jobs:
        received, responders, text = outcome[job]
        check(received == COUNT, "ping %s from %s (%s): %d of %d answered:\n%s"
              % (job[2], job[1], job[0], received, COUNT, text))
        check(responders == {job[2]}, "ping %s answered by %s" % (job[2], sorted(responders)))
    sent = COUNT * len(jobs)
    after = wait_stats(lab, lambda s: s["icmp"]["echo_replies"] - before["icmp"]["echo_replies"]
                       >= sent, 5, "icmp.echo_replies to count every reply")
    replies = after["icmp"]["echo_replies"] - before["icmp"]["echo_replies"]
    check(replies == sent, "icmp.echo_replies rose by %d for %d echo requests" % (replies, sent))

    before = after
    received, responders, text = ping(lab, "client1", SOURCES["client1"], NOT_A_VIP, count=2)
    check(received == 0, "ping %s (no VIP) was answered by %s" % (NOT_A_VIP, sorted(responders)))
    after = wait_stats(lab, lambda s: s["drops"]["icmp_unhandled"] -
                       before["drops"]["icmp_unhandled"] >= 2, 5,
                       "drops.icmp_unhandled to count the pings to %s" % NOT_A_VIP)
    unhandled = after["drops"]["icmp_unhandled"] - before["drops"]["icmp_unhandled"]
    check(after["icmp"]["echo_replies"] == before["icmp"]["echo_replies"],
          "the dataplane answered a ping to %s" % NOT_A_VIP)
    return {
        "answered": "%d/%d echo requests, %d targets x %d sources (%s) x %d, in %.1f s"
                    % (sent, sent, len(TARGETS), len(SOURCES), ", ".join(SOURCES.values()),
                       COUNT, elapsed),
        "targets": ", ".join(TARGETS),
        "icmp.echo_replies": "+%d" % replies,
        "not a VIP": "ping %s: 0/2 answered, drops.icmp_unhandled +%d" % (NOT_A_VIP, unhandled),
    }


def main():
    args = parse_args(__doc__.split("\n", 1)[0])
    name = "test_ping_vip"
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
