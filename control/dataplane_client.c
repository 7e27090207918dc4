/*
 * dataplane_client.c: see dataplane_client.h.
 *
 * Pending requests live in a ring in the order they were written, which is
 * the order the dataplane answers them.  A request whose caller gave up
 * (timeout) stays in the ring with no callback, so that its late reply is
 * consumed in its turn and never handed to the next request.  Callbacks run
 * only from _dispatch, after the request has left the ring, so a callback may
 * send new requests.
 */
#define _GNU_SOURCE
#include "dataplane_client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

struct pending {
	dataplane_reply_fn reply_fn;   /* NULL: abandoned, discard its reply */
	void *arg;
	uint64_t deadline_ms;
};

/* A callback owed but not yet made (failures found inside _request or a
 * disconnect); run at the end of the next dispatch. */
struct failure {
	dataplane_reply_fn reply_fn;
	void *arg;
	char error[128];
};

struct dataplane_client {
	char path[108];
	struct dataplane_client_callbacks callbacks;
	int fd;
	bool connected;
	uint64_t now_ms;
	uint64_t retry_at_ms;
	unsigned retry_delay_ms;
	bool outage_logged;            /* one log line per outage */
	char last_error[256];
	uint64_t last_progress_ms;     /* last reply read (stall detection) */

	char *input;                   /* partial reply lines */
	size_t input_length, input_capacity;
	char *output;                  /* requests not yet written */
	size_t output_length, output_sent, output_capacity;

	struct pending ring[DATAPLANE_PENDING_MAX];
	unsigned head, count;
	struct failure *failures;
	unsigned failure_count, failure_capacity;
};

struct dataplane_client *
dataplane_client_create(const char *path, const struct dataplane_client_callbacks *callbacks)
{
	struct dataplane_client *client = calloc(1, sizeof(*client));

	if (!client)
		return NULL;
	snprintf(client->path, sizeof(client->path), "%s", path);
	client->callbacks = *callbacks;
	client->fd = -1;
	client->retry_delay_ms = DATAPLANE_RETRY_MIN_MS;
	return client;
}

bool
dataplane_client_connected(const struct dataplane_client *client)
{
	return client->connected;
}

const char *
dataplane_client_path(const struct dataplane_client *client)
{
	return client->path;
}

const char *
dataplane_client_last_error(const struct dataplane_client *client)
{
	return client->last_error;
}

static void
owe_failure(struct dataplane_client *client, dataplane_reply_fn reply_fn, void *arg, const char *error)
{
	if (client->failure_count == client->failure_capacity) {
		unsigned capacity = client->failure_capacity ? client->failure_capacity * 2 : 16;
		struct failure *grown = realloc(client->failures, capacity * sizeof(*grown));
		if (!grown) {
			reply_fn(arg, NULL, error);   /* last resort: call now */
			return;
		}
		client->failures = grown;
		client->failure_capacity = capacity;
	}
	struct failure *failure = &client->failures[client->failure_count++];
	failure->reply_fn = reply_fn;
	failure->arg = arg;
	snprintf(failure->error, sizeof(failure->error), "%s", error);
}

/* Make the callbacks owed.  They may add new ones; those run too. */
static void
run_failures(struct dataplane_client *client)
{
	for (unsigned i = 0; i < client->failure_count; i++) {
		struct failure failure = client->failures[i];
		failure.reply_fn(failure.arg, NULL, failure.error);
	}
	client->failure_count = 0;
}

/* Close the connection: every waiting request fails with `why`, the owner
 * hears of it, and a retry is scheduled. */
static void
disconnect(struct dataplane_client *client, const char *why)
{
	bool was_connected = client->connected;

	if (client->fd >= 0)
		close(client->fd);
	client->fd = -1;
	client->connected = false;
	client->input_length = 0;
	client->output_length = client->output_sent = 0;
	for (; client->count; client->count--) {
		struct pending *pending = &client->ring[client->head];
		client->head = (client->head + 1) % DATAPLANE_PENDING_MAX;
		if (pending->reply_fn)
			owe_failure(client, pending->reply_fn, pending->arg, why);
	}
	snprintf(client->last_error, sizeof(client->last_error), "%s", why);
	client->retry_delay_ms = DATAPLANE_RETRY_MIN_MS;
	client->retry_at_ms = client->now_ms + client->retry_delay_ms;
	if (was_connected) {
		log_warning("dataplane %s: connection lost: %s; reconnecting", client->path, why);
		client->outage_logged = true;
		if (client->callbacks.on_disconnect)
			client->callbacks.on_disconnect(client->callbacks.arg, why);
	}
}

