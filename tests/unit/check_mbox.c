#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "roost/buf.h"
#include "roost/error.h"
#include "roost/mbox.h"
#include "roost/storage.h"

#include "check_run.h"

#define S(x) (const uint8_t *)(x), strlen(x)

/* Read every entry of data; returns how many, the decoded ones in out[]. */
static size_t
read_all(const uint8_t *data, size_t len, enum mbox_format fmt, struct buf *out, size_t max,
         struct mbox_meta *meta, int64_t *dates)
{
	struct mbox_reader r;
	struct mbox_entry e;
	size_t n = 0;

	ck_assert_int_eq(mbox_reader_init(&r, data, len), 0);
	if (fmt == MBOX_FORMAT_AUTO)
		fmt = mbox_detect(data, len);
	while (mbox_next(&r, &e) == 1) {
		ck_assert_uint_lt(n, max);
		buf_init(&out[n], 0);
		ck_assert_int_eq(mbox_decode(e.raw, e.raw_len, fmt, &out[n], &meta[n]), 0);
		if (dates != NULL)
			dates[n] = e.date;
		n++;
	}
	return n;
}

START_TEST(two_messages)
{
	const char *f = "From alice@example.org Thu Nov 24 18:22:48 1986\n"
	                "Subject: one\n\nbody one\nFrom the start (not a separator)\n\n"
	                "From bob@example.org  Mon Jan  2 03:04:05 2023\n"
	                "Subject: two\n\nbody two\n";
	struct buf out[4];
	struct mbox_meta meta[4];
	int64_t dates[4];
	size_t n = read_all(S(f), MBOX_FORMAT_AUTO, out, 4, meta, dates);

	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(buf_cstr(&out[0]),
	                 "Subject: one\r\n\r\nbody one\r\nFrom the start (not a separator)\r\n");
	ck_assert_str_eq(buf_cstr(&out[1]), "Subject: two\r\n\r\nbody two\r\n");
	ck_assert_int_eq(dates[0], 533240568);
	ck_assert_int_eq(dates[1], 1672628645);
	for (size_t i = 0; i < n; i++) {
		buf_free(&out[i]);
		mbox_meta_free(&meta[i]);
	}
}
END_TEST

START_TEST(from_line_dates)
{
	int64_t d;

	ck_assert(mbox_from_line_date(S("From a Thu Nov 24 18:22:48 1986"), &d));
	ck_assert_int_eq(d, 533240568);
	/* a numeric zone before or after the year */
	ck_assert(mbox_from_line_date(S("From a Thu Nov 24 19:22:48 +0100 1986"), &d));
	ck_assert_int_eq(d, 533240568);
	ck_assert(mbox_from_line_date(S("From a Thu Nov 24 18:22:48 1986 -0000"), &d));
	ck_assert_int_eq(d, 533240568);
	/* no seconds, a zone name, an empty sender, a quoted sender with spaces */
	ck_assert(mbox_from_line_date(S("From a Thu Nov 24 18:22 PST 1986"), &d));
	ck_assert(mbox_from_line_date(S("From  Thu Nov 24 18:22:48 1986"), &d));
	ck_assert(mbox_from_line_date(S("From \"a b\"@x Thu Nov 24 18:22:48 1986"), &d));
	ck_assert_int_eq(d, 533240568);
	/* not From_ lines */
	ck_assert(!mbox_from_line_date(S("From here on we go"), &d));
	ck_assert(!mbox_from_line_date(S("From a Thu Nov 24 18:22:48"), &d));
	ck_assert(!mbox_from_line_date(S("From a Thu Nov 32 18:22:48 1986"), &d));
	ck_assert(!mbox_from_line_date(S("From a Thu Nov 24 25:22:48 1986"), &d));
	ck_assert(!mbox_from_line_date(S("From a Thu Nov 24 18:22:48 86"), &d));
	ck_assert(!mbox_from_line_date(S("Fro"), &d));
	ck_assert(!mbox_from_line_date(S("From "), &d));
}
END_TEST

