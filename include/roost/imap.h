#ifndef ROOST_IMAP_H
#define ROOST_IMAP_H

/*
 * The IMAP4rev1 service (protocols/imap). The runtime serves the "imap"
 * (plaintext + STARTTLS) and "imaps" (implicit TLS) listeners with these
 * hooks; see protocols/registry.c. Everything else about the protocol is
 * private to protocols/imap (imap_impl.h there).
 */
struct proto_ops;

extern const struct proto_ops imap_proto_ops;

#endif
