/*
 * tls_hello.c: bounds-checked TLS record and hello parsing.  See tls_hello.h
 * for what the dataplane learns from each message and why.
 *
 * Every read goes through struct reader, which refuses to step past its end;
 * a field that does not fit yields that field's reason.  Nothing allocates.
 * Duplicate extensions are found with a 65536-bit bitmap on the stack (8 KB,
 * cleared once per hello): exact and O(extensions), where a pairwise check
 * would let a 16 KB hello of 4000 empty extensions cost millions of compares.
 */
#include "tls_hello.h"

#include <string.h>

static const char *const reason_names[TLS_REASON_COUNT] = {
	[TLS_OK] = "ok",
	[TLS_NEED_MORE] = "need_more",
	[TLS_NOT_TLS] = "not_tls",
	[TLS_TOO_LARGE] = "too_large",
	[TLS_BAD_RECORD_LENGTH] = "bad_record_length",
	[TLS_BAD_RECORD_TYPE] = "bad_record_type",
	[TLS_BAD_RECORD_VERSION] = "bad_record_version",
	[TLS_BAD_HANDSHAKE_TYPE] = "bad_handshake_type",
	[TLS_BAD_HANDSHAKE_LENGTH] = "bad_handshake_length",
	[TLS_BAD_VERSION] = "bad_version",
	[TLS_BAD_SESSION_ID_LENGTH] = "bad_session_id_length",
	[TLS_BAD_CIPHER_SUITES_LENGTH] = "bad_cipher_suites_length",
	[TLS_BAD_COMPRESSION_LENGTH] = "bad_compression_length",
	[TLS_BAD_EXTENSIONS_LENGTH] = "bad_extensions_length",
	[TLS_BAD_EXTENSION] = "bad_extension",
	[TLS_BAD_TICKET_LENGTH] = "bad_ticket_length",
	[TLS_ALERT] = "alert",
};

const char *
tls_reason_name(enum tls_reason reason)
{
	if ((unsigned)reason >= TLS_REASON_COUNT)
		return "unknown";
	return reason_names[reason];
}

/* SHA-256("HelloRetryRequest"), the random of every HRR (RFC 8446 4.1.3). */
static const uint8_t hello_retry_request_random[TLS_RANDOM_LENGTH] = {
	0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02,
	0x1e, 0x65, 0xb8, 0x91, 0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e,
	0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
};

/* ------------------------------------------------------------------------ */
/* Bounded reader                                                            */

struct reader {
	const uint8_t *data;
	size_t length;
	size_t offset;
};

static inline size_t
reader_left(const struct reader *r)
{
	return r->length - r->offset;
}

static inline bool
read_u8(struct reader *r, uint8_t *value)
{
	if (reader_left(r) < 1)
		return false;
	*value = r->data[r->offset++];
	return true;
}

static inline bool
read_u16(struct reader *r, uint16_t *value)
{
	if (reader_left(r) < 2)
		return false;
	*value = (uint16_t)(r->data[r->offset] << 8 | r->data[r->offset + 1]);
	r->offset += 2;
	return true;
}

static inline bool
read_bytes(struct reader *r, size_t count, const uint8_t **bytes)
{
	if (reader_left(r) < count)
		return false;
	*bytes = r->data + r->offset;
	r->offset += count;
	return true;
}

/* A sub-reader over the next `count` bytes (a length-prefixed vector). */
static inline bool
read_sub(struct reader *r, size_t count, struct reader *sub)
{
	const uint8_t *bytes;

	if (!read_bytes(r, count, &bytes))
		return false;
	sub->data = bytes;
	sub->length = count;
	sub->offset = 0;
	return true;
}

static inline uint32_t
load_u24(const uint8_t *bytes)
{
	return (uint32_t)bytes[0] << 16 | (uint32_t)bytes[1] << 8 | bytes[2];
}

static inline uint16_t
load_u16(const uint8_t *bytes)
{
	return (uint16_t)(bytes[0] << 8 | bytes[1]);
}

/* ------------------------------------------------------------------------ */
/* Handshake framing                                                         */

/* Check the 4-byte header of the message in handshake[0..length) and give a
 * reader over its body.  Bytes past the body are ignored. */
