/*
 * `roost bench storage`: the storage benchmark (roost/storage_bench.h) on
 * the backends the user names (the configured one by default), in a
 * scratch directory on the data directory's disk, printed as a table and,
 * with --svg, drawn as a chart of throughput and latency per backend.
 */
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "roost/cli.h"
#include "roost/config.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/storage.h"
#include "roost/storage_bench.h"
#include "roost/xalloc.h"

#define MAX_BACKENDS 3

struct bench_row {
	char backend[16];
	char workload[64];
	double ops, p50, p95, p99;
	bool failed;
};

struct bench_ctx {
	struct bench_row *rows;
	size_t n, cap;
};

static void
on_row(const struct storage_bench_row *r, void *arg)
{
	struct bench_ctx *b = arg;
	struct bench_row *x;

	printf("%-8s  %-44s %10.1f %9.3f %9.3f %9.3f  %s\n", r->backend, r->workload, r->ops,
	       r->p50_ms, r->p95_ms, r->p99_ms, r->notes);
	fflush(stdout);
	if (b->n == b->cap) {
		b->cap = b->cap == 0 ? 32 : b->cap * 2;
		b->rows = xreallocarray(b->rows, b->cap, sizeof(*b->rows));
	}
	x = &b->rows[b->n++];
	snprintf(x->backend, sizeof(x->backend), "%s", r->backend);
	snprintf(x->workload, sizeof(x->workload), "%s", r->workload);
	x->ops = r->ops;
	x->p50 = r->p50_ms;
	x->p95 = r->p95_ms;
	x->p99 = r->p99_ms;
	x->failed = r->failed;
}

/* ---- the chart ---- */

static void
xml_text(FILE *f, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '&')
			fputs("&amp;", f);
		else if (*s == '<')
			fputs("&lt;", f);
		else if (*s == '>')
			fputs("&gt;", f);
		else
			fputc(*s, f);
	}
}

/* A log10 axis over the positive values in [lo, hi]: whole decades. */
struct axis {
	double d0, d1; /* decades */
	double x, w;   /* pixels */
};

static void
axis_fit(struct axis *a, double lo, double hi, double x, double w)
{
	if (!(lo > 0))
		lo = 1;
	if (!(hi > lo))
		hi = lo * 10;
	a->d0 = floor(log10(lo));
	a->d1 = ceil(log10(hi));
	if (a->d1 <= a->d0)
		a->d1 = a->d0 + 1;
	a->x = x;
	a->w = w;
}

static double
axis_pos(const struct axis *a, double v)
{
	double d = v > 0 ? log10(v) : a->d0;

	if (d < a->d0)
		d = a->d0;
	return a->x + (d - a->d0) / (a->d1 - a->d0) * a->w;
}

static void
axis_draw(FILE *f, const struct axis *a, double top, double bottom, const char *unit)
{
	for (double d = a->d0; d <= a->d1 + 1e-9; d++) {
		double x = axis_pos(a, pow(10, d));
		double v = pow(10, d);

		fprintf(f,
		        "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#ccc'/>\n"
		        "<text x='%.1f' y='%.1f' font-size='10' text-anchor='middle'>",
		        x, top, x, bottom, x, bottom + 12);
		if (v >= 1e6)
			fprintf(f, "%gM", v / 1e6);
		else if (v >= 1e3)
			fprintf(f, "%gk", v / 1e3);
		else
			fprintf(f, "%g", v);
		fprintf(f, "</text>\n");
	}
	fprintf(f, "<text x='%.1f' y='%.1f' font-size='11' text-anchor='middle'>%s</text>\n",
	        a->x + a->w / 2, bottom + 26, unit);
}

static const char *const colors[MAX_BACKENDS][2] = {
    {"#1f77b4", "#aec7e8"}, /* dark: the value / p50; light: p99 */
    {"#d62728", "#ff9896"},
    {"#2ca02c", "#98df8a"},
};

/* Draw the chart into f (opened before the run, so a bad path fails
 * early) and close it. */
