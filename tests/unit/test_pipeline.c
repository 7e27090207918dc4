/*
 * test_pipeline.c: packets in, packets out, through exactly the function the
 * worker runs (pipeline_process_burst), on real mbufs from a real mempool.
 * Each test is a user-visible promise: a client reaches a backend through the
 * VIP, replies come back from the VIP, the inbound rules drop and count, a
 * full table refuses only new flows, ICMP errors reach the host that needs them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <rte_arp.h>
#include <rte_cycles.h>
#include <rte_mbuf.h>

#include "config.h"
#include "eal_fixture.h"
#include "packet_builder.h"
#include "pipeline.h"
#include "worker.h"
#include "worker_fixture.h"

static const char test_config[] =
	"{ \"dataplane\": { \"ports\": {"
	"    \"public\": { \"device\": \"net_null0\", \"address\": \"198.51.100.2/25\", \"gateway\": \"198.51.100.1\" },"
	"    \"private\": { \"device\": \"net_null1\", \"address\": \"198.51.100.129/25\" } },"
	"  \"flows\": { \"capacity\": 1024 }, \"sessions\": { \"capacity\": 1024 } },"
	"  \"services\": ["
	"    { \"name\": \"cp\", \"vip\": \"192.0.2.20\", \"port\": 443, \"pool\": \"cp\","
	"      \"persistence\": { \"mode\": \"source-ip\" } },"
	"    { \"name\": \"alt\", \"vip\": \"192.0.2.23\", \"port\": 443, \"target_port\": 8443, \"pool\": \"cp\" },"
	"    { \"name\": \"t10\", \"vip\": \"192.0.2.10\", \"port\": 443, \"pool\": \"cp\","
	"      \"allow_from\": [\"203.0.113.0/26\"] } ],"
	"  \"pools\": { \"cp\": { \"backends\": ["
	"    { \"name\": \"be1\", \"address\": \"198.51.100.131\", \"port\": 443 },"
	"    { \"name\": \"be2\", \"address\": \"198.51.100.132\", \"port\": 443 },"
	"    { \"name\": \"be3\", \"address\": \"198.51.100.133\", \"port\": 443 } ] } } }";

static const struct rte_ether_addr public_mac = {{ 0x02, 0xaa, 0, 0, 0, 0x01 }};
static const struct rte_ether_addr private_mac = {{ 0x02, 0xaa, 0, 0, 0, 0x02 }};
static const struct rte_ether_addr gateway_mac = {{ 0x02, 0xbb, 0, 0, 0, 0x01 }};

static struct rte_mempool *mempool;
static struct worker_fixture fixture;
static struct worker worker;

static int
setup(void **state)
{
	(void)state;
	return worker_fixture_setup(&fixture, &worker, test_config, mempool, &gateway_mac);
}

static int
teardown(void **state)
{
	(void)state;
	worker_fixture_teardown(&fixture, &worker);
	return 0;
}

static struct rte_mbuf *
mbuf_from(const struct test_frame *frame)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(mempool);
	assert_non_null(m);
	memcpy(rte_pktmbuf_append(m, (uint16_t)frame->length), frame->bytes, frame->length);
	return m;
}

/* Run one frame through the pipeline on `port`; returns the frame that came
 * out on `*out_port` (NULL when none).  The caller frees it. */
static struct rte_mbuf *
run_one(unsigned port, const struct test_frame *frame, unsigned *out_port)
{
	struct rte_mbuf *m = mbuf_from(frame);
	struct rte_mbuf *out = NULL;

	pipeline_process_burst(&worker, port, &m, 1);
	for (unsigned p = 0; p < 2; p++) {
		for (unsigned i = 0; i < worker.tx[p].count; i++) {
			assert_null(out);   /* at most one frame out per frame in */
			out = worker.tx[p].packets[i];
			*out_port = p;
		}
		worker.tx[p].count = 0;
	}
	return out;
}

static struct packet_info
parse_mbuf(struct rte_mbuf *m)
{
	struct packet_info info;
	assert_int_equal(packet_parse(rte_pktmbuf_mtod(m, uint8_t *), rte_pktmbuf_data_len(m), &info),
			 PACKET_OK);
	return info;
}

