/*
 * control_socket.c: control.sock (protocol and access rules in control_socket.h).
 *
 * The first half is pure: the command table, the JSON request parser, the
 * command-line word parser tetherctl uses, and the access rule.  The second
 * half is the server, relayd's control.c habits: the socket's mode is set by
 * umask at bind and again by chmod; accept is non-blocking; when the client
 * table is full or the process is out of descriptors (EMFILE) the listener is
 * left out of poll() for a moment instead of spinning on it.
 *
 * A client's requests are served in order, one at a time: a request the
 * daemon answers later (it needs the dataplane) holds the client's next lines
 * in its buffer until the answer is written.  A line longer than
 * CONTROL_REQUEST_MAX gets an error and the connection is closed, since the
 * rest of it cannot be told from a next request; a malformed line gets an
 * error and the connection stays.  Replies are queued whole and written as
 * the peer reads them, so a slow reader never blocks the daemon.
 */
#define _GNU_SOURCE   /* accept4, struct ucred, SO_PEERGROUPS */
#include "control_socket.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59   /* Linux 4.13; older libc headers lack the name */
#endif

#define ACCEPT_PAUSE_MS  1000   /* after EMFILE/ENFILE */
#define OUTPUT_BACKLOG   (1u << 20)  /* stop reading a client with this much unread reply */
#define PEER_GROUPS_MAX  256

/* ------------------------------------------------------------------------ */
/* The command table                                                        */

const struct control_command_spec control_commands[] = {
	{ CONTROL_STATUS, "status", NULL, NULL, 0, CONTROL_ACCESS_READ,
	  "version, uptime, config file, last reload, dataplane connection" },
	{ CONTROL_RELOAD, "reload", NULL, NULL, 0, CONTROL_ACCESS_ADMIN,
	  "re-read the config file; a file with errors is refused whole" },
	{ CONTROL_BACKEND_ENABLE, "backend", "enable", "action", CONTROL_ARG_BACKEND,
	  CONTROL_ACCESS_ADMIN, "let the backend take new flows again (if healthy)" },
	{ CONTROL_BACKEND_DISABLE, "backend", "disable", "action", CONTROL_ARG_BACKEND,
	  CONTROL_ACCESS_ADMIN, "no new flows; existing flows continue" },
	{ CONTROL_BACKEND_DRAIN, "backend", "drain", "action", CONTROL_ARG_BACKEND,
	  CONTROL_ACCESS_ADMIN, "no new flows, no new persistence; flows and sessions finish" },
	{ CONTROL_BACKEND_WEIGHT, "backend", "weight", "action", CONTROL_ARG_BACKEND | CONTROL_ARG_WEIGHT,
	  CONTROL_ACCESS_ADMIN, "override the backend's weight (0..1000) until the next change" },
	{ CONTROL_SHOW_SERVICES, "show", "services", "what", 0, CONTROL_ACCESS_READ,
	  "services with their VIP, pool, persistence and counters" },
	{ CONTROL_SHOW_POOLS, "show", "pools", "what", 0, CONTROL_ACCESS_READ,
	  "pools with their health check and how many backends are up" },
	{ CONTROL_SHOW_BACKENDS, "show", "backends", "what", 0, CONTROL_ACCESS_READ,
	  "backends: state, health, last error, certificate expiry, flows" },
	{ CONTROL_SHOW_FLOWS, "show", "flows", "what", 0, CONTROL_ACCESS_READ,
	  "the flow table: live, capacity, created, expired, per backend" },
	{ CONTROL_SHOW_SESSIONS, "show", "sessions", "what", 0, CONTROL_ACCESS_READ,
	  "persistence tables and SSL-session hits, misses, fallbacks" },
	{ CONTROL_SHOW_STATS, "show", "stats", "what", 0, CONTROL_ACCESS_READ,
	  "every dataplane counter" },
};
const unsigned control_command_count = sizeof(control_commands) / sizeof(control_commands[0]);

json_t *
control_error_reply(const char *format, ...)
{
	char message[512];
	va_list args;

	va_start(args, format);
	vsnprintf(message, sizeof(message), format, args);
	va_end(args);
	return json_pack("{s:s}", "error", message);
}

