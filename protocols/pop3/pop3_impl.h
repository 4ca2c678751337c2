#ifndef ROOST_POP3_IMPL_H
#define ROOST_POP3_IMPL_H

/*
 * Private to protocols/pop3: the session and what its files share. A
 * session belongs to whichever thread owns its connection (conn.h).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "roost/pop3.h"
#include "roost/proto_cmd.h"
#include "roost/storage.h"

struct conn;
struct roost_config;
struct roost_services;
struct sasl;

#define POP3_MAX_USER 512 /* bytes of a USER argument */
#define POP3_DEFAULT_MAX_BAD 20
#define OCTETS_UNKNOWN UINT64_MAX
#define ENC_IN_CHUNK 16384
#define LIST_BATCH 8192

enum pop3_state {
	POP3_AUTHORIZATION,
	POP3_TRANSACTION,
	POP3_UPDATE,
};

/* A multi-line reply produced in steps (conn_continue): each step writes
 * until the connection's output is full. A message view is kept between
 * steps only when the backend says it pins nothing shared (holdable, see
 * storage.h); otherwise the message is read again at each step. */
enum pop3_xfer_kind {
	XFER_NONE,
	XFER_MESSAGE, /* RETR, TOP */
	XFER_SCAN,    /* LIST */
	XFER_UIDL,    /* UIDL */
};

struct pop3_xfer {
	enum pop3_xfer_kind kind;
	uint32_t idx; /* the message; for a listing the next entry */
	size_t off;   /* message bytes already encoded */
	size_t len;   /* message length at the first read */
	struct pop3_encoder enc;
	struct msg_view view; /* kept between steps when holdable */
	bool view_held;
};

/* One message of the maildrop snapshot taken at login. */
struct pop3_msg {
	uint32_t uid;
	bool deleted;
	uint64_t octets; /* as RETR sends it; OCTETS_UNKNOWN until read */
};

struct pop3_session {
	struct conn *c;
	const struct roost_services *sv;
	enum pop3_state state;
	unsigned bad_commands;
	unsigned max_bad;
	struct pop3_framer framer; /* used by the frame hook (loop thread) */

	/* AUTHORIZATION */
	char *user_arg;    /* from USER, until PASS */
	struct sasl *sasl; /* AUTH exchange in progress */
	bool utf8;

	/* TRANSACTION: the maildrop */
	char user[POP3_MAX_USER]; /* canonical name */
	int lock_fd;
	struct storage_lock *st_lock; /* the store's maildrop lock (other nodes) */
	struct mailbox *mb;
	uint32_t uidvalidity;
	struct pop3_msg *msgs;
	uint32_t n_msgs;
	uint32_t n_deleted;
	struct pop3_xfer xfer; /* a reply in steps, between steps */
};

/* What a command's run function reports back to the dispatcher. */
enum cmd_result {
	CMD_OK,  /* a reply was sent (+OK or a plain -ERR) */
	CMD_BAD, /* a reply was sent and it counts as a bad command */
};

/* pop3_session.c */
void pop3_enter_state(struct pop3_session *s, enum pop3_state st);
void pop3_reply(struct pop3_session *s, const char *text);
const struct roost_config *pop3_cfg(const struct pop3_session *s);
void pop3_xfer_end(struct pop3_session *s);
void pop3_maildrop_close(struct pop3_session *s);
/* A storage error as the -ERR reply with its RFC 3206 code. */
void pop3_reply_error(struct pop3_session *s, int err);

/* pop3_auth.c */
enum cmd_result pop3_auth_continue(struct pop3_session *s, const uint8_t *line, size_t len);

/* The commands: pop3_auth.c (AUTHORIZATION) and pop3_transaction.c. */
typedef enum cmd_result pop3_cmd_fn(struct pop3_session *s, const struct pop3_line *line);
/* A check step: false once it has refused the command (and replied). */
typedef bool pop3_check_fn(struct pop3_session *s, const struct pop3_line *line);

/* A row of the command table (roost/proto_cmd.h). */
struct pop3_cmd_def {
	PROTO_CMD_ROW(pop3_check_fn, pop3_cmd_fn);
};

/* The command table (pop3_session.c): UNKNOWN, NOT_NOW or FOUND (*def_r
 * set for the last two) for keyword in state st. */
enum proto_cmd_match pop3_find_command(const char *keyword, enum pop3_state st,
                                       const struct pop3_cmd_def **def_r);
/* The -ERR line for a command not allowed in state st. */
const char *pop3_state_error(enum pop3_state st);
pop3_cmd_fn pop3_cmd_capa, pop3_cmd_stls, pop3_cmd_utf8, pop3_cmd_user, pop3_cmd_pass,
    pop3_cmd_auth, pop3_cmd_stat, pop3_cmd_list, pop3_cmd_uidl, pop3_cmd_retr, pop3_cmd_top,
    pop3_cmd_dele, pop3_cmd_noop, pop3_cmd_rset, pop3_cmd_quit;

#endif