static void
assert_checksums_valid(struct rte_mbuf *m)
{
	uint8_t *ip = rte_pktmbuf_mtod(m, uint8_t *) + 14;
	uint8_t *check = ip + 20 + (ip[9] == IPPROTO_TCP ? 16 : 6);
	uint16_t stored;
	assert_int_equal(checksum_compute(ip, 20), 0);
	memcpy(&stored, check, 2);
	memset(check, 0, 2);
	assert_int_equal(stored, builder_l4_checksum(ip));
	memcpy(check, &stored, 2);
}

static int
backend_of(uint32_t address)
{
	for (unsigned b = 0; b < fixture.services.backend_count; b++)
		if (fixture.services.backends[b].address == address)
			return (int)b;
	return -1;
}

/* A client's SYN to a VIP goes out of the private port to one backend, its
 * address and port rewritten, MACs set, checksums right; the backend's
 * SYN-ACK comes back out of the public port from the VIP. */
static void
test_client_reaches_backend_and_reply_comes_from_vip(void **state)
{
	struct test_frame frame;
	unsigned port;
	(void)state;
	builder_ipv4(&frame, &(struct test_tuple){ "203.0.113.10", "192.0.2.20", 40000, 443, IPPROTO_TCP, 0x02, 0 });
	struct rte_mbuf *out = run_one(PORT_PUBLIC, &frame, &port);
	assert_non_null(out);
	assert_int_equal(port, PORT_PRIVATE);
	struct packet_info info = parse_mbuf(out);
	int backend = backend_of(info.destination);
	assert_true(backend >= 0);
	assert_int_equal(ntohs(info.destination_port), 443);
	assert_int_equal(info.source, builder_address("203.0.113.10"));   /* client IP kept */
	struct rte_ether_hdr *eth = rte_pktmbuf_mtod(out, struct rte_ether_hdr *);
	assert_memory_equal(&eth->src_addr, &private_mac, 6);
	assert_memory_equal(&eth->dst_addr, &worker.neighbors.entries[fixture.services.backends[backend].neighbor].mac, 6);
	assert_checksums_valid(out);
	rte_pktmbuf_free(out);

	char backend_address[16];
	config_format_ipv4(rte_be_to_cpu_32(fixture.services.backends[backend].address), backend_address);
	builder_ipv4(&frame, &(struct test_tuple){ backend_address, "203.0.113.10", 443, 40000, IPPROTO_TCP, 0x12, 0 });
	out = run_one(PORT_PRIVATE, &frame, &port);
	assert_non_null(out);
	assert_int_equal(port, PORT_PUBLIC);
	info = parse_mbuf(out);
	assert_int_equal(info.source, builder_address("192.0.2.20"));
	assert_int_equal(ntohs(info.source_port), 443);
	eth = rte_pktmbuf_mtod(out, struct rte_ether_hdr *);
	assert_memory_equal(&eth->dst_addr, &gateway_mac, 6);
	assert_memory_equal(&eth->src_addr, &public_mac, 6);
	assert_checksums_valid(out);
	rte_pktmbuf_free(out);
}

/* A service with target_port sends 443 on to 8443, and back as 443. */
static void
test_port_translation(void **state)
{
	struct test_frame frame;
	unsigned port;
	(void)state;
	builder_ipv4(&frame, &(struct test_tuple){ "203.0.113.11", "192.0.2.23", 40001, 443, IPPROTO_TCP, 0x02, 0 });
	struct rte_mbuf *out = run_one(PORT_PUBLIC, &frame, &port);
	assert_non_null(out);
	assert_int_equal(ntohs(parse_mbuf(out).destination_port), 8443);
	assert_checksums_valid(out);
	rte_pktmbuf_free(out);
}

/* Inbound rules: no service on the port, a source outside allow_from, and a
 * non-SYN with no flow are each dropped, counted, and answered with nothing. */
