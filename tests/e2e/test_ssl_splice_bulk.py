#!/usr/bin/env python3
"""test_ssl_splice_bulk: 64 MiB each way through a splice, byte-exact under loss and odd window scales.

User-visible behaviour: through an ssl-session VIP (192.0.2.20:443, service
ssl-strict over be1..be4, tests/e2e/configs/ssl_session.json; TLS 1.3, so
every byte is integrity-checked by the TLS record MAC), a 64 MiB download
(GET /bytes/67108864: the client counts exactly 67,108,864 body bytes) and a
64 MiB upload (curl --data-binary of 64 MiB of random bytes: the backend
answers received=67108864) both complete within 60 s each, with 2 % of the
TCP frames on the server network dropped at random (nftables in tl-sw on
the br-srv bridge: the kernel has no netem), in three passes:

1. defaults: SACK, timestamps and window scaling on everywhere (the client
   and the backends scale by 10, the dataplane offers the client 7, so the
   backend's windows are rescaled 10 -> 7 on the way to the client);
2. the backends refuse window scaling (net.ipv4.tcp_window_scaling=0 in
   their namespaces): the client's scaled windows must be unscaled for them;
3. the backends scale by 14 (tcp_rmem max 1 GiB), the client by 10.

Evidence that the splice really did this, per pass: the SYN options seen on
the wire (sniffed on r-pub in tl-router and on s-lb in tl-sw) -- SACK and
timestamps negotiated on both legs, the window scales as described; the
sender of each transfer recovered losses with SACK (TcpExtTCPSackRecovery
rose, TcpExtTCPRenoRecovery did not) and discarded no SACK block as invalid
(TcpExtTCPSACKDiscard); no segment was dropped by PAWS on either end
(TcpExtPAWSEstab: the timestamp translation never went backwards).  Every
transfer is tried and reported before the test fails.

Run as root: python3 tests/e2e/test_ssl_splice_bulk.py --build-dir BUILD
"""

import json
import os
import re
import subprocess
import sys
import time

from tetherlab import REPO, STATE_DIR, check, node_namespace, run_scenario, stats_delta

CONFIG = REPO / "tests" / "e2e" / "configs" / "ssl_session.json"
VIP, PORT = "192.0.2.20", 443
SERVER_NAME = "cp.assist.example"
SIZE = 64 * 1024 * 1024
LOSS_PERCENT = 2
TIME_LIMIT_S = 60
BACKENDS = ("be1", "be2", "be3", "be4")
DOWNLOAD_SOURCE, UPLOAD_SOURCE = "203.0.113.21", "203.0.113.22"
SYNACK_WSCALE = 7                           # what the dataplane offers clients
DEFAULT_RMEM = "4096 131072 33554432"
PASSES = [                  # (what, backend sysctls, expected backend wscale: None = refused)
    ("defaults (client 10, tether 7, backend 10)",
     {"net.ipv4.tcp_window_scaling": "1", "net.ipv4.tcp_rmem": DEFAULT_RMEM}, "client"),
    ("backend refuses window scaling",
     {"net.ipv4.tcp_window_scaling": "0", "net.ipv4.tcp_rmem": DEFAULT_RMEM}, None),
    ("backend scales by 14 (tcp_rmem max 1 GiB)",
     {"net.ipv4.tcp_window_scaling": "1", "net.ipv4.tcp_rmem": "4096 131072 1073741824"}, 14),
]
KERNEL_COUNTERS = ("TcpExtTCPSackRecovery", "TcpExtTCPRenoRecovery", "TcpExtTCPSACKDiscard",
                   "TcpExtPAWSEstab", "TcpRetransSegs")

