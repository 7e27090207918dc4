#!/usr/bin/env python3
"""test_ssl_fallbacks: what is not a TLS session still gets a sane answer on an ssl-session VIP.

User-visible behaviour, on ssl-session services of tests/e2e/configs/
ssl_session.json:

1. Not TLS: plain HTTP requests (and a line that is not even HTTP) sent to
   192.0.2.20:80 (service ssl-strict-plain: ssl-session over be1..be4's
   plain port 80) are served -- the backend answers, naming the client's
   own address -- placed by the fallback and counted as fallback_not_tls.
2. Forged ACKs: 1,000 bare ACKs with random sequence and acknowledgement
   numbers (random cookies) from spoofed client addresses, sent with a raw
   socket from tl-router, create nothing: no binding, no flow
   (flows.created unchanged, flows.live not up), cookies_invalid +1000,
   and every RST the dataplane sends for them (rate-limited to 1,000/s) is
   correct by RFC 793: from the VIP:port to the sender, seq = the ACK's ack.
   (A random ACK passes the 20-bit MAC with odds of about 1 in 2^21: the
   run has a 0.05 % chance to see one valid cookie; it would say so.)
3. Backend down before binding (192.0.2.22:443, service ssl-single whose pool
   has only be4): when be4 drops SYNs (nftables in tl-be4) and when its
   server is stopped (the kernel answers RST), the client -- whose TCP
   handshake with the dataplane succeeded -- gets a RST within the retry
   budget of docs/persistence.md (a SYN, 3 retries at 0.5, 1 and 2 s
   intervals, then 4 s for the last: 7.5 s) instead of hanging, and
   backend_failed counts each one.

Run as root: python3 tests/e2e/test_ssl_fallbacks.py --build-dir BUILD
"""

import json
import re
import sys

from tetherlab import REPO, check, run_scenario, stats_delta

CONFIG = REPO / "tests" / "e2e" / "configs" / "ssl_session.json"
PLAIN_TARGET = "192.0.2.20:80"              # ssl-strict-plain: ssl-session on plain HTTP
SINGLE_TARGET = "192.0.2.22:443"            # ssl-single: pool "single" = be4 only
SINGLE_BACKEND = 4
NOT_TLS = [                                 # (what, raw text, connections, reply must contain)
    ("HTTP/1.0 request", r"GET / HTTP/1.0\r\n\r\n", 20, "HTTP/1.1 200 OK"),
    ("a line that is not HTTP", r"HELLO tether\r\n", 5, "tls=none"),
]
PLAIN_SOURCES = "203.0.113.10-203.0.113.29"
FORGED_ACKS = 1000
DOWN_SOURCES = "203.0.113.30-203.0.113.32"
SYN_RTO_S, SYN_RETRIES = 0.5, 3             # docs/persistence.md, step 5
RETRY_BUDGET_S = SYN_RTO_S * sum(2 ** i for i in range(SYN_RETRIES + 1))   # 7.5 s
SLACK_S = 1.0

# Runs in tl-router: sends forged ACKs to VIP:PORT with a raw socket while an
# AF_PACKET tap on r-pub records the RSTs coming back; prints a JSON report.
FLOOD = r"""
import json, random, socket, struct, sys, time
spec = json.loads(sys.stdin.read())
rng = random.SystemRandom()

def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF

tap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
tap.bind(("r-pub", 0))
tap.setblocking(False)
out = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
vip = socket.inet_aton(spec["vip"])
forged, rsts = {}, []

def drain():
    while True:
        try:
            frame, address = tap.recvfrom(65535)
        except BlockingIOError:
            return
        if address[2] == socket.PACKET_OUTGOING or frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        if ip[9] != 6 or ip[12:16] != vip:
            continue
        tcp = ip[(ip[0] & 15) * 4:]
        sport, dport, seq, ack = struct.unpack("!HHII", tcp[:12])
        rsts.append([socket.inet_ntoa(ip[16:20]), dport, sport, seq, ack, tcp[13]])

started = time.monotonic()
for i in range(spec["count"]):
    while True:                             # one ACK per tuple: its RST names it
        source = "203.0.113.%d" % rng.randint(150, 209)
        sport, seq, ack = rng.randint(1024, 65535), rng.getrandbits(32), rng.getrandbits(32)
        if (source, sport) not in forged:
            break
    forged[(source, sport)] = ack
    tcp = struct.pack("!HHIIBBHHH", sport, spec["port"], seq, ack, 5 << 4, 0x10, 502, 0, 0)
    pseudo = socket.inet_aton(source) + vip + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), rng.getrandbits(16), 0x4000,
                         64, 6, 0, socket.inet_aton(source), vip)
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    out.sendto(header + tcp, (spec["vip"], 0))
    drain()
    time.sleep(spec["seconds"] / spec["count"])
deadline = time.monotonic() + spec["wait"]
while time.monotonic() < deadline:
    drain()
    time.sleep(0.01)
sent_s = time.monotonic() - started
correct = [r for r in rsts if (r[0], r[1]) in forged and r[2] == spec["port"] and
           r[3] == forged[(r[0], r[1])] and r[5] & 0x04]
print(json.dumps({"sent": spec["count"], "tuples": len(forged), "rsts": len(rsts),
                  "correct": len(correct), "seconds": sent_s,
                  "wrong": [r for r in rsts if r not in correct][:5]}))
"""


