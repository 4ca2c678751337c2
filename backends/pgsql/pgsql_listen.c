/*
 * The listener: one thread per process with its own connection, LISTENing
 * on the roost channel, waking the watchers here of every change another
 * node committed. It starts with the first transaction after the store is
 * open (the wrapper's watch registry exists by then). When its connection
 * breaks it wakes every watcher (a change may have gone by unheard, and a
 * woken session only asks what changed) and connects again, waiting a
 * little longer each time.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pgsql_impl.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/xalloc.h"

/* Wait ms for the stop pipe; true when asked to stop. */
static bool
stop_wait(struct pg_store *ps, int fd, int ms)
{
	struct pollfd pfd[2] = {
	    {.fd = ps->stop_pipe[0], .events = POLLIN},
	    {.fd = fd, .events = POLLIN},
	};
	int r = poll(pfd, fd >= 0 ? 2 : 1, ms);

	return r > 0 && pfd[0].revents != 0;
}

/* Notifications handled together: those one transaction sent come at once. */
#define BATCH_MAX 256

struct heard {
	char *user;          /* owned, "user\0mailbox" */
	const char *mailbox; /* NULL: every mailbox of the user */
	int64_t id;          /* 0: the mailbox is not named by id */
	uint64_t since;      /* the change is above this MODSEQ */
};

/* Payload "<node>[/<id>/<modseq>] <user>\t<mailbox>", mailbox empty for
 * all of the user. False for our own and for what does not parse. */
static bool
parse_notice(struct pg_store *ps, const PGnotify *n, struct heard *h)
{
	char *end, *tab;
	uint64_t node;
	const char *p;

	memset(h, 0, sizeof(*h));
	if (n->extra == NULL)
		return false;
	node = strtoull(n->extra, &end, 16);
	if (node == ps->node)
		return false;
	p = end;
	if (*p == '/') {
		int64_t id = strtoll(p + 1, &end, 10);
		uint64_t modseq;

		if (*end != '/')
			return false;
		modseq = strtoull(end + 1, &end, 10);
		if (id > 0 && modseq > 0) {
			h->id = id;
			h->since = modseq - 1;
		}
		p = end;
	}
	if (*p != ' ' || (tab = strchr(p + 1, '\t')) == NULL)
		return false;
	h->user = xstrdup(p + 1);
	tab = h->user + (tab - (p + 1));
	*tab = '\0';
	h->mailbox = tab[1] != '\0' ? tab + 1 : NULL;
	if (h->mailbox == NULL)
		h->id = 0;
	return true;
}

/*
 * One batch of other nodes' changes. A notification naming its mailbox by
 * id stales only that mailbox's shared changes queries, and for those
 * watched here one query for all starts before the sessions are woken, so
 * they find their answer on its way (pgsql_changes.c); any other moves
 * seq, staling them all, as every notification did before.
 */
static void
handle_batch(struct pg_store *ps, struct heard *h, size_t n)
{
	int64_t ids[BATCH_MAX];
	uint64_t sinces[BATCH_MAX];
	bool watched[BATCH_MAX], bump = false;
	struct pg_prefetch *pf = NULL;
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		size_t j;

		if (h[i].id == 0) {
			bump = true;
			continue;
		}
		for (j = 0; j < k && ids[j] != h[i].id; j++)
			;
		if (j == k) {
			ids[k] = h[i].id;
			sinces[k] = h[i].since;
			watched[k] = storage_watched(&ps->base, h[i].user, h[i].mailbox);
			k++;
		} else if (h[i].since < sinces[j]) {
			sinces[j] = h[i].since;
		}
	}
	if (bump)
		pg_seq_bump(ps);
	if (k > 0)
		pg_changes_heard(ps, ids, sinces, watched, k, &pf);
	for (size_t i = 0; i < n; i++) {
		storage_wake(&ps->base, h[i].user, h[i].mailbox);
		free(h[i].user);
	}
	pg_prefetch_run(ps, &pf);
}

