/*
 * `roost who`, `roost kick USER [--proto P]` and `roost reload`: requests to
 * the running server over its control socket <data_dir>/ctl.sock (the
 * protocol is in roost/server.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "roost/cli.h"
#include "roost/config.h"

/* The reply of `who` for the largest registry is a few MB: read it as it
 * comes, line by line, and stop at this much. */
#define REPLY_LINE_MAX 4096

/*
 * Send line to the server and call fn on each reply line (without its
 * newline) until the last, "ok ..." or "error ...", which is copied to
 * last. CLI_OK, or CLI_FAIL with the reason on stderr.
 */
static int
ctl_request(const struct roost_config *cfg, const char *line,
            void (*fn)(const char *line, void *arg), void *arg, char *last, size_t lastlen)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct timeval tv = {30, 0};
	char buf[REPLY_LINE_MAX];
	size_t got = 0;
	int fd;

	last[0] = '\0';
	if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/ctl.sock", cfg->data_dir) >=
	    sizeof(sa.sun_path)) {
		fprintf(stderr, "roost: %s/ctl.sock: path too long\n", cfg->data_dir);
		return CLI_FAIL;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		int e = errno;

		if (e == ENOENT || e == ECONNREFUSED)
			fprintf(stderr, "roost: no server is running on %s (%s)\n", cfg->data_dir,
			        strerror(e));
		else
			fprintf(stderr, "roost: %s: %s\n", sa.sun_path, strerror(e));
		if (fd >= 0)
			close(fd);
		return CLI_FAIL;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (send(fd, line, strlen(line), MSG_NOSIGNAL) < 0 || send(fd, "\n", 1, MSG_NOSIGNAL) < 0) {
		fprintf(stderr, "roost: %s: %s\n", sa.sun_path, strerror(errno));
		close(fd);
		return CLI_FAIL;
	}
	for (;;) {
		ssize_t r = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
		char *p, *nl;

		if (r <= 0)
			break;
		got += (size_t)r;
		buf[got] = '\0';
		p = buf;
		while ((nl = strchr(p, '\n')) != NULL) {
			*nl = '\0';
			if (strncmp(p, "ok", 2) == 0 || strncmp(p, "error", 5) == 0) {
				size_t n = strlen(p) < lastlen ? strlen(p) : lastlen - 1;

				memcpy(last, p, n);
				last[n] = '\0';
				close(fd);
				if (strncmp(last, "error", 5) == 0) {
					fprintf(stderr, "roost: %s\n",
					        last[5] != '\0' ? last + 6 : last);
					return CLI_FAIL;
				}
				return CLI_OK;
			}
			if (fn != NULL)
				fn(p, arg);
			p = nl + 1;
		}
		got -= (size_t)(p - buf);
		memmove(buf, p, got);
		if (got == sizeof(buf) - 1)
			break; /* a line longer than any the server writes */
	}
	close(fd);
	fprintf(stderr, "roost: the server closed the control connection without an answer\n");
	return CLI_FAIL;
}

/* The value of key in a "k=v k=v" line, unquoted as written by the log's
 * quoting (\" and \\ undone; \xNN kept as written, so what the terminal
 * shows cannot hold a control character). */
static void
field(const char *line, const char *key, char *out, size_t outlen)
{
	size_t klen = strlen(key), n = 0;
	const char *p = line;

	out[0] = '\0';
	while ((p = strstr(p, key)) != NULL) {
		if ((p == line || p[-1] == ' ') && p[klen] == '=')
			break;
		p += klen;
	}
	if (p == NULL)
		return;
	p += klen + 1;
	if (*p == '"') {
		for (p++; *p != '\0' && *p != '"' && n + 1 < outlen; p++) {
			if (*p == '\\' && (p[1] == '"' || p[1] == '\\'))
				p++;
			out[n++] = *p;
		}
	} else {
		for (; *p != '\0' && *p != ' ' && n + 1 < outlen; p++)
			out[n++] = *p;
	}
	out[n] = '\0';
}

struct who_ctx {
	bool raw;
	unsigned n;
};

