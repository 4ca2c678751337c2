#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_run.h"
#include "bench_util.h"
#include "roost/config.h"
#include "roost/error.h"
#include "roost/storage.h"

bool
bench_full(void)
{
	const char *env = getenv("BENCH_PROFILE");

	return env != NULL && strcmp(env, "full") == 0;
}

void
bench_args(int argc, char **argv, struct bench_run *r, char *backends, size_t len,
           const struct bench_uopt *opts, size_t n, const char *usage)
{
	const char *env = getenv("ROOST_BIN");
	char optstring[64] = "b:r:h";
	size_t at = strlen(optstring);
	int opt;

	r->roost = env != NULL ? env : "build/roost";
	for (size_t i = 0; i < n && at + 2 < sizeof(optstring); i++) {
		optstring[at++] = (char)opts[i].letter;
		optstring[at++] = ':';
	}
	optstring[at] = '\0';
	while ((opt = getopt(argc, argv, optstring)) != -1) {
		size_t i = 0;

		if (opt == 'b') {
			snprintf(backends, len, "%s", optarg);
			continue;
		}
		if (opt == 'r') {
			r->roost = optarg;
			continue;
		}
		while (i < n && opts[i].letter != opt)
			i++;
		if (opt != 'h' && i < n) {
			*opts[i].v = (unsigned)strtoul(optarg, NULL, 10);
			continue;
		}
		fprintf(stderr, "usage: %s %s\n", argv[0], usage);
		exit(opt == 'h' ? 0 : 2);
	}
}

unsigned
bench_each_backend(char *backends, unsigned (*fn)(void *arg, const char *backend), void *arg)
{
	unsigned sum = 0;

	for (char *save = NULL, *name = strtok_r(backends, ",", &save); name != NULL;
	     name = strtok_r(NULL, ",", &save)) {
		if (!storage_backend_available(name)) {
			printf("%s: backend not in this build, skipped\n", name);
			continue;
		}
		sum += fn(arg, name);
	}
	return sum;
}

void
bench_run_begin(struct bench_run *r, const char *backend)
{
	r->backend = backend;
	snprintf(r->dir, sizeof(r->dir), "/tmp/roost-%s-XXXXXX", r->prog);
	if (mkdtemp(r->dir) == NULL) {
		perror("mkdtemp");
		exit(1);
	}
	snprintf(r->conf, sizeof(r->conf), "%s/roost.conf", r->dir);
	r->port = bench_free_port();
	r->pid = -1;
}

void
bench_write_config(const struct bench_run *r, bool fsync, const char *listener, const char *extra)
{
	static const char *const listeners[] = {"smtp", "submission", "smtps", "lmtp",
	                                        "imap", "imaps",      "pop3",  "pop3s"};
	FILE *f = fopen(r->conf, "w");

	if (f == NULL) {
		perror(r->conf);
		exit(1);
	}
	fprintf(f,
	        "[server]\ndata_dir = %s/var\nhostname = bench.test\nlog_level = warn\n"
	        "[storage]\nbackend = %s\nfsync = %s\n"
	        "[auth]\nfail_delay_initial = 0\n"
	        "[listen]\n",
	        r->dir, r->backend, fsync ? "yes" : "no");
	for (size_t i = 0; i < sizeof(listeners) / sizeof(listeners[0]); i++)
		if (strcmp(listeners[i], listener) != 0)
			fprintf(f, "%s = off\n", listeners[i]);
	fprintf(f, "%s = 127.0.0.1:%d\n%s", listener, r->port, extra);
	fclose(f);
}

FILE *
bench_passwd_open(const struct bench_run *r)
{
	char path[400];
	FILE *pw;

	snprintf(path, sizeof(path), "%s/var", r->dir);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/var/passwd", r->dir);
	pw = fopen(path, "w");
	if (pw == NULL) {
		perror(path);
		exit(1);
	}
	return pw;
}

void
bench_user_name(unsigned i, char *out, size_t len)
{
	snprintf(out, len, "user%u@bench.test", i);
}

struct storage *
bench_storage_open(const struct bench_run *r, struct roost_config **cfg_r)
{
	struct storage *st;
	char err[256];
	int rc;

	if (config_load(r->conf, cfg_r, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s: %s\n", r->prog, err);
		exit(1);
	}
	rc = storage_open(*cfg_r, &st);
	if (rc != 0) {
		fprintf(stderr, "%s: storage_open: %s\n", r->prog, roost_strerror(rc));
		exit(1);
	}
	return st;
}

void
bench_storage_close(struct storage **st, struct roost_config **cfg)
{
	storage_close(st);
	config_free(cfg);
}

void
bench_run_serve(struct bench_run *r)
{
	r->pid = bench_start_server(r->roost, r->conf, r->dir, r->port);
}

void
bench_run_end(struct bench_run *r)
{
	char cmd[300];

	if (r->pid > 0) {
		kill(r->pid, SIGTERM);
		waitpid(r->pid, NULL, 0);
		r->pid = -1;
	}
	if (getenv("ROOST_KEEP") == NULL) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", r->dir);
		if (system(cmd) != 0)
			fprintf(stderr, "%s: could not remove %s\n", r->prog, r->dir);
	} else {
		fprintf(stderr, "%s: kept %s\n", r->prog, r->dir);
	}
}