/* One horizontal bar of the chart, its tooltip the title (printf-style). */
static void svg_bar(FILE *f, double x, double y, double w, double h, const char *fill,
                    const char *title_fmt, ...) __attribute__((format(printf, 7, 8)));

static void
svg_bar(FILE *f, double x, double y, double w, double h, const char *fill, const char *title_fmt,
        ...)
{
	va_list ap;

	fprintf(f, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.0f' fill='%s'><title>", x, y, w,
	        h, fill);
	va_start(ap, title_fmt);
	vfprintf(f, title_fmt, ap);
	va_end(ap);
	fprintf(f, "</title></rect>\n");
}

static int
write_svg(FILE *f, const char *path, const struct bench_ctx *b, char backends[][16], size_t nb,
          double seconds)
{
	char workloads[64][64];
	size_t nw = 0;
	double omin = 0, omax = 0, lmin = 0, lmax = 0;
	const double label_w = 250, panel_w = 360, gap = 40, bar_h = 9, top = 60;
	double band, height, width;
	struct axis ops, lat;

	for (size_t i = 0; i < b->n; i++) {
		const struct bench_row *r = &b->rows[i];
		size_t w;

		for (w = 0; w < nw && strcmp(workloads[w], r->workload) != 0; w++)
			;
		if (w == nw && nw < 64)
			snprintf(workloads[nw++], sizeof(workloads[0]), "%s", r->workload);
		if (r->ops > 0) {
			omin = omin == 0 || r->ops < omin ? r->ops : omin;
			omax = r->ops > omax ? r->ops : omax;
		}
		if (r->p50 > 0) {
			lmin = lmin == 0 || r->p50 < lmin ? r->p50 : lmin;
			lmax = r->p99 > lmax ? r->p99 : lmax;
		}
	}
	band = (double)nb * (bar_h + 2) + 10;
	height = top + (double)nw * band + 50;
	width = label_w + 2 * panel_w + gap + 20;
	axis_fit(&ops, omin, omax, label_w, panel_w);
	axis_fit(&lat, lmin, lmax, label_w + panel_w + gap, panel_w);

	fprintf(f,
	        "<?xml version='1.0' encoding='UTF-8'?>\n"
	        "<svg xmlns='http://www.w3.org/2000/svg' width='%.0f' height='%.0f' "
	        "font-family='sans-serif'>\n"
	        "<rect width='100%%' height='100%%' fill='white'/>\n"
	        "<text x='10' y='20' font-size='14' font-weight='bold'>Roost storage benchmark"
	        "</text>\n"
	        "<text x='10' y='36' font-size='11'>%.1f s per workload, every change durable "
	        "(fsync); log scales</text>\n"
	        "<text x='%.1f' y='52' font-size='12' text-anchor='middle'>throughput (ops/s)"
	        "</text>\n"
	        "<text x='%.1f' y='52' font-size='12' text-anchor='middle'>latency (ms): p50 dark, "
	        "p99 light</text>\n",
	        width, height, seconds, ops.x + ops.w / 2, lat.x + lat.w / 2);
	/* legend */
	for (size_t k = 0; k < nb; k++) {
		double x = width - 120, y = 14 + 14 * (double)k;

		fprintf(f,
		        "<rect x='%.1f' y='%.1f' width='10' height='10' fill='%s'/>"
		        "<text x='%.1f' y='%.1f' font-size='11'>",
		        x, y - 9, colors[k][0], x + 14, y);
		xml_text(f, backends[k]);
		fprintf(f, "</text>\n");
	}
	axis_draw(f, &ops, top, top + (double)nw * band, "operations per second");
	axis_draw(f, &lat, top, top + (double)nw * band, "milliseconds");
	for (size_t w = 0; w < nw; w++) {
		double y0 = top + (double)w * band + 5;

		fprintf(f, "<text x='%.1f' y='%.1f' font-size='11' text-anchor='end'>", label_w - 8,
		        y0 + band / 2);
		xml_text(f, workloads[w]);
		fprintf(f, "</text>\n");
		for (size_t k = 0; k < nb; k++) {
			double y = y0 + (double)k * (bar_h + 2);

			for (size_t i = 0; i < b->n; i++) {
				const struct bench_row *r = &b->rows[i];

				if (strcmp(r->workload, workloads[w]) != 0 ||
				    strcmp(r->backend, backends[k]) != 0)
					continue;
				if (r->ops > 0)
					svg_bar(f, ops.x, y, axis_pos(&ops, r->ops) - ops.x, bar_h,
					        colors[k][0], "%s: %.0f ops/s", r->backend, r->ops);
				if (r->p99 > 0)
					svg_bar(f, lat.x, y, axis_pos(&lat, r->p99) - lat.x, bar_h,
					        colors[k][1], "%s: p99 %.3f ms", r->backend,
					        r->p99);
				if (r->p50 > 0)
					svg_bar(f, lat.x, y, axis_pos(&lat, r->p50) - lat.x, bar_h,
					        colors[k][0], "%s: p50 %.3f ms", r->backend,
					        r->p50);
			}
		}
	}
	fprintf(f, "</svg>\n");
	if (fclose(f) != 0) {
		fprintf(stderr, "roost: %s: %s\n", path, strerror(errno));
		return CLI_FAIL;
	}
	return CLI_OK;
}

