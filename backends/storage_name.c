/*
 * Mailbox names, user names and keywords as the wrapper checks them before
 * any backend runs: the one definition of a valid name (Maildir++'s stored
 * length on every backend), the canonical INBOX spelling, and the checks of
 * a message to store and of a UID set.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "roost/auth.h"
#include "roost/config.h"
#include "roost/error.h"
#include "roost/mutf7.h"
#include "roost/storage.h"
#include "roost/storage_impl.h"
#include "roost/utf8.h"

#include "storage_private.h"

/*
 * The stored length is measured as Maildir++ spells the name (storage.h),
 * on every backend: '.' (its on-disk hierarchy separator) and '%' are
 * written "%2e" and "%25" there, three bytes each. A name one backend
 * takes, the other takes too, and a hierarchy too long to store is refused
 * before any parent is created.
 */
bool
storage_name_valid(const char *name)
{
	size_t len, comp = 0, stored;

	if (name == NULL)
		return false;
	len = strnlen(name, STORAGE_MAX_NAME + 1);
	if (len == 0 || len > STORAGE_MAX_NAME || !utf8_text_valid(name, len))
		return false;
	if (mutf7_encoded_len(name, len, &stored) < 0)
		return false;
	for (size_t i = 0; i <= len; i++) {
		if (i == len || name[i] == '/') {
			if (comp == 0)
				return false; /* empty component, leading or trailing '/' */
			/* "." and ".." read as paths to too many programs */
			if ((comp == 1 && name[i - 1] == '.') ||
			    (comp == 2 && name[i - 1] == '.' && name[i - 2] == '.'))
				return false;
			comp = 0;
			continue;
		}
		if (name[i] == '.' || name[i] == '%')
			stored += 2;
		comp++;
	}
	return stored <= STORAGE_MAX_NAME_STORED;
}

/* The rule of the passwd file and `roost user`, so that both agree. */
bool
storage_user_valid(const char *user)
{
	return auth_user_name_valid(user);
}

/* An IMAP atom (RFC 3501 flag-keyword): no atom-specials, no '\'. */
bool
storage_keyword_valid(const char *kw)
{
	size_t len;

	if (kw == NULL)
		return false;
	len = strnlen(kw, STORAGE_MAX_KEYWORD_LEN + 1);
	if (len == 0 || len > STORAGE_MAX_KEYWORD_LEN)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)kw[i];

		if (c <= 0x20 || c >= 0x7f || strchr("(){%*\"\\]", c) != NULL)
			return false;
	}
	return true;
}

/* Validate name and write its canonical spelling (INBOX in capitals,
 * also as the first component of a child) into out. */
int
storage_name_canon(const char *name, char out[STORAGE_MAX_NAME + 1])
{
	size_t len;

	if (!storage_name_valid(name))
		return ROOST_EINVAL;
	len = strlen(name);
	memcpy(out, name, len + 1);
	if (len >= 5 && strncasecmp(name, "INBOX", 5) == 0 && (len == 5 || name[5] == '/'))
		memcpy(out, "INBOX", 5);
	return 0;
}

int
storage_user_name_canon(const char *user, const char *name, char out[STORAGE_MAX_NAME + 1])
{
	if (!storage_user_valid(user))
		return ROOST_EINVAL;
	return storage_name_canon(name, out);
}

bool
storage_name_is_inbox(const char *canon)
{
	return strcmp(canon, "INBOX") == 0;
}

int
storage_keywords_check(const char *const *kw, size_t n)
{
	if (n > 0 && kw == NULL)
		return ROOST_EINVAL;
	if (n > STORAGE_MAX_KEYWORDS)
		return ROOST_ETOOBIG;
	for (size_t i = 0; i < n; i++) {
		if (!storage_keyword_valid(kw[i]))
			return ROOST_EINVAL;
	}
	return 0;
}

int64_t
msg_input_date(const struct msg_input *msg)
{
	if (msg->has_internal_date || msg->internal_date != 0)
		return msg->internal_date;
	return (int64_t)time(NULL);
}

int
storage_msg_input_check(const struct storage *st, const struct msg_input *msg)
{
	uint64_t max = st->cfg != NULL ? st->cfg->max_message_size : 0;

	if (msg == NULL || (msg->flags & ~MSG_FLAGS_ALL) != 0)
		return ROOST_EINVAL;
	if (msg->fd < 0 && msg->data == NULL && msg->len > 0)
		return ROOST_EINVAL;
	if (max != 0 && msg->len > max)
		return ROOST_ETOOBIG;
	return storage_keywords_check(msg->keywords, msg->n_keywords);
}

int
storage_uids_check(const uint32_t *uids, size_t n)
{
	if (n > 0 && uids == NULL)
		return ROOST_EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (uids[i] == 0 || (i > 0 && uids[i] <= uids[i - 1]))
			return ROOST_EINVAL;
	}
	return 0;
}

bool
storage_name_is_child(const char *name, const char *parent)
{
	size_t pl = strlen(parent);

	return strncmp(name, parent, pl) == 0 && name[pl] == '/';
}

int
storage_name_parents(const char *name, int (*fn)(const char *parent, void *arg), void *arg)
{
	char buf[STORAGE_MAX_NAME + 1];
	size_t len = strlen(name);
	int rc;

	if (len > STORAGE_MAX_NAME)
		return ROOST_EINVAL;
	memcpy(buf, name, len + 1);
	for (size_t i = 0; i < len; i++) {
		if (buf[i] != '/')
			continue;
		buf[i] = '\0';
		if ((rc = fn(buf, arg)) != 0)
			return rc;
		buf[i] = '/';
	}
	return 0;
}
