/*
 * The storage benchmark's private PostgreSQL (roost/storage_bench.h):
 * storage_bench_pg_start() runs initdb and pg_ctl from the newest installed
 * PostgreSQL in a scratch directory (as nobody when root), and
 * storage_bench_pg_stop() stops it and removes the directory. Split from
 * storage_bench.c, which holds the workloads. A guard process, started
 * with the directory, does both when this process ends without calling
 * storage_bench_pg_stop() (a signal, kill -9): it reads a socket that only
 * this process writes, and its end of file without "done" means that.
 */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "roost/error.h"
#include "roost/storage_bench.h"

#include "storage_bench_private.h"

/* The newest installed PostgreSQL's bin directory, into out. */
static bool
pg_bindir(char *out, size_t len)
{
	glob_t g;
	bool found = false;

	if (glob("/usr/lib/postgresql/*/bin/pg_ctl", 0, NULL, &g) != 0)
		return false;
	for (size_t i = 0; i < g.gl_pathc; i++) {
		char *slash = strrchr(g.gl_pathv[i], '/');
		char initdb[PATH_MAX];

		*slash = '\0';
		snprintf(initdb, sizeof(initdb), "%s/initdb", g.gl_pathv[i]);
		if (access(initdb, X_OK) != 0)
			continue;
		if (!found || strverscmp(g.gl_pathv[i], out) > 0)
			snprintf(out, len, "%s", g.gl_pathv[i]);
		found = true;
	}
	globfree(&g);
	return found;
}

/* Run bindir/prog with args (NULL-ended), output to log; as nobody when
 * root. 0 when it exits 0. */
static int
pg_tool(const char *bindir, const char *prog, const char *log, const char *const *args)
{
	char path[PATH_MAX];
	const char *argv[24];
	int n = 0, status;
	pid_t pid;

	snprintf(path, sizeof(path), "%s/%s", bindir, prog);
	if (geteuid() == 0) {
		argv[n++] = "runuser";
		argv[n++] = "-u";
		argv[n++] = "nobody";
		argv[n++] = "--";
	}
	argv[n++] = path;
	for (int i = 0; args[i] != NULL && n < 23; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	if ((pid = fork()) < 0)
		return ROOST_EIO;
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return ROOST_EIO;
	}
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : ROOST_EIO;
}

/* The guard: our end of its socket, and its process. */
static int guard_fd = -1;
static pid_t guard_pid = -1;

/* Start the guard of dir (a session of its own, so a Ctrl-C meant for the
 * benchmark does not reach it): sh reading its standard input, a socket;
 * on end of file without "done" it stops the server at once and removes
 * dir. Without a guard (fork failed) a kill leaves the server running,
 * as it did before. */
static void
guard_start(const char *bindir, const char *dir)
{
	static const char script[] =
	    "read x; [ \"$x\" = done ] && exit 0; $2 \"$0/pg_ctl\" -D \"$1/data\" -m immediate -w "
	    "stop >/dev/null 2>&1; rm -rf \"$1\"";
	int p[2];
	pid_t pid;

	/* a socket, not a pipe: send() to a guard that is gone raises no
	 * SIGPIPE here */
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) != 0)
		return;
	if ((pid = fork()) < 0) {
		close(p[0]);
		close(p[1]);
		return;
	}
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		(void)setsid();
		dup2(p[0], 0);
		if (null >= 0) {
			dup2(null, 1);
			dup2(null, 2);
		}
		execl("/bin/sh", "sh", "-c", script, bindir, dir,
		      geteuid() == 0 ? "runuser -u nobody --" : "", (char *)NULL);
		_exit(127);
	}
	close(p[0]);
	guard_fd = p[1];
	guard_pid = pid;
}

/* The server is stopped (or never started) and its directory gone: the
 * guard has nothing left to do. */
static void
guard_end(void)
{
	if (guard_fd < 0)
		return;
	if (send(guard_fd, "done\n", 5, MSG_NOSIGNAL) != 5) {
		/* the guard is gone: nothing to tell it */
	}
	close(guard_fd);
	guard_fd = -1;
	while (waitpid(guard_pid, NULL, 0) < 0 && errno == EINTR)
		;
	guard_pid = -1;
}

/* A start that failed: the directory goes, and the guard with it. */
static void
start_failed(const char *dir)
{
	storage_bench_rm_tree(dir);
	guard_end();
}

static void
pg_show_log(const char *path)
{
	FILE *f = fopen(path, "r");
	char line[512];

	if (f == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL)
		fputs(line, stderr);
	fclose(f);
}

int
storage_bench_pg_start(const char *tmpdir, char *dir_r, size_t dir_len, char *dsn_r, size_t dsn_len)
{
	char bindir[PATH_MAX], data[PATH_MAX], log[PATH_MAX], initlog[PATH_MAX],
	    opts[PATH_MAX + 128];
	struct passwd *nobody = NULL;

	if (!pg_bindir(bindir, sizeof(bindir)))
		return ROOST_ENOTSUP;
	if (tmpdir == NULL && (tmpdir = getenv("TMPDIR")) == NULL)
		tmpdir = "/tmp";
	snprintf(dir_r, dir_len, "%s/roost-bench-pg-XXXXXX", tmpdir);
	if (mkdtemp(dir_r) == NULL) {
		fprintf(stderr, "storage bench: %s: %s\n", dir_r, strerror(errno));
		return ROOST_EIO;
	}
	chmod(dir_r, 0755);
	if (geteuid() == 0 && ((nobody = getpwnam("nobody")) == NULL ||
	                       chown(dir_r, nobody->pw_uid, nobody->pw_gid) != 0)) {
		fprintf(stderr, "storage bench: %s: cannot give it to nobody\n", dir_r);
		storage_bench_rm_tree(dir_r);
		return ROOST_EIO;
	}
	guard_start(bindir, dir_r);
	snprintf(data, sizeof(data), "%s/data", dir_r);
	snprintf(log, sizeof(log), "%s/log", dir_r);
	snprintf(initlog, sizeof(initlog), "%s/initdb.log", dir_r);
	snprintf(opts, sizeof(opts),
	         "-k %s -c listen_addresses= -c fsync=on -c max_connections=300", dir_r);
	if (pg_tool(bindir, "initdb", initlog,
	            (const char *const[]){"-D", data, "-U", "roost", "-A", "trust", "-E", "UTF8",
	                                  "--locale=C", "--no-sync", NULL}) != 0) {
		pg_show_log(initlog);
		start_failed(dir_r);
		return ROOST_EIO;
	}
	if (pg_tool(bindir, "pg_ctl", initlog,
	            (const char *const[]){"-D", data, "-l", log, "-w", "-t", "60", "-o", opts,
	                                  "start", NULL}) != 0) {
		pg_show_log(log);
		start_failed(dir_r);
		return ROOST_EIO;
	}
	snprintf(dsn_r, dsn_len, "host=%s port=5432 user=roost dbname=postgres", dir_r);
	return 0;
}

void
storage_bench_pg_stop(const char *dir)
{
	char bindir[PATH_MAX], data[PATH_MAX], log[PATH_MAX];

	if (pg_bindir(bindir, sizeof(bindir))) {
		snprintf(data, sizeof(data), "%s/data", dir);
		snprintf(log, sizeof(log), "%s/initdb.log", dir);
		(void)pg_tool(bindir, "pg_ctl", log,
		              (const char *const[]){"-D", data, "-m", "fast", "-w", "stop", NULL});
	}
	storage_bench_rm_tree(dir);
	guard_end();
}
