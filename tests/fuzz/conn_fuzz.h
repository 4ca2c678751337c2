#ifndef ROOST_CONN_FUZZ_H
#define ROOST_CONN_FUZZ_H

/*
 * A connection for fuzzing protocol sessions without the runtime: it
 * implements include/roost/conn.h over a plain output buffer, on one
 * thread. The fuzzer plays the loop: it frames, runs on_command, then
 * conn_fuzz_finish_command() (continuations, drain the output, drop a
 * raised input bound).
 */
#include "roost/conn.h"

struct roost_services;

struct conn *conn_fuzz_new(const struct roost_services *sv);
void conn_fuzz_free(struct conn **c);
/* The client read everything written so far. */
void conn_fuzz_drain(struct conn *c);
/* After on_command: run the continuations as the output drains. */
void conn_fuzz_finish_command(struct conn *c, void *session);

#endif
