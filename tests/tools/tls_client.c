/*
 * tls_client.c: tether-test-client, the suite's own TLS client for
 * ssl-session persistence tests.
 *
 * A "session" here is a chain of connections: one full handshake from a
 * --create-from address, then --resumes resumptions, each offering the TLS
 * session the chain holds, from a --resume-from address that differs from
 * the creator's whenever the list allows.  Chains are independent and run on
 * --concurrency threads; the connections of one chain run one after another,
 * because each may hand a fresher session (a new TLS 1.3 ticket) to the next.
 *
 * Why a C client and not Python's ssl module: the tests need to control the
 * bytes of the client's first flight (split the ClientHello into TCP
 * segments, re-frame it into several TLS records, pad it past 16 KB), which
 * no high-level TLS API allows.  So OpenSSL talks only to two memory BIOs:
 * the first flight is taken out of the write BIO, reshaped and written to
 * the socket by this file; after that, bytes are pumped between the socket
 * and the BIOs unchanged (a second ClientHello, after a HelloRetryRequest,
 * is not reshaped).  --pad sizes its extension from a dry run: a throw-away
 * SSL object with the same settings and session writes its ClientHello into
 * memory, and the difference to the wanted size becomes the padding.
 *
 * Sessions are captured with the new-session callback (the client cache
 * stores nothing internally), because TLS 1.3 tickets arrive after the
 * handshake and a connection may receive several: the newest one is kept,
 * and only once the whole response has been read.
 *
 * Output is one JSON document on stdout (results in chain order, then a
 * summary); progress and usage errors go to stderr.  Exit status: 0 if every
 * connection succeeded, 1 otherwise, 2 on usage or setup errors.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/*
 * The padding extension's type: in IANA's private-use range (65282-65535),
 * not handled by OpenSSL, so servers ignore it as an unknown extension.
 */
#define PAD_EXTENSION_TYPE	0xffaa
/* An extension's length field is 16 bits, and so is the extensions block. */
#define PAD_MAX			65000

#define RECORD_HEADER_LENGTH	5
#define RECORD_TYPE_HANDSHAKE	22
#define RECORD_LENGTH_MAX	65535

#define ADDRESSES_MAX		(1u << 20)
#define SPLIT_OFFSETS_MAX	64
#define IDENTITY_MAX		4096
#define HEADER_MAX		65536
#define RAW_REPLY_MAX		65536
#define READ_CHUNK		65536
#define ERROR_MAX		512
#define DRAIN_TIMEOUT_MS	1000
#define SERVER_NAMES_MAX	64

enum exit_status {
	EXIT_ALL_OK = 0,
	EXIT_SOME_FAILED = 1,
	EXIT_USAGE = 2,
};

enum session_offer {
	OFFER_LATEST,		/* the newest session the chain received */
	OFFER_ORIGINAL,		/* always the full handshake's session */
};

struct address_list {
	struct in_addr *addresses;
	size_t count;
};

struct options {
	struct sockaddr_in target;
	const char *server_name;	/* SNI, Host header, verified name */
	const char *ca_file;		/* NULL: no verification */
	int tls_version;		/* 0: negotiate 1.2-1.3 */
	bool tickets;
	unsigned sessions;
	unsigned resumes;
	unsigned concurrency;
	enum session_offer offer;
	struct address_list create_from;	/* empty: the kernel chooses */
	struct address_list resume_from;	/* empty: create_from */
	int timeout_ms;
	unsigned split;				/* 0: one write */
	size_t split_at[SPLIT_OFFSETS_MAX];
	unsigned split_at_count;
	unsigned split_delay_ms;
	unsigned records;			/* 0: as OpenSSL framed it */
	size_t pad;				/* 0: no padding extension */
	long long bulk;				/* -1: GET / */
	char *raw_text;				/* non-NULL: plain TCP mode */
	size_t raw_length;
	const char *sessions_out;		/* write each chain's last session */
	const char *sessions_in;		/* start chains from these sessions */
};

/* A TLS session kept across runs (--sessions-out, --sessions-in). */
struct saved_session {
	SSL_SESSION *session;
	char server[64];			/* the server that issued it */
};

/* One connection's outcome; printed as one element of "results". */
struct result {
	unsigned session;
	unsigned attempt;			/* 0: the full handshake */
	char source[INET_ADDRSTRLEN];
	unsigned local_port;
	bool ok;
	bool offered;				/* a session was offered */
	char server[64];			/* from the identity line */
	char session_from[64];			/* server that issued the offer */
	int port;				/* -1: unknown */
	char peer[64];
	char version[16];
	bool reused;				/* SSL_session_reused */
	int server_reused;			/* the server's reused=, -1: unknown */
	unsigned session_id_length;
	unsigned ticket_length;
	unsigned tickets;			/* sessions received */
	size_t hello_bytes;			/* first flight as written */
	unsigned hello_records;
	unsigned chunks;
	int status;				/* HTTP status, 0: none */
	long long body_bytes;
	char *reply;				/* raw mode */
	size_t reply_length;
	const char *closed_by;			/* raw mode: fin, rst */
	char error[ERROR_MAX];
	double seconds;
};

struct buffer {
	uint8_t *data;
	size_t length;
	size_t capacity;
};

/* One connection in progress. */
struct connection {
	const struct options *options;
	struct result *result;
	int fd;
	SSL *ssl;
	BIO *network_in;	/* socket -> OpenSSL */
	BIO *network_out;	/* OpenSSL -> socket */
	size_t pad_length;	/* payload of the padding extension */
	bool probe;		/* only measuring the ClientHello */
	SSL_SESSION *received;	/* newest session from the server; owned */
	bool peer_eof;
};

/* The HTTP response being read; bodies are counted, never kept. */
struct http_response {
	struct buffer head;
	bool head_done;
	int status;
	long long content_length;	/* -1: not given */
	long long body_bytes;
	bool text_plain;
	char body_start[IDENTITY_MAX];
	size_t body_start_length;
	char header_identity[IDENTITY_MAX];
};

struct run {
	const struct options *options;
	SSL_CTX *context;
	struct result *results;
	atomic_uint next;
	unsigned jobs;
	struct saved_session *loaded;		/* --sessions-in */
	size_t loaded_count;
	struct saved_session *kept;		/* --sessions-out: one per chain */
};

static const uint8_t pad_zeros[PAD_MAX];

/* ---------------------------------------------------------------- helpers */

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Returns 0 or -ENOMEM; the buffer keeps its contents on failure. */
static int
buffer_append(struct buffer *b, const void *data, size_t length)
{
	if (b->length + length > b->capacity) {
		size_t capacity = b->capacity ? b->capacity : 4096;
		uint8_t *grown;

		while (capacity < b->length + length)
			capacity *= 2;
		grown = realloc(b->data, capacity);
		if (grown == NULL)
			return -ENOMEM;
		b->data = grown;
		b->capacity = capacity;
	}
	memcpy(b->data + b->length, data, length);
	b->length += length;
	return 0;
}

static void
buffer_free(struct buffer *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

/* Sets result->error (printf style) unless an earlier error is there. */
static void __attribute__((format(printf, 2, 3)))
result_error(struct result *r, const char *format, ...)
{
	va_list ap;

	if (r->error[0] != '\0')
		return;
	va_start(ap, format);
	vsnprintf(r->error, sizeof(r->error), format, ap);
	va_end(ap);
}

/*
 * Sets result->error to what went wrong in OpenSSL: the context, the
 * SSL_get_error code, the thread's error queue and a failed verification.
 * Clears the error queue.
 */
static void
result_openssl_error(struct result *r, SSL *ssl, const char *what, int code)
{
	char text[ERROR_MAX] = "";
	size_t used = 0;
	unsigned long e;

	while ((e = ERR_get_error()) != 0 && used + 2 < sizeof(text)) {
		if (used > 0) {
			strcpy(text + used, "; ");
			used += 2;
		}
		ERR_error_string_n(e, text + used, sizeof(text) - used);
		used += strlen(text + used);
	}
	ERR_clear_error();
	if (ssl != NULL && (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) &&
	    SSL_get_verify_result(ssl) != X509_V_OK) {
		long v = SSL_get_verify_result(ssl);

		snprintf(text + used, sizeof(text) - used, "%sverify: %s",
			 used ? "; " : "", X509_verify_cert_error_string(v));
	} else if (used == 0 && code == SSL_ERROR_SYSCALL && errno != 0) {
		snprintf(text, sizeof(text), "%s", strerror(errno));
	} else if (used == 0) {
		snprintf(text, sizeof(text), "SSL_get_error %d", code);
	}
	result_error(r, "%s: %s", what, text);
}

/* ---------------------------------------------------------------- sockets */

/*
 * Opens a non-blocking TCP socket bound to source (if given), with
 * TCP_NODELAY, connected to the target within the timeout.  Returns the
 * descriptor, or -1 with result->error set.
 */
static int
socket_open(const struct options *o, const struct in_addr *source,
	    struct result *r)
{
	struct sockaddr_in local = { .sin_family = AF_INET };
	socklen_t length = sizeof(local);
	struct pollfd p;
	int fd, one = 1, error = 0;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		result_error(r, "socket: %s", strerror(errno));
		return -1;
	}
	/* The port is chosen at connect(), so one address can reach many targets. */
	setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (source != NULL) {
		local.sin_addr = *source;
		if (bind(fd, (struct sockaddr *)&local, sizeof(local)) != 0) {
			result_error(r, "bind %s: %s", r->source, strerror(errno));
			goto fail;
		}
	}
	if (connect(fd, (const struct sockaddr *)&o->target, sizeof(o->target)) != 0) {
		if (errno != EINPROGRESS) {
			result_error(r, "connect: %s", strerror(errno));
			goto fail;
		}
		p = (struct pollfd){ .fd = fd, .events = POLLOUT };
		if (poll(&p, 1, o->timeout_ms) == 0) {
			result_error(r, "connect: timed out after %d ms", o->timeout_ms);
			goto fail;
		}
		length = sizeof(error);
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length);
		if (error != 0) {
			result_error(r, "connect: %s", strerror(error));
			goto fail;
		}
	}
	length = sizeof(local);
	if (getsockname(fd, (struct sockaddr *)&local, &length) == 0) {
		inet_ntop(AF_INET, &local.sin_addr, r->source, sizeof(r->source));
		r->local_port = ntohs(local.sin_port);
	}
	return fd;
