#!/usr/bin/env python3
"""test_pmtu: path-MTU discovery works through the NAT.

User-visible behaviour: with a 1280-byte link between the router and the
clients (br-cli, r-c1, r-c2 in tl-router) while the clients themselves stay
at 1500 (so they advertise MSS 1460 and the backends send 1500-byte
packets with DF), a 20 MB download through a VIP completes, every byte,
in bounded time -- over plain HTTP (192.0.2.20:80, source-ip), over TLS
(192.0.2.20:443, source-ip) and over TLS to a CP VIP with ssl-session
persistence (192.0.2.21:443, delayed binding: the dataplane splices the
client's connection to the backend's, so sequence numbers differ on the two
sides).  That needs the router's ICMP "fragmentation needed", addressed to
the VIP, to reach the backend translated -- addresses, ports and, for a
spliced connection, the quoted sequence number -- so that the backend
accepts it: the dataplane's icmp.errors_relayed rises, the serving backend's
route cache holds mtu 1280 for the client, and the backend counted no ICMP
as out of window (TcpExtOutOfWindowIcmps).  Every download is tried and
reported before the test fails.

Run as root: python3 tests/e2e/test_pmtu.py --build-dir BUILD
"""

import re
import sys
import time
import traceback

from tetherlab import REPO, Lab, check, parse_args, tail

CONFIG = REPO / "config" / "lab.json"
SMALL_MTU = 1280
ROUTER_LINKS = ("br-cli", "r-c1", "r-c2")
SIZE = 20 * 1000 * 1000
DOWNLOADS = [               # (what, source, VIP:port, TLS name or None for plain HTTP)
    ("HTTP, source-ip", "203.0.113.40", "192.0.2.20:80", None),
    ("TLS, source-ip", "203.0.113.160", "192.0.2.20:443", "cp.assist.example"),
    ("TLS, ssl-session (delayed binding)", "203.0.113.41", "192.0.2.21:443", "be1.lab.example"),
]
BACKENDS = ("be1", "be2", "be3")
STALL_S = 10                # a PMTU black hole shows as a read that stalls this long
TIME_LIMIT_S = 60


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


def link_mtu(lab, node, link):
    text = lab.exec(node, "ip", "-o", "link", "show", "dev", link).stdout
    return int(re.search(r"\bmtu (\d+)", text).group(1))


def nstat(lab, node, counter):
    """A kernel counter of a lab node (nstat's absolute value, history untouched)."""
    proc = lab.exec(node, "nstat", "-asz", counter, check=False)
    match = re.search(counter + r"\s+(\d+)", proc.stdout)
    return int(match.group(1)) if match else 0


def out_of_window_icmps(lab):
    """ICMP errors each backend dropped because the quoted TCP sequence number was
    not one it had sent (Linux: TcpExtOutOfWindowIcmps)."""
    return {b: nstat(lab, b, "TcpExtOutOfWindowIcmps") for b in BACKENDS}


def download(lab, what, source, target, server_name):
    """One 20 MB download through the small-MTU path; returns (problem or None, figure)."""
    options = dict(tls=True, ca=lab.ca_path(), server_name=server_name) if server_name else {}
    before = stats(lab)
    sent_before = nstat(lab, "router", "IcmpOutDestUnreachs")
    window_before = out_of_window_icmps(lab)
    started = time.monotonic()
    (result,) = lab.run_clients([source], target, path="/bytes/%d" % SIZE, timeout=STALL_S,
                                run_timeout=TIME_LIMIT_S, **options)
    seconds = time.monotonic() - started
    router_sent = nstat(lab, "router", "IcmpOutDestUnreachs") - sent_before
    try:                                    # the relay counts as the ICMP passes: settle
        after = wait_stats(lab, lambda s: s["icmp"]["errors_relayed"] -
                           before["icmp"]["errors_relayed"] >= router_sent, 2, "")
    except AssertionError:
        after = stats(lab)
    relayed = after["icmp"]["errors_relayed"] - before["icmp"]["errors_relayed"]
    window = {b: n - window_before[b] for b, n in out_of_window_icmps(lab).items()
              if n != window_before[b]}
    label = "%s %s" % (target, what)
    evidence = "router sent %d frag-needed to the VIP, dataplane relayed %d" % (router_sent,
                                                                               relayed)
    if window:
        evidence += ", backends dropped %s as out of window (TcpExtOutOfWindowIcmps: the " \
            "quoted TCP sequence number is not one the backend sent)" % window
    if not (result["ok"] and result["bytes"] == SIZE):
        return ("%s from %s: %d of %d bytes after %.1f s, %s (PMTU black hole); %s"
                % (label, source, result["bytes"], SIZE, seconds, result["error"], evidence),
                None)
    if seconds >= TIME_LIMIT_S:
        return "%s took %.0f s (limit %d)" % (label, seconds, TIME_LIMIT_S), None
    if router_sent == 0 or relayed != router_sent or window:
        return "%s completed but %s" % (label, evidence), None
    backend = result["server"]
    route = lab.exec(backend, "ip", "route", "get", source).stdout
    if "mtu %d" % SMALL_MTU not in route:
        return "%s: %s has no learned mtu %d towards %s:\n%s" % (label, backend, SMALL_MTU,
                                                                 source, route), None
    return None, (label, "%s <- %s: %d bytes in %.2f s (%.0f Mbit/s); %s; %s route cache "
                  "mtu %d" % (source, backend, result["bytes"], seconds,
                              result["bytes"] * 8 / seconds / 1e6, evidence, backend, SMALL_MTU))


def scenario(lab):
    for link in ROUTER_LINKS:
        lab.exec("router", "ip", "link", "set", "dev", link, "mtu", SMALL_MTU)
        check(link_mtu(lab, "router", link) == SMALL_MTU, "could not set mtu on %s" % link)
    for node in ("client1", "client2"):
        check(link_mtu(lab, node, "eth0") == 1500, "%s eth0 must stay at mtu 1500" % node)

    figures = {"path": "router links %s mtu %d, clients mtu 1500 (MSS 1460)"
                       % ("/".join(ROUTER_LINKS), SMALL_MTU)}
    problems = []
    for what, source, target, server_name in DOWNLOADS:
        problem, figure = download(lab, what, source, target, server_name)
        if problem:
            problems.append(problem)
            print("  FAILED %s" % problem, file=sys.stderr)
        else:
            figures[figure[0]] = figure[1]
            print("  ok %s: %s" % figure, file=sys.stderr)
    check(not problems, "%d of %d downloads failed:\n  %s"
          % (len(problems), len(DOWNLOADS), "\n  ".join(problems)))
    return figures


def main():
    args = parse_args(__doc__.split("\n", 1)[0])
    name = "test_pmtu"
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
