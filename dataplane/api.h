/*
 * api.h: dataplane.sock, the dataplane's local control socket.
 *
 * A UNIX stream socket; each request is one JSON object on one line, each
 * reply one JSON object on one line.  Commands today:
 *   {"command":"stats"}   every counter (ports, drops by reason, flows,
 *                         persistence, ARP, ICMP, per service, per backend)
 *   {"command":"status"}  version, uptime, ports, config file, generation
 *   {"command":"load","config":FILE}        swap in a new config (reload.h)
 *   {"command":"backends","states":[...]}   desired backend states / weights
 *   {"command":"key_names","entries":[...]} ticket key names from health checks
 * (docs/architecture.md has the details)
 * A bad request gets {"error": "..."}; the dataplane keeps serving.  Served by
 * the main lcore (never a worker), which reads the workers' counters.
 */
#ifndef TETHER_API_H
#define TETHER_API_H

#include <stddef.h>

#include "config.h"
#include "pipeline.h"

#define API_REQUEST_MAX 65536
#define API_CLIENTS_MAX 16

struct api_client {
	int fd;
	size_t length;
	char buffer[API_REQUEST_MAX];
};

struct dataplane_state;

struct api {
	int listen_fd;
	char path[CONFIG_PATH_MAX];
	struct dataplane_state *state;      /* config, tables, registry (reload.h) */
	struct worker *workers;
	unsigned worker_count;
	uint64_t started_tsc;
	struct api_client *clients[API_CLIENTS_MAX];
};

/* Create the socket at `path` (mode 0660; parent directory made 0750 if
 * missing).  Returns 0 or a negative errno with `error` filled. */
int api_open(struct api *api, const char *path, char *error, size_t error_size);

/* Serve requests for up to `timeout_ms`.  Main lcore. */
void api_poll(struct api *api, int timeout_ms);

void api_close(struct api *api);

/* The reply to one request line (for tests and fuzzers); caller frees. */
char *api_handle_request(struct api *api, const char *line, size_t length);

#endif /* TETHER_API_H */
