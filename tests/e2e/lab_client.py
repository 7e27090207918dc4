#!/usr/bin/env python3
"""lab_client.py: the project's test client for the namespace lab.

Runs inside a client namespace (tests/e2e/tetherlab.py starts it).  Every
connection binds one of the given source addresses, connects to the target,
optionally does a TLS handshake (real OpenSSL through the ssl module), sends
one HTTP/1.1 GET and reads the whole response.  Output is one JSON document on
stdout, one result per connection, in the order the connections were planned:

  {"results": [{"source": "203.0.113.10", "ok": true, "server": "be2",
                "port": 443, "peer": "203.0.113.10:40001", "tls": "TLSv1.3",
                "bytes": 61, "error": null, "seconds": 0.004, ...}, ...],
   "summary": {"total": 1, "ok": 1, "servers": {"be2": 1}}}

server/port/peer/tls come from the backend's identity line (tests/e2e/lab_server.py),
taken from the body or, for /bytes/N, from its X-Lab-Identity header.  Bodies
are counted, never kept (except a short identity line).  A failure is a result
with ok=false and the error text; the client itself never raises.

Session resumption (--resume) is what ssl-session persistence is about:
  none    every connection does a full handshake (default)
  source  each source address's connections run one after another, each
          offering the session its previous connection got
  first   one connection first, then every other connection (any source)
          offers that connection's session
"""

import argparse
import ipaddress
import json
import socket
import ssl
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

IDENTITY_MAX = 4096
READ_CHUNK = 256 * 1024
TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def parse_sources(text):
    """Returns the addresses of "A,B,C-D" (ranges inclusive) as strings, in order."""
    sources = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "-" in part:
            first, last = (ipaddress.IPv4Address(x.strip()) for x in part.split("-", 1))
            if last < first:
                raise argparse.ArgumentTypeError("empty range %r" % part)
            sources += [str(ipaddress.IPv4Address(i)) for i in range(int(first), int(last) + 1)]
        else:
            sources.append(str(ipaddress.IPv4Address(part)))
    if not sources:
        raise argparse.ArgumentTypeError("no source addresses")
    return sources


def parse_target(text):
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError("target must be IP:PORT, got %r" % text)
    return host, int(port)


def parse_identity(line):
    """Returns the fields of "server=be1 port=443 ..." or None if it is not one."""
    fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
    return fields if "server" in fields else None


def client_context(args):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = TLS_VERSIONS[args.tls_max]
    if args.ca:
        context.load_verify_locations(args.ca)
        context.check_hostname = bool(args.server_name)
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if args.no_ticket:
        context.options |= ssl.OP_NO_TICKET
    return context


