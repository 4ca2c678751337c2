/*
 * The storage benchmark's workloads (roost/storage_bench.h), moved here
 * from bench/bench_storage.c so `roost bench storage` and that binary run
 * the same code. Only the storage interface is used; pgsql's scratch
 * databases are made and dropped over libpq. The private PostgreSQL that
 * `roost bench storage` may start lives in storage_bench_pg.c.
 */
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "roost/config.h"
#include "roost/error.h"
#include "roost/loop.h"
#include "roost/storage.h"
#include "roost/storage_bench.h"
#include "roost/xalloc.h"

#include "storage_bench_private.h"

#define MAX_WRITERS 16
#define MAX_PG_DBS 32

struct profile {
	double seconds; /* per timed workload */
	unsigned big;   /* messages in the big mailbox */
	unsigned lists; /* open+list repetitions */
};

static const struct profile short_profile = {1.5, 100000, 10};
static const struct profile full_profile = {5.0, 100000, 30};

/* One run: its options and the scratch databases it made (pgsql). */
struct run {
	const struct storage_bench_opts *o;
	const struct profile *prof;
	struct profile own; /* the profile with the options' overrides */
	const char *backend;
	char pg_dbs[MAX_PG_DBS][64];
	int n_pg_dbs;
	char pg_dsns[MAX_PG_DBS][1024];
};

/* ---- latency samples ---- */

struct samples {
	double *v;
	size_t n, cap;
};

static void
sample_add(struct samples *s, double x)
{
	if (s->n == s->cap) {
		s->cap = s->cap == 0 ? 1024 : s->cap * 2;
		s->v = xreallocarray(s->v, s->cap, sizeof(*s->v));
	}
	s->v[s->n++] = x;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double
pct(const struct samples *s, double p)
{
	size_t i;

	if (s->n == 0)
		return 0;
	i = (size_t)(p / 100.0 * (double)(s->n - 1) + 0.5);
	return s->v[i] * 1000.0;
}

static void
report(struct run *r, const char *what, struct samples *s, double elapsed, const char *notes,
       bool failed)
{
	struct storage_bench_row row = {
	    .backend = r->backend,
	    .workload = what,
	    .notes = notes != NULL ? notes : "",
	    .failed = failed,
	};

	if (s->n > 1)
		qsort(s->v, s->n, sizeof(*s->v), cmp_double);
	row.ops = elapsed > 0 ? (double)s->n / elapsed : 0;
	row.p50_ms = pct(s, 50);
	row.p95_ms = pct(s, 95);
	row.p99_ms = pct(s, 99);
	r->o->row(&row, r->o->arg);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

/* ---- store setup ---- */

static int
rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

void
storage_bench_rm_tree(const char *dir)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int
pg_admin(struct run *r, const char *sql)
{
	PGconn *conn = PQconnectdb(r->o->pgsql_admin_dsn);
	PGresult *res = PQexec(conn, sql);
	int ret = 0;

	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		fprintf(stderr, "storage bench: %s: %s", sql, PQerrorMessage(conn));
		ret = ROOST_EIO;
	}
	PQclear(res);
	PQfinish(conn);
	return ret;
}

/* A scratch database for one workload; its DSN lives as long as the run. */
static const char *
pg_bench_db(struct run *r, const char *tag)
{
	char sql[128];
	int i = r->n_pg_dbs;

	if (i >= MAX_PG_DBS)
		return NULL;
	snprintf(r->pg_dbs[i], sizeof(r->pg_dbs[i]), "roost_bench_%d_%s", (int)getpid(), tag);
	snprintf(sql, sizeof(sql), "CREATE DATABASE %.63s", r->pg_dbs[i]);
	if (pg_admin(r, sql) != 0)
		return NULL;
	r->n_pg_dbs++;
	{
		char dsn[sizeof(r->pg_dsns[0])];

		snprintf(dsn, sizeof(dsn), "%s dbname=%s", r->o->pgsql_admin_dsn, r->pg_dbs[i]);
		memcpy(r->pg_dsns[i], dsn, sizeof(dsn));
	}
	return r->pg_dsns[i];
}

static void
pg_bench_drop_all(struct run *r)
{
	for (int i = 0; i < r->n_pg_dbs; i++) {
		char sql[128];

		snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %.63s WITH (FORCE)",
		         r->pg_dbs[i]);
		(void)pg_admin(r, sql);
	}
	r->n_pg_dbs = 0;
}

