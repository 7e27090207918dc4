/*
 * test_packet.c: the parser accepts well-formed frames and rejects every
 * malformed case with the reason operators will see counted.  Each fixture is
 * a valid frame with one thing broken, and the reason expected.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "nat.h"
#include "packet_builder.h"

static const struct test_tuple tcp_syn = {
	"203.0.113.10", "192.0.2.20", 40000, 443, IPPROTO_TCP, 0x02, 0 };
static const struct test_tuple udp_datagram = {
	"203.0.113.10", "192.0.2.20", 40000, 53, IPPROTO_UDP, 0, 12 };
static const struct test_tuple icmp_echo = {
	"203.0.113.10", "192.0.2.20", 0, 0, IPPROTO_ICMP, 0, 8 };

typedef void (*mutation)(struct test_frame *frame);

static void truncate_to_10(struct test_frame *f) { f->length = 10; }
static void ether_vlan(struct test_frame *f) { f->bytes[12] = 0x81; f->bytes[13] = 0x00; }
static void ether_ipv6(struct test_frame *f) { f->bytes[12] = 0x86; f->bytes[13] = 0xdd; }
static void ip_cut_at_30(struct test_frame *f) { f->length = 14 + 16; }
static void ip_version_6(struct test_frame *f) { f->bytes[14] = 0x65; builder_fix_ip_checksum(f); }
static void ip_ihl_4(struct test_frame *f) { f->bytes[14] = 0x44; }
static void ip_ihl_15(struct test_frame *f) { f->bytes[14] = 0x4f; }
static void ip_total_too_big(struct test_frame *f) { f->bytes[16] = 0x05; f->bytes[17] = 0xdc; builder_fix_ip_checksum(f); }
static void ip_total_below_header(struct test_frame *f) { f->bytes[16] = 0; f->bytes[17] = 12; builder_fix_ip_checksum(f); }
static void ip_bad_checksum(struct test_frame *f) { f->bytes[24] ^= 0x5a; }
static void ip_fragment_mf(struct test_frame *f) { f->bytes[20] = 0x20; builder_fix_ip_checksum(f); }
static void ip_fragment_offset(struct test_frame *f) { f->bytes[20] = 0x00; f->bytes[21] = 0x10; builder_fix_ip_checksum(f); }
static void ip_source_loopback(struct test_frame *f) { f->bytes[26] = 127; builder_fix_ip_checksum(f); }
static void ip_source_multicast(struct test_frame *f) { f->bytes[26] = 224; builder_fix_ip_checksum(f); }
static void ip_protocol_gre(struct test_frame *f) { f->bytes[23] = 47; builder_fix_ip_checksum(f); }

/* IHL 6 with a real (NOP) option word: the header is valid, the policy drops it. */
static void
ip_with_options(struct test_frame *f)
{
	uint8_t *ip = f->bytes + 14;
	uint16_t total = (uint16_t)(ip[2] << 8 | ip[3]);
	memmove(ip + 24, ip + 20, total - 20);
	memset(ip + 20, 1, 4);
	ip[0] = 0x46;
	total += 4;
	ip[2] = (uint8_t)(total >> 8);
	ip[3] = (uint8_t)total;
	f->length = 14 + total;
	builder_fix_ip_checksum(f);
}

/* The same, with the option word corrupted: the checksum covers options too. */
static void
ip_options_bad_checksum(struct test_frame *f)
{
	ip_with_options(f);
	f->bytes[14 + 21] ^= 0x40;
}

/* Total length says 20 + 10 bytes: a TCP header cannot fit. */
static void
tcp_truncated(struct test_frame *f)
{
	f->bytes[16] = 0;
	f->bytes[17] = 30;
	builder_fix_ip_checksum(f);
}
static void tcp_offset_4(struct test_frame *f) { f->bytes[14 + 20 + 12] = 4 << 4; }
static void tcp_offset_past_end(struct test_frame *f) { f->bytes[14 + 20 + 12] = 15 << 4; }
static void udp_length_7(struct test_frame *f) { f->bytes[14 + 20 + 4] = 0; f->bytes[14 + 20 + 5] = 7; }
static void udp_length_long(struct test_frame *f) { f->bytes[14 + 20 + 4] = 0x10; f->bytes[14 + 20 + 5] = 0; }
static void
udp_truncated(struct test_frame *f)
{
	f->bytes[16] = 0;
	f->bytes[17] = 24;
	builder_fix_ip_checksum(f);
}
static void
icmp_truncated(struct test_frame *f)
{
	f->bytes[16] = 0;
	f->bytes[17] = 24;
	builder_fix_ip_checksum(f);
}

struct fixture {
	const char *description;
	const struct test_tuple *tuple;
	mutation mutate;
	enum packet_reason expected;
};