START_TEST(mboxrd_round_trip)
{
	const char *msg = "Subject: quoting\r\n\r\nFrom the top\r\n>From one\r\n>>From two\r\n"
	                  ">>>From three\r\n>Fromage\r\nFrom\r\n";
	struct buf file = BUF_INIT(0);
	struct buf out[2];
	struct mbox_meta meta[2];
	const char *kw[] = {"$Forwarded", "work"};

	ck_assert_int_eq(mbox_encode(&file, S(msg), NULL, 533240568,
	                             MSG_SEEN | MSG_FLAGGED | MSG_ANSWERED, kw, 2),
	                 0);
	ck_assert_int_eq(mbox_encode(&file, S(msg), "a b@x", 533240568, 0, NULL, 0), 0);
	ck_assert(strstr(buf_cstr(&file), "\n>From the top\n>>From one\n>>>From two\n"
	                                  ">>>>From three\n>Fromage\nFrom\n") != NULL);
	ck_assert(strncmp(buf_cstr(&file), "From MAILER-DAEMON Mon Nov 24 18:22:48 1986\n", 44) ==
	          0);
	ck_assert(strstr(buf_cstr(&file), "\nFrom a_b@x Mon Nov 24 18:22:48 1986\n") != NULL);
	ck_assert_uint_eq(mbox_detect(file.data, file.len), MBOX_FORMAT_MBOXRD);
	ck_assert_uint_eq(read_all(file.data, file.len, MBOX_FORMAT_AUTO, out, 2, meta, NULL), 2);
	ck_assert_str_eq(buf_cstr(&out[0]), msg);
	ck_assert_str_eq(buf_cstr(&out[1]), msg);
	ck_assert_uint_eq(meta[0].flags, MSG_SEEN | MSG_FLAGGED | MSG_ANSWERED);
	ck_assert_uint_eq(meta[0].n_keywords, 2);
	ck_assert_str_eq(meta[0].keywords[0], "$Forwarded");
	ck_assert_str_eq(meta[0].keywords[1], "work");
	ck_assert_uint_eq(meta[1].flags, 0);
	ck_assert_uint_eq(meta[1].n_keywords, 0);
	for (size_t i = 0; i < 2; i++) {
		buf_free(&out[i]);
		mbox_meta_free(&meta[i]);
	}
	buf_free(&file);
}
END_TEST

START_TEST(mboxo_unquoting)
{
	const char *f = "From a Thu Nov 24 18:22:48 1986\n\n>From x\n>>From y\n";
	struct buf out[1];
	struct mbox_meta meta[1];

	ck_assert_uint_eq(mbox_detect(S(f)), MBOX_FORMAT_MBOXRD);
	ck_assert_uint_eq(read_all(S(f), MBOX_FORMAT_MBOXO, out, 1, meta, NULL), 1);
	ck_assert_str_eq(buf_cstr(&out[0]), "\r\nFrom x\r\n>>From y\r\n");
	buf_free(&out[0]);
	ck_assert_uint_eq(read_all(S(f), MBOX_FORMAT_MBOXRD, out, 1, meta, NULL), 1);
	ck_assert_str_eq(buf_cstr(&out[0]), "\r\nFrom x\r\n>From y\r\n");
	buf_free(&out[0]);
	ck_assert_uint_eq(mbox_detect(S("From a Thu Nov 24 18:22:48 1986\n\n>From x\n")),
	                  MBOX_FORMAT_MBOXO);
	ck_assert_int_eq(mbox_decode(S("x\n"), MBOX_FORMAT_AUTO, &out[0], &meta[0]), ROOST_EINVAL);
}
END_TEST

START_TEST(state_headers)
{
	const char *f = "From a Thu Nov 24 18:22:48 1986\n"
	                "Subject: s\nStatus: RO\nX-Status: ADT\nX-Keywords: one, two\n three\n"
	                "X-UID: 42\nX-IMAPbase: 1234 50 one\nStatus-Other: kept\n\n"
	                "Status: not a header here\n";
	struct buf out[1];
	struct mbox_meta meta[1];

	ck_assert_uint_eq(read_all(S(f), MBOX_FORMAT_AUTO, out, 1, meta, NULL), 1);
	ck_assert_str_eq(buf_cstr(&out[0]),
	                 "Subject: s\r\nStatus-Other: kept\r\n\r\nStatus: not a header here\r\n");
	ck_assert_uint_eq(meta[0].flags, MSG_SEEN | MSG_ANSWERED | MSG_DELETED | MSG_DRAFT);
	ck_assert_uint_eq(meta[0].n_keywords, 3);
	ck_assert_str_eq(meta[0].keywords[2], "three");
	ck_assert_uint_eq(meta[0].uid, 42);
	ck_assert_uint_eq(meta[0].uidvalidity, 1234);
	ck_assert(!meta[0].pseudo);
	buf_free(&out[0]);
	mbox_meta_free(&meta[0]);
	/* UW-IMAP's folder-data message; keywords that are not valid are dropped */
	f = "From MAILER-DAEMON Thu Nov 24 18:22:48 1986\nX-IMAP: 99 3\n"
	    "X-Keywords: ok bad\\name (x)\n\nDON'T DELETE";
	ck_assert_uint_eq(read_all(S(f), MBOX_FORMAT_AUTO, out, 1, meta, NULL), 1);
	ck_assert(meta[0].pseudo);
	ck_assert_uint_eq(meta[0].uidvalidity, 99);
	ck_assert_uint_eq(meta[0].n_keywords, 1);
	ck_assert_str_eq(buf_cstr(&out[0]), "\r\nDON'T DELETE");
	buf_free(&out[0]);
	mbox_meta_free(&meta[0]);
}
END_TEST

