/*
 * The storage wrapper: backend registry, all validation shared by the
 * backends (names, INBOX rules, flags, keywords, UID sets, read-only),
 * default folders, and change notification (in-process watchers plus a
 * per-user notify file under <data_dir>/notify watched with inotify, so a
 * change made by another process on the same data directory wakes the
 * watchers here).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "roost/auth.h"
#include "roost/config.h"
#include "roost/error.h"
#include "roost/hash.h"
#include "roost/log.h"
#include "roost/mutf7.h"
#include "roost/storage.h"
#include "roost/storage_impl.h"
#include "roost/utf8.h"
#include "roost/xalloc.h"

static const struct storage_ops *
backend_find(const char *name)
{
	const struct storage_ops *all[] = {&storage_lmdb_ops, &storage_maildir_ops,
	                                   &storage_pgsql_ops};

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (all[i] != NULL && all[i]->name != NULL && strcmp(all[i]->name, name) == 0)
			return all[i];
	}
	return NULL;
}

/* Every slot is required: a backend that cannot do something returns
 * ROOST_ENOTSUP from its op instead of leaving it NULL. */
static bool
backend_complete(const struct storage_ops *o)
{
	return o->open != NULL && o->close != NULL && o->user_init != NULL && o->list != NULL &&
	       o->create != NULL && o->delete != NULL && o->rename != NULL &&
	       o->subscribe != NULL && o->status != NULL && o->deliver != NULL &&
	       o->mailbox_open != NULL && o->mailbox_close != NULL && o->mailbox_status != NULL &&
	       o->records != NULL && o->keywords != NULL && o->claim_recent != NULL &&
	       o->read != NULL && o->cache_get != NULL && o->cache_set != NULL &&
	       o->append != NULL && o->store != NULL && o->expunge != NULL && o->copy != NULL &&
	       o->changes_since != NULL && o->check != NULL &&
	       (o->lock_user == NULL) == (o->unlock_user == NULL);
}

bool
storage_backend_available(const char *name)
{
	return name != NULL && backend_find(name) != NULL;
}

/* ------------------------------------------------------------------ */
/* Validation                                                          */
/* ------------------------------------------------------------------ */

/*
 * The stored length is measured as Maildir++ spells the name (storage.h),
 * on every backend: '.' (its on-disk hierarchy separator) and '%' are
 * written "%2e" and "%25" there, three bytes each. A name one backend
 * takes, the other takes too, and a hierarchy too long to store is refused
 * before any parent is created.
 */
bool
storage_name_valid(const char *name)
{
	size_t len, comp = 0, stored;

	if (name == NULL)
		return false;
	len = strnlen(name, STORAGE_MAX_NAME + 1);
	if (len == 0 || len > STORAGE_MAX_NAME || !utf8_text_valid(name, len))
		return false;
	if (mutf7_encoded_len(name, len, &stored) < 0)
		return false;
	for (size_t i = 0; i <= len; i++) {
		if (i == len || name[i] == '/') {
			if (comp == 0)
				return false; /* empty component, leading or trailing '/' */
			/* "." and ".." read as paths to too many programs */
			if ((comp == 1 && name[i - 1] == '.') ||
			    (comp == 2 && name[i - 1] == '.' && name[i - 2] == '.'))
				return false;
			comp = 0;
			continue;
		}
		if (name[i] == '.' || name[i] == '%')
			stored += 2;
		comp++;
	}
	return stored <= STORAGE_MAX_NAME_STORED;
}

/* The rule of the passwd file and `roost user`, so that both agree. */
bool
storage_user_valid(const char *user)
{
	return auth_user_name_valid(user);
}

/* An IMAP atom (RFC 3501 flag-keyword): no atom-specials, no '\'. */
bool
storage_keyword_valid(const char *kw)
{
	size_t len;

	if (kw == NULL)
		return false;
	len = strnlen(kw, STORAGE_MAX_KEYWORD_LEN + 1);
	if (len == 0 || len > STORAGE_MAX_KEYWORD_LEN)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)kw[i];

		if (c <= 0x20 || c >= 0x7f || strchr("(){%*\"\\]", c) != NULL)
			return false;
	}
	return true;
}

/* Validate name and write its canonical spelling (INBOX in capitals,
 * also as the first component of a child) into out. */
static int
name_canon(const char *name, char out[STORAGE_MAX_NAME + 1])
{
	size_t len;

	if (!storage_name_valid(name))
		return ROOST_EINVAL;
	len = strlen(name);
	memcpy(out, name, len + 1);
	if (len >= 5 && strncasecmp(name, "INBOX", 5) == 0 && (len == 5 || name[5] == '/'))
		memcpy(out, "INBOX", 5);
	return 0;
}

