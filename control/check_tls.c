/*
 * check_tls.c: the TLS part of the tls and https checks (relayd's
 * check_tls.c), and the harvest of each backend's session-ticket key name.
 *
 * The handshake runs non-blocking on the connected socket: SSL_connect()
 * answers WANT_READ / WANT_WRITE and the engine calls again when epoll says
 * so.  SNI and the certificate name are the backend's fqdn (no fqdn: no SNI
 * and the chain alone is verified).
 *
 * Verification: the context verifies with SSL_VERIFY_NONE and the result is
 * read after the handshake (SSL_get_verify_result).  OpenSSL still builds and
 * checks the chain and the name, it only does not abort; so the check sees the
 * peer certificate even when it is bad, and reports days to expiry for an
 * expired certificate too ("certificate has expired", -36 days).  A check
 * whose verification failed is a failed check: nothing is sent to the server
 * and no ticket is harvested from it.
 *
 * Ticket key names: every session the server hands us passes through the
 * context's new-session callback (client session caching on, internal store
 * off, so nothing is kept).  In OpenSSL's ticket layout (and RFC 5077's
 * recommended one) the first 16 bytes of a ticket are the name of the key
 * that sealed it, so they identify the server, or the group of servers that
 * share ticket keys.  TLS 1.2 tickets arrive inside the handshake; TLS 1.3
 * tickets after it, so the tls check reads on for up to CHECK_TICKET_WAIT_MS.
 *
 * I/O goes through a small BIO of our own over send(MSG_NOSIGNAL)/recv: the
 * stock socket BIO write()s, and a write to a reset connection would raise
 * SIGPIPE in a daemon that must never die of a backend's behaviour.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "check.h"

/* ------------------------------------------------------------------------ */
/* A socket BIO that cannot raise SIGPIPE                                    */

static BIO_METHOD *check_tls_bio_method;

static int
check_tls_bio_write(BIO *bio, const char *data, int length)
{
	int fd = (int)(intptr_t)BIO_get_data(bio);
	ssize_t sent;

	BIO_clear_retry_flags(bio);
	sent = send(fd, data, (size_t)length, MSG_NOSIGNAL);
	if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		BIO_set_retry_write(bio);
	return (int)sent;
}

static int
check_tls_bio_read(BIO *bio, char *data, int length)
{
	int fd = (int)(intptr_t)BIO_get_data(bio);
	ssize_t received;

	BIO_clear_retry_flags(bio);
	received = recv(fd, data, (size_t)length, 0);
	if (received < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		BIO_set_retry_read(bio);
	return (int)received;
}

static long
check_tls_bio_ctrl(BIO *bio, int command, long number, void *pointer)
{
	(void)bio, (void)number, (void)pointer;
	return command == BIO_CTRL_FLUSH ? 1 : 0;
}

static int
check_tls_bio_create(BIO *bio)
{
	BIO_set_init(bio, 1);
	return 1;
}

static void
check_tls_bio_make(void)
{
	BIO_METHOD *method;

	method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "tether check socket");
	if (method == NULL)
		return;
	BIO_meth_set_write(method, check_tls_bio_write);
	BIO_meth_set_read(method, check_tls_bio_read);
	BIO_meth_set_ctrl(method, check_tls_bio_ctrl);
	BIO_meth_set_create(method, check_tls_bio_create);
	check_tls_bio_method = method;
}

/* The method is made once (pthread_once: engines in several threads are
 * fine) and lives as long as the process, like OpenSSL's own.  NULL if
 * OpenSSL could not allocate it. */
static const BIO_METHOD *
check_tls_bio(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, check_tls_bio_make);
	return check_tls_bio_method;
}

/* Free the BIO method at exit so that leak checkers see a clean heap. */
__attribute__((destructor)) static void
check_tls_bio_release(void)
{
	BIO_meth_free(check_tls_bio_method);
	check_tls_bio_method = NULL;
}

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */

/* The reason of OpenSSL error `code`, or of `fallback_errno` when there is
 * none: "wrong version number", "No such file or directory". */
static const char *
check_tls_reason(unsigned long code, int fallback_errno)
{
	const char *reason;

	if (code == 0)
		return fallback_errno != 0 ? strerror(fallback_errno) : "unknown error";
	if (ERR_SYSTEM_ERROR(code))
		return strerror(ERR_GET_REASON(code));
	reason = ERR_reason_error_string(code);
	return reason != NULL ? reason : "unknown error";
}

