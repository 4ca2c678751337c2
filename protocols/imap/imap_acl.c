/*
 * IMAP ACL (RFC 4314): GETACL, SETACL, DELETEACL, LISTRIGHTS and MYRIGHTS
 * over the storage layer's access control lists (storage.h; the model is
 * at the head of backends/storage_acl.c, which also checks every right).
 * Rights are kept one letter each (RIGHTS=texk); "c" and "d" are read as
 * k and x t e and shown beside them. Identifiers are "anyone",
 * "authenticated" or a user, spelt as the passwd file spells it when it
 * knows the user; negative rights ("-bob") are refused.
 */
#include <stdio.h>
#include <string.h>

#include "roost/auth.h"
#include "roost/conn.h"
#include "roost/error.h"
#include "roost/services.h"
#include "roost/storage.h"

#include "imap_impl.h"

/* The identifier argument a, canonical, into id_r; BAD and false when it
 * is not one. */
static bool
identifier_arg(struct imap_cmd *cmd, const struct imap_arg *a, char *id_r, size_t size)
{
	struct imap_session *s = cmd->s;

	if (!imap_arg_is_astring(a) || a->str == NULL || a->len == 0 || a->len >= size ||
	    strlen(a->str) != a->len || !storage_acl_identifier_valid(a->str)) {
		imap_bad(cmd, "Invalid identifier");
		return false;
	}
	if (strcmp(a->str, "anyone") == 0 || strcmp(a->str, "authenticated") == 0 ||
	    auth_lookup(s->sv->auth, a->str, id_r, size) != 0)
		snprintf(id_r, size, "%s", a->str);
	return true;
}

static void
write_rights(struct conn *c, unsigned rights)
{
	char r[STORAGE_ACL_RIGHTS_MAX];

	storage_acl_rights_format(rights, r);
	imap_write_string(c, r, strlen(r));
}

static void
write_myrights(struct imap_session *s, const char *name, unsigned rights)
{
	conn_write_str(s->c, "* MYRIGHTS ");
	imap_write_mbox(s, name);
	conn_write_str(s->c, " ");
	write_rights(s->c, rights);
	conn_write_str(s->c, "\r\n");
}

void
cmd_getacl(struct imap_cmd *cmd)
{
	struct imap_session *s = cmd->s;
	struct acl_entry *v;
	size_t n;
	char *name;
	int rc;

	if (cmd->p.n != 1) {
		imap_bad(cmd, "Usage: GETACL mailbox");
		return;
	}
	if (imap_mailbox_arg(cmd, &cmd->p.args[0], &name) < 0)
		return;
	if ((rc = storage_acl_get(s->sv->storage, s->user, name, &v, &n)) != 0) {
		imap_reply_error(cmd, rc, NULL);
		return;
	}
	conn_write_str(s->c, "* ACL ");
	imap_write_mbox(s, name);
	for (size_t i = 0; i < n; i++) {
		conn_write_str(s->c, " ");
		imap_write_string(s->c, v[i].identifier, strlen(v[i].identifier));
		conn_write_str(s->c, " ");
		write_rights(s->c, v[i].rights);
	}
	conn_write_str(s->c, "\r\n");
	storage_acl_free(v, n);
	imap_tagged(cmd, "OK", "GETACL completed");
}

void
cmd_setacl(struct imap_cmd *cmd)
{
	struct imap_session *s = cmd->s;
	const struct imap_arg *a = cmd->p.args;
	char id[AUTH_MAX_NAME + 1];
	enum acl_mode mode = ACL_SET;
	const char *text;
	unsigned rights;
	char *name;
	int rc;

	if (cmd->p.n != 3 || !imap_arg_is_astring(&a[2]) || a[2].str == NULL) {
		imap_bad(cmd, "Usage: SETACL mailbox identifier rights");
		return;
	}
	if (imap_mailbox_arg(cmd, &a[0], &name) < 0 || !identifier_arg(cmd, &a[1], id, sizeof(id)))
		return;
	text = a[2].str;
	if (*text == '+' || *text == '-') {
		mode = *text == '+' ? ACL_ADD : ACL_REMOVE;
		text++;
	}
	/* RFC 4314 3.1: a right the server does not know is BAD */
	if (strlen(text) != a[2].len - (size_t)(text - a[2].str) ||
	    storage_acl_rights_parse(text, &rights) != 0) {
		imap_bad(cmd, "Invalid rights (letters of %s)", ACL_RIGHTS_LETTERS);
		return;
	}
	rc = storage_acl_set(s->sv->storage, s->user, name, id, mode, rights);
	if (rc == ROOST_EPERM) {
		imap_tagged(cmd, "NO", "[CANNOT] The owner's rights cannot be changed");
		return;
	}
	if (rc == ROOST_ETOOBIG) {
		imap_tagged(cmd, "NO", "[LIMIT] At most %d identifiers per mailbox",
		            STORAGE_ACL_MAX_ENTRIES);
		return;
	}
	if (rc != 0) {
		imap_reply_error(cmd, rc, NULL);
		return;
	}
	imap_tagged(cmd, "OK", "SETACL completed");
}

