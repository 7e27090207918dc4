#!/usr/bin/env python3
"""test_control_health: a dead backend is taken out within fall x interval + timeout, with no failed client; bad certificates are reported down with their reason.

User-visible behaviour (issue 4, acceptance 2; docs/health-checks.md): pool
`web` (be1..be3 behind 192.0.2.20:443, persistence none) has TLS checks every
200 ms, timeout 150 ms, fall 2, rise 2, run by tether-control in tl-ctl, so
they leave from the control host's own interface.  While batches of new TLS
clients run all along:

1. the server of be2 is stopped (`lab.sh stop-backend 2`): the dataplane is
   told `down` within fall x interval + timeout (550 ms) + 300 ms slack for
   lab.sh, measured from the moment stop-backend is called;
2. from then on be2 gets 0 new flows (its dataplane new_flows counter stays put
   until it is back) and every client connection started after the detection
   succeeds, on be1 or be3 (none is answered by be2);
3. the server is started again (`lab.sh start-backend 2`, which returns once it
   answers): be2 is `up` in the dataplane within rise x interval (400 ms) +
   200 ms slack of that, after at least (rise - 1) x interval, and takes new
   flows again; the log has one line for each change, with its reason.
4. the server of be3 hangs instead (SIGSTOP: the kernel still accepts, the TLS
   handshake never comes): down within fall x interval + timeout + slack of the
   SIGSTOP, with reason "timeout after 150 ms (TLS handshake)"; 0 new flows to
   it and 0 failed clients started after detection; SIGCONT: up within rise x
   interval + slack.

Then pool `certs` (no service) holds two extra lab servers in tl-be4 whose
certificates are signed by the lab CA: one for the wrong name (port 9443,
wrong.lab.example instead of be4.lab.example) and one that expired ten days ago
(port 9444).  `tetherctl show backends` shows both down with that reason:
"TLS: hostname mismatch (wanted be4.lab.example)" and "certificate has
expired" with a negative EXPIRY(d).

Run as root: python3 tests/e2e/test_control_health.py --build-dir BUILD
"""

import os
import signal
import sys
import time

from tetherlab import REPO, ClientLoop, check, client_range, run_scenario, wait_for

CONFIG = REPO / "tests" / "e2e" / "configs" / "control_health.json"
VIP = "192.0.2.20:443"
SERVER_NAME = "web.assist.example"
INTERVAL_S, TIMEOUT_S, RISE, FALL = 0.200, 0.150, 2, 2
DOWN_SLACK_S, UP_SLACK_S = 0.300, 0.200
AFTER_DOWN_S = 2.0                           # clients run this long with be2 down
AFTER_UP_S = 1.5                             # and this long after it is back
SOURCES = client_range(10)                   # tl-client1: one lab_client per batch


def web_be2(lab, name="be2"):
    return lab.backend_states()[("web", name)]


def poll_state(lab, wanted, timeout, name="be2"):
    """Polls the dataplane until web/NAME is in state wanted; returns (time.time(), that
    backend's stats)."""
    deadline = time.monotonic() + timeout
    while True:
        backend = web_be2(lab, name)
        now = time.time()
        if backend["state"] == wanted:
            return now, backend
        check(time.monotonic() < deadline, "web/%s not %s in the dataplane after %.1f s (state %s)"
              % (name, wanted, timeout, backend["state"]))
        time.sleep(0.005)


def show_backends(lab):
    """tetherctl show backends as {(pool, backend): row text} plus the whole table."""
    proc = lab.tetherctl("show", "backends", check=True)
    rows = {}
    for line in proc.stdout.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 2 and not line.startswith("("):
            rows[(fields[0], fields[1])] = line
    return rows, proc.stdout


