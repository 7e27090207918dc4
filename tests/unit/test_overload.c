/*
 * test_overload.c: the degradation ladder (dataplane/overload.h) through the
 * real pipeline.  A plain TCP service on "syn_cookies": "always" admits a
 * client only by a valid cookie and splices it to the backend its SYN would
 * have reached; "auto" services switch to cookies when half-open flows or
 * buffers pile up; a nearly full table refuses every new connection while
 * established flows go on; each step is left after a calm second.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include <rte_cycles.h>
#include <rte_mbuf.h>
#include <rte_tcp.h>

#include "config.h"
#include "eal_fixture.h"
#include "overload.h"
#include "pipeline.h"
#include "synproxy.h"
#include "tcp_fixture.h"
#include "worker.h"
#include "worker_fixture.h"

#define AUTO_VIP   "192.0.2.10"
#define ALWAYS_VIP "192.0.2.11"
#define NEVER_VIP  "192.0.2.12"
#define HALF_OPEN  8
#define CAPACITY   1024

static const char test_config[] =
	"{ \"dataplane\": { \"ports\": {"
	"    \"public\": { \"device\": \"net_null0\", \"address\": \"198.51.100.2/25\", \"gateway\": \"198.51.100.1\" },"
	"    \"private\": { \"device\": \"net_null1\", \"address\": \"198.51.100.129/25\" } },"
	"  \"flows\": { \"capacity\": 1024 }, \"sessions\": { \"capacity\": 1024 },"
	"  \"binding\": { \"capacity\": 16 },"
	"  \"overload\": { \"half_open\": 8, \"syn_cookie_percent\": 50, \"refuse_percent\": 90 } },"
	"  \"services\": ["
	"    { \"name\": \"auto\", \"vip\": \"192.0.2.10\", \"port\": 80, \"pool\": \"web\","
	"      \"persistence\": { \"mode\": \"source-ip\" } },"
	"    { \"name\": \"always\", \"vip\": \"192.0.2.11\", \"port\": 80, \"pool\": \"web\","
	"      \"persistence\": { \"mode\": \"source-ip\" }, \"syn_cookies\": \"always\" },"
	"    { \"name\": \"never\", \"vip\": \"192.0.2.12\", \"port\": 80, \"pool\": \"web\","
	"      \"syn_cookies\": \"never\" } ],"
	"  \"pools\": { \"web\": { \"backends\": ["
	"    { \"name\": \"be1\", \"address\": \"198.51.100.131\", \"port\": 80 },"
	"    { \"name\": \"be2\", \"address\": \"198.51.100.132\", \"port\": 80 },"
	"    { \"name\": \"be3\", \"address\": \"198.51.100.133\", \"port\": 80 } ] } } }";

static struct rte_mempool *mempool;
static struct worker_fixture fixture;
static struct worker worker;

static int
setup(void **state)
{
	(void)state;
	return worker_fixture_setup(&fixture, &worker, test_config, mempool, NULL);
}

static int
teardown(void **state)
{
	(void)state;
	worker_fixture_teardown(&fixture, &worker);
	return 0;
}

static struct rte_mbuf *
segment(const char *source, const char *destination, uint16_t source_port, uint32_t seq,
	uint32_t ack, uint8_t flags, const uint8_t *payload, unsigned payload_length)
{
	bool syn = flags & RTE_TCP_SYN_FLAG;
	return tcp_fixture_segment(mempool, source, destination, source_port, 80, seq, ack, flags,
				   syn ? syn_options : NULL, syn ? sizeof(syn_options) : 0,
				   payload, payload_length);
}

static void
run(unsigned port, struct rte_mbuf *m, struct output *out)
{
	tcp_fixture_run_burst(&worker, port, &m, 1, out);
}

/* The one frame a step produced, on `port`. */
static struct rte_mbuf *
only_frame(struct output *out, unsigned port)
{
	assert_int_equal(out->count, 1);
	assert_int_equal(out->ports[0], port);
	return out->frames[0];
}

static char client_text[16];

/* The n-th client address of 203.0.113.0/24 (from .100). */
static const char *
client(unsigned n)
{
	snprintf(client_text, sizeof(client_text), "203.0.113.%u", 100 + n % 150);
	return client_text;
}

static uint32_t
bindings_active(void)
{
	return worker.synproxy->capacity - worker.synproxy->free_top;
}

/* Let the clock run `seconds` with the timers (expiry, overload) on.  The
 * ladder looks once before the expiry, as its millisecond timer would have
 * seen the state until then, and once after. */
