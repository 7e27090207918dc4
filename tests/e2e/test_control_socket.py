#!/usr/bin/env python3
"""test_control_socket: control.sock refuses strangers and survives oversized and malformed requests.

User-visible behaviour (issue 4, acceptance 7; docs/operations.md, "Who may do
what"): tether-control (tests/e2e/configs/control_reload_a.json, socket
/run/tether-lab/control.sock) runs in tl-ctl.

1. The socket is mode 0660, owned by root.  A non-root peer without the group
   (`setpriv --reuid=nobody --regid=nogroup --clear-groups tetherctl status`)
   is refused: exit 3 and "Permission denied (root and members of group
   'tether' may connect)".
2. Made world-writable by mistake (chmod 0666), the socket still refuses that
   peer by its credentials (SO_PEERCRED): one error line naming its uid, a
   non-zero exit, and a log line "control socket: refused uid 65534".
3. A 1 MB request line (and 1 MB without any newline) gets an {"error": ...}
   reply naming the size limit and the connection is closed; malformed JSON,
   a JSON array, an unknown command and an unknown key each get an
   {"error": ...} reply.  After each, the daemon keeps serving: the same
   connection (where it stays open) and a new `tetherctl status` answer, and
   tether-control is still running.

Run as root: python3 tests/e2e/test_control_socket.py --build-dir BUILD
"""

import json
import os
import socket
import stat
import sys
import time

from tetherlab import CONTROL_SOCKET, REPO, check, run_scenario

CONFIG = REPO / "tests" / "e2e" / "configs" / "control_reload_a.json"
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
MEGABYTE = 1024 * 1024


class Peer:
    """One raw connection to control.sock."""

    def __init__(self, timeout=5.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(CONTROL_SOCKET))
        self.buffer = b""

    def send(self, data):
        """Sends data; returns None, or the error if the daemon closed under us."""
        try:
            self.sock.sendall(data)
            return None
        except OSError as e:                # EPIPE/ECONNRESET once it has closed: expected
            return e

    def line(self):
        """The next reply line parsed, or None at end of file."""
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

    def closed(self):
        """True if the daemon closed the connection (end of file within 2 s)."""
        self.sock.settimeout(2.0)
        try:
            return self.sock.recv(1) == b""
        except socket.timeout:
            return False
        except OSError:
            return True

    def close(self):
        self.sock.close()


def status_works(lab):
    proc = lab.tetherctl("status")
    return proc.returncode == 0 and proc.stdout.startswith("tether-control ")


def scenario(lab):
    figures = {}
    first = lab.start_control(lab.build_dir, CONFIG)
    mode = stat.S_IMODE(os.stat(CONTROL_SOCKET).st_mode)
    owner = os.stat(CONTROL_SOCKET)
    figures["socket"] = "%s mode %04o uid %d gid %d" % (CONTROL_SOCKET, mode, owner.st_uid,
                                                        owner.st_gid)
    check(mode == 0o660 and owner.st_uid == 0, "control.sock is mode %04o, uid %d"
          % (mode, owner.st_uid))

    # 1. a stranger: the file mode stops it
    proc = lab.tetherctl("status", prefix=NOBODY)
    figures["nobody, mode 0660"] = "exit %d: %s" % (proc.returncode, proc.stderr.strip())
    check(proc.returncode == 3 and "Permission denied" in proc.stderr and
          "may connect" in proc.stderr,
          "nobody's tetherctl status: exit %d, %s%s" % (proc.returncode, proc.stdout, proc.stderr))

    # 2. world-writable by mistake: the credentials stop it
    os.chmod(CONTROL_SOCKET, 0o666)
    try:
        proc = lab.tetherctl("status", prefix=NOBODY)
    finally:
        os.chmod(CONTROL_SOCKET, 0o660)
    figures["nobody, mode 0666"] = "exit %d: %s" % (proc.returncode, proc.stderr.strip())
    check(proc.returncode != 0 and "permission denied" in proc.stderr.lower() and
          "65534" in proc.stderr and "tether-control " not in proc.stdout,
          "nobody through a world-writable socket: exit %d, %s%s"
          % (proc.returncode, proc.stdout, proc.stderr))
    time.sleep(0.2)
    check("control socket: refused uid 65534" in lab.control_log(),
          "the log does not record the refusal of uid 65534")

    # 3. oversized requests: an error, the connection closed, the daemon serves on
    for what, payload in (("1 MB line", b'{"command":"status","pad":"' + b"A" * MEGABYTE + b'"}\n'),
                          ("1 MB without newline", b"B" * MEGABYTE)):
        peer = Peer()
        started = time.monotonic()
        send_error = peer.send(payload)
        reply = peer.line()
        closed = peer.closed()
        peer.close()
        figures[what] = "%s in %.0f ms; connection closed: %s%s" % (
            json.dumps(reply), (time.monotonic() - started) * 1e3, closed,
            " (send stopped: %s)" % send_error.__class__.__name__ if send_error else "")
        check(isinstance(reply, dict) and "error" in reply,
              "%s: expected an error reply, got %s" % (what, reply))
        check(closed, "%s: the connection was left open" % what)
        check(status_works(lab), "tetherctl status fails after a %s" % what)

    # malformed requests: an error reply each; the connection serves on where it stays open
    for what, payload in (("malformed JSON", b'{"command": "status"\n'),
                          ("JSON array", b'["status"]\n'),
                          ("unknown command", b'{"command":"explode"}\n'),
                          ("unknown key", b'{"command":"status","verbose":true}\n'),
                          ("binary junk", bytes(range(1, 10)) + b"\xff\xfe\n")):
        peer = Peer()
        peer.send(payload)
        reply = peer.line()
        peer.send(b'{"command":"status"}\n')
        try:
            follow = peer.line()
        except OSError:
            follow = None
        peer.close()
        same = isinstance(follow, dict) and follow.get("pid") == first["pid"]
        figures[what] = "%s; same connection then answers status: %s" % (json.dumps(reply), same)
        check(isinstance(reply, dict) and "error" in reply and len(reply["error"]) > 0,
              "%s: expected an error reply, got %s" % (what, reply))
        check(status_works(lab), "tetherctl status fails after %s" % what)
    check(lab.control.poll() is None, "tether-control exited")
    status = lab.control_command({"command": "status"})
    check(status["pid"] == first["pid"], "another tether-control answers")
    figures["after all"] = "pid %d still serving, %d clients" % (status["pid"],
                                                                status["control"]["clients"])
    return figures


if __name__ == "__main__":
    sys.exit(run_scenario("test_control_socket", scenario, CONFIG))
