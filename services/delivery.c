/*
 * Local delivery shared by SMTP, LMTP, DSNs and `roost deliver` (see
 * include/roost/delivery.h).
 */
#include <ctype.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "roost/aliases.h"
#include "roost/auth.h"
#include "roost/config.h"
#include "roost/delivery.h"
#include "roost/error.h"
#include "roost/log.h"
#include "roost/metrics.h"
#include "roost/services.h"
#include "roost/storage.h"
#include "roost/vacation.h"
#include "roost/xalloc.h"

bool
delivery_domain_is_local(const struct roost_config *cfg, const char *domain)
{
	if (cfg->smtp_domains == NULL)
		return false;
	for (char **d = cfg->smtp_domains; *d != NULL; d++) {
		if (strcasecmp(*d, domain) == 0)
			return true;
	}
	return false;
}

/* Look up local@domain; for a local domain also the bare local part, for
 * users named without a domain ("alice"). */
static int
lookup_user(const struct roost_services *sv, const char *local, size_t local_len,
            const char *domain, bool is_local, char *name_r, size_t namelen)
{
	char tmp[DELIVERY_MAX_USER];
	int n = snprintf(tmp, sizeof(tmp), "%.*s@%s", (int)local_len, local, domain);

	/* A user stored as alice@example.org is ours only while example.org
	 * is a local domain ([smtp] domains). */
	if (is_local && n > 0 && (size_t)n < sizeof(tmp) &&
	    auth_lookup(sv->auth, tmp, name_r, namelen) == 0)
		return 0;
	if (is_local && local_len < sizeof(tmp)) {
		memcpy(tmp, local, local_len);
		tmp[local_len] = '\0';
		if (auth_lookup(sv->auth, tmp, name_r, namelen) == 0)
			return 0;
	}
	return ROOST_ENOTFOUND;
}

int
delivery_resolve(const struct roost_services *sv, const char *address, struct delivery_rcpt *r)
{
	const struct roost_config *cfg = sv->cfg;
	const char *at = strrchr(address, '@'), *domain, *delim = cfg->recipient_delimiter;
	size_t local_len, cut;
	bool is_local;

	strcpy(r->mailbox, "INBOX");
	r->user[0] = '\0';
	if (strlen(address) >= DELIVERY_MAX_USER)
		return ROOST_EINVAL;
	/* SMTP's path parser lets no control byte through, but `roost deliver`
	 * takes the address as given, and it ends up in the Received header. */
	for (const unsigned char *p = (const unsigned char *)address; *p != '\0'; p++) {
		if (*p < 0x20 || *p == 0x7f)
			return ROOST_EINVAL;
	}
	if (at == NULL) {
		/* A bare name (RCPT TO:<postmaster>, roost deliver -a alice):
		 * a user of that name, or the name at the first local domain. */
		if (auth_lookup(sv->auth, address, r->user, sizeof(r->user)) == 0)
			return 0;
		if (cfg->smtp_domains == NULL || cfg->smtp_domains[0] == NULL)
			return ROOST_ENOTFOUND;
		domain = cfg->smtp_domains[0];
		local_len = strlen(address);
		is_local = true;
	} else {
		domain = at + 1;
		local_len = (size_t)(at - address);
		is_local = delivery_domain_is_local(cfg, domain);
	}
	if (lookup_user(sv, address, local_len, domain, is_local, r->user, sizeof(r->user)) == 0)
		return 0;
	if (delim != NULL && *delim != '\0') {
		cut = strcspn(address, delim);
		if (cut > 0 && cut < local_len &&
		    lookup_user(sv, address, cut, domain, is_local, r->user, sizeof(r->user)) ==
		        0) {
			const char *detail = address + cut + 1;
			size_t detail_len = local_len - cut - 1;
			char folder[DELIVERY_MAX_FOLDER];
			struct mailbox_status st;

			if (detail_len > 0 && detail_len < sizeof(folder)) {
				memcpy(folder, detail, detail_len);
				folder[detail_len] = '\0';
				if (storage_name_valid(folder) &&
				    storage_status(sv->storage, r->user, folder, &st) == 0)
					strcpy(r->mailbox, folder);
			}
			return 0;
		}
	}
	r->user[0] = '\0';
	return is_local ? ROOST_ENOTFOUND : ROOST_EPERM;
}

