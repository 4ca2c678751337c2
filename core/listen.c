#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <grp.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "roost/config.h"
#include "roost/error.h"
#include "roost/hash.h"
#include "roost/log.h"
#include "roost/loop.h"
#include "roost/server_impl.h"
#include "roost/xalloc.h"

/*
 * Listening sockets, accept, and admission (total and per-IP connection
 * limits). Every listening socket is registered in every loop with
 * EPOLLEXCLUSIVE, so the kernel wakes one loop per incoming connection and
 * connections spread over the loops without a dispatcher thread.
 */

#define ACCEPT_BATCH 32
#define LISTEN_BACKLOG 1024

/* ---- admission ---- */

struct ip_count {
	struct ip_count *next;
	unsigned n;
	char ip[64];
};

static unsigned
ip_hash(const char *ip)
{
	return hash_str(ip) % LIMITS_BUCKETS;
}

int
limits_acquire(struct server *s, const char *ip, bool is_unix)
{
	const struct roost_config *cfg = server_config(s);
	struct ip_count **pp, *e;
	int err = 0;

	pthread_mutex_lock(&s->lim_mu);
	if (cfg->max_connections != 0 && s->nconns >= cfg->max_connections) {
		err = ROOST_ETOOBIG;
		goto out;
	}
	if (!is_unix) {
		pp = &s->ips[ip_hash(ip)];
		for (e = *pp; e != NULL && strcmp(e->ip, ip) != 0; e = e->next)
			;
		if (e == NULL) {
			e = xcalloc(1, sizeof(*e));
			snprintf(e->ip, sizeof(e->ip), "%s", ip);
			e->next = *pp;
			*pp = e;
		}
		if (cfg->max_connections_per_ip != 0 && e->n >= cfg->max_connections_per_ip) {
			err = ROOST_EINUSE;
			goto out;
		}
		e->n++;
	}
	s->nconns++;
out:
	pthread_mutex_unlock(&s->lim_mu);
	return err;
}

void
limits_release(struct server *s, const char *ip, bool is_unix)
{
	struct ip_count **pp, *e;

	pthread_mutex_lock(&s->lim_mu);
	s->nconns--;
	if (!is_unix) {
		for (pp = &s->ips[ip_hash(ip)]; (e = *pp) != NULL; pp = &e->next) {
			if (strcmp(e->ip, ip) == 0) {
				if (--e->n == 0) {
					*pp = e->next;
					free(e);
				}
				break;
			}
		}
	}
	pthread_mutex_unlock(&s->lim_mu);
}

void
limits_free(struct server *s)
{
	for (size_t i = 0; i < LIMITS_BUCKETS; i++) {
		while (s->ips[i] != NULL) {
			struct ip_count *e = s->ips[i];

			s->ips[i] = e->next;
			free(e);
		}
	}
}

/* ---- addresses ---- */

static void
addr_text(const struct sockaddr *sa, char *buf, size_t size, bool *loopback_r)
{
	*loopback_r = false;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &in->sin_addr, buf, (socklen_t)size);
		*loopback_r = (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], buf, (socklen_t)size);
			*loopback_r = in6->sin6_addr.s6_addr[12] == 127;
		} else {
			inet_ntop(AF_INET6, &in6->sin6_addr, buf, (socklen_t)size);
			*loopback_r = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
		}
	} else if (sa->sa_family == AF_UNIX) {
		snprintf(buf, size, "unix");
		*loopback_r = true;
	} else {
		snprintf(buf, size, "unknown");
	}
}

/* ---- accept ---- */

static void accept_ready(struct loop_io *io, uint32_t events);

/*
 * Unsent bytes the kernel queues on a connection before it reports the
 * socket full. Without a bound the send buffer grows (tcp_wmem, 4 MiB) even
 * for a client that reads a few KB per second: 200 such clients pin 800 MB
 * of kernel memory, and filling it costs the CPU everyone else needs. Bytes
 * in flight do not count, so a fast client on a long path is not slowed.
 */
#define NOTSENT_LOWAT (128 * 1024)

