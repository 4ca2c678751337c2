/*
 * IMAP QUOTA (RFC 9208): GETQUOTA, GETQUOTAROOT and SETQUOTA over the
 * storage layer's per-user quota (storage.h). Each user has one quota root
 * named "" that covers all of the user's mailboxes, with the resources
 * STORAGE (units of 1024 octets) and MESSAGE.
 *
 * Another user's mailbox (STORAGE_ACL_PREFIX) is under its owner's root,
 * named by the owner's name: GETQUOTAROOT of it names that root, and
 * GETQUOTA of it answers a user the owner shares a mailbox with. The
 * shared namespace ([acl] shared_prefix) has one root of its own,
 * named STORAGE_ACL_PUBLIC_OWNER, with the limits of [quota]
 * shared_storage and shared_messages; a user who sees any mailbox there
 * may read it.
 *
 * Administrators, the users listed in [quota] admins, may also read and
 * set another user's quota: the root named by that user's name. SETQUOTA
 * writes the limits into the passwd file's quota_storage=/quota_messages=
 * fields (auth_file_set_quota()), where `roost quota set` writes them too;
 * as RFC 9208 4.1.3 says, a resource left out of the list loses its limit
 * (0 there). Everyone else gets NO [NOPERM] from SETQUOTA.
 *
 * STATUS DELETED and DELETED-STORAGE (KiB, rounded up), which RFC 9208
 * asks of servers with QUOTA=RES-MESSAGE and QUOTA=RES-STORAGE, are
 * counted here from the mailbox's records when a client asks for them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "roost/auth.h"
#include "roost/config.h"
#include "roost/conn.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/services.h"
#include "roost/storage.h"

#include "imap_impl.h"

#define QUOTA_MAX_RESOURCES 8 /* pairs in one SETQUOTA list */

static bool
is_admin(struct imap_session *s)
{
	char *const *admins = imap_cfg(s)->quota_admins;

	for (size_t i = 0; admins != NULL && admins[i] != NULL; i++) {
		if (strcasecmp(admins[i], s->user) == 0)
			return true;
	}
	return false;
}

/* Does owner share a mailbox with the session's user (one it may see
 * under STORAGE_ACL_PREFIX)? Then the owner's root, named by the owner's
 * name, is one the user may read (GETQUOTAROOT of that mailbox names it). */
static bool
shares_with(struct imap_session *s, const char *owner)
{
	struct mailbox_info *list = NULL;
	size_t n = 0, pl = strlen(STORAGE_ACL_PREFIX "/"), ol = strlen(owner);
	const char *shared = storage_acl_shared_prefix(s->sv->storage);
	size_t sl = shared != NULL ? strlen(shared) : 0;
	bool public = strcmp(owner, STORAGE_ACL_PUBLIC_OWNER) == 0, found = false;

	if ((!public && !storage_user_valid(owner)) || (public && shared == NULL) ||
	    storage_acl_shared_list(s->sv->storage, s->user, &list, &n) != 0)
		return false;
	for (size_t i = 0; i < n && !found; i++) {
		const char *name = list[i].name;

		if ((list[i].attrs & MBOX_NOSELECT) != 0)
			continue;
		if (public)
			found = strncmp(name, shared, sl) == 0 && name[sl] == '/';
		else
			found = strncmp(name, STORAGE_ACL_PREFIX "/", pl) == 0 &&
			        strncmp(name + pl, owner, ol) == 0 && name[pl + ol] == '/';
	}
	storage_list_free(list, n);
	return found;
}

/* The user whose quota root is named root: "" is the session's own; an
 * administrator may name any user of the passwd file. Sends NO and returns
 * false when there is no such root (for this client). */