void
dataplane_client_destroy(struct dataplane_client *client)
{
	if (!client)
		return;
	client->callbacks.on_disconnect = NULL;
	client->connected = false;   /* no "connection lost" line at shutdown */
	disconnect(client, "shutting down");
	run_failures(client);
	free(client->failures);
	free(client->input);
	free(client->output);
	free(client);
}

static void
try_connect(struct dataplane_client *client)
{
	struct sockaddr_un address = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	snprintf(address.sun_path, sizeof(address.sun_path), "%s", client->path);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&address, sizeof(address)) == 0) {
		client->fd = fd;
		client->connected = true;
		client->last_progress_ms = client->now_ms;
		client->last_error[0] = '\0';
		client->outage_logged = false;
		client->retry_delay_ms = DATAPLANE_RETRY_MIN_MS;
		log_notice("dataplane %s: connected", client->path);
		if (client->callbacks.on_connect)
			client->callbacks.on_connect(client->callbacks.arg);
		return;
	}
	/* Unix sockets connect at once or fail (EAGAIN: its backlog is full). */
	char reason[200];
	snprintf(reason, sizeof(reason), "cannot connect: %s", strerror(errno));
	if (fd >= 0)
		close(fd);
	if (!client->outage_logged || strcmp(reason, client->last_error) != 0)
		log_warning("dataplane %s: %s; retrying every %d ms (it keeps forwarding on its last state)",
			    client->path, reason, DATAPLANE_RETRY_MAX_MS);
	client->outage_logged = true;
	snprintf(client->last_error, sizeof(client->last_error), "%s", reason);
	client->retry_at_ms = client->now_ms + client->retry_delay_ms;
	client->retry_delay_ms = client->retry_delay_ms * 2 > DATAPLANE_RETRY_MAX_MS ?
				 DATAPLANE_RETRY_MAX_MS : client->retry_delay_ms * 2;
}

static int
buffer_reserve(char **buffer, size_t *capacity, size_t needed)
{
	if (needed <= *capacity)
		return 0;
	size_t grown_capacity = *capacity ? *capacity : 4096;
	while (grown_capacity < needed)
		grown_capacity *= 2;
	char *grown = realloc(*buffer, grown_capacity);
	if (!grown)
		return -ENOMEM;
	*buffer = grown;
	*capacity = grown_capacity;
	return 0;
}

