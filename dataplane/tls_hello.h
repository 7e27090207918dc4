/*
 * tls_hello.h: TLS record and handshake parsing for ssl-session persistence.
 *
 * The balancer never terminates TLS; it only reads the cleartext start of a
 * connection: the client's ClientHello (to look up a session ID, a TLS 1.2
 * session ticket or a TLS 1.3 pre_shared_key identity) and the server's
 * ServerHello and TLS 1.2 NewSessionTicket (to learn which backend owns them).
 *
 * Everything here is a pure function over bytes: no allocation, no DPDK, no
 * globals, and every length is checked against what is really there before a
 * byte is read.  Functions return an enum tls_reason that the dataplane counts
 * (tls_reason_name() gives the counter name), the same habit as packet.h.
 * Thread-safety: all functions are reentrant; a struct tls_server_scan belongs
 * to one caller (one flow) at a time.
 *
 * How the pieces fit:
 *  - client side: after each new in-order segment, the dataplane calls
 *    tls_reassemble_client_hello() on all client bytes buffered so far.  It
 *    re-walks the record headers from the start (cheap: a handful of 5-byte
 *    headers) and copies nothing until the ClientHello is complete, so calling
 *    it per segment costs O(records), not O(bytes).  Non-TLS traffic is
 *    rejected on its first byte or two (TLS_NOT_TLS), an oversized hello as
 *    soon as its 4-byte handshake header is in (TLS_TOO_LARGE).  Then
 *    tls_parse_client_hello() reads the fields into struct tls_client_hello.
 *  - server side: struct tls_server_scan is an incremental scanner fed the
 *    server's in-order bytes (whole stream or chunk by chunk).  It parses the
 *    ServerHello and a TLS 1.2 NewSessionTicket and stops at the first
 *    ChangeCipherSpec or application_data record, where encryption starts.
 *    Handshake messages it does not need (Certificate chains of any size,
 *    ServerKeyExchange, ServerHelloDone ...) are skipped, not buffered, so only
 *    the ServerHello and the NewSessionTicket must fit the scratch buffer.
 *
 * What the caller may learn, and what it must not (see DESIGN.md, Persistence):
 *  - ServerHello session ID: only when negotiated_version <= 0x0303.  A TLS 1.3
 *    ServerHello (negotiated_version 0x0304, from supported_versions) echoes
 *    the client's legacy_session_id, which is 32 random bytes chosen by the
 *    client ("middlebox compatibility mode"); storing it would fill the table
 *    with keys no client ever presents again.  Never store it.
 *  - A TLS 1.2 server that issues a ticket (OpenSSL does) sends an EMPTY
 *    session ID in the ServerHello of the full handshake: the ticket, not the
 *    session ID, is the key to learn there.  On resumption an OpenSSL client
 *    offers, beside the ticket, session ID = SHA-256(ticket) (RFC 5077 3.4
 *    lets it pick any), which the server echoes when it accepts the ticket.
 *  - TLS 1.3 tickets are sent encrypted; only a ServerHello pre_shared_key
 *    (psk_accepted) tells the caller the offered identity was accepted.
 *  - Ticket key name: the first TLS_TICKET_KEY_NAME_LENGTH bytes of a ticket
 *    (RFC 5077 4 layout, used by OpenSSL for TLS 1.2 tickets and TLS 1.3 PSK
 *    identities alike) name the server key that sealed it.
 *
 * Not supported, by design: SSLv2-compatible ClientHellos (first byte 0x80,
 * no client of the last decade sends one) are TLS_NOT_TLS; a handshake header
 * split across records (allowed by the RFC, sent by no known client) is
 * TLS_BAD_RECORD_LENGTH for the client's first record.
 */
#ifndef TETHER_TLS_HELLO_H
#define TETHER_TLS_HELLO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TLS_RECORD_HEADER_LENGTH     5
#define TLS_HANDSHAKE_HEADER_LENGTH  4
/* Largest record body accepted: 2^14 + 2048 (RFC 5246 6.2.3 TLSCiphertext). */
#define TLS_RECORD_MAX_LENGTH        (16384 + 2048)
/* The ClientHello cap DESIGN.md asks for; callers pass it explicitly. */
#define TLS_CLIENT_HELLO_DEFAULT_CAP 16384
#define TLS_SESSION_ID_MAX_LENGTH    32
#define TLS_RANDOM_LENGTH            32
#define TLS_TICKET_KEY_NAME_LENGTH   16