/* The listener's first LISTEN is in place, or its first try failed. */
static void
mark_listen_ready(struct pg_store *ps)
{
	if (__atomic_load_n(&ps->listen_ready, __ATOMIC_ACQUIRE))
		return;
	pthread_mutex_lock(&ps->lock);
	__atomic_store_n(&ps->listen_ready, true, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&ps->listen_cond);
	pthread_mutex_unlock(&ps->lock);
}

static void *
listen_main(void *arg)
{
	struct pg_store *ps = arg;
	int backoff = 50;
	bool was_connected = false;

	for (;;) {
		PGconn *conn = NULL;
		PGresult *res;

		if (pg_connect(ps->dsn, &conn) != 0) {
			mark_listen_ready(ps);
			if (stop_wait(ps, -1, backoff))
				return NULL;
			backoff = backoff < 2000 ? backoff * 2 : 2000;
			continue;
		}
		res = PQexec(conn, "LISTEN " PG_CHANNEL);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			PQclear(res);
			PQfinish(conn);
			mark_listen_ready(ps);
			if (stop_wait(ps, -1, backoff))
				return NULL;
			continue;
		}
		PQclear(res);
		mark_listen_ready(ps);
		backoff = 50;
		if (was_connected) {
			log_info("event=pgsql_listen_reconnected");
			pg_seq_bump(ps);
			storage_wake(&ps->base, NULL, NULL);
		}
		was_connected = true;
		for (;;) {
			PGnotify *n;

			if (stop_wait(ps, PQsocket(conn), -1)) {
				PQfinish(conn);
				return NULL;
			}
			if (PQconsumeInput(conn) == 0)
				break;
			for (;;) {
				struct heard h[BATCH_MAX];
				size_t nh = 0;

				while (nh < BATCH_MAX && (n = PQnotifies(conn)) != NULL) {
					if (parse_notice(ps, n, &h[nh]))
						nh++;
					PQfreemem(n);
				}
				if (nh == 0)
					break;
				handle_batch(ps, h, nh);
			}
		}
		log_warn("event=pgsql_listen_lost error=%s", LOG_QUOTE(PQerrorMessage(conn)));
		PQfinish(conn);
		pg_seq_bump(ps);
		storage_wake(&ps->base, NULL, NULL);
	}
}

/*
 * Start the listener and wait until it listens (at most LISTEN_WAIT_S): a
 * session that registered its watch and then read the mailbox would miss
 * a change another node committed before LISTEN took effect (check_storage
 * pgsql_two_nodes failed so on a loaded machine: its first append on the
 * other node went by before the new listener thread had connected).
 */
#define LISTEN_WAIT_S 10

void
pg_listen_start(struct pg_store *ps)
{
	struct timespec until;

	if (__atomic_load_n(&ps->listen_ready, __ATOMIC_ACQUIRE))
		return;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += LISTEN_WAIT_S;
	pthread_mutex_lock(&ps->lock);
	if (!ps->listener_started && ps->stop_pipe[0] >= 0) {
		if (pthread_create(&ps->listener, NULL, listen_main, ps) == 0) {
			__atomic_store_n(&ps->listener_started, true, __ATOMIC_RELEASE);
		} else {
			log_warn("event=pgsql_listen_failed error=\"cannot start thread\"");
			__atomic_store_n(&ps->listen_ready, true, __ATOMIC_RELEASE);
		}
	}
	if (!ps->listener_started)
		__atomic_store_n(&ps->listen_ready, true, __ATOMIC_RELEASE);
	while (!ps->listen_ready) {
		if (pthread_cond_timedwait(&ps->listen_cond, &ps->lock, &until) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&ps->lock);
}

void
pg_listen_stop(struct pg_store *ps)
{
	if (ps->listener_started) {
		char c = 0;

		if (write(ps->stop_pipe[1], &c, 1) < 0)
			log_warn("event=pgsql_error op=listener_stop error=\"%s\"",
			         strerror(errno));
		pthread_join(ps->listener, NULL);
		ps->listener_started = false;
	}
}
