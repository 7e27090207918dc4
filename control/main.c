/*
 * main.c: tether-control, the control plane of tether (relayd's parent + hce).
 *
 * It owns the config, runs the health checks and tells the dataplane what to
 * do; the dataplane forwards on its own and keeps its last state when this
 * process is gone.  One thread, one poll() loop (main_loop(), at the end) over
 * a signalfd, the health engine's epoll fd, the dataplane connection,
 * control.sock and the metrics listener.  Only main() exits.
 *
 * Desired state.  Each configured backend has an operator state (the file's
 * `enabled`, or what `tetherctl backend enable|disable|drain` set) and a weight
 * (the file's, or `tetherctl backend weight`), combined with its health into
 * the state the dataplane gets:
 *   operator disabled -> "disabled"; operator drain -> "drain";
 *   else health down -> "down"; else (up, or not checked yet) -> "up".
 * Not checked yet counts as up (health.h): a restart or a reload never takes
 * healthy backends out.  What was last pushed is remembered per backend, so a
 * health change sends only the backends that changed, and a (re)connection
 * sends everything: `load`, all `backends`, all known `key_names` (resync).
 *
 * Operator overrides live in this process only: they survive reloads (for
 * backends whose pool, name, address and port are unchanged; a field the file
 * changes takes the file's new word) but not a restart of tether-control.
 *
 * Reload (SIGHUP, `tetherctl reload`): the file is parsed and validated
 * first; a file with errors is refused whole, logged and answered with its
 * errors, and nothing changes.  A valid file goes to the dataplane (`load`);
 * only when the dataplane takes it does tether-control switch: health checks
 * are updated (unchanged backends keep their state), the desired state is
 * pushed again, and the caller gets a summary of what changed.  If the
 * dataplane refuses (its ports section changed, say), tether-control keeps the
 * old config too, so both halves always run the same one.  If the dataplane
 * is not connected, tether-control switches alone; the `load` of the resync
 * brings the dataplane along when it returns.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "config.h"
#include "control_socket.h"
#include "dataplane_client.h"
#include "health.h"
#include "log.h"
#include "metrics.h"

#ifndef TETHER_VERSION
#define TETHER_VERSION "0.1.0"
#endif

#define STATS_TIMEOUT_MS    3000    /* show ... waits this long for the dataplane */
#define SCRAPE_TIMEOUT_MS   1000    /* a metrics scrape, likewise */
#define PUSH_TIMEOUT_MS     5000    /* backends, key_names */
#define LOAD_TIMEOUT_MS     30000   /* building tables for a large config takes a while */
#define POLL_FDS_MAX        (2 + 1 + CONTROL_SOCKET_POLL_FDS + METRICS_POLL_FDS)

enum operator_state { OPERATOR_ENABLED, OPERATOR_DISABLED, OPERATOR_DRAIN };
static const char *const operator_names[] = { "enabled", "disabled", "drain" };

enum desired_state { DESIRED_UP, DESIRED_DOWN, DESIRED_DRAIN, DESIRED_DISABLED };
static const char *const desired_names[] = { "up", "down", "drain", "disabled" };

/* tether-control's own record of one configured backend. */
struct backend_control {
	bool operator_set;              /* else the file's `enabled` decides */
	enum operator_state operator;
	int weight_override;            /* -1: the file's weight */
	bool pushed;                    /* the dataplane has pushed_state/pushed_weight */
	enum desired_state pushed_state;
	unsigned pushed_weight;
	bool key_name_pushed;
	uint8_t key_name[HEALTH_KEY_NAME_LENGTH];
	bool dataplane_down;            /* the dataplane had it down when we (re)connected */
};

struct reload_status {
	bool done;                      /* a reload has been tried since the start */
	bool ok;
	time_t time;
	time_t last_success;            /* the start counts */
	unsigned error_count;
	char summary[512];
};

struct tether_control {
	struct config config;           /* what runs */
	char config_file[PATH_MAX];     /* absolute: the dataplane reads it too */
	struct backend_control **backends;  /* [pool][backend], parallel to config */
	struct health_engine *health;
	struct dataplane_client *dataplane;
	struct control_socket *control;
	struct metrics_server *metrics;
	const char *admin_group;
	int signal_fd;
	bool stopping;
	int exit_code;
	bool metrics_reopen;            /* control.metrics changed on reload */

	time_t started;
	uint64_t started_ms;
	struct reload_status reload;
	struct reload *reload_pending;  /* waiting for the dataplane's `load` */
	bool resync_pending;            /* (re)connected; its backend states not read yet */

	/* The dataplane as last heard. */
	bool generation_known;
	uint64_t generation;
	char dataplane_version[32];
	time_t dataplane_since;
};

/* A reload in flight: the new config, and who to answer. */
struct reload {
	struct tether_control *control;
	struct config config;
	json_t *changes;
	char summary[512];
	bool from_client;
	uint64_t client_id;
};

static uint64_t
now_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
}

static json_t *
iso_time(time_t when)
{
	char text[32];
	struct tm utc;

	gmtime_r(&when, &utc);
	strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &utc);
	return json_string(text);
}

/* ------------------------------------------------------------------------ */
/* Backend records and desired state                                        */

static void
backends_free(struct backend_control **backends, unsigned pool_count)
{
	if (!backends)
		return;
	for (unsigned p = 0; p < pool_count; p++)
		free(backends[p]);
	free(backends);
}

static struct backend_control **
backends_new(const struct config *config)
{
	struct backend_control **backends = calloc(config->pool_count ? config->pool_count : 1,
						   sizeof(*backends));

	if (!backends)
		return NULL;
	for (unsigned p = 0; p < config->pool_count; p++) {
		backends[p] = calloc(config->pools[p].backend_count, sizeof(**backends));
		if (!backends[p]) {
			backends_free(backends, config->pool_count);
			return NULL;
		}
		for (unsigned b = 0; b < config->pools[p].backend_count; b++)
			backends[p][b].weight_override = -1;
	}
	return backends;
}

static enum operator_state
operator_state(const struct tether_control *ctl, unsigned p, unsigned b)
{
	const struct backend_control *record = &ctl->backends[p][b];

	if (record->operator_set)
		return record->operator;
	return ctl->config.pools[p].backends[b].enabled ? OPERATOR_ENABLED : OPERATOR_DISABLED;
}

static unsigned
effective_weight(const struct tether_control *ctl, unsigned p, unsigned b)
{
	int override = ctl->backends[p][b].weight_override;

	return override >= 0 ? (unsigned)override : ctl->config.pools[p].backends[b].weight;
}

static const struct health_backend_state *
health_of(const struct tether_control *ctl, unsigned p, unsigned b)
{
	return health_engine_backend(ctl->health, p, b);
}

static enum desired_state
desired_state(const struct tether_control *ctl, unsigned p, unsigned b)
{
	const struct health_backend_state *health = health_of(ctl, p, b);

	switch (operator_state(ctl, p, b)) {
	case OPERATOR_DISABLED: return DESIRED_DISABLED;
	case OPERATOR_DRAIN: return DESIRED_DRAIN;
	default:
		/* Not checked yet since we started: a backend the dataplane had down
		 * stays down until a check says otherwise (a restarted control
		 * plane must not send clients to a dead server). */
		if (health && health->state == HEALTH_UNKNOWN && ctl->backends[p][b].dataplane_down)
			return DESIRED_DOWN;
		return health && !health_state_serves(health->state) ? DESIRED_DOWN : DESIRED_UP;
	}
}

/* Find backend `name` of pool `pool`: 0 with indices, or -ENOENT. */
static int
backend_find(const struct config *config, const char *pool, const char *name, unsigned *p_out,
	     unsigned *b_out)
{
	int p = config_pool_index(config, pool);

	if (p < 0)
		return -ENOENT;
	for (unsigned b = 0; b < config->pools[p].backend_count; b++) {
		if (strcmp(config->pools[p].backends[b].name, name) == 0) {
			*p_out = (unsigned)p;
			*b_out = b;
			return 0;
		}
	}
	return -ENOENT;
}