static void
test_inbound_rules_drop_and_count(void **state)
{
	struct test_frame frame;
	unsigned port;
	(void)state;
	uint64_t no_service = worker.stats.drops[PACKET_DROP_NO_SERVICE];
	uint64_t acl = worker.stats.drops[PACKET_DROP_ACL_DENIED];
	uint64_t no_flow = worker.stats.drops[PACKET_DROP_TCP_NO_FLOW];
	uint64_t not_for_us = worker.stats.drops[PACKET_DROP_NOT_FOR_US];

	builder_ipv4(&frame, &(struct test_tuple){ "203.0.113.10", "192.0.2.20", 40000, 22, IPPROTO_TCP, 0x02, 0 });
	assert_null(run_one(PORT_PUBLIC, &frame, &port));
	builder_ipv4(&frame, &(struct test_tuple){ "203.0.113.100", "192.0.2.10", 40000, 443, IPPROTO_TCP, 0x02, 0 });
	assert_null(run_one(PORT_PUBLIC, &frame, &port));
	builder_ipv4(&frame, &(struct test_tuple){ "203.0.113.12", "192.0.2.20", 40000, 443, IPPROTO_TCP, 0x10, 0 });
	assert_null(run_one(PORT_PUBLIC, &frame, &port));
	builder_ipv4(&frame, &(struct test_tuple){ "203.0.113.12", "192.0.2.99", 40000, 443, IPPROTO_TCP, 0x02, 0 });
	assert_null(run_one(PORT_PUBLIC, &frame, &port));

	assert_int_equal(worker.stats.drops[PACKET_DROP_NO_SERVICE], no_service + 1);
	assert_int_equal(worker.stats.drops[PACKET_DROP_ACL_DENIED], acl + 1);
	assert_int_equal(worker.stats.drops[PACKET_DROP_TCP_NO_FLOW], no_flow + 1);
	assert_int_equal(worker.stats.drops[PACKET_DROP_NOT_FOR_US], not_for_us + 1);

	/* inside allow_from: admitted */
	builder_ipv4(&frame, &(struct test_tuple){ "203.0.113.20", "192.0.2.10", 40000, 443, IPPROTO_TCP, 0x02, 0 });
	struct rte_mbuf *out = run_one(PORT_PUBLIC, &frame, &port);
	assert_non_null(out);
	rte_pktmbuf_free(out);
}

/* Source-IP persistence: every connection of a client lands on one backend,
 * and clients spread over all backends. */
static void
test_source_ip_persistence(void **state)
{
	struct test_frame frame;
	unsigned port, per_backend[3] = { 0 };
	char source[16];
	(void)state;
	for (unsigned client = 0; client < 90; client++) {
		int first = -1;
		snprintf(source, sizeof(source), "203.0.113.%u", (110 + client) & 0xff);
		for (unsigned connection = 0; connection < 4; connection++) {
			builder_ipv4(&frame, &(struct test_tuple){ source, "192.0.2.20",
				(uint16_t)(50000 + connection), 443, IPPROTO_TCP, 0x02, 0 });
			struct rte_mbuf *out = run_one(PORT_PUBLIC, &frame, &port);
			assert_non_null(out);
			int backend = backend_of(parse_mbuf(out).destination);
			rte_pktmbuf_free(out);
			if (first < 0)
				first = backend;
			assert_int_equal(backend, first);
		}
		per_backend[first]++;
	}
	for (unsigned b = 0; b < 3; b++)
		assert_true(per_backend[b] >= 15);   /* 30 expected each */
	assert_true(worker.stats.services[0].persist_hits >= 90 * 3);
}

/* A client reusing the port of a closed connection opens a new flow (counted). */
static void
test_port_reuse_after_close_is_a_new_flow(void **state)
{
	struct test_frame frame;
	unsigned port;
	(void)state;
	builder_ipv4(&frame, &(struct test_tuple){ "203.0.113.40", "192.0.2.23", 45000, 443, IPPROTO_TCP, 0x02, 0 });
	struct rte_mbuf *out = run_one(PORT_PUBLIC, &frame, &port);
	assert_non_null(out);
	rte_pktmbuf_free(out);
	builder_ipv4(&frame, &(struct test_tuple){ "203.0.113.40", "192.0.2.23", 45000, 443, IPPROTO_TCP, 0x04, 0 });
	out = run_one(PORT_PUBLIC, &frame, &port);   /* RST: closing */
	assert_non_null(out);
	rte_pktmbuf_free(out);
	uint64_t created = worker.stats.flows_created, expired = worker.stats.flows_expired;
	builder_ipv4(&frame, &(struct test_tuple){ "203.0.113.40", "192.0.2.23", 45000, 443, IPPROTO_TCP, 0x02, 0 });
	out = run_one(PORT_PUBLIC, &frame, &port);
	assert_non_null(out);
	rte_pktmbuf_free(out);
	assert_int_equal(worker.stats.flows_created, created + 1);
	assert_int_equal(worker.stats.flows_expired, expired + 1);
}