static void
advance(double seconds)
{
	worker.now += (uint64_t)(seconds * (double)worker.hz);
	overload_update(&worker);
	while (pipeline_expire(&worker, 4096) > 0)
		;
	overload_update(&worker);
}

/* Forget every flow: each test starts from an empty, calm worker. */
static int
reset(void **state)
{
	(void)state;
	advance(1000);   /* past every timeout; the ladder steps down a level per calm second */
	advance(1.1);
	advance(1.1);
	return worker.flows.live == 0 && worker.overload.level == OVERLOAD_NONE ? 0 : -1;
}

/* "always": the SYN gets a cookie and no flow; the ACK proves the client and
 * only then is the backend connected, with the client's ISN; the splice maps
 * the backend's sequence space onto the cookie's. */
static void
test_always_admits_by_cookie_and_splices(void **state)
{
	struct output out;
	const uint32_t isn = 0x10000000, backend_isn = 0x50000000;
	static const uint8_t request[] = "GET / HTTP/1.0\r\n\r\n";
	static const uint8_t answer[] = "HTTP/1.0 200 OK\r\n\r\n";
	uint32_t live = worker.flows.live;
	uint64_t admitted = worker.synproxy->stats.cookie_connections;
	(void)state;

	run(PORT_PUBLIC, segment(client(1), ALWAYS_VIP, 40001, isn, 0, RTE_TCP_SYN_FLAG, NULL, 0), &out);
	struct rte_mbuf *synack = only_frame(&out, PORT_PUBLIC);
	assert_int_equal(tcp_of(synack)[13], RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG);
	assert_int_equal(ack_of(synack), isn + 1);
	uint32_t cookie = seq_of(synack);
	release(&out);
	assert_int_equal(worker.flows.live, live);

	run(PORT_PUBLIC, segment(client(1), ALWAYS_VIP, 40001, isn + 1, cookie + 1, RTE_TCP_ACK_FLAG,
				 NULL, 0), &out);
	struct rte_mbuf *syn = only_frame(&out, PORT_PRIVATE);
	assert_int_equal(tcp_of(syn)[13], RTE_TCP_SYN_FLAG);
	assert_int_equal(seq_of(syn), isn);
	assert_checksums(syn);
	char backend[16];
	config_format_ipv4(ntohl(destination_of(syn)), backend);
	release(&out);
	assert_int_equal(worker.flows.live, live + 1);
	assert_int_equal(worker.synproxy->stats.cookie_connections, admitted + 1);

	/* the backend accepts: our ACK completes its handshake, the binding is done */
	run(PORT_PRIVATE, tcp_fixture_segment(mempool, backend, client(1), 80, 40001, backend_isn,
					      isn + 1, RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG,
					      syn_options, sizeof(syn_options), NULL, 0), &out);
	struct rte_mbuf *ack = only_frame(&out, PORT_PRIVATE);
	assert_int_equal(tcp_of(ack)[13] & RTE_TCP_ACK_FLAG, RTE_TCP_ACK_FLAG);
	assert_int_equal(seq_of(ack), isn + 1);
	assert_int_equal(ack_of(ack), backend_isn + 1);
	assert_int_equal(payload_of(ack), 0);
	release(&out);
	assert_int_equal(bindings_active(), 1);   /* until the backend acknowledges */

	run(PORT_PUBLIC, segment(client(1), ALWAYS_VIP, 40001, isn + 1, cookie + 1,
				 RTE_TCP_ACK_FLAG | RTE_TCP_PSH_FLAG, request, sizeof(request) - 1), &out);
	struct rte_mbuf *forwarded = only_frame(&out, PORT_PRIVATE);
	assert_int_equal(ack_of(forwarded), backend_isn + 1);
	assert_int_equal(payload_of(forwarded), sizeof(request) - 1);
	assert_checksums(forwarded);
	release(&out);

	run(PORT_PRIVATE, tcp_fixture_segment(mempool, backend, client(1), 80, 40001, backend_isn + 1,
					      isn + 1 + sizeof(request) - 1,
					      RTE_TCP_ACK_FLAG | RTE_TCP_PSH_FLAG, NULL, 0,
					      answer, sizeof(answer) - 1), &out);
	struct rte_mbuf *back = only_frame(&out, PORT_PUBLIC);
	assert_int_equal(seq_of(back), cookie + 1);
	assert_int_equal(rte_pktmbuf_mtod(back, uint8_t *)[29], 11);   /* from the VIP, 192.0.2.11 */
	assert_checksums(back);
	release(&out);
	assert_int_equal(bindings_active(), 0);   /* the backend's ACK: the binding's work is done */
}

