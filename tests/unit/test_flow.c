/*
 * test_flow.c: the flow table finds a connection from either direction,
 * refuses new flows when full without touching existing ones, tracks TCP
 * states, and expires idle flows by state timeout.
 */
#include <errno.h>
#include <string.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <rte_cycles.h>
#include <rte_hash_crc.h>
#include <rte_tcp.h>

#include "eal_fixture.h"
#include "flow.h"

static const struct flow_timeouts timeouts = { .tcp_syn = 30, .tcp_established = 900,
					       .tcp_fin = 60, .tcp_close = 10, .udp = 300 };

static struct flow
make_flow(uint32_t client, uint16_t client_port)
{
	return (struct flow){
		.client = client, .vip = 0xc0000214, .backend_address = 0xc6336483,
		.client_port = client_port, .vip_port = 443, .backend_port = 8443,
		.protocol = IPPROTO_TCP, .state = FLOW_TCP_SYN, .last_seen = 1000,
		.persist_entry = FLOW_NO_PERSIST,
	};
}

/* An entry is one cache line: the per-packet lookup touches one line. */
static void
test_entry_is_one_cache_line(void **state)
{
	(void)state;
	assert_int_equal(sizeof(struct flow), 64);
	assert_int_equal(sizeof(struct flow_key), 16);
}

/* Both directions find the same entry, each with its direction. */
static void
test_both_directions_find_the_flow(void **state)
{
	struct flow_table table;
	struct flow_key key;
	(void)state;
	assert_int_equal(flow_table_create(&table, "t_dirs", 1024, &timeouts, 0), 0);
	struct flow flow = make_flow(0xcb00710a, 40000);
	int index = flow_insert(&table, &flow);
	assert_true(index >= 0);

	flow_key_forward(&flow, &key);
	assert_int_equal(flow_lookup(&table, &key), (uint32_t)index << 1 | FLOW_FORWARD);
	flow_key_reverse(&flow, &key);
	assert_int_equal(flow_lookup(&table, &key), (uint32_t)index << 1 | FLOW_REVERSE);

	const struct flow_key *keys[3];
	struct flow_key forward, reverse, unknown;
	flow_key_forward(&flow, &forward);
	flow_key_reverse(&flow, &reverse);
	unknown = forward;
	unknown.source_port = 1;
	keys[0] = &forward; keys[1] = &unknown; keys[2] = &reverse;
	uint32_t references[3];
	assert_int_equal(flow_lookup_bulk(&table, keys, 3, references), 2);
	assert_int_equal(references[0], (uint32_t)index << 1);
	assert_int_equal(references[1], UINT32_MAX);
	assert_int_equal(references[2], (uint32_t)index << 1 | 1);

	/* the same client port to the same backend twice is a conflict, not an overwrite */
	assert_int_equal(flow_insert(&table, &flow), -EEXIST);
	flow_remove(&table, (uint32_t)index);
	flow_key_forward(&flow, &key);
	assert_int_equal(flow_lookup(&table, &key), UINT32_MAX);
	assert_int_equal(table.live, 0);
	flow_table_destroy(&table);
}

/* A full table refuses new flows and keeps every existing one findable;
 * after one ends, a new flow fits again. */
static void
test_full_table_refuses_new_flows_only(void **state)
{
	enum { CAPACITY = 1024 };
	struct flow_table table;
	struct flow_key key;
	(void)state;
	assert_int_equal(flow_table_create(&table, "t_full", CAPACITY, &timeouts, 0), 0);
	for (uint32_t i = 0; i < CAPACITY; i++) {
		struct flow flow = make_flow(0xcb007100 + (i >> 8), (uint16_t)(1024 + (i & 0xff)));
		assert_true(flow_insert(&table, &flow) >= 0);
	}
	struct flow extra = make_flow(0xcb0071ff, 9);
	assert_int_equal(flow_insert(&table, &extra), -ENOSPC);
	for (uint32_t i = 0; i < CAPACITY; i++) {
		struct flow flow = make_flow(0xcb007100 + (i >> 8), (uint16_t)(1024 + (i & 0xff)));
		flow_key_reverse(&flow, &key);
		assert_int_not_equal(flow_lookup(&table, &key), UINT32_MAX);
	}
	flow_remove(&table, 17);
	assert_true(flow_insert(&table, &extra) >= 0);
	flow_table_destroy(&table);
}

