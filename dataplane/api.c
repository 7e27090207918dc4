/*
 * api.c: dataplane.sock; protocol in api.h.
 *
 * One poll() loop on the main lcore: non-blocking accept, line-buffered
 * reads bounded by API_REQUEST_MAX (a longer line is an error reply and a
 * closed connection), replies written whole.  Counters are summed across
 * workers at request time; workers are never stopped or locked for it.
 */
#define _GNU_SOURCE   /* accept4 */
#include "api.h"
#include "reload.h"
#include "synproxy.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>
#include <rte_cycles.h>
#include <rte_ethdev.h>

#define TETHER_VERSION "0.1.0"

static const char *const port_names[2] = { "public", "private" };

static int
make_parent_directory(const char *path)
{
	char directory[CONFIG_PATH_MAX];
	char *slash;

	snprintf(directory, sizeof(directory), "%s", path);
	slash = strrchr(directory, '/');
	if (!slash || slash == directory)
		return 0;
	*slash = '\0';
	if (mkdir(directory, 0750) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int
api_open(struct api *api, const char *path, char *error, size_t error_size)
{
	struct sockaddr_un address = { .sun_family = AF_UNIX };
	int rc;

	if (strlen(path) >= sizeof(address.sun_path)) {
		snprintf(error, error_size, "socket path %s is too long", path);
		return -ENAMETOOLONG;
	}
	snprintf(api->path, sizeof(api->path), "%s", path);
	snprintf(address.sun_path, sizeof(address.sun_path), "%s", path);
	if ((rc = make_parent_directory(path)) < 0) {
		snprintf(error, error_size, "cannot create the directory of %s: %s", path, strerror(-rc));
		return rc;
	}
	api->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (api->listen_fd < 0)
		goto fail;
	unlink(path);   /* a stale socket from a dataplane that died */
	mode_t old_mask = umask(0117);
	rc = bind(api->listen_fd, (struct sockaddr *)&address, sizeof(address));
	umask(old_mask);
	if (rc < 0 || listen(api->listen_fd, 16) < 0)
		goto fail;
	return 0;
fail:
	rc = -errno;
	snprintf(error, error_size, "cannot listen on %s: %s", path, strerror(errno));
	if (api->listen_fd >= 0)
		close(api->listen_fd);
	api->listen_fd = -1;
	return rc;
}

void
api_close(struct api *api)
{
	for (unsigned i = 0; i < API_CLIENTS_MAX; i++) {
		if (!api->clients[i])
			continue;
		close(api->clients[i]->fd);
		free(api->clients[i]);
		api->clients[i] = NULL;
	}
	if (api->listen_fd >= 0) {
		close(api->listen_fd);
		unlink(api->path);
	}
	api->listen_fd = -1;
}

/* --- counters, summed over workers --- */

#define SUM(field) ({ uint64_t total_ = 0; \
	for (unsigned w_ = 0; w_ < api->worker_count; w_++) total_ += api->workers[w_].field; \
	total_; })

static json_t *
ports_json(const struct api *api)
{
	json_t *ports = json_object();

	for (unsigned p = 0; p < 2; p++) {
		json_object_set_new(ports, port_names[p], json_pack(
			"{s:I, s:I, s:I, s:I, s:I}",
			"rx_packets", (json_int_t)SUM(stats.ports[p].rx_packets),
			"rx_bytes", (json_int_t)SUM(stats.ports[p].rx_bytes),
			"tx_packets", (json_int_t)SUM(stats.ports[p].tx_packets),
			"tx_bytes", (json_int_t)SUM(stats.ports[p].tx_bytes),
			"tx_dropped", (json_int_t)SUM(stats.ports[p].tx_dropped)));
	}
	return ports;
}

static json_t *
drops_json(const struct api *api, uint64_t *total)
{
	json_t *drops = json_object();

	*total = 0;
	for (unsigned r = 1; r < PACKET_REASON_COUNT; r++) {
		uint64_t count = SUM(stats.drops[r]);
		*total += count;
		json_object_set_new(drops, packet_reason_name(r), json_integer((json_int_t)count));
	}
	return drops;
}