/* ------------------------------------------------------------------------ */
/* Pushing to the dataplane                                                 */

static void
remember_generation(struct tether_control *ctl, const json_t *reply)
{
	const json_t *generation = json_object_get(reply, "generation");

	if (json_is_integer(generation)) {
		ctl->generation = (uint64_t)json_integer_value(generation);
		ctl->generation_known = true;
	}
}

/* A push that got no reply: worth a line only if the connection is still up
 * (a lost connection was logged once already and is resynced on return). */
static void
log_unconfirmed(const struct tether_control *ctl, const char *what, const char *error)
{
	log_message(dataplane_client_connected(ctl->dataplane) ? LOG_WARNING : LOG_DEBUG,
		    "dataplane: %s not confirmed: %s", what, error);
}

static void
log_dataplane_errors(const char *what, const json_t *reply)
{
	size_t index;
	const json_t *error;

	log_error("dataplane refused %s: %s", what, json_string_value(json_object_get(reply, "error")));
	json_array_foreach(json_object_get(reply, "errors"), index, error)
		log_error("dataplane refused %s: %s: %s", what, json_string_value(json_object_get(error, "path")),
			  json_string_value(json_object_get(error, "message")));
}

/* A pushed change: the reply to the operator who asked for it, if any. */
struct push_context {
	struct tether_control *control;
	bool from_client;
	uint64_t client_id;
	json_t *answer;                 /* the operator's reply when the dataplane agrees */
};

static void
on_backends_reply(void *arg, json_t *reply, const char *error)
{
	struct push_context *context = arg;
	struct tether_control *ctl = context->control;

	if (reply && !json_object_get(reply, "error")) {
		remember_generation(ctl, reply);
		if (context->answer && ctl->generation_known)
			json_object_set_new(context->answer, "generation", json_integer((json_int_t)ctl->generation));
	} else if (reply) {
		log_dataplane_errors("backend states", reply);
		if (context->answer) {
			json_decref(context->answer);
			context->answer = control_error_reply("the dataplane refused the backend state: %s",
							      json_string_value(json_object_get(reply, "error")));
		}
	} else {
		log_unconfirmed(ctl, "backend states", error);
		if (context->answer)
			json_object_set_new(context->answer, "dataplane",
					    json_sprintf("not confirmed: %s; resent on reconnection", error));
	}
	if (context->from_client)
		control_socket_reply(ctl->control, context->client_id, context->answer);
	else
		json_decref(context->answer);
	free(context);
}

/* Forget what the dataplane was sent: the next pushes send everything. */
static void
forget_pushes(struct tether_control *ctl)
{
	for (unsigned p = 0; p < ctl->config.pool_count; p++)
		for (unsigned b = 0; b < ctl->config.pools[p].backend_count; b++)
			ctl->backends[p][b].pushed = ctl->backends[p][b].key_name_pushed = false;
}

/*
 * Send the desired state of every backend whose state or weight differs from
 * what was last pushed (all of them with `all`).  `answer` (taken), if given,
 * goes to client `client_id` once the dataplane confirms; returns true if that
 * is pending, false if nothing was sent (answer it yourself: it is untouched).
 */
static bool
push_backends(struct tether_control *ctl, bool all, json_t *answer, uint64_t client_id)
{
	json_t *states;
	struct push_context *context;

	/* Sent in full at reconnection or after the reload.  Until the resync has
	 * read which backends the dataplane has down, a push would tell it "up"
	 * for a dead server no check has failed yet (desired_state). */
	if (!dataplane_client_connected(ctl->dataplane) || ctl->reload_pending || ctl->resync_pending)
		return false;
	states = json_array();
	for (unsigned p = 0; p < ctl->config.pool_count; p++) {
		for (unsigned b = 0; b < ctl->config.pools[p].backend_count; b++) {
			struct backend_control *record = &ctl->backends[p][b];
			enum desired_state state = desired_state(ctl, p, b);
			unsigned weight = effective_weight(ctl, p, b);
			if (!all && record->pushed && record->pushed_state == state && record->pushed_weight == weight)
				continue;
			json_array_append_new(states, json_pack("{s:s, s:s, s:s, s:i}",
				"pool", ctl->config.pools[p].name, "name", ctl->config.pools[p].backends[b].name,
				"state", desired_names[state], "weight", (int)weight));
			record->pushed = true;
			record->pushed_state = state;
			record->pushed_weight = weight;
		}
	}
	if (json_array_size(states) == 0 && !answer) {
		json_decref(states);
		return false;
	}
	context = calloc(1, sizeof(*context));
	if (!context) {
		json_decref(states);
		forget_pushes(ctl);
		return false;
	}
	*context = (struct push_context){ ctl, answer != NULL, client_id, answer };
	if (dataplane_client_request(ctl->dataplane, json_pack("{s:s, s:o}", "command", "backends", "states", states),
				     PUSH_TIMEOUT_MS, on_backends_reply, context) < 0) {
		free(context);
		forget_pushes(ctl);   /* not sent after all: the next push sends everything */
		return false;
	}
	return true;
}

static void
on_key_names_reply(void *arg, json_t *reply, const char *error)
{
	if (reply && json_object_get(reply, "error"))
		log_dataplane_errors("ticket key names", reply);
	else if (!reply)
		log_unconfirmed(arg, "ticket key names", error);
}

/* Send the ticket key names the TLS checks harvested that the dataplane has
 * not had yet (all known ones with `all`). */
static void
push_key_names(struct tether_control *ctl, bool all)
{
	json_t *entries;

	if (!dataplane_client_connected(ctl->dataplane) || ctl->reload_pending)
		return;
	entries = json_array();
	for (unsigned p = 0; p < ctl->config.pool_count; p++) {
		for (unsigned b = 0; b < ctl->config.pools[p].backend_count; b++) {
			const struct health_backend_state *health = health_of(ctl, p, b);
			struct backend_control *record = &ctl->backends[p][b];
			char hex[2 * HEALTH_KEY_NAME_LENGTH + 1];
			if (!health || !health->ticket_key_name_valid)
				continue;
			if (!all && record->key_name_pushed &&
			    memcmp(record->key_name, health->ticket_key_name, HEALTH_KEY_NAME_LENGTH) == 0)
				continue;
			for (unsigned i = 0; i < HEALTH_KEY_NAME_LENGTH; i++)
				snprintf(hex + 2 * i, 3, "%02x", health->ticket_key_name[i]);
			json_array_append_new(entries, json_pack("{s:s, s:s, s:s}", "pool", ctl->config.pools[p].name,
				"name", ctl->config.pools[p].backends[b].name, "key_name", hex));
			record->key_name_pushed = true;
			memcpy(record->key_name, health->ticket_key_name, HEALTH_KEY_NAME_LENGTH);
		}
	}
	if (json_array_size(entries) == 0) {
		json_decref(entries);
		return;
	}
	if (dataplane_client_request(ctl->dataplane, json_pack("{s:s, s:o}", "command", "key_names",
							       "entries", entries),
				     PUSH_TIMEOUT_MS, on_key_names_reply, ctl) < 0)
		forget_pushes(ctl);
}

/* ------------------------------------------------------------------------ */
/* The dataplane connection: resync                                         */

static void
on_status_reply(void *arg, json_t *reply, const char *error)
{
	struct tether_control *ctl = arg;
	const char *version = json_string_value(json_object_get(reply, "version"));

	(void)error;
	if (version)
		snprintf(ctl->dataplane_version, sizeof(ctl->dataplane_version), "%s", version);
	remember_generation(ctl, reply);
}