static void error_format(char *error, size_t size, const char *format, ...)
	__attribute__((format(printf, 3, 4)));

static void
error_format(char *error, size_t size, const char *format, ...)
{
	va_list args;

	va_start(args, format);
	vsnprintf(error, size, format, args);
	va_end(args);
}

const char *
control_command_usage(const struct control_command_spec *spec, char *out, size_t size)
{
	snprintf(out, size, "%s%s%s%s%s", spec->verb, spec->object ? " " : "",
		 spec->object ? spec->object : "",
		 spec->arguments & CONTROL_ARG_BACKEND ? " POOL NAME" : "",
		 spec->arguments & CONTROL_ARG_WEIGHT ? " W" : "");
	return out;
}

/* "a, b, c": the distinct verbs (verb == NULL) or the objects of `verb`. */
static void
list_keywords(const char *verb, char *out, size_t size)
{
	size_t length = 0;

	out[0] = '\0';
	for (unsigned i = 0; i < control_command_count; i++) {
		const struct control_command_spec *spec = &control_commands[i];
		const char *word = verb ? spec->object : spec->verb;
		if (verb && strcmp(spec->verb, verb) != 0)
			continue;
		if (!verb && i > 0 && strcmp(control_commands[i - 1].verb, word) == 0)
			continue;   /* the table keeps a verb's entries together */
		if (!word)
			continue;
		int n = snprintf(out + length, size - length, "%s%s", length ? ", " : "", word);
		if (n < 0 || (size_t)n >= size - length)
			return;
		length += (size_t)n;
	}
}

/* The table entry for verb + object (object NULL for commands without one). */
static const struct control_command_spec *
command_find(const char *verb, const char *object)
{
	for (unsigned i = 0; i < control_command_count; i++) {
		const struct control_command_spec *spec = &control_commands[i];
		if (strcmp(spec->verb, verb) != 0)
			continue;
		if (!spec->object || (object && strcmp(spec->object, object) == 0))
			return spec;
	}
	return NULL;
}

/* The first table entry of `verb` (its object_key is the verb's), or NULL. */
static const struct control_command_spec *
verb_first(const char *verb)
{
	for (unsigned i = 0; i < control_command_count; i++)
		if (strcmp(control_commands[i].verb, verb) == 0)
			return &control_commands[i];
	return NULL;
}

