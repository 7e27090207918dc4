/*
 * test_tls_hello.c: ssl-session persistence reads the right session ID, ticket
 * and PSK identity out of every ClientHello a real client sends, however TCP
 * and TLS cut it up; learns the right session ID and ticket from the server;
 * and turns every malformed, oversized or non-TLS stream into a counted
 * reason (never a crash, never an over-read: run under ASan/UBSan/valgrind).
 *
 * Two kinds of cases:
 *  - built here, field by field, with a small builder (records, handshake
 *    header, versions, session ID, suites, extensions), so each case says
 *    which field it breaks;
 *  - real OpenSSL streams in fixtures/tls/ (see its README), each with the
 *    fields expected, relative to tests/ where ctest runs this binary.
 * Every buffer handed to the parser is an exact-size heap copy, so reading one
 * byte too far is an ASan error, not luck.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls_hello.h"

#define FIXTURES      "fixtures/tls"
#define BUILD_MAX     (72 * 1024)
#define CAP           TLS_CLIENT_HELLO_DEFAULT_CAP

/* ------------------------------------------------------------------------ */
/* Builder: bytes with nested length prefixes                                */

struct builder {
	uint8_t bytes[BUILD_MAX];
	size_t length;
	size_t open[8];
	uint8_t width[8];
	unsigned depth;
};

static struct builder *
builder_new(void)
{
	struct builder *b = calloc(1, sizeof(*b));
	assert_non_null(b);
	return b;
}

static void
put_u8(struct builder *b, unsigned value)
{
	assert_true(b->length < BUILD_MAX);
	b->bytes[b->length++] = (uint8_t)value;
}

static void put_u16(struct builder *b, unsigned v) { put_u8(b, v >> 8); put_u8(b, v); }
static void put_u24(struct builder *b, unsigned v) { put_u8(b, v >> 16); put_u16(b, v & 0xffff); }
static void put_u32(struct builder *b, uint32_t v) { put_u16(b, v >> 16); put_u16(b, v & 0xffff); }

static void
put_bytes(struct builder *b, const void *bytes, size_t length)
{
	assert_true(b->length + length <= BUILD_MAX);
	memcpy(b->bytes + b->length, bytes, length);
	b->length += length;
}

static void
put_fill(struct builder *b, uint8_t byte, size_t count)
{
	assert_true(b->length + count <= BUILD_MAX);
	memset(b->bytes + b->length, byte, count);
	b->length += count;
}

/* Open a vector with a `width`-byte length prefix, filled in by vector_close. */
static void
vector_open(struct builder *b, unsigned width)
{
	assert_true(b->depth < 8);
	b->open[b->depth] = b->length;
	b->width[b->depth++] = (uint8_t)width;
	put_fill(b, 0, width);
}

static void
vector_close(struct builder *b)
{
	unsigned depth = --b->depth;
	size_t start = b->open[depth], width = b->width[depth];
	size_t length = b->length - start - width;

	for (size_t i = 0; i < width; i++)
		b->bytes[start + i] = (uint8_t)(length >> (8 * (width - 1 - i)));
}

/* A ticket as OpenSSL lays it out: key name (16), IV (16), sealed state, MAC (32).
 * `seed` makes tickets from different "servers" differ in their key name. */
static void
put_ticket(struct builder *b, size_t length, uint8_t seed)
{
	for (size_t i = 0; i < length; i++)
		put_u8(b, i < TLS_TICKET_KEY_NAME_LENGTH ? (uint8_t)(seed + i) : (uint8_t)(i * 7 + 3));
}

/* --- extensions --- */

static void ext_begin(struct builder *b, uint16_t type) { put_u16(b, type); vector_open(b, 2); }
static void ext_end(struct builder *b) { vector_close(b); }

static void
ext_empty(struct builder *b, uint16_t type)
{
	ext_begin(b, type);
	ext_end(b);
}

static void
ext_raw(struct builder *b, uint16_t type, const uint8_t *body, size_t length)
{
	ext_begin(b, type);
	put_bytes(b, body, length);
	ext_end(b);
}

static void
ext_sni(struct builder *b, const char *host)
{
	ext_begin(b, TLS_EXTENSION_SERVER_NAME);
	vector_open(b, 2);
	put_u8(b, 0);                            /* host_name */
	vector_open(b, 2);
	put_bytes(b, host, strlen(host));
	vector_close(b);
	vector_close(b);
	ext_end(b);
}

static void
ext_alpn(struct builder *b, const char *const *protocols)
{
	ext_begin(b, TLS_EXTENSION_ALPN);
	vector_open(b, 2);
	for (; *protocols; protocols++) {
		vector_open(b, 1);
		put_bytes(b, *protocols, strlen(*protocols));
		vector_close(b);
	}
	vector_close(b);
	ext_end(b);
}

static void
ext_supported_versions(struct builder *b, const uint16_t *versions, size_t count)
{
	ext_begin(b, TLS_EXTENSION_SUPPORTED_VERSIONS);
	vector_open(b, 1);
	for (size_t i = 0; i < count; i++)
		put_u16(b, versions[i]);
	vector_close(b);
	ext_end(b);
}

static void
ext_session_ticket(struct builder *b, size_t length)
{
	ext_begin(b, TLS_EXTENSION_SESSION_TICKET);
	put_ticket(b, length, 0xa0);
	ext_end(b);
}

/* pre_shared_key: `count` identities (identity i is a ticket of key seed
 * 0xa0 + i), each with its obfuscated age, then one 32-byte binder each. */
static void
ext_psk(struct builder *b, unsigned count, size_t identity_length)
{
	ext_begin(b, TLS_EXTENSION_PRE_SHARED_KEY);
	vector_open(b, 2);
	for (unsigned i = 0; i < count; i++) {
		vector_open(b, 2);
		put_ticket(b, identity_length, (uint8_t)(0xa0 + i));
		vector_close(b);
		put_u32(b, 0x01020304);
	}
	vector_close(b);
	vector_open(b, 2);
	for (unsigned i = 0; i < count; i++) {
		vector_open(b, 1);
		put_fill(b, 0xbb, 32);
		vector_close(b);
	}
	vector_close(b);
	ext_end(b);
}

static void
ext_padding(struct builder *b, size_t length)
{
	ext_begin(b, 21);
	put_fill(b, 0, length);
	ext_end(b);
}

/* key_share with one x25519 share: not read by us, skipped like any other. */
static void
ext_key_share(struct builder *b)
{
	ext_begin(b, 51);
	vector_open(b, 2);
	put_u16(b, 0x001d);
	vector_open(b, 2);
	put_fill(b, 0x42, 32);
	vector_close(b);
	vector_close(b);
	ext_end(b);
}

/* --- hellos --- */

struct client_shape {
	uint16_t legacy_version;
	size_t session_id_length;          /* may exceed 32: malformed */
	size_t cipher_suites_length;       /* bytes; may be odd or 0: malformed */
	size_t compression_length;
	bool no_extensions;
	int extensions_length_adjust;      /* added to the true block length */
};

#define CLIENT_SHAPE \
	{ .legacy_version = TLS_VERSION_1_2, .session_id_length = 0, \
	  .cipher_suites_length = 8, .compression_length = 1 }

static uint8_t session_id_byte(size_t i) { return (uint8_t)(0x50 + i); }

static void
build_client_hello(struct builder *b, const struct client_shape *shape,
		   const struct builder *extensions)
{
	static const uint8_t suites[] = { 0x13, 0x01, 0x13, 0x02, 0xc0, 0x2f, 0x0a, 0x0a };

	put_u8(b, TLS_HANDSHAKE_CLIENT_HELLO);
	vector_open(b, 3);
	put_u16(b, shape->legacy_version);
	put_fill(b, 0x11, TLS_RANDOM_LENGTH);
	put_u8(b, (unsigned)shape->session_id_length);
	for (size_t i = 0; i < shape->session_id_length; i++)
		put_u8(b, session_id_byte(i));
	put_u16(b, (unsigned)shape->cipher_suites_length);
	for (size_t i = 0; i < shape->cipher_suites_length; i++)
		put_u8(b, suites[i % sizeof suites]);
	put_u8(b, (unsigned)shape->compression_length);
	put_fill(b, 0, shape->compression_length);
	if (!shape->no_extensions) {
		put_u16(b, (unsigned)((int)extensions->length + shape->extensions_length_adjust));
		put_bytes(b, extensions->bytes, extensions->length);
	}
	vector_close(b);
}

/* Wrap a handshake-layer byte string in records of at most `fragment` bytes. */
static void
put_records(struct builder *b, uint8_t type, const uint8_t *bytes, size_t length, size_t fragment,
	    uint16_t first_version)
{
	for (size_t offset = 0; offset < length; offset += fragment) {
		size_t piece = length - offset < fragment ? length - offset : fragment;

		put_u8(b, type);
		put_u16(b, offset == 0 ? first_version : TLS_VERSION_1_2);
		put_u16(b, (unsigned)piece);
		put_bytes(b, bytes + offset, piece);
	}
}

static void
put_record(struct builder *b, uint8_t type, const uint8_t *bytes, size_t length)
{
	put_records(b, type, bytes, length, length, TLS_VERSION_1_2);
}

/* A typical TLS 1.2 client's extensions: SNI, ALPN, GREASE, an unknown one. */
static void
typical_extensions(struct builder *ext)
{
	static const char *const alpn[] = { "h2", "http/1.1", NULL };

	ext_empty(ext, 0x1a1a);                  /* GREASE */
	ext_sni(ext, "cp1.assist.example");
	ext_alpn(ext, alpn);
	ext_raw(ext, 0xfe0d, (const uint8_t *)"ech?", 4);   /* unknown to us */
}

/* ClientHello message with the typical extensions plus `more`. */
static void
build_typical_hello(struct builder *message, size_t session_id_length,
		    void (*more)(struct builder *ext, const void *arg), const void *arg)
{
	struct builder *ext = builder_new();
	struct client_shape shape = CLIENT_SHAPE;

	shape.session_id_length = session_id_length;
	typical_extensions(ext);
	if (more)
		more(ext, arg);
	build_client_hello(message, &shape, ext);
	free(ext);
}

/* --- server side --- */

static const uint8_t hello_retry_random[TLS_RANDOM_LENGTH] = {
	0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02,
	0x1e, 0x65, 0xb8, 0x91, 0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e,
	0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
};

struct server_shape {
	uint16_t legacy_version;
	bool hello_retry;
	size_t session_id_length;
	uint16_t selected_version;     /* 0: no supported_versions */
	bool psk;                      /* pre_shared_key selected_identity */
	uint16_t psk_identity;
	bool ticket_extension;
	bool no_extensions;
};

#define SERVER_SHAPE_TLS12 \
	{ .legacy_version = TLS_VERSION_1_2, .session_id_length = 32, .ticket_extension = true }

static void
build_server_hello(struct builder *b, const struct server_shape *shape)
{
	put_u8(b, TLS_HANDSHAKE_SERVER_HELLO);
	vector_open(b, 3);
	put_u16(b, shape->legacy_version);
	if (shape->hello_retry)
		put_bytes(b, hello_retry_random, sizeof hello_retry_random);
	else
		put_fill(b, 0x22, TLS_RANDOM_LENGTH);
	put_u8(b, (unsigned)shape->session_id_length);
	for (size_t i = 0; i < shape->session_id_length; i++)
		put_u8(b, session_id_byte(i));
	put_u16(b, 0xc02f);
	put_u8(b, 0);
	if (!shape->no_extensions) {
		vector_open(b, 2);
		ext_raw(b, 0xff01, (const uint8_t *)"\0", 1);   /* renegotiation_info */
		if (shape->selected_version) {
			ext_begin(b, TLS_EXTENSION_SUPPORTED_VERSIONS);
			put_u16(b, shape->selected_version);
			ext_end(b);
		}
		if (shape->selected_version == TLS_VERSION_1_3)
			ext_key_share(b);
		if (shape->psk) {
			ext_begin(b, TLS_EXTENSION_PRE_SHARED_KEY);
			put_u16(b, shape->psk_identity);
			ext_end(b);
		}
		if (shape->ticket_extension)
			ext_empty(b, TLS_EXTENSION_SESSION_TICKET);
		vector_close(b);
	}
	vector_close(b);
}

/* Any handshake message we skip (Certificate, ServerKeyExchange, ...). */
static void
build_opaque_message(struct builder *b, uint8_t type, size_t body_length)
{
	put_u8(b, type);
	put_u24(b, (unsigned)body_length);
	for (size_t i = 0; i < body_length; i++)
		put_u8(b, (uint8_t)(i * 13 + type));
}

