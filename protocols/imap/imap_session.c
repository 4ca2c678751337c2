/*
 * The IMAP session: proto_ops hooks, the command table and state machine,
 * and the commands valid in any state (CAPABILITY, NOOP, LOGOUT, ID,
 * ENABLE, NAMESPACE). Logging in is imap_login.c's; the lines a command
 * writes are imap_reply.c's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "roost/auth.h"
#include "roost/config.h"
#include "roost/conn.h"
#include "roost/error.h"
#include "roost/imap.h"
#include "roost/log.h"
#include "roost/sasl.h"
#include "roost/services.h"
#include "roost/xalloc.h"

#include "imap_impl.h"

#define IMAP_VERSION "0.1"

/* ------------------------------------------------------------------ */
/* State                                                               */

static const char *const state_names[] = {"not-authenticated", "authenticated", "selected",
                                          "logout"};

void
imap_enter_state(struct imap_session *s, enum imap_state st)
{
	if (s->state == st)
		return;
	conn_log(s->c, LOG_LEVEL_DEBUG, "event=state from=%s to=%s", state_names[s->state],
	         state_names[st]);
	s->state = st;
	conn_set_mailbox(s->c, st == IMAP_STATE_SELECTED ? s->view.name : NULL);
	if (st == IMAP_STATE_SELECTED || st == IMAP_STATE_AUTH)
		imap_notify_selection_changed(s);
}

const struct roost_config *
imap_cfg(const struct imap_session *s)
{
	return conn_config(s->c);
}

void
imap_count_bad(struct imap_session *s)
{
	unsigned max = imap_cfg(s)->imap_max_bad_commands;

	s->bad++;
	if (max > 0 && s->bad >= max && !conn_is_closing(s->c)) {
		conn_write_str(s->c, "* BYE Too many invalid commands\r\n");
		conn_close(s->c);
	}
}

void
imap_condstore_enable(struct imap_session *s)
{
	if (s->condstore)
		return;
	s->condstore = true;
	/* RFC 7162 3.1: the first enabling command with a mailbox selected
	 * tells the client where its MODSEQs stand. */
	if (s->state == IMAP_STATE_SELECTED && s->view.mb != NULL)
		imap_untagged(s, "OK [HIGHESTMODSEQ %llu] Highest",
		              (unsigned long long)s->view.modseq);
}

void
imap_capability_string(struct imap_session *s, struct buf *out)
{
	const struct roost_config *cfg = imap_cfg(s);
	bool secure = conn_is_secure(s->c);
	bool plain_ok = auth_plaintext_allowed(s->sv->auth, secure);

	buf_append_str(
	    out, "IMAP4rev1 IMAP4rev2 SASL-IR ID ENABLE IDLE NAMESPACE UNSELECT "
	         "UIDPLUS MOVE CHILDREN SPECIAL-USE CREATE-SPECIAL-USE LIST-EXTENDED LIST-STATUS "
	         "ESEARCH STATUS=SIZE "
	         "MULTIAPPEND CONDSTORE QRESYNC SORT SORT=DISPLAY THREAD=ORDEREDSUBJECT "
	         "THREAD=REFERENCES WITHIN ESORT SEARCHRES CONTEXT=SEARCH CONTEXT=SORT BINARY "
	         "URLAUTH URLAUTH=BINARY OBJECTID PREVIEW METADATA METADATA-SERVER QUOTA "
	         "QUOTA=RES-STORAGE QUOTA=RES-MESSAGE ACL RIGHTS=texk LIST-MYRIGHTS");
	buf_append_str(out, " CATENATE"); /* RFC 4469, imap_catenate.c */
	buf_append_str(out, cfg->imap_literal_minus ? " LITERAL-" : " LITERAL+"); /* never both */
	buf_append_str(out, " SAVEDATE"); /* RFC 8514: every backend keeps save dates */
	buf_append_str(out, " PARTIAL");  /* RFC 9394, imap_partial.c */
	buf_append_str(out, " INPROGRESS");
	buf_printf(out, " APPENDLIMIT=%llu", (unsigned long long)cfg->imap_max_literal);
	if (s->state == IMAP_STATE_NOT_AUTH) {
		if (!conn_is_tls(s->c) && strcmp(conn_listener(s->c), "imaps") != 0)
			buf_append_str(out, " STARTTLS");
		if (!plain_ok)
			buf_append_str(out, " LOGINDISABLED");
		const char *mechs = sasl_mechanisms(s->sv->auth, secure);
		while (mechs != NULL && *mechs) {
			const char *e = strchr(mechs, ' ');
			size_t n = e ? (size_t)(e - mechs) : strlen(mechs);
			if (n > 0)
				buf_printf(out, " AUTH=%.*s", (int)n, mechs);
			mechs = e ? e + 1 : NULL;
		}
	} else {
		buf_append_str(out, " COMPRESS=DEFLATE UTF8=ACCEPT UNAUTHENTICATE REPLACE");
		buf_append_str(out, " NOTIFY"); /* RFC 5465, imap_notify.c */
	}
}

