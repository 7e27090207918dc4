/*
 * test_synproxy.c: SSL-session persistence through the real pipeline, packet
 * by packet, with real OpenSSL handshake bytes (tests/fixtures/tls).  A
 * client's SYN is answered by a cookie; its hello is read, a backend chosen
 * and connected with the client's ISN; the backend's bytes reach the client
 * with translated sequence numbers; the ServerHello's session ID is learned;
 * a resumption from another client address lands on the same backend.
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
#include "packet_builder.h"
#include "pipeline.h"
#include "synproxy.h"
#include "tcp_fixture.h"
#include "worker.h"
#include "worker_fixture.h"

static const char test_config[] =
	"{ \"dataplane\": { \"ports\": {"
	"    \"public\": { \"device\": \"net_null0\", \"address\": \"198.51.100.2/25\", \"gateway\": \"198.51.100.1\" },"
	"    \"private\": { \"device\": \"net_null1\", \"address\": \"198.51.100.129/25\" } },"
	"  \"flows\": { \"capacity\": 1024 }, \"sessions\": { \"capacity\": 1024 },"
	"  \"binding\": { \"capacity\": 16 } },"
	"  \"services\": ["
	"    { \"name\": \"cp\", \"vip\": \"192.0.2.20\", \"port\": 443, \"pool\": \"cp\","
	"      \"persistence\": { \"mode\": \"ssl-session\", \"fallback\": \"none\" } } ],"
	"  \"pools\": { \"cp\": { \"backends\": ["
	"    { \"name\": \"be1\", \"address\": \"198.51.100.131\", \"port\": 443 },"
	"    { \"name\": \"be2\", \"address\": \"198.51.100.132\", \"port\": 443 },"
	"    { \"name\": \"be3\", \"address\": \"198.51.100.133\", \"port\": 443 },"
	"    { \"name\": \"be4\", \"address\": \"198.51.100.134\", \"port\": 443 } ] } } }";

static struct rte_mempool *mempool;
static struct worker_fixture fixture;
static struct worker worker;

struct stream { uint8_t bytes[8192]; size_t length; };

/* Read a fixture: '#' lines skipped, the rest hex. */
static void
load_stream(const char *name, struct stream *stream)
{
	char path[256], line[512];
	snprintf(path, sizeof(path), "fixtures/tls/%s.hex", name);
	FILE *file = fopen(path, "r");
	assert_non_null(file);
	stream->length = 0;
	while (fgets(line, sizeof(line), file)) {
		if (line[0] == '#')
			continue;
		for (char *p = line; p[0] && p[1]; ) {
			unsigned byte;
			if (sscanf(p, "%2x", &byte) != 1) { p++; continue; }
			stream->bytes[stream->length++] = (uint8_t)byte;
			p += 2;
		}
	}
	fclose(file);
}

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

/* A TCP segment with options and payload, checksums right. */
static struct rte_mbuf *
segment(const char *source, const char *destination, uint16_t source_port, uint16_t destination_port,
	uint32_t seq, uint32_t ack, uint8_t flags, const uint8_t *options, unsigned options_length,
	const uint8_t *payload, unsigned payload_length)
{
	return tcp_fixture_segment(mempool, source, destination, source_port, destination_port, seq,
				   ack, flags, options, options_length, payload, payload_length);
}

static void
run_burst(unsigned port, struct rte_mbuf **burst, uint16_t count, struct output *out)
{
	tcp_fixture_run_burst(&worker, port, burst, count, out);
}

static void
run(unsigned port, struct rte_mbuf *m, struct output *out)
{
	run_burst(port, &m, 1, out);
}

/*
 * One whole connection: returns the backend the hello went to.  `client_hello`
 * is the client's first flight; `server_flight` the backend's answer.
 */
