/*
 * health.c: the health check engine (relayd's hce.c): scheduling, timeouts,
 * rise/fall, reloads.  The protocols live in check_tcp.c, check_tls.c and
 * check_http.c (check.h describes the phases).
 *
 * Design:
 *  - One thread, one epoll set.  The set holds the socket of every check in
 *    flight (data.ptr = the backend) and one timerfd (data.ptr = NULL) armed,
 *    absolute on CLOCK_MONOTONIC, at the earliest deadline.  So the daemon can
 *    poll the epoll fd with its own and never needs to know our timers.
 *  - Deadlines live in a binary min-heap of backends: an idle backend's key is
 *    when its next check starts, a busy one's when its check times out.  Each
 *    wake-up costs O(log n) per due backend, nothing per idle one: hundreds or
 *    thousands of backends at 1 s intervals cost little CPU (the unit test
 *    measures 300 at 200 ms).
 *  - Checks run at a fixed rate: the next one starts one interval after the
 *    previous one started (timeout < interval, so they never overlap).  The
 *    first checks of a pool are spread evenly over one interval so that a
 *    large pool does not connect to every backend in the same millisecond.
 *  - State: HEALTH_UNKNOWN at birth counts as up for traffic (HAProxy and
 *    keepalived also start servers up): restarting tether-control or adding
 *    a backend must not drop traffic before the first results.  The first
 *    success confirms UP at once; `fall` consecutive failures make it DOWN;
 *    from DOWN only `rise` consecutive successes bring it back.
 *  - A reload (health_engine_update) is built aside and committed only when
 *    every allocation succeeded.  Backends whose identity and check are
 *    unchanged move over as they are, check in flight included.
 *  - Memory is bounded by the config: one struct per backend, at most one
 *    socket and one SSL object per backend at any time.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "health.h"
#include "tls_hello.h"

_Static_assert(HEALTH_KEY_NAME_LENGTH == TLS_TICKET_KEY_NAME_LENGTH,
	       "the dataplane keys sessions by the same key name length");

#define HEALTH_EVENTS_MAX 64
#define HEAP_NONE ((size_t)-1)

/* The backends of one pool, in config order. */
struct health_pool_slot {
	struct health_pool *pool;
	unsigned backend_count;
	struct health_backend **backends;
};

struct health_engine {
	int epoll_fd;
	int timer_fd;
	uint64_t timer_armed_ns;        /* 0: disarmed */
	health_change_fn on_change;
	health_key_name_fn on_key_name;
	void *arg;
	uint32_t source;                /* host order; 0 = routing decides */
	unsigned pool_count;
	struct health_pool_slot *pools;
	struct health_backend **heap;   /* min-heap on deadline_ns */
	size_t heap_count, heap_capacity;
};

