/*
 * `roost user add|passwd|del NAME` and `roost user list`: edits of the
 * passwd file ([auth] passwd_file). Passwords never come from the command
 * line (it is visible in ps and shell history): on a terminal they are read
 * twice with echo off, otherwise as one line from stdin, for scripts.
 * A running server notices the changed file on the next login.
 *
 * The mail of a deleted user stays in the store unless `del --purge` is
 * given, and a name whose old mail is still stored is not handed to a new
 * person by accident: `user add` refuses it until `--purge` (remove the old
 * mail first) or `--keep-mail` (the new user is the same person, or an
 * administrator taking over, e.g. postmaster's mail kept before the user
 * existed). A passwd file that does not parse is never edited: the user
 * written into it could not log in, and a duplicated name is ambiguous.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <termios.h>
#include <unistd.h>

#include "roost/auth.h"
#include "roost/buf.h"
#include "roost/cli.h"
#include "roost/config.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/storage.h"

#define PASSWORD_MAX 1024

/* Terminal state to put back if a signal arrives while echo is off. */
static struct termios saved_tty;
static volatile sig_atomic_t tty_changed;

static void
restore_tty_and_die(int sig)
{
	if (tty_changed)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Read one line into buf (size bytes) without its newline. -1 on EOF, error
 * or a line longer than the buffer. */
static int
read_line(FILE *f, char *buf, size_t size)
{
	size_t len;

	if (fgets(buf, (int)size, f) == NULL)
		return -1;
	len = strlen(buf);
	if (len > 0 && buf[len - 1] == '\n')
		buf[--len] = '\0';
	else if (!feof(f))
		return -1; /* too long */
	if (len > 0 && buf[len - 1] == '\r')
		buf[--len] = '\0';
	return 0;
}

/*
 * Echo off before the first prompt and on again after the last answer:
 * typeahead is neither echoed nor discarded (TCSADRAIN, not TCSAFLUSH).
 */
static int
tty_echo(bool on)
{
	static struct sigaction old_int, old_term, old_quit;
	struct termios t;

	if (!on) {
		struct sigaction sa = {0};

		if (tcgetattr(STDIN_FILENO, &saved_tty) < 0)
			return -1;
		sa.sa_handler = restore_tty_and_die;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGINT, &sa, &old_int);
		sigaction(SIGTERM, &sa, &old_term);
		sigaction(SIGQUIT, &sa, &old_quit);
		t = saved_tty;
		t.c_lflag &= ~(tcflag_t)ECHO;
		t.c_lflag |= ECHONL;
		tty_changed = 1;
		return tcsetattr(STDIN_FILENO, TCSADRAIN, &t);
	}
	tcsetattr(STDIN_FILENO, TCSADRAIN, &saved_tty);
	tty_changed = 0;
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	sigaction(SIGQUIT, &old_quit, NULL);
	return 0;
}

static int
prompt_tty(const char *prompt, char *buf, size_t size)
{
	fputs(prompt, stderr);
	fflush(stderr);
	return read_line(stdin, buf, size);
}

/* The new password into pw (size bytes); CLI_OK or an exit code. */
static int
read_password(char *pw, size_t size)
{
	if (isatty(STDIN_FILENO)) {
		char again[PASSWORD_MAX + 2];
		int same;

		int r;

		if (tty_echo(false) < 0) {
			fprintf(stderr, "roost: cannot turn off echo on the terminal\n");
			return CLI_FAIL;
		}
		r = prompt_tty("New password: ", pw, size) < 0 ||
		    prompt_tty("Retype new password: ", again, sizeof(again)) < 0;
		tty_echo(true);
		if (r) {
			fprintf(stderr, "roost: could not read the password\n");
			return CLI_FAIL;
		}
		same = strcmp(pw, again) == 0;
		explicit_bzero(again, sizeof(again));
		if (!same) {
			fprintf(stderr, "roost: the passwords do not match; nothing changed\n");
			return CLI_FAIL;
		}
	} else if (read_line(stdin, pw, size) < 0) {
		fprintf(stderr,
		        "roost: expected the password as one line on stdin (at most %d "
		        "bytes)\n",
		        PASSWORD_MAX);
		return CLI_FAIL;
	}
	if (pw[0] == '\0') {
		fprintf(stderr, "roost: empty password refused\n");
		return CLI_FAIL;
	}
	return CLI_OK;
}