static uint32_t
connect_through(const char *client, uint16_t port, const struct stream *client_hello,
		size_t hello_length, const struct stream *server_flight)
{
	struct output out;
	const uint32_t isn = 0x11110000;

	/* 1. SYN -> SYN-ACK with a cookie, nothing to the backends */
	run(PORT_PUBLIC, segment(client, "192.0.2.20", port, 443, isn, 0, RTE_TCP_SYN_FLAG,
				 syn_options, sizeof(syn_options), NULL, 0), &out);
	assert_int_equal(out.count, 1);
	assert_int_equal(out.ports[0], PORT_PUBLIC);
	assert_int_equal(tcp_of(out.frames[0])[13], RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG);
	assert_int_equal(ack_of(out.frames[0]), isn + 1);
	assert_checksums(out.frames[0]);
	uint32_t cookie = seq_of(out.frames[0]);
	release(&out);

	/* 2. the ACK with the hello in it -> an ACK to the client and a SYN to a backend */
	uint8_t ts[] = { 1, 1, 8, 10, 0, 0, 0x03, 0xe9, 0, 0, 0, 0 };
	run(PORT_PUBLIC, segment(client, "192.0.2.20", port, 443, isn + 1, cookie + 1,
				 RTE_TCP_ACK_FLAG | RTE_TCP_PSH_FLAG, ts, sizeof(ts),
				 client_hello->bytes, (unsigned)hello_length), &out);
	assert_int_equal(out.count, 2);
	struct rte_mbuf *client_ack = out.ports[0] == PORT_PUBLIC ? out.frames[0] : out.frames[1];
	struct rte_mbuf *backend_syn = out.ports[0] == PORT_PUBLIC ? out.frames[1] : out.frames[0];
	assert_int_equal(ack_of(client_ack), isn + 1 + hello_length);
	assert_int_equal(tcp_of(backend_syn)[13], RTE_TCP_SYN_FLAG);
	assert_int_equal(seq_of(backend_syn), isn);   /* the client's ISN, kept */
	assert_checksums(backend_syn);
	uint32_t backend = destination_of(backend_syn);
	char backend_text[16];
	config_format_ipv4(ntohl(backend), backend_text);
	release(&out);

	/* 3. the backend's SYN-ACK -> the hello replayed to it, nothing to the client */
	const uint32_t backend_isn = 0x77770000;
	uint8_t synack_options[] = { 2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0x20, 0, 0, 0, 0x03, 0xe9, 1, 3, 3, 7 };
	run(PORT_PRIVATE, segment(backend_text, client, 443, port, backend_isn, isn + 1,
				  RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG, synack_options,
				  sizeof(synack_options), NULL, 0), &out);
	assert_int_equal(out.count, 1);
	assert_int_equal(out.ports[0], PORT_PRIVATE);
	assert_int_equal(seq_of(out.frames[0]), isn + 1);
	assert_int_equal(ack_of(out.frames[0]), backend_isn + 1);
	assert_int_equal(payload_of(out.frames[0]), hello_length);
	assert_memory_equal(tcp_of(out.frames[0]) + (tcp_of(out.frames[0])[12] >> 4) * 4,
			    client_hello->bytes, hello_length);
	assert_checksums(out.frames[0]);
	release(&out);

	/* 4. the backend's flight -> to the client, from the VIP, in the cookie's sequence space */
	unsigned first = server_flight->length < 1400 ? (unsigned)server_flight->length : 1400;
	run(PORT_PRIVATE, segment(backend_text, client, 443, port, backend_isn + 1,
				  isn + 1 + (uint32_t)hello_length, RTE_TCP_ACK_FLAG, ts, sizeof(ts),
				  server_flight->bytes, first), &out);
	assert_int_equal(out.count, 1);
	assert_int_equal(out.ports[0], PORT_PUBLIC);
	assert_int_equal(seq_of(out.frames[0]), cookie + 1);
	assert_checksums(out.frames[0]);
	release(&out);
	if (server_flight->length > first) {
		run(PORT_PRIVATE, segment(backend_text, client, 443, port, backend_isn + 1 + first,
					  isn + 1 + (uint32_t)hello_length, RTE_TCP_ACK_FLAG, ts, sizeof(ts),
					  server_flight->bytes + first,
					  (unsigned)(server_flight->length - first)), &out);
		assert_int_equal(out.count, 1);
		assert_int_equal(seq_of(out.frames[0]), cookie + 1 + first);
		release(&out);
	}

	/* 5. the client's ACK of it -> to the backend, ack back in its space */
	run(PORT_PUBLIC, segment(client, "192.0.2.20", port, 443, isn + 1 + (uint32_t)hello_length,
				 cookie + 1 + (uint32_t)server_flight->length, RTE_TCP_ACK_FLAG, ts,
				 sizeof(ts), NULL, 0), &out);
	assert_int_equal(out.count, 1);
	assert_int_equal(ack_of(out.frames[0]), backend_isn + 1 + server_flight->length);
	assert_checksums(out.frames[0]);
	release(&out);
	return backend;
}

