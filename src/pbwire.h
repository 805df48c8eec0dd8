/*-------------------------------------------------------------------------
 * pbwire.h
 *	  Protocol-buffer wire primitives for records encoded from tuples.
 *
 * protobuf-c packs only messages whose C structs were generated at build
 * time; a queue table's record type is known only at run time, so records
 * are written field by field with these primitives (varints, fixed32/64,
 * length-delimited), following the encoding rules of protobuf's spec.
 *-------------------------------------------------------------------------
 */
#ifndef ZB_PBWIRE_H
#define ZB_PBWIRE_H

#define PB_WT_VARINT 0
#define PB_WT_FIXED64 1
#define PB_WT_LEN 2
#define PB_WT_FIXED32 5

#define PB_MAX_VARINT 10

static inline size_t
pb_varint_size(uint64 v)
{
	size_t		n = 1;

	while (v >= 0x80)
	{
		v >>= 7;
		n++;
	}
	return n;
}

static inline uint8 *
pb_put_varint(uint8 *p, uint64 v)
{
	while (v >= 0x80)
	{
		*p++ = (uint8) (v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8) v;
	return p;
}

static inline uint8 *
pb_put_tag(uint8 *p, uint32 field, int wiretype)
{
	return pb_put_varint(p, ((uint64) field << 3) | (uint64) wiretype);
}

static inline uint8 *
pb_put_fixed32(uint8 *p, uint32 v)
{
	p[0] = (uint8) v;
	p[1] = (uint8) (v >> 8);
	p[2] = (uint8) (v >> 16);
	p[3] = (uint8) (v >> 24);
	return p + 4;
}

static inline uint8 *
pb_put_fixed64(uint8 *p, uint64 v)
{
	p = pb_put_fixed32(p, (uint32) v);
	return pb_put_fixed32(p, (uint32) (v >> 32));
}

static inline uint8 *
pb_put_bytes(uint8 *p, uint32 field, const void *data, size_t len)
{
	p = pb_put_tag(p, field, PB_WT_LEN);
	p = pb_put_varint(p, len);
	memcpy(p, data, len);
	return p + len;
}

#endif							/* ZB_PBWIRE_H */