static enum tls_reason
handshake_body(const uint8_t *handshake, size_t length, uint8_t type, struct reader *body)
{
	if (length < 1)
		return TLS_NEED_MORE;
	if (handshake[0] != type)
		return TLS_BAD_HANDSHAKE_TYPE;
	if (length < TLS_HANDSHAKE_HEADER_LENGTH)
		return TLS_NEED_MORE;
	uint32_t body_length = load_u24(handshake + 1);
	if (body_length > length - TLS_HANDSHAKE_HEADER_LENGTH)
		return TLS_NEED_MORE;
	body->data = handshake + TLS_HANDSHAKE_HEADER_LENGTH;
	body->length = body_length;
	body->offset = 0;
	return TLS_OK;
}

/* legacy_version, random, legacy_session_id: common to both hellos. */
static enum tls_reason
read_hello_start(struct reader *body, uint16_t *version, const uint8_t **random,
		 uint8_t *session_id_length, const uint8_t **session_id)
{
	if (!read_u16(body, version) || !read_bytes(body, TLS_RANDOM_LENGTH, random))
		return TLS_BAD_HANDSHAKE_LENGTH;
	if ((*version >> 8) != 3)
		return TLS_BAD_VERSION;
	if (!read_u8(body, session_id_length))
		return TLS_BAD_HANDSHAKE_LENGTH;
	if (*session_id_length > TLS_SESSION_ID_MAX_LENGTH ||
	    !read_bytes(body, *session_id_length, session_id))
		return TLS_BAD_SESSION_ID_LENGTH;
	if (*session_id_length == 0)
		*session_id = NULL;
	return TLS_OK;
}

/* ------------------------------------------------------------------------ */
/* Extension blocks                                                          */

struct extension_walk {
	struct reader block;
	/* seen[] has a bit per extension type; clearing all 8 KB per hello cost
	 * half a connection's instructions, so valid[] says which words of
	 * seen[] this walk has written: a word is cleared on first use */
	uint64_t valid[1024 / 64];
	uint64_t seen[65536 / 64];
};

/*
 * Open the optional extensions block that ends the hello body: absent (no
 * bytes left) is fine; otherwise its length must cover exactly the rest.
 * Returns TLS_OK with *present set.
 */
static enum tls_reason
extensions_open(struct reader *body, struct extension_walk *walk, bool *present)
{
	uint16_t block_length;

	*present = false;
	if (reader_left(body) == 0)
		return TLS_OK;
	if (!read_u16(body, &block_length) || block_length != reader_left(body))
		return TLS_BAD_EXTENSIONS_LENGTH;
	read_sub(body, block_length, &walk->block);
	memset(walk->valid, 0, sizeof walk->valid);
	*present = true;
	return TLS_OK;
}

/* Next extension: returns TLS_OK with *more false at the end of the block. */
static enum tls_reason
extensions_next(struct extension_walk *walk, bool *more, uint16_t *type, struct reader *ext)
{
	uint16_t ext_length;

	size_t left = reader_left(&walk->block);

	*more = left > 0;
	if (!*more)
		return TLS_OK;
	/* type and length read at once (what read_u16 twice and read_sub do,
	 * with one bounds check each): a hello has a dozen extensions */
	const uint8_t *header = walk->block.data + walk->block.offset;
	if (left < 4)
		return TLS_BAD_EXTENSIONS_LENGTH;
	*type = load_u16(header);
	ext_length = load_u16(header + 2);
	if (ext_length > left - 4)
		return TLS_BAD_EXTENSIONS_LENGTH;
	ext->data = header + 4;
	ext->length = ext_length;
	ext->offset = 0;
	walk->block.offset += 4 + (size_t)ext_length;
	uint64_t bit = UINT64_C(1) << (*type & 63);
	unsigned word = *type >> 6;
	if (!(walk->valid[word >> 6] & (UINT64_C(1) << (word & 63)))) {
		walk->valid[word >> 6] |= UINT64_C(1) << (word & 63);
		walk->seen[word] = 0;
	}
	if (walk->seen[*type >> 6] & bit)
		return TLS_BAD_EXTENSION;
	walk->seen[*type >> 6] |= bit;
	return TLS_OK;
}