static void
build_new_session_ticket(struct builder *b, uint32_t lifetime, size_t ticket_length, uint8_t seed)
{
	put_u8(b, TLS_HANDSHAKE_NEW_SESSION_TICKET);
	vector_open(b, 3);
	put_u32(b, lifetime);
	vector_open(b, 2);
	put_ticket(b, ticket_length, seed);
	vector_close(b);
	vector_close(b);
}

static void
put_change_cipher_spec(struct builder *b)
{
	put_record(b, TLS_RECORD_CHANGE_CIPHER_SPEC, (const uint8_t *)"\1", 1);
}

/* An encrypted record: opaque to the scanner, which must stop before it. */
static void
put_encrypted(struct builder *b, uint8_t type, size_t length)
{
	put_u8(b, type);
	put_u16(b, TLS_VERSION_1_2);
	put_u16(b, (unsigned)length);
	put_fill(b, 0xee, length);
}

/* ------------------------------------------------------------------------ */
/* Running the parsers on exact-size copies                                  */

static uint8_t *
exact_copy(const uint8_t *bytes, size_t length)
{
	uint8_t *copy = malloc(length ? length : 1);

	assert_non_null(copy);
	if (length)
		memcpy(copy, bytes, length);
	return copy;
}

/* The dataplane's path for a client stream: reassemble, then parse.  The
 * hello's pointers point into `*keep` (caller frees) or the copy of the stream
 * (also in *keep). */
struct client_result {
	enum tls_reason reason;
	struct tls_client_hello hello;
	const uint8_t *handshake;
	size_t handshake_length;
	uint8_t *stream_copy;
	uint8_t *scratch;
};

static void
client_run_cap(const uint8_t *stream, size_t length, size_t cap, struct client_result *result)
{
	memset(result, 0, sizeof(*result));
	result->stream_copy = exact_copy(stream, length);
	result->scratch = malloc(cap ? cap : 1);
	result->reason = tls_reassemble_client_hello(result->stream_copy, length, result->scratch, cap,
						     &result->handshake, &result->handshake_length);
	if (result->reason == TLS_OK)
		result->reason = tls_parse_client_hello(result->handshake, result->handshake_length,
							&result->hello);
}

static void
client_run(const uint8_t *stream, size_t length, struct client_result *result)
{
	client_run_cap(stream, length, CAP, result);
}

static void
client_done(struct client_result *result)
{
	free(result->stream_copy);
	free(result->scratch);
}

static enum tls_reason
client_reason(const uint8_t *stream, size_t length)
{
	struct client_result result;
	enum tls_reason reason;

	client_run(stream, length, &result);
	reason = result.reason;
	client_done(&result);
	return reason;
}

/* What a server scan learned, copied out of its scratch. */
struct scan_summary {
	enum tls_reason reason;
	bool has_server_hello, hello_retry, has_ticket, psk_accepted, ticket_extension;
	uint16_t legacy_version, negotiated_version, psk_selected_identity;
	uint8_t session_id_length;
	uint8_t session_id[32];
	enum tls_reason ticket_reason;
	uint32_t ticket_lifetime_hint;
	size_t ticket_length;
	uint8_t ticket[8192];
	uint64_t consumed;
};

static void
summarize(const struct tls_server_scan *scan, struct scan_summary *s)
{
	memset(s, 0, sizeof(*s));
	s->reason = scan->reason;
	s->has_server_hello = scan->has_server_hello;
	s->hello_retry = scan->saw_hello_retry_request;
	s->consumed = scan->consumed;
	if (scan->has_server_hello) {
		const struct tls_server_hello *hello = &scan->server_hello;

		s->psk_accepted = hello->psk_accepted;
		s->psk_selected_identity = hello->psk_selected_identity;
		s->ticket_extension = hello->ticket_extension;
		s->legacy_version = hello->legacy_version;
		s->negotiated_version = hello->negotiated_version;
		s->session_id_length = hello->session_id_length;
		if (hello->session_id_length)
			memcpy(s->session_id, hello->session_id, hello->session_id_length);
	}
	s->ticket_reason = scan->ticket_reason;
	s->has_ticket = scan->has_ticket;
	if (scan->has_ticket) {
		s->ticket_lifetime_hint = scan->ticket_lifetime_hint;
		s->ticket_length = scan->ticket_length;
		assert_true(s->ticket_length <= sizeof s->ticket);
		memcpy(s->ticket, scan->ticket, s->ticket_length);
	}
}

/* Feed `stream` in chunks of `chunk` bytes (each an exact heap copy) to a scan
 * with `scratch_capacity` bytes of scratch; every return before the last
 * chunk that is not TLS_NEED_MORE must stay the final answer. */
static void
scan_chunks(const uint8_t *stream, size_t length, size_t chunk, size_t scratch_capacity,
	    struct scan_summary *summary)
{
	struct tls_server_scan scan;
	uint8_t *scratch = malloc(scratch_capacity ? scratch_capacity : 1);
	enum tls_reason reason = TLS_NEED_MORE, first_final = TLS_NEED_MORE;

	tls_server_scan_init(&scan, scratch, scratch_capacity);
	for (size_t offset = 0; offset < length; offset += chunk) {
		size_t piece = length - offset < chunk ? length - offset : chunk;
		uint8_t *copy = exact_copy(stream + offset, piece);

		reason = tls_server_scan_feed(&scan, copy, piece);
		free(copy);
		if (first_final == TLS_NEED_MORE)
			first_final = reason;
		assert_int_equal(reason, first_final == TLS_NEED_MORE ? reason : first_final);
	}
	assert_int_equal(reason, scan.reason);
	summarize(&scan, summary);
	free(scratch);
}

static void
scan_whole(const uint8_t *stream, size_t length, struct scan_summary *summary)
{
	scan_chunks(stream, length, length ? length : 1, CAP, summary);
}

static void
assert_same_summary(const struct scan_summary *a, const struct scan_summary *b)
{
	assert_int_equal(a->reason, b->reason);
	assert_int_equal(a->has_server_hello, b->has_server_hello);
	assert_int_equal(a->hello_retry, b->hello_retry);
	assert_int_equal(a->psk_accepted, b->psk_accepted);
	assert_int_equal(a->negotiated_version, b->negotiated_version);
	assert_int_equal(a->session_id_length, b->session_id_length);
	assert_memory_equal(a->session_id, b->session_id, sizeof a->session_id);
	assert_int_equal(a->has_ticket, b->has_ticket);
	assert_int_equal(a->ticket_reason, b->ticket_reason);
	assert_int_equal(a->ticket_length, b->ticket_length);
	assert_memory_equal(a->ticket, b->ticket, a->ticket_length);
	assert_int_equal(a->consumed, b->consumed);
}

/* Chunking must not change the answer: every chunk size 1..64, and some big. */
static void
assert_chunking_invariant(const uint8_t *stream, size_t length, const struct scan_summary *whole)
{
	static const size_t big[] = { 100, 333, 1000, 4096 };
	struct scan_summary *summary = malloc(sizeof(*summary));

	for (size_t chunk = 1; chunk <= 64 + sizeof big / sizeof big[0]; chunk++) {
		size_t size = chunk <= 64 ? chunk : big[chunk - 65];

		scan_chunks(stream, length, size, CAP, summary);
		assert_same_summary(summary, whole);
	}
	free(summary);
}

static uint32_t
load_u24_test(const uint8_t *bytes)
{
	return (uint32_t)bytes[0] << 16 | (uint32_t)bytes[1] << 8 | bytes[2];
}

static bool
bytes_equal(const uint8_t *bytes, size_t length, const char *text)
{
	return length == strlen(text) && memcmp(bytes, text, length) == 0;
}

/* Is [pointer, pointer+length) inside [base, base+size)? */
static bool
inside(const uint8_t *pointer, size_t length, const uint8_t *base, size_t size)
{
	return pointer == NULL ? length == 0 :
		pointer >= base && length <= size && (size_t)(pointer - base) <= size - length;
}

/* ------------------------------------------------------------------------ */
/* ClientHello: valid                                                        */

static void
more_ticket(struct builder *ext, const void *arg)
{
	ext_session_ticket(ext, *(const size_t *)arg);
}

/* A TLS 1.2 client resuming by session ID: the lookup key is its session ID;
 * SNI and ALPN come through; GREASE and unknown extensions are skipped. */
static void
test_tls12_hello_with_session_id_parses(void **state)
{
	struct builder *message = builder_new(), *stream = builder_new();
	struct client_result result;

	(void)state;
	build_typical_hello(message, 32, NULL, NULL);
	put_records(stream, TLS_RECORD_HANDSHAKE, message->bytes, message->length, 16384,
		    TLS_VERSION_1_0);
	client_run(stream->bytes, stream->length, &result);
	assert_int_equal(result.reason, TLS_OK);
	assert_int_equal(result.handshake_length, message->length);
	/* One record: handed back in place, no copy. */
	assert_ptr_equal(result.handshake, result.stream_copy + TLS_RECORD_HEADER_LENGTH);
	assert_int_equal(result.hello.legacy_version, TLS_VERSION_1_2);
	assert_int_equal(result.hello.highest_version, TLS_VERSION_1_2);
	assert_int_equal(result.hello.session_id_length, 32);
	for (size_t i = 0; i < 32; i++)
		assert_int_equal(result.hello.session_id[i], session_id_byte(i));
	assert_true(bytes_equal(result.hello.sni, result.hello.sni_length, "cp1.assist.example"));
	assert_true(bytes_equal(result.hello.alpn, result.hello.alpn_length, "\2h2\10http/1.1"));
	assert_false(result.hello.has_ticket_extension);
	assert_null(result.hello.ticket);
	assert_false(result.hello.has_psk);
	assert_false(result.hello.has_early_data);
	client_done(&result);
	free(message);
	free(stream);
}

/* An empty SessionTicket extension means "I take tickets, I have none": the
 * dataplane must see the extension but no ticket to look up. */
static void
test_tls12_hello_with_empty_ticket_extension_has_no_ticket(void **state)
{
	struct builder *message = builder_new(), *stream = builder_new();
	struct client_result result;
	size_t zero = 0;

	(void)state;
	build_typical_hello(message, 0, more_ticket, &zero);
	put_records(stream, TLS_RECORD_HANDSHAKE, message->bytes, message->length, 16384,
		    TLS_VERSION_1_0);
	client_run(stream->bytes, stream->length, &result);
	assert_int_equal(result.reason, TLS_OK);
	assert_true(result.hello.has_ticket_extension);
	assert_null(result.hello.ticket);
	assert_int_equal(result.hello.ticket_length, 0);
	assert_int_equal(result.hello.session_id_length, 0);
	assert_null(result.hello.session_id);
	client_done(&result);
	free(message);
	free(stream);
}

/* A TLS 1.2 client resuming by ticket: the whole 200-byte ticket is exposed,
 * and its first 16 bytes are the key name. */
static void
test_tls12_hello_with_200_byte_ticket_exposes_ticket(void **state)
{
	struct builder *message = builder_new(), *stream = builder_new(), *expected = builder_new();
	struct client_result result;
	size_t length = 200;

	(void)state;
	build_typical_hello(message, 32, more_ticket, &length);
	put_records(stream, TLS_RECORD_HANDSHAKE, message->bytes, message->length, 16384,
		    TLS_VERSION_1_0);
	put_ticket(expected, 200, 0xa0);
	client_run(stream->bytes, stream->length, &result);
	assert_int_equal(result.reason, TLS_OK);
	assert_true(result.hello.has_ticket_extension);
	assert_int_equal(result.hello.ticket_length, 200);
	assert_memory_equal(result.hello.ticket, expected->bytes, 200);
	assert_int_equal(result.hello.ticket[0], 0xa0);      /* key name starts the ticket */
	assert_int_equal(result.hello.ticket[15], 0xa0 + 15);
	client_done(&result);
	free(message);
	free(stream);
	free(expected);
}

static void
more_tls13_resumption(struct builder *ext, const void *arg)
{
	static const uint16_t versions[] = { 0x3a3a, 0x7f1c, TLS_VERSION_1_3, TLS_VERSION_1_2 };

	(void)arg;
	ext_supported_versions(ext, versions, 4);
	ext_key_share(ext);
	ext_empty(ext, 0x4a4a);                  /* a second, different GREASE */
	ext_session_ticket(ext, 0);
	ext_empty(ext, TLS_EXTENSION_EARLY_DATA);
	ext_psk(ext, 2, 192);                    /* must stay last */
}

/* A TLS 1.3 resumption: highest version from supported_versions (GREASE and
 * a draft version ignored), the 32-byte random legacy session ID, the first
 * PSK identity (the ticket) and the identity count, early data. */
