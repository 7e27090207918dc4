/*
 * packet.c: bounds-checked parsing of the frames the dataplane accepts.
 * See packet.h for the policy on options, fragments and checksums.
 */
#include "packet.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>

#include <rte_arp.h>
#include <rte_branch_prediction.h>
#include <rte_ether.h>
#include <rte_icmp.h>
#include <rte_ip.h>
#include <rte_tcp.h>
#include <rte_udp.h>

static const char *const reason_names[PACKET_REASON_COUNT] = {
	[PACKET_OK] = "ok",
	[PACKET_DROP_SHORT_FRAME] = "short_frame",
	[PACKET_DROP_UNSUPPORTED_ETHERTYPE] = "unsupported_ethertype",
	[PACKET_DROP_ARP_MALFORMED] = "arp_malformed",
	[PACKET_DROP_IP_TRUNCATED] = "ip_truncated",
	[PACKET_DROP_IP_VERSION] = "ip_version",
	[PACKET_DROP_IP_BAD_IHL] = "ip_bad_ihl",
	[PACKET_DROP_IP_BAD_TOTAL_LENGTH] = "ip_bad_total_length",
	[PACKET_DROP_IP_BAD_CHECKSUM] = "ip_bad_checksum",
	[PACKET_DROP_IP_OPTIONS] = "ip_options",
	[PACKET_DROP_IP_FRAGMENT] = "ip_fragment",
	[PACKET_DROP_IP_BAD_SOURCE] = "ip_bad_source",
	[PACKET_DROP_TCP_TRUNCATED] = "tcp_truncated",
	[PACKET_DROP_TCP_BAD_DATA_OFFSET] = "tcp_bad_data_offset",
	[PACKET_DROP_UDP_TRUNCATED] = "udp_truncated",
	[PACKET_DROP_UDP_BAD_LENGTH] = "udp_bad_length",
	[PACKET_DROP_ICMP_TRUNCATED] = "icmp_truncated",
	[PACKET_DROP_UNSUPPORTED_PROTOCOL] = "unsupported_protocol",
	[PACKET_DROP_NOT_FOR_US] = "not_for_us",
	[PACKET_DROP_NO_SERVICE] = "no_service",
	[PACKET_DROP_ACL_DENIED] = "acl_denied",
	[PACKET_DROP_TCP_NO_FLOW] = "tcp_no_flow",
	[PACKET_DROP_FLOW_TABLE_FULL] = "flow_table_full",
	[PACKET_DROP_FLOW_CONFLICT] = "flow_conflict",
	[PACKET_DROP_NO_BACKEND] = "no_backend",
	[PACKET_DROP_NEIGHBOR_UNRESOLVED] = "neighbor_unresolved",
	[PACKET_DROP_ICMP_UNHANDLED] = "icmp_unhandled",
	[PACKET_DROP_ICMP_NO_FLOW] = "icmp_no_flow",
	[PACKET_DROP_TX_FULL] = "tx_full",
	[PACKET_DROP_WRONG_SIDE] = "wrong_side",
	[PACKET_DROP_TCP_UNEXPECTED_SYN] = "tcp_unexpected_syn",
	[PACKET_DROP_HANDOFF_FULL] = "handoff_full",
	[PACKET_DROP_OVERLOAD] = "overload_refused",
	[PACKET_DROP_TCP_BAD_CHECKSUM] = "tcp_bad_checksum",
};

const char *
packet_reason_name(enum packet_reason reason)
{
	if ((unsigned)reason >= PACKET_REASON_COUNT)
		return "unknown";
	return reason_names[reason];
}

/* Eight bytes at a time as two 32-bit words: the one's-complement sum does
 * not care how the bytes are grouped, only that each keeps its position in
 * its 16-bit word (RFC 1071, "byte order independence"). */
uint32_t
checksum_partial(const void *data, uint32_t length, uint32_t sum)
{
	const uint8_t *bytes = data;
	uint64_t wide = sum;

	/* four accumulators: independent adds, and a loop the compiler may
	 * vectorize (32-bit words widened into 64-bit sums) */
	uint64_t lanes[4] = { 0, 0, 0, 0 };
	for (; length >= 16; bytes += 16, length -= 16) {
		uint32_t words[4];
		memcpy(words, bytes, 16);
		for (unsigned lane = 0; lane < 4; lane++)
			lanes[lane] += words[lane];
	}
	wide += lanes[0] + lanes[1] + lanes[2] + lanes[3];
	if (length >= 8) {
		uint64_t word;
		memcpy(&word, bytes, 8);
		wide += (word & 0xffffffff) + (word >> 32);
		bytes += 8;
		length -= 8;
	}
	if (length >= 4) {
		uint32_t word;
		memcpy(&word, bytes, 4);
		wide += word;
		bytes += 4;
		length -= 4;
	}
	if (length >= 2) {
		uint16_t word;
		memcpy(&word, bytes, 2);
		wide += word;
		bytes += 2;
		length -= 2;
	}
	if (length) {
		uint16_t word = 0;
		memcpy(&word, bytes, 1);  /* pad with a zero byte in memory order */
		wide += word;
	}
	return checksum_fold64(wide);
}