fail:
	close(fd);
	return -1;
}

/* Writes everything within the timeout.  Returns 0 or a negative errno. */
static int
socket_write_all(int fd, const uint8_t *data, size_t length, int timeout_ms)
{
	while (length > 0) {
		ssize_t n = send(fd, data, length, MSG_NOSIGNAL);

		if (n > 0) {
			data += n;
			length -= (size_t)n;
		} else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			struct pollfd p = { .fd = fd, .events = POLLOUT };

			if (poll(&p, 1, timeout_ms) == 0)
				return -ETIMEDOUT;
		} else {
			return n < 0 ? -errno : -EIO;
		}
	}
	return 0;
}

/*
 * Reads what is there, waiting up to the timeout.  Returns the byte count,
 * 0 at end of stream, or a negative errno (-ETIMEDOUT, -ECONNRESET, ...).
 */
static ssize_t
socket_read(int fd, uint8_t *data, size_t size, int timeout_ms)
{
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;
		int ready = poll(&p, 1, timeout_ms);

		if (ready == 0)
			return -ETIMEDOUT;
		if (ready < 0 && errno != EINTR)
			return -errno;
		n = recv(fd, data, size, 0);
		if (n >= 0) {
			/*
			 * ACK at once: a server with Nagle on (lab_server.py)
			 * holds its response behind unacknowledged tickets,
			 * 40 ms of delayed ACK per connection otherwise.
			 */
			int one = 1;

			setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
			return n;
		}
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
	}
}

/*
 * Writes the first flight the way the options ask: in --split N roughly equal
 * chunks or at the --split-at offsets (those past the end are ignored), with
 * a pause after each chunk but the last so that each leaves as its own
 * segment.  Returns 0 or a negative errno; counts the chunks in the result.
 */
static int
first_flight_send(int fd, const struct options *o, const uint8_t *data,
		  size_t length, struct result *r)
{
	size_t bounds[SPLIT_OFFSETS_MAX + 2];
	unsigned count = 0, i;

	bounds[count++] = 0;
	if (o->split > 1) {
		unsigned parts = o->split < length ? o->split : (unsigned)length;

		for (i = 1; i < parts; i++)
			bounds[count++] = length * i / parts;
	} else {
		for (i = 0; i < o->split_at_count; i++)
			if (o->split_at[i] > bounds[count - 1] && o->split_at[i] < length)
				bounds[count++] = o->split_at[i];
	}
	bounds[count] = length;
	r->chunks = count;
	for (i = 0; i < count; i++) {
		int error = socket_write_all(fd, data + bounds[i],
					     bounds[i + 1] - bounds[i], o->timeout_ms);

		if (error != 0)
			return error;
		if (i + 1 < count)
			sleep_ms(o->split_delay_ms);
	}
	return 0;
}

/* ------------------------------------------------------------ first flight */

/*
 * Re-frames a first flight of handshake records into `records` records of
 * roughly equal payload, each with a 5-byte header of type 22 and the first
 * record's version.  Returns 0, or -1 with result->error set when the flight
 * is not handshake records or cannot be cut that way.
 */
static int
first_flight_reframe(struct buffer *flight, unsigned records, struct result *r)
{
	struct buffer payload = { 0 }, framed = { 0 };
	size_t offset = 0, i;
	uint8_t version[2];

	if (flight->length < RECORD_HEADER_LENGTH) {
		result_error(r, "records: first flight of %zu bytes", flight->length);
		return -1;
	}
	memcpy(version, flight->data + 1, 2);
	while (offset < flight->length) {
		const uint8_t *h = flight->data + offset;
		size_t length;

		if (flight->length - offset < RECORD_HEADER_LENGTH ||
		    h[0] != RECORD_TYPE_HANDSHAKE) {
			result_error(r, "records: the first flight is not handshake records "
				     "(offset %zu)", offset);
			goto fail;
		}
		length = (size_t)h[3] << 8 | h[4];
		if (flight->length - offset - RECORD_HEADER_LENGTH < length) {
			result_error(r, "records: truncated record at offset %zu", offset);
			goto fail;
		}
		if (buffer_append(&payload, h + RECORD_HEADER_LENGTH, length) != 0)
			goto nomem;
		offset += RECORD_HEADER_LENGTH + length;
	}
	if (records > payload.length) {
		result_error(r, "records: %u records for %zu handshake bytes",
			     records, payload.length);
		goto fail;
	}
	for (i = 0; i < records; i++) {
		size_t start = payload.length * i / records;
		size_t length = payload.length * (i + 1) / records - start;
		uint8_t header[RECORD_HEADER_LENGTH] = {
			RECORD_TYPE_HANDSHAKE, version[0], version[1],
			(uint8_t)(length >> 8), (uint8_t)length,
		};

		if (length > RECORD_LENGTH_MAX) {
			result_error(r, "records: %zu handshake bytes do not fit in %u "
				     "records", payload.length, records);
			goto fail;
		}
		if (buffer_append(&framed, header, sizeof(header)) != 0 ||
		    buffer_append(&framed, payload.data + start, length) != 0)
			goto nomem;
	}
	buffer_free(&payload);
	buffer_free(flight);
	*flight = framed;
	return 0;
nomem:
	result_error(r, "records: out of memory");
fail:
	buffer_free(&payload);
	buffer_free(&framed);
	return -1;
}

/* Counts the records in a first flight (headers walked, not checked). */
static unsigned
first_flight_records(const struct buffer *flight)
{
	size_t offset = 0;
	unsigned count = 0;

	while (flight->length - offset >= RECORD_HEADER_LENGTH) {
		const uint8_t *h = flight->data + offset;

		offset += RECORD_HEADER_LENGTH + ((size_t)h[3] << 8 | h[4]);
		count++;
		if (offset > flight->length)
			break;
	}
	return count;
}

/* --------------------------------------------------------------- OpenSSL */

/*
 * The new-session callback: keeps the newest session the server gave this
 * connection.  Returns 1 when it keeps the reference, 0 when it does not.
 */
static int
on_new_session(SSL *ssl, SSL_SESSION *session)
{
	struct connection *c = SSL_get_app_data(ssl);

	if (c == NULL || c->probe)
		return 0;
	if (c->received != NULL)
		SSL_SESSION_free(c->received);
	c->received = session;
	c->result->tickets++;
	return 1;
}

/* Adds the padding extension to the ClientHello, pad_length zero bytes long. */
static int
on_add_padding(SSL *ssl, unsigned type, unsigned context,
	       const unsigned char **out, size_t *out_length, X509 *x,
	       size_t chain_index, int *alert, void *argument)
{
	struct connection *c = SSL_get_app_data(ssl);

	(void)type, (void)context, (void)x, (void)chain_index, (void)alert;
	(void)argument;
	*out = pad_zeros;
	*out_length = c != NULL ? c->pad_length : 0;
	return 1;
}

/*
 * Builds the shared client context from the options.  Returns it, or NULL
 * after printing why to stderr.
 */