static void
test_tls13_hello_with_psk_identity_parses(void **state)
{
	struct builder *message = builder_new(), *stream = builder_new(), *expected = builder_new();
	struct client_result result;

	(void)state;
	build_typical_hello(message, 32, more_tls13_resumption, NULL);
	put_records(stream, TLS_RECORD_HANDSHAKE, message->bytes, message->length, 16384,
		    TLS_VERSION_1_0);
	put_ticket(expected, 192, 0xa0);
	client_run(stream->bytes, stream->length, &result);
	assert_int_equal(result.reason, TLS_OK);
	assert_int_equal(result.hello.legacy_version, TLS_VERSION_1_2);
	assert_int_equal(result.hello.highest_version, TLS_VERSION_1_3);
	assert_int_equal(result.hello.session_id_length, 32);
	assert_true(result.hello.has_psk);
	assert_int_equal(result.hello.psk_identity_count, 2);
	assert_int_equal(result.hello.psk_identity_length, 192);
	assert_memory_equal(result.hello.psk_identity, expected->bytes, 192);
	assert_true(result.hello.has_ticket_extension);
	assert_int_equal(result.hello.ticket_length, 0);
	assert_true(result.hello.has_early_data);
	assert_true(bytes_equal(result.hello.sni, result.hello.sni_length, "cp1.assist.example"));
	client_done(&result);
	free(message);
	free(stream);
	free(expected);
}

/* A hello fragmented over three records is put back together, byte exact,
 * into the scratch buffer. */
static void
test_hello_split_across_three_records_is_reassembled(void **state)
{
	struct builder *message = builder_new(), *stream = builder_new();
	struct client_result result;
	size_t fragment;

	(void)state;
	build_typical_hello(message, 32, more_tls13_resumption, NULL);
	fragment = (message->length + 2) / 3;
	put_records(stream, TLS_RECORD_HANDSHAKE, message->bytes, message->length, fragment,
		    TLS_VERSION_1_0);
	assert_int_equal(stream->length, message->length + 3 * TLS_RECORD_HEADER_LENGTH);
	client_run(stream->bytes, stream->length, &result);
	assert_int_equal(result.reason, TLS_OK);
	assert_ptr_equal(result.handshake, result.scratch);
	assert_int_equal(result.handshake_length, message->length);
	assert_memory_equal(result.handshake, message->bytes, message->length);
	assert_int_equal(result.hello.psk_identity_length, 192);
	assert_true(inside(result.hello.psk_identity, 192, result.scratch, CAP));
	client_done(&result);
	free(message);
	free(stream);
}

/* Delivered one byte at a time (and so split inside every record header),
 * the hello needs more until its last byte, then parses; bytes that follow
 * (ChangeCipherSpec, early data) change nothing. */
static void
test_hello_streamed_one_byte_at_a_time_needs_more_until_last_byte(void **state)
{
	static const size_t fragments[] = { 16384, 100, 7, 4 };

	(void)state;
	for (size_t f = 0; f < sizeof fragments / sizeof fragments[0]; f++) {
		struct builder *message = builder_new(), *stream = builder_new();
		size_t hello_end;

		build_typical_hello(message, 32, more_tls13_resumption, NULL);
		put_records(stream, TLS_RECORD_HANDSHAKE, message->bytes, message->length,
			    fragments[f], TLS_VERSION_1_0);
		hello_end = stream->length;
		put_change_cipher_spec(stream);
		put_encrypted(stream, TLS_RECORD_APPLICATION_DATA, 40);
		for (size_t length = 0; length < hello_end; length++) {
			enum tls_reason reason = client_reason(stream->bytes, length);
			if (reason != TLS_NEED_MORE)
				fail_msg("fragment %zu: prefix %zu of %zu: %s", fragments[f], length,
					 hello_end, tls_reason_name(reason));
		}
		for (size_t length = hello_end; length <= stream->length; length++)
			assert_int_equal(client_reason(stream->bytes, length), TLS_OK);
		free(message);
		free(stream);
	}
}

/* The split falls inside the second record's 5-byte header: each of the
 * four cut points needs more, and the message then completes. */
static void
test_hello_split_inside_record_header_needs_more(void **state)
{
	struct builder *message = builder_new(), *stream = builder_new();
	size_t second_header;

	(void)state;
	build_typical_hello(message, 32, NULL, NULL);
	put_records(stream, TLS_RECORD_HANDSHAKE, message->bytes, message->length, 50,
		    TLS_VERSION_1_0);
	second_header = TLS_RECORD_HEADER_LENGTH + 50;
	for (size_t cut = 0; cut <= TLS_RECORD_HEADER_LENGTH; cut++)
		assert_int_equal(client_reason(stream->bytes, second_header + cut), TLS_NEED_MORE);
	assert_int_equal(client_reason(stream->bytes, stream->length), TLS_OK);
	free(message);
	free(stream);
}

static void
more_padding(struct builder *ext, const void *arg)
{
	ext_padding(ext, *(const size_t *)arg);
}

/* Post-quantum key shares push hellos past 1.5 KB; 2.1 KB and 8 KB hellos,
 * in one record and in several, parse within the 16 KB cap. */
static void
test_padded_hellos_of_2100_and_8000_bytes_parse(void **state)
{
	static const size_t sizes[] = { 2100, 8000, CAP };

	(void)state;
	for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
		struct builder *message = builder_new();
		size_t padding = 0;

		build_typical_hello(message, 32, more_padding, &padding);
		padding = sizes[s] - message->length;   /* grow to exactly sizes[s] */
		message->length = 0;
		build_typical_hello(message, 32, more_padding, &padding);
		assert_int_equal(message->length, sizes[s]);
		static const size_t fragments[] = { 1400, 5600, 16384 };

		for (size_t k = 0; k < sizeof fragments / sizeof fragments[0]; k++) {
			struct builder *stream = builder_new();
			struct client_result result;

			put_records(stream, TLS_RECORD_HANDSHAKE, message->bytes, message->length,
				    fragments[k], TLS_VERSION_1_0);
			client_run(stream->bytes, stream->length, &result);
			assert_int_equal(result.reason, TLS_OK);
			assert_int_equal(result.handshake_length, sizes[s]);
			assert_true(bytes_equal(result.hello.sni, result.hello.sni_length,
						"cp1.assist.example"));
			client_done(&result);
			free(stream);
		}
		free(message);
	}
}

/* A 17 KB hello against the 16 KB cap is refused as soon as its handshake
 * header is in (9 bytes), without buffering the rest; one byte over the cap
 * is already too large. */
static void
test_hello_over_cap_is_too_large_from_its_header(void **state)
{
	struct builder *message = builder_new(), *stream = builder_new();
	size_t padding = 17 * 1024;

	(void)state;
	build_typical_hello(message, 32, more_padding, &padding);
	assert_true(message->length > 17 * 1024);
	put_records(stream, TLS_RECORD_HANDSHAKE, message->bytes, message->length, 16384,
		    TLS_VERSION_1_0);
	for (size_t length = 0; length < 9; length++)
		assert_int_equal(client_reason(stream->bytes, length), TLS_NEED_MORE);
	assert_int_equal(client_reason(stream->bytes, 9), TLS_TOO_LARGE);
	assert_int_equal(client_reason(stream->bytes, stream->length), TLS_TOO_LARGE);

	/* Exactly at the cap is fine, one byte more is not. */
	struct client_result result;
	client_run_cap(stream->bytes, stream->length, message->length, &result);
	assert_int_equal(result.reason, TLS_OK);
	client_done(&result);
	client_run_cap(stream->bytes, stream->length, message->length - 1, &result);
	assert_int_equal(result.reason, TLS_TOO_LARGE);
	client_done(&result);
	free(message);
	free(stream);
}

/* A record may not exceed 2^14 + 2048 bytes, so a legal 16 KB hello comes
 * in at least two records; the fragments are copied into the scratch. */
static void
test_hello_over_record_limit_is_bad_record_length(void **state)
{
	struct builder *message = builder_new(), *stream = builder_new();
	size_t padding = TLS_RECORD_MAX_LENGTH;

	(void)state;
	build_typical_hello(message, 0, more_padding, &padding);
	put_records(stream, TLS_RECORD_HANDSHAKE, message->bytes, message->length, 65535,
		    TLS_VERSION_1_0);
	struct client_result result;
	client_run_cap(stream->bytes, stream->length, 65536, &result);
	assert_int_equal(result.reason, TLS_BAD_RECORD_LENGTH);
	client_done(&result);
	free(message);
	free(stream);
}

/* Not TLS at all: refused on the first or second byte, so the dataplane falls
 * back at once instead of waiting out the inspect timeout. */