static size_t
first_record_length(const struct stream *stream)
{
	return 5 + (size_t)(stream->bytes[3] << 8 | stream->bytes[4]);
}

/* TLS 1.2 with session IDs: the session is learned from the ServerHello and a
 * resumption from another client address lands on the same backend. */
static void
test_session_id_resumption_sticks_across_addresses(void **state)
{
	static struct stream full_client, full_server, resume_client, resume_server;
	(void)state;
	load_stream("tls12-session-id-full.client", &full_client);
	load_stream("tls12-session-id-full.server", &full_server);
	load_stream("tls12-session-id-resume.client", &resume_client);
	load_stream("tls12-session-id-resume.server", &resume_server);

	struct synproxy_stats *stats = &worker.synproxy->stats;
	uint32_t first = connect_through("203.0.113.10", 40000, &full_client,
					 first_record_length(&full_client), &full_server);
	assert_int_equal(stats->learned_session_id, 1);
	assert_int_equal(stats->fallback_new_session, 1);
	for (unsigned i = 0; i < 3; i++) {
		char client[16];
		snprintf(client, sizeof(client), "203.0.113.%u", 50 + i * 37);
		uint32_t again = connect_through(client, (uint16_t)(41000 + i), &resume_client,
						 first_record_length(&resume_client), &resume_server);
		assert_int_equal(again, first);
	}
	assert_int_equal(stats->hit_session_id, 3);
}

/* TLS 1.2 with tickets: the ticket is learned from the cleartext
 * NewSessionTicket, and a resumption presenting it sticks. */
static void
test_ticket_resumption_sticks_across_addresses(void **state)
{
	static struct stream full_client, full_server, resume_client, resume_server;
	(void)state;
	load_stream("tls12-ticket-full.client", &full_client);
	load_stream("tls12-ticket-full.server", &full_server);
	load_stream("tls12-ticket-resume.client", &resume_client);
	load_stream("tls12-ticket-resume.server", &resume_server);

	struct synproxy_stats *stats = &worker.synproxy->stats;
	uint64_t tickets = stats->learned_ticket, hits = stats->hit_ticket;
	uint64_t session_hits = stats->hit_session_id;
	uint32_t first = connect_through("203.0.113.11", 42000, &full_client,
					 first_record_length(&full_client), &full_server);
	assert_int_equal(stats->learned_ticket, tickets + 1);
	for (unsigned i = 0; i < 3; i++) {
		char client[16];
		snprintf(client, sizeof(client), "203.0.113.%u", 60 + i * 41);
		uint32_t again = connect_through(client, (uint16_t)(43000 + i), &resume_client,
						 first_record_length(&resume_client), &resume_server);
		assert_int_equal(again, first);
	}
	/* OpenSSL sends a session ID with its ticket and the server echoes it:
	 * after the first resumption, the session ID (looked up first) hits */
	assert_true(stats->hit_ticket >= hits + 1);
	assert_int_equal(stats->hit_ticket - hits + stats->hit_session_id - session_hits, 3);
}

/* TLS 1.3: the ServerHello echoes the client's random legacy session ID;
 * it is counted and never stored.  An accepted PSK teaches the ticket's key
 * name, and the next resumption with it sticks from any address. */
