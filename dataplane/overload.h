/*
 * overload.h: how a worker degrades as its state fills, in steps, so that
 * established flows never pay for new ones.
 *
 *   OVERLOAD_NONE         every service works as configured
 *   OVERLOAD_SYN_COOKIES  TCP services on "syn_cookies": "auto" answer SYNs
 *                         with cookies (synproxy.h): a client gets a flow only
 *                         once its ACK proves it is real, so spoofed SYNs
 *                         create nothing
 *   OVERLOAD_REFUSE_NEW   no new flow and no new binding at all; SYNs are still
 *                         answered with cookies (stateless), and a client that
 *                         speaks first resends its data, whose ACK carries the
 *                         cookie, and gets in once the pressure falls (one
 *                         that waits for the server waits for its own timeout:
 *                         TCP never resends a bare ACK)
 *
 * A worker steps up at once when a trigger holds: for cookies, half-open flows
 * (plain TCP flows whose handshake has not completed) at the configured share,
 * or the flow table or the mbuf pool syn_cookie_percent full; for refusal,
 * either of those refuse_percent full.  It steps down only after a second in
 * which every trigger of its level stayed below 90 % of its threshold and, for
 * cookies, fewer SYNs than the half-open limit were answered: a flood that goes
 * on keeps the cookies on.  Evaluated on the millisecond timer (bounded work:
 * one read of the pool's counters), read per new connection as one byte.
 */
#ifndef TETHER_OVERLOAD_H
#define TETHER_OVERLOAD_H

#include <stdint.h>

struct worker;
struct config;

enum overload_level {
	OVERLOAD_NONE = 0,
	OVERLOAD_SYN_COOKIES,
	OVERLOAD_REFUSE_NEW,
};

/* Counters; names in api.c are these field names. */
struct overload_stats {
	uint64_t entered_syn_cookies;   /* steps up to OVERLOAD_SYN_COOKIES or beyond */
	uint64_t entered_refuse_new;
	uint64_t syns_cookied;          /* SYNs of "auto" services answered by cookie because of it */
	uint64_t refused;               /* new flows and bindings refused at OVERLOAD_REFUSE_NEW */
};

struct overload {
	uint8_t level;                  /* enum overload_level */
	uint32_t half_open_limit;       /* this worker's share of overload.half_open */
	uint32_t cookie_flows, refuse_flows;   /* flow-table entries */
	uint32_t cookie_mbufs, refuse_mbufs;   /* mbufs in use, pool-wide */
	uint64_t calm_since;            /* TSC: below every step-down mark since then */
	uint64_t window_start;          /* TSC: start of the SYN-rate second */
	uint64_t window_syns;           /* stats.syns_cookied at window_start */
	uint64_t last_window_syns;      /* cookied SYNs in the last whole second */
	struct overload_stats stats;
};

/* Thresholds from the config, for a worker owning `flow_capacity` flows.
 * Control path. */
void overload_init(struct worker *worker, const struct config *config, uint32_t flow_capacity);

/* Re-evaluate the level.  Worker lcore, on a timer. */
void overload_update(struct worker *worker);

const char *overload_level_name(enum overload_level level);

#endif /* TETHER_OVERLOAD_H */