/* ------------------------------------------------------------------ */
/* Commands valid in any state or before login                        */

void
cmd_capability(struct imap_cmd *cmd)
{
	struct buf b = BUF_INIT(0);

	imap_capability_string(cmd->s, &b);
	imap_untagged(cmd->s, "CAPABILITY %s", buf_cstr(&b));
	buf_free(&b);
	imap_tagged(cmd, "OK", "Capability completed");
}

void
cmd_noop(struct imap_cmd *cmd)
{
	imap_tagged(cmd, "OK", "%s completed", cmd->p.name);
}

void
cmd_logout(struct imap_cmd *cmd)
{
	imap_untagged(cmd->s, "BYE Logging out");
	if (cmd->s->state == IMAP_STATE_SELECTED)
		view_close(cmd->s);
	imap_enter_state(cmd->s, IMAP_STATE_LOGOUT);
	imap_tagged(cmd, "OK", "Logout completed");
	conn_close(cmd->c);
}

void
cmd_id(struct imap_cmd *cmd)
{
	if (cmd->p.n != 1 ||
	    (cmd->p.args[0].type != ARG_LIST && !imap_arg_is_nil(&cmd->p.args[0]))) {
		imap_bad(cmd, "Usage: ID (fields) or ID NIL");
		return;
	}
	const struct imap_arg *l = &cmd->p.args[0];
	if (l->type == ARG_LIST && (l->n % 2 != 0 || l->n > 60)) {
		imap_bad(cmd, "Invalid ID field list");
		return;
	}
	imap_untagged(cmd->s, "ID (\"name\" \"Roost\" \"version\" \"%s\")", IMAP_VERSION);
	imap_tagged(cmd, "OK", "ID completed");
}

void
cmd_enable(struct imap_cmd *cmd)
{
	if (cmd->p.n == 0) {
		imap_bad(cmd, "Usage: ENABLE capability...");
		return;
	}
	bool condstore = false, qresync = false, rev2 = false, utf8 = false;
	for (size_t i = 0; i < cmd->p.n; i++) {
		if (cmd->p.args[i].type != ARG_ATOM) {
			imap_bad(cmd, "Invalid capability");
			return;
		}
		if (imap_arg_atom_eq(&cmd->p.args[i], "CONDSTORE"))
			condstore = true;
		if (imap_arg_atom_eq(&cmd->p.args[i], "QRESYNC"))
			qresync = true;
		if (imap_arg_atom_eq(&cmd->p.args[i], "IMAP4rev2"))
			rev2 = true;
		if (imap_arg_atom_eq(&cmd->p.args[i], "UTF8=ACCEPT"))
			utf8 = true;
	}
	/* RFC 5161: list what this command enabled (once per extension).
	 * QRESYNC implies CONDSTORE (RFC 7162 3.2.3). */
	struct buf b = BUF_INIT(0);
	buf_append_str(&b, "ENABLED");
	bool enable_condstore = (condstore || qresync) && !cmd->s->condstore;
	if (enable_condstore && condstore)
		buf_append_str(&b, " CONDSTORE");
	if (qresync && !cmd->s->qresync) {
		cmd->s->qresync = true;
		buf_append_str(&b, " QRESYNC");
	}
	if (rev2 && !cmd->s->rev2) {
		imap_rev2_enable(cmd->s);
		buf_append_str(&b, " IMAP4rev2");
	}
	if (utf8 && !cmd->s->utf8_accept) {
		cmd->s->utf8_accept = true;
		buf_append_str(&b, " UTF8=ACCEPT");
	}
	imap_untagged(cmd->s, "%s", buf_cstr(&b));
	buf_free(&b);
	if (enable_condstore)
		imap_condstore_enable(cmd->s);
	imap_tagged(cmd, "OK", "ENABLE completed");
}

