/*
 * Storage backend benchmark: the same workload against every backend in
 * the build, on the same machine, in one run, through the public storage
 * interface. Prints ops/s and latency percentiles per workload. The
 * workloads live in backends/storage_bench.c (roost/storage_bench.h), which
 * `roost bench storage` runs too.
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
 * [storage] fsync = yes except while pre-filling the big mailbox. pgsql
 * runs on scratch databases of the server ROOST_PGSQL_BENCH_DSN names
 * (scripts/run-bench.sh starts one).
 */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "roost/error.h"
#include "roost/log.h"
#include "roost/storage.h"
#include "roost/storage_bench.h"

static void
print_row(const struct storage_bench_row *r, void *arg)
{
	printf("| %-8s | %-44s | %9.0f | %8.3f | %8.3f | %8.3f | %s\n", r->backend, r->workload,
	       r->ops, r->p50_ms, r->p95_ms, r->p99_ms, r->notes);
	fflush(stdout);
}

static int
rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

int
main(int argc, char **argv)
{
	const char *only = NULL, *b[] = {"lmdb", "maildir", "pgsql"};
	const char *p = getenv("BENCH_PROFILE");
	struct storage_bench_opts o = {.row = print_row};
	char base[256] = "", pgdir[4096] = "", pgdsn[4200];
	bool own_dir = true;
	int status = 0;

	if (p != NULL && strcmp(p, "full") == 0)
		o.full = true;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--full") == 0) {
			o.full = true;
		} else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
			snprintf(base, sizeof(base), "%s", argv[++i]);
			own_dir = false;
		} else if (strcmp(argv[i], "--backends") == 0 && i + 1 < argc) {
			only = argv[++i];
		} else if (strcmp(argv[i], "--quota") == 0) {
			o.quota = true;
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
	o.dir = base;
	o.pgsql_admin_dsn = getenv("ROOST_PGSQL_BENCH_DSN");
	log_setup(LOG_LEVEL_WARN, true, false);
	printf("storage benchmark: %s profile, %.1f s per timed workload, data under %s%s\n",
	       o.full ? "full" : "short", storage_bench_seconds(&o), base,
	       o.quota ? ", every user with a quota limit" : "");
	printf("latencies in milliseconds; every change durable (fsync) before it returns\n\n");
	printf("| backend  | workload                                     |     ops/s |  p50 ms  "
	       "|  p95 ms  |  p99 ms  | notes\n");
	printf("|----------|----------------------------------------------|-----------|----------"
	       "|----------|----------|------\n");
	for (size_t i = 0; i < sizeof(b) / sizeof(b[0]); i++) {
		if (!storage_backend_available(b[i]) ||
		    (only != NULL && strstr(only, b[i]) == NULL))
			continue;
		if (strcmp(b[i], "pgsql") == 0 && o.pgsql_admin_dsn == NULL) {
			if (storage_bench_pg_start(NULL, pgdir, sizeof(pgdir), pgdsn,
			                           sizeof(pgdsn)) != 0) {
				printf("| pgsql    | (skipped: no ROOST_PGSQL_BENCH_DSN, and no "
				       "PostgreSQL of our own could start)\n");
				continue;
			}
			o.pgsql_admin_dsn = pgdsn;
		}
		if (storage_bench_run(b[i], &o) != 0)
			status = 1;
	}
	if (pgdir[0] != '\0')
		storage_bench_pg_stop(pgdir);
	if (own_dir)
		nftw(base, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return status;
}
