/*
 * tetherctl.c: the operators' CLI over control.sock.
 *
 * The grammar is control_socket.c's command table: each word may be any unique
 * prefix of a keyword (`tetherctl sh back`), an ambiguous one is named with
 * its candidates, and --help lists the table.  One request, one reply line.
 * Human output is aligned tables in the manner of `ipvsadm -Ln`; --json prints
 * the daemon's reply as it came, for scripts.
 *
 * Exit codes: 0 done; 1 the daemon refused (the reason on stderr: a reload's
 * errors with their JSON paths, an unknown backend, a permission); 2 usage;
 * 3 the daemon could not be reached or did not answer.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include "control_socket.h"

#define EXIT_REFUSED     1
#define EXIT_USAGE       2
#define EXIT_UNREACHABLE 3
#define REPLY_MAX        (256u << 20)
#define COLUMNS_MAX      12

/* ------------------------------------------------------------------------ */
/* Tables                                                                   */

struct table {
	unsigned columns;
	const char *headers[COLUMNS_MAX];
	char **cells;                /* rows * columns, strdup'd */
	unsigned rows, capacity;
};

static void
table_init(struct table *table, const char *headers[], unsigned columns)
{
	memset(table, 0, sizeof(*table));
	table->columns = columns;
	memcpy(table->headers, headers, columns * sizeof(headers[0]));
}

/* One row: `columns` printf-formatted cells separated by '\t' in `format`. */
static void table_row(struct table *table, const char *format, ...) __attribute__((format(printf, 2, 3)));

static void
table_row(struct table *table, const char *format, ...)
{
	char *line, *cursor, *cell;
	va_list args;

	va_start(args, format);
	if (vasprintf(&line, format, args) < 0)
		line = NULL;
	va_end(args);
	if (!line)
		return;
	if (table->rows == table->capacity) {
		table->capacity = table->capacity ? table->capacity * 2 : 16;
		char **grown = realloc(table->cells, (size_t)table->capacity * table->columns * sizeof(char *));
		if (!grown) {
			free(line);
			return;
		}
		table->cells = grown;
	}
	cursor = line;
	for (unsigned c = 0; c < table->columns; c++) {
		cell = cursor ? strsep(&cursor, "\t") : NULL;
		table->cells[table->rows * table->columns + c] = strdup(cell && *cell ? cell : "-");
	}
	table->rows++;
	free(line);
}

/* Print aligned, two spaces between columns, the last column unpadded; free. */
static void
table_print(struct table *table)
{
	size_t widths[COLUMNS_MAX];

	for (unsigned c = 0; c < table->columns; c++) {
		widths[c] = strlen(table->headers[c]);
		for (unsigned r = 0; r < table->rows; r++) {
			size_t length = strlen(table->cells[r * table->columns + c]);
			widths[c] = length > widths[c] ? length : widths[c];
		}
	}
	for (int r = -1; r < (int)table->rows; r++) {
		for (unsigned c = 0; c < table->columns; c++) {
			const char *text = r < 0 ? table->headers[c] : table->cells[(unsigned)r * table->columns + c];
			if (c + 1 == table->columns)
				printf("%s\n", text);
			else
				printf("%-*s  ", (int)widths[c], text);
		}
	}
	for (unsigned i = 0; i < table->rows * table->columns; i++)
		free(table->cells[i]);
	free(table->cells);
}

/* ------------------------------------------------------------------------ */
/* Reading replies                                                          */

static const char *
text_of(const json_t *object, const char *key)
{
	const char *value = json_string_value(json_object_get(object, key));
	return value ? value : "";
}

static long long
integer_of(const json_t *object, const char *key)
{
	return (long long)json_integer_value(json_object_get(object, key));
}

/* "123", or "-" when the member is absent (a dataplane counter we have not got). */
static const char *
count_of(const json_t *object, const char *key, char *out, size_t size)
{
	const json_t *value = json_object_get(object, key);

	if (!json_is_integer(value))
		return "-";
	snprintf(out, size, "%lld", (long long)json_integer_value(value));
	return out;
}

static void
duration(long long seconds, char *out, size_t size)
{
	if (seconds >= 86400)
		snprintf(out, size, "%lldd%02lldh", seconds / 86400, seconds % 86400 / 3600);
	else if (seconds >= 3600)
		snprintf(out, size, "%lldh%02lldm", seconds / 3600, seconds % 3600 / 60);
	else if (seconds >= 60)
		snprintf(out, size, "%lldm%02llds", seconds / 60, seconds % 60);
	else
		snprintf(out, size, "%llds", seconds);
}

