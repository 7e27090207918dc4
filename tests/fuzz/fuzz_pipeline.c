/*
 * fuzz_pipeline.c: libFuzzer harness for the whole packet path: Ethernet
 * frames in through pipeline_process_burst(), the function the worker loop
 * runs, and verdicts and rewritten frames out.  Every frame on the public port
 * comes from the Internet; every frame on the private port from a server a
 * client may have compromised.
 *
 * The worker is set up as tests/unit/test_pipeline.c and tether-bench do:
 * a real EAL (--no-huge -m 256 --no-shconf, a unique --file-prefix), a
 * mempool, config_parse(), services_build(), worker_init() with two logical
 * ports no NIC backs, every next hop resolved.  The config has a source-ip
 * service, two ssl-session services (fallback source-ip and none) so both the
 * NAT path and the SYN-cookie / delayed-binding / splice path are reached, a
 * port-translating service, a source-ip service on "syn_cookies": "always"
 * (the plain cookie path; the overload ladder moves on its own as the 1,024
 * flows fill), a UDP service and one with allow_from.  State is
 * kept across inputs (flows, bindings, sessions, learned tickets), as on a
 * live balancer; time is a virtual clock that only the inputs move, and the
 * SYN-cookie secret is fixed, so a crash input replays the same way from a
 * fresh start as long as it does not depend on what earlier inputs built.
 *
 * Input: one header byte, then records.
 *   header   bit 0: leave the neighbour table alone (default: every next hop
 *                   marked reachable again before the input, so long runs do
 *                   not end with every backend unresolved)
 *   record   byte 0  bit 0: port (0 public, 1 private)
 *                    bit 1: reply: make the frame answer the last TCP segment
 *                           that came out of that port (addresses, ports;
 *                           seq = its ack; ack = its seq + its length) and
 *                           carry on from there on the next reply; this is
 *                           how an input completes a SYN-cookie handshake or
 *                           answers the backend SYN the dataplane sent
 *                    bit 2: fix: set the IPv4 total length from the frame and
 *                           recompute the IPv4 and TCP/UDP checksums
 *                    bit 3: the burst ends after this frame (also at 32)
 *                    bits 4-7: time step before the burst (index into
 *                           time_steps_ms); a non-zero step runs the worker's
 *                           timers (expiry, ARP, synproxy) as its loop would
 *            byte 1-2  frame length, big endian (cut to what is left)
 *            ...       the frame
 * Each frame is an mbuf whose data is an external malloc() buffer of exactly
 * the frame's length, so AddressSanitizer sees a read past the frame (or of a
 * frame already freed); DPDK's own memory is not tracked.
 *
 * Checked beyond "no crash": every IPv4 frame out has a correct IPv4 header
 * checksum, and after each input every mbuf is back in the pool (each one
 * ended in a TX queue, which the harness empties, or was freed).
 */
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <rte_eal.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include "config.h"
#include "fuzz_check.h"
#include "nat.h"
#include "packet.h"
#include "pipeline.h"
#include "synproxy.h"
#include "worker.h"
#include "../unit/packet_builder.h"

#define FRAME_MAX      2048
#define FRAMES_MAX     256       /* per input, to keep executions fast */
#define MEMPOOL_SIZE   1023