static SSL_CTX *
context_new(const struct options *o)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL)
		goto fail;
	SSL_CTX_set_min_proto_version(ctx, o->tls_version ? o->tls_version : TLS1_2_VERSION);
	SSL_CTX_set_max_proto_version(ctx, o->tls_version ? o->tls_version : TLS1_3_VERSION);
	if (!o->tickets)
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
				       SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, on_new_session);
	if (o->ca_file != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, o->ca_file, NULL) != 1) {
			fprintf(stderr, "tether-test-client: --ca %s: cannot load\n",
				o->ca_file);
			goto fail;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	}
	if (o->pad > 0 &&
	    SSL_CTX_add_custom_ext(ctx, PAD_EXTENSION_TYPE, SSL_EXT_CLIENT_HELLO,
				   on_add_padding, NULL, NULL, NULL, NULL) != 1)
		goto fail;
	return ctx;
fail:
	ERR_print_errors_fp(stderr);
	SSL_CTX_free(ctx);
	return NULL;
}

/*
 * Creates the connection's SSL object talking to two memory BIOs, with SNI,
 * the verified name and the offered session.  Returns 0 or -1 (error set).
 */
static int
connection_ssl_new(struct connection *c, SSL_CTX *ctx, SSL_SESSION *offer)
{
	const struct options *o = c->options;

	c->ssl = SSL_new(ctx);
	c->network_in = BIO_new(BIO_s_mem());
	c->network_out = BIO_new(BIO_s_mem());
	if (c->ssl == NULL || c->network_in == NULL || c->network_out == NULL) {
		BIO_free(c->network_in);
		BIO_free(c->network_out);
		c->network_in = c->network_out = NULL;
		result_openssl_error(c->result, NULL, "SSL_new", 0);
		return -1;
	}
	SSL_set_bio(c->ssl, c->network_in, c->network_out);
	SSL_set_app_data(c->ssl, c);
	SSL_set_connect_state(c->ssl);
	if (o->server_name != NULL) {
		SSL_set_tlsext_host_name(c->ssl, o->server_name);
		if (o->ca_file != NULL)
			SSL_set1_host(c->ssl, o->server_name);
	}
	if (offer != NULL && SSL_set_session(c->ssl, offer) != 1) {
		result_openssl_error(c->result, NULL, "SSL_set_session", 0);
		return -1;
	}
	return 0;
}

static void
connection_ssl_free(struct connection *c)
{
	SSL_free(c->ssl);	/* frees both BIOs */
	c->ssl = NULL;
	c->network_in = c->network_out = NULL;
}

/*
 * Measures the ClientHello this connection would send with an empty padding
 * extension: a throw-away SSL object with the same settings and session
 * writes its first flight into memory.  Returns its length, or 0 on error.
 */
static size_t
hello_probe_length(SSL_CTX *ctx, const struct options *o, SSL_SESSION *offer)
{
	struct result scratch = { 0 };
	struct connection probe = {
		.options = o, .result = &scratch, .fd = -1, .probe = true,
	};
	size_t length = 0;

	if (connection_ssl_new(&probe, ctx, offer) == 0 &&
	    SSL_do_handshake(probe.ssl) <= 0 &&
	    SSL_get_error(probe.ssl, -1) == SSL_ERROR_WANT_READ)
		length = BIO_ctrl_pending(probe.network_out);
	ERR_clear_error();
	connection_ssl_free(&probe);
	return length;
}

/* Writes what OpenSSL has for the socket.  Returns 0 or -1 (error set). */
static int
connection_flush(struct connection *c)
{
	uint8_t data[16384];
	int n;

	while (BIO_ctrl_pending(c->network_out) > 0) {
		int error;

		n = BIO_read(c->network_out, data, sizeof(data));
		if (n <= 0)
			break;
		error = socket_write_all(c->fd, data, (size_t)n, c->options->timeout_ms);
		if (error != 0) {
			result_error(c->result, "write: %s", strerror(-error));
			return -1;
		}
	}
	return 0;
}

/*
 * Moves bytes from the socket to OpenSSL, waiting up to timeout_ms.
 * Returns 1 with data, 0 at end of stream (OpenSSL then sees EOF), -1 on
 * error (error set with the phase's name, unless phase is NULL).
 */
static int
connection_receive(struct connection *c, int timeout_ms, const char *phase)
{
	uint8_t data[READ_CHUNK];
	ssize_t n = socket_read(c->fd, data, sizeof(data), timeout_ms);

	if (n > 0) {
		BIO_write(c->network_in, data, (int)n);
		return 1;
	}
	if (n == 0) {
		c->peer_eof = true;
		BIO_set_mem_eof_return(c->network_in, 0);
		return 0;
	}
	if (phase != NULL && n == -ETIMEDOUT)
		result_error(c->result, "%s: read timed out after %d ms", phase, timeout_ms);
	else if (phase != NULL)
		result_error(c->result, "%s: read: %s", phase, strerror((int)-n));
	return -1;
}

/*
 * Takes the ClientHello out of OpenSSL, reshapes it as the options ask and
 * writes it; then pumps bytes until the handshake completes.  Returns 0 or
 * -1 (error set).
 */
static int
connection_handshake(struct connection *c)
{
	const struct options *o = c->options;
	struct buffer flight = { 0 };
	uint8_t data[16384];
	int ret, n, error;

	ret = SSL_do_handshake(c->ssl);
	if (ret > 0 || SSL_get_error(c->ssl, ret) != SSL_ERROR_WANT_READ) {
		result_openssl_error(c->result, c->ssl, "ClientHello",
				     SSL_get_error(c->ssl, ret));
		return -1;
	}
	while ((n = BIO_read(c->network_out, data, sizeof(data))) > 0)
		if (buffer_append(&flight, data, (size_t)n) != 0) {
			result_error(c->result, "ClientHello: out of memory");
			goto fail;
		}
	if (o->records > 0 && first_flight_reframe(&flight, o->records, c->result) != 0)
		goto fail;
	c->result->hello_bytes = flight.length;
	c->result->hello_records = first_flight_records(&flight);
	error = first_flight_send(c->fd, o, flight.data, flight.length, c->result);
	if (error != 0) {
		result_error(c->result, "write ClientHello: %s", strerror(-error));
		goto fail;
	}
	buffer_free(&flight);

	for (;;) {
		ret = SSL_do_handshake(c->ssl);
		if (connection_flush(c) != 0)
			return -1;
		if (ret == 1)
			return 0;
		error = SSL_get_error(c->ssl, ret);
		if (error != SSL_ERROR_WANT_READ) {
			result_openssl_error(c->result, c->ssl, "handshake", error);
			return -1;
		}
		ret = connection_receive(c, o->timeout_ms, "handshake");
		if (ret < 0)
			return -1;
		if (ret == 0 && SSL_do_handshake(c->ssl) != 1) {
			ERR_clear_error();
			result_error(c->result, "handshake: the server closed the "
				     "connection");
			return -1;
		}
	}
fail:
	buffer_free(&flight);
	return -1;
}

/* ------------------------------------------------------------------- HTTP */

/* Copies the value of "name=" from an identity line into out (empty if none). */
static void
identity_field(const char *line, const char *name, char *out, size_t size)
{
	size_t name_length = strlen(name);
	const char *p = line;

	out[0] = '\0';
	while (*p != '\0') {
		size_t word = strcspn(p, " \r\n");

		if (word > name_length && strncmp(p, name, name_length) == 0 &&
		    p[name_length] == '=') {
			size_t length = word - name_length - 1;

			if (length >= size)
				length = size - 1;
			memcpy(out, p + name_length + 1, length);
			out[length] = '\0';
			return;
		}
		p += word;
		p += strspn(p, " \r\n");
	}
}

/* Parses the status line and the headers the client cares about. */
static int
http_parse_head(struct http_response *h, struct result *r)
{
	char *text = (char *)h->head.data, *line, *save = NULL;

	line = strtok_r(text, "\r\n", &save);
	if (line == NULL || strncmp(line, "HTTP/", 5) != 0 ||
	    sscanf(line, "HTTP/%*s %d", &h->status) != 1) {
		result_error(r, "not an HTTP response: %.60s", line ? line : "");
		return -1;
	}
	while ((line = strtok_r(NULL, "\r\n", &save)) != NULL) {
		char *value = strchr(line, ':');

		if (value == NULL)
			continue;
		*value++ = '\0';
		value += strspn(value, " \t");
		if (strcasecmp(line, "Content-Length") == 0)
			h->content_length = strtoll(value, NULL, 10);
		else if (strcasecmp(line, "Content-Type") == 0)
			h->text_plain = strncasecmp(value, "text/plain", 10) == 0;
		else if (strcasecmp(line, "X-Lab-Identity") == 0)
			snprintf(h->header_identity, sizeof(h->header_identity), "%s", value);
	}
	return 0;
}

