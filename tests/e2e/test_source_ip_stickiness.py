#!/usr/bin/env python3
"""test_source_ip_stickiness: a client IP always reaches the same backend.

User-visible behaviour: 1,000 TLS connections from 200 client addresses
(5 each, interleaved so that every address comes back after the other 199) to
the shared CP VIP 192.0.2.20:443 (cp-shared: source-ip persistence over
be1..be3) all succeed; every client address is served by one backend only;
the three backends share the addresses fairly (each 24-43 %); in NAT mode the
backend sees the client's real address; the client talked to the VIP and
verified the backend's certificate by name (cp.assist.example, which every
backend certificate carries as *.assist.example).  The dataplane's counters
agree with what the clients saw.

Run as root: python3 tests/e2e/test_source_ip_stickiness.py --build-dir BUILD
"""

import sys
import time
import traceback

from tetherlab import REPO, Lab, check, client_range, parse_args, tail

CONFIG = REPO / "config" / "lab.json"
VIP = "192.0.2.20"
TARGET = VIP + ":443"
SERVICE = "cp-shared"
POOL = "cp"
BACKENDS = ("be1", "be2", "be3")
SOURCES = 200
PER_SOURCE = 5
SHARE_MIN, SHARE_MAX = 0.24, 0.43
SERVER_NAME = "cp.assist.example"


def brief(results, count=3):
    """The first few client results, one line each, for a failure message."""
    return "; ".join("%s -> %s port %s peer %s: %s" % (r["source"], r["server"], r["port"],
                                                      r["peer"], r["error"] or "ok")
                     for r in results[:count])


def stats(lab):
    return lab.dataplane_command({"command": "stats"})


def service_stats(snapshot, name):
    return next(s for s in snapshot["services"] if s["name"] == name)


def pool_backends(snapshot, pool):
    return {b["name"]: b for b in snapshot["backends"] if b["pool"] == pool}


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


def scenario(lab):
    before = stats(lab)
    started = time.monotonic()
    results = lab.run_clients(client_range(SOURCES), TARGET, tls=True, ca=lab.ca_path(),
                              server_name=SERVER_NAME, per_source=PER_SOURCE,
                              order="interleaved", concurrency=16, timeout=10)
    elapsed = time.monotonic() - started

    total = SOURCES * PER_SOURCE
    check(len(results) == total, "expected %d results, got %d" % (total, len(results)))
    failed = [r for r in results if not r["ok"]]
    check(not failed, "%d of %d TLS connections failed; first: %s"
          % (len(failed), total, brief(failed)))

    # NAT mode: the backend saw the client's own address, on the service port.
    wrong_peer = [r for r in results if (r["peer"] or "").rsplit(":", 1)[0] != r["source"]]
    check(not wrong_peer, "%d connections: the backend saw another peer than the client; "
          "first: %s" % (len(wrong_peer), brief(wrong_peer)))
    wrong_port = [r for r in results if r["port"] != 443]
    check(not wrong_port, "backend port is not 443: %s" % brief(wrong_port))
    not_tls = [r for r in results if not (r["tls"] or "").startswith("TLS")]
    check(not not_tls, "connections without TLS: %s" % brief(not_tls))

    # Stickiness: one backend per client address, every time.
    by_source = {}
    for r in results:
        by_source.setdefault(r["source"], set()).add(r["server"])
    unsticky = {s: sorted(b) for s, b in by_source.items() if len(b) != 1}
    check(not unsticky, "%d client addresses reached more than one backend: %s"
          % (len(unsticky), dict(list(unsticky.items())[:5])))
    check(len(by_source) == SOURCES, "results from %d sources, expected %d"
          % (len(by_source), SOURCES))
    sources_per_backend = {b: 0 for b in BACKENDS}
    for servers in by_source.values():
        (server,) = servers
        check(server in sources_per_backend, "unexpected backend %r" % server)
        sources_per_backend[server] += 1
    shares = {b: n / SOURCES for b, n in sources_per_backend.items()}
    unfair = {b: s for b, s in shares.items() if not SHARE_MIN <= s <= SHARE_MAX}
    check(not unfair, "backend share of client addresses outside %d-%d %%: %s"
          % (SHARE_MIN * 100, SHARE_MAX * 100, shares))

    # The dataplane agrees.  Its counters are read on the main lcore while the
    # worker runs: give them a moment to show every connection.
    service_before = service_stats(before, SERVICE)
    try:
        after = wait_stats(lab, lambda s: service_stats(s, SERVICE)["new_flows"] -
                           service_before["new_flows"] >= total, 5, "")
    except AssertionError:
        after = stats(lab)
    service_after = service_stats(after, SERVICE)
    new_flows = service_after["new_flows"] - service_before["new_flows"]
    hits = service_after["persist_hits"] - service_before["persist_hits"]
    misses = service_after["persist_misses"] - service_before["persist_misses"]
    check(new_flows >= total, "service %s counted %d new flows, expected >= %d"
          % (SERVICE, new_flows, total))
    backends_before, backends_after = pool_backends(before, POOL), pool_backends(after, POOL)
    per_backend = {n: backends_after[n]["new_flows"] - backends_before[n]["new_flows"]
                   for n in backends_after}
    check(sum(per_backend.values()) == new_flows,
          "per-backend new_flows %s sum to %d, the service counted %d"
          % (per_backend, sum(per_backend.values()), new_flows))
    connections_per_backend = {b: sum(1 for r in results if r["server"] == b) for b in BACKENDS}
    check(all(per_backend[b] >= connections_per_backend[b] for b in BACKENDS),
          "dataplane per-backend flows %s below what clients saw %s"
          % (per_backend, connections_per_backend))
    check(hits + misses == new_flows, "persistence hits %d + misses %d != new flows %d"
          % (hits, misses, new_flows))

    return {
        "connections": "%d/%d ok in %.1f s (%.0f conn/s), %d client IPs x %d, interleaved"
                       % (total - len(failed), total, elapsed, total / elapsed, SOURCES,
                          PER_SOURCE),
        "client IPs per backend": ", ".join("%s %d (%.1f %%)" % (b, sources_per_backend[b],
                                            shares[b] * 100) for b in BACKENDS),
        "connections per backend": ", ".join("%s %d" % (b, connections_per_backend[b])
                                             for b in BACKENDS),
        "client IPs that changed backend": "0 of %d" % SOURCES,
        "peer seen by backend": "client's own address in %d/%d" % (total, total),
        "TLS": "verified as %s; versions %s" % (SERVER_NAME,
                                                sorted({r["tls"] for r in results})),
        "dataplane cp-shared": "new_flows +%d, persist_hits +%d, persist_misses +%d"
                               % (new_flows, hits, misses),
        "dataplane pool cp new_flows": ", ".join("%s +%d" % kv
                                                 for kv in sorted(per_backend.items())),
        "drops during the run": str({k: v - before["drops"][k] for k, v in after["drops"].items()
                                     if v != before["drops"][k]} or "none"),
    }


def main():
    args = parse_args(__doc__.split("\n", 1)[0])
    name = "test_source_ip_stickiness"
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
