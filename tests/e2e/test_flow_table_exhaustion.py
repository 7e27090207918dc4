#!/usr/bin/env python3
"""test_flow_table_exhaustion: a flood offering twice the flow table refuses new flows, never established ones.

User-visible behaviour (tests/e2e/configs/flow_table_exhaustion.json: a table of
4,096 flows, SYN timeout 3 s, one source-ip service on "syn_cookies": "never", so
that every SYN takes an entry, as with a backend that must see its clients' SYNs):
- 100 long TLS downloads are running through the VIP;
- 8,192 SYNs (twice the table) arrive from random ports of the unused lab
  addresses 203.0.113.210-254 (tether-flood on r-pub, paced so DPDK reads them
  all); the table fills to the overload ladder's refuse_percent (95 %), the
  worker steps to "refuse-new", and every later SYN is refused and counted
  (drops overload_refused, or flow_table_full): the flows created plus the SYNs
  refused account for every flood SYN the dataplane received;
- every download completes byte-exact with a clean close: no established flow
  is lost or stalled;
- once the flood's half-open flows time out, the ladder steps back to "none" and
  new TLS connections through the VIP succeed again (50 of 50).

Run as root: python3 tests/e2e/test_flow_table_exhaustion.py --build-dir BUILD
"""

import json
import sys
import time

from tetherlab import REPO, SlowDownloads, check, client_range, run_scenario

CONFIG = REPO / "tests" / "e2e" / "configs" / "flow_table_exhaustion.json"
TARGET = "192.0.2.20:443"
SERVER_NAME = "cp.assist.example"
CAPACITY = 4096
REFUSE_PERCENT = 95                         # the default overload.refuse_percent
SYNS, RATE = 2 * CAPACITY, 10000
FLOOD_SOURCES = "203.0.113.210-203.0.113.254"
DOWNLOADS, DOWNLOAD_BYTES, DOWNLOAD_S = 100, 1000 * 1000, 12.0
SYN_TIMEOUT_S = 3


def flood(lab):
    mac = lab.dataplane_command({"command": "status"})["ports"]["public"]["mac"]
    binary = lab.build_dir / "tests" / "tether-flood"
    proc = lab.exec("router", binary, "--interface", "r-pub", "--mac", mac, "--kind", "syn",
                    "--count", SYNS, "--rate", RATE, "--seconds", 30, "--target", TARGET,
                    "--sources", FLOOD_SOURCES, "--seed", 11, "--settle", lab.dataplane_socket,
                    "--batch", 256, check=False, timeout=60)
    report = json.loads(proc.stdout or "{}")
    check(proc.returncode == 0 and report.get("sent") == SYNS,
          "tether-flood: %s %s" % (report, proc.stderr[-500:]))
    return report


def scenario(lab):
    downloads = SlowDownloads(client_range(DOWNLOADS), TARGET, DOWNLOAD_BYTES, DOWNLOAD_S,
                              SERVER_NAME, ca=lab.ca_path(), stall_limit=10)
    try:
        downloads.wait_established(30)
        before = lab.stats()
        report = flood(lab)
        during = lab.stats()
        # the flood's half-open flows time out; the ladder comes back down
        # (the downloads still running)
        flood_ended = time.monotonic()
        calm = lab.wait_stats(lambda s: s["overload"]["level"] == "none", SYN_TIMEOUT_S + 15,
                              "the overload level back to none")
        recovered_s = time.monotonic() - flood_ended
    finally:
        results = downloads.wait(DOWNLOAD_S + 40)

    created = during["flows"]["created"] - before["flows"]["created"]
    refused = sum(during["drops"][c] - before["drops"][c]
                  for c in ("overload_refused", "flow_table_full"))
    received = during["ports"]["public"]["rx_packets"] - before["ports"]["public"]["rx_packets"]
    ladder = {k: during["overload"][k] - before["overload"][k]
              for k in ("entered_refuse_new", "refused")}
    check(ladder["entered_refuse_new"] >= 1, "the worker never stepped to refuse-new: %s"
          % during["overload"])
    check(created <= CAPACITY - before["flows"]["live"],
          "%d flows created with %d of %d entries in use before" % (created,
                                                                   before["flows"]["live"],
                                                                   CAPACITY))
    check(created >= CAPACITY * REFUSE_PERCENT // 100 - before["flows"]["live"] - 64,
          "only %d flows created before refusal: the table was not filled" % created)
    # every flood SYN that reached DPDK either took an entry or was refused
    # (received also holds the downloads' own segments: at most, not exactly)
    check(created + refused >= SYNS * 99 // 100 and created + refused <= received,
          "flows created %d + refused %d for %d SYNs sent, %d frames received; drops: %s"
          % (created, refused, SYNS, received,
             {c: n - before["drops"][c] for c, n in during["drops"].items()
              if n != before["drops"][c]}))

    downloads_figure = SlowDownloads.check(results)   # established flows lost nothing

    after = lab.run_clients(client_range(50, first=100), TARGET, tls=True, ca=lab.ca_path(),
                            server_name=SERVER_NAME, per_source=1, timeout=10, concurrency=8)
    bad = [r for r in after if not r["ok"]]
    check(not bad, "%d of %d new connections failed after the flood; first: %s"
          % (len(bad), len(after), [r["error"] for r in bad[:3]]))
    check(lab.dataplane.poll() is None, "tether-dataplane died")
    return {
        "flood": "%d SYNs (2 x %d entries) in %.1f s" % (SYNS, CAPACITY, report["seconds"]),
        "table": "%d live before, %d flows created by the flood, %d SYNs refused "
                 "(overload %d, table full %d); refuse-new entered %d time(s)"
                 % (before["flows"]["live"], created, refused,
                    during["drops"]["overload_refused"] - before["drops"]["overload_refused"],
                    during["drops"]["flow_table_full"] - before["drops"]["flow_table_full"],
                    ladder["entered_refuse_new"]),
        "established downloads": downloads_figure,
        "recovery": "level none %.1f s after the flood's end (%d flows live); then %d/%d new TLS "
                    "connections ok" % (recovered_s, calm["flows"]["live"],
                                        len(after) - len(bad), len(after)),
    }


if __name__ == "__main__":
    sys.exit(run_scenario("test_flow_table_exhaustion", scenario, CONFIG))