/* ------------------------------------------------------------------------ */
/* Human output, one printer per command                                    */

static void
print_status(const json_t *reply)
{
	const json_t *reload = json_object_get(reply, "reload");
	const json_t *dataplane = json_object_get(reply, "dataplane");
	const json_t *health = json_object_get(reply, "health");
	const json_t *control = json_object_get(reply, "control");
	char uptime[32];

	duration(integer_of(reply, "uptime_s"), uptime, sizeof(uptime));
	printf("tether-control %s, pid %lld, up %s (since %s)\n", text_of(reply, "version"),
	       integer_of(reply, "pid"), uptime, text_of(reply, "started"));
	printf("config       %s\n", text_of(reply, "config"));
	if (strcmp(text_of(reload, "result"), "none") == 0)
		printf("last reload  none since start (loaded %s)\n", text_of(reload, "last_success"));
	else
		printf("last reload  %s at %s: %s\n", text_of(reload, "result"), text_of(reload, "time"),
		       text_of(reload, "summary"));
	if (json_is_true(json_object_get(dataplane, "connected"))) {
		const json_t *generation = json_object_get(dataplane, "generation");
		printf("dataplane    connected to %s since %s, version %s, generation %s%lld\n",
		       text_of(dataplane, "socket"), text_of(dataplane, "since"), text_of(dataplane, "version"),
		       json_is_integer(generation) ? "" : "unknown ", (long long)json_integer_value(generation));
	} else {
		printf("dataplane    NOT CONNECTED to %s: %s (it forwards on its last state; retrying)\n",
		       text_of(dataplane, "socket"), text_of(dataplane, "last_error"));
	}
	printf("health       %lld backends: %lld up, %lld down, %lld not checked yet\n",
	       integer_of(health, "backends"), integer_of(health, "up"), integer_of(health, "down"),
	       integer_of(health, "unknown"));
	printf("control      %s (%lld client%s), metrics http://%s/metrics\n", text_of(control, "socket"),
	       integer_of(control, "clients"), integer_of(control, "clients") == 1 ? "" : "s",
	       text_of(control, "metrics"));
}

static void
print_changes(const json_t *changes)
{
	static const char *const kinds[] = { "services", "pools", "backends" };
	static const struct { const char *key, *mark; } lists[] = {
		{ "added", "+" }, { "removed", "-" }, { "changed", "~" },
	};
	size_t index;
	const json_t *name;

	for (unsigned k = 0; k < 3; k++)
		for (unsigned l = 0; l < 3; l++)
			json_array_foreach(json_object_get(json_object_get(changes, kinds[k]), lists[l].key), index, name)
				printf("  %s %.*s %s\n", lists[l].mark, (int)strlen(kinds[k]) - 1, kinds[k],
				       json_string_value(name));
}

static void
print_reload(const json_t *reply)
{
	const json_t *generation = json_object_get(reply, "generation");

	printf("reloaded %s: %s", text_of(reply, "file"), text_of(reply, "summary"));
	if (json_is_integer(generation))
		printf(" (dataplane generation %lld)", (long long)json_integer_value(generation));
	printf("\n");
	if (json_object_get(reply, "dataplane"))
		printf("dataplane: %s\n", text_of(reply, "dataplane"));
	print_changes(json_object_get(reply, "changes"));
}

static void
print_backend_change(const json_t *reply)
{
	const json_t *generation = json_object_get(reply, "generation");

	printf("%s/%s: %s (operator %s, weight %lld)", text_of(reply, "pool"), text_of(reply, "name"),
	       text_of(reply, "state"), text_of(reply, "operator"), integer_of(reply, "weight"));
	if (json_is_integer(generation))
		printf(", applied by the dataplane (generation %lld)", (long long)json_integer_value(generation));
	printf("\n");
	if (json_object_get(reply, "dataplane"))
		printf("dataplane: %s\n", text_of(reply, "dataplane"));
}

static void
note_dataplane(const json_t *reply)
{
	if (json_is_false(json_object_get(reply, "dataplane_connected")))
		printf("(the dataplane is not connected: its counters are missing, shown as -)\n");
}