static bool
root_user(struct imap_cmd *cmd, const struct imap_arg *a, char *user_r, size_t size)
{
	struct imap_session *s = cmd->s;

	if (!imap_arg_is_astring(a) || a->str == NULL) {
		imap_bad(cmd, "Invalid quota root");
		return false;
	}
	if (a->len == 0) {
		snprintf(user_r, size, "%s", s->user);
		return true;
	}
	if (is_admin(s) && auth_lookup(s->sv->auth, a->str, user_r, size) == 0)
		return true;
	if (shares_with(s, a->str)) {
		snprintf(user_r, size, "%s", a->str);
		return true;
	}
	imap_tagged(cmd, "NO", "[NONEXISTENT] No such quota root");
	return false;
}

/* "* QUOTA root (STORAGE used limit MESSAGE used limit)": the resources
 * that have a limit; STORAGE in KiB, the usage rounded up. */
static void
write_quota(struct imap_session *s, const char *root, const struct storage_quota *q)
{
	struct conn *c = s->c;
	bool sp = false;

	conn_write_str(c, "* QUOTA ");
	imap_write_string(c, root, strlen(root));
	conn_write_str(c, " (");
	if (q->limit_bytes != 0) {
		conn_printf(c, "STORAGE %llu %llu",
		            (unsigned long long)((q->usage.bytes + 1023) / 1024),
		            (unsigned long long)(q->limit_bytes / 1024));
		sp = true;
	}
	if (q->limit_messages != 0)
		conn_printf(c, "%sMESSAGE %llu %llu", sp ? " " : "",
		            (unsigned long long)q->usage.messages,
		            (unsigned long long)q->limit_messages);
	conn_write_str(c, ")\r\n");
}

void
cmd_getquota(struct imap_cmd *cmd)
{
	struct storage_quota q;
	char user[AUTH_MAX_NAME + 1];
	int rc;

	if (cmd->p.n != 1) {
		imap_bad(cmd, "Usage: GETQUOTA quota-root");
		return;
	}
	if (!root_user(cmd, &cmd->p.args[0], user, sizeof(user)))
		return;
	if ((rc = storage_quota_get(cmd->s->sv->storage, user, &q)) != 0) {
		imap_reply_error(cmd, rc, NULL);
		return;
	}
	write_quota(cmd->s, cmd->p.args[0].str, &q);
	imap_tagged(cmd, "OK", "GETQUOTA completed");
}

void
cmd_getquotaroot(struct imap_cmd *cmd)
{
	struct imap_session *s = cmd->s;
	struct mailbox_status st;
	struct storage_quota q;
	char owner[AUTH_MAX_NAME + 1];
	const char *root;
	char *name;
	int rc;

	if (cmd->p.n != 1) {
		imap_bad(cmd, "Usage: GETQUOTAROOT mailbox");
		return;
	}
	if (imap_mailbox_arg(cmd, &cmd->p.args[0], &name) < 0)
		return;
	if ((rc = storage_status(s->sv->storage, s->user, name, &st)) != 0) {
		imap_reply_error(cmd, rc, "Mailbox does not exist");
		return;
	}
	/* another's mailbox is under its owner's root, named by the owner */
	if ((rc = storage_acl_owner(s->sv->storage, s->user, name, owner, sizeof(owner))) != 0)
		snprintf(owner, sizeof(owner), "%s", s->user);
	root = strcmp(owner, s->user) == 0 ? "" : owner;
	if ((rc = storage_quota_get(s->sv->storage, owner, &q)) != 0) {
		imap_reply_error(cmd, rc, NULL);
		return;
	}
	conn_write_str(s->c, "* QUOTAROOT ");
	imap_write_mailbox(s->c, name);
	conn_write_str(s->c, " ");
	imap_write_string(s->c, root, strlen(root));
	conn_write_str(s->c, "\r\n");
	write_quota(s, root, &q);
	imap_tagged(cmd, "OK", "GETQUOTAROOT completed");
}

