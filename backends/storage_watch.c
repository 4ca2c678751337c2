/*
 * Change notification: the registry of in-process watchers, and a per-user
 * notify file under <data_dir>/notify watched with inotify (or polled where
 * inotify is unavailable), so a change made by another process on the same
 * data directory wakes the watchers here.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <dirent.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "roost/config.h"
#include "roost/error.h"
#include "roost/hash.h"
#include "roost/log.h"
#include "roost/loop.h"
#include "roost/storage.h"
#include "roost/storage_impl.h"
#include "roost/xalloc.h"

#include "storage_private.h"

#define WATCH_BUCKETS 256

/*
 * What a poller compares of a notify file. Each notification appends a byte
 * (the file is emptied again past NOTIFY_MAX), so the size moves even when
 * two notifications fall in one tick of the file system's clock and leave
 * the mtime as it was: with the mtime alone, a change made just after a
 * session started watching could go unnoticed.
 */
struct notify_stamp {
	struct timespec mtime;
	off_t size;
};

#define NOTIFY_MAX 4096

/*
 * This process's own writes to a notify file come back to its inotify
 * thread as events like anyone else's, and woke every watcher of the user
 * a second time for a change they had been told of already (for a NOTIFY
 * session, a rescan of every mailbox it follows). An echo slot remembers,
 * per user hash, the file as this process left it after a write of its
 * own, when the file held nothing else new then: an event that finds the
 * file still so is that write's echo and is dropped. Whenever another
 * process may have written (the file is not as the slot says, before or
 * after the write) or the file was emptied, the slot is cleared and the
 * event goes through.
 */
#define ECHO_SLOTS 1024

struct echo_slot {
	uint64_t h;
	struct notify_stamp after; /* the file as last known to hold no news */
	bool valid;
};

/*
 * Who watches the notify files: every registry whose thread runs keeps a
 * directory <notify>/procs/<pid>-<random> while it lives, holding a file
 * "lock" it keeps locked (flock), made under a dot name and renamed into
 * place once locked, so a process starting up cannot take a live entry
 * for a crashed one's (it removes entries whose lock it can take). Where
 * the file system counts subdirectories in a directory's link count,
 * procs/ having 3 links (".", its name, and our entry) tells a writer
 * that no other process watches, so it skips the notify file: the write
 * was four system calls plus an inotify event that woke its own thread
 * for nothing. An entry is made before the registry serves any watch,
 * and a writer looks at the count after its change, so a process that
 * watched before the change is always told.
 */
struct presence {
	int dirfd;  /* procs/, -1: not known, always write */
	int lockfd; /* our entry's lock, held */
	char *entry;
	bool counted; /* the file system counts subdirectories */
};

/*
 * The fields a wake-up reads come first, and the names live in the same
 * allocation, right after them (names[]): a delivery to 50 users walked
 * 1,000 watches on the delivering thread before any session was woken,
 * and each watch's user and mailbox, allocated apart, were two more cache
 * misses per watch (issue 20).
 */
struct storage_watch {
	struct storage_watch *next;
	uint64_t uhash;
	char *user;    /* in names[] */
	char *mailbox; /* in names[]; NULL: a user watch (storage_watch_user()), ucb set */
	storage_watch_fn *cb;
	storage_watch_user_fn *ucb;
	void *arg;
	struct watch_registry *reg;
	struct notify_stamp seen; /* the notify file as last seen (polling mode) */
	char names[];
};

/*
 * Lock rule: reg->lock protects the buckets. Callbacks run with it held,
 * which is what makes storage_unwatch() safe (once it has taken the lock
 * and unlinked the watch, no callback of it runs or will run); callbacks
 * therefore must not call storage_watch()/storage_unwatch().
 */
struct watch_registry {
	pthread_mutex_t lock;
	struct storage_watch *buckets[WATCH_BUCKETS];
	char *notify_dir;
	int ifd; /* inotify, -1 when unavailable: then polling */
	int stop_pipe[2];
	/* Lock rule: echo_lock protects echo[]; it is taken alone
	 * (storage_notify_others) or inside lock (the inotify thread), never
	 * the other way round. */
	pthread_mutex_t echo_lock;
	struct echo_slot echo[ECHO_SLOTS];
	struct presence presence;
	pthread_t thread;
	bool thread_running;
};