/* A client keeps its backend whichever way it comes in: the cookie path picks
 * what the plain SYN path picks (source-ip, same pool, same Maglev). */
static void
test_cookie_and_plain_paths_agree_on_the_backend(void **state)
{
	struct output out;
	(void)state;

	/* fewer clients than the half-open limit: their plain flows stay
	 * half-open, and the ladder must stay out of this */
	for (unsigned n = 10; n < 10 + HALF_OPEN - 1; n++) {
		const uint32_t isn = 0x20000000 + n;
		run(PORT_PUBLIC, segment(client(n), AUTO_VIP, 41000, isn, 0, RTE_TCP_SYN_FLAG, NULL, 0), &out);
		uint32_t plain = destination_of(only_frame(&out, PORT_PRIVATE));
		release(&out);

		/* another client port: one port through two VIPs to one backend is
		 * one reverse key, which the second connection could not have */
		run(PORT_PUBLIC, segment(client(n), ALWAYS_VIP, 41001, isn, 0, RTE_TCP_SYN_FLAG, NULL, 0), &out);
		uint32_t cookie = seq_of(only_frame(&out, PORT_PUBLIC));
		release(&out);
		run(PORT_PUBLIC, segment(client(n), ALWAYS_VIP, 41001, isn + 1, cookie + 1, RTE_TCP_ACK_FLAG,
					 NULL, 0), &out);
		assert_int_equal(destination_of(only_frame(&out, PORT_PRIVATE)), plain);
		release(&out);
	}
}

/* A wrong cookie at a plain service is dropped as silently as any segment
 * without a flow there (no RST: closed doors do not answer scans). */
static void
test_wrong_cookie_at_a_plain_service_is_dropped_silently(void **state)
{
	struct output out;
	uint64_t invalid = worker.synproxy->stats.cookies_invalid;
	uint64_t dropped = worker.stats.drops[PACKET_DROP_TCP_NO_FLOW];
	uint32_t live = worker.flows.live;
	(void)state;

	run(PORT_PUBLIC, segment(client(2), AUTO_VIP, 40002, 1234, 0xdeadbeef, RTE_TCP_ACK_FLAG, NULL, 0),
	    &out);
	assert_int_equal(out.count, 0);
	assert_int_equal(worker.synproxy->stats.cookies_invalid, invalid + 1);
	assert_int_equal(worker.stats.drops[PACKET_DROP_TCP_NO_FLOW], dropped + 1);
	assert_int_equal(worker.flows.live, live);
}

/* Half-open flows at the limit turn "auto" services to cookies ("never" ones
 * keep creating flows); once they are gone, a calm second turns it back. */
static void
test_half_open_flows_turn_auto_to_cookies_and_back(void **state)
{
	struct output out;
	uint64_t entered = worker.overload.stats.entered_syn_cookies;
	uint64_t cookied = worker.overload.stats.syns_cookied;
	(void)state;

	for (unsigned n = 0; n < HALF_OPEN; n++) {
		run(PORT_PUBLIC, segment(client(n), AUTO_VIP, 42000, 0x30000000 + n, 0, RTE_TCP_SYN_FLAG,
					 NULL, 0), &out);
		only_frame(&out, PORT_PRIVATE);   /* forwarded: a flow per SYN */
		release(&out);
	}
	assert_int_equal(worker.flows.half_open, HALF_OPEN);
	overload_update(&worker);
	assert_int_equal(worker.overload.level, OVERLOAD_SYN_COOKIES);
	assert_int_equal(worker.overload.stats.entered_syn_cookies, entered + 1);

	uint32_t live = worker.flows.live;
	run(PORT_PUBLIC, segment(client(50), AUTO_VIP, 42000, 0x31000000, 0, RTE_TCP_SYN_FLAG, NULL, 0),
	    &out);
	assert_int_equal(tcp_of(only_frame(&out, PORT_PUBLIC))[13], RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG);
	release(&out);
	assert_int_equal(worker.flows.live, live);
	assert_int_equal(worker.overload.stats.syns_cookied, cookied + 1);

	run(PORT_PUBLIC, segment(client(51), NEVER_VIP, 42000, 0x32000000, 0, RTE_TCP_SYN_FLAG, NULL, 0),
	    &out);
	only_frame(&out, PORT_PRIVATE);
	release(&out);
	assert_int_equal(worker.flows.live, live + 1);

	/* the half-open flows time out (30 s); one calm second later, back to normal */
	advance(31);
	assert_int_equal(worker.flows.half_open, 0);
	assert_int_equal(worker.overload.level, OVERLOAD_SYN_COOKIES);
	advance(1.1);
	assert_int_equal(worker.overload.level, OVERLOAD_NONE);
}