# Runs in a lab namespace: reports the TCP SYN and SYN-ACK options of every
# segment to or from PORT on IFACE, as JSON on stdout, when stdin closes.
SNIFFER = r"""
import json, select, socket, struct, sys
iface, port = sys.argv[1], int(sys.argv[2])
# ETH_P_ALL: the only kind of tap that sees outgoing frames, and frames a
# bridge port hands to its bridge
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
sock.bind((iface, 0))
print("ready", flush=True)
seen = []
while True:
    readable, _, _ = select.select([sock, sys.stdin], [], [], 1.0)
    if sys.stdin in readable and not sys.stdin.buffer.read1(64):
        break
    if sock not in readable:
        continue
    frame = sock.recv(65535)
    if frame[12:14] != b"\x08\x00":
        continue
    ip = frame[14:]
    if len(ip) < 40 or ip[0] >> 4 != 4 or ip[9] != 6:
        continue
    tcp = ip[(ip[0] & 15) * 4:]
    sport, dport = struct.unpack("!HH", tcp[:4])
    flags = tcp[13]
    if not flags & 0x02 or port not in (sport, dport):
        continue
    options, i, end = {}, 20, (tcp[12] >> 4) * 4
    while i < end:
        kind = tcp[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        length = tcp[i + 1] if i + 1 < end else 0
        if length < 2:
            break
        body = tcp[i + 2:i + length]
        if kind == 2 and len(body) == 2:
            options["mss"] = struct.unpack("!H", body)[0]
        elif kind == 3 and len(body) == 1:
            options["wscale"] = body[0]
        elif kind == 4:
            options["sack_permitted"] = True
        elif kind == 8:
            options["timestamps"] = True
        else:
            options.setdefault("other", []).append(kind)
        i += length
    seen.append({"source": socket.inet_ntoa(ip[12:16]), "sport": sport,
                 "destination": socket.inet_ntoa(ip[16:20]), "dport": dport,
                 "synack": bool(flags & 0x10), "options": options})
print(json.dumps(seen))
"""


