/*
 * Counters for /metrics. Listener names get a slot on first use (under a
 * mutex, rarely); after that every update is one relaxed atomic add.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "roost/metrics.h"

#define MAX_PROTOS 24
#define NAME_MAX_LEN 24

struct proto_slot {
	char name[NAME_MAX_LEN];
	atomic_bool used;
	atomic_uint_fast64_t opened, closed, commands;
};

static struct proto_slot slots[MAX_PROTOS];
static pthread_mutex_t slots_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_uint_fast64_t auth_failures, deliveries, jobs_queued, jobs_started, jobs_done;
static atomic_uint workers;

static struct proto_slot *
slot(const char *proto)
{
	struct proto_slot *s = NULL;

	for (int i = 0; i < MAX_PROTOS; i++) {
		if (!atomic_load_explicit(&slots[i].used, memory_order_acquire))
			break;
		if (strcmp(slots[i].name, proto) == 0)
			return &slots[i];
	}
	pthread_mutex_lock(&slots_lock);
	for (int i = 0; i < MAX_PROTOS; i++) {
		if (!atomic_load_explicit(&slots[i].used, memory_order_acquire)) {
			strncpy(slots[i].name, proto, NAME_MAX_LEN - 1);
			atomic_store_explicit(&slots[i].used, true, memory_order_release);
			s = &slots[i];
			break;
		}
		if (strcmp(slots[i].name, proto) == 0) {
			s = &slots[i];
			break;
		}
	}
	pthread_mutex_unlock(&slots_lock);
	return s; /* NULL only past MAX_PROTOS listener names: not counted */
}

void
metrics_conn_open(const char *proto)
{
	struct proto_slot *s = slot(proto);

	if (s != NULL)
		atomic_fetch_add_explicit(&s->opened, 1, memory_order_relaxed);
}

void
metrics_conn_close(const char *proto)
{
	struct proto_slot *s = slot(proto);

	if (s != NULL)
		atomic_fetch_add_explicit(&s->closed, 1, memory_order_relaxed);
}

void
metrics_command(const char *proto)
{
	struct proto_slot *s = slot(proto);

	if (s != NULL)
		atomic_fetch_add_explicit(&s->commands, 1, memory_order_relaxed);
}

void
metrics_auth_failure(void)
{
	atomic_fetch_add_explicit(&auth_failures, 1, memory_order_relaxed);
}

void
metrics_deliveries(unsigned n)
{
	atomic_fetch_add_explicit(&deliveries, n, memory_order_relaxed);
}

void
metrics_workers(unsigned n)
{
	atomic_fetch_add_explicit(&workers, n, memory_order_relaxed);
}

void
metrics_job_queued(void)
{
	atomic_fetch_add_explicit(&jobs_queued, 1, memory_order_relaxed);
}

void
metrics_job_started(void)
{
	atomic_fetch_add_explicit(&jobs_started, 1, memory_order_relaxed);
}

void
metrics_job_done(void)
{
	atomic_fetch_add_explicit(&jobs_done, 1, memory_order_relaxed);
}

static uint64_t
get(atomic_uint_fast64_t *v)
{
	return atomic_load_explicit(v, memory_order_relaxed);
}

void
metrics_render(struct buf *out)
{
	uint64_t q = get(&jobs_queued), st = get(&jobs_started), dn = get(&jobs_done);

	buf_append_str(out, "# TYPE roost_connections counter\n"
	                    "# HELP roost_connections Connections accepted, by listener.\n");
	for (int i = 0; i < MAX_PROTOS && atomic_load(&slots[i].used); i++)
		buf_printf(out, "roost_connections_total{listener=\"%s\"} %llu\n", slots[i].name,
		           (unsigned long long)get(&slots[i].opened));
	buf_append_str(out, "# TYPE roost_connections_open gauge\n"
	                    "# HELP roost_connections_open Connections open now, by listener.\n");
	for (int i = 0; i < MAX_PROTOS && atomic_load(&slots[i].used); i++) {
		uint64_t o = get(&slots[i].opened), c = get(&slots[i].closed);

		buf_printf(out, "roost_connections_open{listener=\"%s\"} %llu\n", slots[i].name,
		           (unsigned long long)(o > c ? o - c : 0));
	}
	buf_append_str(out, "# TYPE roost_commands counter\n"
	                    "# HELP roost_commands Commands run, by listener.\n");
	for (int i = 0; i < MAX_PROTOS && atomic_load(&slots[i].used); i++)
		buf_printf(out, "roost_commands_total{listener=\"%s\"} %llu\n", slots[i].name,
		           (unsigned long long)get(&slots[i].commands));
	buf_printf(out,
	           "# TYPE roost_auth_failures counter\n"
	           "# HELP roost_auth_failures Failed authentications.\n"
	           "roost_auth_failures_total %llu\n"
	           "# TYPE roost_deliveries counter\n"
	           "# HELP roost_deliveries Messages stored by local delivery, one per recipient.\n"
	           "roost_deliveries_total %llu\n"
	           "# TYPE roost_workers gauge\n"
	           "# HELP roost_workers Worker threads.\n"
	           "roost_workers %u\n"
	           "# TYPE roost_workers_busy gauge\n"
	           "# HELP roost_workers_busy Workers running a job now.\n"
	           "roost_workers_busy %llu\n"
	           "# TYPE roost_jobs_waiting gauge\n"
	           "# HELP roost_jobs_waiting Jobs queued for a worker and not started.\n"
	           "roost_jobs_waiting %llu\n"
	           "# TYPE roost_jobs counter\n"
	           "# HELP roost_jobs Jobs run by the worker pool.\n"
	           "roost_jobs_total %llu\n",
	           (unsigned long long)get(&auth_failures), (unsigned long long)get(&deliveries),
	           atomic_load(&workers), (unsigned long long)(st > dn ? st - dn : 0),
	           (unsigned long long)(q > st ? q - st : 0), (unsigned long long)dn);
}
