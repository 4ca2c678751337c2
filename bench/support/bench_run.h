#ifndef ROOST_BENCH_RUN_H
#define ROOST_BENCH_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

struct roost_config;
struct storage;

/*
 * What the protocol benchmarks that fill a data directory and drive one
 * `roost serve` per backend share: their command line, the directory,
 * config and passwd files of a run, the storage opened to fill it, the
 * server started and stopped, and the loop over the backends named.
 * Every failure prints a line prefixed with the program's name and exits.
 */

/* One run on one backend. prog ("bench_pop3") prefixes the messages
 * and names the directory; roost is the binary to serve with. */
struct bench_run {
	const char *prog;
	const char *roost;
	const char *backend;
	char dir[256];  /* /tmp/roost-<prog>-XXXXXX */
	char conf[300]; /* dir/roost.conf */
	int port;       /* of the one listener */
	pid_t pid;      /* the server, once started */
};

/* An unsigned option -letter N, stored in *v. */
struct bench_uopt {
	int letter;
	unsigned *v;
};

/* Whether BENCH_PROFILE=full (make bench FULL=1) asks for the long runs. */
bool bench_full(void);
/* Parse the command line: -b list into backends (len bytes), -r into
 * r->roost (ROOST_BIN or build/roost when not given), the n options of
 * opts; -h prints "usage: argv[0] usage" and exits 0, a wrong option
 * prints it and exits 2. */
void bench_args(int argc, char **argv, struct bench_run *r, char *backends, size_t len,
                const struct bench_uopt *opts, size_t n, const char *usage);
/* Call fn(arg, name) for each backend of the comma-separated list (cut in
 * place), printing a line for one not in this build instead; returns the
 * sum of what fn returned. */
unsigned bench_each_backend(char *backends, unsigned (*fn)(void *arg, const char *backend),
                            void *arg);

/* Begin r's run on backend: a fresh directory, the config's path in it, a
 * free port. */
void bench_run_begin(struct bench_run *r, const char *backend);
/* Write r->conf: data_dir dir/var, the backend with fsync on or off, the
 * one listener (imap, pop3...) on 127.0.0.1:port and every other off,
 * then the lines of extra (sections of their own, or ""). */
void bench_write_config(const struct bench_run *r, bool fsync, const char *listener,
                        const char *extra);
/* Make dir/var and open dir/var/passwd for writing; the caller closes it. */
FILE *bench_passwd_open(const struct bench_run *r);
/* The user "user<i>@bench.test". */
void bench_user_name(unsigned i, char *out, size_t len);
/* Load r->conf and open its storage, to fill it before the server starts;
 * bench_storage_close() closes both. */
struct storage *bench_storage_open(const struct bench_run *r, struct roost_config **cfg_r);
void bench_storage_close(struct storage **st, struct roost_config **cfg);
/* Start `roost serve` on r->conf (bench_start_server()) into r->pid. */
void bench_run_serve(struct bench_run *r);
/* End the run: stop the server (SIGTERM, wait) and remove the directory,
 * unless ROOST_KEEP is set (then say where it is). */
void bench_run_end(struct bench_run *r);

#endif