static void
test_tls13_learns_key_names_never_session_ids(void **state)
{
	static struct stream full_client, full_server, resume_client, resume_server;
	(void)state;
	load_stream("tls13-full.client", &full_client);
	load_stream("tls13-full.server", &full_server);
	load_stream("tls13-psk-resume.client", &resume_client);
	load_stream("tls13-psk-resume.server", &resume_server);

	struct synproxy_stats *stats = &worker.synproxy->stats;
	uint64_t ignored = stats->tls13_session_id_ignored, learned = stats->learned_session_id;
	uint32_t live = worker.synproxy->sessions.live;
	connect_through("203.0.113.12", 44000, &full_client, first_record_length(&full_client),
			&full_server);
	assert_int_equal(stats->tls13_session_id_ignored, ignored + 1);
	assert_int_equal(stats->learned_session_id, learned);
	assert_int_equal(worker.synproxy->sessions.live, live);

	uint64_t key_names = stats->learned_key_name, unknown = stats->fallback_tls13_unknown_ticket;
	uint32_t first = connect_through("203.0.113.13", 45000, &resume_client,
					 first_record_length(&resume_client), &resume_server);
	assert_int_equal(stats->fallback_tls13_unknown_ticket, unknown + 1);
	assert_int_equal(stats->learned_key_name, key_names + 1);
	uint64_t hits = stats->hit_key_name;
	for (unsigned i = 0; i < 3; i++) {
		char client[16];
		snprintf(client, sizeof(client), "203.0.113.%u", 70 + i * 43);
		assert_int_equal(connect_through(client, (uint16_t)(46000 + i), &resume_client,
						 first_record_length(&resume_client), &resume_server),
				 first);
	}
	assert_int_equal(stats->hit_key_name, hits + 3);
}

static uint32_t
cookie_for(const char *client, uint16_t port, uint32_t isn)
{
	struct output out;
	run(PORT_PUBLIC, segment(client, "192.0.2.20", port, 443, isn, 0, RTE_TCP_SYN_FLAG,
				 syn_options, sizeof(syn_options), NULL, 0), &out);
	assert_int_equal(out.count, 1);
	uint32_t cookie = seq_of(out.frames[0]);
	release(&out);
	return cookie;
}

/* The handshake's ACK and a hello in two segments, all in one burst (a
 * 1.5-2 KB post-quantum hello): bound as usual, no RST. */
static void
test_ack_and_split_hello_in_one_burst(void **state)
{
	static struct stream hello;
	struct output out;
	(void)state;
	load_stream("tls12-session-id-full.client", &hello);
	size_t length = first_record_length(&hello), half = length / 2;
	const uint32_t isn = 0x22220000;
	uint32_t cookie = cookie_for("203.0.113.77", 47000, isn);
	uint8_t ts[] = { 1, 1, 8, 10, 0, 0, 0x03, 0xe9, 0, 0, 0, 0 };
	uint64_t invalid = worker.synproxy->stats.cookies_invalid, rst = worker.synproxy->stats.rst_sent;
	struct rte_mbuf *burst[3] = {
		segment("203.0.113.77", "192.0.2.20", 47000, 443, isn + 1, cookie + 1, RTE_TCP_ACK_FLAG,
			ts, sizeof(ts), NULL, 0),
		segment("203.0.113.77", "192.0.2.20", 47000, 443, isn + 1, cookie + 1, RTE_TCP_ACK_FLAG,
			ts, sizeof(ts), hello.bytes, (unsigned)half),
		segment("203.0.113.77", "192.0.2.20", 47000, 443, isn + 1 + (uint32_t)half, cookie + 1,
			RTE_TCP_ACK_FLAG | RTE_TCP_PSH_FLAG, ts, sizeof(ts), hello.bytes + half,
			(unsigned)(length - half)),
	};
	run_burst(PORT_PUBLIC, burst, 3, &out);
	assert_int_equal(worker.synproxy->stats.cookies_invalid, invalid);
	assert_int_equal(worker.synproxy->stats.rst_sent, rst);
	bool syn_to_backend = false;
	for (unsigned i = 0; i < out.count; i++)
		syn_to_backend |= out.ports[i] == PORT_PRIVATE && tcp_of(out.frames[i])[13] == RTE_TCP_SYN_FLAG;
	assert_true(syn_to_backend);
	release(&out);
}

