/*
 * syncookie.c: cookie encoding and checking; layout and threat model in
 * syncookie.h.  SipHash-2-4 (Aumasson & Bernstein) is the MAC: a CRC would be
 * cheaper but is linear, so one observed cookie would let an attacker forge
 * others.
 */
#include "syncookie.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include <rte_byteorder.h>

static const uint16_t mss_table[8] = { 536, 1200, 1300, 1360, 1400, 1440, 1460, 8960 };

#define ROTATE(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

static inline void
sip_round(uint64_t v[4])
{
	v[0] += v[1]; v[1] = ROTATE(v[1], 13); v[1] ^= v[0]; v[0] = ROTATE(v[0], 32);
	v[2] += v[3]; v[3] = ROTATE(v[3], 16); v[3] ^= v[2];
	v[0] += v[3]; v[3] = ROTATE(v[3], 21); v[3] ^= v[0];
	v[2] += v[1]; v[1] = ROTATE(v[1], 17); v[1] ^= v[2]; v[2] = ROTATE(v[2], 32);
}

uint64_t
syncookie_siphash(const uint64_t key[2], const void *data, unsigned length)
{
	const uint8_t *bytes = data;
	uint64_t v[4] = { key[0] ^ 0x736f6d6570736575ull, key[1] ^ 0x646f72616e646f6dull,
			  key[0] ^ 0x6c7967656e657261ull, key[1] ^ 0x7465646279746573ull };
	uint64_t last = (uint64_t)length << 56;
	unsigned whole = length & ~7u;

	for (unsigned i = 0; i < whole; i += 8) {
		uint64_t word;
		memcpy(&word, bytes + i, 8);
		word = rte_le_to_cpu_64(word);   /* little-endian, on any host */
		v[3] ^= word;
		sip_round(v);
		sip_round(v);
		v[0] ^= word;
	}
	for (unsigned b = 0; b < (length & 7); b++)
		last |= (uint64_t)bytes[whole + b] << (8 * b);
	v[3] ^= last;
	sip_round(v);
	sip_round(v);
	v[0] ^= last;
	v[2] ^= 0xff;
	for (int r = 0; r < 4; r++)
		sip_round(v);
	return v[0] ^ v[1] ^ v[2] ^ v[3];
}

int
syncookie_secret_init(struct syncookie_secret *secret)
{
	if (getrandom(secret->key, sizeof(secret->key), 0) != (ssize_t)sizeof(secret->key))
		return -errno;
	return 0;
}

static unsigned
mss_index(uint16_t mss)
{
	unsigned index = 0;

	for (unsigned i = 0; i < 8; i++)
		if (mss_table[i] <= mss)
			index = i;
	return index;   /* no MSS, or below 536: the RFC default 536 */
}

static uint32_t
option_bits(const struct tcp_syn_options *options)
{
	unsigned wscale = options->wscale == TCP_WSCALE_NONE ? 15 : options->wscale;

	return mss_index(options->mss) << 9 | wscale << 5 | (unsigned)options->sack_permitted << 4 |
	       (unsigned)options->timestamps << 3;
}

static uint32_t
mac(const struct syncookie_secret *secret, const struct syncookie_tuple *tuple,
    uint32_t client_isn, uint32_t tick, uint32_t bits)
{
#if RTE_BYTE_ORDER == RTE_LITTLE_ENDIAN
	/* the 24 bytes of the struct below, as the three 8-byte words SipHash
	 * reads, each stored whole: read back across smaller stores, they would
	 * wait for them (a store-forwarding stall, twice a connection) */
	uint64_t input[3] = {
		tuple->client | (uint64_t)tuple->vip << 32,
		tuple->client_port | (uint64_t)tuple->vip_port << 16 | (uint64_t)client_isn << 32,
		tick | (uint64_t)bits << 32,
	};
#else
	struct {
		struct syncookie_tuple tuple;
		uint32_t client_isn, tick, bits;
	} input;

	memset(&input, 0, sizeof(input));
	input.tuple = *tuple;
	input.client_isn = client_isn;
	input.tick = tick;
	input.bits = bits;
#endif
	return (uint32_t)syncookie_siphash(secret->key, &input, sizeof(input)) & 0xfffff;
}

uint32_t
syncookie_make(const struct syncookie_secret *secret, const struct syncookie_tuple *tuple,
	       uint32_t client_isn, uint32_t tick, const struct tcp_syn_options *options)
{
	uint32_t bits = option_bits(options);   /* 9 bits (mss 3, wscale 4, sack, ts) shifted left 3 */

	return (tick & 7) << 29 | (bits >> 3) << 20 | mac(secret, tuple, client_isn, tick, bits);
}

bool
syncookie_check(const struct syncookie_secret *secret, const struct syncookie_tuple *tuple,
		uint32_t client_isn, uint32_t cookie, uint32_t tick, struct tcp_syn_options *options)
{
	uint32_t cookie_tick_low = cookie >> 29;
	uint32_t age = (tick - cookie_tick_low) & 7;

	if (age >= SYNCOOKIE_VALID_TICKS)
		return false;
	uint32_t cookie_tick = tick - age;
	uint32_t bits = ((cookie >> 20) & 0x1ff) << 3;
	if (mac(secret, tuple, client_isn, cookie_tick, bits) != (cookie & 0xfffff))
		return false;
	unsigned wscale = (bits >> 5) & 0xf;
	options->mss = mss_table[(bits >> 9) & 7];
	options->wscale = wscale == 15 ? TCP_WSCALE_NONE : (uint8_t)wscale;
	options->sack_permitted = (bits >> 4) & 1;
	options->timestamps = (bits >> 3) & 1;
	return true;
}