void
check_tls_failure(struct health_backend *backend, int result, int saved_errno,
		  const char *doing)
{
	int error = SSL_get_error(backend->ssl, result);
	unsigned long code = ERR_peek_error();

	if (error == SSL_ERROR_ZERO_RETURN ||
	    (error == SSL_ERROR_SYSCALL && code == 0 && saved_errno == 0))
		snprintf(backend->error, sizeof backend->error,
			 "TLS: connection closed by the server during the %s", doing);
	else
		snprintf(backend->error, sizeof backend->error, "TLS: %s failed: %s", doing,
			 check_tls_reason(code, saved_errno));
	if (error == SSL_ERROR_SSL || error == SSL_ERROR_SYSCALL)
		backend->handshake_done = false;    /* broken: no close_notify */
	ERR_clear_error();
}

/* ------------------------------------------------------------------------ */
/* Context                                                                   */

static int
check_tls_new_session(SSL *ssl, SSL_SESSION *session)
{
	struct health_backend *backend = SSL_get_app_data(ssl);
	const unsigned char *ticket;
	size_t length;

	if (backend == NULL || backend->ticket_seen)
		return 0;
	SSL_SESSION_get0_ticket(session, &ticket, &length);
	if (length >= HEALTH_KEY_NAME_LENGTH) {
		memcpy(backend->ticket_key_name, ticket, HEALTH_KEY_NAME_LENGTH);
		backend->ticket_seen = true;
	}
	return 0;   /* we keep no reference to the session */
}

