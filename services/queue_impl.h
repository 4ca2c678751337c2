#ifndef ROOST_QUEUE_IMPL_H
#define ROOST_QUEUE_IMPL_H

/*
 * Private to the queue's files: queue.c (the directory: paths, atomic
 * writes, scan, check, open and recovery), queue_env.c (the envelope file
 * format) and queue_submit.c (new entries and their hand-off to the
 * engine).
 */

#include <pthread.h>
#include <stdbool.h>

#include "roost/buf.h"
#include "roost/queue.h"

struct queue {
	char dir[3072]; /* short enough that every path built from it fits PATH_MAX */
	bool sync;

	/* Lock order: mu alone; held only for list changes, never for I/O.
	 * pending: written, not committed; ready: committed, not taken. */
	pthread_mutex_t mu;
	struct queue_entry *pending, *ready;
	void (*notify)(void *arg);
	void *notify_arg;
};

/* e as the text of its <id>.env file, appended to b (queue.c's comment
 * gives the format). */
void queue_env_serialize(const struct queue_entry *e, struct buf *b);

#endif
