#!/usr/bin/env python3
"""test_malformed_hellos: ClientHellos with every length field wrong, on real TCP connections, are placed by the fallback and counted; TLS clients beside them see nothing.

User-visible behaviour (issue 6, item 3; docs/reliability.md, "Floods and
storms"): the malformed-frame storm stops at headers; a ClientHello is only
read once a client has completed the cookie handshake, so these come over
real connections from the lab's clients (tether-test-client --raw-text).
On 192.0.2.20:80 (service ssl-strict-plain of tests/e2e/configs/
ssl_session.json: ssl-session, fallback none, backends' plain port 80), for
each case below, 4 connections send one first flight and "\\r\\n":

- a well-formed ClientHello (the control: the builder is right, and the
  fallback counters must not move for it);
- the record layer wrong: length 0, length over 2^14 + 2048, a first record
  that is not a handshake, a major version that is not 3, a second record of
  the hello that is application data or of another version;
- the handshake header wrong: not a ClientHello, a length too short for its
  fixed fields, a length of 2^24 - 1;
- each length field of the hello wrong: legacy_version, session ID (33),
  cipher suites (odd, 0, beyond the message), compression methods (0, beyond
  the message), the extensions block (beyond the message, bytes after it),
  one extension overrunning the block, server_name's list length, a repeated
  extension, pre_shared_key not last;
- one malformed hello cut into 3 TCP segments.

Each connection must be served (the dataplane places it with what it has:
the backend answers with the client's own address, so the bytes reached it
through the NAT), and the dataplane must count each case in the reason it
names (fallback_not_tls, fallback_too_large, fallback_malformed: exactly 4
each, nothing in the others). Meanwhile TLS clients connect to the
ssl-session VIP 192.0.2.20:443 without a failure, and the dataplane runs on.

Run as root: python3 tests/e2e/test_malformed_hellos.py --build-dir BUILD
"""

import struct
import sys

from tetherlab import REPO, ClientLoop, check, client_range, run_scenario, stats_delta

CONFIG = REPO / "tests" / "e2e" / "configs" / "ssl_session.json"
TARGET = "192.0.2.20:80"                    # ssl-strict-plain
TLS_TARGET = "192.0.2.20:443"               # ssl-strict
SERVER_NAME = "cp.assist.example"
PER_CASE = 4
BAD_SOURCES = "203.0.113.10-203.0.113.29"
COUNTERS = ("fallback_not_tls", "fallback_too_large", "fallback_malformed")

SNI, TICKET, VERSIONS, PSK = 0, 35, 43, 41


def u8(n):
    return struct.pack("!B", n)


def u16(n):
    return struct.pack("!H", n)


def u24(n):
    return struct.pack("!I", n)[1:]


def extension(kind, body, length=None):
    return u16(kind) + u16(len(body) if length is None else length) + body


def server_name(name=SERVER_NAME.encode(), list_length=None):
    entry = u8(0) + u16(len(name)) + name
    return extension(SNI, u16(len(entry) if list_length is None else list_length) + entry)


def standard_extensions():
    return (server_name() + extension(TICKET, b"") +
            extension(VERSIONS, u8(4) + b"\x03\x04\x03\x03"))


def hello_body(version=b"\x03\x03", session_id=bytes(range(32)), session_id_length=None,
               suites=b"\x13\x01\xc0\x2f", suites_length=None, compression=b"\x00",
               compression_length=None, extensions=None, extensions_length=None):
    extensions = standard_extensions() if extensions is None else extensions
    return (version + bytes(range(100, 132)) +
            u8(len(session_id) if session_id_length is None else session_id_length) +
            session_id +
            u16(len(suites) if suites_length is None else suites_length) + suites +
            u8(len(compression) if compression_length is None else compression_length) +
            compression +
            u16(len(extensions) if extensions_length is None else extensions_length) +
            extensions)


def handshake(body, kind=1, length=None):
    return u8(kind) + u24(len(body) if length is None else length) + body


def record(payload, kind=22, version=b"\x03\x01", length=None):
    return u8(kind) + version + u16(len(payload) if length is None else length) + payload


def two_records(message, second_kind=22, second_version=b"\x03\x01"):
    """The handshake message in two records; the second may be of another type
    or version."""
    half = len(message) // 2
    return record(message[:half]) + record(message[half:], second_kind, second_version)


GOOD = handshake(hello_body())

