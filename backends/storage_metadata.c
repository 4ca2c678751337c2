/*
 * Mailbox and server metadata (RFC 5464) over the backends' one record per
 * mailbox: names checked and lower-cased, limits applied, and the record's
 * format, here once for every backend. A record is "RM1\n" followed by
 * entries ascending by name, each name NUL-terminated and then its value
 * length (4 bytes, big-endian) and value. Small by construction (the
 * limits in storage.h), so it is read and written whole.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "roost/error.h"
#include "roost/storage_impl.h"
#include "storage_private.h"
#include "roost/xalloc.h"

#define REC_MAGIC "RM1\n"

bool
storage_metadata_name_valid(const char *name, char canon[STORAGE_METADATA_MAX_NAME + 1])
{
	size_t len = strlen(name), skip;

	if (len > STORAGE_METADATA_MAX_NAME)
		return false;
	if (strncasecmp(name, "/private/", 9) == 0)
		skip = 9;
	else if (strncasecmp(name, "/shared/", 8) == 0)
		skip = 8;
	else
		return false;
	if (len == skip || name[len - 1] == '/')
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		/* RFC 5464 3.2: no wildcards, no empty component, printable */
		if (c <= 0x20 || c >= 0x7f || c == '*' || c == '%' ||
		    (c == '/' && i > 0 && name[i - 1] == '/'))
			return false;
		canon[i] = (char)tolower(c);
	}
	canon[len] = '\0';
	return true;
}

/* The entries of record rec[0..len) (none when rec is NULL). */
static int
rec_decode(const uint8_t *rec, size_t len, struct metadata_entry **list_r, size_t *n_r)
{
	struct metadata_entry *v = NULL;
	size_t n = 0, cap = 0, off = sizeof(REC_MAGIC) - 1;

	*list_r = NULL;
	*n_r = 0;
	if (rec == NULL)
		return 0;
	if (len < off || memcmp(rec, REC_MAGIC, off) != 0)
		return ROOST_EIO;
	while (off < len) {
		const uint8_t *nul = memchr(rec + off, '\0', len - off);
		size_t nlen, vlen;

		if (nul == NULL || (size_t)(nul - rec) + 5 > len)
			goto bad;
		nlen = (size_t)(nul - (rec + off));
		vlen = (size_t)nul[1] << 24 | (size_t)nul[2] << 16 | (size_t)nul[3] << 8 | nul[4];
		if (nlen == 0 || nlen > STORAGE_METADATA_MAX_NAME ||
		    vlen > len - (size_t)(nul - rec) - 5)
			goto bad;
		if (n == cap) {
			cap = cap == 0 ? 16 : cap * 2;
			v = xreallocarray(v, cap, sizeof(*v));
		}
		v[n].name = xstrndup((const char *)rec + off, nlen);
		v[n].len = vlen;
		v[n].value = xmalloc(vlen + 1);
		memcpy(v[n].value, nul + 5, vlen);
		v[n].value[vlen] = '\0';
		n++;
		off = (size_t)(nul - rec) + 5 + vlen;
	}
	*list_r = v;
	*n_r = n;
	return 0;
bad:
	storage_metadata_free(v, n);
	return ROOST_EIO;
}

void
storage_metadata_free(struct metadata_entry *list, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(list[i].name);
		free(list[i].value);
	}
	free(list);
}

struct set_arg {
	const char *const *names; /* canonical */
	const uint8_t *const *values;
	const size_t *lens;
	size_t n;
	/* what the user's other mailboxes (and server part) hold */
	size_t other_entries, other_bytes;
};

/* Entries and bytes (names and values, as the limits count them) of one
 * record; a record that does not decode counts nothing. */
static void
rec_usage(const uint8_t *rec, size_t len, size_t *entries, size_t *bytes)
{
	struct metadata_entry *v;
	size_t n;

	if (rec_decode(rec, len, &v, &n) != 0)
		return;
	for (size_t i = 0; i < n; i++)
		*bytes += strlen(v[i].name) + 5 + v[i].len;
	*entries += n;
	storage_metadata_free(v, n);
}

