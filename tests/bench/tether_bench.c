/*
 * tether_bench.c: the per-packet benchmark.  It pushes pre-built bursts of
 * real mbufs through pipeline_process_burst(), the one function the worker
 * loop, the unit tests and the fuzzers call: there is no copy of the packet
 * logic here, only frames in and frames out.
 *
 * What is timed, and what is not.  Each pipeline_process_burst() call is
 * bracketed by rte_rdtsc_precise(); the bracket's own cost is measured at
 * start and subtracted.  Writing the frames into the mbufs (what the NIC's
 * DMA does) and emptying the TX queues (worker_flush, the PMD's transmit and
 * its completion) happen outside the brackets: there is no PMD.  Their cost
 * is measured separately (scenario "overhead") so a reader can add it back.
 * The frame bytes are written just before each burst, so headers are
 * cache-hot; on a NIC they arrive in the LLC (DDIO) or in DRAM.
 *
 * Fixtures are Katran's kind: frames built field by field with
 * tests/unit/packet_builder.h, and the TLS byte streams of real OpenSSL
 * handshakes in tests/fixtures/tls, the same ones test_pipeline.c and
 * test_synproxy.c drive.  The worker is set up as those tests do: config_parse,
 * services_build with a registry, worker_init with two logical ports that no
 * NIC backs, every next hop marked resolved.
 *
 * Every scenario checks what came out (counts per port, counters) and the
 * exit status says whether all checks held; speed is never asserted.  The
 * median of --runs runs (after one warm-up run) is reported, as a Markdown
 * table on stdout and, with --json, as JSON.  docs/benchmarking.md explains
 * each scenario and how to read the figures.
 */
#define _GNU_SOURCE   /* RTLD_NEXT, memfd_create */
#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <jansson.h>
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_memory.h>
#include <rte_tcp.h>

#include "config.h"
#include "maglev.h"
#include "nat.h"
#include "pipeline.h"
#include "steer.h"
#include "synproxy.h"
#include "worker.h"
#include "../unit/packet_builder.h"

#define BURST        PIPELINE_BURST
#define RUNS_MAX     31
#define RESULTS_MAX  64
#define VIP          "192.0.2.20"
#define VIP_PORT     443
#define BACKENDS     8

/* ------------------------------------------------------------------------ */
/* options and results                                                      */

enum scenario {
	SCENARIO_ESTABLISHED, SCENARIO_NEW_SOURCE_IP, SCENARIO_SSL_SESSION,
	SCENARIO_PERSIST_LOOKUP, SCENARIO_MAGLEV, SCENARIO_OVERHEAD, SCENARIO_SCALING,
	SCENARIO_COUNT
};

static const char *const scenario_names[SCENARIO_COUNT] = {
	[SCENARIO_ESTABLISHED] = "established",
	[SCENARIO_NEW_SOURCE_IP] = "new-source-ip",
	[SCENARIO_SSL_SESSION] = "ssl-session",
	[SCENARIO_PERSIST_LOOKUP] = "persist-lookup",
	[SCENARIO_MAGLEV] = "maglev",
	[SCENARIO_OVERHEAD] = "overhead",
	[SCENARIO_SCALING] = "scaling",
};

struct options {
	bool scenarios[SCENARIO_COUNT];
	unsigned runs;
	bool quick;
	bool thp;                  /* madvise(MADV_HUGEPAGE) the EAL memory when not on hugetlbfs */
	unsigned lcore;
	int second_lcore;          /* scaling: the second worker's CPU; -1: another one */
	uint64_t seed;
	unsigned flow_sizes[8], flow_size_count;   /* --flows: established table sizes */
	const char *json_path, *markdown_path, *fixtures;
};

/* One row of the report: `runs` samples of cycles per `unit`. */
struct result {
	const char *scenario;
	char name[64];
	const char *unit;          /* "packet", "connection", "lookup", "flow", "build", "entry" */
	uint64_t items;            /* units per run */
	unsigned runs;
	double samples[RUNS_MAX];
	bool checked;              /* every check of the scenario held */
	bool overhead;             /* not part of the pipeline's figure */
	json_t *extra;             /* scenario-specific details, or NULL */
};

static struct options options = { .runs = 5, .thp = true, .seed = 0x7e7e7e7e, .second_lcore = -1 };
static struct result results[RESULTS_MAX];
static unsigned result_count;
static bool all_checks_held = true;
static uint64_t tsc_hz;
static uint64_t bracket_cycles;   /* cost of an empty rte_rdtsc_precise() bracket */
static uint64_t clock_offset;     /* added to the TSC for worker->now: time travel for expiry */
static struct rte_mempool *mempool;
static char memory_mode[96];

static struct result *
result_add(const char *scenario, const char *unit, uint64_t items, const char *format, ...)
	__attribute__((format(printf, 4, 5)));

static struct result *
result_add(const char *scenario, const char *unit, uint64_t items, const char *format, ...)
{
	if (result_count == RESULTS_MAX) {
		fprintf(stderr, "tether-bench: too many results\n");
		exit(1);
	}
	struct result *result = &results[result_count++];
	va_list arguments;

	memset(result, 0, sizeof(*result));
	result->scenario = scenario;
	result->unit = unit;
	result->items = items;
	result->checked = true;
	va_start(arguments, format);
	vsnprintf(result->name, sizeof(result->name), format, arguments);
	va_end(arguments);
	return result;
}

static void
result_sample(struct result *result, uint64_t cycles, uint64_t items)
{
	if (result->runs < RUNS_MAX && items > 0)
		result->samples[result->runs++] = (double)cycles / (double)items;
}

/* A check that failed: said at once, and in the exit status. */
static bool
check(struct result *result, bool condition, const char *what)
{
	if (!condition) {
		fprintf(stderr, "tether-bench: CHECK FAILED in %s / %s: %s\n",
			result ? result->scenario : "setup", result ? result->name : "-", what);
		if (result)
			result->checked = false;
		all_checks_held = false;
	}
	return condition;
}

static int
compare_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double
median_of(const struct result *result, double *minimum, double *maximum)
{
	double sorted[RUNS_MAX];

	if (result->runs == 0) {
		*minimum = *maximum = 0;
		return 0;
	}
	memcpy(sorted, result->samples, sizeof(double) * result->runs);
	qsort(sorted, result->runs, sizeof(double), compare_double);
	*minimum = sorted[0];
	*maximum = sorted[result->runs - 1];
	return result->runs % 2 ? sorted[result->runs / 2] :
	       (sorted[result->runs / 2 - 1] + sorted[result->runs / 2]) / 2;
}

/* ------------------------------------------------------------------------ */
/* small helpers                                                            */

static uint64_t rng_state;

static inline uint64_t
splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static inline uint64_t
rng_next(void)
{
	rng_state += 0x9e3779b97f4a7c15ull;
	return splitmix64(rng_state);
}

/* Uniform in [0, n): multiply-shift, no division. */
static inline uint32_t
rng_below(uint32_t n)
{
	return (uint32_t)(((rng_next() >> 32) * n) >> 32);
}

static inline uint64_t
worker_clock(void)
{
	return rte_rdtsc() + clock_offset;
}

/* Run one burst through the pipeline; returns the cycles it took, the timer
 * bracket's own cost taken off.  What it sent is left in worker->tx. */
static inline uint64_t
timed_burst(struct worker *worker, unsigned port, struct rte_mbuf **packets, uint16_t count)
{
	worker->now = worker_clock();
	uint64_t start = rte_rdtsc_precise();
	pipeline_process_burst(worker, port, packets, count);
	uint64_t cycles = rte_rdtsc_precise() - start;
	return cycles > bracket_cycles ? cycles - bracket_cycles : 0;
}

static void
calibrate_bracket(void)
{
	uint64_t best = UINT64_MAX;
	for (unsigned i = 0; i < 10000; i++) {
		uint64_t start = rte_rdtsc_precise();
		uint64_t cycles = rte_rdtsc_precise() - start;
		if (cycles < best)
			best = cycles;
	}
	bracket_cycles = best;
}

/* What the pipeline queued for transmission, by logical port. */
struct outputs {
	unsigned count[2];
	struct rte_mbuf *frames[2][PIPELINE_TX_MAX];
};

/* Take everything out of the worker's TX queues (what worker_flush would send). */
static void
take_outputs(struct worker *worker, struct outputs *out)
{
	for (unsigned p = 0; p < 2; p++) {
		out->count[p] = worker->tx[p].count;
		memcpy(out->frames[p], worker->tx[p].packets, sizeof(struct rte_mbuf *) * worker->tx[p].count);
		worker->tx[p].count = 0;
	}
}

static void
free_outputs(struct outputs *out)
{
	for (unsigned p = 0; p < 2; p++) {
		rte_pktmbuf_free_bulk(out->frames[p], out->count[p]);
		out->count[p] = 0;
	}
}

static inline uint8_t *frame_of(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, uint8_t *); }
static inline uint8_t *tcp_of(struct rte_mbuf *m) { return frame_of(m) + 34; }
static inline uint32_t load32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint16_t load16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint32_t source_of(struct rte_mbuf *m) { return load32(frame_of(m) + 26); }
static inline uint32_t destination_of(struct rte_mbuf *m) { return load32(frame_of(m) + 30); }
static inline uint16_t source_port_of(struct rte_mbuf *m) { return load16(tcp_of(m)); }
static inline uint16_t destination_port_of(struct rte_mbuf *m) { return load16(tcp_of(m) + 2); }
static inline uint32_t seq_of(struct rte_mbuf *m) { return rte_be_to_cpu_32(load32(tcp_of(m) + 4)); }

/* Put `length` bytes of `bytes` in `m` as a freshly received frame. */
static inline void
mbuf_load(struct rte_mbuf *m, const uint8_t *bytes, uint32_t length)
{
	rte_pktmbuf_reset(m);
	memcpy(rte_pktmbuf_append(m, (uint16_t)length), bytes, length);
}

/* A 64-byte frame (60 bytes + FCS) of `template` with its 4-tuple replaced;
 * checksums stay right (RFC 1624 updates, nat.h). */