static bool
is_inbox(const char *canon)
{
	return strcmp(canon, "INBOX") == 0;
}

static int
keywords_check(const char *const *kw, size_t n)
{
	if (n > 0 && kw == NULL)
		return ROOST_EINVAL;
	if (n > STORAGE_MAX_KEYWORDS)
		return ROOST_ETOOBIG;
	for (size_t i = 0; i < n; i++) {
		if (!storage_keyword_valid(kw[i]))
			return ROOST_EINVAL;
	}
	return 0;
}

int64_t
msg_input_date(const struct msg_input *msg)
{
	if (msg->has_internal_date || msg->internal_date != 0)
		return msg->internal_date;
	return (int64_t)time(NULL);
}

static int
msg_input_check(const struct storage *st, const struct msg_input *msg)
{
	uint64_t max = st->cfg != NULL ? st->cfg->max_message_size : 0;

	if (msg == NULL || (msg->flags & ~MSG_FLAGS_ALL) != 0)
		return ROOST_EINVAL;
	if (msg->fd < 0 && msg->data == NULL && msg->len > 0)
		return ROOST_EINVAL;
	if (max != 0 && msg->len > max)
		return ROOST_ETOOBIG;
	return keywords_check(msg->keywords, msg->n_keywords);
}

static int
uids_check(const uint32_t *uids, size_t n)
{
	if (n > 0 && uids == NULL)
		return ROOST_EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (uids[i] == 0 || (i > 0 && uids[i] <= uids[i - 1]))
			return ROOST_EINVAL;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Watches                                                             */
/* ------------------------------------------------------------------ */

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

struct storage_watch {
	struct watch_registry *reg;
	struct storage_watch *next;
	struct notify_stamp seen; /* the notify file as last seen (polling mode) */
	uint64_t uhash;
	char *user;
	char *mailbox;
	storage_watch_fn *cb;
	void *arg;
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
	pthread_t thread;
	bool thread_running;
};

static uint64_t
user_hash(const char *user)
{
	return hash_str64(user);
}

static void
wake_locked(struct watch_registry *reg, uint64_t uhash, const char *user, const char *mailbox)
{
	for (struct storage_watch *w = reg->buckets[uhash % WATCH_BUCKETS]; w != NULL;
	     w = w->next) {
		if (w->uhash != uhash)
			continue;
		if (user != NULL && strcmp(w->user, user) != 0)
			continue;
		if (mailbox != NULL && strcmp(w->mailbox, mailbox) != 0)
			continue;
		w->cb(w->arg);
	}
}

static void
wake_all_locked(struct watch_registry *reg)
{
	for (size_t b = 0; b < WATCH_BUCKETS; b++) {
		for (struct storage_watch *w = reg->buckets[b]; w != NULL; w = w->next)
			w->cb(w->arg);
	}
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
			log_error("storage: notify poll failed: %s", strerror(errno));
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
					wake_locked(reg, h, NULL, NULL);
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
					w->cb(w->arg);
				}
			}
		}
		pthread_mutex_unlock(&reg->lock);
	}
	return NULL;
}

static struct watch_registry *
registry_new(const struct roost_config *cfg)
{
	struct watch_registry *reg = xcalloc(1, sizeof(*reg));
	const char *dir = cfg != NULL && cfg->data_dir != NULL ? cfg->data_dir : ".";
	size_t len = strlen(dir) + sizeof("/notify");

	pthread_mutex_init(&reg->lock, NULL);
	reg->ifd = -1;
	reg->stop_pipe[0] = reg->stop_pipe[1] = -1;
	reg->notify_dir = xmalloc(len);
	snprintf(reg->notify_dir, len, "%s/notify", dir);
	if (mkdir(reg->notify_dir, 0700) < 0 && errno != EEXIST) {
		log_warn("storage: mkdir %s: %s; no cross-process notification", reg->notify_dir,
		         strerror(errno));
		return reg;
	}
	if (pipe2(reg->stop_pipe, O_CLOEXEC) < 0) {
		log_warn("storage: pipe: %s; no cross-process notification", strerror(errno));
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
		log_info("storage: inotify on %s: %s; polling every %d ms instead", reg->notify_dir,
		         strerror(errno), POLL_MS);
	if (pthread_create(&reg->thread, NULL, reg->ifd >= 0 ? notify_thread : poll_thread, reg) !=
	    0) {
		log_warn("storage: cannot start the notify thread; no cross-process notification");
		return reg;
	}
	reg->thread_running = true;
	return reg;
}

static void
registry_free(struct watch_registry **regp)
{
	struct watch_registry *reg = *regp;

	if (reg == NULL)
		return;
	*regp = NULL;
	if (reg->thread_running) {
		char c = 0;

		if (write(reg->stop_pipe[1], &c, 1) < 0)
			log_warn("storage: cannot stop the notify thread: %s", strerror(errno));
		pthread_join(reg->thread, NULL);
	}
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
			log_warn("storage: watch on %s/%s still registered at close", w->user,
			         w->mailbox);
			free(w->user);
			free(w->mailbox);
			free(w);
		}
	}
	pthread_mutex_destroy(&reg->lock);
	free(reg->notify_dir);
	free(reg);
}