static const struct fixture fixtures[] = {
	{ "a valid TCP SYN parses", &tcp_syn, NULL, PACKET_OK },
	{ "a valid UDP datagram parses", &udp_datagram, NULL, PACKET_OK },
	{ "a valid ICMP echo parses", &icmp_echo, NULL, PACKET_OK },
	{ "a frame shorter than an Ethernet header", &tcp_syn, truncate_to_10, PACKET_DROP_SHORT_FRAME },
	{ "a VLAN-tagged frame is not ours", &tcp_syn, ether_vlan, PACKET_DROP_UNSUPPORTED_ETHERTYPE },
	{ "IPv6 is not forwarded", &tcp_syn, ether_ipv6, PACKET_DROP_UNSUPPORTED_ETHERTYPE },
	{ "an IPv4 header cut short", &tcp_syn, ip_cut_at_30, PACKET_DROP_IP_TRUNCATED },
	{ "IP version 6 inside an IPv4 ethertype", &tcp_syn, ip_version_6, PACKET_DROP_IP_VERSION },
	{ "IHL below 5", &tcp_syn, ip_ihl_4, PACKET_DROP_IP_BAD_IHL },
	{ "IHL past the frame", &tcp_syn, ip_ihl_15, PACKET_DROP_IP_BAD_IHL },
	{ "total length longer than the frame", &tcp_syn, ip_total_too_big, PACKET_DROP_IP_BAD_TOTAL_LENGTH },
	{ "total length shorter than the header", &tcp_syn, ip_total_below_header, PACKET_DROP_IP_BAD_TOTAL_LENGTH },
	{ "a wrong IPv4 header checksum", &tcp_syn, ip_bad_checksum, PACKET_DROP_IP_BAD_CHECKSUM },
	{ "IP options are counted and dropped", &tcp_syn, ip_with_options, PACKET_DROP_IP_OPTIONS },
	{ "a corrupted option word fails the header checksum", &tcp_syn, ip_options_bad_checksum,
	  PACKET_DROP_IP_BAD_CHECKSUM },
	{ "a first fragment (MF set)", &tcp_syn, ip_fragment_mf, PACKET_DROP_IP_FRAGMENT },
	{ "a later fragment (offset set)", &tcp_syn, ip_fragment_offset, PACKET_DROP_IP_FRAGMENT },
	{ "a loopback source address", &tcp_syn, ip_source_loopback, PACKET_DROP_IP_BAD_SOURCE },
	{ "a multicast source address", &tcp_syn, ip_source_multicast, PACKET_DROP_IP_BAD_SOURCE },
	{ "a protocol we do not balance (GRE)", &tcp_syn, ip_protocol_gre, PACKET_DROP_UNSUPPORTED_PROTOCOL },
	{ "a TCP header that does not fit", &tcp_syn, tcp_truncated, PACKET_DROP_TCP_TRUNCATED },
	{ "TCP data offset below 5 words", &tcp_syn, tcp_offset_4, PACKET_DROP_TCP_BAD_DATA_OFFSET },
	{ "TCP data offset past the segment", &tcp_syn, tcp_offset_past_end, PACKET_DROP_TCP_BAD_DATA_OFFSET },
	{ "a UDP header that does not fit", &udp_datagram, udp_truncated, PACKET_DROP_UDP_TRUNCATED },
	{ "UDP length below its header", &udp_datagram, udp_length_7, PACKET_DROP_UDP_BAD_LENGTH },
	{ "UDP length past the datagram", &udp_datagram, udp_length_long, PACKET_DROP_UDP_BAD_LENGTH },
	{ "an ICMP header that does not fit", &icmp_echo, icmp_truncated, PACKET_DROP_ICMP_TRUNCATED },
};

/* Every fixture yields exactly its expected reason. */
static void
test_fixtures_yield_their_reason(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) {
		struct test_frame frame;
		struct packet_info info;
		builder_ipv4(&frame, fixtures[i].tuple);
		if (fixtures[i].mutate)
			fixtures[i].mutate(&frame);
		enum packet_reason got = packet_parse(frame.bytes, frame.length, &info);
		if (got != fixtures[i].expected)
			fail_msg("%s: got %s, expected %s", fixtures[i].description,
				 packet_reason_name(got), packet_reason_name(fixtures[i].expected));
	}
}

/* The parser reports the tuple the flow table is keyed on. */
static void
test_valid_tcp_fields(void **state)
{
	struct test_frame frame;
	struct packet_info info;
	(void)state;
	builder_ipv4(&frame, &tcp_syn);
	assert_int_equal(packet_parse(frame.bytes, frame.length, &info), PACKET_OK);
	assert_int_equal(info.kind, PACKET_KIND_IPV4);
	assert_int_equal(info.protocol, IPPROTO_TCP);
	assert_int_equal(info.source, builder_address("203.0.113.10"));
	assert_int_equal(info.destination, builder_address("192.0.2.20"));
	assert_int_equal(ntohs(info.source_port), 40000);
	assert_int_equal(ntohs(info.destination_port), 443);
	assert_int_equal(info.tcp_flags, 0x02);
	assert_int_equal(info.l4_offset, 34);
}

/* Every truncation of a valid frame is rejected without reading past it
 * (run under valgrind/ASan this also proves no overread). */