static void
on_resync_load_reply(void *arg, json_t *reply, const char *error)
{
	struct tether_control *ctl = arg;

	if (reply && !json_object_get(reply, "error")) {
		remember_generation(ctl, reply);
		log_info("dataplane: loaded %s (generation %llu)", ctl->config_file,
			 (unsigned long long)ctl->generation);
	} else if (reply) {
		log_dataplane_errors(ctl->config_file, reply);
	} else {
		log_unconfirmed(ctl, "the load of the config", error);
	}
}

/* The dataplane's view at (re)connection: remember which backends it had
 * down, then push every backend's state and the key names. */
static void
on_resync_stats_reply(void *arg, json_t *reply, const char *error)
{
	struct tether_control *ctl = arg;
	json_t *backends = json_object_get(reply, "backends"), *item;
	size_t index;

	(void)error;
	json_array_foreach(backends, index, item) {
		unsigned p, b;
		const char *state = json_string_value(json_object_get(item, "state"));
		const char *pool = json_string_value(json_object_get(item, "pool"));
		const char *name = json_string_value(json_object_get(item, "name"));
		if (state && pool && name && backend_find(&ctl->config, pool, name, &p, &b) == 0)
			ctl->backends[p][b].dataplane_down = strcmp(state, "down") == 0;
	}
	ctl->resync_pending = false;
	push_backends(ctl, true, NULL, 0);
	push_key_names(ctl, true);
}

/* (Re)connected: the dataplane may have restarted with another file, or be
 * the one that ran on while we were gone.  Tell it everything. */
static void
on_dataplane_connect(void *arg)
{
	struct tether_control *ctl = arg;

	ctl->dataplane_since = time(NULL);
	ctl->resync_pending = true;
	dataplane_client_request(ctl->dataplane, json_pack("{s:s}", "command", "status"), PUSH_TIMEOUT_MS,
				 on_status_reply, ctl);
	dataplane_client_request(ctl->dataplane, json_pack("{s:s, s:s}", "command", "load",
							   "config", ctl->config_file),
				 LOAD_TIMEOUT_MS, on_resync_load_reply, ctl);
	/* ask what it has before telling it anything about backends */
	if (dataplane_client_request(ctl->dataplane, json_pack("{s:s}", "command", "stats"),
				     PUSH_TIMEOUT_MS, on_resync_stats_reply, ctl) < 0) {
		ctl->resync_pending = false;
		push_backends(ctl, true, NULL, 0);
		push_key_names(ctl, true);
	}
}

static void
on_dataplane_disconnect(void *arg, const char *why)
{
	struct tether_control *ctl = arg;

	(void)why;
	forget_pushes(ctl);
	ctl->generation_known = false;
	ctl->resync_pending = false;
}

/* ------------------------------------------------------------------------ */
/* Health                                                                   */

static void
on_health_change(void *arg, unsigned pool_index, unsigned backend_index, const char *pool_name,
		 const char *backend_name, enum health_state old_state, enum health_state new_state,
		 const char *reason)
{
	struct tether_control *ctl = arg;
	const struct health_backend_state *health = health_engine_backend(ctl->health, pool_index, backend_index);

	(void)old_state;
	if (new_state == HEALTH_DOWN)
		log_warning("backend %s/%s down: %s (%u failures)", pool_name, backend_name, reason,
			    health ? health->consecutive_failures : 0);
	else
		log_notice("backend %s/%s %s: %s", pool_name, backend_name, health_state_name(new_state), reason);
	/* Pushed once the engine's turn is over (main_loop), with every other change of the turn. */
}

static void
on_key_name(void *arg, unsigned pool_index, unsigned backend_index, const struct health_backend_state *state)
{
	struct tether_control *ctl = arg;

	if (state->ticket_key_name_valid)
		log_info("backend %s/%s: ticket key name %02x%02x%02x%02x... learned",
			 ctl->config.pools[pool_index].name, ctl->config.pools[pool_index].backends[backend_index].name,
			 state->ticket_key_name[0], state->ticket_key_name[1], state->ticket_key_name[2],
			 state->ticket_key_name[3]);
}

/* ------------------------------------------------------------------------ */
/* Reload                                                                   */

static json_t *
config_errors_json(const struct config_errors *errors)
{
	json_t *list = json_array();
	unsigned shown = errors->count < CONFIG_ERRORS_MAX ? errors->count : CONFIG_ERRORS_MAX;

	for (unsigned i = 0; i < shown; i++)
		json_array_append_new(list, json_pack("{s:s, s:s}", "path", errors->errors[i].path,
						      "message", errors->errors[i].message));
	return list;
}

static bool
health_equal(const struct config_health *a, const struct config_health *b)
{
	return a->type == b->type && a->interval_ms == b->interval_ms && a->timeout_ms == b->timeout_ms &&
	       a->rise == b->rise && a->fall == b->fall && strcmp(a->ca, b->ca) == 0 &&
	       strcmp(a->path, b->path) == 0 && a->expect_status == b->expect_status && a->port == b->port;
}

static bool
backend_equal(const struct config_backend *a, const struct config_backend *b)
{
	return a->address == b->address && a->port == b->port && a->weight == b->weight &&
	       a->enabled == b->enabled && strcmp(a->fqdn, b->fqdn) == 0;
}

static bool
service_equal(const struct config *old, const struct config_service *a, const struct config *new,
	      const struct config_service *b)
{
	if (a->vip != b->vip || a->port != b->port || a->protocol != b->protocol ||
	    a->target_port != b->target_port || a->persistence.mode != b->persistence.mode ||
	    a->persistence.fallback != b->persistence.fallback ||
	    a->persistence.timeout_s != b->persistence.timeout_s ||
	    a->persistence.source_prefix_length != b->persistence.source_prefix_length ||
	    strcmp(old->pools[a->pool].name, new->pools[b->pool].name) != 0 || a->allow_count != b->allow_count)
		return false;
	for (unsigned i = 0; i < a->allow_count; i++)
		if (a->allow_from[i].address != b->allow_from[i].address ||
		    a->allow_from[i].length != b->allow_from[i].length)
			return false;
	return true;
}

static const struct config_service *
service_named(const struct config *config, const char *name)
{
	for (unsigned s = 0; s < config->service_count; s++)
		if (strcmp(config->services[s].name, name) == 0)
			return &config->services[s];
	return NULL;
}

static const struct config_backend *
backend_named(const struct config_pool *pool, const char *name)
{
	for (unsigned b = 0; pool && b < pool->backend_count; b++)
		if (strcmp(pool->backends[b].name, name) == 0)
			return &pool->backends[b];
	return NULL;
}

static const struct config_pool *
pool_named(const struct config *config, const char *name)
{
	int p = config_pool_index(config, name);
	return p < 0 ? NULL : &config->pools[p];
}

static bool
pool_equal(const struct config_pool *a, const struct config_pool *b)
{
	if (!health_equal(&a->health, &b->health) || a->backend_count != b->backend_count)
		return false;
	for (unsigned i = 0; i < a->backend_count; i++)
		if (strcmp(a->backends[i].name, b->backends[i].name) != 0 ||
		    !backend_equal(&a->backends[i], &b->backends[i]))
			return false;
	return true;
}

/* {"added":[], "removed":[], "changed":[]} */
static json_t *
change_lists(void)
{
	return json_pack("{s:[], s:[], s:[]}", "added", "removed", "changed");
}

static void
change_add(json_t *lists, const char *kind, const char *what)
{
	json_array_append_new(json_object_get(lists, kind), json_string(what));
}

