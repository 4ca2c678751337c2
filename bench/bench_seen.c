/*
 * What per-user \Seen on a shared mailbox costs (backends/storage_seen.c):
 * the bytes a reader's seen set adds to the owner's mailbox record, and the
 * time of a reader's STORE \Seen against the owner's, and of the owner's
 * MOVE with and without readers whose \Seen goes along, through the public
 * storage interface with [storage] fsync = yes.
 *
 *   build/bench/bench_seen [--backends lmdb,maildir] [--messages N] [--ops N]
 *
 * Bytes are read off Maildir's record file (roost-metadata in the folder;
 * the record is the same on every backend). Times are means over --ops
 * operations, in a fresh directory under $TMPDIR.
 */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "roost/config.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/storage.h"
#include "roost/xalloc.h"

#define OWNER "alice@example.org"
#define TEAM "Other Users/" OWNER "/Team"

static const char *readers[] = {"bob@example.org", "carol@example.org", "dave@example.org"};

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void
check(int rc, const char *what)
{
	if (rc != 0) {
		fprintf(stderr, "bench_seen: %s: %s\n", what, roost_strerror(rc));
		exit(1);
	}
}

static char record_path[4096];

static int
find_record(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	if (flag == FTW_F && strstr(path, "/.Team/") != NULL &&
	    strcmp(path + ftw->base, "roost-metadata") == 0)
		snprintf(record_path, sizeof(record_path), "%s", path);
	return 0;
}

static long
record_bytes(const char *dir)
{
	struct stat sb;

	record_path[0] = '\0';
	nftw(dir, find_record, 16, FTW_PHYS);
	return record_path[0] != '\0' && stat(record_path, &sb) == 0 ? (long)sb.st_size : 0;
}

static int
rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void
store(struct mailbox *mb, const uint32_t *uids, size_t n, enum store_mode mode, uint32_t flags)
{
	struct store_req req = {.mode = mode, .flags = flags};
	uint32_t *mod = NULL;
	size_t n_mod = 0;

	check(mailbox_store(mb, uids, n, &req, &mod, &n_mod), "store");
	free(mod);
}

/* The owner moves its first message to Other and back, ops times. */
static void
move_bench(struct storage *st, struct mailbox *own, size_t ops, const char *label)
{
	struct mailbox *other;
	struct msg_record *recs;
	uint32_t uidv, *src, *dst;
	size_t n;
	uint64_t modseq;
	double t0;

	check(mailbox_open(st, OWNER, "Other", 0, &other), "open mailbox");
	t0 = now_ms();
	for (size_t i = 0; i < ops; i++) {
		check(mailbox_records(own, &recs, &n, &modseq), "records");
		check(mailbox_copy(own, &recs[0].uid, 1, "Other", true, &uidv, &src, &dst, &n),
		      "move");
		free(recs);
		free(src);
		check(mailbox_copy(other, dst, 1, "Team", true, &uidv, &src, &dst, &n), "move");
		free(src);
		free(dst);
	}
	printf("| owner MOVE 1 message there and back (2 MOVEs), %s | %.3f |\n", label,
	       (now_ms() - t0) / (double)ops);
	mailbox_close(&other);
}

