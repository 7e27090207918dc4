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

The control-plane tests add tether-control (in tl-ctl, so its health checks
leave from the control host) and tetherctl:

    lab.start_control(args.build_dir, config)   # waits until it pushed its state
    lab.tetherctl("show", "backends")           # CompletedProcess; json_out=True parses
    downloads = SlowDownloads(sources, "192.0.2.20:443", size, seconds, "cp.assist.example")
    loop = ClientLoop(sources, "192.0.2.20:443", tls=True).start(); ...; loop.stop()
    cert, key = lab.make_certificate("wrong", ["wrong.lab.example"])
    lab.start_server(4, "wrong", cert, key, tls_ports=[9443])
"""

import argparse
import ipaddress
import json
import os
import re
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
CONTROL_WAIT_S = 15.0
CONTROL_SOCKET = STATE_DIR / "control.sock"  # control.socket of tests/e2e/configs/control_*.json
SERVER_WAIT_S = 10.0
TEST_CLIENT = Path("tests") / "tether-test-client"   # in the build directory


# What ASan, LSan and UBSan print when they find something (a build with
# TETHER_SANITIZE=ON, scripts/test.sh --sanitize).  Their reports go to the
# process's stderr: the daemons' logs, or what run() captures.  Any report fails
# the test, even one printed at exit after the test's own checks passed.
SANITIZER_REPORT = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer)|Sanitizer:DEADLYSIGNAL|"
                              r"^\S+:\d+:\d+: runtime error: ", re.MULTILINE)


def sanitizer_report(text, lines=60):
    """Returns the first sanitizer report in text (up to lines lines), or None."""
    found = SANITIZER_REPORT.search(text or "")
    if found is None:
        return None
    start = text.rfind("\n", 0, found.start()) + 1
    return "\n".join(text[start:].split("\n")[:lines])


def sanitized(build_dir):
    """True when build_dir was configured with TETHER_SANITIZE=ON (scripts/test.sh
    --sanitize).  Its binaries run two to three times slower: a test that floods
    the dataplane at a fixed rate scales the rate down for them."""
    try:
        return "TETHER_SANITIZE:BOOL=ON" in (Path(build_dir) / "CMakeCache.txt").read_text()
    except OSError:
        return False


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
    """Runs cmd, capturing text output; raises LabCommandError if check and it failed,
    and AssertionError if it printed a sanitizer report (tetherctl, the test client)."""
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=timeout, **kwargs)
    report = sanitizer_report(proc.stderr)
    if report:
        raise AssertionError("sanitizer report from %s:\n%s"
                             % (" ".join(str(c) for c in cmd), report))
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
        self.control = None
        self.control_socket = None
        self.control_started = False
        self.control_log_path = STATE_DIR / "control.log"
        self.servers = []
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
        reports = []
        try:
            self.stop_servers()
            self.stop_control()
            self.stop_dataplane()
            # the daemons have exited (LeakSanitizer reports at exit); the logs
            # go with the state directory
            for name, text in (("tether-dataplane", self.dataplane_log()),
                               ("tether-control", self.control_log())):
                report = sanitizer_report(text)
                if report:
                    reports.append("sanitizer report in %s's log:\n%s" % (name, report))
        finally:
            proc = run([LAB_SH, "down"], check=False, env=self.env, timeout=120)
            if proc.returncode != 0:
                print("lab.sh down failed:\n" + proc.stderr, file=sys.stderr)
            if self._old_sigterm is not None:
                signal.signal(signal.SIGTERM, self._old_sigterm)
                self._old_sigterm = None
        if reports:
            raise AssertionError("\n".join(reports))

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

    # -- control plane -------------------------------------------------------

    def start_control(self, build_dir, config_path, control_socket=None, dataplane_socket=None,
                      extra_args=(), wait_connected=True, timeout=CONTROL_WAIT_S):
        """Starts BUILD/tether-control in tl-ctl (the control host: its health checks
        leave from 198.51.100.130) with --config config_path and the dataplane's
        socket; waits until control_socket (default STATE_DIR/control.sock, what the
        control_*.json configs name) answers status and, if wait_connected, the
        dataplane is connected and has taken the config (a generation is known).
        Returns that status.  Raises RuntimeError with the log's tail if it exits
        or is not ready in time.  The log is STATE_DIR/control.log (appended)."""
        if self.control is not None and self.control.poll() is None:
            raise RuntimeError("tether-control is already running (pid %d)" % self.control.pid)
        binary = Path(build_dir) / "tether-control"
        if not binary.exists():
            raise RuntimeError("no tether-control binary at %s" % binary)
        if self.build_dir is None:
            self.build_dir = Path(build_dir)
        self.control_socket = str(control_socket or CONTROL_SOCKET)
        dataplane_socket = dataplane_socket or self.dataplane_socket
        cmd = ["ip", "netns", "exec", "tl-ctl", str(binary), "--config", str(config_path)]
        if dataplane_socket:
            cmd += ["--dataplane-socket", str(dataplane_socket)]
        cmd += [str(a) for a in extra_args]
        with open(self.control_log_path, "ab") as log:
            log.write(("--- %s %s\n" % (time.strftime("%H:%M:%S"), " ".join(cmd))).encode())
            log.flush()
            # ip netns exec execs: the pid is tether-control's own
            self.control = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        self.control_started = True
        (STATE_DIR / "control.pid").write_text("%d\n" % self.control.pid)
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            code = self.control.poll()
            if code is not None:
                self.control = None
                raise RuntimeError("tether-control exited with %d during start-up; log tail:\n%s"
                                   % (code, tail(self.control_log(), 30)))
            try:
                status = self.control_command({"command": "status"}, timeout=1.0)
                last = status
                if not wait_connected or (status["dataplane"]["connected"] and
                                          status["dataplane"].get("generation") is not None):
                    return status
            except (OSError, ValueError, KeyError) as e:
                last = e
            time.sleep(0.05)
        self.stop_control()
        raise RuntimeError("tether-control not ready on %s within %.0f s (last: %s); log tail:\n%s"
                           % (self.control_socket, timeout, last, tail(self.control_log(), 30)))

    def stop_control(self, sig=signal.SIGTERM, timeout=5.0):
        """Sends sig (SIGTERM; SIGKILL is kill -9) to tether-control and waits up to
        timeout s, then SIGKILL; returns its exit code (None if none ran)."""
        proc, self.control = self.control, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        try:
            (STATE_DIR / "control.pid").unlink()
        except OSError:
            pass
        return proc.returncode

    def kill_control(self):
        """kill -9 of tether-control; returns once it is gone."""
        return self.stop_control(signal.SIGKILL)

    def control_log(self):
        try:
            return self.control_log_path.read_text(errors="replace")
        except OSError:
            return ""

    def control_command(self, obj, timeout=5.0):
        """Sends one JSON request to control.sock; returns the parsed reply line."""
        return unix_command(self.control_socket or CONTROL_SOCKET, obj, timeout)

    def tetherctl(self, *args, json_out=False, check=False, timeout=60, prefix=(), binary=None):
        """Runs BUILD/tetherctl --socket CONTROL_SOCKET [--json] args (from the root
        namespace: the socket is a path) and returns the CompletedProcess; with
        json_out the reply is parsed into .json (None if it is not JSON).  prefix
        goes before the binary (e.g. setpriv ...); binary overrides its path."""
        build = self.build_dir or REPO / "build"
        cmd = [*prefix, str(binary or Path(build) / "tetherctl"),
               "--socket", str(self.control_socket or CONTROL_SOCKET)]
        if json_out:
            cmd.append("--json")
        proc = run(cmd + [str(a) for a in args], check=check, timeout=timeout)
        proc.json = None
        if json_out:
            try:
                proc.json = json.loads(proc.stdout)
            except ValueError:
                pass
        return proc

    def backend_states(self):
        """{(pool, name): backend dict} from the dataplane's stats (state, new_flows ...)."""
        return {(b["pool"], b["name"]): b for b in self.stats()["backends"]}

    # -- certificates and extra servers ------------------------------------------

    def make_certificate(self, name, dns_names, valid_from_days=-1, valid_to_days=30):
        """Makes an EC key and a certificate for dns_names (the first is the CN),
        signed by the lab CA, valid from now + valid_from_days to now + valid_to_days
        (negative: in the past, so (-40, -10) is a certificate that expired ten
        days ago).  Uses the openssl CLI; returns (cert, key) paths in STATE_DIR."""
        work = STATE_DIR / ("ca-%s" % name)
        work.mkdir(exist_ok=True)
        (work / "index.txt").write_text("")
        (work / "serial").write_text("%016X\n" % int.from_bytes(os.urandom(8), "big"))
        san = ",".join("DNS:%s" % d for d in dns_names)
        (work / "ca.cnf").write_text(
            "[ca]\ndefault_ca = lab\n"
            "[lab]\ndatabase = %(w)s/index.txt\nnew_certs_dir = %(w)s\nserial = %(w)s/serial\n"
            "default_md = sha256\npolicy = policy\nunique_subject = no\ncopy_extensions = none\n"
            "[policy]\norganizationName = optional\ncommonName = supplied\n"
            "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\n"
            "[server]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n"
            "extendedKeyUsage = serverAuth\nsubjectKeyIdentifier = hash\n"
            "authorityKeyIdentifier = keyid\nsubjectAltName = %(san)s\n" % {"w": work, "san": san})
        cert, key, csr = STATE_DIR / ("%s.pem" % name), STATE_DIR / ("%s.key" % name), \
            work / "req.csr"
        run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-config", work / "ca.cnf", "-subj", "/O=tether lab/CN=%s" % dns_names[0],
             "-keyout", key, "-out", csr])

        def stamp(days):
            return time.strftime("%y%m%d%H%M%SZ", time.gmtime(time.time() + days * 86400))
        run(["openssl", "ca", "-batch", "-notext", "-config", work / "ca.cnf",
             "-cert", STATE_DIR / "ca.pem", "-keyfile", STATE_DIR / "ca.key",
             "-extensions", "server", "-startdate", stamp(valid_from_days),
             "-enddate", stamp(valid_to_days), "-in", csr, "-out", cert])
        os.chmod(key, 0o600)
        return cert, key

    def start_server(self, n, name, cert=None, key=None, tls_ports=(), plain_ports=(),
                     wait=SERVER_WAIT_S):
        """Starts another tests/e2e/lab_server.py in tl-beN (say on 9443 with another
        certificate), stopped with the lab; waits until every port accepts from
        tl-ctl.  Returns the Popen.  Its log is STATE_DIR/NAME.log."""
        cmd = ["ip", "netns", "exec", "tl-be%d" % n, sys.executable,
               str(REPO / "tests" / "e2e" / "lab_server.py"), "--name", name]
        if tls_ports:
            cmd += ["--cert", str(cert), "--key", str(key),
                    "--tls-ports", ",".join(str(p) for p in tls_ports)]
        if plain_ports:
            cmd += ["--plain-ports", ",".join(str(p) for p in plain_ports)]
        with open(STATE_DIR / ("%s.log" % name), "ab") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.servers.append(proc)
        probe = ("import socket, sys, time\n"
                 "deadline = time.monotonic() + float(sys.argv[1])\n"
                 "for port in sys.argv[3:]:\n"
                 "    while True:\n"
                 "        try:\n"
                 "            socket.create_connection((sys.argv[2], int(port)), 0.5).close()\n"
                 "            break\n"
                 "        except OSError:\n"
                 "            if time.monotonic() > deadline: sys.exit('port %s not answering' % port)\n"
                 "            time.sleep(0.05)\n")
        self.exec("ctl", sys.executable, "-c", probe, wait, backend_address(n),
                  *[str(p) for p in list(tls_ports) + list(plain_ports)], timeout=wait + 5)
        return proc

    def stop_servers(self):
        """Stops the servers start_server started."""
        servers, self.servers = self.servers, []
        for proc in servers:
            if proc.poll() is None:
                proc.terminate()
        for proc in servers:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


