/*
 * `roost`: one binary, subcommands from a table. Each row names the command,
 * the function running it (declared in roost/cli.h), its usage line and a
 * one-line summary for `roost help`. Add a subcommand by adding a row.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roost/cli.h"

#define ROOST_VERSION "0.1"

struct command {
	const char *name;
	cli_cmd_fn *run;
	const char *usage; /* after "roost " */
	const char *summary;
};

static int cmd_help(struct cli *cli);
static int cmd_version(struct cli *cli);

static const struct command commands[] = {
    {"serve", cli_serve, "serve", "run the mail server in the foreground"},
    {"user", cli_user,
     "user add NAME [--purge|--keep-mail] | passwd NAME | del NAME [--purge] | list",
     "manage users in the passwd file (password read from the terminal or stdin); "
     "del keeps the mail unless --purge"},
    {"config", cli_config, "config", "print the effective configuration"},
    {"check", cli_check, "check [--repair]",
     "verify the mail store's invariants; --repair rebuilds indexes, UID lists and reference "
     "counts first (never message contents)"},
    {"deliver", cli_deliver, "deliver [-f SENDER] -a RECIPIENT [-a RECIPIENT...] < MESSAGE",
     "deliver a message from stdin to local users (an MDA; sysexits.h exit codes)"},
    {"mailbox", cli_mailbox,
     "mailbox list USER | create|delete|subscribe|unsubscribe USER NAME | "
     "rename USER OLD NEW | uids USER NAME | fetch USER NAME UID",
     "look into a user's mailboxes through the storage interface"},
    {"import", cli_import,
     "import USER SOURCE [--mailbox NAME] [--format mboxrd|mboxo] [--password-file FILE] "
     "[--insecure]",
     "bring mail in from an mbox file, a Maildir, or imap[s]://login@host[:port]; run again "
     "to copy only what is new"},
    {"export", cli_export, "export USER DEST [--format maildir|mbox] [--mailbox NAME]",
     "write a user's mail out as a Maildir++ tree (with UIDs) or mbox files"},
    {"backup", cli_backup, "backup DIR",
     "copy the data directory consistently while the server runs (pgsql: use pg_dump)"},
    {"restore", cli_restore, "restore DIR",
     "put a backup back into an empty data directory, then verify it"},
    {"quota", cli_quota,
     "quota get USER | set USER [storage=SIZE|default] [messages=N|default] | recalc USER",
     "show a user's quota usage and limits, set the limits, or count the usage again"},
    {"acl", cli_acl, "acl get USER MAILBOX | set USER MAILBOX ID RIGHTS|+R|-R|none | list USER",
     "show or change who may use a user's mailbox (RFC 4314 rights lrswipkxtea)"},
    {"queue", cli_queue, "queue list | show ID | flush [ID] | delete ID | hold ID | release ID",
     "look at and steer the outbound queue (through the running server when there is one)"},
    {"dkim", cli_dkim, "dkim keygen DOMAIN [rsa|ed25519]",
     "create a DKIM signing key for DOMAIN and print the DNS TXT record to publish"},
    {"token", cli_token, "token add USER | token revoke USER",
     "make a bearer token for scripts using JMAP (printed once), or revoke a user's tokens"},
    {"who", cli_who, "who [--raw]",
     "list the running server's sessions: user, protocol, peer, since, mailbox, bytes"},
    {"kick", cli_kick, "kick USER [--proto PROTO]",
     "close a user's sessions on the running server (of one protocol or listener)"},
    {"reload", cli_reload, "reload",
     "make the running server read its configuration, passwd and aliases files again "
     "(as SIGHUP); prints the settings applied and those needing a restart; a file that "
     "does not load is reported and the old one kept"},
    {"bench", cli_bench,
     "bench storage [--backends LIST] [--seconds S] [--messages N] [--full] [--quota] "
     "[--dir DIR] [--svg FILE] [--pgsql-dsn DSN]",
     "measure the storage backends (the configured one by default) on this machine: "
     "deliveries, reads, flag updates, expunges; a table, and an SVG chart with --svg"},
    {"help", cmd_help, "help [COMMAND]", "show this help"},
    {"--version", cmd_version, "--version", "print the version"},
    {NULL, NULL, NULL, NULL},
};

static const struct command *
find_command(const char *name)
{
	for (const struct command *c = commands; c->name != NULL; c++) {
		if (strcmp(c->name, name) == 0)
			return c;
	}
	if (strcmp(name, "version") == 0 || strcmp(name, "-V") == 0)
		return find_command("--version");
	if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0)
		return find_command("help");
	return NULL;
}

static void
print_help(FILE *out)
{
	fprintf(out, "usage: roost COMMAND [ARGS] [--config FILE]\n\ncommands:\n");
	for (const struct command *c = commands; c->name != NULL; c++)
		fprintf(out, "  %-40s %s\n", c->usage, c->summary);
	fprintf(out, "\n--config FILE may appear anywhere; without it ./roost.conf is read "
	             "when it exists,\notherwise the built-in defaults apply.\n");
}

static int
cmd_help(struct cli *cli)
{
	if (cli->argc > 1) {
		const struct command *c = find_command(cli->argv[1]);

		if (c == NULL) {
			fprintf(stderr, "roost: unknown command \"%s\"\n", cli->argv[1]);
			return CLI_USAGE;
		}
		printf("usage: roost %s [--config FILE]\n  %s\n", c->usage, c->summary);
		return CLI_OK;
	}
	print_help(stdout);
	return CLI_OK;
}

static int
cmd_version(struct cli *cli)
{
	printf("roost %s\n", ROOST_VERSION);
	return CLI_OK;
}

int
cli_usage(const struct cli *cli)
{
	fprintf(stderr, "usage: roost %s [--config FILE]\n", cli->usage);
	return CLI_USAGE;
}

int
main(int argc, char **argv)
{
	struct cli cli = {0};
	const struct command *c;
	char **args = calloc((size_t)argc + 1, sizeof(char *));
	bool options = true;
	int n = 0, ret;

	if (args == NULL)
		return CLI_FAIL;
	/* Take the global options out wherever they are; the rest keeps its order. */
	for (int i = 1; i < argc; i++) {
		if (options && strcmp(argv[i], "--") == 0) {
			options = false;
		} else if (options && strcmp(argv[i], "--config") == 0) {
			if (i + 1 >= argc) {
				fprintf(stderr, "roost: --config needs a file name\n");
				free(args);
				return CLI_USAGE;
			}
			cli.config_path = argv[++i];
		} else if (options && strncmp(argv[i], "--config=", 9) == 0) {
			cli.config_path = argv[i] + 9;
		} else {
			args[n++] = argv[i];
		}
	}
	args[n] = NULL;
	if (cli.config_path != NULL && cli.config_path[0] == '\0') {
		fprintf(stderr, "roost: --config needs a file name\n");
		free(args);
		return CLI_USAGE;
	}
	if (n == 0) {
		print_help(stderr);
		free(args);
		return CLI_USAGE;
	}
	c = find_command(args[0]);
	if (c == NULL) {
		fprintf(stderr, "roost: unknown command \"%s\" (roost help lists them)\n", args[0]);
		free(args);
		return CLI_USAGE;
	}
	cli.argc = n;
	cli.argv = args;
	cli.usage = c->usage;
	ret = c->run(&cli);
	free(args);
	return ret;
}