static void
http_body(struct http_response *h, const uint8_t *data, size_t length)
{
	size_t room = sizeof(h->body_start) - 1 - h->body_start_length;

	if (length < room)
		room = length;
	memcpy(h->body_start + h->body_start_length, data, room);
	h->body_start_length += room;
	h->body_start[h->body_start_length] = '\0';
	h->body_bytes += (long long)length;
}

/* Feeds response bytes.  Returns 0 or -1 (error set). */
static int
http_feed(struct http_response *h, const uint8_t *data, size_t length,
	  struct result *r)
{
	uint8_t *end;
	size_t head_length, old = h->head.length;

	if (h->head_done) {
		http_body(h, data, length);
		return 0;
	}
	if (buffer_append(&h->head, data, length) != 0) {
		result_error(r, "response: out of memory");
		return -1;
	}
	end = memmem(h->head.data + (old > 3 ? old - 3 : 0),
		     h->head.length - (old > 3 ? old - 3 : 0), "\r\n\r\n", 4);
	if (end == NULL) {
		if (h->head.length > HEADER_MAX) {
			result_error(r, "response header over %d bytes", HEADER_MAX);
			return -1;
		}
		return 0;
	}
	head_length = (size_t)(end - h->head.data) + 4;
	h->head_done = true;
	if (head_length < h->head.length)
		http_body(h, h->head.data + head_length, h->head.length - head_length);
	h->head.data[head_length - 2] = '\0';
	return http_parse_head(h, r);
}

static bool
http_complete(const struct http_response *h)
{
	return h->head_done && h->content_length >= 0 &&
	       h->body_bytes >= h->content_length;
}

/* Fills server, port, peer and the server's reused= from the identity line. */
static void
http_identity(const struct http_response *h, struct result *r)
{
	const char *line = h->text_plain ? h->body_start : h->header_identity;
	char value[64];

	identity_field(line, "server", r->server, sizeof(r->server));
	if (r->server[0] == '\0') {
		line = h->header_identity;
		identity_field(line, "server", r->server, sizeof(r->server));
	}
	identity_field(line, "peer", r->peer, sizeof(r->peer));
	identity_field(line, "port", value, sizeof(value));
	if (value[0] != '\0')
		r->port = atoi(value);
	identity_field(line, "reused", value, sizeof(value));
	if (value[0] != '\0')
		r->server_reused = atoi(value);
}

/*
 * Sends the GET and reads the response up to its Content-Length (or to the
 * end of the stream).  Returns 0 or -1 (error set).
 */
static int
connection_exchange(struct connection *c)
{
	const struct options *o = c->options;
	struct http_response h = { .content_length = -1 };
	char host[INET_ADDRSTRLEN], request[512], path[64] = "/";
	uint8_t data[16384];
	int length, n, error, ret = -1;

	if (o->bulk >= 0)
		snprintf(path, sizeof(path), "/bytes/%lld", o->bulk);
	inet_ntop(AF_INET, &o->target.sin_addr, host, sizeof(host));
	length = snprintf(request, sizeof(request), "GET %s HTTP/1.1\r\nHost: %s\r\n"
			  "User-Agent: tether-test-client\r\nConnection: close\r\n\r\n",
			  path, o->server_name ? o->server_name : host);
	if (SSL_write(c->ssl, request, length) != length) {
		result_openssl_error(c->result, c->ssl, "write request", 0);
		return -1;
	}
	if (connection_flush(c) != 0)
		return -1;
	while (!http_complete(&h)) {
		n = SSL_read(c->ssl, data, sizeof(data));
		if (n > 0) {
			if (http_feed(&h, data, (size_t)n, c->result) != 0)
				goto out;
			continue;
		}
		error = SSL_get_error(c->ssl, n);
		if (connection_flush(c) != 0)
			goto out;
		if (error == SSL_ERROR_WANT_READ) {
			if (connection_receive(c, o->timeout_ms, "read response") < 0)
				goto out;
			continue;
		}
		if (error == SSL_ERROR_ZERO_RETURN || c->peer_eof) {
			ERR_clear_error();
			break;		/* close_notify, or EOF without it */
		}
		result_openssl_error(c->result, c->ssl, "read response", error);
		goto out;
	}
	c->result->status = h.status;
	c->result->body_bytes = h.body_bytes;
	if (!h.head_done) {
		result_error(c->result, "connection closed before the response header "
			     "(%zu bytes read)", h.head.length);
		goto out;
	}
	http_identity(&h, c->result);
	if (h.status != 200)
		result_error(c->result, "HTTP status %d", h.status);
	else if (h.content_length >= 0 && h.body_bytes != h.content_length)
		result_error(c->result, "short body: %lld of %lld bytes",
			     h.body_bytes, h.content_length);
	else
		ret = 0;
out:
	buffer_free(&h.head);
	return ret;
}

/*
 * Ends the TLS connection politely: our close_notify, then up to a second
 * for the server's (or its FIN).  Never fails the connection.  Sending
 * close_notify also keeps OpenSSL from marking the session not resumable.
 */
static void
connection_shutdown(struct connection *c)
{
	double deadline;

	if (!SSL_is_init_finished(c->ssl))
		return;
	if (SSL_shutdown(c->ssl) < 0 || connection_flush(c) != 0) {
		ERR_clear_error();
		return;
	}
	/* A second SSL_shutdown reads on to the server's close_notify. */
	deadline = now_seconds() + DRAIN_TIMEOUT_MS / 1000.0;
	while (!c->peer_eof && now_seconds() < deadline) {
		int n = SSL_shutdown(c->ssl);

		if (n != 0 && (n == 1 || SSL_get_error(c->ssl, n) != SSL_ERROR_WANT_READ))
			break;
		if (connection_receive(c, DRAIN_TIMEOUT_MS, NULL) <= 0)
			break;
	}
	ERR_clear_error();
}

/* Fills the TLS facts of a finished handshake into the result. */
static void
connection_describe(struct connection *c, SSL_SESSION *offer)
{
	struct result *r = c->result;
	SSL_SESSION *kept = c->received ? c->received : offer;
	const unsigned char *ticket;
	size_t ticket_length = 0;
	unsigned id_length = 0;

	snprintf(r->version, sizeof(r->version), "%s", SSL_get_version(c->ssl));
	r->reused = SSL_session_reused(c->ssl) == 1;
	if (kept == NULL)
		kept = SSL_get_session(c->ssl);
	if (kept != NULL) {
		SSL_SESSION_get_id(kept, &id_length);
		SSL_SESSION_get0_ticket(kept, &ticket, &ticket_length);
	}
	r->session_id_length = id_length;
	r->ticket_length = (unsigned)ticket_length;
}

/*
 * Runs one TLS connection from source (NULL: the kernel chooses) offering
 * offer (NULL: a full handshake).  Fills the result; returns the newest
 * session the server gave, owned by the caller, or NULL.
 */
static SSL_SESSION *
connection_run(SSL_CTX *ctx, const struct options *o, const struct in_addr *source,
	       SSL_SESSION *offer, struct result *r)
{
	struct connection c = { .options = o, .result = r, .fd = -1 };
	double started = now_seconds();
	SSL_SESSION *received = NULL;

	ERR_clear_error();
	r->offered = offer != NULL;
	if (source != NULL)
		inet_ntop(AF_INET, source, r->source, sizeof(r->source));
	if (o->pad > 0) {
		size_t base = hello_probe_length(ctx, o, offer);

		if (base == 0) {
			result_error(r, "pad: could not measure the ClientHello");
			goto out;
		}
		c.pad_length = o->pad > base ? o->pad - base : 0;
	}
	if (connection_ssl_new(&c, ctx, offer) != 0)
		goto out;
	c.fd = socket_open(o, source, r);
	if (c.fd < 0)
		goto out;
	if (connection_handshake(&c) != 0)
		goto out;
	connection_describe(&c, offer);
	if (connection_exchange(&c) != 0)
		goto out;
	/* TLS 1.3 tickets come after the handshake: describe again. */
	connection_describe(&c, offer);
	r->ok = true;
	received = c.received;
	c.received = NULL;
out:
	if (c.ssl != NULL)
		connection_shutdown(&c);
	if (c.fd >= 0)
		close(c.fd);
	if (c.received != NULL)
		SSL_SESSION_free(c.received);
	connection_ssl_free(&c);
	ERR_clear_error();
	r->seconds = now_seconds() - started;
	return received;
}

/* -------------------------------------------------------------- raw mode */

/*
 * Sends the raw text on plain TCP (split as asked) and reads the reply until
 * the server closes (FIN or RST) or the timeout.
 */
