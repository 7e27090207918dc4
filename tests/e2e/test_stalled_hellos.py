#!/usr/bin/env python3
"""test_stalled_hellos: stalled half-sent ClientHellos cost bounded state, briefly.

User-visible behaviour (tests/e2e/configs/stalled_hellos.json: 2,048
bindings, inspect timeout 1,000 ms): 100,000 connections from random ports of
the unused lab addresses 203.0.113.210-254 complete the TCP handshake with the
dataplane's SYN cookie at the ssl-session VIP 192.0.2.23:443, send the first
100 bytes of a ClientHello whose record announces 512, and stall
(tether-flood --kind stall on r-pub in tl-router, 20,000 new connections a
second for 5 s), while 100 long TLS downloads run through the ssl-session
VIP 192.0.2.20:443 and new TLS connections keep arriving there.  Required:
- bindings_active never exceeds the capacity; a stalled connection that got a
  binding is placed by the fallback at the inspect timeout and its binding is
  released when the backend acknowledges the replayed bytes, so after the last
  stalled hello bindings_active falls back (to at most the legitimate
  connections in flight) within the inspect timeout + 0.5 s (the 10 ms timer
  tick, the backend's handshake and ACK, the 50 ms sampling), and to 0 once
  the legitimate clients stop;
- the counters account for every stalled connection: each hello the
  dataplane acknowledged (it holds a binding) is one inspect_timeouts, one
  fallback_timeout and one new flow of the sink service; the other hellos are
  refused, each one bindings_full (refusing new bindings when all are busy is
  the overload step; legitimate retransmissions refused meanwhile add to it);
  cookies_valid = bindings_started + bindings_full; nothing is aborted;
- every download completes byte-exact with a clean close; new connections
  after the flood all succeed (those during it are reported: they compete
  for the same bindings);
- the dataplane's resident memory grows by less than 8 MiB over the flood
  (not judged against an ASan build, whose quarantine holds freed blocks).
  A binding's buffer becomes resident when it is first used, so a warm-up of
  capacity + 256 stalled connections uses every binding once before the
  measurement; its own growth (the pool's size, about 8.5 KB a binding for a
  100-byte hello) is reported.

The stalled connections end at the sink, a tiny server that tl-be4 runs on
port 9001 in place of a TLS server: it reads what the dataplane replays,
checks it is the 100 bytes sent, and resets the connection (a server that
gives up on a ClientHello that does not come; the lab's thread-per-connection
lab_server.py is not built to park 100,000 of them).

The config gives the dataplane's af_packet ports rings of 4,096 frames: with
the PMD's default of 512, a worker descheduled for a few tens of milliseconds
on the 2-core VM loses frames (backend SYN-ACKs, their ACKs of the replay), and
the bindings concerned wait for the SYN retry (0.5-3.5 s) or longer; that is
the lab, not what this test is about.  An ASan+UBSan build (scripts/test.sh
--sanitize) runs a third of the count at a third of the rate.

Run as root: python3 tests/e2e/test_stalled_hellos.py --build-dir BUILD
"""

import json
import subprocess
import sys
import threading
import time

from tetherlab import (REPO, ClientLoop, SlowDownloads, check, client_range, run_scenario,
                       sanitized, stats_delta)
from test_malformed_storm import resident_kb

CONFIG = REPO / "tests" / "e2e" / "configs" / "stalled_hellos.json"
LEGIT_TARGET = "192.0.2.20:443"
STALL_TARGET = "192.0.2.23:443"
SERVER_NAME = "cp.assist.example"
CAPACITY, INSPECT_TIMEOUT_S = 2048, 1.0     # as in CONFIG
DRAIN_SLACK_S = 0.5
CONNECTIONS, RATE = 100000, 20000
HELLO_BYTES = 100
FLOOD_SOURCES = "203.0.113.210-203.0.113.254"   # no lab host owns them
SINK_NODE, SINK_PORT = "be4", 9001
DOWNLOADS, DOWNLOAD_BYTES, DOWNLOAD_S = 100, 1000 * 1000, 15.0
LEGIT_SOURCES, LEGIT_CONCURRENCY = 20, 4   # all in tl-client2: one process
SAMPLE_S = 0.05
RSS_GROWTH_MAX_KB = 8 * 1024
SANITIZED_SLOWDOWN = 3