/* A store of the run's backend under dir/<backend>-<tag>, or NULL. */
static struct storage *
open_store(struct run *r, struct roost_config *cfg, char *dir, size_t dlen, const char *tag,
           bool fsync)
{
	struct storage *st;
	int rc;

	memset(cfg, 0, sizeof(*cfg));
	snprintf(dir, dlen, "%s/%s-%s", r->o->dir, r->backend, tag);
	mkdir(dir, 0700);
	cfg->data_dir = dir;
	cfg->storage_backend = (char *)r->backend;
	cfg->lmdb_map_size = 1ULL << 30;
	cfg->lmdb_shards = 1;
	cfg->storage_fsync = fsync;
	cfg->expunge_log_retention = 30 * 86400;
	cfg->max_message_size = 64u << 20;
	cfg->workers = 16;
	if (r->o->quota) {
		cfg->quota_storage = 1ULL << 40;
		cfg->quota_messages = 1u << 30;
	}
	if (strcmp(r->backend, "pgsql") == 0 &&
	    (cfg->pgsql_dsn = (char *)pg_bench_db(r, tag)) == NULL)
		return NULL;
	rc = storage_open(cfg, &st);
	if (rc != 0) {
		fprintf(stderr, "storage bench: open %s in %s: %s\n", r->backend, dir,
		        roost_strerror(rc));
		return NULL;
	}
	return st;
}

static uint8_t *
make_message(size_t len, unsigned seed)
{
	uint8_t *m = xmalloc(len);
	int h = snprintf((char *)m, len,
	                 "From: bench@example.com\r\nTo: u@example.com\r\n"
	                 "Subject: bench %u\r\nMessage-ID: <%u@bench>\r\n\r\n",
	                 seed, seed);

	for (size_t i = (size_t)h; i < len; i++)
		m[i] = (i % 78 == 77) ? '\n' : (uint8_t)('a' + (i * 7 + seed) % 26);
	return m;
}

/* ---- deliveries ---- */

struct dthread {
	struct storage *st;
	size_t size;
	unsigned id;
	double stop_at;
	struct samples lat;
	int failures;
};

static void *
deliver_main(void *arg)
{
	struct dthread *t = arg;
	char user[64];
	unsigned i = 0;

	/* Each writer its own user: contention is in the backend, not on one
	 * mailbox's UID counter. */
	snprintf(user, sizeof(user), "writer%u@bench", t->id);
	while (clock_s() < t->stop_at) {
		uint8_t *msg = make_message(t->size, t->id * 1000003u + i++);
		struct msg_input in = {.data = msg, .len = t->size, .fd = -1};
		uint32_t uidv, uid;
		double t0 = clock_s();

		if (storage_append(t->st, user, "INBOX", &in, &uidv, &uid) != 0)
			t->failures++;
		else
			sample_add(&t->lat, clock_s() - t0);
		free(msg);
	}
	return NULL;
}

static int
bench_deliver(struct run *r, size_t size, unsigned writers, const char *tag, bool no_group)
{
	struct roost_config cfg;
	char dir[512], what[64], notes[128] = "";
	struct storage *st;
	struct dthread th[MAX_WRITERS];
	pthread_t tid[MAX_WRITERS];
	struct samples all = {0};
	double t0, elapsed;
	struct storage_stats s0, s1;
	int failures = 0;

	if (no_group) {
		setenv("ROOST_LMDB_MAX_BATCH", "1", 1);
		setenv("ROOST_PGSQL_MAX_BATCH", "1", 1);
	}
	st = open_store(r, &cfg, dir, sizeof(dir), tag, true);
	unsetenv("ROOST_LMDB_MAX_BATCH");
	unsetenv("ROOST_PGSQL_MAX_BATCH");
	if (st == NULL)
		return ROOST_EIO;
	for (unsigned w = 0; w < writers; w++) {
		char user[64];

		snprintf(user, sizeof(user), "writer%u@bench", w);
		storage_user_init(st, user);
	}
	storage_stats(st, &s0);
	t0 = clock_s();
	for (unsigned w = 0; w < writers; w++) {
		memset(&th[w], 0, sizeof(th[w]));
		th[w].st = st;
		th[w].size = size;
		th[w].id = w;
		th[w].stop_at = t0 + r->prof->seconds;
		pthread_create(&tid[w], NULL, deliver_main, &th[w]);
	}
	for (unsigned w = 0; w < writers; w++) {
		pthread_join(tid[w], NULL);
		for (size_t i = 0; i < th[w].lat.n; i++)
			sample_add(&all, th[w].lat.v[i]);
		free(th[w].lat.v);
		failures += th[w].failures;
	}
	elapsed = clock_s() - t0;
	/* Backends without counters report zeros: no ratio then. */
	storage_stats(st, &s1);
	if (s1.commits > s0.commits)
		snprintf(notes, sizeof(notes), "%.1f deliveries/commit",
		         (double)(s1.writes - s0.writes) / (double)(s1.commits - s0.commits));
	if (failures > 0)
		snprintf(notes + strlen(notes), sizeof(notes) - strlen(notes), " %d FAILED",
		         failures);
	storage_close(&st);
	storage_bench_rm_tree(dir);
	if (size >= 1 << 20)
		snprintf(what, sizeof(what), "deliver %zu MB, %u writer%s", size >> 20, writers,
		         writers > 1 ? "s" : "");
	else
		snprintf(what, sizeof(what), "deliver %zu KB, %u writer%s", size >> 10, writers,
		         writers > 1 ? "s" : "");
	if (no_group)
		snprintf(what + strlen(what), sizeof(what) - strlen(what), " (no group commit)");
	report(r, what, &all, elapsed, notes, failures > 0);
	return 0;
}

