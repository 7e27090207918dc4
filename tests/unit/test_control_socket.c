/*
 * test_control_socket.c: control.sock refuses what it must and serves on.
 *
 * - The request parser answers every malformed, unknown or incomplete request
 *   with a reason (never a crash, never a half-parsed command).
 * - Read-only peers (the socket's group) may run status and show, not reload
 *   or backend changes; strangers may run nothing; root and the admin group
 *   run everything.
 * - tetherctl's grammar (the same table): unique prefixes work, ambiguous
 *   ones name their candidates, arguments are checked, and what the CLI sends
 *   is what the daemon parses.
 * - The server itself: a 1 MB line gets an error and its connection is
 *   closed, malformed JSON gets an error on a connection that stays usable,
 *   and the daemon goes on serving other clients.
 * Cases are tables; each row says what it guards.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control_socket.h"
#include "log.h"

/* ------------------------------------------------------------------------ */
/* The JSON request parser                                                  */

struct parse_case {
	const char *description;
	const char *line;
	int command;            /* expected command, or -1 for a refusal */
	const char *error;      /* a substring of the refusal */
};

static const struct parse_case parse_cases[] = {
	{ "status", "{\"command\":\"status\"}", CONTROL_STATUS, NULL },
	{ "reload", "{\"command\":\"reload\"}", CONTROL_RELOAD, NULL },
	{ "show backends", "{\"command\":\"show\",\"what\":\"backends\"}", CONTROL_SHOW_BACKENDS, NULL },
	{ "show stats", "{\"what\":\"stats\",\"command\":\"show\"}", CONTROL_SHOW_STATS, NULL },
	{ "backend drain", "{\"command\":\"backend\",\"action\":\"drain\",\"pool\":\"cp\",\"name\":\"be2\"}",
	  CONTROL_BACKEND_DRAIN, NULL },
	{ "backend weight 0 is allowed (drain by weight)",
	  "{\"command\":\"backend\",\"action\":\"weight\",\"pool\":\"cp\",\"name\":\"be2\",\"weight\":0}",
	  CONTROL_BACKEND_WEIGHT, NULL },
	{ "malformed JSON", "{\"command\": \"status\"", -1, "invalid JSON" },
	{ "truncated string", "{\"command\":\"sta", -1, "invalid JSON" },
	{ "not an object", "[\"status\"]", -1, "expected an object" },
	{ "command not a string", "{\"command\":7}", -1, "expected an object with a string" },
	{ "empty object", "{}", -1, "expected an object with a string" },
	{ "unknown command", "{\"command\":\"frobnicate\"}", -1, "unknown command 'frobnicate'" },
	{ "unknown command lists the known ones", "{\"command\":\"x\"}", -1, "status, reload, backend, show" },
	{ "show without what", "{\"command\":\"show\"}", -1, "'show' needs \"what\"" },
	{ "show of an unknown thing", "{\"command\":\"show\",\"what\":\"everything\"}", -1, "unknown show 'everything'" },
	{ "unknown key", "{\"command\":\"status\",\"verbose\":true}", -1, "unknown key 'verbose'" },
	{ "weight on a non-weight command", "{\"command\":\"backend\",\"action\":\"drain\",\"pool\":\"cp\","
	  "\"name\":\"be2\",\"weight\":3}", -1, "unknown key 'weight'" },
	{ "duplicate keys", "{\"command\":\"status\",\"command\":\"reload\"}", -1, "duplicate object key" },
	{ "backend without name", "{\"command\":\"backend\",\"action\":\"drain\",\"pool\":\"cp\"}", -1,
	  "needs string keys \"pool\" and \"name\"" },
	{ "name with a space", "{\"command\":\"backend\",\"action\":\"drain\",\"pool\":\"cp\",\"name\":\"b e\"}",
	  -1, "has a character other than" },
	{ "empty pool name", "{\"command\":\"backend\",\"action\":\"drain\",\"pool\":\"\",\"name\":\"be\"}", -1,
	  "pool must be 1 to 63" },
	{ "weight over 1000", "{\"command\":\"backend\",\"action\":\"weight\",\"pool\":\"cp\",\"name\":\"be\","
	  "\"weight\":1001}", -1, "0..1000" },
	{ "negative weight", "{\"command\":\"backend\",\"action\":\"weight\",\"pool\":\"cp\",\"name\":\"be\","
	  "\"weight\":-1}", -1, "0..1000" },
	{ "weight as a string", "{\"command\":\"backend\",\"action\":\"weight\",\"pool\":\"cp\",\"name\":\"be\","
	  "\"weight\":\"3\"}", -1, "0..1000" },
	{ "weight missing", "{\"command\":\"backend\",\"action\":\"weight\",\"pool\":\"cp\",\"name\":\"be\"}", -1,
	  "0..1000" },
};

