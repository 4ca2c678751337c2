#ifndef ROOST_TESTD_H
#define ROOST_TESTD_H

/* The runtime's test protocol (tests/runtime/testd_proto.c). */
struct proto_ops;

extern const struct proto_ops testd_ops;

void testd_notifier_start(void);
void testd_notifier_stop(void);

#endif