/* Wake the watchers of (user, mailbox) in this process. */
static void
notify_here(struct watch_registry *reg, uint64_t h, const char *user, const char *mailbox)
{
	pthread_mutex_lock(&reg->lock);
	wake_locked(reg, h, user, mailbox);
	pthread_mutex_unlock(&reg->lock);
}

/* Write to the user's notify file: other processes' inotify threads see
 * IN_CLOSE_WRITE, their pollers a new size (struct notify_stamp). */
static void
notify_others(struct watch_registry *reg, uint64_t h)
{
	char path[PATH_MAX];
	struct stat sb;
	int fd;

	notify_path(reg, h, path, sizeof(path));
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		log_debug("storage: notify %s: %s", path, strerror(errno));
		return;
	}
	if (write(fd, "!", 1) < 0)
		log_debug("storage: notify %s: %s", path, strerror(errno));
	else if (fstat(fd, &sb) == 0 && sb.st_size >= NOTIFY_MAX && ftruncate(fd, 0) < 0)
		log_debug("storage: notify %s: %s", path, strerror(errno));
	close(fd);
}

/* mailbox NULL wakes every watcher of the user (used for renames, where
 * children move too). */
void
storage_notify(struct storage *st, const char *user, const char *mailbox)
{
	struct watch_registry *reg = st->watches;
	uint64_t h = user_hash(user);

	if (reg == NULL)
		return;
	notify_here(reg, h, user, mailbox);
	notify_others(reg, h);
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
	notify_here(reg, user_hash(user), user, mailbox);
}

int
storage_watch(struct storage *st, const char *user, const char *mailbox, storage_watch_fn *cb,
              void *arg, struct storage_watch **watch_r)
{
	char canon[STORAGE_MAX_NAME + 1];
	struct storage_watch *w;
	int rc;

	if (!storage_user_valid(user) || cb == NULL)
		return ROOST_EINVAL;
	if ((rc = name_canon(mailbox, canon)) != 0)
		return rc;
	w = xcalloc(1, sizeof(*w));
	w->reg = st->watches;
	w->uhash = user_hash(user);
	w->user = xstrdup(user);
	w->mailbox = xstrdup(canon);
	w->cb = cb;
	w->arg = arg;
	if (w->reg->ifd < 0)
		w->seen = notify_stat(w->reg, w->uhash);
	pthread_mutex_lock(&w->reg->lock);
	w->next = w->reg->buckets[w->uhash % WATCH_BUCKETS];
	w->reg->buckets[w->uhash % WATCH_BUCKETS] = w;
	pthread_mutex_unlock(&w->reg->lock);
	*watch_r = w;
	return 0;
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
	free(w->user);
	free(w->mailbox);
	free(w);
}

/* ------------------------------------------------------------------ */
/* The store                                                           */
/* ------------------------------------------------------------------ */

int
storage_open(const struct roost_config *cfg, struct storage **st_r)
{
	const char *name =
	    cfg != NULL && cfg->storage_backend != NULL ? cfg->storage_backend : "lmdb";
	const struct storage_ops *ops = backend_find(name);
	struct storage *st = NULL;
	int rc;

	*st_r = NULL;
	if (ops == NULL) {
		log_error("storage: unknown backend \"%s\"", name);
		return ROOST_ENOTSUP;
	}
	if (!backend_complete(ops))
		fatal("storage: backend %s lacks required operations", ops->name);
	if ((rc = ops->open(cfg, &st)) != 0)
		return rc;
	st->ops = ops;
	st->cfg = cfg;
	st->watches = registry_new(cfg);
	*st_r = st;
	return 0;
}

void
storage_close(struct storage **stp)
{
	struct storage *st = *stp;
	struct watch_registry *reg;

	if (st == NULL)
		return;
	*stp = NULL;
	reg = st->watches;
	st->watches = NULL;
	st->ops->close(st);
	registry_free(&reg);
}