/* What a reload from `old` to `new` changes, by name; `summary` gets one line. */
static json_t *
config_changes(const struct config *old, const struct config *new, char *summary, size_t size)
{
	json_t *services = change_lists(), *pools = change_lists(), *backends = change_lists();
	char name[2 * CONFIG_NAME_MAX + 1];

	for (unsigned s = 0; s < new->service_count; s++) {
		const struct config_service *before = service_named(old, new->services[s].name);
		if (!before)
			change_add(services, "added", new->services[s].name);
		else if (!service_equal(old, before, new, &new->services[s]))
			change_add(services, "changed", new->services[s].name);
	}
	for (unsigned s = 0; s < old->service_count; s++)
		if (!service_named(new, old->services[s].name))
			change_add(services, "removed", old->services[s].name);
	for (unsigned p = 0; p < new->pool_count; p++) {
		const struct config_pool *pool = &new->pools[p], *before = pool_named(old, pool->name);
		if (!before)
			change_add(pools, "added", pool->name);
		else if (!pool_equal(before, pool))
			change_add(pools, "changed", pool->name);
		for (unsigned b = 0; b < pool->backend_count; b++) {
			const struct config_backend *was = backend_named(before, pool->backends[b].name);
			snprintf(name, sizeof(name), "%s/%s", pool->name, pool->backends[b].name);
			if (!was)
				change_add(backends, "added", name);
			else if (!backend_equal(was, &pool->backends[b]))
				change_add(backends, "changed", name);
		}
	}
	for (unsigned p = 0; p < old->pool_count; p++) {
		const struct config_pool *pool = &old->pools[p], *after = pool_named(new, pool->name);
		if (!after)
			change_add(pools, "removed", pool->name);
		for (unsigned b = 0; b < pool->backend_count; b++) {
			if (backend_named(after, pool->backends[b].name))
				continue;
			snprintf(name, sizeof(name), "%s/%s", pool->name, pool->backends[b].name);
			change_add(backends, "removed", name);
		}
	}
	json_t *changes = json_pack("{s:o, s:o, s:o}", "services", services, "pools", pools, "backends", backends);
	size_t used = 0;
	const char *kinds[] = { "services", "pools", "backends" };
	for (unsigned k = 0; k < 3 && used < size; k++) {
		const json_t *lists = json_object_get(changes, kinds[k]);
		int n = snprintf(summary + used, size - used, "%s%s +%zu -%zu ~%zu", k ? ", " : "", kinds[k],
				 json_array_size(json_object_get(lists, "added")),
				 json_array_size(json_object_get(lists, "removed")),
				 json_array_size(json_object_get(lists, "changed")));
		used += n > 0 ? (size_t)n : 0;
	}
	return changes;
}

/* Carry operator overrides and push records over to the new config's backends. */
static void
carry_backends(const struct tether_control *ctl, const struct config *new, struct backend_control **records)
{
	for (unsigned p = 0; p < new->pool_count; p++) {
		int old_p = config_pool_index(&ctl->config, new->pools[p].name);
		for (unsigned b = 0; old_p >= 0 && b < new->pools[p].backend_count; b++) {
			const struct config_backend *now = &new->pools[p].backends[b];
			for (unsigned ob = 0; ob < ctl->config.pools[old_p].backend_count; ob++) {
				const struct config_backend *was = &ctl->config.pools[old_p].backends[ob];
				const struct backend_control *old = &ctl->backends[old_p][ob];
				if (strcmp(was->name, now->name) != 0 || was->address != now->address ||
				    was->port != now->port)
					continue;
				records[p][b] = *old;
				if (was->enabled != now->enabled)
					records[p][b].operator_set = false;     /* the file's new word */
				if (was->weight != now->weight)
					records[p][b].weight_override = -1;
				break;
			}
		}
	}
}

static void
record_reload(struct tether_control *ctl, bool ok, unsigned error_count, const char *summary)
{
	ctl->reload.done = true;
	ctl->reload.ok = ok;
	ctl->reload.time = time(NULL);
	ctl->reload.error_count = error_count;
	if (ok)
		ctl->reload.last_success = ctl->reload.time;
	snprintf(ctl->reload.summary, sizeof(ctl->reload.summary), "%s", summary);
}

static void
reload_free(struct reload *reload)
{
	config_free(&reload->config);
	json_decref(reload->changes);
	free(reload);
}

/* Switch to the reloaded config.  Returns the reply for the caller. */
static json_t *
reload_commit(struct tether_control *ctl, struct reload *reload, const char *dataplane_note)
{
	struct backend_control **records = backends_new(&reload->config);
	json_t *reply;

	if (!records || health_engine_update(ctl->health, &reload->config) < 0) {
		backends_free(records, reload->config.pool_count);
		log_error("reload of %s failed: out of memory; the old config stays", ctl->config_file);
		record_reload(ctl, false, 0, "out of memory");
		return control_error_reply("reload failed: out of memory; the old config stays");
	}
	carry_backends(ctl, &reload->config, records);
	if (strcmp(ctl->config.control.socket, reload->config.control.socket) != 0)
		log_warning("reload: control.socket changed to %s: takes effect when tether-control restarts",
			    reload->config.control.socket);
	ctl->metrics_reopen = strcmp(ctl->config.control.metrics, reload->config.control.metrics) != 0;
	backends_free(ctl->backends, ctl->config.pool_count);
	config_free(&ctl->config);
	ctl->config = reload->config;
	memset(&reload->config, 0, sizeof(reload->config));
	ctl->backends = records;
	record_reload(ctl, true, 0, reload->summary);
	if (dataplane_note)
		log_notice("reload of %s: %s; dataplane %s", ctl->config_file, reload->summary, dataplane_note);
	else
		log_notice("reload of %s: %s; dataplane generation %llu", ctl->config_file, reload->summary,
			   (unsigned long long)ctl->generation);
	reply = json_pack("{s:b, s:s, s:s, s:O}", "ok", 1, "file", ctl->config_file, "summary", reload->summary,
			  "changes", reload->changes);
	if (ctl->generation_known && !dataplane_note)
		json_object_set_new(reply, "generation", json_integer((json_int_t)ctl->generation));
	if (dataplane_note)
		json_object_set_new(reply, "dataplane", json_string(dataplane_note));
	return reply;
}

static void
reload_answer(struct tether_control *ctl, struct reload *reload, json_t *reply)
{
	if (reload->from_client)
		control_socket_reply(ctl->control, reload->client_id, reply);
	else
		json_decref(reply);
}

static void
on_reload_load_reply(void *arg, json_t *reply, const char *error)
{
	struct reload *reload = arg;
	struct tether_control *ctl = reload->control;
	json_t *answer;

	ctl->reload_pending = NULL;
	if (ctl->stopping) {   /* shutting down: nobody to answer, nothing to switch */
		reload_free(reload);
		return;
	}
	if (reply && json_object_get(reply, "error")) {
		const json_t *first = json_array_get(json_object_get(reply, "errors"), 0);
		char summary[512];
		log_dataplane_errors(ctl->config_file, reply);
		snprintf(summary, sizeof(summary), "refused by the dataplane: %s%s%s%s%s",
			 json_string_value(json_object_get(reply, "error")), first ? " (" : "",
			 first ? json_string_value(json_object_get(first, "path")) : "", first ? ": " : "",
			 first ? json_string_value(json_object_get(first, "message")) : "");
		if (first)
			strncat(summary, ")", sizeof(summary) - strlen(summary) - 1);
		record_reload(ctl, false, (unsigned)json_array_size(json_object_get(reply, "errors")), summary);
		answer = json_pack("{s:s, s:s, s:O}", "error", "the dataplane refused the config; the old one stays",
				   "file", ctl->config_file, "dataplane_error", json_object_get(reply, "error"));
		json_t *errors = json_object_get(reply, "errors");
		if (errors)
			json_object_set(answer, "errors", errors);
		/* The dataplane kept its config; what we pushed since still applies. */
	} else {
		char note[256];
		if (reply)
			remember_generation(ctl, reply);
		else
			snprintf(note, sizeof(note), "dataplane: %s; it loads the file when it reconnects", error);
		answer = reload_commit(ctl, reload, reply ? NULL : note);
		/* The new tables start from the file's states: tell them everything. */
		push_backends(ctl, true, NULL, 0);
		push_key_names(ctl, true);
	}
	reload_answer(ctl, reload, answer);
	reload_free(reload);
}