/* A handshake completes the way a client's does: SYN, the backend's SYN-ACK,
 * the client's ACK.  Returns the backend's address. */
static uint32_t
establish(unsigned n, uint16_t port)
{
	struct output out;
	const uint32_t isn = 0x40000000 + n, backend_isn = 0x60000000 + n;
	char backend[16];

	run(PORT_PUBLIC, segment(client(n), NEVER_VIP, port, isn, 0, RTE_TCP_SYN_FLAG, NULL, 0), &out);
	uint32_t address = destination_of(only_frame(&out, PORT_PRIVATE));
	config_format_ipv4(ntohl(address), backend);
	release(&out);
	run(PORT_PRIVATE, tcp_fixture_segment(mempool, backend, client(n), 80, port, backend_isn, isn + 1,
					      RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG, NULL, 0, NULL, 0), &out);
	only_frame(&out, PORT_PUBLIC);
	release(&out);
	run(PORT_PUBLIC, segment(client(n), NEVER_VIP, port, isn + 1, backend_isn + 1, RTE_TCP_ACK_FLAG,
				 NULL, 0), &out);
	only_frame(&out, PORT_PRIVATE);
	release(&out);
	return address;
}

/* A table 90 % full refuses every new connection, cookie or not (SYNs still
 * get stateless cookies); an established flow goes on; the ladder comes down
 * a step per calm second once the table empties. */
static void
test_full_table_refuses_new_connections_not_established_ones(void **state)
{
	struct output out;
	uint64_t refused = worker.overload.stats.refused;
	(void)state;

	establish(200, 43000);
	for (unsigned n = 0; worker.flows.live < CAPACITY * 90 / 100; n++) {
		run(PORT_PUBLIC, segment(client(n), NEVER_VIP, (uint16_t)(44000 + n / 150), 0x70000000 + n, 0,
					 RTE_TCP_SYN_FLAG, NULL, 0), &out);
		release(&out);
	}
	overload_update(&worker);
	assert_int_equal(worker.overload.level, OVERLOAD_REFUSE_NEW);

	uint32_t live = worker.flows.live;
	uint64_t dropped = worker.stats.drops[PACKET_DROP_OVERLOAD];
	run(PORT_PUBLIC, segment(client(201), NEVER_VIP, 43001, 0x71000000, 0, RTE_TCP_SYN_FLAG, NULL, 0),
	    &out);
	assert_int_equal(out.count, 0);
	run(PORT_PUBLIC, segment(client(202), AUTO_VIP, 43002, 0x72000000, 0, RTE_TCP_SYN_FLAG, NULL, 0),
	    &out);
	uint32_t cookie = seq_of(only_frame(&out, PORT_PUBLIC));
	release(&out);
	run(PORT_PUBLIC, segment(client(202), AUTO_VIP, 43002, 0x72000001, cookie + 1, RTE_TCP_ACK_FLAG,
				 NULL, 0), &out);
	assert_int_equal(out.count, 0);   /* proven, but refused: it retransmits later */
	assert_int_equal(worker.flows.live, live);
	assert_int_equal(worker.stats.drops[PACKET_DROP_OVERLOAD], dropped + 2);
	assert_int_equal(worker.overload.stats.refused, refused + 2);

	/* the established connection's data still flows */
	run(PORT_PUBLIC, segment(client(200), NEVER_VIP, 43000, 0x40000000 + 201, 0x60000000 + 201,
				 RTE_TCP_ACK_FLAG | RTE_TCP_PSH_FLAG, (const uint8_t *)"data", 4), &out);
	assert_int_equal(payload_of(only_frame(&out, PORT_PRIVATE)), 4);
	release(&out);

	/* the half-open flows expire; the established one stays */
	advance(31);
	assert_int_equal(worker.flows.live, 1);
	assert_int_equal(worker.overload.level, OVERLOAD_REFUSE_NEW);
	advance(1.1);
	assert_int_equal(worker.overload.level, OVERLOAD_SYN_COOKIES);
	advance(1.1);
	assert_int_equal(worker.overload.level, OVERLOAD_NONE);
}

