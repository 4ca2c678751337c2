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

/* Payload "<node> <user>\t<mailbox>", mailbox empty for all of the user. */
static void
deliver_notice(struct pg_store *ps, const PGnotify *n)
{
	char *end, *user, *tab;
	uint64_t node;

	if (n->extra == NULL)
		return;
	node = strtoull(n->extra, &end, 16);
	if (*end != ' ' || node == ps->node)
		return;
	pg_seq_bump(ps);
	user = xstrdup(end + 1);
	if ((tab = strchr(user, '\t')) != NULL) {
		*tab = '\0';
		storage_wake(&ps->base, user, tab[1] != '\0' ? tab + 1 : NULL);
	}
	free(user);
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
			if (stop_wait(ps, -1, backoff))
				return NULL;
			backoff = backoff < 2000 ? backoff * 2 : 2000;
			continue;
		}
		res = PQexec(conn, "LISTEN " PG_CHANNEL);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			PQclear(res);
			PQfinish(conn);
			if (stop_wait(ps, -1, backoff))
				return NULL;
			continue;
		}
		PQclear(res);
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
			while ((n = PQnotifies(conn)) != NULL) {
				deliver_notice(ps, n);
				PQfreemem(n);
			}
		}
		log_warn("event=pgsql_listen_lost error=%s", LOG_QUOTE(PQerrorMessage(conn)));
		PQfinish(conn);
		pg_seq_bump(ps);
		storage_wake(&ps->base, NULL, NULL);
	}
}

void
pg_listen_start(struct pg_store *ps)
{
	if (__atomic_load_n(&ps->listener_started, __ATOMIC_ACQUIRE))
		return;
	pthread_mutex_lock(&ps->lock);
	if (!ps->listener_started && ps->stop_pipe[0] >= 0) {
		if (pthread_create(&ps->listener, NULL, listen_main, ps) == 0)
			__atomic_store_n(&ps->listener_started, true, __ATOMIC_RELEASE);
		else
			log_warn("event=pgsql_listen_failed error=\"cannot start thread\"");
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
