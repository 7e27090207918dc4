/*
 * packet.h: header parsing and validation for Ethernet / ARP / IPv4 / TCP / UDP /
 * ICMP, and the checksum helpers the NAT rewrites use.
 *
 * packet_parse() is a pure function over bytes: it never allocates, never
 * writes, and checks every length against the frame before it reads.  It
 * returns a reason; the pipeline counts each non-OK reason and drops the frame.
 * That keeps the hot path branch-light (one switch on the reason at the end)
 * and lets the unit tests and fuzzers drive it without an mbuf.
 *
 * Policy, and why:
 *  - IPv4 options: counted and dropped.  Nothing tether fronts needs them, and
 *    source-route options are an attack on a NAT edge.
 *  - Fragments: counted and dropped.  A fragment after the first carries no
 *    ports, so it cannot be matched to a flow without reassembly state; the
 *    servers behind us set DF (PMTU discovery works, see icmp relay).
 *  - The IPv4 header checksum is verified (20 bytes, cheap); TCP/UDP checksums
 *    are not: NAT updates them incrementally, so a bad one stays bad and the
 *    receiving host drops it.
 */
#ifndef TETHER_PACKET_H
#define TETHER_PACKET_H

#include <stdint.h>
#include <string.h>

#include <rte_byteorder.h>

#define PACKET_ETHER_HEADER_LENGTH 14
#define PACKET_IPV4_HEADER_LENGTH  20

/* Why a frame was dropped.  Parse reasons first, then pipeline reasons; the
 * names (packet_reason_name) are the counter names operators see. */
enum packet_reason {
	PACKET_OK = 0,
	/* parse */
	PACKET_DROP_SHORT_FRAME,
	PACKET_DROP_UNSUPPORTED_ETHERTYPE,
	PACKET_DROP_ARP_MALFORMED,
	PACKET_DROP_IP_TRUNCATED,
	PACKET_DROP_IP_VERSION,
	PACKET_DROP_IP_BAD_IHL,
	PACKET_DROP_IP_BAD_TOTAL_LENGTH,
	PACKET_DROP_IP_BAD_CHECKSUM,
	PACKET_DROP_IP_OPTIONS,
	PACKET_DROP_IP_FRAGMENT,
	PACKET_DROP_IP_BAD_SOURCE,
	PACKET_DROP_TCP_TRUNCATED,
	PACKET_DROP_TCP_BAD_DATA_OFFSET,
	PACKET_DROP_UDP_TRUNCATED,
	PACKET_DROP_UDP_BAD_LENGTH,
	PACKET_DROP_ICMP_TRUNCATED,
	PACKET_DROP_UNSUPPORTED_PROTOCOL,
	/* pipeline */
	PACKET_DROP_NOT_FOR_US,
	PACKET_DROP_NO_SERVICE,
	PACKET_DROP_ACL_DENIED,
	PACKET_DROP_TCP_NO_FLOW,
	PACKET_DROP_FLOW_TABLE_FULL,
	PACKET_DROP_FLOW_CONFLICT,
	PACKET_DROP_NO_BACKEND,
	PACKET_DROP_NEIGHBOR_UNRESOLVED,
	PACKET_DROP_ICMP_UNHANDLED,
	PACKET_DROP_ICMP_NO_FLOW,
	PACKET_DROP_TX_FULL,
	PACKET_DROP_WRONG_SIDE,          /* a flow's packet on the other port (spoofing) */
	PACKET_DROP_TCP_UNEXPECTED_SYN,  /* a SYN inside a live spliced connection */
	PACKET_DROP_HANDOFF_FULL,        /* the owning worker's handoff ring was full */
	PACKET_DROP_OVERLOAD,            /* a new connection refused at OVERLOAD_REFUSE_NEW */
	PACKET_DROP_TCP_BAD_CHECKSUM,    /* client bytes a binding would buffer and acknowledge */
	PACKET_REASON_COUNT
};

enum packet_kind { PACKET_KIND_ARP = 1, PACKET_KIND_IPV4 = 2 };

/* What the parser learned; offsets are from the start of the frame.
 * Addresses and ports stay in network byte order (they are compared and
 * rewritten, rarely printed). */
