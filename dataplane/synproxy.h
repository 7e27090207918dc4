/*
 * synproxy.h: SSL-session persistence by TCP delayed binding.
 *
 * For an ssl-session service the dataplane is, for a moment, the client's TCP
 * peer:
 *   1. SYN          -> answered with a SYN cookie (syncookie.h): no state.
 *   2. ACK          -> cookie checked; a flow and a *binding* are created; the
 *                      binding buffers the client's bytes (ACKing them) until a
 *                      whole ClientHello is in (tls_hello.h), the buffer cap is
 *                      hit, the bytes are not TLS, or the inspect timeout fires.
 *   3. decide       -> session ID, exact ticket, ticket key name (each looked up
 *                      in the pool's session table), else the fallback.
 *   4. connect      -> SYN to the backend with the client's ISN and options;
 *                      retried, then RST to the client if the backend is silent.
 *   5. splice       -> on the backend's SYN-ACK the buffered bytes are replayed
 *                      (retransmitted until acknowledged) and the flow becomes a
 *                      NAT flow whose packets also get their sequence numbers,
 *                      SACK blocks, timestamps and windows translated.
 *   6. learn        -> the server's cleartext handshake (ServerHello, TLS 1.2
 *                      NewSessionTicket; TLS 1.3 accepted PSK) is scanned until
 *                      ChangeCipherSpec and what it tells is stored.
 * The binding is released when the replay is acknowledged and learning ended.
 * All of it runs on the worker that owns the flow; bindings and the session
 * table are per worker, preallocated and bounded.
 */
#ifndef TETHER_SYNPROXY_H
#define TETHER_SYNPROXY_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "persist.h"
#include "syncookie.h"
#include "tcp_options.h"
#include "tls_hello.h"

#define BINDING_HELLO_CAP     TLS_CLIENT_HELLO_DEFAULT_CAP      /* 16 KB ClientHello */
#define BINDING_CLIENT_BUFFER (BINDING_HELLO_CAP + 1024)         /* + record headers */
#define BINDING_SCRATCH       4096                               /* ServerHello + ticket */
#define SYNPROXY_WSCALE       7       /* what we offer clients; Linux's usual value */
#define SYNPROXY_MSS          1460    /* what we offer clients: backends sit on 1500-byte links */

enum binding_state {
	BINDING_FREE = 0,
	BINDING_INSPECTING,       /* reading the ClientHello */
	BINDING_CONNECTING,       /* SYN sent to the backend */
	BINDING_SPLICED,          /* replaying and learning */
};

struct binding {
	uint32_t flow;
	uint16_t active_slot;            /* position in synproxy.active */
	uint8_t state;
	uint8_t retries;
	bool replay_acked;
	bool learning;
	bool placed_by_timeout;          /* no complete hello: nothing to learn from */
	bool psk_key_name_valid;
	bool backend_timestamps;
	uint16_t length;                 /* client bytes buffered, from client_isn + 1 */
	uint16_t client_window;          /* the client's last raw window field */
	uint16_t backend_mss;
	uint32_t client_isn, our_isn, backend_isn;   /* host order */
	uint32_t client_tsval;           /* latest TSval from the client */
	uint32_t backend_tsval;          /* TSval of the backend's SYN-ACK */
	uint64_t deadline;               /* next retransmission (connect, replay) */
	uint64_t inspect_deadline;
	uint64_t learn_deadline;
	struct tcp_syn_options client;   /* what the client's SYN offered (from the cookie) */
	uint8_t psk_key_name[TLS_TICKET_KEY_NAME_LENGTH];
	struct tls_server_scan scan;
	uint8_t scratch[BINDING_SCRATCH];
	uint8_t data[BINDING_CLIENT_BUFFER];
};

/* Counters; names in api.c are these field names. */
struct synproxy_stats {
	uint64_t cookies_sent, cookies_valid, cookies_invalid;
	uint64_t rst_sent, rst_rate_limited;
	uint64_t bindings_started, bindings_full, bindings_bound, bindings_aborted;
	uint64_t cookie_connections;     /* plain-service connections admitted by a cookie */
	uint64_t inspect_timeouts, backend_syn_retries, backend_failed, replay_retransmits;
	uint64_t hit_session_id, hit_ticket, hit_key_name;
	uint64_t fallback_new_session, fallback_unknown_session, fallback_tls13_unknown_ticket;
	uint64_t fallback_not_tls, fallback_too_large, fallback_timeout, fallback_malformed;
	uint64_t fallback_backend_down;
	uint64_t learned_session_id, learned_ticket, learned_key_name;
	uint64_t tls13_session_id_ignored, learn_gap, learn_incomplete;
};

struct synproxy {
	struct syncookie_secret secret;
	struct persist_table sessions;   /* struct session_key -> backend */
	struct binding *bindings;
	uint16_t *free_stack;
	uint16_t *active;                /* indexes of bindings in use: the timers walk only these */
	uint32_t capacity, free_top, active_count;
	uint64_t inspect_timeout;        /* TSC */
	uint64_t rst_tokens, rst_last;   /* RST rate limit: a token bucket */
	uint8_t hello_scratch[BINDING_HELLO_CAP];
	struct synproxy_stats stats;
};

struct worker;
struct flow;
struct rte_mbuf;
struct packet_info;

/* Allocate the per-worker proxy state (control path).  0 or -ENOMEM. */
int synproxy_create(struct worker *worker, const struct config *config);
void synproxy_destroy(struct worker *worker);

/* A TCP packet that matched no flow, to ssl-session service `service`:
 * SYN -> cookie SYN-ACK; ACK -> cookie check and binding; else dropped. */
void synproxy_no_flow(struct worker *worker, struct rte_mbuf *m, const struct packet_info *info,
		      unsigned service);

/* A packet of a flow still binding (FLOW_TCP_BINDING / FLOW_TCP_CONNECTING). */
void synproxy_binding_packet(struct worker *worker, struct rte_mbuf *m,
			     const struct packet_info *info, uint32_t reference);

/* A spliced flow's packets: translate in place.  to_client also learns and
 * watches the replay; it returns false when it consumed the packet. */
void synproxy_splice_to_backend(struct flow *flow, uint8_t *frame, const struct packet_info *info);
bool synproxy_splice_to_client(struct worker *worker, struct flow *flow, struct rte_mbuf *m,
			       const struct packet_info *info);

/* Timers: inspect timeouts, backend SYN retries, replay retransmission,
 * learning deadlines.  Call every few milliseconds. */
void synproxy_tick(struct worker *worker);

/* The flow is going away: release its binding, if any. */
void synproxy_flow_gone(struct worker *worker, struct flow *flow);

/* Expire stale session-table entries (bounded work). */
unsigned synproxy_expire(struct worker *worker, unsigned budget);

#endif /* TETHER_SYNPROXY_H */