/* A name argument: 1..63 characters of the config's name alphabet. */
static int
copy_name(const char *text, char out[CONFIG_NAME_MAX], const char *what, char *error, size_t size)
{
	size_t length = strlen(text);

	if (length == 0 || length >= CONFIG_NAME_MAX) {
		error_format(error, size, "%s must be 1 to %d characters", what, CONFIG_NAME_MAX - 1);
		return -EINVAL;
	}
	for (size_t i = 0; i < length; i++) {
		char c = text[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-')) {
			error_format(error, size, "%s '%.63s' has a character other than A-Z a-z 0-9 _ . -",
				     what, text);
			return -EINVAL;
		}
	}
	memcpy(out, text, length + 1);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* JSON requests                                                            */

static bool
key_allowed(const struct control_command_spec *spec, const char *key)
{
	if (strcmp(key, "command") == 0)
		return true;
	if (spec->object_key && strcmp(key, spec->object_key) == 0)
		return true;
	if ((spec->arguments & CONTROL_ARG_BACKEND) && (strcmp(key, "pool") == 0 || strcmp(key, "name") == 0))
		return true;
	return (spec->arguments & CONTROL_ARG_WEIGHT) && strcmp(key, "weight") == 0;
}

static int
request_arguments(const json_t *object, struct control_request *request, char *error, size_t size)
{
	const struct control_command_spec *spec = request->spec;

	if (spec->arguments & CONTROL_ARG_BACKEND) {
		const char *pool = json_string_value(json_object_get(object, "pool"));
		const char *name = json_string_value(json_object_get(object, "name"));
		if (!pool || !name) {
			error_format(error, size, "'%s %s' needs string keys \"pool\" and \"name\"",
				     spec->verb, spec->object);
			return -EINVAL;
		}
		if (copy_name(pool, request->pool, "pool", error, size) < 0 ||
		    copy_name(name, request->name, "name", error, size) < 0)
			return -EINVAL;
	}
	if (spec->arguments & CONTROL_ARG_WEIGHT) {
		const json_t *weight = json_object_get(object, "weight");
		if (!json_is_integer(weight) || json_integer_value(weight) < 0 ||
		    json_integer_value(weight) > CONTROL_WEIGHT_MAX) {
			error_format(error, size, "\"weight\" must be an integer 0..%d", CONTROL_WEIGHT_MAX);
			return -EINVAL;
		}
		request->weight = (int)json_integer_value(weight);
	}
	return 0;
}

int
control_request_parse(const char *line, size_t length, struct control_request *request,
		      char *error, size_t error_size)
{
	json_error_t json_error;
	const char *verb, *object_name = NULL, *key;
	json_t *object, *value;
	int rc = -EINVAL;

	memset(request, 0, sizeof(*request));
	object = json_loadb(line, length, JSON_REJECT_DUPLICATES, &json_error);
	if (!object) {
		error_format(error, error_size, "invalid JSON: %s at column %d", json_error.text,
			     json_error.column);
		return -EINVAL;
	}
	if (!json_is_object(object) || !(verb = json_string_value(json_object_get(object, "command")))) {
		error_format(error, error_size, "expected an object with a string \"command\"");
		goto out;
	}
	if (!(request->spec = verb_first(verb))) {
		char known[256];
		list_keywords(NULL, known, sizeof(known));
		error_format(error, error_size, "unknown command '%.64s' (known: %s)", verb, known);
		goto out;
	}
	if (request->spec->object_key) {
		const char *object_key = request->spec->object_key;
		object_name = json_string_value(json_object_get(object, object_key));
		request->spec = object_name ? command_find(verb, object_name) : NULL;
		if (!request->spec) {
			char known[256];
			list_keywords(verb, known, sizeof(known));
			if (object_name)
				error_format(error, error_size, "unknown %s '%.64s' (one of: %s)", verb, object_name,
					     known);
			else
				error_format(error, error_size, "'%s' needs \"%s\": one of %s", verb, object_key,
					     known);
			goto out;
		}
	}
	json_object_foreach(object, key, value) {
		if (!key_allowed(request->spec, key)) {
			error_format(error, error_size, "unknown key '%.64s' for '%s%s%s'", key, verb,
				     object_name ? " " : "", object_name ? object_name : "");
			goto out;
		}
	}
	rc = request_arguments(object, request, error, error_size);
out:
	if (rc < 0)
		request->spec = NULL;
	json_decref(object);
	return rc;
}

json_t *
control_request_json(const struct control_request *request)
{
	const struct control_command_spec *spec = request->spec;
	json_t *object = json_pack("{s:s}", "command", spec->verb);

	if (spec->object)
		json_object_set_new(object, spec->object_key, json_string(spec->object));
	if (spec->arguments & CONTROL_ARG_BACKEND) {
		json_object_set_new(object, "pool", json_string(request->pool));
		json_object_set_new(object, "name", json_string(request->name));
	}
	if (spec->arguments & CONTROL_ARG_WEIGHT)
		json_object_set_new(object, "weight", json_integer(request->weight));
	return object;
}

/* ------------------------------------------------------------------------ */
/* Command-line words                                                       */

/*
 * Match `word` against the verbs (verb == NULL) or the objects of `verb`: an
 * exact match, else the only keyword it is a prefix of.  Returns the keyword,
 * or NULL with `error` saying "unknown" or "ambiguous".
 */
static const char *
match_keyword(const char *verb, const char *word, char *error, size_t size)
{
	const char *found = NULL;
	char candidates[256] = "";
	size_t length = strlen(word), used = 0;
	unsigned matches = 0;

	for (unsigned i = 0; i < control_command_count; i++) {
		const struct control_command_spec *spec = &control_commands[i];
		const char *keyword = verb ? spec->object : spec->verb;
		if ((verb && strcmp(spec->verb, verb) != 0) || !keyword)
			continue;
		if (strcmp(keyword, word) == 0)
			return keyword;
		if (length == 0 || strncmp(keyword, word, length) != 0 || (found && strcmp(found, keyword) == 0))
			continue;
		int n = snprintf(candidates + used, sizeof(candidates) - used, "%s%s",
				 matches ? ", " : "", keyword);
		if (n > 0 && (size_t)n < sizeof(candidates) - used)
			used += (size_t)n;
		found = keyword;
		matches++;
	}
	if (matches == 1)
		return found;
	if (matches > 1) {
		error_format(error, size, "ambiguous %s '%s': %s", verb ? "argument" : "command", word,
			     candidates);
	} else {
		char known[256];
		list_keywords(verb, known, sizeof(known));
		if (verb)
			error_format(error, size, "unknown argument '%s' to '%s' (one of: %s)", word, verb,
				     known);
		else
			error_format(error, size, "unknown command '%s' (one of: %s)", word, known);
	}
	return NULL;
}

static int
parse_weight_word(const char *word, int *weight, char *error, size_t size)
{
	char *end;
	long value;

	errno = 0;
	value = strtol(word, &end, 10);
	if (errno || end == word || *end || word[0] == '-' || word[0] == '+' || value > CONTROL_WEIGHT_MAX) {
		error_format(error, size, "weight '%s' is not an integer 0..%d", word, CONTROL_WEIGHT_MAX);
		return -EINVAL;
	}
	*weight = (int)value;
	return 0;
}

int
control_request_from_words(int count, char *const words[], struct control_request *request,
			   char *error, size_t error_size)
{
	const char *verb, *object = NULL;
	char usage[128];
	int next = 1;

	memset(request, 0, sizeof(*request));
	if (count < 1) {
		error_format(error, error_size, "no command given");
		return -EINVAL;
	}
	if (!(verb = match_keyword(NULL, words[0], error, error_size)))
		return -EINVAL;
	request->spec = verb_first(verb);
	if (request->spec->object) {
		if (count < 2) {
			char known[256];
			list_keywords(verb, known, sizeof(known));
			error_format(error, error_size, "'%s' needs one of: %s", verb, known);
			goto fail;
		}
		if (!(object = match_keyword(verb, words[1], error, error_size)))
			goto fail;
		request->spec = command_find(verb, object);
		next = 2;
	}
	control_command_usage(request->spec, usage, sizeof(usage));
	if (request->spec->arguments & CONTROL_ARG_BACKEND) {
		if (count < next + 2) {
			error_format(error, error_size, "missing %s: usage: %s",
				     count < next + 1 ? "POOL and NAME" : "NAME", usage);
			goto fail;
		}
		if (copy_name(words[next], request->pool, "pool", error, error_size) < 0 ||
		    copy_name(words[next + 1], request->name, "name", error, error_size) < 0)
			goto fail;
		next += 2;
	}
	if (request->spec->arguments & CONTROL_ARG_WEIGHT) {
		if (count < next + 1) {
			error_format(error, error_size, "missing W: usage: %s", usage);
			goto fail;
		}
		if (parse_weight_word(words[next], &request->weight, error, error_size) < 0)
			goto fail;
		next++;
	}
	if (count > next) {
		error_format(error, error_size, "unexpected argument '%s': usage: %s", words[next], usage);
		goto fail;
	}
	return 0;
fail:
	request->spec = NULL;
	return -EINVAL;
}

/* ------------------------------------------------------------------------ */
/* Access                                                                   */

static bool
in_group(gid_t group, gid_t gid, const gid_t *groups, unsigned count)
{
	if (group == (gid_t)-1)
		return false;
	if (gid == group)
		return true;
	for (unsigned i = 0; i < count; i++)
		if (groups[i] == group)
			return true;
	return false;
}

enum control_access
control_peer_access(uid_t uid, gid_t gid, const gid_t *groups, unsigned group_count,
		    gid_t socket_group, gid_t admin_group)
{
	if (uid == 0 || in_group(admin_group, gid, groups, group_count))
		return CONTROL_ACCESS_ADMIN;
	if (in_group(socket_group, gid, groups, group_count))
		return CONTROL_ACCESS_READ;
	return CONTROL_ACCESS_NONE;
}

bool
control_access_allows(enum control_access access, const struct control_command_spec *spec)
{
	return access >= spec->access;
}

/* ------------------------------------------------------------------------ */
/* The server                                                               */

struct control_client {
	int fd;
	uint64_t id;
	uid_t uid;
	enum control_access access;
	char *input;                 /* CONTROL_REQUEST_MAX bytes */
	size_t input_length;
	char *output;                /* replies not yet written */
	size_t output_length, output_sent, output_capacity;
	bool waiting;                /* a deferred reply is outstanding */
	bool closing;                /* close once the output is written */
	uint64_t last_active_ms;
};

struct control_socket {
	int listen_fd;
	char path[CONFIG_PATH_MAX];
	gid_t group, admin_group;
	char group_name[64];
	control_handler_fn handler;
	void *arg;
	uint64_t next_id;
	uint64_t now_ms;
	uint64_t accept_paused_until_ms;
	unsigned client_count;
	struct control_client *clients[CONTROL_CLIENTS_MAX];
};

/* Create the socket's directory 0750 if missing, and let the group traverse a
 * root-only directory (the dataplane creates /run/tether root:root 0750).
 * Returns 0 or a negative errno. */
static int
prepare_directory(const char *path, gid_t group)
{
	char directory[CONFIG_PATH_MAX];
	char *slash;
	struct stat st;

	snprintf(directory, sizeof(directory), "%s", path);
	slash = strrchr(directory, '/');
	if (!slash || slash == directory)
		return 0;
	*slash = '\0';
	if (mkdir(directory, 0750) == 0) {
		if (chown(directory, 0, group) < 0)
			return -errno;
		return 0;
	}
	if (errno != EEXIST)
		return -errno;
	if (stat(directory, &st) == 0 && st.st_uid == 0 && st.st_gid == 0 && group != 0 &&
	    (st.st_mode & 07777) == 0750 && chown(directory, 0, group) == 0)
		log_info("control socket: gave directory %s to group %u so its members can reach the socket",
			 directory, (unsigned)group);
	return 0;
}

/* Is a server already answering on `path`?  (A leftover file from a process
 * that died is not; it is removed.) */
static bool
socket_in_use(const char *path)
{
	struct sockaddr_un address = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool in_use;

	if (fd < 0)
		return false;
	snprintf(address.sun_path, sizeof(address.sun_path), "%s", path);
	in_use = connect(fd, (struct sockaddr *)&address, sizeof(address)) == 0;
	close(fd);
	return in_use;
}

static gid_t
group_id(const char *name, bool *found)
{
	struct group *entry = getgrnam(name);

	*found = entry != NULL;
	return entry ? entry->gr_gid : 0;
}

struct control_socket *
control_socket_open(const char *path, const char *group, const char *admin_group,
		    control_handler_fn handler, void *arg, char *error, size_t error_size)
{
	struct sockaddr_un address = { .sun_family = AF_UNIX };
	struct control_socket *server;
	bool found;
	int rc;

	if (strlen(path) >= sizeof(address.sun_path)) {
		error_format(error, error_size, "control socket path %s is too long (max %zu)", path,
			     sizeof(address.sun_path) - 1);
		return NULL;
	}
	server = calloc(1, sizeof(*server));
	if (!server) {
		error_format(error, error_size, "out of memory");
		return NULL;
	}
	server->handler = handler;
	server->arg = arg;
	server->listen_fd = -1;
	server->next_id = 1;
	snprintf(server->path, sizeof(server->path), "%s", path);
	group = group ? group : CONTROL_GROUP;
	server->group = group_id(group, &found);
	snprintf(server->group_name, sizeof(server->group_name), "%s", found ? group : "root");
	server->admin_group = (gid_t)-1;
	if (admin_group) {
		server->admin_group = group_id(admin_group, &found);
		if (!found) {
			error_format(error, error_size, "admin group '%s' does not exist", admin_group);
			goto fail;
		}
	}
	if ((rc = prepare_directory(path, server->group)) < 0) {
		error_format(error, error_size, "cannot create the directory of %s: %s", path, strerror(-rc));
		goto fail;
	}
	struct stat st;
	if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
		error_format(error, error_size, "%s exists and is not a socket; not replacing it", path);
		goto fail;
	}
	if (socket_in_use(path)) {
		error_format(error, error_size, "%s is in use: is another tether-control running?", path);
		goto fail;
	}
	unlink(path);
	snprintf(address.sun_path, sizeof(address.sun_path), "%s", path);
	server->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (server->listen_fd < 0)
		goto fail_errno;
	mode_t old_mask = umask(0117);
	rc = bind(server->listen_fd, (struct sockaddr *)&address, sizeof(address));
	umask(old_mask);
	if (rc < 0)
		goto fail_errno;
	/* umask made it 0660 already; chmod again in case umask was not honoured
	 * (some filesystems), and give it its group. */
	if (chmod(path, 0660) < 0 || chown(path, 0, server->group) < 0 ||
	    listen(server->listen_fd, 16) < 0)
		goto fail_errno;
	log_info("control socket %s: group %s may read, %s%s%s may administer", path, server->group_name,
		 "root", admin_group ? " and group " : "", admin_group ? admin_group : "");
	return server;
fail_errno:
	error_format(error, error_size, "cannot listen on %s: %s", path, strerror(errno));
fail:
	if (server->listen_fd >= 0) {
		close(server->listen_fd);
		unlink(path);
	}
	free(server);
	return NULL;
}