# Runs in tl-be4: accepts on argv[1], reads each connection until it has
# argv[2] bytes (or 3 s pass), then resets it (SO_LINGER 0).  On SIGTERM it
# resets what is open and prints one JSON line of counts.
SINK = r"""
import json, selectors, signal, socket, struct, sys, time
port, expected = int(sys.argv[1]), int(sys.argv[2])
counts = {"accepted": 0, "exact": 0, "other_lengths": {}, "quiet_reset": 0, "open_max": 0}
listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("0.0.0.0", port))
listener.listen(65535)
listener.setblocking(False)
selector = selectors.DefaultSelector()
selector.register(listener, selectors.EVENT_READ)
received = {}
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))

def reset(conn, quiet=False):
    got = received.pop(conn)[0]
    if got == expected:
        counts["exact"] += 1
    else:
        key = str(got)
        counts["other_lengths"][key] = counts["other_lengths"].get(key, 0) + 1
    counts["quiet_reset"] += quiet
    selector.unregister(conn)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()

print("ready", flush=True)
last_sweep = time.monotonic()
while not stopping:
    for key, _ in selector.select(0.1):
        if key.fileobj is listener:
            while True:
                try:
                    conn, _ = listener.accept()
                except (BlockingIOError, InterruptedError):
                    break
                conn.setblocking(False)
                selector.register(conn, selectors.EVENT_READ)
                received[conn] = [0, time.monotonic()]
                counts["accepted"] += 1
            counts["open_max"] = max(counts["open_max"], len(received))
            continue
        conn = key.fileobj
        try:
            data = conn.recv(4096)
        except BlockingIOError:
            continue
        except OSError:
            data = b""
        received[conn][0] += len(data)
        if not data or received[conn][0] >= expected:
            reset(conn)
    now = time.monotonic()
    if now - last_sweep > 0.5:
        last_sweep = now
        for conn in [c for c, (_, t) in received.items() if now - t > 3.0]:
            reset(conn, quiet=True)
for conn in list(received):
    reset(conn, quiet=True)
print(json.dumps(counts), flush=True)
"""


