/*
 * METADATA and METADATA-SERVER (RFC 5464): GETMETADATA with MAXSIZE and
 * DEPTH, SETMETADATA, over storage_metadata_*() (the names, limits and
 * where the entries live are storage's). The mailbox "" names the server,
 * whose entries are kept per user. Values are strings without NUL: the
 * parser takes literal8 in APPEND only, so a binary value cannot be set
 * (BAD), and none is ever sent.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "roost/conn.h"
#include "roost/error.h"
#include "roost/services.h"
#include "roost/storage.h"

#include "imap_impl.h"

/* Entries one command may name (GETMETADATA's list, SETMETADATA's pairs). */
#define META_MAX_ARGS STORAGE_METADATA_MAX_ENTRIES

/* The mailbox argument: "" for the server, else a mailbox name. */
static int
meta_mailbox(struct imap_cmd *cmd, const struct imap_arg *a, char **name_r)
{
	if (imap_arg_is_string(a) && a->len == 0) {
		*name_r = "";
		return 0;
	}
	return imap_mailbox_arg(cmd, a, name_r);
}

static bool
meta_internal(const char *name)
{
	return strncasecmp(name, STORAGE_METADATA_INTERNAL, strlen(STORAGE_METADATA_INTERNAL)) == 0;
}

static void
meta_error(struct imap_cmd *cmd, int rc)
{
	switch (rc) {
	case ROOST_ETOOBIG:
		imap_tagged(cmd, "NO", "[METADATA MAXSIZE %u] Value too long",
		            STORAGE_METADATA_MAX_VALUE);
		break;
	case ROOST_EOVERQUOTA:
		imap_tagged(cmd, "NO", "[METADATA TOOMANY] Too many or too large annotations");
		break;
	case ROOST_EINVAL:
		imap_bad(cmd, "Invalid entry name");
		break;
	default:
		imap_reply_error(cmd, rc, "Mailbox does not exist");
	}
}

void
cmd_setmetadata(struct imap_cmd *cmd)
{
	const struct imap_arg *l;
	const char **names;
	const uint8_t **values;
	size_t *lens, n;
	char *mbox;
	int rc;

	if (cmd->p.n != 2 || cmd->p.args[1].type != ARG_LIST || cmd->p.args[1].n == 0 ||
	    cmd->p.args[1].n % 2 != 0) {
		imap_bad(cmd, "Usage: SETMETADATA mailbox (entry value ...)");
		return;
	}
	l = &cmd->p.args[1];
	n = l->n / 2;
	if (n > META_MAX_ARGS) {
		imap_tagged(cmd, "NO", "[METADATA TOOMANY] Too many entries");
		return;
	}
	if (meta_mailbox(cmd, &cmd->p.args[0], &mbox) < 0)
		return;
	names = arena_alloc(&cmd->arena, (n + 1) * sizeof(*names));
	values = arena_alloc(&cmd->arena, (n + 1) * sizeof(*values));
	lens = arena_alloc(&cmd->arena, (n + 1) * sizeof(*lens));
	for (size_t i = 0; i < n; i++) {
		const struct imap_arg *e = &l->list[2 * i], *v = &l->list[2 * i + 1];

		if (!imap_arg_is_string(e)) {
			imap_bad(cmd, "Invalid entry name");
			return;
		}
		names[i] = e->str;
		if (meta_internal(e->str)) {
			imap_tagged(cmd, "NO", "[NOPERM] The server keeps that entry for itself");
			return;
		}
		if (imap_arg_is_nil(v)) {
			values[i] = NULL;
			lens[i] = 0;
		} else if (v->type == ARG_LIST || v->type == ARG_ATOM) {
			imap_bad(cmd, "Invalid value: a string or NIL");
			return;
		} else if (v->len > STORAGE_METADATA_MAX_VALUE) {
			/* checked before the bytes are looked at: a spooled
			 * literal has none in memory */
			meta_error(cmd, ROOST_ETOOBIG);
			return;
		} else if (v->str == NULL) {
			imap_bad(cmd, "Invalid value");
			return;
		} else {
			values[i] = (const uint8_t *)v->str;
			lens[i] = v->len;
		}
	}
	rc = storage_metadata_set(cmd->s->sv->storage, cmd->s->user, mbox, names, values, lens, n);
	if (rc != 0) {
		meta_error(cmd, rc);
		return;
	}
	imap_tagged(cmd, "OK", "SETMETADATA completed");
}

/* Start the METADATA response, or the next entry of it. */
static void
meta_open(struct imap_session *s, const char *mbox, size_t *shown)
{
	if ((*shown)++ == 0) {
		conn_write_str(s->c, "* METADATA ");
		imap_write_mbox(s, mbox); /* UTF-8 once the session enabled it */
		conn_write_str(s->c, " (");
	} else {
		conn_write_str(s->c, " ");
	}
}