def brief(results, count=3):
    return "; ".join("%s:%s %s after %.2f s" % (r["source"], r["local_port"],
                                              r["error"] or "ok", r["seconds"] or 0)
                     for r in results[:count])


def not_tls(lab):
    """Part 1; returns figures."""
    figures = {}
    for what, text, count, expect in NOT_TLS:
        before = lab.stats()
        out = lab.test_client("--target", PLAIN_TARGET, "--raw-text", text, "--sessions", count,
                              "--create-from", PLAIN_SOURCES, "--concurrency", 8,
                              "--timeout", 10, timeout=60)
        results = out["results"]
        failed = [r for r in results if not r["ok"] or expect not in (r["reply"] or "")]
        check(len(results) == count and not failed, "%s on an ssl-session VIP: %d of %d not "
              "served; first: %s; replies: %s" % (what, len(failed), count, brief(failed),
                                                  [r["reply"] for r in failed[:2]]))
        wrong_peer = [r for r in results if "peer=%s:%d " % (r["source"], r["local_port"])
                      not in r["reply"]]
        check(not wrong_peer, "the backend did not see the client's address: %s"
              % [r["reply"] for r in wrong_peer[:2]])
        servers = sorted({re.search(r"server=(\w+)", r["reply"]).group(1) for r in results})
        after = lab.wait_stats(lambda s: stats_delta(before, s)["fallback_not_tls"] >= count, 5,
                               "fallback_not_tls to count %d connections" % count)
        delta = stats_delta(before, after)
        check(delta["fallback_not_tls"] == count and delta["bindings_bound"] == count,
              "%s: fallback_not_tls +%d, bindings_bound +%d, expected %d each"
              % (what, delta["fallback_not_tls"], delta["bindings_bound"], count))
        figures["not TLS: " + what] = ("%d/%d served by %s, fallback_not_tls +%d, %.2f s"
                                       % (count, count, ",".join(servers),
                                          delta["fallback_not_tls"], out["elapsed_s"]))
    return figures


def forged_acks(lab):
    """Part 2; returns figures."""
    before = lab.stats()
    spec = {"vip": "192.0.2.20", "port": 443, "count": FORGED_ACKS, "seconds": 0.5, "wait": 1.5}
    proc = lab.exec("router", sys.executable, "-c", FLOOD, input=json.dumps(spec), timeout=60)
    report = json.loads(proc.stdout)
    try:
        after = lab.wait_stats(lambda s: stats_delta(before, s)["cookies_invalid"] +
                               stats_delta(before, s)["cookies_valid"] >= FORGED_ACKS, 5, "")
    except AssertionError:
        after = lab.stats()
    delta = stats_delta(before, after)
    flows = stats_delta(before, after, "flows")
    check(delta["cookies_valid"] == 0, "%d forged ACKs passed the cookie check (odds about 1 in "
          "2^21 each)" % delta["cookies_valid"])
    check(delta["cookies_invalid"] == FORGED_ACKS, "cookies_invalid rose by %d for %d forged "
          "ACKs" % (delta["cookies_invalid"], FORGED_ACKS))
    check(flows["created"] == 0 and flows["live"] <= 0 and delta["bindings_started"] == 0,
          "forged ACKs created state: flows created +%d, live %+d, bindings_started +%d"
          % (flows["created"], flows["live"], delta["bindings_started"]))
    check(delta["rst_sent"] + delta["rst_rate_limited"] == FORGED_ACKS,
          "rst_sent +%d and rst_rate_limited +%d do not add up to the %d refused ACKs"
          % (delta["rst_sent"], delta["rst_rate_limited"], FORGED_ACKS))
    check(report["rsts"] == delta["rst_sent"] and report["correct"] == report["rsts"],
          "the dataplane counted %d RSTs; r-pub saw %d, %d of them correct (from the VIP:port, "
          "seq = the forged ACK's ack); wrong ones: %s"
          % (delta["rst_sent"], report["rsts"], report["correct"], report["wrong"]))
    return {"forged ACKs": "%d random cookies from %d spoofed tuples in %.1f s: cookies_invalid "
                           "+%d, cookies_valid +%d, flows created +%d, bindings +%d; RSTs %d sent "
                           "(%d rate-limited), %d seen on r-pub, all correct"
                           % (report["sent"], report["tuples"], report["seconds"],
                              delta["cookies_invalid"], delta["cookies_valid"], flows["created"],
                              delta["bindings_started"], delta["rst_sent"],
                              delta["rst_rate_limited"], report["rsts"])}


