/*
 * `roost backup DIR` and `roost restore DIR`.
 *
 * backup takes a consistent copy of the data directory while the server
 * runs: the store through storage_backup() (LMDB: mdb_env_copy2 and its
 * body files; Maildir: each folder under its lock; pgsql: refused, the
 * mail being in the database, where pg_dump is the tool), then the rest of
 * the data directory (passwd, TLS keys, the outbound queue, DKIM keys...)
 * as files. DIR must be new or empty; it gets a ROOST-BACKUP file saying
 * what it holds.
 *
 * restore copies a backup back into the configured data directory, which
 * must be absent or empty: it never overwrites data, so never a running
 * server's (stop it and move its directory away first). It ends with the
 * same verification as `roost check`.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "roost/buf.h"
#include "roost/cli.h"
#include "roost/config.h"
#include "roost/error.h"
#include "roost/fdio.h"
#include "roost/loop.h"
#include "roost/storage.h"
#include "roost/xalloc.h"

#define MANIFEST "ROOST-BACKUP"

/* Absent, or an empty directory. */
static bool
new_or_empty(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	bool empty = true;

	if (d == NULL)
		return errno == ENOENT;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			empty = false;
	}
	closedir(d);
	return empty;
}

/* The names now at the top of dir, NULL-terminated (the store's part,
 * which the plain copy must leave alone), plus the runtime-only ones. */