/* Keys that do not fit their home bucket spill into the next ones and are
 * still found from either direction; removing flows in any order keeps the
 * others findable and leaves no spill count behind (a lookup that stops early
 * would lose a flow; one that never stops would cost every miss a walk). */
static void
test_spilled_keys_are_found_and_removed(void **state)
{
	enum { CAPACITY = 256, CROWD = 20 };
	struct flow_table table;
	struct flow crowd[CROWD];
	int index[CROWD];
	struct flow_key key;
	unsigned n = 0;
	(void)state;
	assert_int_equal(flow_table_create(&table, "t_spill", CAPACITY, &timeouts, 0), 0);
	/* 20 flows whose forward keys all hash to bucket 0 (8 slots) */
	for (uint16_t port = 1; n < CROWD; port++) {
		struct flow flow = make_flow(0xcb00710a, port);
		uint64_t words[2];
		flow_key_forward(&flow, &key);
		memcpy(words, &key, sizeof(words));   /* what flow.c hashes: CRC32 of 16 bytes */
		if ((rte_hash_crc_8byte(words[1], rte_hash_crc_8byte(words[0], 0)) & table.bucket_mask) == 0)
			crowd[n++] = flow;
	}
	for (unsigned i = 0; i < CROWD; i++) {
		index[i] = flow_insert(&table, &crowd[i]);
		assert_true(index[i] >= 0);
	}
	assert_true(table.buckets[0].overflow > 0);
	for (unsigned i = 0; i < CROWD; i++) {
		flow_key_forward(&crowd[i], &key);
		assert_int_equal(flow_lookup(&table, &key), (uint32_t)index[i] << 1 | FLOW_FORWARD);
		flow_key_reverse(&crowd[i], &key);
		assert_int_equal(flow_lookup(&table, &key), (uint32_t)index[i] << 1 | FLOW_REVERSE);
	}
	/* every other one (the first in bucket 0), then the rest */
	for (unsigned pass = 0; pass < 2; pass++) {
		for (unsigned i = pass; i < CROWD; i += 2) {
			flow_remove(&table, (uint32_t)index[i]);
			flow_key_forward(&crowd[i], &key);
			assert_int_equal(flow_lookup(&table, &key), UINT32_MAX);
			for (unsigned j = i + 1; j < CROWD; j++) {
				flow_key_forward(&crowd[j], &key);
				if (pass == 1 && j % 2 == 0)
					continue;   /* removed in the first pass */
				assert_int_equal(flow_lookup(&table, &key), (uint32_t)index[j] << 1 | FLOW_FORWARD);
			}
		}
	}
	assert_int_equal(table.live, 0);
	for (uint32_t b = 0; b <= table.bucket_mask; b++) {
		assert_int_equal(table.buckets[b].overflow, 0);
		assert_int_equal(table.buckets[b].used, 0);
	}
	flow_table_destroy(&table);
}

