#ifndef ROOST_MTA_STS_H
#define ROOST_MTA_STS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * MTA-STS (RFC 8461) policies: the TXT record and the policy file parsed,
 * MX names matched against the policy's patterns (services/mta_sts.c).
 * Pure functions over caller's bytes: thread-safe, no I/O. How the
 * delivery engine discovers, fetches and caches them is outbound_sts.c's.
 */

enum mta_sts_mode {
	MTA_STS_NONE,    /* the domain withdrew its policy */
	MTA_STS_TESTING, /* report problems, deliver anyway */
	MTA_STS_ENFORCE, /* only to matching MX hosts over verified TLS */
};

#define MTA_STS_MAX_MX 64        /* mx lines kept of one policy */
#define MTA_STS_MAX_AGE 31557600 /* RFC 8461 3.2: at most a year */
#define MTA_STS_MAX_POLICY 65536 /* bytes of a policy file read */
#define MTA_STS_ID_LEN 33        /* 1*32 alphanumerics, NUL */

struct mta_sts_policy {
	enum mta_sts_mode mode;
	unsigned max_age; /* seconds */
	size_t n_mx;
	char mx[MTA_STS_MAX_MX][256]; /* "mail.example.org" or "*.example.org" */
};

/*
 * One TXT record's text ("v=STSv1; id=20160831085700Z;"): 0 and the id
 * into id_r when it is an STSv1 record with a valid id, ROOST_EINVAL
 * otherwise (another record, a bad id, no id).
 */
int mta_sts_parse_txt(const char *txt, size_t len, char id_r[MTA_STS_ID_LEN]);

/*
 * A policy file (RFC 8461 3.2): "version: STSv1", "mode:", "max_age:" and
 * "mx:" lines, CRLF or LF. Unknown keys are ignored; a missing or bad
 * version, mode or max_age, or enforce/testing without any mx, is
 * ROOST_EINVAL. max_age is capped at MTA_STS_MAX_AGE, mx lines past
 * MTA_STS_MAX_MX are dropped. 0 with *p filled.
 */
int mta_sts_parse_policy(const char *text, size_t len, struct mta_sts_policy *p);

/* Does host (an MX name, a trailing dot allowed) match a pattern of p?
 * "*.example.org" covers exactly one label more (RFC 8461 4.1). */
bool mta_sts_mx_match(const struct mta_sts_policy *p, const char *host);

const char *mta_sts_mode_name(enum mta_sts_mode mode);

#endif