/* A number of the SETQUOTA list: digits only, at most 2^63 - 1. */
static bool
parse_limit(const struct imap_arg *a, uint64_t *v_r)
{
	uint64_t v = 0;

	if (a->type != ARG_ATOM || a->len == 0 || a->len > 19)
		return false;
	for (size_t i = 0; i < a->len; i++) {
		if (a->str[i] < '0' || a->str[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(a->str[i] - '0');
	}
	if (v > (uint64_t)INT64_MAX)
		return false;
	*v_r = v;
	return true;
}

void
cmd_setquota(struct imap_cmd *cmd)
{
	struct imap_session *s = cmd->s;
	const struct imap_arg *list;
	struct storage_quota q;
	char user[AUTH_MAX_NAME + 1];
	int64_t storage = 0, messages = 0;
	bool seen_storage = false, seen_messages = false;
	const char *path;
	int rc;

	if (cmd->p.n != 2 || cmd->p.args[1].type != ARG_LIST) {
		imap_bad(cmd, "Usage: SETQUOTA quota-root (resource limit ...)");
		return;
	}
	list = &cmd->p.args[1];
	if (list->n % 2 != 0 || list->n > 2 * QUOTA_MAX_RESOURCES) {
		imap_bad(cmd, "Usage: SETQUOTA quota-root (resource limit ...)");
		return;
	}
	for (size_t i = 0; i < list->n; i += 2) {
		const struct imap_arg *r = &list->list[i];
		uint64_t v;

		if (r->type != ARG_ATOM || !parse_limit(&list->list[i + 1], &v)) {
			imap_bad(cmd, "Invalid resource limit");
			return;
		}
		if (imap_arg_atom_eq(r, "STORAGE") && !seen_storage) {
			if (v > (uint64_t)INT64_MAX / 1024) {
				imap_bad(cmd, "Invalid resource limit");
				return;
			}
			storage = (int64_t)v * 1024;
			seen_storage = true;
		} else if (imap_arg_atom_eq(r, "MESSAGE") && !seen_messages) {
			messages = (int64_t)v;
			seen_messages = true;
		} else {
			imap_tagged(cmd, "NO", "[CANNOT] Unsupported or repeated quota resource");
			return;
		}
	}
	if (!is_admin(s)) {
		imap_tagged(cmd, "NO", "[NOPERM] Only administrators may set quotas");
		return;
	}
	if (!root_user(cmd, &cmd->p.args[0], user, sizeof(user)))
		return;
	if (strcmp(user, STORAGE_ACL_PUBLIC_OWNER) == 0) {
		/* no passwd line: the config's [quota] shared_* set its limits */
		imap_tagged(cmd, "NO",
		            "[CANNOT] The shared namespace's quota is set in the config");
		return;
	}
	path = auth_file_path(s->sv->auth);
	if ((rc = auth_file_set_quota(path, user, storage, messages)) != 0) {
		imap_reply_error(cmd, rc == ROOST_ENOTFOUND ? ROOST_EIO : rc, NULL);
		return;
	}
	conn_log(s->c, LOG_LEVEL_INFO, "event=setquota root_user=%s storage=%lld messages=%lld",
	         LOG_QUOTE(user), (long long)storage, (long long)messages);
	if ((rc = storage_quota_get(s->sv->storage, user, &q)) == 0)
		write_quota(s, cmd->p.args[0].str, &q);
	imap_tagged(cmd, "OK", "SETQUOTA completed");
}

int
imap_quota_deleted(struct imap_session *s, const char *name, uint64_t *count_r, uint64_t *bytes_r)
{
	struct mailbox *mb = NULL;
	struct msg_record *recs = NULL;
	uint64_t modseq;
	size_t n = 0;
	int rc;

	*count_r = *bytes_r = 0;
	if ((rc = mailbox_open(s->sv->storage, s->user, name, MAILBOX_READONLY, &mb)) != 0)
		return rc;
	if ((rc = mailbox_records(mb, &recs, &n, &modseq)) == 0) {
		for (size_t i = 0; i < n; i++) {
			if ((recs[i].flags & MSG_DELETED) != 0) {
				(*count_r)++;
				*bytes_r += recs[i].size;
			}
		}
	}
	free(recs);
	mailbox_close(&mb);
	return rc;
}
