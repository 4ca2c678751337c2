#ifndef ROOST_OUTBOUND_IMPL_H
#define ROOST_OUTBOUND_IMPL_H

/*
 * Private to the delivery engine's files: outbound.c (the loop, start and
 * stop), outbound_result.c (an attempt's results applied to the queue),
 * outbound_session.c (sessions per destination: MX, connect, SMTP,
 * scheduling) and outbound_ctl.c (the control socket). Everything here
 * belongs to the engine thread (outbound.c says when it does not).
 */

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "roost/dns.h"
#include "roost/mta_sts.h"
#include "roost/outbound.h"
#include "roost/queue.h"
#include "roost/smtp_client.h"

#define MAX_CTL 4

struct session;

/* Some recipients of one entry, for one domain, in one session. */
struct work {
	struct queue_entry *e;
	size_t *idx; /* indexes into e->rcpts */
	struct smtpc_rcpt *rcpts;
	size_t n;
	struct smtpc_msg msg;
	int64_t started; /* when the attempt began (for delay=) */
	struct work *next;
};

enum session_state { SS_STS, SS_MX, SS_ADDR, SS_SMTP, SS_DONE };

/* What TLS a delivery demands ([relay] tls_policy, tls_policies). */
enum tls_policy {
	TLSP_NONE,    /* never STARTTLS */
	TLSP_MAY,     /* STARTTLS when offered; a failed handshake: plain text */
	TLSP_ENCRYPT, /* TLS or nothing (deferred), any certificate */
	TLSP_VERIFY,  /* TLS with a certificate that verifies for the MX name */
};

/* Works of one domain that need different TLS go to different sessions. */
#define SF_REQUIRETLS 1   /* RFC 8689 REQUIRETLS: verified TLS, peer offering it */
#define SF_TLS_OPTIONAL 2 /* "TLS-Required: No": policies lowered to "may" */

struct session {
	struct outbound *ob;
	char domain[DNS_MAX_NAME];
	unsigned flags; /* SF_* */
	enum tls_policy policy;
	enum session_state st;
	struct dns_mx *mx;
	size_t n_mx, mx_i;
	struct sockaddr_storage *addrs;
	size_t n_addrs, addr_i;
	char host[DNS_MAX_NAME]; /* the host connected to */
	struct smtpc *c;
	bool c_closed, c_ready_seen, c_tls_failed;
	bool plain;       /* retrying this address without STARTTLS */
	bool tls_trouble; /* a host fell short of the TLS policy */
	/* MTA-STS (outbound_sts.c): the domain's policy (NULL: none or
	 * mode none), and whether the session waits for its fetch */
	struct mta_sts_policy *sts;
	bool sts_wait;
	bool sts_skipped; /* an MX host was passed over: it did not match */
	int c_code;
	char c_text[512];
	struct work *works, *cur; /* waiting; being sent */
	unsigned sent_msgs;       /* over the current connection */
	int last_code;
	char last_text[512];
	struct session *next;
};

struct ctl_client {
	int fd;
	int64_t deadline;
	char line[512];
	size_t len;
};

struct outbound {
	const struct roost_services *sv;
	const struct roost_config *cfg;
	struct queue *q;
	pthread_t thread;
	atomic_bool stop;
	int wake_fd;
	int ctl_fd;
	struct ctl_client ctl[MAX_CTL];
	struct dns *dns;
	SSL_CTX *tls;
	/*
	 * Every entry the engine holds is on the entries list (doubly linked,
	 * so removal is O(1)). The idle ones are also in one of two heaps:
	 * due, keyed by the time (seconds) they next need the engine (next_try,
	 * or for a held entry the end of its lifetime), and blocked, entries
	 * due but left waiting by a connection limit, which go back to due when
	 * a session ends. Between attempts the engine sleeps until the least
	 * key of due: an idle queue of any size costs nothing, and each change
	 * of an entry costs O(log n). Busy, dead and finished entries are in
	 * neither heap.
	 */
	struct queue_entry *entries;
	struct heap due, blocked;
	struct session *sessions;
	unsigned n_sessions;
	bool smarthost;
	enum tls_policy policy; /* [relay] tls_policy */
	struct outbound_sts *sts;
	char sh_host[DNS_MAX_NAME];
	uint16_t sh_port;
	bool scan_now; /* a slot came free: blocked entries may go */
	/* Finished entries whose files go at the end of this loop turn, with
	 * one directory fsync for all of them. */
	char (*doomed)[QUEUE_ID_LEN];
	size_t n_doomed, cap_doomed;
};

static inline int64_t
outbound_now_ms(void)
{
	return smtpc_now_ms();
}

/* outbound_result.c */

/* Put e in the time index where its state says (or in none). */
void outbound_index(struct outbound *ob, struct queue_entry *e);
/* A held entry whose lifetime ended: its pending recipients fail
 * (bounced) and it goes. */
void outbound_entry_expire(struct outbound *ob, struct queue_entry *e);

/* e is idle: remove it when nothing is pending (or it was deleted). */
void outbound_entry_settle(struct outbound *ob, struct queue_entry *e);
/* Open e's message file read-only: the fd, or -1 (errno set). */
int outbound_open_msg(struct outbound *ob, const struct queue_entry *e);
/* Apply one attempt's results to the entry, log, bounce, save. */
void outbound_work_finish(struct session *s, struct work *w, const char *relay, const char *ip,
                          const char *tls, const char *tls_version);
void outbound_work_free(struct work *w);
/* Every waiting work of s fails with (code, text); s is done. */
void outbound_session_fail_all(struct session *s, int code, const char *text);

/* outbound_sts.c */

/* The MTA-STS fetch thread and the policy cache ([relay] mta_sts): 0 or
 * ROOST_EIO. */
int outbound_sts_start(struct outbound *ob);
void outbound_sts_stop(struct outbound *ob);
/* Find s's domain's policy (cache, TXT record, HTTPS fetch), then go on
 * with outbound_session_mx(s), now or from outbound_sts_collect(). */
void outbound_sts_begin(struct session *s);
/* Take the fetch thread's results: cache them, resume waiting sessions. */
void outbound_sts_collect(struct outbound *ob);

/* outbound_session.c */

/* Look up s's MX hosts (after MTA-STS). */
void outbound_session_mx(struct session *s);

/* "none", "may", ... into *p_r: 0, or ROOST_EINVAL for another word. */
int outbound_policy_parse(const char *word, enum tls_policy *p_r);
/* Check [relay] tls_policy and tls_policies: 0 or ROOST_ECONFIG (logged). */
int outbound_policy_init(struct outbound *ob);

/* Move s on after its SMTP client reported: next message, next host, done. */
void outbound_session_after_io(struct session *s);
/* Hand every due entry to a session (expire held ones past their
 * lifetime). Returns the time in seconds when the next entry falls due, or
 * INT64_MAX when none waits. */
int64_t outbound_schedule(struct outbound *ob);

/* outbound_ctl.c */

/* Listen on the control socket under the queue directory: 0 or < 0. */
int outbound_ctl_listen(struct outbound *ob);
void outbound_ctl_accept(struct outbound *ob);
void outbound_ctl_read(struct outbound *ob, struct ctl_client *cc);

#endif
