/*
 * `roost serve`. Until the runtime (core/server.c) and the storage layer land
 * this only validates the configuration and says so; the full start-up
 * sequence replaces it then.
 */
#include <stdio.h>

#include "roost/cli.h"
#include "roost/config.h"

int
cli_serve(struct cli *cli)
{
	struct roost_config *cfg;

	if (cli->argc != 1)
		return cli_usage(cli);
	if (cli_load_config(cli, &cfg) < 0)
		return CLI_USAGE;
	config_free(&cfg);
	fprintf(stderr, "roost: serve: the runtime is not in this build yet\n");
	return CLI_FAIL;
}