/* server_name (RFC 6066 3): ServerNameList, first host_name kept. */
static enum tls_reason
client_server_name(struct reader *ext, struct tls_client_hello *out)
{
	uint16_t list_length;
	struct reader list;

	if (!read_u16(ext, &list_length) || list_length == 0 ||
	    list_length != reader_left(ext) || !read_sub(ext, list_length, &list))
		return TLS_BAD_EXTENSION;
	while (reader_left(&list) > 0) {
		uint8_t name_type;
		uint16_t name_length;
		const uint8_t *name;

		if (!read_u8(&list, &name_type) || !read_u16(&list, &name_length) ||
		    name_length == 0 || !read_bytes(&list, name_length, &name))
			return TLS_BAD_EXTENSION;
		if (name_type == 0 && out->sni == NULL) {
			out->sni = name;
			out->sni_length = name_length;
		}
	}
	return TLS_OK;
}

/* application_layer_protocol_negotiation (RFC 7301 3.1). */
static enum tls_reason
client_alpn(struct reader *ext, struct tls_client_hello *out)
{
	uint16_t list_length;
	struct reader list;

	if (!read_u16(ext, &list_length) || list_length < 2 ||
	    list_length != reader_left(ext) || !read_sub(ext, list_length, &list))
		return TLS_BAD_EXTENSION;
	out->alpn = list.data;
	out->alpn_length = list_length;
	while (reader_left(&list) > 0) {
		uint8_t name_length;
		const uint8_t *name;

		if (!read_u8(&list, &name_length) || name_length == 0 ||
		    !read_bytes(&list, name_length, &name))
			return TLS_BAD_EXTENSION;
	}
	return TLS_OK;
}

/* supported_versions in a ClientHello (RFC 8446 4.2.1): versions<2..254>. */
static enum tls_reason
client_supported_versions(struct reader *ext, struct tls_client_hello *out)
{
	uint8_t list_length;
	uint16_t highest = 0;

	if (!read_u8(ext, &list_length) || list_length < 2 || (list_length & 1) ||
	    list_length != reader_left(ext))
		return TLS_BAD_EXTENSION;
	while (reader_left(ext) > 0) {
		uint16_t version = 0;

		read_u16(ext, &version);
		/* GREASE (RFC 8701: 0x0a0a, 0x1a1a, ...) and draft versions (0x7fxx)
		 * are not 3.x and drop out here. */
		if ((version >> 8) == 3 && version > highest)
			highest = version;
	}
	if (highest != 0)
		out->highest_version = highest;
	return TLS_OK;
}

/* pre_shared_key in a ClientHello (RFC 8446 4.2.11): identities then binders,
 * one binder per identity. */
static enum tls_reason
client_pre_shared_key(struct reader *ext, struct tls_client_hello *out)
{
	uint16_t identities_length, binders_length;
	struct reader identities, binders;
	unsigned binder_count = 0;

	if (!read_u16(ext, &identities_length) || identities_length < 7 ||
	    !read_sub(ext, identities_length, &identities))
		return TLS_BAD_EXTENSION;
	while (reader_left(&identities) > 0) {
		uint16_t identity_length;
		const uint8_t *identity, *age;

		if (!read_u16(&identities, &identity_length) || identity_length == 0 ||
		    !read_bytes(&identities, identity_length, &identity) ||
		    !read_bytes(&identities, 4, &age))
			return TLS_BAD_EXTENSION;
		if (out->psk_identity_count++ == 0) {
			out->psk_identity = identity;
			out->psk_identity_length = identity_length;
		}
	}
	if (!read_u16(ext, &binders_length) || binders_length < 33 ||
	    binders_length != reader_left(ext) || !read_sub(ext, binders_length, &binders))
		return TLS_BAD_EXTENSION;
	while (reader_left(&binders) > 0) {
		uint8_t binder_length;
		const uint8_t *binder;

		if (!read_u8(&binders, &binder_length) || binder_length < 32 ||
		    !read_bytes(&binders, binder_length, &binder))
			return TLS_BAD_EXTENSION;
		binder_count++;
	}
	if (binder_count != out->psk_identity_count)
		return TLS_BAD_EXTENSION;
	out->has_psk = true;
	return TLS_OK;
}