START_TEST(hostile_input)
{
	struct mbox_reader r;
	struct mbox_entry e;
	struct buf out[2];
	struct mbox_meta meta[2];
	static const char nul[] = "From a Thu Nov 24 18:22:48 1986\nX: a\0b\n\n\0\0body\n";
	size_t big = 8u << 20;
	uint8_t *huge;
	const char *head = "From a Thu Nov 24 18:22:48 1986\n\n";

	/* not an mbox, empty, blank */
	ck_assert_int_eq(mbox_reader_init(&r, S("Subject: no From_ line\n\nbody\n")), ROOST_EINVAL);
	ck_assert_int_eq(
	    mbox_reader_init(&r, (const uint8_t *)"\0From a Thu Nov 24 18:22:48 1986\n", 33),
	    ROOST_EINVAL);
	ck_assert_int_eq(mbox_reader_init(&r, S("")), 0);
	ck_assert_int_eq(mbox_next(&r, &e), 0);
	ck_assert_int_eq(mbox_reader_init(&r, S("\n\n\r\n")), 0);
	ck_assert_int_eq(mbox_next(&r, &e), 0);
	/* NUL bytes are data */
	ck_assert_uint_eq(
	    read_all((const uint8_t *)nul, sizeof(nul) - 1, MBOX_FORMAT_AUTO, out, 1, meta, NULL),
	    1);
	ck_assert_uint_eq(out[0].len, 18);
	ck_assert(memcmp(out[0].data, "X: a\0b\r\n\r\n\0\0body\r\n", 18) == 0);
	buf_free(&out[0]);
	/* truncated: a From_ line alone, a last line without line end */
	ck_assert_uint_eq(
	    read_all(S("From a Thu Nov 24 18:22:48 1986"), MBOX_FORMAT_AUTO, out, 1, meta, NULL),
	    1);
	ck_assert_uint_eq(out[0].len, 0);
	buf_free(&out[0]);
	ck_assert_uint_eq(read_all(S("From a Thu Nov 24 18:22:48 1986\nSubj"), MBOX_FORMAT_AUTO,
	                           out, 1, meta, NULL),
	                  1);
	ck_assert_str_eq(buf_cstr(&out[0]), "Subj");
	buf_free(&out[0]);
	/* a header cut inside a state header */
	ck_assert_uint_eq(read_all(S("From a Thu Nov 24 18:22:48 1986\nX-Status: F"),
	                           MBOX_FORMAT_AUTO, out, 1, meta, NULL),
	                  1);
	ck_assert_uint_eq(meta[0].flags, MSG_FLAGGED);
	ck_assert_uint_eq(out[0].len, 0);
	buf_free(&out[0]);
	/* one 8 MiB line, and a bounded output buffer refusing it */
	huge = malloc(big);
	ck_assert_ptr_nonnull(huge);
	memcpy(huge, head, strlen(head));
	memset(huge + strlen(head), 'x', big - strlen(head));
	ck_assert_uint_eq(read_all(huge, big, MBOX_FORMAT_AUTO, out, 1, meta, NULL), 1);
	ck_assert_uint_eq(out[0].len, big - strlen(head) + 2);
	buf_free(&out[0]);
	ck_assert_int_eq(mbox_reader_init(&r, huge, big), 0);
	ck_assert_int_eq(mbox_next(&r, &e), 1);
	buf_init(&out[0], 1024);
	ck_assert_int_eq(mbox_decode(e.raw, e.raw_len, MBOX_FORMAT_MBOXRD, &out[0], &meta[0]),
	                 ROOST_ETOOBIG);
	buf_free(&out[0]);
	free(huge);
}
END_TEST