static void
test_non_tls_streams_are_refused_within_two_bytes(void **state)
{
	static const struct {
		const char *description;
		const char *bytes;
		size_t length;
	} cases[] = {
		{ "HTTP request", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27 },
		{ "SSH banner", "SSH-2.0-OpenSSH_9.6\r\n", 21 },
		{ "random bytes", "\x9b\x3e\xf1\x07\xc2\x5d\x88\x21\x4a\xe0\x13\x77", 12 },
		{ "SSLv2-compatible hello", "\x80\x2e\x01\x03\x01\x00\x15", 7 },
		{ "TLS alert record", "\x15\x03\x01\x00\x02\x02\x28", 7 },
		{ "handshake type byte, major version 4", "\x16\x04\x00\x00\x30", 5 },
		{ "handshake type byte then HTTP", "\x16GET / HTTP/1.1", 15 },
		{ "SMTP greeting", "220 mail.example ESMTP\r\n", 24 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const uint8_t *bytes = (const uint8_t *)cases[i].bytes;
		size_t decided = 0;

		assert_int_equal(client_reason(bytes, 0), TLS_NEED_MORE);
		for (size_t length = 1; length <= cases[i].length; length++) {
			enum tls_reason reason = client_reason(bytes, length);
			if (reason != TLS_NEED_MORE) {
				if (reason != TLS_NOT_TLS)
					fail_msg("%s: %s", cases[i].description, tls_reason_name(reason));
				decided = length;
				break;
			}
		}
		if (decided == 0 || decided > 2)
			fail_msg("%s: decided after %zu bytes", cases[i].description, decided);
		/* The rest of the stream changes nothing. */
		assert_int_equal(client_reason(bytes, cases[i].length), TLS_NOT_TLS);
	}
}

/* ------------------------------------------------------------------------ */
/* ClientHello: malformed, one broken field each                             */

typedef void (*stream_build)(struct builder *stream);

/* Wrap a message in one TLS 1.0-versioned record, as clients do. */
static void
one_record(struct builder *stream, const struct builder *message)
{
	put_records(stream, TLS_RECORD_HANDSHAKE, message->bytes, message->length, 16384,
		    TLS_VERSION_1_0);
}

static void
hello_with_shape(struct builder *stream, const struct client_shape *shape,
		 void (*extensions)(struct builder *ext))
{
	struct builder *message = builder_new(), *ext = builder_new();

	typical_extensions(ext);
	if (extensions)
		extensions(ext);
	build_client_hello(message, shape, ext);
	one_record(stream, message);
	free(message);
	free(ext);
}

static void
hello_with_extensions(struct builder *stream, void (*extensions)(struct builder *ext))
{
	struct client_shape shape = CLIENT_SHAPE;

	hello_with_shape(stream, &shape, extensions);
}

/* Raw ClientHello body (after the 4-byte header) in one record. */
static void
hello_with_body(struct builder *stream, const struct builder *body)
{
	struct builder *message = builder_new();

	put_u8(message, TLS_HANDSHAKE_CLIENT_HELLO);
	put_u24(message, (unsigned)body->length);
	put_bytes(message, body->bytes, body->length);
	one_record(stream, message);
	free(message);
}

static void
record_length_3(struct builder *s)
{
	put_bytes(s, "\x16\x03\x01\x00\x03\x01\x00\x00", 8);
}

static void
record_length_0(struct builder *s)
{
	put_bytes(s, "\x16\x03\x01\x00\x00", 5);
}

static void
record_length_over_limit(struct builder *s)
{
	put_bytes(s, "\x16\x03\x01\x48\x01\x01", 6);  /* 0x4801 = 2^14 + 2048 + 1 */
}

static void
handshake_type_server_hello(struct builder *s)
{
	struct server_shape shape = SERVER_SHAPE_TLS12;
	struct builder *message = builder_new();

	build_server_hello(message, &shape);
	one_record(s, message);
	free(message);
}

static void
handshake_length_beyond_cap(struct builder *s)
{
	put_bytes(s, "\x16\x03\x01\x40\x00\x01\x01\x00\x00", 9);   /* 65536-byte hello */
}

static void
handshake_length_too_short(struct builder *s)
{
	put_bytes(s, "\x16\x03\x01\x00\x0e\x01\x00\x00\x0a\x03\x03\x00\x00\x00\x00\x00\x00\x00\x00", 19);
}

/* A second record that is an alert, not the hello's continuation. */
static void
second_record_alert(struct builder *s)
{
	struct builder *message = builder_new();

	build_typical_hello(message, 32, NULL, NULL);
	put_records(s, TLS_RECORD_HANDSHAKE, message->bytes, 60, 60, TLS_VERSION_1_0);
	put_record(s, TLS_RECORD_ALERT, (const uint8_t *)"\x02\x28", 2);
	free(message);
}

static void
second_record_version_2(struct builder *s)
{
	struct builder *message = builder_new();

	build_typical_hello(message, 32, NULL, NULL);
	put_records(s, TLS_RECORD_HANDSHAKE, message->bytes, message->length, 60, TLS_VERSION_1_0);
	s->bytes[5 + 60 + 1] = 2;
	free(message);
}

static void
body_ends_in_random(struct builder *s)
{
	struct builder *body = builder_new();

	put_u16(body, TLS_VERSION_1_2);
	put_fill(body, 0x11, 20);       /* the random stops 12 bytes short */
	hello_with_body(s, body);
	free(body);
}

static void
legacy_version_2(struct builder *s)
{
	struct client_shape shape = CLIENT_SHAPE;

	shape.legacy_version = 0x0200;
	hello_with_shape(s, &shape, NULL);
}

static void
session_id_33(struct builder *s)
{
	struct client_shape shape = CLIENT_SHAPE;

	shape.session_id_length = 33;
	hello_with_shape(s, &shape, NULL);
}

static void
session_id_beyond_message(struct builder *s)
{
	struct builder *body = builder_new();

	put_u16(body, TLS_VERSION_1_2);
	put_fill(body, 0x11, TLS_RANDOM_LENGTH);
	put_u8(body, 32);
	put_fill(body, 0x50, 10);
	hello_with_body(s, body);
	free(body);
}

static void
cipher_suites_odd(struct builder *s)
{
	struct client_shape shape = CLIENT_SHAPE;

	shape.cipher_suites_length = 7;
	hello_with_shape(s, &shape, NULL);
}

static void
cipher_suites_none(struct builder *s)
{
	struct client_shape shape = CLIENT_SHAPE;

	shape.cipher_suites_length = 0;
	hello_with_shape(s, &shape, NULL);
}

static void
cipher_suites_beyond_message(struct builder *s)
{
	struct builder *body = builder_new();

	put_u16(body, TLS_VERSION_1_2);
	put_fill(body, 0x11, TLS_RANDOM_LENGTH);
	put_u8(body, 0);
	put_u16(body, 200);
	put_fill(body, 0x13, 10);
	hello_with_body(s, body);
	free(body);
}

static void
compression_none(struct builder *s)
{
	struct client_shape shape = CLIENT_SHAPE;

	shape.compression_length = 0;
	hello_with_shape(s, &shape, NULL);
}

static void
compression_beyond_message(struct builder *s)
{
	struct builder *body = builder_new();

	put_u16(body, TLS_VERSION_1_2);
	put_fill(body, 0x11, TLS_RANDOM_LENGTH);
	put_u8(body, 0);
	put_u16(body, 2);
	put_u16(body, 0x1301);
	put_u8(body, 9);
	put_fill(body, 0, 3);
	hello_with_body(s, body);
	free(body);
}

static void
extensions_overrun(struct builder *s)
{
	struct client_shape shape = CLIENT_SHAPE;

	shape.extensions_length_adjust = 1;
	hello_with_shape(s, &shape, NULL);
}

static void
extensions_short_of_message(struct builder *s)
{
	struct client_shape shape = CLIENT_SHAPE;

	shape.extensions_length_adjust = -1;
	hello_with_shape(s, &shape, NULL);
}

static void
extensions_length_one_byte(struct builder *s)
{
	struct builder *body = builder_new();

	put_u16(body, TLS_VERSION_1_2);
	put_fill(body, 0x11, TLS_RANDOM_LENGTH);
	put_u8(body, 0);
	put_u16(body, 2);
	put_u16(body, 0x1301);
	put_u8(body, 1);
	put_u8(body, 0);
	put_u8(body, 0);                /* half an extensions length */
	hello_with_body(s, body);
	free(body);
}

static void
one_extension_overruns_block(struct builder *ext)
{
	put_u16(ext, 0x1234);
	put_u16(ext, 10);
	put_fill(ext, 0, 4);
}

static void
extension_header_cut(struct builder *ext)
{
	put_u16(ext, 0x1234);
	put_u8(ext, 0);
}

static void
sni_name_longer_than_list(struct builder *ext)
{
	/* list of 15 bytes, name length 20: the name runs past its list */
	ext_raw(ext, TLS_EXTENSION_SERVER_NAME,
		(const uint8_t *)"\x00\x0f\x00\x00\x14" "abcdefghijkl", 17);
}

static void
sni_list_shorter_than_extension(struct builder *ext)
{
	ext_raw(ext, TLS_EXTENSION_SERVER_NAME,
		(const uint8_t *)"\x00\x04\x00\x00\x01" "ab", 7);
}

static void
sni_empty_extension(struct builder *ext)
{
	ext_empty(ext, TLS_EXTENSION_SERVER_NAME);
}

static void
supported_versions_odd(struct builder *ext)
{
	ext_raw(ext, TLS_EXTENSION_SUPPORTED_VERSIONS, (const uint8_t *)"\x03\x03\x04\x03", 4);
}

static void
supported_versions_beyond_extension(struct builder *ext)
{
	ext_raw(ext, TLS_EXTENSION_SUPPORTED_VERSIONS, (const uint8_t *)"\x06\x03\x04\x03\x03", 5);
}

static void
supported_versions_empty(struct builder *ext)
{
	ext_raw(ext, TLS_EXTENSION_SUPPORTED_VERSIONS, (const uint8_t *)"\x00", 1);
}

static void
psk_identities_overrun(struct builder *ext)
{
	struct builder *body = builder_new();

	put_u16(body, 400);             /* identities length past the extension */
	put_u16(body, 16);
	put_fill(body, 0xa0, 16);
	put_u32(body, 0);
	ext_raw(ext, TLS_EXTENSION_PRE_SHARED_KEY, body->bytes, body->length);
	free(body);
}

static void
psk_identity_overruns_identities(struct builder *ext)
{
	struct builder *body = builder_new();

	put_u16(body, 22);
	put_u16(body, 100);             /* identity longer than the list */
	put_fill(body, 0xa0, 20);
	put_u16(body, 33);
	put_u8(body, 32);
	put_fill(body, 0xbb, 32);
	ext_raw(ext, TLS_EXTENSION_PRE_SHARED_KEY, body->bytes, body->length);
	free(body);
}

static void
psk_binders_missing(struct builder *ext)
{
	struct builder *body = builder_new();

	put_u16(body, 22);
	put_u16(body, 16);
	put_fill(body, 0xa0, 16);
	put_u32(body, 0);
	ext_raw(ext, TLS_EXTENSION_PRE_SHARED_KEY, body->bytes, body->length);
	free(body);
}

static void
psk_binder_count_mismatch(struct builder *ext)
{
	struct builder *body = builder_new();

	put_u16(body, 2 * 22);
	for (int i = 0; i < 2; i++) {
		put_u16(body, 16);
		put_fill(body, 0xa0, 16);
		put_u32(body, 0);
	}
	put_u16(body, 33);              /* one binder for two identities */
	put_u8(body, 32);
	put_fill(body, 0xbb, 32);
	ext_raw(ext, TLS_EXTENSION_PRE_SHARED_KEY, body->bytes, body->length);
	free(body);
}

static void
psk_not_last(struct builder *ext)
{
	ext_psk(ext, 1, 64);
	ext_padding(ext, 10);
}

static void
duplicate_server_name(struct builder *ext)
{
	ext_sni(ext, "other.example");   /* typical_extensions already has one */
}

static void
duplicate_unknown_extension(struct builder *ext)
{
	ext_raw(ext, 0x7777, (const uint8_t *)"a", 1);
	ext_raw(ext, 0x7777, (const uint8_t *)"b", 1);
}

static void
alpn_empty_name(struct builder *ext)
{
	ext_raw(ext, TLS_EXTENSION_ALPN, (const uint8_t *)"\x00\x04\x02h2\x00", 6);
}

static void
early_data_with_body(struct builder *ext)
{
	ext_raw(ext, TLS_EXTENSION_EARLY_DATA, (const uint8_t *)"\0\0\0\1", 4);
}

/* The stream builder for a case that appends one broken extension. */
#define EXT_CASE(name) \
	static void name##_stream(struct builder *s) { hello_with_extensions(s, name); }
EXT_CASE(one_extension_overruns_block)
EXT_CASE(extension_header_cut)
EXT_CASE(sni_name_longer_than_list)
EXT_CASE(sni_list_shorter_than_extension)
EXT_CASE(sni_empty_extension)
EXT_CASE(supported_versions_odd)
EXT_CASE(supported_versions_beyond_extension)
EXT_CASE(supported_versions_empty)
EXT_CASE(psk_identities_overrun)
EXT_CASE(psk_identity_overruns_identities)
EXT_CASE(psk_binders_missing)
EXT_CASE(psk_binder_count_mismatch)
EXT_CASE(psk_not_last)
EXT_CASE(duplicate_server_name)
EXT_CASE(duplicate_unknown_extension)
EXT_CASE(alpn_empty_name)
EXT_CASE(early_data_with_body)

static const struct malformed_case {
	const char *description;
	stream_build build;
	enum tls_reason expected;
} malformed_client_cases[] = {
	{ "first record shorter than a handshake header", record_length_3, TLS_BAD_RECORD_LENGTH },
	{ "record length 0", record_length_0, TLS_BAD_RECORD_LENGTH },
	{ "record length over 2^14+2048", record_length_over_limit, TLS_BAD_RECORD_LENGTH },
	{ "second record is an alert", second_record_alert, TLS_BAD_RECORD_TYPE },
	{ "second record major version 2", second_record_version_2, TLS_BAD_RECORD_VERSION },
	{ "ServerHello sent by a client", handshake_type_server_hello, TLS_BAD_HANDSHAKE_TYPE },
	{ "handshake length beyond the cap", handshake_length_beyond_cap, TLS_TOO_LARGE },
	{ "handshake length too short for a hello", handshake_length_too_short, TLS_BAD_HANDSHAKE_LENGTH },
	{ "hello ends inside its random", body_ends_in_random, TLS_BAD_HANDSHAKE_LENGTH },
	{ "legacy_version 2.0", legacy_version_2, TLS_BAD_VERSION },
	{ "session ID of 33 bytes", session_id_33, TLS_BAD_SESSION_ID_LENGTH },
	{ "session ID beyond the message", session_id_beyond_message, TLS_BAD_SESSION_ID_LENGTH },
	{ "odd cipher-suite length", cipher_suites_odd, TLS_BAD_CIPHER_SUITES_LENGTH },
	{ "no cipher suites", cipher_suites_none, TLS_BAD_CIPHER_SUITES_LENGTH },
	{ "cipher suites beyond the message", cipher_suites_beyond_message, TLS_BAD_CIPHER_SUITES_LENGTH },
	{ "no compression methods", compression_none, TLS_BAD_COMPRESSION_LENGTH },
	{ "compression methods beyond the message", compression_beyond_message, TLS_BAD_COMPRESSION_LENGTH },
	{ "extensions length overruns the message", extensions_overrun, TLS_BAD_EXTENSIONS_LENGTH },
	{ "extensions length short of the message", extensions_short_of_message, TLS_BAD_EXTENSIONS_LENGTH },
	{ "half an extensions length", extensions_length_one_byte, TLS_BAD_EXTENSIONS_LENGTH },
	{ "one extension overruns the block", one_extension_overruns_block_stream, TLS_BAD_EXTENSIONS_LENGTH },
	{ "extension header cut", extension_header_cut_stream, TLS_BAD_EXTENSIONS_LENGTH },
	{ "SNI name longer than its list", sni_name_longer_than_list_stream, TLS_BAD_EXTENSION },
	{ "SNI list shorter than the extension", sni_list_shorter_than_extension_stream, TLS_BAD_EXTENSION },
	{ "SNI extension empty in a ClientHello", sni_empty_extension_stream, TLS_BAD_EXTENSION },
	{ "supported_versions odd list length", supported_versions_odd_stream, TLS_BAD_EXTENSION },
	{ "supported_versions list beyond the extension", supported_versions_beyond_extension_stream, TLS_BAD_EXTENSION },
	{ "supported_versions empty list", supported_versions_empty_stream, TLS_BAD_EXTENSION },
	{ "pre_shared_key identities overrun", psk_identities_overrun_stream, TLS_BAD_EXTENSION },
	{ "pre_shared_key identity overruns its list", psk_identity_overruns_identities_stream, TLS_BAD_EXTENSION },
	{ "pre_shared_key without binders", psk_binders_missing_stream, TLS_BAD_EXTENSION },
	{ "pre_shared_key binder count mismatch", psk_binder_count_mismatch_stream, TLS_BAD_EXTENSION },
	{ "pre_shared_key not the last extension", psk_not_last_stream, TLS_BAD_EXTENSION },
	{ "duplicate server_name", duplicate_server_name_stream, TLS_BAD_EXTENSION },
	{ "duplicate unknown extension", duplicate_unknown_extension_stream, TLS_BAD_EXTENSION },
	{ "ALPN with an empty protocol name", alpn_empty_name_stream, TLS_BAD_EXTENSION },
	{ "early_data with a body in a ClientHello", early_data_with_body_stream, TLS_BAD_EXTENSION },
};

/* Each malformed hello yields the reason operators will see counted. */
static void
test_malformed_client_hellos_report_their_reason(void **state)
{
	int failures = 0;

	(void)state;
	for (size_t i = 0; i < sizeof malformed_client_cases / sizeof malformed_client_cases[0]; i++) {
		const struct malformed_case *c = &malformed_client_cases[i];
		struct builder *stream = builder_new();
		enum tls_reason reason;

		c->build(stream);
		reason = client_reason(stream->bytes, stream->length);
		if (reason != c->expected) {
			print_message("FAIL %s: want %s, got %s\n", c->description,
				      tls_reason_name(c->expected), tls_reason_name(reason));
			failures++;
		}
		/* No prefix of a malformed stream may parse either. */
		for (size_t length = 0; length < stream->length; length++) {
			reason = client_reason(stream->bytes, length);
			if (reason == TLS_OK) {
				print_message("FAIL %s: prefix %zu parsed\n", c->description, length);
				failures++;
				break;
			}
		}
		free(stream);
	}
	assert_int_equal(failures, 0);
}

/* Every reason has a distinct snake_case counter name. */
static void
test_every_reason_has_a_counter_name(void **state)
{
	(void)state;
	for (int i = 0; i < TLS_REASON_COUNT; i++) {
		const char *name = tls_reason_name((enum tls_reason)i);

		assert_non_null(name);
		assert_string_not_equal(name, "unknown");
		for (const char *p = name; *p; p++)
			assert_true((*p >= 'a' && *p <= 'z') || *p == '_' || (*p >= '0' && *p <= '9'));
		for (int j = 0; j < i; j++)
			assert_string_not_equal(name, tls_reason_name((enum tls_reason)j));
	}
	assert_string_equal(tls_reason_name(TLS_REASON_COUNT), "unknown");
	assert_string_equal(tls_reason_name(TLS_NOT_TLS), "not_tls");
}

/* ------------------------------------------------------------------------ */
/* ServerHello and NewSessionTicket                                          */

static enum tls_reason
server_hello_parse(const struct builder *message, struct tls_server_hello *out, uint8_t **copy)
{
	*copy = exact_copy(message->bytes, message->length);
	return tls_parse_server_hello(*copy, message->length, out);
}

/* A TLS 1.2 ServerHello: its session ID is the one to learn; the
 * SessionTicket extension announces a NewSessionTicket. */
static void
test_tls12_server_hello_with_session_id_parses(void **state)
{
	struct server_shape shape = SERVER_SHAPE_TLS12;
	struct builder *message = builder_new();
	struct tls_server_hello hello;
	uint8_t *copy;

	(void)state;
	build_server_hello(message, &shape);
	assert_int_equal(server_hello_parse(message, &hello, &copy), TLS_OK);
	assert_int_equal(hello.legacy_version, TLS_VERSION_1_2);
	assert_int_equal(hello.negotiated_version, TLS_VERSION_1_2);
	assert_int_equal(hello.session_id_length, 32);
	assert_int_equal(hello.session_id[31], session_id_byte(31));
	assert_true(inside(hello.session_id, 32, copy, message->length));
	assert_int_equal(hello.cipher_suite, 0xc02f);
	assert_true(hello.ticket_extension);
	assert_false(hello.psk_accepted);
	assert_false(hello.is_hello_retry_request);
	free(copy);

	/* An old server may send no extensions at all. */
	shape.no_extensions = true;
	message->length = 0;
	build_server_hello(message, &shape);
	assert_int_equal(server_hello_parse(message, &hello, &copy), TLS_OK);
	assert_false(hello.ticket_extension);
	assert_int_equal(hello.session_id_length, 32);
	free(copy);
	free(message);
}

/* A TLS 1.3 ServerHello echoes the client's random legacy session ID and
 * says 0x0304 in supported_versions: the caller must not store the ID.  The
 * pre_shared_key extension says the offered identity was accepted. */
static void
test_tls13_server_hello_echoes_session_id_and_accepts_psk(void **state)
{
	struct server_shape shape = { .legacy_version = TLS_VERSION_1_2, .session_id_length = 32,
				      .selected_version = TLS_VERSION_1_3, .psk = true,
				      .psk_identity = 1 };
	struct builder *message = builder_new();
	struct tls_server_hello hello;
	uint8_t *copy;

	(void)state;
	build_server_hello(message, &shape);
	assert_int_equal(server_hello_parse(message, &hello, &copy), TLS_OK);
	assert_int_equal(hello.legacy_version, TLS_VERSION_1_2);
	assert_int_equal(hello.negotiated_version, TLS_VERSION_1_3);
	assert_int_equal(hello.session_id_length, 32);
	assert_true(hello.psk_accepted);
	assert_int_equal(hello.psk_selected_identity, 1);
	assert_false(hello.is_hello_retry_request);
	free(copy);
	free(message);
}

/* A HelloRetryRequest is a ServerHello with the SHA-256("HelloRetryRequest")
 * random; it must not be mistaken for the real one. */
static void
test_hello_retry_request_is_detected(void **state)
{
	struct server_shape shape = { .legacy_version = TLS_VERSION_1_2, .session_id_length = 32,
				      .selected_version = TLS_VERSION_1_3, .hello_retry = true };
	struct builder *message = builder_new();
	struct tls_server_hello hello;
	uint8_t *copy;

	(void)state;
	build_server_hello(message, &shape);
	assert_int_equal(server_hello_parse(message, &hello, &copy), TLS_OK);
	assert_true(hello.is_hello_retry_request);
	assert_int_equal(hello.negotiated_version, TLS_VERSION_1_3);
	free(copy);
	/* One bit off the magic: an ordinary ServerHello. */
	message->bytes[4 + 2 + 31] ^= 1;
	assert_int_equal(server_hello_parse(message, &hello, &copy), TLS_OK);
	assert_false(hello.is_hello_retry_request);
	free(copy);
	free(message);
}

static void
server_hello_with_extension(struct builder *message, uint16_t type, const char *body, size_t length,
			    uint16_t second_type)
{
	put_u8(message, TLS_HANDSHAKE_SERVER_HELLO);
	vector_open(message, 3);
	put_u16(message, TLS_VERSION_1_2);
	put_fill(message, 0x22, 32);
	put_u8(message, 0);
	put_u16(message, 0x1301);
	put_u8(message, 0);
	vector_open(message, 2);
	ext_raw(message, type, (const uint8_t *)body, length);
	if (second_type != 0xffff)
		ext_raw(message, second_type, (const uint8_t *)body, length);
	vector_close(message);
	vector_close(message);
}

/* Malformed ServerHellos: each broken field yields its reason. */
static void
test_malformed_server_hellos_report_their_reason(void **state)
{
	static const struct {
		const char *description;
		uint16_t type;
		const char *body;
		size_t length;
		uint16_t duplicate;
		enum tls_reason expected;
	} cases[] = {
		{ "supported_versions of 3 bytes", 43, "\x03\x04\x00", 3, 0xffff, TLS_BAD_EXTENSION },
		{ "supported_versions as a client list", 43, "\x02\x03\x04", 3, 0xffff, TLS_BAD_EXTENSION },
		{ "pre_shared_key of 1 byte", 41, "\x00", 1, 0xffff, TLS_BAD_EXTENSION },
		{ "SessionTicket with a body", 35, "\x01\x02", 2, 0xffff, TLS_BAD_EXTENSION },
		{ "duplicate supported_versions", 43, "\x03\x04", 2, 43, TLS_BAD_EXTENSION },
		{ "duplicate unknown extension", 0x3344, "", 0, 0x3344, TLS_BAD_EXTENSION },
		{ "unknown extension: skipped", 0x3344, "zz", 2, 0xffff, TLS_OK },
	};
	struct tls_server_hello hello;
	uint8_t *copy;

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct builder *message = builder_new();
		enum tls_reason reason;

		server_hello_with_extension(message, cases[i].type, cases[i].body, cases[i].length,
					    cases[i].duplicate);
		reason = server_hello_parse(message, &hello, &copy);
		if (reason != cases[i].expected)
			fail_msg("%s: want %s, got %s", cases[i].description,
				 tls_reason_name(cases[i].expected), tls_reason_name(reason));
		free(copy);
		free(message);
	}

	/* Field-level breakage on a good TLS 1.2 ServerHello. */
	struct server_shape shape = SERVER_SHAPE_TLS12;
	struct builder *message = builder_new();
	build_server_hello(message, &shape);
	message->bytes[4 + 34] = 33;                           /* session ID length */
	assert_int_equal(server_hello_parse(message, &hello, &copy), TLS_BAD_SESSION_ID_LENGTH);
	free(copy);
	message->length = 0;
	build_server_hello(message, &shape);
	message->bytes[4] = 0x7f;                              /* legacy_version 0x7f03 */
	assert_int_equal(server_hello_parse(message, &hello, &copy), TLS_BAD_VERSION);
	free(copy);
	message->length = 0;
	build_server_hello(message, &shape);
	message->bytes[0] = TLS_HANDSHAKE_CLIENT_HELLO;
	assert_int_equal(server_hello_parse(message, &hello, &copy), TLS_BAD_HANDSHAKE_TYPE);
	free(copy);
	message->length = 0;
	build_server_hello(message, &shape);
	message->bytes[4 + 35 + 32 + 3] ^= 1;                  /* extensions length */
	assert_int_equal(server_hello_parse(message, &hello, &copy), TLS_BAD_EXTENSIONS_LENGTH);
	free(copy);
	/* The header's length cut right after the cipher suite: no compression byte. */
	message->length = 0;
	build_server_hello(message, &shape);
	message->bytes[3] = (uint8_t)(2 + 32 + 1 + 32 + 2);
	assert_int_equal(server_hello_parse(message, &hello, &copy), TLS_BAD_COMPRESSION_LENGTH);
	free(copy);
	free(message);
}