class Sniffer:
    """SYN options on one interface of one lab node, for the life of a pass."""

    def __init__(self, node, iface):
        self.proc = subprocess.Popen(["ip", "netns", "exec", node_namespace(node), sys.executable,
                                      "-c", SNIFFER, iface, str(PORT)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.proc.kill()
            raise RuntimeError("sniffer on %s %s did not start: %s%s"
                               % (node, iface, line, self.proc.stderr.read()))

    def stop(self):
        """Returns the SYNs seen."""
        out, err = self.proc.communicate(input="", timeout=10)
        if self.proc.returncode != 0:
            raise RuntimeError("sniffer failed: %s" % err)
        return json.loads(out)


def handshake(syns, client):
    """(SYN options, SYN-ACK options) of the client's (address, port) connection."""
    syn = next((s["options"] for s in syns if not s["synack"] and
                (s["source"], s["sport"]) == client), None)
    synack = next((s["options"] for s in syns if s["synack"] and
                   (s["destination"], s["dport"]) == client), None)
    return syn, synack


def nstat(lab, node):
    """The kernel's TCP counters of a lab node (absolute; nstat history untouched)."""
    text = lab.exec(node, "nstat", "-asz", *KERNEL_COUNTERS).stdout
    values = dict.fromkeys(KERNEL_COUNTERS, 0)
    for name, value in re.findall(r"^(\w+)\s+(\d+)", text, re.M):
        values[name] = int(value)
    return values


def kernel_counters(lab):
    return {node: nstat(lab, node) for node in ("client1",) + BACKENDS}


def kernel_delta(before, after):
    return {node: {k: after[node][k] - before[node][k] for k in KERNEL_COUNTERS}
            for node in before}


def dropped_by_loss(lab):
    """Frames the loss rule has dropped so far."""
    text = lab.exec("sw", "nft", "list", "chain", "bridge", "loss", "lossy").stdout
    match = re.search(r"counter packets (\d+)", text)
    return int(match.group(1)) if match else 0


def add_loss(lab):
    lab.exec("sw", "nft", "add", "table", "bridge", "loss")
    lab.exec("sw", "nft", "add", "chain", "bridge", "loss", "lossy",
             "{ type filter hook forward priority 0; }")
    lab.exec("sw", "nft", "add", "rule", "bridge", "loss", "lossy", "ip", "protocol", "tcp",
             "numgen", "random", "mod", "100", "<", str(LOSS_PERCENT), "counter", "drop")


def download(lab):
    """GET /bytes/SIZE through the VIP; returns (problem or None, backend, seconds, bytes)."""
    started = time.monotonic()
    try:
        out = lab.test_client("--target", "%s:%d" % (VIP, PORT), "--ca", lab.ca_path(),
                              "--server-name", SERVER_NAME, "--bulk", SIZE,
                              "--create-from", DOWNLOAD_SOURCE, "--timeout", 20,
                              timeout=TIME_LIMIT_S + 5)
    except RuntimeError as e:
        return str(e), None, time.monotonic() - started, 0
    (result,) = out["results"]
    seconds = result["seconds"] or out["elapsed_s"]
    if not result["ok"] or result["body_bytes"] != SIZE:
        return ("download: %s of %d bytes after %.1f s from %s: %s"
                % (result["body_bytes"], SIZE, seconds, result["server"], result["error"]),
                result["server"], seconds, result["body_bytes"] or 0)
    if seconds > TIME_LIMIT_S:
        return "download took %.1f s (limit %d)" % (seconds, TIME_LIMIT_S), None, seconds, SIZE
    return None, result["server"], seconds, SIZE


def upload(lab):
    """curl --data-binary of SIZE random bytes; returns (problem or None, backend, seconds,
    bytes the backend received)."""
    path = STATE_DIR / "upload.bin"
    with open(path, "wb") as f:
        left = SIZE
        while left:
            chunk = min(left, 1 << 20)
            f.write(os.urandom(chunk))
            left -= chunk
    started = time.monotonic()
    try:
        proc = lab.exec("client1", "curl", "-sS", "--max-time", TIME_LIMIT_S,
                        "--interface", UPLOAD_SOURCE, "--cacert", lab.ca_path(),
                        "--resolve", "%s:%d:%s" % (SERVER_NAME, PORT, VIP),
                        "-H", "Content-Type: application/octet-stream",
                        "--data-binary", "@%s" % path, "https://%s/upload" % SERVER_NAME,
                        check=False, timeout=TIME_LIMIT_S + 10)
    finally:
        path.unlink()
    seconds = time.monotonic() - started
    ident = dict(kv.split("=", 1) for kv in proc.stdout.split() if "=" in kv)
    received = int(ident.get("received", 0))
    if proc.returncode != 0 or received != SIZE:
        return ("upload: curl exited %d after %.1f s, backend %s received %d of %d bytes: %s"
                % (proc.returncode, seconds, ident.get("server"), received, SIZE,
                   (proc.stderr or proc.stdout).strip()[-300:]),
                ident.get("server"), seconds, received)
    return None, ident.get("server"), seconds, received


def check_handshakes(what, client_syns, server_syns, client, expected_backend_wscale):
    """Problems with the options negotiated on the two legs of one connection."""
    problems = []
    client_syn, our_synack = handshake(client_syns, client)
    our_syn, backend_synack = handshake(server_syns, client)
    if None in (client_syn, our_synack, our_syn, backend_synack):
        return ["%s: handshake not seen whole (client SYN %s, SYN-ACK %s, SYN to backend %s, "
                "backend SYN-ACK %s)" % (what, client_syn, our_synack, our_syn, backend_synack)], ""
    for name, options in (("client SYN", client_syn), ("tether SYN-ACK", our_synack),
                          ("tether SYN to backend", our_syn),
                          ("backend SYN-ACK", backend_synack)):
        if not (options.get("sack_permitted") and options.get("timestamps")):
            problems.append("%s: %s without SACK and timestamps: %s" % (what, name, options))
    if "other" in our_synack:
        problems.append("%s: tether's SYN-ACK carries options it does not understand: %s"
                        % (what, our_synack))
    if our_synack.get("wscale") != SYNACK_WSCALE:
        problems.append("%s: tether offered the client wscale %s, expected %d"
                        % (what, our_synack.get("wscale"), SYNACK_WSCALE))
    if our_syn.get("wscale") != client_syn.get("wscale"):
        problems.append("%s: the SYN to the backend carries wscale %s, the client's was %s"
                        % (what, our_syn.get("wscale"), client_syn.get("wscale")))
    expected = client_syn.get("wscale") if expected_backend_wscale == "client" \
        else expected_backend_wscale
    if backend_synack.get("wscale") != expected:
        problems.append("%s: the backend answered wscale %s, the pass expects %s"
                        % (what, backend_synack.get("wscale"), expected))
    scales = "wscale client %s / tether %s | to backend %s / backend %s" % (
        client_syn.get("wscale"), our_synack.get("wscale"), our_syn.get("wscale"),
        backend_synack.get("wscale", "refused"))
    return problems, scales


def run_pass(lab, what, sysctls, expected_backend_wscale):
    """One pass (download, then upload); returns (problems, figure)."""
    for backend in BACKENDS:
        lab.exec(backend, "sysctl", "-q", "-w",
                 *["%s=%s" % kv for kv in sysctls.items()])
    client_sniffer = Sniffer("router", "r-pub")
    server_sniffer = Sniffer("sw", "s-lb")
    problems, parts = [], []
    try:
        for direction, transfer in (("download", download), ("upload", upload)):
            kernel_before, lost_before, dp_before = kernel_counters(lab), dropped_by_loss(lab), \
                lab.stats()
            problem, backend, seconds, count = transfer(lab)
            lost = dropped_by_loss(lab) - lost_before
            kernel = kernel_delta(kernel_before, kernel_counters(lab))
            dp = stats_delta(dp_before, lab.stats())
            label = "%s, %s" % (what, direction)
            if problem:
                problems.append("%s: %s (%d frames dropped by the loss rule)" % (label, problem,
                                                                                 lost))
                continue
            sender = kernel[backend] if direction == "download" else kernel["client1"]
            if sender["TcpExtTCPSackRecovery"] == 0 or sender["TcpExtTCPRenoRecovery"]:
                problems.append("%s: the sender recovered without SACK: %s" % (label, sender))
            for node, counters in kernel.items():
                if counters["TcpExtTCPSACKDiscard"] or counters["TcpExtPAWSEstab"]:
                    problems.append("%s: %s discarded SACK blocks or dropped segments by PAWS: "
                                    "%s" % (label, node, counters))
            if lost == 0:
                problems.append("%s: the loss rule dropped nothing" % label)
            parts.append("%s %d MiB via %s in %.2f s (%.0f Mbit/s), %d frames dropped, sender "
                         "SACK recoveries %d, retransmits %d, learn_gap +%d"
                         % (direction, count >> 20, backend, seconds, count * 8 / seconds / 1e6,
                            lost, sender["TcpExtTCPSackRecovery"], sender["TcpRetransSegs"],
                            dp["learn_gap"]))
    finally:
        client_syns, server_syns = client_sniffer.stop(), server_sniffer.stop()
    scales = []
    for source in (DOWNLOAD_SOURCE, UPLOAD_SOURCE):
        ports = [s["sport"] for s in client_syns if s["source"] == source and not s["synack"]]
        if not ports:
            problems.append("%s: no SYN from %s seen on r-pub" % (what, source))
            continue
        found, text = check_handshakes(what, client_syns, server_syns, (source, ports[-1]),
                                       expected_backend_wscale)
        problems += found
        scales.append(text)
    return problems, "; ".join(parts) + ("; " + scales[0] if scales else "")


def scenario(lab):
    add_loss(lab)
    figures, problems = {}, []
    for what, sysctls, expected in PASSES:
        found, figure = run_pass(lab, what, sysctls, expected)
        for p in found:
            print("  FAILED %s" % p, file=sys.stderr)
        problems += found
        figures[what] = figure if not found else "FAILED"
    check(not problems, "%d problems in %d passes:\n  %s"
          % (len(problems), len(PASSES), "\n  ".join(problems)))
    figures["loss"] = "%d %% of TCP frames on br-srv (nftables numgen), %d dropped in all" \
                      % (LOSS_PERCENT, dropped_by_loss(lab))
    return figures


if __name__ == "__main__":
    sys.exit(run_scenario("test_ssl_splice_bulk", scenario, CONFIG))