/* GETMETADATA's options: MAXSIZE n, DEPTH 0 / 1 / infinity. */
static bool
get_options(const struct imap_arg *o, uint64_t *maxsize_r, int *depth_r)
{
	if (o->n % 2 != 0 || o->n == 0)
		return false;
	for (size_t i = 0; i < o->n; i += 2) {
		const struct imap_arg *v = &o->list[i + 1];

		if (imap_arg_atom_eq(&o->list[i], "MAXSIZE") && v->type == ARG_ATOM) {
			char *end;

			if (v->len == 0 || v->len > 10 || v->str[0] < '0' || v->str[0] > '9')
				return false;
			*maxsize_r = strtoull(v->str, &end, 10);
			if (*end != '\0' || *maxsize_r > UINT32_MAX)
				return false;
		} else if (imap_arg_atom_eq(&o->list[i], "DEPTH")) {
			if (imap_arg_atom_eq(v, "0"))
				*depth_r = 0;
			else if (imap_arg_atom_eq(v, "1"))
				*depth_r = 1;
			else if (imap_arg_atom_eq(v, "infinity"))
				*depth_r = -1;
			else
				return false;
		} else {
			return false;
		}
	}
	return true;
}

void
cmd_getmetadata(struct imap_cmd *cmd)
{
	const struct imap_arg *a = cmd->p.args, *entries;
	uint64_t maxsize = UINT64_MAX, longest = 0;
	size_t n = cmd->p.n, ne, shown = 0;
	int depth = 0, rc = 0;
	char *mbox;
	struct conn *c = cmd->s->c;

	if (n >= 1 && a[0].type == ARG_LIST) {
		if (!get_options(&a[0], &maxsize, &depth)) {
			imap_bad(cmd, "Invalid options: MAXSIZE n, DEPTH 0/1/infinity");
			return;
		}
		a++;
		n--;
	}
	if (n != 2) {
		imap_bad(cmd, "Usage: GETMETADATA [(options)] mailbox entry|(entries)");
		return;
	}
	entries = a[1].type == ARG_LIST ? a[1].list : &a[1];
	ne = a[1].type == ARG_LIST ? a[1].n : 1;
	if (ne == 0 || ne > META_MAX_ARGS) {
		imap_bad(cmd, "Invalid entry list");
		return;
	}
	for (size_t i = 0; i < ne; i++) {
		if (!imap_arg_is_string(&entries[i])) {
			imap_bad(cmd, "Invalid entry name");
			return;
		}
	}
	if (meta_mailbox(cmd, &a[0], &mbox) < 0)
		return;
	for (size_t i = 0; i < ne && rc == 0; i++) {
		struct metadata_entry *l = NULL;
		size_t nl = 0;

		bool exact = false;

		rc = storage_metadata_get(cmd->s->sv->storage, cmd->s->user, mbox, entries[i].str,
		                          depth, &l, &nl);
		for (size_t k = 0; rc == 0 && k < nl; k++)
			exact |=
			    strcasecmp(l[k].name, entries[i].str) == 0 && !meta_internal(l[k].name);
		if (rc == 0 && !exact && strcasecmp(entries[i].str, "/private") != 0 &&
		    strcasecmp(entries[i].str, "/shared") != 0) {
			/* an entry asked for by name that has no value: NIL */
			meta_open(cmd->s, mbox, &shown);
			imap_write_string(c, entries[i].str, entries[i].len);
			conn_write_str(c, " NIL");
		}
		for (size_t k = 0; rc == 0 && k < nl; k++) {
			if (l[k].len > maxsize) {
				/* RFC 5464 4.2.1: left out, its size told */
				if (l[k].len > longest)
					longest = l[k].len;
				continue;
			}
			if (memchr(l[k].value, '\0', l[k].len) != NULL)
				continue; /* never set over IMAP; not sendable as a string */
			if (meta_internal(l[k].name))
				continue;
			meta_open(cmd->s, mbox, &shown);
			imap_write_string(c, l[k].name, strlen(l[k].name));
			conn_write_str(c, " ");
			imap_write_string(c, (const char *)l[k].value, l[k].len);
		}
		storage_metadata_free(l, nl);
	}
	if (shown > 0)
		conn_write_str(c, ")\r\n");
	if (rc != 0) {
		meta_error(cmd, rc);
		return;
	}
	if (longest > 0)
		imap_tagged(cmd, "OK", "[METADATA LONGENTRIES %llu] GETMETADATA completed",
		            (unsigned long long)longest);
	else
		imap_tagged(cmd, "OK", "GETMETADATA completed");
}