def backend_down(lab, what):
    """Part 3, one way of being down: 3 TLS clients to the single-backend VIP."""
    before = lab.stats()
    out = lab.test_client("--target", SINGLE_TARGET, "--sessions", 3, "--concurrency", 3,
                          "--create-from", DOWN_SOURCES, "--timeout", 20,
                          timeout=RETRY_BUDGET_S + 30)
    results = out["results"]
    served = [r for r in results if r["ok"]]
    check(not served, "%s: a client was served by a down backend: %s" % (what, brief(served)))
    not_reset = [r for r in results if "reset" not in (r["error"] or "").lower()]
    check(not not_reset, "%s: the client did not get a RST: %s" % (what, brief(not_reset)))
    slow = [r for r in results if r["seconds"] > RETRY_BUDGET_S + SLACK_S]
    check(not slow, "%s: the RST came after the retry budget of %.1f s: %s"
          % (what, RETRY_BUDGET_S, brief(slow)))
    after = lab.wait_stats(lambda s: stats_delta(before, s)["backend_failed"] >= 3, 5,
                           "backend_failed to count 3 clients")
    delta = stats_delta(before, after)
    check(delta["backend_failed"] == 3 and delta["backend_syn_retries"] == 3 * SYN_RETRIES,
          "%s: backend_failed +%d (expected 3), backend_syn_retries +%d (expected %d)"
          % (what, delta["backend_failed"], delta["backend_syn_retries"], 3 * SYN_RETRIES))
    check(delta["rst_sent"] >= 3, "%s: rst_sent +%d" % (what, delta["rst_sent"]))
    seconds = sorted(r["seconds"] for r in results)
    return ("3/3 clients got a RST after %.2f-%.2f s (budget %.1f s); backend_failed +%d, "
            "backend_syn_retries +%d, bindings_aborted +%d"
            % (seconds[0], seconds[-1], RETRY_BUDGET_S, delta["backend_failed"],
               delta["backend_syn_retries"], delta["bindings_aborted"]))


def scenario(lab):
    figures = not_tls(lab)
    figures.update(forged_acks(lab))

    node = "be%d" % SINGLE_BACKEND
    lab.exec(node, "nft", "add", "table", "inet", "syndrop")
    lab.exec(node, "nft", "add", "chain", "inet", "syndrop", "input",
             "{ type filter hook input priority 0; }")
    lab.exec(node, "nft", "add", "rule", "inet", "syndrop", "input", "tcp", "dport", "443",
             "tcp", "flags", "&", "(syn|ack)", "==", "syn", "counter", "drop")
    figure = backend_down(lab, "be4 drops SYNs")
    dropped = re.search(r"counter packets (\d+)",
                        lab.exec(node, "nft", "list", "table", "inet", "syndrop").stdout)
    figures["backend silent (SYNs dropped)"] = "%s; be4 dropped %s SYNs" % (
        figure, dropped.group(1) if dropped else "?")
    lab.exec(node, "nft", "delete", "table", "inet", "syndrop")

    lab.stop_backend(SINGLE_BACKEND)
    figures["backend refusing (server stopped)"] = backend_down(lab, "be4's server stopped")
    return figures


if __name__ == "__main__":
    sys.exit(run_scenario("test_ssl_fallbacks", scenario, CONFIG))
