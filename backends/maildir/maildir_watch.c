/*
 * Noticing what other programs do to an open mailbox, so IDLE sessions
 * learn of it without waiting for their next command: one inotify thread
 * per store watches new/ and cur/ of every folder that has a mailbox open.
 *
 * Most events are our own doing (a delivery renamed into new/, a flag
 * rename in cur/, an expunge). A save, a flag rename and an expunge of
 * ours say the names that appear and go before they do it
 * (md_watch_own()), and the thread drops those events as it reads them,
 * without the folder mutex the woken sessions want: the folder is not
 * behind for the 20 ms of a batch after our own STORE or EXPUNGE. Other events are told
 * apart under the folder mutex: a name that appeared and is one of our
 * records, or a name that went away and is none of them, is already
 * known. Anything else (mutt renaming a file, procmail dropping one,
 * Dovecot expunging) makes the thread sync the folder, which records it
 * with a new MODSEQ, and wake the mailbox's watchers through
 * storage_notify(). Events are gathered for 20 ms before they are looked
 * at, so a burst costs one sync.
 *
 * A folder with events read but not yet looked at is marked
 * (watch_pending) from the read until the look, and md_watch_quiet() says
 * whether any event is still unread: together they tell a wake-up on the
 * event loop (md_changes_since_nb()) whether the folder in memory has
 * everything other programs did before it, or whether it must ask the
 * disk on a worker. Another Roost process's delivery renames its file
 * before it writes the notify file that wakes our sessions, so its event
 * is queued before that wake-up.
 *
 * Without inotify (or past the kernel's watch limit) nothing breaks: the
 * directory mtimes still reveal the changes at the session's next command.
 *
 * Locks: ms->lock before w->lock; the thread takes a folder reference
 * under both, so a folder cannot be freed while the thread looks at it.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

#include "roost/hash.h"
#include "roost/log.h"
#include "roost/xalloc.h"

#include "maildir.h"

#define WATCH_MASK (IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_MOVE_SELF | IN_ONLYDIR)
#define BATCH_NS 20000000L

struct wd_ent {
	int wd;
	bool is_new;
	struct md_folder *f;
};

struct md_watcher {
	int ifd;
	_Atomic int draining; /* between reading events and marking folders */
	int pipe[2];
	pthread_t thread;
	pthread_mutex_t lock; /* protects v */
	struct wd_ent *v;
	size_t n, cap;
};

/* One event, copied out of the kernel's buffer. */
struct ev {
	struct md_folder *f;
	bool is_new;
	bool appeared; /* created or moved in */
	bool overflow;
	bool gone; /* new/ or cur/ went away (the watch with it) */
	char *name;
};

struct evlist {
	struct ev *v;
	size_t n, cap;
};

static void
ev_add(struct evlist *l, struct md_folder *f, bool is_new, bool appeared, const char *name)
{
	if (l->n == l->cap) {
		l->cap = l->cap == 0 ? 64 : l->cap * 2;
		l->v = xreallocarray(l->v, l->cap, sizeof(*l->v));
	}
	l->v[l->n].f = f;
	l->v[l->n].is_new = is_new;
	l->v[l->n].appeared = appeared;
	l->v[l->n].overflow = name == NULL;
	l->v[l->n].gone = false;
	l->v[l->n].name = name != NULL ? xstrdup(name) : NULL;
	l->n++;
}

static void own_clear(struct md_folder *f);

/* Drop f's watches; ms->lock and w->lock held. */
static void
unwatch_locked(struct md_watcher *w, struct md_folder *f)
{
	size_t i;

	for (i = 0; i < w->n;) {
		if (w->v[i].f == f) {
			inotify_rm_watch(w->ifd, w->v[i].wd);
			w->v[i] = w->v[--w->n];
		} else {
			i++;
		}
	}
	f->watched = false;
	atomic_store(&f->watch_ok, false);
	own_clear(f);
}

/* bit 0: in new/; bit 1: the name goes (moved away, removed) */
static uint64_t
own_key(bool is_new, bool appears, const char *name)
{
	return (hash_fnv1a64(name, strlen(name), HASH_FNV1A64_INIT) & ~(uint64_t)3) | is_new |
	       (appears ? 0 : 2);
}

void
md_watch_own(struct md_folder *f, bool is_new, bool appears, const char *name)
{
	if (!atomic_load(&f->watch_ok))
		return;
	pthread_mutex_lock(&f->own_lock);
	/* full (events lost): the event is looked at under the mutex */
	if (f->n_own < MD_OWN_MAX)
		f->own[f->n_own++] = own_key(is_new, appears, name);
	pthread_mutex_unlock(&f->own_lock);
}