# Runs in a client namespace (SlowDownloads): argv[1] is a JSON object.  One
# thread per source: TLS to the target (verified), GET /bytes/SIZE, then reads
# the body at a steady pace over SECONDS, checking every byte against the
# pattern lab_server.py sends.  Prints one JSON line per event: "established"
# (the response header arrived) and "done" (the result), then "end".
SLOW_READER = r"""
import json, socket, ssl, sys, threading, time
cfg = json.loads(sys.argv[1])
CHUNK = 64 * 1024
PAYLOAD = (b"tether-lab-payload-" * (CHUNK // 19 + 1))[:CHUNK]
lock = threading.Lock()

def emit(obj):
    with lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

def matches(data, offset):
    pos = 0
    while pos < len(data):
        o = (offset + pos) % CHUNK
        n = min(len(data) - pos, CHUNK - o)
        if data[pos:pos + n] != PAYLOAD[o:o + n]:
            return False
        pos += n
    return True

def one(index, source):
    r = {"event": "done", "index": index, "source": source, "ok": False, "server": None,
         "local": None, "bytes": 0, "expected": cfg["size"], "error": None, "max_gap_s": 0.0,
         "started": time.time(), "established": None, "ended": None, "clean_close": False}
    sock = None
    try:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(cfg["ca"])
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, cfg["rcvbuf"])
        raw.settimeout(cfg["stall_limit"])
        raw.bind((source, 0))
        raw.connect((cfg["host"], cfg["port"]))
        r["local"] = "%s:%d" % raw.getsockname()
        sock = context.wrap_socket(raw, server_hostname=cfg["server_name"])
        sock.sendall(("GET /bytes/%d HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                      % (cfg["size"], cfg["server_name"])).encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(16384)
            if not chunk:
                raise ConnectionError("closed before the response header")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        ident = dict(kv.split("=", 1) for kv in headers.get("x-lab-identity", "").split()
                     if "=" in kv)
        r["server"] = ident.get("server")
        length = int(headers.get("content-length", "-1"))
        if not lines[0].startswith("HTTP/1.1 200") or length != cfg["size"]:
            raise ValueError("unexpected answer %r, length %d" % (lines[0], length))
        r["established"] = time.time()
        emit({"event": "established", "index": index, "source": source, "server": r["server"],
              "local": r["local"]})
        count = 0
        if body:
            if not matches(body, 0):
                raise ValueError("wrong bytes at offset 0")
            count = len(body)
        rate = cfg["size"] / cfg["seconds"]
        start = time.monotonic()
        while count < length:
            due = start + count / rate
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            t = time.monotonic()
            chunk = sock.recv(min(16384, length - count))
            r["max_gap_s"] = max(r["max_gap_s"], round(time.monotonic() - t, 3))
            if not chunk:
                break
            if not matches(chunk, count):
                raise ValueError("wrong bytes at offset %d" % count)
            count += len(chunk)
            r["bytes"] = count
        r["bytes"] = count
        if count != length:
            raise ConnectionError("closed after %d of %d bytes" % (count, length))
        try:
            r["clean_close"] = sock.recv(1) == b""
        except (OSError, ssl.SSLError) as e:
            r["clean_close"] = False
            r["close_error"] = str(e)
        r["ok"] = True
    except Exception as e:
        r["error"] = "%s: %s" % (type(e).__name__, e)
    finally:
        r["ended"] = time.time()
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass
        emit(r)

threads = [threading.Thread(target=one, args=(i, s)) for i, s in enumerate(cfg["sources"])]
for t in threads:
    t.start()
for t in threads:
    t.join()
emit({"event": "end"})
"""