/* TLS 1.2 NewSessionTicket: the ticket is found; an empty one (the server
 * declined) gives no ticket; a wrong ticket length is refused. */
static void
test_new_session_ticket_parses_and_refuses_bad_lengths(void **state)
{
	struct builder *message = builder_new(), *expected = builder_new();
	const uint8_t *ticket;
	uint16_t ticket_length;
	uint8_t *copy;

	(void)state;
	build_new_session_ticket(message, 7200, 176, 0xc0);
	put_ticket(expected, 176, 0xc0);
	copy = exact_copy(message->bytes, message->length);
	assert_int_equal(tls_parse_new_session_ticket(copy, message->length, &ticket, &ticket_length),
			 TLS_OK);
	assert_int_equal(ticket_length, 176);
	assert_memory_equal(ticket, expected->bytes, 176);
	free(copy);

	message->length = 0;
	build_new_session_ticket(message, 0, 0, 0);
	copy = exact_copy(message->bytes, message->length);
	assert_int_equal(tls_parse_new_session_ticket(copy, message->length, &ticket, &ticket_length),
			 TLS_OK);
	assert_null(ticket);
	assert_int_equal(ticket_length, 0);
	free(copy);

	static const struct {
		const char *description;
		const char *bytes;
		size_t length;
		enum tls_reason expected;
	} cases[] = {
		{ "ticket longer than the message", "\x04\x00\x00\x08\0\0\0\0\x00\x05\x01\x02", 12, TLS_BAD_TICKET_LENGTH },
		{ "ticket shorter than the message", "\x04\x00\x00\x08\0\0\0\0\x00\x01\x01\x02", 12, TLS_BAD_TICKET_LENGTH },
		{ "no ticket length", "\x04\x00\x00\x05\0\0\0\0\x00", 9, TLS_BAD_TICKET_LENGTH },
		{ "no lifetime", "\x04\x00\x00\x03\0\0\0", 7, TLS_BAD_HANDSHAKE_LENGTH },
		{ "not a NewSessionTicket", "\x0b\x00\x00\x06\0\0\0\0\x00\x00", 10, TLS_BAD_HANDSHAKE_TYPE },
		{ "message cut short", "\x04\x00\x00\x08\0\0\0\0", 8, TLS_NEED_MORE },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		enum tls_reason reason;

		copy = exact_copy((const uint8_t *)cases[i].bytes, cases[i].length);
		reason = tls_parse_new_session_ticket(copy, cases[i].length, &ticket, &ticket_length);
		free(copy);
		if (reason != cases[i].expected)
			fail_msg("%s: want %s, got %s", cases[i].description,
				 tls_reason_name(cases[i].expected), tls_reason_name(reason));
	}
	free(message);
	free(expected);
}

