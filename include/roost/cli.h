#ifndef ROOST_CLI_H
#define ROOST_CLI_H

/*
 * The `roost` command line. cli/main.c holds the command table (one row per
 * subcommand: name, function, usage, summary) and the global options; each
 * subcommand lives in cli/cli_<name>.c (or its module) and is declared here.
 *
 * Global options, accepted anywhere in argv (before or after the
 * subcommand) up to a lone "--":
 *   --config FILE, --config=FILE   the configuration file (default:
 *                                  ./roost.conf when it exists, else built-in
 *                                  defaults)
 *
 * Exit codes: 0 success, 1 failure, 2 usage or configuration error.
 */
struct roost_config;

enum cli_exit {
	CLI_OK = 0,
	CLI_FAIL = 1,
	CLI_USAGE = 2,
};

struct cli {
	const char *config_path; /* --config, NULL for the default */
	int argc;                /* argv[0] is the subcommand name */
	char **argv;             /* global options removed; NULL-terminated */
	const char *usage;       /* the command's row: "user add|passwd|del NAME ..." */
};

/* A subcommand: returns the process exit code (enum cli_exit). */
typedef int cli_cmd_fn(struct cli *cli);

/*
 * Load the configuration named by --config (or the default). On error the
 * message (naming file, line and key) goes to stderr and ROOST_ECONFIG is
 * returned: exit with CLI_USAGE.
 */
int cli_load_config(const struct cli *cli, struct roost_config **cfg_r);
/* Print "usage: roost <cli->usage>" to stderr; returns CLI_USAGE. */
int cli_usage(const struct cli *cli);

int cli_serve(struct cli *cli);
int cli_user(struct cli *cli);
int cli_config(struct cli *cli);
/* `roost check`: verify the store (storage_check); exit 1 when problems are found. */
int cli_check(struct cli *cli);
/* cli/cli_deliver.c: exits with sysexits.h codes (an MDA's contract). */
int cli_deliver(struct cli *cli);
int cli_mailbox(struct cli *cli);
/* cli/cli_import.c, cli_export.c, cli_backup.c: moving a store's mail in
 * and out (mbox, Maildir, IMAP), backups. */
int cli_import(struct cli *cli);
int cli_export(struct cli *cli);
int cli_backup(struct cli *cli);
int cli_restore(struct cli *cli);
/* cli/cli_acl.c: access control lists of a user's mailboxes. */
int cli_acl(struct cli *cli);
/* cli/cli_quota.c: quota usage, limits and recount. */
int cli_quota(struct cli *cli);
/* cli/cli_queue.c: the outbound queue. */
int cli_queue(struct cli *cli);
/* cli/cli_dkim.c: DKIM signing keys. */
int cli_dkim(struct cli *cli);
/* cli/cli_token.c: bearer tokens for the HTTP service. */
int cli_token(struct cli *cli);
/* cli/cli_admin.c: requests to the running server's control socket. */
int cli_who(struct cli *cli);
int cli_kick(struct cli *cli);
int cli_reload(struct cli *cli);
/* cli/cli_bench.c: `roost bench storage` (roost/storage_bench.h). */
int cli_bench(struct cli *cli);

#endif
