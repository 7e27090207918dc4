/*
 * metrics.c: see metrics.h.
 *
 * Names follow Prometheus' conventions: everything starts with tether_, a
 * counter ends in _total, a gauge does not, units are base units (seconds,
 * bytes) except the certificate's expiry, which operators read in days.  One
 * thing counted in several ways is one family with a label (direction,
 * reason, mechanism), so sum() over the label is meaningful.  Counters come
 * from the dataplane as it reports them and restart from zero when it does;
 * Prometheus' rate() handles that.
 *
 * The SSL-session counters are mapped by the prefix of their name in the
 * dataplane's reply (hit_*, fallback_*, learned_*, ...), so a counter the
 * dataplane adds later appears without a change here.
 */
#define _GNU_SOURCE
#include "metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

/* ------------------------------------------------------------------------ */
/* Rendering                                                                */

struct page {
	char *data;
	size_t length, capacity;
	bool failed;
};

static void page_printf(struct page *page, const char *format, ...) __attribute__((format(printf, 2, 3)));

static void
page_printf(struct page *page, const char *format, ...)
{
	va_list args;

	for (int attempt = 0; attempt < 2 && !page->failed; attempt++) {
		size_t room = page->capacity - page->length;
		va_start(args, format);
		int n = vsnprintf(page->data ? page->data + page->length : NULL, room, format, args);
		va_end(args);
		if (n < 0) {
			page->failed = true;
			return;
		}
		if ((size_t)n < room) {
			page->length += (size_t)n;
			return;
		}
		size_t capacity = page->capacity ? page->capacity : 16384;
		while (capacity < page->length + (size_t)n + 1)
			capacity *= 2;
		char *grown = realloc(page->data, capacity);
		if (!grown) {
			page->failed = true;
			return;
		}
		page->data = grown;
		page->capacity = capacity;
	}
}

/* A label value with \, " and newline escaped as the format requires. */
static const char *
escape(const char *value, char *out, size_t size)
{
	size_t used = 0;

	for (; *value && used + 3 < size; value++) {
		if (*value == '\\' || *value == '"') {
			out[used++] = '\\';
			out[used++] = *value;
		} else if (*value == '\n') {
			out[used++] = '\\';
			out[used++] = 'n';
		} else {
			out[used++] = *value;
		}
	}
	out[used] = '\0';
	return out;
}

static void
family(struct page *page, const char *name, const char *type, const char *help)
{
	page_printf(page, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static json_int_t
member_integer(const json_t *object, const char *key)
{
	return json_integer_value(json_object_get(object, key));
}

static const char *
member_string(const json_t *object, const char *key)
{
	const char *value = json_string_value(json_object_get(object, key));
	return value ? value : "";
}

/* --- dataplane totals: ports, drops, flows, persistence, arp, icmp --- */

static void
render_ports(struct page *page, const json_t *ports)
{
	static const struct { const char *family, *type, *help, *field[2]; } rows[] = {
		{ "tether_port_packets_total", "counter", "Packets received (rx) and sent (tx) by a port.",
		  { "rx_packets", "tx_packets" } },
		{ "tether_port_bytes_total", "counter", "Bytes received (rx) and sent (tx) by a port.",
		  { "rx_bytes", "tx_bytes" } },
	};
	const char *name;
	const json_t *port;

	for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
		family(page, rows[r].family, rows[r].type, rows[r].help);
		json_object_foreach((json_t *)ports, name, port)
			for (int d = 0; d < 2; d++)
				page_printf(page, "%s{port=\"%s\",direction=\"%s\"} %lld\n", rows[r].family, name,
					    d ? "tx" : "rx", (long long)member_integer(port, rows[r].field[d]));
	}
	family(page, "tether_port_tx_dropped_total", "counter", "Packets a port's NIC refused to send.");
	json_object_foreach((json_t *)ports, name, port)
		page_printf(page, "tether_port_tx_dropped_total{port=\"%s\"} %lld\n", name,
			    (long long)member_integer(port, "tx_dropped"));
}

static void
render_drops(struct page *page, const json_t *drops)
{
	const char *reason;
	const json_t *count;

	family(page, "tether_drops_total", "counter", "Packets dropped by the dataplane, by reason.");
	json_object_foreach((json_t *)drops, reason, count)
		page_printf(page, "tether_drops_total{reason=\"%s\"} %lld\n", reason,
			    (long long)json_integer_value(count));
}

/* Gauges and counters of one flat object: {"key": [family, type, help]}. */
struct scalar {
	const char *key, *family, *type, *help, *labels;
};

static void
render_scalars(struct page *page, const json_t *object, const struct scalar *scalars, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		const json_t *value = json_object_get(object, scalars[i].key);
		if (!json_is_integer(value))
			continue;
		family(page, scalars[i].family, scalars[i].type, scalars[i].help);
		page_printf(page, "%s%s %lld\n", scalars[i].family, scalars[i].labels ? scalars[i].labels : "",
			    (long long)json_integer_value(value));
	}
}