/* ICMP echo to a VIP is answered from the VIP, out of the port it came in. */
static void
test_ping_vip(void **state)
{
	struct test_frame frame;
	unsigned port;
	(void)state;
	builder_ipv4(&frame, &(struct test_tuple){ "203.0.113.10", "192.0.2.20", 0, 0, IPPROTO_ICMP, 0, 16 });
	struct rte_mbuf *out = run_one(PORT_PUBLIC, &frame, &port);
	assert_non_null(out);
	assert_int_equal(port, PORT_PUBLIC);
	struct packet_info info = parse_mbuf(out);
	uint8_t *icmp = rte_pktmbuf_mtod(out, uint8_t *) + info.l4_offset;
	assert_int_equal(icmp[0], 0);   /* echo reply */
	assert_int_equal(info.source, builder_address("192.0.2.20"));
	assert_int_equal(info.destination, builder_address("203.0.113.10"));
	assert_int_equal(checksum_compute(icmp, info.l3_length - 20), 0);
	assert_int_equal(checksum_compute(rte_pktmbuf_mtod(out, uint8_t *) + 14, 20), 0);
	rte_pktmbuf_free(out);
}

/* A router's "fragmentation needed" about the VIP's reply reaches the backend
 * with the quoted packet translated back to backend -> client: PMTU works. */
static void
test_frag_needed_is_relayed_to_backend(void **state)
{
	struct test_frame frame, quoted;
	unsigned port;
	(void)state;
	/* open a flow */
	builder_ipv4(&frame, &(struct test_tuple){ "203.0.113.30", "192.0.2.23", 41000, 443, IPPROTO_TCP, 0x02, 0 });
	struct rte_mbuf *out = run_one(PORT_PUBLIC, &frame, &port);
	assert_non_null(out);
	uint32_t backend = parse_mbuf(out).destination;
	rte_pktmbuf_free(out);

	/* the router quotes our translated reply VIP:443 -> client:41000 */
	builder_ipv4(&quoted, &(struct test_tuple){ "192.0.2.23", "203.0.113.30", 443, 41000, IPPROTO_TCP, 0x10, 0 });
	builder_ipv4(&frame, &(struct test_tuple){ "198.51.100.1", "192.0.2.23", 0, 0, IPPROTO_ICMP, 0, 28 });
	uint8_t *icmp = frame.bytes + 34;
	icmp[0] = 3; icmp[1] = 4; icmp[6] = 0x05; icmp[7] = 0x00;   /* frag needed, MTU 1280 */
	memcpy(icmp + 8, quoted.bytes + 14, 28);
	icmp[2] = icmp[3] = 0;
	uint16_t check = checksum_compute(icmp, 36);
	memcpy(icmp + 2, &check, 2);

	uint64_t relayed = worker.stats.icmp_errors_relayed;
	out = run_one(PORT_PUBLIC, &frame, &port);
	assert_non_null(out);
	assert_int_equal(port, PORT_PRIVATE);
	assert_int_equal(worker.stats.icmp_errors_relayed, relayed + 1);
	struct packet_info info = parse_mbuf(out);
	assert_int_equal(info.destination, backend);
	uint8_t *out_icmp = rte_pktmbuf_mtod(out, uint8_t *) + info.l4_offset;
	uint32_t inner_source;
	uint16_t inner_port;
	memcpy(&inner_source, out_icmp + 8 + 12, 4);
	memcpy(&inner_port, out_icmp + 8 + 20, 2);
	assert_int_equal(inner_source, backend);
	assert_int_equal(ntohs(inner_port), 8443);
	assert_int_equal(checksum_compute(out_icmp + 8, 20), 0);     /* quoted IP header */
	assert_int_equal(checksum_compute(out_icmp, 36), 0);         /* ICMP message */
	assert_int_equal(checksum_compute(rte_pktmbuf_mtod(out, uint8_t *) + 14, 20), 0);
	rte_pktmbuf_free(out);
}

