#ifndef ROOST_SMTP_IMPL_H
#define ROOST_SMTP_IMPL_H

/*
 * Private to protocols/smtp: the session and what its files share. A
 * session belongs to whichever thread owns its connection (conn.h): the
 * frame hook on the loop touches only the framer and the error counter.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "roost/buf.h"
#include "roost/delivery.h"
#include "roost/proto_cmd.h"
#include "roost/smtp.h"

struct conn;
struct roost_config;
struct roost_services;
struct sasl;

enum smtp_role { ROLE_MX, ROLE_SUBMISSION, ROLE_LMTP };

/* Command row flags (struct smtp_cmd_def). */
enum {
	CMD_SMTP_ONLY = 1 << 0, /* not on the lmtp listener */
	CMD_LMTP_ONLY = 1 << 1,
};

/*
 * What sets LMTP (RFC 2033) apart from SMTP, as data: the session points
 * at one of the two, so the code has no "if LMTP" of its own.
 */
struct smtp_dialect {
	const char *proto;      /* proto= in the log */
	const char *banner;     /* in the greeting: "ESMTP", "LMTP" */
	const char *send_hello; /* MAIL before the greeting */
	const char *help;       /* HELP's greetings and extras */
	unsigned hide;          /* command rows this listener does not know */
	unsigned with_row;      /* RFC 3848 "with" names: 0 SMTP, 1 LMTP */
	int no_rcpt_code;       /* DATA/BDAT without recipients (RFC 2033 4.2: 503) */
	bool reply_per_rcpt;    /* the end of the data is answered per recipient */
	bool unknown_rcpt_free; /* unknown recipients are no client error (an MTA's batch) */
	bool may_relay;         /* other domains' recipients may be queued */
	bool checks_sender;     /* the envelope sender is checked (sender_ok) */
	bool offers_tls_auth;   /* EHLO offers STARTTLS and AUTH */
};

extern const struct smtp_dialect smtp_dialect_smtp, smtp_dialect_lmtp;

enum smtp_state {
	ST_INIT,  /* greeted; needs HELO/EHLO/LHLO */
	ST_READY, /* may start a transaction */
	ST_MAIL,  /* MAIL accepted, no recipient yet */
	ST_RCPT,  /* at least one recipient */
	ST_BDAT,  /* inside a BDAT transaction */
};

enum helo_kind { HELO_NONE, HELO_HELO, HELO_EHLO, HELO_LHLO };

struct smtp_rcpt {
	char addr[SMTP_MAX_PATH + 1];
	struct smtp_rcpt_params params;
	struct delivery_rcpt d;
	bool remote;      /* another domain's: queued for relay */
	unsigned rcpt_no; /* the RCPT command it came from (an alias gives several) */
};

struct smtp_session {
	struct conn *c;
	const struct roost_services *sv;
	const struct roost_config *cfg;
	enum smtp_role role;
	const struct smtp_dialect *d; /* by role: LMTP's or SMTP's */

	/* loop thread: framing */
	struct smtp_framer fr;

	/* connection */
	enum smtp_state state;
	enum helo_kind helo;
	char helo_name[256];
	unsigned errors;
	bool no_count; /* the next reply is no client error */
	bool authenticated;
	bool trusted;      /* peer in [smtp] trusted_networks */
	struct sasl *sasl; /* an AUTH exchange is in progress */
	struct buf line;   /* the current command line, NUL-terminated */

	/* transaction */
	char sender[SMTP_MAX_PATH + 1];
	struct smtp_mail_params mp;
	struct smtp_rcpt *rcpts;
	size_t n_rcpts, cap_rcpts;
	unsigned n_accepted; /* RCPT commands accepted (LMTP answers each) */

	/* message body (DATA or BDAT) */
	bool in_data; /* DATA pieces are arriving */
	struct smtp_data_dec dec;
	struct buf msg; /* trace headers, then the body */
	size_t hdr_len;
	uint64_t body_len; /* BDAT: bytes received */
	uint64_t body_max; /* what max_message_size leaves after the headers */
	bool too_big;
	char id[DELIVERY_ID_LEN];
	/* Past SMTP_SPOOL_AT the message moves from s->msg to an unlinked
	 * file in data_dir, so a big message does not sit in memory. */
	int spool_fd;
	uint64_t spooled;
	bool spool_failed;

	/* BDAT chunk being received */
	uint64_t bdat_left;
	bool bdat_last;
	bool bdat_taken;   /* cmd_bdat ran for the current line */
	bool bdat_discard; /* the chunk is read and dropped... */
	int bdat_code;     /* ...and then answered with this */
	const char *bdat_enh, *bdat_text;
};

/* smtp_session.c */
void smtp_enter_state(struct smtp_session *s, enum smtp_state st);
/* One reply line "code enh text". Replies >= 500 count as client errors. */
void smtp_reply(struct smtp_session *s, int code, const char *enh, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
const char *smtp_proto_name(const struct smtp_session *s);

/* smtp_message.c */
void smtp_reset_transaction(struct smtp_session *s);
/* A storage error as its reply (452 over quota, 552 too big, else 451),
 * about the recipient addr when not NULL. */
void smtp_reply_error(struct smtp_session *s, int err, const char *addr);
void smtp_data_piece(struct smtp_session *s, const uint8_t *in, size_t len);
void smtp_bdat_piece(struct smtp_session *s, const uint8_t *in, size_t len);
void smtp_bdat_chunk_done(struct smtp_session *s);

/* smtp_auth.c */
void smtp_auth_continue(struct smtp_session *s, const char *line);

/* The commands: smtp_commands.c, smtp_message.c (DATA, BDAT), smtp_auth.c. */
typedef void smtp_cmd_fn(struct smtp_session *s, const char *args);
/* A check step: false once it has refused the command (and replied). */
typedef bool smtp_check_fn(struct smtp_session *s, const char *args);

/* A row of the command table (roost/proto_cmd.h). */
struct smtp_cmd_def {
	PROTO_CMD_ROW(smtp_check_fn, smtp_cmd_fn);
};

/* The command table (smtp_session.c): UNKNOWN (also a command of the other
 * dialect), NOT_NOW or FOUND (*def_r set for the last two). */
enum proto_cmd_match smtp_find_command(const struct smtp_session *s, const char *verb,
                                       const struct smtp_cmd_def **def_r);
/* The 503 text for a command its row does not allow in s's state. */
const char *smtp_state_error(const struct smtp_session *s, const struct smtp_cmd_def *def);
smtp_check_fn smtp_check_mail;
smtp_cmd_fn smtp_cmd_ehlo, smtp_cmd_helo_plain, smtp_cmd_lhlo, smtp_cmd_mail, smtp_cmd_rcpt,
    smtp_cmd_data, smtp_cmd_bdat, smtp_cmd_rset, smtp_cmd_noop, smtp_cmd_quit, smtp_cmd_help,
    smtp_cmd_vrfy, smtp_cmd_expn, smtp_cmd_starttls, smtp_cmd_auth, smtp_cmd_burl;

#endif