static json_t *
services_json(const struct api *api)
{
	const struct services *services = api->state->services;
	json_t *list = json_array();
	char vip[16];

	for (unsigned s = 0; s < services->service_count; s++) {
		const struct runtime_service *service = &services->services[s];
		unsigned id = service->id;
		const struct config_service *conf = &api->state->config.services[s];
		json_array_append_new(list, json_pack(
			"{s:s, s:s, s:i, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
			"name", service->name,
			"vip", config_format_ipv4(conf->vip, vip),
			"port", conf->port,
			"protocol", conf->protocol == CONFIG_PROTO_UDP ? "udp" : "tcp",
			"pool", services->pools[service->pool].name,
			"persistence", config_persistence_mode_name(conf->persistence.mode),
			"new_flows", (json_int_t)SUM(stats.services[id].new_flows),
			"packets_in", (json_int_t)SUM(stats.services[id].packets_in),
			"bytes_in", (json_int_t)SUM(stats.services[id].bytes_in),
			"packets_out", (json_int_t)SUM(stats.services[id].packets_out),
			"bytes_out", (json_int_t)SUM(stats.services[id].bytes_out),
			"persist_hits", (json_int_t)SUM(stats.services[id].persist_hits),
			"persist_misses", (json_int_t)SUM(stats.services[id].persist_misses)));
	}
	return list;
}

static json_t *
backends_json(const struct api *api)
{
	const struct services *services = api->state->services;
	const struct neighbor_table *neighbors = &api->workers[0].neighbors;
	json_t *list = json_array();
	char address[16];

	for (unsigned b = 0; b < services->backend_count; b++) {
		const struct runtime_backend *backend = &services->backends[b];
		unsigned id = backend->id;
		uint64_t created = SUM(stats.backends[id].new_flows);
		uint64_t expired = SUM(stats.backends[id].expired_flows);
		bool resolved = backend->neighbor != NEIGHBOR_NONE &&
				neighbors->entries[backend->neighbor].state == NEIGHBOR_REACHABLE;
		json_array_append_new(list, json_pack(
			"{s:i, s:s, s:s, s:s, s:i, s:i, s:b, s:s, s:b, s:I, s:I, s:I, s:I, s:I, s:I}",
			"id", backend->id,
			"pool", services->pools[backend->pool].name,
			"name", backend->name,
			"address", config_format_ipv4(rte_be_to_cpu_32(backend->address), address),
			"port", rte_be_to_cpu_16(backend->port),
			"weight", backend->weight,
			"active", backend->active,
			"state", services_state_name(api->state->registry.backends[id].state),
			"neighbor_resolved", resolved,
			"new_flows", (json_int_t)created,
			"active_flows", (json_int_t)(created - expired),
			"packets_in", (json_int_t)SUM(stats.backends[id].packets_in),
			"bytes_in", (json_int_t)SUM(stats.backends[id].bytes_in),
			"packets_out", (json_int_t)SUM(stats.backends[id].packets_out),
			"bytes_out", (json_int_t)SUM(stats.backends[id].bytes_out)));
	}
	return list;
}

#define PROXY_SUM(field) ({ uint64_t total_ = 0; \
	for (unsigned w_ = 0; w_ < api->worker_count; w_++) \
		if (api->workers[w_].synproxy) total_ += api->workers[w_].synproxy->field; \
	total_; })
#define PROXY_COUNTER(name) json_object_set_new(object, #name, \
	json_integer((json_int_t)PROXY_SUM(stats.name)))

/* ssl-session counters: hits by mechanism, fallbacks by reason, cookies,
 * bindings, learning.  Zero everywhere when no service uses ssl-session. */
