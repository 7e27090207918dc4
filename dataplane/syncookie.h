/*
 * syncookie.h: SYN cookies for the ssl-session SYN proxy.
 *
 * The dataplane answers a client's SYN with a SYN-ACK whose sequence number
 * encodes everything it must remember, so a SYN costs no state and a SYN flood
 * no memory.  The client's ACK gives the cookie back (ack - 1) with its ISN
 * (seq - 1); the cookie is valid if its MAC matches for that 4-tuple, ISN and
 * time tick.
 *
 * Layout (32 bits, most significant first):
 *   3 bits  time tick (mod 8); a tick is SYNCOOKIE_TICK_S seconds, and a cookie
 *           is accepted for SYNCOOKIE_VALID_TICKS ticks
 *   3 bits  index of the client's MSS in a table of common values (rounded down)
 *   4 bits  client's window scale (15 = none)
 *   1 bit   SACK permitted
 *   1 bit   timestamps
 *  20 bits  SipHash-2-4 MAC over (tuple, client ISN, tick, the 12 bits above)
 *           with a key derived per tick from a random secret: the secret
 *           "rotates" every tick, and old ticks are refused.
 * A forged ACK passes with probability 2^-20 x (valid ticks / 8).
 */
#ifndef TETHER_SYNCOOKIE_H
#define TETHER_SYNCOOKIE_H

#include <stdbool.h>
#include <stdint.h>

#include "tcp_options.h"

#define SYNCOOKIE_TICK_S       16
#define SYNCOOKIE_VALID_TICKS  4    /* this tick and the three before: up to 64 s */

struct syncookie_secret {
	uint64_t key[2];
};

/* The 4-tuple as the client sent it (network order). */
struct syncookie_tuple {
	uint32_t client, vip;
	uint16_t client_port, vip_port;
};

/* Fill `secret` from the kernel's random source.  0 or -errno.  Control path. */
int syncookie_secret_init(struct syncookie_secret *secret);

/* Cookie for a SYN with `client_isn` and `options` at time `tick`. */
uint32_t syncookie_make(const struct syncookie_secret *secret, const struct syncookie_tuple *tuple,
			uint32_t client_isn, uint32_t tick, const struct tcp_syn_options *options);

/* Check `cookie` returned at time `tick`; on success fill MSS, wscale, SACK and
 * timestamps flags of `options` (tsval/tsecr untouched) and return true. */
bool syncookie_check(const struct syncookie_secret *secret, const struct syncookie_tuple *tuple,
		     uint32_t client_isn, uint32_t cookie, uint32_t tick,
		     struct tcp_syn_options *options);

/* SipHash-2-4 of `length` bytes; exposed for the persistence digests. */
uint64_t syncookie_siphash(const uint64_t key[2], const void *data, unsigned length);

#endif /* TETHER_SYNCOOKIE_H */