/* The usage of every record of user but target's ("" = the server's). */
static int
user_usage(struct storage *st, const char *user, const char *target, size_t *entries, size_t *bytes)
{
	struct mailbox_info *list = NULL;
	struct buf rec = BUF_INIT(0);
	size_t n = 0;
	int rc;

	*entries = *bytes = 0;
	if ((rc = st->ops->list(st, user, &list, &n)) != 0)
		return rc;
	for (size_t i = 0; i <= n && rc == 0; i++) {
		const char *name = i < n ? list[i].name : "";

		if (strcmp(name, target) == 0 ||
		    (i < n && (list[i].attrs & (MBOX_NONEXISTENT | MBOX_NOSELECT)) != 0))
			continue;
		buf_reset(&rec);
		rc = st->ops->meta_get(st, user, name, &rec);
		if (rc == 0)
			rec_usage(rec.data, rec.len, entries, bytes);
		else if (rc == ROOST_ENOTFOUND)
			rc = 0; /* none, or a mailbox gone meanwhile */
	}
	buf_free(&rec);
	storage_list_free(list, n);
	return rc;
}

static int
entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct metadata_entry *)a)->name,
	              ((const struct metadata_entry *)b)->name);
}

/* meta_update's fn: old record plus the changes, limits checked. */
static int
apply_set(const uint8_t *old, size_t old_len, struct buf *out, void *arg)
{
	struct set_arg *a = arg;
	struct metadata_entry *v;
	size_t n, total = 0, k = 0, old_n = 0, old_total = 0;
	int rc;

	if ((rc = rec_decode(old, old_len, &v, &n)) != 0)
		return rc;
	rec_usage(old, old_len, &old_n, &old_total);
	v = xreallocarray(v, n + a->n + 1, sizeof(*v));
	for (size_t i = 0; i < a->n; i++) {
		size_t j;

		for (j = 0; j < n && strcmp(v[j].name, a->names[i]) != 0; j++)
			;
		if (j < n) {
			free(v[j].value);
			v[j].value = NULL;
		} else if (a->values[i] != NULL) {
			v[n].name = xstrdup(a->names[i]);
			v[n].value = NULL;
			j = n++;
		} else {
			continue;
		}
		if (a->values[i] != NULL) {
			v[j].len = a->lens[i];
			v[j].value = xmalloc(a->lens[i] + 1);
			memcpy(v[j].value, a->values[i], a->lens[i]);
		}
	}
	/* drop the removed ones */
	for (size_t i = 0; i < n; i++) {
		if (v[i].value == NULL) {
			free(v[i].name);
			continue;
		}
		v[k++] = v[i];
		total += strlen(v[i].name) + 5 + v[i].len;
	}
	n = k;
	/* a change that frees room always passes, so a user past a limit
	 * (lowered, or passed by a race) can get back under it */
	if ((n > old_n || total > old_total) &&
	    (n > STORAGE_METADATA_MAX_ENTRIES || total > STORAGE_METADATA_MAX_TOTAL ||
	     n + a->other_entries > STORAGE_METADATA_MAX_USER_ENTRIES ||
	     total + a->other_bytes > STORAGE_METADATA_MAX_USER_TOTAL)) {
		storage_metadata_free(v, n);
		return ROOST_EOVERQUOTA;
	}
	if (n > 1)
		qsort(v, n, sizeof(*v), entry_cmp);
	if (n > 0)
		buf_append_str(out, REC_MAGIC);
	for (size_t i = 0; i < n; i++) {
		uint8_t l[4] = {(uint8_t)(v[i].len >> 24), (uint8_t)(v[i].len >> 16),
		                (uint8_t)(v[i].len >> 8), (uint8_t)v[i].len};

		buf_append(out, v[i].name, strlen(v[i].name) + 1);
		buf_append(out, l, 4);
		buf_append(out, v[i].value, v[i].len);
	}
	storage_metadata_free(v, n);
	return 0;
}

/*
 * The owner and its canonical mailbox name (or "" for the user's server
 * part); the mailbox exists. Another's mailbox (named under
 * STORAGE_ACL_PREFIX) needs need there (storage_acl.c): its /shared
 * entries are the owner's, read with r and written with w (as Cyrus
 * does); its /private entries are the owner's own and never shown to
 * another user, nor kept per reader (a SETMETADATA of one is refused).
 */
static int
meta_target(struct storage *st, const char *user, const char *mailbox, unsigned need,
            struct acl_target *t)
{
	if (mailbox[0] != '\0')
		return storage_acl_target(st, user, mailbox, need, false, t);
	if (!storage_user_valid(user))
		return ROOST_EINVAL;
	snprintf(t->owner, sizeof(t->owner), "%s", user);
	t->name[0] = '\0';
	t->foreign = false;
	return 0;
}