static void
client_free(struct control_socket *server, unsigned index)
{
	struct control_client *client = server->clients[index];

	close(client->fd);
	free(client->input);
	free(client->output);
	free(client);
	server->clients[index] = NULL;
	server->client_count--;
}

void
control_socket_close(struct control_socket *server)
{
	if (!server)
		return;
	for (unsigned i = 0; i < CONTROL_CLIENTS_MAX; i++)
		if (server->clients[i])
			client_free(server, i);
	if (server->listen_fd >= 0) {
		close(server->listen_fd);
		unlink(server->path);
	}
	free(server);
}

unsigned
control_socket_client_count(const struct control_socket *server)
{
	return server->client_count;
}

/* Queue `reply` (taken) and a newline. */
static void
client_queue(struct control_client *client, json_t *reply)
{
	char *text = json_dumps(reply, JSON_COMPACT);
	size_t length;

	json_decref(reply);
	if (!text) {
		client->closing = true;
		return;
	}
	length = strlen(text);
	if (client->output_length + length + 1 > client->output_capacity) {
		size_t capacity = client->output_length + length + 1 + 4096;
		char *grown = realloc(client->output, capacity);
		if (!grown) {
			free(text);
			client->closing = true;
			return;
		}
		client->output = grown;
		client->output_capacity = capacity;
	}
	memcpy(client->output + client->output_length, text, length);
	client->output[client->output_length + length] = '\n';
	client->output_length += length + 1;
	free(text);
}

