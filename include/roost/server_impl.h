#ifndef ROOST_SERVER_IMPL_H
#define ROOST_SERVER_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "roost/loop.h"
#include "roost/server.h"

/*
 * Runtime internals shared by core/server.c, core/listen.c and core/conn*.c.
 * Nothing outside the runtime includes this.
 */

struct conn;
struct conn_registry;
struct tls;
struct worker_pool;

/* One event loop thread and the connections it owns. Fields other than
 * loop and srv belong to the loop thread. */
struct srv_loop {
	struct server *srv;
	struct loop *loop;
	pthread_t thread;
	bool started;

	struct conn *conns; /* every live connection of this loop */
	unsigned nconns;
	/* Any thread reads it: nconns plus the connections other loops
	 * handed to this one and it has not taken yet (conn_accept()). */
	_Atomic unsigned held;
	/* Set by the loop's thread when it runs, cleared when it stops: other
	 * loops hand connections only to a loop that takes them. */
	_Atomic bool taking;
	bool stopping; /* no accepting; idle sessions get on_shutdown */
	bool forced;   /* grace is over: close everything */
	bool quit_sent;
	uint8_t *scratch; /* read buffer, SRV_SCRATCH bytes */
	/* wake-ups run on the loop in its iteration wake_iter, and how many
	 * it may run per iteration (0: the default; conn_wake_inline.c) */
	uint64_t wake_iter;
	unsigned wake_inline;
	unsigned wake_inline_max;
	/* wake-ups past the allowance, run in the next iterations in the
	 * order they came (conn_wake_inline.c, wake_later()) */
	struct conn *later_head, *later_tail;
	struct loop_msg later_msg;
	bool later_posted;

	struct loop_msg stop_msg, force_msg;
};

#define SRV_SCRATCH (64 * 1024)

/* One listener address registered in one loop (a listening socket is in
 * every loop's epoll with EPOLLEXCLUSIVE; the loop that accepts owns the
 * connection). */
struct listen_reg {
	struct loop_io io;
	struct loop_timer retry; /* re-add after EMFILE */
	struct listen_sock *ls;
	struct srv_loop *sl;
};

struct listen_sock {
	struct listen_sock *next;
	struct listener *lst;
	int fd;
	char *unix_path;         /* unlinked at free */
	char *addr;              /* as configured, for logs */
	struct listen_reg *regs; /* one per loop, after server_run starts */
};

struct listener {
	struct listener *next;
	char *name;
	const struct proto_ops *ops;
	bool implicit_tls;
};

/* Connection admission: total and per-IP counts. */
struct ip_count;
#define LIMITS_BUCKETS 1024

/* A configuration replaced by a reload, kept until server_free(). */
struct retired_config {
	struct retired_config *next;
	struct roost_config *cfg;
};

struct server {
	/* The configuration the server started with (the caller's), and the
	 * live one: cfg until a reload publishes another (server_config()). A
	 * reader loads live once and may use what it got for the rest of its
	 * step; a reload never frees a configuration a reader may hold, it
	 * retires it (reloads are rare and a configuration is a few KB), so
	 * no reader needs a lock or a reference count. */
	const struct roost_config *cfg;
	_Atomic(const struct roost_config *) live;
	struct retired_config *retired; /* guarded by reload_mu */
	const struct roost_services *services;
	struct tls *tls;
	struct worker_pool *pool;

	unsigned nloops;
	struct srv_loop *loops;
	struct listener *listeners;
	struct listen_sock *socks;

	server_reload_fn *reload;
	void *reload_arg;
	pthread_mutex_t reload_mu; /* one reload at a time: SIGHUP or `roost reload` */

	struct conn_registry *reg; /* live sessions (core/conn_registry.c) */
	struct server_ctl *ctl;    /* <data_dir>/ctl.sock (core/server_ctl.c) */

	int stop_fd; /* eventfd: server_stop() */
	int done_fd; /* eventfd: a loop thread ended */
	_Atomic uint64_t next_id;
	_Atomic unsigned unlistened; /* loops that stopped accepting */

	pthread_mutex_t lim_mu; /* guards nconns and ips */
	unsigned nconns;
	struct ip_count *ips[LIMITS_BUCKETS];
};

/* core/listen.c */
int listen_bind(struct server *s, struct listener *lst, char *const *addrs);
int listen_start(struct server *s);    /* register every socket in every loop */
void listen_stop(struct srv_loop *sl); /* loop thread: stop accepting */
/* Close the listening sockets once no loop accepts on them any more. */
void listen_close_all(struct server *s);
void listen_free_all(struct server *s);
/* 0, or ROOST_ETOOBIG over max_connections, ROOST_EINUSE over the per-IP
 * limit. Any thread. */
int limits_acquire(struct server *s, const char *ip, bool is_unix);
void limits_release(struct server *s, const char *ip, bool is_unix);
void limits_free(struct server *s);

/* core/conn_registry.c: the live sessions, for `roost who` and `roost kick`.
 * A table of n slots made at start-up; a connection that finds it full is
 * served but not listed (counted in registry_unlisted()). */
#define REG_TEXT_MAX 256
struct conn_info {
	uint64_t id;
	int64_t since; /* wall clock seconds at accept */
	char proto[16];
	char peer[64];
	char user[REG_TEXT_MAX];    /* "" before login */
	char mailbox[REG_TEXT_MAX]; /* the selected mailbox, "" for none */
	uint64_t bytes_in, bytes_out;
};
void registry_create(struct server *s, unsigned n);
void registry_free(struct server *s);
/* Loop thread: at accept and at close (before the connection is gone). */
void registry_add(struct conn *c);
void registry_remove(struct conn *c);
/* The connection's owner: its user and selected mailbox (copied, cut at
 * REG_TEXT_MAX - 1 bytes), the bytes it read and wrote. */
void registry_set_user(struct conn *c, const char *user);
void registry_set_mailbox(struct conn *c, const char *mailbox);
void registry_count_in(struct conn *c, size_t n);
void registry_count_out(struct conn *c, size_t n);
unsigned registry_size(const struct server *s);
uint64_t registry_unlisted(const struct server *s);
/* Any thread: copy up to max (at most 64) live sessions from slot start on
 * into out; *next_r is where the next call starts (registry_size() at the
 * end). The count copied. */
unsigned registry_list(struct server *s, unsigned start, struct conn_info *out, unsigned max,
                       unsigned *next_r);
/* Any thread: ask every session of user (ASCII case-insensitive; and of
 * proto, a listener name "imaps" or a protocol "imap", unless NULL) to say
 * goodbye and close. The number asked. */
unsigned registry_kick(struct server *s, const char *user, const char *proto);

/* core/server_ctl.c: the control socket <data_dir>/ctl.sock. */
/* core/server_reload.c: free the configurations reloads made (not the
 * caller's s->cfg). server_free() only, when no thread runs. */
void server_config_free(struct server *s);

int server_ctl_start(struct server *s);
void server_ctl_stop(struct server *s);

/* core/conn_accept.c */
/* Loop thread: take over an accepted, non-blocking socket. */
void conn_accept(struct srv_loop *sl, struct listener *lst, int fd, const char *peer,
                 const char *local, bool loopback, bool is_unix);
/* Loop thread: begin the graceful shutdown of this loop's connections. */
void conn_loop_stop(struct srv_loop *sl);
/* Loop thread: the grace period is over. */
void conn_loop_force(struct srv_loop *sl);

#endif