/* Record content types (RFC 8446 5.1). */
#define TLS_RECORD_CHANGE_CIPHER_SPEC 20
#define TLS_RECORD_ALERT              21
#define TLS_RECORD_HANDSHAKE          22
#define TLS_RECORD_APPLICATION_DATA   23

/* Handshake message types used here. */
#define TLS_HANDSHAKE_CLIENT_HELLO       1
#define TLS_HANDSHAKE_SERVER_HELLO       2
#define TLS_HANDSHAKE_NEW_SESSION_TICKET 4

/* Protocol versions as they appear on the wire. */
#define TLS_VERSION_1_0 0x0301
#define TLS_VERSION_1_2 0x0303
#define TLS_VERSION_1_3 0x0304

/* Extension types read here (others are skipped). */
#define TLS_EXTENSION_SERVER_NAME        0
#define TLS_EXTENSION_ALPN               16
#define TLS_EXTENSION_SESSION_TICKET     35
#define TLS_EXTENSION_PRE_SHARED_KEY     41
#define TLS_EXTENSION_EARLY_DATA         42
#define TLS_EXTENSION_SUPPORTED_VERSIONS 43

/*
 * Why a parse stopped.  The names (tls_reason_name) are the counter names
 * operators see, e.g. "tls_fallback_not_tls".  TLS_NEED_MORE is not an error:
 * more bytes of the same stream may complete the message.
 */
enum tls_reason {
	TLS_OK = 0,
	TLS_NEED_MORE,                /* incomplete; more bytes may complete it */
	TLS_NOT_TLS,                  /* first record: type not handshake (22), or major version not 3 */
	TLS_TOO_LARGE,                /* handshake message beyond the caller's cap / scratch */
	TLS_BAD_RECORD_LENGTH,        /* record length 0 or > 2^14+2048; client's first record < 4 */
	TLS_BAD_RECORD_TYPE,          /* a later record of a type not allowed there */
	TLS_BAD_RECORD_VERSION,       /* a later record whose major version is not 3 */
	TLS_BAD_HANDSHAKE_TYPE,       /* not the handshake message expected */
	TLS_BAD_HANDSHAKE_LENGTH,     /* message too short for its fixed fields, or an impossible length */
	TLS_BAD_VERSION,              /* hello legacy_version major not 3 */
	TLS_BAD_SESSION_ID_LENGTH,    /* > 32, or beyond the message */
	TLS_BAD_CIPHER_SUITES_LENGTH, /* odd, 0, or beyond the message */
	TLS_BAD_COMPRESSION_LENGTH,   /* 0 (ClientHello), or beyond the message */
	TLS_BAD_EXTENSIONS_LENGTH,    /* block or one extension overruns, or bytes left after it */
	TLS_BAD_EXTENSION,            /* a body inconsistent with its type, or a duplicate type */
	TLS_BAD_TICKET_LENGTH,        /* NewSessionTicket ticket length beyond / short of the message */
	TLS_ALERT,                    /* the server sent an alert record before encryption started */
	TLS_REASON_COUNT
};

/*
 * The fields of one ClientHello that persistence needs.  Every pointer points
 * into the handshake buffer given to tls_parse_client_hello() and is valid as
 * long as it is; a NULL pointer with length 0 means absent.
 */
struct tls_client_hello {
	uint16_t legacy_version;          /* ClientHello.legacy_version (0x0303 for 1.2 and 1.3) */
	uint16_t highest_version;         /* highest 3.x in supported_versions (GREASE and drafts
					     ignored), else legacy_version */
	uint8_t session_id_length;        /* 0..32 */
	const uint8_t *session_id;
	const uint8_t *sni;               /* first host_name of server_name, not NUL-terminated */
	uint16_t sni_length;
	const uint8_t *alpn;              /* ProtocolNameList body as sent: length-prefixed names */
	uint16_t alpn_length;
	bool has_ticket_extension;        /* SessionTicket (35) present */
	const uint8_t *ticket;            /* its body: the TLS 1.2 ticket; may be empty (length 0):
					     "I support tickets, have none" */
	uint16_t ticket_length;
	bool has_psk;                     /* pre_shared_key (41) present (TLS 1.3 resumption) */
	const uint8_t *psk_identity;      /* first identity: for OpenSSL, the ticket */
	uint16_t psk_identity_length;
	unsigned psk_identity_count;
	bool has_early_data;              /* early_data (42) present */
};

