/*
 * overload.c: the degradation ladder of overload.h.  The measures are the
 * worker's own (half-open flows, flow-table fill) and the pool's (mbufs in
 * use: every worker reads the same figure, so they step together when
 * buffers run short).
 */
#include "overload.h"

#include <rte_mempool.h>

#include "config.h"
#include "pipeline.h"

#define STEP_DOWN_PERCENT 90   /* a level is left below 90 % of its thresholds */

static const char *const level_names[] = {
	[OVERLOAD_NONE] = "none",
	[OVERLOAD_SYN_COOKIES] = "syn-cookies",
	[OVERLOAD_REFUSE_NEW] = "refuse-new",
};

const char *
overload_level_name(enum overload_level level)
{
	return (unsigned)level <= OVERLOAD_REFUSE_NEW ? level_names[level] : "unknown";
}

static uint32_t
share(uint64_t whole, uint32_t percent)
{
	uint64_t part = whole * percent / 100;

	return part ? (uint32_t)part : 1;
}

void
overload_init(struct worker *worker, const struct config *config, uint32_t flow_capacity)
{
	const struct config_dataplane *dataplane = &config->dataplane;
	struct overload *overload = &worker->overload;
	unsigned workers = dataplane->workers ? dataplane->workers : 1;
	uint32_t mbufs = worker->mempool ? worker->mempool->size : 0;

	*overload = (struct overload){
		.half_open_limit = (dataplane->overload_half_open + workers - 1) / workers,
		.cookie_flows = share(flow_capacity, dataplane->overload_cookie_percent),
		.refuse_flows = share(flow_capacity, dataplane->overload_refuse_percent),
		.cookie_mbufs = share(mbufs, dataplane->overload_cookie_percent),
		.refuse_mbufs = share(mbufs, dataplane->overload_refuse_percent),
	};
}

/* The level the measures call for, against thresholds scaled by `percent`. */
static enum overload_level
wanted_level(const struct overload *overload, uint32_t half_open, uint32_t flows, uint32_t mbufs,
	     uint64_t syns, unsigned percent)
{
	uint64_t limit = (uint64_t)overload->half_open_limit * percent / 100;

	limit = limit ? limit : 1;

	if ((uint64_t)flows * 100 >= (uint64_t)overload->refuse_flows * percent ||
	    (uint64_t)mbufs * 100 >= (uint64_t)overload->refuse_mbufs * percent)
		return OVERLOAD_REFUSE_NEW;
	if (half_open >= limit || syns >= limit ||
	    (uint64_t)flows * 100 >= (uint64_t)overload->cookie_flows * percent ||
	    (uint64_t)mbufs * 100 >= (uint64_t)overload->cookie_mbufs * percent)
		return OVERLOAD_SYN_COOKIES;
	return OVERLOAD_NONE;
}

void
overload_update(struct worker *worker)
{
	struct overload *overload = &worker->overload;
	uint32_t mbufs = worker->mempool ? rte_mempool_in_use_count(worker->mempool) : 0;
	uint32_t half_open = worker->flows.half_open, flows = worker->flows.live;

	if (worker->now - overload->window_start >= worker->hz) {
		overload->last_window_syns = overload->stats.syns_cookied - overload->window_syns;
		overload->window_syns = overload->stats.syns_cookied;
		overload->window_start = worker->now;
	}
	/* stepping up: at once, on the thresholds themselves (the SYN rate is
	 * only a reason to stay: cookied SYNs exist only once cookies are on) */
	enum overload_level up = wanted_level(overload, half_open, flows, mbufs, 0, 100);
	if (up > overload->level) {
		if (overload->level < OVERLOAD_SYN_COOKIES)
			overload->stats.entered_syn_cookies++;
		if (up == OVERLOAD_REFUSE_NEW)
			overload->stats.entered_refuse_new++;
		overload->level = (uint8_t)up;
		overload->calm_since = worker->now;
		return;
	}
	/* stepping down: one level at a time, after a calm second */
	enum overload_level calm = wanted_level(overload, half_open, flows, mbufs,
						overload->last_window_syns, STEP_DOWN_PERCENT);
	if (calm >= overload->level) {
		overload->calm_since = worker->now;
		return;
	}
	if (worker->now - overload->calm_since >= worker->hz) {
		overload->level--;
		overload->calm_since = worker->now;
	}
}