/* ---- the command ---- */

static int
rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

/* Split "lmdb,maildir" into names this build has; CLI_USAGE on others. */
static int
parse_backends(const char *list, char out[][16], size_t *n_r)
{
	char *copy = xstrdup(list), *rest = copy, *tok;
	size_t n = 0;

	while ((tok = strsep(&rest, ",")) != NULL) {
		bool dup = false;

		if (tok[0] == '\0')
			continue;
		if (strcmp(tok, "lmdb") != 0 && strcmp(tok, "maildir") != 0 &&
		    strcmp(tok, "pgsql") != 0) {
			fprintf(stderr, "roost: unknown backend \"%s\" (lmdb, maildir, pgsql)\n",
			        tok);
			free(copy);
			return CLI_USAGE;
		}
		if (!storage_backend_available(tok)) {
			fprintf(stderr, "roost: backend %s is not in this build\n", tok);
			free(copy);
			return CLI_USAGE;
		}
		for (size_t i = 0; i < n; i++)
			dup |= strcmp(out[i], tok) == 0;
		if (!dup && n < MAX_BACKENDS)
			snprintf(out[n++], 16, "%s", tok);
	}
	free(copy);
	if (n == 0)
		return CLI_USAGE;
	*n_r = n;
	return CLI_OK;
}