static void
print_services(const json_t *reply)
{
	const char *headers[] = { "SERVICE", "VIP:PORT", "PROTO", "POOL", "PERSISTENCE", "ALLOW-FROM",
				  "NEW-FLOWS", "IN-BYTES", "OUT-BYTES" };
	struct table table;
	size_t index, a;
	const json_t *service, *prefix;
	char flows[24], in[24], out[24];

	table_init(&table, headers, 9);
	json_array_foreach(json_object_get(reply, "services"), index, service) {
		const json_t *counters = json_object_get(service, "dataplane");
		char allow[256] = "";
		size_t used = 0;
		json_array_foreach(json_object_get(service, "allow_from"), a, prefix) {
			int n = snprintf(allow + used, sizeof(allow) - used, "%s%s", a ? "," : "", json_string_value(prefix));
			used += n > 0 && (size_t)n < sizeof(allow) - used ? (size_t)n : 0;
		}
		table_row(&table, "%s\t%s:%lld\t%s\t%s\t%s\t%s\t%s\t%s\t%s", text_of(service, "name"),
			  text_of(service, "vip"), integer_of(service, "port"), text_of(service, "protocol"),
			  text_of(service, "pool"), text_of(json_object_get(service, "persistence"), "mode"),
			  used ? allow : "any", count_of(counters, "new_flows", flows, sizeof(flows)),
			  count_of(counters, "bytes_in", in, sizeof(in)), count_of(counters, "bytes_out", out, sizeof(out)));
	}
	table_print(&table);
	note_dataplane(reply);
}

static void
print_pools(const json_t *reply)
{
	const char *headers[] = { "POOL", "CHECK", "PORT", "INTERVAL", "RISE/FALL", "BACKENDS", "UP", "DOWN",
				  "UNKNOWN", "SERVICES" };
	struct table table;
	size_t index, s;
	const json_t *pool, *service;

	table_init(&table, headers, 10);
	json_array_foreach(json_object_get(reply, "pools"), index, pool) {
		const json_t *check = json_object_get(pool, "check");
		bool checked = strcmp(text_of(check, "type"), "none") != 0;
		char services[256] = "", port[16] = "", interval[24] = "", rise_fall[24] = "";
		size_t used = 0;
		json_array_foreach(json_object_get(pool, "services"), s, service) {
			int n = snprintf(services + used, sizeof(services) - used, "%s%s", s ? "," : "",
					 json_string_value(service));
			used += n > 0 && (size_t)n < sizeof(services) - used ? (size_t)n : 0;
		}
		if (checked) {
			snprintf(port, sizeof(port), "%lld", integer_of(check, "port"));
			snprintf(interval, sizeof(interval), "%lldms", integer_of(check, "interval_ms"));
			snprintf(rise_fall, sizeof(rise_fall), "%lld/%lld", integer_of(check, "rise"),
				 integer_of(check, "fall"));
		}
		table_row(&table, "%s\t%s\t%s\t%s\t%s\t%lld\t%lld\t%lld\t%lld\t%s", text_of(pool, "name"),
			  text_of(check, "type"), port, interval, rise_fall, integer_of(pool, "backends"),
			  integer_of(pool, "up"), integer_of(pool, "down"), integer_of(pool, "unknown"),
			  used ? services : "(none)");
	}
	table_print(&table);
}

