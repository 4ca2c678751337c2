/*
 * `roost check [--repair]`: verify the store's invariants without changing
 * it; with --repair, first rebuild what is derived from the messages and
 * damaged (storage_repair(): indexes, UID lists, reference counts, orphaned
 * bodies), report what could not be rebuilt, then verify. Message contents
 * are never touched. Safe while the server runs.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "roost/buf.h"
#include "roost/cli.h"
#include "roost/config.h"
#include "roost/error.h"
#include "roost/queue.h"
#include "roost/storage.h"

int
cli_check(struct cli *cli)
{
	struct roost_config *cfg;
	struct storage *st;
	struct buf report = BUF_INIT(16u << 20);
	struct stat sb;
	bool repair = cli->argc == 2 && strcmp(cli->argv[1], "--repair") == 0;
	int rc;

	if (cli->argc != 1 && !repair)
		return cli_usage(cli);
	if (cli_load_config(cli, &cfg) < 0)
		return CLI_USAGE;
	/* Opening a store creates it; a check must not. */
	if (stat(cfg->data_dir, &sb) < 0) {
		fprintf(stderr, "roost: check: data directory %s: %s\n", cfg->data_dir,
		        strerror(errno));
		config_free(&cfg);
		return CLI_FAIL;
	}
	if ((rc = storage_open(cfg, &st)) != 0) {
		fprintf(stderr, "roost: check: cannot open the %s store under %s: %s\n",
		        cfg->storage_backend, cfg->data_dir, roost_strerror(rc));
		config_free(&cfg);
		return CLI_FAIL;
	}
	if (repair) {
		struct buf done = BUF_INIT(16u << 20);
		int rrc = storage_repair(st, &done);

		if (done.len > 0)
			fwrite(done.data, 1, done.len, stdout);
		if (rrc == 0)
			printf("roost: check: repair done\n");
		else if (rrc == ROOST_ENOTSUP)
			printf("roost: check: the %s store has nothing to repair this way\n",
			       cfg->storage_backend);
		else
			printf("roost: check: some things could not be repaired (above)\n");
		buf_free(&done);
	}
	rc = storage_check(st, &report);
	storage_close(&st);
	{
		char qdir[4096];
		int qrc;

		queue_dir_of(cfg, qdir, sizeof(qdir));
		qrc = queue_check(qdir, &report);
		if (rc == 0)
			rc = qrc;
	}
	if (report.len > 0)
		fwrite(report.data, 1, report.len, stdout);
	if (rc == 0)
		printf("roost: check: %s store and queue under %s are consistent\n",
		       cfg->storage_backend, cfg->data_dir);
	else
		printf("roost: check: problems found (%s)\n", roost_strerror(rc));
	buf_free(&report);
	config_free(&cfg);
	return rc == 0 ? CLI_OK : CLI_FAIL;
}