/*
 * Reload the config file.  Returns the reply, or NULL when it waits for the
 * dataplane (then `client_id`, if `from_client`, is answered later).
 */
static json_t *
reload_start(struct tether_control *ctl, bool from_client, uint64_t client_id)
{
	struct config_errors errors;
	struct reload *reload;

	if (ctl->reload_pending)
		return control_error_reply("a reload is already in progress");
	reload = calloc(1, sizeof(*reload));
	if (!reload)
		return control_error_reply("out of memory");
	*reload = (struct reload){ .control = ctl, .from_client = from_client, .client_id = client_id };
	if (config_load_file(ctl->config_file, &reload->config, &errors) < 0) {
		unsigned shown = errors.count < CONFIG_ERRORS_MAX ? errors.count : CONFIG_ERRORS_MAX;
		log_error("reload of %s refused (%u error%s); the running config stays", ctl->config_file,
			  errors.count, errors.count == 1 ? "" : "s");
		for (unsigned i = 0; i < shown; i++)
			log_error("%s: %s: %s", ctl->config_file, errors.errors[i].path, errors.errors[i].message);
		char summary[64];
		snprintf(summary, sizeof(summary), "refused: %u error%s", errors.count, errors.count == 1 ? "" : "s");
		record_reload(ctl, false, errors.count, summary);
		free(reload);
		return json_pack("{s:s, s:s, s:i, s:o}", "error", "config refused; the running config stays",
				 "file", ctl->config_file, "count", (int)errors.count, "errors",
				 config_errors_json(&errors));
	}
	reload->changes = config_changes(&ctl->config, &reload->config, reload->summary, sizeof(reload->summary));
	if (!dataplane_client_connected(ctl->dataplane)) {
		json_t *reply = reload_commit(ctl, reload, "not connected; it loads the file when it reconnects");
		reload_free(reload);
		return reply;
	}
	if (dataplane_client_request(ctl->dataplane, json_pack("{s:s, s:s}", "command", "load",
							       "config", ctl->config_file),
				     LOAD_TIMEOUT_MS, on_reload_load_reply, reload) < 0) {
		reload_free(reload);
		return control_error_reply("cannot send the config to the dataplane; try again");
	}
	ctl->reload_pending = reload;
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* Commands                                                                 */

static json_t *
find_by_name(const json_t *list, const char *pool, const char *name)
{
	size_t index;
	json_t *item;

	json_array_foreach(list, index, item)
		if (strcmp(json_string_value(json_object_get(item, "name")) ?: "", name) == 0 &&
		    (!pool || strcmp(json_string_value(json_object_get(item, "pool")) ?: "", pool) == 0))
			return item;
	return NULL;
}

static const char *health_type_names[] = { "none", "tcp", "tls", "http", "https" };

static json_t *
health_json(const struct tether_control *ctl, unsigned p, unsigned b, uint64_t now)
{
	const struct health_backend_state *health = health_of(ctl, p, b);

	if (!health)
		return json_null();
	json_t *object = json_pack("{s:s, s:I, s:b, s:s, s:I, s:I, s:I, s:I}",
		"state", health_state_name(health->state),
		"since_s", (json_int_t)(now > health->state_since_ms ? (now - health->state_since_ms) / 1000 : 0),
		"checked", health->checked, "last_error", health->last_error,
		"consecutive_successes", (json_int_t)health->consecutive_successes,
		"consecutive_failures", (json_int_t)health->consecutive_failures,
		"checks", (json_int_t)health->checks, "failures", (json_int_t)health->failures);
	json_object_set_new(object, "latency_ms", health->checked ? json_real(health->latency_us / 1000.0) : json_null());
	json_object_set_new(object, "days_to_expiry",
			    health->expiry_known ? json_integer(health->days_to_expiry) : json_null());
	json_object_set_new(object, "key_name_known", json_boolean(health->ticket_key_name_valid));
	json_object_set_new(object, "port", json_integer(health->port));
	return object;
}

static json_t *
backends_reply(const struct tether_control *ctl, const json_t *stats)
{
	json_t *list = json_array();
	uint64_t now = now_ms();
	char address[16];

	for (unsigned p = 0; p < ctl->config.pool_count; p++) {
		const struct config_pool *pool = &ctl->config.pools[p];
		for (unsigned b = 0; b < pool->backend_count; b++) {
			const struct config_backend *backend = &pool->backends[b];
			const json_t *counters = find_by_name(json_object_get(stats, "backends"), pool->name,
							      backend->name);
			json_array_append_new(list, json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:s, s:b, s:s, s:s, s:o, s:O?}",
				"pool", pool->name, "name", backend->name,
				"address", config_format_ipv4(backend->address, address), "port", backend->port,
				"weight", (int)effective_weight(ctl, p, b), "file_weight", backend->weight,
				"operator", operator_names[operator_state(ctl, p, b)],
				"operator_override", ctl->backends[p][b].operator_set ||
						     ctl->backends[p][b].weight_override >= 0,
				"state", desired_names[desired_state(ctl, p, b)],
				"check", health_type_names[pool->health.type],
				"health", health_json(ctl, p, b, now),
				"dataplane", counters));
		}
	}
	return json_pack("{s:o, s:b}", "backends", list, "dataplane_connected", stats != NULL);
}

static json_t *
services_reply(const struct tether_control *ctl, const json_t *stats)
{
	static const char *const fallbacks[] = { "source-ip", "source-ip+sni", "none" };
	json_t *list = json_array();
	char text[32];

	for (unsigned s = 0; s < ctl->config.service_count; s++) {
		const struct config_service *service = &ctl->config.services[s];
		json_t *allow = json_array();
		for (unsigned a = 0; a < service->allow_count; a++) {
			char prefix[24];
			snprintf(prefix, sizeof(prefix), "%s/%u", config_format_ipv4(service->allow_from[a].address, text),
				 service->allow_from[a].length);
			json_array_append_new(allow, json_string(prefix));
		}
		json_t *persistence = json_pack("{s:s}", "mode", config_persistence_mode_name(service->persistence.mode));
		if (service->persistence.mode != CONFIG_PERSIST_NONE)
			json_object_set_new(persistence, "timeout_s", json_integer(service->persistence.timeout_s));
		if (service->persistence.mode == CONFIG_PERSIST_SSL_SESSION)
			json_object_set_new(persistence, "fallback", json_string(fallbacks[service->persistence.fallback]));
		json_array_append_new(list, json_pack("{s:s, s:s, s:i, s:s, s:s, s:i, s:o, s:o, s:O?}",
			"name", service->name, "vip", config_format_ipv4(service->vip, text), "port", service->port,
			"protocol", service->protocol == CONFIG_PROTO_UDP ? "udp" : "tcp",
			"pool", ctl->config.pools[service->pool].name, "target_port", service->target_port,
			"persistence", persistence, "allow_from", allow,
			"dataplane", find_by_name(json_object_get(stats, "services"), NULL, service->name)));
	}
	return json_pack("{s:o, s:b}", "services", list, "dataplane_connected", stats != NULL);
}

