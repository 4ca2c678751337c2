/*
 * The command-table skeleton the three protocols share (roost/proto_cmd.h):
 * the lookup itself, then each protocol's table with its own answer to a
 * command it knows but does not allow in the session's state.
 */
#include <check.h>
#include <string.h>

#include "roost/proto_cmd.h"

#include "../../protocols/imap/imap_impl.h"
#include "../../protocols/pop3/pop3_impl.h"
#include "../../protocols/smtp/smtp_impl.h"
#include "check_run.h"

enum { T_A, T_B, T_C };
enum { F_X = 1 << 0, F_Y = 1 << 1 };

typedef bool t_check_fn(int *ctx);
typedef void t_run_fn(int *ctx);

struct t_def {
	PROTO_CMD_ROW(t_check_fn, t_run_fn);
};

static void
t_run(int *ctx)
{
	(*ctx)++;
}

static const struct t_def t_table[] = {
    {{"ONE", PROTO_STATE(T_A), 0}, NULL, t_run},
    {{"TWO", PROTO_STATE(T_B) | PROTO_STATE(T_C), F_X}, NULL, t_run},
    {{"THREE", PROTO_STATE(T_A), F_Y}, NULL, t_run},
};

START_TEST(lookup)
{
	const void *row;

	ck_assert_int_eq(PROTO_CMD_FIND(t_table, "ONE", T_A, 0, 0, &row), PROTO_CMD_FOUND);
	ck_assert_ptr_eq(row, &t_table[0]);
	ck_assert_int_eq(PROTO_CMD_FIND(t_table, "ONE", T_B, 0, 0, &row), PROTO_CMD_NOT_NOW);
	ck_assert_ptr_eq(row, &t_table[0]);
	ck_assert_int_eq(PROTO_CMD_FIND(t_table, "TWO", T_C, 0, 0, &row), PROTO_CMD_FOUND);
	ck_assert_ptr_eq(row, &t_table[1]);
	/* case matters: the parsers upper-case */
	ck_assert_int_eq(PROTO_CMD_FIND(t_table, "two", T_C, 0, 0, &row), PROTO_CMD_UNKNOWN);
	ck_assert_ptr_null(row);
	ck_assert_int_eq(PROTO_CMD_FIND(t_table, "FOUR", T_A, 0, 0, &row), PROTO_CMD_UNKNOWN);
	ck_assert_ptr_null(row);
	/* need: the row must carry the flag; hide: it must not */
	ck_assert_int_eq(PROTO_CMD_FIND(t_table, "ONE", T_A, F_X, 0, &row), PROTO_CMD_UNKNOWN);
	ck_assert_int_eq(PROTO_CMD_FIND(t_table, "TWO", T_B, F_X, 0, &row), PROTO_CMD_FOUND);
	ck_assert_int_eq(PROTO_CMD_FIND(t_table, "THREE", T_A, 0, F_Y, &row), PROTO_CMD_UNKNOWN);
	/* a hidden row is unknown even in a state it does not allow */
	ck_assert_int_eq(PROTO_CMD_FIND(t_table, "THREE", T_B, 0, F_Y, &row), PROTO_CMD_UNKNOWN);
	ck_assert_int_eq(PROTO_CMD_FIND(t_table, "THREE", T_B, 0, F_X, &row), PROTO_CMD_NOT_NOW);

	int n = 0;
	ck_assert_int_eq(PROTO_CMD_FIND(t_table, "TWO", T_B, 0, 0, &row), PROTO_CMD_FOUND);
	((const struct t_def *)row)->run(&n);
	ck_assert_int_eq(n, 1);
}
END_TEST

/* IMAP: BAD with the reason, by the row and the state. */
static const char *
imap_answer(const char *name, bool uid, enum imap_state st)
{
	const struct imap_cmd_def *d;

	switch (imap_find_command(name, uid, st, &d)) {
	case PROTO_CMD_UNKNOWN:
		ck_assert_ptr_null(d);
		return "unknown";
	case PROTO_CMD_NOT_NOW:
		ck_assert_str_eq(d->cmd.name, name);
		return imap_state_error(d, st);
	case PROTO_CMD_FOUND:
		ck_assert_str_eq(d->cmd.name, name);
		ck_assert_ptr_nonnull(d->run);
		return "run";
	}
	return "?";
}