void
cmd_namespace(struct imap_cmd *cmd)
{
	/* other users' mailboxes: "Other Users/<owner>/...", and those no
	 * person owns: "Shared/..." ([acl] shared_prefix, whose characters
	 * need no quoting; none when it is empty; storage_acl.c) */
	const char *shared = storage_acl_shared_prefix(cmd->s->sv->storage);

	if (shared == NULL)
		imap_untagged(cmd->s,
		              "NAMESPACE ((\"\" \"/\")) ((\"" STORAGE_ACL_PREFIX "/\" \"/\")) NIL");
	else
		imap_untagged(cmd->s,
		              "NAMESPACE ((\"\" \"/\")) ((\"" STORAGE_ACL_PREFIX
		              "/\" \"/\")) ((\"%s/\" \"/\"))",
		              shared);
	imap_tagged(cmd, "OK", "NAMESPACE completed");
}

/* ------------------------------------------------------------------ */
/* The command table                                                   */

/* The check step of the commands that take no arguments. */
static bool
check_no_args(struct imap_cmd *cmd)
{
	if (cmd->p.n == 0)
		return true;
	imap_bad(cmd, "%s takes no arguments", cmd->def->cmd.name);
	return false;
}

static const struct imap_cmd_def commands[] = {
    {{"CAPABILITY", IMAP_ANY, 0}, check_no_args, cmd_capability},
    {{"NOOP", IMAP_ANY, 0}, check_no_args, cmd_noop},
    {{"LOGOUT", IMAP_ANY, 0}, check_no_args, cmd_logout},
    {{"ID", IMAP_ANY, 0}, NULL, cmd_id},
    {{"STARTTLS", IMAP_NOT_AUTH, 0}, check_no_args, cmd_starttls},
    {{"LOGIN", IMAP_NOT_AUTH, 0}, NULL, cmd_login},
    {{"AUTHENTICATE", IMAP_NOT_AUTH, 0}, NULL, cmd_authenticate},
    {{"ENABLE", IMAP_AUTHED, 0}, NULL, cmd_enable},
    {{"NAMESPACE", IMAP_AUTHED, 0}, check_no_args, cmd_namespace},
    {{"SELECT", IMAP_AUTHED, 0}, NULL, cmd_select},
    {{"EXAMINE", IMAP_AUTHED, 0}, NULL, cmd_examine},
    {{"CREATE", IMAP_AUTHED, 0}, NULL, cmd_create},
    {{"DELETE", IMAP_AUTHED, 0}, NULL, cmd_delete},
    {{"RENAME", IMAP_AUTHED, 0}, NULL, cmd_rename},
    {{"SUBSCRIBE", IMAP_AUTHED, 0}, NULL, cmd_subscribe},
    {{"UNSUBSCRIBE", IMAP_AUTHED, 0}, NULL, cmd_unsubscribe},
    {{"LIST", IMAP_AUTHED, 0}, NULL, cmd_list},
    {{"LSUB", IMAP_AUTHED, 0}, NULL, cmd_lsub},
    {{"STATUS", IMAP_AUTHED, 0}, NULL, cmd_status},
    {{"APPEND", IMAP_AUTHED, 0}, NULL, cmd_append},
    {{"GETQUOTA", IMAP_AUTHED, 0}, NULL, cmd_getquota},
    {{"GETQUOTAROOT", IMAP_AUTHED, 0}, NULL, cmd_getquotaroot},
    {{"SETQUOTA", IMAP_AUTHED, 0}, NULL, cmd_setquota},
    {{"GETACL", IMAP_AUTHED, 0}, NULL, cmd_getacl},
    {{"SETACL", IMAP_AUTHED, 0}, NULL, cmd_setacl},
    {{"DELETEACL", IMAP_AUTHED, 0}, NULL, cmd_deleteacl},
    {{"LISTRIGHTS", IMAP_AUTHED, 0}, NULL, cmd_listrights},
    {{"MYRIGHTS", IMAP_AUTHED, 0}, NULL, cmd_myrights},
    {{"IDLE", IMAP_AUTHED, 0}, check_no_args, cmd_idle},
    {{"NOTIFY", IMAP_AUTHED, 0}, NULL, cmd_notify},
    {{"GENURLAUTH", IMAP_AUTHED, 0}, NULL, cmd_genurlauth},
    {{"RESETKEY", IMAP_AUTHED, 0}, NULL, cmd_resetkey},
    {{"URLFETCH", IMAP_AUTHED, 0}, NULL, cmd_urlfetch},
    {{"COMPRESS", IMAP_AUTHED, 0}, NULL, cmd_compress},
    {{"GETMETADATA", IMAP_AUTHED, 0}, NULL, cmd_getmetadata},
    {{"SETMETADATA", IMAP_AUTHED, 0}, NULL, cmd_setmetadata},
    {{"UNAUTHENTICATE", IMAP_AUTHED, 0}, check_no_args, cmd_unauthenticate},
    {{"CHECK", IMAP_SELECTED, 0}, check_no_args, cmd_check},
    {{"CLOSE", IMAP_SELECTED, 0}, check_no_args, cmd_close},
    {{"UNSELECT", IMAP_SELECTED, 0}, check_no_args, cmd_unselect},
    {{"EXPUNGE", IMAP_SELECTED, CMD_UID_OK}, NULL, cmd_expunge},
    {{"SEARCH", IMAP_SELECTED, CMD_USES_SEQS | CMD_UID_OK}, NULL, cmd_search},
    {{"SORT", IMAP_SELECTED, CMD_USES_SEQS | CMD_UID_OK}, NULL, cmd_sort},
    {{"THREAD", IMAP_SELECTED, CMD_USES_SEQS | CMD_UID_OK}, NULL, cmd_thread},
    {{"CANCELUPDATE", IMAP_SELECTED, 0}, NULL, cmd_cancelupdate},
    {{"FETCH", IMAP_SELECTED, CMD_USES_SEQS | CMD_UID_OK}, NULL, cmd_fetch},
    {{"STORE", IMAP_SELECTED, CMD_USES_SEQS | CMD_UID_OK}, NULL, cmd_store},
    {{"COPY", IMAP_SELECTED, CMD_USES_SEQS | CMD_UID_OK}, NULL, cmd_copy},
    {{"MOVE", IMAP_SELECTED, CMD_USES_SEQS | CMD_UID_OK}, NULL, cmd_move},
    {{"REPLACE", IMAP_SELECTED, CMD_USES_SEQS | CMD_UID_OK}, NULL, cmd_replace},
};

