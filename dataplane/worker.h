/*
 * worker.h: the worker lcore: its setup from config and its main loop.
 */
#ifndef TETHER_WORKER_H
#define TETHER_WORKER_H

#include <stdbool.h>

#include "config.h"
#include "pipeline.h"

/* Set by the main lcore to stop every worker loop. */
extern volatile bool worker_stop;

/*
 * Prepare `worker` for `config`: flow and persistence tables, counters,
 * next hops of the ports and, when `services` is given, of every backend
 * (else reload_initial() does that).  `ports` must be filled (ids, MACs,
 * addresses).  Returns 0 or a negative errno with `error` filled.
 * Main lcore, before launch.
 */
int worker_init(struct worker *worker, unsigned id, const struct config *config,
		struct services *services, struct rte_mempool *mempool,
		const struct dataplane_port ports[2], char *error, size_t error_size);
void worker_free(struct worker *worker);

/* Give every backend of `services` its next hop in `worker`'s neighbor table
 * (appending new ones).  0, or -EINVAL with `error` naming the backend that
 * cannot be reached.  Main lcore; safe while the worker runs. */
int worker_resolve_backends(struct worker *worker, struct services *services,
			    char *error, size_t error_size);

/*
 * Join `count` initialised workers: each learns its peers, and with several
 * each gets the handoff rings steer.h's frames reach it by.  0 or -ENOMEM
 * with `error` filled.  Main lcore, after worker_init() of all, before launch.
 */
int worker_link(struct worker *const *workers, unsigned count, char *error, size_t error_size);

/* What the loop does with a received burst: steer what other workers own to
 * them (steer.h), run the pipeline on the rest. */
void worker_receive(struct worker *worker, unsigned port, struct rte_mbuf **packets,
		    uint16_t count);

/* Run the pipeline on frames other workers handed over; returns how many. */
unsigned worker_drain_handoff(struct worker *worker);

/* Tell the other workers what this one learned: an SSL session (so a client
 * resuming from another address, hence another worker, finds it), or, on
 * worker 0, a next-hop entry's new state.  Worker lcore; never blocks. */
void worker_share_session(struct worker *worker, const struct session_key *key,
			  uint16_t backend, uint32_t timeout_s);
void worker_share_neighbor(struct worker *worker, uint16_t index);

/* Send everything queued in worker->tx; free and count what the NIC refused. */
void worker_flush(struct worker *worker);

/* rte_eal_remote_launch() entry: RX burst -> steer -> pipeline -> TX, timers,
 * until worker_stop.  `arg` is the struct worker. */
int worker_main(void *arg);

#endif /* TETHER_WORKER_H */
