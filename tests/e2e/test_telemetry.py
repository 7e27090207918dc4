#!/usr/bin/env python3
"""test_telemetry: the dataplane's counters are readable through rte_telemetry.

User-visible behaviour: a DPDK telemetry client (the protocol dpdk-telemetry.py
speaks: a SOCK_SEQPACKET socket in the EAL runtime directory, one command per
message, JSON back) lists /tether/stats and /tether/backends; after a known
number of connections, /tether/stats shows flows_created risen by exactly that
many, and /tether/backends names every backend with its state.

Run as root: python3 tests/e2e/test_telemetry.py --build-dir BUILD
"""

import json
import os
import socket
import sys

from tetherlab import REPO, check, client_range, run_clients, run_scenario

CONFIG = REPO / "config" / "lab.json"
CONNECTIONS = 40


def telemetry(lab, command):
    """Sends one command to the dataplane's telemetry socket; returns the parsed reply.
    The dataplane's EAL prefix is tether-PID (ip netns exec keeps the pid): other
    DPDK processes (tether-bench, a crashed run) leave their own directories."""
    path = "/var/run/dpdk/tether-%d/dpdk_telemetry.v2" % lab.dataplane.pid
    check(os.path.exists(path), "no telemetry socket at %s" % path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
        sock.settimeout(5)
        sock.connect(path)
        json.loads(sock.recv(16384))            # the greeting: version, pid, max_output_len
        sock.send(command.encode())
        return json.loads(sock.recv(1 << 20))


def scenario(lab):
    listing = telemetry(lab, "/")
    check("/tether/stats" in listing["/"] and "/tether/backends" in listing["/"],
          "telemetry lists no tether commands: %r" % listing)
    before = telemetry(lab, "/tether/stats")["/tether/stats"]
    results = run_clients(client_range(CONNECTIONS), "192.0.2.20:80", per_source=1, timeout=10)
    failed = [r for r in results if not r["ok"]]
    check(not failed, "%d of %d connections failed: %s" % (len(failed), len(results),
                                                          failed[0]["error"] if failed else ""))
    after = telemetry(lab, "/tether/stats")["/tether/stats"]
    created = after["flows_created"] - before["flows_created"]
    check(created == CONNECTIONS, "flows_created rose by %d, expected %d" % (created, CONNECTIONS))
    check(after["public_rx_packets"] > before["public_rx_packets"], "public_rx_packets did not move")
    backends = telemetry(lab, "/tether/backends")["/tether/backends"]
    check("cp/be1" in backends and backends["cp/be1"] == "up",
          "/tether/backends lacks cp/be1 up: %r" % backends)
    return {
        "telemetry commands": ", ".join(c for c in listing["/"] if c.startswith("/tether")),
        "flows_created": "+%d for %d connections" % (created, CONNECTIONS),
        "backends": "%d listed, e.g. cp/be1 %s" % (len(backends), backends["cp/be1"]),
    }


if __name__ == "__main__":
    sys.exit(run_scenario("test_telemetry", scenario, CONFIG))