/* Every member of `object` as `<prefix><key>_total` (ARP and ICMP events). */
static void
render_counters_by_key(struct page *page, const json_t *object, const char *prefix, const char *what)
{
	const char *key;
	const json_t *value;
	char name[128], help[160];

	json_object_foreach((json_t *)object, key, value) {
		snprintf(name, sizeof(name), "%s%s_total", prefix, key);
		snprintf(help, sizeof(help), "%s: %s.", what, key);
		family(page, name, "counter", help);
		page_printf(page, "%s %lld\n", name, (long long)json_integer_value(value));
	}
}

/* Several workers: each one's live flows, and the frames steered between them. */
static void
render_steering(struct page *page, const json_t *steering)
{
	static const char *const counters[] = { "handed_off", "received_from_peers", "messages_lost" };
	const json_t *per_worker = json_object_get(steering, "per_worker");
	const json_t *worker;
	size_t index;
	char name[96];

	if (!steering)
		return;
	family(page, "tether_workers", "gauge", "Worker lcores forwarding.");
	page_printf(page, "tether_workers %lld\n",
		    (long long)json_integer_value(json_object_get(steering, "workers")));
	for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
		snprintf(name, sizeof(name), "tether_steering_%s_total", counters[i]);
		family(page, name, "counter", "Frames a worker received for another worker's "
		       "client and handed over (docs/architecture.md, Threading).");
		page_printf(page, "%s %lld\n", name,
			    (long long)json_integer_value(json_object_get(steering, counters[i])));
	}
	family(page, "tether_worker_flows", "gauge", "Live flows owned by each worker.");
	json_array_foreach(per_worker, index, worker)
		page_printf(page, "tether_worker_flows{worker=\"%zu\"} %lld\n", index,
			    (long long)json_integer_value(json_object_get(worker, "flows_live")));
}

/* The overload ladder (docs/reliability.md): the level as a number an alert
 * can compare (0 none, 1 syn-cookies, 2 refuse-new), and what the steps cost. */