static enum tls_reason
client_extension(uint16_t type, struct reader *ext, bool last, struct tls_client_hello *out)
{
	switch (type) {
	case TLS_EXTENSION_SERVER_NAME:
		return client_server_name(ext, out);
	case TLS_EXTENSION_ALPN:
		return client_alpn(ext, out);
	case TLS_EXTENSION_SESSION_TICKET:
		out->has_ticket_extension = true;
		out->ticket_length = (uint16_t)ext->length;
		out->ticket = ext->length ? ext->data : NULL;
		return TLS_OK;
	case TLS_EXTENSION_PRE_SHARED_KEY:
		if (!last)
			return TLS_BAD_EXTENSION;
		return client_pre_shared_key(ext, out);
	case TLS_EXTENSION_EARLY_DATA:
		if (ext->length != 0)
			return TLS_BAD_EXTENSION;
		out->has_early_data = true;
		return TLS_OK;
	case TLS_EXTENSION_SUPPORTED_VERSIONS:
		return client_supported_versions(ext, out);
	default:
		return TLS_OK;   /* unknown, GREASE, padding, key_share ...: not ours */
	}
}

/* ------------------------------------------------------------------------ */
/* ClientHello                                                               */

enum tls_reason
tls_parse_client_hello(const uint8_t *handshake, size_t length, struct tls_client_hello *out)
{
	struct extension_walk walk;
	struct reader body;
	const uint8_t *random, *skipped;
	uint16_t suites_length;
	uint8_t compression_length;
	bool present, more;
	enum tls_reason reason;

	memset(out, 0, sizeof(*out));
	reason = handshake_body(handshake, length, TLS_HANDSHAKE_CLIENT_HELLO, &body);
	if (reason != TLS_OK)
		return reason;
	reason = read_hello_start(&body, &out->legacy_version, &random,
				  &out->session_id_length, &out->session_id);
	if (reason != TLS_OK)
		return reason;
	out->highest_version = out->legacy_version;
	if (!read_u16(&body, &suites_length) || suites_length == 0 || (suites_length & 1) ||
	    !read_bytes(&body, suites_length, &skipped))
		return TLS_BAD_CIPHER_SUITES_LENGTH;
	if (!read_u8(&body, &compression_length) || compression_length == 0 ||
	    !read_bytes(&body, compression_length, &skipped))
		return TLS_BAD_COMPRESSION_LENGTH;

	reason = extensions_open(&body, &walk, &present);
	if (reason != TLS_OK || !present)
		return reason;
	for (;;) {
		uint16_t type;
		struct reader ext;

		reason = extensions_next(&walk, &more, &type, &ext);
		if (reason != TLS_OK || !more)
			return reason;
		reason = client_extension(type, &ext, reader_left(&walk.block) == 0, out);
		if (reason != TLS_OK)
			return reason;
	}
}

/* ------------------------------------------------------------------------ */
/* ServerHello                                                               */

static enum tls_reason
server_extension(uint16_t type, struct reader *ext, struct tls_server_hello *out)
{
	switch (type) {
	case TLS_EXTENSION_SUPPORTED_VERSIONS:
		/* One selected_version in a ServerHello / HRR. */
		if (ext->length != 2)
			return TLS_BAD_EXTENSION;
		read_u16(ext, &out->negotiated_version);
		return TLS_OK;
	case TLS_EXTENSION_PRE_SHARED_KEY:
		/* selected_identity (RFC 8446 4.2.11). */
		if (ext->length != 2)
			return TLS_BAD_EXTENSION;
		read_u16(ext, &out->psk_selected_identity);
		out->psk_accepted = true;
		return TLS_OK;
	case TLS_EXTENSION_SESSION_TICKET:
		/* Empty in a ServerHello (RFC 5077 3.2). */
		if (ext->length != 0)
			return TLS_BAD_EXTENSION;
		out->ticket_extension = true;
		return TLS_OK;
	default:
		return TLS_OK;
	}
}