static json_t *
ssl_session_json(const struct api *api)
{
	json_t *object = json_object();

	PROXY_COUNTER(cookies_sent); PROXY_COUNTER(cookies_valid); PROXY_COUNTER(cookies_invalid);
	PROXY_COUNTER(rst_sent); PROXY_COUNTER(rst_rate_limited);
	PROXY_COUNTER(bindings_started); PROXY_COUNTER(bindings_full);
	PROXY_COUNTER(bindings_bound); PROXY_COUNTER(bindings_aborted);
	PROXY_COUNTER(cookie_connections);
	PROXY_COUNTER(inspect_timeouts); PROXY_COUNTER(backend_syn_retries);
	PROXY_COUNTER(backend_failed); PROXY_COUNTER(replay_retransmits);
	PROXY_COUNTER(hit_session_id); PROXY_COUNTER(hit_ticket); PROXY_COUNTER(hit_key_name);
	PROXY_COUNTER(fallback_new_session); PROXY_COUNTER(fallback_unknown_session);
	PROXY_COUNTER(fallback_tls13_unknown_ticket); PROXY_COUNTER(fallback_not_tls);
	PROXY_COUNTER(fallback_too_large); PROXY_COUNTER(fallback_timeout);
	PROXY_COUNTER(fallback_malformed); PROXY_COUNTER(fallback_backend_down);
	PROXY_COUNTER(learned_session_id); PROXY_COUNTER(learned_ticket);
	PROXY_COUNTER(learned_key_name); PROXY_COUNTER(tls13_session_id_ignored);
	PROXY_COUNTER(learn_gap); PROXY_COUNTER(learn_incomplete);
	json_object_set_new(object, "sessions_live", json_integer((json_int_t)PROXY_SUM(sessions.live)));
	json_object_set_new(object, "bindings_active", json_integer((json_int_t)
		(PROXY_SUM(capacity) - PROXY_SUM(free_top))));
	return object;
}

/* The degradation ladder (overload.h): the highest level of any worker and
 * each worker's, the half-open flows, the steps taken and what they cost. */
static json_t *
overload_json(const struct api *api)
{
	json_t *levels = json_array();
	unsigned highest = OVERLOAD_NONE;

	for (unsigned w = 0; w < api->worker_count; w++) {
		unsigned level = api->workers[w].overload.level;
		json_array_append_new(levels, json_string(overload_level_name(level)));
		highest = level > highest ? level : highest;
	}
	return json_pack("{s:s, s:o, s:I, s:I, s:I, s:I, s:I}",
		"level", overload_level_name(highest),
		"worker_levels", levels,
		"half_open", (json_int_t)SUM(flows.half_open),
		"entered_syn_cookies", (json_int_t)SUM(overload.stats.entered_syn_cookies),
		"entered_refuse_new", (json_int_t)SUM(overload.stats.entered_refuse_new),
		"syns_cookied", (json_int_t)SUM(overload.stats.syns_cookied),
		"refused", (json_int_t)SUM(overload.stats.refused));
}

/* Several workers: how the clients spread and how much steering costs. */
static json_t *
steering_json(const struct api *api)
{
	json_t *per_worker = json_array();

	for (unsigned w = 0; w < api->worker_count; w++) {
		const struct worker *worker = &api->workers[w];
		json_array_append_new(per_worker, json_pack(
			"{s:I, s:I, s:I, s:I}",
			"flows_live", (json_int_t)worker->flows.live,
			"flows_created", (json_int_t)worker->stats.flows_created,
			"handed_off", (json_int_t)worker->stats.handoff_sent,
			"received_from_peers", (json_int_t)worker->stats.handoff_received));
	}
	return json_pack("{s:I, s:I, s:I, s:I, s:o}",
			 "workers", (json_int_t)api->worker_count,
			 "handed_off", (json_int_t)SUM(stats.handoff_sent),
			 "received_from_peers", (json_int_t)SUM(stats.handoff_received),
			 "messages_lost", (json_int_t)SUM(stats.messages_lost),
			 "per_worker", per_worker);
}