static void
print_backends(const json_t *reply)
{
	const char *headers[] = { "POOL", "BACKEND", "ADDRESS:PORT", "WEIGHT", "STATE", "HEALTH", "LAST-ERROR",
				  "EXPIRY(d)", "NEW-FLOWS", "ACTIVE" };
	struct table table;
	size_t index;
	const json_t *backend;

	table_init(&table, headers, 10);
	json_array_foreach(json_object_get(reply, "backends"), index, backend) {
		const json_t *health = json_object_get(backend, "health");
		const json_t *counters = json_object_get(backend, "dataplane");
		const json_t *latency = json_object_get(health, "latency_ms");
		const json_t *expiry = json_object_get(health, "days_to_expiry");
		char address[64], health_text[48], expiry_text[16] = "", flows[24], active[24], state[32];
		long long port = integer_of(backend, "port") ? integer_of(backend, "port") : integer_of(health, "port");

		snprintf(address, sizeof(address), "%s:%lld", text_of(backend, "address"), port);
		if (json_is_number(latency) && strcmp(text_of(health, "state"), "up") == 0)
			snprintf(health_text, sizeof(health_text), "up %.1fms", json_number_value(latency));
		else
			snprintf(health_text, sizeof(health_text), "%s", text_of(health, "state"));
		if (strcmp(text_of(backend, "check"), "none") == 0)
			snprintf(health_text, sizeof(health_text), "no check");
		if (json_is_integer(expiry))
			snprintf(expiry_text, sizeof(expiry_text), "%lld", (long long)json_integer_value(expiry));
		snprintf(state, sizeof(state), "%s%s", text_of(backend, "state"),
			 json_is_true(json_object_get(backend, "operator_override")) ? "*" : "");
		table_row(&table, "%s\t%s\t%s\t%lld\t%s\t%s\t%s\t%s\t%s\t%s", text_of(backend, "pool"),
			  text_of(backend, "name"), address, integer_of(backend, "weight"), state, health_text,
			  text_of(health, "last_error"), expiry_text, count_of(counters, "new_flows", flows, sizeof(flows)),
			  count_of(counters, "active_flows", active, sizeof(active)));
	}
	table_print(&table);
	printf("(* operator override; STATE is what the dataplane is told: up, down, drain, disabled)\n");
	note_dataplane(reply);
}

/* "key value" lines for every scalar under `object`, keys joined by dots;
 * array elements are named by their "name" (and "pool") members. */
static void
print_flat(const char *prefix, const json_t *value)
{
	char path[512];

	if (json_is_object(value)) {
		const char *key;
		json_t *member;
		json_object_foreach((json_t *)value, key, member) {
			snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "." : "", key);
			print_flat(path, member);
		}
	} else if (json_is_array(value)) {
		size_t index;
		json_t *element;
		json_array_foreach(value, index, element) {
			const char *name = text_of(element, "name"), *pool = text_of(element, "pool");
			if (*name && *pool)
				snprintf(path, sizeof(path), "%s.%s/%s", prefix, pool, name);
			else if (*name)
				snprintf(path, sizeof(path), "%s.%s", prefix, name);
			else
				snprintf(path, sizeof(path), "%s.%zu", prefix, index);
			print_flat(path, element);
		}
	} else if (json_is_integer(value)) {
		printf("%-56s %lld\n", prefix, (long long)json_integer_value(value));
	} else if (json_is_real(value)) {
		printf("%-56s %g\n", prefix, json_real_value(value));
	} else if (json_is_string(value)) {
		if (!strstr(prefix, ".name") && !strstr(prefix, ".pool"))
			printf("%-56s %s\n", prefix, json_string_value(value));
	} else if (json_is_boolean(value)) {
		printf("%-56s %s\n", prefix, json_is_true(value) ? "true" : "false");
	}
}

static void
print_flows(const json_t *reply)
{
	const char *headers[] = { "POOL", "BACKEND", "NEW-FLOWS", "ACTIVE" };
	const json_t *flows = json_object_get(reply, "flows");
	struct table table;
	size_t index;
	const json_t *backend;

	const char *level = text_of(json_object_get(reply, "overload"), "level");

	printf("flows: %lld live of %lld, %lld created, %lld expired; %lld packets dropped in all; "
	       "overload %s\n", integer_of(flows, "live"), integer_of(flows, "capacity"),
	       integer_of(flows, "created"), integer_of(flows, "expired"),
	       integer_of(reply, "drops_total"), *level ? level : "unknown");
	table_init(&table, headers, 4);
	json_array_foreach(json_object_get(reply, "backends"), index, backend)
		table_row(&table, "%s\t%s\t%lld\t%lld", text_of(backend, "pool"), text_of(backend, "name"),
			  integer_of(backend, "new_flows"), integer_of(backend, "active_flows"));
	table_print(&table);
}

static void
print_sessions(const json_t *reply)
{
	const char *headers[] = { "SERVICE", "PERSISTENCE", "HITS", "MISSES" };
	struct table table;
	size_t index;
	const json_t *service;

	print_flat("persistence", json_object_get(reply, "persistence"));
	print_flat("ssl_session", json_object_get(reply, "ssl_session"));
	printf("\n");
	table_init(&table, headers, 4);
	json_array_foreach(json_object_get(reply, "services"), index, service)
		table_row(&table, "%s\t%s\t%lld\t%lld", text_of(service, "name"), text_of(service, "persistence"),
			  integer_of(service, "persist_hits"), integer_of(service, "persist_misses"));
	table_print(&table);
}