/* Two RSTs in one burst end the binding once: the table stays consistent. */
static void
test_two_rsts_in_one_burst(void **state)
{
	struct output out;
	(void)state;
	uint32_t live = worker.flows.live, free_top = worker.flows.free_top;
	const uint32_t isn = 0x33330000;
	uint32_t cookie = cookie_for("203.0.113.78", 48000, isn);
	run(PORT_PUBLIC, segment("203.0.113.78", "192.0.2.20", 48000, 443, isn + 1, cookie + 1,
				 RTE_TCP_ACK_FLAG, NULL, 0, NULL, 0), &out);
	release(&out);
	assert_int_equal(worker.flows.live, live + 1);
	struct rte_mbuf *burst[2] = {
		segment("203.0.113.78", "192.0.2.20", 48000, 443, isn + 1, 0, RTE_TCP_RST_FLAG, NULL, 0, NULL, 0),
		segment("203.0.113.78", "192.0.2.20", 48000, 443, isn + 1, 0, RTE_TCP_RST_FLAG, NULL, 0, NULL, 0),
	};
	run_burst(PORT_PUBLIC, burst, 2, &out);
	release(&out);
	assert_int_equal(worker.flows.live, live);
	assert_int_equal(worker.flows.free_top, free_top);
	worker.now += 60 * worker.hz;   /* a sweep long after: nothing freed twice */
	while (pipeline_expire(&worker, 4096) > 0)
		;
	assert_true(worker.flows.free_top <= worker.flows.capacity);
	assert_int_equal(worker.flows.free_top + worker.flows.live, worker.flows.capacity);
	worker.now -= 60 * worker.hz;
}

/* A SYN inside a live spliced connection (forged or stale) is dropped; the
 * connection goes on. */
static void
test_syn_cannot_kill_a_spliced_connection(void **state)
{
	static struct stream client, server;
	struct output out;
	(void)state;
	load_stream("tls12-session-id-full.client", &client);
	load_stream("tls12-session-id-full.server", &server);
	connect_through("203.0.113.79", 49000, &client, first_record_length(&client), &server);
	uint32_t live = worker.flows.live;
	uint64_t dropped = worker.stats.drops[PACKET_DROP_TCP_UNEXPECTED_SYN];
	run(PORT_PUBLIC, segment("203.0.113.79", "192.0.2.20", 49000, 443, 0x5555, 0, RTE_TCP_SYN_FLAG,
				 syn_options, sizeof(syn_options), NULL, 0), &out);
	assert_int_equal(out.count, 0);
	assert_int_equal(worker.flows.live, live);
	assert_int_equal(worker.stats.drops[PACKET_DROP_TCP_UNEXPECTED_SYN], dropped + 1);
}

/* A hello segment whose TCP checksum is wrong is neither buffered nor
 * acknowledged (the client resends it; the dataplane's ACK would have made
 * the damage final); the resent one is taken as usual. */