/* True when the IPv4 header of `header_length` bytes (20 to 60, a multiple
 * of 4) sums to 0xffff: five 32-bit adds for the usual 20 bytes. */
static inline bool
ipv4_header_checksum_ok(const uint8_t *ip, uint32_t header_length)
{
	uint64_t wide = checksum_ipv4_header_sum(ip);

	for (uint32_t offset = PACKET_IPV4_HEADER_LENGTH; offset < header_length; offset += 4) {
		uint32_t word;
		memcpy(&word, ip + offset, 4);
		wide += word;
	}
	return checksum_fold(checksum_fold64(wide)) == 0xffff;
}

static enum packet_reason
parse_arp(uint32_t available)
{
	/* Only Ethernet/IPv4 ARP; anything shorter cannot be answered safely. */
	return available < sizeof(struct rte_arp_hdr) ? PACKET_DROP_ARP_MALFORMED : PACKET_OK;
}

/* Source addresses no host may use: 0/8, loopback, multicast, class E, broadcast. */
static inline bool
source_is_bogus(uint32_t source_be)
{
	uint8_t first = (uint8_t)(rte_be_to_cpu_32(source_be) >> 24);
	return first == 0 || first == 127 || first >= 224;
}

static enum packet_reason
parse_l4(const uint8_t *l4, uint32_t l4_length, struct packet_info *info)
{
	switch (info->protocol) {
	case IPPROTO_TCP: {
		const struct rte_tcp_hdr *tcp = (const struct rte_tcp_hdr *)l4;
		if (l4_length < sizeof(*tcp))
			return PACKET_DROP_TCP_TRUNCATED;
		uint32_t data_offset = (uint32_t)(tcp->data_off >> 4) * 4;
		if (data_offset < sizeof(*tcp) || data_offset > l4_length)
			return PACKET_DROP_TCP_BAD_DATA_OFFSET;
		info->source_port = tcp->src_port;
		info->destination_port = tcp->dst_port;
		info->tcp_flags = tcp->tcp_flags;
		info->tcp_sequence = tcp->sent_seq;
		return PACKET_OK;
	}
	case IPPROTO_UDP: {
		const struct rte_udp_hdr *udp = (const struct rte_udp_hdr *)l4;
		if (l4_length < sizeof(*udp))
			return PACKET_DROP_UDP_TRUNCATED;
		uint32_t datagram_length = rte_be_to_cpu_16(udp->dgram_len);
		if (datagram_length < sizeof(*udp) || datagram_length > l4_length)
			return PACKET_DROP_UDP_BAD_LENGTH;
		info->source_port = udp->src_port;
		info->destination_port = udp->dst_port;
		return PACKET_OK;
	}
	case IPPROTO_ICMP:
		/* type, code, checksum, 4 bytes of rest-of-header */
		return l4_length < sizeof(struct rte_icmp_hdr) ? PACKET_DROP_ICMP_TRUNCATED : PACKET_OK;
	default:
		return PACKET_DROP_UNSUPPORTED_PROTOCOL;
	}
}