static char **
top_names(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char **v = xcalloc(4, sizeof(*v));
	size_t n = 0;

	v[n++] = xstrdup("notify"); /* change signals between live processes */
	v[n++] = xstrdup(MANIFEST);
	while (d != NULL && (de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		v = xreallocarray(v, n + 2, sizeof(*v));
		v[n++] = xstrdup(de->d_name);
	}
	v[n] = NULL;
	if (d != NULL)
		closedir(d);
	return v;
}

static void
free_names(char **v)
{
	for (size_t i = 0; v != NULL && v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

int
cli_backup(struct cli *cli)
{
	struct roost_config *cfg = NULL;
	struct storage *st = NULL;
	struct buf report = BUF_INIT(16u << 20);
	const char *dir;
	char **skip = NULL, *failed = NULL, manifest[4200];
	double t0 = clock_s();
	FILE *mf;
	int rc;

	if (cli->argc != 2)
		return cli_usage(cli);
	dir = cli->argv[1];
	if (!new_or_empty(dir)) {
		fprintf(stderr, "roost backup: %s is not empty: give a new directory\n", dir);
		return CLI_FAIL;
	}
	if (cli_load_config(cli, &cfg) < 0)
		return CLI_USAGE;
	if (access(cfg->data_dir, F_OK) != 0) {
		fprintf(stderr, "roost backup: data directory %s: %s\n", cfg->data_dir,
		        strerror(errno));
		config_free(&cfg);
		return CLI_FAIL;
	}
	if ((rc = storage_open(cfg, &st)) != 0) {
		fprintf(stderr, "roost backup: cannot open the %s store: %s\n",
		        cfg->storage_backend, roost_strerror(rc));
		config_free(&cfg);
		return CLI_FAIL;
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		fprintf(stderr, "roost backup: %s: %s\n", dir, strerror(errno));
		rc = ROOST_EIO;
		goto out;
	}
	rc = storage_backup(st, dir, &report);
	if (report.len > 0)
		fwrite(report.data, 1, report.len, stderr);
	if (rc == ROOST_ENOTSUP) {
		fprintf(stderr, "roost backup: the %s store is not backed up by copying files\n",
		        cfg->storage_backend);
		rmdir(dir);
		goto out;
	}
	if (rc != 0)
		goto out;
	/* the rest of the data directory, as files */
	skip = top_names(dir);
	rc = fdio_copy_tree(cfg->data_dir, dir, (const char *const *)skip, true, &failed);
	if (rc != 0) {
		fprintf(stderr, "roost backup: cannot copy %s: %s\n", failed != NULL ? failed : "",
		        strerror(errno));
		goto out;
	}
	snprintf(manifest, sizeof(manifest), "%s/" MANIFEST, dir);
	if ((mf = fopen(manifest, "wxe")) == NULL) {
		rc = ROOST_EIO;
		goto out;
	}
	fprintf(mf, "roost backup\nbackend %s\ndata_dir %s\ntime %lld\n", cfg->storage_backend,
	        cfg->data_dir, (long long)time(NULL));
	if (fclose(mf) != 0 || fdio_fsync_dir(dir) != 0)
		rc = ROOST_EIO;
out:
	if (rc == 0)
		printf("roost backup: %s store and data directory %s copied to %s in %.1f s\n",
		       cfg->storage_backend, cfg->data_dir, dir, clock_s() - t0);
	else
		fprintf(stderr, "roost backup: failed (%s)\n", roost_strerror(rc));
	free(failed);
	free_names(skip);
	buf_free(&report);
	storage_close(&st);
	config_free(&cfg);
	return rc == 0 ? CLI_OK : CLI_FAIL;
}

int
cli_restore(struct cli *cli)
{
	struct roost_config *cfg = NULL;
	struct storage *st = NULL;
	struct buf report = BUF_INIT(16u << 20);
	const char *dir;
	const char *const skip[] = {MANIFEST, NULL};
	char manifest[4200], line[512], backend[64] = "";
	char *failed = NULL;
	double t0 = clock_s();
	FILE *mf;
	int rc;

	if (cli->argc != 2)
		return cli_usage(cli);
	dir = cli->argv[1];
	snprintf(manifest, sizeof(manifest), "%s/" MANIFEST, dir);
	if ((mf = fopen(manifest, "re")) == NULL) {
		fprintf(stderr, "roost restore: %s is not a roost backup (no " MANIFEST ")\n", dir);
		return CLI_FAIL;
	}
	while (fgets(line, sizeof(line), mf) != NULL) {
		if (strncmp(line, "backend ", 8) == 0 && strlen(line + 8) < sizeof(backend)) {
			strcpy(backend, line + 8);
			backend[strcspn(backend, "\n")] = '\0';
		}
	}
	fclose(mf);
	if (cli_load_config(cli, &cfg) < 0)
		return CLI_USAGE;
	if (strcmp(backend, cfg->storage_backend) != 0) {
		fprintf(stderr,
		        "roost restore: %s holds a %s store, the configuration says %s: restore "
		        "with a configuration for %s (or import the mail with roost import)\n",
		        dir, backend, cfg->storage_backend, backend);
		config_free(&cfg);
		return CLI_FAIL;
	}
	if (!new_or_empty(cfg->data_dir)) {
		fprintf(stderr,
		        "roost restore: data directory %s is not empty: nothing is overwritten (a "
		        "running server's data least of all); stop the server and move the "
		        "directory away first\n",
		        cfg->data_dir);
		config_free(&cfg);
		return CLI_FAIL;
	}
	rc = fdio_copy_tree(dir, cfg->data_dir, skip, true, &failed);
	if (rc != 0) {
		fprintf(stderr, "roost restore: cannot copy %s: %s\n", failed != NULL ? failed : "",
		        strerror(errno));
		goto out;
	}
	if ((rc = storage_open(cfg, &st)) == 0) {
		rc = storage_check(st, &report);
		if (report.len > 0)
			fwrite(report.data, 1, report.len, stdout);
	}
	if (rc == 0)
		printf("roost restore: %s restored into %s in %.1f s; the store is consistent\n",
		       dir, cfg->data_dir, clock_s() - t0);
	else
		fprintf(stderr,
		        "roost restore: restored, but the store does not check clean (%s)\n",
		        roost_strerror(rc));
out:
	free(failed);
	buf_free(&report);
	storage_close(&st);
	config_free(&cfg);
	return rc == 0 ? CLI_OK : CLI_FAIL;
}
