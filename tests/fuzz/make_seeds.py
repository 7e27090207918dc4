#!/usr/bin/env python3
"""make_seeds.py: write the seed corpora of the fuzz harnesses (tests/fuzz/corpus/).

Seeds are data built from the suite's own fixtures, so the fuzzers start from
inputs that reach deep: the real OpenSSL byte streams of tests/fixtures/tls,
the configs of config/ and tests/fixtures/config, the control requests of
tests/unit/test_control_socket.c, and frames built field by field as
tests/unit/packet_builder.h builds them (Katran's habit: no opaque blobs; each
seed's name says what it is).  The files are checked in; rerun this script
after changing a fixture or an input layout (it rewrites the corpora whole).

usage: tests/fuzz/make_seeds.py [--out DIR]
"""
import argparse
import glob
import os
import shutil
import struct

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
TLS_FIXTURES = os.path.join(ROOT, 'tests', 'fixtures', 'tls')


def read_hex(path):
    data = bytearray()
    with open(path) as f:
        for line in f:
            if not line.startswith('#'):
                data += bytes.fromhex(line.strip())
    return bytes(data)


def write(directory, name, data):
    with open(os.path.join(directory, name), 'wb') as f:
        f.write(data)


# --------------------------------------------------------------------------
# tls_hello: byte 0 = cuts | cap << 3 | scratch << 5, then 2 bytes per cut

def tls_seed(stream, cuts=(), cap=0, scratch=0):
    header = bytes([len(cuts) | cap << 3 | scratch << 5])
    return header + b''.join(struct.pack('>H', c) for c in cuts) + stream


def tls_corpus(out):
    for path in sorted(glob.glob(os.path.join(TLS_FIXTURES, '*.hex'))):
        name = os.path.basename(path)[:-4]
        stream = read_hex(path)
        write(out, name + '.whole', tls_seed(stream))
        # cut inside the first record header, after it, inside the message
        # header, and at a segment boundary
        record = 5 + (stream[3] << 8 | stream[4])
        write(out, name + '.cuts', tls_seed(stream, (3, 5, 7, min(record, len(stream)), 1400)))
    # a ClientHello in two records, and the scan with a small scratch
    client = read_hex(os.path.join(TLS_FIXTURES, 'tls12-ticket-resume.client.hex'))
    record = 5 + (client[3] << 8 | client[4])
    body = client[5:record]
    half = len(body) // 2
    split = (client[:3] + struct.pack('>H', half) + body[:half] +
             client[:3] + struct.pack('>H', len(body) - half) + body[half:])
    write(out, 'client-hello-two-records', tls_seed(split, (5 + half + 2,)))
    server = read_hex(os.path.join(TLS_FIXTURES, 'tls12-ticket-full.server.hex'))
    write(out, 'server-small-scratch', tls_seed(server, (100,), scratch=2))
    write(out, 'client-small-cap', tls_seed(client, (), cap=2))


# --------------------------------------------------------------------------
# config: the documents themselves

def config_corpus(out):
    for path in sorted(glob.glob(os.path.join(ROOT, 'config', '*.json'))):
        shutil.copy(path, os.path.join(out, 'config-' + os.path.basename(path)))
    fixtures = os.path.join(ROOT, 'tests', 'fixtures', 'config')
    for path in sorted(glob.glob(os.path.join(fixtures, '*', '*', 'input.json'))):
        kind, case = path.split(os.sep)[-3:-1]
        shutil.copy(path, os.path.join(out, '%s-%s.json' % (kind, case)))
    for path in sorted(glob.glob(os.path.join(fixtures, '*', 'input.json'))):
        case = path.split(os.sep)[-2]
        shutil.copy(path, os.path.join(out, '%s.json' % case))


# --------------------------------------------------------------------------
# control_request: what a client writes to control.sock