/* Random bytes after a From_ line, parsed from the end of a page followed by
 * an unmapped page: any read past the input faults. */
START_TEST(garbage_at_guard_page)
{
	long ps = sysconf(_SC_PAGESIZE);
	uint8_t *map =
	    mmap(NULL, (size_t)ps * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	static const uint8_t alphabet[] = "From >\n\r\0 aX:Status";
	unsigned seed = 12345;

	ck_assert(map != MAP_FAILED);
	ck_assert_int_eq(mprotect(map + ps, (size_t)ps, PROT_NONE), 0);
	for (int round = 0; round < 2000; round++) {
		size_t len = (size_t)(rand_r(&seed) % 400) + 40;
		uint8_t *p = map + ps - len;
		struct mbox_reader r;
		struct mbox_entry e;
		size_t n = 0;

		memcpy(p, "From a Thu Nov 24 18:22:48 1986\n", 32);
		for (size_t i = 32; i < len; i++) {
			if (rand_r(&seed) % 3 == 0)
				p[i] = (uint8_t)rand_r(&seed);
			else
				p[i] = alphabet[(size_t)rand_r(&seed) % (sizeof(alphabet) - 1)];
		}
		(void)mbox_detect(p, len);
		ck_assert_int_eq(mbox_reader_init(&r, p, len), 0);
		while (mbox_next(&r, &e) == 1) {
			struct buf out = BUF_INIT(0);
			struct mbox_meta meta;

			ck_assert_uint_le(e.raw_len, len);
			ck_assert_int_eq(
			    mbox_decode(e.raw, e.raw_len, MBOX_FORMAT_MBOXRD, &out, &meta), 0);
			mbox_meta_free(&meta);
			buf_free(&out);
			ck_assert_uint_lt(n++, len);
		}
		/* the same bytes with a truncated From_ line */
		ck_assert_int_eq(mbox_reader_init(&r, map + ps - 20, 20), ROOST_EINVAL);
	}
	munmap(map, (size_t)ps * 2);
}
END_TEST

/* Every message that the writer can meet comes back byte for byte when its
 * lines end in CRLF and it ends with one. */
START_TEST(encode_decode_random)
{
	unsigned seed = 777;
	static const char *const pieces[] = {
	    "From ", ">From ", ">>From x", "From",     "Status: RO", "X-Keywords: a", "\r\n",
	    "text",  " ",      "\t",       "\r\n\r\n", ">",          "X-UID: 3"};

	for (int round = 0; round < 500; round++) {
		struct buf msg = BUF_INIT(0), file = BUF_INIT(0);
		struct buf out[2];
		struct mbox_meta meta[2];
		int parts = rand_r(&seed) % 30;

		ck_assert_int_eq(buf_append_str(&msg, "Subject: r\r\n\r\n"), 0);
		for (int i = 0; i < parts; i++)
			buf_append_str(
			    &msg,
			    pieces[(size_t)rand_r(&seed) % (sizeof(pieces) / sizeof(pieces[0]))]);
		buf_append_str(&msg, "\r\n");
		ck_assert_int_eq(mbox_encode(&file, msg.data, msg.len, "s", 0, MSG_DRAFT, NULL, 0),
		                 0);
		ck_assert_int_eq(mbox_encode(&file, msg.data, msg.len, "s", 0, 0, NULL, 0), 0);
		ck_assert_uint_eq(
		    read_all(file.data, file.len, MBOX_FORMAT_MBOXRD, out, 2, meta, NULL), 2);
		for (size_t k = 0; k < 2; k++) {
			ck_assert_uint_eq(out[k].len, msg.len);
			ck_assert(memcmp(out[k].data, msg.data, msg.len) == 0);
			buf_free(&out[k]);
		}
		ck_assert_uint_eq(meta[0].flags, MSG_DRAFT);
		ck_assert_uint_eq(meta[1].flags, 0);
		buf_free(&msg);
		buf_free(&file);
	}
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("mbox");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, two_messages);
	tcase_add_test(tc, from_line_dates);
	tcase_add_test(tc, mboxrd_round_trip);
	tcase_add_test(tc, mboxo_unquoting);
	tcase_add_test(tc, state_headers);
	tcase_add_test(tc, hostile_input);
	tcase_add_test(tc, garbage_at_guard_page);
	tcase_add_test(tc, encode_decode_random);
	suite_add_tcase(s, tc);
	return check_run(s);
}
