/*
 * Storage backend benchmark: the same workload against every backend in
 * the build, on the same machine, in one run, through the public storage
 * interface. Prints ops/s and latency percentiles per workload.
 *
 *   build/bench/bench_storage [--full] [--dir DIR] [--backends lmdb,maildir] [--quota]
 *
 * --quota gives every user a limit far above what the run stores, so each
 * write also pays the quota check and the usage update (compare a run
 * without it for what quota costs).
 *
 * BENCH_PROFILE=full (make bench FULL=1) is the same as --full. The data
 * directory defaults to a fresh one under /tmp (same disk as a real
 * deployment would use: it matters, fsync is real). Every store runs with
 * [storage] fsync = yes except while pre-filling the big mailbox.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "support/bench_util.h"
#include "roost/config.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/storage.h"

struct profile {
	double seconds; /* per timed workload */
	unsigned big;   /* messages in the big mailbox */
	unsigned lists; /* open+list repetitions */
};

static const struct profile short_profile = {1.5, 100000, 10};
static const struct profile full_profile = {5.0, 100000, 30};
static const struct profile *prof = &short_profile;

static char base[256];
static bool with_quota; /* --quota */

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

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
		s->v = realloc(s->v, s->cap * sizeof(*s->v));
		if (s->v == NULL)
			abort();
	}
	s->v[s->n++] = x;
}

static double
pct(struct samples *s, double p)
{
	size_t i;

	if (s->n == 0)
		return 0;
	i = (size_t)(p / 100.0 * (double)(s->n - 1) + 0.5);
	return s->v[i] * 1000.0;
}

static void
report(const char *backend, const char *what, struct samples *s, double elapsed, const char *extra)
{
	bench_sort(s->v, s->n);
	printf("| %-8s | %-44s | %9.0f | %8.3f | %8.3f | %8.3f | %s\n", backend, what,
	       elapsed > 0 ? (double)s->n / elapsed : 0, pct(s, 50), pct(s, 95), pct(s, 99),
	       extra != NULL ? extra : "");
	fflush(stdout);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

/* ---- store setup ---- */

static int
rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

/*
 * pgsql: each workload gets a database of its own on the server named by
 * ROOST_PGSQL_BENCH_DSN (scripts/run-bench.sh starts one), dropped at exit.
 */
static char pg_dbs[32][64];
static int n_pg_dbs;
static char pg_dsns[32][1024];

static void
pg_admin(const char *sql)
{
	PGconn *conn = PQconnectdb(getenv("ROOST_PGSQL_BENCH_DSN"));
	PGresult *res = PQexec(conn, sql);

	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		fprintf(stderr, "bench_storage: %s: %s", sql, PQerrorMessage(conn));
		exit(1);
	}
	PQclear(res);
	PQfinish(conn);
}

static const char *
pg_bench_db(const char *tag)
{
	char sql[128];
	int i = n_pg_dbs++;

	if (i >= 32)
		abort();
	snprintf(pg_dbs[i], sizeof(pg_dbs[i]), "roost_bench_%d_%s", (int)getpid(), tag);
	snprintf(sql, sizeof(sql), "CREATE DATABASE %.63s", pg_dbs[i]);
	pg_admin(sql);
	snprintf(pg_dsns[i], sizeof(pg_dsns[i]), "%s dbname=%s", getenv("ROOST_PGSQL_BENCH_DSN"),
	         pg_dbs[i]);
	return pg_dsns[i];
}

static void
pg_bench_drop_all(void)
{
	for (int i = 0; i < n_pg_dbs; i++) {
		char sql[128];

		snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %.63s WITH (FORCE)", pg_dbs[i]);
		pg_admin(sql);
	}
	n_pg_dbs = 0;
}