/*
 * The fields of one ServerHello (or HelloRetryRequest, which is a ServerHello
 * with a fixed random).  Pointers point into the buffer given to
 * tls_parse_server_hello().
 */
struct tls_server_hello {
	uint16_t legacy_version;
	uint16_t negotiated_version;      /* supported_versions (43) if present, else legacy_version.
					     0x0304: session_id is the client's echo, never store it */
	uint8_t session_id_length;
	const uint8_t *session_id;
	uint16_t cipher_suite;
	bool psk_accepted;                /* pre_shared_key (41) present: TLS 1.3 resumption accepted */
	uint16_t psk_selected_identity;   /* index into the client's identities */
	bool is_hello_retry_request;      /* random == SHA-256("HelloRetryRequest") */
	bool ticket_extension;            /* SessionTicket (35): a TLS 1.2 NewSessionTicket will follow */
};

/*
 * Incremental scanner of the server's side of a connection.  Initialise with
 * tls_server_scan_init(), then feed bytes.  server_hello is readable as soon
 * as has_server_hello is set (the session ID is known long before a TLS 1.2
 * full handshake ends); the ticket fields are final once a feed returned
 * something other than TLS_NEED_MORE.  Only the fields above the "private"
 * line are meant for the caller.
 */
struct tls_server_scan {
	enum tls_reason reason;           /* TLS_NEED_MORE while scanning; TLS_OK: reached
					     ChangeCipherSpec / application_data; else the error */
	bool has_server_hello;            /* server_hello is filled (pointers into scratch) */
	bool saw_hello_retry_request;     /* a HelloRetryRequest came first; server_hello is the
					     ServerHello that followed it (if has_server_hello) */
	struct tls_server_hello server_hello;
	bool has_ticket;                  /* a TLS 1.2 NewSessionTicket with a non-empty ticket */
	const uint8_t *ticket;            /* into scratch */
	uint16_t ticket_length;
	uint32_t ticket_lifetime_hint;    /* seconds, as sent; 0 = unspecified */
	enum tls_reason ticket_reason;    /* TLS_OK: has_ticket, or no (or an empty) ticket came;
					     otherwise why a NewSessionTicket that came is unknown
					     (TLS_TOO_LARGE: it did not fit the scratch left, or
					     its parse reason) */
	uint64_t consumed;                /* stream bytes consumed so far */

	/* private */
	uint8_t *scratch;
	size_t scratch_capacity;
	size_t scratch_kept;              /* scratch[0..kept) holds the parsed ServerHello */
	size_t capture_offset;            /* where the message being read is copied */
	uint32_t records;                 /* records completed */
	uint32_t record_remaining;        /* body bytes of the current record still to come */
	uint32_t message_remaining;       /* body bytes of the current message still to come */
	uint8_t record_header[TLS_RECORD_HEADER_LENGTH];
	uint8_t record_header_have;
	uint8_t message_header[TLS_HANDSHAKE_HEADER_LENGTH];
	uint8_t message_header_have;
	uint8_t message_action;           /* what to do with the current message's body */
	bool expect_server_hello;         /* next handshake message must be a ServerHello */
};

/* Stable snake_case counter name of a reason ("bad_session_id_length"). */
const char *tls_reason_name(enum tls_reason reason);

/*
 * Find the complete ClientHello in the client's first bytes.
 *
 * stream/length: every byte the client sent so far, in order, from the first.
 * scratch/cap:   where a ClientHello fragmented over several records is
 *                reassembled; cap is also the largest ClientHello accepted
 *                (4-byte header included), e.g. TLS_CLIENT_HELLO_DEFAULT_CAP.
 * On TLS_OK, *handshake and *handshake_length give the ClientHello message
 * (header included): a pointer into `stream` when the message sits in the
 * first record (the common case: no copy), else into `scratch`.  Bytes after
 * the message (ChangeCipherSpec, early data, a second ClientHello after a
 * HelloRetryRequest) are ignored.
 * Returns TLS_OK, TLS_NEED_MORE (call again with more bytes), or the reason the
 * stream cannot carry a ClientHello, decided from as few bytes as possible:
 * TLS_NOT_TLS on the first or second byte, TLS_TOO_LARGE / TLS_BAD_HANDSHAKE_*
 * once the first 9 bytes are in.  Every record must be a handshake record.
 * Note the stream holds 5 bytes of record header per record on top of the
 * message: size the caller's buffer above cap, or count a full buffer that
 * still gets TLS_NEED_MORE as too large.
 * Pure; the outputs are written only on TLS_OK; any thread.
 */
