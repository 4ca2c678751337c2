/*
 * `roost quota`: a user's quota usage and limits (storage.h, quota).
 *
 *   roost quota get USER         usage and limits, one key=value a line
 *   roost quota set USER [storage=SIZE|default] [messages=N|default]
 *                                write the limits into the passwd file's
 *                                extra field (auth.h); "default" removes
 *                                one, so [quota] in the config applies; 0
 *                                is no limit. A running server sees the
 *                                change at its next lookup.
 *   roost quota recalc USER      count the user's messages again, store the
 *                                result, and print both with the difference
 *
 * Works while the server runs (through the storage interface, as `roost
 * mailbox` does).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roost/auth.h"
#include "roost/cli.h"
#include "roost/config.h"
#include "roost/error.h"
#include "roost/storage.h"

static void
print_limit(const char *key, uint64_t v)
{
	if (v == 0)
		printf("%s=none\n", key);
	else
		printf("%s=%" PRIu64 "\n", key, v);
}

static int
quota_get(struct storage *st, const char *user)
{
	struct storage_quota q;
	int err = storage_quota_get(st, user, &q);

	if (err != 0)
		return err;
	printf("user=%s\n", user);
	printf("storage=%" PRIu64 "\n", q.usage.bytes);
	print_limit("storage_limit", q.limit_bytes);
	printf("messages=%" PRIu64 "\n", q.usage.messages);
	print_limit("messages_limit", q.limit_messages);
	return 0;
}

static int
quota_recalc(struct storage *st, const char *user)
{
	struct storage_usage before, after;
	int err = storage_quota_recalc(st, user, &before, &after);

	if (err != 0)
		return err;
	printf("user=%s\n", user);
	printf("storage=%" PRIu64 " was=%" PRIu64 " difference=%+" PRId64 "\n", after.bytes,
	       before.bytes, (int64_t)(after.bytes - before.bytes));
	printf("messages=%" PRIu64 " was=%" PRIu64 " difference=%+" PRId64 "\n", after.messages,
	       before.messages, (int64_t)(after.messages - before.messages));
	return 0;
}

/* "storage=100M", "messages=500" or either "=default". */
static int
parse_setting(const char *arg, int64_t *storage, int64_t *messages)
{
	const char *v = strchr(arg, '=');
	uint64_t n;
	char *end;

	if (v == NULL)
		return ROOST_EINVAL;
	v++;
	if (strncmp(arg, "storage=", 8) == 0) {
		if (strcmp(v, "default") == 0)
			*storage = AUTH_QUOTA_DEFAULT;
		else if (auth_quota_parse_size(v, &n) == 0)
			*storage = (int64_t)n;
		else
			return ROOST_EINVAL;
		return 0;
	}
	if (strncmp(arg, "messages=", 9) == 0) {
		if (strcmp(v, "default") == 0) {
			*messages = AUTH_QUOTA_DEFAULT;
			return 0;
		}
		if (*v < '0' || *v > '9')
			return ROOST_EINVAL;
		n = strtoull(v, &end, 10);
		if (*end != '\0' || n > (uint64_t)INT64_MAX)
			return ROOST_EINVAL;
		*messages = (int64_t)n;
		return 0;
	}
	return ROOST_EINVAL;
}

static int
quota_set(const struct roost_config *cfg, int argc, char **argv)
{
	int64_t storage = AUTH_QUOTA_KEEP, messages = AUTH_QUOTA_KEEP;

	for (int i = 3; i < argc; i++) {
		if (parse_setting(argv[i], &storage, &messages) != 0) {
			fprintf(stderr,
			        "roost quota set: bad setting \"%s\" (storage=SIZE, "
			        "messages=N, or =default)\n",
			        argv[i]);
			return ROOST_EINVAL;
		}
	}
	return auth_file_set_quota(cfg->passwd_file, argv[2], storage, messages);
}

int
cli_quota(struct cli *cli)
{
	struct roost_config *cfg = NULL;
	struct storage *st = NULL;
	struct auth *auth = NULL;
	const char *sub = cli->argc > 1 ? cli->argv[1] : "";
	int err;

	if (!((strcmp(sub, "get") == 0 && cli->argc == 3) ||
	      (strcmp(sub, "recalc") == 0 && cli->argc == 3) ||
	      (strcmp(sub, "set") == 0 && cli->argc >= 4 && cli->argc <= 5)))
		return cli_usage(cli);
	if (cli_load_config(cli, &cfg) < 0)
		return CLI_USAGE;
	if (strcmp(sub, "set") == 0) {
		err = quota_set(cfg, cli->argc, cli->argv);
		if (err == ROOST_EINVAL) {
			config_free(&cfg);
			return CLI_USAGE;
		}
		if (err == ROOST_ENOTFOUND)
			fprintf(stderr, "roost quota set: %s: no such user in %s\n", cli->argv[2],
			        cfg->passwd_file);
		else if (err != 0)
			fprintf(stderr, "roost quota set: %s\n", roost_strerror(err));
		config_free(&cfg);
		return err == 0 ? CLI_OK : CLI_FAIL;
	}
	if ((err = auth_open(cfg, &auth)) == 0 && (err = storage_open(cfg, &st)) == 0) {
		storage_set_auth(st, auth);
		if (strcmp(sub, "get") == 0)
			err = quota_get(st, cli->argv[2]);
		else
			err = quota_recalc(st, cli->argv[2]);
	}
	if (err != 0)
		fprintf(stderr, "roost quota %s: %s\n", sub, roost_strerror(err));
	storage_close(&st);
	auth_free(&auth);
	config_free(&cfg);
	if (fflush(stdout) != 0)
		return CLI_FAIL;
	return err == 0 ? CLI_OK : CLI_FAIL;
}