CONTROL_SEEDS = {
    'status': b'{"command":"status"}\n',
    'reload': b'{"command":"reload"}\n',
    'reload-then-status': b'{"command":"reload"}\n{"command":"status"}\n',
    'show-services': b'{"command":"show","what":"services"}\n',
    'show-pools': b'{"command":"show","what":"pools"}\n',
    'show-backends': b'{"command":"show","what":"backends"}\n',
    'show-flows': b'{"command":"show","what":"flows"}\n',
    'show-sessions': b'{"command":"show","what":"sessions"}\n',
    'show-stats': b'{"command":"show","what":"stats"}\n',
    'backend-enable': b'{"command":"backend","action":"enable","pool":"cp","name":"be1"}\n',
    'backend-disable': b'{"command":"backend","action":"disable","pool":"cp","name":"be1"}\n',
    'backend-drain': b'{"command":"backend","action":"drain","pool":"cp","name":"be2"}\n',
    'backend-weight': b'{"command":"backend","action":"weight","pool":"cp","name":"be2","weight":7}\n',
    'crlf': b'{"command":"status"}\r\n',
    'no-newline': b'{"command":"status"}',
    'several-lines': b'{"command": \nnot json at all\n{"command":"show","what":"pools"}\n\n',
    'duplicate-keys': b'{"command":"status","command":"reload"}\n',
    'unknown-key': b'{"command":"status","verbose":true}\n',
    'weight-string': b'{"command":"backend","action":"weight","pool":"cp","name":"be","weight":"3"}\n',
    'weight-over': b'{"command":"backend","action":"weight","pool":"cp","name":"be","weight":1001}\n',
    'name-with-space': b'{"command":"backend","action":"drain","pool":"cp","name":"b e"}\n',
    'unicode-name': b'{"command":"backend","action":"drain","pool":"cp","name":"\\u00e9\\u0000"}\n',
    'words-prefixes': b'sh back\n',
    'words-backend-weight': b'backend weight cp be2 3\n',
    'words-ambiguous': b's\n',
    'not-an-object': b'["status"]\n',
}


def control_corpus(out):
    for name, data in CONTROL_SEEDS.items():
        write(out, name, data)


# --------------------------------------------------------------------------
# pipeline: frames, as packet_builder.h builds them

PUBLIC, PRIVATE = 0, 1
REPLY, FIX, END = 2, 4, 8
# time steps (fuzz_pipeline.c's time_steps_ms index << 4)
STEP = {0: 0, '1ms': 1, '250ms': 4, '1s': 5, '3s': 6, '5s': 7, '31s': 9, '61s': 10, '15min': 13}

SYN, FIN, RST, PSH, ACK = 0x02, 0x01, 0x04, 0x08, 0x10
LINUX_SYN_OPTIONS = bytes([2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0x03, 0xe8, 0, 0, 0, 0, 1, 3, 3, 7])
SYNACK_OPTIONS = bytes([2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0x20, 0, 0, 0, 0x03, 0xe9, 1, 3, 3, 7])
TIMESTAMPS = bytes([1, 1, 8, 10, 0, 0, 0x03, 0xe9, 0, 0, 0, 0])
CLIENT, VIP_STICKY, VIP_TLS, VIP_STRICT = '203.0.113.10', '192.0.2.20', '192.0.2.30', '192.0.2.31'
VIP_ALT, VIP_ACL, VIP_COOKIE = '192.0.2.23', '192.0.2.10', '192.0.2.24'
BACKENDS = ['198.51.100.131', '198.51.100.132', '198.51.100.133']


def address(text):
    return bytes(int(x) for x in text.split('.'))