/* Write what the socket takes.  Returns -1 when the client must go. */
static int
client_flush(struct control_socket *server, struct control_client *client)
{
	while (client->output_sent < client->output_length) {
		ssize_t written = send(client->fd, client->output + client->output_sent,
				       client->output_length - client->output_sent, MSG_NOSIGNAL);
		if (written < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		if (written <= 0)
			return -1;
		client->output_sent += (size_t)written;
		client->last_active_ms = server->now_ms;
	}
	client->output_sent = client->output_length = 0;
	return client->closing ? -1 : 0;
}

/* Answer one line: a parse error, a permission error, or the handler's reply
 * (NULL: deferred). */
static void
client_request(struct control_socket *server, struct control_client *client, const char *line, size_t length)
{
	struct control_request request;
	char error[320];
	json_t *reply;

	if (control_request_parse(line, length, &request, error, sizeof(error)) < 0) {
		client_queue(client, control_error_reply("%s", error));
		return;
	}
	if (!control_access_allows(client->access, request.spec)) {
		const char *object = request.spec->object ? request.spec->object : "";
		client_queue(client, control_error_reply(
			"permission denied: '%s%s%s' is an admin command (uid %u may only read)", request.spec->verb,
			*object ? " " : "", object, (unsigned)client->uid));
		log_notice("control socket: refused '%s%s%s%s%s%s%s' to uid %u (read-only)", request.spec->verb,
			   *object ? " " : "", object, *request.pool ? " " : "", request.pool,
			   *request.name ? " " : "", request.name, (unsigned)client->uid);
		return;
	}
	reply = server->handler(server->arg, &request, client->id, client->uid);
	if (reply)
		client_queue(client, reply);
	else
		client->waiting = true;
}

/* Serve the complete lines in the buffer, in order, until one is deferred or
 * too much output is waiting for the peer. */
static void
client_process(struct control_socket *server, struct control_client *client)
{
	char *newline;

	while (!client->waiting && !client->closing && client->output_length < OUTPUT_BACKLOG &&
	       (newline = memchr(client->input, '\n', client->input_length))) {
		size_t line_length = (size_t)(newline - client->input);
		size_t consumed = line_length + 1;
		if (line_length && client->input[line_length - 1] == '\r')
			line_length--;
		if (line_length)
			client_request(server, client, client->input, line_length);
		client->input_length -= consumed;
		memmove(client->input, client->input + consumed, client->input_length);
	}
	if (!client->closing && client->input_length == CONTROL_REQUEST_MAX &&
	    !memchr(client->input, '\n', client->input_length)) {
		client_queue(client, control_error_reply(
			"request longer than %d bytes; closing the connection", CONTROL_REQUEST_MAX));
		client->closing = true;
		client->input_length = 0;
	}
}

/* Read what is there.  Returns -1 when the client must go (EOF, error). */
static int
client_read(struct control_socket *server, struct control_client *client)
{
	ssize_t got = read(client->fd, client->input + client->input_length,
			   CONTROL_REQUEST_MAX - client->input_length);

	if (got < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (got <= 0)
		return -1;
	client->input_length += (size_t)got;
	client->last_active_ms = server->now_ms;
	client_process(server, client);
	return 0;
}

/* The peer's credentials -> its access class (NONE when unreadable). */
static enum control_access
peer_access(const struct control_socket *server, int fd, uid_t *uid)
{
	struct ucred credentials;
	socklen_t length = sizeof(credentials);
	gid_t groups[PEER_GROUPS_MAX];
	socklen_t groups_length = sizeof(groups);

	*uid = (uid_t)-1;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) < 0)
		return CONTROL_ACCESS_NONE;
	*uid = credentials.uid;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &groups_length) < 0)
		groups_length = 0;   /* more than PEER_GROUPS_MAX groups: the primary decides */
	return control_peer_access(credentials.uid, credentials.gid, groups,
				   (unsigned)(groups_length / sizeof(gid_t)), server->group,
				   server->admin_group);
}