static void
raw_run(const struct options *o, const struct in_addr *source, struct result *r)
{
	double started = now_seconds();
	struct buffer reply = { 0 };
	uint8_t data[READ_CHUNK];
	int fd, error;

	if (source != NULL)
		inet_ntop(AF_INET, source, r->source, sizeof(r->source));
	fd = socket_open(o, source, r);
	if (fd < 0)
		goto out;
	r->hello_bytes = o->raw_length;
	error = first_flight_send(fd, o, (const uint8_t *)o->raw_text, o->raw_length, r);
	if (error != 0) {
		result_error(r, "write: %s", strerror(-error));
		goto out;
	}
	for (;;) {
		ssize_t n = socket_read(fd, data, sizeof(data), o->timeout_ms);

		if (n > 0) {
			size_t keep = RAW_REPLY_MAX - reply.length;

			if ((size_t)n < keep)
				keep = (size_t)n;
			if (buffer_append(&reply, data, keep) != 0) {
				result_error(r, "reply: out of memory");
				break;
			}
			r->body_bytes += n;
		} else if (n == 0) {
			r->closed_by = "fin";
			r->ok = true;
			break;
		} else if (n == -ECONNRESET) {
			r->closed_by = "rst";
			r->ok = true;
			break;
		} else {
			result_error(r, "reply: %s after %lld bytes", n == -ETIMEDOUT ?
				     "timed out" : strerror((int)-n), r->body_bytes);
			break;
		}
	}
	r->reply = (char *)reply.data;
	r->reply_length = reply.length;
out:
	if (fd >= 0)
		close(fd);
	r->seconds = now_seconds() - started;
}

/* ----------------------------------------------------------------- chains */

static const struct in_addr *
address_pick(const struct address_list *list, size_t index)
{
	return list->count ? &list->addresses[index % list->count] : NULL;
}

/*
 * The address of resumption `attempt` (1-based) of session `session`:
 * round-robin over the resume list starting at the session's index, and if
 * that is the creator's address and the list has another, the next one.
 */
static const struct in_addr *
resume_source(const struct options *o, unsigned session, unsigned attempt,
	      const struct in_addr *creator)
{
	const struct address_list *list = o->resume_from.count ?
		&o->resume_from : &o->create_from;
	size_t index = (size_t)session + attempt - 1;
	const struct in_addr *pick = address_pick(list, index);

	if (pick != NULL && creator != NULL && list->count > 1 &&
	    pick->s_addr == creator->s_addr)
		pick = address_pick(list, index + 1);
	return pick;
}

/*
 * Runs session `session`'s chain: the full handshake (or, with --sessions-in,
 * a resumption of a loaded session), then the resumptions.
 */
static void
chain_run(struct run *run, unsigned session)
{
	const struct options *o = run->options;
	struct result *results = run->results + (size_t)session * (o->resumes + 1);
	const struct in_addr *creator = address_pick(&o->create_from, session);
	const struct saved_session *loaded = run->loaded_count ?
		&run->loaded[session % run->loaded_count] : NULL;
	SSL_SESSION *original, *latest;
	const char *latest_from = results[0].server;
	unsigned attempt;

	if (loaded != NULL)
		snprintf(results[0].session_from, sizeof(results[0].session_from), "%s",
			 loaded->server);
	original = connection_run(run->context, o, creator,
				  loaded ? loaded->session : NULL, &results[0]);
	if (original == NULL && loaded != NULL) {
		/* resumed (TLS 1.2 sends no new session) or failed: keep the loaded one */
		original = loaded->session;
		SSL_SESSION_up_ref(original);
		latest_from = loaded->server;
	}
	latest = original;
	if (original != NULL)
		SSL_SESSION_up_ref(original);
	for (attempt = 1; attempt <= o->resumes; attempt++) {
		struct result *r = &results[attempt];
		const struct in_addr *source = resume_source(o, session, attempt, creator);
		SSL_SESSION *offer = o->offer == OFFER_ORIGINAL ? original : latest;
		SSL_SESSION *received;

		if (offer == NULL) {
			if (source != NULL)
				inet_ntop(AF_INET, source, r->source, sizeof(r->source));
			result_error(r, "skipped: session %u has no session to offer (%s)",
				     session, results[0].ok ? "the server sent none" :
				     "its full handshake failed");
			continue;
		}
		snprintf(r->session_from, sizeof(r->session_from), "%s",
			 o->offer == OFFER_ORIGINAL ? results[0].server : latest_from);
		received = connection_run(run->context, o, source, offer, r);
		if (received != NULL) {
			SSL_SESSION_free(latest);
			latest = received;
			latest_from = r->server;
		}
	}
	if (run->kept != NULL && latest != NULL) {
		run->kept[session].session = latest;
		snprintf(run->kept[session].server, sizeof(run->kept[session].server), "%s",
			 latest_from);
		latest = NULL;
	}
	SSL_SESSION_free(original);
	SSL_SESSION_free(latest);
}

/*
 * The file of --sessions-out and --sessions-in: per session a line
 * "server NAME" (the server that issued it), then the session in PEM.
 */

/* Writes every chain's kept session to path.  Returns 0 or -errno. */
static int
sessions_write(const char *path, const struct saved_session *kept, size_t count)
{
	FILE *file = fopen(path, "w");
	size_t i;
	int ret = 0;

	if (file == NULL)
		return -errno;
	for (i = 0; i < count && ret == 0; i++) {
		if (kept[i].session == NULL)
			continue;
		if (fprintf(file, "server %s\n", kept[i].server[0] ? kept[i].server : "-") < 0 ||
		    PEM_write_SSL_SESSION(file, kept[i].session) != 1)
			ret = -EIO;
	}
	if (fclose(file) != 0 && ret == 0)
		ret = -errno;
	return ret;
}

/*
 * Reads the sessions sessions_write() wrote.  Fills *loaded (the caller frees
 * it with sessions_free) and returns how many, or -errno (none, or a bad file).
 */
static ssize_t
sessions_read(const char *path, struct saved_session **loaded)
{
	FILE *file = fopen(path, "r");
	struct saved_session *list = NULL;
	size_t count = 0;
	char line[128];

	*loaded = NULL;
	if (file == NULL)
		return -errno;
	while (fgets(line, sizeof(line), file) != NULL) {
		struct saved_session *grown;
		char *name = line + strlen("server ");

		if (strncmp(line, "server ", strlen("server ")) != 0)
			goto bad;
		name[strcspn(name, "\n")] = '\0';
		grown = realloc(list, (count + 1) * sizeof(*list));
		if (grown == NULL)
			goto bad;
		list = grown;
		snprintf(list[count].server, sizeof(list[count].server), "%.*s",
			 (int)sizeof(list[count].server) - 1, name);
		list[count].session = PEM_read_SSL_SESSION(file, NULL, NULL, NULL);
		if (list[count].session == NULL)
			goto bad;
		count++;
	}
	fclose(file);
	if (count == 0) {
		free(list);
		return -ENOENT;
	}
	*loaded = list;
	return (ssize_t)count;
bad:
	fclose(file);
	while (count > 0)
		SSL_SESSION_free(list[--count].session);
	free(list);
	return -EINVAL;
}

static void
sessions_free(struct saved_session *list, size_t count)
{
	size_t i;

	for (i = 0; list != NULL && i < count; i++)
		SSL_SESSION_free(list[i].session);
	free(list);
}

static void *
worker_main(void *argument)
{
	struct run *run = argument;
	unsigned job;

	while ((job = atomic_fetch_add(&run->next, 1)) < run->jobs) {
		if (run->options->raw_text != NULL)
			raw_run(run->options, address_pick(&run->options->create_from, job),
				&run->results[job]);
		else
			chain_run(run, job);
	}
	return NULL;
}

/* ------------------------------------------------------------------- JSON */

static void
json_string(FILE *out, const char *text, size_t length)
{
	size_t i;

	if (text == NULL) {
		fputs("null", out);
		return;
	}
	fputc('"', out);
	for (i = 0; i < length; i++) {
		unsigned char ch = (unsigned char)text[i];

		if (ch == '"' || ch == '\\')
			fprintf(out, "\\%c", ch);
		else if (ch == '\n')
			fputs("\\n", out);
		else if (ch == '\r')
			fputs("\\r", out);
		else if (ch == '\t')
			fputs("\\t", out);
		else if (ch < 0x20 || ch >= 0x7f)
			fprintf(out, "\\u%04x", ch);	/* bytes as Latin-1 */
		else
			fputc(ch, out);
	}
	fputc('"', out);
}

static void
json_text(FILE *out, const char *text)
{
	json_string(out, text, text ? strlen(text) : 0);
}