static bool
own_take(struct md_folder *f, uint64_t key)
{
	bool found = false;

	pthread_mutex_lock(&f->own_lock);
	for (size_t i = f->n_own; i-- > 0;) {
		if (f->own[i] == key) {
			f->own[i] = f->own[--f->n_own];
			found = true;
			break;
		}
	}
	pthread_mutex_unlock(&f->own_lock);
	return found;
}

void
md_watch_own_undo(struct md_folder *f, bool is_new, bool appears, const char *name)
{
	(void)own_take(f, own_key(is_new, appears, name));
}

static void
own_clear(struct md_folder *f)
{
	pthread_mutex_lock(&f->own_lock);
	f->n_own = 0;
	pthread_mutex_unlock(&f->own_lock);
}

bool
md_watch_quiet(struct md_storage *ms)
{
	struct md_watcher *w = ms->watcher;
	struct pollfd pfd = {w->ifd, POLLIN, 0};

	/* the queue first: an event read after it was looked at is marked
	 * on its folder before draining drops back to 0 */
	if (poll(&pfd, 1, 0) != 0)
		return false;
	return atomic_load(&w->draining) == 0;
}

/* An event for f that is looked at under its mutex: f is behind until
 * then. */
static void
ev_pending(struct evlist *l, struct md_folder *f, bool is_new, bool appeared, const char *name)
{
	atomic_store(&f->watch_pending, true);
	f->refs++;
	ev_add(l, f, is_new, appeared, name);
}

/* Read what the kernel has; folders get a reference per event. */
static void
drain(struct md_storage *ms, struct md_watcher *w, struct evlist *l)
{
	char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t r;

	atomic_store(&w->draining, 1);
	while ((r = read(w->ifd, buf, sizeof(buf))) > 0) {
		char *p = buf;

		while (p + sizeof(struct inotify_event) <= buf + r) {
			const struct inotify_event *e = (const struct inotify_event *)p;
			size_t i;

			p += sizeof(*e) + e->len;
			pthread_mutex_lock(&ms->lock);
			pthread_mutex_lock(&w->lock);
			if (e->mask & IN_Q_OVERFLOW) {
				for (i = 0; i < w->n; i++) {
					if (!w->v[i].is_new)
						continue;
					own_clear(w->v[i].f);
					ev_pending(l, w->v[i].f, true, true, NULL);
				}
			}
			for (i = 0; i < w->n; i++) {
				if (w->v[i].wd != e->wd)
					continue;
				if (e->mask & (IN_IGNORED | IN_MOVE_SELF)) {
					/* new/ or cur/ removed or moved away (another
					 * program): its stamps mean nothing now; the next
					 * open watches what is at the path then */
					struct md_folder *f = w->v[i].f;

					unwatch_locked(w, f);
					ev_pending(l, f, true, true, NULL);
					l->v[l->n - 1].gone = true;
				} else if (e->len > 0 && e->name[0] != '.') {
					bool appeared = (e->mask & (IN_CREATE | IN_MOVED_TO)) != 0;

					if (own_take(w->v[i].f,
					             own_key(w->v[i].is_new, appeared, e->name)))
						break;
					ev_pending(l, w->v[i].f, w->v[i].is_new, appeared, e->name);
				}
				break;
			}
			pthread_mutex_unlock(&w->lock);
			pthread_mutex_unlock(&ms->lock);
		}
	}
	atomic_store(&w->draining, 0);
}

/* With f->mutex held: do we already know what ev says? */
static bool
known(struct md_folder *f, struct base_map *map, const struct ev *e)
{
	struct md_rec *r;

	if (e->gone) /* only a folder made again at the path is news */
		return !md_folder_exists(f->path);
	if (e->overflow)
		return false;
	r = md_map_find(map, f, e->name, strcspn(e->name, ":"));
	if (r != NULL && r->in_new == e->is_new && strcmp(r->fname, e->name) == 0)
		return e->appeared;
	return !e->appeared;
}

static void
process(struct md_storage *ms, struct evlist *l)
{
	size_t i, j;

	for (i = 0; i < l->n; i++) {
		struct md_folder *f = l->v[i].f;
		struct base_map map;
		bool unknown = false, changed = false;
		char *user = NULL, *name = NULL;

		if (f == NULL)
			continue;
		pthread_mutex_lock(&f->mutex);
		/* every event of this folder in the batch at once */
		md_map_build(&map, f);
		for (j = i; j < l->n; j++) {
			if (l->v[j].f != f)
				continue;
			if (!unknown && !known(f, &map, &l->v[j]))
				unknown = true;
		}
		free(map.slots);
		if (unknown && md_refresh(f, MD_SYNC_FORCE, &changed) < 0)
			changed = false;
		/* A failed sync leaves f unloaded (or the next sync to the
		 * stamps), which the loop's wake-up does not answer from. */
		atomic_store(&f->watch_pending, false);
		if (changed && f->user != NULL) {
			user = xstrdup(f->user);
			name = xstrdup(f->name);
		}
		pthread_mutex_unlock(&f->mutex);
		if (user != NULL)
			md_notify(f, user, name);
		free(user);
		free(name);
		for (j = i; j < l->n; j++) {
			if (l->v[j].f != f)
				continue;
			l->v[j].f = NULL;
			md_folder_put(ms, f);
		}
	}
	for (i = 0; i < l->n; i++)
		free(l->v[i].name);
	l->n = 0;
}

