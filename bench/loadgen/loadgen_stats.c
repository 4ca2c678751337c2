/* Latency samples per command, their percentiles and the table of them. */
#include <stdio.h>
#include <string.h>

#include "loadgen.h"
#include "support/bench_util.h"

struct lg_stat_row lg_stats[LG_MAX_CMDS];
int lg_n_stats;

struct lg_stat_row *
lg_stat_for(const char *name)
{
	for (int i = 0; i < lg_n_stats; i++) {
		if (strcmp(lg_stats[i].name, name) == 0)
			return &lg_stats[i];
	}
	if (lg_n_stats == LG_MAX_CMDS)
		lg_die("too many command kinds");
	lg_stats[lg_n_stats].name = name;
	return &lg_stats[lg_n_stats++];
}

void
lg_stat_add(const char *name, double seconds, bool ok)
{
	struct lg_stat_row *r = lg_stat_for(name);

	if (!ok) {
		r->errors++;
		return;
	}
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 1024;
		r->lat = lg_xrealloc(r->lat, r->cap * sizeof(double));
	}
	r->lat[r->n++] = seconds;
}

double
lg_pct(const struct lg_stat_row *r, double p)
{
	size_t i;

	if (r->n == 0)
		return 0;
	i = (size_t)(p * (double)(r->n - 1) + 0.5);
	return r->lat[i];
}

void
lg_print_stats(double elapsed)
{
	printf("%-14s %9s %9s %9s %9s %9s %7s\n", "command", "ops", "ops/s", "p50 ms", "p90 ms",
	       "p99 ms", "errors");
	for (int i = 0; i < lg_n_stats; i++) {
		struct lg_stat_row *r = &lg_stats[i];

		bench_sort(r->lat, r->n);
		printf("%-14s %9zu %9.1f %9.2f %9.2f %9.2f %7ld\n", r->name, r->n,
		       (double)r->n / elapsed, lg_pct(r, 0.5) * 1e3, lg_pct(r, 0.9) * 1e3,
		       lg_pct(r, 0.99) * 1e3, r->errors);
	}
}
