/*
 * `roost user add|passwd|del NAME` and `roost user list`: edits of the
 * passwd file ([auth] passwd_file). Passwords never come from the command
 * line (it is visible in ps and shell history): on a terminal they are read
 * twice with echo off, otherwise as one line from stdin, for scripts.
 * A running server notices the changed file on the next login.
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
};

static void
find_cb(const char *user, void *arg)
{
	struct find_ctx *f = arg;

	if (strcasecmp(user, f->name) == 0)
		f->found = true;
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
	struct buf hash = BUF_INIT(0);
	const char *op, *name = NULL;
	int ret = CLI_OK, err;

	if (cli->argc < 2)
		return cli_usage(cli);
	op = cli->argv[1];
	if (strcmp(op, "list") == 0) {
		if (cli->argc != 2)
			return cli_usage(cli);
	} else if (strcmp(op, "add") == 0 || strcmp(op, "passwd") == 0 || strcmp(op, "del") == 0) {
		if (cli->argc != 3)
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
	} else if (strcmp(op, "del") == 0) {
		err = auth_file_delete(cfg->passwd_file, name);
		if (err < 0) {
			fprintf(stderr, "roost: %s: %s\n", name, err_text(err));
			ret = CLI_FAIL;
		} else {
			printf("deleted %s (its mail under %s is kept)\n", name, cfg->data_dir);
		}
	} else {
		bool add = strcmp(op, "add") == 0;
		struct find_ctx f = {name, false};

		/* Say "exists" / "no such user" before asking for a password. */
		err = auth_file_list(cfg->passwd_file, find_cb, &f);
		if (err == 0 && f.found == add) {
			fprintf(stderr, "roost: %s: %s\n", name,
			        err_text(add ? ROOST_EEXISTS : ROOST_ENOTFOUND));
			ret = CLI_FAIL;
			goto out;
		}
		if ((ret = new_hash(cfg, &hash)) != CLI_OK)
			goto out;
		err = add ? auth_file_add(cfg->passwd_file, name, buf_cstr(&hash))
		          : auth_file_set_password(cfg->passwd_file, name, buf_cstr(&hash));
		if (err < 0) {
			fprintf(stderr, "roost: %s: %s\n", name, err_text(err));
			ret = CLI_FAIL;
		} else {
			printf("%s %s\n", add ? "added" : "changed the password of", name);
		}
	}
out:
	if (hash.data != NULL)
		explicit_bzero(hash.data, hash.cap);
	buf_free(&hash);
	config_free(&cfg);
	return ret;
}