static json_t *
stats_json(const struct api *api)
{
	uint64_t drops_total;
	json_t *drops = drops_json(api, &drops_total);

	return json_pack(
		"{s:o, s:o, s:I, s:{s:I, s:I, s:I, s:I, s:I}, s:{s:I, s:I, s:I},"
		" s:{s:I, s:I, s:I, s:I}, s:{s:I, s:I}, s:o, s:o, s:o, s:o, s:o}",
		"ports", ports_json(api),
		"drops", drops,
		"drops_total", (json_int_t)drops_total,
		"flows",
		"rst_out_of_window", (json_int_t)SUM(stats.rst_out_of_window),
		"live", (json_int_t)SUM(flows.live),
		"capacity", (json_int_t)SUM(flows.capacity),
		"created", (json_int_t)SUM(stats.flows_created),
		"expired", (json_int_t)SUM(stats.flows_expired),
		"persistence",
		"live", (json_int_t)SUM(persist.live),
		"inserted", (json_int_t)SUM(stats.persist_inserted),
		"expired", (json_int_t)SUM(stats.persist_expired),
		"arp",
		"requests_sent", (json_int_t)SUM(stats.arp_requests_sent),
		"replies_sent", (json_int_t)SUM(stats.arp_replies_sent),
		"learned", (json_int_t)SUM(stats.arp_learned),
		"gratuitous_sent", (json_int_t)SUM(stats.arp_gratuitous_sent),
		"icmp",
		"echo_replies", (json_int_t)SUM(stats.icmp_echo_replies),
		"errors_relayed", (json_int_t)SUM(stats.icmp_errors_relayed),
		"steering", steering_json(api),
		"overload", overload_json(api),
		"services", services_json(api),
		"backends", backends_json(api),
		"ssl_session", ssl_session_json(api));
}

static json_t *
status_json(const struct api *api)
{
	json_t *ports = json_object();
	char address[16];

	for (unsigned p = 0; p < 2; p++) {
		const struct dataplane_port *port = &api->workers[0].ports[p];
		struct rte_eth_link link = { 0 };
		char mac[RTE_ETHER_ADDR_FMT_SIZE];
		rte_eth_link_get_nowait(port->port_id, &link);
		rte_ether_format_addr(mac, sizeof(mac), &port->mac);
		json_object_set_new(ports, port_names[p], json_pack(
			"{s:i, s:s, s:s, s:b}", "port_id", port->port_id, "mac", mac,
			"address", config_format_ipv4(rte_be_to_cpu_32(port->address), address),
			"link_up", link.link_status == RTE_ETH_LINK_UP));
	}
	return json_pack("{s:s, s:I, s:i, s:o, s:s, s:I}", "version", TETHER_VERSION,
			 "uptime_s", (json_int_t)((rte_rdtsc() - api->started_tsc) / rte_get_tsc_hz()),
			 "workers", (int)api->worker_count, "ports", ports,
			 "config", api->state->config_file,
			 "generation", (json_int_t)api->state->generation);
}

static char *
error_reply(const char *format, const char *detail)
{
	char message[256];
	snprintf(message, sizeof(message), format, detail);
	json_t *reply = json_pack("{s:s}", "error", message);
	char *text = json_dumps(reply, JSON_COMPACT);
	json_decref(reply);
	return text;
}

static json_t *
error_json(const char *message)
{
	return json_pack("{s:s}", "error", message);
}

/* {"command":"load","config":FILE}: refused whole with every JSON path, or swapped in. */
static json_t *
load_json(struct api *api, json_t *request)
{
	const char *file = json_string_value(json_object_get(request, "config"));
	static struct config_errors errors;
	char error[256] = "";

	if (!file)
		return error_json("load needs \"config\": the path of a config file");
	int rc = reload_config(api->state, file, &errors, error, sizeof(error));
	if (rc == -EINVAL) {
		json_t *list = json_array();
		unsigned shown = errors.count < CONFIG_ERRORS_MAX ? errors.count : CONFIG_ERRORS_MAX;
		for (unsigned i = 0; i < shown; i++)
			json_array_append_new(list, json_pack("{s:s, s:s}", "path", errors.errors[i].path,
							      "message", errors.errors[i].message));
		return json_pack("{s:s, s:o, s:i}", "error", "config refused", "errors", list,
				 "error_count", (int)errors.count);
	}
	if (rc < 0)
		return error_json(error);
	return json_pack("{s:b, s:I}", "ok", 1, "generation", (json_int_t)api->state->generation);
}