def checksum(data):
    if len(data) % 2:
        data += b'\0'
    total = sum(struct.unpack('>%dH' % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xffff) + (total >> 16)
    return ~total & 0xffff


def ethernet(payload, ether_type=0x0800):
    frame = bytes([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]) + struct.pack('>H', ether_type) + payload
    return frame + b'\0' * max(0, 60 - len(frame))


def ipv4(source, destination, protocol, l4, flags_fragment=0x4000):
    header = bytearray(struct.pack('>BBHHHBBH4s4s', 0x45, 0, 20 + len(l4), 0, flags_fragment, 64,
                                   protocol, 0, address(source), address(destination)))
    struct.pack_into('>H', header, 10, checksum(bytes(header)))
    return bytes(header) + l4


def l4_checksum(source, destination, protocol, segment):
    pseudo = address(source) + address(destination) + struct.pack('>BBH', 0, protocol, len(segment))
    return checksum(pseudo + segment)


def tcp(source, destination, sport, dport, flags, seq=1000, ack=0, options=b'', payload=b''):
    offset = (20 + len(options)) // 4
    segment = bytearray(struct.pack('>HHIIBBHHH', sport, dport, seq, ack, offset << 4, flags,
                                    501, 0, 0) + options + payload)
    struct.pack_into('>H', segment, 16, l4_checksum(source, destination, 6, bytes(segment)))
    return ethernet(ipv4(source, destination, 6, bytes(segment)))


def udp(source, destination, sport, dport, payload):
    segment = bytearray(struct.pack('>HHHH', sport, dport, 8 + len(payload), 0) + payload)
    struct.pack_into('>H', segment, 6, l4_checksum(source, destination, 17, bytes(segment)))
    return ethernet(ipv4(source, destination, 17, bytes(segment)))


def icmp_echo(source, destination):
    message = bytearray(struct.pack('>BBHHH', 8, 0, 0, 0x1234, 1) + b'ping' * 8)
    struct.pack_into('>H', message, 2, checksum(bytes(message)))
    return ethernet(ipv4(source, destination, 1, bytes(message)))


def icmp_frag_needed(router, destination, quoted):
    """A 'fragmentation needed' about `quoted` (an Ethernet frame), MTU 1280."""
    inner = quoted[14:14 + 28]
    message = bytearray(struct.pack('>BBHHH', 3, 4, 0, 0, 1280) + inner)
    struct.pack_into('>H', message, 2, checksum(bytes(message)))
    return ethernet(ipv4(router, destination, 1, bytes(message)))


def arp(operation, sender_ip, target_ip, sender_mac=b'\x02\xbb\0\0\0\x01', target_mac=b'\0' * 6):
    body = struct.pack('>HHBBH6s4s6s4s', 1, 0x0800, 6, 4, operation, sender_mac, address(sender_ip),
                       target_mac, address(target_ip))
    return ethernet(body, 0x0806)


def record(frame, port=PUBLIC, flags=END, step=0):
    return bytes([port | flags | STEP[step] << 4]) + struct.pack('>H', len(frame)) + frame


def seed(*records, header=0):
    return bytes([header]) + b''.join(records)


def nat_connection(vip, client=CLIENT, port=40000, dport=443):
    """A client's connection through a NAT service, every step a reply."""
    return [
        record(tcp(client, vip, port, dport, SYN, seq=1000)),
        # the backend's SYN-ACK: a reply to the SYN that went out of the private port
        record(tcp('0.0.0.0', '0.0.0.0', 0, 0, SYN | ACK, seq=5000), PRIVATE, REPLY | FIX | END),
        record(tcp(client, vip, port, dport, ACK, seq=1001, ack=5001), PUBLIC, REPLY | FIX | END),
        record(tcp(client, vip, port, dport, ACK | PSH, seq=1001, ack=5001, payload=b'GET / HTTP/1.0\r\n\r\n'),
               PUBLIC, REPLY | FIX | END),
        record(tcp('0.0.0.0', '0.0.0.0', 0, 0, ACK | PSH, payload=b'HTTP/1.0 200 OK\r\n\r\n'),
               PRIVATE, REPLY | FIX | END),
        record(tcp(client, vip, port, dport, FIN | ACK), PUBLIC, REPLY | FIX | END),
        record(tcp('0.0.0.0', '0.0.0.0', 0, 0, FIN | ACK), PRIVATE, REPLY | FIX | END),
        record(tcp(client, vip, port, dport, ACK), PUBLIC, REPLY | FIX | END),
    ]


def ssl_session(vip, client_stream, server_stream, client=CLIENT, port=40001, hello_segments=1,
                step=0):
    """Delayed binding end to end: cookie, hello, backend SYN, replay, learning."""
    record_length = 5 + (client_stream[3] << 8 | client_stream[4])
    hello = client_stream[:record_length]
    records = [
        record(tcp(client, vip, port, 443, SYN, seq=7000, options=LINUX_SYN_OPTIONS), step=step),
        # the ACK of the cookie SYN-ACK
        record(tcp(client, vip, port, 443, ACK, options=TIMESTAMPS), PUBLIC, REPLY | FIX | END),
    ]
    size = (len(hello) + hello_segments - 1) // hello_segments
    for offset in range(0, len(hello), size):
        records.append(record(tcp(client, vip, port, 443, ACK | PSH, options=TIMESTAMPS,
                                  payload=hello[offset:offset + size]), PUBLIC, REPLY | FIX | END))
    # the backend's SYN-ACK to the SYN the dataplane sent, then its handshake
    records.append(record(tcp('0.0.0.0', '0.0.0.0', 0, 0, SYN | ACK, seq=90000, options=SYNACK_OPTIONS),
                          PRIVATE, REPLY | FIX | END))
    for offset in range(0, len(server_stream), 1400):
        records.append(record(tcp('0.0.0.0', '0.0.0.0', 0, 0, ACK, options=TIMESTAMPS,
                                  payload=server_stream[offset:offset + 1400]), PRIVATE, REPLY | FIX | END))
    records.append(record(tcp(client, vip, port, 443, ACK, options=TIMESTAMPS), PUBLIC, REPLY | FIX | END))
    records.append(record(tcp(client, vip, port, 443, FIN | ACK, options=TIMESTAMPS), PUBLIC, REPLY | FIX | END))
    return records


def cookie_connection(vip, client=CLIENT, port=40300):
    """A plain service on syn_cookies always: cookie, backend connected on the
    ACK, a request and an answer through the splice, then FIN."""
    return [
        record(tcp(client, vip, port, 443, SYN, seq=3000, options=LINUX_SYN_OPTIONS)),
        record(tcp(client, vip, port, 443, ACK, options=TIMESTAMPS), PUBLIC, REPLY | FIX | END),
        record(tcp('0.0.0.0', '0.0.0.0', 0, 0, SYN | ACK, seq=60000, options=SYNACK_OPTIONS),
               PRIVATE, REPLY | FIX | END),
        record(tcp(client, vip, port, 443, ACK | PSH, options=TIMESTAMPS,
                   payload=b'GET / HTTP/1.0\r\n\r\n'), PUBLIC, REPLY | FIX | END),
        record(tcp('0.0.0.0', '0.0.0.0', 0, 0, ACK | PSH, options=TIMESTAMPS,
                   payload=b'HTTP/1.0 200 OK\r\n\r\n'), PRIVATE, REPLY | FIX | END),
        record(tcp(client, vip, port, 443, FIN | ACK, options=TIMESTAMPS), PUBLIC, REPLY | FIX | END),
    ]


def tls_pair(case):
    return (read_hex(os.path.join(TLS_FIXTURES, case + '.client.hex')),
            read_hex(os.path.join(TLS_FIXTURES, case + '.server.hex')))


def pipeline_corpus(out):
    write(out, 'nat-source-ip-connection', seed(*nat_connection(VIP_STICKY)))
    write(out, 'nat-syn-cookie-connection', seed(*cookie_connection(VIP_COOKIE)))
    write(out, 'nat-port-translation', seed(*nat_connection(VIP_ALT, port=40010)))
    write(out, 'nat-acl-allowed-and-denied', seed(*nat_connection(VIP_ACL, port=40020),
                                                  *nat_connection(VIP_ACL, client='198.18.0.7')))
    write(out, 'nat-burst-of-syns', seed(*[record(tcp('203.0.113.%d' % (i + 1), VIP_STICKY, 41000 + i, 443,
                                                      SYN), flags=0) for i in range(32)]))
    write(out, 'nat-expiry', seed(record(tcp(CLIENT, VIP_STICKY, 40030, 443, SYN)),
                                  record(tcp(CLIENT, VIP_STICKY, 40030, 443, ACK), step='61s'),
                                  record(tcp(CLIENT, VIP_STICKY, 40031, 443, SYN), step='15min')))
    write(out, 'udp-query-and-answer', seed(
        record(udp(CLIENT, VIP_STICKY, 5353, 53, b'\x12\x34\x01\x00\x00\x01' + b'\0' * 6)),
        *[record(udp(b, CLIENT, 443, 5353, b'\x12\x34\x81\x80'), PRIVATE) for b in BACKENDS]))
    write(out, 'icmp-echo-vip-and-port', seed(record(icmp_echo(CLIENT, VIP_STICKY)),
                                              record(icmp_echo(BACKENDS[0], '198.51.100.129'), PRIVATE)))
    syn = tcp(CLIENT, VIP_STICKY, 40040, 443, SYN)
    relays = [record(icmp_frag_needed('198.51.100.1', VIP_STICKY,
                                      tcp(VIP_STICKY, CLIENT, 443, 40040, SYN | ACK)))]
    relays += [record(icmp_frag_needed(b, CLIENT, tcp(b, CLIENT, 443, 40040, ACK, payload=b'x' * 100)),
                      PRIVATE) for b in BACKENDS]
    write(out, 'icmp-frag-needed-relayed', seed(record(syn), *relays))
    write(out, 'arp-request-reply-gratuitous', seed(
        record(arp(1, '198.51.100.1', VIP_STICKY)),
        record(arp(1, BACKENDS[0], '198.51.100.129', b'\x02\xcc\0\0\0\x09'), PRIVATE),
        record(arp(2, BACKENDS[1], '198.51.100.129', b'\x02\xcc\0\0\0\x0a', b'\x02\xaa\0\0\0\x02'), PRIVATE),
        record(arp(1, '198.51.100.1', '198.51.100.1'), step='61s'), header=1))
    write(out, 'malformed-frames', seed(
        record(b'\x02' * 13),
        record(ethernet(b'\x81\x00' + b'\0' * 40, 0x8100)),
        record(ethernet(ipv4(CLIENT, VIP_STICKY, 6, b'\0' * 20, flags_fragment=0x2000))),
        record(ethernet(bytes([0x46]) + ipv4(CLIENT, VIP_STICKY, 6, b'\0' * 24)[1:])),
        record(tcp(CLIENT, VIP_STICKY, 40050, 443, ACK)),
        record(tcp(CLIENT, '192.0.2.99', 40050, 443, SYN)),
        record(tcp('127.0.0.1', VIP_STICKY, 40050, 443, SYN)),
        record(tcp(BACKENDS[0], CLIENT, 443, 40050, SYN | ACK), PRIVATE),
        record(tcp(CLIENT, VIP_STICKY, 40050, 443, SYN), PRIVATE)))

    for case in ('tls12-session-id-full', 'tls12-ticket-full', 'tls13-full', 'tls13-hrr'):
        client, server = tls_pair(case)
        write(out, 'ssl-session-' + case, seed(*ssl_session(VIP_TLS, client, server)))
    client, server = tls_pair('tls13-full')
    write(out, 'ssl-session-strict-hello-in-3-segments',
          seed(*ssl_session(VIP_STRICT, client, server, hello_segments=3)))
    # a full handshake teaches the session; the resumption from another
    # address must reach the same backend
    for full, resume in (('tls12-session-id-full', 'tls12-session-id-resume'),
                         ('tls12-ticket-full', 'tls12-ticket-resume'),
                         ('tls13-full', 'tls13-psk-resume')):
        first = ssl_session(VIP_TLS, *tls_pair(full))
        second = ssl_session(VIP_TLS, *tls_pair(resume), client='203.0.113.99', port=40100)
        write(out, 'ssl-session-learn-then-' + resume, seed(*first, *second))
    # not TLS, and a client that never sends its hello (inspect timeout), and
    # a backend that never answers (SYN retries, then RST)
    write(out, 'ssl-session-not-tls', seed(
        record(tcp(CLIENT, VIP_TLS, 40200, 443, SYN, options=LINUX_SYN_OPTIONS)),
        record(tcp(CLIENT, VIP_TLS, 40200, 443, ACK), PUBLIC, REPLY | FIX | END),
        record(tcp(CLIENT, VIP_TLS, 40200, 443, ACK | PSH, payload=b'GET / HTTP/1.1\r\n\r\n'),
               PUBLIC, REPLY | FIX | END)))
    write(out, 'ssl-session-timeouts', seed(
        record(tcp(CLIENT, VIP_TLS, 40201, 443, SYN, options=LINUX_SYN_OPTIONS)),
        record(tcp(CLIENT, VIP_TLS, 40201, 443, ACK), PUBLIC, REPLY | FIX | END),
        record(tcp(CLIENT, VIP_TLS, 40202, 443, SYN), step='5s'),
        record(tcp(CLIENT, VIP_TLS, 40202, 443, ACK), PUBLIC, REPLY | FIX | END),
        record(tcp(CLIENT, VIP_TLS, 40202, 443, ACK | PSH, payload=tls_pair('tls12-ticket-full')[0][:300]),
               PUBLIC, REPLY | FIX | END),
        record(tcp(CLIENT, VIP_TLS, 40203, 443, SYN), step='1s'),
        record(tcp(CLIENT, VIP_TLS, 40203, 443, SYN), step='3s'),
        record(tcp(CLIENT, VIP_TLS, 40203, 443, SYN), step='5s')))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus'))
    arguments = parser.parse_args()
    for name, build in (('tls_hello', tls_corpus), ('config', config_corpus),
                        ('control_request', control_corpus), ('pipeline', pipeline_corpus)):
        directory = os.path.join(arguments.out, name)
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory)
        build(directory)
        print('%s: %d seeds' % (name, len(os.listdir(directory))))


if __name__ == '__main__':
    main()
