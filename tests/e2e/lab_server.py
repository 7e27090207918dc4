#!/usr/bin/env python3
"""lab_server.py: a lab backend that says who it is.

scripts/lab.sh starts one in every backend namespace.  It listens on TLS ports
(real OpenSSL through the ssl module, its own key and therefore its own
session-ticket key) and on plain ports, and answers every request with one line
naming the server, the local port, the peer as the server sees it (so a test
can tell whether the client's address survived NAT), the TLS version and
whether the TLS session was resumed:

    server=be1 port=443 peer=203.0.113.10:40001 tls=TLSv1.3 reused=0

A request with a body (POST /upload, Content-Length N) is read whole and the
identity line gains " received=N".
GET /bytes/N returns N bytes instead (capped at 100 MB) for throughput and
large-flow tests; every response also carries the identity line in an
X-Lab-Identity header.  A first line that is not HTTP (someone typing into
openssl s_client) gets the identity line and the connection is closed.

One thread per connection: simple, and 1,000 concurrent handshakes are no
trouble since OpenSSL releases the GIL while it works.  Nothing a client does
may stop the server; errors are logged (one line) only with --verbose.
"""

import argparse
import re
import resource
import socket
import ssl
import sys
import threading
import time

MAX_BYTES = 100 * 1000 * 1000
CHUNK = 64 * 1024
MAX_LINE = 8192
MAX_HEADER = 65536
IO_TIMEOUT = 30.0
BACKLOG = 512