static enum packet_reason
parse_ipv4(const uint8_t *frame, uint32_t length, struct packet_info *info)
{
	uint32_t available = length - PACKET_ETHER_HEADER_LENGTH;
	const struct rte_ipv4_hdr *ip =
		(const struct rte_ipv4_hdr *)(frame + PACKET_ETHER_HEADER_LENGTH);

	if (available < PACKET_IPV4_HEADER_LENGTH)
		return PACKET_DROP_IP_TRUNCATED;
	if ((ip->version_ihl >> 4) != 4)
		return PACKET_DROP_IP_VERSION;
	uint32_t header_length = (uint32_t)(ip->version_ihl & 0x0f) * 4;
	if (header_length < PACKET_IPV4_HEADER_LENGTH || header_length > available)
		return PACKET_DROP_IP_BAD_IHL;
	uint32_t total_length = rte_be_to_cpu_16(ip->total_length);
	/* Frames may carry Ethernet padding past the datagram, never less than it. */
	if (total_length < header_length || total_length > available)
		return PACKET_DROP_IP_BAD_TOTAL_LENGTH;
	if (!ipv4_header_checksum_ok((const uint8_t *)ip, header_length))
		return PACKET_DROP_IP_BAD_CHECKSUM;
	if (header_length != PACKET_IPV4_HEADER_LENGTH)
		return PACKET_DROP_IP_OPTIONS;
	/* More-fragments set, or a non-zero offset: any piece of a fragmented datagram. */
	if (ip->fragment_offset & rte_cpu_to_be_16(RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK))
		return PACKET_DROP_IP_FRAGMENT;
	if (source_is_bogus(ip->src_addr))
		return PACKET_DROP_IP_BAD_SOURCE;

	info->kind = PACKET_KIND_IPV4;
	info->protocol = ip->next_proto_id;
	info->l3_offset = PACKET_ETHER_HEADER_LENGTH;
	info->l3_length = (uint16_t)total_length;
	info->l4_offset = (uint16_t)(PACKET_ETHER_HEADER_LENGTH + header_length);
	info->source = ip->src_addr;
	info->destination = ip->dst_addr;
	return parse_l4(frame + info->l4_offset, total_length - header_length, info);
}

/*
 * The frame nearly every packet is: IPv4 without options, not a fragment,
 * from a plausible source, carrying TCP whose header fits.  All of it is
 * checked with one branch (the checksum aside); true with `info` filled as
 * the full parse below would fill it.  False says nothing: the full parse
 * then finds the reason.
 */
static inline bool
parse_plain_tcp(const uint8_t *frame, uint32_t length, struct packet_info *info)
{
	enum { L3 = PACKET_ETHER_HEADER_LENGTH, L4 = L3 + PACKET_IPV4_HEADER_LENGTH };
	const uint8_t *ip = frame + L3, *tcp = frame + L4;
	uint16_t ether_type, total_be, fragment;
	uint32_t source;

	if (length < L4 + sizeof(struct rte_tcp_hdr))
		return false;
	memcpy(&ether_type, frame + 12, 2);
	memcpy(&total_be, ip + 2, 2);
	memcpy(&fragment, ip + 6, 2);
	memcpy(&source, ip + 12, 4);
	uint32_t total = rte_be_to_cpu_16(total_be);
	uint32_t data_offset = (uint32_t)(tcp[12] >> 4) * 4;
	bool plain = (ether_type == rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4)) & (ip[0] == 0x45) &
		     (ip[9] == IPPROTO_TCP) &
		     (total >= PACKET_IPV4_HEADER_LENGTH + sizeof(struct rte_tcp_hdr)) &
		     (total <= length - L3) &
		     !(fragment & rte_cpu_to_be_16(RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK)) &
		     (data_offset >= sizeof(struct rte_tcp_hdr)) &
		     (data_offset <= total - PACKET_IPV4_HEADER_LENGTH) & !source_is_bogus(source);
	if (!plain || !ipv4_header_checksum_ok(ip, PACKET_IPV4_HEADER_LENGTH))
		return false;
	const struct rte_tcp_hdr *header = (const struct rte_tcp_hdr *)tcp;
	*info = (struct packet_info){
		.kind = PACKET_KIND_IPV4, .protocol = IPPROTO_TCP, .tcp_flags = header->tcp_flags,
		.l3_offset = L3, .l4_offset = L4, .l3_length = (uint16_t)total,
		.source = source, .source_port = header->src_port,
		.destination_port = header->dst_port, .tcp_sequence = header->sent_seq,
	};
	memcpy(&info->destination, ip + 16, 4);
	return true;
}

enum packet_reason
packet_parse(const uint8_t *frame, uint32_t length, struct packet_info *info)
{
	uint16_t ether_type;

	if (likely(parse_plain_tcp(frame, length, info)))
		return PACKET_OK;
	memset(info, 0, sizeof(*info));
	if (length < PACKET_ETHER_HEADER_LENGTH)
		return PACKET_DROP_SHORT_FRAME;
	memcpy(&ether_type, frame + 12, sizeof(ether_type));
	if (ether_type == rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4))
		return parse_ipv4(frame, length, info);
	if (ether_type == rte_cpu_to_be_16(RTE_ETHER_TYPE_ARP)) {
		info->kind = PACKET_KIND_ARP;
		return parse_arp(length - PACKET_ETHER_HEADER_LENGTH);
	}
	return PACKET_DROP_UNSUPPORTED_ETHERTYPE;
}