static void
accept_clients(struct control_socket *server)
{
	while (server->client_count < CONTROL_CLIENTS_MAX) {
		int fd = accept4(server->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				log_warning("control socket: accept: %s; pausing for %d ms", strerror(errno),
					    ACCEPT_PAUSE_MS);
				server->accept_paused_until_ms = server->now_ms + ACCEPT_PAUSE_MS;
			}
			return;   /* EAGAIN: nothing more waiting */
		}
		struct control_client *client = calloc(1, sizeof(*client));
		char *input = client ? malloc(CONTROL_REQUEST_MAX) : NULL;
		if (!input) {
			free(client);
			close(fd);
			return;
		}
		unsigned slot = 0;
		while (server->clients[slot])
			slot++;
		client->fd = fd;
		client->input = input;
		client->id = server->next_id++;
		client->last_active_ms = server->now_ms;
		client->access = peer_access(server, fd, &client->uid);
		server->clients[slot] = client;
		server->client_count++;
		if (client->access == CONTROL_ACCESS_NONE) {
			log_notice("control socket: refused uid %d: neither root nor in group %s",
				   (int)client->uid, server->group_name);
			client_queue(client, control_error_reply(
				"permission denied: uid %d is neither root nor in group '%s'",
				(int)client->uid, server->group_name));
			client->closing = true;
			if (client_flush(server, client) < 0)
				client_free(server, slot);
		}
	}
}