uint64_t
storage_user_hash(const char *user)
{
	return hash_str64(user);
}

static const struct storage_change unknown_change;

/* Run w's callback: a user watch learns what changed. */
static void
fire(struct storage_watch *w, const struct storage_change *ch)
{
	if (w->mailbox == NULL)
		w->ucb(w->arg, ch);
	else
		w->cb(w->arg);
}

/* ch->old_name != NULL: ch->mailbox was old_name until now, and its
 * children moved with it, so every mailbox watch of the user is woken. A
 * metadata change wakes only user watches (IDLE has nothing to say). */
static void
wake_locked(struct watch_registry *reg, uint64_t uhash, const char *user,
            const struct storage_change *ch)
{
	/* The sessions woken here reach their loops in one post each
	 * (loop_batch_begin()); a caller waking several users holds them
	 * all in an outer batch (storage_deliver_owned()). */
	loop_batch_begin();
	for (struct storage_watch *w = reg->buckets[uhash % WATCH_BUCKETS]; w != NULL;
	     w = w->next) {
		if (w->uhash != uhash)
			continue;
		if (user != NULL && strcmp(w->user, user) != 0)
			continue;
		if (w->mailbox != NULL &&
		    (ch->n_entries > 0 || (ch->mailbox != NULL && ch->old_name == NULL &&
		                           strcmp(w->mailbox, ch->mailbox) != 0)))
			continue;
		fire(w, user != NULL ? ch : &unknown_change);
	}
	loop_batch_end();
}

static void
wake_all_locked(struct watch_registry *reg)
{
	loop_batch_begin();
	for (size_t b = 0; b < WATCH_BUCKETS; b++) {
		for (struct storage_watch *w = reg->buckets[b]; w != NULL; w = w->next)
			fire(w, &unknown_change);
	}
	loop_batch_end();
}

static struct notify_stamp notify_stat(const struct watch_registry *reg, uint64_t h);
static bool stamp_eq(const struct notify_stamp *a, const struct notify_stamp *b);

/* The inotify thread, on an event for h: is the file as this process's
 * last write left it (drop the event)? Else remember it as it is now. */
static bool
echo_of_own(struct watch_registry *reg, uint64_t h)
{
	struct notify_stamp now = notify_stat(reg, h);
	struct echo_slot *e = &reg->echo[h % ECHO_SLOTS];
	bool own;

	pthread_mutex_lock(&reg->echo_lock);
	own = e->valid && e->h == h && stamp_eq(&e->after, &now);
	if (!own)
		*e = (struct echo_slot){.h = h, .after = now, .valid = true};
	pthread_mutex_unlock(&reg->echo_lock);
	return own;
}

/* The notify files are named by the user's hash; an event on one wakes every
 * watcher of users with that hash (a rare collision only costs a spurious
 * wake-up). */
static void *
notify_thread(void *arg)
{
	struct watch_registry *reg = arg;
	union {
		struct inotify_event ev;
		char raw[16 * (sizeof(struct inotify_event) + NAME_MAX + 1)];
	} u;

	for (;;) {
		struct pollfd pfd[2] = {
		    {.fd = reg->ifd, .events = POLLIN},
		    {.fd = reg->stop_pipe[0], .events = POLLIN},
		};
		ssize_t n;

		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_error("event=notify_error op=poll error=\"%s\"", strerror(errno));
			break;
		}
		if (pfd[1].revents != 0)
			break;
		n = read(reg->ifd, u.raw, sizeof(u.raw));
		if (n <= 0) {
			if (n < 0 && (errno == EINTR || errno == EAGAIN))
				continue;
			break;
		}
		pthread_mutex_lock(&reg->lock);
		for (char *p = u.raw; p < u.raw + n;) {
			struct inotify_event *ev = (struct inotify_event *)p;
			char *end;
			uint64_t h;

			if ((ev->mask & IN_Q_OVERFLOW) != 0) {
				wake_all_locked(reg);
			} else if (ev->len > 0) {
				errno = 0;
				h = strtoull(ev->name, &end, 16);
				if (errno == 0 && *end == '\0' && end != ev->name)
					if (!echo_of_own(reg, h))
						wake_locked(reg, h, NULL, &unknown_change);
			}
			p += sizeof(*ev) + ev->len;
		}
		pthread_mutex_unlock(&reg->lock);
	}
	return NULL;
}

