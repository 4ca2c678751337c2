#ifndef ROOST_BUF_H
#define ROOST_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/*
 * A growable byte buffer with a hard maximum (STYLE.md 9). Appends that
 * would pass the maximum fail with ROOST_ETOOBIG and leave the buffer as it
 * was. data is always NUL-terminated past len (the NUL is not counted), so a
 * buffer of text can be handed to string functions.
 *
 * Not thread-safe: a buffer belongs to whoever owns the structure holding it.
 */
struct buf {
	uint8_t *data;
	size_t len;
	size_t cap;
	size_t max; /* 0 = SIZE_MAX */
};

#define BUF_INIT(max_)                                                                             \
	{                                                                                          \
		NULL, 0, 0, (max_)                                                                 \
	}

void buf_init(struct buf *b, size_t max);
/* Release the memory; the buffer may be reused after buf_init(). */
void buf_free(struct buf *b);
/* Forget the contents, keep the memory. */
void buf_reset(struct buf *b);
/* Make room for n more bytes; ROOST_ETOOBIG past the maximum. */
int buf_reserve(struct buf *b, size_t n);
int buf_append(struct buf *b, const void *p, size_t n);
int buf_append_str(struct buf *b, const char *s);
int buf_append_byte(struct buf *b, uint8_t c);
/* Append v in decimal, without printf (FETCH and THREAD write many numbers). */
int buf_append_uint(struct buf *b, uint64_t v);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Drop the first n bytes (n <= len). */
void buf_consume(struct buf *b, size_t n);
/* Shorten to len bytes (len <= b->len). */
void buf_truncate(struct buf *b, size_t len);
/* Text view: never NULL, "" for an empty buffer. */
const char *buf_cstr(const struct buf *b);
/* Take the memory out of the buffer (caller frees); the buffer is left empty. */
uint8_t *buf_steal(struct buf *b, size_t *len_r);

#endif