START_TEST(imap_states)
{
	const enum imap_state all[] = {IMAP_STATE_NOT_AUTH, IMAP_STATE_AUTH, IMAP_STATE_SELECTED,
	                               IMAP_STATE_LOGOUT};

	for (size_t i = 0; i < 4; i++) {
		ck_assert_str_eq(imap_answer("CAPABILITY", false, all[i]), "run");
		ck_assert_str_eq(imap_answer("NOOP", false, all[i]), "run");
		ck_assert_str_eq(imap_answer("LOGOUT", false, all[i]), "run");
		ck_assert_str_eq(imap_answer("XYZZY", false, all[i]), "unknown");
		ck_assert_str_eq(imap_answer("LOGIN", true, all[i]), "unknown");
	}
	ck_assert_str_eq(imap_answer("LOGIN", false, IMAP_STATE_NOT_AUTH), "run");
	ck_assert_str_eq(imap_answer("AUTHENTICATE", false, IMAP_STATE_NOT_AUTH), "run");
	ck_assert_str_eq(imap_answer("LOGIN", false, IMAP_STATE_AUTH), "Already authenticated");
	ck_assert_str_eq(imap_answer("STARTTLS", false, IMAP_STATE_SELECTED),
	                 "Already authenticated");
	ck_assert_str_eq(imap_answer("SELECT", false, IMAP_STATE_NOT_AUTH), "Log in first");
	ck_assert_str_eq(imap_answer("LIST", false, IMAP_STATE_NOT_AUTH), "Log in first");
	ck_assert_str_eq(imap_answer("SELECT", false, IMAP_STATE_AUTH), "run");
	ck_assert_str_eq(imap_answer("SELECT", false, IMAP_STATE_SELECTED), "run");
	ck_assert_str_eq(imap_answer("FETCH", false, IMAP_STATE_NOT_AUTH), "No mailbox selected");
	ck_assert_str_eq(imap_answer("FETCH", false, IMAP_STATE_AUTH), "No mailbox selected");
	ck_assert_str_eq(imap_answer("EXPUNGE", true, IMAP_STATE_AUTH), "No mailbox selected");
	ck_assert_str_eq(imap_answer("FETCH", true, IMAP_STATE_SELECTED), "run");
	ck_assert_str_eq(imap_answer("SORT", true, IMAP_STATE_AUTH), "No mailbox selected");
	ck_assert_str_eq(imap_answer("THREAD", false, IMAP_STATE_SELECTED), "run");
	ck_assert_str_eq(imap_answer("CLOSE", true, IMAP_STATE_SELECTED), "unknown");
}
END_TEST

static const char *
pop3_answer(const char *name, enum pop3_state st)
{
	const struct pop3_cmd_def *d;

	switch (pop3_find_command(name, st, &d)) {
	case PROTO_CMD_UNKNOWN:
		return "unknown";
	case PROTO_CMD_NOT_NOW:
		ck_assert_str_eq(d->cmd.name, name);
		return pop3_state_error(st);
	case PROTO_CMD_FOUND:
		ck_assert_ptr_nonnull(d->run);
		return "run";
	}
	return "?";
}

START_TEST(pop3_states)
{
	ck_assert_str_eq(pop3_answer("USER", POP3_AUTHORIZATION), "run");
	ck_assert_str_eq(pop3_answer("STAT", POP3_AUTHORIZATION), "-ERR Log in first.");
	ck_assert_str_eq(pop3_answer("RETR", POP3_AUTHORIZATION), "-ERR Log in first.");
	ck_assert_str_eq(pop3_answer("STAT", POP3_TRANSACTION), "run");
	ck_assert_str_eq(pop3_answer("PASS", POP3_TRANSACTION),
	                 "-ERR Command not valid in this state.");
	ck_assert_str_eq(pop3_answer("STLS", POP3_TRANSACTION),
	                 "-ERR Command not valid in this state.");
	ck_assert_str_eq(pop3_answer("CAPA", POP3_AUTHORIZATION), "run");
	ck_assert_str_eq(pop3_answer("CAPA", POP3_TRANSACTION), "run");
	ck_assert_str_eq(pop3_answer("QUIT", POP3_AUTHORIZATION), "run");
	ck_assert_str_eq(pop3_answer("QUIT", POP3_TRANSACTION), "run");
	ck_assert_str_eq(pop3_answer("QUIT", POP3_UPDATE), "-ERR Command not valid in this state.");
	ck_assert_str_eq(pop3_answer("XTND", POP3_TRANSACTION), "unknown");
}
END_TEST

