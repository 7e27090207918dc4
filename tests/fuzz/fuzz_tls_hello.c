/*
 * fuzz_tls_hello.c: libFuzzer harness for dataplane/tls_hello.h, the parser
 * that reads what clients and servers send in cleartext before encryption
 * starts.  Both sides of it face the Internet (a client's ClientHello) or a
 * backend that a client may steer (the server's handshake), so every byte
 * here is attacker-chosen.
 *
 * Input layout (the input picks its own chunking, so the mutator explores
 * where a stream is cut as well as what it holds):
 *   byte 0        bits 0-2: number of cuts K (0..7)
 *                 bits 3-4: ClientHello cap  {16384, 1024, 256, 9}
 *                 bits 5-6: server scratch   {4096, 16384, 256, 64}
 *   2*K bytes     cut offsets, big endian, each taken modulo the stream length
 *   rest          the stream: a client's first bytes and, the same bytes, a
 *                 server's stream
 * Every buffer handed to the parser is a malloc() of exactly its length (and
 * scratch of exactly its capacity), so AddressSanitizer sees a read one byte
 * past the end.
 *
 * What is checked beyond "no crash":
 *  - client side, as the dataplane calls it: tls_reassemble_client_hello() on
 *    each growing prefix; its first final answer is the answer for the whole
 *    stream too (a decision made on fewer bytes never changes), and on TLS_OK
 *    the hello it points at is the same bytes;
 *  - every pointer a parse returns lies inside the buffer it was given;
 *  - server side: the scan fed in the chosen chunks, the scan fed the whole
 *    stream at once, and tls_scan_server_stream() on growing prefixes reach
 *    the same result (reason, hello fields, ticket; bytes consumed unless the
 *    scan failed).
 * A failed check calls __builtin_trap(), which libFuzzer reports as a crash.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls_hello.h"
#include "fuzz_check.h"

#define CUTS_MAX 7

static const size_t hello_caps[4] = { TLS_CLIENT_HELLO_DEFAULT_CAP, 1024, 256, 9 };
static const size_t scratch_sizes[4] = { 4096, 16384, 256, 64 };

/* An exact-size heap copy (at least one byte so malloc never returns NULL for 0). */
static uint8_t *
copy_exact(const uint8_t *data, size_t length)
{
	uint8_t *copy = malloc(length ? length : 1);
	if (!copy)
		abort();
	if (length)
		memcpy(copy, data, length);
	return copy;
}

/* Read every byte of [pointer, pointer + length) (ASan checks each read) and
 * check the range lies inside [base, base + size). */
static volatile uint8_t sink;

static void
touch(const uint8_t *pointer, size_t length, const uint8_t *base, size_t size)
{
	if (!pointer) {
		FUZZ_CHECK(length == 0);
		return;
	}
	FUZZ_CHECK(pointer >= base && length <= size && (size_t)(pointer - base) <= size - length);
	uint8_t sum = 0;
	for (size_t i = 0; i < length; i++)
		sum ^= pointer[i];
	sink = sum;
}

static void
touch_client_hello(const struct tls_client_hello *hello, const uint8_t *base, size_t size)
{
	FUZZ_CHECK(hello->session_id_length <= TLS_SESSION_ID_MAX_LENGTH);
	touch(hello->session_id, hello->session_id_length, base, size);
	touch(hello->sni, hello->sni_length, base, size);
	touch(hello->alpn, hello->alpn_length, base, size);
	touch(hello->ticket, hello->ticket_length, base, size);
	touch(hello->psk_identity, hello->psk_identity_length, base, size);
}

/* ------------------------------------------------------------------------ */
/* client side                                                              */