static json_t *
pools_reply(const struct tether_control *ctl)
{
	json_t *list = json_array();

	for (unsigned p = 0; p < ctl->config.pool_count; p++) {
		const struct config_pool *pool = &ctl->config.pools[p];
		unsigned counts[3] = { 0 };   /* unknown, up, down */
		json_t *services = json_array();
		for (unsigned b = 0; b < pool->backend_count; b++) {
			const struct health_backend_state *health = health_of(ctl, p, b);
			counts[health ? health->state : HEALTH_UNKNOWN]++;
		}
		for (unsigned s = 0; s < ctl->config.service_count; s++)
			if (ctl->config.services[s].pool == p)
				json_array_append_new(services, json_string(ctl->config.services[s].name));
		json_t *check = json_pack("{s:s}", "type", health_type_names[pool->health.type]);
		if (pool->health.type != CONFIG_HEALTH_NONE) {
			json_object_set_new(check, "interval_ms", json_integer(pool->health.interval_ms));
			json_object_set_new(check, "timeout_ms", json_integer(pool->health.timeout_ms));
			json_object_set_new(check, "rise", json_integer(pool->health.rise));
			json_object_set_new(check, "fall", json_integer(pool->health.fall));
			json_object_set_new(check, "port", json_integer(pool->backend_count ?
				health_probe_port(&ctl->config, p, 0) : pool->health.port));
		}
		json_array_append_new(list, json_pack("{s:s, s:o, s:i, s:i, s:i, s:i, s:o}",
			"name", pool->name, "check", check, "backends", (int)pool->backend_count,
			"up", (int)counts[HEALTH_UP], "down", (int)counts[HEALTH_DOWN],
			"unknown", (int)counts[HEALTH_UNKNOWN], "services", services));
	}
	return json_pack("{s:o}", "pools", list);
}

static json_t *
flows_reply(const json_t *stats)
{
	json_t *backends = json_array();
	size_t index;
	const json_t *backend;

	json_array_foreach(json_object_get(stats, "backends"), index, backend)
		json_array_append_new(backends, json_pack("{s:O?, s:O?, s:O?, s:O?}",
			"pool", json_object_get(backend, "pool"), "name", json_object_get(backend, "name"),
			"new_flows", json_object_get(backend, "new_flows"),
			"active_flows", json_object_get(backend, "active_flows")));
	return json_pack("{s:O?, s:O?, s:O?, s:o}", "flows", json_object_get(stats, "flows"),
			 "drops_total", json_object_get(stats, "drops_total"),
			 "overload", json_object_get(stats, "overload"), "backends", backends);
}

static json_t *
sessions_reply(const json_t *stats)
{
	json_t *services = json_array();
	size_t index;
	const json_t *service;

	json_array_foreach(json_object_get(stats, "services"), index, service)
		json_array_append_new(services, json_pack("{s:O?, s:O?, s:O?, s:O?}",
			"name", json_object_get(service, "name"), "persistence", json_object_get(service, "persistence"),
			"persist_hits", json_object_get(service, "persist_hits"),
			"persist_misses", json_object_get(service, "persist_misses")));
	return json_pack("{s:O?, s:O?, s:o}", "persistence", json_object_get(stats, "persistence"),
			 "ssl_session", json_object_get(stats, "ssl_session"), "services", services);
}

/* The reply to a show command, from the dataplane's stats (NULL: not connected). */
static json_t *
show_reply(const struct tether_control *ctl, enum control_command command, const json_t *stats,
	   const char *error)
{
	switch (command) {
	case CONTROL_SHOW_SERVICES: return services_reply(ctl, stats);
	case CONTROL_SHOW_BACKENDS: return backends_reply(ctl, stats);
	case CONTROL_SHOW_POOLS: return pools_reply(ctl);
	default: break;
	}
	if (!stats)
		return control_error_reply("the dataplane (%s) is not available: %s",
					   dataplane_client_path(ctl->dataplane), error);
	if (command == CONTROL_SHOW_FLOWS)
		return flows_reply(stats);
	if (command == CONTROL_SHOW_SESSIONS)
		return sessions_reply(stats);
	return json_incref((json_t *)stats);
}

struct show_context {
	struct tether_control *control;
	enum control_command command;
	uint64_t client_id;
};

static void
on_show_stats(void *arg, json_t *reply, const char *error)
{
	struct show_context *context = arg;
	const json_t *stats = reply && !json_object_get(reply, "error") ? reply : NULL;

	if (reply && !stats)
		error = json_string_value(json_object_get(reply, "error"));
	control_socket_reply(context->control->control, context->client_id,
			     show_reply(context->control, context->command, stats, error));
	free(context);
}

/* Ask the dataplane for its stats, then answer `client_id`: NULL.  Or the reply now. */
static json_t *
show_start(struct tether_control *ctl, enum control_command command, uint64_t client_id)
{
	struct show_context *context;

	if (command == CONTROL_SHOW_POOLS)
		return pools_reply(ctl);
	context = malloc(sizeof(*context));
	if (!context)
		return control_error_reply("out of memory");
	*context = (struct show_context){ ctl, command, client_id };
	if (dataplane_client_request(ctl->dataplane, json_pack("{s:s}", "command", "stats"), STATS_TIMEOUT_MS,
				     on_show_stats, context) < 0) {
		free(context);
		return show_reply(ctl, command, NULL, dataplane_client_last_error(ctl->dataplane));
	}
	return NULL;
}

static json_t *
status_reply(const struct tether_control *ctl)
{
	unsigned counts[3] = { 0 }, total = 0;

	for (unsigned p = 0; p < ctl->config.pool_count; p++) {
		for (unsigned b = 0; b < ctl->config.pools[p].backend_count; b++) {
			const struct health_backend_state *health = health_of(ctl, p, b);
			counts[health ? health->state : HEALTH_UNKNOWN]++;
			total++;
		}
	}
	json_t *reload = json_pack("{s:s, s:o, s:s, s:i, s:o}",
		"result", !ctl->reload.done ? "none" : ctl->reload.ok ? "ok" : "refused",
		"time", ctl->reload.done ? iso_time(ctl->reload.time) : json_null(),
		"summary", ctl->reload.summary, "errors", (int)ctl->reload.error_count,
		"last_success", iso_time(ctl->reload.last_success));
	bool connected = dataplane_client_connected(ctl->dataplane);
	json_t *dataplane = json_pack("{s:s, s:b}", "socket", dataplane_client_path(ctl->dataplane),
				      "connected", connected);
	if (connected) {
		json_object_set_new(dataplane, "since", iso_time(ctl->dataplane_since));
		json_object_set_new(dataplane, "version", json_string(ctl->dataplane_version));
	} else {
		json_object_set_new(dataplane, "last_error", json_string(dataplane_client_last_error(ctl->dataplane)));
	}
	json_object_set_new(dataplane, "generation",
			    ctl->generation_known ? json_integer((json_int_t)ctl->generation) : json_null());
	return json_pack("{s:s, s:i, s:I, s:o, s:s, s:o, s:o, s:{s:i, s:i, s:i, s:i}, s:{s:s, s:s, s:i}}",
		"version", TETHER_VERSION, "pid", (int)getpid(),
		"uptime_s", (json_int_t)((now_ms() - ctl->started_ms) / 1000), "started", iso_time(ctl->started),
		"config", ctl->config_file, "reload", reload, "dataplane", dataplane,
		"health", "backends", (int)total, "up", (int)counts[HEALTH_UP], "down", (int)counts[HEALTH_DOWN],
		"unknown", (int)counts[HEALTH_UNKNOWN],
		"control", "socket", ctl->config.control.socket,
		"metrics", ctl->metrics ? metrics_server_address(ctl->metrics) : "",
		"clients", (int)control_socket_client_count(ctl->control));
}