static const char *
smtp_answer(const struct smtp_dialect *dialect, enum smtp_state st, const char *verb)
{
	struct smtp_session s;
	const struct smtp_cmd_def *d;

	memset(&s, 0, sizeof(s));
	s.d = dialect;
	s.state = st;
	switch (smtp_find_command(&s, verb, &d)) {
	case PROTO_CMD_UNKNOWN:
		return "unknown";
	case PROTO_CMD_NOT_NOW:
		ck_assert_str_eq(d->cmd.name, verb);
		return smtp_state_error(&s, d);
	case PROTO_CMD_FOUND:
		ck_assert_ptr_nonnull(d->run);
		return "run";
	}
	return "?";
}

START_TEST(smtp_states)
{
	const struct smtp_dialect *smtp = &smtp_dialect_smtp, *lmtp = &smtp_dialect_lmtp;

	ck_assert_str_eq(smtp_answer(smtp, ST_INIT, "MAIL"), "Send EHLO/HELO first");
	ck_assert_str_eq(smtp_answer(lmtp, ST_INIT, "MAIL"), "Send LHLO first");
	ck_assert_str_eq(smtp_answer(smtp, ST_READY, "MAIL"), "run");
	ck_assert_str_eq(smtp_answer(smtp, ST_MAIL, "MAIL"), "Nested MAIL command");
	ck_assert_str_eq(smtp_answer(lmtp, ST_BDAT, "MAIL"), "Nested MAIL command");
	ck_assert_str_eq(smtp_answer(smtp, ST_INIT, "RCPT"), "Need MAIL first");
	ck_assert_str_eq(smtp_answer(smtp, ST_READY, "RCPT"), "Need MAIL first");
	ck_assert_str_eq(smtp_answer(smtp, ST_MAIL, "RCPT"), "run");
	ck_assert_str_eq(smtp_answer(lmtp, ST_RCPT, "RCPT"), "run");
	ck_assert_str_eq(smtp_answer(smtp, ST_BDAT, "RCPT"), "RCPT not allowed after BDAT");
	/* each dialect knows only its own greeting, STARTTLS and AUTH */
	ck_assert_str_eq(smtp_answer(smtp, ST_INIT, "EHLO"), "run");
	ck_assert_str_eq(smtp_answer(smtp, ST_INIT, "LHLO"), "unknown");
	ck_assert_str_eq(smtp_answer(lmtp, ST_INIT, "LHLO"), "run");
	ck_assert_str_eq(smtp_answer(lmtp, ST_INIT, "EHLO"), "unknown");
	ck_assert_str_eq(smtp_answer(lmtp, ST_INIT, "HELO"), "unknown");
	ck_assert_str_eq(smtp_answer(lmtp, ST_READY, "STARTTLS"), "unknown");
	ck_assert_str_eq(smtp_answer(lmtp, ST_READY, "AUTH"), "unknown");
	ck_assert_str_eq(smtp_answer(smtp, ST_READY, "AUTH"), "run");
	/* DATA and BDAT answer for themselves in every state */
	ck_assert_str_eq(smtp_answer(smtp, ST_INIT, "DATA"), "run");
	ck_assert_str_eq(smtp_answer(lmtp, ST_MAIL, "BDAT"), "run");
	ck_assert_str_eq(smtp_answer(smtp, ST_READY, "TURN"), "unknown");
	/* the answer DATA gives without recipients is the dialect's */
	ck_assert_int_eq(smtp->no_rcpt_code, 554);
	ck_assert_int_eq(lmtp->no_rcpt_code, 503);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("proto_cmd");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, lookup);
	tcase_add_test(tc, imap_states);
	tcase_add_test(tc, pop3_states);
	tcase_add_test(tc, smtp_states);
	suite_add_tcase(s, tc);
	return check_run(s);
}