/* {"command":"backends","states":[{"pool","name","state","weight"?}]}: all or nothing. */
static json_t *
backends_command(struct api *api, json_t *request)
{
	json_t *states = json_object_get(request, "states"), *item;
	char error[256];
	size_t index;

	if (!json_is_array(states))
		return error_json("backends needs \"states\": an array of {pool, name, state, weight}");
	/* validate everything before recording anything */
	json_array_foreach(states, index, item) {
		const char *pool = json_string_value(json_object_get(item, "pool"));
		const char *name = json_string_value(json_object_get(item, "name"));
		const char *state = json_string_value(json_object_get(item, "state"));
		json_t *weight = json_object_get(item, "weight");
		if (!pool || !name || !state || services_state_parse(state) < 0 ||
		    (weight && (!json_is_integer(weight) || json_integer_value(weight) < 0 ||
				json_integer_value(weight) > 1000))) {
			snprintf(error, sizeof(error), "states[%zu]: needs string pool, name and state "
				 "(up, down, drain, disabled), optional weight 0..1000", index);
			return error_json(error);
		}
		if (services_registry_find_backend(&api->state->registry, pool, name,
						   &api->state->config) < 0) {
			snprintf(error, sizeof(error), "states[%zu]: no backend '%.64s' in pool '%.64s'",
				 index, name, pool);
			return error_json(error);
		}
	}
	json_array_foreach(states, index, item) {
		json_t *weight = json_object_get(item, "weight");
		reload_set_backend(api->state, json_string_value(json_object_get(item, "pool")),
				   json_string_value(json_object_get(item, "name")),
				   services_state_parse(json_string_value(json_object_get(item, "state"))),
				   weight ? (int)json_integer_value(weight) : -1);
	}
	if (reload_apply(api->state, error, sizeof(error)) < 0)
		return error_json(error);
	return json_pack("{s:b, s:I, s:i}", "ok", 1, "generation", (json_int_t)api->state->generation,
			 "changed", (int)json_array_size(states));
}

static int
parse_key_name(const char *hex, uint8_t key_name[16])
{
	if (!hex || strlen(hex) != 32)
		return -1;
	for (int i = 0; i < 16; i++) {
		unsigned byte;
		if (sscanf(hex + 2 * i, "%2x", &byte) != 1)
			return -1;
		key_name[i] = (uint8_t)byte;
	}
	return 0;
}

/* {"command":"key_names","entries":[{"pool","name","key_name":"32 hex"}]} */
static json_t *
key_names_command(struct api *api, json_t *request)
{
	json_t *entries = json_object_get(request, "entries"), *item;
	char error[256];
	size_t index;
	int stored = 0;

	if (!json_is_array(entries))
		return error_json("key_names needs \"entries\": an array of {pool, name, key_name}");
	json_array_foreach(entries, index, item) {
		uint8_t key_name[16];
		const char *pool = json_string_value(json_object_get(item, "pool"));
		const char *name = json_string_value(json_object_get(item, "name"));
		if (!pool || !name ||
		    parse_key_name(json_string_value(json_object_get(item, "key_name")), key_name) < 0) {
			snprintf(error, sizeof(error), "entries[%zu]: needs pool, name and key_name "
				 "(32 hex digits)", index);
			return error_json(error);
		}
		int rc = reload_key_name(api->state, pool, name, key_name);
		if (rc == -ENOENT) {
			snprintf(error, sizeof(error), "entries[%zu]: no backend '%.64s' in pool '%.64s'",
				 index, name, pool);
			return error_json(error);
		}
		stored += rc == 0;
	}
	return json_pack("{s:b, s:i}", "ok", 1, "stored", stored);
}