enum tls_reason
tls_parse_server_hello(const uint8_t *handshake, size_t length, struct tls_server_hello *out)
{
	struct extension_walk walk;
	struct reader body;
	const uint8_t *random;
	uint8_t compression;
	bool present, more;
	enum tls_reason reason;

	memset(out, 0, sizeof(*out));
	reason = handshake_body(handshake, length, TLS_HANDSHAKE_SERVER_HELLO, &body);
	if (reason != TLS_OK)
		return reason;
	reason = read_hello_start(&body, &out->legacy_version, &random,
				  &out->session_id_length, &out->session_id);
	if (reason != TLS_OK)
		return reason;
	out->negotiated_version = out->legacy_version;
	out->is_hello_retry_request =
		memcmp(random, hello_retry_request_random, TLS_RANDOM_LENGTH) == 0;
	if (!read_u16(&body, &out->cipher_suite))
		return TLS_BAD_CIPHER_SUITES_LENGTH;
	if (!read_u8(&body, &compression))
		return TLS_BAD_COMPRESSION_LENGTH;

	reason = extensions_open(&body, &walk, &present);
	if (reason != TLS_OK || !present)
		return reason;
	for (;;) {
		uint16_t type;
		struct reader ext;

		reason = extensions_next(&walk, &more, &type, &ext);
		if (reason != TLS_OK || !more)
			return reason;
		reason = server_extension(type, &ext, out);
		if (reason != TLS_OK)
			return reason;
	}
}

/* ------------------------------------------------------------------------ */
/* NewSessionTicket (TLS 1.2)                                                */

enum tls_reason
tls_parse_new_session_ticket(const uint8_t *handshake, size_t length,
			     const uint8_t **ticket, uint16_t *ticket_length)
{
	struct reader body;
	const uint8_t *lifetime_hint;
	enum tls_reason reason;

	*ticket = NULL;
	*ticket_length = 0;
	reason = handshake_body(handshake, length, TLS_HANDSHAKE_NEW_SESSION_TICKET, &body);
	if (reason != TLS_OK)
		return reason;
	if (!read_bytes(&body, 4, &lifetime_hint))
		return TLS_BAD_HANDSHAKE_LENGTH;
	if (!read_u16(&body, ticket_length) || *ticket_length != reader_left(&body)) {
		*ticket_length = 0;
		return TLS_BAD_TICKET_LENGTH;
	}
	if (*ticket_length)
		*ticket = body.data + body.offset;
	return TLS_OK;
}

/* ------------------------------------------------------------------------ */
/* Client stream: ClientHello reassembly                                     */

/* The smallest ClientHello body: version, random, empty session ID, one
 * cipher suite, one compression method. */
#define CLIENT_HELLO_MIN_BODY (2 + TLS_RANDOM_LENGTH + 1 + 2 + 2 + 1 + 1)

/* Check the (possibly partial) record header at stream[0..available):
 * decide as early as the bytes allow. */
static enum tls_reason
check_record_header(const uint8_t *header, size_t available, bool first)
{
	if (available >= 1 && header[0] != TLS_RECORD_HANDSHAKE)
		return first ? TLS_NOT_TLS : TLS_BAD_RECORD_TYPE;
	if (available >= 2 && header[1] != 3)
		return first ? TLS_NOT_TLS : TLS_BAD_RECORD_VERSION;
	if (available < TLS_RECORD_HEADER_LENGTH)
		return TLS_NEED_MORE;
	uint16_t record_length = load_u16(header + 3);
	if (record_length == 0 || record_length > TLS_RECORD_MAX_LENGTH ||
	    (first && record_length < TLS_HANDSHAKE_HEADER_LENGTH))
		return TLS_BAD_RECORD_LENGTH;
	return TLS_OK;
}

