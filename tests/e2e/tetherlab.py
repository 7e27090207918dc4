"""tetherlab: what every end-to-end test imports.

A test is a script, run as root as `python3 tests/e2e/test_x.py --build-dir BUILD`:

    from tetherlab import Lab, check, client_range, parse_args

    args = parse_args()
    with Lab() as lab:
        lab.start_dataplane(args.build_dir, config, "/run/tether-lab/dp.sock")
        results = lab.run_clients(client_range(20), "192.0.2.20:443", tls=True,
                                  ca=lab.ca_path(), server_name="cp1.assist.example")
        check(all(r["ok"] for r in results), "every client got an answer")

Lab brings the namespace lab up with scripts/lab.sh and always takes it down
again, whatever the test did; the dataplane runs in tl-lb, clients run
tests/e2e/lab_client.py in tl-client1/tl-client2 (one process per namespace,
in parallel), and the dataplane's and the control plane's sockets are plain
UNIX sockets reachable from any namespace.

Helpers that any test may use (the ssl-session tests do):

    lab.wait_ready()                       # backends and gateway resolved by ARP
    before = lab.stats()
    out = lab.test_client("--target", "192.0.2.20:443", "--sessions", 20, ...)
    after = lab.wait_stats(lambda s: stats_delta(before, s)["bindings_bound"] >= 60,
                           5, "every binding to be counted")
    delta = stats_delta(before, after)     # ssl_session counters: after - before
    sys.exit(run_scenario("test_x", scenario, CONFIG))   # the whole main()
"""

import argparse
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LAB_SH = REPO / "scripts" / "lab.sh"
LAB_CLIENT = REPO / "tests" / "e2e" / "lab_client.py"
STATE_DIR = Path(os.environ.get("TETHER_LAB_DIR", "/run/tether-lab"))

CLIENT_FIRST = 10                           # 203.0.113.10 .. 203.0.113.209
CLIENT_COUNT = 200
CLIENT_SPLIT = 110                          # .10-.109 in tl-client1, .110-.209 in tl-client2
CONTROL_HOST = "198.51.100.130"             # tl-ctl
DATAPLANE_WAIT_S = 20.0
TEST_CLIENT = Path("tests") / "tether-test-client"   # in the build directory


class LabCommandError(subprocess.CalledProcessError):
    """A lab command failed; unlike its parent, printing it shows the output."""

    def __str__(self):
        text = super().__str__()
        for name, data in (("stdout", self.stdout), ("stderr", self.stderr)):
            if data:
                text += "\n--- %s (tail) ---\n%s" % (name, tail(data, 20))
        return text


def tail(text, lines):
    return "\n".join(text.rstrip("\n").split("\n")[-lines:])


def node_namespace(node):
    """Returns the namespace of a lab node: "be1" -> "tl-be1", "tl-lb" unchanged."""
    return node if node.startswith("tl-") else "tl-" + node


def run(cmd, check=True, timeout=60, **kwargs):
    """Runs cmd, capturing text output; raises LabCommandError if check and it failed."""
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=timeout, **kwargs)
    if check and proc.returncode != 0:
        raise LabCommandError(proc.returncode, proc.args, proc.stdout, proc.stderr)
    return proc


def client_range(n, first=0):
    """Returns n client addresses as strings, from 203.0.113.(10+first) upward."""
    if not 0 <= first or first + n > CLIENT_COUNT:
        raise ValueError("the lab has %d client addresses" % CLIENT_COUNT)
    return ["203.0.113.%d" % (CLIENT_FIRST + first + i) for i in range(n)]


def backend_address(n):
    """Returns tl-beN's address: backend 1 is 198.51.100.131."""
    return "198.51.100.%d" % (130 + n)


def source_namespace(source):
    """Returns the namespace that owns a client (or control host) address."""
    address = ipaddress.IPv4Address(source)
    if address == ipaddress.IPv4Address(CONTROL_HOST):
        return "tl-ctl"
    if address in ipaddress.IPv4Network("203.0.113.0/24"):
        last = int(address) & 0xFF
        if CLIENT_FIRST <= last < CLIENT_SPLIT:
            return "tl-client1"
        if CLIENT_SPLIT <= last < CLIENT_FIRST + CLIENT_COUNT:
            return "tl-client2"
    raise ValueError("%s is not a lab client address" % source)


