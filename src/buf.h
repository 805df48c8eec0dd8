/*-------------------------------------------------------------------------
 * buf.h
 *	  A growable byte buffer: send/receive buffers and encoded records.
 *-------------------------------------------------------------------------
 */
#ifndef ZB_BUF_H
#define ZB_BUF_H

/*
 * data[off..len) holds unconsumed bytes.  libcurl callbacks fill buffers with
 * no_oom set, so that a failed allocation returns false instead of throwing
 * through libcurl.
 */
typedef struct ZbBuf
{
	uint8	   *data;
	size_t		off;			/* first unconsumed byte */
	size_t		len;			/* bytes filled */
	size_t		cap;
} ZbBuf;

extern bool zb_buf_reserve(MemoryContext cxt, ZbBuf *b, size_t extra, bool no_oom);

/* Room for n more bytes at b->data + b->len (may move b->data). */
static inline uint8 *
zb_buf_ensure(MemoryContext cxt, ZbBuf *b, size_t n)
{
	if (b->len + n > b->cap)
		(void) zb_buf_reserve(cxt, b, n, false);
	return b->data + b->len;
}

#endif							/* ZB_BUF_H */