def read_head(sock):
    """Reads up to the blank line; returns (status, headers dict, leftover body bytes)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(READ_CHUNK)
        if not chunk:
            raise ConnectionError("connection closed before the response header "
                                  "(%d bytes read)" % len(data))
        data += chunk
        # one recv may bring the header and much of the body (a slow client):
        # only a header still unfinished after 64 KB is an error
        if len(data) > 65536 and b"\r\n\r\n" not in data:
            raise ValueError("response header over 64 KB")
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ValueError("not an HTTP response: %r" % lines[0][:80])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers, rest


class Client:
    def __init__(self, args):
        self.args = args
        self.context = client_context(args) if args.tls else None
        host = args.server_name or args.target[0]
        self.request = ("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: tether-lab-client\r\n"
                        "Connection: close\r\n\r\n" % (args.path, host)).encode()

    def connect(self, source, session=None):
        """Makes one connection from source; returns (result dict, TLS session or None)."""
        args = self.args
        result = {"source": source, "ok": False, "server": None, "port": None, "peer": None,
                  "tls": None, "bytes": 0, "error": None, "seconds": 0.0, "status": None,
                  "local": None, "reused": None, "offered_session": session is not None}
        new_session = None
        started = time.monotonic()
        sock = None
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.settimeout(args.timeout)
            sock.bind((source, 0))
            sock.connect(args.target)
            result["local"] = "%s:%d" % sock.getsockname()
            if self.context:
                sock = self.context.wrap_socket(sock, server_hostname=args.server_name or None,
                                                session=session)
                result["tls"] = sock.version()
            sock.sendall(self.request)
            status, headers, body = read_head(sock)
            result["status"] = status
            length = headers.get("content-length")
            length = int(length) if length and length.isdigit() else None
            keep = body[:IDENTITY_MAX]
            count = len(body)
            while length is None or count < length:
                chunk = sock.recv(READ_CHUNK)
                if not chunk:
                    break
                count += len(chunk)
                if len(keep) < IDENTITY_MAX:
                    keep += chunk[:IDENTITY_MAX - len(keep)]
            result["bytes"] = count
            ident = None
            if headers.get("content-type", "").startswith("text/plain"):
                ident = parse_identity(keep.decode("latin-1").split("\n", 1)[0])
            ident = ident or parse_identity(headers.get("x-lab-identity", ""))
            if ident:
                result["server"] = ident.get("server")
                result["port"] = int(ident["port"]) if ident.get("port", "").isdigit() else None
                result["peer"] = ident.get("peer")
                if not self.context:
                    result["tls"] = ident.get("tls")
            if self.context:
                result["reused"] = bool(sock.session_reused)
                new_session = sock.session
            if status != 200:
                result["error"] = "HTTP status %d" % status
            elif length is not None and count != length:
                result["error"] = "short body: %d of %d bytes" % (count, length)
            else:
                result["ok"] = True
        except Exception as e:              # noqa: BLE001 - every failure is a result
            result["error"] = "%s: %s" % (type(e).__name__, e) if str(e) else type(e).__name__
        finally:
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass
            result["seconds"] = round(time.monotonic() - started, 6)
        return result, new_session


def plan(args):
    """Returns the planned connections as a list of source addresses, in order."""
    if args.order == "grouped":
        return [s for s in args.sources for _ in range(args.per_source)]
    return [s for _ in range(args.per_source) for s in args.sources]


def run(args):
    client = Client(args)
    order = plan(args)
    results = [None] * len(order)
    if not order:
        return results
    workers = max(1, args.concurrency)

    if args.resume == "source" and args.tls:
        # One chain per source; a chain's connections are sequential so each
        # can offer the session its predecessor got.
        chains = {}
        for index, source in enumerate(order):
            chains.setdefault(source, []).append(index)

        def chain(indexes):
            session = None
            for index in indexes:
                results[index], got = client.connect(order[index], session)
                session = got or session

        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(chain, chains.values()))
        return results

    session = None
    first = 0
    if args.resume == "first" and args.tls:
        results[0], session = client.connect(order[0])
        first = 1

    def one(index):
        results[index] = client.connect(order[index], session)[0]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, range(first, len(order))))
    return results


def summarize(results):
    servers = {}
    for r in results:
        if r["ok"]:
            servers[r["server"]] = servers.get(r["server"], 0) + 1
    return {"total": len(results), "ok": sum(1 for r in results if r["ok"]),
            "servers": servers}


def parse_args(argv):
    p = argparse.ArgumentParser(description="tether lab test client: many HTTP(S) "
                                "connections from chosen source addresses, JSON out")
    p.add_argument("--target", type=parse_target, required=True, help="IP:PORT")
    p.add_argument("--sources", type=parse_sources, required=True,
                   help="A,B,... or ranges A-B (inclusive)")
    p.add_argument("--per-source", type=int, default=1, help="connections per source")
    p.add_argument("--tls", action="store_true", help="TLS (else plain HTTP)")
    p.add_argument("--ca", help="CA file; without it the server is not verified")
    p.add_argument("--server-name", help="SNI and the name verified with --ca")
    p.add_argument("--path", default="/", help="request path, e.g. / or /bytes/1000000")
    p.add_argument("--timeout", type=float, default=5.0, help="per-socket-operation seconds")
    p.add_argument("--concurrency", type=int, default=16, help="connections in flight")
    p.add_argument("--order", choices=("interleaved", "grouped"), default="interleaved",
                   help="interleaved: a round over all sources, per-source times; "
                   "grouped: all of one source's connections, then the next")
    p.add_argument("--resume", choices=("none", "source", "first"), default="none",
                   help="offer TLS sessions from earlier connections (see the module doc)")
    p.add_argument("--tls-max", choices=sorted(TLS_VERSIONS), default="1.3",
                   help="highest TLS version offered")
    p.add_argument("--no-ticket", action="store_true",
                   help="do not ask for session tickets (TLS 1.2 resumes by session ID)")
    args = p.parse_args(argv)
    if args.per_source < 0:
        p.error("--per-source must be >= 0")
    return args


def main(argv):
    args = parse_args(argv)
    threading.stack_size(512 * 1024)
    results = run(args)
    json.dump({"results": results, "summary": summarize(results)}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