static const char fuzz_config[] =
	"{ \"dataplane\": { \"ports\": {"
	"    \"public\": { \"device\": \"net_null0\", \"address\": \"198.51.100.2/25\", \"gateway\": \"198.51.100.1\" },"
	"    \"private\": { \"device\": \"net_null1\", \"address\": \"198.51.100.129/25\" } },"
	"  \"flows\": { \"capacity\": 1024 }, \"sessions\": { \"capacity\": 1024 },"
	"  \"binding\": { \"capacity\": 16 } },"
	"  \"services\": ["
	"    { \"name\": \"sticky\", \"vip\": \"192.0.2.20\", \"port\": 443, \"pool\": \"web\","
	"      \"persistence\": { \"mode\": \"source-ip\" } },"
	"    { \"name\": \"tls\", \"vip\": \"192.0.2.30\", \"port\": 443, \"pool\": \"web\","
	"      \"persistence\": { \"mode\": \"ssl-session\", \"fallback\": \"source-ip\" } },"
	"    { \"name\": \"tls-strict\", \"vip\": \"192.0.2.31\", \"port\": 443, \"pool\": \"web\","
	"      \"persistence\": { \"mode\": \"ssl-session\", \"fallback\": \"none\" } },"
	"    { \"name\": \"alt\", \"vip\": \"192.0.2.23\", \"port\": 443, \"target_port\": 8443, \"pool\": \"web\" },"
	"    { \"name\": \"cookie\", \"vip\": \"192.0.2.24\", \"port\": 443, \"pool\": \"web\","
	"      \"persistence\": { \"mode\": \"source-ip\" }, \"syn_cookies\": \"always\" },"
	"    { \"name\": \"dns\", \"vip\": \"192.0.2.20\", \"port\": 53, \"protocol\": \"udp\", \"pool\": \"web\" },"
	"    { \"name\": \"acl\", \"vip\": \"192.0.2.10\", \"port\": 443, \"pool\": \"web\","
	"      \"allow_from\": [\"203.0.113.0/26\"] } ],"
	"  \"pools\": { \"web\": { \"backends\": ["
	"    { \"name\": \"be1\", \"address\": \"198.51.100.131\", \"port\": 443 },"
	"    { \"name\": \"be2\", \"address\": \"198.51.100.132\", \"port\": 443 },"
	"    { \"name\": \"be3\", \"address\": \"198.51.100.133\", \"port\": 443, \"weight\": 2 },"
	"    { \"name\": \"be4\", \"address\": \"198.51.100.134\", \"port\": 443, \"weight\": 0 } ] } } }";

/* Time steps a record may ask for: within a tick, a SYN retry, the inspect
 * timeout, a cookie tick, the neighbour probe, flow timeouts, an hour. */
static const uint64_t time_steps_ms[16] = {
	0, 1, 10, 100, 250, 1000, 3000, 5000, 16000, 31000, 61000, 65000, 120000, 900000,
	3600000, 86400000,
};

static const struct rte_ether_addr public_mac = {{ 0x02, 0xaa, 0, 0, 0, 0x01 }};
static const struct rte_ether_addr private_mac = {{ 0x02, 0xaa, 0, 0, 0, 0x02 }};

static struct rte_mempool *mempool;
static struct config config;
static struct services services;
static struct services_registry registry;
static struct worker worker;
static uint64_t clock_tsc;    /* the virtual clock */
static bool ready;
static bool print_each;       /* TETHER_FUZZ_STATS */

/* The last TCP segment out of each port, and where a reply carries on. */
struct last_segment {
	bool valid;
	uint32_t source, destination;          /* network order */
	uint16_t source_port, destination_port;
	uint32_t next_seq, next_ack;           /* host order: what a reply carries */
};
static struct last_segment last[2];

/* ------------------------------------------------------------------------ */
/* frames                                                                   */

static inline uint16_t load16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint32_t load32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

static void
free_external(void *address, void *opaque)
{
	free(address);
	free(opaque);
}

/* An mbuf whose data is an exact-size heap copy of `frame`. */
static struct rte_mbuf *
mbuf_from(const uint8_t *frame, uint16_t length)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(mempool);
	uint8_t *buffer = malloc(length ? length : 1);
	struct rte_mbuf_ext_shared_info *shared = malloc(sizeof(*shared));

	if (!m || !buffer || !shared)
		abort();
	memcpy(buffer, frame, length);
	shared->free_cb = free_external;
	shared->fcb_opaque = shared;
	rte_mbuf_ext_refcnt_set(shared, 1);
	rte_pktmbuf_attach_extbuf(m, buffer, RTE_BAD_IOVA, length ? length : 1, shared);
	m->data_off = 0;
	m->data_len = length;
	m->pkt_len = length;
	m->port = 0;
	return m;
}

/* Offsets of a plain IPv4 frame's L4 header, or 0 when it is not one. */
static unsigned
l4_offset(const uint8_t *frame, unsigned length)
{
	if (length < PACKET_ETHER_HEADER_LENGTH + PACKET_IPV4_HEADER_LENGTH ||
	    load16(frame + 12) != htons(0x0800))
		return 0;
	unsigned header = (unsigned)(frame[14] & 0x0f) * 4;
	if (header < PACKET_IPV4_HEADER_LENGTH || PACKET_ETHER_HEADER_LENGTH + header > length)
		return 0;
	return PACKET_ETHER_HEADER_LENGTH + header;
}