static void
test_request_parser(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
		const struct parse_case *c = &parse_cases[i];
		struct control_request request;
		char error[512] = "";
		int rc = control_request_parse(c->line, strlen(c->line), &request, error, sizeof(error));
		if (c->command >= 0) {
			if (rc != 0 || (int)request.spec->command != c->command)
				fail_msg("%s: %s refused: %s", c->description, c->line, error);
		} else if (rc == 0 || !strstr(error, c->error) || request.spec) {
			fail_msg("%s: %s: wanted a refusal with \"%s\", got rc %d \"%s\"", c->description, c->line,
				 c->error, rc, error);
		}
	}
}

/* A parser fed every prefix of valid requests never crashes and never accepts
 * half a request (the daemon sees such lines when a client dies mid-write). */
static void
test_request_parser_prefixes(void **state)
{
	const char *line = "{\"command\":\"backend\",\"action\":\"weight\",\"pool\":\"cp\",\"name\":\"be2\",\"weight\":7}";
	struct control_request request;
	char error[512];

	(void)state;
	for (size_t length = 0; length < strlen(line); length++)
		assert_int_equal(control_request_parse(line, length, &request, error, sizeof(error)), -EINVAL);
	assert_int_equal(control_request_parse(line, strlen(line), &request, error, sizeof(error)), 0);
	assert_string_equal(request.pool, "cp");
	assert_string_equal(request.name, "be2");
	assert_int_equal(request.weight, 7);
}

/* ------------------------------------------------------------------------ */
/* Access classes                                                           */

#define SOCKET_GROUP 990
#define ADMIN_GROUP  991
#define OTHER_GROUP  992
#define NO_GROUP     ((gid_t)-1)

struct access_case {
	const char *description;
	uid_t uid;
	gid_t gid;
	gid_t supplementary;       /* NO_GROUP: none */
	gid_t admin_group;         /* NO_GROUP: no admin group configured */
	enum control_access expected;
};

static const struct access_case access_cases[] = {
	{ "root is admin", 0, 0, NO_GROUP, NO_GROUP, CONTROL_ACCESS_ADMIN },
	{ "root is admin whatever its group", 0, OTHER_GROUP, NO_GROUP, NO_GROUP, CONTROL_ACCESS_ADMIN },
	{ "the socket's group may read (primary)", 1000, SOCKET_GROUP, NO_GROUP, NO_GROUP, CONTROL_ACCESS_READ },
	{ "the socket's group may read (supplementary)", 1000, OTHER_GROUP, SOCKET_GROUP, NO_GROUP,
	  CONTROL_ACCESS_READ },
	{ "a stranger may do nothing", 65534, 65534, NO_GROUP, NO_GROUP, CONTROL_ACCESS_NONE },
	{ "a stranger with another group may do nothing", 1000, OTHER_GROUP, OTHER_GROUP, ADMIN_GROUP,
	  CONTROL_ACCESS_NONE },
	{ "the admin group administers (supplementary)", 1000, OTHER_GROUP, ADMIN_GROUP, ADMIN_GROUP,
	  CONTROL_ACCESS_ADMIN },
	{ "the admin group administers (primary)", 1000, ADMIN_GROUP, NO_GROUP, ADMIN_GROUP, CONTROL_ACCESS_ADMIN },
	{ "no admin group configured: gid -1 is nobody's", 1000, NO_GROUP, NO_GROUP, NO_GROUP,
	  CONTROL_ACCESS_NONE },
};