int
cli_bench(struct cli *cli)
{
	struct roost_config *cfg = NULL;
	struct storage_bench_opts o = {.row = on_row};
	struct bench_ctx b = {0};
	const char *list = NULL, *svg = NULL, *dir = NULL;
	FILE *svgf = NULL;
	char backends[MAX_BACKENDS][16], scratch[4096], pgdir[4096] = "", pgdsn[4200];
	size_t nb = 0;
	int status = CLI_OK, ret;

	if (cli->argc < 2 || strcmp(cli->argv[1], "storage") != 0)
		return cli_usage(cli);
	for (int i = 2; i < cli->argc; i++) {
		const char *a = cli->argv[i];
		bool has = i + 1 < cli->argc;
		char *end;

		if (strcmp(a, "--full") == 0) {
			o.full = true;
		} else if (strcmp(a, "--quota") == 0) {
			o.quota = true;
		} else if (strcmp(a, "--backends") == 0 && has) {
			list = cli->argv[++i];
		} else if (strcmp(a, "--svg") == 0 && has) {
			svg = cli->argv[++i];
		} else if (strcmp(a, "--dir") == 0 && has) {
			dir = cli->argv[++i];
		} else if (strcmp(a, "--pgsql-dsn") == 0 && has) {
			o.pgsql_admin_dsn = cli->argv[++i];
		} else if (strcmp(a, "--seconds") == 0 && has) {
			o.seconds = strtod(cli->argv[++i], &end);
			if (*end != '\0' || !(o.seconds >= 0.1 && o.seconds <= 600))
				return cli_usage(cli);
		} else if (strcmp(a, "--messages") == 0 && has) {
			unsigned long v = strtoul(cli->argv[++i], &end, 10);

			if (*end != '\0' || v < 2000 || v > 10000000)
				return cli_usage(cli);
			o.big = (unsigned)v;
		} else {
			return cli_usage(cli);
		}
	}
	if (cli_load_config(cli, &cfg) < 0)
		return CLI_USAGE;
	if ((ret = parse_backends(list != NULL ? list : cfg->storage_backend, backends, &nb)) !=
	    CLI_OK) {
		config_free(&cfg);
		return ret;
	}
	if (o.pgsql_admin_dsn == NULL)
		o.pgsql_admin_dsn = getenv("ROOST_PGSQL_BENCH_DSN");
	/* No server given: a private one, started and stopped here; the
	 * configured database is never used. */
	for (size_t i = 0; i < nb; i++) {
		if (strcmp(backends[i], "pgsql") == 0 && o.pgsql_admin_dsn == NULL) {
			ret = storage_bench_pg_start(NULL, pgdir, sizeof(pgdir), pgdsn,
			                             sizeof(pgdsn));
			if (ret != 0) {
				fprintf(stderr,
				        "roost: pgsql: %s; give --pgsql-dsn DSN (or "
				        "ROOST_PGSQL_BENCH_DSN), a server where scratch databases "
				        "may be created and dropped\n",
				        ret == ROOST_ENOTSUP
				            ? "PostgreSQL is not installed (Debian "
				              "package postgresql)"
				            : "the private PostgreSQL did not start");
				config_free(&cfg);
				return CLI_FAIL;
			}
			o.pgsql_admin_dsn = pgdsn;
		}
	}
	if (svg != NULL && (svgf = fopen(svg, "w")) == NULL) {
		fprintf(stderr, "roost: %s: %s\n", svg, strerror(errno));
		status = CLI_FAIL;
		goto out;
	}
	/* Scratch stores on the data directory's disk, as the real ones are. */
	if (dir == NULL)
		dir = cfg->data_dir;
	snprintf(scratch, sizeof(scratch), "%s/bench-storage.XXXXXX", dir);
	if ((mkdir(dir, 0700) != 0 && errno != EEXIST) || mkdtemp(scratch) == NULL) {
		fprintf(stderr, "roost: %s: %s\n", scratch, strerror(errno));
		status = CLI_FAIL;
		goto out;
	}
	o.dir = scratch;
	o.arg = &b;
	log_setup(LOG_LEVEL_WARN, true, false);
	printf("storage benchmark: %.1f s per timed workload, scratch stores in %s, every change "
	       "durable (fsync)%s\n\n",
	       storage_bench_seconds(&o), scratch, o.quota ? ", users with a quota" : "");
	printf("%-8s  %-44s %10s %9s %9s %9s  %s\n", "backend", "workload", "ops/s", "p50 ms",
	       "p95 ms", "p99 ms", "notes");
	for (size_t i = 0; i < nb; i++) {
		if ((ret = storage_bench_run(backends[i], &o)) != 0) {
			fprintf(stderr, "roost: the %s benchmark stopped: %s\n", backends[i],
			        roost_strerror(ret));
			status = CLI_FAIL;
		}
	}
	nftw(scratch, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	for (size_t i = 0; i < b.n; i++) {
		if (b.rows[i].failed)
			status = CLI_FAIL;
	}
	if (svgf != NULL) {
		ret = write_svg(svgf, svg, &b, backends, nb, storage_bench_seconds(&o));
		svgf = NULL;
		if (ret != CLI_OK)
			status = CLI_FAIL;
		else
			printf("\nchart: %s\n", svg);
	}
out:
	if (svgf != NULL)
		fclose(svgf);
	if (pgdir[0] != '\0')
		storage_bench_pg_stop(pgdir);
	free(b.rows);
	config_free(&cfg);
	return status;
}
