#ifndef ROOST_SMTP_CLIENT_H
#define ROOST_SMTP_CLIENT_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

/*
 * The outbound SMTP client (services/smtp_client.c): one non-blocking
 * connection as an explicit state machine, driven by its owner's poll loop
 * (the delivery engine's thread). It never blocks: every wait (connect,
 * greeting, each reply, each write) has a deadline, every reply line is
 * bounded (SMTPC_MAX_LINE) and so is the number of lines of a reply.
 *
 * Lifecycle: smtpc_connect(); the client greets, EHLOs (HELO as fallback),
 * starts TLS when offered (required when settings say so), EHLOs again and
 * AUTHenticates when a user is set, then calls ev->ready. The owner answers
 * with smtpc_send() (one message) or smtpc_quit(). After each message
 * ev->done reports every recipient's reply, then ev->ready runs again for
 * the next message over the same connection. ev->closed runs once at the
 * end, after which the owner frees the client. Uses PIPELINING, SIZE,
 * 8BITMIME, SMTPUTF8, DSN and CHUNKING (BDAT instead of DATA) when the
 * server offers them.
 *
 * Not thread-safe: one owner thread.
 */
struct smtpc;

#define SMTPC_MAX_LINE 2048 /* a reply line, CR LF included */
#define SMTPC_MAX_LINES 100 /* lines of one reply */

struct smtpc_settings {
	const char *helo;      /* our name */
	SSL_CTX *tls;          /* client context; NULL: no STARTTLS */
	bool tls_required;     /* no TLS: fail (temporary) */
	bool tls_verify;       /* a certificate that does not verify (chain, and
	                        * sni as its name): fail (temporary) */
	const char *sni;       /* the server's name, checked in every certificate
	                        * (smtpc_tls_status), enforced with tls_verify */
	const char *auth_user; /* AUTH PLAIN when set */
	const char *auth_password;
	unsigned connect_timeout; /* seconds: connect, greeting, TLS */
	unsigned command_timeout; /* seconds: each reply, each write */
};

struct smtpc_rcpt {
	const char *addr;
	const char *notify; /* DSN parameters ("" when none) */
	const char *orcpt;
	/* results */
	int code;       /* reply code (0: not tried) */
	char text[512]; /* reply text ("5.1.1 No such user") */
};

struct smtpc_msg {
	const char *sender;
	const char *envid, *ret;
	bool smtputf8, body_8bit;
	/* RFC 3030: only to a server with BINARYMIME and CHUNKING, else
	 * 554 5.6.3 for every recipient without a try */
	bool binarymime;
	/* RFC 8689: only over verified TLS to a server offering REQUIRETLS,
	 * else 550 5.7.30 for every recipient without a try */
	bool requiretls;
	int fd; /* the message (CRLF, not dot-stuffed), read from 0 */
	uint64_t size;
	struct smtpc_rcpt *rcpts;
	size_t n_rcpts;
	/* a failure of the transaction as a whole (MAIL refused, connection
	 * lost, ...) is written to every recipient without a final result */
};

struct smtpc_events {
	void (*ready)(void *arg);
	void (*done)(void *arg, struct smtpc_msg *msg);
	/* ready_seen: ev->ready ran at least once. code/text: why it ended
	 * (221 after QUIT; 4xx/5xx from the server or our own 4xx). */
	void (*closed)(void *arg, bool ready_seen, int code, const char *text);
};

/* Start connecting to addr (port set) without waiting. Always returns a
 * client; a failure to even start shows up as ev->closed later. */
struct smtpc *smtpc_connect(const struct sockaddr_storage *addr, socklen_t len,
                            const struct smtpc_settings *set, const struct smtpc_events *ev,
                            void *arg);
void smtpc_free(struct smtpc **c);

/* Only in ev->ready: send one message (msg stays the caller's until done). */
void smtpc_send(struct smtpc *c, struct smtpc_msg *msg);
/* Only in ev->ready: say QUIT and close. */
void smtpc_quit(struct smtpc *c);

/* Poll integration: the fd and events to wait for (fd < 0: none), the
 * deadline (CLOCK_MONOTONIC ms), and the handler for poll's revents
 * (0 on a timeout tick: the client checks its deadline itself). */
void smtpc_pollfd(const struct smtpc *c, struct pollfd *pfd);
int64_t smtpc_deadline(const struct smtpc *c);
void smtpc_handle(struct smtpc *c, short revents, int64_t now_ms);
bool smtpc_finished(const struct smtpc *c);

/* The STARTTLS handshake failed (the owner may retry without TLS). */
bool smtpc_tls_failed(const struct smtpc *c);
/* The connection ended because the settings' TLS demand (tls_required,
 * tls_verify) was not met: no STARTTLS, a failed handshake, a certificate
 * that did not verify. */
bool smtpc_tls_policy_failed(const struct smtpc *c);
/* "verified" (chain and sni checked out), "unverified" or "none". */
const char *smtpc_tls_status(const struct smtpc *c);
/* "TLSv1.3" or "none", and the peer's address text. */
const char *smtpc_tls_version(const struct smtpc *c);
const char *smtpc_peer(const struct smtpc *c);

int64_t smtpc_now_ms(void);

#endif
