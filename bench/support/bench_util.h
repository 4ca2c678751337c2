#ifndef ROOST_BENCH_UTIL_H
#define ROOST_BENCH_UTIL_H

#include <stddef.h>
#include <sys/types.h>

/*
 * What every protocol benchmark needs around a real `roost serve`: a clock,
 * a free loopback port, a client socket, a server child started from a
 * config file, and sorted samples for percentiles. Linked into every bench/ binary;
 * bench_run.h builds on them for the benchmarks that fill a data directory.
 */

/* Monotonic seconds. */
double bench_now(void);
/* A currently free TCP port on 127.0.0.1; exits on failure. */
int bench_free_port(void);
/* A blocking TCP_NODELAY connection to 127.0.0.1:port, or -1. */
int bench_connect(int port);
/* Read what fd has into buf[*have..size), adding to *have: 0, or -1 when
 * buf is full, at end of file or on an error. */
int bench_fill(int fd, char *buf, size_t size, size_t *have);
/* Fork `roost serve --config conf` with output in dir/server.log and wait
 * (up to 6 s) until port accepts; exits with a message when it does not. */
pid_t bench_start_server(const char *roost, const char *conf, const char *dir, int port);
/* Sort the samples v[0..n) (latencies) in ascending order. */
void bench_sort(double *v, size_t n);

#endif