char *
api_handle_request(struct api *api, const char *line, size_t length)
{
	json_error_t parse_error;
	json_t *request = json_loadb(line, length, 0, &parse_error);
	json_t *reply = NULL;
	const char *command;
	char *text;

	if (!request)
		return error_reply("invalid JSON: %s", parse_error.text);
	if (!json_is_object(request) ||
	    !(command = json_string_value(json_object_get(request, "command")))) {
		json_decref(request);
		return error_reply("%s", "expected an object with a string \"command\"");
	}
	if (strcmp(command, "stats") == 0)
		reply = stats_json(api);
	else if (strcmp(command, "status") == 0)
		reply = status_json(api);
	else if (strcmp(command, "load") == 0)
		reply = load_json(api, request);
	else if (strcmp(command, "backends") == 0)
		reply = backends_command(api, request);
	else if (strcmp(command, "key_names") == 0)
		reply = key_names_command(api, request);
	if (!reply) {
		text = error_reply("unknown command '%.64s' (known: stats, status, load, backends, "
				   "key_names)", command);
		json_decref(request);
		return text;
	}
	json_decref(request);
	text = json_dumps(reply, JSON_COMPACT);
	json_decref(reply);
	return text;
}

static void
drop_client(struct api *api, unsigned index)
{
	close(api->clients[index]->fd);
	free(api->clients[index]);
	api->clients[index] = NULL;
}

static void
accept_clients(struct api *api)
{
	int fd;

	while ((fd = accept4(api->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
		unsigned i;
		for (i = 0; i < API_CLIENTS_MAX && api->clients[i]; i++)
			;
		struct api_client *client = i < API_CLIENTS_MAX ? calloc(1, sizeof(*client)) : NULL;
		if (!client) {
			close(fd);   /* full: the client sees EOF and may retry */
			continue;
		}
		client->fd = fd;
		api->clients[i] = client;
	}
}

/* Write all of `text` then a newline; the socket is non-blocking, so wait
 * briefly for room rather than give up on a slow reader. */
static int
write_reply(int fd, const char *text)
{
	size_t length = strlen(text);
	const char *data = text;
	char newline = '\n';

	for (int part = 0; part < 2; part++) {
		while (length) {
			ssize_t written = write(fd, data, length);
			if (written < 0 && errno == EAGAIN) {
				struct pollfd wait = { .fd = fd, .events = POLLOUT };
				if (poll(&wait, 1, 1000) <= 0)
					return -1;
				continue;
			}
			if (written <= 0)
				return -1;
			data += written;
			length -= (size_t)written;
		}
		data = &newline;
		length = 1;
	}
	return 0;
}

/* Read what is there; answer each complete line.  Returns -1 to drop. */
static int
serve_client(struct api *api, struct api_client *client)
{
	ssize_t got = read(client->fd, client->buffer + client->length,
			   sizeof(client->buffer) - client->length);
	if (got == 0 || (got < 0 && errno != EAGAIN))
		return -1;
	if (got < 0)
		return 0;
	client->length += (size_t)got;
	char *newline;
	while ((newline = memchr(client->buffer, '\n', client->length))) {
		size_t line_length = (size_t)(newline - client->buffer);
		char *reply = api_handle_request(api, client->buffer, line_length);
		int rc = reply ? write_reply(client->fd, reply) : -1;
		free(reply);
		if (rc < 0)
			return -1;
		client->length -= line_length + 1;
		memmove(client->buffer, newline + 1, client->length);
	}
	if (client->length == sizeof(client->buffer)) {
		char *reply = error_reply("request longer than %s bytes", "65536");
		write_reply(client->fd, reply);
		free(reply);
		return -1;
	}
	return 0;
}

void
api_poll(struct api *api, int timeout_ms)
{
	struct pollfd fds[API_CLIENTS_MAX + 1];
	unsigned owners[API_CLIENTS_MAX + 1];
	unsigned count = 0;

	fds[count++] = (struct pollfd){ .fd = api->listen_fd, .events = POLLIN };
	for (unsigned i = 0; i < API_CLIENTS_MAX; i++) {
		if (!api->clients[i])
			continue;
		owners[count] = i;
		fds[count++] = (struct pollfd){ .fd = api->clients[i]->fd, .events = POLLIN };
	}
	if (poll(fds, count, timeout_ms) <= 0)
		return;
	if (fds[0].revents & POLLIN)
		accept_clients(api);
	for (unsigned f = 1; f < count; f++)
		if (fds[f].revents && serve_client(api, api->clients[owners[f]]) < 0)
			drop_client(api, owners[f]);
}