struct expand_ctx {
	const struct roost_services *sv;
	struct delivery_dest *v;
	size_t n, cap;
	const char *stack[ALIASES_MAX_DEPTH + 1];
	unsigned depth;
	bool full;
};

static void
add_dest(struct expand_ctx *x, bool remote, const char *addr, const struct delivery_rcpt *d)
{
	for (size_t i = 0; i < x->n; i++) {
		if (remote ? x->v[i].remote && strcasecmp(x->v[i].addr, addr) == 0
		           : !x->v[i].remote && strcmp(x->v[i].d.user, d->user) == 0 &&
		                 strcmp(x->v[i].d.mailbox, d->mailbox) == 0)
			return;
	}
	if (x->n == DELIVERY_MAX_DESTS) {
		x->full = true;
		return;
	}
	if (x->n == x->cap) {
		x->cap = x->cap == 0 ? 4 : x->cap * 2;
		x->v = xreallocarray(x->v, x->cap, sizeof(*x->v));
	}
	memset(&x->v[x->n], 0, sizeof(x->v[x->n]));
	x->v[x->n].remote = remote;
	snprintf(x->v[x->n].addr, sizeof(x->v[x->n].addr), "%s", addr);
	if (d != NULL)
		x->v[x->n].d = *d;
	x->n++;
}

/* Is address postmaster at a local domain (or bare), in any case? */
static bool
is_postmaster(const struct roost_config *cfg, const char *address)
{
	const char *at = strrchr(address, '@');
	size_t len = at != NULL ? (size_t)(at - address) : strlen(address);

	return len == 10 && strncasecmp(address, "postmaster", 10) == 0 &&
	       (at != NULL ? delivery_domain_is_local(cfg, at + 1)
	                   : cfg->smtp_domains != NULL && cfg->smtp_domains[0] != NULL);
}

/* The alias for address, also for its base when it has a detail
 * ("team+x@" uses "team"'s when there is no "team+x"). */
static char **
alias_for(const struct roost_services *sv, const char *address, size_t *n_r)
{
	const char *delim = sv->cfg->recipient_delimiter, *at = strrchr(address, '@');
	char **t = aliases_lookup(sv->aliases, sv->cfg, address, n_r);
	char base[DELIVERY_MAX_USER];
	size_t local_len = at != NULL ? (size_t)(at - address) : strlen(address), cut;

	if (t != NULL || delim == NULL || delim[0] == '\0')
		return t;
	cut = strcspn(address, delim);
	if (cut == 0 || cut >= local_len)
		return NULL;
	snprintf(base, sizeof(base), "%.*s%s", (int)cut, address, at != NULL ? at : "");
	return aliases_lookup(sv->aliases, sv->cfg, base, n_r);
}

/* An alias's target "#public+<name>": the mailbox <name> of the shared
 * namespace (Shared/<name>, roost/storage.h). Only an alias, which the
 * administrator's file defines, can name it: a recipient address never
 * does (auth knows no user "#public"). Whether mail may go there is the
 * mailbox's ACL's business (p for anyone), checked at delivery. The '+'
 * is any character of [smtp] recipient_delimiter, as in user+folder;
 * '+' itself is always taken (a target written before the delimiter was
 * changed keeps working, and nothing else can name the store). */
