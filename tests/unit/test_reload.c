/*
 * test_reload.c: a reload never breaks an established flow: the new tables
 * are swapped in while a (simulated) worker runs, IDs survive, a backend
 * removed from the pool keeps its flows but gets no new ones, a drained one
 * gets no new flows, a bad file changes nothing, and a reload may bring the
 * first ssl-session service (its SYNs answered by cookie at once).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include <rte_cycles.h>
#include <rte_mbuf.h>

#include "config.h"
#include "eal_fixture.h"
#include "packet_builder.h"
#include "pipeline.h"
#include "reload.h"
#include "worker.h"

#define HEAD \
	"{ \"dataplane\": { \"ports\": {" \
	"    \"public\": { \"device\": \"net_null0\", \"address\": \"198.51.100.2/25\", \"gateway\": \"198.51.100.1\" }," \
	"    \"private\": { \"device\": \"net_null1\", \"address\": \"198.51.100.129/25\" } }," \
	"  \"flows\": { \"capacity\": 1024 }, \"sessions\": { \"capacity\": 1024 } },"

static const char config_a[] = HEAD
	"  \"services\": [ { \"name\": \"cp\", \"vip\": \"192.0.2.20\", \"port\": 443, \"pool\": \"cp\" } ],"
	"  \"pools\": { \"cp\": { \"backends\": ["
	"    { \"name\": \"be1\", \"address\": \"198.51.100.131\" },"
	"    { \"name\": \"be2\", \"address\": \"198.51.100.132\" } ] } } }";
/* be1 gone, be3 new, and a new service in front */
static const char config_b[] = HEAD
	"  \"services\": [ { \"name\": \"new\", \"vip\": \"192.0.2.30\", \"port\": 443, \"pool\": \"cp\" },"
	"                { \"name\": \"cp\", \"vip\": \"192.0.2.20\", \"port\": 443, \"pool\": \"cp\" } ],"
	"  \"pools\": { \"cp\": { \"backends\": ["
	"    { \"name\": \"be2\", \"address\": \"198.51.100.132\" },"
	"    { \"name\": \"be3\", \"address\": \"198.51.100.133\" } ] } } }";
/* the first ssl-session service, added by a reload */
static const char config_c[] = HEAD
	"  \"services\": [ { \"name\": \"cp\", \"vip\": \"192.0.2.20\", \"port\": 443, \"pool\": \"cp\" },"
	"                { \"name\": \"tls\", \"vip\": \"192.0.2.40\", \"port\": 443, \"pool\": \"cp\","
	"                  \"persistence\": { \"mode\": \"ssl-session\" } } ],"
	"  \"pools\": { \"cp\": { \"backends\": ["
	"    { \"name\": \"be2\", \"address\": \"198.51.100.132\" },"
	"    { \"name\": \"be3\", \"address\": \"198.51.100.133\" } ] } } }";
static const char config_bad[] = "{ \"dataplane\": 7 }";

static struct rte_mempool *mempool;
static struct dataplane_state state;
static struct worker worker;
static volatile bool stop;

/* The worker loop's top, alone: take new tables when offered. */
static void *
adopt_loop(void *arg)
{
	(void)arg;
	while (!stop) {
		struct services *next = __atomic_load_n(&worker.pending_services, __ATOMIC_ACQUIRE);
		if (next) {
			worker.services = next;
			__atomic_store_n(&worker.pending_services, NULL, __ATOMIC_RELEASE);
		}
	}
	return NULL;
}

static void
write_file(const char *path, const char *text)
{
	FILE *file = fopen(path, "w");
	fputs(text, file);
	fclose(file);
}

static struct rte_mbuf *
run_syn(const char *client, const char *vip, uint16_t port, unsigned *out_port)
{
	struct test_frame frame;
	builder_ipv4(&frame, &(struct test_tuple){ client, vip, port, 443, IPPROTO_TCP, 0x02, 0 });
	struct rte_mbuf *m = rte_pktmbuf_alloc(mempool);
	memcpy(rte_pktmbuf_append(m, (uint16_t)frame.length), frame.bytes, frame.length);
	pipeline_process_burst(&worker, PORT_PUBLIC, &m, 1);
	struct rte_mbuf *out = NULL;
	for (unsigned p = 0; p < 2; p++) {
		if (worker.tx[p].count) {
			out = worker.tx[p].packets[0];
			*out_port = p;
		}
		worker.tx[p].count = 0;
	}
	return out;
}

static uint32_t
destination(struct rte_mbuf *m)
{
	uint32_t address;
	memcpy(&address, rte_pktmbuf_mtod(m, uint8_t *) + 30, 4);
	return address;
}

static void
resolve_all(void)
{
	for (unsigned i = 0; i < worker.neighbors.count; i++) {
		worker.neighbors.entries[i].state = NEIGHBOR_REACHABLE;
		worker.neighbors.entries[i].confirmed = worker.now;
		worker.neighbors.entries[i].next_probe = UINT64_MAX;
	}
}

