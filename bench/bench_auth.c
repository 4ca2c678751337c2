/*
 * Password verification cost, with and without the credential cache, over N
 * threads: what a login costs a worker. Not part of `make test`.
 *
 *   build/bench/bench_auth [threads] [seconds]
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "roost/auth.h"
#include "roost/buf.h"
#include "roost/config.h"
#include "roost/log.h"

static struct auth *auth;
static atomic_bool stop;

struct worker {
	pthread_t th;
	const char *user;
	unsigned long n;
	unsigned long failed;
};

static void *
run(void *arg)
{
	struct worker *w = arg;
	char name[AUTH_MAX_NAME + 1];

	while (!atomic_load(&stop)) {
		if (auth_verify(auth, w->user, "bench-password", 14, name, sizeof(name)) != 0)
			w->failed++;
		w->n++;
	}
	return NULL;
}

static double
measure(const char *label, const char *user, unsigned threads, unsigned seconds)
{
	struct worker *w = calloc(threads, sizeof(*w));
	unsigned long total = 0, failed = 0;
	struct timespec a, b;
	double secs;

	atomic_store(&stop, false);
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (unsigned i = 0; i < threads; i++) {
		w[i].user = user;
		pthread_create(&w[i].th, NULL, run, &w[i]);
	}
	sleep(seconds);
	atomic_store(&stop, true);
	for (unsigned i = 0; i < threads; i++) {
		pthread_join(w[i].th, NULL);
		total += w[i].n;
		failed += w[i].failed;
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
	printf("%-34s threads=%u verifications=%lu per_second=%.0f failed=%lu\n", label, threads,
	       total, (double)total / secs, failed);
	free(w);
	return (double)total / secs;
}

int
main(int argc, char **argv)
{
	unsigned threads = argc > 1 ? (unsigned)atoi(argv[1]) : 4;
	unsigned seconds = argc > 2 ? (unsigned)atoi(argv[2]) : 2;
	char dir[] = "/tmp/roost-bench-auth-XXXXXX", path[64];
	struct roost_config *cfg;
	struct buf h = BUF_INIT(0);

	if (threads == 0 || seconds == 0 || mkdtemp(dir) == NULL)
		return 2;
	log_setup(LOG_LEVEL_WARN, true, false);
	cfg = config_defaults();
	free(cfg->passwd_file);
	snprintf(path, sizeof(path), "%s/passwd", dir);
	cfg->passwd_file = strdup(path);
	auth_hash_password(cfg->password_scheme, "bench-password", &h);
	auth_file_add(path, "bench@example.org", buf_cstr(&h));
	buf_free(&h);
	if (auth_open(cfg, &auth) != 0)
		return 1;
	measure("cached (cache_ttl > 0)", "bench@example.org", threads, seconds);
	cfg->auth_cache_ttl = 0;
	measure("uncached SHA512-CRYPT", "bench@example.org", threads, seconds);
	measure("unknown user (dummy hash)", "nobody@example.org", threads, seconds);
	auth_free(&auth);
	config_free(&cfg);
	unlink(path);
	rmdir(dir);
	return 0;
}
