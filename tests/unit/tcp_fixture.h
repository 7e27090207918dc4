/*
 * tcp_fixture.h: TCP segments in, the worker's output frames out, for the
 * unit tests that drive the real pipeline connection by connection
 * (test_synproxy.c, test_overload.c).  Include after cmocka.h; the including
 * file owns the worker and the mempool and passes them in.
 */
#ifndef TETHER_TEST_TCP_FIXTURE_H
#define TETHER_TEST_TCP_FIXTURE_H

#include <rte_mbuf.h>

#include "packet_builder.h"
#include "pipeline.h"

#define TCP_FIXTURE_OUTPUT_MAX 8

/* A TCP segment with options and payload, checksums right (window 501). */
static inline struct rte_mbuf *
tcp_fixture_segment(struct rte_mempool *pool, const char *source, const char *destination,
		    uint16_t source_port, uint16_t destination_port, uint32_t seq, uint32_t ack,
		    uint8_t flags, const uint8_t *options, unsigned options_length,
		    const uint8_t *payload, unsigned payload_length)
{
	struct test_frame frame;
	builder_ipv4(&frame, &(struct test_tuple){ source, destination, source_port, destination_port,
						   IPPROTO_TCP, flags, 0 });
	uint8_t *ip = frame.bytes + 14, *tcp = ip + 20;
	unsigned tcp_length = 20 + options_length;
	uint16_t total = (uint16_t)(20 + tcp_length + payload_length);
	uint32_t value32;
	uint16_t value16;
	value32 = htonl(seq); memcpy(tcp + 4, &value32, 4);
	value32 = htonl(ack); memcpy(tcp + 8, &value32, 4);
	tcp[12] = (uint8_t)((tcp_length / 4) << 4);
	tcp[14] = 0x01; tcp[15] = 0xf5;   /* window 501 (scaled) */
	/* memcpy from NULL is undefined even for 0 bytes (UBSan's nonnull-attribute) */
	if (options_length)
		memcpy(tcp + 20, options, options_length);
	if (payload_length)
		memcpy(tcp + tcp_length, payload, payload_length);
	value16 = htons(total); memcpy(ip + 2, &value16, 2);
	builder_fix_ip_checksum(&frame);
	tcp[16] = tcp[17] = 0;
	value16 = builder_l4_checksum(ip); memcpy(tcp + 16, &value16, 2);
	frame.length = 14 + total < 60 ? 60 : 14 + total;
	struct rte_mbuf *m = rte_pktmbuf_alloc(pool);
	memcpy(rte_pktmbuf_append(m, (uint16_t)frame.length), frame.bytes, frame.length);
	return m;
}

struct output {
	unsigned count;
	struct rte_mbuf *frames[TCP_FIXTURE_OUTPUT_MAX];
	unsigned ports[TCP_FIXTURE_OUTPUT_MAX];
};

/* Run one burst through `worker` and collect what it queued to send. */
static inline void
tcp_fixture_run_burst(struct worker *worker, unsigned port, struct rte_mbuf **burst, uint16_t count,
		      struct output *out)
{
	pipeline_process_burst(worker, port, burst, count);
	out->count = 0;
	for (unsigned p = 0; p < 2; p++) {
		for (unsigned i = 0; i < worker->tx[p].count; i++) {
			assert_true(out->count < TCP_FIXTURE_OUTPUT_MAX);
			out->frames[out->count] = worker->tx[p].packets[i];
			out->ports[out->count++] = p;
		}
		worker->tx[p].count = 0;
	}
}

static inline void
release(struct output *out)
{
	for (unsigned i = 0; i < out->count; i++)
		rte_pktmbuf_free(out->frames[i]);
	out->count = 0;
}

static inline const uint8_t *tcp_of(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, uint8_t *) + 34; }
static inline uint32_t seq_of(struct rte_mbuf *m) { uint32_t v; memcpy(&v, tcp_of(m) + 4, 4); return ntohl(v); }
static inline uint32_t ack_of(struct rte_mbuf *m) { uint32_t v; memcpy(&v, tcp_of(m) + 8, 4); return ntohl(v); }
static inline uint32_t destination_of(struct rte_mbuf *m) { uint32_t v; memcpy(&v, rte_pktmbuf_mtod(m, uint8_t *) + 30, 4); return v; }
static inline unsigned payload_of(struct rte_mbuf *m)
{
	const uint8_t *ip = rte_pktmbuf_mtod(m, uint8_t *) + 14;
	return (unsigned)((ip[2] << 8 | ip[3]) - 20 - (tcp_of(m)[12] >> 4) * 4);
}

static inline void
assert_checksums(struct rte_mbuf *m)
{
	uint8_t *ip = rte_pktmbuf_mtod(m, uint8_t *) + 14;
	uint16_t stored;
	assert_int_equal(checksum_compute(ip, 20), 0);
	memcpy(&stored, ip + 36, 2);
	ip[36] = ip[37] = 0;
	assert_int_equal(stored, builder_l4_checksum(ip));
	memcpy(ip + 36, &stored, 2);
}

/* MSS 1460, SACK permitted, timestamps (TSval 1000), window scale 7 */
static const uint8_t syn_options[] = { 2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0x03, 0xe8, 0, 0, 0, 0, 1, 3, 3, 7 };

#endif /* TETHER_TEST_TCP_FIXTURE_H */