const char *
storage_backend_name(const struct storage *st)
{
	return st->ops->name;
}

static const struct {
	const char *name;
	unsigned special_use;
} default_folders[] = {
    {"Drafts", MBOX_DRAFTS}, {"Sent", MBOX_SENT},       {"Trash", MBOX_TRASH},
    {"Junk", MBOX_JUNK},     {"Archive", MBOX_ARCHIVE},
};

/*
 * A user whose INBOX exists is initialised: folders the user deleted later
 * are not created again. Concurrent first logins both create; EEXISTS from
 * the loser is success.
 */
int
storage_user_init(struct storage *st, const char *user)
{
	struct mailbox_status status;
	int rc;

	if (!storage_user_valid(user))
		return ROOST_EINVAL;
	rc = st->ops->status(st, user, "INBOX", &status);
	if (rc == 0)
		return 0;
	if (rc != ROOST_ENOTFOUND)
		return rc;
	if ((rc = st->ops->user_init(st, user)) != 0 && rc != ROOST_EEXISTS)
		return rc;
	for (size_t i = 0; i < sizeof(default_folders) / sizeof(default_folders[0]); i++) {
		rc = st->ops->create(st, user, default_folders[i].name,
		                     default_folders[i].special_use);
		if (rc != 0 && rc != ROOST_EEXISTS)
			return rc;
		if (rc == 0)
			(void)st->ops->subscribe(st, user, default_folders[i].name, true);
	}
	(void)st->ops->subscribe(st, user, "INBOX", true);
	return 0;
}

/*
 * A user never seen before has no INBOX yet: set it up (the default
 * folders with it) the first time an operation on INBOX finds none. Every
 * lazy set-up goes through here. True when the user was set up and the
 * operation is worth one more try.
 */
static bool
user_set_up(struct storage *st, const char *user, const char *canon, int rc)
{
	return rc == ROOST_ENOTFOUND && is_inbox(canon) && storage_user_init(st, user) == 0;
}

int
storage_list(struct storage *st, const char *user, struct mailbox_info **list_r, size_t *n_r)
{
	*list_r = NULL;
	*n_r = 0;
	if (!storage_user_valid(user))
		return ROOST_EINVAL;
	return st->ops->list(st, user, list_r, n_r);
}

