/* `roost dkim keygen DOMAIN [rsa|ed25519]`: a signing key and its DNS record. */
#include <stdio.h>
#include <string.h>

#include "roost/buf.h"
#include "roost/cli.h"
#include "roost/config.h"
#include "roost/dkim.h"
#include "roost/error.h"

int
cli_dkim(struct cli *cli)
{
	struct roost_config *cfg;
	struct buf txt = BUF_INIT(0);
	bool ed25519 = false;
	int err;

	if (cli->argc < 3 || cli->argc > 4 || strcmp(cli->argv[1], "keygen") != 0)
		return cli_usage(cli);
	if (cli->argc == 4) {
		if (strcmp(cli->argv[3], "ed25519") == 0)
			ed25519 = true;
		else if (strcmp(cli->argv[3], "rsa") != 0)
			return cli_usage(cli);
	}
	if (cli_load_config(cli, &cfg) < 0)
		return CLI_USAGE;
	err = dkim_keygen(cfg, cli->argv[2], ed25519, &txt);
	if (err == 0) {
		fprintf(stderr, "roost: dkim: key written to %s/%s.key; publish this record:\n",
		        cfg->dkim_dir, cli->argv[2]);
		fputs(buf_cstr(&txt), stdout);
	} else if (err == ROOST_EEXISTS) {
		fprintf(stderr, "roost: dkim: %s/%s.key exists; remove it first to replace it\n",
		        cfg->dkim_dir, cli->argv[2]);
	} else {
		fprintf(stderr, "roost: dkim: cannot create a key for %s: %s\n", cli->argv[2],
		        roost_strerror(err));
	}
	buf_free(&txt);
	config_free(&cfg);
	return err == 0 ? CLI_OK : CLI_FAIL;
}