enum tls_reason
tls_reassemble_client_hello(const uint8_t *stream, size_t length, uint8_t *scratch, size_t cap,
			    const uint8_t **handshake, size_t *handshake_length)
{
	enum tls_reason reason;
	size_t offset = 0, have = 0, need = 0;
	const uint8_t *message;
	uint32_t first_record_length;

	/* The first record carries the whole 4-byte handshake header. */
	reason = check_record_header(stream, length, true);
	if (reason != TLS_OK)
		return reason;
	first_record_length = load_u16(stream + 3);
	message = stream + TLS_RECORD_HEADER_LENGTH;
	if (length >= TLS_RECORD_HEADER_LENGTH + 1 && message[0] != TLS_HANDSHAKE_CLIENT_HELLO)
		return TLS_BAD_HANDSHAKE_TYPE;
	if (length < TLS_RECORD_HEADER_LENGTH + TLS_HANDSHAKE_HEADER_LENGTH)
		return TLS_NEED_MORE;
	need = TLS_HANDSHAKE_HEADER_LENGTH + (size_t)load_u24(message + 1);
	if (need > cap)
		return TLS_TOO_LARGE;
	if (need < TLS_HANDSHAKE_HEADER_LENGTH + CLIENT_HELLO_MIN_BODY)
		return TLS_BAD_HANDSHAKE_LENGTH;

	/* Common case: the whole message is in the first record; no copy. */
	if (need <= first_record_length) {
		if (length < TLS_RECORD_HEADER_LENGTH + need)
			return TLS_NEED_MORE;
		*handshake = message;
		*handshake_length = need;
		return TLS_OK;
	}

	/* Fragmented: walk record headers until the payloads add up to the
	 * message; copy nothing until they do, so a call per segment stays cheap. */
	while (have < need) {
		const uint8_t *header = stream + offset;
		size_t available = length - offset;   /* offset <= length: see below */

		reason = check_record_header(header, available, offset == 0);
		if (reason != TLS_OK)
			return reason;
		size_t record_length = load_u16(header + 3);
		size_t payload = available - TLS_RECORD_HEADER_LENGTH;
		if (payload < record_length) {
			/* The last record so far is partly in: enough only if it
			 * already holds the rest of the message. */
			if (payload < need - have)
				return TLS_NEED_MORE;
			break;
		}
		have += record_length;
		offset += TLS_RECORD_HEADER_LENGTH + record_length;
	}

	/* Complete: copy the payloads, cut at the message's end. */
	have = 0;
	offset = 0;
	while (have < need) {
		size_t record_length = load_u16(stream + offset + 3);
		size_t take = record_length < need - have ? record_length : need - have;

		memcpy(scratch + have, stream + offset + TLS_RECORD_HEADER_LENGTH, take);
		have += take;
		offset += TLS_RECORD_HEADER_LENGTH + record_length;
	}
	*handshake = scratch;
	*handshake_length = need;
	return TLS_OK;
}

/* ------------------------------------------------------------------------ */
/* Server stream scan                                                        */

enum message_action {
	MESSAGE_SKIP = 0,            /* not needed: count its bytes down */
	MESSAGE_CAPTURE_SERVER_HELLO,
	MESSAGE_CAPTURE_TICKET,
};

void
tls_server_scan_init(struct tls_server_scan *scan, uint8_t *scratch, size_t scratch_capacity)
{
	memset(scan, 0, sizeof(*scan));
	scan->reason = TLS_NEED_MORE;
	scan->ticket_reason = TLS_OK;
	scan->scratch = scratch;
	scan->scratch_capacity = scratch_capacity;
	scan->expect_server_hello = true;
}

static enum tls_reason
scan_finish(struct tls_server_scan *scan, enum tls_reason reason)
{
	scan->reason = reason;
	return reason;
}

/* A complete captured message is in scratch[capture_offset..]. */
static void
scan_message_done(struct tls_server_scan *scan)
{
	const uint8_t *message = scan->scratch + scan->capture_offset;
	size_t message_length = TLS_HANDSHAKE_HEADER_LENGTH + load_u24(scan->message_header + 1);
	enum tls_reason reason;

	switch (scan->message_action) {
	case MESSAGE_CAPTURE_SERVER_HELLO:
		reason = tls_parse_server_hello(message, message_length, &scan->server_hello);
		if (reason != TLS_OK) {
			scan_finish(scan, reason);
			break;
		}
		scan->has_server_hello = true;
		scan->scratch_kept = message_length;
		if (scan->server_hello.is_hello_retry_request) {
			/* The client answers with a new ClientHello; a ServerHello follows. */
			scan->saw_hello_retry_request = true;
		} else {
			scan->expect_server_hello = false;
		}
		break;
	case MESSAGE_CAPTURE_TICKET:
		reason = tls_parse_new_session_ticket(message, message_length, &scan->ticket,
						      &scan->ticket_length);
		scan->ticket_reason = reason;
		if (reason == TLS_OK && scan->ticket_length > 0) {
			scan->has_ticket = true;
			scan->ticket_lifetime_hint = (uint32_t)message[4] << 24 |
				(uint32_t)message[5] << 16 | (uint32_t)message[6] << 8 | message[7];
		}
		break;
	default:
		break;
	}
	scan->message_header_have = 0;
	scan->message_action = MESSAGE_SKIP;
}

