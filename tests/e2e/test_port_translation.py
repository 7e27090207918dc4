#!/usr/bin/env python3
"""test_port_translation: a public port may map to another private port.

User-visible behaviour: a client connecting to 192.0.2.23:443
(cp-single-8443: target_port 8443, pool cp3 = be3) completes a TLS handshake
with be3 -- the certificate verifies as be3.lab.example -- and be3 reports
that the connection arrived on its port 8443, from the client's own address.
Both the project's test client (many source addresses, both client
namespaces) and curl (OpenSSL) are used.

Run as root: python3 tests/e2e/test_port_translation.py --build-dir BUILD
"""

import sys
import time
import traceback

from tetherlab import REPO, Lab, check, client_range, parse_args, tail

CONFIG = REPO / "config" / "lab.json"
VIP = "192.0.2.23"
SERVICE = "cp-single-8443"
POOL = "cp3"
SERVER_NAME = "be3.lab.example"
SOURCES = client_range(20, first=90)       # .100-.119: both client namespaces
PER_SOURCE = 2


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


def parse_identity(line):
    return dict(kv.split("=", 1) for kv in line.split() if "=" in kv)


def scenario(lab):
    before = stats(lab)
    results = lab.run_clients(SOURCES, VIP + ":443", tls=True, ca=lab.ca_path(),
                              server_name=SERVER_NAME, per_source=PER_SOURCE, timeout=10)
    total = len(SOURCES) * PER_SOURCE
    check(len(results) == total, "expected %d results, got %d" % (total, len(results)))
    failed = [r for r in results if not r["ok"]]
    check(not failed, "%d of %d TLS connections to %s:443 failed; first: %s"
          % (len(failed), total, VIP, brief(failed)))
    wrong = [r for r in results if r["server"] != "be3" or r["port"] != 8443]
    check(not wrong, "%d connections did not reach be3 on port 8443: %s"
          % (len(wrong), brief(wrong)))
    wrong_peer = [r for r in results if (r["peer"] or "").rsplit(":", 1)[0] != r["source"]]
    check(not wrong_peer, "the backend saw another peer than the client: %s" % brief(wrong_peer))

    # curl, as a user would: https://be3.lab.example/ resolved to the VIP, port 443.
    source = "203.0.113.150"
    proc = lab.exec("client2", "curl", "-sS", "--max-time", "10", "--cacert", lab.ca_path(),
                    "--interface", source, "--resolve", "%s:443:%s" % (SERVER_NAME, VIP),
                    "-w", "\\n%{remote_ip}:%{remote_port} %{http_code}",
                    "https://%s/" % SERVER_NAME, check=False)
    check(proc.returncode == 0, "curl via %s:443 failed (exit %d): %s"
          % (VIP, proc.returncode, proc.stderr.strip()))
    body, _, remote = proc.stdout.rpartition("\n")
    ident = parse_identity(body)
    check(ident.get("server") == "be3" and ident.get("port") == "8443",
          "curl got %r, expected server=be3 port=8443" % body)
    check(ident.get("peer", "").rsplit(":", 1)[0] == source,
          "be3 saw peer %s, expected %s" % (ident.get("peer"), source))
    check(remote == "%s:443 200" % VIP, "curl talked to %r, expected %s:443 (HTTP 200)"
          % (remote, VIP))

    expected_flows = total + 1
    after = wait_stats(lab, lambda s: service_stats(s, SERVICE)["new_flows"] -
                       service_stats(before, SERVICE)["new_flows"] >= expected_flows,
                       5, "service %s new_flows to count every connection" % SERVICE)
    new_flows = service_stats(after, SERVICE)["new_flows"] - \
        service_stats(before, SERVICE)["new_flows"]
    backend = pool_backends(after, POOL)["be3"]
    backend_flows = backend["new_flows"] - pool_backends(before, POOL)["be3"]["new_flows"]
    check(backend["port"] == 8443, "dataplane reports backend be3 of %s on port %d"
          % (POOL, backend["port"]))
    check(new_flows == expected_flows and backend_flows == expected_flows,
          "dataplane counted %d new flows for %s, %d for be3; expected %d"
          % (new_flows, SERVICE, backend_flows, expected_flows))
    service = service_stats(after, SERVICE)
    return {
        "lab_client": "%d/%d TLS connections from %d client IPs (both namespaces) to %s:443 "
                      "-> be3 port 8443" % (total - len(failed), total, len(SOURCES), VIP),
        "curl": "%s -> %s: %s" % (source, remote, body.strip()),
        "certificate": "verified as %s" % SERVER_NAME,
        "dataplane": "%s %s:%d -> %s %s:%d, new_flows +%d, packets in/out %d/%d"
                     % (SERVICE, service["vip"], service["port"], POOL, backend["address"],
                        backend["port"], new_flows, service["packets_in"], service["packets_out"]),
    }


def main():
    args = parse_args(__doc__.split("\n", 1)[0])
    name = "test_port_translation"
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