static bool
public_target(const struct roost_config *cfg, const char *address, struct delivery_rcpt *d)
{
	size_t pl = strlen(STORAGE_ACL_PUBLIC_OWNER);
	const char *name = address + pl + 1, *delim = cfg->recipient_delimiter;
	char c;

	if (strncmp(address, STORAGE_ACL_PUBLIC_OWNER, pl) != 0)
		return false;
	c = address[pl];
	if (c == '\0' || (c != '+' && (delim == NULL || strchr(delim, c) == NULL)))
		return false;
	memset(d, 0, sizeof(*d));
	if (strlen(name) >= sizeof(d->mailbox) || !storage_name_valid(name) ||
	    strncasecmp(name, "INBOX", 5) == 0)
		return false;
	snprintf(d->user, sizeof(d->user), "%s", STORAGE_ACL_PUBLIC_OWNER);
	snprintf(d->mailbox, sizeof(d->mailbox), "%s", name);
	return true;
}

static int
expand_one(struct expand_ctx *x, const char *address)
{
	const struct roost_services *sv = x->sv;
	struct delivery_rcpt d;
	char **t = NULL;
	size_t n = 0;
	bool on_stack = false;
	int err;

	for (unsigned i = 0; i < x->depth; i++)
		on_stack |= strcasecmp(x->stack[i], address) == 0;
	/* An alias that names itself means the user ("alice: alice, bob"). */
	if (!on_stack)
		t = alias_for(sv, address, &n);
	if (t != NULL) {
		bool any = false;

		if (x->depth == ALIASES_MAX_DEPTH) {
			log_warn("event=alias_error alias=%s error=\"nested deeper than %d\"",
			         LOG_QUOTE(address), ALIASES_MAX_DEPTH);
			free(t);
			return ROOST_ENOTFOUND;
		}
		x->stack[x->depth++] = address;
		for (size_t i = 0; i < n; i++) {
			err = expand_one(x, t[i]);
			if (err == 0)
				any = true;
			else
				log_warn("event=alias_error alias=%s target=%s error=\"%s\"",
				         LOG_QUOTE(address), LOG_QUOTE(t[i]),
				         err == ROOST_ENOTFOUND ? "no such user"
				                                : roost_strerror(err));
		}
		x->depth--;
		free(t);
		return any ? 0 : ROOST_ENOTFOUND;
	}
	if (x->depth > 0 && public_target(sv->cfg, address, &d)) {
		add_dest(x, false, address, &d);
		return 0;
	}
	err = delivery_resolve(sv, address, &d);
	if (err == 0) {
		add_dest(x, false, address, &d);
	} else if (err == ROOST_EPERM && x->depth > 0) {
		add_dest(x, true, address, NULL);
		err = 0;
	} else if (err == ROOST_ENOTFOUND && is_postmaster(sv->cfg, address)) {
		/* RFC 5321 4.5.1: postmaster is always accepted. */
		const char *at = strrchr(address, '@');
		const char *dom = at != NULL ? at + 1 : sv->cfg->smtp_domains[0];

		/* Kept for the user this address would be: adding it later
		 * (roost user add --keep-mail) gives the mail a reader. */
		memset(&d, 0, sizeof(d));
		snprintf(d.user, sizeof(d.user), "postmaster@%s", dom);
		for (char *p = d.user; *p != '\0'; p++)
			*p = (char)tolower((unsigned char)*p);
		strcpy(d.mailbox, "INBOX");
		add_dest(x, false, address, &d);
		err = 0;
	}
	return err;
}

int
delivery_expand(const struct roost_services *sv, const char *address,
                struct delivery_dest **dests_r, size_t *n_r)
{
	struct expand_ctx x = {.sv = sv};
	int err = expand_one(&x, address);

	if (err == 0 && x.n == 0)
		err = ROOST_ENOTFOUND;
	if (err == 0 && x.full)
		log_warn("event=alias_error address=%s error=\"more than %d destinations; the rest "
		         "dropped\"",
		         LOG_QUOTE(address), DELIVERY_MAX_DESTS);
	if (err != 0) {
		free(x.v);
		*dests_r = NULL;
		*n_r = 0;
		return err;
	}
	*dests_r = x.v;
	*n_r = x.n;
	return 0;
}