class SlowDownloads:
    """Long-lived TLS connections: one per source, each downloading /bytes/size
    from target at a steady pace over about `seconds` (a slow reader with a small
    receive buffer, so the flow stays busy the whole time), every byte checked.
    One process per client namespace, started at once.  wait_established() waits
    for the response headers (the flows exist); wait() returns every result:
    {"index", "source", "ok", "server", "local", "bytes", "expected", "error",
    "max_gap_s" (the longest wait for data), "started", "established", "ended"
    (time.time()), "clean_close" (close_notify and FIN after the body)}."""

    def __init__(self, sources, target, size, seconds, server_name, ca=None,
                 stall_limit=15.0, rcvbuf=65536):
        host, _, port = target.rpartition(":")
        self.sources = expand_sources(sources)
        self.events = []
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.procs, self.readers = [], []
        groups = {}
        for index, source in enumerate(self.sources):
            groups.setdefault(source_namespace(source), []).append(source)
        offset = 0
        for namespace, group in groups.items():
            config = {"sources": group, "host": host, "port": int(port), "size": int(size),
                      "seconds": float(seconds), "server_name": server_name,
                      "ca": str(ca or STATE_DIR / "ca.pem"), "stall_limit": stall_limit,
                      "rcvbuf": rcvbuf}
            proc = subprocess.Popen(["ip", "netns", "exec", namespace, sys.executable, "-c",
                                     SLOW_READER, json.dumps(config)],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, start_new_session=True)
            reader = threading.Thread(target=self._read, args=(proc, offset), daemon=True)
            reader.start()
            self.procs.append(proc)
            self.readers.append(reader)
            offset += len(group)

    def _read(self, proc, offset):
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if "index" in event:
                event["index"] += offset
            with self.changed:
                self.events.append(event)
                self.changed.notify_all()

    def _wait(self, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out after %.0f s waiting for %s (%s)"
                                         % (timeout, what, self.progress()))
                self.changed.wait(min(left, 0.2))

    def established(self):
        with self.lock:
            return [e for e in self.events if e["event"] == "established"]

    def progress(self):
        kinds = {}
        for e in self.events:
            kinds[e["event"]] = kinds.get(e["event"], 0) + 1
        return ", ".join("%s %d" % kv for kv in sorted(kinds.items())) or "no events"

    def wait_established(self, timeout=15.0):
        """Waits until every connection got its response header or ended; returns
        the established events (index, source, server, local)."""
        n = len(self.sources)

        def settled():
            started = {e["index"] for e in self.events if e["event"] in ("established", "done")}
            return len(started) >= n
        self._wait(settled, timeout, "%d downloads to start" % n)
        return self.established()

    def wait(self, timeout):
        """Waits for every download to end, stopping them if timeout passes first;
        returns one result per source, by index (a download still running at the
        timeout is a failure: "did not finish within ...")."""
        try:
            self._wait(lambda: sum(e["event"] == "end" for e in self.events) >= len(self.procs),
                       timeout, "%d downloads to end" % len(self.sources))
        except AssertionError:
            pass
        finally:
            self.stop()
        with self.lock:
            done = {e["source"]: e for e in self.events if e["event"] == "done"}
            established = {e["source"]: e for e in self.events if e["event"] == "established"}
        results = []
        for index, source in enumerate(self.sources):
            result = done.get(source)
            if result is None:
                got = established.get(source, {})
                result = {"index": index, "source": source, "ok": False,
                          "server": got.get("server"), "local": got.get("local"), "bytes": None,
                          "expected": None, "max_gap_s": None, "clean_close": False,
                          "error": "did not finish within %.0f s" % timeout}
            results.append(result)
        return results

    @staticmethod
    def check(results):
        """Fails unless every result of wait() is a byte-exact download with a clean
        close; returns the figure: "N/N byte-exact, clean close, longest wait ..."."""
        failed = [r for r in results if not r["ok"]]
        check(not failed, "%d of %d downloads failed; first: %s"
              % (len(failed), len(results), ["%s: %s" % (r["source"], r["error"])
                                             for r in failed[:3]]))
        unclean = [r for r in results if not r["clean_close"]]
        check(not unclean, "%d downloads did not close cleanly" % len(unclean))
        return "%d/%d byte-exact, clean close, longest wait for data %.2f s" \
            % (len(results), len(results), max(r["max_gap_s"] or 0 for r in results))

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(5)
        for reader in self.readers:
            reader.join(5)

    def stderr(self):
        return "".join(p.stderr.read() or "" for p in self.procs if p.stderr)