struct find_ctx {
	const char *name;
	bool found;
	char spelled[AUTH_MAX_NAME + 1]; /* the file's spelling of the name */
};

static void
find_cb(const char *user, void *arg)
{
	struct find_ctx *f = arg;

	if (strcasecmp(user, f->name) == 0) {
		f->found = true;
		snprintf(f->spelled, sizeof(f->spelled), "%s", user);
	}
}

/* Messages stored for user, summed over its mailboxes (0 for no store). */
static int
mail_count(struct storage *st, const char *user, uint64_t *n_r)
{
	struct mailbox_info *list = NULL;
	size_t n = 0;
	int err = storage_list(st, user, &list, &n);

	*n_r = 0;
	if (err == ROOST_ENOTFOUND)
		return 0;
	if (err != 0)
		return err;
	for (size_t i = 0; i < n; i++) {
		struct mailbox_status ms;

		if ((list[i].attrs & (MBOX_NOSELECT | MBOX_NONEXISTENT)) == 0 &&
		    storage_status(st, user, list[i].name, &ms) == 0)
			*n_r += ms.messages;
	}
	storage_list_free(list, n);
	return 0;
}

/* Remove every message of user through the storage interface (so for
 * every backend): other mailboxes deleted, children first, INBOX emptied,
 * subscriptions dropped. *removed_r counts the messages. */
static int
purge_mail(struct storage *st, const char *user, uint64_t *removed_r)
{
	struct mailbox_info *list = NULL;
	size_t n = 0;
	int err = mail_count(st, user, removed_r);

	if (err != 0)
		return err;
	err = storage_list(st, user, &list, &n);
	if (err == ROOST_ENOTFOUND)
		return 0;
	if (err != 0)
		return err;
	/* The list is sorted by name: backwards, children come before parents. */
	for (size_t i = n; err == 0 && i-- > 0;) {
		const char *name = list[i].name;

		(void)storage_subscribe(st, user, name, false);
		if ((list[i].attrs & MBOX_NONEXISTENT) != 0)
			continue;
		if (strcasecmp(name, "INBOX") == 0) {
			struct mailbox *mb = NULL;
			struct msg_record *recs = NULL;
			uint32_t *uids = NULL;
			size_t nr = 0;
			uint64_t modseq;

			err = mailbox_open(st, user, "INBOX", 0, &mb);
			if (err == 0)
				err = mailbox_records(mb, &recs, &nr, &modseq);
			if (err == 0 && nr > 0) {
				uids = calloc(nr, sizeof(*uids));
				if (uids == NULL)
					err = ROOST_EIO;
				for (size_t j = 0; uids != NULL && j < nr; j++)
					uids[j] = recs[j].uid;
				if (err == 0)
					err = mailbox_expunge(mb, uids, nr);
			}
			free(uids);
			free(recs);
			mailbox_close(&mb);
		} else {
			err = storage_delete(st, user, name);
			if (err == ROOST_ENOTFOUND)
				err = 0; /* a parent that went with its last child */
		}
	}
	storage_list_free(list, n);
	return err;
}

/* Open the store for the mail checks; an exit code. */
static int
open_store(const struct roost_config *cfg, struct storage **st_r)
{
	int err = storage_open(cfg, st_r);

	if (err != 0) {
		fprintf(stderr, "roost: cannot open the mail store: %s\n", roost_strerror(err));
		return CLI_FAIL;
	}
	return CLI_OK;
}

static void
print_cb(const char *user, void *arg)
{
	printf("%s\n", user);
}