/* ------------------------------------------------------------------------ */
/* Server stream scan                                                        */

/* TLS 1.2 full handshake: ServerHello + Certificate + ServerKeyExchange +
 * ServerHelloDone in one record; after the client's flight, NewSessionTicket
 * in its own record, then ChangeCipherSpec: the ticket is found, whatever
 * the TCP chunking. */
static void
build_tls12_full_server_stream(struct builder *stream, size_t ticket_length, size_t certificate)
{
	struct server_shape shape = SERVER_SHAPE_TLS12;
	struct builder *flight = builder_new(), *ticket = builder_new();

	shape.session_id_length = 0;     /* as OpenSSL does when it issues a ticket */
	build_server_hello(flight, &shape);
	build_opaque_message(flight, 11, certificate);
	build_opaque_message(flight, 12, 300);
	build_opaque_message(flight, 14, 0);
	put_records(stream, TLS_RECORD_HANDSHAKE, flight->bytes, flight->length, 16384,
		    TLS_VERSION_1_2);
	build_new_session_ticket(ticket, 7200, ticket_length, 0xc0);
	put_record(stream, TLS_RECORD_HANDSHAKE, ticket->bytes, ticket->length);
	put_change_cipher_spec(stream);
	put_encrypted(stream, TLS_RECORD_HANDSHAKE, 40);      /* Finished */
	put_encrypted(stream, TLS_RECORD_APPLICATION_DATA, 100);
	free(flight);
	free(ticket);
}

static void
test_server_stream_tls12_full_handshake_finds_ticket(void **state)
{
	struct builder *stream = builder_new(), *expected = builder_new();
	struct scan_summary *summary = malloc(sizeof(*summary));

	(void)state;
	build_tls12_full_server_stream(stream, 176, 2000);
	put_ticket(expected, 176, 0xc0);
	scan_whole(stream->bytes, stream->length, summary);
	assert_int_equal(summary->reason, TLS_OK);
	assert_true(summary->has_server_hello);
	assert_int_equal(summary->negotiated_version, TLS_VERSION_1_2);
	assert_int_equal(summary->session_id_length, 0);
	assert_true(summary->ticket_extension);
	assert_true(summary->has_ticket);
	assert_int_equal(summary->ticket_reason, TLS_OK);
	assert_int_equal(summary->ticket_lifetime_hint, 7200);
	assert_int_equal(summary->ticket_length, 176);
	assert_memory_equal(summary->ticket, expected->bytes, 176);
	/* Stopped right after the ChangeCipherSpec header: nothing encrypted read. */
	assert_int_equal(summary->consumed, stream->length - (5 + 1) - (5 + 40) - (5 + 100) + 5);
	assert_chunking_invariant(stream->bytes, stream->length, summary);
	free(summary);
	free(stream);
	free(expected);
}

/* TLS 1.2 resumption with a renewed ticket: ServerHello and NewSessionTicket
 * in one record, then ChangeCipherSpec: session ID and ticket found. */
static void
test_server_stream_tls12_resumption_finds_renewed_ticket(void **state)
{
	struct server_shape shape = SERVER_SHAPE_TLS12;
	struct builder *stream = builder_new(), *flight = builder_new();
	struct scan_summary *summary = malloc(sizeof(*summary));

	(void)state;
	build_server_hello(flight, &shape);
	build_new_session_ticket(flight, 300, 250, 0xc0);
	put_record(stream, TLS_RECORD_HANDSHAKE, flight->bytes, flight->length);
	put_change_cipher_spec(stream);
	put_encrypted(stream, TLS_RECORD_HANDSHAKE, 40);
	scan_whole(stream->bytes, stream->length, summary);
	assert_int_equal(summary->reason, TLS_OK);
	assert_int_equal(summary->session_id_length, 32);
	assert_int_equal(summary->session_id[0], session_id_byte(0));
	assert_true(summary->has_ticket);
	assert_int_equal(summary->ticket_length, 250);
	assert_int_equal(summary->ticket_lifetime_hint, 300);
	assert_chunking_invariant(stream->bytes, stream->length, summary);

	/* Session-ID resumption without tickets: ServerHello, CCS; no ticket. */
	shape.ticket_extension = false;
	stream->length = flight->length = 0;
	build_server_hello(flight, &shape);
	put_record(stream, TLS_RECORD_HANDSHAKE, flight->bytes, flight->length);
	put_change_cipher_spec(stream);
	scan_whole(stream->bytes, stream->length, summary);
	assert_int_equal(summary->reason, TLS_OK);
	assert_false(summary->has_ticket);
	assert_int_equal(summary->ticket_reason, TLS_OK);
	assert_int_equal(summary->session_id_length, 32);
	free(summary);
	free(stream);
	free(flight);
}

/* A stream cut anywhere before the ChangeCipherSpec needs more; the
 * ServerHello is known as soon as its last byte is in. */
static void
test_server_stream_cut_midway_needs_more(void **state)
{
	struct builder *stream = builder_new();
	struct scan_summary *summary = malloc(sizeof(*summary));
	size_t ccs_end, hello_end;

	(void)state;
	build_tls12_full_server_stream(stream, 176, 900);
	ccs_end = stream->length - (5 + 1) - (5 + 40) - (5 + 100) + 5;
	hello_end = 5 + 4 + load_u24_test(stream->bytes + 6);
	for (size_t length = 0; length < ccs_end; length++) {
		scan_whole(stream->bytes, length, summary);
		if (summary->reason != TLS_NEED_MORE)
			fail_msg("prefix %zu: %s", length, tls_reason_name(summary->reason));
		assert_int_equal(summary->has_server_hello, length >= hello_end);
	}
	scan_whole(stream->bytes, ccs_end, summary);
	assert_int_equal(summary->reason, TLS_OK);
	free(summary);
	free(stream);
}

/* TLS 1.3: ServerHello, the compatibility ChangeCipherSpec, then encrypted
 * records: done, no ticket, negotiated 1.3 (so the echoed ID is not stored).
 * Without the compatibility CCS the first application_data record ends it. */
static void
test_server_stream_tls13_is_done_without_ticket(void **state)
{
	struct server_shape shape = { .legacy_version = TLS_VERSION_1_2, .session_id_length = 32,
				      .selected_version = TLS_VERSION_1_3, .psk = true };
	struct builder *stream = builder_new(), *hello = builder_new();
	struct scan_summary *summary = malloc(sizeof(*summary));

	(void)state;
	build_server_hello(hello, &shape);
	put_record(stream, TLS_RECORD_HANDSHAKE, hello->bytes, hello->length);
	put_change_cipher_spec(stream);
	for (int i = 0; i < 4; i++)
		put_encrypted(stream, TLS_RECORD_APPLICATION_DATA, 300);
	scan_whole(stream->bytes, stream->length, summary);
	assert_int_equal(summary->reason, TLS_OK);
	assert_int_equal(summary->negotiated_version, TLS_VERSION_1_3);
	assert_true(summary->psk_accepted);
	assert_false(summary->has_ticket);
	assert_int_equal(summary->ticket_reason, TLS_OK);
	assert_chunking_invariant(stream->bytes, stream->length, summary);

	stream->length = 0;
	put_record(stream, TLS_RECORD_HANDSHAKE, hello->bytes, hello->length);
	put_encrypted(stream, TLS_RECORD_APPLICATION_DATA, 300);
	scan_whole(stream->bytes, stream->length, summary);
	assert_int_equal(summary->reason, TLS_OK);
	assert_int_equal(summary->consumed, 5 + hello->length + 5);
	free(summary);
	free(stream);
	free(hello);
}

/* TLS 1.3 with a HelloRetryRequest: HRR, CCS, then (after the client's second
 * hello) the real ServerHello, which says whether the PSK was accepted. */
static void
test_server_stream_hello_retry_then_server_hello(void **state)
{
	struct server_shape retry = { .legacy_version = TLS_VERSION_1_2, .session_id_length = 32,
				      .selected_version = TLS_VERSION_1_3, .hello_retry = true };
	struct server_shape real = retry;
	struct builder *stream = builder_new(), *message = builder_new();
	struct scan_summary *summary = malloc(sizeof(*summary));
	size_t retry_end;

	(void)state;
	real.hello_retry = false;
	real.psk = true;
	build_server_hello(message, &retry);
	put_record(stream, TLS_RECORD_HANDSHAKE, message->bytes, message->length);
	put_change_cipher_spec(stream);
	retry_end = stream->length;
	message->length = 0;
	build_server_hello(message, &real);
	put_record(stream, TLS_RECORD_HANDSHAKE, message->bytes, message->length);
	put_encrypted(stream, TLS_RECORD_APPLICATION_DATA, 200);
	scan_whole(stream->bytes, stream->length, summary);
	assert_int_equal(summary->reason, TLS_OK);
	assert_true(summary->hello_retry);
	assert_true(summary->has_server_hello);
	assert_true(summary->psk_accepted);
	assert_int_equal(summary->negotiated_version, TLS_VERSION_1_3);
	assert_chunking_invariant(stream->bytes, stream->length, summary);

	/* Cut after the HRR and its CCS: still waiting for the real ServerHello. */
	scan_whole(stream->bytes, retry_end, summary);
	assert_int_equal(summary->reason, TLS_NEED_MORE);
	free(summary);
	free(stream);
	free(message);
}

/* A 40 KB certificate chain (three records) is skipped, not buffered: a 1 KB
 * scratch still finds the ticket.  A ticket too big for the scratch left is
 * skipped with ticket_reason too_large; the ServerHello is still learned. */
static void
test_server_stream_huge_certificate_needs_no_scratch(void **state)
{
	struct builder *stream = builder_new();
	struct scan_summary *summary = malloc(sizeof(*summary)), *whole = malloc(sizeof(*whole));

	(void)state;
	build_tls12_full_server_stream(stream, 500, 40000);
	scan_chunks(stream->bytes, stream->length, 1460, 1024, summary);
	assert_int_equal(summary->reason, TLS_OK);
	assert_true(summary->has_ticket);
	assert_int_equal(summary->ticket_length, 500);

	scan_chunks(stream->bytes, stream->length, 1460, 512, summary);
	assert_int_equal(summary->reason, TLS_OK);
	assert_true(summary->has_server_hello);
	assert_false(summary->has_ticket);
	assert_int_equal(summary->ticket_reason, TLS_TOO_LARGE);

	/* A scratch smaller than the ServerHello: nothing to learn. */
	scan_chunks(stream->bytes, stream->length, 1460, 40, summary);
	assert_int_equal(summary->reason, TLS_TOO_LARGE);
	assert_false(summary->has_server_hello);

	scan_whole(stream->bytes, stream->length, whole);
	assert_chunking_invariant(stream->bytes, stream->length, whole);
	free(summary);
	free(whole);
	free(stream);
}