static void
notify_path(const struct watch_registry *reg, uint64_t h, char *path, size_t size)
{
	snprintf(path, size, "%s/%016llx", reg->notify_dir, (unsigned long long)h);
}

static struct notify_stamp
notify_stat(const struct watch_registry *reg, uint64_t h)
{
	char path[PATH_MAX];
	struct stat sb;

	notify_path(reg, h, path, sizeof(path));
	if (stat(path, &sb) < 0)
		return (struct notify_stamp){{0, 0}, 0};
	return (struct notify_stamp){sb.st_mtim, sb.st_size};
}

static bool
stamp_eq(const struct notify_stamp *a, const struct notify_stamp *b)
{
	return a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
	       a->size == b->size;
}

/* Remove the entries of procs/ whose owner is gone (its lock is free). */
static void
presence_clean(int dirfd)
{
	int fd = dup(dirfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;

	if (d == NULL) {
		if (fd >= 0)
			close(fd);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		char lock[NAME_MAX + 8];
		int lfd;

		if (de->d_name[0] == '.')
			continue;
		snprintf(lock, sizeof(lock), "%s/lock", de->d_name);
		lfd = openat(dirfd, lock, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
		if (lfd < 0)
			continue;
		if (flock(lfd, LOCK_EX | LOCK_NB) == 0) {
			(void)unlinkat(dirfd, lock, 0);
			(void)unlinkat(dirfd, de->d_name, AT_REMOVEDIR);
		}
		close(lfd);
	}
	closedir(d);
}

/* Make this registry's entry in procs/ (struct presence). On any failure
 * dirfd stays -1: every change is then written for others, as before. */
static void
presence_add(struct watch_registry *reg)
{
	struct presence *p = &reg->presence;
	char procs[PATH_MAX], tmp[64], name[64];
	uint64_t rnd = 0;
	struct stat before, after;
	int dirfd, lfd = -1;

	p->dirfd = p->lockfd = -1;
	snprintf(procs, sizeof(procs), "%s/procs", reg->notify_dir);
	if (mkdir(procs, 0700) < 0 && errno != EEXIST)
		return;
	dirfd = open(procs, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (dirfd < 0)
		return;
	presence_clean(dirfd);
	if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		rnd = (uint64_t)time(NULL) ^ ((uint64_t)(uintptr_t)reg << 16);
	snprintf(tmp, sizeof(tmp), ".new-%ld-%016llx", (long)getpid(), (unsigned long long)rnd);
	snprintf(name, sizeof(name), "%ld-%016llx", (long)getpid(), (unsigned long long)rnd);
	if (fstat(dirfd, &before) < 0 || mkdirat(dirfd, tmp, 0700) < 0)
		goto fail;
	{
		char lock[96];

		snprintf(lock, sizeof(lock), "%s/lock", tmp);
		lfd = openat(dirfd, lock, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	}
	if (lfd < 0 || flock(lfd, LOCK_EX | LOCK_NB) < 0 || renameat(dirfd, tmp, dirfd, name) < 0 ||
	    fstat(dirfd, &after) < 0) {
		char lock[96];

		snprintf(lock, sizeof(lock), "%s/lock", tmp);
		(void)unlinkat(dirfd, lock, 0);
		(void)unlinkat(dirfd, tmp, AT_REMOVEDIR);
		goto fail;
	}
	p->dirfd = dirfd;
	p->lockfd = lfd;
	p->entry = xstrdup(name);
	/* our entry added one link (unless another process came or went
	 * meanwhile, which only costs us the shortcut) */
	p->counted = before.st_nlink >= 2 && after.st_nlink == before.st_nlink + 1;
	return;
fail:
	if (lfd >= 0)
		close(lfd);
	close(dirfd);
}

static void
presence_remove(struct presence *p)
{
	char lock[96];

	if (p->dirfd < 0)
		return;
	snprintf(lock, sizeof(lock), "%s/lock", p->entry);
	(void)unlinkat(p->dirfd, lock, 0);
	(void)unlinkat(p->dirfd, p->entry, AT_REMOVEDIR);
	close(p->lockfd);
	close(p->dirfd);
	free(p->entry);
	p->dirfd = p->lockfd = -1;
	p->entry = NULL;
}

/* Does no other process watch the notify files (struct presence)? */
static bool
presence_alone(const struct presence *p)
{
	struct stat sb;

	return p->dirfd >= 0 && p->counted && fstat(p->dirfd, &sb) == 0 && sb.st_nlink == 3;
}

#define POLL_MS 250

/*
 * Without inotify (the per-user instance limit is easily exhausted on a
 * shared host) the notify files are polled: each watch remembers the
 * mtime it last saw. One stat per distinct user per round.
 */
static void *
poll_thread(void *arg)
{
	struct watch_registry *reg = arg;

	for (;;) {
		struct pollfd pfd = {.fd = reg->stop_pipe[0], .events = POLLIN};
		int r = poll(&pfd, 1, POLL_MS);

		if (r < 0 && errno == EINTR)
			continue;
		if (r != 0)
			break;
		pthread_mutex_lock(&reg->lock);
		for (size_t b = 0; b < WATCH_BUCKETS; b++) {
			uint64_t last_h = 0;
			struct notify_stamp last_t = {{0, 0}, 0};
			bool have = false;

			for (struct storage_watch *w = reg->buckets[b]; w != NULL; w = w->next) {
				if (!have || w->uhash != last_h) {
					last_h = w->uhash;
					last_t = notify_stat(reg, w->uhash);
					have = true;
				}
				if (!stamp_eq(&last_t, &w->seen)) {
					w->seen = last_t;
					fire(w, &unknown_change);
				}
			}
		}
		pthread_mutex_unlock(&reg->lock);
	}
	return NULL;
}

struct watch_registry *
storage_watch_registry_new(const struct roost_config *cfg)
{
	struct watch_registry *reg = xcalloc(1, sizeof(*reg));
	const char *dir = cfg != NULL && cfg->data_dir != NULL ? cfg->data_dir : ".";
	size_t len = strlen(dir) + sizeof("/notify");

	pthread_mutex_init(&reg->lock, NULL);
	pthread_mutex_init(&reg->echo_lock, NULL);
	reg->ifd = -1;
	reg->presence.dirfd = reg->presence.lockfd = -1;
	reg->stop_pipe[0] = reg->stop_pipe[1] = -1;
	reg->notify_dir = xmalloc(len);
	snprintf(reg->notify_dir, len, "%s/notify", dir);
	if (mkdir(reg->notify_dir, 0700) < 0 && errno != EEXIST) {
		log_warn("event=notify_error op=mkdir path=%s error=\"%s\" effect=\"no "
		         "cross-process notification\"",
		         reg->notify_dir, strerror(errno));
		return reg;
	}
	if (pipe2(reg->stop_pipe, O_CLOEXEC) < 0) {
		log_warn("event=notify_error op=pipe error=\"%s\" effect=\"no cross-process "
		         "notification\"",
		         strerror(errno));
		return reg;
	}
	/* ROOST_NOTIFY_POLL: poll as when inotify is unavailable (tests). */
	if (getenv("ROOST_NOTIFY_POLL") == NULL)
		reg->ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	else
		errno = ENOSYS;
	if (reg->ifd >= 0 &&
	    inotify_add_watch(reg->ifd, reg->notify_dir, IN_CLOSE_WRITE | IN_ATTRIB) < 0) {
		close(reg->ifd);
		reg->ifd = -1;
	}
	if (reg->ifd < 0)
		log_info("event=notify_poll path=%s error=\"%s\" poll_ms=%d", reg->notify_dir,
		         strerror(errno), POLL_MS);
	/* after the inotify watch: a change written once our entry shows is
	 * seen by it */
	presence_add(reg);
	if (pthread_create(&reg->thread, NULL, reg->ifd >= 0 ? notify_thread : poll_thread, reg) !=
	    0) {
		log_warn(
		    "event=notify_error op=thread_start effect=\"no cross-process notification\"");
		presence_remove(&reg->presence);
		return reg;
	}
	reg->thread_running = true;
	return reg;
}

void
storage_watch_registry_free(struct watch_registry **regp)
{
	struct watch_registry *reg = *regp;

	if (reg == NULL)
		return;
	*regp = NULL;
	if (reg->thread_running) {
		char c = 0;

		if (write(reg->stop_pipe[1], &c, 1) < 0)
			log_warn("event=notify_error op=thread_stop error=\"%s\"", strerror(errno));
		pthread_join(reg->thread, NULL);
	}
	presence_remove(&reg->presence);
	if (reg->stop_pipe[0] >= 0) {
		close(reg->stop_pipe[0]);
		close(reg->stop_pipe[1]);
	}
	if (reg->ifd >= 0)
		close(reg->ifd);
	for (size_t b = 0; b < WATCH_BUCKETS; b++) {
		struct storage_watch *w = reg->buckets[b], *next;

		for (; w != NULL; w = next) {
			next = w->next;
			log_warn("event=notify_error user=%s mailbox=%s error=\"watch still "
			         "registered at close\"",
			         LOG_QUOTE(w->user),
			         LOG_QUOTE(w->mailbox != NULL ? w->mailbox : "*"));
			free(w);
		}
	}
	pthread_mutex_destroy(&reg->lock);
	pthread_mutex_destroy(&reg->echo_lock);
	free(reg->notify_dir);
	free(reg);
}

/* Wake the watchers of (user, mailbox) in this process. */
void
storage_notify_here(struct watch_registry *reg, uint64_t h, const char *user, const char *mailbox)
{
	struct storage_change ch = {.mailbox = mailbox};

	pthread_mutex_lock(&reg->lock);
	wake_locked(reg, h, user, &ch);
	pthread_mutex_unlock(&reg->lock);
}

/* Write to the user's notify file: other processes' inotify threads see
 * IN_CLOSE_WRITE, their pollers a new size (struct notify_stamp). Not
 * when no other process watches (struct presence). */
void
storage_notify_others(struct watch_registry *reg, uint64_t h)
{
	char path[PATH_MAX];
	struct stat sb;
	int fd;

	if (presence_alone(&reg->presence))
		return;
	notify_path(reg, h, path, sizeof(path));
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		log_debug("event=notify_error path=%s error=\"%s\"", path, strerror(errno));
		return;
	}
	struct echo_slot *e = &reg->echo[h % ECHO_SLOTS];
	off_t end;
	bool mine = false;

	pthread_mutex_lock(&reg->echo_lock);
	if (write(fd, "!", 1) < 0) {
		log_debug("event=notify_error path=%s error=\"%s\"", path, strerror(errno));
	} else if (fstat(fd, &sb) == 0) {
		/* O_APPEND: the byte landed at end - 1. Ours alone when the file
		 * was as the slot knew it before and is as we left it after. */
		end = lseek(fd, 0, SEEK_CUR);
		mine = e->valid && e->h == h && end > 0 && e->after.size == end - 1 &&
		       sb.st_size == end;
		if (sb.st_size >= NOTIFY_MAX) {
			mine = false;
			if (ftruncate(fd, 0) < 0)
				log_debug("event=notify_error path=%s error=\"%s\"", path,
				          strerror(errno));
		}
	}
	if (mine)
		e->after = (struct notify_stamp){sb.st_mtim, sb.st_size};
	else if (e->h == h)
		e->valid = false;
	pthread_mutex_unlock(&reg->echo_lock);
	close(fd);
}

/* mailbox NULL wakes every watcher of the user (used for renames, where
 * children move too). */
void
storage_notify(struct storage *st, const char *user, const char *mailbox)
{
	struct watch_registry *reg = st->watches;
	uint64_t h = storage_user_hash(user);

	if (reg == NULL)
		return;
	storage_notify_here(reg, h, user, mailbox);
	storage_notify_others(reg, h);
}

/* Wake the user's watchers here with ch, then the other processes. */
static void
notify_change(struct watch_registry *reg, const char *user, const struct storage_change *ch)
{
	uint64_t h = storage_user_hash(user);

	pthread_mutex_lock(&reg->lock);
	wake_locked(reg, h, user, ch);
	pthread_mutex_unlock(&reg->lock);
	storage_notify_others(reg, h);
}

void
storage_notify_rename(struct storage *st, const char *user, const char *from, const char *to)
{
	struct storage_change ch = {.mailbox = to, .old_name = from};

	if (st->watches != NULL)
		notify_change(st->watches, user, &ch);
}

void
storage_notify_metadata(struct storage *st, const char *user, const char *mailbox,
                        const char *const *entries, size_t n)
{
	struct storage_change ch = {.mailbox = mailbox, .entries = entries, .n_entries = n};

	if (st->watches != NULL && n > 0)
		notify_change(st->watches, user, &ch);
}

void
storage_wake(struct storage *st, const char *user, const char *mailbox)
{
	struct watch_registry *reg = st->watches;

	if (reg == NULL)
		return;
	if (user == NULL) {
		pthread_mutex_lock(&reg->lock);
		wake_all_locked(reg);
		pthread_mutex_unlock(&reg->lock);
		return;
	}
	storage_notify_here(reg, storage_user_hash(user), user, mailbox);
}

bool
storage_watched(struct storage *st, const char *user, const char *mailbox)
{
	struct watch_registry *reg = st->watches;
	uint64_t h = storage_user_hash(user);
	bool found = false;

	if (reg == NULL)
		return false;
	pthread_mutex_lock(&reg->lock);
	for (struct storage_watch *w = reg->buckets[h % WATCH_BUCKETS]; w != NULL && !found;
	     w = w->next) {
		found = w->uhash == h && strcmp(w->user, user) == 0 &&
		        (w->mailbox == NULL || strcmp(w->mailbox, mailbox) == 0);
	}
	pthread_mutex_unlock(&reg->lock);
	return found;
}

/* Make a watch on user (on one mailbox, or with mailbox NULL on all of them:
 * exactly one of cb and ucb is set) and put it in the registry. */
static int
watch_add(struct storage *st, const char *user, const char *mailbox, storage_watch_fn *cb,
          storage_watch_user_fn *ucb, void *arg, struct storage_watch **watch_r)
{
	size_t ulen = strlen(user) + 1, mlen = mailbox != NULL ? strlen(mailbox) + 1 : 0;
	struct storage_watch *w = xcalloc(1, sizeof(*w) + ulen + mlen);

	w->uhash = storage_user_hash(user);
	w->user = memcpy(w->names, user, ulen);
	w->mailbox = mailbox != NULL ? memcpy(w->names + ulen, mailbox, mlen) : NULL;
	w->cb = cb;
	w->ucb = ucb;
	w->arg = arg;
	w->reg = st->watches;
	if (w->reg->ifd < 0)
		w->seen = notify_stat(w->reg, w->uhash);
	pthread_mutex_lock(&w->reg->lock);
	w->next = w->reg->buckets[w->uhash % WATCH_BUCKETS];
	w->reg->buckets[w->uhash % WATCH_BUCKETS] = w;
	pthread_mutex_unlock(&w->reg->lock);
	*watch_r = w;
	return 0;
}

int
storage_watch(struct storage *st, const char *user, const char *mailbox, storage_watch_fn *cb,
              void *arg, struct storage_watch **watch_r)
{
	char canon[STORAGE_MAX_NAME + 1];
	struct acl_target t;
	int rc;

	if (cb == NULL)
		return ROOST_EINVAL;
	if ((rc = storage_user_name_canon(user, mailbox, canon)) != 0)
		return rc;
	/* another user's mailbox: the owner's changes wake it (storage_acl.c) */
	if ((rc = storage_acl_resolve(st, user, canon, ACL_READ, &t)) == 0) {
		user = t.foreign ? t.owner : user;
		memcpy(canon, t.name, sizeof(canon));
	} else if (rc != 0 && rc != ROOST_ENOTFOUND) {
		return rc;
	}
	return watch_add(st, user, canon, cb, NULL, arg, watch_r);
}

int
storage_watch_user(struct storage *st, const char *user, storage_watch_user_fn *cb, void *arg,
                   struct storage_watch **watch_r)
{
	/* the public store too: NOTIFY follows the shared namespace through
	 * it (a change there is any user's) */
	if (!storage_owner_valid(user) || cb == NULL)
		return ROOST_EINVAL;
	return watch_add(st, user, NULL, NULL, cb, arg, watch_r);
}

void
storage_unwatch(struct storage_watch **watchp)
{
	struct storage_watch *w = *watchp, **pp;

	if (w == NULL)
		return;
	*watchp = NULL;
	pthread_mutex_lock(&w->reg->lock);
	for (pp = &w->reg->buckets[w->uhash % WATCH_BUCKETS]; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	}
	pthread_mutex_unlock(&w->reg->lock);
	free(w);
}
