/*
 * stats.c: allocation of the per-worker counter arrays; see stats.h.
 */
#include "stats.h"

#include <errno.h>
#include <string.h>

#include <rte_malloc.h>

int
stats_init(struct worker_stats *stats, unsigned service_count, unsigned backend_count)
{
	memset(stats, 0, sizeof(*stats));
	stats->services = rte_zmalloc("service_stats",
				      sizeof(*stats->services) * (service_count ? service_count : 1),
				      RTE_CACHE_LINE_SIZE);
	stats->backends = rte_zmalloc("backend_stats",
				      sizeof(*stats->backends) * (backend_count ? backend_count : 1),
				      RTE_CACHE_LINE_SIZE);
	if (!stats->services || !stats->backends) {
		stats_free(stats);
		return -ENOMEM;
	}
	return 0;
}

void
stats_free(struct worker_stats *stats)
{
	rte_free(stats->services);
	rte_free(stats->backends);
	stats->services = NULL;
	stats->backends = NULL;
}
