/*
 * `roost token add USER | revoke USER`: bearer tokens for scripts using the
 * HTTP service (JMAP). The token is printed once; only its digest is kept.
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "roost/auth.h"
#include "roost/cli.h"
#include "roost/config.h"
#include "roost/error.h"
#include "roost/http.h"

int
cli_token(struct cli *cli)
{
	struct roost_config *cfg = NULL;
	struct auth *auth = NULL;
	char name[AUTH_MAX_NAME + 1], tok[HTTP_TOKEN_LEN + 1];
	int rc, ret = CLI_FAIL;

	if (cli->argc != 3 ||
	    (strcmp(cli->argv[1], "add") != 0 && strcmp(cli->argv[1], "revoke") != 0))
		return cli_usage(cli);
	if (cli_load_config(cli, &cfg) != 0)
		return CLI_USAGE;
	if (auth_open(cfg, &auth) != 0)
		goto out;
	if (auth_lookup(auth, cli->argv[2], name, sizeof(name)) != 0) {
		fprintf(stderr, "roost: no such user: %s\n", cli->argv[2]);
		goto out;
	}
	(void)mkdir(cfg->data_dir, 0700);
	if (strcmp(cli->argv[1], "add") == 0) {
		rc = http_token_add(cfg->data_dir, name, tok);
		if (rc == 0) {
			printf("%s\n", tok);
			ret = CLI_OK;
		}
	} else {
		unsigned n = 0;

		rc = http_token_revoke(cfg->data_dir, name, &n);
		if (rc == 0) {
			printf("%u token(s) revoked\n", n);
			ret = CLI_OK;
		}
	}
	if (rc != 0)
		fprintf(stderr, "roost: token: %s\n", roost_strerror(rc));
out:
	auth_free(&auth);
	config_free(&cfg);
	return ret;
}