/* SYN -> SYN-ACK -> ACK is established; FIN both ways is close; RST closes. */
static void
test_tcp_states(void **state)
{
	(void)state;
	struct flow_table table = { .half_open = 1 };   /* the SYN-state flow below */
	struct flow flow = make_flow(1, 1);
	flow_track_tcp(&table, &flow, FLOW_FORWARD, RTE_TCP_SYN_FLAG, htonl(100));
	assert_int_equal(flow.state, FLOW_TCP_SYN);
	flow_track_tcp(&table, &flow, FLOW_FORWARD, RTE_TCP_ACK_FLAG, htonl(101));   /* ACK before SYN-ACK */
	assert_int_equal(flow.state, FLOW_TCP_SYN);
	flow_track_tcp(&table, &flow, FLOW_REVERSE, RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG, htonl(5000));
	flow_track_tcp(&table, &flow, FLOW_FORWARD, RTE_TCP_ACK_FLAG, htonl(101));
	assert_int_equal(flow.state, FLOW_TCP_ESTABLISHED);
	assert_int_equal(table.half_open, 0);   /* it left SYN, and was counted out */
	flow_track_tcp(&table, &flow, FLOW_FORWARD, RTE_TCP_FIN_FLAG | RTE_TCP_ACK_FLAG, htonl(200));
	assert_int_equal(flow.state, FLOW_TCP_FIN);
	flow_track_tcp(&table, &flow, FLOW_REVERSE, RTE_TCP_FIN_FLAG | RTE_TCP_ACK_FLAG, htonl(6000));
	assert_int_equal(flow.state, FLOW_TCP_CLOSE);
	/* a RST near the last sequence seen closes; a blind one far away does not */
	struct flow other = make_flow(2, 2);
	other.state = FLOW_TCP_ESTABLISHED;
	assert_true(flow_track_tcp(&table, &other, FLOW_REVERSE, RTE_TCP_ACK_FLAG, htonl(0x10000000)));
	assert_false(flow_track_tcp(&table, &other, FLOW_REVERSE, RTE_TCP_RST_FLAG, htonl(0x90000000)));
	assert_int_equal(other.state, FLOW_TCP_ESTABLISHED);
	assert_true(flow_track_tcp(&table, &other, FLOW_REVERSE, RTE_TCP_RST_FLAG, htonl(0x10000400)));
	assert_int_equal(other.state, FLOW_TCP_CLOSE);
}

static unsigned expired_callbacks;
static void count_expired(struct flow *flow, void *arg) { (void)flow; (void)arg; expired_callbacks++; }

/* Idle flows expire by their state's timeout; busy ones stay; a sweep is
 * bounded by its budget. */
static void
test_expiry_by_state_timeout(void **state)
{
	struct flow_table table;
	uint64_t hz = rte_get_tsc_hz();
	uint64_t start = 100 * hz;
	(void)state;
	assert_int_equal(flow_table_create(&table, "t_expire", 1024, &timeouts, 0), 0);
	struct flow syn = make_flow(1, 1), established = make_flow(2, 2), closing = make_flow(3, 3);
	syn.last_seen = established.last_seen = closing.last_seen = start;
	established.state = FLOW_TCP_ESTABLISHED;
	closing.state = FLOW_TCP_CLOSE;
	assert_true(flow_insert(&table, &syn) >= 0);
	assert_true(flow_insert(&table, &established) >= 0);
	assert_true(flow_insert(&table, &closing) >= 0);

	/* a budget of 2 looks at two slots only */
	expired_callbacks = 0;
	assert_int_equal(flow_expire(&table, start + 11 * hz, 2, count_expired, NULL), 0);
	assert_int_equal(flow_expire(&table, start + 11 * hz, 1024, count_expired, NULL), 1);  /* close: 10 s */
	assert_int_equal(flow_expire(&table, start + 31 * hz, 1024, count_expired, NULL), 1);  /* syn: 30 s */
	assert_int_equal(flow_expire(&table, start + 899 * hz, 1024, count_expired, NULL), 0);
	assert_int_equal(flow_expire(&table, start + 901 * hz, 1024, count_expired, NULL), 1); /* established: 900 s */
	assert_int_equal(expired_callbacks, 3);
	assert_int_equal(table.live, 0);
	flow_table_destroy(&table);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_entry_is_one_cache_line),
		cmocka_unit_test(test_both_directions_find_the_flow),
		cmocka_unit_test(test_full_table_refuses_new_flows_only),
		cmocka_unit_test(test_spilled_keys_are_found_and_removed),
		cmocka_unit_test(test_tcp_states),
		cmocka_unit_test(test_expiry_by_state_timeout),
	};
	if (test_eal_start("test_flow") < 0) {
		fprintf(stderr, "EAL did not start\n");
		return 1;
	}
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	rte_eal_cleanup();
	return failed;
}