static inline void
mbuf_load_tuple(struct rte_mbuf *m, const struct test_frame *template, uint32_t source,
		uint16_t source_port, uint32_t destination, uint16_t destination_port)
{
	mbuf_load(m, template->bytes, template->length);
	uint8_t *ip = frame_of(m) + PACKET_ETHER_HEADER_LENGTH, *l4 = ip + PACKET_IPV4_HEADER_LENGTH;
	nat_rewrite(ip, l4, IPPROTO_TCP, NAT_IP_SOURCE, NAT_L4_SOURCE_PORT, source, source_port);
	nat_rewrite(ip, l4, IPPROTO_TCP, NAT_IP_DESTINATION, NAT_L4_DESTINATION_PORT, destination,
		    destination_port);
}

static void
alloc_burst(struct rte_mbuf **packets, unsigned count)
{
	if (rte_pktmbuf_alloc_bulk(mempool, packets, count) != 0) {
		fprintf(stderr, "tether-bench: mempool empty\n");
		exit(1);
	}
}

/* ------------------------------------------------------------------------ */
/* a worker without NICs, as the unit tests build one                       */

struct bench_worker {
	struct config config;
	struct services services;
	struct services_registry *registry;
	struct worker worker;
	bool ready;
};

static const struct rte_ether_addr public_mac = {{ 0x02, 0xaa, 0, 0, 0, 0x01 }};
static const struct rte_ether_addr private_mac = {{ 0x02, 0xaa, 0, 0, 0, 0x02 }};

/*
 * Build a worker for one service on VIP:443 with `persistence` (a JSON object)
 * over BACKENDS backends, with the given table sizes.  0 or -1 (said why).
 */
static int
bench_worker_create_id(struct bench_worker *bench, unsigned id, const char *persistence,
		       uint32_t flow_capacity, uint32_t session_capacity, uint32_t binding_capacity)
{
	char text[4096], backends[1024] = "";
	struct config_errors errors;
	char error[256];
	struct dataplane_port ports[2] = {
		{ .port_id = 0, .mac = public_mac, .address = builder_address("198.51.100.2"),
		  .netmask = builder_address("255.255.255.128") },
		{ .port_id = 1, .mac = private_mac, .address = builder_address("198.51.100.129"),
		  .netmask = builder_address("255.255.255.128") },
	};

	for (unsigned b = 0; b < BACKENDS; b++) {
		size_t used = strlen(backends);
		snprintf(backends + used, sizeof(backends) - used,
			 "%s{ \"name\": \"be%u\", \"address\": \"198.51.100.%u\", \"port\": 443 }",
			 b ? ", " : "", b + 1, 131 + b);
	}
	/* Plain services never switch to cookies here: each scenario offers new
	 * SYNs far faster than any client would, and the overload ladder
	 * (overload.h) would turn the plain path it measures into the cookie one. */
	const char *cookies = strstr(persistence, "ssl-session") ? "" : ", \"syn_cookies\": \"never\"";
	snprintf(text, sizeof(text),
		 "{ \"dataplane\": { \"ports\": {"
		 "    \"public\": { \"device\": \"net_null0\", \"address\": \"198.51.100.2/25\", \"gateway\": \"198.51.100.1\" },"
		 "    \"private\": { \"device\": \"net_null1\", \"address\": \"198.51.100.129/25\" } },"
		 "  \"flows\": { \"capacity\": %u }, \"sessions\": { \"capacity\": %u },"
		 "  \"binding\": { \"capacity\": %u } },"
		 "  \"services\": [ { \"name\": \"bench\", \"vip\": \"" VIP "\", \"port\": %u, \"pool\": \"bench\","
		 "      \"persistence\": %s%s } ],"
		 "  \"pools\": { \"bench\": { \"backends\": [ %s ] } } }",
		 flow_capacity < 1024 ? 1024 : flow_capacity,
		 session_capacity < 1024 ? 1024 : session_capacity,
		 binding_capacity, VIP_PORT, persistence, cookies, backends);

	memset(bench, 0, offsetof(struct bench_worker, worker));
	if (config_parse(text, strlen(text), &bench->config, &errors) < 0) {
		for (unsigned i = 0; i < errors.count && i < CONFIG_ERRORS_MAX; i++)
			fprintf(stderr, "tether-bench: config %s: %s\n", errors.errors[i].path,
				errors.errors[i].message);
		return -1;
	}
	bench->registry = calloc(1, sizeof(*bench->registry));
	if (!bench->registry || services_build(&bench->services, &bench->config, bench->registry) < 0) {
		fprintf(stderr, "tether-bench: services_build failed\n");
		return -1;
	}
	if (worker_init(&bench->worker, id, &bench->config, &bench->services, mempool, ports,
			error, sizeof(error)) < 0) {
		fprintf(stderr, "tether-bench: worker_init: %s\n", error);
		return -1;
	}
	struct worker *worker = &bench->worker;
	worker->now = worker_clock();
	for (unsigned i = 0; i < worker->neighbors.count; i++) {
		struct neighbor *neighbor = &worker->neighbors.entries[i];
		neighbor->state = NEIGHBOR_REACHABLE;
		neighbor->confirmed = worker->now;
		neighbor->next_probe = UINT64_MAX;
		neighbor->mac = (struct rte_ether_addr){{ 0x02, 0xcc, 0, 0, 0, (uint8_t)i }};
	}
	bench->ready = true;
	return 0;
}

/* The usual single worker (id 0: its tables' names). */
static int
bench_worker_create(struct bench_worker *bench, const char *persistence, uint32_t flow_capacity,
		    uint32_t session_capacity, uint32_t binding_capacity)
{
	return bench_worker_create_id(bench, 0, persistence, flow_capacity, session_capacity,
				      binding_capacity);
}

static void
bench_worker_free(struct bench_worker *bench)
{
	if (!bench->ready)
		return;
	worker_free(&bench->worker);
	services_free(&bench->services);
	config_free(&bench->config);
	free(bench->registry);
	bench->ready = false;
}

static uint64_t
drops_total(const struct worker *worker)
{
	uint64_t total = 0;
	for (unsigned r = 1; r < PACKET_REASON_COUNT; r++)
		total += worker->stats.drops[r];
	return total;
}

/* The drop reasons that moved, for a failed check's message. */
static void
print_drops(const struct worker *worker)
{
	for (unsigned r = 1; r < PACKET_REASON_COUNT; r++)
		if (worker->stats.drops[r])
			fprintf(stderr, "  drops.%s = %" PRIu64 "\n", packet_reason_name(r),
				worker->stats.drops[r]);
}

/* ------------------------------------------------------------------------ */
/* scenario: established NAT flows                                          */

struct flow_set {
	uint32_t count;
	uint32_t *client;          /* network order */
	uint16_t *client_port;
	uint32_t *backend;         /* learned from the SYN that came out */
	uint16_t *backend_port;
};

/*
 * Clients.  A million flows need more client addresses than the documentation
 * ranges hold, so these in-process frames, which never reach a wire, use the
 * benchmarking range 198.18.0.0/15 (RFC 2544; 131,072 addresses).
 * Flow i: client 198.18.0.0 + i/8, port 40000 + i%8 (eight connections a client).
 */
#define BENCH_CLIENTS      0xc6120000u   /* 198.18.0.0, host order */
#define BENCH_CLIENT_COUNT 131072u
static inline uint32_t bench_client(uint64_t n) { return rte_cpu_to_be_32(BENCH_CLIENTS + (uint32_t)(n % BENCH_CLIENT_COUNT)); }
static inline uint32_t flow_client(uint32_t i) { return bench_client(i >> 3); }
static inline uint16_t flow_client_port(uint32_t i) { return rte_cpu_to_be_16((uint16_t)(40000 + (i & 7))); }

static struct test_frame forward_template[3], reverse_template[3];
enum { TEMPLATE_HANDSHAKE, TEMPLATE_ACK_SYNACK, TEMPLATE_DATA };

/* The fixtures: 64-byte TCP frames client -> VIP and backend -> client. */
static void
build_templates(void)
{
	builder_ipv4(&forward_template[TEMPLATE_HANDSHAKE], &(struct test_tuple){
		"198.18.0.1", VIP, 40000, VIP_PORT, IPPROTO_TCP, RTE_TCP_SYN_FLAG, 0 });
	builder_ipv4(&forward_template[TEMPLATE_ACK_SYNACK], &(struct test_tuple){
		"198.18.0.1", VIP, 40000, VIP_PORT, IPPROTO_TCP, RTE_TCP_ACK_FLAG, 0 });
	builder_ipv4(&forward_template[TEMPLATE_DATA], &(struct test_tuple){
		"198.18.0.1", VIP, 40000, VIP_PORT, IPPROTO_TCP, RTE_TCP_ACK_FLAG | RTE_TCP_PSH_FLAG, 6 });
	builder_ipv4(&reverse_template[TEMPLATE_ACK_SYNACK], &(struct test_tuple){
		"198.51.100.131", "198.18.0.1", 443, 40000, IPPROTO_TCP,
		RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG, 0 });
	builder_ipv4(&reverse_template[TEMPLATE_DATA], &(struct test_tuple){
		"198.51.100.131", "198.18.0.1", 443, 40000, IPPROTO_TCP, RTE_TCP_ACK_FLAG | RTE_TCP_PSH_FLAG, 6 });
}

/*
 * Open flows [0, count) through the pipeline, 32 at a time: client SYN,
 * backend SYN-ACK, client ACK.  They end established.  Returns false when a
 * frame did not come out where it should.
 */
