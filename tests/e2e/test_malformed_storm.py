#!/usr/bin/env python3
"""test_malformed_storm: a million malformed frames cost legitimate TLS sessions nothing.

User-visible behaviour: while 200 TLS downloads run through the source-ip VIP
192.0.2.20:443 (config/lab.json; 200 client addresses, each a long slow
download checked byte for byte) and new TLS connections keep arriving,
1,000,000 malformed frames of the 23 kinds test_malformed_frames.py defines
(lying and truncated Ethernet, ARP, IPv4, TCP, UDP and ICMP headers, bad IHL
and data offsets, IP options, bad checksums, impossible sources, unsupported
protocols) are written at the dataplane's public port (tether-flood on r-pub in
tl-router, at most 100,000 a second).  Required:
- every download completes byte-exact with a clean close, and every new
  connection during the storm succeeds (0 legitimate failures);
- each drop counter rises by exactly the frames of its kinds sent (plus the
  lab bridge's own IGMP reports in ip_options, measured as in
  test_malformed_frames), so the counters sum to the frames sent;
- the dataplane's resident memory stays flat (grows by under 8 MiB) and it is
  alive after the storm (memory is not judged against an ASan build, whose
  quarantine holds freed blocks).

Run as root: python3 tests/e2e/test_malformed_storm.py --build-dir BUILD
"""

import json
import struct
import sys
import time

from tetherlab import (REPO, STATE_DIR, ClientLoop, SlowDownloads, check, client_range,
                       run_scenario, sanitized)
from test_malformed_frames import KINDS, lab_multicast_sent

CONFIG = REPO / "config" / "lab.json"
TARGET = "192.0.2.20:443"
SERVER_NAME = "cp.assist.example"
FRAMES, RATE = 1000000, 100000
DOWNLOADS, DOWNLOAD_BYTES, DOWNLOAD_S = 200, 1500 * 1000, 20.0
RSS_GROWTH_MAX_KB = 8 * 1024


def resident_kb(lab):
    for line in open("/proc/%d/status" % lab.dataplane.pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS for the dataplane")


def write_frames():
    """The kinds as tether-flood's frame file: one "counter hex" line per kind."""
    path = STATE_DIR / "storm.frames"
    with open(path, "w") as f:
        for _, counter, payload, ether_type in KINDS:
            f.write("%s %s\n" % (counter, (struct.pack("!H", ether_type) + payload).hex()))
    return path


def storm(lab, frames_path, frames):
    mac = lab.dataplane_command({"command": "status"})["ports"]["public"]["mac"]
    binary = lab.build_dir / "tests" / "tether-flood"
    proc = lab.exec("router", binary, "--interface", "r-pub", "--mac", mac, "--kind", "frames",
                    "--frames", frames_path, "--count", frames, "--rate", RATE,
                    "--seconds", 60, "--settle", lab.dataplane_socket, "--batch", 256,
                    check=False, timeout=90)
    report = json.loads(proc.stdout or "{}")
    check(proc.returncode == 0 and report.get("sent") == frames,
          "tether-flood: %s %s" % (report, proc.stderr[-500:]))
    return report


def scenario(lab):
    frames_path = write_frames()
    # an ASan+UBSan dataplane (test.sh --sanitize) runs two to three times
    # slower: a third of the storm, the same checks
    frames = FRAMES // 3 if sanitized(lab.build_dir) else FRAMES
    downloads = SlowDownloads(client_range(DOWNLOADS), TARGET, DOWNLOAD_BYTES, DOWNLOAD_S,
                              SERVER_NAME, ca=lab.ca_path(), stall_limit=15)
    loop = None
    try:
        downloads.wait_established(30)
        loop = ClientLoop(client_range(20, first=30), TARGET, tls=True, ca=lab.ca_path(),
                          server_name=SERVER_NAME, per_source=1, timeout=10,
                          concurrency=8).start()
        rss_before = resident_kb(lab)
        multicast_before = lab_multicast_sent(lab)
        before = lab.stats()
        started = time.monotonic()
        report = storm(lab, frames_path, frames)
        storm_s = time.monotonic() - started
    finally:
        batches = loop.stop() if loop else []
        results = downloads.wait(DOWNLOAD_S + 40)

    sent = report["by_label"]
    background = lab_multicast_sent(lab) - multicast_before
    expected = dict(sent, ip_options=sent["ip_options"] + background)
    try:
        after = lab.wait_stats(lambda s: all(s["drops"][c] - before["drops"][c] >= n
                                             for c, n in expected.items()), 10, "")
    except AssertionError:
        after = lab.stats()                 # judged below, counter by counter
    rises = {c: after["drops"][c] - before["drops"][c] for c in expected}
    wrong = {c: (rises[c], n) for c, n in expected.items() if rises[c] != n}
    check(not wrong, "drop counters rose by other than the frames sent (rise, sent): %s" % wrong)
    check(sum(sent.values()) == frames, "the generator's per-kind counts sum to %d"
          % sum(sent.values()))
    rss_after = resident_kb(lab)
    # Under ASan every free()d block (the stats replies --settle asks for) sits
    # in a quarantine of up to 256 MiB, so resident memory rises without a
    # leak; that build's leak checker judges leaks at exit instead.
    if not sanitized(lab.build_dir):
        check(rss_after - rss_before < RSS_GROWTH_MAX_KB, "the dataplane's resident memory "
              "grew from %d to %d KiB" % (rss_before, rss_after))

    downloads_figure = SlowDownloads.check(results)
    summary = ClientLoop.summary(batches)
    check(summary["connections"] > 0 and summary["failed"] == 0 and not summary["batch_errors"],
          "new connections during the storm: %s" % summary)
    check(lab.dataplane.poll() is None, "tether-dataplane died in the storm")
    return {
        "storm": "%d frames of %d kinds in %.1f s (%.0f frames/s)"
                 % (frames, len(KINDS), report["seconds"], frames / report["seconds"]),
        "drop counters": "sum of rises %d = %d sent + %d IGMP (lab bridge); per counter: %s"
                         % (sum(rises.values()), frames, background,
                            ", ".join("%s %d" % kv for kv in sorted(rises.items()))),
        "downloads": downloads_figure,
        "new connections during the storm": "%d/%d ok" % (summary["connections"] -
                                                          summary["failed"],
                                                          summary["connections"]),
        "dataplane memory": "VmRSS %d -> %d KiB over the %.1f s storm"
                            % (rss_before, rss_after, storm_s),
    }


if __name__ == "__main__":
    sys.exit(run_scenario("test_malformed_storm", scenario, CONFIG))