void
storage_list_free(struct mailbox_info *list, size_t n)
{
	if (list == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free(list[i].name);
	free(list);
}

int
storage_create(struct storage *st, const char *user, const char *name, unsigned special_use)
{
	char canon[STORAGE_MAX_NAME + 1];
	int rc;

	if (!storage_user_valid(user) || (special_use & ~MBOX_SPECIAL_USE_MASK) != 0)
		return ROOST_EINVAL;
	if ((rc = name_canon(name, canon)) != 0)
		return rc;
	if (is_inbox(canon))
		return ROOST_EEXISTS;
	if ((rc = st->ops->create(st, user, canon, special_use)) == 0)
		storage_notify(st, user, canon);
	return rc;
}

int
storage_delete(struct storage *st, const char *user, const char *name)
{
	char canon[STORAGE_MAX_NAME + 1];
	int rc;

	if (!storage_user_valid(user))
		return ROOST_EINVAL;
	if ((rc = name_canon(name, canon)) != 0)
		return rc;
	if (is_inbox(canon))
		return ROOST_EPERM;
	if ((rc = st->ops->delete (st, user, canon)) == 0)
		storage_notify(st, user, canon);
	return rc;
}

/*
 * A rename moves the children along ("a/x" becomes "b/x"): each new name
 * must be valid too, which only the longer spelling of to can break. Checked
 * here so that no backend finds out half-way through.
 */
static int
children_renamable(struct storage *st, const char *user, const char *from, const char *to)
{
	struct mailbox_info *list = NULL;
	struct buf nn = BUF_INIT(0);
	size_t n = 0, flen = strlen(from);
	int rc;

	if (strlen(to) <= flen)
		return 0;
	if ((rc = st->ops->list(st, user, &list, &n)) != 0)
		return rc;
	for (size_t i = 0; i < n && rc == 0; i++) {
		const char *name = list[i].name;

		if ((list[i].attrs & MBOX_NONEXISTENT) != 0 || strncmp(name, from, flen) != 0 ||
		    name[flen] != '/')
			continue;
		buf_reset(&nn);
		buf_append_str(&nn, to);
		buf_append_str(&nn, name + flen);
		if (!storage_name_valid(buf_cstr(&nn)))
			rc = ROOST_EINVAL;
	}
	buf_free(&nn);
	storage_list_free(list, n);
	return rc;
}

int
storage_rename(struct storage *st, const char *user, const char *from, const char *to)
{
	char cfrom[STORAGE_MAX_NAME + 1], cto[STORAGE_MAX_NAME + 1];
	size_t flen;
	int rc;

	if (!storage_user_valid(user))
		return ROOST_EINVAL;
	if ((rc = name_canon(from, cfrom)) != 0 || (rc = name_canon(to, cto)) != 0)
		return rc;
	if (strcmp(cfrom, cto) == 0 || is_inbox(cto))
		return ROOST_EEXISTS;
	/* Into its own child: "a" -> "a/b". INBOX is exempt, its children
	 * stay where they are (only its messages move). */
	flen = strlen(cfrom);
	if (!is_inbox(cfrom) && strncmp(cto, cfrom, flen) == 0 && cto[flen] == '/')
		return ROOST_EINVAL;
	if (!is_inbox(cfrom) && (rc = children_renamable(st, user, cfrom, cto)) != 0)
		return rc;
	if ((rc = st->ops->rename(st, user, cfrom, cto)) == 0)
		storage_notify(st, user, NULL);
	return rc;
}

int
storage_subscribe(struct storage *st, const char *user, const char *name, bool subscribe)
{
	char canon[STORAGE_MAX_NAME + 1];
	int rc;

	if (!storage_user_valid(user))
		return ROOST_EINVAL;
	if ((rc = name_canon(name, canon)) != 0)
		return rc;
	return st->ops->subscribe(st, user, canon, subscribe);
}

int
storage_status(struct storage *st, const char *user, const char *name,
               struct mailbox_status *status_r)
{
	char canon[STORAGE_MAX_NAME + 1];
	int rc;

	memset(status_r, 0, sizeof(*status_r));
	if (!storage_user_valid(user))
		return ROOST_EINVAL;
	if ((rc = name_canon(name, canon)) != 0)
		return rc;
	rc = st->ops->status(st, user, canon, status_r);
	if (user_set_up(st, user, canon, rc))
		rc = st->ops->status(st, user, canon, status_r);
	return rc;
}

int
storage_append(struct storage *st, const char *user, const char *mailbox,
               const struct msg_input *msg, uint32_t *uidvalidity_r, uint32_t *uid_r)
{
	struct delivery_target t = {.user = user, .mailbox = mailbox};
	int rc = storage_deliver(st, msg, &t, 1, 0);

	if (rc == 0) {
		if (uidvalidity_r != NULL)
			*uidvalidity_r = t.uidvalidity;
		if (uid_r != NULL)
			*uid_r = t.uid;
	}
	return rc;
}

#define DELIVER_MAX 100000

/* The delivery request after the wrapper's checks: one entry per distinct
 * (user, canonical mailbox), handed to the backend as is. */
struct deliver_req {
	struct delivery_target *sub; /* what the backend gets, m entries */
	char (*canon)[STORAGE_MAX_NAME + 1];
	size_t *owner; /* targets[i] is served by sub[owner[i]]; SIZE_MAX: invalid */
	size_t m;
};

/* Index of (user, canon) in sub[] through an open-addressing table of
 * size mask+1 (a power of two over 2n): a message to thousands of
 * recipients must not cost a comparison per pair. */
static size_t
dedupe(struct deliver_req *r, size_t *table, size_t mask, const char *user, const char *canon)
{
	uint64_t h = user_hash(user) * 31 + user_hash(canon);

	for (size_t k = (size_t)h & mask;; k = (k + 1) & mask) {
		size_t j = table[k];

		if (j == SIZE_MAX) {
			table[k] = r->m;
			return r->m;
		}
		if (strcmp(r->sub[j].user, user) == 0 && strcmp(r->sub[j].mailbox, canon) == 0)
			return j;
	}
}

static void
req_build(struct deliver_req *r, struct delivery_target *targets, size_t n)
{
	size_t mask = 1, *table;

	while (mask < 2 * n)
		mask <<= 1;
	table = xmalloc(mask * sizeof(*table));
	memset(table, 0xff, mask * sizeof(*table));
	mask--;
	r->sub = xcalloc(n, sizeof(*r->sub));
	r->canon = xcalloc(n, sizeof(*r->canon));
	r->owner = xcalloc(n, sizeof(*r->owner));
	r->m = 0;
	for (size_t i = 0; i < n; i++) {
		size_t j;

		r->owner[i] = SIZE_MAX;
		if (!storage_user_valid(targets[i].user) ||
		    name_canon(targets[i].mailbox, r->canon[r->m]) != 0)
			continue;
		j = dedupe(r, table, mask, targets[i].user, r->canon[r->m]);
		if (j == r->m) {
			r->sub[j].user = targets[i].user;
			r->sub[j].mailbox = r->canon[j];
			r->m++;
		}
		r->owner[i] = j;
	}
	free(table);
}

static void
req_free(struct deliver_req *r)
{
	free(r->owner);
	free(r->canon);
	free(r->sub);
}

/* Take back a message stored for t, as an all-or-nothing delivery must
 * when another recipient failed. */
static void
undo_one(struct storage *st, const struct delivery_target *t)
{
	struct mailbox *mb = NULL;
	int rc = st->ops->mailbox_open(st, t->user, t->mailbox, 0, &mb);

	if (rc == 0) {
		mb->st = st;
		mb->user = xstrdup(t->user);
		mb->name = xstrdup(t->mailbox);
		mb->flags = 0;
		rc = st->ops->expunge(mb, &t->uid, 1);
		free(mb->user);
		free(mb->name);
		st->ops->mailbox_close(mb);
	}
	if (rc != 0)
		log_error("event=rollback-failed user=%s mailbox=%s uid=%u error=\"%s\"",
		          LOG_QUOTE(t->user), LOG_QUOTE(t->mailbox), t->uid, roost_strerror(rc));
}

/*
 * The one owner of the delivery path: check, deliver, set up new users and
 * retry, roll back, wake the watchers. The backend sees each (user,
 * mailbox) once, validated and canonical, and makes each copy durable
 * before it returns.
 */
int
storage_deliver(struct storage *st, const struct msg_input *msg, struct delivery_target *targets,
                size_t n, unsigned flags)
{
	struct deliver_req r;
	size_t *retry, nr = 0;
	int rc, first = 0;

	if (n == 0 || n > DELIVER_MAX || targets == NULL ||
	    (flags & ~(unsigned)(STORAGE_DELIVER_ATOMIC | STORAGE_DELIVER_INBOX_FALLBACK)) != 0)
		return ROOST_EINVAL;
	for (size_t i = 0; i < n; i++) {
		targets[i].uid = targets[i].uidvalidity = 0;
		targets[i].result = ROOST_EINVAL;
	}
	if ((rc = msg_input_check(st, msg)) != 0) {
		for (size_t i = 0; i < n; i++)
			targets[i].result = rc;
		return rc;
	}
	req_build(&r, targets, n);
	(void)st->ops->deliver(st, msg, r.sub, r.m);
	/* One more try for recipients whose INBOX did not exist (set up now)
	 * or, with INBOX_FALLBACK, whose folder went away. */
	retry = xcalloc(r.m + 1, sizeof(*retry));
	for (size_t j = 0; j < r.m; j++) {
		struct delivery_target *t = &r.sub[j];

		if (t->result != ROOST_ENOTFOUND)
			continue;
		if (user_set_up(st, t->user, t->mailbox, t->result)) {
			retry[nr++] = j;
		} else if ((flags & STORAGE_DELIVER_INBOX_FALLBACK) != 0 && !is_inbox(t->mailbox)) {
			(void)user_set_up(st, t->user, "INBOX", ROOST_ENOTFOUND);
			t->mailbox = "INBOX";
			retry[nr++] = j;
		}
	}
	if (nr > 0) {
		struct delivery_target *batch = xcalloc(nr, sizeof(*batch));

		for (size_t k = 0; k < nr; k++)
			batch[k] = r.sub[retry[k]];
		(void)st->ops->deliver(st, msg, batch, nr);
		for (size_t k = 0; k < nr; k++)
			r.sub[retry[k]] = batch[k];
		free(batch);
	}
	free(retry);
	for (size_t i = 0; i < n && first == 0; i++) {
		if (r.owner[i] == SIZE_MAX)
			first = ROOST_EINVAL;
		else
			first = r.sub[r.owner[i]].result;
	}
	if (first != 0 && (flags & STORAGE_DELIVER_ATOMIC) != 0) {
		for (size_t j = 0; j < r.m; j++) {
			if (r.sub[j].result != 0)
				continue;
			undo_one(st, &r.sub[j]);
			r.sub[j].result = first;
			r.sub[j].uid = 0;
		}
	}
	/* Every session here first, then the other processes: a notify file
	 * costs an open and a write, and a message to many users used to keep
	 * the later users' sessions waiting for the earlier users' files. */
	if (st->watches != NULL) {
		for (size_t j = 0; j < r.m; j++) {
			if (r.sub[j].result == 0)
				notify_here(st->watches, user_hash(r.sub[j].user), r.sub[j].user,
				            r.sub[j].mailbox);
		}
		for (size_t j = 0; j < r.m; j++) {
			if (r.sub[j].result == 0)
				notify_others(st->watches, user_hash(r.sub[j].user));
		}
	}
	for (size_t i = 0; i < n; i++) {
		const struct delivery_target *d;

		if (r.owner[i] == SIZE_MAX) {
			targets[i].result = first != 0 && (flags & STORAGE_DELIVER_ATOMIC) != 0
			                        ? first
			                        : ROOST_EINVAL;
			continue;
		}
		d = &r.sub[r.owner[i]];
		targets[i].result = d->result;
		targets[i].uid = d->result == 0 ? d->uid : 0;
		targets[i].uidvalidity = d->uidvalidity;
		if (d->result == 0 && is_inbox(d->mailbox) && !is_inbox(r.canon[r.owner[i]]))
			targets[i].mailbox = "INBOX";
	}
	req_free(&r);
	return first;
}

/* ------------------------------------------------------------------ */
/* An open mailbox                                                     */
/* ------------------------------------------------------------------ */

int
mailbox_open(struct storage *st, const char *user, const char *name, unsigned flags,
             struct mailbox **mb_r)
{
	char canon[STORAGE_MAX_NAME + 1];
	struct mailbox *mb = NULL;
	int rc;

	*mb_r = NULL;
	if (!storage_user_valid(user) || (flags & ~(unsigned)MAILBOX_READONLY) != 0)
		return ROOST_EINVAL;
	if ((rc = name_canon(name, canon)) != 0)
		return rc;
	rc = st->ops->mailbox_open(st, user, canon, flags, &mb);
	if (user_set_up(st, user, canon, rc))
		rc = st->ops->mailbox_open(st, user, canon, flags, &mb);
	if (rc != 0)
		return rc;
	mb->st = st;
	mb->user = xstrdup(user);
	mb->name = xstrdup(canon);
	mb->flags = flags;
	*mb_r = mb;
	return 0;
}

void
mailbox_close(struct mailbox **mbp)
{
	struct mailbox *mb = *mbp;
	char *user, *name;

	if (mb == NULL)
		return;
	*mbp = NULL;
	user = mb->user;
	name = mb->name;
	mb->st->ops->mailbox_close(mb);
	free(user);
	free(name);
}

const char *
mailbox_name(const struct mailbox *mb)
{
	return mb->name;
}

int
mailbox_status(struct mailbox *mb, struct mailbox_status *status_r)
{
	memset(status_r, 0, sizeof(*status_r));
	return mb->st->ops->mailbox_status(mb, status_r);
}

int
mailbox_records(struct mailbox *mb, struct msg_record **recs_r, size_t *n_r, uint64_t *modseq_r)
{
	*recs_r = NULL;
	*n_r = 0;
	return mb->st->ops->records(mb, recs_r, n_r, modseq_r);
}

int
mailbox_keywords(struct mailbox *mb, const char *const **names_r, size_t *n_r)
{
	return mb->st->ops->keywords(mb, names_r, n_r);
}

int
mailbox_claim_recent(struct mailbox *mb, uint32_t *first_recent_uid_r, uint32_t *next_r)
{
	uint32_t next;

	return mb->st->ops->claim_recent(mb, first_recent_uid_r, next_r != NULL ? next_r : &next);
}

int
mailbox_read(struct mailbox *mb, uint32_t uid, struct msg_view *view_r)
{
	memset(view_r, 0, sizeof(*view_r));
	if (uid == 0)
		return ROOST_ENOTFOUND;
	return mb->st->ops->read(mb, uid, view_r);
}

void
msg_view_release(struct msg_view *view)
{
	if (view == NULL || view->release == NULL)
		return;
	view->release(view);
	view->release = NULL;
	view->data = NULL;
	view->len = 0;
}

int
mailbox_cache_get(struct mailbox *mb, uint32_t uid, struct buf *out)
{
	if (uid == 0)
		return ROOST_ENOTFOUND;
	return mb->st->ops->cache_get(mb, uid, out);
}

#define CACHE_MAX (16u << 20)

/* Allowed on read-only mailboxes: the cache is derived data, not state. */
int
mailbox_cache_set(struct mailbox *mb, uint32_t uid, const void *data, size_t len)
{
	if (uid == 0 || (len > 0 && data == NULL))
		return ROOST_EINVAL;
	if (len > CACHE_MAX)
		return ROOST_ETOOBIG;
	return mb->st->ops->cache_set(mb, uid, data, len);
}

static int
writable(const struct mailbox *mb)
{
	return (mb->flags & MAILBOX_READONLY) != 0 ? ROOST_EPERM : 0;
}

int
mailbox_append(struct mailbox *mb, const struct msg_input *msg, uint32_t *uid_r)
{
	int rc;

	if ((rc = writable(mb)) != 0 || (rc = msg_input_check(mb->st, msg)) != 0)
		return rc;
	if ((rc = mb->st->ops->append(mb, msg, uid_r)) == 0)
		storage_notify(mb->st, mb->user, mb->name);
	return rc;
}

int
mailbox_store(struct mailbox *mb, const uint32_t *uids, size_t n, const struct store_req *req,
              uint32_t **modified_r, size_t *n_modified_r)
{
	int rc;

	*modified_r = NULL;
	*n_modified_r = 0;
	if ((rc = writable(mb)) != 0)
		return rc;
	if (req == NULL || (req->flags & ~MSG_FLAGS_ALL) != 0 ||
	    (req->mode != STORE_ADD && req->mode != STORE_REMOVE && req->mode != STORE_REPLACE))
		return ROOST_EINVAL;
	if ((rc = keywords_check(req->keywords, req->n_keywords)) != 0 ||
	    (rc = uids_check(uids, n)) != 0)
		return rc;
	if (n == 0)
		return 0;
	if ((rc = mb->st->ops->store(mb, uids, n, req, modified_r, n_modified_r)) == 0)
		storage_notify(mb->st, mb->user, mb->name);
	return rc;
}

int
mailbox_expunge(struct mailbox *mb, const uint32_t *uids, size_t n)
{
	int rc;

	if ((rc = writable(mb)) != 0 || (rc = uids_check(uids, n)) != 0)
		return rc;
	if (n == 0)
		return 0;
	if ((rc = mb->st->ops->expunge(mb, uids, n)) == 0)
		storage_notify(mb->st, mb->user, mb->name);
	return rc;
}

int
mailbox_copy(struct mailbox *mb, const uint32_t *uids, size_t n, const char *dest, bool move,
             uint32_t *dest_uidvalidity_r, uint32_t **src_uids_r, uint32_t **dest_uids_r,
             size_t *n_r)
{
	char canon[STORAGE_MAX_NAME + 1];
	int rc;

	*src_uids_r = NULL;
	*dest_uids_r = NULL;
	*n_r = 0;
	if (move && (rc = writable(mb)) != 0)
		return rc;
	if ((rc = name_canon(dest, canon)) != 0 || (rc = uids_check(uids, n)) != 0)
		return rc;
	rc = mb->st->ops->copy(mb, uids, n, canon, move, dest_uidvalidity_r, src_uids_r,
	                       dest_uids_r, n_r);
	if (rc == 0) {
		storage_notify(mb->st, mb->user, canon);
		if (move)
			storage_notify(mb->st, mb->user, mb->name);
	}
	return rc;
}

int
mailbox_changes_since(struct mailbox *mb, uint64_t modseq, struct mailbox_changes *changes_r)
{
	memset(changes_r, 0, sizeof(*changes_r));
	return mb->st->ops->changes_since(mb, modseq, changes_r);
}

void
mailbox_changes_free(struct mailbox_changes *changes)
{
	if (changes == NULL)
		return;
	free(changes->changed);
	free(changes->expunged);
	changes->changed = NULL;
	changes->expunged = NULL;
	changes->n_changed = changes->n_expunged = 0;
}

int
storage_lock_user(struct storage *st, const char *user, struct storage_lock **lock_r)
{
	int rc;

	*lock_r = NULL;
	if (!storage_user_valid(user))
		return ROOST_EINVAL;
	if (st->ops->lock_user == NULL)
		return 0;
	if ((rc = st->ops->lock_user(st, user, lock_r)) == 0 && *lock_r != NULL)
		(*lock_r)->st = st;
	return rc;
}

void
storage_unlock_user(struct storage_lock **lockp)
{
	struct storage_lock *lock = lockp != NULL ? *lockp : NULL;

	if (lock == NULL)
		return;
	*lockp = NULL;
	lock->st->ops->unlock_user(lock);
}

int
storage_check(struct storage *st, struct buf *report)
{
	return st->ops->check(st, report);
}

int
storage_stats(struct storage *st, struct storage_stats *stats_r)
{
	memset(stats_r, 0, sizeof(*stats_r));
	if (st->ops->stats == NULL)
		return ROOST_ENOTSUP;
	st->ops->stats(st, stats_r);
	return 0;
}