static bool
open_flows(struct bench_worker *bench, struct flow_set *set, struct result *result)
{
	struct worker *worker = &bench->worker;
	struct rte_mbuf *burst[BURST];
	struct outputs out;

	for (uint32_t first = 0; first < set->count; first += BURST) {
		unsigned n = set->count - first < BURST ? set->count - first : BURST;
		/* client SYN -> a backend */
		alloc_burst(burst, n);
		for (unsigned k = 0; k < n; k++)
			mbuf_load_tuple(burst[k], &forward_template[TEMPLATE_HANDSHAKE], set->client[first + k],
					set->client_port[first + k], builder_address(VIP),
					rte_cpu_to_be_16(VIP_PORT));
		timed_burst(worker, PORT_PUBLIC, burst, (uint16_t)n);
		take_outputs(worker, &out);
		if (!check(result, out.count[PORT_PRIVATE] == n && out.count[PORT_PUBLIC] == 0,
			   "every SYN reaches a backend")) {
			print_drops(worker);
			free_outputs(&out);
			return false;
		}
		for (unsigned k = 0; k < n; k++) {
			struct rte_mbuf *m = out.frames[PORT_PRIVATE][k];
			check(result, source_port_of(m) == set->client_port[first + k] &&
				      source_of(m) == set->client[first + k], "SYNs come out in order");
			set->backend[first + k] = destination_of(m);
			set->backend_port[first + k] = destination_port_of(m);
		}
		/* backend SYN-ACK -> the client */
		for (unsigned k = 0; k < n; k++)
			mbuf_load_tuple(out.frames[PORT_PRIVATE][k], &reverse_template[TEMPLATE_ACK_SYNACK],
					set->backend[first + k], set->backend_port[first + k],
					set->client[first + k], set->client_port[first + k]);
		memcpy(burst, out.frames[PORT_PRIVATE], sizeof(burst[0]) * n);
		timed_burst(worker, PORT_PRIVATE, burst, (uint16_t)n);
		take_outputs(worker, &out);
		if (!check(result, out.count[PORT_PUBLIC] == n, "every SYN-ACK reaches its client")) {
			free_outputs(&out);
			return false;
		}
		/* client ACK: established */
		for (unsigned k = 0; k < n; k++)
			mbuf_load_tuple(out.frames[PORT_PUBLIC][k], &forward_template[TEMPLATE_ACK_SYNACK],
					set->client[first + k], set->client_port[first + k],
					builder_address(VIP), rte_cpu_to_be_16(VIP_PORT));
		memcpy(burst, out.frames[PORT_PUBLIC], sizeof(burst[0]) * n);
		timed_burst(worker, PORT_PUBLIC, burst, (uint16_t)n);
		take_outputs(worker, &out);
		bool ok = check(result, out.count[PORT_PRIVATE] == n, "every ACK reaches its backend");
		free_outputs(&out);
		if (!ok)
			return false;
	}
	return check(result, worker->flows.live == set->count, "the table holds every flow");
}

static void
bench_established_size(uint32_t flow_count, uint64_t packets_per_run)
{
	struct bench_worker *bench = calloc(1, sizeof(*bench));
	struct flow_set set = { .count = flow_count };
	char label[32];

	if (flow_count >= 1000000)
		snprintf(label, sizeof(label), "%uM flows", flow_count / 1000000);
	else if (flow_count >= 1000)
		snprintf(label, sizeof(label), "%uK flows", flow_count / 1000);
	else
		snprintf(label, sizeof(label), "%u flows", flow_count);
	struct result *both = result_add("established", "packet", packets_per_run, "%s, both directions", label);
	struct result *forward = result_add("established", "packet", packets_per_run / 2, "%s, client -> backend", label);
	struct result *reverse = result_add("established", "packet", packets_per_run / 2, "%s, backend -> client", label);

	set.client = malloc(sizeof(uint32_t) * flow_count);
	set.client_port = malloc(sizeof(uint16_t) * flow_count);
	set.backend = malloc(sizeof(uint32_t) * flow_count);
	set.backend_port = malloc(sizeof(uint16_t) * flow_count);
	if (!bench || !set.client || !set.client_port || !set.backend || !set.backend_port ||
	    bench_worker_create(bench, "{ \"mode\": \"none\" }", flow_count, 1024, 16) < 0) {
		check(both, false, "setup");
		goto out;
	}
	for (uint32_t i = 0; i < flow_count; i++) {
		set.client[i] = flow_client(i);
		set.client_port[i] = flow_client_port(i);
	}
	uint64_t setup_start = rte_rdtsc();
	if (!open_flows(bench, &set, both))
		goto out;
	both->extra = json_pack("{s:f}", "setup_seconds", (double)(rte_rdtsc() - setup_start) / (double)tsc_hz);

	struct worker *worker = &bench->worker;
	struct rte_mbuf *burst[BURST];
	struct outputs out;
	uint64_t drops_before = drops_total(worker);
	alloc_burst(burst, BURST);
	for (unsigned run = 0; run <= options.runs; run++) {
		uint64_t cycles[2] = { 0, 0 }, packets[2] = { 0, 0 };
		for (uint64_t sent = 0; sent < packets_per_run; sent += BURST) {
			/* the worker polls public then private: alternate */
			unsigned direction = (unsigned)(sent / BURST) & 1;
			unsigned port = direction == FLOW_FORWARD ? PORT_PUBLIC : PORT_PRIVATE;
			for (unsigned k = 0; k < BURST; k++) {
				uint32_t i = rng_below(flow_count);
				if (direction == FLOW_FORWARD)
					mbuf_load_tuple(burst[k], &forward_template[TEMPLATE_DATA], set.client[i],
							set.client_port[i], builder_address(VIP),
							rte_cpu_to_be_16(VIP_PORT));
				else
					mbuf_load_tuple(burst[k], &reverse_template[TEMPLATE_DATA], set.backend[i],
							set.backend_port[i], set.client[i], set.client_port[i]);
			}
			cycles[direction] += timed_burst(worker, port, burst, BURST);
			packets[direction] += BURST;
			take_outputs(worker, &out);
			unsigned to = direction == FLOW_FORWARD ? PORT_PRIVATE : PORT_PUBLIC;
			if (!check(both, out.count[to] == BURST && out.count[to ^ 1] == 0,
				   "every packet of an established flow comes out, on the other side")) {
				print_drops(worker);
				free_outputs(&out);   /* the burst's mbufs, and any reply */
				goto out;
			}
			/* the frames that came out are the next burst's mbufs: no PMD, no free */
			memcpy(burst, out.frames[to], sizeof(burst));
		}
		if (run == 0)
			continue;   /* warm-up */
		result_sample(both, cycles[0] + cycles[1], packets[0] + packets[1]);
		result_sample(forward, cycles[0], packets[0]);
		result_sample(reverse, cycles[1], packets[1]);
	}
	check(both, drops_total(worker) == drops_before, "no drops");
	check(both, worker->flows.live == flow_count, "no flow created or lost");
	rte_pktmbuf_free_bulk(burst, BURST);
out:
	forward->checked = reverse->checked = both->checked;
	if (bench)
		bench_worker_free(bench);
	free(bench);
	free(set.client);
	free(set.client_port);
	free(set.backend);
	free(set.backend_port);
}

static void
bench_established(void)
{
	if (options.flow_size_count) {
		for (unsigned i = 0; i < options.flow_size_count; i++)
			bench_established_size(options.flow_sizes[i], options.quick ? 1 << 16 : 1 << 21);
		return;
	}
	if (options.quick) {
		bench_established_size(1000, 1 << 16);
		bench_established_size(10000, 1 << 16);
		return;
	}
	bench_established_size(1000, 1 << 21);
	bench_established_size(100000, 1 << 21);
	bench_established_size(1000000, 1 << 21);
}

/* ------------------------------------------------------------------------ */
/* scenario: new source-ip connections, and their expiry                    */

static void
bench_new_source_ip(void)
{
	uint32_t per_run = options.quick ? 4096 : 131072;   /* a multiple of 32 */
	struct bench_worker *bench = calloc(1, sizeof(*bench));
	struct result *syn = result_add("new-source-ip", "packet", per_run,
					"SYN: schedule, persistence insert, flow insert");
	struct result *expiry = result_add("new-source-ip", "flow", per_run,
					   "pipeline_expire, per flow (and its persistence entry)");

	/* tables twice the live set: the sweep walks empty slots too */
	if (!bench || bench_worker_create(bench, "{ \"mode\": \"source-ip\" }", per_run * 2,
					  per_run * 2, 16) < 0) {
		check(syn, false, "setup");
		expiry->checked = false;
		free(bench);
		return;
	}
	struct worker *worker = &bench->worker;
	struct rte_mbuf *burst[BURST];
	struct outputs out;
	uint64_t slots_scanned = 0;

	for (unsigned run = 0; run <= options.runs; run++) {
		uint64_t cycles = 0, inserted = worker->stats.persist_inserted;
		for (uint32_t first = 0; first < per_run; first += BURST) {
			alloc_burst(burst, BURST);
			for (unsigned k = 0; k < BURST; k++) {
				/* every client is new within a run (the last run's expired) */
				uint32_t client = bench_client(first + k);
				mbuf_load_tuple(burst[k], &forward_template[TEMPLATE_HANDSHAKE], client,
						rte_cpu_to_be_16((uint16_t)(1024 + rng_below(60000))),
						builder_address(VIP), rte_cpu_to_be_16(VIP_PORT));
			}
			cycles += timed_burst(worker, PORT_PUBLIC, burst, BURST);
			take_outputs(worker, &out);
			check(syn, out.count[PORT_PRIVATE] == BURST, "every SYN reaches a backend");
			free_outputs(&out);
		}
		check(syn, worker->stats.persist_inserted - inserted == per_run,
		      "one persistence entry per new client");
		check(syn, worker->flows.live == per_run, "one flow per SYN");

		/* time passes beyond the SYN and persistence timeouts: sweep it all,
		 * 1,024 slots a call as the worker does every millisecond */
		clock_offset += (uint64_t)(bench->config.services[0].persistence.timeout_s + 60) * tsc_hz;
		uint64_t expire_cycles = 0, expired = 0, calls = 0;
		while ((worker->flows.live || worker->persist.live) && calls < 1000000) {
			worker->now = worker_clock();
			uint64_t start = rte_rdtsc_precise();
			expired += pipeline_expire(worker, 1024);
			expire_cycles += rte_rdtsc_precise() - start - bracket_cycles;
			calls++;
		}
		check(expiry, expired == per_run && worker->persist.live == 0,
		      "every flow and persistence entry expires");
		slots_scanned = calls * 1024;
		if (run == 0)
			continue;
		result_sample(syn, cycles, per_run);
		result_sample(expiry, expire_cycles, expired);
	}
	expiry->extra = json_pack("{s:I,s:I,s:I}", "flow_capacity", (json_int_t)worker->flows.capacity,
				  "persist_capacity", (json_int_t)worker->persist.capacity,
				  "slots_scanned_last_run", (json_int_t)slots_scanned);
	check(syn, drops_total(worker) == 0, "no drops");
	bench_worker_free(bench);
	free(bench);
}