static void
render_overload(struct page *page, const json_t *overload)
{
	static const char *const levels[] = { "none", "syn-cookies", "refuse-new" };
	static const struct scalar counters[] = {
		{ "half_open", "tether_overload_half_open", "gauge",
		  "Plain TCP flows still in their handshake (cookies turn on at overload.half_open).", NULL },
		{ "entered_syn_cookies", "tether_overload_syn_cookies_entered_total", "counter",
		  "Times a worker turned SYN cookies on for services on syn_cookies auto.", NULL },
		{ "entered_refuse_new", "tether_overload_refuse_new_entered_total", "counter",
		  "Times a worker began refusing every new connection.", NULL },
		{ "syns_cookied", "tether_overload_syns_cookied_total", "counter",
		  "SYNs answered by cookie because of overload.", NULL },
		{ "refused", "tether_overload_refused_total", "counter",
		  "New connections refused at refuse-new.", NULL },
	};
	const char *level = json_string_value(json_object_get(overload, "level"));

	if (!overload)
		return;
	family(page, "tether_overload_level", "gauge",
	       "The highest overload level of any worker: 0 none, 1 syn-cookies, 2 refuse-new.");
	for (unsigned i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
		if (level && strcmp(level, levels[i]) == 0)
			page_printf(page, "tether_overload_level %u\n", i);
	render_scalars(page, overload, counters, sizeof(counters) / sizeof(counters[0]));
}

/* --- per service, per backend --- */

static void
render_services(struct page *page, const json_t *services)
{
	static const struct { const char *family, *help, *field[2]; } rows[] = {
		{ "tether_service_packets_total", "Packets of a service's flows, client to backend (in) and back (out).",
		  { "packets_in", "packets_out" } },
		{ "tether_service_bytes_total", "Bytes of a service's flows, client to backend (in) and back (out).",
		  { "bytes_in", "bytes_out" } },
	};
	static const struct { const char *family, *field, *help; } singles[] = {
		{ "tether_service_new_flows_total", "new_flows", "New flows a service accepted." },
		{ "tether_service_persistence_hits_total", "persist_hits",
		  "New flows placed by a persistence entry (source IP or TLS session)." },
		{ "tether_service_persistence_misses_total", "persist_misses",
		  "New flows with no persistence entry, placed by Maglev." },
	};
	size_t index;
	const json_t *service;
	char name[160], pool[160];

	family(page, "tether_service_info", "gauge", "A configured service (always 1), with its VIP, port and pool.");
	json_array_foreach((json_t *)services, index, service)
		page_printf(page, "tether_service_info{service=\"%s\",vip=\"%s\",port=\"%lld\",protocol=\"%s\","
			    "pool=\"%s\",persistence=\"%s\"} 1\n",
			    escape(member_string(service, "name"), name, sizeof(name)), member_string(service, "vip"),
			    (long long)member_integer(service, "port"), member_string(service, "protocol"),
			    escape(member_string(service, "pool"), pool, sizeof(pool)),
			    member_string(service, "persistence"));
	for (size_t s = 0; s < sizeof(singles) / sizeof(singles[0]); s++) {
		family(page, singles[s].family, "counter", singles[s].help);
		json_array_foreach((json_t *)services, index, service)
			page_printf(page, "%s{service=\"%s\"} %lld\n", singles[s].family,
				    escape(member_string(service, "name"), name, sizeof(name)),
				    (long long)member_integer(service, singles[s].field));
	}
	for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
		family(page, rows[r].family, "counter", rows[r].help);
		json_array_foreach((json_t *)services, index, service)
			for (int d = 0; d < 2; d++)
				page_printf(page, "%s{service=\"%s\",direction=\"%s\"} %lld\n", rows[r].family,
					    escape(member_string(service, "name"), name, sizeof(name)),
					    d ? "out" : "in", (long long)member_integer(service, rows[r].field[d]));
	}
}

static const char *
backend_labels(const char *pool, const char *backend, char *out, size_t size)
{
	char escaped_pool[160], escaped_backend[160];

	snprintf(out, size, "pool=\"%s\",backend=\"%s\"", escape(pool, escaped_pool, sizeof(escaped_pool)),
		 escape(backend, escaped_backend, sizeof(escaped_backend)));
	return out;
}

static void
render_dataplane_backends(struct page *page, const json_t *backends)
{
	static const struct { const char *family, *type, *field, *help; } singles[] = {
		{ "tether_backend_new_flows_total", "counter", "new_flows", "New flows sent to a backend." },
		{ "tether_backend_active_flows", "gauge", "active_flows",
		  "Flows to a backend that have not expired yet." },
	};
	static const struct { const char *family, *help, *field[2]; } rows[] = {
		{ "tether_backend_packets_total", "Packets of a backend's flows, to it (in) and from it (out).",
		  { "packets_in", "packets_out" } },
		{ "tether_backend_bytes_total", "Bytes of a backend's flows, to it (in) and from it (out).",
		  { "bytes_in", "bytes_out" } },
	};
	size_t index;
	const json_t *backend;
	char labels[400];

	for (size_t s = 0; s < sizeof(singles) / sizeof(singles[0]); s++) {
		family(page, singles[s].family, singles[s].type, singles[s].help);
		json_array_foreach((json_t *)backends, index, backend)
			page_printf(page, "%s{%s} %lld\n", singles[s].family,
				    backend_labels(member_string(backend, "pool"), member_string(backend, "name"),
						   labels, sizeof(labels)),
				    (long long)member_integer(backend, singles[s].field));
	}
	for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
		family(page, rows[r].family, "counter", rows[r].help);
		json_array_foreach((json_t *)backends, index, backend)
			for (int d = 0; d < 2; d++)
				page_printf(page, "%s{%s,direction=\"%s\"} %lld\n", rows[r].family,
					    backend_labels(member_string(backend, "pool"),
							   member_string(backend, "name"), labels, sizeof(labels)),
					    d ? "out" : "in", (long long)member_integer(backend, rows[r].field[d]));
	}
	family(page, "tether_backend_neighbor_resolved", "gauge",
	       "1 when the dataplane knows the backend's (or its gateway's) MAC address.");
	json_array_foreach((json_t *)backends, index, backend)
		page_printf(page, "tether_backend_neighbor_resolved{%s} %d\n",
			    backend_labels(member_string(backend, "pool"), member_string(backend, "name"),
					   labels, sizeof(labels)),
			    json_is_true(json_object_get(backend, "neighbor_resolved")));
}