# (name, first flight, the counter it must move or None, extra client options)
CASES = [
    ("well-formed hello (control)", record(GOOD), None, []),
    ("record length 0", record(b"", length=0) + record(GOOD), "fallback_malformed", []),
    ("record length 18,433", record(GOOD, length=16384 + 2048 + 1), "fallback_malformed", []),
    ("first record application data", record(GOOD, kind=23), "fallback_not_tls", []),
    ("record major version 2", record(GOOD, version=b"\x02\x00"), "fallback_not_tls", []),
    ("second record application data", two_records(GOOD, second_kind=23),
     "fallback_malformed", []),
    ("second record version 4.1", two_records(GOOD, second_version=b"\x04\x01"),
     "fallback_malformed", []),
    ("handshake type ServerHello", record(handshake(hello_body(), kind=2)),
     "fallback_malformed", []),
    ("handshake length 10", record(handshake(hello_body()[:10])), "fallback_malformed", []),
    ("handshake length 2^24-1", record(handshake(hello_body(), length=0xFFFFFF)),
     "fallback_too_large", []),
    ("legacy_version 2.0", record(handshake(hello_body(version=b"\x02\x00"))),
     "fallback_malformed", []),
    ("session ID length 33", record(handshake(hello_body(session_id=bytes(33)))),
     "fallback_malformed", []),
    ("cipher suites length odd", record(handshake(hello_body(suites_length=3))),
     "fallback_malformed", []),
    ("cipher suites length 0", record(handshake(hello_body(suites=b""))),
     "fallback_malformed", []),
    ("cipher suites beyond the hello", record(handshake(hello_body(suites_length=0xFFFE))),
     "fallback_malformed", []),
    ("compression length 0", record(handshake(hello_body(compression=b""))),
     "fallback_malformed", []),
    ("compression beyond the hello", record(handshake(hello_body(compression_length=255))),
     "fallback_malformed", []),
    ("extensions beyond the hello", record(handshake(hello_body(extensions_length=0x4000))),
     "fallback_malformed", []),
    ("bytes after the extensions",
     record(handshake(hello_body(extensions=standard_extensions() + b"\0\0\0"))),
     "fallback_malformed", []),
    ("one extension overruns the block",
     record(handshake(hello_body(extensions=standard_extensions() +
                                 extension(0xFFAA, b"\0" * 4, length=400)))),
     "fallback_malformed", []),
    ("server_name list length wrong",
     record(handshake(hello_body(extensions=server_name(list_length=200) +
                                 extension(TICKET, b"")))),
     "fallback_malformed", []),
    ("extension repeated",
     record(handshake(hello_body(extensions=standard_extensions() + extension(TICKET, b"")))),
     "fallback_malformed", []),
    ("pre_shared_key not last",
     record(handshake(hello_body(extensions=extension(PSK, bytes(8)) + standard_extensions()))),
     "fallback_malformed", []),
    ("session ID length 33, in 3 TCP segments",
     record(handshake(hello_body(session_id=bytes(33)))), "fallback_malformed",
     ["--split", 3]),
]


def escape(data):
    return "".join("\\x%02x" % b for b in data) + "\\r\\n"


def brief(results, count=2):
    return "; ".join("%s:%s %s after %.2f s, reply %r" % (r["source"], r["local_port"],
                                                       r["error"] or "ok", r["seconds"] or 0,
                                                       (r["reply"] or "")[:80])
                     for r in results[:count])


def run_case(lab, name, flight, counter, options):
    before = lab.stats()
    out = lab.test_client("--target", TARGET, "--raw-text", escape(flight), "--sessions",
                          PER_CASE, "--create-from", BAD_SOURCES, "--concurrency", PER_CASE,
                          "--timeout", 10, *options, timeout=60)
    after = lab.stats()
    results = out["results"]
    served = [r for r in results if r["ok"] and
              "peer=%s:%d " % (r["source"], r["local_port"]) in (r["reply"] or "")]
    check(len(results) == PER_CASE and len(served) == PER_CASE,
          "%s: %d of %d connections served by a backend that saw the client: %s"
          % (name, len(served), PER_CASE, brief([r for r in results if r not in served])))
    delta = stats_delta(before, after)
    moved = {c: delta[c] for c in COUNTERS if delta[c]}
    expected = {counter: PER_CASE} if counter else {}
    check(moved == expected, "%s (%d bytes): counters moved %s, expected %s"
          % (name, len(flight), moved, expected))
    return len(flight)


def scenario(lab):
    loop = ClientLoop(client_range(20, first=40), TLS_TARGET, tls=True, ca=lab.ca_path(),
                      server_name=SERVER_NAME, per_source=1, timeout=10, concurrency=8).start()
    sizes = {}
    try:
        for name, flight, counter, options in CASES:
            sizes[name] = run_case(lab, name, flight, counter, options)
    finally:
        batches = loop.stop()
    summary = ClientLoop.summary(batches)
    check(summary["connections"] > 0 and summary["failed"] == 0 and not summary["batch_errors"],
          "TLS clients beside the malformed hellos: %s" % summary)
    check(lab.dataplane.poll() is None, "tether-dataplane died")
    by_counter = {}
    for name, _, counter, _ in CASES:
        by_counter.setdefault(counter or "none (control)", []).append(name)
    figures = {"cases": "%d, %d connections each, every one served by a backend that saw the "
                        "client's address" % (len(CASES), PER_CASE)}
    for counter, names in sorted(by_counter.items()):
        figures[counter] = "+%d each: %s" % (0 if counter.startswith("none") else PER_CASE,
                                             ", ".join(names))
    figures["TLS clients beside them"] = "%d/%d ok" % (summary["connections"] - summary["failed"],
                                                       summary["connections"])
    return figures


if __name__ == "__main__":
    sys.exit(run_scenario("test_malformed_hellos", scenario, CONFIG))