enum proto_cmd_match
imap_find_command(const char *name, bool uid, enum imap_state st, const struct imap_cmd_def **def_r)
{
	const void *row;
	enum proto_cmd_match m = PROTO_CMD_FIND(commands, name, st, uid ? CMD_UID_OK : 0, 0, &row);

	*def_r = row;
	return m;
}

const char *
imap_state_error(const struct imap_cmd_def *def, enum imap_state st)
{
	if (def->cmd.states & IMAP_NOT_AUTH)
		return "Already authenticated"; /* LOGIN, AUTHENTICATE, STARTTLS */
	if (st == IMAP_STATE_NOT_AUTH && (def->cmd.states & PROTO_STATE(IMAP_STATE_AUTH)))
		return "Log in first";
	return "No mailbox selected";
}

/* ------------------------------------------------------------------ */
/* proto_ops                                                           */

static void *
imap_session_new(struct conn *c)
{
	struct imap_session *s = xcalloc(1, sizeof(*s));
	struct buf b = BUF_INIT(0);

	s->c = c;
	s->sv = conn_services(c);
	s->state = IMAP_STATE_NOT_AUTH;
	snprintf(s->peer, sizeof(s->peer), "%s", conn_peer(c));
	imap_framer_reset(&s->fr);
	imap_capability_string(s, &b);
	conn_printf(c, "* OK [CAPABILITY %s] Roost IMAP ready\r\n", buf_cstr(&b));
	buf_free(&b);
	return s;
}