int
storage_metadata_set(struct storage *st, const char *user, const char *mailbox,
                     const char *const *names, const uint8_t *const *values, const size_t *lens,
                     size_t n)
{
	struct acl_target t;
	char(*cn)[STORAGE_METADATA_MAX_NAME + 1];
	const char **cp;
	struct set_arg a = {.values = values, .lens = lens, .n = n};
	int rc;

	if (st->ops->meta_update == NULL)
		return ROOST_ENOTSUP;
	if (n > STORAGE_METADATA_MAX_ENTRIES)
		return ROOST_EOVERQUOTA;
	for (size_t i = 0; i < n; i++) {
		if (values[i] != NULL && lens[i] > STORAGE_METADATA_MAX_VALUE)
			return ROOST_ETOOBIG;
	}
	if ((rc = meta_target(st, user, mailbox, ACL_WRITE, &t)) != 0)
		return rc;
	cn = xcalloc(n + 1, sizeof(*cn));
	cp = xcalloc(n + 1, sizeof(*cp));
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (!storage_metadata_name_valid(names[i], cn[i]))
			rc = ROOST_EINVAL;
		else if (t.foreign && strncmp(cn[i], "/private/", 9) == 0)
			rc = ROOST_EPERM;
		cp[i] = cn[i];
	}
	a.names = cp;
	if (rc == 0)
		rc = user_usage(st, t.owner, t.name, &a.other_entries, &a.other_bytes);
	if (rc == 0)
		rc = st->ops->meta_update(st, t.owner, t.name, apply_set, &a);
	if (rc == 0) /* NOTIFY's MetadataChange */
		storage_notify_metadata(st, t.owner, t.name, cp, n);
	free(cp);
	free(cn);
	return rc;
}

/* Is name the prefix itself (depth any), a child (depth 1) or below it
 * (depth -1)? */
static bool
under(const char *name, const char *prefix, int depth)
{
	size_t pl = strlen(prefix);

	if (strcmp(name, prefix) == 0)
		return true;
	if (depth == 0 || strncmp(name, prefix, pl) != 0 || name[pl] != '/')
		return false;
	return depth < 0 || strchr(name + pl + 1, '/') == NULL;
}

int
storage_metadata_get(struct storage *st, const char *user, const char *mailbox, const char *prefix,
                     int depth, struct metadata_entry **list_r, size_t *n_r)
{
	char cprefix[STORAGE_METADATA_MAX_NAME + 1];
	struct acl_target t;
	struct buf rec = BUF_INIT(0);
	struct metadata_entry *v;
	size_t n, k = 0;
	int rc;

	*list_r = NULL;
	*n_r = 0;
	if (st->ops->meta_get == NULL)
		return ROOST_ENOTSUP;
	/* the two roots may be asked for too, with a depth */
	if (strcasecmp(prefix, "/private") == 0 || strcasecmp(prefix, "/shared") == 0) {
		for (size_t i = 0; prefix[i] != '\0'; i++)
			cprefix[i] = (char)tolower((unsigned char)prefix[i]);
		cprefix[strlen(prefix)] = '\0';
	} else if (!storage_metadata_name_valid(prefix, cprefix)) {
		return ROOST_EINVAL;
	}
	if ((rc = meta_target(st, user, mailbox, ACL_READ, &t)) != 0)
		return rc;
	rc = st->ops->meta_get(st, t.owner, t.name, &rec);
	if (rc == ROOST_ENOTFOUND) {
		buf_free(&rec);
		return 0;
	}
	if (rc == 0)
		rc = rec_decode(rec.data, rec.len, &v, &n);
	buf_free(&rec);
	if (rc != 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		if (under(v[i].name, cprefix, depth) &&
		    !(t.foreign && strncmp(v[i].name, "/private/", 9) == 0)) {
			v[k++] = v[i];
		} else {
			free(v[i].name);
			free(v[i].value);
		}
	}
	*list_r = v;
	*n_r = k;
	return 0;
}

/*
 * Entries the wrapper keeps for itself in the same records (the ACL, its
 * index): their names start with "/" but not with "/private/" or
 * "/shared/", so storage_metadata_name_valid() never lets a client name
 * them and storage_metadata_get() never lists them; they count towards
 * the limits like any entry.
 */
int
storage_meta_entry_get(struct storage *st, const char *user, const char *canon, const char *entry,
                       struct buf *value, bool *found_r)
{
	struct buf rec = BUF_INIT(0);
	struct metadata_entry *v = NULL;
	size_t n = 0;
	int rc;

	*found_r = false;
	rc = st->ops->meta_get(st, user, canon, &rec);
	if (rc == ROOST_ENOTFOUND) {
		/* no record: the mailbox exists without one, or not at all */
		struct mailbox_status s;

		rc = canon[0] == '\0' ? 0 : st->ops->status(st, user, canon, &s);
	} else if (rc == 0 && (rc = rec_decode(rec.data, rec.len, &v, &n)) == 0) {
		for (size_t i = 0; i < n; i++) {
			if (strcmp(v[i].name, entry) == 0) {
				buf_append(value, v[i].value, v[i].len);
				*found_r = true;
			}
		}
		storage_metadata_free(v, n);
	}
	buf_free(&rec);
	return rc;
}