/* Write what the socket takes.  Returns -1 on a broken connection. */
static int
flush_output(struct dataplane_client *client)
{
	while (client->output_sent < client->output_length) {
		ssize_t written = send(client->fd, client->output + client->output_sent,
				       client->output_length - client->output_sent, MSG_NOSIGNAL);
		if (written < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		if (written <= 0)
			return -1;
		client->output_sent += (size_t)written;
	}
	client->output_sent = client->output_length = 0;
	return 0;
}

int
dataplane_client_request(struct dataplane_client *client, json_t *request, unsigned timeout_ms,
			 dataplane_reply_fn reply_fn, void *arg)
{
	char *text;
	size_t length;

	if (!client->connected) {
		json_decref(request);
		return -ENOTCONN;
	}
	if (client->count == DATAPLANE_PENDING_MAX) {
		json_decref(request);
		return -EBUSY;
	}
	text = json_dumps(request, JSON_COMPACT);
	json_decref(request);
	if (!text)
		return -ENOMEM;
	length = strlen(text);
	if (buffer_reserve(&client->output, &client->output_capacity, client->output_length + length + 1) < 0) {
		free(text);
		return -ENOMEM;
	}
	memcpy(client->output + client->output_length, text, length);
	client->output[client->output_length + length] = '\n';
	client->output_length += length + 1;
	free(text);
	if (client->count == 0)
		client->last_progress_ms = client->now_ms;   /* stall clock starts now */
	client->ring[(client->head + client->count) % DATAPLANE_PENDING_MAX] = (struct pending){
		.reply_fn = reply_fn, .arg = arg, .deadline_ms = client->now_ms + timeout_ms,
	};
	client->count++;
	return 0;
}

/* Hand one reply line to the request at the head of the ring. */
static void
handle_line(struct dataplane_client *client, const char *line, size_t length)
{
	json_error_t error;
	json_t *reply;
	struct pending pending;

	if (client->count == 0) {
		log_warning("dataplane %s: reply without a request, ignored", client->path);
		return;
	}
	pending = client->ring[client->head];
	client->head = (client->head + 1) % DATAPLANE_PENDING_MAX;
	client->count--;
	client->last_progress_ms = client->now_ms;
	if (!pending.reply_fn)
		return;
	reply = json_loadb(line, length, 0, &error);
	if (!reply) {
		char why[200];
		snprintf(why, sizeof(why), "unreadable reply: %s", error.text);
		pending.reply_fn(pending.arg, NULL, why);
		return;
	}
	pending.reply_fn(pending.arg, reply, NULL);
	json_decref(reply);
}

/* Read and answer complete lines.  Returns -1 with `why` on EOF or error. */
static int
read_replies(struct dataplane_client *client, char *why, size_t why_size)
{
	for (;;) {
		if (buffer_reserve(&client->input, &client->input_capacity, client->input_length + 65536) < 0) {
			snprintf(why, why_size, "out of memory for a reply");
			return -1;
		}
		ssize_t got = read(client->fd, client->input + client->input_length,
				   client->input_capacity - client->input_length);
		if (got < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		if (got <= 0) {
			snprintf(why, why_size, "%s", got == 0 ? "the dataplane closed the connection" :
				 strerror(errno));
			return -1;
		}
		client->input_length += (size_t)got;
		char *start = client->input, *newline;
		while ((newline = memchr(start, '\n', client->input_length - (size_t)(start - client->input)))) {
			handle_line(client, start, (size_t)(newline - start));
			start = newline + 1;
		}
		client->input_length -= (size_t)(start - client->input);
		memmove(client->input, start, client->input_length);
		if (client->input_length > DATAPLANE_REPLY_MAX) {
			snprintf(why, why_size, "a reply longer than %u bytes", DATAPLANE_REPLY_MAX);
			return -1;
		}
	}
	return 0;
}

/* Give up on requests past their deadline; a dataplane silent for too long is stuck. */
static void
check_deadlines(struct dataplane_client *client)
{
	for (unsigned i = 0; i < client->count; i++) {
		struct pending *pending = &client->ring[(client->head + i) % DATAPLANE_PENDING_MAX];
		if (pending->reply_fn && client->now_ms >= pending->deadline_ms) {
			owe_failure(client, pending->reply_fn, pending->arg, "the dataplane did not answer in time");
			pending->reply_fn = NULL;
		}
	}
	if (client->count && client->now_ms >= client->last_progress_ms + DATAPLANE_STALL_MS) {
		char why[128];
		snprintf(why, sizeof(why), "no reply for %d s", DATAPLANE_STALL_MS / 1000);
		disconnect(client, why);
	}
}

unsigned
dataplane_client_poll_prepare(struct dataplane_client *client, struct pollfd *fds, uint64_t now_ms,
			      int *timeout_ms)
{
	uint64_t deadline = UINT64_MAX;

	client->now_ms = now_ms;
	if (!client->connected) {
		deadline = client->retry_at_ms;
	} else {
		for (unsigned i = 0; i < client->count; i++) {
			struct pending *pending = &client->ring[(client->head + i) % DATAPLANE_PENDING_MAX];
			if (pending->reply_fn && pending->deadline_ms < deadline)
				deadline = pending->deadline_ms;
		}
		if (client->count && client->last_progress_ms + DATAPLANE_STALL_MS < deadline)
			deadline = client->last_progress_ms + DATAPLANE_STALL_MS;
	}
	if (client->failure_count)
		deadline = now_ms;
	if (deadline != UINT64_MAX) {
		int64_t wait = deadline > now_ms ? (int64_t)(deadline - now_ms) : 0;
		if (wait < *timeout_ms)
			*timeout_ms = (int)wait;
	}
	if (!client->connected)
		return 0;
	fds[0] = (struct pollfd){
		.fd = client->fd,
		.events = POLLIN | (client->output_length > client->output_sent ? POLLOUT : 0),
	};
	return 1;
}

void
dataplane_client_poll_dispatch(struct dataplane_client *client, const struct pollfd *fds, unsigned count,
			       uint64_t now_ms)
{
	char why[256];

	client->now_ms = now_ms;
	if (!client->connected) {
		if (now_ms >= client->retry_at_ms)
			try_connect(client);
	} else if (count && fds[0].fd == client->fd && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) {
		if (read_replies(client, why, sizeof(why)) < 0)
			disconnect(client, why);
	}
	if (client->connected && client->output_length > client->output_sent && flush_output(client) < 0)
		disconnect(client, strerror(errno));
	if (client->connected)
		check_deadlines(client);
	run_failures(client);
}
