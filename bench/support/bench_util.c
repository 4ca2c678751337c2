#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

double
bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
bench_free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
		perror("bench: free port");
		exit(1);
	}
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

int
bench_connect(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

int
bench_fill(int fd, char *buf, size_t size, size_t *have)
{
	ssize_t n;

	if (*have == size)
		return -1;
	do {
		n = read(fd, buf + *have, size - *have);
	} while (n < 0 && errno == EINTR);
	if (n <= 0)
		return -1;
	*have += (size_t)n;
	return 0;
}

pid_t
bench_start_server(const char *roost, const char *conf, const char *dir, int port)
{
	char log[512];
	pid_t pid;

	snprintf(log, sizeof(log), "%s/server.log", dir);
	pid = fork();
	if (pid < 0) {
		perror("fork");
		exit(1);
	}
	if (pid == 0) {
		FILE *f = freopen(log, "w", stderr);

		(void)f;
		dup2(2, 1);
		execl(roost, roost, "serve", "--config", conf, (char *)NULL);
		perror(roost);
		_exit(127);
	}
	for (int i = 0; i < 300; i++) {
		int fd = bench_connect(port);

		if (fd >= 0) {
			close(fd);
			return pid;
		}
		usleep(20000);
	}
	fprintf(stderr, "bench: server did not start; see %s\n", log);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	exit(1);
}

static int
double_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

void
bench_sort(double *v, size_t n)
{
	if (n > 1)
		qsort(v, n, sizeof(*v), double_cmp);
}