static void
make_reply(uint8_t *frame, unsigned length, unsigned port)
{
	const struct last_segment *segment = &last[port];
	unsigned l4 = l4_offset(frame, length);

	if (!segment->valid || !l4 || frame[PACKET_ETHER_HEADER_LENGTH + 9] != IPPROTO_TCP ||
	    l4 + 20 > length)
		return;
	nat_store32(frame + 26, segment->destination);
	nat_store32(frame + 30, segment->source);
	nat_store16(frame + l4, segment->destination_port);
	nat_store16(frame + l4 + 2, segment->source_port);
	nat_store32(frame + l4 + 4, htonl(segment->next_seq));
	nat_store32(frame + l4 + 8, htonl(segment->next_ack));
}

/* After a reply went in: the next reply on `port` carries on after its bytes,
 * as the peer's next segment would. */
static void
reply_sent(const uint8_t *frame, unsigned length, unsigned port)
{
	struct last_segment *segment = &last[port];
	unsigned l4 = l4_offset(frame, length);

	if (!segment->valid || !l4 || frame[PACKET_ETHER_HEADER_LENGTH + 9] != IPPROTO_TCP ||
	    l4 + 20 > length)
		return;
	unsigned tcp_header = (unsigned)(frame[l4 + 12] >> 4) * 4;
	unsigned total = ntohs(load16(frame + PACKET_ETHER_HEADER_LENGTH + 2));
	unsigned ip_header = l4 - PACKET_ETHER_HEADER_LENGTH;
	if (tcp_header >= 20 && total >= ip_header + tcp_header)
		segment->next_seq += total - ip_header - tcp_header;
	segment->next_seq += (frame[l4 + 13] & 0x02) != 0;   /* SYN */
	segment->next_seq += (frame[l4 + 13] & 0x01) != 0;   /* FIN */
}

static void
fix_checksums(uint8_t *frame, unsigned length)
{
	unsigned l4 = l4_offset(frame, length);
	if (!l4)
		return;
	uint8_t *ip = frame + PACKET_ETHER_HEADER_LENGTH;
	unsigned ip_header = l4 - PACKET_ETHER_HEADER_LENGTH;
	unsigned total = length - PACKET_ETHER_HEADER_LENGTH;
	if (total > 65535)
		total = 65535;
	nat_store16(ip + 2, htons((uint16_t)total));
	nat_store16(ip + 10, 0);
	nat_store16(ip + 10, checksum_compute(ip, ip_header));

	unsigned l4_length = total - ip_header;
	unsigned check_offset = ip[9] == IPPROTO_TCP ? 16 : ip[9] == IPPROTO_UDP ? 6 : 0;
	if (!check_offset || l4_length < check_offset + 2)
		return;
	if (ip[9] == IPPROTO_UDP && l4_length >= 8)
		nat_store16(ip + ip_header + 4, htons((uint16_t)l4_length));
	nat_store16(ip + ip_header + check_offset, 0);
	nat_store16(ip + ip_header + check_offset, builder_l4_checksum(ip));
}

/* Look at one frame the dataplane sent on `port`, remember it if TCP. */
static void
inspect_output(struct rte_mbuf *m, unsigned port)
{
	const uint8_t *frame = rte_pktmbuf_mtod(m, const uint8_t *);
	unsigned length = rte_pktmbuf_data_len(m);
	unsigned l4 = l4_offset(frame, length);

	if (!l4)
		return;
	const uint8_t *ip = frame + PACKET_ETHER_HEADER_LENGTH;
	unsigned ip_header = l4 - PACKET_ETHER_HEADER_LENGTH;
	FUZZ_CHECK(checksum_compute(ip, ip_header) == 0);
	if (ip[9] != IPPROTO_TCP || l4 + 20 > length)
		return;
	uint16_t total = ntohs(load16(ip + 2));
	unsigned tcp_header = (unsigned)(frame[l4 + 12] >> 4) * 4;
	unsigned payload = total >= ip_header + tcp_header ? total - ip_header - tcp_header : 0;
	uint8_t flags = frame[l4 + 13];
	last[port] = (struct last_segment){
		.valid = true,
		.source = load32(ip + 12), .destination = load32(ip + 16),
		.source_port = load16(frame + l4), .destination_port = load16(frame + l4 + 2),
		.next_seq = ntohl(load32(frame + l4 + 8)),
		.next_ack = ntohl(load32(frame + l4 + 4)) + payload + ((flags & 0x02) != 0) +
			    ((flags & 0x01) != 0),
	};
}