static void
accept_retry(struct loop_timer *t)
{
	struct listen_reg *r =
	    (struct listen_reg *)((char *)t - offsetof(struct listen_reg, retry));

	if (!r->sl->stopping)
		(void)loop_add(r->sl->loop, r->ls->fd, EPOLLIN | EPOLLEXCLUSIVE, &r->io);
}

static void
accept_one(struct listen_reg *r, int fd, const struct sockaddr *sa)
{
	struct srv_loop *sl = r->sl;
	struct sockaddr_storage local;
	socklen_t llen = sizeof(local);
	char peer[64], localtext[64];
	bool loopback, lb2, is_unix = sa->sa_family == AF_UNIX;
	int one = 1, err;

	addr_text(sa, peer, sizeof(peer), &loopback);
	if (is_unix)
		loopback = true;
	if (getsockname(fd, (struct sockaddr *)&local, &llen) == 0)
		addr_text((struct sockaddr *)&local, localtext, sizeof(localtext), &lb2);
	else
		snprintf(localtext, sizeof(localtext), "unknown");
	if (sl->stopping) {
		close(fd);
		return;
	}
	err = limits_acquire(sl->srv, peer, is_unix);
	if (err != 0) {
		log_warn("event=refused peer=%s proto=%s reason=%s", peer, r->ls->lst->name,
		         err == ROOST_ETOOBIG ? "max_connections" : "max_connections_per_ip");
		close(fd);
		return;
	}
	if (!is_unix) {
		int lowat = NOTSENT_LOWAT;

		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof(lowat));
	}
	conn_accept(sl, r->ls->lst, fd, peer, localtext, loopback, is_unix);
}

static void
accept_ready(struct loop_io *io, uint32_t events)
{
	struct listen_reg *r = (struct listen_reg *)io;

	if (r->sl->stopping)
		return;
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int fd =
		    accept4(r->ls->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				/* Out of descriptors: the listener stays readable,
				 * so step back for a moment instead of spinning. */
				log_warn("event=accept_error proto=%s error=\"%s\"",
				         r->ls->lst->name, strerror(errno));
				loop_del(r->sl->loop, r->ls->fd);
				loop_timer_set(r->sl->loop, &r->retry, loop_now(r->sl->loop) + 200);
			}
			return;
		}
		accept_one(r, fd, (struct sockaddr *)&ss);
	}
}

/* ---- binding ---- */

/*
 * A unix listener (LMTP behind a local MTA) gets [listen] lmtp_socket_mode
 * and, when set, lmtp_socket_group before listen(), so no connection is
 * accepted under the umask's looser or tighter bits.
 */
static int
bind_unix(const struct roost_config *cfg, const char *path, const char *spec)
{
	struct sockaddr_un sun;
	struct stat st;
	gid_t gid = (gid_t)-1;
	int fd;

	if (cfg->lmtp_socket_group != NULL && cfg->lmtp_socket_group[0] != '\0') {
		struct group gr, *grp = NULL;
		char gbuf[4096];

		if (getgrnam_r(cfg->lmtp_socket_group, &gr, gbuf, sizeof(gbuf), &grp) != 0 ||
		    grp == NULL) {
			log_error("event=listen addr=%s error=\"unknown group %s\"", spec,
			          cfg->lmtp_socket_group);
			return -1;
		}
		gid = grp->gr_gid;
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		log_error("event=listen addr=%s error=\"path too long\"", spec);
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path));
	/* A stale socket from a previous run is replaced; anything else at
	 * that path is left alone and the bind fails. */
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0 ||
	    (gid != (gid_t)-1 && chown(path, (uid_t)-1, gid) != 0) ||
	    chmod(path, (mode_t)cfg->lmtp_socket_mode) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
		log_error("event=listen addr=%s error=\"%s\"", spec, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static int
bind_inet(const struct config_addr *a, const char *spec)
{
	struct addrinfo hints, *res = NULL;
	char port[8];
	int fd = -1, one = 1, gai;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	hints.ai_family = a->host[0] == '\0' ? AF_INET6 : AF_UNSPEC;
	snprintf(port, sizeof(port), "%u", a->port);
	gai = getaddrinfo(a->host[0] == '\0' ? NULL : a->host, port, &hints, &res);
	if (gai != 0 && a->host[0] == '\0') {
		hints.ai_family = AF_INET;
		gai = getaddrinfo(NULL, port, &hints, &res);
	}
	if (gai != 0) {
		log_error("event=listen addr=%s error=\"%s\"", spec, gai_strerror(gai));
		return -1;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (res->ai_family == AF_INET6) {
		/* "*:port" means both families; an explicit v6 address only v6. */
		int v6only = a->host[0] != '\0';

		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
	}
	if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, LISTEN_BACKLOG) != 0)
		goto fail;
	freeaddrinfo(res);
	return fd;
fail:
	log_error("event=listen addr=%s error=\"%s\"", spec, strerror(errno));
	if (fd >= 0)
		close(fd);
	freeaddrinfo(res);
	return -1;
}