static void
run(const char *backend, size_t n_msgs, size_t ops)
{
	const char *tmp = getenv("TMPDIR");
	char path[512];
	struct roost_config cfg;
	struct storage *st = NULL;
	struct mailbox *own, *bob;
	struct msg_record *recs;
	uint32_t *uids, uidv;
	size_t n, k = 0;
	uint64_t modseq;
	long base, bytes;
	double t0;

	snprintf(path, sizeof(path), "%s/roost-bench-seen-XXXXXX", tmp != NULL ? tmp : "/tmp");
	if (mkdtemp(path) == NULL)
		check(ROOST_EIO, "mkdtemp");
	memset(&cfg, 0, sizeof(cfg));
	cfg.data_dir = path;
	cfg.storage_backend = (char *)backend;
	cfg.lmdb_map_size = 64u << 20;
	cfg.lmdb_shards = 1;
	cfg.storage_fsync = false; /* the fill; fsync on from the measures */
	cfg.expunge_log_retention = 86400;
	cfg.max_message_size = 1u << 20;
	cfg.pgsql_dsn = getenv("ROOST_PGSQL_BENCH_DSN");
	check(storage_open(&cfg, &st), "open");
	check(storage_user_init(st, OWNER), "user");
	for (size_t i = 0; i < 3; i++)
		check(storage_user_init(st, readers[i]), "user");
	check(storage_create(st, OWNER, "Team", 0), "create");
	check(storage_create(st, OWNER, "Other", 0), "create");
	for (size_t i = 0; i < n_msgs; i++) {
		char msg[128];
		struct msg_input in = {.data = (const uint8_t *)msg, .fd = -1};

		in.len =
		    (size_t)snprintf(msg, sizeof(msg), "Subject: %zu\r\n\r\nbody %zu\r\n", i, i);
		check(storage_append(st, OWNER, "Team", &in, &uidv, NULL), "append");
	}
	for (size_t i = 0; i < 3; i++) {
		check(storage_acl_set(st, OWNER, "Team", readers[i], ACL_SET,
		                      ACL_LOOKUP | ACL_READ | ACL_SEEN),
		      "acl");
		check(storage_acl_set(st, OWNER, "Other", readers[i], ACL_SET,
		                      ACL_LOOKUP | ACL_READ | ACL_SEEN),
		      "acl");
	}
	storage_close(&st);
	cfg.storage_fsync = true;
	check(storage_open(&cfg, &st), "open");
	check(mailbox_open(st, OWNER, "Team", 0, &own), "open mailbox");
	check(mailbox_open(st, readers[0], TEAM, 0, &bob), "open mailbox");
	check(mailbox_records(own, &recs, &n, &modseq), "records");
	uids = xcalloc(n + 1, sizeof(*uids));
	for (size_t i = 0; i < n; i++)
		uids[i] = recs[i].uid;
	free(recs);

	printf("## %s, %zu messages\n\n", backend, n);
	base = record_bytes(path);
	if (strcmp(backend, "maildir") == 0) {
		printf("| bob's seen set | record bytes | bob's share |\n|---|---|---|\n");
		printf("| none (ACL only) | %ld | 0 |\n", base);
		store(bob, uids, n, STORE_ADD, MSG_SEEN);
		bytes = record_bytes(path);
		printf("| all seen, one STORE (1 range, 1 private MODSEQ range) | %ld | %ld |\n",
		       bytes, bytes - base);
		store(bob, uids, n, STORE_REMOVE, MSG_SEEN);
		for (size_t i = 0; i < n; i += 2)
			uids[k++] = uids[i];
		store(bob, uids, k, STORE_ADD, MSG_SEEN);
		bytes = record_bytes(path);
		printf(
		    "| every other seen (%zu ranges; private MODSEQ ranges merged to 64) | %ld | "
		    "%ld |\n",
		    k, bytes, bytes - base);
		check(mailbox_records(own, &recs, &n, &modseq), "records");
		for (size_t i = 0; i < n; i++)
			uids[i] = recs[i].uid;
		free(recs);
		store(own, uids, 1, STORE_ADD, MSG_FLAGGED); /* the owner: one change */
		store(bob, uids, n, STORE_REMOVE, MSG_SEEN);
		store(bob, uids, n / 2, STORE_ADD, MSG_SEEN);
		store(own, uids, n, STORE_ADD, MSG_FLAGGED); /* private MODSEQs now useless */
		store(bob, uids + n - 1, 1, STORE_ADD, MSG_SEEN);
		bytes = record_bytes(path);
		printf("| first half seen, then the owner changed them all (2 ranges, 1 private) "
		       "| %ld | %ld |\n\n",
		       bytes, bytes - base);
		store(bob, uids, n, STORE_REMOVE, MSG_SEEN);
	}

	printf("| operation | mean ms |\n|---|---|\n");
	move_bench(st, own, ops, "shared, no reader set yet");
	/* one message at a time, alternately seen and unseen */
	t0 = now_ms();
	for (size_t i = 0; i < ops; i++)
		store(own, uids + i % n, 1, i / n % 2 == 0 ? STORE_ADD : STORE_REMOVE, MSG_SEEN);
	printf("| owner STORE +/-FLAGS \\Seen, 1 message | %.3f |\n", (now_ms() - t0) / ops);
	t0 = now_ms();
	for (size_t i = 0; i < ops; i++)
		store(bob, uids + i % n, 1, i / n % 2 == 0 ? STORE_ADD : STORE_REMOVE, MSG_SEEN);
	printf("| reader STORE +/-FLAGS \\Seen, 1 message | %.3f |\n", (now_ms() - t0) / ops);
	t0 = now_ms();
	for (size_t i = 0; i < ops; i++) {
		struct mailbox_changes ch;

		check(mailbox_changes_since(bob, 0, &ch), "changes");
		mailbox_changes_free(&ch);
	}
	printf("| reader changes since 0 (%zu messages) | %.3f |\n", n, (now_ms() - t0) / ops);

	/* MOVE of one message there and back, now that three readers have
	 * \Seen of every message (their sets go along each time) */
	for (size_t i = 0; i < 3; i++) {
		struct mailbox *r;

		check(mailbox_open(st, readers[i], TEAM, 0, &r), "open mailbox");
		store(r, uids, n, STORE_ADD, MSG_SEEN);
		mailbox_close(&r);
	}
	move_bench(st, own, ops, "3 readers' \\Seen carried");
	printf("\n");
	free(uids);
	mailbox_close(&bob);
	mailbox_close(&own);
	storage_close(&st);
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int
main(int argc, char **argv)
{
	const char *backends = "lmdb,maildir";
	size_t n_msgs = 1000, ops = 200;
	char *list, *tok, *save = NULL;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--backends") == 0 && i + 1 < argc)
			backends = argv[++i];
		else if (strcmp(argv[i], "--messages") == 0 && i + 1 < argc)
			n_msgs = strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--ops") == 0 && i + 1 < argc)
			ops = strtoul(argv[++i], NULL, 10);
		else {
			fprintf(stderr, "usage: %s [--backends LIST] [--messages N] [--ops N]\n",
			        argv[0]);
			return 2;
		}
	}
	if (n_msgs < 2 || ops < 1)
		return 2;
	log_set_level(LOG_LEVEL_ERROR, false);
	list = xstrdup(backends);
	for (tok = strtok_r(list, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save))
		run(tok, n_msgs, ops);
	free(list);
	return 0;
}