void
control_socket_reply(struct control_socket *server, uint64_t client_id, json_t *reply)
{
	for (unsigned i = 0; i < CONTROL_CLIENTS_MAX; i++) {
		struct control_client *client = server->clients[i];
		if (!client || client->id != client_id)
			continue;
		client->waiting = false;
		client_queue(client, reply);
		client_process(server, client);   /* lines that waited behind it */
		if (client_flush(server, client) < 0)
			client_free(server, i);
		return;
	}
	json_decref(reply);
}

unsigned
control_socket_poll_prepare(struct control_socket *server, struct pollfd *fds, unsigned max,
			    uint64_t now_ms, int *timeout_ms)
{
	unsigned count = 0;

	server->now_ms = now_ms;
	if (max < 1 + CONTROL_CLIENTS_MAX)
		return 0;
	/* Slot 0 is the listener (fd -1 while not accepting), slot 1 + i client i. */
	bool accepting = server->client_count < CONTROL_CLIENTS_MAX &&
			 now_ms >= server->accept_paused_until_ms;
	fds[count++] = (struct pollfd){ .fd = accepting ? server->listen_fd : -1, .events = POLLIN };
	if (now_ms < server->accept_paused_until_ms) {
		uint64_t wait = server->accept_paused_until_ms - now_ms;
		if ((int64_t)wait < *timeout_ms)
			*timeout_ms = (int)wait;
	}
	for (unsigned i = 0; i < CONTROL_CLIENTS_MAX; i++) {
		struct control_client *client = server->clients[i];
		short events = 0;
		if (!client) {
			fds[count++] = (struct pollfd){ .fd = -1 };
			continue;
		}
		if (!client->closing && !client->waiting && client->output_length < OUTPUT_BACKLOG)
			events |= POLLIN;
		if (client->output_length > client->output_sent)
			events |= POLLOUT;
		fds[count++] = (struct pollfd){ .fd = client->fd, .events = events };
		if (!client->waiting) {
			uint64_t deadline = client->last_active_ms + CONTROL_IDLE_TIMEOUT_MS;
			int64_t wait = deadline > now_ms ? (int64_t)(deadline - now_ms) : 0;
			if (wait < *timeout_ms)
				*timeout_ms = (int)wait;
		}
	}
	return count;
}

void
control_socket_poll_dispatch(struct control_socket *server, const struct pollfd *fds, unsigned count,
			     uint64_t now_ms)
{
	server->now_ms = now_ms;
	/* Client slot i is fds[1 + i]; a client accepted below has no entry yet. */
	for (unsigned i = 0; i < CONTROL_CLIENTS_MAX && 1 + i < count; i++) {
		struct control_client *client = server->clients[i];
		short revents = fds[1 + i].revents;
		if (!client || fds[1 + i].fd != client->fd)
			continue;
		if ((revents & (POLLIN | POLLHUP | POLLERR)) && client_read(server, client) < 0) {
			client_free(server, i);
			continue;
		}
		if (client->output_length > client->output_sent && client_flush(server, client) < 0) {
			client_free(server, i);
			continue;
		}
		if (!client->waiting && now_ms >= client->last_active_ms + CONTROL_IDLE_TIMEOUT_MS) {
			log_debug("control socket: closing client %llu of uid %u: idle for %d s",
				  (unsigned long long)client->id, (unsigned)client->uid,
				  CONTROL_IDLE_TIMEOUT_MS / 1000);
			client_free(server, i);
		}
	}
	if (count && (fds[0].revents & POLLIN))
		accept_clients(server);
}
