/*
 * Relay and sender policy: trusted networks, the authenticated user's own
 * addresses, and the From: field of submitted mail. See roost/relay.h.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "roost/aliases.h"
#include "roost/config.h"
#include "roost/delivery.h"
#include "roost/error.h"
#include "roost/relay.h"

const char *
relay_domain(const char *address)
{
	const char *at = strrchr(address, '@');

	return at != NULL ? at + 1 : "";
}

/* Parse "addr[/len]" into bytes and a prefix length; family 4 or 6. */
static bool
parse_cidr(const char *cidr, uint8_t bytes[16], int *family_r, unsigned *bits_r)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(cidr, '/');
	size_t n = slash != NULL ? (size_t)(slash - cidr) : strlen(cidr);
	unsigned max, bits;
	char *end;

	if (n == 0 || n >= sizeof(host))
		return false;
	memcpy(host, cidr, n);
	host[n] = '\0';
	if (inet_pton(AF_INET, host, bytes) == 1) {
		*family_r = 4;
		max = 32;
	} else if (inet_pton(AF_INET6, host, bytes) == 1) {
		*family_r = 6;
		max = 128;
	} else {
		return false;
	}
	bits = max;
	if (slash != NULL) {
		unsigned long v;

		if (slash[1] < '0' || slash[1] > '9')
			return false;
		v = strtoul(slash + 1, &end, 10);
		if (*end != '\0' || v > max)
			return false;
		bits = (unsigned)v;
	}
	*bits_r = bits;
	return true;
}

static bool
parse_peer(const char *peer, uint8_t bytes[16], int *family_r)
{
	if (inet_pton(AF_INET, peer, bytes) == 1) {
		*family_r = 4;
		return true;
	}
	if (inet_pton(AF_INET6, peer, bytes) == 1) {
		static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

		/* ::ffff:a.b.c.d is the IPv4 peer of a dual-stack socket. */
		if (memcmp(bytes, mapped, 12) == 0) {
			memmove(bytes, bytes + 12, 4);
			*family_r = 4;
		} else {
			*family_r = 6;
		}
		return true;
	}
	return false;
}

bool
relay_cidr_match(const char *cidr, const char *peer)
{
	uint8_t net[16], addr[16];
	int nf, pf;
	unsigned bits;

	if (!parse_cidr(cidr, net, &nf, &bits) || !parse_peer(peer, addr, &pf) || nf != pf)
		return false;
	for (unsigned i = 0; i < bits / 8; i++) {
		if (net[i] != addr[i])
			return false;
	}
	if (bits % 8 != 0) {
		uint8_t mask = (uint8_t)(0xff << (8 - bits % 8));

		if ((net[bits / 8] & mask) != (addr[bits / 8] & mask))
			return false;
	}
	return true;
}

int
relay_check_config(const struct roost_config *cfg, const char **bad_r)
{
	uint8_t b[16];
	int f;
	unsigned bits;

	for (char **p = cfg->smtp_trusted_networks; p != NULL && *p != NULL; p++) {
		if (!parse_cidr(*p, b, &f, &bits)) {
			*bad_r = *p;
			return ROOST_ECONFIG;
		}
	}
	return 0;
}

bool
relay_peer_trusted(const struct roost_config *cfg, const char *peer)
{
	if (strcmp(peer, "unix") == 0)
		return true;
	for (char **p = cfg->smtp_trusted_networks; p != NULL && *p != NULL; p++) {
		if (relay_cidr_match(*p, peer))
			return true;
	}
	return false;
}

static bool
own_address(const struct roost_config *cfg, const char *user, const char *address)
{
	const char *at = strrchr(address, '@'), *uat = strchr(user, '@');
	const char *delim = cfg->recipient_delimiter;
	size_t local_len, ulocal_len;

	if (at == NULL)
		return false;
	local_len = (size_t)(at - address);
	ulocal_len = uat != NULL ? (size_t)(uat - user) : strlen(user);
	if (uat != NULL) {
		if (strcasecmp(at + 1, uat + 1) != 0)
			return false;
	} else if (!delivery_domain_is_local(cfg, at + 1)) {
		return false;
	}
	if (local_len == ulocal_len && strncasecmp(address, user, local_len) == 0)
		return true;
	/* alice+tag@ is alice's too. */
	return delim != NULL && delim[0] != '\0' && local_len > ulocal_len &&
	       strncasecmp(address, user, ulocal_len) == 0 && address[ulocal_len] == delim[0];
}

bool
relay_sender_allowed(const struct roost_config *cfg, const struct aliases *al, const char *user,
                     const char *address)
{
	return own_address(cfg, user, address) || aliases_sender_allowed(al, cfg, user, address);
}

/* ---- From: ---- */

/* The unfolded value of every From: field, appended to out (NUL-separated);
 * returns how many there were. */