/* Streams the scanner cannot follow end with a reason, never a guess. */
static void
test_server_stream_errors_report_their_reason(void **state)
{
	struct server_shape shape = SERVER_SHAPE_TLS12;
	struct builder *hello = builder_new();
	struct scan_summary *summary = malloc(sizeof(*summary));

	(void)state;
	build_server_hello(hello, &shape);
	static const struct {
		const char *description;
		int kind;
		enum tls_reason expected;
		size_t decided_by;     /* bytes fed when the reason is known; 0: whole */
	} cases[] = {
		{ "alert instead of a ServerHello", 0, TLS_ALERT, 5 },
		{ "HTTP response from a plain backend", 1, TLS_NOT_TLS, 1 },
		{ "application data first", 2, TLS_NOT_TLS, 1 },
		{ "ChangeCipherSpec inside a message", 3, TLS_BAD_RECORD_TYPE, 0 },
		{ "Certificate before ServerHello", 4, TLS_BAD_HANDSHAKE_TYPE, 0 },
		{ "heartbeat record", 5, TLS_BAD_RECORD_TYPE, 0 },
		{ "record length 0", 6, TLS_BAD_RECORD_LENGTH, 0 },
		{ "alert after the ServerHello", 7, TLS_ALERT, 0 },
		{ "malformed ServerHello", 8, TLS_BAD_SESSION_ID_LENGTH, 0 },
		{ "later record major version 2", 9, TLS_BAD_RECORD_VERSION, 0 },
		{ "ChangeCipherSpec before any ServerHello", 10, TLS_NOT_TLS, 1 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct builder *stream = builder_new(), *message = builder_new();

		switch (cases[i].kind) {
		case 0: put_record(stream, TLS_RECORD_ALERT, (const uint8_t *)"\x02\x28", 2); break;
		case 1: put_bytes(stream, "HTTP/1.1 400 Bad Request\r\n", 26); break;
		case 2: put_encrypted(stream, TLS_RECORD_APPLICATION_DATA, 30); break;
		case 3:
			put_record(stream, TLS_RECORD_HANDSHAKE, hello->bytes, hello->length - 3);
			put_change_cipher_spec(stream);
			break;
		case 4:
			build_opaque_message(message, 11, 20);
			put_record(stream, TLS_RECORD_HANDSHAKE, message->bytes, message->length);
			break;
		case 5:
			put_record(stream, TLS_RECORD_HANDSHAKE, hello->bytes, hello->length);
			put_record(stream, 24, (const uint8_t *)"\x01\x00", 2);
			break;
		case 6:
			put_record(stream, TLS_RECORD_HANDSHAKE, hello->bytes, hello->length);
			put_bytes(stream, "\x16\x03\x03\x00\x00", 5);
			break;
		case 7:
			put_record(stream, TLS_RECORD_HANDSHAKE, hello->bytes, hello->length);
			put_record(stream, TLS_RECORD_ALERT, (const uint8_t *)"\x02\x28", 2);
			break;
		case 8:
			put_bytes(message, hello->bytes, hello->length);
			message->bytes[4 + 34] = 40;
			put_record(stream, TLS_RECORD_HANDSHAKE, message->bytes, message->length);
			break;
		case 9:
			put_record(stream, TLS_RECORD_HANDSHAKE, hello->bytes, hello->length);
			put_bytes(stream, "\x16\x02\x03\x00\x04\x0e\x00\x00\x00", 9);
			break;
		case 10:
			put_change_cipher_spec(stream);
			break;
		}
		scan_whole(stream->bytes, stream->length, summary);
		if (summary->reason != cases[i].expected)
			fail_msg("%s: want %s, got %s", cases[i].description,
				 tls_reason_name(cases[i].expected), tls_reason_name(summary->reason));
		if (cases[i].decided_by) {
			scan_whole(stream->bytes, cases[i].decided_by, summary);
			if (summary->reason != cases[i].expected)
				fail_msg("%s: not decided after %zu bytes", cases[i].description,
					 cases[i].decided_by);
		}
		free(stream);
		free(message);
	}
	free(summary);
	free(hello);
}

/* A caller that keeps the whole stream calls tls_scan_server_stream with a
 * longer buffer each time; each byte is consumed once, and the answer matches
 * a single call on the whole stream. */
static void
test_scan_server_stream_is_incremental_over_a_growing_buffer(void **state)
{
	struct builder *stream = builder_new();
	struct scan_summary *incremental = malloc(sizeof(*incremental)), *whole = malloc(sizeof(*whole));
	struct tls_server_scan scan;
	uint8_t *scratch = malloc(CAP);
	enum tls_reason reason = TLS_NEED_MORE;

	(void)state;
	build_tls12_full_server_stream(stream, 176, 3000);
	tls_server_scan_init(&scan, scratch, CAP);
	for (size_t length = 0; length <= stream->length; length += 97) {
		uint64_t before = scan.consumed;
		uint8_t *copy = exact_copy(stream->bytes, length);

		reason = tls_scan_server_stream(copy, length, &scan);
		free(copy);
		assert_true(scan.consumed >= before);
		assert_true(scan.consumed <= length || length == 0);
	}
	reason = tls_scan_server_stream(stream->bytes, stream->length, &scan);
	assert_int_equal(reason, TLS_OK);
	summarize(&scan, incremental);
	scan_whole(stream->bytes, stream->length, whole);
	assert_same_summary(incremental, whole);
	/* Done: later calls consume nothing and keep the answer. */
	assert_int_equal(tls_scan_server_stream(stream->bytes, stream->length, &scan), TLS_OK);
	assert_int_equal(scan.consumed, whole->consumed);
	free(incremental);
	free(whole);
	free(scratch);
	free(stream);
}

/* ------------------------------------------------------------------------ */
/* Robustness: truncation, shortened length fields, random corruption        */

static uint64_t prng_state = 0x9e3779b97f4a7c15ull;

static uint64_t
prng(void)
{
	/* xorshift64; the masks keep clang's -fsanitize=integer quiet about the
	 * bits the shifts drop on purpose */
	prng_state ^= (prng_state & (UINT64_MAX >> 13)) << 13;
	prng_state ^= prng_state >> 7;
	prng_state ^= (prng_state & (UINT64_MAX >> 17)) << 17;
	return prng_state;
}

/* Parse `message` with every header length 0..actual (buffer cut to match)
 * and every prefix: never OK on a strict prefix, never a read outside. */
static void
exercise_client_message(const uint8_t *message, size_t length)
{
	struct tls_client_hello hello;

	for (size_t prefix = 0; prefix < length; prefix++) {
		uint8_t *copy = exact_copy(message, prefix);
		enum tls_reason reason = tls_parse_client_hello(copy, prefix, &hello);

		free(copy);
		if (reason == TLS_OK)
			fail_msg("prefix %zu of %zu parsed", prefix, length);
	}
	for (size_t claimed = 0; claimed + 4 <= length; claimed++) {
		uint8_t *copy = exact_copy(message, 4 + claimed);

		copy[1] = (uint8_t)(claimed >> 16);
		copy[2] = (uint8_t)(claimed >> 8);
		copy[3] = (uint8_t)claimed;
		if (tls_parse_client_hello(copy, 4 + claimed, &hello) == TLS_OK) {
			assert_true(inside(hello.sni, hello.sni_length, copy, 4 + claimed));
			assert_true(inside(hello.psk_identity, hello.psk_identity_length, copy, 4 + claimed));
		}
		free(copy);
	}
}

static void
exercise_server_message(const uint8_t *message, size_t length)
{
	struct tls_server_hello hello;
	const uint8_t *ticket;
	uint16_t ticket_length;

	for (size_t prefix = 0; prefix < length; prefix++) {
		uint8_t *copy = exact_copy(message, prefix);

		assert_int_not_equal(tls_parse_server_hello(copy, prefix, &hello), TLS_OK);
		assert_int_not_equal(tls_parse_new_session_ticket(copy, prefix, &ticket, &ticket_length),
				     TLS_OK);
		free(copy);
	}
}

/* Flip 1-4 random bytes of `stream` many times; whatever parses has every
 * pointer inside the buffer it was given. */
static void
corrupt_client_stream(const uint8_t *stream, size_t length, unsigned rounds)
{
	for (unsigned round = 0; round < rounds; round++) {
		uint8_t *copy = exact_copy(stream, length);
		struct client_result result;
		unsigned flips = 1 + (unsigned)(prng() % 4);

		for (unsigned f = 0; f < flips; f++)
			copy[prng() % length] ^= (uint8_t)(1 + prng() % 255);
		client_run(copy, length, &result);
		if (result.reason == TLS_OK) {
			const struct tls_client_hello *h = &result.hello;
			const uint8_t *base = result.handshake;
			size_t size = result.handshake_length;

			assert_true(inside(h->session_id, h->session_id_length, base, size));
			assert_true(inside(h->sni, h->sni_length, base, size));
			assert_true(inside(h->alpn, h->alpn_length, base, size));
			assert_true(inside(h->ticket, h->ticket_length, base, size));
			assert_true(inside(h->psk_identity, h->psk_identity_length, base, size));
		}
		client_done(&result);
		free(copy);
	}
}

static void
corrupt_server_stream(const uint8_t *stream, size_t length, unsigned rounds)
{
	struct scan_summary *summary = malloc(sizeof(*summary));

	for (unsigned round = 0; round < rounds; round++) {
		uint8_t *copy = exact_copy(stream, length);
		unsigned flips = 1 + (unsigned)(prng() % 4);

		for (unsigned f = 0; f < flips; f++)
			copy[prng() % length] ^= (uint8_t)(1 + prng() % 255);
		scan_chunks(copy, length, 1 + prng() % 700, 1 + prng() % 2048, summary);
		free(copy);
	}
	free(summary);
}

/* Every prefix and every shortened length of every valid built message
 * returns NEED_MORE or an error, and random corruption never crashes. */
static void
test_truncated_and_corrupted_messages_never_read_out_of_bounds(void **state)
{
	struct builder *message = builder_new(), *stream = builder_new();
	struct server_shape tls12 = SERVER_SHAPE_TLS12;
	struct server_shape tls13 = { .legacy_version = TLS_VERSION_1_2, .session_id_length = 32,
				      .selected_version = TLS_VERSION_1_3, .psk = true };
	size_t ticket = 200;

	(void)state;
	build_typical_hello(message, 32, more_tls13_resumption, NULL);
	exercise_client_message(message->bytes, message->length);
	put_records(stream, TLS_RECORD_HANDSHAKE, message->bytes, message->length, 150,
		    TLS_VERSION_1_0);
	corrupt_client_stream(stream->bytes, stream->length, 3000);

	message->length = stream->length = 0;
	build_typical_hello(message, 32, more_ticket, &ticket);
	exercise_client_message(message->bytes, message->length);

	message->length = 0;
	build_server_hello(message, &tls12);
	exercise_server_message(message->bytes, message->length);
	message->length = 0;
	build_server_hello(message, &tls13);
	exercise_server_message(message->bytes, message->length);
	message->length = 0;
	build_new_session_ticket(message, 100, 176, 1);
	exercise_server_message(message->bytes, message->length);

	build_tls12_full_server_stream(stream, 176, 700);
	corrupt_server_stream(stream->bytes, stream->length, 2000);
	free(message);
	free(stream);
}

/* ------------------------------------------------------------------------ */
/* Real OpenSSL streams (fixtures/tls)                                       */

#define FIXTURE_MAX       16
#define FIXTURE_BYTES_MAX 16384
#define EXPECT_MAX        16

struct fixture {
	char name[128];
	char description[256];
	char keys[EXPECT_MAX][32];
	char values[EXPECT_MAX][1024];
	unsigned expect_count;
	uint8_t bytes[FIXTURE_BYTES_MAX];
	size_t length;
};

static int
hex_value(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Copy text, cut to fit (fixture lines are short; a long one fails its check). */
static void
copy_text(char *out, size_t size, const char *text)
{
	size_t length = strnlen(text, size - 1);

	memcpy(out, text, length);
	out[length] = '\0';
}

static void
fixture_load(const char *name, struct fixture *f)
{
	char path[512], line[2048];
	FILE *file;

	memset(f, 0, sizeof(*f));
	copy_text(f->name, sizeof f->name, name);
	snprintf(path, sizeof path, FIXTURES "/%s", name);
	file = fopen(path, "r");
	if (!file)
		fail_msg("cannot open %s (run from tests/)", path);
	while (fgets(line, sizeof line, file)) {
		line[strcspn(line, "\r\n")] = '\0';
		if (strncmp(line, "# description ", 14) == 0) {
			copy_text(f->description, sizeof f->description, line + 14);
		} else if (strncmp(line, "# expect ", 9) == 0) {
			char *key = line + 9, *value = strchr(key, ' ');

			assert_non_null(value);
			assert_true(f->expect_count < EXPECT_MAX);
			*value++ = '\0';
			copy_text(f->keys[f->expect_count], sizeof f->keys[0], key);
			copy_text(f->values[f->expect_count], sizeof f->values[0], value);
			f->expect_count++;
		} else if (line[0] != '#' && line[0] != '\0') {
			for (char *p = line; p[0] && p[1]; p += 2) {
				int high = hex_value(p[0]), low = hex_value(p[1]);

				if (high < 0 || low < 0)
					fail_msg("%s: bad hex", path);
				assert_true(f->length < FIXTURE_BYTES_MAX);
				f->bytes[f->length++] = (uint8_t)(high << 4 | low);
			}
		}
	}
	fclose(file);
	if (f->description[0] == '\0' || f->length == 0)
		fail_msg("%s: no description or no bytes", path);
}

static int
compare_names(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* Names of fixtures ending in `suffix`, sorted. */
static int
fixture_list(const char *suffix, char names[][128], int max)
{
	DIR *directory = opendir(FIXTURES);
	struct dirent *entry;
	int count = 0;

	if (!directory)
		fail_msg("cannot open " FIXTURES " (run from tests/)");
	while ((entry = readdir(directory)) != NULL) {
		size_t n = strlen(entry->d_name), s = strlen(suffix);

		if (n > s && strcmp(entry->d_name + n - s, suffix) == 0 && count < max)
			copy_text(names[count++], 128, entry->d_name);
	}
	closedir(directory);
	qsort(names, (size_t)count, 128, compare_names);
	return count;
}

static void
hex_text(const uint8_t *bytes, size_t length, const char *none, char *out, size_t size)
{
	if (length == 0 || bytes == NULL) {
		snprintf(out, size, "%s", none);
		return;
	}
	assert_true(2 * length < size);
	for (size_t i = 0; i < length; i++)
		snprintf(out + 2 * i, 3, "%02x", bytes[i]);
}

/* The parser's view of a client field, in the fixture's notation. */
static void
client_field(const struct client_result *r, const char *key, char *out, size_t size)
{
	const struct tls_client_hello *h = &r->hello;

	if (strcmp(key, "hello_length") == 0)
		snprintf(out, size, "%zu", r->handshake_length);
	else if (strcmp(key, "legacy_version") == 0)
		snprintf(out, size, "0x%04x", h->legacy_version);
	else if (strcmp(key, "highest_version") == 0)
		snprintf(out, size, "0x%04x", h->highest_version);
	else if (strcmp(key, "session_id") == 0)
		hex_text(h->session_id, h->session_id_length, "empty", out, size);
	else if (strcmp(key, "sni") == 0)
		snprintf(out, size, "%.*s", h->sni ? (int)h->sni_length : 4, h->sni ? (const char *)h->sni : "none");
	else if (strcmp(key, "ticket_extension") == 0)
		snprintf(out, size, "%s", h->has_ticket_extension ? "yes" : "no");
	else if (strcmp(key, "ticket") == 0)
		hex_text(h->ticket, h->ticket_length, "empty", out, size);
	else if (strcmp(key, "psk") == 0)
		snprintf(out, size, "%s", h->has_psk ? "yes" : "no");
	else if (strcmp(key, "psk_identity_count") == 0)
		snprintf(out, size, "%u", h->psk_identity_count);
	else if (strcmp(key, "psk_identity") == 0)
		hex_text(h->psk_identity, h->psk_identity_length, "none", out, size);
	else
		fail_msg("unknown client expectation '%s'", key);
}

static void
server_field(const struct scan_summary *s, const char *key, char *out, size_t size)
{
	if (strcmp(key, "scan") == 0)
		snprintf(out, size, "%s", tls_reason_name(s->reason));
	else if (strcmp(key, "hello_retry_request") == 0)
		snprintf(out, size, "%s", s->hello_retry ? "yes" : "no");
	else if (strcmp(key, "legacy_version") == 0)
		snprintf(out, size, "0x%04x", s->legacy_version);
	else if (strcmp(key, "negotiated_version") == 0)
		snprintf(out, size, "0x%04x", s->negotiated_version);
	else if (strcmp(key, "session_id") == 0)
		hex_text(s->session_id, s->session_id_length, "empty", out, size);
	else if (strcmp(key, "ticket_extension") == 0)
		snprintf(out, size, "%s", s->ticket_extension ? "yes" : "no");
	else if (strcmp(key, "psk_accepted") == 0)
		snprintf(out, size, "%s", s->psk_accepted ? "yes" : "no");
	else if (strcmp(key, "ticket") == 0)
		hex_text(s->ticket, s->ticket_length, "none", out, size);
	else
		fail_msg("unknown server expectation '%s'", key);
}

/* Every real OpenSSL client stream yields its ClientHello with the fields
 * recorded at capture, needs more on every shorter prefix, and survives
 * corruption. */
static void
test_real_openssl_client_hellos_parse_as_captured(void **state)
{
	static char names[FIXTURE_MAX][128];
	struct fixture *f = malloc(sizeof(*f));
	int count = fixture_list(".client.hex", names, FIXTURE_MAX);

	(void)state;
	assert_true(count >= 8);
	for (int i = 0; i < count; i++) {
		struct client_result result;
		char actual[1024];
		size_t hello_end;

		fixture_load(names[i], f);
		client_run(f->bytes, f->length, &result);
		if (result.reason != TLS_OK)
			fail_msg("%s (%s): %s", f->name, f->description, tls_reason_name(result.reason));
		for (unsigned e = 0; e < f->expect_count; e++) {
			client_field(&result, f->keys[e], actual, sizeof actual);
			if (strcmp(actual, f->values[e]) != 0)
				fail_msg("%s: %s is %s, captured %s", f->name, f->keys[e], actual,
					 f->values[e]);
		}
		hello_end = TLS_RECORD_HEADER_LENGTH + result.handshake_length;  /* one record each */
		exercise_client_message(result.handshake, result.handshake_length);
		client_done(&result);
		for (size_t length = 0; length < hello_end; length++)
			assert_int_equal(client_reason(f->bytes, length), TLS_NEED_MORE);
		assert_int_equal(client_reason(f->bytes, hello_end), TLS_OK);
		corrupt_client_stream(f->bytes, hello_end, 300);
		print_message("%-36s ok  %s\n", f->name, f->description);
	}
	free(f);
}

/* Every real OpenSSL server stream scans to the fields recorded at capture,
 * in any chunking, and survives corruption. */
static void
test_real_openssl_server_streams_scan_as_captured(void **state)
{
	static char names[FIXTURE_MAX][128];
	struct fixture *f = malloc(sizeof(*f));
	struct scan_summary *summary = malloc(sizeof(*summary));
	int count = fixture_list(".server.hex", names, FIXTURE_MAX);

	(void)state;
	assert_true(count >= 8);
	for (int i = 0; i < count; i++) {
		char actual[1024];

		fixture_load(names[i], f);
		scan_whole(f->bytes, f->length, summary);
		for (unsigned e = 0; e < f->expect_count; e++) {
			server_field(summary, f->keys[e], actual, sizeof actual);
			if (strcmp(actual, f->values[e]) != 0)
				fail_msg("%s: %s is %s, captured %s", f->name, f->keys[e], actual,
					 f->values[e]);
		}
		assert_true(summary->consumed < f->length);   /* stopped before the encrypted part */
		assert_chunking_invariant(f->bytes, f->length, summary);
		corrupt_server_stream(f->bytes, f->length, 200);
		print_message("%-36s ok  %s\n", f->name, f->description);
	}
	free(summary);
	free(f);
}

/* What the persistence table relies on, shown on real OpenSSL bytes:
 *  - a TLS 1.2 ticket resumption presents exactly the ticket the server
 *    issued in its NewSessionTicket;
 *  - a TLS 1.2 session-ID resumption presents the ServerHello's session ID,
 *    and the server echoes it;
 *  - the TLS 1.3 PSK identity and the TLS 1.2 ticket from one server share
 *    their 16-byte key name; the TLS 1.3 ServerHello echoes the client's
 *    random legacy session ID (hence: never store it). */
static void
test_real_openssl_resumption_presents_what_the_server_issued(void **state)
{
	struct fixture *f = malloc(sizeof(*f));
	struct scan_summary *issued = malloc(sizeof(*issued)), *resumed = malloc(sizeof(*resumed));
	struct client_result hello;

	(void)state;
	fixture_load("tls12-ticket-full.server.hex", f);
	scan_whole(f->bytes, f->length, issued);
	assert_true(issued->has_ticket);
	assert_int_equal(issued->session_id_length, 0);   /* OpenSSL: no session ID with a ticket */
	fixture_load("tls12-ticket-resume.client.hex", f);
	client_run(f->bytes, f->length, &hello);
	assert_int_equal(hello.reason, TLS_OK);
	assert_int_equal(hello.hello.ticket_length, issued->ticket_length);
	assert_memory_equal(hello.hello.ticket, issued->ticket, issued->ticket_length);
	assert_int_equal(hello.hello.session_id_length, 32);  /* SHA-256(ticket), RFC 5077 3.4 */
	fixture_load("tls12-ticket-resume.server.hex", f);
	scan_whole(f->bytes, f->length, resumed);
	assert_int_equal(resumed->reason, TLS_OK);
	assert_false(resumed->has_ticket);                   /* not renewed */
	assert_int_equal(resumed->session_id_length, 32);
	assert_memory_equal(resumed->session_id, hello.hello.session_id, 32);
	client_done(&hello);

	fixture_load("tls12-session-id-full.server.hex", f);
	scan_whole(f->bytes, f->length, issued);
	assert_int_equal(issued->session_id_length, 32);
	assert_false(issued->has_ticket);
	fixture_load("tls12-session-id-resume.client.hex", f);
	client_run(f->bytes, f->length, &hello);
	assert_int_equal(hello.hello.session_id_length, 32);
	assert_memory_equal(hello.hello.session_id, issued->session_id, 32);
	assert_false(hello.hello.has_ticket_extension);
	client_done(&hello);
	fixture_load("tls12-session-id-resume.server.hex", f);
	scan_whole(f->bytes, f->length, resumed);
	assert_memory_equal(resumed->session_id, issued->session_id, 32);

	fixture_load("tls12-ticket-full.server.hex", f);
	scan_whole(f->bytes, f->length, issued);
	fixture_load("tls13-psk-resume.client.hex", f);
	client_run(f->bytes, f->length, &hello);
	assert_true(hello.hello.has_psk);
	assert_int_equal(hello.hello.psk_identity_count, 1);
	assert_memory_equal(hello.hello.psk_identity, issued->ticket, TLS_TICKET_KEY_NAME_LENGTH);
	fixture_load("tls13-psk-resume.server.hex", f);
	scan_whole(f->bytes, f->length, resumed);
	assert_int_equal(resumed->negotiated_version, TLS_VERSION_1_3);
	assert_true(resumed->psk_accepted);
	assert_int_equal(resumed->psk_selected_identity, 0);
	assert_memory_equal(resumed->session_id, hello.hello.session_id, 32);
	client_done(&hello);
	free(f);
	free(issued);
	free(resumed);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tls12_hello_with_session_id_parses),
		cmocka_unit_test(test_tls12_hello_with_empty_ticket_extension_has_no_ticket),
		cmocka_unit_test(test_tls12_hello_with_200_byte_ticket_exposes_ticket),
		cmocka_unit_test(test_tls13_hello_with_psk_identity_parses),
		cmocka_unit_test(test_hello_split_across_three_records_is_reassembled),
		cmocka_unit_test(test_hello_streamed_one_byte_at_a_time_needs_more_until_last_byte),
		cmocka_unit_test(test_hello_split_inside_record_header_needs_more),
		cmocka_unit_test(test_padded_hellos_of_2100_and_8000_bytes_parse),
		cmocka_unit_test(test_hello_over_cap_is_too_large_from_its_header),
		cmocka_unit_test(test_hello_over_record_limit_is_bad_record_length),
		cmocka_unit_test(test_non_tls_streams_are_refused_within_two_bytes),
		cmocka_unit_test(test_malformed_client_hellos_report_their_reason),
		cmocka_unit_test(test_every_reason_has_a_counter_name),
		cmocka_unit_test(test_tls12_server_hello_with_session_id_parses),
		cmocka_unit_test(test_tls13_server_hello_echoes_session_id_and_accepts_psk),
		cmocka_unit_test(test_hello_retry_request_is_detected),
		cmocka_unit_test(test_malformed_server_hellos_report_their_reason),
		cmocka_unit_test(test_new_session_ticket_parses_and_refuses_bad_lengths),
		cmocka_unit_test(test_server_stream_tls12_full_handshake_finds_ticket),
		cmocka_unit_test(test_server_stream_tls12_resumption_finds_renewed_ticket),
		cmocka_unit_test(test_server_stream_cut_midway_needs_more),
		cmocka_unit_test(test_server_stream_tls13_is_done_without_ticket),
		cmocka_unit_test(test_server_stream_hello_retry_then_server_hello),
		cmocka_unit_test(test_server_stream_huge_certificate_needs_no_scratch),
		cmocka_unit_test(test_server_stream_errors_report_their_reason),
		cmocka_unit_test(test_scan_server_stream_is_incremental_over_a_growing_buffer),
		cmocka_unit_test(test_truncated_and_corrupted_messages_never_read_out_of_bounds),
		cmocka_unit_test(test_real_openssl_client_hellos_parse_as_captured),
		cmocka_unit_test(test_real_openssl_server_streams_scan_as_captured),
		cmocka_unit_test(test_real_openssl_resumption_presents_what_the_server_issued),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