/* --- SSL-session counters, grouped by name prefix --- */

static const struct ssl_group {
	const char *prefix, *family, *label, *help;
} ssl_groups[] = {
	{ "hit_", "tether_ssl_session_hits_total", "mechanism",
	  "New ssl-session flows placed by a known TLS session: session ID, ticket or ticket key name." },
	{ "fallback_", "tether_ssl_session_fallbacks_total", "reason",
	  "New ssl-session flows placed by the fallback, by why nothing stuck." },
	{ "learned_", "tether_ssl_session_learned_total", "kind",
	  "Session IDs, tickets and ticket key names learned from servers' handshakes." },
	{ "cookies_", "tether_ssl_session_syn_cookies_total", "result", "SYN cookies sent and checked." },
	{ "bindings_", "tether_ssl_session_bindings_total", "event",
	  "Delayed bindings (TCP handshake taken by the dataplane) by event." },
};

static const struct scalar ssl_gauges[] = {
	{ "sessions_live", "tether_ssl_session_entries", "gauge",
	  "Entries in the TLS session table (IDs, tickets, key names).", NULL },
	{ "bindings_active", "tether_ssl_session_bindings_active", "gauge",
	  "Connections between their handshake with the dataplane and their splice.", NULL },
};

static bool
is_ssl_gauge(const char *key)
{
	for (size_t g = 0; g < sizeof(ssl_gauges) / sizeof(ssl_gauges[0]); g++)
		if (strcmp(key, ssl_gauges[g].key) == 0)
			return true;
	return false;
}

static const struct ssl_group *
ssl_group_of(const char *key)
{
	if (is_ssl_gauge(key))
		return NULL;
	for (size_t g = 0; g < sizeof(ssl_groups) / sizeof(ssl_groups[0]); g++)
		if (strncmp(key, ssl_groups[g].prefix, strlen(ssl_groups[g].prefix)) == 0)
			return &ssl_groups[g];
	return NULL;
}

static void
render_ssl_session(struct page *page, const json_t *ssl)
{
	const char *key;
	const json_t *value;
	char name[128];

	for (size_t g = 0; g < sizeof(ssl_groups) / sizeof(ssl_groups[0]); g++) {
		family(page, ssl_groups[g].family, "counter", ssl_groups[g].help);
		json_object_foreach((json_t *)ssl, key, value)
			if (ssl_group_of(key) == &ssl_groups[g])
				page_printf(page, "%s{%s=\"%s\"} %lld\n", ssl_groups[g].family, ssl_groups[g].label,
					    key + strlen(ssl_groups[g].prefix), (long long)json_integer_value(value));
	}
	render_scalars(page, ssl, ssl_gauges, sizeof(ssl_gauges) / sizeof(ssl_gauges[0]));
	json_object_foreach((json_t *)ssl, key, value) {
		if (ssl_group_of(key) || is_ssl_gauge(key))
			continue;
		snprintf(name, sizeof(name), "tether_ssl_session_%s_total", key);
		family(page, name, "counter", "SSL-session event (see docs/persistence.md).");
		page_printf(page, "%s %lld\n", name, (long long)json_integer_value(value));
	}
}