void
cmd_deleteacl(struct imap_cmd *cmd)
{
	struct imap_session *s = cmd->s;
	char id[AUTH_MAX_NAME + 1];
	char *name;
	int rc;

	if (cmd->p.n != 2) {
		imap_bad(cmd, "Usage: DELETEACL mailbox identifier");
		return;
	}
	if (imap_mailbox_arg(cmd, &cmd->p.args[0], &name) < 0 ||
	    !identifier_arg(cmd, &cmd->p.args[1], id, sizeof(id)))
		return;
	rc = storage_acl_delete(s->sv->storage, s->user, name, id);
	if (rc == ROOST_EPERM) {
		imap_tagged(cmd, "NO", "[CANNOT] The owner's rights cannot be changed");
		return;
	}
	if (rc != 0) {
		imap_reply_error(cmd, rc, NULL);
		return;
	}
	imap_tagged(cmd, "OK", "DELETEACL completed");
}

/* The owner always has every right; anyone else may be given each right
 * on its own. */
void
cmd_listrights(struct imap_cmd *cmd)
{
	struct imap_session *s = cmd->s;
	char id[AUTH_MAX_NAME + 1], owner[AUTH_MAX_NAME + 1];
	struct acl_entry *v;
	size_t n;
	char *name;
	int rc;

	if (cmd->p.n != 2) {
		imap_bad(cmd, "Usage: LISTRIGHTS mailbox identifier");
		return;
	}
	if (imap_mailbox_arg(cmd, &cmd->p.args[0], &name) < 0 ||
	    !identifier_arg(cmd, &cmd->p.args[1], id, sizeof(id)))
		return;
	/* the rights LISTRIGHTS asks for are GETACL's (a) */
	if ((rc = storage_acl_get(s->sv->storage, s->user, name, &v, &n)) != 0) {
		imap_reply_error(cmd, rc, NULL);
		return;
	}
	snprintf(owner, sizeof(owner), "%s", v[0].identifier);
	storage_acl_free(v, n);
	conn_write_str(s->c, "* LISTRIGHTS ");
	imap_write_mbox(s, name);
	conn_write_str(s->c, " ");
	imap_write_string(s->c, id, strlen(id));
	if (strcmp(id, owner) == 0) {
		conn_write_str(s->c, " " ACL_RIGHTS_LETTERS "\r\n");
	} else {
		conn_write_str(s->c, " \"\"");
		for (const char *p = ACL_RIGHTS_LETTERS; *p != '\0'; p++)
			conn_printf(s->c, " %c", *p);
		conn_write_str(s->c, "\r\n");
	}
	imap_tagged(cmd, "OK", "LISTRIGHTS completed");
}

void
cmd_myrights(struct imap_cmd *cmd)
{
	struct imap_session *s = cmd->s;
	unsigned rights;
	char *name;
	int rc;

	if (cmd->p.n != 1) {
		imap_bad(cmd, "Usage: MYRIGHTS mailbox");
		return;
	}
	if (imap_mailbox_arg(cmd, &cmd->p.args[0], &name) < 0)
		return;
	if ((rc = storage_acl_myrights(s->sv->storage, s->user, name, &rights)) != 0) {
		imap_reply_error(cmd, rc, NULL);
		return;
	}
	write_myrights(s, name, rights);
	imap_tagged(cmd, "OK", "MYRIGHTS completed");
}

void
imap_myrights_write(struct imap_session *s, const char *name)
{
	unsigned rights;

	if (storage_acl_myrights(s->sv->storage, s->user, name, &rights) == 0)
		write_myrights(s, name, rights);
}