enum tls_reason tls_reassemble_client_hello(const uint8_t *stream, size_t length,
					    uint8_t *scratch, size_t cap,
					    const uint8_t **handshake, size_t *handshake_length);

/*
 * Parse one ClientHello handshake message (4-byte header included), e.g. the
 * output of tls_reassemble_client_hello().  Bytes past the header's length
 * are ignored.  Fills *out (zeroed first; partly filled on error); its
 * pointers point into `handshake`.  Returns TLS_OK, TLS_NEED_MORE if `length`
 * is shorter than the header says, or the first malformed field's reason.
 * Unknown and GREASE extensions are skipped; a repeated extension type, or a
 * pre_shared_key that is not the last extension, is TLS_BAD_EXTENSION
 * (RFC 8446 4.2, 4.2.11).  Pure; any thread.
 */
enum tls_reason tls_parse_client_hello(const uint8_t *handshake, size_t length,
				       struct tls_client_hello *out);

/*
 * Parse one ServerHello (or HelloRetryRequest) handshake message, header
 * included.  Fills *out (zeroed first); pointers point into `handshake`.
 * Returns as tls_parse_client_hello() does.  Pure; any thread.
 */
enum tls_reason tls_parse_server_hello(const uint8_t *handshake, size_t length,
				       struct tls_server_hello *out);

/*
 * Parse a TLS 1.2 NewSessionTicket (RFC 5077 3.3: lifetime_hint(4),
 * ticket<0..2^16-1>), header included.  On TLS_OK *ticket points into
 * `handshake` (NULL when the ticket is empty: the server declined to issue
 * one) and *ticket_length is its length.  A TLS 1.3 NewSessionTicket has a
 * different layout and is never seen in cleartext.  Pure; any thread.
 */
enum tls_reason tls_parse_new_session_ticket(const uint8_t *handshake, size_t length,
					     const uint8_t **ticket, uint16_t *ticket_length);

/*
 * Start scanning a server stream.  `scratch` (caller-owned, e.g. 16 KB, must
 * outlive the scan) receives the ServerHello and the NewSessionTicket; the
 * results' pointers point into it.  A ServerHello larger than the scratch is
 * TLS_TOO_LARGE; a NewSessionTicket larger than what the ServerHello left is
 * skipped with ticket_reason TLS_TOO_LARGE.  Any thread; no allocation.
 */
void tls_server_scan_init(struct tls_server_scan *scan, uint8_t *scratch, size_t scratch_capacity);

/*
 * Feed the next `length` bytes of the server's stream (in order, no gaps, no
 * repeats: scan->consumed says how many bytes came before; trim a retransmit
 * with it).  Walks records and handshake messages across any chunking:
 * messages may span records, records may hold several messages, headers may
 * be split between chunks.  Returns scan->reason: TLS_NEED_MORE (feed more),
 * TLS_OK (done: the first ChangeCipherSpec or application_data record was
 * reached; the results are final), or the error that stopped the scan
 * (TLS_ALERT, TLS_NOT_TLS, ...; has_server_hello may still be true, but a
 * caller should learn nothing from a stream it could not follow).  After a
 * HelloRetryRequest the scan continues past its ChangeCipherSpec to the real
 * ServerHello.  Once done, further calls return the same reason and consume
 * nothing.  The scan object belongs to one caller at a time.
 */
enum tls_reason tls_server_scan_feed(struct tls_server_scan *scan, const uint8_t *data, size_t length);

/*
 * The same, for a caller that keeps the whole server stream from its first
 * byte: feeds stream[scan->consumed .. length).  Cheap to call again with a
 * longer stream: each byte is looked at once.
 */
enum tls_reason tls_scan_server_stream(const uint8_t *stream, size_t length,
				       struct tls_server_scan *scan);

#endif /* TETHER_TLS_HELLO_H */