static void
test_peer_access(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(access_cases) / sizeof(access_cases[0]); i++) {
		const struct access_case *c = &access_cases[i];
		gid_t groups[1] = { c->supplementary };
		enum control_access got = control_peer_access(c->uid, c->gid, groups, c->supplementary == NO_GROUP ? 0 : 1,
							       SOCKET_GROUP, c->admin_group);
		if (got != c->expected)
			fail_msg("%s: got access %d, wanted %d", c->description, got, c->expected);
	}
}

/* Read-only peers run status and show only; admin runs everything; nobody nothing. */
static void
test_command_access(void **state)
{
	(void)state;
	for (unsigned i = 0; i < control_command_count; i++) {
		const struct control_command_spec *spec = &control_commands[i];
		bool read_only = strcmp(spec->verb, "status") == 0 || strcmp(spec->verb, "show") == 0;
		assert_true(control_access_allows(CONTROL_ACCESS_ADMIN, spec));
		assert_false(control_access_allows(CONTROL_ACCESS_NONE, spec));
		if (control_access_allows(CONTROL_ACCESS_READ, spec) != read_only)
			fail_msg("'%s %s' read access is wrong", spec->verb, spec->object ? spec->object : "");
	}
}

/* ------------------------------------------------------------------------ */
/* tetherctl's grammar                                                      */

struct words_case {
	const char *description;
	const char *words;      /* space-separated */
	const char *json;       /* expected request, or NULL for a refusal */
	const char *error;
};

static const struct words_case words_cases[] = {
	{ "full words", "show backends", "{\"command\":\"show\",\"what\":\"backends\"}", NULL },
	{ "unique prefixes", "sh back", "{\"command\":\"show\",\"what\":\"backends\"}", NULL },
	{ "one-letter unique prefixes", "r", "{\"command\":\"reload\"}", NULL },
	{ "st is status (show does not start with st)", "st", "{\"command\":\"status\"}", NULL },
	{ "show p is pools", "show p", "{\"command\":\"show\",\"what\":\"pools\"}", NULL },
	{ "show st is stats", "show st", "{\"command\":\"show\",\"what\":\"stats\"}", NULL },
	{ "backend drain", "backend drain cp be2",
	  "{\"command\":\"backend\",\"action\":\"drain\",\"pool\":\"cp\",\"name\":\"be2\"}", NULL },
	{ "backend dr is drain", "b dr cp be2",
	  "{\"command\":\"backend\",\"action\":\"drain\",\"pool\":\"cp\",\"name\":\"be2\"}", NULL },
	{ "backend weight", "backend weight cp be2 3",
	  "{\"command\":\"backend\",\"action\":\"weight\",\"pool\":\"cp\",\"name\":\"be2\",\"weight\":3}", NULL },
	{ "names are arguments, not prefixes", "backend enable show status",
	  "{\"command\":\"backend\",\"action\":\"enable\",\"pool\":\"show\",\"name\":\"status\"}", NULL },
	{ "s is ambiguous", "s", NULL, "ambiguous command 's': status, show" },
	{ "show s is ambiguous", "show s", NULL, "ambiguous argument 's': services, sessions, stats" },
	{ "backend d is ambiguous", "backend d cp be1", NULL, "ambiguous argument 'd': disable, drain" },
	{ "unknown command", "frob", NULL, "unknown command 'frob' (one of: status, reload, backend, show)" },
	{ "unknown show", "show cats", NULL, "unknown argument 'cats' to 'show'" },
	{ "show needs an argument", "show", NULL, "'show' needs one of: services, pools" },
	{ "missing NAME", "backend drain cp", NULL, "missing NAME: usage: backend drain POOL NAME" },
	{ "missing POOL and NAME", "backend disable", NULL, "missing POOL and NAME" },
	{ "missing W", "backend weight cp be1", NULL, "missing W: usage: backend weight POOL NAME W" },
	{ "weight too big", "backend weight cp be1 1001", NULL, "not an integer 0..1000" },
	{ "weight negative", "backend weight cp be1 -1", NULL, "not an integer 0..1000" },
	{ "weight not a number", "backend weight cp be1 2x", NULL, "not an integer 0..1000" },
	{ "extra argument", "status now", NULL, "unexpected argument 'now': usage: status" },
	{ "extra after backend", "backend drain cp be1 be2", NULL, "unexpected argument 'be2'" },
	{ "bad name", "backend drain cp be/1", NULL, "has a character other than" },
};