static void
make_cfg(struct roost_config *cfg, const char *backend, char *dir, size_t dlen, const char *tag,
         bool fsync)
{
	memset(cfg, 0, sizeof(*cfg));
	snprintf(dir, dlen, "%s/%s-%s", base, backend, tag);
	mkdir(dir, 0700);
	cfg->data_dir = dir;
	cfg->storage_backend = (char *)backend;
	cfg->lmdb_map_size = 1ULL << 30;
	cfg->lmdb_shards = 1;
	cfg->storage_fsync = fsync;
	cfg->expunge_log_retention = 30 * 86400;
	cfg->max_message_size = 64u << 20;
	cfg->workers = 16;
	if (with_quota) {
		cfg->quota_storage = 1ULL << 40;
		cfg->quota_messages = 1u << 30;
	}
	if (strcmp(backend, "pgsql") == 0)
		cfg->pgsql_dsn = (char *)pg_bench_db(tag);
}

static struct storage *
open_store(const struct roost_config *cfg)
{
	struct storage *st;
	int rc = storage_open(cfg, &st);

	if (rc != 0) {
		fprintf(stderr, "bench_storage: open %s: %s\n", cfg->storage_backend,
		        roost_strerror(rc));
		exit(1);
	}
	return st;
}

static uint8_t *
make_message(size_t len, unsigned seed)
{
	uint8_t *m = malloc(len);
	int h;

	if (m == NULL)
		abort();
	h = snprintf((char *)m, len,
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
	while (now_s() < t->stop_at) {
		uint8_t *msg = make_message(t->size, t->id * 1000003u + i++);
		struct msg_input in = {.data = msg, .len = t->size, .fd = -1};
		uint32_t uidv, uid;
		double t0 = now_s();

		if (storage_append(t->st, user, "INBOX", &in, &uidv, &uid) != 0)
			t->failures++;
		else
			sample_add(&t->lat, now_s() - t0);
		free(msg);
	}
	return NULL;
}

static void
bench_deliver(const char *backend, size_t size, unsigned writers, const char *tag, bool no_group)
{
	struct roost_config cfg;
	char dir[512], what[64], extra[128] = "";
	struct storage *st;
	struct dthread th[16];
	pthread_t tid[16];
	struct samples all = {0};
	double t0, elapsed;
	struct storage_stats s0, s1;
	int failures = 0;

	make_cfg(&cfg, backend, dir, sizeof(dir), tag, true);
	if (no_group)
		setenv("ROOST_LMDB_MAX_BATCH", "1", 1);
	st = open_store(&cfg);
	unsetenv("ROOST_LMDB_MAX_BATCH");
	for (unsigned w = 0; w < writers; w++) {
		char user[64];

		snprintf(user, sizeof(user), "writer%u@bench", w);
		storage_user_init(st, user);
	}
	storage_stats(st, &s0);
	t0 = now_s();
	for (unsigned w = 0; w < writers; w++) {
		memset(&th[w], 0, sizeof(th[w]));
		th[w].st = st;
		th[w].size = size;
		th[w].id = w;
		th[w].stop_at = t0 + prof->seconds;
		pthread_create(&tid[w], NULL, deliver_main, &th[w]);
	}
	for (unsigned w = 0; w < writers; w++) {
		pthread_join(tid[w], NULL);
		for (size_t i = 0; i < th[w].lat.n; i++)
			sample_add(&all, th[w].lat.v[i]);
		free(th[w].lat.v);
		failures += th[w].failures;
	}
	elapsed = now_s() - t0;
	/* Backends without counters report zeros: no ratio then. */
	storage_stats(st, &s1);
	if (s1.commits > s0.commits)
		snprintf(extra, sizeof(extra), "%.1f deliveries/commit",
		         (double)(s1.writes - s0.writes) / (double)(s1.commits - s0.commits));
	if (failures > 0)
		snprintf(extra + strlen(extra), sizeof(extra) - strlen(extra), " %d FAILED",
		         failures);
	storage_close(&st);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	if (size >= 1 << 20)
		snprintf(what, sizeof(what), "deliver %zu MB, %u writer%s", size >> 20, writers,
		         writers > 1 ? "s" : "");
	else
		snprintf(what, sizeof(what), "deliver %zu KB, %u writer%s", size >> 10, writers,
		         writers > 1 ? "s" : "");
	if (no_group)
		snprintf(what + strlen(what), sizeof(what) - strlen(what), " (no group commit)");
	report(backend, what, &all, elapsed, extra);
}

/* ---- the big mailbox ---- */

struct fthread {
	struct storage *st;
	unsigned from, to;
};

static void *
fill_main(void *arg)
{
	struct fthread *f = arg;

	for (unsigned i = f->from; i < f->to; i++) {
		uint8_t *msg = make_message(1024, i);
		struct msg_input in = {
		    .data = msg, .len = 1024, .fd = -1, .flags = (i % 3 == 0) ? MSG_SEEN : 0};
		uint32_t uidv, uid;

		if (storage_append(f->st, "big@bench", "INBOX", &in, &uidv, &uid) != 0) {
			fprintf(stderr, "bench_storage: fill failed at %u\n", i);
			exit(1);
		}
		free(msg);
	}
	return NULL;
}

static void
bench_big(const char *backend)
{
	struct roost_config cfg;
	char dir[512], what[64], extra[96];
	struct storage *st;
	struct mailbox *mb;
	struct msg_record *recs;
	struct samples s = {0};
	pthread_t tid[8];
	struct fthread ft[8];
	uint32_t *uids;
	size_t n = 0;
	uint64_t modseq, before_flags;
	double t0, stop;
	unsigned seed = 42;

	/* Fill without fsync (setup, not measured), then reopen with fsync. */
	make_cfg(&cfg, backend, dir, sizeof(dir), "big", false);
	st = open_store(&cfg);
	storage_user_init(st, "big@bench");
	t0 = now_s();
	for (unsigned i = 0; i < 8; i++) {
		ft[i].st = st;
		ft[i].from = prof->big / 8 * i;
		ft[i].to = i == 7 ? prof->big : prof->big / 8 * (i + 1);
		pthread_create(&tid[i], NULL, fill_main, &ft[i]);
	}
	for (unsigned i = 0; i < 8; i++)
		pthread_join(tid[i], NULL);
	fprintf(stderr, "bench_storage: %s: filled %u messages in %.1f s\n", backend, prof->big,
	        now_s() - t0);
	storage_close(&st);
	sync(); /* the fill's writeback is not part of what follows */
	cfg.storage_fsync = true;
	st = open_store(&cfg);

	/* open + list (SELECT): open, all records, close */
	for (unsigned r = 0; r < prof->lists; r++) {
		double a = now_s();

		if (mailbox_open(st, "big@bench", "INBOX", 0, &mb) != 0 ||
		    mailbox_records(mb, &recs, &n, &modseq) != 0) {
			fprintf(stderr, "bench_storage: open+list failed\n");
			exit(1);
		}
		sample_add(&s, now_s() - a);
		if (r + 1 < prof->lists)
			free(recs);
		mailbox_close(&mb);
	}
	t0 = 0;
	for (size_t i = 0; i < s.n; i++)
		t0 += s.v[i];
	snprintf(what, sizeof(what), "open+list %zu messages", n);
	report(backend, what, &s, t0, NULL);
	uids = malloc(n * sizeof(*uids));
	for (size_t i = 0; i < n; i++)
		uids[i] = recs[i].uid;
	free(recs);

	mailbox_open(st, "big@bench", "INBOX", 0, &mb);
	/* read: random messages, every byte touched */
	{
		unsigned long sum = 0;

		t0 = now_s();
		stop = t0 + prof->seconds;
		while (now_s() < stop) {
			struct msg_view v;
			double a = now_s();

			if (mailbox_read(mb, uids[rand_r(&seed) % n], &v) != 0)
				exit(1);
			for (size_t i = 0; i < v.len; i += 64)
				sum += v.data[i];
			msg_view_release(&v);
			sample_add(&s, now_s() - a);
		}
		snprintf(extra, sizeof(extra), "(checksum %lu)", sum % 10);
		report(backend, "read random 1 KB message", &s, now_s() - t0, NULL);
	}
	/* status */
	t0 = now_s();
	stop = t0 + prof->seconds / 3;
	while (now_s() < stop) {
		struct mailbox_status ms;
		double a = now_s();

		storage_status(st, "big@bench", "INBOX", &ms);
		sample_add(&s, now_s() - a);
	}
	report(backend, "status of the big mailbox", &s, now_s() - t0, NULL);

	/* flag updates: one message per STORE, durable each */
	{
		struct mailbox_status ms;

		mailbox_status(mb, &ms);
		before_flags = ms.highestmodseq;
	}
	t0 = now_s();
	stop = t0 + prof->seconds;
	for (unsigned i = 0; now_s() < stop; i++) {
		struct store_req req = {.mode = (i & 1) ? STORE_REMOVE : STORE_ADD,
		                        .flags = MSG_FLAGGED};
		uint32_t uid = uids[rand_r(&seed) % n], *mod;
		size_t nmod;
		double a = now_s();

		if (mailbox_store(mb, &uid, 1, &req, &mod, &nmod) != 0)
			exit(1);
		free(mod);
		sample_add(&s, now_s() - a);
	}
	report(backend, "flag update (1 message)", &s, now_s() - t0, NULL);
	/* flag a range: 1000 messages in one STORE */
	t0 = now_s();
	stop = t0 + prof->seconds;
	for (unsigned i = 0; now_s() < stop; i++) {
		struct store_req req = {.mode = (i & 1) ? STORE_REMOVE : STORE_ADD,
		                        .flags = MSG_SEEN};
		size_t from = (size_t)rand_r(&seed) % (n - 1000);
		uint32_t *mod;
		size_t nmod;
		double a = now_s();

		if (mailbox_store(mb, uids + from, 1000, &req, &mod, &nmod) != 0)
			exit(1);
		free(mod);
		sample_add(&s, now_s() - a);
	}
	report(backend, "flag update (1000 messages)", &s, now_s() - t0, NULL);

	/* changes since the modseq before the flag updates */
	{
		struct mailbox_changes ch = {0};

		t0 = now_s();
		stop = t0 + prof->seconds / 3;
		while (now_s() < stop) {
			double a = now_s();

			mailbox_changes_free(&ch);
			if (mailbox_changes_since(mb, before_flags, &ch) != 0)
				exit(1);
			sample_add(&s, now_s() - a);
		}
		snprintf(extra, sizeof(extra), "%zu changed", ch.n_changed);
		mailbox_changes_free(&ch);
		report(backend, "changes-since (after the updates)", &s, now_s() - t0, extra);
		t0 = now_s();
		stop = t0 + prof->seconds / 3;
		while (now_s() < stop) {
			struct mailbox_status ms;
			double a = now_s();

			mailbox_status(mb, &ms);
			mailbox_changes_since(mb, ms.highestmodseq, &ch);
			mailbox_changes_free(&ch);
			sample_add(&s, now_s() - a);
		}
		report(backend, "changes-since (nothing new; NOOP)", &s, now_s() - t0, NULL);
	}

	/* expunge: one message per EXPUNGE, durable each */
	t0 = now_s();
	stop = t0 + prof->seconds;
	for (size_t i = 0; i < n && now_s() < stop; i += 7) {
		double a = now_s();

		if (mailbox_expunge(mb, &uids[i], 1) != 0)
			exit(1);
		sample_add(&s, now_s() - a);
	}
	report(backend, "expunge (1 message)", &s, now_s() - t0, NULL);
	mailbox_close(&mb);
	free(uids);
	storage_close(&st);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- multi-recipient ---- */

static void
bench_fanout(const char *backend)
{
	struct roost_config cfg;
	char dir[512], users[100][32];
	struct delivery_target t[100];
	struct storage *st;
	struct samples s = {0};
	double t0, stop;
	unsigned i = 0;

	make_cfg(&cfg, backend, dir, sizeof(dir), "fanout", true);
	st = open_store(&cfg);
	for (int u = 0; u < 100; u++) {
		snprintf(users[u], sizeof(users[u]), "rcpt%d@bench", u);
		storage_user_init(st, users[u]);
	}
	t0 = now_s();
	stop = t0 + prof->seconds;
	while (now_s() < stop) {
		uint8_t *msg = make_message(50 * 1024, i++);
		struct msg_input in = {.data = msg, .len = 50 * 1024, .fd = -1};
		double a = now_s();

		for (int u = 0; u < 100; u++)
			t[u] = (struct delivery_target){.user = users[u], .mailbox = "INBOX"};
		if (storage_deliver(st, &in, t, 100, 0) != 0)
			exit(1);
		sample_add(&s, now_s() - a);
		free(msg);
	}
	storage_close(&st);
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	report(backend, "deliver 50 KB to 100 recipients", &s, now_s() - t0, NULL);
}

int
main(int argc, char **argv)
{
	const char *only = NULL, *b[] = {"lmdb", "maildir", "pgsql"};
	const char *p = getenv("BENCH_PROFILE");
	bool own_dir = true;

	if (p != NULL && strcmp(p, "full") == 0)
		prof = &full_profile;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--full") == 0) {
			prof = &full_profile;
		} else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
			snprintf(base, sizeof(base), "%s", argv[++i]);
			own_dir = false;
		} else if (strcmp(argv[i], "--backends") == 0 && i + 1 < argc) {
			only = argv[++i];
		} else if (strcmp(argv[i], "--quota") == 0) {
			with_quota = true;
		} else {
			fprintf(stderr, "usage: bench_storage [--full] [--dir DIR] "
			                "[--backends lmdb,maildir,pgsql] [--quota]\n");
			return 2;
		}
	}
	if (own_dir) {
		char tmpl[] = "/tmp/roost-bench-storage-XXXXXX";

		if (mkdtemp(tmpl) == NULL) {
			perror("mkdtemp");
			return 1;
		}
		snprintf(base, sizeof(base), "%s", tmpl);
	}
	mkdir(base, 0700);
	log_setup(LOG_LEVEL_WARN, true, false);
	printf("storage benchmark: %s profile, %.1f s per timed workload, data under %s%s\n",
	       prof == &full_profile ? "full" : "short", prof->seconds, base,
	       with_quota ? ", every user with a quota limit" : "");
	printf("latencies in milliseconds; every change durable (fsync) before it returns\n\n");
	printf("| backend  | workload                                     |     ops/s |  p50 ms  "
	       "|  p95 ms  |  p99 ms  | notes\n");
	printf("|----------|----------------------------------------------|-----------|----------"
	       "|----------|----------|------\n");
	for (size_t i = 0; i < sizeof(b) / sizeof(b[0]); i++) {
		if (!storage_backend_available(b[i]) ||
		    (only != NULL && strstr(only, b[i]) == NULL))
			continue;
		if (strcmp(b[i], "pgsql") == 0 && getenv("ROOST_PGSQL_BENCH_DSN") == NULL) {
			printf(
			    "| pgsql    | (skipped: no ROOST_PGSQL_BENCH_DSN; scripts/run-bench.sh "
			    "starts a PostgreSQL where it is installed)\n");
			continue;
		}
		bool lmdb = strcmp(b[i], "lmdb") == 0;

		bench_deliver(b[i], 1024, 1, "d1k1", false);
		bench_deliver(b[i], 1024, 16, "d1k16", false);
		if (lmdb)
			bench_deliver(b[i], 1024, 16, "d1k16n", true);
		bench_deliver(b[i], 50 * 1024, 1, "d50k1", false);
		bench_deliver(b[i], 50 * 1024, 16, "d50k16", false);
		if (lmdb)
			bench_deliver(b[i], 50 * 1024, 16, "d50k16n", true);
		bench_deliver(b[i], 1 << 20, 1, "d1m1", false);
		bench_deliver(b[i], 1 << 20, 16, "d1m16", false);
		bench_fanout(b[i]);
		bench_big(b[i]);
		pg_bench_drop_all();
	}
	if (own_dir)
		nftw(base, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}