/* backend enable|disable|drain|weight: change the override, push, answer when applied. */
static json_t *
backend_command(struct tether_control *ctl, const struct control_request *request, uint64_t client_id,
		uid_t uid)
{
	unsigned p, b;
	struct backend_control *record;

	if (config_pool_index(&ctl->config, request->pool) < 0)
		return control_error_reply("no pool named '%s'", request->pool);
	if (backend_find(&ctl->config, request->pool, request->name, &p, &b) < 0)
		return control_error_reply("no backend named '%s' in pool '%s'", request->name, request->pool);
	record = &ctl->backends[p][b];
	switch (request->spec->command) {
	case CONTROL_BACKEND_ENABLE: record->operator_set = true; record->operator = OPERATOR_ENABLED; break;
	case CONTROL_BACKEND_DISABLE: record->operator_set = true; record->operator = OPERATOR_DISABLED; break;
	case CONTROL_BACKEND_DRAIN: record->operator_set = true; record->operator = OPERATOR_DRAIN; break;
	default: record->weight_override = request->weight; break;
	}
	enum desired_state state = desired_state(ctl, p, b);
	unsigned weight = effective_weight(ctl, p, b);
	log_notice("operator (uid %u): backend %s %s/%s: now %s, weight %u", (unsigned)uid,
		   request->spec->object, request->pool, request->name, desired_names[state], weight);
	json_t *answer = json_pack("{s:b, s:s, s:s, s:s, s:s, s:i}", "ok", 1, "pool", request->pool,
				   "name", request->name, "operator", operator_names[operator_state(ctl, p, b)],
				   "state", desired_names[state], "weight", (int)weight);
	if (push_backends(ctl, false, answer, client_id))
		return NULL;
	json_object_set_new(answer, "dataplane", json_string(
		ctl->reload_pending ? "a reload is in progress; applied with it" :
		ctl->resync_pending ? "resyncing after its (re)connection; applied with it" :
				      "not connected; applied when it reconnects"));
	return answer;
}

static json_t *
handle_request(void *arg, const struct control_request *request, uint64_t client_id, uid_t uid)
{
	struct tether_control *ctl = arg;

	switch (request->spec->command) {
	case CONTROL_STATUS:
		return status_reply(ctl);
	case CONTROL_RELOAD:
		log_notice("operator (uid %u): reload", (unsigned)uid);
		return reload_start(ctl, true, client_id);
	case CONTROL_BACKEND_ENABLE:
	case CONTROL_BACKEND_DISABLE:
	case CONTROL_BACKEND_DRAIN:
	case CONTROL_BACKEND_WEIGHT:
		return backend_command(ctl, request, client_id, uid);
	default:
		return show_start(ctl, request->spec->command, client_id);
	}
}

/* ------------------------------------------------------------------------ */
/* Metrics                                                                  */

struct scrape_context {
	struct tether_control *control;
	uint64_t scrape_id;
};

static void
scrape_render(struct tether_control *ctl, uint64_t scrape_id, const json_t *stats)
{
	unsigned total = 0, i = 0;

	for (unsigned p = 0; p < ctl->config.pool_count; p++)
		total += ctl->config.pools[p].backend_count;
	struct metrics_backend *backends = calloc(total ? total : 1, sizeof(*backends));
	if (!backends) {
		metrics_server_respond(ctl->metrics, scrape_id, NULL);
		return;
	}
	for (unsigned p = 0; p < ctl->config.pool_count; p++) {
		for (unsigned b = 0; b < ctl->config.pools[p].backend_count; b++, i++) {
			const struct health_backend_state *health = health_of(ctl, p, b);
			backends[i] = (struct metrics_backend){
				.pool = ctl->config.pools[p].name,
				.name = ctl->config.pools[p].backends[b].name,
				.state = desired_names[desired_state(ctl, p, b)],
				.health = !health || health->state == HEALTH_UNKNOWN ? -1 : health->state == HEALTH_UP,
				.unknown_counts_as_up = health_state_serves(HEALTH_UNKNOWN),
				.weight = effective_weight(ctl, p, b),
				.check_latency_s = health && health->checked ? health->latency_us / 1e6 : -1,
				.expiry_known = health && health->expiry_known,
				.expiry_days = health ? health->days_to_expiry : 0,
			};
		}
	}
	struct metrics_snapshot snapshot = {
		.backends = backends, .backend_count = total, .stats = stats,
		.last_reload_ok = !ctl->reload.done || ctl->reload.ok,
		.last_reload_success_time = (double)ctl->reload.last_success,
		.start_time = (double)ctl->started,
	};
	metrics_server_respond(ctl->metrics, scrape_id, metrics_render(&snapshot));
	free(backends);
}

static void
on_scrape_stats(void *arg, json_t *reply, const char *error)
{
	struct scrape_context *context = arg;

	if (!reply || json_object_get(reply, "error"))
		log_debug("metrics: no dataplane counters for this scrape: %s",
			  reply ? json_string_value(json_object_get(reply, "error")) : error);
	if (context->control->metrics)
		scrape_render(context->control, context->scrape_id,
			      reply && !json_object_get(reply, "error") ? reply : NULL);
	free(context);
}

static void
on_scrape(void *arg, uint64_t scrape_id)
{
	struct tether_control *ctl = arg;
	struct scrape_context *context = malloc(sizeof(*context));

	if (context) {
		*context = (struct scrape_context){ ctl, scrape_id };
		if (dataplane_client_request(ctl->dataplane, json_pack("{s:s}", "command", "stats"),
					     SCRAPE_TIMEOUT_MS, on_scrape_stats, context) == 0)
			return;
		free(context);
	}
	scrape_render(ctl, scrape_id, NULL);
}

static void
metrics_reopen(struct tether_control *ctl)
{
	char error[256];
	struct metrics_server *server = metrics_server_open(ctl->config.control.metrics, on_scrape, ctl,
							    error, sizeof(error));

	ctl->metrics_reopen = false;
	if (!server) {
		log_error("reload: %s; metrics stay on %s", error,
			  ctl->metrics ? metrics_server_address(ctl->metrics) : "(none)");
		return;
	}
	metrics_server_close(ctl->metrics);   /* scrapes in flight are cut */
	ctl->metrics = server;
	log_notice("metrics: now on http://%s/metrics", ctl->config.control.metrics);
}

/* ------------------------------------------------------------------------ */
/* Start, loop, stop                                                        */

static void
usage(FILE *out)
{
	fprintf(out,
		"usage: tether-control --config FILE [--dataplane-socket PATH] [--admin-group GROUP]\n"
		"                      [--log-level LEVEL] [--foreground]\n"
		"       tether-control --check FILE\n"
		"\n"
		"tether's control plane: loads the config, runs health checks, pushes the desired\n"
		"state to tether-dataplane, serves control.sock (tetherctl) and Prometheus metrics.\n"
		"\n"
		"  -c, --config FILE            JSON configuration (docs/configuration.md)\n"
		"  -C, --check FILE             validate FILE, print every error as FILE: $.path: message,\n"
		"                               exit 1 on errors, 0 with a summary; needs no root, no dataplane\n"
		"  -d, --dataplane-socket PATH  the dataplane's socket (default " DATAPLANE_SOCKET_DEFAULT ")\n"
		"  -a, --admin-group GROUP      members may also run admin commands (reload, backend ...);\n"
		"                               default: root only.  Group " CONTROL_GROUP " may run status and show\n"
		"  -l, --log-level LEVEL        error, warning, notice, info (default), debug\n"
		"  -f, --foreground             accepted for scripts: tether-control never forks\n"
		"  -h, --help                   this text\n"
		"\n"
		"Signals: SIGHUP reloads the config file; SIGTERM and SIGINT stop.\n"
		"\n"
		"Examples:\n"
		"  tether-control --check /etc/tether/tether.json\n"
		"  tether-control --config /etc/tether/tether.json\n"
		"  tether-control --config config/lab.json --dataplane-socket /run/tether/dataplane.sock\n");
}