static void
render_dataplane(struct page *page, const json_t *stats)
{
	static const struct scalar flows[] = {
		{ "live", "tether_flows", "gauge", "Flows in the flow table.", "{state=\"live\"}" },
		{ "capacity", "tether_flows_capacity", "gauge", "Size of the flow table.", NULL },
		{ "created", "tether_flows_created_total", "counter", "Flows created.", NULL },
		{ "expired", "tether_flows_expired_total", "counter", "Flows expired or ended.", NULL },
	};
	static const struct scalar persistence[] = {
		{ "live", "tether_persistence_entries", "gauge", "Entries in the source-IP persistence table.", NULL },
		{ "inserted", "tether_persistence_inserted_total", "counter", "Source-IP persistence entries made.",
		  NULL },
		{ "expired", "tether_persistence_expired_total", "counter", "Source-IP persistence entries expired.",
		  NULL },
	};

	render_ports(page, json_object_get(stats, "ports"));
	render_drops(page, json_object_get(stats, "drops"));
	render_scalars(page, json_object_get(stats, "flows"), flows, sizeof(flows) / sizeof(flows[0]));
	render_scalars(page, json_object_get(stats, "persistence"), persistence,
		       sizeof(persistence) / sizeof(persistence[0]));
	render_counters_by_key(page, json_object_get(stats, "arp"), "tether_arp_", "ARP");
	render_counters_by_key(page, json_object_get(stats, "icmp"), "tether_icmp_", "ICMP");
	render_steering(page, json_object_get(stats, "steering"));
	render_overload(page, json_object_get(stats, "overload"));
	render_services(page, json_object_get(stats, "services"));
	render_dataplane_backends(page, json_object_get(stats, "backends"));
	render_ssl_session(page, json_object_get(stats, "ssl_session"));
}

/* --- tether-control's own view: health and operator state --- */

static void
render_health(struct page *page, const struct metrics_snapshot *snapshot)
{
	static const char *const states[] = { "up", "down", "drain", "disabled" };
	char labels[400];

	family(page, "tether_backend_up", "gauge",
	       "1 when health checks say the backend is up (or it is not checked yet and that counts as up).");
	for (unsigned i = 0; i < snapshot->backend_count; i++) {
		const struct metrics_backend *b = &snapshot->backends[i];
		int up = b->health > 0 || (b->health < 0 && b->unknown_counts_as_up);
		page_printf(page, "tether_backend_up{%s} %d\n", backend_labels(b->pool, b->name, labels, sizeof(labels)),
			    up);
	}
	family(page, "tether_backend_state", "gauge",
	       "1 for the state tether-control asks of the dataplane: up, down (health), drain or disabled (operator).");
	for (unsigned i = 0; i < snapshot->backend_count; i++) {
		const struct metrics_backend *b = &snapshot->backends[i];
		for (size_t s = 0; s < sizeof(states) / sizeof(states[0]); s++)
			page_printf(page, "tether_backend_state{%s,state=\"%s\"} %d\n",
				    backend_labels(b->pool, b->name, labels, sizeof(labels)), states[s],
				    strcmp(b->state, states[s]) == 0);
	}
	family(page, "tether_backend_weight", "gauge", "A backend's weight (the operator's override, else the file's).");
	for (unsigned i = 0; i < snapshot->backend_count; i++) {
		const struct metrics_backend *b = &snapshot->backends[i];
		page_printf(page, "tether_backend_weight{%s} %u\n",
			    backend_labels(b->pool, b->name, labels, sizeof(labels)), b->weight);
	}
	family(page, "tether_backend_check_latency_seconds", "gauge", "How long the last health check took.");
	for (unsigned i = 0; i < snapshot->backend_count; i++) {
		const struct metrics_backend *b = &snapshot->backends[i];
		if (b->check_latency_s >= 0)
			page_printf(page, "tether_backend_check_latency_seconds{%s} %.6f\n",
				    backend_labels(b->pool, b->name, labels, sizeof(labels)), b->check_latency_s);
	}
	family(page, "tether_backend_certificate_expiry_days", "gauge",
	       "Days until the backend's certificate expires, from the last TLS or HTTPS check (negative: expired).");
	for (unsigned i = 0; i < snapshot->backend_count; i++) {
		const struct metrics_backend *b = &snapshot->backends[i];
		if (b->expiry_known)
			page_printf(page, "tether_backend_certificate_expiry_days{%s} %d\n",
				    backend_labels(b->pool, b->name, labels, sizeof(labels)), b->expiry_days);
	}
}

