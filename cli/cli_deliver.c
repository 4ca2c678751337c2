/*
 * `roost deliver`: the MDA entry point (Postfix/Exim pipe transports). The
 * work is delivery_command() in services/delivery.c, the same path SMTP and
 * LMTP use; this opens the services it needs. Exit codes are sysexits.h,
 * as MTAs expect from an MDA, not enum cli_exit.
 */
#include <stdio.h>
#include <sysexits.h>

#include "roost/auth.h"
#include "roost/cli.h"
#include "roost/config.h"
#include "roost/delivery.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/services.h"
#include "roost/storage.h"

int
cli_deliver(struct cli *cli)
{
	struct roost_config *cfg = NULL;
	struct roost_services sv = {0};
	struct storage *st = NULL;
	struct auth *auth = NULL;
	enum log_level level = LOG_LEVEL_INFO;
	int err, rc;

	if (cli_load_config(cli, &cfg) < 0)
		return EX_CONFIG;
	if (log_level_parse(cfg->log_level, &level) != 0)
		level = LOG_LEVEL_INFO;
	log_setup(level, true, cfg->log_syslog);
	err = auth_open(cfg, &auth);
	if (err != 0) {
		fprintf(stderr, "roost deliver: cannot open the user database: %s\n",
		        roost_strerror(err));
		rc = EX_TEMPFAIL;
		goto out;
	}
	err = storage_open(cfg, &st);
	if (err != 0) {
		fprintf(stderr, "roost deliver: cannot open storage: %s\n", roost_strerror(err));
		rc = EX_TEMPFAIL;
		goto out;
	}
	sv.cfg = cfg;
	sv.storage = st;
	sv.auth = auth;
	rc = delivery_command(&sv, cli->argc, cli->argv);
out:
	storage_close(&st);
	auth_free(&auth);
	config_free(&cfg);
	return rc;
}