def scenario(lab):
    figures = {}
    # servers with bad certificates, then the control plane that checks them
    wrong_cert, wrong_key = lab.make_certificate("wrongname", ["wrong.lab.example"])
    old_cert, old_key = lab.make_certificate("expired", ["be4.lab.example"],
                                             valid_from_days=-40, valid_to_days=-10)
    lab.start_server(4, "wrongname", wrong_cert, wrong_key, tls_ports=[9443])
    lab.start_server(4, "expired", old_cert, old_key, tls_ports=[9444])
    lab.start_control(lab.build_dir, CONFIG)

    def checked_up():
        got = lab.tetherctl("show", "backends", json_out=True, check=True).json
        web = [b for b in got["backends"] if b["pool"] == "web"]
        return all(b["health"]["state"] == "up" for b in web) and \
            all(b["state"] == "up" for b in web)
    wait_for(checked_up, 5, "be1..be3 to pass their first checks")

    loop = ClientLoop(SOURCES, VIP, tls=True, ca=lab.ca_path(), server_name=SERVER_NAME,
                      per_source=2, concurrency=20, timeout=3).start()
    try:
        wait_for(lambda: ClientLoop.summary(loop.batches)["servers"].get("be2", 0) > 0, 10,
                 "clients to reach be2 before it is stopped")
        called = time.time()
        lab.stop_backend(2)
        stopped = time.time()
        down_at, at_down = poll_state(lab, "down", 5)
        detection = down_at - called
        time.sleep(AFTER_DOWN_S)
        before_restart = web_be2(lab)
        start_called = time.time()
        lab.start_backend(2)
        answering = time.time()
        up_at, _ = poll_state(lab, "up", 5)
        health = next(b for b in lab.tetherctl("show", "backends", json_out=True,
                                               check=True).json["backends"]
                      if (b["pool"], b["name"]) == ("web", "be2"))["health"]
        time.sleep(AFTER_UP_S)
    finally:
        batches = loop.stop()
    after_up = web_be2(lab)

    # --- down: when, and nothing for be2 from then on
    limit = FALL * INTERVAL_S + TIMEOUT_S + DOWN_SLACK_S
    figures["down detected"] = ("%.0f ms after stop-backend was called (%.0f ms after it "
                                "returned); limit fall x interval + timeout + slack = %.0f ms"
                                % (detection * 1e3, (down_at - stopped) * 1e3, limit * 1e3))
    check(detection <= limit, "be2 marked down %.0f ms after its server was stopped; limit %.0f ms"
          % (detection * 1e3, limit * 1e3))
    leaked = before_restart["new_flows"] - at_down["new_flows"]
    figures["be2 new flows while down"] = "%d (dataplane counter, %.1f s)" % (
        leaked, up_at - down_at)
    check(leaked == 0, "be2 got %d new flows after it was marked down" % leaked)

    after = ClientLoop.results(batches, started_after=down_at)
    during = ClientLoop.results(batches, started_after=down_at, ended_before=up_at)
    failed = [r for r in after if not r["ok"]]
    on_be2 = [r for r in during if r["server"] == "be2"]
    errors = [b["error"] for b in batches if "error" in b and b["started"] > down_at]
    before = ClientLoop.results(batches, started_before=down_at)
    figures["clients before detection"] = "%d connections, %d failed (allowed: be2 died under them)" \
        % (len(before), sum(not r["ok"] for r in before))
    figures["clients after detection"] = "%d connections in %d batches, %d failed, %d to be2 while down" \
        % (len(after), sum(b["started"] > down_at for b in batches), len(failed), len(on_be2))
    check(not errors, "client batches failed after detection: %s" % errors[:2])
    check(not failed, "%d of %d client connections started after detection failed: %s"
          % (len(failed), len(after), ["%s: %s" % (r["source"], r["error"]) for r in failed[:3]]))
    check(not on_be2, "%d connections started while be2 was down were answered by be2"
          % len(on_be2))
    check(len(during) >= 40, "only %d client connections while be2 was down" % len(during))

    # --- up again
    rise_time = up_at - answering
    up_limit = RISE * INTERVAL_S + UP_SLACK_S
    figures["up again"] = ("%.0f ms after start-backend returned (%.0f ms after it was called); "
                           "limit rise x interval + slack = %.0f ms; %d consecutive successes"
                           % (rise_time * 1e3, (up_at - start_called) * 1e3, up_limit * 1e3,
                              health["consecutive_successes"]))
    check(rise_time <= up_limit, "be2 up %.0f ms after its server answered; limit %.0f ms"
          % (rise_time * 1e3, up_limit * 1e3))
    check(up_at - start_called >= (RISE - 1) * INTERVAL_S,
          "be2 up %.0f ms after the restart began: sooner than rise x interval allows"
          % ((up_at - start_called) * 1e3))
    check(health["consecutive_successes"] >= RISE, "be2 up after %d successes, rise is %d"
          % (health["consecutive_successes"], RISE))
    regained = after_up["new_flows"] - before_restart["new_flows"]
    figures["be2 new flows after up"] = "%d in %.1f s" % (regained, AFTER_UP_S)
    check(regained > 0, "be2 took no new flows after it came back")
    log = lab.control_log()
    for line in ("backend web/be2 down: connect: Connection refused (%d failures)" % FALL,
                 "backend web/be2 up: %d consecutive checks passed" % RISE):
        check(line in log, "the control log lacks '%s'" % line)

    hang_phase(lab, figures)

    # --- certificates: reported down, with the reason
    wanted = {("certs", "wrongname"): "TLS: hostname mismatch (wanted be4.lab.example)",
              ("certs", "expired"): "TLS: certificate verify failed: certificate has expired"}
    rows, table = show_backends(lab)
    print(table)
    for key, reason in wanted.items():
        row = rows.get(key)
        check(row is not None, "tetherctl show backends has no row for %s/%s" % key)
        check(row.split()[4] == "down" and reason in row,
              "%s/%s: expected down with '%s', got: %s" % (key + (reason, row)))
    got = {(b["pool"], b["name"]): b for b in lab.tetherctl("show", "backends", json_out=True,
                                                             check=True).json["backends"]}
    expiry = got[("certs", "expired")]["health"]["days_to_expiry"]
    check(expiry in (-10, -11), "the expired certificate shows %s days to expiry, expected -10"
          % expiry)
    check(got[("certs", "wrongname")]["health"]["days_to_expiry"] >= 29,
          "the wrong-name certificate's expiry is %s days"
          % got[("certs", "wrongname")]["health"]["days_to_expiry"])
    for key in wanted:
        check(got[key]["state"] == "down" and lab.backend_states()[key]["state"] == "down",
              "%s/%s is not down in the dataplane" % key)
    figures["wrong name (9443)"] = "down: %s" % got[("certs", "wrongname")]["health"]["last_error"]
    figures["expired (9444)"] = "down: %s; EXPIRY(d) %d" % (
        got[("certs", "expired")]["health"]["last_error"], expiry)
    check(lab.control.poll() is None, "tether-control exited during the test")
    return figures