int
storage_meta_entries(struct storage *st, const char *user, const char *canon, const char *prefix,
                     struct metadata_entry **list_r, size_t *n_r)
{
	struct buf rec = BUF_INIT(0);
	struct metadata_entry *v = NULL;
	size_t n = 0, k = 0, plen = strlen(prefix);
	int rc;

	*list_r = NULL;
	*n_r = 0;
	rc = st->ops->meta_get(st, user, canon, &rec);
	if (rc == ROOST_ENOTFOUND)
		rc = 0;
	else if (rc == 0 && (rc = rec_decode(rec.data, rec.len, &v, &n)) == 0) {
		for (size_t i = 0; i < n; i++) {
			if (strncmp(v[i].name, prefix, plen) == 0) {
				v[k++] = v[i];
			} else {
				free(v[i].name);
				free(v[i].value);
			}
		}
		if (k == 0) {
			free(v);
			v = NULL;
		}
		*list_r = v;
		*n_r = k;
	}
	buf_free(&rec);
	return rc;
}

struct entries_arg {
	const char *const *entries;
	size_t n;
	int (*fn)(size_t i, const uint8_t *old, size_t old_len, struct buf *new, bool *remove,
	          void *arg);
	void *arg;
};

/* meta_update's fn for reserved entries: the others kept as they are. */
static int
apply_entries(const uint8_t *old, size_t old_len, struct buf *out, void *arg)
{
	struct entries_arg *a = arg;
	struct metadata_entry *v;
	struct buf *nv = xcalloc(a->n, sizeof(*nv));
	const uint8_t **values = xcalloc(a->n, sizeof(*values));
	size_t *lens = xcalloc(a->n, sizeof(*lens)), n;
	static const uint8_t empty[1];
	int rc;

	if ((rc = rec_decode(old, old_len, &v, &n)) != 0)
		goto out;
	for (size_t i = 0; i < a->n && rc == 0; i++) {
		const uint8_t *cur = NULL;
		size_t cur_len = 0;
		bool remove = false;

		for (size_t j = 0; j < n; j++) {
			if (strcmp(v[j].name, a->entries[i]) == 0) {
				cur = v[j].value;
				cur_len = v[j].len;
			}
		}
		rc = a->fn(i, cur, cur_len, &nv[i], &remove, a->arg);
		if (rc == 0 && nv[i].len > STORAGE_METADATA_MAX_VALUE)
			rc = ROOST_ETOOBIG;
		values[i] = remove ? NULL : nv[i].len > 0 ? nv[i].data : empty;
		lens[i] = nv[i].len;
	}
	if (rc == 0) {
		/* apply_set() re-decodes old; its limits are per mailbox here */
		struct set_arg s = {.names = a->entries, .values = values, .lens = lens, .n = a->n};

		rc = apply_set(old, old_len, out, &s);
	}
	storage_metadata_free(v, n);
out:
	for (size_t i = 0; i < a->n; i++)
		buf_free(&nv[i]);
	free(nv);
	free(values);
	free(lens);
	return rc;
}

int
storage_meta_entries_update(struct storage *st, const char *user, const char *canon,
                            const char *const *entries, size_t n,
                            int (*fn)(size_t i, const uint8_t *old, size_t old_len, struct buf *new,
                                      bool *remove, void *arg),
                            void *arg)
{
	struct entries_arg a = {entries, n, fn, arg};

	if (n == 0)
		return 0;
	return st->ops->meta_update(st, user, canon, apply_entries, &a);
}

struct entry_arg {
	int (*fn)(const uint8_t *old, size_t old_len, struct buf *new, bool *remove, void *arg);
	void *arg;
};

static int
one_entry(size_t i, const uint8_t *old, size_t old_len, struct buf *new, bool *remove, void *arg)
{
	struct entry_arg *a = arg;

	return a->fn(old, old_len, new, remove, a->arg);
}

int
storage_meta_entry_update(struct storage *st, const char *user, const char *canon,
                          const char *entry,
                          int (*fn)(const uint8_t *old, size_t old_len, struct buf *new,
                                    bool *remove, void *arg),
                          void *arg)
{
	struct entry_arg a = {fn, arg};

	return storage_meta_entries_update(st, user, canon, &entry, 1, one_entry, &a);
}
