/*
 * eal_fixture.h: start a minimal real EAL for unit tests that need DPDK
 * memory (rte_hash, mempools): no hugepages, no PCI, no shared config, a
 * unique file prefix, one lcore.
 */
#ifndef TETHER_TEST_EAL_FIXTURE_H
#define TETHER_TEST_EAL_FIXTURE_H

#include <stdio.h>
#include <unistd.h>

#include <rte_eal.h>

static inline int
test_eal_start(const char *name)
{
	char prefix[64];
	snprintf(prefix, sizeof(prefix), "--file-prefix=%s-%d", name, (int)getpid());
	char *arguments[] = { (char *)name, "-l", "0", "--no-huge", "-m", "128", "--no-shconf",
			      "--no-pci", "--log-level=error", prefix, NULL };
	return rte_eal_init(10, arguments) < 0 ? -1 : 0;
}

#endif /* TETHER_TEST_EAL_FIXTURE_H */
