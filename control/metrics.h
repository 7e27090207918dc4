/*
 * metrics.h: tether-control's Prometheus endpoint.
 *
 * HTTP/1.0 GET /metrics on config.control.metrics (127.0.0.1:9469 by default:
 * loopback only unless the config says otherwise), text exposition format
 * 0.0.4.  One short-lived connection per scrape: the request is read (at most
 * METRICS_REQUEST_MAX bytes), the dataplane's counters are fetched at that
 * moment through the owner's collect callback, the page is written and the
 * connection closed.  Other paths get 404, other methods 405, garbage 400.
 *
 * The page is rendered by a pure function from a snapshot (tether-control's
 * own view of every backend plus the dataplane's `stats` reply, or none when
 * the dataplane is down), so it can be tested from canned JSON.
 */
#ifndef TETHER_METRICS_H
#define TETHER_METRICS_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#define METRICS_ADDRESS_DEFAULT "127.0.0.1:9469"
#define METRICS_CLIENTS_MAX     16
#define METRICS_REQUEST_MAX     4096
#define METRICS_TIMEOUT_MS      10000   /* a scrape connection's whole life */
#define METRICS_POLL_FDS        (1 + METRICS_CLIENTS_MAX)

/* What tether-control knows of one configured backend. */
struct metrics_backend {
	const char *pool;
	const char *name;
	const char *state;          /* pushed to the dataplane: "up", "down", "drain", "disabled" */
	int health;                 /* 1 up, 0 down, -1 not known yet */
	bool unknown_counts_as_up;  /* the health engine's rule for a backend not checked yet */
	unsigned weight;            /* effective: the operator's override or the file's */
	double check_latency_s;     /* last check; < 0 when none */
	bool expiry_known;
	int expiry_days;            /* certificate, TLS and HTTPS checks */
};

struct metrics_snapshot {
	const struct metrics_backend *backends;
	unsigned backend_count;
	const json_t *stats;        /* the dataplane's `stats` reply; NULL when it is down */
	bool last_reload_ok;        /* the last reload (or the start) succeeded */
	double last_reload_success_time;  /* Unix time of the last successful load */
	double start_time;          /* Unix time tether-control started */
};

/* The page, NUL-terminated (caller frees), or NULL on ENOMEM.  Pure. */
char *metrics_render(const struct metrics_snapshot *snapshot);

/*
 * Read an HTTP request head from `data` (`length` bytes, not NUL-terminated).
 * Returns 0 while the head is incomplete, else the status to answer: 200
 * (GET or HEAD /metrics, any query string), 404 (another path), 405 (another
 * method), 400 (not HTTP).  `*head_only` is set for HEAD.  Pure.
 */
int metrics_parse_request(const char *data, size_t length, bool *head_only);

/* --- the server --- */

struct metrics_server;

/* Called for each scrape that needs a page: produce it, now or later, with
 * metrics_server_respond(scrape_id). */
typedef void (*metrics_collect_fn)(void *arg, uint64_t scrape_id);

/* Listen on "a.b.c.d:port".  NULL with `error` filled. */
struct metrics_server *metrics_server_open(const char *address, metrics_collect_fn collect, void *arg,
					   char *error, size_t error_size);
void metrics_server_close(struct metrics_server *server);
const char *metrics_server_address(const struct metrics_server *server);

/* The page for a scrape (`body` taken, may be NULL: 500); ignored if the
 * scraper has gone. */
void metrics_server_respond(struct metrics_server *server, uint64_t scrape_id, char *body);

/* The poll loop, as control_socket.h: METRICS_POLL_FDS entries. */
unsigned metrics_server_poll_prepare(struct metrics_server *server, struct pollfd *fds, unsigned max,
				     uint64_t now_ms, int *timeout_ms);
void metrics_server_poll_dispatch(struct metrics_server *server, const struct pollfd *fds, unsigned count,
				  uint64_t now_ms);

#endif /* TETHER_METRICS_H */
