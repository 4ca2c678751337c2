#ifndef ROOST_DNS_H
#define ROOST_DNS_H

#include <poll.h>
#include <stddef.h>
#include <sys/socket.h>

/*
 * Asynchronous DNS for outbound delivery, over c-ares (services/dns.c). A
 * struct dns belongs to one thread (the delivery engine's): it never
 * blocks; its sockets join the owner's poll set through dns_pollfds() and
 * dns_process(), and answers come back through callbacks run inside
 * dns_process(). [dns] servers ("127.0.0.1:5353, [::1]:53") overrides the
 * system's resolv.conf.
 *
 * Callback status: 0; ROOST_ENOTFOUND when the name does not exist
 * (NXDOMAIN: permanent); ROOST_ETEMP for a timeout or server failure. A
 * callback never runs after dns_free() (pending queries are dropped).
 */
struct roost_config;
struct dns;

#define DNS_MAX_NAME 256

struct dns_mx {
	unsigned pref;
	char host[DNS_MAX_NAME]; /* "" for a null MX (RFC 7505) */
};

/* MX records sorted by preference; n == 0 with status 0: no MX (use the
 * domain's own address, RFC 5321 5.1). */
typedef void dns_mx_fn(void *arg, int status, const struct dns_mx *mx, size_t n);
/* IPv6 and IPv4 addresses (port 0). */
typedef void dns_addr_fn(void *arg, int status, const struct sockaddr_storage *addrs, size_t n);

/* TXT records, each record's strings joined (at most DNS_MAX_TXT records
 * of DNS_MAX_TXT_LEN bytes each; longer ones are cut); n == 0 with
 * status 0: the name has no TXT record. */
#define DNS_MAX_TXT 16
#define DNS_MAX_TXT_LEN 1024
typedef void dns_txt_fn(void *arg, int status, char *const *txt, size_t n);

/* ROOST_ECONFIG for a bad [dns] servers entry, ROOST_EIO when c-ares fails. */
int dns_create(const struct roost_config *cfg, struct dns **dns_r);
void dns_free(struct dns **dns);

void dns_lookup_mx(struct dns *dns, const char *domain, dns_mx_fn *fn, void *arg);
void dns_lookup_addr(struct dns *dns, const char *host, dns_addr_fn *fn, void *arg);
void dns_lookup_txt(struct dns *dns, const char *name, dns_txt_fn *fn, void *arg);

/* Fill up to max pollfds with the resolver's sockets; returns how many. */
size_t dns_pollfds(struct dns *dns, struct pollfd *pfd, size_t max);
/* After poll(): handle the ready sockets among pfd[0..n) and timeouts. */
void dns_process(struct dns *dns, const struct pollfd *pfd, size_t n);
/* Milliseconds until the resolver needs dns_process() for a timeout,
 * at most max_ms. */
int dns_timeout_ms(struct dns *dns, int max_ms);

#endif
