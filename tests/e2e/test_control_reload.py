#!/usr/bin/env python3
"""test_control_reload: 100 reloads under load (tetherctl and SIGHUP) disturb no connection; a broken file is refused whole.

User-visible behaviour (issue 4, acceptance 3 and 4; issue 6, item 5: 100
reloads under load; docs/operations.md, "Reload"): tether-control runs on STATE_DIR/control-reload.json, a symlink the
test switches between two valid configs (tests/e2e/configs/control_reload_a.json
and _b.json): B adds be4 to pool `web` and a service `web-extra`.  Under a
continuous load of

- 20 long-lived TLS connections to 192.0.2.20:443 (service `web`), each a slow
  reader downloading 8 MB at a steady pace over about 32 s (44 s sanitized),
  every byte checked, started while B is loaded so that some of them run to
  be4, which every B -> A reload removes from the pool under them;
- batches of new TLS connections to `web` (443) and plain HTTP ones to
  `web-http` (80), services present in both configs, one batch after another;

the test reloads 100 times, alternating A and B: every fifth reload is a
SIGHUP to tether-control, the others `tetherctl reload`.  Each reload
succeeds, says what changed (tetherctl's reply names backend web/be4 added
or removed; for SIGHUP the status counts one backend added or removed) and
raises the dataplane's generation.  Then the symlink points at a broken file (B with
weight 5000 and a service naming a pool that does not exist) and
`tetherctl reload` exits 1 with "config refused; the running config stays" and
both JSON paths; the dataplane's generation and config do not move and the
status says the last reload was refused.

Required: every download completes byte-exact with a clean close and no wait
for data over 2 s (0 reset, 0 stalled); 0 failed new connections; new
connections reached be4 while B was loaded.

Run as root: python3 tests/e2e/test_control_reload.py --build-dir BUILD
"""

import json
import os
import signal
import sys
import time

from tetherlab import (REPO, STATE_DIR, ClientLoop, SlowDownloads, check, client_range,
                       run_scenario, sanitized, wait_for)

CONFIGS = REPO / "tests" / "e2e" / "configs"
CONFIG_A, CONFIG_B = CONFIGS / "control_reload_a.json", CONFIGS / "control_reload_b.json"
VIP = "192.0.2.20"
SERVER_NAME = "web.assist.example"
RELOADS = 100
SIGHUP_EVERY = 5                     # every fifth reload is a SIGHUP
RELOAD_GAP_S = 0.2
DOWNLOADS, DOWNLOAD_BYTES, DOWNLOAD_S = 20, 8 * 1000 * 1000, 32.0
# The reloads take 22 s (25 s sanitized, more on a busy machine); the downloads
# must outlast them and the broken reload after them.
DOWNLOAD_S_SANITIZED = 44.0
STALL_S = 2.0
DOWNLOAD_SOURCES = client_range(DOWNLOADS, first=100)       # 203.0.113.110.. (tl-client2)
TLS_SOURCES, HTTP_SOURCES = client_range(10), client_range(10, first=10)   # tl-client1


def point(link, target):
    """Switches the symlink atomically."""
    tmp = link.with_name(link.name + ".new")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)


def generation(lab):
    return lab.dataplane_command({"command": "status"})["generation"]


def broken_file():
    """B with two mistakes; returns (path, the JSON paths --check must name)."""
    config = json.loads(CONFIG_B.read_text())
    config["pools"]["web"]["backends"][0]["weight"] = 5000
    config["services"][1]["pool"] = "nope"
    path = STATE_DIR / "control-reload-broken.json"
    path.write_text(json.dumps(config, indent=1))
    return path, ["$.pools.web.backends[0].weight", "$.services[1].pool"]


def reload(lab, link, target, expect_sign, by_signal=False):
    """Points link at target, reloads (tetherctl, or SIGHUP to tether-control);
    returns (seconds, generation); checks the reply or, for SIGHUP, the status."""
    point(link, target)
    before = generation(lab)
    started = time.monotonic()
    if by_signal:
        lab.control.send_signal(signal.SIGHUP)
        wait_for(lambda: generation(lab) > before, 5, "the SIGHUP reload of %s" % target.name,
                 0.005)
        seconds = time.monotonic() - started
        said = lab.control_command({"command": "status"})["reload"]
        # the status keeps the counts of the last reload, not the names
        wanted = "backends +1 -0" if expect_sign == "+" else "backends +0 -1"
        check(said["result"] == "ok" and wanted in said["summary"],
              "after the SIGHUP reload of %s the status says (wanted '%s'): %s"
              % (target.name, wanted, said))
    else:
        proc = lab.tetherctl("reload")
        seconds = time.monotonic() - started
        check(proc.returncode == 0, "tetherctl reload of %s exited %d: %s%s"
              % (target.name, proc.returncode, proc.stdout, proc.stderr))
        check("%s backend web/be4" % expect_sign in proc.stdout,
              "the reload of %s does not say '%s backend web/be4': %s"
              % (target.name, expect_sign, proc.stdout))
    after = generation(lab)
    check(after > before, "dataplane generation %d -> %d after reloading %s"
          % (before, after, target.name))
    return seconds, after


