#!/usr/bin/env python3
"""test_control_drain: `tetherctl backend drain` lets be1's long-lived connections finish and gives it no new one.

User-visible behaviour (issue 4, acceptance 6; docs/operations.md, "Drain,
disable, weight"): service `web` (192.0.2.20:443, source-ip persistence) on
pool `web` = be1, be2 (tests/e2e/configs/control_drain.json, closing flows
expire after 2 s).  16 long-lived TLS connections (slow readers, 4 MB each over
about 14 s, every byte checked) are spread over both backends by their source
addresses.  Then `tetherctl backend drain web be1`:

- it exits 0 once the dataplane applied it; the dataplane has be1 in state
  `drain` and `tetherctl show backends` shows `drain*`;
- every connection that was running to be1 completes byte-exact, with a clean
  close and no wait for data over 2 s;
- be1 gets 0 new flows afterwards (its dataplane new_flows counter does not
  move) and no new client connection is answered by be1, although the clients
  include the very source addresses whose persistence entries point to be1
  (they go to be2 instead); all of them succeed;
- be1's active flows fall to 0 once its connections have ended.

Run as root: python3 tests/e2e/test_control_drain.py --build-dir BUILD
"""

import sys
import time

from tetherlab import (REPO, ClientLoop, SlowDownloads, check, client_range, run_clients,
                       run_scenario, wait_for)

CONFIG = REPO / "tests" / "e2e" / "configs" / "control_drain.json"
TARGET = "192.0.2.20:443"
SERVER_NAME = "web.assist.example"
DOWNLOADS, DOWNLOAD_BYTES, DOWNLOAD_S = 16, 4 * 1000 * 1000, 14.0
STALL_S = 2.0
DOWNLOAD_SOURCES = client_range(DOWNLOADS, first=100)          # tl-client2
NEW_SOURCES = DOWNLOAD_SOURCES + client_range(10)              # the same ones, and others
MIN_ON_BE1 = 3


def be1(lab):
    return lab.backend_states()[("web", "be1")]


def scenario(lab):
    figures = {}
    lab.start_control(lab.build_dir, CONFIG)
    wait_for(lambda: lab.control_command({"command": "status"})["health"]["up"] == 2, 5,
             "be1 and be2 to pass their checks")
    downloads = SlowDownloads(DOWNLOAD_SOURCES, TARGET, DOWNLOAD_BYTES, DOWNLOAD_S, SERVER_NAME,
                              ca=lab.ca_path())
    loop = None
    try:
        established = downloads.wait_established(15)
        on_be1 = sorted(e["source"] for e in established if e["server"] == "be1")
        check(len(on_be1) >= MIN_ON_BE1, "only %d of %d long-lived connections went to be1"
              % (len(on_be1), len(established)))
        # persistence: the same sources stick to be1 before the drain
        sticky = run_clients(on_be1, TARGET, tls=True, ca=lab.ca_path(), server_name=SERVER_NAME)
        check(all(r["ok"] and r["server"] == "be1" for r in sticky),
              "before the drain, sources persisted on be1 were answered by %s"
              % [(r["server"], r["error"]) for r in sticky])
        before = be1(lab)
        drained_at = time.time()
        proc = lab.tetherctl("backend", "drain", "web", "be1")
        at_drain = be1(lab)
        table = lab.tetherctl("show", "backends", check=True).stdout
        loop = ClientLoop(NEW_SOURCES, TARGET, tls=True, ca=lab.ca_path(),
                          server_name=SERVER_NAME, concurrency=16, timeout=5).start()
        results = downloads.wait(DOWNLOAD_S + 20)
        time.sleep(1.0)
    finally:
        batches = loop.stop() if loop else []
        downloads.stop()
    after = be1(lab)

    figures["drain"] = "tetherctl exit %d: %s" % (proc.returncode, proc.stdout.strip())
    check(proc.returncode == 0 and "applied by the dataplane" in proc.stdout,
          "tetherctl backend drain web be1 exited %d: %s%s"
          % (proc.returncode, proc.stdout, proc.stderr))
    check(at_drain["state"] == "drain", "the dataplane has be1 in state %s" % at_drain["state"])
    row = next((line for line in table.splitlines() if line.split()[:2] == ["web", "be1"]), "")
    check(" drain* " in row, "tetherctl show backends does not show be1 drain*: %s" % row)

    bad = [r for r in results if not r["ok"] or r["bytes"] != DOWNLOAD_BYTES or
           not r["clean_close"] or r["max_gap_s"] > STALL_S]
    drained = [r for r in results if r["server"] == "be1"]
    figures["long-lived on be1"] = ("%d running at the drain (active flows %d), %d completed "
                                    "byte-exact with a clean close, longest wait for data %.3f s"
                                    % (len(on_be1), at_drain["active_flows"],
                                       sum(r["ok"] and r["bytes"] == DOWNLOAD_BYTES and
                                           r["clean_close"] for r in drained),
                                       max([r["max_gap_s"] or 0 for r in drained] or [0])))
    figures["long-lived on be2"] = "%d, all complete: %s" % (
        len(results) - len(drained), all(r["ok"] for r in results if r["server"] != "be1"))
    check(not bad, "%d of %d long-lived connections failed: %s"
          % (len(bad), len(results), ["%s via %s: %s bytes, gap %s s, clean %s, %s"
                                      % (r["source"], r["server"], r["bytes"], r["max_gap_s"],
                                         r["clean_close"], r["error"]) for r in bad[:4]]))
    check(min(r["ended"] for r in drained) > drained_at + 5,
          "be1's connections ended too soon after the drain to prove anything")

    summary = ClientLoop.summary(batches)
    new_on_be1 = summary["servers"].get("be1", 0)
    leaked = after["new_flows"] - before["new_flows"]
    figures["new connections after drain"] = ("%d in %d batches (%d sources, %d of them persisted "
                                              "on be1), %d failed, %d answered by be1; be1 "
                                              "new_flows +%d"
                                              % (summary["connections"], summary["batches"],
                                                 len(NEW_SOURCES), len(on_be1), summary["failed"],
                                                 new_on_be1, leaked))
    check(not summary["batch_errors"], "batches failed: %s" % summary["batch_errors"][:2])
    check(summary["failed"] == 0, "%d of %d new connections failed: %s"
          % (summary["failed"], summary["connections"], summary["errors"]))
    check(summary["connections"] >= 200, "only %d new connections" % summary["connections"])
    check(new_on_be1 == 0, "%d new connections were answered by the drained be1" % new_on_be1)
    check(leaked == 0, "be1's new_flows rose by %d after the drain" % leaked)
    final = wait_for(lambda: (lambda b: b if b["active_flows"] == 0 else None)(be1(lab)), 8,
                     "be1's active flows to reach 0")
    figures["be1 active flows"] = "%d at the drain -> %d after its connections ended (state %s)" % (
        at_drain["active_flows"], final["active_flows"], final["state"])
    check(lab.control.poll() is None, "tether-control exited during the test")
    return figures


if __name__ == "__main__":
    sys.exit(run_scenario("test_control_drain", scenario, CONFIG))