static unsigned
from_fields(const uint8_t *hdr, size_t len, char *out, size_t outlen)
{
	size_t i = 0, o = 0;
	unsigned n = 0;

	while (i < len) {
		size_t start = i, end;
		bool is_from;

		if (hdr[i] == '\r' || hdr[i] == '\n')
			break; /* the blank line ends the header */
		/* The field runs to a line end not followed by white space. */
		end = i;
		while (end < len) {
			if (hdr[end] == '\n' &&
			    (end + 1 >= len || (hdr[end + 1] != ' ' && hdr[end + 1] != '\t')))
				break;
			end++;
		}
		is_from =
		    end - start >= 5 && strncasecmp((const char *)hdr + start, "from:", 5) == 0;
		if (is_from) {
			n++;
			for (size_t k = start + 5; k < end && o + 2 < outlen; k++) {
				if (hdr[k] != '\r' && hdr[k] != '\n')
					out[o++] = (char)hdr[k];
			}
			if (o < outlen)
				out[o++] = '\0';
		}
		i = end + 1;
	}
	if (o < outlen)
		out[o] = '\0';
	return n;
}

/* Copy the addr-spec of one mailbox (text between separators) into addr. */
static void
mailbox_addr(const char *s, size_t len, char *addr, size_t addrlen)
{
	const char *lt = memchr(s, '<', len);
	size_t o = 0;
	int depth = 0;
	bool quoted = false;

	if (lt != NULL) {
		const char *gt = memchr(lt, '>', len - (size_t)(lt - s));

		s = lt + 1;
		len = gt != NULL ? (size_t)(gt - s) : len - (size_t)(lt - s) - 1;
	}
	for (size_t i = 0; i < len && o + 1 < addrlen; i++) {
		char c = s[i];

		if (!quoted && c == '(') {
			depth++;
			continue;
		}
		if (!quoted && c == ')' && depth > 0) {
			depth--;
			continue;
		}
		if (depth > 0)
			continue;
		if (c == '"')
			quoted = !quoted;
		if (!quoted && (c == ' ' || c == '\t'))
			continue;
		addr[o++] = c;
	}
	addr[o] = '\0';
}

/* Call fn for each address of the one From: field; false when there is
 * not exactly one From: field. fn returns false to stop. */
static bool
each_from_address(const uint8_t *hdr, size_t len, bool (*fn)(const char *addr, void *arg),
                  void *arg)
{
	char fields[4096], addr[512];
	const char *v = fields;

	if (from_fields(hdr, len, fields, sizeof(fields)) != 1)
		return false;
	/* Split at commas outside quotes, comments and angle brackets. */
	for (const char *p = v;; p++) {
		bool end = *p == '\0';
		int d = 0;
		bool q = false, a = false;

		if (!end && *p != ',')
			continue;
		for (const char *k = v; k < p; k++) {
			if (*k == '"' && d == 0)
				q = !q;
			else if (!q && *k == '(')
				d++;
			else if (!q && *k == ')' && d > 0)
				d--;
			else if (!q && d == 0 && *k == '<')
				a = true;
			else if (!q && d == 0 && *k == '>')
				a = false;
		}
		if (!end && (q || d > 0 || a))
			continue; /* the comma is inside something */
		mailbox_addr(v, (size_t)(p - v), addr, sizeof(addr));
		if (addr[0] != '\0' && !fn(addr, arg))
			return true;
		if (end)
			return true;
		v = p + 1;
	}
}

struct from_check {
	const struct roost_config *cfg;
	const struct aliases *al;
	const char *user;
	char *bad;
	size_t badlen;
	bool any, ok;
};

static bool
check_one(const char *addr, void *arg)
{
	struct from_check *fc = arg;

	fc->any = true;
	if (relay_sender_allowed(fc->cfg, fc->al, fc->user, addr))
		return true;
	snprintf(fc->bad, fc->badlen, "%s", addr);
	fc->ok = false;
	return false;
}

int
relay_from_header_check(const struct roost_config *cfg, const struct aliases *al, const char *user,
                        const uint8_t *hdr, size_t len, char *bad, size_t badlen)
{
	struct from_check fc = {cfg, al, user, bad, badlen, false, true};

	snprintf(bad, badlen, "%s", "");
	if (!each_from_address(hdr, len, check_one, &fc))
		return ROOST_EPERM;
	return fc.any && fc.ok ? 0 : ROOST_EPERM;
}

struct first_addr {
	char *out;
	size_t len;
};

static bool
take_first(const char *addr, void *arg)
{
	struct first_addr *fa = arg;

	snprintf(fa->out, fa->len, "%s", addr);
	return false;
}

int
relay_from_address(const uint8_t *hdr, size_t len, char *addr, size_t addrlen)
{
	struct first_addr fa = {addr, addrlen};

	addr[0] = '\0';
	each_from_address(hdr, len, take_first, &fa);
	return addr[0] != '\0' ? 0 : ROOST_ENOTFOUND;
}