/* ------------------------------------------------------------------------ */
/* scenario: ssl-session connections, and persistence lookups                */

struct stream { uint8_t bytes[8192]; size_t length; };

/* Read a TLS fixture: '#' lines skipped, the rest hex (test_synproxy.c's format). */
static bool
load_stream(const char *name, struct stream *stream)
{
	char path[512], line[512];
	snprintf(path, sizeof(path), "%s/%s.hex", options.fixtures, name);
	FILE *file = fopen(path, "r");
	if (!file) {
		fprintf(stderr, "tether-bench: %s: %s (use --fixtures DIR)\n", path, strerror(errno));
		return false;
	}
	stream->length = 0;
	while (fgets(line, sizeof(line), file)) {
		if (line[0] == '#')
			continue;
		for (char *p = line; p[0] && p[1] && stream->length < sizeof(stream->bytes);) {
			unsigned byte;
			if (sscanf(p, "%2x", &byte) != 1) {
				p++;
				continue;
			}
			stream->bytes[stream->length++] = (uint8_t)byte;
			p += 2;
		}
	}
	fclose(file);
	return stream->length > 0;
}

static size_t
first_record_length(const struct stream *stream)
{
	return 5 + (size_t)(stream->bytes[3] << 8 | stream->bytes[4]);
}

/* Offset of the 32-byte session ID in a ClientHello or ServerHello record:
 * record header 5, handshake header 4, version 2, random 32, length 1. */
#define HELLO_SESSION_ID_OFFSET 44

/* A synthetic 32-byte session ID, or 16-byte key name, for index `i`. */
static void
synthetic_id(uint64_t i, uint8_t *bytes, unsigned length)
{
	for (unsigned w = 0; w < length / 8; w++) {
		uint64_t word = splitmix64(i * 4 + w);
		memcpy(bytes + w * 8, &word, 8);
	}
}

/* The key synproxy.c builds for a session ID or key name (memset, then fields). */
static void
session_key_for(struct session_key *key, uint16_t pool, enum session_kind kind, uint64_t i)
{
	memset(key, 0, sizeof(*key));
	key->pool = pool;
	key->kind = (uint8_t)kind;
	key->length = kind == SESSION_KEY_NAME ? TLS_TICKET_KEY_NAME_LENGTH : 32;
	synthetic_id(i, key->bytes, key->length);
}

/* A TCP segment with options and payload, checksums right (as test_synproxy.c). */
static struct rte_mbuf *
segment(uint32_t source, uint32_t destination, uint16_t source_port, uint16_t destination_port,
	uint32_t seq, uint32_t ack, uint8_t flags, const uint8_t *tcp_options, unsigned options_length,
	const uint8_t *payload, unsigned payload_length)
{
	static struct test_frame frame;
	uint8_t *ip = frame.bytes + PACKET_ETHER_HEADER_LENGTH, *tcp = ip + PACKET_IPV4_HEADER_LENGTH;
	unsigned tcp_length = 20 + options_length;
	uint16_t total = (uint16_t)(20 + tcp_length + payload_length);
	struct rte_mbuf *m;

	memset(frame.bytes, 0, 64);
	builder_ethernet(&frame, 0x0800);
	ip[0] = 0x45;
	nat_store16(ip + 2, rte_cpu_to_be_16(total));
	nat_store16(ip + 4, 0);
	nat_store16(ip + 6, rte_cpu_to_be_16(0x4000));   /* DF */
	ip[8] = 64;
	ip[9] = IPPROTO_TCP;
	nat_store32(ip + 12, source);
	nat_store32(ip + 16, destination);
	builder_fix_ip_checksum(&frame);
	nat_store16(tcp, source_port);
	nat_store16(tcp + 2, destination_port);
	nat_store32(tcp + 4, rte_cpu_to_be_32(seq));
	nat_store32(tcp + 8, rte_cpu_to_be_32(ack));
	tcp[12] = (uint8_t)((tcp_length / 4) << 4);
	tcp[13] = flags;
	nat_store16(tcp + 14, rte_cpu_to_be_16(501));   /* window (scaled) */
	nat_store16(tcp + 16, 0);
	nat_store16(tcp + 18, 0);
	/* memcpy from NULL is undefined even for 0 bytes (UBSan's nonnull-attribute) */
	if (options_length)
		memcpy(tcp + 20, tcp_options, options_length);
	if (payload_length)
		memcpy(tcp + tcp_length, payload, payload_length);
	nat_store16(tcp + 16, builder_l4_checksum(ip));
	frame.length = 14u + total < 60 ? 60 : 14u + total;
	alloc_burst(&m, 1);
	mbuf_load(m, frame.bytes, frame.length);
	return m;
}

/* MSS 1460, SACK permitted, timestamps, window scale 7: a Linux client's SYN */
static const uint8_t syn_options[] = { 2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0x03, 0xe8, 0, 0, 0, 0, 1, 3, 3, 7 };
static const uint8_t synack_options[] = { 2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0x20, 0, 0, 0, 0x03, 0xe9, 1, 3, 3, 7 };
static const uint8_t timestamp_options[] = { 1, 1, 8, 10, 0, 0, 0x03, 0xe9, 0, 0, 0, 0 };

/* The worker with ssl-session tables preloaded: shared by ssl-session and
 * persist-lookup. */
static struct bench_worker *tls_bench;
static uint32_t preloaded_ids, preloaded_names;
static uint16_t tls_pool_id;

static bool
tls_worker_ready(void)
{
	if (tls_bench)
		return tls_bench->ready;
	preloaded_ids = options.quick ? 10000 : 1000000;
	preloaded_names = options.quick ? 1000 : 100000;
	uint32_t connections = options.quick ? 256 : 8192;
	/* room for the preload, the sessions the full handshakes teach, and a
	 * fallback persistence entry per new client */
	uint32_t sessions = preloaded_ids + preloaded_names + 2 * (options.runs + 1) * connections + 4096;
	uint32_t flows = 2 * (options.runs + 1) * connections + 4096;

	tls_bench = calloc(1, sizeof(*tls_bench));
	struct result *insert = result_add("persist-lookup", "entry", preloaded_ids + preloaded_names,
					   "persist_insert, preloading the session table");
	if (!tls_bench || bench_worker_create(tls_bench,
			"{ \"mode\": \"ssl-session\", \"fallback\": \"source-ip\" }",
			flows, sessions, 1024) < 0) {
		check(insert, false, "setup");
		return false;
	}
	struct worker *worker = &tls_bench->worker;
	struct persist_table *table = &worker->synproxy->sessions;
	tls_pool_id = tls_bench->services.services[0].pool_id;
	uint64_t expires = worker_clock() + 86400 * tsc_hz, cycles = 0;
	struct session_key key;
	for (uint32_t i = 0; i < preloaded_ids + preloaded_names; i++) {
		bool name = i >= preloaded_ids;
		session_key_for(&key, tls_pool_id, name ? SESSION_KEY_NAME : SESSION_ID,
				name ? i - preloaded_ids : i);
		uint16_t backend = tls_bench->services.backends[rng_below(tls_bench->services.backend_count)].id;
		uint64_t start = rte_rdtsc_precise();
		int position = persist_insert(table, &key, backend, expires);
		cycles += rte_rdtsc_precise() - start - bracket_cycles;
		if (position < 0) {
			check(insert, false, "the session table takes the preload");
			return false;
		}
	}
	result_sample(insert, cycles, preloaded_ids + preloaded_names);
	check(insert, table->live == preloaded_ids + preloaded_names, "every preloaded key is live");
	return true;
}

struct tls_connection {
	uint32_t client;           /* network order */
	uint16_t port;             /* network order */
	uint32_t isn, cookie, backend_isn;
	uint32_t backend;
	uint16_t backend_port;
	uint8_t hello[1024];
	size_t hello_length;
	uint8_t server[8192];
	size_t server_length;
};

enum tls_stage { STAGE_SYN, STAGE_ACK, STAGE_HELLO, STAGE_SYNACK, STAGE_SERVER, STAGE_CLIENT_ACK, STAGE_COUNT };
static const char *const stage_names[STAGE_COUNT] = {
	"client SYN -> cookie SYN-ACK", "client ACK (cookie checked, binding)",
	"ClientHello -> ACK + backend SYN", "backend SYN-ACK -> hello replay",
	"server handshake -> client (learning)", "client ACK -> backend (spliced)",
};

static struct tls_connection group[BURST];

/* Which connection of the group a frame belongs to (by client address). */
static int
connection_of(uint32_t client)
{
	for (unsigned c = 0; c < BURST; c++)
		if (group[c].client == client)
			return (int)c;
	return -1;
}

/*
 * One group of 32 connections in lockstep: each stage is one burst with one
 * packet of every connection, as a loaded worker sees them.  Adds the cycles
 * of each stage to stage_cycles; false when a frame went astray.
 */