/* Empty the TX queues as worker_flush() would, without a NIC. */
static void
drain(void)
{
	for (unsigned p = 0; p < 2; p++) {
		for (unsigned i = 0; i < worker.tx[p].count; i++) {
			inspect_output(worker.tx[p].packets[i], p);
			rte_pktmbuf_free(worker.tx[p].packets[i]);
		}
		worker.tx[p].count = 0;
	}
}

/* Move the virtual clock; run the worker loop's timers when it moved. */
static void
advance(unsigned step)
{
	if (!time_steps_ms[step])
		return;
	clock_tsc += time_steps_ms[step] * worker.tsc_per_ms;
	worker.now = clock_tsc;
	/* enough budget to sweep the small tables, as many 1 ms ticks would */
	while (pipeline_expire(&worker, 4096) > 0)
		;
	neighbor_tick(&worker, worker.now);
	synproxy_tick(&worker);
	drain();
}

static void
refresh_neighbors(void)
{
	for (unsigned i = 0; i < worker.neighbors.count; i++) {
		struct neighbor *neighbor = &worker.neighbors.entries[i];
		neighbor->state = NEIGHBOR_REACHABLE;
		neighbor->confirmed = worker.now;
		neighbor->next_probe = worker.now + (uint64_t)NEIGHBOR_PROBE_S * worker.hz;
		neighbor->mac = (struct rte_ether_addr){{ 0x02, 0xcc, 0, 0, 0, (uint8_t)i }};
	}
}

/* With TETHER_FUZZ_STATS set (replaying seeds by hand), print what an input
 * reached: the counters that moved. */
static void
print_stats(void)
{
	const struct synproxy_stats *proxy = &worker.synproxy->stats;

	fprintf(stderr, "flows live %u created %" PRIu64 " expired %" PRIu64 "; persist inserted %" PRIu64
		"; icmp echo %" PRIu64 " relayed %" PRIu64 "; arp replies %" PRIu64 " learned %" PRIu64 "\n",
		worker.flows.live, worker.stats.flows_created, worker.stats.flows_expired,
		worker.stats.persist_inserted, worker.stats.icmp_echo_replies,
		worker.stats.icmp_errors_relayed, worker.stats.arp_replies_sent, worker.stats.arp_learned);
	fprintf(stderr, "synproxy: cookies sent %" PRIu64 " valid %" PRIu64 " invalid %" PRIu64
		"; bindings started %" PRIu64 " bound %" PRIu64 " aborted %" PRIu64
		"; hits id %" PRIu64 " ticket %" PRIu64 " key name %" PRIu64
		"; learned id %" PRIu64 " ticket %" PRIu64 " key name %" PRIu64
		"; fallback new %" PRIu64 " not_tls %" PRIu64 " timeout %" PRIu64
		"; backend retries %" PRIu64 " failed %" PRIu64 "; rst %" PRIu64
		"; cookie connections %" PRIu64 "; overload level %u refused %" PRIu64 "\n",
		proxy->cookies_sent, proxy->cookies_valid, proxy->cookies_invalid,
		proxy->bindings_started, proxy->bindings_bound, proxy->bindings_aborted,
		proxy->hit_session_id, proxy->hit_ticket, proxy->hit_key_name,
		proxy->learned_session_id, proxy->learned_ticket, proxy->learned_key_name,
		proxy->fallback_new_session, proxy->fallback_not_tls, proxy->fallback_timeout,
		proxy->backend_syn_retries, proxy->backend_failed, proxy->rst_sent,
		proxy->cookie_connections, worker.overload.level, worker.overload.stats.refused);
	for (unsigned r = 0; r < PACKET_REASON_COUNT; r++)
		if (worker.stats.drops[r])
			fprintf(stderr, "  drop %s %" PRIu64 "\n", packet_reason_name(r), worker.stats.drops[r]);
}

/* ------------------------------------------------------------------------ */
/* setup                                                                    */

static void
teardown(void)
{
	if (!ready)
		return;
	ready = false;
	drain();
	worker_free(&worker);
	services_free(&services);
	config_free(&config);
	rte_mempool_free(mempool);
	/* --no-shconf still makes /var/run/dpdk/PREFIX; leave nothing behind */
	char runtime[PATH_MAX];
	snprintf(runtime, sizeof(runtime), "%s", rte_eal_get_runtime_dir());
	rte_eal_cleanup();
	rmdir(runtime);
}

