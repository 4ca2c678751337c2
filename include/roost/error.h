#ifndef ROOST_ERROR_H
#define ROOST_ERROR_H

/*
 * One error convention for the whole project: functions return int, 0 on
 * success and one of these negative codes on failure; results go through
 * out-parameters named *_r. Storage codes map one-to-one to protocol replies
 * (see STYLE.md 6): NOTFOUND -> [NONEXISTENT], EXISTS -> [ALREADYEXISTS],
 * INUSE -> [INUSE], OVERQUOTA -> [OVERQUOTA]/452 4.2.2, QUOTATOOBIG ->
 * [OVERQUOTA]/552 5.2.2, TOOBIG -> [TOOBIG]/552, TEMP -> [UNAVAILABLE]/451.
 */
enum roost_err {
	ROOST_OK = 0,
	ROOST_EAGAIN = -1,     /* partial I/O or more input needed: call again */
	ROOST_EINVAL = -2,     /* malformed input or a name that is not allowed */
	ROOST_ENOTFOUND = -3,  /* no such user, mailbox or message */
	ROOST_EEXISTS = -4,    /* already exists */
	ROOST_EINUSE = -5,     /* locked or in use by another session */
	ROOST_EOVERQUOTA = -6, /* would exceed a quota */
	ROOST_ETOOBIG = -7,    /* exceeds a size or count limit */
	ROOST_ETEMP = -8,      /* temporary failure: try again later */
	ROOST_EIO = -9,        /* I/O failure (errno is logged, not returned) */
	ROOST_EPERM = -10,     /* operation not permitted (e.g. delete INBOX) */
	ROOST_EAUTH = -11,     /* authentication failed */
	ROOST_ENOTSUP = -12,   /* not supported (mechanism, backend, feature) */
	ROOST_ECLOSED = -13,   /* peer closed the connection */
	ROOST_ETIMEOUT = -14,  /* timed out */
	/* -15 was "modified since": UNCHANGEDSINCE lists such messages
	 * instead (mailbox_store()'s *modified_r). */
	ROOST_ECANCELED = -16, /* the client cancelled (SASL "*") */
	ROOST_ECONFIG = -17,   /* configuration error */
	ROOST_EPROTO = -18,    /* protocol violation by the peer */
	/* larger than a quota by itself: it would not fit even in an empty
	 * store, so a retry cannot help (SMTP 552 5.2.2, sysexits EX_CANTCREAT) */
	ROOST_EQUOTATOOBIG = -19,
	/* an access control list withholds the right (IMAP [NOPERM]) */
	ROOST_ENOACCESS = -20,
};

/* A short static English description of err; never NULL. */
const char *roost_strerror(int err);

#endif
