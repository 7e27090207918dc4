/*
 * test_steer.c: with several workers, both directions of a connection (and
 * the ICMP errors about it) reach the same worker, and clients spread evenly.
 * Frames are built in plain memory behind a fake mbuf: steer.h reads only the
 * headers, as the worker loop does before the pipeline.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <rte_byteorder.h>
#include <rte_ether.h>
#include <rte_icmp.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_tcp.h>

#include "steer.h"

#define PUBLIC  0
#define PRIVATE 1

struct frame {
	struct rte_mbuf mbuf;
	uint8_t data[256];
};

static uint32_t
address(uint8_t a, uint8_t b, uint8_t c, uint8_t d)
{
	return rte_cpu_to_be_32((uint32_t)a << 24 | (uint32_t)b << 16 | (uint32_t)c << 8 | d);
}

/* An Ethernet + IPv4 frame from `source` to `destination` with `protocol`;
 * returns the IPv4 header so callers can add a payload after it. */
static struct rte_ipv4_hdr *
build_ipv4(struct frame *frame, uint32_t source, uint32_t destination, uint8_t protocol,
	   uint16_t payload)
{
	memset(frame, 0, sizeof(*frame));
	frame->mbuf.buf_addr = frame->data;
	frame->mbuf.data_off = 0;
	frame->mbuf.data_len = (uint16_t)(sizeof(struct rte_ether_hdr) +
					  sizeof(struct rte_ipv4_hdr) + payload);
	struct rte_ether_hdr *eth = (struct rte_ether_hdr *)frame->data;
	eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(eth + 1);
	ip->version_ihl = 0x45;
	ip->next_proto_id = protocol;
	ip->src_addr = source;
	ip->dst_addr = destination;
	return ip;
}

/* An ICMP "fragmentation needed" about a frame from `quoted_source` to
 * `quoted_destination`, sent by `router` to `to`. */
static void
build_icmp_error(struct frame *frame, uint32_t router, uint32_t to, uint32_t quoted_source,
		 uint32_t quoted_destination)
{
	uint16_t payload = sizeof(struct rte_icmp_hdr) + sizeof(struct rte_ipv4_hdr) + 8;
	struct rte_ipv4_hdr *ip = build_ipv4(frame, router, to, IPPROTO_ICMP, payload);
	struct rte_icmp_hdr *icmp = (struct rte_icmp_hdr *)(ip + 1);
	icmp->icmp_type = 3;
	icmp->icmp_code = 4;
	struct rte_ipv4_hdr *quoted = (struct rte_ipv4_hdr *)(icmp + 1);
	quoted->version_ihl = 0x45;
	quoted->next_proto_id = IPPROTO_TCP;
	quoted->src_addr = quoted_source;
	quoted->dst_addr = quoted_destination;
}

/* Forward (client -> VIP on public), reply (backend -> client on private),
 * and ICMP errors both ways: one owner, for 2..8 workers and many clients. */
static void
test_both_directions_reach_one_worker(void **state)
{
	(void)state;
	uint32_t vip = address(192, 0, 2, 10), backend = address(198, 51, 100, 131);
	uint32_t router = address(198, 51, 100, 1), server_router = address(198, 51, 100, 129);
	struct frame forward, reply, icmp_public, icmp_private;

	for (unsigned workers = 2; workers <= 8; workers++) {
		for (unsigned i = 0; i < 4096; i++) {
			uint32_t client = address(203, 0, 113, (uint8_t)i) ^ rte_cpu_to_be_32(i << 8);
			build_ipv4(&forward, client, vip, IPPROTO_TCP, sizeof(struct rte_tcp_hdr));
			build_ipv4(&reply, backend, client, IPPROTO_TCP, sizeof(struct rte_tcp_hdr));
			/* a router on the client side about our reply to the client */
			build_icmp_error(&icmp_public, router, vip, vip, client);
			/* a router on the server side about what we sent the backend */
			build_icmp_error(&icmp_private, server_router, client, client, backend);

			unsigned owner = steer_owner(&forward.mbuf, PUBLIC, workers);
			assert_true(owner < workers);
			assert_int_equal(steer_owner(&reply.mbuf, PRIVATE, workers), owner);
			assert_int_equal(steer_owner(&icmp_public.mbuf, PUBLIC, workers), owner);
			assert_int_equal(steer_owner(&icmp_private.mbuf, PRIVATE, workers), owner);
		}
	}
}

/* Clients of one /24 (the lab's, a typical office) spread over the workers:
 * each gets within 15% of its share. */
static void
test_clients_spread_evenly(void **state)
{
	(void)state;
	struct frame forward;
	uint32_t vip = address(192, 0, 2, 10);

	for (unsigned workers = 2; workers <= 8; workers++) {
		unsigned per_worker[8] = { 0 };
		unsigned clients = 65536;
		for (unsigned i = 0; i < clients; i++) {
			uint32_t client = rte_cpu_to_be_32(0xcb007100u + i);   /* 203.0.113.0 + i */
			build_ipv4(&forward, client, vip, IPPROTO_UDP, 8);
			per_worker[steer_owner(&forward.mbuf, PUBLIC, workers)]++;
		}
		for (unsigned w = 0; w < workers; w++) {
			double share = (double)per_worker[w] / (clients / (double)workers);
			if (share < 0.85 || share > 1.15)
				fail_msg("%u workers: worker %u got %u of %u clients", workers, w,
					 per_worker[w], clients);
		}
	}
}

/* ARP and anything not IPv4 or too short to read goes to worker 0, which
 * keeps the next hops; one worker owns everything. */
static void
test_non_ipv4_and_runts_go_to_worker_zero(void **state)
{
	(void)state;
	struct frame frame;

	build_ipv4(&frame, address(203, 0, 113, 77), address(192, 0, 2, 10), IPPROTO_TCP, 20);
	struct rte_ether_hdr *eth = (struct rte_ether_hdr *)frame.data;
	eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_ARP);
	assert_int_equal(steer_owner(&frame.mbuf, PUBLIC, 4), 0);

	build_ipv4(&frame, address(203, 0, 113, 77), address(192, 0, 2, 10), IPPROTO_TCP, 20);
	frame.mbuf.data_len = sizeof(struct rte_ether_hdr) + 10;   /* truncated IP header */
	assert_int_equal(steer_owner(&frame.mbuf, PUBLIC, 4), 0);

	/* a truncated ICMP error is steered by its outer header, never read past */
	build_icmp_error(&frame, address(198, 51, 100, 1), address(192, 0, 2, 10),
			 address(192, 0, 2, 10), address(203, 0, 113, 77));
	frame.mbuf.data_len = sizeof(struct rte_ether_hdr) + sizeof(struct rte_ipv4_hdr) + 4;
	assert_true(steer_owner(&frame.mbuf, PUBLIC, 4) < 4);

	build_ipv4(&frame, address(203, 0, 113, 77), address(192, 0, 2, 10), IPPROTO_TCP, 20);
	assert_int_equal(steer_owner(&frame.mbuf, PUBLIC, 1), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_both_directions_reach_one_worker),
		cmocka_unit_test(test_clients_spread_evenly),
		cmocka_unit_test(test_non_ipv4_and_runts_go_to_worker_zero),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