static void
test_every_truncation_is_safe(void **state)
{
	const struct test_tuple *tuples[] = { &tcp_syn, &udp_datagram, &icmp_echo };
	(void)state;
	for (size_t t = 0; t < 3; t++) {
		struct test_frame frame;
		struct packet_info info;
		builder_ipv4(&frame, tuples[t]);
		uint32_t datagram_end = 14 + (uint32_t)(frame.bytes[16] << 8 | frame.bytes[17]);
		for (uint32_t length = 0; length < datagram_end; length++) {
			uint8_t copy[BUILDER_MAX];
			memcpy(copy, frame.bytes, length);
			assert_int_not_equal(packet_parse(copy, length, &info), PACKET_OK);
		}
	}
}

/* The checksum sum (eight bytes at a time) equals RFC 1071's 16-bit
 * one's-complement sum for every length, start alignment and carried-in sum,
 * so generated segments carry the checksums hosts expect. */
static void
test_checksum_partial_matches_rfc1071(void **state)
{
	uint8_t bytes[160];
	(void)state;
	for (size_t i = 0; i < sizeof(bytes); i++)
		bytes[i] = (uint8_t)(0xff - i * 37);   /* carries in every column */
	for (uint32_t start = 0; start < 8; start++) {
		for (uint32_t length = 0; length + start <= sizeof(bytes); length++) {
			uint32_t carried = start * 0x1234567u;
			uint64_t reference = carried;
			for (uint32_t i = 0; i + 1 < length; i += 2) {
				uint16_t word;
				memcpy(&word, bytes + start + i, 2);
				reference += word;
			}
			if (length & 1) {
				uint16_t word = 0;
				memcpy(&word, bytes + start + length - 1, 1);
				reference += word;
			}
			while (reference >> 16)
				reference = (reference & 0xffff) + (reference >> 16);
			assert_int_equal(checksum_fold(checksum_partial(bytes + start, length, carried)),
					 (uint16_t)reference);
		}
	}
}

/* NAT's incremental updates give the same checksums as computing afresh. */
static void
test_nat_checksums_match_full_recompute(void **state)
{
	const struct test_tuple *tuples[] = { &tcp_syn, &udp_datagram };
	(void)state;
	for (size_t t = 0; t < 2; t++) {
		struct test_frame frame;
		struct packet_info info;
		builder_ipv4(&frame, tuples[t]);
		assert_int_equal(packet_parse(frame.bytes, frame.length, &info), PACKET_OK);
		nat_to_backend(frame.bytes, &info, builder_address("198.51.100.131"), htons(8443));
		uint8_t *ip = frame.bytes + 14;
		assert_int_equal(checksum_compute(ip, 20), 0);
		uint16_t stored;
		memcpy(&stored, ip + 20 + (tuples[t]->protocol == IPPROTO_TCP ? 16 : 6), 2);
		uint8_t *check = ip + 20 + (tuples[t]->protocol == IPPROTO_TCP ? 16 : 6);
		memset(check, 0, 2);
		assert_int_equal(stored, builder_l4_checksum(ip));
		memcpy(check, &stored, 2);

		assert_int_equal(packet_parse(frame.bytes, frame.length, &info), PACKET_OK);
		assert_int_equal(ntohs(info.destination_port), 8443);
		nat_to_client(frame.bytes, &info, builder_address("192.0.2.20"), htons(443));
		assert_int_equal(checksum_compute(ip, 20), 0);
		memcpy(&stored, check, 2);
		memset(check, 0, 2);
		assert_int_equal(stored, builder_l4_checksum(ip));
	}
}

/* A UDP datagram without a checksum keeps none after NAT (RFC 768). */
static void
test_nat_keeps_absent_udp_checksum(void **state)
{
	struct test_frame frame;
	struct packet_info info;
	(void)state;
	builder_ipv4(&frame, &udp_datagram);
	memset(frame.bytes + 14 + 20 + 6, 0, 2);
	assert_int_equal(packet_parse(frame.bytes, frame.length, &info), PACKET_OK);
	nat_to_backend(frame.bytes, &info, builder_address("198.51.100.131"), htons(53));
	assert_int_equal(frame.bytes[14 + 20 + 6] | frame.bytes[14 + 20 + 7], 0);
}

/* Every reason has a distinct counter name. */
static void
test_reason_names_are_distinct(void **state)
{
	(void)state;
	for (int a = 0; a < PACKET_REASON_COUNT; a++) {
		assert_non_null(packet_reason_name(a));
		for (int b = a + 1; b < PACKET_REASON_COUNT; b++)
			assert_string_not_equal(packet_reason_name(a), packet_reason_name(b));
	}
	assert_string_equal(packet_reason_name(PACKET_REASON_COUNT), "unknown");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixtures_yield_their_reason),
		cmocka_unit_test(test_valid_tcp_fields),
		cmocka_unit_test(test_every_truncation_is_safe),
		cmocka_unit_test(test_checksum_partial_matches_rfc1071),
		cmocka_unit_test(test_nat_checksums_match_full_recompute),
		cmocka_unit_test(test_nat_keeps_absent_udp_checksum),
		cmocka_unit_test(test_reason_names_are_distinct),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