static void
json_result(FILE *out, const struct options *o, const struct result *r)
{
	fprintf(out, "{\"session\":%u,\"attempt\":%u,\"source\":", r->session, r->attempt);
	json_text(out, r->source[0] ? r->source : NULL);
	fprintf(out, ",\"local_port\":%u,\"ok\":%s", r->local_port, r->ok ? "true" : "false");
	if (o->raw_text != NULL) {
		fprintf(out, ",\"sent_bytes\":%zu,\"chunks\":%u,\"reply_bytes\":%lld,"
			"\"closed_by\":", r->hello_bytes, r->chunks, r->body_bytes);
		json_text(out, r->closed_by);
		fputs(",\"reply\":", out);
		json_string(out, r->reply ? r->reply : "", r->reply_length);
	} else {
		fputs(",\"server\":", out);
		json_text(out, r->server[0] ? r->server : NULL);
		if (r->port >= 0)
			fprintf(out, ",\"port\":%d", r->port);
		else
			fputs(",\"port\":null", out);
		fputs(",\"session_from\":", out);
		json_text(out, r->session_from[0] ? r->session_from : NULL);
		fputs(",\"peer\":", out);
		json_text(out, r->peer[0] ? r->peer : NULL);
		fputs(",\"version\":", out);
		json_text(out, r->version[0] ? r->version : NULL);
		fprintf(out, ",\"offered\":%s,\"reused\":%s,\"server_reused\":",
			r->offered ? "true" : "false", r->reused ? "true" : "false");
		if (r->server_reused >= 0)
			fputs(r->server_reused ? "true" : "false", out);
		else
			fputs("null", out);
		fprintf(out, ",\"session_id_length\":%u,\"ticket_length\":%u,"
			"\"tickets\":%u,\"hello_bytes\":%zu,\"hello_records\":%u,"
			"\"chunks\":%u,\"status\":%d,\"body_bytes\":%lld",
			r->session_id_length, r->ticket_length, r->tickets,
			r->hello_bytes, r->hello_records, r->chunks, r->status,
			r->body_bytes);
	}
	fputs(",\"error\":", out);
	json_text(out, r->error[0] ? r->error : NULL);
	fprintf(out, ",\"seconds\":%.6f}", r->seconds);
}

/* Prints the document; returns the number of failed connections. */
static size_t
json_print(FILE *out, const struct options *o, const struct result *results,
	   size_t count)
{
	const char *names[SERVER_NAMES_MAX];
	size_t name_counts[SERVER_NAMES_MAX], name_count = 0;
	size_t ok = 0, resumptions = 0, reused = 0, same = 0, same_issuer = 0, i, j;
	unsigned per_session = o->raw_text ? 1 : o->resumes + 1;

	fputs("{\"results\":[", out);
	for (i = 0; i < count; i++) {
		const struct result *r = &results[i];
		const struct result *creator = &results[i - r->attempt];

		if (i > 0)
			fputs(",\n", out);
		json_result(out, o, r);
		ok += r->ok;
		if (r->ok && r->server[0] != '\0') {
			for (j = 0; j < name_count && strcmp(names[j], r->server); j++)
				;
			if (j == name_count && name_count < SERVER_NAMES_MAX) {
				names[name_count] = r->server;
				name_counts[name_count++] = 0;
			}
			if (j < name_count)
				name_counts[j]++;
		}
		if (r->attempt == 0)
			continue;
		resumptions++;
		reused += r->ok && r->reused;
		same += r->ok && creator->ok && r->server[0] != '\0' &&
			strcmp(r->server, creator->server) == 0;
		same_issuer += r->ok && r->server[0] != '\0' &&
			strcmp(r->server, r->session_from) == 0;
	}
	fprintf(out, "],\n\"summary\":{\"connections\":%zu,\"ok\":%zu,\"failed\":%zu,"
		"\"sessions\":%zu,\"resumptions\":%zu,\"reused\":%zu,"
		"\"same_backend_as_creator\":%zu,\"same_backend_as_issuer\":%zu,"
		"\"servers\":{", count, ok, count - ok, count / per_session,
		resumptions, reused, same, same_issuer);
	for (j = 0; j < name_count; j++) {
		if (j > 0)
			fputc(',', out);
		json_text(out, names[j]);
		fprintf(out, ":%zu", name_counts[j]);
	}
	fputs("}}}\n", out);
	return count - ok;
}

/* ---------------------------------------------------------- command line */

static const char usage_text[] =
"usage: tether-test-client --target IP:PORT [options]\n"
"\n"
"The test suite's TLS client for ssl-session persistence: per session, one full\n"
"handshake, then resumptions offering that TLS session from other client\n"
"addresses.  Each connection sends an HTTP GET and reports which backend answered\n"
"(lab_server.py's identity line) and whether the session was resumed.  Output:\n"
"one JSON document on stdout.  Exit 0 if every connection succeeded, 1 if any\n"
"failed, 2 on usage errors.\n"
"\n"
"Target and TLS:\n"
"  --target IP:PORT          the VIP or server (required)\n"
"  --server-name NAME        SNI, Host header and, with --ca, the verified name\n"
"  --ca FILE                 verify the chain (and NAME); default: no verification\n"
"  --tls 1.2|1.3             pin the version; default: negotiate 1.2-1.3\n"
"  --tickets on|off          off sets SSL_OP_NO_TICKET: TLS 1.2 resumes by session\n"
"                            ID (a TLS 1.3 server still sends tickets); default on\n"
"\n"
"Sessions:\n"
"  --sessions N              independent sessions (default 1)\n"
"  --resumes R               resumptions per session (default 0)\n"
"  --create-from LIST        source addresses of the full handshakes, round-robin\n"
"                            (session i uses LIST[i mod n]); default: the kernel's\n"
"  --resume-from LIST        source addresses of the resumptions (default: the\n"
"                            create list).  Resumption k of session i uses\n"
"                            LIST[(i+k-1) mod m]; if that is the address that\n"
"                            created session i and m > 1, LIST[(i+k) mod m].\n"
"  LIST is A,B,... with inclusive ranges A-B, e.g. 203.0.113.10-203.0.113.19\n"
"  --offer latest|original   resume with the newest session the chain received\n"
"                            (a fresh TLS 1.3 ticket; default) or always the full\n"
"                            handshake's\n"
"  --sessions-out FILE       at the end, write each chain's newest session and the\n"
"                            server that issued it to FILE (PEM)\n"
"  --sessions-in FILE        start each chain with a session of FILE (chain i gets\n"
"                            the i-th, round-robin) instead of a full handshake:\n"
"                            attempt 0 offers it, its session_from is its server\n"
"                            (resume sessions across runs, e.g. a balancer restart)\n"
"  --concurrency C           sessions in flight (threads; default 8)\n"
"  --timeout S               seconds per connect, read and write (default 5);\n"
"                            not a deadline for the whole connection\n"
"\n"
"Shaping the ClientHello (the first flight):\n"
"  --split N                 write it in N roughly equal chunks, each its own TCP\n"
"                            segment (TCP_NODELAY and a pause between chunks)\n"
"  --split-at A,B,...        ...or cut it at these byte offsets (offsets past its\n"
"                            end are ignored); 3 cuts inside the record header\n"
"  --split-delay MS          the pause between chunks (default 20)\n"
"  --records N               re-frame the handshake message into N TLS records\n"
"                            (applied before the split)\n"
"  --pad BYTES               add a private-use extension (type 0xffaa, zeros) so\n"
"                            the ClientHello is >= BYTES with its record headers.\n"
"                            Over 16 KB OpenSSL frames it in two records itself;\n"
"                            --records 1 then makes one oversized record (the\n"
"                            server answers record_overflow).  A second\n"
"                            ClientHello (after HelloRetryRequest) is not shaped.\n"
"\n"
"Other modes:\n"
"  --bulk BYTES              GET /bytes/BYTES and count the body\n"
"  --upload BYTES            not supported: lab_server.py does not read bodies\n"
"  --raw-text TEXT           no TLS: send TEXT (escapes \\r \\n \\t \\\\ \\xHH) on plain\n"
"                            TCP, read until the server closes, report the reply;\n"
"                            --sessions connections from --create-from\n"
"  --help                    this text\n"
"\n"
"Results carry: session, attempt (0 = full handshake), source, local_port, ok,\n"
"server, port (lab_server.py's identity line), session_from (the server whose\n"
"session was offered), peer, version, offered, reused (the client's view),\n"
"server_reused (the server's reused=), session_id_length and ticket_length (of\n"
"the session kept for the next resumption), tickets (sessions received),\n"
"hello_bytes, hello_records, chunks, status, body_bytes, error, seconds.  The\n"
"summary counts connections, ok, failed, resumptions, reused,\n"
"same_backend_as_creator (resumptions answered by the server of the session's\n"
"full handshake), same_backend_as_issuer (by the server that issued the offered\n"
"session) and answers per server.\n"
"\n"
"Examples:\n"
"  # 20 TLS 1.2 sessions by session ID, each resumed 3 times from another client\n"
"  tether-test-client --target 192.0.2.10:443 --tls 1.2 --tickets off \\\n"
"      --sessions 20 --resumes 3 --create-from 203.0.113.10-203.0.113.29 \\\n"
"      --resume-from 203.0.113.30-203.0.113.49\n"
"  # TLS 1.3 tickets; a 2100-byte hello split inside the record header\n"
"  tether-test-client --target 192.0.2.10:443 --sessions 5 --resumes 2 \\\n"
"      --create-from 203.0.113.10 --resume-from 203.0.113.11 --pad 2100 --split-at 3\n"
"  # verified, with SNI (lab CA; backends hold *.assist.example)\n"
"  tether-test-client --target 192.0.2.10:443 --ca /run/tether-lab/ca.pem \\\n"
"      --server-name www.assist.example --resumes 1\n"
"  # a ClientHello in 4 records and 3 TCP segments\n"
"  tether-test-client --target 192.0.2.10:443 --records 4 --split 3\n"
"  # non-TLS bytes on an ssl-session VIP\n"
"  tether-test-client --target 192.0.2.10:443 --raw-text 'GET / HTTP/1.0\\r\\n\\r\\n'\n"
"  # jq '.summary' or jq '.results[] | select(.attempt > 0) | .reused' to check\n";

