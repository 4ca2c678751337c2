/* Where one response ends: SMTP's last "NNN " line, POP3's status line or
 * "." ending, IMAP's tagged line past any literals. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loadgen.h"

/* Returns the length of one complete response at the start of c->in, or 0. */
static size_t
smtp_response_len(struct lg_conn *c)
{
	size_t i = 0;

	while (i < c->in_len) {
		char *nl = memchr(c->in + i, '\n', c->in_len - i);

		if (nl == NULL)
			return 0;
		if ((size_t)(nl - (c->in + i)) >= 4 && c->in[i + 3] == ' ')
			return (size_t)(nl - c->in) + 1;
		if ((size_t)(nl - (c->in + i)) < 4)
			return (size_t)(nl - c->in) + 1; /* malformed: stop here */
		i = (size_t)(nl - c->in) + 1;
	}
	return 0;
}

/* multiline: the outstanding command's reply is a list ending with ".". */
static size_t
pop3_response_len(struct lg_conn *c, bool multiline)
{
	char *nl = memchr(c->in, '\n', c->in_len);

	if (nl == NULL)
		return 0;
	if (!multiline || c->in[0] != '+')
		return (size_t)(nl - c->in) + 1;
	/* multi-line: ends with CRLF . CRLF */
	for (size_t i = c->scan > 4 ? c->scan - 4 : 0; i + 5 <= c->in_len; i++) {
		if (memcmp(c->in + i, "\r\n.\r\n", 5) == 0)
			return i + 5;
	}
	c->scan = c->in_len;
	return 0;
}

/*
 * IMAP: untagged data and literals until "<tag> OK|NO|BAD". Untagged EXISTS
 * and APPENDUID/UID values are noted for the scenario. Returns the length
 * up to and including the tagged line, or 0.
 */
static size_t
imap_response_len(struct lg_conn *c, bool until_untagged_exists)
{
	char tagbuf[24];
	size_t i = c->scan;

	snprintf(tagbuf, sizeof(tagbuf), "a%d ", c->tag);
	while (i < c->in_len) {
		char *nl;
		size_t line_len;
		const char *line = c->in + i;

		if (c->lit_left > 0) {
			size_t take = c->in_len - i < c->lit_left ? c->in_len - i : c->lit_left;

			c->lit_left -= take;
			i += take;
			continue;
		}
		nl = memchr(c->in + i, '\n', c->in_len - i);
		if (nl == NULL)
			break;
		line_len = (size_t)(nl - line) + 1;
		if (line_len >= 3 && line[line_len - 2] == '\r' && line[line_len - 3] == '}') {
			const char *brace = line + line_len - 3;

			while (brace > line && *brace != '{')
				brace--;
			c->lit_left = strtoul(brace + 1, NULL, 10);
		}
		if (line[0] == '*') {
			unsigned n;
			char word[16];

			if (sscanf(line, "* %u %15s", &n, word) == 2 &&
			    strcmp(word, "EXISTS") == 0) {
				c->exists = n;
				if (until_untagged_exists) {
					c->scan = 0;
					return (size_t)(nl - c->in) + 1;
				}
			}
		} else if (strncmp(line, tagbuf, strlen(tagbuf)) == 0) {
			const char *p;

			c->resp_ok = strncmp(line + strlen(tagbuf), "OK", 2) == 0;
			if ((p = strstr(line, "[APPENDUID ")) != NULL &&
			    (size_t)(p - line) < line_len) {
				unsigned v, u;

				if (sscanf(p, "[APPENDUID %u %u]", &v, &u) == 2)
					c->last_uid = u;
			}
			c->scan = 0;
			return (size_t)(nl - c->in) + 1;
		} else if (line[0] == '+' && c->cmd != NULL && strcmp(c->cmd, "idle") == 0) {
			c->scan = 0;
			return (size_t)(nl - c->in) + 1;
		}
		i += line_len;
	}
	c->scan = i;
	return 0;
}

size_t
lg_response_len(struct lg_conn *c)
{
	switch (c->proto) {
	case P_SMTP:
		return smtp_response_len(c);
	case P_POP3:
		/* LIST/RETR are multi-line; the flag is per outstanding command. */
		return pop3_response_len(c, c->cmd != NULL && (strcmp(c->cmd, "list") == 0 ||
		                                               strcmp(c->cmd, "retr") == 0));
	case P_IMAP:
		if (c->cmd != NULL && strcmp(c->cmd, "greeting") == 0) {
			char *nl = memchr(c->in, '\n', c->in_len);

			return nl == NULL ? 0 : (size_t)(nl - c->in) + 1;
		}
		return imap_response_len(c, c->cmd != NULL && strcmp(c->cmd, "idle-wait") == 0);
	}
	return 0;
}

bool
lg_response_ok(struct lg_conn *c)
{
	switch (c->proto) {
	case P_SMTP:
		return c->in[0] == '2' || c->in[0] == '3';
	case P_POP3:
		return c->in[0] == '+';
	case P_IMAP:
		return c->resp_ok;
	}
	return false;
}