static void
test_reload_keeps_flows_and_ids(void **state_unused)
{
	struct config_errors errors;
	char error[256];
	unsigned port;
	pthread_t thread;
	(void)state_unused;

	write_file("/tmp/tether-test-reload-a.json", config_a);
	write_file("/tmp/tether-test-reload-b.json", config_b);
	write_file("/tmp/tether-test-reload-c.json", config_c);
	write_file("/tmp/tether-test-reload-bad.json", config_bad);
	assert_int_equal(config_load_file("/tmp/tether-test-reload-a.json", &state.config, &errors), 0);
	struct dataplane_port ports[2] = {
		{ .port_id = 0, .address = builder_address("198.51.100.2"), .netmask = builder_address("255.255.255.128") },
		{ .port_id = 1, .address = builder_address("198.51.100.129"), .netmask = builder_address("255.255.255.128") },
	};
	assert_int_equal(worker_init(&worker, 0, &state.config, NULL, mempool, ports, error, sizeof(error)), 0);
	state.workers = &worker;
	state.worker_count = 1;
	assert_int_equal(reload_initial(&state, error, sizeof(error)), 0);
	worker.now = rte_rdtsc();
	resolve_all();

	/* open flows from many clients; remember who went to be1 */
	uint32_t be1 = builder_address("198.51.100.131");
	char client[16];
	unsigned on_be1 = 0, first_on_be1 = 0;
	for (unsigned i = 0; i < 40; i++) {
		snprintf(client, sizeof(client), "203.0.113.%u", 10 + i);
		struct rte_mbuf *out = run_syn(client, "192.0.2.20", 40000, &port);
		assert_non_null(out);
		if (destination(out) == be1 && on_be1++ == 0)
			first_on_be1 = i;
		rte_pktmbuf_free(out);
	}
	assert_true(on_be1 > 0);
	uint16_t cp_id = state.services->services[0].id;

	assert_int_equal(pthread_create(&thread, NULL, adopt_loop, NULL), 0);

	/* a bad file: refused with its path, nothing changes */
	uint64_t generation = state.generation;
	assert_int_equal(reload_config(&state, "/tmp/tether-test-reload-bad.json", &errors, error,
				       sizeof(error)), -EINVAL);
	assert_true(errors.count >= 1);
	assert_string_equal(errors.errors[0].path, "$.dataplane");
	assert_int_equal(state.generation, generation);

	/* the good one: swapped in while the worker runs */
	assert_int_equal(reload_config(&state, "/tmp/tether-test-reload-b.json", &errors, error,
				       sizeof(error)), 0);
	assert_ptr_equal(worker.services, state.services);
	assert_int_equal(state.services->services[1].id, cp_id);   /* "cp" kept its ID */
	stop = true;
	pthread_join(thread, NULL);
	resolve_all();

	/* an established flow to be1 (now removed) keeps going to be1 */
	snprintf(client, sizeof(client), "203.0.113.%u", 10 + first_on_be1);
	struct test_frame frame;
	builder_ipv4(&frame, &(struct test_tuple){ client, "192.0.2.20", 40000, 443, IPPROTO_TCP, 0x10, 10 });
	struct rte_mbuf *m = rte_pktmbuf_alloc(mempool);
	memcpy(rte_pktmbuf_append(m, (uint16_t)frame.length), frame.bytes, frame.length);
	pipeline_process_burst(&worker, PORT_PUBLIC, &m, 1);
	assert_int_equal(worker.tx[PORT_PRIVATE].count, 1);
	assert_int_equal(destination(worker.tx[PORT_PRIVATE].packets[0]), be1);
	rte_pktmbuf_free(worker.tx[PORT_PRIVATE].packets[0]);
	worker.tx[PORT_PRIVATE].count = 0;

	/* new flows: never be1; the new service works */
	for (unsigned i = 0; i < 40; i++) {
		snprintf(client, sizeof(client), "203.0.113.%u", 100 + i);
		struct rte_mbuf *out = run_syn(client, "192.0.2.20", 41000, &port);
		assert_non_null(out);
		assert_int_not_equal(destination(out), be1);
		rte_pktmbuf_free(out);
	}
	struct rte_mbuf *out = run_syn("203.0.113.9", "192.0.2.30", 42000, &port);
	assert_non_null(out);
	rte_pktmbuf_free(out);

	/* drain be2: every new flow goes to be3 (applied without a worker
	 * thread, so hand the tables over by hand) */
	stop = false;
	assert_int_equal(pthread_create(&thread, NULL, adopt_loop, NULL), 0);
	assert_int_equal(reload_set_backend(&state, "cp", "be2", BACKEND_DRAIN, -1), 0);
	assert_int_equal(reload_set_backend(&state, "cp", "nope", BACKEND_DOWN, -1), -ENOENT);
	assert_int_equal(reload_apply(&state, error, sizeof(error)), 0);
	stop = true;
	pthread_join(thread, NULL);
	resolve_all();
	uint32_t be3 = builder_address("198.51.100.133");
	for (unsigned i = 0; i < 20; i++) {
		snprintf(client, sizeof(client), "203.0.113.%u", 150 + i);
		out = run_syn(client, "192.0.2.20", 43000, &port);
		assert_non_null(out);
		assert_int_equal(destination(out), be3);
		rte_pktmbuf_free(out);
	}

	/* the first ssl-session service, by reload: its SYN gets a cookie */
	stop = false;
	assert_int_equal(pthread_create(&thread, NULL, adopt_loop, NULL), 0);
	assert_int_equal(reload_config(&state, "/tmp/tether-test-reload-c.json", &errors, error,
				       sizeof(error)), 0);
	stop = true;
	pthread_join(thread, NULL);
	resolve_all();
	out = run_syn("203.0.113.8", "192.0.2.40", 44000, &port);
	assert_non_null(out);
	assert_int_equal(port, PORT_PUBLIC);
	assert_int_equal(rte_pktmbuf_mtod(out, uint8_t *)[47], 0x12);   /* SYN-ACK */
	rte_pktmbuf_free(out);
	worker_free(&worker);
	reload_free(&state);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reload_keeps_flows_and_ids),
	};
	if (test_eal_start("test_reload") < 0)
		return 1;
	mempool = rte_pktmbuf_pool_create("test_mbufs", 2047, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
	if (!mempool)
		return 1;
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	rte_eal_cleanup();
	return failed;
}