enum option_code {
	OPT_TARGET = 256, OPT_SERVER_NAME, OPT_CA, OPT_TLS, OPT_TICKETS,
	OPT_SESSIONS, OPT_RESUMES, OPT_CREATE_FROM, OPT_RESUME_FROM,
	OPT_OFFER, OPT_CONCURRENCY, OPT_TIMEOUT, OPT_SPLIT, OPT_SPLIT_AT,
	OPT_SPLIT_DELAY, OPT_RECORDS, OPT_PAD, OPT_BULK, OPT_UPLOAD,
	OPT_RAW_TEXT, OPT_SESSIONS_OUT, OPT_SESSIONS_IN, OPT_HELP,
};

static const struct option long_options[] = {
	{ "target", required_argument, NULL, OPT_TARGET },
	{ "server-name", required_argument, NULL, OPT_SERVER_NAME },
	{ "ca", required_argument, NULL, OPT_CA },
	{ "tls", required_argument, NULL, OPT_TLS },
	{ "tickets", required_argument, NULL, OPT_TICKETS },
	{ "sessions", required_argument, NULL, OPT_SESSIONS },
	{ "resumes", required_argument, NULL, OPT_RESUMES },
	{ "create-from", required_argument, NULL, OPT_CREATE_FROM },
	{ "resume-from", required_argument, NULL, OPT_RESUME_FROM },
	{ "offer", required_argument, NULL, OPT_OFFER },
	{ "concurrency", required_argument, NULL, OPT_CONCURRENCY },
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },
	{ "split", required_argument, NULL, OPT_SPLIT },
	{ "split-at", required_argument, NULL, OPT_SPLIT_AT },
	{ "split-delay", required_argument, NULL, OPT_SPLIT_DELAY },
	{ "records", required_argument, NULL, OPT_RECORDS },
	{ "pad", required_argument, NULL, OPT_PAD },
	{ "bulk", required_argument, NULL, OPT_BULK },
	{ "upload", required_argument, NULL, OPT_UPLOAD },
	{ "raw-text", required_argument, NULL, OPT_RAW_TEXT },
	{ "sessions-out", required_argument, NULL, OPT_SESSIONS_OUT },
	{ "sessions-in", required_argument, NULL, OPT_SESSIONS_IN },
	{ "help", no_argument, NULL, OPT_HELP },
	{ NULL, 0, NULL, 0 },
};

static void __attribute__((format(printf, 1, 2)))
usage_error(const char *format, ...)
{
	va_list ap;

	fputs("tether-test-client: ", stderr);
	va_start(ap, format);
	vfprintf(stderr, format, ap);
	va_end(ap);
	fputs("\ntry --help\n", stderr);
}

/* Parses a whole decimal number in [min, max].  Returns 0 or -EINVAL. */
static int
parse_number(const char *text, unsigned long long min, unsigned long long max,
	     unsigned long long *value)
{
	char *end;

	if (text[0] < '0' || text[0] > '9')
		return -EINVAL;
	errno = 0;
	*value = strtoull(text, &end, 10);
	if (errno != 0 || *end != '\0' || *value < min || *value > max)
		return -EINVAL;
	return 0;
}

static int
parse_address(const char *text, struct in_addr *address)
{
	return inet_pton(AF_INET, text, address) == 1 ? 0 : -EINVAL;
}

/* Parses "A,B,C-D" (inclusive ranges) in order.  Returns 0 or -EINVAL. */
static int
parse_address_list(const char *text, struct address_list *list)
{
	char *copy = strdup(text), *part, *save = NULL;
	int ret = -EINVAL;

	free(list->addresses);
	memset(list, 0, sizeof(*list));
	if (copy == NULL)
		return -ENOMEM;
	for (part = strtok_r(copy, ",", &save); part != NULL;
	     part = strtok_r(NULL, ",", &save)) {
		char *dash = strchr(part, '-');
		struct in_addr first, last;
		uint32_t a;

		if (dash != NULL)
			*dash = '\0';
		if (parse_address(part, &first) != 0 ||
		    parse_address(dash ? dash + 1 : part, &last) != 0 ||
		    ntohl(last.s_addr) < ntohl(first.s_addr))
			goto out;
		for (a = ntohl(first.s_addr); ; a++) {
			struct in_addr *grown;

			if (list->count >= ADDRESSES_MAX)
				goto out;
			grown = realloc(list->addresses,
					(list->count + 1) * sizeof(*grown));
			if (grown == NULL)
				goto out;
			list->addresses = grown;
			list->addresses[list->count++].s_addr = htonl(a);
			if (a == ntohl(last.s_addr))
				break;
		}
	}
	ret = list->count > 0 ? 0 : -EINVAL;
out:
	free(copy);
	return ret;
}

static int
parse_target(const char *text, struct sockaddr_in *target)
{
	char host[INET_ADDRSTRLEN + 1];
	const char *colon = strrchr(text, ':');
	unsigned long long port;

	if (colon == NULL || (size_t)(colon - text) >= sizeof(host))
		return -EINVAL;
	memcpy(host, text, (size_t)(colon - text));
	host[colon - text] = '\0';
	if (parse_address(host, &target->sin_addr) != 0 ||
	    parse_number(colon + 1, 1, 65535, &port) != 0)
		return -EINVAL;
	target->sin_family = AF_INET;
	target->sin_port = htons((uint16_t)port);
	return 0;
}

static int
parse_offsets(const char *text, struct options *o)
{
	char *copy = strdup(text), *part, *save = NULL;
	int ret = 0;

	if (copy == NULL)
		return -ENOMEM;
	o->split_at_count = 0;
	for (part = strtok_r(copy, ",", &save); part != NULL && ret == 0;
	     part = strtok_r(NULL, ",", &save)) {
		unsigned long long value;

		if (o->split_at_count == SPLIT_OFFSETS_MAX ||
		    parse_number(part, 1, 1 << 20, &value) != 0 ||
		    (o->split_at_count > 0 &&
		     value <= o->split_at[o->split_at_count - 1]))
			ret = -EINVAL;
		else
			o->split_at[o->split_at_count++] = (size_t)value;
	}
	free(copy);
	return ret == 0 && o->split_at_count > 0 ? 0 : -EINVAL;
}

/* Decodes \r \n \t \0 \\ \xHH in place.  Returns the length or -EINVAL. */
static ssize_t
decode_escapes(char *text)
{
	char *in = text, *out = text;

	while (*in != '\0') {
		if (*in != '\\') {
			*out++ = *in++;
			continue;
		}
		in++;
		switch (*in) {
		case 'r': *out++ = '\r'; in++; break;
		case 'n': *out++ = '\n'; in++; break;
		case 't': *out++ = '\t'; in++; break;
		case '0': *out++ = '\0'; in++; break;
		case '\\': *out++ = '\\'; in++; break;
		case 'x': {
			char hex[3] = { 0 };

			if (!isxdigit((unsigned char)in[1]) ||
			    !isxdigit((unsigned char)in[2]))
				return -EINVAL;
			memcpy(hex, in + 1, 2);
			*out++ = (char)strtoul(hex, NULL, 16);
			in += 3;
			break;
		}
		default:
			return -EINVAL;
		}
	}
	return out - text;
}

/*
 * Fills the options from the command line.  Returns 0, 1 after --help, or
 * -1 after printing a usage error.
 */