static int
split_words(const char *text, char *buffer, size_t size, char *words[], int max)
{
	int count = 0;
	char *save, *word;

	snprintf(buffer, size, "%s", text);
	for (word = strtok_r(buffer, " ", &save); word && count < max; word = strtok_r(NULL, " ", &save))
		words[count++] = word;
	return count;
}

static void
test_cli_words(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(words_cases) / sizeof(words_cases[0]); i++) {
		const struct words_case *c = &words_cases[i];
		char buffer[256], error[512] = "", *words[8];
		struct control_request request;
		int count = split_words(c->words, buffer, sizeof(buffer), words, 8);
		int rc = control_request_from_words(count, words, &request, error, sizeof(error));
		if (!c->json) {
			if (rc == 0 || !strstr(error, c->error))
				fail_msg("%s: '%s': wanted \"%s\", got rc %d \"%s\"", c->description, c->words, c->error,
					 rc, error);
			continue;
		}
		if (rc != 0)
			fail_msg("%s: '%s' refused: %s", c->description, c->words, error);
		json_t *json = control_request_json(&request);
		json_t *expected = json_loads(c->json, 0, NULL);
		if (!json_equal(json, expected)) {
			char *text = json_dumps(json, JSON_COMPACT | JSON_SORT_KEYS);
			fail_msg("%s: '%s' gave %s, wanted %s", c->description, c->words, text, c->json);
		}
		json_decref(json);
		json_decref(expected);
	}
}

/* Every command of the table, written by the CLI, is read back by the daemon
 * as the same request. */
static void
test_cli_round_trip(void **state)
{
	(void)state;
	for (unsigned i = 0; i < control_command_count; i++) {
		const struct control_command_spec *spec = &control_commands[i];
		char *words[6] = { (char *)spec->verb };
		char pool[] = "cp", name[] = "be-1.a", weight[] = "1000", error[512];
		int count = 1;
		struct control_request from_words, parsed;
		if (spec->object)
			words[count++] = (char *)spec->object;
		if (spec->arguments & CONTROL_ARG_BACKEND) {
			words[count++] = pool;
			words[count++] = name;
		}
		if (spec->arguments & CONTROL_ARG_WEIGHT)
			words[count++] = weight;
		assert_int_equal(control_request_from_words(count, words, &from_words, error, sizeof(error)), 0);
		json_t *json = control_request_json(&from_words);
		char *text = json_dumps(json, JSON_COMPACT);
		json_decref(json);
		assert_int_equal(control_request_parse(text, strlen(text), &parsed, error, sizeof(error)), 0);
		assert_ptr_equal(parsed.spec, spec);
		assert_string_equal(parsed.pool, from_words.pool);
		assert_string_equal(parsed.name, from_words.name);
		assert_int_equal(parsed.weight, from_words.weight);
		free(text);
	}
}

/* ------------------------------------------------------------------------ */
/* The server, over a real socket                                           */

struct server_fixture {
	char directory[48];
	char path[100];
	struct control_socket *server;
	unsigned handled;
};

static json_t *
handler(void *arg, const struct control_request *request, uint64_t client_id, uid_t uid)
{
	struct server_fixture *fixture = arg;

	(void)client_id;
	(void)uid;
	fixture->handled++;
	return json_pack("{s:b, s:s}", "ok", 1, "verb", request->spec->verb);
}