static void
test_corrupted_hello_segment_is_not_acknowledged(void **state)
{
	static struct stream hello;
	struct output out;
	(void)state;
	load_stream("tls12-session-id-full.client", &hello);
	unsigned length = (unsigned)first_record_length(&hello);
	const uint32_t isn = 0x44440000;
	uint32_t cookie = cookie_for("203.0.113.80", 50000, isn);
	uint64_t bad = worker.stats.drops[PACKET_DROP_TCP_BAD_CHECKSUM];

	struct rte_mbuf *corrupted = segment("203.0.113.80", "192.0.2.20", 50000, 443, isn + 1,
					     cookie + 1, RTE_TCP_ACK_FLAG | RTE_TCP_PSH_FLAG, NULL, 0,
					     hello.bytes, length);
	rte_pktmbuf_mtod(corrupted, uint8_t *)[54 + 10] ^= 0x40;   /* a bit of the hello flipped */
	run(PORT_PUBLIC, corrupted, &out);
	assert_int_equal(out.count, 0);
	assert_int_equal(worker.stats.drops[PACKET_DROP_TCP_BAD_CHECKSUM], bad + 1);

	run(PORT_PUBLIC, segment("203.0.113.80", "192.0.2.20", 50000, 443, isn + 1, cookie + 1,
				 RTE_TCP_ACK_FLAG | RTE_TCP_PSH_FLAG, NULL, 0, hello.bytes, length), &out);
	assert_int_equal(out.count, 2);   /* the ACK of the whole hello, the SYN to a backend */
	struct rte_mbuf *client_ack = out.ports[0] == PORT_PUBLIC ? out.frames[0] : out.frames[1];
	assert_int_equal(ack_of(client_ack), isn + 1 + length);
	release(&out);
}

/* A client's cookie handshake and whole hello (first record of the TLS 1.2
 * fixture, with `ts` options if given): returns the hello's length and writes
 * the backend the dataplane sent its SYN to. */
static unsigned
hello_sent_to_backend(const char *client, uint16_t port, uint32_t isn, const uint8_t *ts,
		      unsigned ts_length, char backend[16])
{
	static struct stream hello;
	struct output out;
	load_stream("tls12-session-id-full.client", &hello);
	unsigned length = (unsigned)first_record_length(&hello);
	uint32_t cookie = cookie_for(client, port, isn);

	run(PORT_PUBLIC, segment(client, "192.0.2.20", port, 443, isn + 1, cookie + 1,
				 RTE_TCP_ACK_FLAG | RTE_TCP_PSH_FLAG, ts, ts_length, hello.bytes, length),
	    &out);
	assert_int_equal(out.count, 2);   /* the ACK of the hello, the SYN to a backend */
	struct rte_mbuf *syn = out.ports[0] == PORT_PRIVATE ? out.frames[0] : out.frames[1];
	config_format_ipv4(ntohl(destination_of(syn)), backend);
	release(&out);
	return length;
}

/* A backend that resets a spliced connection before acknowledging the replay
 * (a bare RST, no ACK) ends the binding at once: no replay goes on being
 * resent to a closed connection, and the binding is free for the next client. */
static void
test_backend_reset_releases_the_binding(void **state)
{
	struct output out;
	char backend[16];
	(void)state;
	const uint32_t isn = 0x45450000, backend_isn = 0x78780000;
	uint32_t free_before = worker.synproxy->free_top;
	unsigned length = hello_sent_to_backend("203.0.113.81", 51000, isn, NULL, 0, backend);
	assert_int_equal(worker.synproxy->free_top, free_before - 1);

	run(PORT_PRIVATE, segment(backend, "203.0.113.81", 443, 51000, backend_isn, isn + 1,
				  RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG, syn_options, sizeof(syn_options),
				  NULL, 0), &out);
	assert_int_equal(payload_of(out.frames[0]), length);   /* the replay */
	release(&out);
	run(PORT_PRIVATE, segment(backend, "203.0.113.81", 443, 51000, backend_isn + 1, 0,
				  RTE_TCP_RST_FLAG, NULL, 0, NULL, 0), &out);
	assert_int_equal(out.count, 1);   /* the client hears of it */
	assert_int_equal(tcp_of(out.frames[0])[13] & RTE_TCP_RST_FLAG, RTE_TCP_RST_FLAG);
	release(&out);
	assert_int_equal(worker.synproxy->free_top, free_before);
}

/* The TSecr of a segment from the dataplane to a backend (after the
 * standard 20-byte header, NOP NOP TS: at offset 8 of the options). */
static uint32_t
tsecr_of(struct rte_mbuf *m)
{
	uint32_t v;
	memcpy(&v, tcp_of(m) + 20 + 8, 4);
	return ntohl(v);
}