static void cmd_free(struct imap_cmd **cmdp);

static void
imap_session_free(void *session)
{
	struct imap_session *s = session;

	if (s == NULL)
		return;
	imap_idle_stop(s);
	imap_notify_stop(s);
	cmd_free(&s->cont);
	if (s->view.mb != NULL)
		view_close(s);
	imap_framer_reset(&s->fr);
	sasl_free(&s->sasl);
	if (s->counted)
		imap_ucount_release(s->user, s->peer);
	free(s->user);
	free(s);
}

static void
frame_write(void *arg, const char *text)
{
	conn_write_str(arg, text);
}

static void
frame_raise(void *arg, size_t max)
{
	conn_set_input_max(arg, max);
}

static enum frame_result
imap_frame(struct conn *c, void *session, const uint8_t *in, size_t len, size_t *used_r)
{
	struct imap_session *s = session;
	const struct roost_config *cfg = imap_cfg(s);
	struct imap_frame_env env = {
	    .max_line = conn_max_line(c),
	    .max_literal = cfg->imap_max_literal,
	    .authenticated = s->state == IMAP_STATE_AUTH || s->state == IMAP_STATE_SELECTED,
	    .nonsync_max = cfg->imap_literal_minus ? IMAP_LITERAL_MINUS_MAX : 0,
	    .mode = (s->sasl != NULL || s->idling) ? FRAMER_LINE : FRAMER_COMMAND,
	    .spool_dir = cfg->data_dir,
	    .write = frame_write,
	    .raise_input = frame_raise,
	    .arg = c,
	};

	if (s->state == IMAP_STATE_LOGOUT)
		return FRAME_CLOSE;
	enum imap_frame_res r = imap_framer_run(&s->fr, &env, in, len, used_r);
	if (env.bad > 0) {
		s->bad += env.bad;
		if (cfg->imap_max_bad_commands > 0 && s->bad >= cfg->imap_max_bad_commands) {
			conn_write_str(c, "* BYE Too many invalid commands\r\n");
			return FRAME_CLOSE;
		}
	}
	switch (r) {
	case IMAP_FRAME_COMMAND:
		return FRAME_COMMAND;
	case IMAP_FRAME_DISCARD:
		return FRAME_DISCARD;
	default:
		return FRAME_AGAIN;
	}
}

static void
cmd_free(struct imap_cmd **cmdp)
{
	struct imap_cmd *cmd = *cmdp;

	if (cmd == NULL)
		return;
	if (cmd->state_free != NULL)
		cmd->state_free(cmd);
	arena_free(&cmd->arena);
	imap_spool_free(&cmd->spool);
	free(cmd);
	*cmdp = NULL;
}

static void cmd_resume(struct conn *c, void *session, void *arg);

/* After run or a step returned: park a command that yielded, or finish it. */
static void
cmd_after_step(struct imap_session *s, struct imap_cmd *cmd)
{
	if (cmd->step != NULL) {
		/* A closing connection runs no more steps: drop the rest. */
		if (!conn_is_closing(cmd->c)) {
			s->cont = cmd;
			conn_continue(cmd->c, cmd_resume, NULL);
			return;
		}
	} else if (!cmd->done && !s->idling && s->sasl == NULL) {
		imap_tagged(cmd, "OK", "%s completed", cmd->p.name);
	}
	cmd_free(&cmd);
}

