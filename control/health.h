/*
 * health.h: the health check engine of tether-control (relayd's hce).
 *
 * One engine checks every backend of every pool from one thread: an epoll set
 * holds the sockets of the checks in flight and one timerfd that fires at the
 * earliest deadline (next check to start, or check to time out), kept in a
 * binary heap.  Nothing blocks: connects, TLS handshakes and HTTP exchanges
 * are non-blocking state machines driven by epoll events (check.h), so
 * hundreds of backends at 1 s intervals cost a few per cent of one core.
 *
 * The daemon either calls health_engine_run_once() in its loop, or polls
 * health_engine_fd() together with its own fds and calls run_once(engine, 0)
 * when it is readable.  State changes come back through a callback, once per
 * change; the per-backend state (struct health_backend_state) is readable at
 * any time for status and metrics.
 *
 * State: a backend starts HEALTH_UNKNOWN, which counts as up for traffic (like
 * HAProxy and keepalived, so that a control-plane restart or a reload never
 * takes healthy backends out).  The first success makes it UP at once; it
 * goes DOWN after `fall` consecutive failures (counted from the start), and a
 * DOWN backend comes UP again only after `rise` consecutive successes.
 * Backends of a pool whose check type is "none" are UP and never checked.
 */
#ifndef TETHER_HEALTH_H
#define TETHER_HEALTH_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

#define HEALTH_ERROR_MAX      320   /* last error text, incl. NUL (room for a 253-char fqdn) */
#define HEALTH_KEY_NAME_LENGTH 16   /* = TLS_TICKET_KEY_NAME_LENGTH (tls_hello.h) */

enum health_state { HEALTH_UNKNOWN, HEALTH_UP, HEALTH_DOWN };

/* What status and metrics show for one backend.  Counters survive a reload
 * that leaves the backend and its check unchanged. */
struct health_backend_state {
	enum health_state state;
	uint64_t state_since_ms;        /* CLOCK_MONOTONIC ms of the last change (or start) */
	uint16_t port;                  /* the port probed (0: none could be decided) */
	bool checked;                   /* at least one check has finished */
	bool last_ok;                   /* result of the last finished check */
	char last_error[HEALTH_ERROR_MAX]; /* "" after a success; else e.g.
					 * "connect: Connection refused" */
	uint32_t latency_us;            /* last check: connect start to answer (or failure) */
	uint32_t consecutive_successes;
	uint32_t consecutive_failures;
	uint64_t checks;                /* finished checks */
	uint64_t failures;              /* of which failed */
	/* tls, https: the server's leaf certificate, from the last handshake that
	 * got one (also when its verification failed). */
	bool expiry_known;
	int32_t days_to_expiry;         /* whole days left, floored: 0 = expires within
					 * 24 h, negative = expired */
	/* tls, https: the first 16 bytes of the session ticket the server issued on
	 * the last successful check (its ticket key name in OpenSSL's layout).
	 * Kept across failed checks; invalid after a verified handshake that
	 * brought no ticket. */
	bool ticket_key_name_valid;
	uint8_t ticket_key_name[HEALTH_KEY_NAME_LENGTH];
};

struct health_engine;

/*
 * Called once per state change of one backend, from inside
 * health_engine_run_once().  `reason`: the error text for a change to DOWN,
 * "check passed" or "N consecutive checks passed" for a change to UP.  The
 * callback may read states (health_engine_backend) but must not update or
 * destroy the engine.
 */
typedef void (*health_change_fn)(void *arg, unsigned pool_index, unsigned backend_index,
				 const char *pool_name, const char *backend_name,
				 enum health_state old_state, enum health_state new_state,
				 const char *reason);

/*
 * Called when a backend's ticket key name becomes valid, changes, or becomes
 * invalid (state->ticket_key_name*), from inside health_engine_run_once();
 * same rules as health_change_fn.  Optional.
 */
typedef void (*health_key_name_fn)(void *arg, unsigned pool_index, unsigned backend_index,
				   const struct health_backend_state *state);

/*
 * Create an engine checking every backend of `config` (copied: the caller may
 * free it afterwards).  First checks are spread over each pool's interval.
 * Returns NULL with errno set when the epoll set, the timer or memory cannot
 * be had.  A CA file that cannot be loaded is not an error here: that pool's
 * checks fail with the reason.
 */
struct health_engine *health_engine_create(const struct config *config,
					   health_change_fn on_change, void *arg);

/* Register the key name callback (called with the `arg` given to create). */
void health_engine_set_key_name_callback(struct health_engine *engine,
					 health_key_name_fn on_key_name);

/*
 * Source address (IPv4, host order) for checks started from now on; 0 (the
 * default) lets the routing table choose.  Returns 0.
 */
int health_engine_set_source(struct health_engine *engine, uint32_t address);

/* The epoll fd: readable when run_once(engine, 0) has work to do. */
int health_engine_fd(const struct health_engine *engine);

/*
 * Wait up to `timeout_ms` (0: do not wait, -1: forever) for socket events or
 * due timers, then process everything ready: advance checks, start due ones,
 * time out late ones, call the callbacks.  Returns the number of events
 * handled (0 on timeout or EINTR), or a negative errno if epoll failed.
 */
int health_engine_run_once(struct health_engine *engine, int timeout_ms);

/*
 * Apply a reloaded `config` (copied).  A backend whose pool name, backend
 * name, address, probed port, fqdn and check parameters (type, interval,
 * timeout, rise, fall, ca, path, expect_status) are all unchanged keeps its
 * state, counters and any check in flight, even when it moved to another
 * index; a new or changed one starts afresh in HEALTH_UNKNOWN; removed ones
 * are dropped (their checks aborted, no callback).  CA files are re-read.
 * Pool and backend indices in callbacks and health_engine_backend() follow the
 * new config.  Returns 0, or -ENOMEM with the engine unchanged.
 */
int health_engine_update(struct health_engine *engine, const struct config *config);

/* The state of backend `backend_index` of pool `pool_index`, or NULL if out of
 * range.  Valid until the next health_engine_update() or destroy. */
const struct health_backend_state *health_engine_backend(const struct health_engine *engine,
							  unsigned pool_index,
							  unsigned backend_index);

/* Abort every check, close every fd, free everything.  NULL is fine. */
void health_engine_destroy(struct health_engine *engine);

/* "unknown", "up", "down". */
const char *health_state_name(enum health_state state);

/* Whether a backend in `state` may take new flows (UNKNOWN and UP). */
static inline bool
health_state_serves(enum health_state state)
{
	return state != HEALTH_DOWN;
}

/*
 * The port a check of backend `backend_index` of pool `pool_index` probes:
 * health.port if set, else the backend's port, else the destination port of
 * the first service (in file order) using the pool (its target_port, else its
 * port).  0 when none applies (a portless pool no service uses).
 */
uint16_t health_probe_port(const struct config *config, unsigned pool_index,
			   unsigned backend_index);

#endif /* TETHER_HEALTH_H */
