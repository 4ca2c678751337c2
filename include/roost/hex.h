#ifndef ROOST_HEX_H
#define ROOST_HEX_H

#include <stddef.h>
#include <stdint.h>

#include "roost/buf.h"

/*
 * Hexadecimal digits, as quoted-printable, the queue's field encoding,
 * Maildir++ names and password hashes spell bytes. Either case is read;
 * lower case is written. Pure functions, thread-safe.
 */

/* The value of the hex digit c (0 to 15), or -1 when c is not one. */
int hex_digit(unsigned char c);

/* The byte that the two digits s[0] s[1] spell (0 to 255), or -1. */
int hex_byte(const char *s);

/*
 * Append the bytes that s[0..len) spells to out: 0; ROOST_EINVAL when len
 * is odd or a character is not a hex digit (out may hold a prefix);
 * ROOST_ETOOBIG past out's maximum.
 */
int hex_decode(const char *s, size_t len, struct buf *out);

/* Spell data[0..len) in lower-case hex into out[0..2 * len], NUL-terminated. */
void hex_encode(const void *data, size_t len, char *out);

#endif