static void
sock_free(struct listen_sock *ls)
{
	if (ls->fd >= 0)
		close(ls->fd);
	if (ls->unix_path != NULL)
		unlink(ls->unix_path);
	free(ls->unix_path);
	free(ls->addr);
	free(ls->regs);
	free(ls);
}

int
listen_bind(struct server *s, struct listener *lst, char *const *addrs)
{
	struct listen_sock *mine = NULL, *ls;

	for (size_t i = 0; addrs != NULL && addrs[i] != NULL; i++) {
		struct config_addr a;
		int fd;

		if (config_parse_addr(addrs[i], &a) != 0) {
			log_error("event=listen proto=%s addr=%s error=\"bad address\"", lst->name,
			          addrs[i]);
			goto fail;
		}
		fd = a.is_unix ? bind_unix(s->cfg, a.path, addrs[i]) : bind_inet(&a, addrs[i]);
		if (fd < 0)
			goto fail;
		ls = xcalloc(1, sizeof(*ls));
		ls->fd = fd;
		ls->lst = lst;
		ls->addr = xstrdup(addrs[i]);
		ls->unix_path = a.is_unix ? xstrdup(a.path) : NULL;
		ls->next = mine;
		mine = ls;
		log_info("event=listen proto=%s addr=%s tls=%s", lst->name, addrs[i],
		         lst->implicit_tls ? "implicit" : "starttls");
	}
	/* All bound: publish them. */
	while (mine != NULL) {
		ls = mine;
		mine = ls->next;
		ls->next = s->socks;
		s->socks = ls;
	}
	return 0;
fail:
	while (mine != NULL) {
		ls = mine;
		mine = ls->next;
		sock_free(ls);
	}
	return ROOST_EIO;
}

int
listen_start(struct server *s)
{
	for (struct listen_sock *ls = s->socks; ls != NULL; ls = ls->next) {
		ls->regs = xcalloc(s->nloops, sizeof(*ls->regs));
		for (unsigned i = 0; i < s->nloops; i++) {
			struct listen_reg *r = &ls->regs[i];

			r->io.fn = accept_ready;
			r->retry.fn = accept_retry;
			r->ls = ls;
			r->sl = &s->loops[i];
			if (loop_add(s->loops[i].loop, ls->fd, EPOLLIN | EPOLLEXCLUSIVE, &r->io) !=
			    0)
				return ROOST_EIO;
		}
	}
	return 0;
}

void
listen_stop(struct srv_loop *sl)
{
	struct server *s = sl->srv;
	unsigned idx = (unsigned)(sl - s->loops);

	for (struct listen_sock *ls = s->socks; ls != NULL; ls = ls->next) {
		if (ls->regs == NULL)
			continue;
		loop_del(sl->loop, ls->fd);
		loop_timer_set(sl->loop, &ls->regs[idx].retry, 0);
	}
}

void
listen_close_all(struct server *s)
{
	for (struct listen_sock *ls = s->socks; ls != NULL; ls = ls->next) {
		if (ls->fd >= 0) {
			close(ls->fd);
			ls->fd = -1;
		}
	}
}

void
listen_free_all(struct server *s)
{
	while (s->socks != NULL) {
		struct listen_sock *ls = s->socks;

		s->socks = ls->next;
		sock_free(ls);
	}
	while (s->listeners != NULL) {
		struct listener *l = s->listeners;

		s->listeners = l->next;
		free(l->name);
		free(l);
	}
}