class Sink:
    """SINK in a backend namespace, with the accept queue it needs."""

    def __init__(self, lab, node, port, expected):
        # the namespace's own sysctls: they go with the lab
        lab.exec(node, "sysctl", "-q", "-w", "net.core.somaxconn=65535",
                 "net.ipv4.tcp_max_syn_backlog=65535")
        self.proc = subprocess.Popen(["ip", "netns", "exec", "tl-" + node, sys.executable, "-c",
                                      SINK, str(port), str(expected)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
        line = self.proc.stdout.readline()
        check(line.strip() == "ready", "the sink did not start: %s %s"
              % (line, self.proc.stderr.read() if self.proc.poll() is not None else ""))

    def stop(self):
        """Stops it; returns its counts (None if it printed none)."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            out, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate(timeout=5)
        try:
            return json.loads(out.strip().split("\n")[-1])
        except (ValueError, IndexError):
            print("sink stderr: %s" % err[-1000:], file=sys.stderr)
            return None


class Sampler:
    """bindings_active (and flows live) every SAMPLE_S seconds, in a thread."""

    def __init__(self, lab):
        self.lab, self.samples = lab, []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping.is_set():
            stats = self.lab.stats()
            self.samples.append((time.monotonic(), stats["ssl_session"]["bindings_active"],
                                 stats["flows"]["live"]))
            self.stopping.wait(SAMPLE_S)

    def stop(self):
        self.stopping.set()
        self.thread.join(10)
        return self.samples


def stall(lab, connections, rate):
    """tether-flood --kind stall in tl-router on r-pub; returns its report and
    time.monotonic() when it returned."""
    mac = lab.dataplane_command({"command": "status"})["ports"]["public"]["mac"]
    binary = lab.build_dir / "tests" / "tether-flood"
    proc = lab.exec("router", binary, "--interface", "r-pub", "--mac", mac, "--kind", "stall",
                    "--count", connections, "--rate", rate, "--seconds", 30,
                    "--target", STALL_TARGET, "--sources", FLOOD_SOURCES,
                    "--hello-bytes", HELLO_BYTES, "--pending", 4096, "--give-up-ms", 1000,
                    "--seed", 11, check=False, timeout=60)
    ended = time.monotonic()
    report = json.loads(proc.stdout or "{}")
    check(proc.returncode == 0 and report.get("syns") == connections,
          "tether-flood stall: %s %s" % (report, proc.stderr[-500:]))
    return report, ended


def scenario(lab):
    connections, rate = CONNECTIONS, RATE
    if sanitized(lab.build_dir):
        connections, rate = connections // SANITIZED_SLOWDOWN, rate // SANITIZED_SLOWDOWN
    sink = Sink(lab, SINK_NODE, SINK_PORT, HELLO_BYTES)
    downloads = loop = sampler = None
    sink_counts = None
    try:
        downloads = SlowDownloads(client_range(DOWNLOADS), LEGIT_TARGET, DOWNLOAD_BYTES,
                                  DOWNLOAD_S, SERVER_NAME, ca=lab.ca_path(), stall_limit=15)
        downloads.wait_established(30)
        loop = ClientLoop(client_range(LEGIT_SOURCES, first=DOWNLOADS), LEGIT_TARGET, tls=True,
                          ca=lab.ca_path(), server_name=SERVER_NAME, per_source=1, timeout=10,
                          concurrency=LEGIT_CONCURRENCY).start()
        time.sleep(1.0)
        # every binding used once first: its buffer's pages become resident
        # on first use, which is the preallocated pool's size, not growth
        rss_initial = resident_kb(lab)
        stall(lab, CAPACITY + 256, rate)
        lab.wait_stats(lambda s: s["ssl_session"]["bindings_active"] <= LEGIT_CONCURRENCY,
                       INSPECT_TIMEOUT_S + DRAIN_SLACK_S + 5, "the warm-up bindings to drain")
        rss_before = resident_kb(lab)
        before = lab.stats()
        sampler = Sampler(lab)
        flood_started = time.time()
        report, flood_ended = stall(lab, connections, rate)
        flood_wall = time.time()
        last_hello = flood_ended - (report["seconds"] - report["last_hello_s"])
        # drained: back to what legitimate connections may hold
        lab.wait_stats(lambda s: s["ssl_session"]["bindings_active"] <= LEGIT_CONCURRENCY,
                       INSPECT_TIMEOUT_S + DRAIN_SLACK_S + 5, "the stalled bindings to drain")
        time.sleep(0.2)
        batches = loop.stop()
        loop = None
        drained = lab.wait_stats(lambda s: s["ssl_session"]["bindings_active"] == 0, 5,
                                 "bindings_active to reach 0 with no client left")
        samples = sampler.stop()
        sampler = None
        results = downloads.wait(DOWNLOAD_S + 40)
        downloads = None
        rss_after = resident_kb(lab)
    finally:
        if sampler:
            sampler.stop()
        if loop:
            loop.stop()
        if downloads:
            downloads.stop()
        sink_counts = sink.stop()

    # bindings: bounded, and drained in time
    peak = max(active for _, active, _ in samples)
    check(peak <= CAPACITY, "bindings_active reached %d of a capacity of %d" % (peak, CAPACITY))
    late = [(t - last_hello, active) for t, active, _ in samples
            if t - last_hello > INSPECT_TIMEOUT_S + DRAIN_SLACK_S and active > LEGIT_CONCURRENCY]
    timeline = ", ".join("%.2f s %d" % (t - last_hello, active) for t, active, _ in samples
                         if t > last_hello - 0.2 and active > 0)
    check(not late, "bindings still held %.2f s after the last stalled hello (%d active); "
          "wanted within %.1f + %.1f s; bindings_active after it: %s; counters: %s"
          % (late[0][0], late[0][1], INSPECT_TIMEOUT_S, DRAIN_SLACK_S, timeline[:1500],
             stats_delta(before, drained)) if late else "")
    drain_s = min((t - last_hello for t, active, _ in samples
                   if t > last_hello and active <= LEGIT_CONCURRENCY), default=None)

    # every stalled connection accounted for
    after = drained
    delta = stats_delta(before, after)
    sink_service = {s["name"]: s for s in after["services"]}["stall-sink"]
    sink_before = {s["name"]: s for s in before["services"]}["stall-sink"]
    placed = sink_service["new_flows"] - sink_before["new_flows"]
    acked, hellos = report["hellos_acked"], report["hellos"]
    check(report["synacks"] >= connections * 0.99 and hellos >= report["synacks"] * 0.99,
          "only %d SYN-ACKs and %d hellos for %d SYNs: %s" % (report["synacks"], hellos,
                                                              connections, report))
    check(delta["inspect_timeouts"] == acked and delta["fallback_timeout"] == acked and
          placed == acked,
          "%d hellos were acknowledged (bound), but inspect_timeouts rose by %d, "
          "fallback_timeout by %d, the sink service's new flows by %d"
          % (acked, delta["inspect_timeouts"], delta["fallback_timeout"], placed))
    refused = hellos - acked
    check(delta["bindings_full"] >= refused, "%d hellos got no binding, bindings_full rose by "
          "only %d" % (refused, delta["bindings_full"]))
    check(delta["cookies_valid"] == delta["bindings_started"] + delta["bindings_full"],
          "cookies_valid +%d != bindings_started +%d + bindings_full +%d"
          % (delta["cookies_valid"], delta["bindings_started"], delta["bindings_full"]))
    check(delta["bindings_aborted"] == 0 and delta["backend_failed"] == 0,
          "bindings aborted %d, backends failed %d" % (delta["bindings_aborted"],
                                                       delta["backend_failed"]))
    # the sink saw every placed connection (the warm-up's too) with the bytes sent
    placed_total = sink_service["new_flows"]
    check(sink_counts is not None and sink_counts["accepted"] == placed_total and
          sink_counts["exact"] == placed_total,
          "the sink accepted %s connections for %d placed (exactly %d bytes: %s; other "
          "lengths %s)" % (sink_counts and sink_counts["accepted"], placed_total, HELLO_BYTES,
                           sink_counts and sink_counts["exact"],
                           sink_counts and sink_counts["other_lengths"]))

    # established flows untouched
    downloads_figure = SlowDownloads.check(results)
    summary = ClientLoop.summary(batches)
    check(not summary["batch_errors"], "client batches failed: %s" % summary["batch_errors"][:2])
    # the batches that overlapped the flood
    during = [r for b in batches if b["ended"] > flood_started and b["started"] < flood_wall
              for r in b.get("results", [])]
    during_failed = [r["error"] for r in during if not r["ok"]]

    # memory
    if not sanitized(lab.build_dir):
        check(rss_after - rss_before < RSS_GROWTH_MAX_KB, "the dataplane's resident memory "
              "grew from %d to %d KiB" % (rss_before, rss_after))

    # afterwards: the VIP serves as before
    results_after = lab.run_clients(client_range(40, first=DOWNLOADS + LEGIT_SOURCES),
                                    LEGIT_TARGET, tls=True, ca=lab.ca_path(),
                                    server_name=SERVER_NAME, per_source=1, timeout=10,
                                    concurrency=8)
    bad = [r for r in results_after if not r["ok"]]
    check(not bad, "%d of %d connections failed after the flood: %s; counters since: %s"
          % (len(bad), len(results_after), bad[:3], stats_delta(after, lab.stats())))
    return {
        "stalled connections": "%d SYNs in %.1f s (%.0f/s), %d SYN-ACKs, %d partial hellos, "
                               "%d acknowledged (bound), %d gave up, %d receive drops"
                               % (report["syns"], report["last_hello_s"],
                                  report["syns"] / max(report["last_hello_s"], 0.001),
                                  report["synacks"], hellos, acked, report["gave_up"],
                                  report["receive_drops"]),
        "bindings": "peak %d of %d; after the last hello down to <= %d in %s s, 0 at the end"
                    % (peak, CAPACITY, LEGIT_CONCURRENCY,
                       "%.2f" % drain_s if drain_s is not None else "?"),
        "counters": "inspect_timeouts +%d, fallback_timeout +%d, sink new flows +%d, "
                    "bindings_full +%d (%d stalled hellos refused), bindings_started +%d, "
                    "cookies_valid +%d, cookies_sent +%d"
                    % (delta["inspect_timeouts"], delta["fallback_timeout"], placed,
                       delta["bindings_full"], refused, delta["bindings_started"],
                       delta["cookies_valid"], delta["cookies_sent"]),
        "sink": "%d accepted (warm-up included), %d with exactly the %d bytes sent, at "
                "most %d open" % (sink_counts["accepted"], sink_counts["exact"], HELLO_BYTES,
                                  sink_counts["open_max"]),
        "flows": "live at most %d (capacity %d), %d now"
                 % (max(live for _, _, live in samples), after["flows"]["capacity"],
                    after["flows"]["live"]),
        "downloads": downloads_figure,
        "new connections during the flood": "%d/%d ok (they compete for the bindings)%s"
                                            % (len(during) - len(during_failed), len(during),
                                               "; first errors: %s" % during_failed[:2]
                                               if during_failed else ""),
        "new connections after": "%d/%d ok" % (len(results_after) - len(bad),
                                               len(results_after)),
        "dataplane memory": "VmRSS %d KiB, %d after the warm-up (%d connections), %d after "
                            "the flood" % (rss_initial, rss_before, CAPACITY + 256, rss_after),
    }


if __name__ == "__main__":
    sys.exit(run_scenario("test_stalled_hellos", scenario, CONFIG))