/* ---- the big mailbox ---- */

struct fthread {
	struct storage *st;
	unsigned from, to;
	bool failed;
};

static void *
fill_main(void *arg)
{
	struct fthread *f = arg;

	for (unsigned i = f->from; i < f->to && !f->failed; i++) {
		uint8_t *msg = make_message(1024, i);
		struct msg_input in = {
		    .data = msg, .len = 1024, .fd = -1, .flags = (i % 3 == 0) ? MSG_SEEN : 0};
		uint32_t uidv, uid;

		if (storage_append(f->st, "big@bench", "INBOX", &in, &uidv, &uid) != 0) {
			fprintf(stderr, "storage bench: fill failed at %u\n", i);
			f->failed = true;
		}
		free(msg);
	}
	return NULL;
}

/* Fill the big mailbox without fsync (set-up, not measured), then reopen
 * the store with fsync. NULL when it failed. */
static struct storage *
big_fill(struct run *r, struct roost_config *cfg, char *dir, size_t dlen)
{
	struct storage *st = open_store(r, cfg, dir, dlen, "big", false);
	struct fthread ft[8];
	pthread_t tid[8];
	bool failed = false;
	double t0;
	int rc;

	if (st == NULL)
		return NULL;
	storage_user_init(st, "big@bench");
	t0 = clock_s();
	for (unsigned i = 0; i < 8; i++) {
		ft[i].st = st;
		ft[i].from = r->prof->big / 8 * i;
		ft[i].to = i == 7 ? r->prof->big : r->prof->big / 8 * (i + 1);
		ft[i].failed = false;
		pthread_create(&tid[i], NULL, fill_main, &ft[i]);
	}
	for (unsigned i = 0; i < 8; i++) {
		pthread_join(tid[i], NULL);
		failed |= ft[i].failed;
	}
	storage_close(&st);
	if (failed)
		return NULL;
	fprintf(stderr, "storage bench: %s: filled %u messages in %.1f s\n", r->backend,
	        r->prof->big, clock_s() - t0);
	sync(); /* the fill's writeback is not part of what follows */
	cfg->storage_fsync = true;
	if ((rc = storage_open(cfg, &st)) != 0) {
		fprintf(stderr, "storage bench: reopen %s: %s\n", r->backend, roost_strerror(rc));
		return NULL;
	}
	return st;
}