static void
client_side(const uint8_t *stream, size_t length, const size_t *cuts, unsigned cut_count,
	    size_t cap)
{
	uint8_t *scratch = malloc(cap);
	const uint8_t *handshake = NULL;
	size_t handshake_length = 0;
	enum tls_reason first = TLS_NEED_MORE;
	uint8_t *first_hello = NULL;
	size_t first_hello_length = 0;

	if (!scratch)
		abort();
	/* As the dataplane does: after each segment, on everything so far. */
	for (unsigned c = 0; c <= cut_count && first == TLS_NEED_MORE; c++) {
		size_t prefix = c < cut_count ? cuts[c] : length;
		uint8_t *copy = copy_exact(stream, prefix);
		first = tls_reassemble_client_hello(copy, prefix, scratch, cap, &handshake,
						    &handshake_length);
		FUZZ_CHECK(first < TLS_REASON_COUNT && tls_reason_name(first) != NULL);
		if (first == TLS_OK) {
			bool in_stream = handshake >= copy && handshake < copy + prefix;
			touch(handshake, handshake_length, in_stream ? copy : scratch,
			      in_stream ? prefix : cap);
			FUZZ_CHECK(handshake_length <= cap);
			first_hello = copy_exact(handshake, handshake_length);
			first_hello_length = handshake_length;
			struct tls_client_hello hello;
			enum tls_reason parsed = tls_parse_client_hello(first_hello, first_hello_length, &hello);
			FUZZ_CHECK(parsed < TLS_REASON_COUNT);
			if (parsed == TLS_OK)
				touch_client_hello(&hello, first_hello, first_hello_length);
		}
		free(copy);
	}

	/* A decision taken on a prefix holds for the whole stream. */
	if (first != TLS_NEED_MORE) {
		uint8_t *copy = copy_exact(stream, length);
		enum tls_reason whole = tls_reassemble_client_hello(copy, length, scratch, cap, &handshake,
								    &handshake_length);
		FUZZ_CHECK(whole == first);
		if (whole == TLS_OK)
			FUZZ_CHECK(handshake_length == first_hello_length &&
			      memcmp(handshake, first_hello, handshake_length) == 0);
		free(copy);
	}
	free(first_hello);
	free(scratch);

	/* The parsers on the raw bytes too, so they are reached without a valid
	 * record layer: the whole input, and the input past a record header. */
	struct tls_client_hello hello;
	for (size_t skip = 0; skip <= TLS_RECORD_HEADER_LENGTH && skip <= length;
	     skip += TLS_RECORD_HEADER_LENGTH) {
		uint8_t *copy = copy_exact(stream + skip, length - skip);
		if (tls_parse_client_hello(copy, length - skip, &hello) == TLS_OK)
			touch_client_hello(&hello, copy, length - skip);
		free(copy);
	}
}

/* ------------------------------------------------------------------------ */
/* server side                                                              */

static void
touch_scan(const struct tls_server_scan *scan)
{
	FUZZ_CHECK(scan->reason < TLS_REASON_COUNT && scan->ticket_reason < TLS_REASON_COUNT);
	if (scan->has_server_hello) {
		FUZZ_CHECK(scan->server_hello.session_id_length <= TLS_SESSION_ID_MAX_LENGTH);
		touch(scan->server_hello.session_id, scan->server_hello.session_id_length, scan->scratch,
		      scan->scratch_capacity);
	}
	if (scan->has_ticket)
		touch(scan->ticket, scan->ticket_length, scan->scratch, scan->scratch_capacity);
}

/* Two scans of the same stream agree on everything a caller may read. */
static void
same_scan(const struct tls_server_scan *a, const struct tls_server_scan *b)
{
	FUZZ_CHECK(a->reason == b->reason);
	/* After an error, `consumed` may count the rest of the chunk the error
	 * was found in (a record body is taken whole); callers stop there. */
	if (a->reason == TLS_OK || a->reason == TLS_NEED_MORE)
		FUZZ_CHECK(a->consumed == b->consumed);
	FUZZ_CHECK(a->has_server_hello == b->has_server_hello);
	FUZZ_CHECK(a->saw_hello_retry_request == b->saw_hello_retry_request);
	if (a->has_server_hello) {
		const struct tls_server_hello *x = &a->server_hello, *y = &b->server_hello;
		FUZZ_CHECK(x->legacy_version == y->legacy_version);
		FUZZ_CHECK(x->negotiated_version == y->negotiated_version);
		FUZZ_CHECK(x->cipher_suite == y->cipher_suite);
		FUZZ_CHECK(x->psk_accepted == y->psk_accepted);
		FUZZ_CHECK(x->psk_selected_identity == y->psk_selected_identity);
		FUZZ_CHECK(x->is_hello_retry_request == y->is_hello_retry_request);
		FUZZ_CHECK(x->ticket_extension == y->ticket_extension);
		FUZZ_CHECK(x->session_id_length == y->session_id_length);
		FUZZ_CHECK(x->session_id_length == 0 ||
		      memcmp(x->session_id, y->session_id, x->session_id_length) == 0);
	}
	if (a->reason != TLS_NEED_MORE) {
		FUZZ_CHECK(a->has_ticket == b->has_ticket);
		FUZZ_CHECK(a->ticket_reason == b->ticket_reason);
		if (a->has_ticket) {
			FUZZ_CHECK(a->ticket_length == b->ticket_length);
			FUZZ_CHECK(a->ticket_lifetime_hint == b->ticket_lifetime_hint);
			FUZZ_CHECK(memcmp(a->ticket, b->ticket, a->ticket_length) == 0);
		}
	}
}