def expand_sources(sources):
    """Accepts a list of addresses or "A-B" ranges, or one comma-separated string."""
    if isinstance(sources, str):
        sources = sources.split(",")
    out = []
    for item in sources:
        item = str(item).strip()
        if "-" in item:
            first, last = (int(ipaddress.IPv4Address(x.strip())) for x in item.split("-", 1))
            out += [str(ipaddress.IPv4Address(i)) for i in range(first, last + 1)]
        elif item:
            out.append(str(ipaddress.IPv4Address(item)))
    return out


def client_arguments(kwargs):
    """Turns keyword arguments into lab_client.py options: per_source=3 -> --per-source 3."""
    argv = []
    for key, value in kwargs.items():
        option = "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            argv.append(option)
        else:
            argv += [option, str(value)]
    return argv


def run_clients(sources, target, run_timeout=300, **kwargs):
    """Runs lab_client.py for sources against target ("IP:PORT"), one process per
    client namespace, in parallel; returns every result (see lab_client.py), the
    first namespace's first.  kwargs are lab_client options (tls=True, ca=...,
    server_name=..., per_source=..., path=..., timeout=..., concurrency=...,
    order=..., resume=..., tls_max=..., no_ticket=...).  Raises RuntimeError if a
    client process fails or prints no JSON."""
    groups = {}
    for source in expand_sources(sources):
        groups.setdefault(source_namespace(source), []).append(source)
    options = client_arguments(kwargs)
    outcome = {}

    def one(namespace, group):
        cmd = ["ip", "netns", "exec", namespace, sys.executable, str(LAB_CLIENT),
               "--target", target, "--sources", ",".join(group)] + options
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=run_timeout)
            if proc.returncode != 0:
                raise RuntimeError("lab_client in %s exited %d: %s"
                                   % (namespace, proc.returncode, tail(proc.stderr, 20)))
            outcome[namespace] = json.loads(proc.stdout)["results"]
        except Exception as e:              # noqa: BLE001 - reported below, per namespace
            outcome[namespace] = e

    threads = [threading.Thread(target=one, args=item) for item in groups.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results = []
    for namespace in groups:
        got = outcome.get(namespace)
        if isinstance(got, Exception) or got is None:
            raise RuntimeError("clients in %s failed: %s" % (namespace, got))
        results += got
    return results


def unix_command(path, obj, timeout=5.0):
    """Sends obj as one JSON line to the UNIX socket at path; returns the parsed reply line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall((json.dumps(obj) + "\n").encode())
        data = b""
        while b"\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    line = data.split(b"\n", 1)[0]
    if not line:
        raise ConnectionError("no reply from %s to %s" % (path, json.dumps(obj)))
    return json.loads(line)


def check(cond, message):
    """Raises AssertionError(message) unless cond."""
    if not cond:
        raise AssertionError(message)


def wait_for(probe, timeout, what, interval=0.05):
    """Calls probe() until it returns a true value, and returns that value.
    Raises AssertionError naming what when timeout seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(interval)


def stats_delta(before, after, section="ssl_session"):
    """The rise of every integer counter of one object of two stats replies:
    stats_delta(b, a)["hit_session_id"] is a["ssl_session"]["hit_session_id"] -
    b["ssl_session"]["hit_session_id"].  section=None compares the replies'
    top level (e.g. drops_total); a dotted section ("flows") any object."""
    old, new = before, after
    for name in (section.split(".") if section else ()):
        old, new = old[name], new[name]
    return {key: value - old.get(key, 0) for key, value in new.items()
            if isinstance(value, int) and not isinstance(value, bool)}


def parse_args(description=None, argv=None):
    """The e2e tests' command line: --build-dir BUILD (default REPO/build)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--build-dir", type=Path, default=REPO / "build",
                        help="CMake build directory holding tether-dataplane etc.")
    args = parser.parse_args(argv)
    args.build_dir = args.build_dir.resolve()
    return args


class Lab:
    """The namespace lab as a context manager: up on entry, down on exit, always."""

    def __init__(self, backends=None):
        self.backends = backends
        self.env = dict(os.environ)
        if backends is not None:
            self.env["LAB_BACKENDS"] = str(backends)
        self.dataplane = None
        self.dataplane_socket = None
        self.build_dir = None
        self.dataplane_log_path = STATE_DIR / "dataplane.log"
        self._old_sigterm = None

    # -- lab lifetime ------------------------------------------------------

    def __enter__(self):
        # SIGTERM (a ctest timeout) must still take the lab down.
        if threading.current_thread() is threading.main_thread():
            self._old_sigterm = signal.signal(signal.SIGTERM, _sigterm_to_exit)
        try:
            run([LAB_SH, "up"], env=self.env, timeout=120)
        except BaseException:
            self._down()
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        self._down()
        return False

    def _down(self):
        try:
            self.stop_dataplane()
        finally:
            proc = run([LAB_SH, "down"], check=False, env=self.env, timeout=120)
            if proc.returncode != 0:
                print("lab.sh down failed:\n" + proc.stderr, file=sys.stderr)
            if self._old_sigterm is not None:
                signal.signal(signal.SIGTERM, self._old_sigterm)
                self._old_sigterm = None

    # -- nodes ---------------------------------------------------------------

    def exec(self, node, *cmd, check=True, timeout=60, **kwargs):
        """Runs cmd in a lab node ("router", "client1", "be2", "tl-lb", ...); returns
        a CompletedProcess with text stdout/stderr.  Raises LabCommandError (a
        CalledProcessError) when check and it failed."""
        return run(["ip", "netns", "exec", node_namespace(node), *cmd], check=check,
                   timeout=timeout, **kwargs)

    def ca_path(self):
        return STATE_DIR / "ca.pem"

    def state_dir(self):
        return STATE_DIR

    def stop_backend(self, n):
        """Stops the server in tl-beN (its health checks start failing)."""
        run([LAB_SH, "stop-backend", n], env=self.env)

    def start_backend(self, n):
        """(Re)starts the server in tl-beN and waits until it answers."""
        run([LAB_SH, "start-backend", n], env=self.env)

    def run_clients(self, sources, target, **kwargs):
        return run_clients(sources, target, **kwargs)

    # -- dataplane -----------------------------------------------------------

    def start_dataplane(self, build_dir, config_path, socket_path, extra_eal=()):
        """Starts BUILD/tether-dataplane in tl-lb and waits (up to 20 s) until its
        socket answers {"command": "stats"}.  Raises RuntimeError with the log's
        tail if it exits or does not answer in time."""
        if self.dataplane is not None:
            raise RuntimeError("a dataplane is already running (pid %d)" % self.dataplane.pid)
        binary = Path(build_dir) / "tether-dataplane"
        if not binary.exists():
            raise RuntimeError("no dataplane binary at %s" % binary)
        self.build_dir = Path(build_dir)
        cmd = ["ip", "netns", "exec", "tl-lb", str(binary), "--config", str(config_path),
               "--socket", str(socket_path)]
        if extra_eal:
            cmd += ["--", *[str(a) for a in extra_eal]]
        self.dataplane_socket = str(socket_path)
        with open(self.dataplane_log_path, "ab") as log:
            log.write(("--- %s %s\n" % (time.strftime("%H:%M:%S"), " ".join(cmd))).encode())
            log.flush()
            self.dataplane = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                              stderr=subprocess.STDOUT, start_new_session=True)
        (STATE_DIR / "dataplane.pid").write_text("%d\n" % self.dataplane.pid)
        deadline = time.monotonic() + DATAPLANE_WAIT_S
        last_error = None
        while time.monotonic() < deadline:
            code = self.dataplane.poll()
            if code is not None:
                self.dataplane = None
                raise RuntimeError("tether-dataplane exited with %d during start-up; log "
                                   "tail:\n%s" % (code, tail(self.dataplane_log(), 30)))
            try:
                self.dataplane_command({"command": "stats"}, timeout=1.0)
                return self.dataplane
            except (OSError, ValueError) as e:
                last_error = e
                time.sleep(0.1)
        self.stop_dataplane()
        raise RuntimeError("tether-dataplane did not answer on %s within %.0f s (%s); log "
                           "tail:\n%s" % (socket_path, DATAPLANE_WAIT_S, last_error,
                                          tail(self.dataplane_log(), 30)))

    def stop_dataplane(self):
        """SIGTERM, up to 5 s, then SIGKILL; returns the exit code (None if none ran)."""
        proc, self.dataplane = self.dataplane, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        try:
            (STATE_DIR / "dataplane.pid").unlink()
        except OSError:
            pass
        return proc.returncode

    def dataplane_log(self):
        try:
            return self.dataplane_log_path.read_text(errors="replace")
        except OSError:
            return ""

    def dataplane_command(self, obj, timeout=5.0, socket_path=None):
        """Sends one JSON command to the dataplane's socket; returns its parsed reply."""
        path = socket_path or self.dataplane_socket
        if path is None:
            raise RuntimeError("no dataplane socket: call start_dataplane first")
        return unix_command(path, obj, timeout)

    def stats(self):
        """The dataplane's {"command": "stats"} reply."""
        return self.dataplane_command({"command": "stats"})

    def wait_stats(self, predicate, timeout, what, interval=0.05):
        """Polls stats() until predicate(stats) holds; returns those stats.  Raises
        AssertionError naming what on timeout.  The counters are summed on the
        main lcore while the worker runs: wait for them rather than read once."""
        found = []

        def probe():
            snapshot = self.stats()
            if predicate(snapshot):
                found.append(snapshot)
                return True
            return False
        wait_for(probe, timeout, what, interval)
        return found[0]

    def wait_ready(self, timeout=10):
        """Waits until the dataplane has resolved every backend and its gateway by
        ARP (every backend neighbor_resolved, one more address learned)."""
        def ready(s):
            unique = {b["address"] for b in s["backends"]}
            return all(b["neighbor_resolved"] for b in s["backends"]) and \
                s["arp"]["learned"] >= len(unique) + 1
        return self.wait_stats(ready, timeout,
                               "the dataplane to resolve its backends and gateway by ARP")

    def test_client(self, *args, node=None, timeout=120):
        """Runs BUILD/tests/tether-test-client with args (str() of each) in a client
        namespace -- node, else the one owning the first --create-from address,
        else tl-client1 -- and returns its JSON document (exit status 1, some
        connection failed, still returns it: the results say which).  Raises
        RuntimeError when it prints no JSON (usage error, crash) or outlives
        timeout seconds.  The document gains "elapsed_s", the wall time."""
        if self.build_dir is None:
            raise RuntimeError("no build directory: call start_dataplane first")
        argv = [str(a) for a in args]
        if node is None:
            node = "tl-client1"
            if "--create-from" in argv:
                first = argv[argv.index("--create-from") + 1].split(",")[0].split("-")[0]
                node = source_namespace(first)
        started = time.monotonic()
        try:
            proc = self.exec(node, self.build_dir / TEST_CLIENT, *argv, check=False,
                             timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError("tether-test-client %s ran over %d s" % (" ".join(argv), timeout))
        try:
            document = json.loads(proc.stdout)
        except ValueError:
            raise RuntimeError("tether-test-client %s exited %d without JSON: %s"
                               % (" ".join(argv), proc.returncode,
                                  tail(proc.stderr or proc.stdout, 10)))
        document["elapsed_s"] = time.monotonic() - started
        return document


def run_scenario(name, scenario, config_path, backends=None, argv=None):
    """The whole main() of a lab test: parses --build-dir, brings the lab up (with
    backends servers if given), starts the dataplane with config_path, waits
    for ARP, runs scenario(lab) -> {figure: text}, checks the dataplane is still
    up, and takes everything down.  Prints PASS and the figures, or FAIL with
    the message and the dataplane log's tail; returns the exit status."""
    args = parse_args(name, argv)
    started = time.monotonic()
    try:
        with Lab(backends) as lab:
            lab.start_dataplane(args.build_dir, config_path, STATE_DIR / "dataplane.sock")
            try:
                lab.wait_ready()
                figures = scenario(lab)
                check(lab.dataplane.poll() is None, "tether-dataplane exited during the test")
            except BaseException:
                print("--- tether-dataplane log (tail) ---\n%s" % tail(lab.dataplane_log(), 30),
                      file=sys.stderr)
                raise
    except AssertionError as e:
        print("FAIL %s (%.1f s): %s" % (name, time.monotonic() - started, e), file=sys.stderr)
        return 1
    except Exception:                       # noqa: BLE001 - setup trouble, reported whole
        traceback.print_exc()
        print("ERROR %s: the lab or the dataplane failed (above)" % name, file=sys.stderr)
        return 1
    print("PASS %s (%.1f s)" % (name, time.monotonic() - started))
    for key, value in figures.items():
        print("  %-34s %s" % (key + ":", value))
    return 0


def _sigterm_to_exit(signum, frame):
    raise SystemExit(128 + signum)