/* The TSval and TSecr of a frame's timestamp option; false when it has none. */
static bool
timestamps_of(struct rte_mbuf *m, uint32_t *tsval, uint32_t *tsecr)
{
	const uint8_t *tcp = tcp_of(m);
	unsigned length = (unsigned)(tcp[12] >> 4) * 4;

	for (unsigned i = 20; i < length && tcp[i] != 0;) {
		if (tcp[i] == 1) {
			i++;
			continue;
		}
		if (tcp[i] == 8) {
			uint32_t value;
			memcpy(&value, tcp + i + 2, 4);
			*tsval = ntohl(value);
			memcpy(&value, tcp + i + 6, 4);
			*tsecr = ntohl(value);
			return true;
		}
		i += tcp[i + 1] ? tcp[i + 1] : 1;
	}
	return false;
}

/* syn_options with the timestamps set */
static void
synack_options(uint8_t options[20], uint32_t tsval, uint32_t tsecr)
{
	uint32_t value;

	memcpy(options, syn_options, 20);
	value = htonl(tsval);
	memcpy(options + 8, &value, 4);
	value = htonl(tsecr);
	memcpy(options + 12, &value, 4);
}

/* A cookie connection whose client has not spoken yet: if the ACK that
 * completes the backend's handshake is lost, the backend's repeated SYN-ACK is
 * answered by the dataplane with an ACK echoing it, not passed to the client
 * (whose answer would echo the cookie's TSval, which Linux refuses). */
static void
test_repeated_synack_before_the_client_speaks_is_answered(void **state)
{
	struct output out;
	const uint32_t isn = 0x11000000, backend_isn = 0x55000000;
	uint8_t options[20];
	uint8_t ack_options[12] = { 1, 1, 8, 10, 0, 0, 0x04, 0x1a, 0, 0, 0, 0 };
	uint32_t tsval, tsecr;
	char backend[16];
	(void)state;

	run(PORT_PUBLIC, segment(client(3), ALWAYS_VIP, 45001, isn, 0, RTE_TCP_SYN_FLAG, NULL, 0), &out);
	uint32_t cookie = seq_of(only_frame(&out, PORT_PUBLIC));
	release(&out);
	worker.now += 50 * worker.tsc_per_ms;   /* the client's round trip */
	run(PORT_PUBLIC, tcp_fixture_segment(mempool, client(3), ALWAYS_VIP, 45001, 80, isn + 1,
					     cookie + 1, RTE_TCP_ACK_FLAG, ack_options,
					     sizeof(ack_options), NULL, 0), &out);
	config_format_ipv4(ntohl(destination_of(only_frame(&out, PORT_PRIVATE))), backend);
	release(&out);

	worker.now += worker.tsc_per_ms;
	synack_options(options, 5000, 1050);
	run(PORT_PRIVATE, tcp_fixture_segment(mempool, backend, client(3), 80, 45001, backend_isn, isn + 1,
					      RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG, options, 20, NULL, 0), &out);
	assert_true(timestamps_of(only_frame(&out, PORT_PRIVATE), &tsval, &tsecr));
	assert_int_equal(tsecr, 5000);
	release(&out);

	/* that ACK was lost: the backend repeats its SYN-ACK a second later */
	worker.now += 1000 * worker.tsc_per_ms;
	synack_options(options, 6000, 1050);
	run(PORT_PRIVATE, tcp_fixture_segment(mempool, backend, client(3), 80, 45001, backend_isn, isn + 1,
					      RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG, options, 20, NULL, 0), &out);
	struct rte_mbuf *again = only_frame(&out, PORT_PRIVATE);
	assert_int_equal(ack_of(again), backend_isn + 1);
	assert_true(timestamps_of(again, &tsval, &tsecr));
	assert_int_equal(tsecr, 6000);
	release(&out);
}

static uint32_t
flows_in_syn_state(void)
{
	uint32_t count = 0;

	for (uint32_t i = 0; i < worker.flows.capacity; i++)
		count += worker.flows.flows[i].state == FLOW_TCP_SYN;
	return count;
}

/* The half-open count the ladder reads never drifts from the table: 20,000
 * random bursts of SYNs, ACKs, RSTs, FINs and SYN-ACKs from clients and
 * backends, on a "never" and an "auto" service, with time jumps that expire
 * flows, each followed by a count of the table's FLOW_TCP_SYN entries. */