static void
server_side(const uint8_t *stream, size_t length, const size_t *cuts, unsigned cut_count,
	    size_t scratch_size)
{
	uint8_t *scratch[3];
	struct tls_server_scan scans[3];

	for (unsigned s = 0; s < 3; s++) {
		if (!(scratch[s] = malloc(scratch_size)))
			abort();
		tls_server_scan_init(&scans[s], scratch[s], scratch_size);
	}

	/* 0: chunk by chunk, each chunk its own exact buffer */
	size_t previous = 0;
	for (unsigned c = 0; c <= cut_count; c++) {
		size_t end = c < cut_count ? cuts[c] : length;
		uint8_t *chunk = copy_exact(stream + previous, end - previous);
		enum tls_reason reason = tls_server_scan_feed(&scans[0], chunk, end - previous);
		FUZZ_CHECK(reason == scans[0].reason);
		free(chunk);
		touch_scan(&scans[0]);
		previous = end;
	}
	/* 1: the whole stream in one feed */
	uint8_t *whole = copy_exact(stream, length);
	tls_server_scan_feed(&scans[1], whole, length);
	touch_scan(&scans[1]);
	free(whole);
	/* 2: a caller that keeps the stream: growing prefixes */
	for (unsigned c = 0; c <= cut_count; c++) {
		size_t end = c < cut_count ? cuts[c] : length;
		uint8_t *prefix = copy_exact(stream, end);
		tls_scan_server_stream(prefix, end, &scans[2]);
		touch_scan(&scans[2]);
		free(prefix);
	}
	same_scan(&scans[0], &scans[1]);
	same_scan(&scans[2], &scans[1]);
	for (unsigned s = 0; s < 3; s++)
		free(scratch[s]);

	/* The message parsers on the raw bytes, and past a record header. */
	for (size_t skip = 0; skip <= TLS_RECORD_HEADER_LENGTH && skip <= length;
	     skip += TLS_RECORD_HEADER_LENGTH) {
		uint8_t *copy = copy_exact(stream + skip, length - skip);
		struct tls_server_hello hello;
		const uint8_t *ticket = NULL;
		uint16_t ticket_length = 0;
		if (tls_parse_server_hello(copy, length - skip, &hello) == TLS_OK)
			touch(hello.session_id, hello.session_id_length, copy, length - skip);
		if (tls_parse_new_session_ticket(copy, length - skip, &ticket, &ticket_length) == TLS_OK)
			touch(ticket, ticket_length, copy, length - skip);
		free(copy);
	}
}

static int
compare_offsets(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	return x < y ? -1 : x > y;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	unsigned cut_count = data[0] & 7;
	size_t cap = hello_caps[(data[0] >> 3) & 3];
	size_t scratch_size = scratch_sizes[(data[0] >> 5) & 3];
	size_t header = 1 + 2 * (size_t)cut_count;
	if (size < header)
		return 0;
	const uint8_t *stream = data + header;
	size_t length = size - header;
	size_t cuts[CUTS_MAX];
	for (unsigned c = 0; c < cut_count; c++) {
		size_t offset = (size_t)data[1 + 2 * c] << 8 | data[2 + 2 * c];
		cuts[c] = length ? offset % (length + 1) : 0;
	}
	qsort(cuts, cut_count, sizeof(cuts[0]), compare_offsets);

	client_side(stream, length, cuts, cut_count, cap);
	server_side(stream, length, cuts, cut_count, scratch_size);
	return 0;
}