def hang_phase(lab, figures):
    """be3's server stops answering (SIGSTOP): the kernel still completes connects, the TLS
    handshake never comes, so each check fails by its timeout."""
    pid = int((lab.state_dir() / "be3.pid").read_text())
    loop = ClientLoop(SOURCES, VIP, tls=True, ca=lab.ca_path(), server_name=SERVER_NAME,
                      per_source=2, concurrency=20, timeout=1).start()
    try:
        wait_for(lambda: ClientLoop.summary(loop.batches)["servers"].get("be3", 0) > 0, 10,
                 "clients to reach be3 before it hangs")
        called = time.time()
        os.kill(pid, signal.SIGSTOP)
        down_at, at_down = poll_state(lab, "down", 5, "be3")
        time.sleep(AFTER_DOWN_S + 1.0)       # a batch caught by the hang takes 1 s to fail
        before_resume = web_be2(lab, "be3")
        resumed = time.time()
        os.kill(pid, signal.SIGCONT)
        up_at, _ = poll_state(lab, "up", 5, "be3")
        time.sleep(1.0)
    finally:
        os.kill(pid, signal.SIGCONT)
        batches = loop.stop()
    after_up = web_be2(lab, "be3")
    detection = down_at - called
    limit = FALL * INTERVAL_S + TIMEOUT_S + DOWN_SLACK_S
    figures["hung server: down"] = ("%.0f ms after SIGSTOP; limit fall x interval + timeout + "
                                    "slack = %.0f ms" % (detection * 1e3, limit * 1e3))
    check(detection <= limit, "hung be3 marked down %.0f ms after SIGSTOP; limit %.0f ms"
          % (detection * 1e3, limit * 1e3))
    # fall failures: the first may have begun just before the SIGSTOP, each takes the timeout
    check(detection >= (FALL - 1) * INTERVAL_S + TIMEOUT_S - 0.05,
          "hung be3 marked down %.0f ms after SIGSTOP, sooner than %d timeouts allow"
          % (detection * 1e3, FALL))
    leaked = before_resume["new_flows"] - at_down["new_flows"]
    after = ClientLoop.results(batches, started_after=down_at)
    during = ClientLoop.results(batches, started_after=down_at, ended_before=up_at)
    failed = [r for r in after if not r["ok"]]
    on_be3 = [r for r in during if r["server"] == "be3"]
    figures["hung server: clients"] = ("after detection %d connections, %d failed, %d to be3 "
                                       "while down; be3 new flows while down %d"
                                       % (len(after), len(failed), len(on_be3), leaked))
    check(leaked == 0, "be3 got %d new flows after it was marked down" % leaked)
    check(not failed, "%d of %d client connections started after detection failed: %s"
          % (len(failed), len(after), ["%s: %s" % (r["source"], r["error"]) for r in failed[:3]]))
    check(not on_be3 and len(during) >= 40, "%d of %d connections while be3 was down went to it"
          % (len(on_be3), len(during)))
    rise_time = up_at - resumed
    figures["hung server: up"] = "%.0f ms after SIGCONT; limit rise x interval + slack = %.0f ms" \
        % (rise_time * 1e3, (RISE * INTERVAL_S + UP_SLACK_S) * 1e3)
    check(rise_time <= RISE * INTERVAL_S + UP_SLACK_S, "be3 up %.0f ms after SIGCONT"
          % (rise_time * 1e3))
    check(after_up["new_flows"] > before_resume["new_flows"], "be3 took no new flows after it came back")
    line = "backend web/be3 down: timeout after %d ms (TLS handshake) (%d failures)" % (
        TIMEOUT_S * 1e3, FALL)
    check(line in lab.control_log(), "the control log lacks '%s'" % line)


if __name__ == "__main__":
    sys.exit(run_scenario("test_control_health", scenario, CONFIG))
