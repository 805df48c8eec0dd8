/*-------------------------------------------------------------------------
 * buf.c
 *	  A growable byte buffer (see buf.h).
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/memutils.h"

#include "buf.h"

/*
 * Make room for 'extra' more bytes after b->len, compacting consumed bytes
 * away first.  With no_oom, returns false rather than raising an ERROR.
 */
bool
zb_buf_reserve(MemoryContext cxt, ZbBuf *b, size_t extra, bool no_oom)
{
	size_t		need;
	size_t		newcap;
	uint8	   *nd;

	if (b->off > 0 && (b->off == b->len || b->off > b->cap / 2))
	{
		memmove(b->data, b->data + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
	}
	need = b->len + extra;
	if (need <= b->cap)
		return true;
	newcap = Max(b->cap * 2, 16 * 1024);
	while (newcap < need)
		newcap *= 2;
	nd = MemoryContextAllocExtended(cxt, newcap,
									MCXT_ALLOC_HUGE | (no_oom ? MCXT_ALLOC_NO_OOM : 0));
	if (nd == NULL)
		return false;
	if (b->data)
	{
		memcpy(nd, b->data, b->len);
		pfree(b->data);
	}
	b->data = nd;
	b->cap = newcap;
	return true;
}

