/*
 * `roost mailbox`: look into a user's store from the command line, through
 * the storage interface (so it works the same for every backend, also while
 * the server runs):
 *
 *   roost mailbox list USER              name, messages, unseen, uidnext
 *   roost mailbox create|delete USER NAME
 *   roost mailbox rename USER OLD NEW
 *   roost mailbox subscribe|unsubscribe USER NAME
 *   roost mailbox uids USER NAME         "uid size flags" per message, the
 *                                        flags and keywords by name
 *   roost mailbox fetch USER NAME UID    the raw message on stdout
 *
 * USER must be in the passwd file (its spelling there is used): a typo must
 * not create a store nobody can log in to, nor answer an empty list.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "roost/auth.h"
#include "roost/cli.h"
#include "roost/config.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/storage.h"

static int
mb_list(struct storage *st, const char *user)
{
	struct mailbox_info *list = NULL;
	size_t n = 0;
	int err = storage_list(st, user, &list, &n);

	if (err != 0)
		return err;
	for (size_t i = 0; i < n; i++) {
		struct mailbox_status s;

		if ((list[i].attrs & (MBOX_NOSELECT | MBOX_NONEXISTENT)) != 0 ||
		    storage_status(st, user, list[i].name, &s) != 0) {
			printf("%s -\n", list[i].name);
			continue;
		}
		printf("%s messages=%u unseen=%u uidnext=%u uidvalidity=%u\n", list[i].name,
		       s.messages, s.unseen, s.uidnext, s.uidvalidity);
	}
	storage_list_free(list, n);
	return 0;
}

static int
mb_uids(struct storage *st, const char *user, const char *name)
{
	struct mailbox *mb = NULL;
	struct msg_record *recs = NULL;
	size_t n = 0;
	uint64_t modseq;
	static const struct {
		unsigned bit;
		const char *name;
	} flags[] = {{MSG_SEEN, "\\Seen"},
	             {MSG_ANSWERED, "\\Answered"},
	             {MSG_FLAGGED, "\\Flagged"},
	             {MSG_DELETED, "\\Deleted"},
	             {MSG_DRAFT, "\\Draft"}};
	const char *const *kw = NULL;
	size_t n_kw = 0;
	int err = mailbox_open(st, user, name, MAILBOX_READONLY, &mb);

	if (err == 0)
		err = mailbox_records(mb, &recs, &n, &modseq);
	if (err == 0)
		err = mailbox_keywords(mb, &kw, &n_kw);
	for (size_t i = 0; err == 0 && i < n; i++) {
		bool any = false;

		printf("%u %" PRIu64 " ", recs[i].uid, recs[i].size);
		for (size_t f = 0; f < sizeof(flags) / sizeof(flags[0]); f++) {
			if ((recs[i].flags & flags[f].bit) != 0) {
				printf("%s%s", any ? " " : "(", flags[f].name);
				any = true;
			}
		}
		for (size_t k = 0; k < n_kw && k < 64; k++) {
			if ((recs[i].keywords & ((uint64_t)1 << k)) != 0) {
				printf("%s%s", any ? " " : "(", kw[k]);
				any = true;
			}
		}
		printf("%s\n", any ? ")" : "()");
	}
	free(recs);
	mailbox_close(&mb);
	return err;
}

static int
mb_fetch(struct storage *st, const char *user, const char *name, const char *uidtext)
{
	struct mailbox *mb = NULL;
	struct msg_view v = {0};
	char *end;
	unsigned long uid = strtoul(uidtext, &end, 10);
	int err;

	if (*end != '\0' || uid == 0 || uid > UINT32_MAX)
		return ROOST_EINVAL;
	err = mailbox_open(st, user, name, MAILBOX_READONLY, &mb);
	if (err == 0)
		err = mailbox_read(mb, (uint32_t)uid, &v);
	if (err == 0) {
		if (fwrite(v.data, 1, v.len, stdout) != v.len)
			err = ROOST_EIO;
		msg_view_release(&v);
	}
	mailbox_close(&mb);
	return err;
}

int
cli_mailbox(struct cli *cli)
{
	struct roost_config *cfg = NULL;
	struct storage *st = NULL;
	struct auth *auth = NULL;
	const char *sub = cli->argc > 1 ? cli->argv[1] : "";
	char user[AUTH_MAX_NAME + 1];
	int err;

	if (!((strcmp(sub, "list") == 0 && cli->argc == 3) ||
	      ((strcmp(sub, "create") == 0 || strcmp(sub, "delete") == 0 ||
	        strcmp(sub, "subscribe") == 0 || strcmp(sub, "unsubscribe") == 0 ||
	        strcmp(sub, "uids") == 0) &&
	       cli->argc == 4) ||
	      ((strcmp(sub, "rename") == 0 || strcmp(sub, "fetch") == 0) && cli->argc == 5)))
		return cli_usage(cli);
	if (cli_load_config(cli, &cfg) < 0)
		return CLI_USAGE;
	/* Its output is the answer: only problems go to stderr. */
	log_setup(LOG_LEVEL_WARN, true, false);
	err = auth_open(cfg, &auth);
	if (err != 0) {
		fprintf(stderr, "roost mailbox %s: cannot read the users (%s): %s\n", sub,
		        cfg->passwd_file, roost_strerror(err));
		config_free(&cfg);
		return CLI_FAIL;
	}
	if (auth_lookup(auth, cli->argv[2], user, sizeof(user)) != 0) {
		fprintf(stderr, "roost mailbox %s: %s: no such user\n", sub, cli->argv[2]);
		auth_free(&auth);
		config_free(&cfg);
		return CLI_FAIL;
	}
	auth_free(&auth);
	err = storage_open(cfg, &st);
	if (err == 0) {
		if (strcmp(sub, "list") == 0)
			err = mb_list(st, user);
		else if (strcmp(sub, "create") == 0)
			err = storage_create(st, user, cli->argv[3], 0);
		else if (strcmp(sub, "delete") == 0)
			err = storage_delete(st, user, cli->argv[3]);
		else if (strcmp(sub, "rename") == 0)
			err = storage_rename(st, user, cli->argv[3], cli->argv[4]);
		else if (strcmp(sub, "subscribe") == 0 || strcmp(sub, "unsubscribe") == 0)
			err = storage_subscribe(st, user, cli->argv[3], sub[0] == 's');
		else if (strcmp(sub, "uids") == 0)
			err = mb_uids(st, user, cli->argv[3]);
		else
			err = mb_fetch(st, user, cli->argv[3], cli->argv[4]);
	}
	if (err != 0)
		fprintf(stderr, "roost mailbox %s: %s\n", sub, roost_strerror(err));
	storage_close(&st);
	config_free(&cfg);
	if (fflush(stdout) != 0)
		return CLI_FAIL;
	return err == 0 ? CLI_OK : CLI_FAIL;
}
