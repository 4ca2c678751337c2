/*
 * `roost acl`: the access control lists of a user's mailboxes (RFC 4314;
 * the model is at the head of backends/storage_acl.c).
 *
 *   roost acl get USER MAILBOX          "identifier rights" a line, the
 *                                       owner first
 *   roost acl set USER MAILBOX ID RIGHTS
 *                                       RIGHTS: letters of lrswipkxtea
 *                                       (replace), +letters (add),
 *                                       -letters (remove), "none" (remove
 *                                       the entry); ID: a user, "anyone"
 *                                       or "authenticated"
 *   roost acl list USER                 every mailbox of USER with its
 *                                       entries ("mailbox<TAB>id<TAB>rights"),
 *                                       then what others share with USER
 *                                       ("shared<TAB>mailbox<TAB>rights")
 *
 * It acts as USER, the owner, through the storage interface, so it works
 * while the server runs and on every backend.
 */
#include <stdio.h>
#include <string.h>

#include "roost/cli.h"
#include "roost/config.h"
#include "roost/error.h"
#include "roost/storage.h"

static int
acl_get(struct storage *st, const char *user, const char *mailbox)
{
	struct acl_entry *v;
	size_t n;
	int err = storage_acl_get(st, user, mailbox, &v, &n);

	for (size_t i = 0; err == 0 && i < n; i++) {
		char r[STORAGE_ACL_RIGHTS_MAX];

		storage_acl_rights_format(v[i].rights, r);
		printf("%s %s\n", v[i].identifier, r);
	}
	storage_acl_free(v, err == 0 ? n : 0);
	return err;
}

static int
acl_set(struct storage *st, const char *user, const char *mailbox, const char *id, const char *text)
{
	enum acl_mode mode = ACL_SET;
	unsigned rights;

	if (strcmp(text, "none") == 0)
		return storage_acl_delete(st, user, mailbox, id);
	if (*text == '+' || *text == '-') {
		mode = *text == '+' ? ACL_ADD : ACL_REMOVE;
		text++;
	}
	if (storage_acl_rights_parse(text, &rights) != 0) {
		fprintf(stderr, "roost acl set: bad rights \"%s\" (letters of %s, c, d)\n", text,
		        ACL_RIGHTS_LETTERS);
		return ROOST_EINVAL;
	}
	if (!storage_acl_identifier_valid(id)) {
		fprintf(stderr, "roost acl set: bad identifier \"%s\"\n", id);
		return ROOST_EINVAL;
	}
	return storage_acl_set(st, user, mailbox, id, mode, rights);
}

static int
acl_list(struct storage *st, const char *user)
{
	struct mailbox_info *list = NULL;
	size_t n = 0;
	int err = storage_list(st, user, &list, &n);

	for (size_t i = 0; err == 0 && i < n; i++) {
		struct acl_entry *v;
		size_t nv;

		if ((list[i].attrs & (MBOX_NONEXISTENT | MBOX_NOSELECT)) != 0)
			continue;
		if (storage_acl_get(st, user, list[i].name, &v, &nv) != 0)
			continue; /* gone meanwhile */
		for (size_t j = 1; j < nv; j++) {
			char r[STORAGE_ACL_RIGHTS_MAX];

			storage_acl_rights_format(v[j].rights, r);
			printf("%s\t%s\t%s\n", list[i].name, v[j].identifier, r);
		}
		storage_acl_free(v, nv);
	}
	storage_list_free(list, n);
	if (err != 0 || (err = storage_acl_shared_list(st, user, &list, &n)) != 0)
		return err;
	for (size_t i = 0; i < n; i++) {
		char r[STORAGE_ACL_RIGHTS_MAX];
		unsigned rights;

		if ((list[i].attrs & MBOX_NOSELECT) != 0 ||
		    storage_acl_myrights(st, user, list[i].name, &rights) != 0)
			continue;
		storage_acl_rights_format(rights, r);
		printf("shared\t%s\t%s\n", list[i].name, r);
	}
	storage_list_free(list, n);
	return 0;
}

int
cli_acl(struct cli *cli)
{
	struct roost_config *cfg = NULL;
	struct storage *st = NULL;
	const char *sub = cli->argc > 1 ? cli->argv[1] : "";
	int err;

	if (!((strcmp(sub, "get") == 0 && cli->argc == 4) ||
	      (strcmp(sub, "set") == 0 && cli->argc == 6) ||
	      (strcmp(sub, "list") == 0 && cli->argc == 3)))
		return cli_usage(cli);
	if (cli_load_config(cli, &cfg) < 0)
		return CLI_USAGE;
	if ((err = storage_open(cfg, &st)) == 0) {
		if (strcmp(sub, "get") == 0)
			err = acl_get(st, cli->argv[2], cli->argv[3]);
		else if (strcmp(sub, "set") == 0)
			err = acl_set(st, cli->argv[2], cli->argv[3], cli->argv[4], cli->argv[5]);
		else
			err = acl_list(st, cli->argv[2]);
	}
	if (err == ROOST_ENOTFOUND)
		fprintf(stderr, "roost acl %s: no such mailbox\n", sub);
	else if (err == ROOST_EPERM)
		fprintf(stderr, "roost acl %s: the owner's rights cannot change\n", sub);
	else if (err != 0)
		fprintf(stderr, "roost acl %s: %s\n", sub, roost_strerror(err));
	storage_close(&st);
	config_free(&cfg);
	if (fflush(stdout) != 0)
		return CLI_FAIL;
	return err == 0 ? CLI_OK : err == ROOST_EINVAL ? CLI_USAGE : CLI_FAIL;
}