static const char *
err_text(int err)
{
	switch (err) {
	case ROOST_EEXISTS:
		return "user already exists";
	case ROOST_ENOTFOUND:
		return "no such user";
	case ROOST_EINVAL:
		return "invalid user name";
	default:
		return roost_strerror(err);
	}
}

/* Hash a password read from the terminal or stdin; an exit code. */
static int
new_hash(const struct roost_config *cfg, struct buf *hash)
{
	char pw[PASSWORD_MAX + 2];
	int ret;

	if ((ret = read_password(pw, sizeof(pw))) != CLI_OK)
		return ret;
	ret = auth_hash_password(cfg->password_scheme, pw, hash);
	explicit_bzero(pw, sizeof(pw));
	if (ret == ROOST_ENOTSUP) {
		fprintf(stderr, "roost: %s: [auth] password_scheme: \"%s\" is not supported here\n",
		        cfg->path != NULL ? cfg->path : "(defaults)", cfg->password_scheme);
		return CLI_USAGE;
	}
	if (ret < 0) {
		fprintf(stderr, "roost: cannot hash the password: %s\n", roost_strerror(ret));
		return CLI_FAIL;
	}
	return CLI_OK;
}

int
cli_user(struct cli *cli)
{
	struct roost_config *cfg = NULL;
	struct storage *st = NULL;
	struct buf hash = BUF_INIT(0);
	const char *op, *name = NULL;
	bool purge = false, keep_mail = false;
	int ret = CLI_OK, err, argc = cli->argc;

	if (argc < 2)
		return cli_usage(cli);
	op = cli->argv[1];
	/* Options after the name: del --purge; add --purge | --keep-mail. */
	while (argc > 3 && cli->argv[argc - 1][0] == '-' && cli->argv[argc - 1][1] == '-') {
		const char *o = cli->argv[argc - 1];

		if (strcmp(o, "--purge") == 0 && (strcmp(op, "del") == 0 || strcmp(op, "add") == 0))
			purge = true;
		else if (strcmp(o, "--keep-mail") == 0 && strcmp(op, "add") == 0)
			keep_mail = true;
		else
			return cli_usage(cli);
		argc--;
	}
	if (purge && keep_mail) {
		fprintf(stderr, "roost: --purge and --keep-mail exclude each other\n");
		return CLI_USAGE;
	}
	if (strcmp(op, "list") == 0) {
		if (argc != 2)
			return cli_usage(cli);
	} else if (strcmp(op, "add") == 0 || strcmp(op, "passwd") == 0 || strcmp(op, "del") == 0) {
		if (argc != 3)
			return cli_usage(cli);
		name = cli->argv[2];
		if (!auth_user_name_valid(name)) {
			fprintf(stderr,
			        "roost: invalid user name %s: use local@domain or a plain "
			        "name, in UTF-8, without ':', '/', '\\', blanks or control "
			        "characters\n",
			        LOG_QUOTE(name));
			return CLI_USAGE;
		}
	} else {
		return cli_usage(cli);
	}
	if (cli_load_config(cli, &cfg) < 0)
		return CLI_USAGE;
	/* Errors of the edit itself (paths, errno) go to stderr, one line each. */
	log_setup(LOG_LEVEL_WARN, true, false);

	if (strcmp(op, "list") == 0) {
		err = auth_file_list(cfg->passwd_file, print_cb, NULL);
		if (err < 0) {
			fprintf(stderr, "roost: %s: %s\n", cfg->passwd_file,
			        err == ROOST_EINVAL ? "malformed file (see above)"
			                            : roost_strerror(err));
			ret = CLI_FAIL;
		}
		goto out;
	}

	struct find_ctx f = {name, false, ""};
	uint64_t msgs = 0;

	/* Never edit a file that does not parse: a user added to it could not
	 * log in, and a name in it twice cannot be told apart. */
	err = auth_file_list(cfg->passwd_file, find_cb, &f);
	if (err < 0) {
		fprintf(stderr,
		        "roost: %s: %s; nothing changed (fix the file by hand, `roost user list` "
		        "names the line)\n",
		        cfg->passwd_file,
		        err == ROOST_EINVAL ? "the file does not parse (see above)"
		                            : roost_strerror(err));
		ret = CLI_FAIL;
		goto out;
	}
	if (strcmp(op, "del") == 0) {
		const char *who = f.found ? f.spelled : name;

		/* del --purge of a name already gone from the file removes its
		 * left-over mail. */
		if (!f.found && !purge) {
			fprintf(stderr, "roost: %s: %s\n", name, err_text(ROOST_ENOTFOUND));
			ret = CLI_FAIL;
			goto out;
		}
		if ((ret = open_store(cfg, &st)) != CLI_OK)
			goto out;
		if (f.found && (err = auth_file_delete(cfg->passwd_file, name)) < 0) {
			fprintf(stderr, "roost: %s: %s\n", name, err_text(err));
			ret = CLI_FAIL;
			goto out;
		}
		if (purge) {
			err = purge_mail(st, who, &msgs);
			if (err != 0) {
				fprintf(stderr, "roost: %s: removing the mail failed: %s\n", who,
				        roost_strerror(err));
				ret = CLI_FAIL;
				goto out;
			}
			printf("%s %s and its mail (%llu messages)\n",
			       f.found ? "deleted" : "purged", who, (unsigned long long)msgs);
		} else {
			(void)mail_count(st, who, &msgs);
			printf("deleted %s; its mail (%llu messages) is kept: `roost user del %s "
			       "--purge` removes it, and `roost user add %s` needs --keep-mail or "
			       "--purge while it is there\n",
			       who, (unsigned long long)msgs, who, who);
		}
		goto out;
	}

	bool add = strcmp(op, "add") == 0;

	/* Say "exists" / "no such user" before asking for a password. */
	if (f.found == add) {
		fprintf(stderr, "roost: %s: %s\n", name,
		        err_text(add ? ROOST_EEXISTS : ROOST_ENOTFOUND));
		ret = CLI_FAIL;
		goto out;
	}
	if (add) {
		if ((ret = open_store(cfg, &st)) != CLI_OK)
			goto out;
		if ((err = mail_count(st, name, &msgs)) != 0) {
			fprintf(stderr, "roost: %s: cannot look at the mail store: %s\n", name,
			        roost_strerror(err));
			ret = CLI_FAIL;
			goto out;
		}
		if (msgs > 0 && !purge && !keep_mail) {
			fprintf(stderr,
			        "roost: %s: %llu messages of an earlier %s are still stored; "
			        "`--purge` removes them first, `--keep-mail` gives them to the "
			        "new user; nothing changed\n",
			        name, (unsigned long long)msgs, name);
			ret = CLI_FAIL;
			goto out;
		}
	}
	if ((ret = new_hash(cfg, &hash)) != CLI_OK)
		goto out;
	if (add && purge && msgs > 0 && (err = purge_mail(st, name, &msgs)) != 0) {
		fprintf(stderr, "roost: %s: removing the old mail failed: %s; nothing changed\n",
		        name, roost_strerror(err));
		ret = CLI_FAIL;
		goto out;
	}
	err = add ? auth_file_add(cfg->passwd_file, name, buf_cstr(&hash))
	          : auth_file_set_password(cfg->passwd_file, name, buf_cstr(&hash));
	if (err < 0) {
		fprintf(stderr, "roost: %s: %s\n", name, err_text(err));
		ret = CLI_FAIL;
	} else if (add && msgs > 0) {
		printf("added %s (%s %llu earlier messages)\n", name, purge ? "removed" : "with",
		       (unsigned long long)msgs);
	} else {
		printf("%s %s\n", add ? "added" : "changed the password of", name);
	}
out:
	if (hash.data != NULL)
		explicit_bzero(hash.data, hash.cap);
	buf_free(&hash);
	storage_close(&st);
	config_free(&cfg);
	return ret;
}