static bool
tls_group(struct worker *worker, struct result *result, uint64_t *stage_cycles, uint64_t *packets)
{
	struct rte_mbuf *burst[BURST];
	struct outputs out;
	const uint32_t vip = builder_address(VIP);
	const uint16_t vip_port = rte_cpu_to_be_16(VIP_PORT);

	/* 1. SYN -> a cookie SYN-ACK, no state */
	for (unsigned c = 0; c < BURST; c++)
		burst[c] = segment(group[c].client, vip, group[c].port, vip_port, group[c].isn, 0,
				   RTE_TCP_SYN_FLAG, syn_options, sizeof(syn_options), NULL, 0);
	stage_cycles[STAGE_SYN] += timed_burst(worker, PORT_PUBLIC, burst, BURST);
	take_outputs(worker, &out);
	if (!check(result, out.count[PORT_PUBLIC] == BURST && out.count[PORT_PRIVATE] == 0,
		   "a cookie SYN-ACK for every SYN"))
		goto fail;
	for (unsigned k = 0; k < BURST; k++) {
		int c = connection_of(destination_of(out.frames[PORT_PUBLIC][k]));
		if (!check(result, c >= 0, "SYN-ACK to a known client"))
			goto fail;
		group[c].cookie = seq_of(out.frames[PORT_PUBLIC][k]);
	}
	free_outputs(&out);

	/* 2. the handshake's ACK (Linux sends it alone, the hello follows) */
	for (unsigned c = 0; c < BURST; c++)
		burst[c] = segment(group[c].client, vip, group[c].port, vip_port, group[c].isn + 1,
				   group[c].cookie + 1, RTE_TCP_ACK_FLAG, timestamp_options,
				   sizeof(timestamp_options), NULL, 0);
	stage_cycles[STAGE_ACK] += timed_burst(worker, PORT_PUBLIC, burst, BURST);
	take_outputs(worker, &out);
	if (!check(result, out.count[PORT_PUBLIC] == 0 && out.count[PORT_PRIVATE] == 0,
		   "a valid cookie ACK answers nothing"))
		goto fail;

	/* 3. the ClientHello -> ACK to the client, SYN to the chosen backend */
	for (unsigned c = 0; c < BURST; c++)
		burst[c] = segment(group[c].client, vip, group[c].port, vip_port, group[c].isn + 1,
				   group[c].cookie + 1, RTE_TCP_ACK_FLAG | RTE_TCP_PSH_FLAG,
				   timestamp_options, sizeof(timestamp_options), group[c].hello,
				   (unsigned)group[c].hello_length);
	stage_cycles[STAGE_HELLO] += timed_burst(worker, PORT_PUBLIC, burst, BURST);
	take_outputs(worker, &out);
	if (!check(result, out.count[PORT_PUBLIC] == BURST && out.count[PORT_PRIVATE] == BURST,
		   "every hello is ACKed and its backend gets a SYN"))
		goto fail;
	for (unsigned k = 0; k < BURST; k++) {
		struct rte_mbuf *m = out.frames[PORT_PRIVATE][k];
		int c = connection_of(source_of(m));
		if (!check(result, c >= 0 && seq_of(m) == group[c].isn, "backend SYN with the client's ISN"))
			goto fail;
		group[c].backend = destination_of(m);
		group[c].backend_port = destination_port_of(m);
	}
	free_outputs(&out);

	/* 4. the backend's SYN-ACK -> the hello replayed to it */
	for (unsigned c = 0; c < BURST; c++)
		burst[c] = segment(group[c].backend, group[c].client, group[c].backend_port, group[c].port,
				   group[c].backend_isn, group[c].isn + 1,
				   RTE_TCP_SYN_FLAG | RTE_TCP_ACK_FLAG, synack_options,
				   sizeof(synack_options), NULL, 0);
	stage_cycles[STAGE_SYNACK] += timed_burst(worker, PORT_PRIVATE, burst, BURST);
	take_outputs(worker, &out);
	if (!check(result, out.count[PORT_PRIVATE] == BURST && out.count[PORT_PUBLIC] == 0,
		   "every backend gets the hello replayed"))
		goto fail;
	free_outputs(&out);

	/* 5. the backend's handshake, in segments of at most 1,400 bytes -> the
	 * client, sequence-translated; the ServerHello is learned */
	for (size_t offset = 0; offset < group[0].server_length; offset += 1400) {
		for (unsigned c = 0; c < BURST; c++) {
			size_t length = group[c].server_length - offset < 1400 ?
					group[c].server_length - offset : 1400;
			burst[c] = segment(group[c].backend, group[c].client, group[c].backend_port,
					   group[c].port, group[c].backend_isn + 1 + (uint32_t)offset,
					   group[c].isn + 1 + (uint32_t)group[c].hello_length,
					   RTE_TCP_ACK_FLAG, timestamp_options, sizeof(timestamp_options),
					   group[c].server + offset, (unsigned)length);
		}
		stage_cycles[STAGE_SERVER] += timed_burst(worker, PORT_PRIVATE, burst, BURST);
		packets[STAGE_SERVER] += BURST;
		take_outputs(worker, &out);
		if (!check(result, out.count[PORT_PUBLIC] == BURST, "the server's bytes reach every client"))
			goto fail;
		free_outputs(&out);
	}

	/* 6. the client's ACK of it -> its backend, spliced */
	for (unsigned c = 0; c < BURST; c++)
		burst[c] = segment(group[c].client, vip, group[c].port, vip_port,
				   group[c].isn + 1 + (uint32_t)group[c].hello_length,
				   group[c].cookie + 1 + (uint32_t)group[c].server_length, RTE_TCP_ACK_FLAG,
				   timestamp_options, sizeof(timestamp_options), NULL, 0);
	stage_cycles[STAGE_CLIENT_ACK] += timed_burst(worker, PORT_PUBLIC, burst, BURST);
	take_outputs(worker, &out);
	if (!check(result, out.count[PORT_PRIVATE] == BURST, "the client's ACK reaches its backend"))
		goto fail;
	free_outputs(&out);
	for (unsigned s = 0; s < STAGE_COUNT; s++)
		if (s != STAGE_SERVER)
			packets[s] += BURST;
	return true;
fail:
	print_drops(worker);
	free_outputs(&out);
	return false;
}

/*
 * ssl-session connections end to end.  `resume`: TLS 1.2 resumptions whose
 * session IDs are among the preloaded ones (a hit in the 1 M table); else
 * full TLS 1.2 handshakes whose ServerHello teaches a new session ID.
 */
static void
bench_tls_case(bool resume, uint64_t *client_counter)
{
	static struct stream client_stream, server_stream;
	uint32_t per_run = options.quick ? 256 : 8192;
	bool ready = tls_worker_ready();
	struct result *result = result_add("ssl-session", "connection", per_run,
		resume ? "TLS 1.2 resumption (session ID hit), %u sessions held" :
			 "TLS 1.2 full handshake (ID learned), %u sessions held",
		preloaded_ids + preloaded_names);
	const char *name = resume ? "tls12-session-id-resume" : "tls12-session-id-full";
	char path[64];

	snprintf(path, sizeof(path), "%s.client", name);
	if (!check(result, load_stream(path, &client_stream), "client fixture"))
		return;
	snprintf(path, sizeof(path), "%s.server", name);
	if (!check(result, load_stream(path, &server_stream), "server fixture"))
		return;
	if (!check(result, server_stream.bytes[HELLO_SESSION_ID_OFFSET - 1] == 32 &&
			   (!resume || client_stream.bytes[HELLO_SESSION_ID_OFFSET - 1] == 32),
		   "fixtures carry 32-byte session IDs where expected"))
		return;
	if (!ready) {
		check(result, false, "setup");
		return;
	}
	struct worker *worker = &tls_bench->worker;
	struct synproxy_stats *stats = &worker->synproxy->stats;
	uint64_t stage_cycles[STAGE_COUNT], stage_packets[STAGE_COUNT];
	double stage_samples[STAGE_COUNT][RUNS_MAX];
	uint64_t hits = stats->hit_session_id, learned = stats->learned_session_id;
	uint64_t fallbacks = stats->fallback_new_session, bound = stats->bindings_bound;
	uint64_t drops_before = drops_total(worker);

	for (unsigned run = 0; run <= options.runs; run++) {
		memset(stage_cycles, 0, sizeof(stage_cycles));
		memset(stage_packets, 0, sizeof(stage_packets));
		for (uint32_t first = 0; first < per_run; first += BURST) {
			for (unsigned c = 0; c < BURST; c++) {
				struct tls_connection *connection = &group[c];
				uint64_t n = (*client_counter)++;
				/* a new address while there are any, then new ports */
				connection->client = bench_client(n);
				connection->port = rte_cpu_to_be_16((uint16_t)(1024 + (n / BENCH_CLIENT_COUNT) % 60000));
				connection->isn = (uint32_t)rng_next();
				connection->backend_isn = (uint32_t)rng_next();
				connection->hello_length = first_record_length(&client_stream);
				memcpy(connection->hello, client_stream.bytes, connection->hello_length);
				connection->server_length = server_stream.length;
				memcpy(connection->server, server_stream.bytes, server_stream.length);
				if (resume) {
					/* offer one of the million known sessions; the server echoes it */
					uint64_t id = rng_below(preloaded_ids);
					synthetic_id(id, connection->hello + HELLO_SESSION_ID_OFFSET, 32);
					synthetic_id(id, connection->server + HELLO_SESSION_ID_OFFSET, 32);
				} else {
					/* the server issues a session ID nobody has seen */
					synthetic_id((1ull << 40) + n, connection->server + HELLO_SESSION_ID_OFFSET, 32);
				}
			}
			if (!tls_group(worker, result, stage_cycles, stage_packets))
				return;
			check(result, worker->synproxy->active_count == 0,
			      "every binding is released once spliced and learned");
		}
		if (run == 0)
			continue;
		uint64_t total = 0;
		for (unsigned s = 0; s < STAGE_COUNT; s++) {
			total += stage_cycles[s];
			stage_samples[s][result->runs] = (double)stage_cycles[s] / (double)stage_packets[s];
		}
		result_sample(result, total, per_run);
	}
	uint64_t connections = (uint64_t)(options.runs + 1) * per_run;
	check(result, stats->bindings_bound - bound == connections, "every connection is bound");
	check(result, stats->learned_session_id - learned == connections, "every ServerHello is learned");
	if (resume)
		check(result, stats->hit_session_id - hits == connections, "every resumption hits");
	else
		check(result, stats->fallback_new_session - fallbacks == connections,
		      "every full handshake takes the fallback");
	check(result, drops_total(worker) == drops_before, "no drops");

	/* per stage: median cycles per packet of that stage */
	json_t *stages = json_array();
	unsigned packets_per_connection = 0;
	for (unsigned s = 0; s < STAGE_COUNT; s++) {
		struct result scratch = { .runs = result->runs };
		double minimum, maximum;
		memcpy(scratch.samples, stage_samples[s], sizeof(double) * result->runs);
		unsigned count = (unsigned)(stage_packets[s] / per_run);
		packets_per_connection += count;
		json_array_append_new(stages, json_pack("{s:s,s:i,s:f}", "stage", stage_names[s],
							"packets_per_connection", count,
							"cycles_per_packet", median_of(&scratch, &minimum, &maximum)));
	}
	result->extra = json_pack("{s:i,s:o,s:I}", "packets_per_connection", packets_per_connection,
				  "stages", stages, "session_table_live",
				  (json_int_t)worker->synproxy->sessions.live);
}

