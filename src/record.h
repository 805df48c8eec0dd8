/*-------------------------------------------------------------------------
 * record.h
 *	  Rows of a queue table as ZeroBus records: the DescriptorProto built
 *	  from the table's columns, and each row encoded as protobuf or JSON.
 *-------------------------------------------------------------------------
 */
#ifndef ZB_RECORD_H
#define ZB_RECORD_H

#include "access/tupdesc.h"
#include "fmgr.h"

#include "buf.h"

typedef enum ZbColKind
{
	ZB_COL_INT32,				/* smallint, integer */
	ZB_COL_INT64,				/* bigint */
	ZB_COL_BOOL,
	ZB_COL_FLOAT4,
	ZB_COL_FLOAT8,
	ZB_COL_TEXT,				/* text, varchar, char, json: bytes as stored */
	ZB_COL_NAME,
	ZB_COL_NUMERIC,				/* decimal text */
	ZB_COL_DATE,				/* int32 days since 1970-01-01 */
	ZB_COL_TIMESTAMP,			/* int64 µs since the Unix epoch */
	ZB_COL_BYTEA,
	ZB_COL_OUTPUT				/* the type's text output (jsonb, uuid) */
} ZbColKind;

typedef struct ZbRecordCol
{
	char	   *name;
	int			index;			/* position in the values/isnull arrays */
	int			field;			/* protobuf field number */
	bool		not_null;
	bool		is_array;
	ZbColKind	kind;
	Oid			typid;			/* base type (element type for arrays) */
	int16		elmlen;			/* arrays: element storage */
	bool		elmbyval;
	char		elmalign;
	FmgrInfo	outfunc;		/* ZB_COL_NUMERIC, ZB_COL_OUTPUT */
} ZbRecordCol;

typedef struct ZbRecordSchema
{
	int			ncols;			/* fields: table columns, then change-capture fields */
	int			ntablecols;		/* of which table columns */
	int			nvalues;		/* size of the values/isnull arrays it reads */
	ZbRecordCol *cols;
	char	   *key_name;		/* the dedup key's field, or NULL (no key) */
	int			key_field;		/* its protobuf field number */
	uint8	   *descriptor;		/* serialized DescriptorProto */
	size_t		descriptor_len;
	uint32		fingerprint;	/* changes when columns change */
} ZbRecordSchema;

/* The largest number of columns ZeroBus accepts. */
#define ZB_MAX_COLUMNS 2000

/*
 * Change capture: the fields each record adds after the table's columns, in
 * this order, read from values[natts + ZB_CDC_*].
 */
#define ZB_CDC_NFIELDS 4
#define ZB_CDC_CHANGE_TYPE 0	/* text */
#define ZB_CDC_COMMIT_LSN 1		/* int8 */
#define ZB_CDC_COMMIT_TIME 2	/* timestamptz */
#define ZB_CDC_SEQ 3			/* int8 */
extern const char *const zb_cdc_field_names[ZB_CDC_NFIELDS];

extern ZbRecordSchema *zb_record_schema_cdc(TupleDesc tupdesc, const char *message_name);
extern char *zb_record_cdc_problem(TupleDesc tupdesc, const char *relname, char **hint,
								   int *sqlstate);
extern ZbRecordSchema *zb_record_schema(TupleDesc tupdesc, const char *message_name,
										int first_index, const char *key_name);
extern uint32 zb_record_fingerprint(TupleDesc tupdesc);
extern void zb_record_check_columns(TupleDesc tupdesc, const char *relname);
extern char *zb_record_columns_problem(TupleDesc tupdesc, const char *relname, char **hint,
									   int *sqlstate);
extern char *zb_record_key_problem(TupleDesc tupdesc, const char *relname, const char *key_name,
								   char **hint, int *sqlstate);
extern void zb_record_check_key(TupleDesc tupdesc, const char *relname, const char *key_name);

/*
 * A stream's dedup key (see docs/DESIGN.md): "<queue oid>:<relfilenode>:
 * <xmin with epoch>:<block>:<offset>".  ZB_RECORD_KEY_LEN bounds its length
 * with the NUL.
 */
#define ZB_RECORD_KEY_LEN 64
extern int	zb_record_format_key(char *buf, Oid relid, Oid relfilenode, uint64 xmin,
								 uint32 block, uint16 offset);
/*
 * Append one row's record to 'out' (growing it in 'cxt').  Returns the
 * record's length, or -1 with *error set (and 'out' unchanged) when a value
 * cannot be represented: NaN, infinite dates, NULL array elements.  JSON
 * records are NUL-terminated (the NUL is not counted).  'key' is the row's
 * dedup key when the schema has one (NULL otherwise).
 */
extern ssize_t zb_record_encode_proto(const ZbRecordSchema *schema, Datum *values,
									  bool *isnull, const char *key, MemoryContext cxt,
									  ZbBuf *out, const char **error);
extern ssize_t zb_record_encode_json(const ZbRecordSchema *schema, Datum *values,
									 bool *isnull, const char *key, MemoryContext cxt,
									 ZbBuf *out, const char **error);

#endif							/* ZB_RECORD_H */