static int
big_workloads(struct run *r, struct storage *st, struct mailbox *mb, const uint32_t *uids, size_t n)
{
	const double secs = r->prof->seconds;
	struct samples s = {0};
	char notes[96];
	uint64_t before_flags;
	unsigned seed = 42;
	double t0, stop;

	/* read: random messages, every byte touched */
	{
		unsigned long sum = 0;

		t0 = clock_s();
		stop = t0 + secs;
		while (clock_s() < stop) {
			struct msg_view v;
			double a = clock_s();

			if (mailbox_read(mb, uids[rand_r(&seed) % n], &v) != 0)
				goto fail;
			for (size_t i = 0; i < v.len; i += 64)
				sum += v.data[i];
			msg_view_release(&v);
			sample_add(&s, clock_s() - a);
		}
		(void)sum;
		report(r, "read random 1 KB message", &s, clock_s() - t0, NULL, false);
	}
	/* status */
	t0 = clock_s();
	stop = t0 + secs / 3;
	while (clock_s() < stop) {
		struct mailbox_status ms;
		double a = clock_s();

		if (storage_status(st, "big@bench", "INBOX", &ms) != 0)
			goto fail;
		sample_add(&s, clock_s() - a);
	}
	report(r, "status of the big mailbox", &s, clock_s() - t0, NULL, false);

	/* flag updates: one message per STORE, durable each */
	{
		struct mailbox_status ms;

		if (mailbox_status(mb, &ms) != 0)
			goto fail;
		before_flags = ms.highestmodseq;
	}
	t0 = clock_s();
	stop = t0 + secs;
	for (unsigned i = 0; clock_s() < stop; i++) {
		struct store_req req = {.mode = (i & 1) ? STORE_REMOVE : STORE_ADD,
		                        .flags = MSG_FLAGGED};
		uint32_t uid = uids[rand_r(&seed) % n], *mod;
		size_t nmod;
		double a = clock_s();

		if (mailbox_store(mb, &uid, 1, &req, &mod, &nmod) != 0)
			goto fail;
		free(mod);
		sample_add(&s, clock_s() - a);
	}
	report(r, "flag update (1 message)", &s, clock_s() - t0, NULL, false);
	/* flag a range: 1000 messages in one STORE */
	t0 = clock_s();
	stop = t0 + secs;
	for (unsigned i = 0; clock_s() < stop && n > 1000; i++) {
		struct store_req req = {.mode = (i & 1) ? STORE_REMOVE : STORE_ADD,
		                        .flags = MSG_SEEN};
		size_t from = (size_t)rand_r(&seed) % (n - 1000);
		uint32_t *mod;
		size_t nmod;
		double a = clock_s();

		if (mailbox_store(mb, uids + from, 1000, &req, &mod, &nmod) != 0)
			goto fail;
		free(mod);
		sample_add(&s, clock_s() - a);
	}
	report(r, "flag update (1000 messages)", &s, clock_s() - t0, NULL, false);

	/* changes since the modseq before the flag updates */
	{
		struct mailbox_changes ch = {0};

		t0 = clock_s();
		stop = t0 + secs / 3;
		while (clock_s() < stop) {
			double a = clock_s();

			mailbox_changes_free(&ch);
			if (mailbox_changes_since(mb, before_flags, &ch) != 0)
				goto fail;
			sample_add(&s, clock_s() - a);
		}
		snprintf(notes, sizeof(notes), "%zu changed", ch.n_changed);
		mailbox_changes_free(&ch);
		report(r, "changes-since (after the updates)", &s, clock_s() - t0, notes, false);
		t0 = clock_s();
		stop = t0 + secs / 3;
		while (clock_s() < stop) {
			struct mailbox_status ms;
			double a = clock_s();

			if (mailbox_status(mb, &ms) != 0 ||
			    mailbox_changes_since(mb, ms.highestmodseq, &ch) != 0)
				goto fail;
			mailbox_changes_free(&ch);
			sample_add(&s, clock_s() - a);
		}
		report(r, "changes-since (nothing new; NOOP)", &s, clock_s() - t0, NULL, false);
	}

	/* expunge: one message per EXPUNGE, durable each */
	t0 = clock_s();
	stop = t0 + secs;
	for (size_t i = 0; i < n && clock_s() < stop; i += 7) {
		double a = clock_s();

		if (mailbox_expunge(mb, &uids[i], 1) != 0)
			goto fail;
		sample_add(&s, clock_s() - a);
	}
	report(r, "expunge (1 message)", &s, clock_s() - t0, NULL, false);
	return 0;
fail:
	fprintf(stderr, "storage bench: %s: the big mailbox's workloads failed\n", r->backend);
	free(s.v);
	return ROOST_EIO;
}

static int
bench_big(struct run *r)
{
	struct roost_config cfg;
	char dir[512], what[64];
	struct storage *st;
	struct mailbox *mb = NULL;
	struct msg_record *recs = NULL;
	struct samples s = {0};
	uint32_t *uids = NULL;
	size_t n = 0;
	uint64_t modseq;
	double total = 0;
	int ret = ROOST_EIO;

	if ((st = big_fill(r, &cfg, dir, sizeof(dir))) == NULL)
		goto out;
	/* open + list (SELECT): open, all records, close */
	for (unsigned i = 0; i < r->prof->lists; i++) {
		double a = clock_s();

		free(recs);
		recs = NULL;
		if (mailbox_open(st, "big@bench", "INBOX", 0, &mb) != 0 ||
		    mailbox_records(mb, &recs, &n, &modseq) != 0) {
			fprintf(stderr, "storage bench: %s: open+list failed\n", r->backend);
			mailbox_close(&mb);
			goto out;
		}
		sample_add(&s, clock_s() - a);
		mailbox_close(&mb);
	}
	for (size_t i = 0; i < s.n; i++)
		total += s.v[i];
	snprintf(what, sizeof(what), "open+list %zu messages", n);
	report(r, what, &s, total, NULL, false);
	if (n == 0)
		goto out;
	uids = xcalloc(n, sizeof(*uids));
	for (size_t i = 0; i < n; i++)
		uids[i] = recs[i].uid;
	if (mailbox_open(st, "big@bench", "INBOX", 0, &mb) != 0)
		goto out;
	ret = big_workloads(r, st, mb, uids, n);
out:
	mailbox_close(&mb);
	free(recs);
	free(uids);
	storage_close(&st);
	storage_bench_rm_tree(dir);
	return ret;
}