static void
cmd_resume(struct conn *c, void *session, void *arg)
{
	struct imap_session *s = session;
	struct imap_cmd *cmd = s->cont;
	imap_step_fn *step;

	(void)arg;
	if (cmd == NULL)
		return;
	s->cont = NULL;
	step = cmd->step;
	cmd->step = NULL;
	step(cmd);
	cmd_after_step(s, cmd);
}

void
imap_yield(struct imap_cmd *cmd, imap_step_fn *step)
{
	cmd->step = step;
}

static void
imap_on_command(struct conn *c, void *session, const uint8_t *data, size_t len)
{
	struct imap_session *s = session;
	struct imap_cmd *cmd;
	const char *err;

	if (s->sasl != NULL) {
		imap_sasl_continue(s, data, len);
		return;
	}
	if (s->idling) {
		imap_idle_line(s, data, len);
		return;
	}
	/* On the heap: a command that yields outlives this call. */
	cmd = xcalloc(1, sizeof(*cmd));
	cmd->s = s;
	cmd->c = c;
	/* A spooled APPEND: its text is in the spool (data included). */
	cmd->spool = imap_framer_take_spool(&s->fr);
	arena_init(&cmd->arena);
	cmd->arena.max = IMAP_ARENA_PER_LINE * conn_max_line(c);
	int rc = cmd->spool != NULL ? imap_parse_spooled(&cmd->arena, cmd->spool, &cmd->p, &err)
	                            : imap_parse_command(&cmd->arena, data, len, &cmd->p, &err);
	cmd->arena.max = 0; /* the bound is for what the client sized */
	if (rc < 0) {
		if (cmd->p.tag == NULL) {
			conn_printf(c, "* BAD %s\r\n", err ? err : "Invalid command");
			imap_count_bad(s);
		} else {
			imap_bad(cmd, "%s", err ? err : "Invalid command");
		}
		goto out;
	}
	cmd->uid = cmd->p.uid;
	/* Another's mailbox: a revoked r ends the selection before the next
	 * command, reads included (RFC 4314 has no word for this; the client
	 * is told, and commands on the mailbox get NO [NOPERM]) */
	bool revoked = false;
	if (s->state == IMAP_STATE_SELECTED && s->view.mb != NULL &&
	    mailbox_rights_refresh(s->view.mb) != 0) {
		view_close(s);
		imap_enter_state(s, IMAP_STATE_AUTH);
		imap_untagged(s, "OK [CLOSED] Access to the selected mailbox was revoked");
		revoked = true;
	}
	switch (imap_find_command(cmd->p.name, cmd->uid, s->state, &cmd->def)) {
	case PROTO_CMD_UNKNOWN:
		imap_bad(cmd, "Unknown command %s%s", cmd->uid ? "UID " : "", cmd->p.name);
		goto out;
	case PROTO_CMD_NOT_NOW:
		if (revoked)
			imap_tagged(cmd, "NO",
			            "[NOPERM] Access to the selected mailbox was revoked");
		else
			imap_bad(cmd, "%s", imap_state_error(cmd->def, s->state));
		goto out;
	case PROTO_CMD_FOUND:
		break;
	}
	/* a claim left for later is made before anything shows a flag */
	if (s->state == IMAP_STATE_SELECTED)
		view_claim_due(s);
	if (cmd->def->check != NULL && !cmd->def->check(cmd))
		goto out;
	cmd->def->run(cmd);
	cmd_after_step(s, cmd);
	return;
out:
	cmd_free(&cmd);
}

/* Messages a selected mailbox may hold for its FETCH, SEARCH and NOOP to run
 * on the loop: the view is in memory and the work is one pass over it. */