/* The 4-byte header of a message is in: decide what to do with its body. */
static void
scan_message_start(struct tls_server_scan *scan)
{
	uint8_t type = scan->message_header[0];
	size_t message_length = TLS_HANDSHAKE_HEADER_LENGTH + load_u24(scan->message_header + 1);

	scan->message_remaining = load_u24(scan->message_header + 1);
	scan->message_action = MESSAGE_SKIP;
	if (scan->expect_server_hello) {
		if (type != TLS_HANDSHAKE_SERVER_HELLO) {
			scan_finish(scan, TLS_BAD_HANDSHAKE_TYPE);
			return;
		}
		/* A ServerHello after an HRR replaces it in the scratch. */
		scan->has_server_hello = false;
		scan->scratch_kept = 0;
		if (message_length > scan->scratch_capacity) {
			scan_finish(scan, TLS_TOO_LARGE);
			return;
		}
		scan->message_action = MESSAGE_CAPTURE_SERVER_HELLO;
		scan->capture_offset = 0;
	} else if (type == TLS_HANDSHAKE_NEW_SESSION_TICKET && !scan->has_ticket &&
		   scan->ticket_reason == TLS_OK) {
		if (message_length > scan->scratch_capacity - scan->scratch_kept) {
			scan->ticket_reason = TLS_TOO_LARGE;
		} else {
			scan->message_action = MESSAGE_CAPTURE_TICKET;
			scan->capture_offset = scan->scratch_kept;
		}
	}
	if (scan->message_action != MESSAGE_SKIP)
		memcpy(scan->scratch + scan->capture_offset, scan->message_header,
		       TLS_HANDSHAKE_HEADER_LENGTH);
	if (scan->message_remaining == 0)
		scan_message_done(scan);
}

/* Consume handshake-layer bytes (a piece of a handshake record's body). */
static void
scan_handshake_bytes(struct tls_server_scan *scan, const uint8_t *data, size_t length)
{
	while (length > 0 && scan->reason == TLS_NEED_MORE) {
		if (scan->message_header_have == 0 && length >= TLS_HANDSHAKE_HEADER_LENGTH) {
			/* a whole header in this piece: what the byte loop below does */
			memcpy(scan->message_header, data, TLS_HANDSHAKE_HEADER_LENGTH);
			scan->message_header_have = TLS_HANDSHAKE_HEADER_LENGTH;
			data += TLS_HANDSHAKE_HEADER_LENGTH;
			length -= TLS_HANDSHAKE_HEADER_LENGTH;
			scan_message_start(scan);
			continue;
		}
		if (scan->message_header_have < TLS_HANDSHAKE_HEADER_LENGTH) {
			scan->message_header[scan->message_header_have++] = *data++;
			length--;
			if (scan->message_header_have == TLS_HANDSHAKE_HEADER_LENGTH)
				scan_message_start(scan);
			continue;
		}
		size_t take = length < scan->message_remaining ? length : scan->message_remaining;
		if (scan->message_action != MESSAGE_SKIP) {
			size_t message_length = load_u24(scan->message_header + 1);
			size_t written = message_length - scan->message_remaining;
			memcpy(scan->scratch + scan->capture_offset + TLS_HANDSHAKE_HEADER_LENGTH +
			       written, data, take);
		}
		scan->message_remaining -= (uint32_t)take;
		data += take;
		length -= take;
		if (scan->message_remaining == 0)
			scan_message_done(scan);
	}
}

/* A whole record header is in: returns TLS_NEED_MORE to go on reading its
 * body, TLS_OK when the scan is done, or an error. */