struct packet_info {
	uint8_t kind;
	uint8_t protocol;          /* IPPROTO_TCP / UDP / ICMP */
	uint8_t tcp_flags;
	uint8_t l3_offset;
	uint16_t l4_offset;
	uint16_t l3_length;        /* IPv4 total length */
	uint32_t source;           /* IPv4 source, network order */
	uint32_t destination;
	uint16_t source_port;      /* TCP/UDP; ICMP: 0 */
	uint16_t destination_port;
	uint32_t tcp_sequence;     /* TCP: the sequence number, network order */
};

/* Parse `length` bytes of an Ethernet frame.  Returns PACKET_OK and fills
 * `info`, or the drop reason (info partly filled).  Pure; any thread. */
enum packet_reason packet_parse(const uint8_t *frame, uint32_t length,
				struct packet_info *info);

/* Stable snake_case counter name of a reason ("ip_bad_ihl"). */
const char *packet_reason_name(enum packet_reason reason);

/* --- checksums (RFC 1071 sums, RFC 1624 incremental updates) --- */

static inline uint16_t
checksum_fold(uint32_t sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)sum;
}

/* A sum of 32-bit words folded to the 32-bit value checksum_fold() takes. */
static inline uint32_t
checksum_fold64(uint64_t wide)
{
	wide = (wide & 0xffffffff) + (wide >> 32);   /* at most 33 bits */
	wide = (wide & 0xffffffff) + (wide >> 32);
	return (uint32_t)(wide & 0xffff) + (uint32_t)(wide >> 16);
}

/* One's-complement sum of the 20 bytes of an IPv4 header without options,
 * as five 32-bit words (checksum_fold64 it). */
static inline uint64_t
checksum_ipv4_header_sum(const uint8_t *ip)
{
	uint32_t w0, w1, w2, w3, w4;

	memcpy(&w0, ip, 4);
	memcpy(&w1, ip + 4, 4);
	memcpy(&w2, ip + 8, 4);
	memcpy(&w3, ip + 12, 4);
	memcpy(&w4, ip + 16, 4);
	return (uint64_t)w0 + w1 + w2 + w3 + w4;
}

/* One's-complement sum of the TCP/UDP pseudo header (RFC 793 3.1): both
 * addresses (network order), the protocol and the L4 length (host order). */
static inline uint32_t
checksum_pseudo_header(uint32_t source, uint32_t destination, uint8_t protocol, uint16_t length)
{
	return checksum_fold64((uint64_t)source + destination +
			       rte_cpu_to_be_16((uint16_t)protocol) + rte_cpu_to_be_16(length));
}

/* One's-complement sum of `length` bytes (network order words), added to `sum`. */
uint32_t checksum_partial(const void *data, uint32_t length, uint32_t sum);

/* Final checksum of a buffer: ~fold(sum). */
static inline uint16_t
checksum_compute(const void *data, uint32_t length)
{
	return (uint16_t)~checksum_fold(checksum_partial(data, length, 0));
}

/* RFC 1624 eqn. 3 in two parts: what a field changing from `old_value` to
 * `new_value` (both network order) adds to a checksum, and a checksum with
 * such additions applied.  Several changes covered by one checksum add their
 * deltas first and fold once. */
static inline uint32_t
checksum_delta32(uint32_t old_value, uint32_t new_value)
{
	return (uint32_t)(uint16_t)~old_value + (uint16_t)~(old_value >> 16) +
	       (new_value & 0xffff) + (new_value >> 16);
}

static inline uint32_t
checksum_delta16(uint16_t old_value, uint16_t new_value)
{
	return (uint32_t)(uint16_t)~old_value + new_value;
}

static inline uint16_t
checksum_apply(uint16_t check, uint32_t delta)
{
	return (uint16_t)~checksum_fold((uint32_t)(uint16_t)~check + delta);
}

/* Update checksum field *check (network order) for a 32-bit field changing
 * from `old_value` to `new_value` (both network order). */
static inline void
checksum_replace32(uint16_t *check, uint32_t old_value, uint32_t new_value)
{
	*check = checksum_apply(*check, checksum_delta32(old_value, new_value));
}

static inline void
checksum_replace16(uint16_t *check, uint16_t old_value, uint16_t new_value)
{
	*check = checksum_apply(*check, checksum_delta16(old_value, new_value));
}

#endif /* TETHER_PACKET_H */