#define INLINE_VIEW_MAX 2000
/* ... and the longest such command: a SEARCH costs its keys times the
 * messages. */
#define INLINE_LINE_MAX 256

/* The words of cmd after the verb, split at blanks and parentheses: true
 * when each is a number, a sequence set or one of words (NULL-terminated).
 * No quoted string, literal or anything else passes. */
static bool
args_only(const uint8_t *cmd, size_t len, size_t i, const char *const *words)
{
	while (i < len) {
		size_t w;
		bool set = true, known = false;

		while (i < len && (cmd[i] == ' ' || cmd[i] == '(' || cmd[i] == ')' ||
		                   cmd[i] == '\r' || cmd[i] == '\n'))
			i++;
		w = i;
		while (i < len && cmd[i] != ' ' && cmd[i] != '(' && cmd[i] != ')' &&
		       cmd[i] != '\r' && cmd[i] != '\n') {
			if (cmd[i] == '"' || cmd[i] == '{')
				return false;
			if (!((cmd[i] >= '0' && cmd[i] <= '9') || cmd[i] == ':' || cmd[i] == ',' ||
			      cmd[i] == '*' || cmd[i] == '$'))
				set = false;
			i++;
		}
		if (i == w || set)
			continue;
		for (size_t k = 0; words[k] != NULL && !known; k++)
			known = i - w == strlen(words[k]) &&
			        strncasecmp((const char *)cmd + w, words[k], i - w) == 0;
		if (!known)
			return false;
	}
	return true;
}

/* A SELECTED command may run on the loop: the view is small and its
 * catching up with storage little work that needs no wait. */
static bool
view_inline_ok(const struct imap_session *s)
{
	const struct imap_view *v = &s->view;
	struct mailbox_changes ch;

	if (v->mb == NULL || v->n > INLINE_VIEW_MAX || v->contexts != NULL || v->claim_due ||
	    v->sort_cache != NULL)
		return false;
	/* A look at what changed meanwhile (the command syncs at its end):
	 * a few records from the map, or not here. */
	if (mailbox_changes_since_nb(v->mb, v->modseq, 32, &ch) != 0)
		return false;
	mailbox_changes_free(&ch);
	return true;
}

/*
 * [loop] Commands that cannot block and whose work is small run on the
 * loop, without the two thread switches of a worker's round trip:
 *  - CAPABILITY, NOOP and LOGOUT outside a selected mailbox (the session
 *    only);
 *  - where the store's reads never wait (storage_reads_nb(): LMDB), LIST,
 *    LSUB and STATUS outside a selected mailbox (one read of the mailbox
 *    list or of one mailbox's counters; not STATUS DELETED, which reads
 *    every record), and in a selected mailbox of at most INLINE_VIEW_MAX
 *    messages with few changes to catch up on, NOOP, CHECK, and FETCH and
 *    SEARCH (of at most INLINE_LINE_MAX bytes) of what the view holds in
 *    memory (flags, UIDs, sizes, dates, MODSEQ: no envelope, structure or
 *    body, nothing that sets \Seen, no search context), and LOGOUT (the
 *    view's memory freed, nothing read; any size).
 * The rest (a login's hash, every write, anything reading a message) goes
 * to a worker. Not with NOTIFY (its events look at other mailboxes).
 */