static int
server_setup(void **state)
{
	struct server_fixture *fixture = calloc(1, sizeof(*fixture));
	char error[256];

	snprintf(fixture->directory, sizeof(fixture->directory), "/tmp/tether-test-control-XXXXXX");
	assert_non_null(mkdtemp(fixture->directory));
	snprintf(fixture->path, sizeof(fixture->path), "%s/sub/control.sock", fixture->directory);
	fixture->server = control_socket_open(fixture->path, NULL, NULL, handler, fixture, error, sizeof(error));
	if (!fixture->server)
		fail_msg("control_socket_open: %s", error);
	*state = fixture;
	return 0;
}

static int
server_teardown(void **state)
{
	struct server_fixture *fixture = *state;
	char sub[64];

	control_socket_close(fixture->server);
	snprintf(sub, sizeof(sub), "%s/sub", fixture->directory);
	rmdir(sub);
	rmdir(fixture->directory);
	free(fixture);
	return 0;
}

/* One turn of the daemon's loop for the server alone. */
static void
server_turn(struct server_fixture *fixture, int timeout_ms)
{
	struct pollfd fds[CONTROL_SOCKET_POLL_FDS];
	static uint64_t now = 1000;
	int timeout = timeout_ms;
	unsigned count = control_socket_poll_prepare(fixture->server, fds, CONTROL_SOCKET_POLL_FDS, now, &timeout);

	poll(fds, count, timeout);
	now += 10;
	control_socket_poll_dispatch(fixture->server, fds, count, now);
}

static int
client_connect(const struct server_fixture *fixture)
{
	struct sockaddr_un address = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);

	snprintf(address.sun_path, sizeof(address.sun_path), "%s", fixture->path);
	assert_int_equal(connect(fd, (struct sockaddr *)&address, sizeof(address)), 0);
	return fd;
}

/* Write what fits without blocking; returns bytes written (the peer may stop reading). */
static size_t
client_send(int fd, const char *data, size_t length)
{
	size_t sent = 0;
	while (sent < length) {
		ssize_t n = send(fd, data + sent, length - sent, MSG_NOSIGNAL);
		if (n <= 0)
			break;
		sent += (size_t)n;
	}
	return sent;
}

/* Drive the server until `fd` has a whole line (returned, caller frees; the
 * rest stays for the next call) or EOF.  One client at a time. */
static char *
client_reply(struct server_fixture *fixture, int fd, bool *closed)
{
	static char buffer[1 << 16];
	static size_t used;
	char *newline, *line;

	*closed = false;
	for (int turn = 0; turn < 200; turn++) {
		buffer[used] = '\0';
		if ((newline = strchr(buffer, '\n'))) {
			*newline = '\0';
			line = strdup(buffer);
			used -= (size_t)(newline + 1 - buffer);
			memmove(buffer, newline + 1, used);
			return line;
		}
		server_turn(fixture, 10);
		ssize_t got = read(fd, buffer + used, sizeof(buffer) - used - 1);
		if (got == 0) {
			*closed = true;
			break;
		}
		if (got > 0)
			used += (size_t)got;
	}
	line = used ? strndup(buffer, used) : NULL;
	used = 0;
	return line;
}