static void
test_half_open_count_never_drifts(void **state)
{
	static const char *const backends[] = { "198.51.100.131", "198.51.100.132", "198.51.100.133" };
	static const uint8_t flag_choices[] = {
		RTE_TCP_SYN_FLAG, RTE_TCP_SYN_FLAG, RTE_TCP_ACK_FLAG, RTE_TCP_RST_FLAG,
		RTE_TCP_FIN_FLAG | RTE_TCP_ACK_FLAG, RTE_TCP_RST_FLAG | RTE_TCP_ACK_FLAG,
		RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG };
	static const char *const vips[] = { NEVER_VIP, AUTO_VIP };
	struct output out;
	uint64_t random = 7;
	(void)state;

	for (unsigned step = 0; step < 20000; step++) {
		struct rte_mbuf *burst[4];
		unsigned count = 0, wanted;
		random = random * 6364136223846793005ull + 1442695040888963407ull;
		wanted = 1 + (unsigned)(random >> 60) % 4;
		for (unsigned b = 0; b < wanted; b++) {
			random = random * 6364136223846793005ull + 1442695040888963407ull;
			unsigned pick = (unsigned)(random >> 33);
			uint16_t port = (uint16_t)(46000 + pick % 3);
			uint8_t flags = flag_choices[(pick >> 2) % sizeof(flag_choices)];
			uint32_t seq = 1000 + (pick >> 5) % 3;
			char source[16];
			snprintf(source, sizeof(source), "%s", client((pick >> 7) % 6));
			if ((pick >> 10) % 3 == 0) {   /* a backend's segment, in a burst of its own */
				struct rte_mbuf *m = tcp_fixture_segment(mempool, backends[(pick >> 12) % 3],
									 source, 80, port, seq, 1001,
									 flags | RTE_TCP_ACK_FLAG, NULL, 0,
									 NULL, 0);
				tcp_fixture_run_burst(&worker, PORT_PRIVATE, &m, 1, &out);
				release(&out);
				continue;
			}
			burst[count++] = segment(source, vips[(pick >> 14) % 2], port, seq, 1001, flags,
						 NULL, 0);
		}
		if (count) {
			tcp_fixture_run_burst(&worker, PORT_PUBLIC, burst, (uint16_t)count, &out);
			release(&out);
		}
		if ((random >> 20) % 50 == 0) {
			worker.now += ((random >> 24) % 40) * worker.hz;
			while (pipeline_expire(&worker, 4096) > 0)
				;
		}
		assert_int_equal(worker.flows.half_open, flows_in_syn_state());
	}
}

/* Buffers running short count like a filling table: half the pool in use
 * turns cookies on. */
static void
test_mbuf_pressure_turns_cookies_on(void **state)
{
	static struct rte_mbuf *held[1200];
	unsigned count = mempool->size / 2 + 16;
	(void)state;

	assert_true(count <= RTE_DIM(held));
	assert_int_equal(rte_pktmbuf_alloc_bulk(mempool, held, count), 0);
	overload_update(&worker);
	assert_int_equal(worker.overload.level, OVERLOAD_SYN_COOKIES);
	rte_pktmbuf_free_bulk(held, count);
	advance(1.1);
	assert_int_equal(worker.overload.level, OVERLOAD_NONE);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_always_admits_by_cookie_and_splices, reset),
		cmocka_unit_test_setup(test_cookie_and_plain_paths_agree_on_the_backend, reset),
		cmocka_unit_test_setup(test_wrong_cookie_at_a_plain_service_is_dropped_silently, reset),
		cmocka_unit_test_setup(test_half_open_flows_turn_auto_to_cookies_and_back, reset),
		cmocka_unit_test_setup(test_full_table_refuses_new_connections_not_established_ones, reset),
		cmocka_unit_test_setup(test_mbuf_pressure_turns_cookies_on, reset),
		cmocka_unit_test_setup(test_repeated_synack_before_the_client_speaks_is_answered, reset),
		cmocka_unit_test_setup(test_half_open_count_never_drifts, reset),
	};
	if (test_eal_start("test_overload") < 0)
		return 1;
	mempool = rte_pktmbuf_pool_create("test_mbufs", 2047, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
	if (!mempool)
		return 1;
	int failed = cmocka_run_group_tests(tests, setup, teardown);
	rte_eal_cleanup();
	return failed;
}