REQUEST_LINE = re.compile(rb"^([A-Z]+) (\S+) HTTP/\d\.\d\r?\n$")
BYTES_PATH = re.compile(r"^/bytes/(\d+)$")
PAYLOAD = (b"tether-lab-payload-" * (CHUNK // 19 + 1))[:CHUNK]


class Server:
    def __init__(self, args):
        self.name = args.name
        self.verbose = args.verbose
        self.context = None
        if args.tls_ports:
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.context.minimum_version = ssl.TLSVersion.TLSv1_2
            self.context.maximum_version = ssl.TLSVersion.TLSv1_3
            self.context.load_cert_chain(args.cert, args.key)

    def log(self, message):
        if self.verbose:
            print("%s %s: %s" % (time.strftime("%H:%M:%S"), self.name, message),
                  file=sys.stderr, flush=True)

    def listen(self, port, tls):
        """Returns a listening socket on 0.0.0.0:port; raises on failure."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", port))
        sock.listen(BACKLOG)
        thread = threading.Thread(target=self.accept_loop, args=(sock, port, tls),
                                  name="accept-%d" % port, daemon=True)
        thread.start()
        return sock

    def accept_loop(self, sock, port, tls):
        while True:
            try:
                conn, peer = sock.accept()
            except OSError as e:            # EMFILE and friends: back off, go on
                self.log("accept on %d: %s" % (port, e))
                time.sleep(0.05)
                continue
            try:
                threading.Thread(target=self.serve, args=(conn, peer, port, tls),
                                 daemon=True).start()
            except RuntimeError as e:       # cannot start a thread: drop this one
                self.log("thread for %s:%d: %s" % (peer[0], peer[1], e))
                conn.close()

    def serve(self, conn, peer, port, tls):
        """Serves one connection to the end; never raises."""
        peer_text = "%s:%d" % peer
        try:
            conn.settimeout(IO_TIMEOUT)
            # answer at once: no Nagle wait on the client's delayed ACK
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls:
                conn = self.context.wrap_socket(conn, server_side=True,
                                                do_handshake_on_connect=False)
                conn.do_handshake()
            self.answer(conn, peer_text, port, tls)
            self.close(conn, tls)
        except Exception as e:              # noqa: BLE001 - a bad client must not matter
            self.log("%s on port %d: %s: %s" % (peer_text, port, type(e).__name__, e))
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def identity(self, conn, peer_text, port, tls):
        version = conn.version() if tls else "none"
        reused = int(bool(conn.session_reused)) if tls else 0
        return "server=%s port=%d peer=%s tls=%s reused=%d" % (
            self.name, port, peer_text, version, reused)

    def answer(self, conn, peer_text, port, tls):
        # A GET has no body, so a buffered reader may read ahead; it is closed
        # before answering so that closing the socket really closes it.
        content_length = 0
        received = None
        with conn.makefile("rb") as reader:
            first = reader.readline(MAX_LINE)
            total = len(first)
            request = REQUEST_LINE.match(first)
            while request:                  # headers: only Content-Length matters
                line = reader.readline(MAX_LINE)
                total += len(line)
                if not line or line in (b"\r\n", b"\n") or total > MAX_HEADER:
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length" and value.strip().isdigit():
                    content_length = min(int(value.strip()), MAX_BYTES)
            if request and content_length:
                # an upload: read and count every byte before answering
                received = 0
                while received < content_length:
                    chunk = reader.read(min(CHUNK, content_length - received))
                    if not chunk:
                        break
                    received += len(chunk)
        if not first:
            return                          # connected and left (a TCP health check)
        ident = self.identity(conn, peer_text, port, tls)
        if received is not None:
            ident += " received=%d" % received
        if not request:
            conn.sendall((ident + "\n").encode())
            return
        method, path = request.group(1).decode(), request.group(2).decode("latin-1")
        match = BYTES_PATH.match(path)
        if match:
            length = min(int(match.group(1)), MAX_BYTES)
            body = None
        else:
            body = (ident + "\n").encode()
            length = len(body)
        head = ("HTTP/1.1 200 OK\r\n"
                "Content-Type: %s\r\n"
                "Content-Length: %d\r\n"
                "Connection: close\r\n"
                "X-Lab-Server: %s\r\n"
                "X-Lab-Identity: %s\r\n"
                "\r\n" % ("text/plain" if body is not None else "application/octet-stream",
                          length, self.name, ident)).encode()
        if method == "HEAD":
            conn.sendall(head)
        elif body is not None:
            conn.sendall(head + body)
        else:
            conn.sendall(head)
            view = memoryview(PAYLOAD)
            left = length
            while left > 0:
                n = min(left, CHUNK)
                conn.sendall(view[:n])
                left -= n

    def close(self, conn, tls):
        """Ends the connection politely: close_notify on TLS, then FIN."""
        if tls:
            conn.settimeout(2.0)
            try:
                conn = conn.unwrap()        # sends close_notify, waits briefly for the peer's
            except (OSError, ValueError):
                return
        try:
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def port_list(text):
    ports = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        port = int(part)
        if not 0 < port < 65536:
            raise argparse.ArgumentTypeError("bad port %r" % part)
        ports.append(port)
    return ports


def parse_args(argv):
    parser = argparse.ArgumentParser(description="tether lab backend: TLS and plain "
                                     "HTTP server that answers with its identity")
    parser.add_argument("--name", required=True, help="server name reported, e.g. be1")
    parser.add_argument("--cert", help="PEM certificate (required with --tls-ports)")
    parser.add_argument("--key", help="PEM private key (required with --tls-ports)")
    parser.add_argument("--tls-ports", type=port_list, default=[], help="e.g. 443,8443")
    parser.add_argument("--plain-ports", type=port_list, default=[], help="e.g. 80")
    parser.add_argument("--verbose", action="store_true", help="log errors to stderr")
    args = parser.parse_args(argv)
    if not args.tls_ports and not args.plain_ports:
        parser.error("no ports: give --tls-ports and/or --plain-ports")
    if args.tls_ports and not (args.cert and args.key):
        parser.error("--tls-ports needs --cert and --key")
    return args


def main(argv):
    args = parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    threading.stack_size(512 * 1024)
    server = Server(args)
    sockets = [server.listen(p, True) for p in args.tls_ports]
    sockets += [server.listen(p, False) for p in args.plain_ports]
    print("%s: listening tls=%s plain=%s" % (args.name, args.tls_ports, args.plain_ports),
          file=sys.stderr, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
