/*
 * fuzz_control_request.c: libFuzzer harness for control.sock's requests
 * (control/control_socket.h).  Any member of the `tether` group may connect and
 * send lines; they must never crash or wedge tether-control, which also runs
 * the health checks that keep backends in service.
 *
 * The input is what a client writes to the socket: any bytes, usually JSON
 * lines.  Two layers are driven with it:
 *  1. the pure parser, line by line, split as the server splits its input (at
 *     '\n', one trailing '\r' dropped, empty lines skipped), each line an
 *     exact-size heap copy: control_request_parse(), then for a valid request
 *     the access check of every class and the JSON tetherctl would send for
 *     it, which must parse back to the same request.  The same line split at
 *     spaces goes through control_request_from_words() (tetherctl's command
 *     line), whose result must also survive that round trip.
 *  2. the real server, in process: control_socket_open() on a socket in a
 *     private directory, one client connected over it writing the input, the
 *     poll loop run until every line is answered.  The handler answers at once
 *     except "reload", which it defers and answers later through
 *     control_socket_reply(), as tether-control does.  This reaches the
 *     framing, the deferral queue and the reply path without a daemon.
 * A failed check calls __builtin_trap().  The fuzzer runs as root (the
 * socket's chown needs it), so every peer is admin: the read-only refusal is
 * reached through control_access_allows() in layer 1 only.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include "control_socket.h"
#include "fuzz_check.h"
#include "log.h"

#define WORDS_MAX  16
#define TURNS_MAX  64

static struct control_socket *server;
static char socket_directory[64];
static char socket_path[96];
static uint64_t clock_ms = 1000;
static bool deferred;
static uint64_t deferred_client;

/* ------------------------------------------------------------------------ */
/* layer 1: the parser                                                      */

static bool
same_request(const struct control_request *a, const struct control_request *b)
{
	return a->spec == b->spec && strcmp(a->pool, b->pool) == 0 && strcmp(a->name, b->name) == 0 &&
	       a->weight == b->weight;
}

/* The request as tetherctl sends it parses back to itself. */
static void
round_trip(const struct control_request *request)
{
	struct control_request again;
	char error[320];

	json_t *object = control_request_json(request);
	FUZZ_CHECK(object != NULL);
	char *text = json_dumps(object, JSON_COMPACT);
	FUZZ_CHECK(text != NULL);
	int rc = control_request_parse(text, strlen(text), &again, error, sizeof(error));
	if (rc != 0)
		fprintf(stderr, "fuzz_control_request: '%s' does not parse back: %s\n", text, error);
	FUZZ_CHECK(rc == 0);
	FUZZ_CHECK(same_request(request, &again));
	free(text);
	json_decref(object);
}

static void
check_request(const struct control_request *request)
{
	const struct control_command_spec *spec = request->spec;

	FUZZ_CHECK(spec >= control_commands && spec < control_commands + control_command_count);
	FUZZ_CHECK(memchr(request->pool, '\0', sizeof(request->pool)) != NULL);
	FUZZ_CHECK(memchr(request->name, '\0', sizeof(request->name)) != NULL);
	FUZZ_CHECK(request->weight >= 0 && request->weight <= CONTROL_WEIGHT_MAX);
	FUZZ_CHECK(!control_access_allows(CONTROL_ACCESS_NONE, spec));
	FUZZ_CHECK(control_access_allows(CONTROL_ACCESS_ADMIN, spec));
	(void)control_access_allows(CONTROL_ACCESS_READ, spec);
	char usage[256];
	FUZZ_CHECK(control_command_usage(spec, usage, sizeof(usage)) != NULL);
	round_trip(request);
}

static void
parse_line(const char *line, size_t length)
{
	struct control_request request;
	char error[320];
	char *copy = malloc(length ? length : 1);

	if (!copy)
		abort();
	memcpy(copy, line, length);
	memset(error, 0x55, sizeof(error));
	if (control_request_parse(copy, length, &request, error, sizeof(error)) == 0) {
		check_request(&request);
	} else {
		FUZZ_CHECK(request.spec == NULL);
		FUZZ_CHECK(memchr(error, '\0', sizeof(error)) != NULL && error[0] != '\0');
		json_t *reply = control_error_reply("%s", error);
		char *text = json_dumps(reply, JSON_COMPACT);
		FUZZ_CHECK(text != NULL);
		free(text);
		json_decref(reply);
	}
	free(copy);

	/* tetherctl's grammar on the same bytes, split at spaces */
	char *words_text = malloc(length + 1);
	char *words[WORDS_MAX];
	int count = 0;
	if (!words_text)
		abort();
	memcpy(words_text, line, length);
	words_text[length] = '\0';
	for (char *save = NULL, *word = strtok_r(words_text, " ", &save); word && count < WORDS_MAX;
	     word = strtok_r(NULL, " ", &save))
		words[count++] = word;
	memset(error, 0x55, sizeof(error));
	if (control_request_from_words(count, words, &request, error, sizeof(error)) == 0)
		check_request(&request);
	else
		FUZZ_CHECK(memchr(error, '\0', sizeof(error)) != NULL && error[0] != '\0');
	free(words_text);
}