int
check_tls_context(struct health_pool *pool)
{
	SSL_CTX *context;

	ERR_clear_error();
	if (check_tls_bio() == NULL || (context = SSL_CTX_new(TLS_client_method())) == NULL) {
		snprintf(pool->tls_error, sizeof pool->tls_error,
			 "TLS: cannot create a client context: %s",
			 check_tls_reason(ERR_peek_error(), ENOMEM));
		ERR_clear_error();
		return -1;
	}
	SSL_CTX_set_verify(context, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_session_cache_mode(context, SSL_SESS_CACHE_CLIENT |
				       SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(context, check_tls_new_session);
	if (pool->conf.ca[0] != '\0') {
		if (SSL_CTX_load_verify_locations(context, pool->conf.ca, NULL) != 1) {
			snprintf(pool->tls_error, sizeof pool->tls_error,
				 "TLS: cannot load CA file '%.*s': %s", 96, pool->conf.ca,
				 check_tls_reason(ERR_peek_error(), 0));
			ERR_clear_error();
			SSL_CTX_free(context);
			return -1;
		}
	} else if (SSL_CTX_set_default_verify_paths(context) != 1) {
		/* No system store: every chain will fail to verify, and say so. */
		ERR_clear_error();
	}
	pool->tls = context;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* One check                                                                 */

enum check_step
check_tls_begin(struct health_backend *backend)
{
	BIO *bio;

	if (backend->pool->tls == NULL) {
		snprintf(backend->error, sizeof backend->error, "%s", backend->pool->tls_error);
		return CHECK_STEP_FAILED;
	}
	ERR_clear_error();
	backend->ssl = SSL_new(backend->pool->tls);
	bio = BIO_new(check_tls_bio());
	if (backend->ssl == NULL || bio == NULL) {
		snprintf(backend->error, sizeof backend->error, "TLS: out of memory");
		BIO_free(bio);
		ERR_clear_error();
		return CHECK_STEP_FAILED;
	}
	BIO_set_data(bio, (void *)(intptr_t)backend->fd);
	SSL_set_bio(backend->ssl, bio, bio);
	SSL_set_app_data(backend->ssl, backend);
	if (backend->fqdn[0] != '\0' &&
	    (SSL_set_tlsext_host_name(backend->ssl, backend->fqdn) != 1 ||
	     SSL_set1_host(backend->ssl, backend->fqdn) != 1)) {
		snprintf(backend->error, sizeof backend->error, "TLS: cannot use name '%s'",
			 backend->fqdn);
		ERR_clear_error();
		return CHECK_STEP_FAILED;
	}
	SSL_set_connect_state(backend->ssl);
	return CHECK_STEP_DONE;
}

/* Whole days from now to `when`, floored (-0.5 day is -1: expired). */
static bool
check_tls_days_until(const ASN1_TIME *when, int32_t *days)
{
	int day, second;
	long long total;

	if (when == NULL || ASN1_TIME_diff(&day, &second, NULL, when) != 1)
		return false;
	total = (long long)day * 86400 + second;
	*days = (int32_t)(total >= 0 ? total / 86400 : -((-total + 86399) / 86400));
	return true;
}

/* After a complete handshake: days to expiry, then the verdict on the chain
 * and the name. */
static enum check_step
check_tls_verify(struct health_backend *backend)
{
	X509 *peer = SSL_get0_peer_certificate(backend->ssl);
	long result = SSL_get_verify_result(backend->ssl);

	if (peer == NULL) {
		snprintf(backend->error, sizeof backend->error,
			 "TLS: the server sent no certificate");
		return CHECK_STEP_FAILED;
	}
	backend->expiry_known = check_tls_days_until(X509_get0_notAfter(peer),
						      &backend->days_to_expiry);
	if (result == X509_V_ERR_HOSTNAME_MISMATCH) {
		snprintf(backend->error, sizeof backend->error,
			 "TLS: hostname mismatch (wanted %s)", backend->fqdn);
		return CHECK_STEP_FAILED;
	}
	if (result != X509_V_OK) {
		snprintf(backend->error, sizeof backend->error,
			 "TLS: certificate verify failed: %s",
			 X509_verify_cert_error_string(result));
		return CHECK_STEP_FAILED;
	}
	return CHECK_STEP_DONE;
}

enum check_step
check_tls_handshake(struct health_backend *backend)
{
	int result;

	ERR_clear_error();
	errno = 0;
	result = SSL_connect(backend->ssl);
	if (result == 1) {
		backend->handshake_done = true;
		return check_tls_verify(backend);
	}
	switch (SSL_get_error(backend->ssl, result)) {
	case SSL_ERROR_WANT_READ:
		return CHECK_STEP_WANT_READ;
	case SSL_ERROR_WANT_WRITE:
		return CHECK_STEP_WANT_WRITE;
	default:
		check_tls_failure(backend, result, errno, "handshake");
		return CHECK_STEP_FAILED;
	}
}

enum check_step
check_tls_ticket(struct health_backend *backend)
{
	char discard[1024];
	int result, rounds;

	if (backend->ticket_seen || SSL_version(backend->ssl) < TLS1_3_VERSION)
		return CHECK_STEP_DONE;
	/* SSL_read() processes post-handshake messages; a NewSessionTicket goes
	 * through check_tls_new_session().  Application data is not expected and
	 * is discarded, a bounded amount per wake-up. */
	for (rounds = 0; rounds < 16; rounds++) {
		ERR_clear_error();
		result = SSL_read(backend->ssl, discard, sizeof discard);
		if (backend->ticket_seen)
			break;
		if (result > 0)
			continue;
		switch (SSL_get_error(backend->ssl, result)) {
		case SSL_ERROR_WANT_READ:
			return CHECK_STEP_WANT_READ;
		case SSL_ERROR_WANT_WRITE:
			return CHECK_STEP_WANT_WRITE;
		case SSL_ERROR_ZERO_RETURN:     /* the server closed: passed all the same */
			ERR_clear_error();
			return CHECK_STEP_DONE;
		default:        /* broken: passed all the same, but no close_notify */
			backend->handshake_done = false;
			ERR_clear_error();
			return CHECK_STEP_DONE;
		}
	}
	ERR_clear_error();
	return backend->ticket_seen ? CHECK_STEP_DONE : CHECK_STEP_WANT_READ;
}

void
check_tls_close(struct health_backend *backend)
{
	if (backend->ssl == NULL)
		return;
	if (backend->handshake_done) {
		/* One close_notify, best effort: we never wait for the server's. */
		ERR_clear_error();
		(void)SSL_shutdown(backend->ssl);
	}
	SSL_free(backend->ssl);
	backend->ssl = NULL;
	backend->handshake_done = false;
	ERR_clear_error();
}
