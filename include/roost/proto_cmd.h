#ifndef ROOST_PROTO_CMD_H
#define ROOST_PROTO_CMD_H

/*
 * One shape for the command tables of SMTP/LMTP, POP3 and IMAP (after
 * OpenSMTPD's smtp_session.c): a row is a name, the states it may run in,
 * the protocol's own flags, a check step and a run step. Each protocol
 * declares its row type with PROTO_CMD_ROW(), so check and run keep the
 * protocol's own argument types, and finds rows with proto_cmd_find().
 *
 * A dispatcher does, in this order: proto_cmd_find(); on PROTO_CMD_UNKNOWN
 * or PROTO_CMD_NOT_NOW the protocol's own reply (its *_state_error()); the
 * check step, which refuses by sending its own reply and returning false;
 * the run step.
 *
 * Tables are static and read-only: thread-safe.
 */

#include <stddef.h>

/* The bit of state st in a row's states. States are small enum values. */
#define PROTO_STATE(st) (1u << (st))

/* What every row starts with. */
struct proto_cmd {
	const char *name; /* upper case, as the protocol's parser hands it over */
	unsigned states;  /* PROTO_STATE() bits: where it may run */
	unsigned flags;   /* the protocol's own */
};

/*
 * The fields of a protocol's row type: struct x_cmd_def { PROTO_CMD_ROW(
 * x_check_fn, x_run_fn); }. check may be NULL.
 */
#define PROTO_CMD_ROW(check_fn, run_fn)                                                            \
	struct proto_cmd cmd;                                                                      \
	check_fn *check;                                                                           \
	run_fn *run

enum proto_cmd_match {
	PROTO_CMD_UNKNOWN, /* no such row, or hidden by the flags */
	PROTO_CMD_NOT_NOW, /* a row, but not in this state */
	PROTO_CMD_FOUND,
};

/*
 * Look name up in rows[0..n), each row size bytes and starting with a
 * struct proto_cmd. A row counts only when its flags hold all of need and
 * none of hide (SMTP hides LMTP's commands on its other listeners, IMAP
 * needs "UID ok" after UID). *row_r is set for NOT_NOW and FOUND (to the
 * row, to be cast back to the protocol's type), else NULL.
 */
enum proto_cmd_match proto_cmd_find(const void *rows, size_t n, size_t size, const char *name,
                                    unsigned state, unsigned need, unsigned hide,
                                    const void **row_r);

/* proto_cmd_find() over a whole array. */
#define PROTO_CMD_FIND(table, name, state, need, hide, row_r)                                      \
	proto_cmd_find((table), sizeof(table) / sizeof((table)[0]), sizeof((table)[0]), (name),    \
	               (state), (need), (hide), (row_r))

#endif