/* Split as client_process() does. */
static void
parse_lines(const uint8_t *data, size_t size)
{
	const char *input = (const char *)data;
	const char *newline;

	while (size && (newline = memchr(input, '\n', size))) {
		size_t line_length = (size_t)(newline - input);
		size_t consumed = line_length + 1;
		if (line_length && input[line_length - 1] == '\r')
			line_length--;
		if (line_length)
			parse_line(input, line_length);
		input += consumed;
		size -= consumed;
	}
	/* the server keeps an unterminated tail waiting; the parser sees it here */
	if (size)
		parse_line(input, size);
}

/* ------------------------------------------------------------------------ */
/* layer 2: the server                                                      */

static json_t *
handle_request(void *arg, const struct control_request *request, uint64_t client_id, uid_t peer_uid)
{
	(void)arg;
	(void)peer_uid;
	if (request->spec->command == CONTROL_RELOAD && !deferred) {
		deferred = true;
		deferred_client = client_id;
		return NULL;
	}
	return json_pack("{s:s,s:s,s:s,s:i}", "command", request->spec->verb, "pool", request->pool,
			 "name", request->name, "weight", request->weight);
}

/* One turn of tether-control's poll loop, without blocking. */
static void
poll_turn(void)
{
	struct pollfd fds[CONTROL_SOCKET_POLL_FDS];
	int timeout = 0;

	clock_ms += 10;
	unsigned count = control_socket_poll_prepare(server, fds, CONTROL_SOCKET_POLL_FDS, clock_ms,
						     &timeout);
	FUZZ_CHECK(count == CONTROL_SOCKET_POLL_FDS);
	if (poll(fds, count, 0) < 0)
		return;
	control_socket_poll_dispatch(server, fds, count, clock_ms);
}

/* Read and discard what the server has answered so far. */
static void
drain_replies(int fd)
{
	char buffer[4096];
	while (read(fd, buffer, sizeof(buffer)) > 0)
		;
}

static void
serve(const uint8_t *data, size_t size)
{
	struct sockaddr_un address = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	FUZZ_CHECK(fd >= 0);
	snprintf(address.sun_path, sizeof(address.sun_path), "%s", socket_path);
	FUZZ_CHECK(connect(fd, (struct sockaddr *)&address, sizeof(address)) == 0);
	FUZZ_CHECK(fcntl(fd, F_SETFL, O_NONBLOCK) == 0);
	size_t sent = 0;
	for (unsigned turn = 0; turn < TURNS_MAX; turn++) {
		if (sent < size) {
			ssize_t written = write(fd, data + sent, size - sent);
			if (written > 0)
				sent += (size_t)written;
		}
		poll_turn();
		drain_replies(fd);
		if (deferred) {
			deferred = false;
			control_socket_reply(server, deferred_client,
					     json_pack("{s:s}", "result", "reloaded"));
		}
		if (sent == size && turn > 2)
			break;
	}
	close(fd);
	/* the server notices the hang-up and frees the client */
	for (unsigned turn = 0; turn < TURNS_MAX && control_socket_client_count(server); turn++)
		poll_turn();
	FUZZ_CHECK(control_socket_client_count(server) == 0);
	deferred = false;
}

static void
cleanup(void)
{
	control_socket_close(server);
	rmdir(socket_directory);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char error[256];
	(void)argc;
	(void)argv;

	log_set_level(LOG_ERR);   /* one refused line per input would flood the log */
	snprintf(socket_directory, sizeof(socket_directory), "/tmp/tether-fuzz-control-%d", (int)getpid());
	snprintf(socket_path, sizeof(socket_path), "%s/control.sock", socket_directory);
	server = control_socket_open(socket_path, NULL, NULL, handle_request, NULL, error, sizeof(error));
	if (!server) {
		/* not root (the socket's chown): the parser layer still runs */
		fprintf(stderr, "fuzz_control_request: %s; fuzzing the parser only\n", error);
		return 0;
	}
	atexit(cleanup);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	parse_lines(data, size);
	if (server)
		serve(data, size);
	return 0;
}