static int
parse_options(int argc, char **argv, struct options *o)
{
	unsigned long long value;
	double seconds;
	char *end;
	int code;

	*o = (struct options){
		.tickets = true, .sessions = 1, .concurrency = 8,
		.timeout_ms = 5000, .split_delay_ms = 20, .bulk = -1,
	};
	opterr = 0;
	for (;;) {
		int index = -1;
		char name[64];

		code = getopt_long(argc, argv, ":h", long_options, &index);
		if (code == -1)
			break;
		if (index >= 0)
			snprintf(name, sizeof(name), "--%s", long_options[index].name);
		else
			snprintf(name, sizeof(name), "%s", argv[optind - 1]);

		switch (code) {
		case OPT_TARGET:
			if (parse_target(optarg, &o->target) != 0)
				goto bad;
			break;
		case OPT_SERVER_NAME:
			o->server_name = optarg;
			break;
		case OPT_CA:
			o->ca_file = optarg;
			break;
		case OPT_TLS:
			if (strcmp(optarg, "1.2") == 0)
				o->tls_version = TLS1_2_VERSION;
			else if (strcmp(optarg, "1.3") == 0)
				o->tls_version = TLS1_3_VERSION;
			else
				goto bad;
			break;
		case OPT_TICKETS:
			if (strcmp(optarg, "on") != 0 && strcmp(optarg, "off") != 0)
				goto bad;
			o->tickets = strcmp(optarg, "on") == 0;
			break;
		case OPT_SESSIONS:
			if (parse_number(optarg, 1, 1000000, &value) != 0)
				goto bad;
			o->sessions = (unsigned)value;
			break;
		case OPT_RESUMES:
			if (parse_number(optarg, 0, 100000, &value) != 0)
				goto bad;
			o->resumes = (unsigned)value;
			break;
		case OPT_CREATE_FROM:
			if (parse_address_list(optarg, &o->create_from) != 0)
				goto bad;
			break;
		case OPT_RESUME_FROM:
			if (parse_address_list(optarg, &o->resume_from) != 0)
				goto bad;
			break;
		case OPT_OFFER:
			if (strcmp(optarg, "latest") == 0)
				o->offer = OFFER_LATEST;
			else if (strcmp(optarg, "original") == 0)
				o->offer = OFFER_ORIGINAL;
			else
				goto bad;
			break;
		case OPT_CONCURRENCY:
			if (parse_number(optarg, 1, 4096, &value) != 0)
				goto bad;
			o->concurrency = (unsigned)value;
			break;
		case OPT_TIMEOUT:
			seconds = strtod(optarg, &end);
			if (*end != '\0' || !(seconds > 0 && seconds <= 3600))
				goto bad;
			o->timeout_ms = (int)(seconds * 1000 + 0.5);
			break;
		case OPT_SPLIT:
			if (parse_number(optarg, 1, SPLIT_OFFSETS_MAX + 1, &value) != 0)
				goto bad;
			o->split = (unsigned)value;
			break;
		case OPT_SPLIT_AT:
			if (parse_offsets(optarg, o) != 0)
				goto bad;
			break;
		case OPT_SPLIT_DELAY:
			if (parse_number(optarg, 0, 600000, &value) != 0)
				goto bad;
			o->split_delay_ms = (unsigned)value;
			break;
		case OPT_RECORDS:
			if (parse_number(optarg, 1, 4096, &value) != 0)
				goto bad;
			o->records = (unsigned)value;
			break;
		case OPT_PAD:
			if (parse_number(optarg, 0, PAD_MAX, &value) != 0)
				goto bad;
			o->pad = (size_t)value;
			break;
		case OPT_BULK:
			if (parse_number(optarg, 0, 100000000, &value) != 0)
				goto bad;
			o->bulk = (long long)value;
			break;
		case OPT_UPLOAD:
			usage_error("--upload: not supported: lab_server.py answers a "
				    "request without reading its body");
			return -1;
		case OPT_RAW_TEXT: {
			ssize_t length;

			free(o->raw_text);
			o->raw_text = strdup(optarg);
			if (o->raw_text == NULL ||
			    (length = decode_escapes(o->raw_text)) <= 0)
				goto bad;
			o->raw_length = (size_t)length;
			break;
		}
		case OPT_SESSIONS_OUT:
			o->sessions_out = optarg;
			break;
		case OPT_SESSIONS_IN:
			o->sessions_in = optarg;
			break;
		case OPT_HELP:
		case 'h':
			fputs(usage_text, stdout);
			return 1;
		case ':':
			usage_error("%s needs a value", name);
			return -1;
		default:
			usage_error("unknown option %s", name);
			return -1;
		}
		continue;
bad:
		usage_error("bad value for %s: '%s'", name, optarg);
		return -1;
	}
	if (optind < argc) {
		usage_error("unexpected argument '%s'", argv[optind]);
		return -1;
	}
	if (o->target.sin_family != AF_INET) {
		usage_error("--target IP:PORT is required");
		return -1;
	}
	if (o->split > 1 && o->split_at_count > 0) {
		usage_error("--split and --split-at do not go together");
		return -1;
	}
	if (o->raw_text != NULL && (o->resumes > 0 || o->records > 0 || o->pad > 0 ||
				    o->bulk >= 0)) {
		usage_error("--raw-text goes with neither --resumes, --records, "
			    "--pad nor --bulk");
		return -1;
	}
	if (o->raw_text != NULL && (o->sessions_out || o->sessions_in)) {
		usage_error("--raw-text goes with neither --sessions-out nor --sessions-in");
		return -1;
	}
	return 0;
}

static void
options_free(struct options *o)
{
	free(o->create_from.addresses);
	free(o->resume_from.addresses);
	free(o->raw_text);
}

int
main(int argc, char **argv)
{
	struct options options;
	struct run run = { .options = &options };
	pthread_t threads[4096];
	unsigned threads_started = 0, i, per_session;
	size_t count, failed;
	int ret = parse_options(argc, argv, &options);

	if (ret != 0) {
		options_free(&options);
		return ret > 0 ? EXIT_ALL_OK : EXIT_USAGE;
	}
	signal(SIGPIPE, SIG_IGN);
	if (options.raw_text == NULL) {
		run.context = context_new(&options);
		if (run.context == NULL) {
			options_free(&options);
			return EXIT_USAGE;
		}
	}
	if (options.sessions_in != NULL) {
		ssize_t loaded = sessions_read(options.sessions_in, &run.loaded);

		if (loaded < 0) {
			fprintf(stderr, "tether-test-client: --sessions-in %s: %s\n",
				options.sessions_in, strerror((int)-loaded));
			SSL_CTX_free(run.context);
			options_free(&options);
			return EXIT_USAGE;
		}
		run.loaded_count = (size_t)loaded;
	}
	if (options.sessions_out != NULL &&
	    (run.kept = calloc(options.sessions, sizeof(*run.kept))) == NULL) {
		fprintf(stderr, "tether-test-client: out of memory for --sessions-out\n");
		sessions_free(run.loaded, run.loaded_count);
		SSL_CTX_free(run.context);
		options_free(&options);
		return EXIT_USAGE;
	}
	per_session = options.raw_text ? 1 : options.resumes + 1;
	run.jobs = options.sessions;
	count = (size_t)options.sessions * per_session;
	run.results = calloc(count, sizeof(*run.results));
	if (run.results == NULL) {
		fprintf(stderr, "tether-test-client: out of memory for %zu results\n", count);
		SSL_CTX_free(run.context);
		options_free(&options);
		return EXIT_USAGE;
	}
	for (i = 0; i < count; i++) {
		run.results[i].session = i / per_session;
		run.results[i].attempt = i % per_session;
		run.results[i].port = -1;
		run.results[i].server_reused = -1;
	}
	for (i = 0; i < options.concurrency && i < run.jobs; i++) {
		if (pthread_create(&threads[i], NULL, worker_main, &run) != 0)
			break;
		threads_started++;
	}
	if (threads_started == 0)
		worker_main(&run);
	for (i = 0; i < threads_started; i++)
		pthread_join(threads[i], NULL);

	failed = json_print(stdout, &options, run.results, count);
	fflush(stdout);
	if (run.kept != NULL) {
		ret = sessions_write(options.sessions_out, run.kept, options.sessions);
		if (ret != 0) {
			fprintf(stderr, "tether-test-client: --sessions-out %s: %s\n",
				options.sessions_out, strerror(-ret));
			failed++;
		}
		sessions_free(run.kept, options.sessions);
	}
	sessions_free(run.loaded, run.loaded_count);
	for (i = 0; i < count; i++)
		free(run.results[i].reply);
	free(run.results);
	SSL_CTX_free(run.context);
	options_free(&options);
	return failed == 0 ? EXIT_ALL_OK : EXIT_SOME_FAILED;
}