char *
metrics_render(const struct metrics_snapshot *snapshot)
{
	struct page page = { 0 };

	family(&page, "tether_dataplane_up", "gauge", "1 when tether-control reached the dataplane for this scrape.");
	page_printf(&page, "tether_dataplane_up %d\n", snapshot->stats != NULL);
	family(&page, "tether_config_last_reload_successful", "gauge",
	       "1 when the last reload of the config file succeeded.");
	page_printf(&page, "tether_config_last_reload_successful %d\n", snapshot->last_reload_ok);
	family(&page, "tether_config_last_reload_success_timestamp_seconds", "gauge",
	       "Unix time of the last successful config load.");
	page_printf(&page, "tether_config_last_reload_success_timestamp_seconds %.3f\n",
		    snapshot->last_reload_success_time);
	family(&page, "tether_control_start_time_seconds", "gauge", "Unix time tether-control started.");
	page_printf(&page, "tether_control_start_time_seconds %.3f\n", snapshot->start_time);
	render_health(&page, snapshot);
	if (snapshot->stats)
		render_dataplane(&page, snapshot->stats);
	if (page.failed) {
		free(page.data);
		return NULL;
	}
	return page.data ? page.data : strdup("");
}

/* ------------------------------------------------------------------------ */
/* HTTP                                                                     */

int
metrics_parse_request(const char *data, size_t length, bool *head_only)
{
	const char *end = memmem(data, length, "\r\n\r\n", 4);
	const char *line_end, *space, *path, *path_end;

	*head_only = false;
	if (!end)
		end = memmem(data, length, "\n\n", 2);
	if (!end)
		return 0;
	line_end = memchr(data, '\n', length);
	space = memchr(data, ' ', (size_t)(line_end - data));
	if (!space || space == data)
		return 400;
	path = space + 1;
	path_end = memchr(path, ' ', (size_t)(line_end - path));
	if (!path_end || path_end == path || *path != '/' || line_end - path_end - 1 < 7 ||
	    memcmp(path_end + 1, "HTTP/1.", 7) != 0)
		return 400;
	size_t method_length = (size_t)(space - data);
	bool get = method_length == 3 && memcmp(data, "GET", 3) == 0;
	bool head = method_length == 4 && memcmp(data, "HEAD", 4) == 0;
	if (!get && !head)
		return 405;
	size_t path_length = (size_t)(path_end - path);
	const char *query = memchr(path, '?', path_length);
	if (query)
		path_length = (size_t)(query - path);
	if (path_length != 8 || memcmp(path, "/metrics", 8) != 0)
		return 404;
	*head_only = head;
	return 200;
}

enum scrape_phase { SCRAPE_READING, SCRAPE_COLLECTING, SCRAPE_WRITING };

struct scrape {
	int fd;
	uint64_t id;
	enum scrape_phase phase;
	bool head_only;
	uint64_t deadline_ms;
	char request[METRICS_REQUEST_MAX];
	size_t request_length;
	char *response;
	size_t response_length, response_sent;
};

struct metrics_server {
	int listen_fd;
	char address[64];
	metrics_collect_fn collect;
	void *arg;
	uint64_t next_id;
	uint64_t now_ms;
	uint64_t accept_paused_until_ms;
	struct scrape *scrapes[METRICS_CLIENTS_MAX];
};