static void
print_reply(enum control_command command, const json_t *reply)
{
	switch (command) {
	case CONTROL_STATUS: print_status(reply); break;
	case CONTROL_RELOAD: print_reload(reply); break;
	case CONTROL_SHOW_SERVICES: print_services(reply); break;
	case CONTROL_SHOW_POOLS: print_pools(reply); break;
	case CONTROL_SHOW_BACKENDS: print_backends(reply); break;
	case CONTROL_SHOW_FLOWS: print_flows(reply); break;
	case CONTROL_SHOW_SESSIONS: print_sessions(reply); break;
	case CONTROL_SHOW_STATS: print_flat("", reply); break;
	default: print_backend_change(reply); break;
	}
}

/* The daemon said no: its message, and a refused config's errors with paths. */
static void
print_refusal(const json_t *reply)
{
	size_t index;
	const json_t *error;
	const char *file = text_of(reply, "file");

	fprintf(stderr, "tetherctl: %s\n", text_of(reply, "error"));
	if (json_object_get(reply, "dataplane_error"))
		fprintf(stderr, "tetherctl: dataplane: %s\n", text_of(reply, "dataplane_error"));
	json_array_foreach(json_object_get(reply, "errors"), index, error)
		fprintf(stderr, "%s%s%s: %s\n", file, *file ? ": " : "", text_of(error, "path"),
			text_of(error, "message"));
	if (integer_of(reply, "count") > (long long)json_array_size(json_object_get(reply, "errors")))
		fprintf(stderr, "%s: ... and %lld more errors\n", file,
			integer_of(reply, "count") - (long long)json_array_size(json_object_get(reply, "errors")));
}

/* ------------------------------------------------------------------------ */
/* Talking to the daemon                                                    */