static void
bench_ssl_session(void)
{
	static uint64_t client_counter;
	bench_tls_case(false, &client_counter);
	bench_tls_case(true, &client_counter);
}

/* persist_lookup in the session table: random session IDs, key names, misses. */
static void
bench_persist_lookup(void)
{
	uint32_t per_run = options.quick ? 65536 : 1048576;
	struct session_key *keys = malloc(sizeof(*keys) * per_run);
	const char *const names[3] = { "session ID, hit (%u IDs)", "ticket key name, hit (%u names)",
				       "miss (%u keys held)" };

	if (!tls_worker_ready() || !keys) {
		check(result_add("persist-lookup", "lookup", per_run, "setup"), false, "setup");
		free(keys);
		return;
	}
	const struct persist_table *table = &tls_bench->worker.synproxy->sessions;
	for (unsigned kind = 0; kind < 3; kind++) {
		struct result *result = result_add("persist-lookup", "lookup", per_run, names[kind],
						   kind == 0 ? preloaded_ids : kind == 1 ? preloaded_names :
						   table->live);
		for (unsigned run = 0; run <= options.runs; run++) {
			for (uint32_t i = 0; i < per_run; i++) {
				if (kind == 0)
					session_key_for(&keys[i], tls_pool_id, SESSION_ID, rng_below(preloaded_ids));
				else if (kind == 1)
					session_key_for(&keys[i], tls_pool_id, SESSION_KEY_NAME,
							rng_below(preloaded_names));
				else
					session_key_for(&keys[i], tls_pool_id, SESSION_ID, (1ull << 50) + rng_next() % (1ull << 40));
			}
			uint32_t hits = 0;
			uint64_t start = rte_rdtsc_precise();
			for (uint32_t i = 0; i < per_run; i++)
				hits += persist_lookup(table, &keys[i]) >= 0;
			uint64_t cycles = rte_rdtsc_precise() - start - bracket_cycles;
			check(result, hits == (kind == 2 ? 0 : per_run), kind == 2 ? "misses miss" : "hits hit");
			if (run)
				result_sample(result, cycles, per_run);
		}
	}
	free(keys);
}

/* ------------------------------------------------------------------------ */
/* scenario: Maglev rebuild (control path)                                  */

static void
bench_maglev(void)
{
	static const unsigned sizes[] = { 10, 100, 1000 };
	static char names[1000][16];
	static struct maglev_backend backends[1000];

	for (unsigned b = 0; b < 1000; b++) {
		snprintf(names[b], sizeof(names[b]), "backend-%u", b);
		backends[b] = (struct maglev_backend){ .name = names[b], .weight = 1, .active = true };
	}
	for (unsigned s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		struct result *result = result_add("maglev", "build", 1,
						   "maglev_build, %u backends, %u slots", sizes[s],
						   MAGLEV_DEFAULT_SIZE);
		for (unsigned run = 0; run <= options.runs; run++) {
			struct maglev_table table;
			uint64_t start = rte_rdtsc_precise();
			int rc = maglev_build(&table, MAGLEV_DEFAULT_SIZE, backends, sizes[s]);
			uint64_t cycles = rte_rdtsc_precise() - start - bracket_cycles;
			if (!check(result, rc == 0, "maglev_build succeeds"))
				break;
			/* every backend got a share near 1/n */
			unsigned *owned = calloc(sizes[s], sizeof(unsigned));
			for (uint32_t slot = 0; slot < table.size; slot++)
				if (table.slots[slot] < sizes[s])
					owned[table.slots[slot]]++;
			unsigned least = UINT32_MAX;
			for (unsigned b = 0; b < sizes[s]; b++)
				least = owned[b] < least ? owned[b] : least;
			check(result, least > 0, "every backend owns slots");
			free(owned);
			maglev_free(&table);
			if (run)
				result_sample(result, cycles, 1);
		}
	}
}

/* ------------------------------------------------------------------------ */
/* scenario: what the benchmark leaves out                                  */

static void
bench_overhead(void)
{
	uint32_t bursts = options.quick ? 4096 : 65536;
	struct rte_mbuf *burst[BURST];
	struct result *recycle = result_add("overhead", "packet", (uint64_t)bursts * BURST,
					    "mbuf alloc + free, bulk of 32 (PMD RX refill + TX completion)");
	struct result *write = result_add("overhead", "packet", (uint64_t)bursts * BURST,
					  "writing a 64-byte frame into an mbuf (stands in for the NIC)");
	struct result *bracket = result_add("overhead", "burst", 1,
					    "rte_rdtsc_precise bracket (subtracted from every burst)");
	recycle->overhead = write->overhead = bracket->overhead = true;

	for (unsigned run = 0; run <= options.runs; run++) {
		uint64_t start = rte_rdtsc_precise();
		for (uint32_t b = 0; b < bursts; b++) {
			alloc_burst(burst, BURST);
			rte_pktmbuf_free_bulk(burst, BURST);
		}
		uint64_t cycles = rte_rdtsc_precise() - start;
		alloc_burst(burst, BURST);
		start = rte_rdtsc_precise();
		for (uint32_t b = 0; b < bursts; b++)
			for (unsigned k = 0; k < BURST; k++)
				mbuf_load_tuple(burst[k], &forward_template[TEMPLATE_DATA], flow_client(b * BURST + k),
						flow_client_port(k), builder_address(VIP), rte_cpu_to_be_16(VIP_PORT));
		uint64_t write_cycles = rte_rdtsc_precise() - start;
		rte_pktmbuf_free_bulk(burst, BURST);
		if (run) {
			result_sample(recycle, cycles, (uint64_t)bursts * BURST);
			result_sample(write, write_cycles, (uint64_t)bursts * BURST);
			result_sample(bracket, bracket_cycles, 1);
		}
	}
}

/* ------------------------------------------------------------------------ */
/* report                                                                   */

static void
cpu_model(char *model, size_t size)
{
	char line[256];
	FILE *file = fopen("/proc/cpuinfo", "r");

	snprintf(model, size, "unknown");
	if (!file)
		return;
	while (fgets(line, sizeof(line), file)) {
		char *colon = strchr(line, ':');
		if (strncmp(line, "model name", 10) == 0 && colon) {
			snprintf(model, size, "%s", colon + 2);
			model[strcspn(model, "\n")] = 0;
			break;
		}
	}
	fclose(file);
}

/* "41.2 ns", "2.35 ms": a duration from cycles. */
static void
format_time(double cycles, char *text, size_t size)
{
	double ns = cycles * 1e9 / (double)tsc_hz;
	if (ns < 1e4)
		snprintf(text, size, "%.1f ns", ns);
	else if (ns < 1e7)
		snprintf(text, size, "%.1f us", ns / 1e3);
	else
		snprintf(text, size, "%.2f ms", ns / 1e6);
}

static void
format_rate(double cycles, char *text, size_t size)
{
	double rate = cycles > 0 ? (double)tsc_hz / cycles : 0;
	if (rate >= 1e6)
		snprintf(text, size, "%.2f M", rate / 1e6);
	else if (rate >= 1e3)
		snprintf(text, size, "%.1f K", rate / 1e3);
	else
		snprintf(text, size, "%.1f", rate);
}

static void
write_markdown(FILE *file, const char *model)
{
	fprintf(file, "tether-bench: %s, TSC %.3f GHz, lcore %u, %s, median of %u runs\n\n", model,
		(double)tsc_hz / 1e9, options.lcore, memory_mode, options.runs);
	fprintf(file, "| scenario | case | per | cycles (median) | time | per second, one core | min-max cycles | check |\n");
	fprintf(file, "|---|---|---|---:|---:|---:|---:|---|\n");
	for (unsigned r = 0; r < result_count; r++) {
		const struct result *result = &results[r];
		double minimum, maximum, median = median_of(result, &minimum, &maximum);
		char time[32], rate[32];
		format_time(median, time, sizeof(time));
		format_rate(median, rate, sizeof(rate));
		fprintf(file, "| %s | %s | %s | %.0f | %s | %s | %.0f-%.0f | %s |\n", result->scenario,
			result->name, result->unit, median, time, rate, minimum, maximum,
			result->checked ? "ok" : "FAILED");
	}
}