static int
setup(const char *program)
{
	struct config_errors errors;
	struct dataplane_port ports[2] = {
		{ .port_id = 0, .mac = public_mac, .address = inet_addr("198.51.100.2"),
		  .netmask = inet_addr("255.255.255.128") },
		{ .port_id = 1, .mac = private_mac, .address = inet_addr("198.51.100.129"),
		  .netmask = inet_addr("255.255.255.128") },
	};
	char prefix[64], error[256];

	snprintf(prefix, sizeof(prefix), "--file-prefix=tether-fuzz-%d", (int)getpid());
	char *arguments[] = { (char *)program, "-l", "0", "--no-huge", "-m", "256", "--no-shconf",
			      "--no-pci", "--no-telemetry", "--log-level=error", prefix, NULL };
	if (rte_eal_init((int)(sizeof(arguments) / sizeof(arguments[0])) - 1, arguments) < 0) {
		fprintf(stderr, "fuzz_pipeline: rte_eal_init failed\n");
		return -1;
	}
	mempool = rte_pktmbuf_pool_create("fuzz_mbufs", MEMPOOL_SIZE, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
					  (int)rte_socket_id());
	if (!mempool) {
		fprintf(stderr, "fuzz_pipeline: mempool\n");
		return -1;
	}
	if (config_parse(fuzz_config, sizeof(fuzz_config) - 1, &config, &errors) < 0) {
		for (unsigned i = 0; i < errors.count && i < CONFIG_ERRORS_MAX; i++)
			fprintf(stderr, "fuzz_pipeline: config %s: %s\n", errors.errors[i].path,
				errors.errors[i].message);
		return -1;
	}
	if (services_build(&services, &config, &registry) < 0 ||
	    worker_init(&worker, 0, &config, &services, mempool, ports, error, sizeof(error)) < 0) {
		fprintf(stderr, "fuzz_pipeline: worker: %s\n", error);
		return -1;
	}
	/* a fixed secret and clock: the same input makes the same cookies */
	worker.synproxy->secret = (struct syncookie_secret){ { 0x0123456789abcdefull, 0xfedcba9876543210ull } };
	clock_tsc = worker.hz * 100000;
	worker.now = clock_tsc;
	refresh_neighbors();
	ready = true;
	print_each = getenv("TETHER_FUZZ_STATS") != NULL;
	atexit(teardown);
	return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	if (setup((*argv)[0]) < 0)
		abort();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rte_mbuf *burst[PIPELINE_BURST];
	unsigned count = 0, burst_port = 0, frames = 0;
	static uint8_t frame[FRAME_MAX];

	if (size < 1)
		return 0;
	if (!(data[0] & 1))
		refresh_neighbors();
	size_t offset = 1;
	while (offset + 3 <= size && frames < FRAMES_MAX) {
		uint8_t flags = data[offset];
		unsigned port = flags & 1;
		size_t length = (size_t)data[offset + 1] << 8 | data[offset + 2];
		offset += 3;
		if (length > size - offset)
			length = size - offset;
		if (length > FRAME_MAX)
			length = FRAME_MAX;
		memcpy(frame, data + offset, length);
		offset += length;
		frames++;

		/* a burst is on one port: a change of port ends the one building */
		if (count && port != burst_port) {
			pipeline_process_burst(&worker, burst_port, burst, (uint16_t)count);
			drain();
			count = 0;
		}
		if (count == 0)
			advance(flags >> 4);
		if (flags & 2)
			make_reply(frame, (unsigned)length, port);
		if (flags & 4)
			fix_checksums(frame, (unsigned)length);
		if (flags & 2)
			reply_sent(frame, (unsigned)length, port);
		burst_port = port;
		burst[count++] = mbuf_from(frame, (uint16_t)length);
		if ((flags & 8) || count == PIPELINE_BURST) {
			pipeline_process_burst(&worker, port, burst, (uint16_t)count);
			drain();
			count = 0;
		}
	}
	if (count) {
		pipeline_process_burst(&worker, burst_port, burst, (uint16_t)count);
		drain();
	}
	FUZZ_CHECK(rte_mempool_in_use_count(mempool) == 0);
	if (print_each)
		print_stats();
	return 0;
}
