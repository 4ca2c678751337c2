#ifndef ROOST_IMAPURL_H
#define ROOST_IMAPURL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * IMAP URLs naming one message or a part of it (RFC 5092 imessagepart),
 * with the URLAUTH parts of RFC 4467 (";EXPIRE=", ";URLAUTH=access" and the
 * ":mechanism:token" verifier). The forms accepted:
 *
 *   imap://user[;AUTH=x]@host[:port]/mailbox[;UIDVALIDITY=n]/;UID=n
 *       [/;SECTION=s][/;PARTIAL=off[.len]][;EXPIRE=t][;URLAUTH=access[:mech:token]]
 *   /mailbox[;UIDVALIDITY=n]/;UID=n...      (path-absolute: the session's server and user)
 *   ;UID=n... and /;UID=n...                (relative to the selected mailbox)
 *
 * Keywords are matched without regard to case. Percent-escapes are decoded
 * in the user, mailbox, section and access user; an escape of NUL, a bad
 * escape, a control character or a byte outside the grammar refuses the
 * URL. Pure functions, thread-safe.
 */

/* Bytes of a URL: longer ones are refused before anything is decoded. */
#define IMAPURL_MAX 4096
#define IMAPURL_MAX_DEPTH 32 /* part numbers in a section */

enum imapurl_access {
	IMAPURL_ACCESS_NONE,      /* no ;URLAUTH= */
	IMAPURL_ACCESS_SUBMIT,    /* "submit+" user: a submission server for that user */
	IMAPURL_ACCESS_USER,      /* "user+" user: that user alone */
	IMAPURL_ACCESS_AUTHUSER,  /* any authenticated user */
	IMAPURL_ACCESS_ANONYMOUS, /* anyone */
};

/* The section of a URL, as BODY[section] has it (HEADER.FIELDS is not
 * taken in a URL). */
enum imapurl_sec { IMAPURL_SEC_ALL, IMAPURL_SEC_HEADER, IMAPURL_SEC_TEXT, IMAPURL_SEC_MIME };

struct imapurl {
	bool absolute;        /* "imap://" form: user and host set */
	char user[256];       /* decoded; "" when absent */
	char host[256];       /* lower case; "" when absent */
	uint16_t port;        /* 0 when absent */
	char mailbox[1024];   /* decoded UTF-8; "" = the selected mailbox */
	uint32_t uidvalidity; /* 0 when absent */
	uint32_t uid;
	/* ;SECTION= */
	bool has_section;
	uint32_t path[IMAPURL_MAX_DEPTH];
	size_t depth;
	enum imapurl_sec sec;
	/* ;PARTIAL= */
	bool partial;
	uint64_t p_off, p_len; /* p_len 0: to the end */
	/* URLAUTH */
	bool has_expire;
	int64_t expire; /* seconds since the epoch, UTC */
	enum imapurl_access access;
	char access_user[256]; /* decoded, for SUBMIT and USER */
	size_t rump_len;       /* bytes of the URL through the access identifier */
	char mechanism[32];    /* "" when the URL carries no verifier */
	char token[129];       /* hex, as written; "" without a verifier */
};

/*
 * Parse url[0..len) (need not be NUL-terminated) into *u_r. 0, or
 * ROOST_EINVAL when it is not a URL of the forms above (u_r then holds
 * nothing of use); ROOST_ETOOBIG past IMAPURL_MAX bytes or a field that
 * does not fit its array.
 */
int imapurl_parse(const char *url, size_t len, struct imapurl *u_r);

#endif