static void *
watch_thread(void *arg)
{
	struct md_storage *ms = arg;
	struct md_watcher *w = ms->watcher;
	struct evlist l = {NULL, 0, 0};

	for (;;) {
		struct pollfd pfd[2] = {{w->ifd, POLLIN, 0}, {w->pipe[0], POLLIN, 0}};
		struct timespec batch = {0, BATCH_NS};

		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[1].revents != 0)
			break;
		/* at once: our own renames are dropped as they are read, so
		 * the folder is not marked behind while they wait */
		drain(ms, w, &l);
		if (l.n == 0)
			continue;
		nanosleep(&batch, NULL);
		drain(ms, w, &l);
		process(ms, &l);
	}
	/* drop references still held */
	process(ms, &l);
	free(l.v);
	return NULL;
}

static struct md_watcher *
watcher_get(struct md_storage *ms)
{
	struct md_watcher *w;

	pthread_mutex_lock(&ms->lock);
	if (ms->watcher != NULL || ms->watcher_failed) {
		w = ms->watcher;
		pthread_mutex_unlock(&ms->lock);
		return w;
	}
	w = xcalloc(1, sizeof(*w));
	w->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (w->ifd < 0 || pipe2(w->pipe, O_CLOEXEC) < 0) {
		log_info(
		    "event=maildir_watch status=disabled error=\"%s\" effect=\"changes by other "
		    "programs are seen at the next command\"",
		    strerror(errno));
		if (w->ifd >= 0)
			close(w->ifd);
		free(w);
		ms->watcher_failed = true;
		pthread_mutex_unlock(&ms->lock);
		return NULL;
	}
	pthread_mutex_init(&w->lock, NULL);
	ms->watcher = w;
	if (pthread_create(&w->thread, NULL, watch_thread, ms) != 0) {
		log_warn("event=maildir_watch status=disabled error=\"cannot start the inotify "
		         "thread\"");
		close(w->ifd);
		close(w->pipe[0]);
		close(w->pipe[1]);
		pthread_mutex_destroy(&w->lock);
		free(w);
		ms->watcher = NULL;
		ms->watcher_failed = true;
		w = NULL;
	}
	pthread_mutex_unlock(&ms->lock);
	return w;
}

void
md_watch_add(struct md_storage *ms, struct md_folder *f)
{
	struct md_watcher *w = watcher_get(ms);
	static const char *const subs[] = {"new", "cur"};
	size_t i;

	if (w == NULL)
		return;
	pthread_mutex_lock(&ms->lock);
	pthread_mutex_lock(&w->lock);
	if (!f->watched) {
		size_t ok = 0;

		f->watched = true;
		for (i = 0; i < 2; i++) {
			char *p = md_path(f->path, subs[i]);
			int wd = inotify_add_watch(w->ifd, p, WATCH_MASK);

			if (wd < 0) {
				log_debug("event=storage_error backend=maildir "
				          "op=inotify_add_watch path=%s error=\"%s\"",
				          LOG_QUOTE(p), strerror(errno));
			} else {
				if (w->n == w->cap) {
					w->cap = w->cap == 0 ? 16 : w->cap * 2;
					w->v = xreallocarray(w->v, w->cap, sizeof(*w->v));
				}
				w->v[w->n].wd = wd;
				w->v[w->n].is_new = i == 0;
				w->v[w->n].f = f;
				w->n++;
				ok++;
			}
			free(p);
		}
		atomic_store(&f->watch_ok, ok == 2);
	}
	pthread_mutex_unlock(&w->lock);
	pthread_mutex_unlock(&ms->lock);
}

void
md_watch_remove_locked(struct md_storage *ms, struct md_folder *f)
{
	struct md_watcher *w = ms->watcher;

	if (w == NULL || !f->watched)
		return;
	pthread_mutex_lock(&w->lock);
	unwatch_locked(w, f);
	pthread_mutex_unlock(&w->lock);
}

void
md_watch_stop(struct md_storage *ms)
{
	struct md_watcher *w = ms->watcher;

	if (w == NULL)
		return;
	if (write(w->pipe[1], "x", 1) < 0)
		log_warn("event=maildir_watch op=wake error=\"%s\"", strerror(errno));
	pthread_join(w->thread, NULL);
	close(w->ifd);
	close(w->pipe[0]);
	close(w->pipe[1]);
	pthread_mutex_destroy(&w->lock);
	free(w->v);
	free(w);
	ms->watcher = NULL;
}
