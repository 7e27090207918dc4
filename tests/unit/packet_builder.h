/*
 * packet_builder.h: build test frames field by field (Katran's habit: no
 * opaque blobs).  A frame starts valid; a fixture then breaks one thing.
 * Header-only so every unit test and the fuzzer seeds can use it.
 */
#ifndef TETHER_TEST_PACKET_BUILDER_H
#define TETHER_TEST_PACKET_BUILDER_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

#include "packet.h"

#define BUILDER_MAX 2048

struct test_frame {
	uint8_t bytes[BUILDER_MAX];
	uint32_t length;
};

struct test_tuple {
	const char *source, *destination;
	uint16_t source_port, destination_port;
	uint8_t protocol;      /* IPPROTO_TCP / UDP / ICMP */
	uint8_t tcp_flags;     /* TCP only */
	uint16_t payload;      /* bytes of payload after the L4 header */
};

static inline uint32_t
builder_address(const char *text)
{
	struct in_addr address;
	inet_pton(AF_INET, text, &address);
	return address.s_addr;
}

static inline void
builder_ethernet(struct test_frame *frame, uint16_t ether_type)
{
	static const uint8_t destination[6] = { 0x02, 0, 0, 0, 0, 0x01 };
	static const uint8_t source[6] = { 0x02, 0, 0, 0, 0, 0x02 };
	uint16_t type = htons(ether_type);

	memcpy(frame->bytes, destination, 6);
	memcpy(frame->bytes + 6, source, 6);
	memcpy(frame->bytes + 12, &type, 2);
}

/* Recompute the IPv4 header checksum (after a fixture changed the header). */
static inline void
builder_fix_ip_checksum(struct test_frame *frame)
{
	uint8_t *ip = frame->bytes + 14;
	uint32_t header_length = (uint32_t)(ip[0] & 0x0f) * 4;
	ip[10] = ip[11] = 0;
	uint16_t check = checksum_compute(ip, header_length);
	memcpy(ip + 10, &check, 2);
}

/* Full L4 checksum over pseudo-header + segment (TCP/UDP). */
static inline uint16_t
builder_l4_checksum(const uint8_t *ip)
{
	uint32_t header_length = (uint32_t)(ip[0] & 0x0f) * 4;
	uint16_t total = (uint16_t)(ip[2] << 8 | ip[3]);
	uint16_t l4_length = (uint16_t)(total - header_length);
	uint8_t pseudo[12];

	memcpy(pseudo, ip + 12, 8);
	pseudo[8] = 0;
	pseudo[9] = ip[9];
	pseudo[10] = (uint8_t)(l4_length >> 8);
	pseudo[11] = (uint8_t)l4_length;
	uint32_t sum = checksum_partial(pseudo, 12, 0);
	return (uint16_t)~checksum_fold(checksum_partial(ip + header_length, l4_length, sum));
}

/* A valid Ethernet + IPv4 + TCP/UDP/ICMP frame with correct checksums. */
static inline void
builder_ipv4(struct test_frame *frame, const struct test_tuple *tuple)
{
	uint32_t l4_header = tuple->protocol == IPPROTO_TCP ? 20 : 8;
	uint16_t total = (uint16_t)(20 + l4_header + tuple->payload);
	uint8_t *ip = frame->bytes + 14;
	uint8_t *l4 = ip + 20;
	uint32_t source = builder_address(tuple->source);
	uint32_t destination = builder_address(tuple->destination);
	uint16_t value;

	memset(frame->bytes, 0, sizeof(frame->bytes));
	builder_ethernet(frame, 0x0800);
	ip[0] = 0x45;
	value = htons(total);
	memcpy(ip + 2, &value, 2);
	ip[6] = 0x40;             /* DF */
	ip[8] = 64;
	ip[9] = tuple->protocol;
	memcpy(ip + 12, &source, 4);
	memcpy(ip + 16, &destination, 4);
	builder_fix_ip_checksum(frame);

	for (uint16_t i = 0; i < tuple->payload; i++)
		l4[l4_header + i] = (uint8_t)(i * 7 + 1);
	if (tuple->protocol == IPPROTO_ICMP) {
		l4[0] = 8;            /* echo request */
		value = checksum_compute(l4, total - 20);
		memcpy(l4 + 2, &value, 2);
	} else {
		value = htons(tuple->source_port);
		memcpy(l4, &value, 2);
		value = htons(tuple->destination_port);
		memcpy(l4 + 2, &value, 2);
		if (tuple->protocol == IPPROTO_TCP) {
			l4[12] = 5 << 4;
			l4[13] = tuple->tcp_flags;
			l4[14] = 0xff;   /* window */
		} else {
			value = htons((uint16_t)(8 + tuple->payload));
			memcpy(l4 + 4, &value, 2);
		}
		value = builder_l4_checksum(ip);
		memcpy(l4 + (tuple->protocol == IPPROTO_TCP ? 16 : 6), &value, 2);
	}
	frame->length = 14 + total;
	if (frame->length < 60)
		frame->length = 60;   /* Ethernet minimum: padding after the datagram */
}

#endif /* TETHER_TEST_PACKET_BUILDER_H */