static enum tls_reason
scan_record_start(struct tls_server_scan *scan)
{
	const uint8_t *header = scan->record_header;
	bool mid_message = scan->message_header_have != 0;
	uint16_t record_length = load_u16(header + 3);

	if (record_length == 0 || record_length > TLS_RECORD_MAX_LENGTH)
		return TLS_BAD_RECORD_LENGTH;
	switch (header[0]) {
	case TLS_RECORD_HANDSHAKE:
		scan->record_remaining = record_length;
		return TLS_NEED_MORE;
	case TLS_RECORD_CHANGE_CIPHER_SPEC:
		if (mid_message || !scan->has_server_hello)
			return TLS_BAD_RECORD_TYPE;
		if (scan->expect_server_hello) {
			/* TLS 1.3 compatibility CCS after a HelloRetryRequest: skip it. */
			scan->record_remaining = record_length;
			return TLS_NEED_MORE;
		}
		return TLS_OK;
	case TLS_RECORD_APPLICATION_DATA:
		if (mid_message || !scan->has_server_hello || scan->expect_server_hello)
			return TLS_BAD_RECORD_TYPE;
		return TLS_OK;
	case TLS_RECORD_ALERT:
		return TLS_ALERT;
	default:
		return TLS_BAD_RECORD_TYPE;
	}
}

enum tls_reason
tls_server_scan_feed(struct tls_server_scan *scan, const uint8_t *data, size_t length)
{
	while (length > 0 && scan->reason == TLS_NEED_MORE) {
		if (scan->record_header_have == 0 && length >= TLS_RECORD_HEADER_LENGTH &&
		    (scan->records != 0 || data[0] == TLS_RECORD_HANDSHAKE || data[0] == TLS_RECORD_ALERT) &&
		    data[1] == 3) {
			/* a whole header that passes the byte loop's checks below: take
			 * it at once, to the same state */
			memcpy(scan->record_header, data, TLS_RECORD_HEADER_LENGTH);
			scan->record_header_have = TLS_RECORD_HEADER_LENGTH;
			data += TLS_RECORD_HEADER_LENGTH;
			length -= TLS_RECORD_HEADER_LENGTH;
			scan->consumed += TLS_RECORD_HEADER_LENGTH;
			enum tls_reason reason = scan_record_start(scan);
			if (reason != TLS_NEED_MORE)
				return scan_finish(scan, reason);
			continue;
		}
		if (scan->record_header_have < TLS_RECORD_HEADER_LENGTH) {
			bool first = scan->records == 0;
			uint8_t byte = *data++;

			length--;
			scan->consumed++;
			scan->record_header[scan->record_header_have++] = byte;
			/* Fail on the first byte that cannot be TLS. */
			if (scan->record_header_have == 1 && first &&
			    byte != TLS_RECORD_HANDSHAKE && byte != TLS_RECORD_ALERT)
				return scan_finish(scan, TLS_NOT_TLS);
			if (scan->record_header_have == 2 && byte != 3)
				return scan_finish(scan, first ? TLS_NOT_TLS : TLS_BAD_RECORD_VERSION);
			if (scan->record_header_have == TLS_RECORD_HEADER_LENGTH) {
				enum tls_reason reason = scan_record_start(scan);
				if (reason != TLS_NEED_MORE)
					return scan_finish(scan, reason);
			}
			continue;
		}
		size_t take = length < scan->record_remaining ? length : scan->record_remaining;
		if (scan->record_header[0] == TLS_RECORD_HANDSHAKE)
			scan_handshake_bytes(scan, data, take);
		data += take;
		length -= take;
		scan->consumed += take;
		scan->record_remaining -= (uint32_t)take;
		if (scan->record_remaining == 0) {
			scan->record_header_have = 0;
			scan->records++;
		}
	}
	return scan->reason;
}

enum tls_reason
tls_scan_server_stream(const uint8_t *stream, size_t length, struct tls_server_scan *scan)
{
	if (scan->reason != TLS_NEED_MORE || length <= scan->consumed)
		return scan->reason;
	return tls_server_scan_feed(scan, stream + scan->consumed,
				    length - (size_t)scan->consumed);
}