/* --check: like haproxy -c.  Returns the exit code. */
static int
check_file(const char *file)
{
	struct config config;
	struct config_errors errors;
	unsigned backends = 0;

	if (config_load_file(file, &config, &errors) < 0) {
		config_print_errors(stderr, file, &errors);
		fprintf(stderr, "%s: %u error%s\n", file, errors.count, errors.count == 1 ? "" : "s");
		return 1;
	}
	for (unsigned p = 0; p < config.pool_count; p++) {
		const char *ca = config.pools[p].health.ca;
		bool seen = false;
		backends += config.pools[p].backend_count;
		for (unsigned q = 0; q < p && !seen; q++)
			seen = strcmp(config.pools[q].health.ca, ca) == 0;
		/* Not an error: a CA may appear later (the lab makes its own at start);
		 * until then that pool's checks fail, saying why. */
		if (ca[0] && !seen && access(ca, R_OK) < 0)
			fprintf(stderr, "%s: warning: $.pools.%s.health.ca: cannot read %s now: %s\n", file,
				config.pools[p].name, ca, strerror(errno));
	}
	printf("%s: valid: %u service%s, %u pool%s, %u backend%s; control socket %s, metrics %s\n", file,
	       config.service_count, config.service_count == 1 ? "" : "s", config.pool_count,
	       config.pool_count == 1 ? "" : "s", backends, backends == 1 ? "" : "s", config.control.socket,
	       config.control.metrics);
	config_free(&config);
	return 0;
}

/* `file` made absolute without resolving symlinks (a symlink swapped to a
 * new version must be followed at the next reload). */
static int
absolute_path(const char *file, char *out, size_t size)
{
	char cwd[PATH_MAX];

	if (file[0] == '/')
		return snprintf(out, size, "%s", file) < (int)size ? 0 : -ENAMETOOLONG;
	if (!getcwd(cwd, sizeof(cwd)))
		return -errno;
	return snprintf(out, size, "%s/%s", cwd, file) < (int)size ? 0 : -ENAMETOOLONG;
}

static int
open_signals(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -1;
	signal(SIGPIPE, SIG_IGN);
	return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

static void
handle_signals(struct tether_control *ctl)
{
	struct signalfd_siginfo info;

	while (read(ctl->signal_fd, &info, sizeof(info)) == sizeof(info)) {
		if (info.ssi_signo == SIGHUP) {
			log_notice("SIGHUP: reloading %s", ctl->config_file);
			json_decref(reload_start(ctl, false, 0));   /* logged either way */
		} else {
			log_notice("%s: stopping; the dataplane keeps forwarding on its last state",
				   strsignal((int)info.ssi_signo));
			ctl->stopping = true;
		}
	}
}

static void
after_health_turn(struct tether_control *ctl)
{
	push_backends(ctl, false, NULL, 0);
	push_key_names(ctl, false);
}

/* The loop: every source of work, one poll(). */
static void
main_loop(struct tether_control *ctl)
{
	struct pollfd fds[POLL_FDS_MAX];

	while (!ctl->stopping) {
		uint64_t now = now_ms();
		int timeout = 1000;
		unsigned count = 0, dataplane_at, control_at, metrics_at;

		if (ctl->metrics_reopen)
			metrics_reopen(ctl);
		fds[count++] = (struct pollfd){ .fd = ctl->signal_fd, .events = POLLIN };
		fds[count++] = (struct pollfd){ .fd = health_engine_fd(ctl->health), .events = POLLIN };
		dataplane_at = count;
		count += dataplane_client_poll_prepare(ctl->dataplane, &fds[count], now, &timeout);
		control_at = count;
		count += control_socket_poll_prepare(ctl->control, &fds[count], POLL_FDS_MAX - count, now, &timeout);
		metrics_at = count;
		count += metrics_server_poll_prepare(ctl->metrics, &fds[count], POLL_FDS_MAX - count, now, &timeout);

		if (poll(fds, count, timeout) < 0 && errno != EINTR) {
			log_error("poll: %s", strerror(errno));
			ctl->exit_code = 1;
			return;
		}
		now = now_ms();
		if (fds[0].revents & POLLIN)
			handle_signals(ctl);
		if (fds[1].revents & POLLIN) {
			int rc = health_engine_run_once(ctl->health, 0);
			if (rc < 0)
				log_error("health checks: %s", strerror(-rc));
			after_health_turn(ctl);
		}
		dataplane_client_poll_dispatch(ctl->dataplane, &fds[dataplane_at], control_at - dataplane_at, now);
		control_socket_poll_dispatch(ctl->control, &fds[control_at], metrics_at - control_at, now);
		metrics_server_poll_dispatch(ctl->metrics, &fds[metrics_at], count - metrics_at, now);
	}
}

static int
start(struct tether_control *ctl, const char *dataplane_socket)
{
	struct config_errors errors;
	char error[512];
	struct dataplane_client_callbacks callbacks = {
		.on_connect = on_dataplane_connect, .on_disconnect = on_dataplane_disconnect, .arg = ctl,
	};

	if (config_load_file(ctl->config_file, &ctl->config, &errors) < 0) {
		config_print_errors(stderr, ctl->config_file, &errors);
		log_error("%s has %u errors; not starting", ctl->config_file, errors.count);
		return -1;
	}
	ctl->started = ctl->reload.last_success = time(NULL);
	ctl->started_ms = now_ms();
	if (!(ctl->backends = backends_new(&ctl->config)) ||
	    !(ctl->dataplane = dataplane_client_create(dataplane_socket, &callbacks))) {
		log_error("out of memory");
		return -1;
	}
	if ((ctl->signal_fd = open_signals()) < 0) {
		log_error("signalfd: %s", strerror(errno));
		return -1;
	}
	if (!(ctl->health = health_engine_create(&ctl->config, on_health_change, ctl))) {
		log_error("cannot start health checks: %s", strerror(errno));
		return -1;
	}
	health_engine_set_key_name_callback(ctl->health, on_key_name);
	if (!(ctl->control = control_socket_open(ctl->config.control.socket, NULL, ctl->admin_group,
						 handle_request, ctl, error, sizeof(error))) ||
	    !(ctl->metrics = metrics_server_open(ctl->config.control.metrics, on_scrape, ctl,
						 error, sizeof(error)))) {
		log_error("%s", error);
		return -1;
	}
	log_notice("tether-control %s started: %s, %u services, %u pools; metrics on http://%s/metrics",
		   TETHER_VERSION, ctl->config_file, ctl->config.service_count, ctl->config.pool_count,
		   ctl->config.control.metrics);
	return 0;
}

static void
stop(struct tether_control *ctl)
{
	/* The dataplane client first: its waiting callbacks answer control and
	 * metrics clients, which must still exist (then they are closed). */
	ctl->stopping = true;
	dataplane_client_destroy(ctl->dataplane);
	metrics_server_close(ctl->metrics);
	control_socket_close(ctl->control);
	health_engine_destroy(ctl->health);
	backends_free(ctl->backends, ctl->config.pool_count);
	config_free(&ctl->config);
	if (ctl->signal_fd >= 0)
		close(ctl->signal_fd);
}

int
main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check", required_argument, NULL, 'C' },
		{ "dataplane-socket", required_argument, NULL, 'd' },
		{ "admin-group", required_argument, NULL, 'a' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct tether_control ctl = { .signal_fd = -1 };
	const char *config_file = NULL, *dataplane_socket = DATAPLANE_SOCKET_DEFAULT;
	int option, level;

	while ((option = getopt_long(argc, argv, "c:C:d:a:l:fh", options, NULL)) != -1) {
		switch (option) {
		case 'c': config_file = optarg; break;
		case 'C': return check_file(optarg);
		case 'd': dataplane_socket = optarg; break;
		case 'a': ctl.admin_group = optarg; break;
		case 'l':
			if ((level = log_level_parse(optarg)) < 0) {
				fprintf(stderr, "tether-control: unknown log level '%s'\n", optarg);
				return 2;
			}
			log_set_level(level);
			break;
		case 'f': break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!config_file || optind != argc) {
		usage(stderr);
		return 2;
	}
	if (absolute_path(config_file, ctl.config_file, sizeof(ctl.config_file)) < 0) {
		fprintf(stderr, "tether-control: %s: path too long\n", config_file);
		return 1;
	}
	if (start(&ctl, dataplane_socket) == 0)
		main_loop(&ctl);
	else
		ctl.exit_code = 1;
	stop(&ctl);
	return ctl.exit_code;
}