/* ---- multi-recipient ---- */

static int
bench_fanout(struct run *r)
{
	struct roost_config cfg;
	char dir[512], users[100][32];
	struct delivery_target t[100];
	struct storage *st;
	struct samples s = {0};
	double t0, stop;
	unsigned i = 0, failures = 0;
	char notes[64] = "";

	if ((st = open_store(r, &cfg, dir, sizeof(dir), "fanout", true)) == NULL)
		return ROOST_EIO;
	for (int u = 0; u < 100; u++) {
		snprintf(users[u], sizeof(users[u]), "rcpt%d@bench", u);
		storage_user_init(st, users[u]);
	}
	t0 = clock_s();
	stop = t0 + r->prof->seconds;
	while (clock_s() < stop) {
		uint8_t *msg = make_message(50 * 1024, i++);
		struct msg_input in = {.data = msg, .len = 50 * 1024, .fd = -1};
		double a = clock_s();

		for (int u = 0; u < 100; u++)
			t[u] = (struct delivery_target){.user = users[u], .mailbox = "INBOX"};
		if (storage_deliver(st, &in, t, 100, 0) != 0)
			failures++;
		else
			sample_add(&s, clock_s() - a);
		free(msg);
	}
	storage_close(&st);
	storage_bench_rm_tree(dir);
	if (failures > 0)
		snprintf(notes, sizeof(notes), "%u FAILED", failures);
	report(r, "deliver 50 KB to 100 recipients", &s, clock_s() - t0, notes, failures > 0);
	return 0;
}

double
storage_bench_seconds(const struct storage_bench_opts *o)
{
	return o->seconds > 0 ? o->seconds : (o->full ? &full_profile : &short_profile)->seconds;
}

int
storage_bench_run(const char *backend, const struct storage_bench_opts *o)
{
	struct run *r;
	/* the backends with group commit also run without it */
	bool lmdb = strcmp(backend, "lmdb") == 0 || strcmp(backend, "pgsql") == 0;
	int ret;

	if (!storage_backend_available(backend))
		return ROOST_ENOTSUP;
	if (strcmp(backend, "pgsql") == 0 &&
	    (o->pgsql_admin_dsn == NULL || o->pgsql_admin_dsn[0] == '\0'))
		return ROOST_ENOTSUP;
	r = xcalloc(1, sizeof(*r));
	r->o = o;
	r->own = *(o->full ? &full_profile : &short_profile);
	r->own.seconds = storage_bench_seconds(o);
	if (o->big >= 2000)
		r->own.big = o->big;
	r->prof = &r->own;
	r->backend = backend;
	if ((ret = bench_deliver(r, 1024, 1, "d1k1", false)) != 0 ||
	    (ret = bench_deliver(r, 1024, 16, "d1k16", false)) != 0 ||
	    (lmdb && (ret = bench_deliver(r, 1024, 16, "d1k16n", true)) != 0) ||
	    (ret = bench_deliver(r, 50 * 1024, 1, "d50k1", false)) != 0 ||
	    (ret = bench_deliver(r, 50 * 1024, 16, "d50k16", false)) != 0 ||
	    (lmdb && (ret = bench_deliver(r, 50 * 1024, 16, "d50k16n", true)) != 0) ||
	    (ret = bench_deliver(r, 1 << 20, 1, "d1m1", false)) != 0 ||
	    (ret = bench_deliver(r, 1 << 20, 16, "d1m16", false)) != 0 ||
	    (ret = bench_fanout(r)) != 0 || (ret = bench_big(r)) != 0) {
		/* the reason is on stderr */
	}
	pg_bench_drop_all(r);
	free(r);
	return ret;
}