static bool
imap_command_inline(struct conn *c, void *session, const uint8_t *cmd, size_t len)
{
	static const char *const session_verbs[] = {"CAPABILITY", "NOOP", "LOGOUT", NULL};
	static const char *const list_verbs[] = {"CAPABILITY", "NOOP",   "LOGOUT", "LIST",
	                                         "LSUB",       "STATUS", NULL};
	static const char *const view_verbs[] = {"NOOP",   "CHECK",  "FETCH",
	                                         "SEARCH", "LOGOUT", NULL};
	static const char *const fetch_words[] = {
	    "UID",     "FLAGS",    "INTERNALDATE", "RFC822.SIZE",  "MODSEQ",
	    "EMAILID", "THREADID", "FAST",         "CHANGEDSINCE", NULL};
	static const char *const search_words[] = {
	    "ALL",    "ANSWERED", "DELETED",    "DRAFT",     "FLAGGED", "NEW",       "OLD",
	    "RECENT", "SEEN",     "UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED", "UNSEEN",
	    "NOT",    "OR",       "UID",        "LARGER",    "SMALLER", NULL};
	const struct imap_session *s = session;
	const char *const *verbs;
	size_t i = 0, v;
	bool uid = false;

	(void)c;
	if (s == NULL || s->sasl != NULL || s->idling || s->fr.ready != NULL || s->notify != NULL)
		return false;
	switch (s->state) {
	case IMAP_STATE_NOT_AUTH:
		verbs = session_verbs;
		break;
	case IMAP_STATE_AUTH:
		verbs = storage_reads_nb(s->sv->storage) ? list_verbs : session_verbs;
		break;
	case IMAP_STATE_SELECTED:
		if (!storage_reads_nb(s->sv->storage))
			return false;
		verbs = view_verbs;
		break;
	default:
		return false;
	}
	while (i < len && cmd[i] != ' ')
		i++; /* the tag */
	if (i == 0 || i >= len)
		return false;
	for (;;) {
		v = ++i;
		while (i < len && cmd[i] != ' ' && cmd[i] != '\r' && cmd[i] != '\n')
			i++;
		if (uid || s->state != IMAP_STATE_SELECTED || i - v != 3 ||
		    strncasecmp((const char *)cmd + v, "UID", 3) != 0 || i >= len)
			break;
		uid = true; /* UID FETCH, UID SEARCH */
	}
	for (size_t k = 0; verbs[k] != NULL; k++) {
		if (i - v != strlen(verbs[k]) ||
		    strncasecmp((const char *)cmd + v, verbs[k], i - v) != 0)
			continue;
		if (verbs == session_verbs)
			return true;
		if (verbs == list_verbs) {
			/* STATUS DELETED and DELETED-STORAGE count records;
			 * LIST's RETURN (STATUS (DELETED)) too. */
			for (size_t j = i; j + 7 <= len; j++)
				if (strncasecmp((const char *)cmd + j, "DELETED", 7) == 0)
					return false;
			return true;
		}
		if (uid && (k < 2 || k == 4))
			return false; /* no UID NOOP */
		if (k == 4)           /* LOGOUT: the view is freed, nothing read */
			return !s->view.claim_due;
		if (len > INLINE_LINE_MAX || !view_inline_ok(s))
			return false;
		if (k < 2)
			return true;
		return args_only(cmd, len, i, k == 2 ? fetch_words : search_words);
	}
	return false;
}

static void
imap_on_wake(struct conn *c, void *session, enum wake_reason why)
{
	struct imap_session *s = session;

	if (s->idling)
		imap_idle_wake(s, why == WAKE_TIMER);
	else if (why == WAKE_NOTIFY && s->state != IMAP_STATE_LOGOUT)
		imap_notify_wake(s); /* RFC 5465: between commands too */
}

static bool
imap_wake_inline(struct conn *c, void *session)
{
	return imap_idle_wake_nb(session);
}

static void
imap_on_timeout(struct conn *c, void *session)
{
	conn_write_str(c, "* BYE Autologout; idle for too long\r\n");
}

static void
imap_on_shutdown(struct conn *c, void *session)
{
	conn_write_str(c, conn_is_kicked(c) ? "* BYE Disconnected by the administrator\r\n"
	                                    : "* BYE Server shutting down\r\n");
}

const struct proto_ops imap_proto_ops = {
    .name = "imap",
    .session_new = imap_session_new,
    .session_new_inline = true,
    .session_free = imap_session_free,
    .frame = imap_frame,
    .on_command = imap_on_command,
    .command_inline = imap_command_inline,
    .on_wake = imap_on_wake,
    .wake_inline = imap_wake_inline,
    .on_timeout = imap_on_timeout,
    .on_shutdown = imap_on_shutdown,
};
