/*
 * dataplane_client.h: tether-control's connection to dataplane.sock
 * (protocol: docs/architecture.md, "dataplane.sock").
 *
 * One connection, kept up: when it cannot be made or drops, the client retries
 * with a backoff from 100 ms doubling to 1 s, and logs once per outage, not
 * once per attempt.  The dataplane keeps forwarding on its last state
 * meanwhile; on every (re)connection the owner's on_connect callback pushes the
 * full desired state again (resync).
 *
 * Requests are pipelined: each is one JSON line, and the dataplane answers in
 * order, so replies are matched to requests first in, first out.  Each request
 * has its own timeout: when it passes, its callback hears "timed out" and its
 * late reply is discarded.  If the dataplane answers nothing at all for
 * DATAPLANE_STALL_MS while requests wait, the connection is deemed stuck,
 * closed and made again.
 *
 * Single-threaded; driven by the owner's poll loop.
 */
#ifndef TETHER_DATAPLANE_CLIENT_H
#define TETHER_DATAPLANE_CLIENT_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#define DATAPLANE_SOCKET_DEFAULT "/run/tether/dataplane.sock"
#define DATAPLANE_PENDING_MAX    256
#define DATAPLANE_REPLY_MAX      (64u << 20)   /* stats of a very large config */
#define DATAPLANE_STALL_MS       15000
#define DATAPLANE_RETRY_MIN_MS   100
#define DATAPLANE_RETRY_MAX_MS   1000

/*
 * A request's outcome: `reply` (borrowed; json_incref to keep it) is the
 * dataplane's answer, which may itself be {"error": ...}; or `reply` is NULL
 * and `error` says why there is none (not connected, timed out, connection
 * lost, shutting down).
 */
typedef void (*dataplane_reply_fn)(void *arg, json_t *reply, const char *error);

struct dataplane_client_callbacks {
	void (*on_connect)(void *arg);                      /* resync here */
	void (*on_disconnect)(void *arg, const char *why);  /* after pending callbacks failed */
	void *arg;
};

struct dataplane_client;

/* A client for `path`; it connects on its first poll turn.  NULL on ENOMEM. */
struct dataplane_client *dataplane_client_create(const char *path,
						 const struct dataplane_client_callbacks *callbacks);

/* Close; every waiting callback hears "shutting down". */
void dataplane_client_destroy(struct dataplane_client *client);

bool dataplane_client_connected(const struct dataplane_client *client);
const char *dataplane_client_path(const struct dataplane_client *client);

/* Why the last attempt failed or the connection dropped ("" when none). */
const char *dataplane_client_last_error(const struct dataplane_client *client);

/*
 * Send `request` (taken) and call `reply_fn` once with the outcome, never from
 * within this call.  Returns 0, or -ENOTCONN / -EBUSY (too many waiting) /
 * -ENOMEM; then `reply_fn` is not called.
 */
int dataplane_client_request(struct dataplane_client *client, json_t *request, unsigned timeout_ms,
			     dataplane_reply_fn reply_fn, void *arg);

/* The poll loop: _prepare fills at most one entry (returns 0 or 1) and lowers
 * `*timeout_ms` to the next retry or request deadline; _dispatch takes it back
 * (count may be 0: timers only). */
unsigned dataplane_client_poll_prepare(struct dataplane_client *client, struct pollfd *fds,
				       uint64_t now_ms, int *timeout_ms);
void dataplane_client_poll_dispatch(struct dataplane_client *client, const struct pollfd *fds,
				    unsigned count, uint64_t now_ms);

#endif /* TETHER_DATAPLANE_CLIENT_H */
