/* `roost config` and the configuration loading every subcommand shares. */
#include <stdio.h>

#include "roost/cli.h"
#include "roost/config.h"
#include "roost/error.h"

int
cli_load_config(const struct cli *cli, struct roost_config **cfg_r)
{
	char err[1024];

	if (config_load(cli->config_path, cfg_r, err, sizeof(err)) != 0) {
		fprintf(stderr, "roost: configuration error: %s\n", err);
		return ROOST_ECONFIG;
	}
	return 0;
}

int
cli_config(struct cli *cli)
{
	struct roost_config *cfg;

	if (cli->argc != 1)
		return cli_usage(cli);
	if (cli_load_config(cli, &cfg) < 0)
		return CLI_USAGE;
	config_print(cfg, stdout);
	config_free(&cfg);
	return fflush(stdout) == 0 ? CLI_OK : CLI_FAIL;
}