void
delivery_new_id(char id[DELIVERY_ID_LEN])
{
	static atomic_uint counter;
	unsigned n = atomic_fetch_add(&counter, 1);

	snprintf(id, DELIVERY_ID_LEN, "%08llX%06X%X",
	         (unsigned long long)time(NULL) & 0xffffffffULL, n & 0xffffffu,
	         (unsigned)getpid() & 0xfffffu);
}

/* Copy client text into a header, keeping only what cannot break it. */
static void
append_clean(struct buf *out, const char *s, size_t max, const char *allowed_punct)
{
	size_t n = 0;

	for (const unsigned char *p = (const unsigned char *)s; *p != '\0' && n < max; p++, n++) {
		unsigned char c = *p;

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    (c != '\0' && strchr(allowed_punct, c) != NULL))
			buf_append_byte(out, c);
		else
			buf_append_byte(out, '_');
	}
}

int
delivery_trace_headers(const struct roost_config *cfg, const struct delivery_trace *t,
                       struct buf *out)
{
	char date[64];
	time_t now = t->time != 0 ? (time_t)t->time : time(NULL);
	struct tm tm;
	size_t start = out->len;

	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);

	/* The sender went through the path parser: no controls, <= 256. */
	buf_printf(out, "Return-Path: <%s>\r\n", t->sender != NULL ? t->sender : "");
	buf_append_str(out, "Received: ");
	if (t->helo != NULL) {
		buf_append_str(out, "from ");
		append_clean(out, t->helo, 100, ".-_:[]");
		buf_printf(out, " ([%s])\r\n\t", t->peer != NULL ? t->peer : "unknown");
	}
	buf_printf(out, "by %s (Roost) with %s",
	           cfg->hostname != NULL ? cfg->hostname : "localhost", t->protocol);
	if (t->tls_info != NULL && t->tls_info[0] != '\0') {
		const char *sp = strchr(t->tls_info, ' ');

		if (sp != NULL)
			buf_printf(out, "\r\n\t(version=%.*s cipher=%s)", (int)(sp - t->tls_info),
			           t->tls_info, sp + 1);
		else
			buf_printf(out, "\r\n\t(version=%s)", t->tls_info);
	}
	buf_printf(out, "\r\n\tid %s", t->id);
	if (t->for_rcpt != NULL)
		buf_printf(out, "\r\n\tfor <%s>", t->for_rcpt);
	buf_printf(out, "; %s\r\n", date);
	if (t->dsn != NULL && t->dsn[0] != '\0') {
		buf_append_str(out, "X-Roost-DSN: ");
		append_clean(out, t->dsn, 900, ";=+-_.@,/ ");
		buf_append_str(out, "\r\n");
	}
	/* buf appends fail only at the maximum; tell the caller once. */
	if (out->max != 0 && out->len + 2 >= out->max) {
		buf_truncate(out, start);
		return ROOST_ETOOBIG;
	}
	return 0;
}

int
delivery_store(const struct roost_services *sv, const char *sender, const struct msg_input *in,
               struct delivery_target *targets, size_t n, bool all_or_nothing)
{
	unsigned flags = STORAGE_DELIVER_INBOX_FALLBACK;
	int err;

	if (n == 0)
		return 0;
	if (all_or_nothing)
		flags |= STORAGE_DELIVER_ATOMIC;
	err = storage_deliver(sv->storage, in, targets, n, flags);
	for (size_t i = 0; i < n; i++) {
		if (targets[i].result == 0)
			metrics_deliveries(1);
	}
	/* Once per user, after the copies are on stable storage. */
	for (size_t i = 0; i < n && sender != NULL && sender[0] != '\0'; i++) {
		bool again = false;

		for (size_t k = 0; k < i && !again; k++)
			again = strcmp(targets[k].user, targets[i].user) == 0;
		if (targets[i].result == 0 && !again)
			vacation_on_delivery(sv, sender, in, targets[i].user);
	}
	return err;
}