/* The socket is 0660 in its own directory 0750. */
static void
test_server_modes(void **state)
{
	struct server_fixture *fixture = *state;
	struct stat st;
	char sub[64];

	assert_int_equal(stat(fixture->path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0660);
	snprintf(sub, sizeof(sub), "%s/sub", fixture->directory);
	assert_int_equal(stat(sub, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0750);
}

/* A second daemon on the same socket is refused instead of stealing it. */
static void
test_server_refuses_a_live_socket(void **state)
{
	struct server_fixture *fixture = *state;
	char error[256];

	assert_null(control_socket_open(fixture->path, NULL, NULL, handler, fixture, error, sizeof(error)));
	assert_non_null(strstr(error, "in use"));
}

/* 1 MB on one line: an error, the connection closed, the next client served. */
static void
test_server_oversized_line(void **state)
{
	struct server_fixture *fixture = *state;
	size_t size = 1 << 20;
	char *big = malloc(size + 1);
	bool closed;
	int fd = client_connect(fixture);

	memset(big, 'x', size);
	big[size] = '\n';
	size_t sent = 0;
	for (int turn = 0; turn < 100 && sent < size + 1; turn++) {
		size_t n = client_send(fd, big + sent, size + 1 - sent);
		sent += n;
		if (n == 0)
			server_turn(fixture, 10);
	}
	char *reply = client_reply(fixture, fd, &closed);
	assert_non_null(reply);
	assert_non_null(strstr(reply, "request longer than 65536 bytes"));
	free(reply);
	reply = client_reply(fixture, fd, &closed);
	assert_true(closed);
	free(reply);
	close(fd);
	free(big);

	fd = client_connect(fixture);
	client_send(fd, "{\"command\":\"status\"}\n", 21);
	reply = client_reply(fixture, fd, &closed);
	assert_string_equal(reply, "{\"ok\":true,\"verb\":\"status\"}");
	free(reply);
	close(fd);
}

/* Malformed JSON: an error, and the same connection keeps working. */
static void
test_server_malformed_then_good(void **state)
{
	struct server_fixture *fixture = *state;
	bool closed;
	int fd = client_connect(fixture);
	const char *lines = "{\"command\": \nnot json at all\n{\"command\":\"show\",\"what\":\"pools\"}\n";

	client_send(fd, lines, strlen(lines));
	char *reply = client_reply(fixture, fd, &closed);
	assert_non_null(strstr(reply, "\"error\":\"invalid JSON"));
	free(reply);
	reply = client_reply(fixture, fd, &closed);
	assert_non_null(strstr(reply, "\"error\":\"invalid JSON"));
	free(reply);
	reply = client_reply(fixture, fd, &closed);
	assert_string_equal(reply, "{\"ok\":true,\"verb\":\"show\"}");
	assert_false(closed);
	free(reply);
	close(fd);
}

/* A line of exactly the limit (65535 bytes + newline) is still read as a request. */
static void
test_server_line_at_the_limit(void **state)
{
	struct server_fixture *fixture = *state;
	size_t length = CONTROL_REQUEST_MAX - 1;
	char *line = malloc(length + 1);
	const char *head = "{\"command\":\"status\"}";
	bool closed;
	int fd = client_connect(fixture);

	memset(line, ' ', length);   /* JSON allows trailing whitespace */
	memcpy(line, head, strlen(head));
	line[length] = '\n';
	size_t sent = 0;
	for (int turn = 0; turn < 100 && sent < length + 1; turn++) {
		size_t n = client_send(fd, line + sent, length + 1 - sent);
		sent += n;
		if (n == 0)
			server_turn(fixture, 10);
	}
	char *reply = client_reply(fixture, fd, &closed);
	assert_string_equal(reply, "{\"ok\":true,\"verb\":\"status\"}");
	free(reply);
	free(line);
	close(fd);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_parser),
		cmocka_unit_test(test_request_parser_prefixes),
		cmocka_unit_test(test_peer_access),
		cmocka_unit_test(test_command_access),
		cmocka_unit_test(test_cli_words),
		cmocka_unit_test(test_cli_round_trip),
		cmocka_unit_test_setup_teardown(test_server_modes, server_setup, server_teardown),
		cmocka_unit_test_setup_teardown(test_server_refuses_a_live_socket, server_setup, server_teardown),
		cmocka_unit_test_setup_teardown(test_server_oversized_line, server_setup, server_teardown),
		cmocka_unit_test_setup_teardown(test_server_malformed_then_good, server_setup, server_teardown),
		cmocka_unit_test_setup_teardown(test_server_line_at_the_limit, server_setup, server_teardown),
	};
	log_set_level(LOG_WARNING);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
