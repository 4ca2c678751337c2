/*
 * libFuzzer target for the whole IMAP command path: the session's framer,
 * parser, command table and every command, against a real store (LMDB or
 * Maildir, picked by the first input byte) in a temporary directory. The
 * runtime is replaced by the loop below and a connection of its own
 * (conn_fuzz.c): input is handed to the frame hook in pieces as a loop would
 * read it, framed commands run on_command, continuations run as the client
 * "reads", and output is dropped. Most inputs start logged in as one user;
 * after each input the user's mailboxes are emptied so runs stay
 * reproducible.
 *
 * What must hold: nothing crashes or trips the sanitizers, the framer keeps
 * the input within its bound, and output stays under its backstop.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "roost/buf.h"
#include "roost/config.h"
#include "roost/conn.h"
#include "roost/imap.h"
#include "roost/log.h"
#include "roost/services.h"
#include "roost/storage.h"
#include "roost/auth.h"
#include "roost/xalloc.h"

#include "../../protocols/imap/imap_impl.h"
#include "../common/feed.h"
#include "conn_fuzz.h"
#include "fuzz_target.h"

#define USER "fuzz@example.org"

static struct roost_config *cfgs[2];
static struct storage *stores[2];
static struct auth *auths[2];
static struct roost_services svcs[2];

static void
setup(int i, const char *backend)
{
	char dir[] = "/tmp/fuzz-imap-session-XXXXXX";
	char path[256], err[256];
	FILE *f;

	if (mkdtemp(dir) == NULL)
		abort();
	snprintf(path, sizeof(path), "%s/roost.conf", dir);
	f = fopen(path, "w");
	if (f == NULL)
		abort();
	fprintf(f,
	        "[server]\ndata_dir = %s/var\n[storage]\nbackend = %s\nfsync = no\n"
	        "[limits]\nmax_line = 2K\nmax_line_preauth = 1K\nmax_message_size = 64K\n"
	        "[imap]\nmax_literal = 64K\n",
	        dir, backend);
	fclose(f);
	snprintf(path, sizeof(path), "%s/var", dir);
	if (mkdir(path, 0700) != 0)
		abort();
	snprintf(path, sizeof(path), "%s/roost.conf", dir);
	if (config_load(path, &cfgs[i], err, sizeof(err)) != 0) {
		fprintf(stderr, "fuzz: %s\n", err);
		abort();
	}
	f = fopen(cfgs[i]->passwd_file, "w");
	if (f == NULL)
		abort();
	fclose(f);
	if (storage_open(cfgs[i], &stores[i]) != 0 || auth_open(cfgs[i], &auths[i]) != 0)
		abort();
	if (storage_user_init(stores[i], USER) != 0)
		abort();
	svcs[i].cfg = cfgs[i];
	svcs[i].storage = stores[i];
	svcs[i].auth = auths[i];
}

static int
longer_first(const void *a, const void *b)
{
	size_t la = strlen(*(char *const *)a), lb = strlen(*(char *const *)b);

	return la < lb ? 1 : la > lb ? -1 : 0;
}

/* Back to an empty INBOX and nothing else. */
static void
reset_user(struct storage *st)
{
	struct mailbox_info *list = NULL;
	size_t n = 0;
	struct mailbox *mb;

	if (storage_list(st, USER, &list, &n) == 0) {
		char **names = xcalloc(n ? n : 1, sizeof(*names));

		for (size_t i = 0; i < n; i++)
			names[i] = xstrdup(list[i].name);
		storage_list_free(list, n);
		/* children before their parents */
		qsort(names, n, sizeof(*names), longer_first);
		for (size_t i = 0; i < n; i++) {
			(void)storage_subscribe(st, USER, names[i], false);
			if (strcmp(names[i], "INBOX") != 0)
				(void)storage_delete(st, USER, names[i]);
			free(names[i]);
		}
		free(names);
	}
	if (mailbox_open(st, USER, "INBOX", 0, &mb) == 0) {
		struct msg_record *recs = NULL;
		size_t nr = 0;
		uint64_t ms;

		if (mailbox_records(mb, &recs, &nr, &ms) == 0 && nr > 0) {
			uint32_t *uids = xcalloc(nr, sizeof(*uids));
			for (size_t i = 0; i < nr; i++)
				uids[i] = recs[i].uid;
			(void)mailbox_expunge(mb, uids, nr);
			free(uids);
		}
		free(recs);
		mailbox_close(&mb);
	}
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_setup(LOG_LEVEL_ERROR, true, false);
	setup(0, "lmdb");
	setup(1, "maildir");
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct proto_ops *ops = &imap_proto_ops;
	struct conn *c;
	struct imap_session *s;
	struct buf q = BUF_INIT(0);
	size_t fed = 0, step;
	int which;

	if (size < 1)
		return 0;
	which = data[0] & 1;
	step = (data[0] & 0x40) ? SIZE_MAX : 1 + ((data[0] >> 1) & 0x1f);
	c = conn_fuzz_new(&svcs[which]);
	s = ops->session_new(c);
	if (s == NULL)
		abort();
	if (!(data[0] & 0x80)) {
		/* logged in, as login_done() leaves a session */
		s->user = xstrdup(USER);
		conn_set_user(c, USER);
		imap_enter_state(s, IMAP_STATE_AUTH);
	}
	conn_fuzz_drain(c);
	data++;
	size--;
	while (fed < size && !conn_is_closing(c)) {
		feed_piece(&q, data, size, &fed, step, conn_input_limit(c) + 1);
		while (q.len > 0 && !conn_is_closing(c)) {
			size_t used = 0;
			enum frame_result r = ops->frame(c, s, q.data, q.len, &used);

			if (r == FRAME_AGAIN) {
				if (q.len >= conn_input_limit(c) + 1)
					abort(); /* the loop would close: input_overflow */
				break;
			}
			if (r == FRAME_CLOSE)
				break;
			if (used == 0 || used > q.len)
				abort();
			if (r == FRAME_COMMAND) {
				ops->on_command(c, s, q.data, used);
				conn_fuzz_finish_command(c, s);
				if (s->idling && ops->on_wake != NULL)
					ops->on_wake(c, s, WAKE_NOTIFY);
			}
			buf_consume(&q, used);
		}
		if (conn_is_closing(c))
			break;
	}
	ops->session_free(s);
	conn_fuzz_free(&c);
	buf_free(&q);
	reset_user(stores[which]);
	return 0;
}