static int
write_json(const char *path, const char *model, int argc, char **argv)
{
	json_t *root = json_object(), *rows = json_array(), *command = json_array();

	for (int i = 0; i < argc; i++)
		json_array_append_new(command, json_string(argv[i]));
	json_object_set_new(root, "tool", json_string("tether-bench"));
	json_object_set_new(root, "command", command);
	json_object_set_new(root, "cpu_model", json_string(model));
	json_object_set_new(root, "tsc_hz", json_integer((json_int_t)tsc_hz));
	json_object_set_new(root, "lcore", json_integer(options.lcore));
	json_object_set_new(root, "memory", json_string(memory_mode));
	json_object_set_new(root, "runs", json_integer(options.runs));
	json_object_set_new(root, "quick", json_boolean(options.quick));
	json_object_set_new(root, "burst", json_integer(BURST));
	json_object_set_new(root, "timer_bracket_cycles", json_integer((json_int_t)bracket_cycles));
	json_object_set_new(root, "all_checks_held", json_boolean(all_checks_held));
	for (unsigned r = 0; r < result_count; r++) {
		const struct result *result = &results[r];
		double minimum, maximum, median = median_of(result, &minimum, &maximum);
		json_t *samples = json_array();
		for (unsigned i = 0; i < result->runs; i++)
			json_array_append_new(samples, json_real(result->samples[i]));
		json_t *row = json_pack("{s:s,s:s,s:s,s:I,s:i,s:f,s:f,s:f,s:f,s:f,s:o,s:b,s:b}",
			"scenario", result->scenario, "case", result->name, "unit", result->unit,
			"units_per_run", (json_int_t)result->items, "runs", result->runs,
			"cycles_median", median, "cycles_min", minimum, "cycles_max", maximum,
			"ns_median", median * 1e9 / (double)tsc_hz,
			"per_second", median > 0 ? (double)tsc_hz / median : 0.0,
			"cycles_samples", samples, "checked", result->checked,
			"overhead_not_in_figures", result->overhead);
		if (result->extra)
			json_object_set(row, "details", result->extra);
		json_array_append_new(rows, row);
	}
	json_object_set_new(root, "results", rows);
	int rc = json_dump_file(root, path, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
	json_decref(root);
	if (rc < 0)
		fprintf(stderr, "tether-bench: cannot write %s\n", path);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* scenario: two workers on two cores                                       */

/*
 * The established scenario once more, with the flows split between two
 * workers the way steer.h splits clients: each worker runs on its own lcore
 * and pushes only its own clients' frames through worker_receive() (the
 * steering step, then the pipeline), as a NIC whose RSS hashes the client
 * address would deliver them, so nothing is handed over.  The baseline is one
 * worker running the same loop over all the flows on one lcore.  Here the
 * whole loop is timed, frame writes included, on both sides: the ratio
 * compares like with like, and the per-packet figures are not those of the
 * "established" rows.  Two workers are linked (handoff rings, peers), so any
 * shared write on the read path would show up as a ratio well below 2.
 */
struct lane {
	struct bench_worker *bench;
	struct flow_set set;
	uint64_t packets;          /* per run */
	uint64_t seed;
	uint64_t cycles;           /* the last run's, whole loop */
	bool ok;
} __rte_cache_aligned;         /* two lanes' writes never share a line */

static inline uint32_t
lane_random_below(uint64_t *state, uint32_t n)
{
	*state += 0x9e3779b97f4a7c15ull;
	return (uint32_t)(((splitmix64(*state) >> 32) * n) >> 32);
}

static int
lane_run(void *arg)
{
	struct lane *lane = arg;
	struct worker *worker = &lane->bench->worker;
	struct rte_mbuf *burst[BURST];
	struct outputs out;
	uint64_t seed = lane->seed;   /* in a register, not in the shared lane array */

	lane->ok = rte_pktmbuf_alloc_bulk(mempool, burst, BURST) == 0;
	if (!lane->ok)
		return 0;
	uint64_t start = rte_rdtsc();
	for (uint64_t sent = 0; sent < lane->packets; sent += BURST) {
		unsigned direction = (unsigned)(sent / BURST) & 1;
		unsigned port = direction == FLOW_FORWARD ? PORT_PUBLIC : PORT_PRIVATE;
		for (unsigned k = 0; k < BURST; k++) {
			uint32_t i = lane_random_below(&seed, lane->set.count);
			if (direction == FLOW_FORWARD)
				mbuf_load_tuple(burst[k], &forward_template[TEMPLATE_DATA], lane->set.client[i],
						lane->set.client_port[i], builder_address(VIP),
						rte_cpu_to_be_16(VIP_PORT));
			else
				mbuf_load_tuple(burst[k], &reverse_template[TEMPLATE_DATA], lane->set.backend[i],
						lane->set.backend_port[i], lane->set.client[i],
						lane->set.client_port[i]);
		}
		worker->now = worker_clock();
		worker_receive(worker, port, burst, BURST);
		take_outputs(worker, &out);
		unsigned to = direction == FLOW_FORWARD ? PORT_PRIVATE : PORT_PUBLIC;
		if (out.count[to] != BURST || out.count[to ^ 1] != 0) {
			lane->ok = false;
			free_outputs(&out);
			return 0;
		}
		memcpy(burst, out.frames[to], sizeof(burst));
	}
	lane->cycles = rte_rdtsc() - start;
	lane->seed = seed;
	rte_pktmbuf_free_bulk(burst, BURST);
	return 0;
}

static bool
lane_alloc(struct lane *lane, uint32_t count)
{
	lane->bench = calloc(1, sizeof(*lane->bench));
	lane->set.count = count;
	lane->set.client = malloc(sizeof(uint32_t) * count);
	lane->set.client_port = malloc(sizeof(uint16_t) * count);
	lane->set.backend = malloc(sizeof(uint32_t) * count);
	lane->set.backend_port = malloc(sizeof(uint16_t) * count);
	return lane->bench && lane->set.client && lane->set.client_port && lane->set.backend &&
	       lane->set.backend_port;
}

static void
lane_free(struct lane *lane)
{
	if (lane->bench)
		bench_worker_free(lane->bench);
	free(lane->bench);
	free(lane->set.client);
	free(lane->set.client_port);
	free(lane->set.backend);
	free(lane->set.backend_port);
	memset(lane, 0, sizeof(*lane));
}

/* A lane for worker `id` of `workers` holding the flows among the first
 * `flow_count` whose client steer.h gives it; its flows opened. */
static bool
lane_open(struct lane *lane, unsigned id, unsigned workers, uint32_t flow_count,
	  uint64_t packets, struct result *result)
{
	uint32_t mine = 0;

	for (uint32_t i = 0; i < flow_count; i++)
		mine += steer_slot(flow_client(i), workers) == id;
	if (!lane_alloc(lane, mine) ||
	    bench_worker_create_id(lane->bench, id + 2, "{ \"mode\": \"none\" }", mine, 1024, 16) < 0)
		return check(result, false, "setup");
	uint32_t n = 0;
	for (uint32_t i = 0; i < flow_count; i++) {
		if (steer_slot(flow_client(i), workers) != id)
			continue;
		lane->set.client[n] = flow_client(i);
		lane->set.client_port[n++] = flow_client_port(i);
	}
	lane->packets = packets;
	lane->seed = options.seed + id;
	return open_flows(lane->bench, &lane->set, result);
}

static void
bench_scaling_size(uint32_t flow_count, uint64_t packets_per_run)
{
	char label[32];
	struct lane lanes[2] = { 0 };
	unsigned second = options.second_lcore >= 0 ? (unsigned)options.second_lcore :
			  rte_get_next_lcore(rte_lcore_id(), 1, 1);

	if (second >= RTE_MAX_LCORE || second == rte_lcore_id() || !rte_lcore_is_enabled(second)) {
		fprintf(stderr, "tether-bench: scaling not measured: this machine has one CPU\n");
		return;
	}
	if (flow_count >= 1000000)
		snprintf(label, sizeof(label), "%uM flows", flow_count / 1000000);
	else
		snprintf(label, sizeof(label), "%uK flows", flow_count / 1000);
	struct result *one = result_add("scaling", "packet", packets_per_run,
					"%s, 1 worker (whole loop)", label);
	struct result *two = result_add("scaling", "packet", packets_per_run,
					"%s, 2 workers on 2 lcores", label);

	/* one worker, all the flows */
	if (lane_open(&lanes[0], 0, 1, flow_count, packets_per_run, one)) {
		for (unsigned run = 0; run <= options.runs; run++) {
			lane_run(&lanes[0]);
			if (!check(one, lanes[0].ok, "every packet comes out on the other side"))
				break;
			if (run > 0)
				result_sample(one, lanes[0].cycles, packets_per_run);
		}
	}
	lane_free(&lanes[0]);

	/* two linked workers, each its own clients and half the packets */
	struct worker *linked[2];
	char error[128];
	for (unsigned w = 0; w < 2; w++)
		if (!lane_open(&lanes[w], w, 2, flow_count, packets_per_run / 2, two))
			goto out;
	linked[0] = &lanes[0].bench->worker;
	linked[1] = &lanes[1].bench->worker;
	/* lane_open gave the workers ids 2 and 3 (table names); steering wants 0 and 1 */
	linked[0]->id = 0;
	linked[1]->id = 1;
	if (worker_link(linked, 2, error, sizeof(error)) < 0) {
		check(two, false, error);
		goto out;
	}
	for (unsigned run = 0; run <= options.runs; run++) {
		if (rte_eal_remote_launch(lane_run, &lanes[1], second) != 0) {
			check(two, false, "launching the second lcore");
			break;
		}
		lane_run(&lanes[0]);
		rte_eal_wait_lcore(second);
		if (!check(two, lanes[0].ok && lanes[1].ok, "every packet comes out on the other side"))
			break;
		uint64_t slowest = RTE_MAX(lanes[0].cycles, lanes[1].cycles);
		if (run > 0)
			result_sample(two, slowest, lanes[0].packets + lanes[1].packets);
	}
	check(two, linked[0]->stats.handoff_sent + linked[1]->stats.handoff_sent == 0,
	      "every frame reached its owner directly (nothing handed over)");
	double low, high, one_median = median_of(one, &low, &high), two_median = median_of(two, &low, &high);
	if (two_median > 0 && one_median > 0) {
		two->extra = json_pack("{s:f, s:I, s:I, s:I}", "speedup", one_median / two_median,
				       "second_lcore", (json_int_t)second,
				       "flows_worker0", (json_int_t)lanes[0].set.count,
				       "flows_worker1", (json_int_t)lanes[1].set.count);
		snprintf(two->name, sizeof(two->name), "%s, 2 workers on 2 lcores: x%.2f", label,
			 one_median / two_median);
	}
out:
	for (unsigned w = 0; w < 2; w++)
		lane_free(&lanes[w]);
}

static void
bench_scaling(void)
{
	if (options.quick) {
		bench_scaling_size(10000, 1 << 16);
		return;
	}
	bench_scaling_size(1000, 1 << 21);
	bench_scaling_size(100000, 1 << 21);
	bench_scaling_size(1000000, 1 << 21);
}

/* ------------------------------------------------------------------------ */
/* EAL and main                                                             */

static void
usage(FILE *file)
{
	fprintf(file,
		"usage: tether-bench [--scenario NAME]... [--runs N] [--quick] [--json FILE]\n"
		"                    [--markdown FILE] [--fixtures DIR] [--flows N]... [--lcore N]\n"
		"                    [--second-lcore N] [--seed N] [--no-thp]\n"
		"\n"
		"Pushes bursts of 32 real mbufs through pipeline_process_burst() and reports\n"
		"cycles, ns and rate per packet (or connection, lookup, build): the median of\n"
		"N runs (default 5) after a warm-up run.  Exits 1 when a check failed.\n"
		"\n"
		"scenarios (default: all): established, new-source-ip, ssl-session,\n"
		"  persist-lookup, maglev, overhead, scaling (1 worker vs 2 on two CPUs)\n"
		"  --quick         small tables and short runs (the ctest smoke test)\n"
		"  --fixtures DIR  TLS fixtures (default: fixtures/tls, else tests/fixtures/tls)\n"
		"  --flows N       established: this table size instead of 1K, 100K, 1M (repeatable)\n"
		"  --lcore N       the CPU to run on (default 0)\n"
		"  --second-lcore N  scaling: the second worker's CPU (default: another one)\n"
		"  --no-thp        leave EAL memory on 4 KiB pages (no madvise(MADV_HUGEPAGE))\n");
}

static int
parse_options(int argc, char **argv)
{
	static const struct option long_options[] = {
		{ "scenario", required_argument, NULL, 's' }, { "runs", required_argument, NULL, 'r' },
		{ "quick", no_argument, NULL, 'q' }, { "json", required_argument, NULL, 'j' },
		{ "markdown", required_argument, NULL, 'm' }, { "fixtures", required_argument, NULL, 'f' },
		{ "lcore", required_argument, NULL, 'l' }, { "seed", required_argument, NULL, 'S' },
		{ "no-thp", no_argument, NULL, 'T' }, { "flows", required_argument, NULL, 'F' },
		{ "second-lcore", required_argument, NULL, 'L' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool any = false;
	int option;

	while ((option = getopt_long(argc, argv, "h", long_options, NULL)) != -1) {
		switch (option) {
		case 's': {
			unsigned s;
			for (s = 0; s < SCENARIO_COUNT && strcmp(optarg, scenario_names[s]); s++)
				;
			if (s == SCENARIO_COUNT) {
				fprintf(stderr, "tether-bench: unknown scenario '%s'\n", optarg);
				return -1;
			}
			options.scenarios[s] = any = true;
			break;
		}
		case 'r': {
			char *end;
			unsigned long runs = strtoul(optarg, &end, 10);
			if (*end || runs < 1 || runs > RUNS_MAX) {
				fprintf(stderr, "tether-bench: --runs takes 1..%d\n", RUNS_MAX);
				return -1;
			}
			options.runs = (unsigned)runs;
			break;
		}
		case 'q': options.quick = true; break;
		case 'j': options.json_path = optarg; break;
		case 'm': options.markdown_path = optarg; break;
		case 'f': options.fixtures = optarg; break;
		case 'l': options.lcore = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'L': options.second_lcore = (int)strtol(optarg, NULL, 10); break;
		case 'S': options.seed = strtoull(optarg, NULL, 0); break;
		case 'T': options.thp = false; break;
		case 'F': {
			char *end;
			unsigned long flows = strtoul(optarg, &end, 10);
			if (*end || flows < 32 || flows > 8000000 || options.flow_size_count == 8) {
				fprintf(stderr, "tether-bench: --flows takes 32..8000000, at most 8 times\n");
				return -1;
			}
			options.flow_sizes[options.flow_size_count++] = (unsigned)flows;
			break;
		}
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "tether-bench: unexpected argument '%s'\n", argv[optind]);
		return -1;
	}
	if (!any)
		for (unsigned s = 0; s < SCENARIO_COUNT; s++)
			options.scenarios[s] = true;
	if (!options.fixtures)
		options.fixtures = access("fixtures/tls", R_OK) == 0 ? "fixtures/tls" : "tests/fixtures/tls";
	return 0;
}

/* Free hugepage memory of the default size, in MiB, from /proc/meminfo. */
static unsigned long
free_hugepage_mib(void)
{
	char line[128];
	unsigned long free_pages = 0, page_kib = 0;
	FILE *file = fopen("/proc/meminfo", "r");
	if (!file)
		return 0;
	while (fgets(line, sizeof(line), file)) {
		sscanf(line, "HugePages_Free: %lu", &free_pages);
		sscanf(line, "Hugepagesize: %lu kB", &page_kib);
	}
	fclose(file);
	return free_pages * page_kib / 1024;
}

/*
 * Without hugetlbfs, EAL backs its memory with a memfd ("nohuge", shared
 * memory, which the kernel does not give transparent huge pages here).  A
 * deployment runs on hugepages, and 4 KiB pages would charge a page walk to
 * most lookups in a table of a million flows.  So, unless --no-thp, this
 * process refuses that one memfd: EAL then falls back to private anonymous
 * memory (its own documented fallback), which advise_hugepages() asks the
 * kernel to back with 2 MiB pages before the tables touch it.  Only this
 * process is affected; no system setting changes.
 */
static bool refuse_nohuge_memfd;

int
memfd_create(const char *name, unsigned int flags)
{
	static int (*next)(const char *, unsigned int);

	if (refuse_nohuge_memfd && strcmp(name, "nohuge") == 0) {
		errno = ENOSYS;
		return -1;
	}
	if (!next)
		next = (int (*)(const char *, unsigned int))dlsym(RTLD_NEXT, "memfd_create");
	if (!next) {
		errno = ENOSYS;
		return -1;
	}
	return next(name, flags);
}

static int
advise_hugepages(const struct rte_memseg_list *list, void *arg)
{
	unsigned *advised = arg;
	if (list->base_va && list->len && madvise(list->base_va, list->len, MADV_HUGEPAGE) == 0)
		(*advised)++;
	return 0;
}

static unsigned long
anon_huge_kib(void)
{
	char line[128];
	unsigned long kib = 0;
	FILE *file = fopen("/proc/self/smaps_rollup", "r");
	if (!file)
		return 0;
	while (fgets(line, sizeof(line), file))
		sscanf(line, "AnonHugePages: %lu kB", &kib);
	fclose(file);
	return kib;
}

int
main(int argc, char **argv)
{
	char prefix[64], lcores[32], main_lcore[32], model[128];
	bool hugetlbfs;

	if (parse_options(argc, argv) < 0)
		return 2;
	/* EAL asks for -m 2048 (1 M flows and 1.1 M sessions need about 1 GiB;
	 * --quick far less): use hugepages when that much is free */
	hugetlbfs = free_hugepage_mib() >= (options.quick ? 768u : 2560u);
	snprintf(prefix, sizeof(prefix), "--file-prefix=tether-bench-%d", (int)getpid());
	/* the main lcore runs every scenario; scaling adds a second worker on
	 * another CPU when there is one */
	unsigned second = options.second_lcore >= 0 ? (unsigned)options.second_lcore :
			  options.lcore == 0 ? 1 : 0;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	if (options.scenarios[SCENARIO_SCALING] && second != options.lcore && (long)second < cpus) {
		options.second_lcore = (int)second;
		snprintf(lcores, sizeof(lcores), "%u,%u", options.lcore, second);
	} else {
		snprintf(lcores, sizeof(lcores), "%u", options.lcore);
	}
	snprintf(main_lcore, sizeof(main_lcore), "--main-lcore=%u", options.lcore);
	char *eal[16] = { argv[0], "-l", lcores, main_lcore, "--no-shconf", "--no-pci",
			  "--log-level=error", prefix, "-m", options.quick ? "512" : "2048" };
	int eal_count = 10;
	if (!hugetlbfs)
		eal[eal_count++] = "--no-huge";
	refuse_nohuge_memfd = !hugetlbfs && options.thp;
	if (rte_eal_init(eal_count, eal) < 0) {
		fprintf(stderr, "tether-bench: EAL init failed\n");
		return 1;
	}
	unsigned advised = 0;
	if (!hugetlbfs && options.thp)
		rte_memseg_list_walk(advise_hugepages, &advised);
	/* Fault every page in now, as hugetlbfs would have: a first touch of a
	 * table page (2 MiB zeroed) inside a timed burst would be charged to
	 * the packet path.  The pages stay after munlockall(). */
	if (!hugetlbfs && !options.quick && mlockall(MCL_CURRENT) == 0)
		munlockall();
	snprintf(memory_mode, sizeof(memory_mode), "%s", hugetlbfs ? "hugetlbfs 2 MiB pages" :
		 advised ? "--no-huge, anonymous memory, THP madvised" :
		 "--no-huge, EAL memfd, 4 KiB pages");

	tsc_hz = rte_get_tsc_hz();
	rng_state = options.seed;
	calibrate_bracket();
	cpu_model(model, sizeof(model));
	build_templates();
	mempool = rte_pktmbuf_pool_create("bench_mbufs", 16383, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
					  (int)rte_socket_id());
	if (!mempool) {
		fprintf(stderr, "tether-bench: mempool: %s\n", rte_strerror(rte_errno));
		return 1;
	}
	fprintf(stderr, "tether-bench: %s, TSC %.3f GHz, %s%s\n", model, (double)tsc_hz / 1e9,
		memory_mode, options.quick ? ", quick" : "");

	if (options.scenarios[SCENARIO_ESTABLISHED])
		bench_established();
	if (options.scenarios[SCENARIO_NEW_SOURCE_IP])
		bench_new_source_ip();
	if (options.scenarios[SCENARIO_SSL_SESSION])
		bench_ssl_session();
	if (options.scenarios[SCENARIO_PERSIST_LOOKUP])
		bench_persist_lookup();
	if (tls_bench) {
		bench_worker_free(tls_bench);
		free(tls_bench);
	}
	if (options.scenarios[SCENARIO_MAGLEV])
		bench_maglev();
	if (options.scenarios[SCENARIO_OVERHEAD])
		bench_overhead();
	if (options.scenarios[SCENARIO_SCALING])
		bench_scaling();

	if (!hugetlbfs && advised)
		snprintf(memory_mode + strlen(memory_mode), sizeof(memory_mode) - strlen(memory_mode),
			 " (%lu MiB on huge pages at exit)", anon_huge_kib() / 1024);
	write_markdown(stdout, model);
	if (options.markdown_path) {
		FILE *file = fopen(options.markdown_path, "w");
		if (!file) {
			fprintf(stderr, "tether-bench: cannot write %s\n", options.markdown_path);
			return 1;
		}
		write_markdown(file, model);
		fclose(file);
	}
	if (options.json_path && write_json(options.json_path, model, argc, argv) < 0)
		return 1;
	rte_mempool_free(mempool);
	rte_eal_cleanup();
	if (!all_checks_held)
		fprintf(stderr, "tether-bench: some checks FAILED (see above)\n");
	return all_checks_held ? 0 : 1;
}
