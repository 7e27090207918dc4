/*
 * check.h: what the health engine (health.c) shares with its checkers
 * (check_tcp.c, check_tls.c, check_http.c).  Not for the daemon: it sees
 * health.h only.
 *
 * A check is a chain of phases, each a non-blocking step function that is
 * called again whenever its socket is ready and answers "done", "failed" or
 * "call me when readable/writable":
 *
 *   tcp    CONNECTING
 *   tls    CONNECTING -> TLS_HANDSHAKE -> TLS_TICKET
 *   http   CONNECTING -> HTTP_SEND -> HTTP_RECEIVE
 *   https  CONNECTING -> TLS_HANDSHAKE -> HTTP_SEND -> HTTP_RECEIVE
 *
 * The engine owns the timing (timeouts, scheduling), the epoll set and the
 * rise/fall state; a checker owns its protocol and writes its failure reason
 * into backend->error.  Latency runs from connect start to the moment the
 * outcome is known: the end of the chain, or for tls the end of the verified
 * handshake (the ticket wait after it cannot fail the check).
 */
#ifndef TETHER_CHECK_H
#define TETHER_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "config.h"
#include "health.h"

enum check_phase {
	CHECK_IDLE,                     /* no check in flight; waiting for the next */
	CHECK_CONNECTING,
	CHECK_TLS_HANDSHAKE,
	CHECK_TLS_TICKET,               /* tls: after a verified handshake, until a
					 * TLS 1.3 NewSessionTicket or a short wait */
	CHECK_HTTP_SEND,
	CHECK_HTTP_RECEIVE,
};

enum check_step {
	CHECK_STEP_DONE,                /* this phase succeeded: go to the next */
	CHECK_STEP_FAILED,              /* the check failed; backend->error says why */
	CHECK_STEP_WANT_READ,
	CHECK_STEP_WANT_WRITE,
};

/* How long a tls check waits for a TLS 1.3 ticket after the handshake (capped
 * by the check's timeout).  OpenSSL servers send theirs right after the
 * handshake. */
#define CHECK_TICKET_WAIT_MS 200

#define CHECK_HTTP_REQUEST_MAX  (CONFIG_HTTP_PATH_MAX + CONFIG_FQDN_MAX + 128)
#define CHECK_HTTP_STATUS_MAX   128  /* bytes of the response kept: the status line */

/* A pool as the engine runs it: what the file says plus the TLS context built
 * from it (one per pool: the CA is a pool setting). */
struct health_pool {
	char name[CONFIG_NAME_MAX];
	struct config_health conf;
	SSL_CTX *tls;                   /* tls, https; NULL if it could not be built */
	char tls_error[HEALTH_ERROR_MAX]; /* why tls is NULL */
};

/* A backend as the engine runs it.  `state` comes first: health.h hands out a
 * pointer to it. */
struct health_backend {
	struct health_backend_state state;
	struct health_pool *pool;
	unsigned pool_index, backend_index;
	char name[CONFIG_NAME_MAX];
	char fqdn[CONFIG_FQDN_MAX];     /* SNI, certificate name, HTTP Host; may be "" */
	uint32_t address;               /* host order */
	uint16_t port;                  /* = state.port */

	/* Scheduling (health.c). */
	uint64_t deadline_ns;           /* heap key: next start when idle, else timeout */
	size_t heap_slot;
	uint64_t next_start_ns;

	/* The check in flight. */
	enum check_phase phase;
	uint64_t started_ns;
	uint64_t answered_ns;           /* 0 until the outcome is known */
	int fd;                         /* -1 when none */
	uint32_t epoll_events;          /* what fd is registered for; 0 = not registered */
	SSL *ssl;
	bool handshake_done;            /* and the connection sound: close_notify on close */
	char error[HEALTH_ERROR_MAX];
	bool expiry_known;              /* this check saw a certificate */
	int32_t days_to_expiry;
	bool ticket_seen;               /* this check got a ticket of >= 16 bytes */
	bool ticket_wait_cut;           /* its timeout ended the ticket wait early */
	uint8_t ticket_key_name[HEALTH_KEY_NAME_LENGTH];
	size_t request_length, request_sent;
	char request[CHECK_HTTP_REQUEST_MAX];
	size_t response_length;
	char response[CHECK_HTTP_STATUS_MAX];
};

/* check_tcp.c: open a non-blocking socket (bound to `source` if not 0, host
 * order) and start connecting.  DONE if connected at once, WANT_WRITE while in
 * progress, FAILED with the reason. */
enum check_step check_tcp_open(struct health_backend *backend, uint32_t source);
/* Called when the connecting socket is writable: DONE or FAILED. */
enum check_step check_tcp_connected(struct health_backend *backend);
/* Close the socket (after draining what the peer already sent, so that the
 * close is a FIN, not a reset). */
void check_tcp_close(struct health_backend *backend);

/* check_tls.c: build a pool's client context (CA, ticket capture).  Returns 0,
 * or -1 with pool->tls_error set. */
int check_tls_context(struct health_pool *pool);
/* Set up the SSL object on the connected socket: DONE or FAILED. */
enum check_step check_tls_begin(struct health_backend *backend);
/* Drive the handshake and verify the certificate (chain, name) when it is
 * complete; records days to expiry. */
enum check_step check_tls_handshake(struct health_backend *backend);
/* After the handshake: DONE when a ticket has been seen, the server closed or
 * the version is below TLS 1.3; WANT_READ otherwise. */
enum check_step check_tls_ticket(struct health_backend *backend);
/* Describe why an SSL call on `backend` returned `result` (errno as the call
 * left it in `saved_errno`) in backend->error: "TLS: <doing> failed: <reason>"
 * or "TLS: connection closed by the server during the <doing>". */
void check_tls_failure(struct health_backend *backend, int result, int saved_errno,
		       const char *doing);
/* Send close_notify (best effort, never waits) and free the SSL object. */
void check_tls_close(struct health_backend *backend);

/* check_http.c: build the request for a connected (and, for https,
 * handshaken) backend: DONE. */
enum check_step check_http_begin(struct health_backend *backend);
enum check_step check_http_send(struct health_backend *backend);
/* Read until the status line is complete, then compare it. */
enum check_step check_http_receive(struct health_backend *backend);

#endif /* TETHER_CHECK_H */