static void
who_line(const char *line, void *arg)
{
	struct who_ctx *w = arg;
	char user[300], proto[32], peer[80], since[32], mbox[300], in[32], out[32], id[32];
	char when[32];
	time_t t;
	struct tm tm;

	if (strncmp(line, "session ", 8) != 0)
		return;
	w->n++;
	if (w->raw) {
		printf("%s\n", line);
		return;
	}
	field(line, "id", id, sizeof(id));
	field(line, "user", user, sizeof(user));
	field(line, "proto", proto, sizeof(proto));
	field(line, "peer", peer, sizeof(peer));
	field(line, "since", since, sizeof(since));
	field(line, "mailbox", mbox, sizeof(mbox));
	field(line, "bytes_in", in, sizeof(in));
	field(line, "bytes_out", out, sizeof(out));
	t = (time_t)strtoll(since, NULL, 10);
	localtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
	if (w->n == 1)
		printf("%-28s %-10s %-24s %-19s %-20s %10s %10s %s\n", "USER", "PROTO", "PEER",
		       "SINCE", "MAILBOX", "IN", "OUT", "ID");
	printf("%-28s %-10s %-24s %-19s %-20s %10s %10s %s\n", user, proto, peer, when, mbox, in,
	       out, id);
}

int
cli_who(struct cli *cli)
{
	struct roost_config *cfg = NULL;
	struct who_ctx w = {0};
	char last[256];
	int ret;

	for (int i = 1; i < cli->argc; i++) {
		if (strcmp(cli->argv[i], "--raw") == 0)
			w.raw = true;
		else
			return cli_usage(cli);
	}
	if (cli_load_config(cli, &cfg) < 0)
		return CLI_USAGE;
	ret = ctl_request(cfg, "who", who_line, &w, last, sizeof(last));
	if (ret == CLI_OK && w.raw)
		printf("%s\n", last);
	else if (ret == CLI_OK && w.n == 0)
		printf("no sessions\n");
	config_free(&cfg);
	return ret;
}

/* A user name or protocol the request line can carry: printable, no blank. */
static bool
word_ok(const char *s)
{
	if (s[0] == '\0' || strlen(s) > 255)
		return false;
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p <= ' ' || *p == 0x7f)
			return false;
	}
	return true;
}

int
cli_kick(struct cli *cli)
{
	struct roost_config *cfg = NULL;
	const char *user = NULL, *proto = NULL;
	char line[600], last[256];
	int ret;

	for (int i = 1; i < cli->argc; i++) {
		if (strcmp(cli->argv[i], "--proto") == 0 && i + 1 < cli->argc)
			proto = cli->argv[++i];
		else if (strncmp(cli->argv[i], "--proto=", 8) == 0)
			proto = cli->argv[i] + 8;
		else if (user == NULL && cli->argv[i][0] != '-')
			user = cli->argv[i];
		else
			return cli_usage(cli);
	}
	if (user == NULL || !word_ok(user) || (proto != NULL && !word_ok(proto)))
		return cli_usage(cli);
	if (cli_load_config(cli, &cfg) < 0)
		return CLI_USAGE;
	snprintf(line, sizeof(line), "kick %s%s%s", user, proto != NULL ? " " : "",
	         proto != NULL ? proto : "");
	ret = ctl_request(cfg, line, NULL, NULL, last, sizeof(last));
	if (ret == CLI_OK) {
		const char *n = strstr(last, "kicked=");

		if (n == NULL || strcmp(n + 7, "0") == 0) {
			fprintf(stderr, "roost: no session of %s%s%s\n", user,
			        proto != NULL ? " over " : "", proto != NULL ? proto : "");
			ret = CLI_FAIL;
		} else {
			printf("%s session%s closed\n", n + 7, strcmp(n + 7, "1") == 0 ? "" : "s");
		}
	}
	config_free(&cfg);
	return ret;
}

/* One part of the server's "ok applied=a,b restart=c" answer, as a line. */
static void
print_keys(const char *answer, const char *part, const char *title)
{
	const char *p = strstr(answer, part);
	size_t n;

	if (p == NULL)
		return;
	p += strlen(part);
	n = strcspn(p, " ");
	printf("%s: ", title);
	for (size_t i = 0; i < n; i++)
		putchar(p[i] == ',' ? ' ' : p[i]);
	putchar('\n');
}

int
cli_reload(struct cli *cli)
{
	struct roost_config *cfg = NULL;
	char last[1024];
	int ret;

	if (cli->argc != 1)
		return cli_usage(cli);
	if (cli_load_config(cli, &cfg) < 0)
		return CLI_USAGE;
	ret = ctl_request(cfg, "reload", NULL, NULL, last, sizeof(last));
	if (ret == CLI_OK) {
		print_keys(last, " applied=", "applied");
		print_keys(last, " restart=", "needs a restart (kept as running)");
		if (strstr(last, " unchanged") != NULL)
			printf("configuration unchanged\n");
		printf("reloaded\n");
	}
	config_free(&cfg);
	return ret;
}
