#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "roost/config.h"
#include "roost/conn.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/loop.h"
#include "roost/server.h"
#include "roost/server_impl.h"
#include "roost/tls.h"
#include "roost/worker.h"
#include "roost/xalloc.h"

/*
 * The server: owns the loops, the worker pool, the listeners and TLS.
 * server_run()'s thread handles signals (through a signalfd; the signals are
 * blocked in every thread, which inherit the mask from it) and drives the
 * shutdown: loops stop accepting and say goodbye to idle sessions, running
 * commands get shutdown_grace seconds, then everything left is closed.
 */

static unsigned
cpu_count(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : (unsigned)n;
}

int
server_create(const struct roost_config *cfg, const struct roost_services *services,
              struct server **server_r)
{
	struct server *s = xcalloc(1, sizeof(*s));
	sigset_t set;
	int err;

	/* Block the shutdown and reload signals now, so every thread started
	 * from here on (ours and the services') inherits the mask and they
	 * reach server_run()'s signalfd only. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	s->cfg = cfg;
	atomic_init(&s->live, cfg);
	s->services = services;
	s->stop_fd = -1;
	s->done_fd = -1;
	pthread_mutex_init(&s->lim_mu, NULL);
	pthread_mutex_init(&s->reload_mu, NULL);
	/* Room for every admitted connection and the unix-socket ones
	 * (LMTP), which the limits do not count. */
	registry_create(s, (cfg->max_connections != 0 ? cfg->max_connections : 20000) + 1024);
	s->nloops = cfg->loops != 0 ? cfg->loops : cpu_count();
	s->loops = xcalloc(s->nloops, sizeof(*s->loops));
	for (unsigned i = 0; i < s->nloops; i++) {
		struct srv_loop *sl = &s->loops[i];

		sl->srv = s;
		if ((err = loop_create(&sl->loop)) != 0)
			goto fail;
	}
	s->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	s->done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->stop_fd < 0 || s->done_fd < 0) {
		log_error("event=server_create error=\"%s\"", strerror(errno));
		err = ROOST_EIO;
		goto fail;
	}
	if ((err = tls_create(cfg, &s->tls)) != 0)
		goto fail;
	*server_r = s;
	return 0;
fail:
	server_free(&s);
	return err;
}

int
server_listen(struct server *s, const char *name, char *const *addrs, const struct proto_ops *ops,
              bool implicit_tls)
{
	struct listener *lst = xcalloc(1, sizeof(*lst));
	int err;

	lst->name = xstrdup(name);
	lst->ops = ops;
	lst->implicit_tls = implicit_tls;
	/* Listed first so the sockets never outlive their listener. */
	lst->next = s->listeners;
	s->listeners = lst;
	if ((err = listen_bind(s, lst, addrs)) != 0)
		return err;
	return 0;
}

void
server_set_reload(struct server *s, server_reload_fn *fn, void *arg)
{
	s->reload = fn;
	s->reload_arg = arg;
}

