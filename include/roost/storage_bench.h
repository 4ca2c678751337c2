#ifndef ROOST_STORAGE_BENCH_H
#define ROOST_STORAGE_BENCH_H

#include <stdbool.h>

/*
 * The storage benchmark: the same workloads against a backend, through the
 * public storage interface (include/roost/storage.h), every change durable
 * (fsync) before it returns. Used by `roost bench storage` and by
 * build/bench/bench_storage.
 *
 * Workloads: deliveries of 1 KB, 50 KB and 1 MB by 1 and 16 writers (LMDB
 * and PostgreSQL also without group commit), one 50 KB message to 100 recipients, and on a
 * mailbox of 100,000 messages: open and list, random reads, status, flag
 * updates of 1 and 1000 messages, changes since a MODSEQ, expunges. Each
 * timed workload runs for a fixed time (1.5 s, or 5 s with full); the
 * deliveries-per-commit note comes from storage_stats().
 *
 * Each backend gets fresh stores under dir, removed afterwards; pgsql gets
 * scratch databases created through pgsql_admin_dsn and dropped afterwards
 * (never the configured database).
 */

struct storage_bench_row {
	const char *backend;
	const char *workload; /* "deliver 1 KB, 1 writer" */
	double ops;           /* per second */
	double p50_ms, p95_ms, p99_ms;
	const char *notes; /* "" or e.g. "3.1 deliveries/commit" */
	bool failed;       /* some operations failed (said in notes) */
};

/* Called with each row as soon as it is measured; row lives for the call. */
typedef void storage_bench_row_fn(const struct storage_bench_row *row, void *arg);

struct storage_bench_opts {
	bool full;       /* 5 s per timed workload instead of 1.5 s */
	bool quota;      /* every user has a (large) quota limit: writes pay its check and upkeep */
	double seconds;  /* > 0: per timed workload, instead of the profile's */
	unsigned big;    /* >= 2000: messages in the big mailbox, instead of 100,000 */
	const char *dir; /* an existing directory for the stores */
	const char *pgsql_admin_dsn; /* may CREATE DATABASE; needed for pgsql */
	storage_bench_row_fn *row;
	void *arg;
};

/* Seconds each timed workload runs for. */
double storage_bench_seconds(const struct storage_bench_opts *o);

/*
 * Run every workload on backend ("lmdb", "maildir", "pgsql"). 0, or
 * ROOST_ENOTSUP (backend not in this build, or pgsql without an admin
 * DSN), ROOST_EIO when a store could not be opened or a workload could not
 * go on (the reason on stderr; the rows measured so far were reported).
 */
int storage_bench_run(const char *backend, const struct storage_bench_opts *o);

/*
 * A private PostgreSQL for the pgsql rows, from Debian's postgresql package
 * (the newest /usr/lib/postgresql/N/bin): initdb in a new directory under
 * tmpdir (NULL: $TMPDIR or /tmp), fsync on, listening only on a unix
 * socket there (as root, run as nobody, which PostgreSQL requires). On 0,
 * dir_r holds the directory for storage_bench_pg_stop() and dsn_r a DSN
 * that may create databases. ROOST_ENOTSUP when PostgreSQL is not
 * installed, ROOST_EIO when it would not start (its log on stderr).
 */
int storage_bench_pg_start(const char *tmpdir, char *dir_r, size_t dir_len, char *dsn_r,
                           size_t dsn_len);

/* Stop the server storage_bench_pg_start() started and remove dir. */
void storage_bench_pg_stop(const char *dir);

#endif
