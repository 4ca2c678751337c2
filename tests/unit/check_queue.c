#include <check.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "roost/buf.h"
#include "roost/config.h"
#include "roost/error.h"
#include "roost/queue.h"
#include "roost/xalloc.h"

#include "check_run.h"

static struct roost_config *
temp_config(void)
{
	struct roost_config *cfg = config_defaults();
	char tmpl[] = "/tmp/roost-queue-XXXXXX";

	ck_assert_ptr_nonnull(mkdtemp(tmpl));
	free(cfg->data_dir);
	cfg->data_dir = xstrdup(tmpl);
	return cfg;
}

static void
remove_tree(const char *dir)
{
	char cmd[PATH_MAX + 16];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}

static void
submit(struct queue *q, const char *sender, char id[QUEUE_ID_LEN])
{
	static const char msg[] = "From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n";
	struct queue_rcpt_in r[2] = {
	    {"x y\"@remote.example", "FAILURE,DELAY", "rfc822;x+20y@remote.example"},
	    {"z@remote.example", NULL, NULL},
	};
	struct queue_submission sub = {0};

	sub.sender = sender;
	sub.user = "a@example.org";
	sub.envid = "ENV~1%";
	sub.ret = "HDRS";
	sub.smtputf8 = true;
	sub.rcpts = r;
	sub.n_rcpts = 2;
	sub.prefix = (const uint8_t *)"Received: x\r\n";
	sub.prefix_len = 13;
	sub.data = (const uint8_t *)msg;
	sub.len = sizeof(msg) - 1;
	sub.fd = -1;
	ck_assert_int_eq(queue_submit(q, &sub, id), 0);
}

START_TEST(submit_load_round_trip)
{
	struct roost_config *cfg = temp_config();
	struct queue *q;
	struct queue_entry *e;
	char id[QUEUE_ID_LEN], dir[2048], path[PATH_MAX];
	struct buf report = BUF_INIT(0);
	struct stat sb;

	ck_assert_int_eq(queue_open(cfg, true, &q), 0);
	submit(q, "a@example.org", id);
	/* Written but not committed: the engine does not see it... */
	ck_assert_ptr_null(queue_take_new(q));
	queue_commit(q, id, true);
	e = queue_take_new(q);
	ck_assert_ptr_nonnull(e);
	ck_assert_str_eq(e->id, id);
	queue_entry_free(&e);

	/* ...and what is on disk says the same. */
	queue_dir_of(cfg, dir, sizeof(dir));
	ck_assert_int_eq(queue_load(dir, id, &e), 0);
	ck_assert_str_eq(e->sender, "a@example.org");
	ck_assert_str_eq(e->user, "a@example.org");
	ck_assert_str_eq(e->envid, "ENV~1%");
	ck_assert_str_eq(e->ret, "HDRS");
	ck_assert(e->smtputf8);
	ck_assert(!e->body_8bit);
	ck_assert_uint_eq(e->n_rcpts, 2);
	ck_assert_str_eq(e->rcpts[0].addr, "x y\"@remote.example");
	ck_assert_str_eq(e->rcpts[0].notify, "FAILURE,DELAY");
	ck_assert_str_eq(e->rcpts[0].orcpt, "rfc822;x+20y@remote.example");
	ck_assert_str_eq(e->rcpts[1].notify, "");
	ck_assert_uint_eq(queue_entry_pending(e), 2);
	snprintf(path, sizeof(path), "%s/%s.msg", dir, id);
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_uint_eq((uint64_t)sb.st_size, e->size);

	/* An update is atomic and survives. */
	e->rcpts[0].state = QUEUE_RCPT_SENT;
	e->rcpts[0].code = 250;
	free(e->rcpts[0].status);
	e->rcpts[0].status = xstrdup("2.0.0 Ok: queued as X");
	e->attempts = 3;
	ck_assert_int_eq(queue_save_in(dir, true, e), 0);
	queue_entry_free(&e);
	ck_assert_int_eq(queue_load(dir, id, &e), 0);
	ck_assert_int_eq(e->rcpts[0].state, QUEUE_RCPT_SENT);
	ck_assert_str_eq(e->rcpts[0].status, "2.0.0 Ok: queued as X");
	ck_assert_uint_eq(e->attempts, 3);
	ck_assert_uint_eq(queue_entry_pending(e), 1);
	queue_entry_free(&e);
	ck_assert_int_eq(queue_check(dir, &report), 0);

	queue_close(&q);
	remove_tree(cfg->data_dir);
	buf_free(&report);
	config_free(&cfg);
}
END_TEST

START_TEST(abort_and_recover)
{
	struct roost_config *cfg = temp_config();
	struct queue *q;
	struct queue_entry *e;
	char id[QUEUE_ID_LEN], id2[QUEUE_ID_LEN], dir[2048], path[PATH_MAX];
	struct buf report = BUF_INIT(0);
	int fd;

	ck_assert_int_eq(queue_open(cfg, true, &q), 0);
	queue_dir_of(cfg, dir, sizeof(dir));
	submit(q, "", id);
	queue_commit(q, id, false); /* the transaction failed elsewhere */
	snprintf(path, sizeof(path), "%s/%s.env", dir, id);
	ck_assert_int_ne(access(path, F_OK), 0);
	snprintf(path, sizeof(path), "%s/%s.msg", dir, id);
	ck_assert_int_ne(access(path, F_OK), 0);

	submit(q, "", id2); /* written; then the process dies */
	queue_close(&q);
	/* A crash before the envelope: a lone message and a tmp file. */
	snprintf(path, sizeof(path), "%s/ORPHAN.msg", dir);
	fd = open(path, O_WRONLY | O_CREAT, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	snprintf(path, sizeof(path), "%s/tmp/X.env", dir);
	fd = open(path, O_WRONLY | O_CREAT, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(queue_check(dir, &report), 0); /* a note, not a problem */
	ck_assert_ptr_nonnull(strstr(buf_cstr(&report), "ORPHAN"));

	ck_assert_int_eq(queue_open(cfg, true, &q), 0);
	e = queue_take_new(q);
	ck_assert_ptr_nonnull(e);
	ck_assert_str_eq(e->id, id2);
	ck_assert_str_eq(e->sender, "");
	ck_assert_ptr_null(e->next);
	queue_entry_free(&e);
	snprintf(path, sizeof(path), "%s/ORPHAN.msg", dir);
	ck_assert_int_ne(access(path, F_OK), 0);
	snprintf(path, sizeof(path), "%s/tmp/X.env", dir);
	ck_assert_int_ne(access(path, F_OK), 0);

	/* A torn or foreign envelope is reported. */
	snprintf(path, sizeof(path), "%s/%s.env", dir, id2);
	fd = open(path, O_WRONLY | O_TRUNC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "roost-queue 1\nid ", 17), 17);
	close(fd);
	buf_reset(&report);
	ck_assert_int_eq(queue_check(dir, &report), ROOST_EINVAL);
	ck_assert_ptr_nonnull(strstr(buf_cstr(&report), "malformed"));

	queue_close(&q);
	remove_tree(cfg->data_dir);
	buf_free(&report);
	config_free(&cfg);
}
END_TEST

static Suite *
queue_suite(void)
{
	Suite *s = suite_create("queue");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, submit_load_round_trip);
	tcase_add_test(tc, abort_and_recover);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_run(queue_suite());
}