void
server_stop(struct server *s)
{
	uint64_t one = 1;

	if (write(s->stop_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("event=server_stop error=\"%s\"", strerror(errno));
}

static void
loop_stop_msg(struct loop_msg *m)
{
	struct srv_loop *sl = (struct srv_loop *)((char *)m - offsetof(struct srv_loop, stop_msg));

	struct server *s = sl->srv;

	listen_stop(sl);
	/* The last loop to let go of the listening sockets closes them, so
	 * new clients are refused at once instead of waiting in the backlog. */
	if (atomic_fetch_add(&s->unlistened, 1) + 1 == s->nloops)
		listen_close_all(s);
	conn_loop_stop(sl);
}

static void
loop_force_msg(struct loop_msg *m)
{
	struct srv_loop *sl = (struct srv_loop *)((char *)m - offsetof(struct srv_loop, force_msg));

	conn_loop_force(sl);
}

static void *
loop_thread(void *arg)
{
	struct srv_loop *sl = arg;
	uint64_t one = 1;

	atomic_store(&sl->taking, true); /* conn_accept() may hand it connections */
	loop_run(sl->loop);
	if (write(sl->srv->done_fd, &one, sizeof(one)) < 0)
		log_warn("event=loop_done error=\"%s\"", strerror(errno));
	return NULL;
}

static void
drain_fd(int fd)
{
	uint64_t v;

	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_warn("event=eventfd_read error=\"%s\"", strerror(errno));
}

static void
begin_shutdown(struct server *s, const char *why)
{
	log_info("event=shutdown reason=%s grace_s=%u", why, s->cfg->shutdown_grace);
	for (unsigned i = 0; i < s->nloops; i++) {
		if (s->loops[i].started)
			loop_post(s->loops[i].loop, &s->loops[i].stop_msg);
	}
}

static void
force_shutdown(struct server *s)
{
	log_info("event=shutdown_force");
	for (unsigned i = 0; i < s->nloops; i++) {
		if (s->loops[i].started)
			loop_post(s->loops[i].loop, &s->loops[i].force_msg);
	}
}

/* The signal thread: returns once every loop has ended. */
static void
serve(struct server *s, int sigfd, unsigned running)
{
	bool stopping = false, forced = false;
	uint64_t grace_end = 0;
	unsigned done = 0;

	while (done < running) {
		struct pollfd pfd[3] = {
		    {sigfd, POLLIN, 0},
		    {s->stop_fd, POLLIN, 0},
		    {s->done_fd, POLLIN, 0},
		};
		int timeout = -1, r;

		if (stopping && !forced) {
			uint64_t now = clock_ms();

			timeout = now >= grace_end ? 0 : (int)(grace_end - now);
		}
		r = poll(pfd, 3, timeout);
		if (r < 0 && errno != EINTR)
			fatal("event=poll error=\"%s\"", strerror(errno));
		if (r == 0 && stopping && !forced) {
			forced = true;
			force_shutdown(s);
			continue;
		}
		if (pfd[0].revents & POLLIN) {
			struct signalfd_siginfo si;

			if (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
				if (si.ssi_signo == SIGHUP) {
					char sum[512], err[512];

					(void)server_reload(s, sum, sizeof(sum), err, sizeof(err));
				} else if (!stopping) {
					stopping = true;
					grace_end =
					    clock_ms() + (uint64_t)s->cfg->shutdown_grace * 1000;
					begin_shutdown(s, si.ssi_signo == SIGINT ? "sigint"
					                                         : "sigterm");
				} else if (!forced) {
					/* A second signal: do not wait for the grace. */
					forced = true;
					force_shutdown(s);
				}
			}
		}
		if (pfd[1].revents & POLLIN) {
			drain_fd(s->stop_fd);
			if (!stopping) {
				stopping = true;
				grace_end = clock_ms() + (uint64_t)s->cfg->shutdown_grace * 1000;
				begin_shutdown(s, "stop");
			}
		}
		if (pfd[2].revents & POLLIN) {
			uint64_t v = 0;

			if (read(s->done_fd, &v, sizeof(v)) == (ssize_t)sizeof(v))
				done += (unsigned)v;
		}
	}
}

int
server_run(struct server *s)
{
	sigset_t set, old;
	struct sigaction sa;
	unsigned running = 0;
	int sigfd, err = 0;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sigfd < 0) {
		log_error("event=signalfd error=\"%s\"", strerror(errno));
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		return ROOST_EIO;
	}
	if ((err = worker_pool_create(s->cfg->workers != 0 ? s->cfg->workers : 4 * cpu_count(),
	                              &s->pool)) != 0)
		goto out;
	if ((err = listen_start(s)) != 0)
		goto out;
	for (unsigned i = 0; i < s->nloops; i++) {
		struct srv_loop *sl = &s->loops[i];
		int e;

		sl->scratch = xmalloc(SRV_SCRATCH);
		sl->stop_msg.fn = loop_stop_msg;
		sl->force_msg.fn = loop_force_msg;
		e = pthread_create(&sl->thread, NULL, loop_thread, sl);
		if (e != 0) {
			log_error("event=loop_start error=\"%s\"", strerror(e));
			err = ROOST_EIO;
			break;
		}
		sl->started = true;
		running++;
	}
	(void)server_ctl_start(s); /* logged; the server serves without it */
	log_info("event=serving loops=%u workers=%u", s->nloops,
	         s->cfg->workers != 0 ? s->cfg->workers : 4 * cpu_count());
	if (err != 0)
		server_stop(s);
	serve(s, sigfd, running);
	for (unsigned i = 0; i < s->nloops; i++) {
		if (s->loops[i].started) {
			pthread_join(s->loops[i].thread, NULL);
			s->loops[i].started = false;
		}
	}
	server_ctl_stop(s);
	log_info("event=stopped");
out:
	worker_pool_free(&s->pool);
	close(sigfd);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return err;
}

void
server_free(struct server **sp)
{
	struct server *s = *sp;

	if (s == NULL)
		return;
	for (unsigned i = 0; i < s->nloops; i++) {
		loop_free(&s->loops[i].loop);
		free(s->loops[i].scratch);
	}
	free(s->loops);
	listen_free_all(s);
	limits_free(s);
	tls_free(&s->tls);
	if (s->stop_fd >= 0)
		close(s->stop_fd);
	if (s->done_fd >= 0)
		close(s->done_fd);
	pthread_mutex_destroy(&s->lim_mu);
	pthread_mutex_destroy(&s->reload_mu);
	server_config_free(s);
	registry_free(s);
	free(s);
	*sp = NULL;
}