struct metrics_server *
metrics_server_open(const char *address, metrics_collect_fn collect, void *arg, char *error, size_t error_size)
{
	struct sockaddr_in socket_address = { .sin_family = AF_INET };
	char host[32];
	const char *colon = strrchr(address, ':');
	uint32_t ip;
	int one = 1;
	struct metrics_server *server;

	if (!colon || (size_t)(colon - address) >= sizeof(host)) {
		snprintf(error, error_size, "metrics address '%s' is not a.b.c.d:port", address);
		return NULL;
	}
	memcpy(host, address, (size_t)(colon - address));
	host[colon - address] = '\0';
	long port = strtol(colon + 1, NULL, 10);
	if (config_parse_ipv4(host, &ip) < 0 || port < 1 || port > 65535) {
		snprintf(error, error_size, "metrics address '%s' is not a.b.c.d:port", address);
		return NULL;
	}
	socket_address.sin_addr.s_addr = htonl(ip);
	socket_address.sin_port = htons((uint16_t)port);
	server = calloc(1, sizeof(*server));
	if (!server) {
		snprintf(error, error_size, "out of memory");
		return NULL;
	}
	snprintf(server->address, sizeof(server->address), "%s", address);
	server->collect = collect;
	server->arg = arg;
	server->next_id = 1;
	server->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (server->listen_fd < 0 ||
	    setsockopt(server->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(server->listen_fd, (struct sockaddr *)&socket_address, sizeof(socket_address)) < 0 ||
	    listen(server->listen_fd, 16) < 0) {
		snprintf(error, error_size, "cannot listen for metrics on %s: %s", address, strerror(errno));
		if (server->listen_fd >= 0)
			close(server->listen_fd);
		free(server);
		return NULL;
	}
	return server;
}

const char *
metrics_server_address(const struct metrics_server *server)
{
	return server->address;
}

static void
scrape_free(struct metrics_server *server, unsigned index)
{
	struct scrape *scrape = server->scrapes[index];

	close(scrape->fd);
	free(scrape->response);
	free(scrape);
	server->scrapes[index] = NULL;
}

void
metrics_server_close(struct metrics_server *server)
{
	if (!server)
		return;
	for (unsigned i = 0; i < METRICS_CLIENTS_MAX; i++)
		if (server->scrapes[i])
			scrape_free(server, i);
	close(server->listen_fd);
	free(server);
}

static const char *
status_text(int status)
{
	switch (status) {
	case 200: return "OK";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 413: return "Request Entity Too Large";
	case 500: return "Internal Server Error";
	default: return "Bad Request";
	}
}

/* Build the whole response; `body` (taken) is the page for 200, else NULL. */
static void
scrape_answer(struct scrape *scrape, int status, char *body)
{
	char head[256];
	char message[64];
	const char *content = body;
	const char *type = "text/plain; version=0.0.4; charset=utf-8";

	if (status != 200) {
		snprintf(message, sizeof(message), "%d %s\n", status, status_text(status));
		content = message;
		type = "text/plain; charset=utf-8";
	}
	size_t content_length = strlen(content);
	int head_length = snprintf(head, sizeof(head),
				   "HTTP/1.0 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
				   "Connection: close\r\n\r\n",
				   status, status_text(status), type, content_length,
				   status == 405 ? "Allow: GET, HEAD\r\n" : "");
	size_t body_length = scrape->head_only ? 0 : content_length;
	scrape->response = malloc((size_t)head_length + body_length);
	if (scrape->response) {
		memcpy(scrape->response, head, (size_t)head_length);
		memcpy(scrape->response + head_length, content, body_length);
		scrape->response_length = (size_t)head_length + body_length;
	}
	scrape->response_sent = 0;
	scrape->phase = SCRAPE_WRITING;
	free(body);
}

void
metrics_server_respond(struct metrics_server *server, uint64_t scrape_id, char *body)
{
	for (unsigned i = 0; i < METRICS_CLIENTS_MAX; i++) {
		struct scrape *scrape = server->scrapes[i];
		if (scrape && scrape->id == scrape_id && scrape->phase == SCRAPE_COLLECTING) {
			scrape_answer(scrape, body ? 200 : 500, body);
			return;
		}
	}
	free(body);
}

/* Returns -1 when the scrape is over (answered or broken). */
static int
scrape_write(struct scrape *scrape)
{
	if (!scrape->response)
		return -1;
	while (scrape->response_sent < scrape->response_length) {
		ssize_t written = send(scrape->fd, scrape->response + scrape->response_sent,
				       scrape->response_length - scrape->response_sent, MSG_NOSIGNAL);
		if (written < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		if (written <= 0)
			return -1;
		scrape->response_sent += (size_t)written;
	}
	return -1;
}

/* Read the request head; answer errors at once, hand a good one to collect. */
static int
scrape_read(struct metrics_server *server, struct scrape *scrape)
{
	ssize_t got = read(scrape->fd, scrape->request + scrape->request_length,
			   sizeof(scrape->request) - scrape->request_length);
	int status;

	if (got < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (got <= 0)
		return -1;
	scrape->request_length += (size_t)got;
	status = metrics_parse_request(scrape->request, scrape->request_length, &scrape->head_only);
	if (status == 0 && scrape->request_length == sizeof(scrape->request))
		status = 413;
	if (status == 0)
		return 0;
	if (status != 200) {
		scrape_answer(scrape, status, NULL);
		return 0;
	}
	scrape->phase = SCRAPE_COLLECTING;
	server->collect(server->arg, scrape->id);   /* may answer at once */
	return 0;
}

static void
accept_scrapes(struct metrics_server *server)
{
	for (;;) {
		unsigned slot = 0;
		while (slot < METRICS_CLIENTS_MAX && server->scrapes[slot])
			slot++;
		if (slot == METRICS_CLIENTS_MAX)
			return;
		int fd = accept4(server->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
				server->accept_paused_until_ms = server->now_ms + 1000;
			return;
		}
		struct scrape *scrape = calloc(1, sizeof(*scrape));
		if (!scrape) {
			close(fd);
			return;
		}
		scrape->fd = fd;
		scrape->id = server->next_id++;
		scrape->deadline_ms = server->now_ms + METRICS_TIMEOUT_MS;
		server->scrapes[slot] = scrape;
	}
}

unsigned
metrics_server_poll_prepare(struct metrics_server *server, struct pollfd *fds, unsigned max, uint64_t now_ms,
			    int *timeout_ms)
{
	unsigned count = 0, active = 0;

	server->now_ms = now_ms;
	if (max < METRICS_POLL_FDS)
		return 0;
	for (unsigned i = 0; i < METRICS_CLIENTS_MAX; i++)
		active += server->scrapes[i] != NULL;
	bool accepting = active < METRICS_CLIENTS_MAX && now_ms >= server->accept_paused_until_ms;
	fds[count++] = (struct pollfd){ .fd = accepting ? server->listen_fd : -1, .events = POLLIN };
	if (!accepting && now_ms < server->accept_paused_until_ms &&
	    (int64_t)(server->accept_paused_until_ms - now_ms) < *timeout_ms)
		*timeout_ms = (int)(server->accept_paused_until_ms - now_ms);
	for (unsigned i = 0; i < METRICS_CLIENTS_MAX; i++) {
		struct scrape *scrape = server->scrapes[i];
		if (!scrape) {
			fds[count++] = (struct pollfd){ .fd = -1 };
			continue;
		}
		short events = scrape->phase == SCRAPE_READING ? POLLIN :
			       scrape->phase == SCRAPE_WRITING ? POLLOUT : 0;
		fds[count++] = (struct pollfd){ .fd = scrape->fd, .events = events };
		int64_t wait = scrape->deadline_ms > now_ms ? (int64_t)(scrape->deadline_ms - now_ms) : 0;
		if (wait < *timeout_ms)
			*timeout_ms = (int)wait;
	}
	return count;
}

void
metrics_server_poll_dispatch(struct metrics_server *server, const struct pollfd *fds, unsigned count,
			     uint64_t now_ms)
{
	server->now_ms = now_ms;
	for (unsigned i = 0; i < METRICS_CLIENTS_MAX && 1 + i < count; i++) {
		struct scrape *scrape = server->scrapes[i];
		short revents = fds[1 + i].revents;
		if (!scrape || fds[1 + i].fd != scrape->fd)
			continue;
		if (scrape->phase == SCRAPE_READING && (revents & (POLLIN | POLLHUP | POLLERR)) &&
		    scrape_read(server, scrape) < 0) {
			scrape_free(server, i);
			continue;
		}
		if (scrape->phase == SCRAPE_WRITING && scrape_write(scrape) < 0) {
			scrape_free(server, i);
			continue;
		}
		if (now_ms >= scrape->deadline_ms)
			scrape_free(server, i);   /* a scraper that never finished its request */
	}
	if (count && (fds[0].revents & POLLIN))
		accept_scrapes(server);
}