class ClientLoop:
    """New connections all along: batches of lab_client.py connections (run_clients
    options in kwargs), one batch after another in a thread, until stop().
    stop() returns the batches: {"started", "ended" (time.time()), "results"
    (lab_client results) or "error" (the batch itself failed)}."""

    def __init__(self, sources, target, pause=0.0, **kwargs):
        self.sources, self.target, self.pause, self.kwargs = sources, target, pause, kwargs
        self.batches = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def _run(self):
        while not self.stopping.is_set():
            batch = {"started": time.time()}
            try:
                batch["results"] = run_clients(self.sources, self.target, run_timeout=60,
                                               **self.kwargs)
            except Exception as e:          # noqa: BLE001 - recorded, the test judges
                batch["error"] = str(e)
            batch["ended"] = time.time()
            self.batches.append(batch)
            if self.pause:
                self.stopping.wait(self.pause)

    def stop(self):
        self.stopping.set()
        self.thread.join(90)
        return list(self.batches)

    @staticmethod
    def results(batches, started_after=None, started_before=None, ended_before=None):
        """Every connection of the batches started in (started_after, started_before)
        and, if given, ended before ended_before."""
        out = []
        for b in batches:
            if started_after is not None and b["started"] <= started_after:
                continue
            if started_before is not None and b["started"] >= started_before:
                continue
            if ended_before is not None and b["ended"] >= ended_before:
                continue
            out += b.get("results", [])
        return out

    @staticmethod
    def summary(batches):
        """Connections, failures (with up to 3 errors), answers per server."""
        results = [r for b in batches for r in b.get("results", [])]
        failed = [r for r in results if not r["ok"]]
        servers = {}
        for r in results:
            if r["ok"]:
                servers[r["server"]] = servers.get(r["server"], 0) + 1
        return {"batches": len(batches), "batch_errors": [b["error"] for b in batches
                                                          if "error" in b],
                "connections": len(results), "failed": len(failed),
                "errors": ["%s %s: %s" % (r["source"], r.get("local"), r["error"])
                           for r in failed[:3]], "servers": servers}


def run_scenario(name, scenario, config_path, backends=None, argv=None, extra_eal=()):
    """The whole main() of a lab test: parses --build-dir, brings the lab up (with
    backends servers if given), starts the dataplane with config_path, waits
    for ARP, runs scenario(lab) -> {figure: text}, checks the dataplane is still
    up, and takes everything down.  Prints PASS and the figures, or FAIL with
    the message and the dataplane log's tail; returns the exit status."""
    args = parse_args(name, argv)
    started = time.monotonic()
    try:
        with Lab(backends) as lab:
            lab.start_dataplane(args.build_dir, config_path, STATE_DIR / "dataplane.sock",
                                extra_eal=extra_eal)
            try:
                lab.wait_ready()
                figures = scenario(lab)
                check(lab.dataplane.poll() is None, "tether-dataplane exited during the test")
            except BaseException:
                print("--- tether-dataplane log (tail) ---\n%s" % tail(lab.dataplane_log(), 30),
                      file=sys.stderr)
                if lab.control_started:
                    print("--- tether-control log (tail) ---\n%s" % tail(lab.control_log(), 30),
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