static int
connect_socket(const char *path)
{
	struct sockaddr_un address = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(address.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	snprintf(address.sun_path, sizeof(address.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&address, sizeof(address)) < 0) {
		int saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

static const char *
connect_hint(int error)
{
	switch (error) {
	case ENOENT:
	case ECONNREFUSED:
		return " (is tether-control running? --socket PATH names another socket)";
	case EACCES:
	case EPERM:
		return " (root and members of group '" CONTROL_GROUP "' may connect)";
	default:
		return "";
	}
}

/* Send `request` and read one reply line within `timeout_ms`.  Returns the
 * line (caller frees) or NULL with `error` filled. */
static char *
exchange(int fd, const char *request, int timeout_ms, char *error, size_t error_size)
{
	size_t length = strlen(request), sent = 0, used = 0, capacity = 0;
	char *buffer = NULL, *newline;

	while (sent < length) {
		ssize_t written = send(fd, request + sent, length - sent, MSG_NOSIGNAL);
		if (written <= 0) {
			snprintf(error, error_size, "sending the request: %s", strerror(errno));
			/* The daemon may have answered (a refusal) before closing: read on. */
			break;
		}
		sent += (size_t)written;
	}
	for (;;) {
		struct pollfd wait = { .fd = fd, .events = POLLIN };
		int ready = poll(&wait, 1, timeout_ms);
		if (ready == 0) {
			snprintf(error, error_size, "no reply within %d s", timeout_ms / 1000);
			break;
		}
		if (ready < 0) {
			snprintf(error, error_size, "poll: %s", strerror(errno));
			break;
		}
		if (used + 65536 > capacity) {
			capacity = capacity ? capacity * 2 : 65536 * 2;
			char *grown = capacity <= REPLY_MAX ? realloc(buffer, capacity) : NULL;
			if (!grown) {
				snprintf(error, error_size, "reply too large");
				break;
			}
			buffer = grown;
		}
		ssize_t got = read(fd, buffer + used, capacity - used - 1);
		if (got <= 0) {
			snprintf(error, error_size, "%s", got == 0 ? "tether-control closed the connection without a reply" :
				 strerror(errno));
			break;
		}
		used += (size_t)got;
		buffer[used] = '\0';
		if ((newline = memchr(buffer, '\n', used))) {
			*newline = '\0';
			return buffer;
		}
	}
	free(buffer);
	return NULL;
}

static void
usage(FILE *out)
{
	char command[128];

	fprintf(out,
		"usage: tetherctl [--socket PATH] [--json] [--timeout SECONDS] COMMAND [ARGUMENTS]\n"
		"\n"
		"Operate tether-control over its control socket (default " CONTROL_SOCKET_DEFAULT ").\n"
		"Any unique prefix of a keyword will do: 'tetherctl sh back' is 'show backends'.\n"
		"\n"
		"Commands:\n");
	for (unsigned i = 0; i < control_command_count; i++)
		fprintf(out, "  %-30s %s%s\n", control_command_usage(&control_commands[i], command, sizeof(command)),
			control_commands[i].help, control_commands[i].access == CONTROL_ACCESS_ADMIN ? " [admin]" : "");
	fprintf(out,
		"\n"
		"Options:\n"
		"  -s, --socket PATH     control socket of tether-control\n"
		"  -j, --json            print the daemon's JSON reply as it is (for scripts)\n"
		"  -t, --timeout SECONDS wait this long for a reply (default 60)\n"
		"  -h, --help            this text\n"
		"\n"
		"Read-only commands need root or group '" CONTROL_GROUP "'; [admin] ones need root (or\n"
		"tether-control's --admin-group).\n"
		"\n"
		"Exit status: 0 done, 1 refused by tether-control (reason on stderr), 2 usage,\n"
		"3 tether-control unreachable or silent.\n"
		"\n"
		"Examples:\n"
		"  tetherctl status\n"
		"  tetherctl show backends\n"
		"  tetherctl backend drain cp be2        # no new flows; existing ones finish\n"
		"  tetherctl backend weight cp be3 2\n"
		"  tetherctl reload                      # prints the config's errors if it is refused\n"
		"  tetherctl --json show stats | jq .drops\n"
		"  tetherctl --socket /run/tether-lab/control.sock sh back\n");
}

int
main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = CONTROL_SOCKET_DEFAULT;
	bool json_output = false;
	int timeout_s = 60, option, fd, status;
	struct control_request request;
	char error[512];

	while ((option = getopt_long(argc, argv, "+s:jt:h", options, NULL)) != -1) {
		switch (option) {
		case 's': path = optarg; break;
		case 'j': json_output = true; break;
		case 't':
			timeout_s = atoi(optarg);
			if (timeout_s <= 0 || timeout_s > 86400) {
				fprintf(stderr, "tetherctl: --timeout takes 1..86400 seconds\n");
				return EXIT_USAGE;
			}
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return EXIT_USAGE;
		}
	}
	if (optind == argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (control_request_from_words(argc - optind, argv + optind, &request, error, sizeof(error)) < 0) {
		fprintf(stderr, "tetherctl: %s\n(tetherctl --help lists the commands)\n", error);
		return EXIT_USAGE;
	}
	json_t *message = control_request_json(&request);
	char *text = json_dumps(message, JSON_COMPACT);
	json_decref(message);
	char *line = text ? malloc(strlen(text) + 2) : NULL;
	if (!line) {
		free(text);
		fprintf(stderr, "tetherctl: out of memory\n");
		return EXIT_REFUSED;
	}
	sprintf(line, "%s\n", text);
	free(text);

	if ((fd = connect_socket(path)) < 0) {
		fprintf(stderr, "tetherctl: cannot connect to %s: %s%s\n", path, strerror(errno), connect_hint(errno));
		free(line);
		return EXIT_UNREACHABLE;
	}
	char *reply_text = exchange(fd, line, timeout_s * 1000, error, sizeof(error));
	close(fd);
	free(line);
	if (!reply_text) {
		fprintf(stderr, "tetherctl: %s: %s\n", path, error);
		return EXIT_UNREACHABLE;
	}
	json_error_t json_error;
	json_t *reply = json_loads(reply_text, 0, &json_error);
	if (!reply || !json_is_object(reply)) {
		fprintf(stderr, "tetherctl: %s: unreadable reply: %s\n", path, reply ? "not an object" : json_error.text);
		json_decref(reply);
		free(reply_text);
		return EXIT_UNREACHABLE;
	}
	status = json_object_get(reply, "error") ? EXIT_REFUSED : 0;
	if (json_output)
		printf("%s\n", reply_text);
	else if (status)
		print_refusal(reply);
	else
		print_reply(request.spec->command, reply);
	json_decref(reply);
	free(reply_text);
	return status;
}
