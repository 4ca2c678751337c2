#ifndef ROOST_SMTP_CLIENT_IMPL_H
#define ROOST_SMTP_CLIENT_IMPL_H

/*
 * Private to the SMTP client's files: smtp_client.c (the connection, its
 * output and the public calls), smtp_client_trans.c (a transaction's
 * steps), smtp_client_tls.c (STARTTLS) and smtp_client_reply.c (reading
 * replies and acting on them).
 */

#include <stdbool.h>
#include <stdint.h>

#include <arpa/inet.h>
#include <openssl/ssl.h>

#include "roost/buf.h"
#include "roost/smtp_client.h"

enum smtpc_state {
	S_CONNECT,
	S_GREET,
	S_EHLO,
	S_HELO,
	S_STARTTLS,
	S_HANDSHAKE,
	S_AUTH,
	S_READY,
	S_TRANS,
	S_BODY,
	S_BDAT, /* sending BDAT chunks (replies may come meanwhile) */
	S_DOT,
	S_RSET,
	S_LOCAL_DONE,
	S_QUIT,
	S_DONE,
};

/* The states' names for the log, indexed by enum smtpc_state. */
extern const char *const smtpc_state_names[];

#define BODY_CHUNK (64 * 1024)
/* Bytes of one BDAT command when the server pipelines (else one chunk
 * holds the whole message, as RFC 3030 lets a client without PIPELINING
 * send the next chunk only after the last one's reply). */
#define BDAT_CHUNK (1024 * 1024)
#define OUT_HIGH (256 * 1024)

struct smtpc {
	int fd;
	SSL *ssl;
	enum smtpc_state st;
	struct smtpc_settings set;
	struct smtpc_events ev;
	void *arg;
	char peer[INET6_ADDRSTRLEN + 8];
	char tls_version[16];
	bool verified;         /* the chain and the name (set.sni) checked out */
	char verify_error[96]; /* why not, for the log */

	struct buf in, out;
	int64_t deadline;
	bool ssl_wants_write; /* an SSL call needs POLLOUT to go on */

	/* the reply being read */
	int rcode;
	unsigned rlines;
	char rtext[512];

	/* what the server offered in its EHLO reply */
	bool esmtp, pipelining, starttls, bit8, utf8, dsn, chunking;
	bool requiretls, binarymime;
	uint64_t max_size;
	bool authed, ready_seen;
	bool tls_failed;
	bool tls_policy_failed; /* no TLS, or not verified, where the settings demand it */

	/* the message in flight */
	struct smtpc_msg *msg;
	bool *accepted;
	size_t n_steps, sent, answered, n_accepted;
	bool mail_ok, discard_dot, need_rset;
	uint64_t body_off;
	bool bol;
	uint8_t last[2];
	/* BDAT (RFC 3030) instead of DATA: chunks sent and answered, what is
	 * left of the current one, the first failure among the replies */
	bool bdat;
	uint64_t chunk_left;
	size_t chunks_sent, chunks_answered;
	int bdat_code;
	char bdat_text[512];
};

/* smtp_client.c */

/* Time out seconds from now. */
void smtpc_arm(struct smtpc *c, unsigned seconds);
/* Give every recipient still without a final result this one. */
void smtpc_settle_rest(struct smtpc *c, int code, const char *text);
/* The message is done: tell the owner. */
void smtpc_finish_msg(struct smtpc *c);
/* Close the connection (unless done): every recipient without a result
 * gets code and the text, the message is finished, the owner told. */
void smtpc_fail(struct smtpc *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Queue a line for the server. */
void smtpc_out_printf(struct smtpc *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Write what is queued, as far as the socket takes it: false when the
 * connection failed (smtpc_fail() called). */
bool smtpc_flush_out(struct smtpc *c);
/* Fill the output from the message file, dot-stuffed, up to OUT_HIGH, and
 * "." at the end: false when the file failed (smtpc_fail() called). */
bool smtpc_fill_body(struct smtpc *c);

/* Send BDAT chunks from the message file up to OUT_HIGH, raw (no dot
 * stuffing); S_DOT once the LAST chunk is out: false when the file failed
 * (smtpc_fail() called). */
bool smtpc_fill_bdat(struct smtpc *c);

/* smtp_client_trans.c */

/* The reply to a BDAT chunk (S_BDAT or S_DOT): after the last one the
 * message is done. */
void smtpc_bdat_reply(struct smtpc *c, int code, const char *text);

/* Send step k of the transaction (MAIL, RCPT..., DATA). */
void smtpc_send_step(struct smtpc *c, size_t k);
/* Ready for the next message (or QUIT). */
void smtpc_go_ready(struct smtpc *c);
/* A reply to a step of the transaction. */
void smtpc_trans_reply(struct smtpc *c, int code, const char *text);

/* smtp_client_tls.c */

void smtpc_start_tls(struct smtpc *c);
/* Go on with the TLS handshake; on success EHLO again. */
void smtpc_handshake(struct smtpc *c);

/* smtp_client_reply.c */

/* Read what the server sent and act on each complete reply: false when
 * the connection failed or finished. */
bool smtpc_read_in(struct smtpc *c);

#endif