/* The backend repeats its SYN-ACK (our replay, its handshake's ACK, was
 * lost): the replay is sent again echoing the repeated SYN-ACK's TSval, which
 * Linux requires of the ACK that completes its handshake (between the first
 * and the last SYN-ACK's). */
static void
test_repeated_synack_gets_the_replay_echoing_it(void **state)
{
	struct output out;
	char backend[16];
	(void)state;
	const uint32_t isn = 0x46460000, backend_isn = 0x79790000;
	uint8_t ts[] = { 1, 1, 8, 10, 0, 0, 0x03, 0xe9, 0, 0, 0, 0 };
	unsigned length = hello_sent_to_backend("203.0.113.82", 52000, isn, ts, sizeof(ts), backend);

	/* MSS, SACK permitted, TS val 0x2000 ecr 1001, window scale 7 */
	uint8_t first[] = { 2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0x20, 0, 0, 0, 0x03, 0xe9, 1, 3, 3, 7 };
	run(PORT_PRIVATE, segment(backend, "203.0.113.82", 443, 52000, backend_isn, isn + 1,
				  RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG, first, sizeof(first), NULL, 0), &out);
	assert_int_equal(out.count, 1);
	assert_int_equal(tsecr_of(out.frames[0]), 0x2000);
	release(&out);

	uint8_t again[] = { 2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0x24, 0, 0, 0, 0x03, 0xe9, 1, 3, 3, 7 };
	run(PORT_PRIVATE, segment(backend, "203.0.113.82", 443, 52000, backend_isn, isn + 1,
				  RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG, again, sizeof(again), NULL, 0), &out);
	assert_int_equal(out.count, 1);
	assert_int_equal(out.ports[0], PORT_PRIVATE);   /* the client hears nothing of it */
	assert_int_equal(payload_of(out.frames[0]), length);
	assert_int_equal(tsecr_of(out.frames[0]), 0x2400);
	release(&out);
}

/* A forged ACK (no cookie) gets a RST and creates nothing. */
static void
test_forged_ack_is_refused(void **state)
{
	struct output out;
	(void)state;
	uint32_t live = worker.flows.live;
	uint64_t invalid = worker.synproxy->stats.cookies_invalid;
	run(PORT_PUBLIC, segment("203.0.113.99", "192.0.2.20", 5555, 443, 1234, 0xdeadbeef,
				 RTE_TCP_ACK_FLAG, NULL, 0, NULL, 0), &out);
	assert_int_equal(worker.flows.live, live);
	assert_int_equal(worker.synproxy->stats.cookies_invalid, invalid + 1);
	assert_int_equal(out.count, 1);
	assert_int_equal(tcp_of(out.frames[0])[13], RTE_TCP_RST_FLAG);
	assert_int_equal(seq_of(out.frames[0]), 0xdeadbeef);
	release(&out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_session_id_resumption_sticks_across_addresses),
		/* before the ticket test: the fixtures' server contexts share a ticket key */
		cmocka_unit_test(test_tls13_learns_key_names_never_session_ids),
		cmocka_unit_test(test_ticket_resumption_sticks_across_addresses),
		cmocka_unit_test(test_forged_ack_is_refused),
		cmocka_unit_test(test_ack_and_split_hello_in_one_burst),
		cmocka_unit_test(test_two_rsts_in_one_burst),
		cmocka_unit_test(test_syn_cannot_kill_a_spliced_connection),
		cmocka_unit_test(test_corrupted_hello_segment_is_not_acknowledged),
		cmocka_unit_test(test_backend_reset_releases_the_binding),
		cmocka_unit_test(test_repeated_synack_gets_the_replay_echoing_it),
	};
	if (test_eal_start("test_synproxy") < 0)
		return 1;
	mempool = rte_pktmbuf_pool_create("test_mbufs", 2047, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, 0);
	if (!mempool)
		return 1;
	int failed = cmocka_run_group_tests(tests, setup, teardown);
	rte_eal_cleanup();
	return failed;
}
