/*
 * control_socket.h: control.sock, the operators' socket of tether-control, and
 * the command table that both ends of it share.
 *
 * The protocol: a UNIX stream socket, one JSON object per line each way.
 *   {"command":"status"}
 *   {"command":"reload"}
 *   {"command":"show","what":"services|pools|backends|flows|sessions|stats"}
 *   {"command":"backend","action":"enable|disable|drain","pool":"cp","name":"be2"}
 *   {"command":"backend","action":"weight","pool":"cp","name":"be2","weight":3}
 * Every reply is one line: the result, or {"error":"..."} (a refused reload
 * adds "errors":[{"path","message"}]).  Unknown keys in a request are errors,
 * as in the config file.
 *
 * One table (control_commands[]) names every command, who may run it, the
 * arguments it takes and its help line.  The daemon validates JSON requests
 * against it; tetherctl parses its command line against it (unique-prefix
 * matching, "ambiguous" for free, relayctl's habit) and prints --help from it.
 *
 * Access: the socket is mode 0660, owned by root and the group `tether` when
 * that group exists (else root's group), in a 0750 directory.  The daemon also
 * checks each peer's credentials (SO_PEERCRED, SO_PEERGROUPS): uid 0 may run
 * everything; members of the socket's group may run read-only commands (status,
 * show ...); members of the admin group (tether-control --admin-group, none by
 * default) may run everything.  Anyone else gets one error line and is closed.
 */
#ifndef TETHER_CONTROL_SOCKET_H
#define TETHER_CONTROL_SOCKET_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "config.h"

#define CONTROL_REQUEST_MAX    65536   /* bytes in one request line, newline included */
#define CONTROL_CLIENTS_MAX    64
#define CONTROL_IDLE_TIMEOUT_MS 30000
#define CONTROL_SOCKET_DEFAULT "/run/tether/control.sock"
#define CONTROL_GROUP          "tether"
#define CONTROL_WEIGHT_MAX     1000
#define CONTROL_SOCKET_POLL_FDS (1 + CONTROL_CLIENTS_MAX)

enum control_access {
	CONTROL_ACCESS_NONE,    /* may not connect */
	CONTROL_ACCESS_READ,    /* status, show */
	CONTROL_ACCESS_ADMIN,   /* everything */
};

enum control_command {
	CONTROL_STATUS,
	CONTROL_RELOAD,
	CONTROL_BACKEND_ENABLE,
	CONTROL_BACKEND_DISABLE,
	CONTROL_BACKEND_DRAIN,
	CONTROL_BACKEND_WEIGHT,
	CONTROL_SHOW_SERVICES,
	CONTROL_SHOW_POOLS,
	CONTROL_SHOW_BACKENDS,
	CONTROL_SHOW_FLOWS,
	CONTROL_SHOW_SESSIONS,
	CONTROL_SHOW_STATS,
};

/* Arguments a command takes after its words. */
#define CONTROL_ARG_BACKEND 0x1u   /* POOL NAME */
#define CONTROL_ARG_WEIGHT  0x2u   /* W, 0..1000 */

struct control_command_spec {
	enum control_command command;
	const char *verb;         /* "backend": the request's "command" */
	const char *object;       /* "drain": the value of object_key; NULL for none */
	const char *object_key;   /* "action" or "what" */
	unsigned arguments;       /* CONTROL_ARG_* */
	enum control_access access;
	const char *help;
};

extern const struct control_command_spec control_commands[];
extern const unsigned control_command_count;

struct control_request {
	const struct control_command_spec *spec;
	char pool[CONFIG_NAME_MAX];
	char name[CONFIG_NAME_MAX];
	int weight;
};

/*
 * Parse one request line (without its newline) of `length` bytes.  Returns 0
 * with `request` filled, or -EINVAL with a one-line reason in `error`
 * (malformed JSON, not an object, unknown command or key, a missing or wrong
 * argument).  Pure.
 */
int control_request_parse(const char *line, size_t length, struct control_request *request,
			  char *error, size_t error_size);

/*
 * Parse command-line words ("sh", "back") against the table: each word may be
 * any unique prefix of a keyword.  Returns 0 with `request` filled, or -EINVAL
 * with `error` saying what is unknown, ambiguous (and between what), missing or
 * extra.  Pure.
 */
int control_request_from_words(int count, char *const words[], struct control_request *request,
			       char *error, size_t error_size);

/* The JSON form of a request (new reference). */
json_t *control_request_json(const struct control_request *request);

/* "backend drain POOL NAME": the usage of one command, into `out`. */
const char *control_command_usage(const struct control_command_spec *spec, char *out, size_t size);

/*
 * The access class of a peer: uid 0 -> admin; in `admin_group` (primary or
 * supplementary; (gid_t)-1 for none) -> admin; in `socket_group` -> read;
 * else none.  Pure.
 */
enum control_access control_peer_access(uid_t uid, gid_t gid, const gid_t *groups, unsigned group_count,
					gid_t socket_group, gid_t admin_group);

/* May a peer of class `access` run `spec`? */
bool control_access_allows(enum control_access access, const struct control_command_spec *spec);

/* {"error": message} (new reference). */
json_t *control_error_reply(const char *format, ...) __attribute__((format(printf, 1, 2)));

/* --- the server --- */

struct control_socket;

/*
 * Called for each permitted request.  Returns the reply (a new reference the
 * server takes), or NULL to answer later with control_socket_reply(client_id):
 * until then that client's further requests wait, in order.
 */
typedef json_t *(*control_handler_fn)(void *arg, const struct control_request *request,
				     uint64_t client_id, uid_t peer_uid);

/*
 * Listen on `path`: create its directory (0750) if missing, remove a stale
 * socket (refusing if a live server answers on it), bind with mode 0660 and
 * give it to root and `group` (CONTROL_GROUP if NULL; root's group when no such
 * group exists).  `admin_group` may be NULL.  Returns NULL with `error` filled.
 */
struct control_socket *control_socket_open(const char *path, const char *group, const char *admin_group,
					   control_handler_fn handler, void *arg,
					   char *error, size_t error_size);

/* Close every client and the listener, remove the socket file. */
void control_socket_close(struct control_socket *server);

/* Answer a deferred request; a client that has gone away is ignored.  Takes `reply`. */
void control_socket_reply(struct control_socket *server, uint64_t client_id, json_t *reply);

/*
 * The poll loop (main.c reads the clock once per turn and passes it down):
 * _prepare fills CONTROL_SOCKET_POLL_FDS entries of `fds` (unused ones with fd
 * -1; none if `max` is smaller) and lowers `*timeout_ms` to the next deadline
 * (idle timeouts, accept pause); returns how many it filled.  _dispatch takes
 * the same slice back after poll().
 */
unsigned control_socket_poll_prepare(struct control_socket *server, struct pollfd *fds, unsigned max,
				     uint64_t now_ms, int *timeout_ms);
void control_socket_poll_dispatch(struct control_socket *server, const struct pollfd *fds, unsigned count,
				  uint64_t now_ms);

unsigned control_socket_client_count(const struct control_socket *server);

#endif /* TETHER_CONTROL_SOCKET_H */