def scenario(lab):
    figures = {}
    link = STATE_DIR / "control-reload.json"
    point(link, CONFIG_A)
    lab.start_control(lab.build_dir, link)
    reload(lab, link, CONFIG_B, "+")          # B first, so downloads also run to be4
    first_generation = generation(lab)

    download_s = DOWNLOAD_S_SANITIZED if sanitized(lab.build_dir) else DOWNLOAD_S
    downloads = SlowDownloads(DOWNLOAD_SOURCES, "%s:443" % VIP, DOWNLOAD_BYTES, download_s,
                              SERVER_NAME, ca=lab.ca_path(), stall_limit=15)
    loops = []
    try:
        established = downloads.wait_established(15)
        loops = [ClientLoop(TLS_SOURCES, "%s:443" % VIP, tls=True, ca=lab.ca_path(),
                            server_name=SERVER_NAME, concurrency=10, timeout=5).start(),
                 ClientLoop(HTTP_SOURCES, "%s:80" % VIP, concurrency=10, timeout=5).start()]
        started = time.monotonic()
        times = []
        for i in range(RELOADS):
            target, sign = (CONFIG_A, "-") if i % 2 == 0 else (CONFIG_B, "+")
            seconds, last_generation = reload(lab, link, target, sign,
                                              by_signal=i % SIGHUP_EVERY == SIGHUP_EVERY - 1)
            times.append(seconds)
            time.sleep(RELOAD_GAP_S)
        reload_span = time.monotonic() - started
        current = CONFIG_A if RELOADS % 2 == 1 else CONFIG_B

        # a broken file under the same load
        broken, paths = broken_file()
        point(link, broken)
        gen_before = generation(lab)
        proc = lab.tetherctl("reload")
        refused_out = proc.stdout + proc.stderr
        gen_after = generation(lab)
        dp_status = lab.dataplane_command({"command": "status"})
        status = lab.control_command({"command": "status"})
        point(link, current)
        time.sleep(1.0)                       # traffic goes on after the refusal
        broken_at = time.time()
        time.sleep(1.0)
    finally:
        batches = [loop.stop() for loop in loops]
        results = downloads.wait(download_s + 20)

    # --- the refused reload
    figures["broken file"] = "tetherctl exit %d; %s" % (
        proc.returncode, " | ".join(line for line in refused_out.splitlines() if line))
    check(proc.returncode == 1, "tetherctl reload of a broken file exited %d: %s"
          % (proc.returncode, refused_out))
    check("config refused; the running config stays" in refused_out,
          "the refusal does not say the running config stays: %s" % refused_out)
    for path in paths:
        check("%s: %s:" % (link, path) in refused_out,
              "the refusal does not name %s: %s" % (path, refused_out))
    check(gen_after == gen_before, "a refused reload moved the dataplane's generation %d -> %d"
          % (gen_before, gen_after))
    check(dp_status["config"] == str(link), "the dataplane's config is %s" % dp_status["config"])
    check(status["reload"]["result"] == "refused" and status["reload"]["errors"] == len(paths),
          "tetherctl status says of the last reload: %s" % status["reload"])

    # --- the long-lived connections
    bad = [r for r in results if not r["ok"] or r["bytes"] != DOWNLOAD_BYTES or
           not r["clean_close"] or r["max_gap_s"] > STALL_S]
    servers = {}
    for r in results:
        servers[r["server"]] = servers.get(r["server"], 0) + 1
    gaps = [r["max_gap_s"] for r in results if r["max_gap_s"] is not None]
    durations = [r["ended"] - r["established"] for r in results if r.get("established")]
    figures["long-lived downloads"] = ("%d of %d complete byte-exact (%d MB each, %.1f-%.1f s), "
                                       "clean close; by backend %s; longest wait for data %.3f s"
                                       % (len(results) - len(bad), len(results),
                                          DOWNLOAD_BYTES // 1000000, min(durations or [0]),
                                          max(durations or [0]), dict(sorted(servers.items())),
                                          max(gaps or [0])))
    check(len(established) == DOWNLOADS, "only %d of %d downloads started"
          % (len(established), DOWNLOADS))
    check(not bad, "%d of %d long-lived connections reset, stalled or short: %s"
          % (len(bad), len(results), ["%s via %s: %s bytes, gap %s s, clean %s, %s"
                                      % (r["source"], r["server"], r["bytes"], r["max_gap_s"],
                                         r["clean_close"], r["error"]) for r in bad[:4]]))
    check(max(r["ended"] for r in results) > broken_at,
          "every download ended before the broken reload: they did not span it")

    # --- new connections
    for what, got in zip(("new TLS (web, 443)", "new HTTP (web-http, 80)"), batches):
        summary = ClientLoop.summary(got)
        figures[what] = "%d connections in %d batches, %d failed; by backend %s" % (
            summary["connections"], summary["batches"], summary["failed"],
            dict(sorted(summary["servers"].items())))
        check(not summary["batch_errors"], "%s: batches failed: %s"
              % (what, summary["batch_errors"][:2]))
        check(summary["failed"] == 0, "%s: %d of %d failed: %s" % (
            what, summary["failed"], summary["connections"], summary["errors"]))
        check(summary["servers"].get("be4", 0) > 0, "%s: none reached be4" % what)
    figures["reloads"] = ("%d in %.1f s (alternating A/B, %d by SIGHUP), %.0f ms median, "
                          "%.0f ms max; dataplane generation %d -> %d"
                          % (RELOADS, reload_span, RELOADS // SIGHUP_EVERY,
                             sorted(times)[len(times) // 2] * 1e3, max(times) * 1e3,
                             first_generation, last_generation))
    check(lab.control.poll() is None, "tether-control exited during the test")
    return figures


if __name__ == "__main__":
    sys.exit(run_scenario("test_control_reload", scenario, CONFIG_A))