/* ARP for a VIP on the public side is answered with the public port's MAC. */
static void
test_arp_for_vip_is_answered(void **state)
{
	struct test_frame frame = { .length = 60 };
	unsigned port;
	(void)state;
	builder_ethernet(&frame, 0x0806);
	memset(frame.bytes, 0xff, 6);
	struct rte_arp_hdr *arp = (struct rte_arp_hdr *)(frame.bytes + 14);
	arp->arp_hardware = htons(1);
	arp->arp_protocol = htons(0x0800);
	arp->arp_hlen = 6;
	arp->arp_plen = 4;
	arp->arp_opcode = htons(1);
	arp->arp_data.arp_sha = gateway_mac;
	arp->arp_data.arp_sip = builder_address("198.51.100.1");
	arp->arp_data.arp_tip = builder_address("192.0.2.20");
	struct rte_mbuf *out = run_one(PORT_PUBLIC, &frame, &port);
	assert_non_null(out);
	arp = rte_pktmbuf_mtod_offset(out, struct rte_arp_hdr *, 14);
	assert_int_equal(ntohs(arp->arp_opcode), 2);
	assert_memory_equal(&arp->arp_data.arp_sha, &public_mac, 6);
	assert_int_equal(arp->arp_data.arp_sip, builder_address("192.0.2.20"));
	rte_pktmbuf_free(out);

	/* not ours (a backend's address on the public side): no answer */
	frame.length = 60;
	arp = (struct rte_arp_hdr *)(frame.bytes + 14);
	arp->arp_data.arp_tip = builder_address("198.51.100.131");
	assert_null(run_one(PORT_PUBLIC, &frame, &port));
}

/* A full table refuses new flows, counted, and established flows go on;
 * once flows expire, new ones are admitted again. */
static void
test_full_table_keeps_established_flows(void **state)
{
	struct test_frame frame;
	unsigned port;
	char source[16];
	(void)state;
	unsigned opened = 0;
	/* fill the rest of the 1024-flow table with UDP-less TCP SYNs via service "alt" */
	for (unsigned i = 0; worker.flows.live < worker.flows.capacity; i++) {
		snprintf(source, sizeof(source), "203.0.113.%u", (1 + (i >> 8)) & 0xff);
		builder_ipv4(&frame, &(struct test_tuple){ source, "192.0.2.23",
			(uint16_t)(1024 + (i & 0xff)), 443, IPPROTO_TCP, 0x02, 0 });
		struct rte_mbuf *out = run_one(PORT_PUBLIC, &frame, &port);
		assert_non_null(out);
		rte_pktmbuf_free(out);
		opened++;
	}
	uint64_t full = worker.stats.drops[PACKET_DROP_FLOW_TABLE_FULL];
	builder_ipv4(&frame, &(struct test_tuple){ "203.0.113.250", "192.0.2.23", 9, 443, IPPROTO_TCP, 0x02, 0 });
	assert_null(run_one(PORT_PUBLIC, &frame, &port));
	assert_int_equal(worker.stats.drops[PACKET_DROP_FLOW_TABLE_FULL], full + 1);

	/* an established flow from the first test still forwards */
	builder_ipv4(&frame, &(struct test_tuple){ "203.0.113.10", "192.0.2.20", 40000, 443, IPPROTO_TCP, 0x10, 100 });
	struct rte_mbuf *out = run_one(PORT_PUBLIC, &frame, &port);
	assert_non_null(out);
	assert_int_equal(port, PORT_PRIVATE);
	rte_pktmbuf_free(out);

	/* time passes beyond the SYN timeout: the sweep frees the table */
	worker.now += 31 * worker.hz;
	while (pipeline_expire(&worker, 4096) > 0)
		;
	assert_true(worker.flows.live < worker.flows.capacity);
	assert_true(opened > 0);
	/* the established flow (900 s timeout) outlived the sweep of SYN flows */
	out = run_one(PORT_PUBLIC, &frame, &port);
	assert_non_null(out);
	rte_pktmbuf_free(out);
	builder_ipv4(&frame, &(struct test_tuple){ "203.0.113.250", "192.0.2.23", 9, 443, IPPROTO_TCP, 0x02, 0 });
	out = run_one(PORT_PUBLIC, &frame, &port);
	assert_non_null(out);
	rte_pktmbuf_free(out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_client_reaches_backend_and_reply_comes_from_vip),
		cmocka_unit_test(test_port_translation),
		cmocka_unit_test(test_inbound_rules_drop_and_count),
		cmocka_unit_test(test_source_ip_persistence),
		cmocka_unit_test(test_port_reuse_after_close_is_a_new_flow),
		cmocka_unit_test(test_ping_vip),
		cmocka_unit_test(test_frag_needed_is_relayed_to_backend),
		cmocka_unit_test(test_arp_for_vip_is_answered),
		cmocka_unit_test(test_full_table_keeps_established_flows),
	};
	if (test_eal_start("test_pipeline") < 0)
		return 1;
	mempool = rte_pktmbuf_pool_create("test_mbufs", 2047, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
	if (!mempool)
		return 1;
	int failed = cmocka_run_group_tests(tests, setup, teardown);
	rte_eal_cleanup();
	return failed;
}
