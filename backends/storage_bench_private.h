/*
 * What storage_bench.c (the workloads) and storage_bench_pg.c (the private
 * PostgreSQL) share. Private to the storage benchmark.
 */
#ifndef ROOST_STORAGE_BENCH_PRIVATE_H
#define ROOST_STORAGE_BENCH_PRIVATE_H

/* Remove dir and everything under it (errors ignored). */
void storage_bench_rm_tree(const char *dir);

#endif