static uint64_t
health_now_ns(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

static uint64_t
ms_to_ns(uint32_t ms)
{
	return (uint64_t)ms * 1000000u;
}

const char *
health_state_name(enum health_state state)
{
	switch (state) {
	case HEALTH_UP:   return "up";
	case HEALTH_DOWN: return "down";
	default:          return "unknown";
	}
}

uint16_t
health_probe_port(const struct config *config, unsigned pool_index, unsigned backend_index)
{
	const struct config_pool *pool;
	unsigned i;

	if (pool_index >= config->pool_count)
		return 0;
	pool = &config->pools[pool_index];
	if (pool->health.port != 0)
		return pool->health.port;
	if (backend_index < pool->backend_count && pool->backends[backend_index].port != 0)
		return pool->backends[backend_index].port;
	for (i = 0; i < config->service_count; i++)
		if (config->services[i].pool == pool_index)
			return config->services[i].target_port != 0 ? config->services[i].target_port
								   : config->services[i].port;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* The deadline heap                                                         */

static void
heap_swap(struct health_engine *engine, size_t a, size_t b)
{
	struct health_backend *backend = engine->heap[a];

	engine->heap[a] = engine->heap[b];
	engine->heap[b] = backend;
	engine->heap[a]->heap_slot = a;
	engine->heap[b]->heap_slot = b;
}

static void
heap_sift_up(struct health_engine *engine, size_t slot)
{
	while (slot > 0) {
		size_t parent = (slot - 1) / 2;

		if (engine->heap[parent]->deadline_ns <= engine->heap[slot]->deadline_ns)
			break;
		heap_swap(engine, slot, parent);
		slot = parent;
	}
}

static void
heap_sift_down(struct health_engine *engine, size_t slot)
{
	for (;;) {
		size_t smallest = slot, left = 2 * slot + 1, right = left + 1;

		if (left < engine->heap_count &&
		    engine->heap[left]->deadline_ns < engine->heap[smallest]->deadline_ns)
			smallest = left;
		if (right < engine->heap_count &&
		    engine->heap[right]->deadline_ns < engine->heap[smallest]->deadline_ns)
			smallest = right;
		if (smallest == slot)
			return;
		heap_swap(engine, slot, smallest);
		slot = smallest;
	}
}

/* Put `backend` in the heap; the caller reserved room (heap_reserve). */
static void
heap_push(struct health_engine *engine, struct health_backend *backend)
{
	backend->heap_slot = engine->heap_count;
	engine->heap[engine->heap_count++] = backend;
	heap_sift_up(engine, backend->heap_slot);
}

static void
heap_remove(struct health_engine *engine, struct health_backend *backend)
{
	size_t slot = backend->heap_slot;

	if (slot == HEAP_NONE)
		return;
	backend->heap_slot = HEAP_NONE;
	if (slot != --engine->heap_count) {
		engine->heap[slot] = engine->heap[engine->heap_count];
		engine->heap[slot]->heap_slot = slot;
		heap_sift_up(engine, slot);
		heap_sift_down(engine, engine->heap[slot]->heap_slot);
	}
}

/* Give `backend` a new deadline and restore the heap order. */
static void
heap_set_deadline(struct health_engine *engine, struct health_backend *backend,
		  uint64_t deadline_ns)
{
	backend->deadline_ns = deadline_ns;
	if (backend->heap_slot == HEAP_NONE)
		return;
	heap_sift_up(engine, backend->heap_slot);
	heap_sift_down(engine, backend->heap_slot);
}

static int
heap_reserve(struct health_engine *engine, size_t count)
{
	struct health_backend **heap;

	if (count <= engine->heap_capacity)
		return 0;
	heap = realloc(engine->heap, count * sizeof *heap);
	if (heap == NULL)
		return -ENOMEM;
	engine->heap = heap;
	engine->heap_capacity = count;
	return 0;
}

/* Arm the timerfd at the earliest deadline (or disarm it). */
static void
timer_arm(struct health_engine *engine)
{
	uint64_t deadline = engine->heap_count > 0 ? engine->heap[0]->deadline_ns : 0;
	struct itimerspec spec;

	if (deadline == engine->timer_armed_ns)
		return;
	memset(&spec, 0, sizeof spec);
	if (deadline != 0) {
		spec.it_value.tv_sec = (time_t)(deadline / 1000000000u);
		spec.it_value.tv_nsec = (long)(deadline % 1000000000u);
	}
	if (timerfd_settime(engine->timer_fd, TFD_TIMER_ABSTIME, &spec, NULL) == 0)
		engine->timer_armed_ns = deadline;
}

/* ------------------------------------------------------------------------ */
/* One check's life                                                          */

/* Register the check's socket for `events` (EPOLLIN or EPOLLOUT). */
static int
check_watch(struct health_engine *engine, struct health_backend *backend, uint32_t events)
{
	struct epoll_event event = { .events = events, .data.ptr = backend };
	int operation = backend->epoll_events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;

	if (backend->epoll_events == events)
		return 0;
	if (epoll_ctl(engine->epoll_fd, operation, backend->fd, &event) < 0) {
		snprintf(backend->error, sizeof backend->error, "epoll: %s", strerror(errno));
		return -1;
	}
	backend->epoll_events = events;
	return 0;
}

/* Close whatever the check holds; the backend goes back to idle. */
static void
check_close(struct health_engine *engine, struct health_backend *backend)
{
	if (backend->epoll_events != 0 && backend->fd >= 0)
		(void)epoll_ctl(engine->epoll_fd, EPOLL_CTL_DEL, backend->fd, NULL);
	backend->epoll_events = 0;
	check_tls_close(backend);
	check_tcp_close(backend);
	backend->phase = CHECK_IDLE;
	backend->request_length = 0;
}

static void
check_key_name(struct health_engine *engine, struct health_backend *backend, bool ok)
{
	struct health_backend_state *state = &backend->state;
	enum config_health_type type = backend->pool->conf.type;
	bool valid, changed;

	if (!ok || (type != CONFIG_HEALTH_TLS && type != CONFIG_HEALTH_HTTPS))
		return;         /* a failed check says nothing about the server's keys */
	/* Nor does a wait for the ticket that the check's timeout cut short: a
	 * slow server would otherwise lose its key name, and the dataplane its
	 * TLS 1.3 resumptions, at every check that ended before its ticket came. */
	if (!backend->ticket_seen && backend->ticket_wait_cut)
		return;
	valid = backend->ticket_seen;
	changed = valid != state->ticket_key_name_valid ||
		  (valid && memcmp(state->ticket_key_name, backend->ticket_key_name,
				   HEALTH_KEY_NAME_LENGTH) != 0);
	state->ticket_key_name_valid = valid;
	if (valid)
		memcpy(state->ticket_key_name, backend->ticket_key_name, HEALTH_KEY_NAME_LENGTH);
	if (changed && engine->on_key_name != NULL)
		engine->on_key_name(engine->arg, backend->pool_index, backend->backend_index, state);
}

/* Apply rise/fall to the result just recorded; report a change. */
static void
check_judge(struct health_engine *engine, struct health_backend *backend, bool ok,
	    uint64_t now_ns)
{
	struct health_backend_state *state = &backend->state;
	const struct config_health *health = &backend->pool->conf;
	enum health_state old_state = state->state, new_state = old_state;
	char reason[HEALTH_ERROR_MAX];

	if (ok && old_state == HEALTH_UNKNOWN)
		new_state = HEALTH_UP;
	else if (ok && old_state == HEALTH_DOWN && state->consecutive_successes >= health->rise)
		new_state = HEALTH_UP;
	else if (!ok && old_state != HEALTH_DOWN && state->consecutive_failures >= health->fall)
		new_state = HEALTH_DOWN;
	if (new_state == old_state)
		return;
	state->state = new_state;
	state->state_since_ms = now_ns / 1000000u;
	if (new_state == HEALTH_DOWN)
		snprintf(reason, sizeof reason, "%s", state->last_error);
	else if (old_state == HEALTH_UNKNOWN || health->rise == 1)
		snprintf(reason, sizeof reason, "check passed");
	else
		snprintf(reason, sizeof reason, "%u consecutive checks passed",
			 state->consecutive_successes);
	if (engine->on_change != NULL)
		engine->on_change(engine->arg, backend->pool_index, backend->backend_index,
				  backend->pool->name, backend->name, old_state, new_state, reason);
}

/* The check is over: record it, judge it, schedule the next one. */
static void
check_finish(struct health_engine *engine, struct health_backend *backend, bool ok)
{
	struct health_backend_state *state = &backend->state;
	uint64_t now = health_now_ns();
	uint64_t answered = backend->answered_ns != 0 ? backend->answered_ns : now;

	check_close(engine, backend);
	state->checked = true;
	state->last_ok = ok;
	state->latency_us = (uint32_t)((answered - backend->started_ns) / 1000u);
	state->checks++;
	if (ok) {
		state->consecutive_successes++;
		state->consecutive_failures = 0;
		state->last_error[0] = '\0';
	} else {
		state->failures++;
		state->consecutive_failures++;
		state->consecutive_successes = 0;
		snprintf(state->last_error, sizeof state->last_error, "%s",
			 backend->error[0] != '\0' ? backend->error : "check failed");
	}
	if (backend->expiry_known) {
		state->expiry_known = true;
		state->days_to_expiry = backend->days_to_expiry;
	}
	check_key_name(engine, backend, ok);
	check_judge(engine, backend, ok, now);
	heap_set_deadline(engine, backend, backend->next_start_ns > now ? backend->next_start_ns
									: now);
}

/* Run the step of the phase the check is in. */
static enum check_step
check_step(struct health_backend *backend)
{
	enum check_step step;

	switch (backend->phase) {
	case CHECK_CONNECTING:
		return check_tcp_connected(backend);
	case CHECK_TLS_HANDSHAKE:
		if (backend->ssl == NULL && (step = check_tls_begin(backend)) != CHECK_STEP_DONE)
			return step;
		return check_tls_handshake(backend);
	case CHECK_TLS_TICKET:
		return check_tls_ticket(backend);
	case CHECK_HTTP_SEND:
		if (backend->request_length == 0 &&
		    (step = check_http_begin(backend)) != CHECK_STEP_DONE)
			return step;
		return check_http_send(backend);
	case CHECK_HTTP_RECEIVE:
		return check_http_receive(backend);
	case CHECK_IDLE:
	default:
		return CHECK_STEP_DONE;
	}
}

/* The current phase is done: move to the next one.  False when the chain is
 * complete. */
static bool
check_next_phase(struct health_engine *engine, struct health_backend *backend)
{
	enum config_health_type type = backend->pool->conf.type;
	uint64_t now, wait_end;

	switch (backend->phase) {
	case CHECK_CONNECTING:
		if (type == CONFIG_HEALTH_TCP)
			return false;
		backend->phase = type == CONFIG_HEALTH_HTTP ? CHECK_HTTP_SEND : CHECK_TLS_HANDSHAKE;
		return true;
	case CHECK_TLS_HANDSHAKE:
		if (type == CONFIG_HEALTH_HTTPS) {
			backend->phase = CHECK_HTTP_SEND;
			return true;
		}
		/* tls: decided; wait a little for a TLS 1.3 ticket. */
		now = health_now_ns();
		backend->answered_ns = now;
		backend->phase = CHECK_TLS_TICKET;
		wait_end = now + ms_to_ns(CHECK_TICKET_WAIT_MS);
		if (wait_end < backend->deadline_ns)
			heap_set_deadline(engine, backend, wait_end);
		return true;
	case CHECK_HTTP_SEND:
		backend->phase = CHECK_HTTP_RECEIVE;
		return true;
	default:
		return false;
	}
}

/* Act on a step's answer until the check waits or ends. */
static void
check_advance(struct health_engine *engine, struct health_backend *backend,
	      enum check_step step)
{
	for (;;) {
		switch (step) {
		case CHECK_STEP_FAILED:
			check_finish(engine, backend, false);
			return;
		case CHECK_STEP_WANT_READ:
		case CHECK_STEP_WANT_WRITE:
			if (check_watch(engine, backend, step == CHECK_STEP_WANT_READ ? EPOLLIN
										      : EPOLLOUT) < 0)
				check_finish(engine, backend, false);
			return;
		case CHECK_STEP_DONE:
			break;
		}
		if (!check_next_phase(engine, backend)) {
			check_finish(engine, backend, true);
			return;
		}
		step = check_step(backend);
	}
}

static void
check_start(struct health_engine *engine, struct health_backend *backend, uint64_t now)
{
	const struct config_health *health = &backend->pool->conf;

	backend->next_start_ns = backend->deadline_ns + ms_to_ns(health->interval_ms);
	if (backend->next_start_ns <= now)     /* we were late: keep the spacing */
		backend->next_start_ns = now + ms_to_ns(health->interval_ms);
	backend->started_ns = now;
	backend->answered_ns = 0;
	backend->error[0] = '\0';
	backend->expiry_known = false;
	backend->ticket_seen = false;
	backend->ticket_wait_cut = false;
	backend->handshake_done = false;
	backend->request_length = 0;
	heap_set_deadline(engine, backend, now + ms_to_ns(health->timeout_ms));
	backend->phase = CHECK_CONNECTING;
	if (backend->port == 0) {
		snprintf(backend->error, sizeof backend->error,
			 "no port to probe: set health.port or the backend's port");
		check_finish(engine, backend, false);
		return;
	}
	check_advance(engine, backend, check_tcp_open(backend, engine->source));
}

static const char *
check_phase_name(enum check_phase phase)
{
	switch (phase) {
	case CHECK_CONNECTING:    return "connecting";
	case CHECK_TLS_HANDSHAKE: return "TLS handshake";
	case CHECK_HTTP_SEND:     return "sending HTTP request";
	case CHECK_HTTP_RECEIVE:  return "waiting for HTTP status";
	default:                  return "idle";
	}
}

static void
check_timeout(struct health_engine *engine, struct health_backend *backend)
{
	if (backend->phase == CHECK_TLS_TICKET) {
		backend->ticket_wait_cut = health_now_ns() <
					   backend->answered_ns + ms_to_ns(CHECK_TICKET_WAIT_MS);
		check_finish(engine, backend, true);    /* no ticket came: still up */
		return;
	}
	snprintf(backend->error, sizeof backend->error, "timeout after %u ms (%s)",
		 backend->pool->conf.timeout_ms, check_phase_name(backend->phase));
	check_finish(engine, backend, false);
}

/* Start due checks and expire late ones. */
static void
health_run_timers(struct health_engine *engine)
{
	uint64_t now = health_now_ns();

	while (engine->heap_count > 0 && engine->heap[0]->deadline_ns <= now) {
		struct health_backend *backend = engine->heap[0];

		if (backend->phase == CHECK_IDLE)
			check_start(engine, backend, now);
		else
			check_timeout(engine, backend);
	}
}

int
health_engine_run_once(struct health_engine *engine, int timeout_ms)
{
	struct epoll_event events[HEALTH_EVENTS_MAX];
	uint64_t expirations;
	int count, i;

	count = epoll_wait(engine->epoll_fd, events, HEALTH_EVENTS_MAX, timeout_ms);
	if (count < 0) {
		if (errno != EINTR)
			return -errno;
		count = 0;
	}
	for (i = 0; i < count; i++) {
		struct health_backend *backend = events[i].data.ptr;

		if (backend == NULL) {
			if (read(engine->timer_fd, &expirations, sizeof expirations) < 0)
				engine->timer_armed_ns = 0;     /* EAGAIN: re-arm below */
			continue;
		}
		if (backend->phase != CHECK_IDLE)
			check_advance(engine, backend, check_step(backend));
	}
	health_run_timers(engine);
	timer_arm(engine);
	return count;
}

/* ------------------------------------------------------------------------ */
/* Building and reloading                                                    */

/* The pool's check parameters, with degenerate values (a config that skipped
 * validation) made harmless: the engine must never spin. */
static struct config_health
health_sanitize(const struct config_health *health)
{
	struct config_health result = *health;

	if (result.timeout_ms == 0)
		result.timeout_ms = 1;
	if (result.interval_ms <= result.timeout_ms)
		result.interval_ms = result.timeout_ms + 1;
	if (result.rise == 0)
		result.rise = 1;
	if (result.fall == 0)
		result.fall = 1;
	if (result.expect_status == 0)
		result.expect_status = 200;
	return result;
}

static bool
health_same_check(const struct config_health *a, const struct config_health *b)
{
	return a->type == b->type && a->interval_ms == b->interval_ms &&
	       a->timeout_ms == b->timeout_ms && a->rise == b->rise && a->fall == b->fall &&
	       strcmp(a->ca, b->ca) == 0 && strcmp(a->path, b->path) == 0 &&
	       a->expect_status == b->expect_status;
}

static void
health_pool_free(struct health_pool *pool)
{
	if (pool == NULL)
		return;
	SSL_CTX_free(pool->tls);
	free(pool);
}

static struct health_pool *
health_pool_new(const struct config_pool *config_pool)
{
	struct health_pool *pool = calloc(1, sizeof *pool);

	if (pool == NULL)
		return NULL;
	snprintf(pool->name, sizeof pool->name, "%s", config_pool->name);
	pool->conf = health_sanitize(&config_pool->health);
	if (pool->conf.type == CONFIG_HEALTH_TLS || pool->conf.type == CONFIG_HEALTH_HTTPS)
		(void)check_tls_context(pool);  /* on failure, checks report tls_error */
	return pool;
}

static void
backend_free(struct health_engine *engine, struct health_backend *backend)
{
	if (backend == NULL)
		return;
	check_close(engine, backend);
	heap_remove(engine, backend);
	free(backend);
}

/* A fresh backend, HEALTH_UNKNOWN (UP, unchecked, for a "none" pool). */
static struct health_backend *
backend_new(const struct config_backend *config_backend, uint16_t port)
{
	struct health_backend *backend = calloc(1, sizeof *backend);

	if (backend == NULL)
		return NULL;
	snprintf(backend->name, sizeof backend->name, "%s", config_backend->name);
	snprintf(backend->fqdn, sizeof backend->fqdn, "%s", config_backend->fqdn);
	backend->address = config_backend->address;
	backend->port = port;
	backend->state.port = port;
	backend->state.state_since_ms = health_now_ns() / 1000000u;
	backend->fd = -1;
	backend->heap_slot = HEAP_NONE;
	backend->phase = CHECK_IDLE;
	return backend;
}

/* Whether `old` (running in `old_pool`) is the backend the new config
 * describes, with the same check: then it keeps its state. */
static bool
backend_same(const struct health_backend *old, const struct health_pool *old_pool,
	     const struct config_backend *config_backend, uint16_t port,
	     const struct health_pool *new_pool)
{
	return strcmp(old->name, config_backend->name) == 0 &&
	       old->address == config_backend->address && old->port == port &&
	       strcmp(old->fqdn, config_backend->fqdn) == 0 &&
	       strcmp(old_pool->name, new_pool->name) == 0 &&
	       health_same_check(&old_pool->conf, &new_pool->conf);
}

/* Find in the running engine the backend the new config describes at
 * (pool `new_pool`, backend `index`), not yet claimed by another. */
static struct health_backend *
backend_find(struct health_engine *engine, const struct health_pool *new_pool,
	     const struct config_backend *config_backend, unsigned index, uint16_t port,
	     bool *claimed_by_old[])
{
	unsigned p, b;

	for (p = 0; p < engine->pool_count; p++) {
		struct health_pool_slot *slot = &engine->pools[p];

		if (strcmp(slot->pool->name, new_pool->name) != 0)
			continue;
		/* Same place first (the common case), then anywhere in the pool. */
		if (index < slot->backend_count && !claimed_by_old[p][index] &&
		    backend_same(slot->backends[index], slot->pool, config_backend, port, new_pool)) {
			claimed_by_old[p][index] = true;
			return slot->backends[index];
		}
		for (b = 0; b < slot->backend_count; b++)
			if (!claimed_by_old[p][b] &&
			    backend_same(slot->backends[b], slot->pool, config_backend, port, new_pool)) {
				claimed_by_old[p][b] = true;
				return slot->backends[b];
			}
		return NULL;
	}
	return NULL;
}

static void
pool_slots_free(struct health_engine *engine, struct health_pool_slot *slots, unsigned count,
		bool free_backends)
{
	unsigned p, b;

	if (slots == NULL)
		return;
	for (p = 0; p < count; p++) {
		if (free_backends && slots[p].backends != NULL)
			for (b = 0; b < slots[p].backend_count; b++)
				backend_free(engine, slots[p].backends[b]);
		free(slots[p].backends);
		health_pool_free(slots[p].pool);
	}
	free(slots);
}

static void
claims_free(bool **claims, unsigned count)
{
	unsigned p;

	if (claims == NULL)
		return;
	for (p = 0; p < count; p++)
		free(claims[p]);
	free(claims);
}

int
health_engine_update(struct health_engine *engine, const struct config *config)
{
	struct health_pool_slot *slots = NULL;
	bool **claims = NULL, **reused = NULL;
	size_t checked = 0;
	uint64_t now = health_now_ns();
	unsigned old_pool_count = engine->pool_count, p, b;
	int result = -ENOMEM;

	/* 1. Build the new tables aside; the running ones are untouched. */
	claims = calloc(engine->pool_count + 1, sizeof *claims);
	reused = calloc(config->pool_count + 1, sizeof *reused);
	slots = calloc(config->pool_count + 1, sizeof *slots);
	if (claims == NULL || reused == NULL || slots == NULL)
		goto fail;
	for (p = 0; p < engine->pool_count; p++)
		if ((claims[p] = calloc(engine->pools[p].backend_count + 1, sizeof **claims)) == NULL)
			goto fail;
	for (p = 0; p < config->pool_count; p++) {
		const struct config_pool *config_pool = &config->pools[p];
		struct health_pool_slot *slot = &slots[p];

		if ((slot->pool = health_pool_new(config_pool)) == NULL)
			goto fail;
		slot->backends = calloc(config_pool->backend_count + 1, sizeof *slot->backends);
		reused[p] = calloc(config_pool->backend_count + 1, sizeof **reused);
		if (slot->backends == NULL || reused[p] == NULL)
			goto fail;
		for (b = 0; b < config_pool->backend_count; b++) {
			const struct config_backend *config_backend = &config_pool->backends[b];
			uint16_t port = health_probe_port(config, p, b);
			struct health_backend *backend;

			backend = backend_find(engine, slot->pool, config_backend, b, port, claims);
			if (backend != NULL) {
				reused[p][b] = true;
			} else if ((backend = backend_new(config_backend, port)) == NULL) {
				goto fail;
			}
			slot->backends[b] = backend;
			slot->backend_count = b + 1;
		}
		if (slot->pool->conf.type != CONFIG_HEALTH_NONE)
			checked += config_pool->backend_count;
	}
	if (heap_reserve(engine, checked) < 0)
		goto fail;

	/* 2. Commit: nothing below can fail. */
	for (p = 0; p < engine->pool_count; p++)
		for (b = 0; b < engine->pools[p].backend_count; b++)
			if (!claims[p][b])
				backend_free(engine, engine->pools[p].backends[b]);
	pool_slots_free(engine, engine->pools, engine->pool_count, false);
	engine->pools = slots;
	engine->pool_count = config->pool_count;
	for (p = 0; p < engine->pool_count; p++) {
		struct health_pool_slot *slot = &slots[p];
		const struct config_health *health = &slot->pool->conf;

		for (b = 0; b < slot->backend_count; b++) {
			struct health_backend *backend = slot->backends[b];

			backend->pool = slot->pool;
			backend->pool_index = p;
			backend->backend_index = b;
			if (reused[p][b])
				continue;
			if (health->type == CONFIG_HEALTH_NONE) {
				backend->state.state = HEALTH_UP;
				continue;
			}
			/* First checks spread evenly over one interval. */
			backend->deadline_ns = now + ms_to_ns(health->interval_ms) * b /
						     slot->backend_count;
			heap_push(engine, backend);
		}
	}
	slots = NULL;
	timer_arm(engine);
	result = 0;
fail:
	if (slots != NULL) {
		/* Free what was built; reused backends still belong to the engine. */
		for (p = 0; p < config->pool_count; p++)
			for (b = 0; b < slots[p].backend_count; b++)
				if (!reused[p][b])
					backend_free(engine, slots[p].backends[b]);
		pool_slots_free(engine, slots, config->pool_count, false);
	}
	claims_free(claims, old_pool_count);
	claims_free(reused, config->pool_count);
	return result;
}

struct health_engine *
health_engine_create(const struct config *config, health_change_fn on_change, void *arg)
{
	struct health_engine *engine = calloc(1, sizeof *engine);
	struct epoll_event event = { .events = EPOLLIN, .data.ptr = NULL };
	int saved;

	if (engine == NULL)
		return NULL;
	engine->on_change = on_change;
	engine->arg = arg;
	engine->timer_fd = -1;
	engine->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	engine->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (engine->epoll_fd < 0 || engine->timer_fd < 0 ||
	    epoll_ctl(engine->epoll_fd, EPOLL_CTL_ADD, engine->timer_fd, &event) < 0)
		goto fail;
	if ((saved = health_engine_update(engine, config)) < 0) {
		errno = -saved;
		goto fail;
	}
	return engine;
fail:
	saved = errno;
	health_engine_destroy(engine);
	errno = saved;
	return NULL;
}

void
health_engine_set_key_name_callback(struct health_engine *engine, health_key_name_fn on_key_name)
{
	engine->on_key_name = on_key_name;
}

int
health_engine_set_source(struct health_engine *engine, uint32_t address)
{
	engine->source = address;
	return 0;
}

int
health_engine_fd(const struct health_engine *engine)
{
	return engine->epoll_fd;
}

const struct health_backend_state *
health_engine_backend(const struct health_engine *engine, unsigned pool_index,
		      unsigned backend_index)
{
	if (pool_index >= engine->pool_count ||
	    backend_index >= engine->pools[pool_index].backend_count)
		return NULL;
	return &engine->pools[pool_index].backends[backend_index]->state;
}

void
health_engine_destroy(struct health_engine *engine)
{
	if (engine == NULL)
		return;
	pool_slots_free(engine, engine->pools, engine->pool_count, true);
	free(engine->heap);
	if (engine->timer_fd >= 0)
		close(engine->timer_fd);
	if (engine->epoll_fd >= 0)
		close(engine->epoll_fd);
	free(engine);
}
