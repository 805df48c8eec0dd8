/*-------------------------------------------------------------------------
 * record.c
 *	  Rows as ZeroBus records (docs/DESIGN.md, "Records").
 *
 * PROTO mode: a proto2 DescriptorProto is built from the table's columns
 * (field numbers 1, 2, 3… in column order, skipping protobuf's reserved
 * 19000-19999; NOT NULL columns are `required`, others `optional`, arrays
 * `repeated`) and sent once when the stream is created; each row is then
 * written field by field with the primitives of pbwire.h.  protobuf-c packs
 * only messages known at build time, so the descriptor itself is packed with
 * protobuf-c but records are written directly, from the tuple's Datums.
 * NULL values are simply absent; every non-NULL value is written, zero
 * included, so that a zero never reads back as NULL.
 *
 * JSON mode: one JSON object per row keyed by column name, with dates as
 * integer days and timestamps as integer microseconds since the Unix epoch.
 *
 * A stream with a dedup_column adds one more field, a string after the
 * table's columns: the row's dedup key (zb_record_format_key), which the
 * worker derives from the row version; docs/DESIGN.md says why it is stable
 * across re-sends and unique otherwise.
 *
 * A change-capture stream (docs/DESIGN.md, "Change capture") encodes rows
 * decoded from the WAL with the same code: its schema reads the columns by
 * attribute number (as heap_deform_tuple() leaves them), makes every column
 * optional (a delete carries only the key) and appends four fields present
 * in every record: _change_type, _commit_lsn, _commit_timestamp, _seq.
 *
 * Type map (PostgreSQL -> proto): smallint, integer -> int32; bigint ->
 * int64; boolean -> bool; real -> float; double precision -> double; text,
 * varchar, char, name, json, jsonb, uuid -> string; numeric -> string
 * (decimal text); date -> int32 days since 1970-01-01; timestamp and
 * timestamptz -> int64 microseconds since 1970-01-01 UTC; bytea -> bytes;
 * one-dimensional arrays of these -> repeated.  Domains map as their base
 * type.  Anything else is refused when the stream is created.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "common/base64.h"
#include "common/hashfn.h"
#include "common/shortest_dec.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "google/protobuf/descriptor.pb-c.h"
#include "compat.h"
#include "option.h"
#include "pbwire.h"
#include "record.h"

/* Days and microseconds between the PostgreSQL epoch (2000) and Unix's (1970). */
#define EPOCH_DIFF_DAYS (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE)
#define EPOCH_DIFF_USECS ((int64) EPOCH_DIFF_DAYS * USECS_PER_DAY)

#define PROTO_RESERVED_FIRST 19000
#define PROTO_RESERVED_LAST 19999

const char *const zb_cdc_field_names[ZB_CDC_NFIELDS] = {
	"_change_type", "_commit_lsn", "_commit_timestamp", "_seq"
};

static const char *const supported_types =
"smallint, integer, bigint, boolean, real, double precision, numeric, text, varchar, char, "
"name, json, jsonb, uuid, date, timestamp, timestamptz, bytea, and one-dimensional arrays of these";

/* The kind of a (base, non-array) type, or false if unsupported. */
static bool
record_kind(Oid typid, ZbColKind *kind)
{
	switch (typid)
	{
		case INT2OID:
		case INT4OID:
			*kind = ZB_COL_INT32;
			return true;
		case INT8OID:
			*kind = ZB_COL_INT64;
			return true;
		case BOOLOID:
			*kind = ZB_COL_BOOL;
			return true;
		case FLOAT4OID:
			*kind = ZB_COL_FLOAT4;
			return true;
		case FLOAT8OID:
			*kind = ZB_COL_FLOAT8;
			return true;
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
		case JSONOID:
			*kind = ZB_COL_TEXT;
			return true;
		case NAMEOID:
			*kind = ZB_COL_NAME;
			return true;
		case NUMERICOID:
			*kind = ZB_COL_NUMERIC;
			return true;
		case DATEOID:
			*kind = ZB_COL_DATE;
			return true;
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			*kind = ZB_COL_TIMESTAMP;
			return true;
		case BYTEAOID:
			*kind = ZB_COL_BYTEA;
			return true;
		case JSONBOID:
		case UUIDOID:
			*kind = ZB_COL_OUTPUT;
			return true;
		default:
			return false;
	}
}

static int
record_proto_type(ZbColKind kind)
{
	switch (kind)
	{
		case ZB_COL_INT32:
		case ZB_COL_DATE:
			return GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_INT32;
		case ZB_COL_INT64:
		case ZB_COL_TIMESTAMP:
			return GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_INT64;
		case ZB_COL_BOOL:
			return GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_BOOL;
		case ZB_COL_FLOAT4:
			return GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_FLOAT;
		case ZB_COL_FLOAT8:
			return GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_DOUBLE;
		case ZB_COL_BYTEA:
			return GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_BYTES;
		case ZB_COL_TEXT:
		case ZB_COL_NAME:
		case ZB_COL_NUMERIC:
		case ZB_COL_OUTPUT:
			return GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_STRING;
	}
	return 0;					/* unreachable */
}

/* A name both ZeroBus (letters, digits, _) and protobuf (no leading digit) accept. */
static bool
record_valid_field_name(const char *name)
{
	return zb_valid_name(name) && !(name[0] >= '0' && name[0] <= '9');
}

/* Resolve a column's type: base type, array-ness, kind.  False if unsupported. */
static bool
record_resolve_type(Oid typid, ZbRecordCol *col)
{
	Oid			base = getBaseType(typid);
	Oid			elem = get_element_type(base);

	col->is_array = OidIsValid(elem);
	col->typid = col->is_array ? getBaseType(elem) : base;
	if (col->is_array && OidIsValid(get_element_type(col->typid)))
		return false;
	return record_kind(col->typid, &col->kind);
}

/*
 * Check that every column of a table can become a record field.  Returns
 * NULL, or the problem with the first one that cannot (an error message,
 * with *hint set when there is one).
 */
char *
zb_record_columns_problem(TupleDesc tupdesc, const char *relname, char **hint, int *sqlstate)
{
	int			ncols = 0;
	int			i;

	*hint = NULL;
	for (i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i);
		ZbRecordCol col;

		if (att->attisdropped)
			continue;
		ncols++;
		if (!record_valid_field_name(NameStr(att->attname)))
		{
			*sqlstate = ERRCODE_INVALID_NAME;
			*hint = psprintf("Rename the column, for example: ALTER TABLE %s RENAME COLUMN %s TO <new name>;",
							 relname, quote_identifier(NameStr(att->attname)));
			return psprintf("column \"%s\" of table \"%s\" has a name ZeroBus cannot use",
							NameStr(att->attname), relname);
		}
		if (!record_resolve_type(att->atttypid, &col))
		{
			*sqlstate = ERRCODE_FEATURE_NOT_SUPPORTED;
			*hint = psprintf("Supported types: %s.", supported_types);
			return psprintf("column \"%s\" of table \"%s\" has type %s, which ZeroBus records cannot carry",
							NameStr(att->attname), relname, format_type_be(att->atttypid));
		}
	}
	*sqlstate = ncols == 0 ? ERRCODE_INVALID_TABLE_DEFINITION : ERRCODE_TOO_MANY_COLUMNS;
	if (ncols == 0)
		return psprintf("table \"%s\" has no columns", relname);
	if (ncols > ZB_MAX_COLUMNS)
		return psprintf("table \"%s\" has %d columns; ZeroBus accepts at most %d",
						relname, ncols, ZB_MAX_COLUMNS);
	return NULL;
}

/* The same, raising the problem as an error. */
void
zb_record_check_columns(TupleDesc tupdesc, const char *relname)
{
	char	   *hint;
	int			sqlstate;
	char	   *problem = zb_record_columns_problem(tupdesc, relname, &hint, &sqlstate);

	if (problem)
		ereport(ERROR,
				(errcode(sqlstate),
				 errmsg_internal("%s", problem),
				 hint ? errhint("%s", hint) : 0,
				 strstr(problem, "name ZeroBus cannot use")
				 ? errdetail("Record field names are ASCII letters, digits and underscores, not starting with a digit.") : 0));
}

/*
 * Can records of this table carry a dedup key field named key_name?  NULL,
 * or the problem (with *hint and *sqlstate).  The name must be a valid
 * field name and differ from every column's, ignoring case as Delta does.
 */
char *
zb_record_key_problem(TupleDesc tupdesc, const char *relname, const char *key_name,
					  char **hint, int *sqlstate)
{
	int			i;

	*hint = NULL;
	if (!record_valid_field_name(key_name))
	{
		*sqlstate = ERRCODE_INVALID_NAME;
		*hint = pstrdup("A dedup_column is 1 to 255 ASCII letters, digits and underscores, not starting with a digit, naming a STRING column of the Delta table.");
		return psprintf("invalid dedup_column \"%s\"", key_name);
	}
	/* (a table has at most 1600 columns: one more stays within ZB_MAX_COLUMNS) */
	for (i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i);

		if (att->attisdropped)
			continue;
		if (pg_strcasecmp(NameStr(att->attname), key_name) == 0)
		{
			*sqlstate = ERRCODE_DUPLICATE_COLUMN;
			*hint = psprintf("Choose a dedup_column that is not a column of \"%s\" (Delta compares column names ignoring case).",
							 relname);
			return psprintf("dedup_column \"%s\" is also column \"%s\" of queue table \"%s\"",
							key_name, NameStr(att->attname), relname);
		}
	}
	return NULL;
}

/* The same, raising the problem as an error. */
void
zb_record_check_key(TupleDesc tupdesc, const char *relname, const char *key_name)
{
	char	   *hint;
	int			sqlstate;
	char	   *problem = zb_record_key_problem(tupdesc, relname, key_name, &hint, &sqlstate);

	if (problem)
		ereport(ERROR,
				(errcode(sqlstate),
				 errmsg_internal("%s", problem),
				 hint ? errhint("%s", hint) : 0));
}

/*
 * Write a dedup key into buf (ZB_RECORD_KEY_LEN bytes); returns its length.
 * Decimal numbers separated by colons: nothing to escape in JSON.
 */
int
zb_record_format_key(char *buf, Oid relid, Oid relfilenode, uint64 xmin, uint32 block,
					 uint16 offset)
{
	char	   *p = buf;

	p += pg_ultoa_n(relid, p);
	*p++ = ':';
	p += pg_ultoa_n(relfilenode, p);
	*p++ = ':';
	p += pg_ulltoa_n(xmin, p);
	*p++ = ':';
	p += pg_ultoa_n(block, p);
	*p++ = ':';
	p += pg_ultoa_n(offset, p);
	*p = '\0';
	return p - buf;
}

/* Changes whenever a column is added, dropped, renamed, retyped or re-nulled. */
uint32
zb_record_fingerprint(TupleDesc tupdesc)
{
	uint32		h = 0;
	int			i;

	for (i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i);
		uint32		parts[3];

		if (att->attisdropped)
			continue;
		parts[0] = att->atttypid;
		parts[1] = att->attnotnull;
		parts[2] = hash_bytes((const unsigned char *) NameStr(att->attname),
							  strlen(NameStr(att->attname)));
		h = hash_combine(h, hash_bytes((const unsigned char *) parts, sizeof(parts)));
	}
	return h;
}

/* Fill one field's descriptor entry. */
static void
record_field(Google__Protobuf__FieldDescriptorProto *f, const char *name, int number,
			 int type, int label)
{
	google__protobuf__field_descriptor_proto__init(f);
	f->name = (char *) name;
	f->has_number = f->has_label = f->has_type = true;
	f->number = number;
	f->type = type;
	f->label = label;
}

/*
 * Build a record schema.  Table column k (k-th non-dropped column) is read
 * from values[first_index + k], or, with by_attnum, from values[attnum - 1];
 * with cdc, every table column is optional (a delete carries only the key)
 * and the change-capture fields follow the columns, read from
 * values[natts + i].
 */
static ZbRecordSchema *
record_build_schema(TupleDesc tupdesc, const char *message_name, int first_index,
					const char *key_name, bool cdc)
{
	ZbRecordSchema *schema = palloc0(sizeof(ZbRecordSchema));
	Google__Protobuf__DescriptorProto desc = GOOGLE__PROTOBUF__DESCRIPTOR_PROTO__INIT;
	Google__Protobuf__FieldDescriptorProto *fields;
	Google__Protobuf__FieldDescriptorProto **fieldp;
	int			maxfields = tupdesc->natts + 1 + ZB_CDC_NFIELDS;
	int			field = 0;
	int			i;

	schema->cols = palloc0(sizeof(ZbRecordCol) * maxfields);
	fields = palloc0(sizeof(Google__Protobuf__FieldDescriptorProto) * maxfields);
	fieldp = palloc0(sizeof(Google__Protobuf__FieldDescriptorProto *) * maxfields);

	for (i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i);
		ZbRecordCol *col = &schema->cols[schema->ncols];
		Google__Protobuf__FieldDescriptorProto *f = &fields[schema->ncols];

		if (att->attisdropped)
			continue;
		if (!record_resolve_type(att->atttypid, col))
			elog(ERROR, "column \"%s\" has an unsupported type", NameStr(att->attname));
		if (++field == PROTO_RESERVED_FIRST)
			field = PROTO_RESERVED_LAST + 1;
		col->name = pstrdup(NameStr(att->attname));
		col->index = cdc ? i : first_index + schema->ncols;
		col->field = field;
		col->not_null = att->attnotnull && !cdc;
		if (col->is_array)
			get_typlenbyvalalign(col->typid, &col->elmlen, &col->elmbyval, &col->elmalign);
		if (col->kind == ZB_COL_NUMERIC || col->kind == ZB_COL_OUTPUT)
		{
			Oid			outfn;
			bool		varlena;

			getTypeOutputInfo(col->typid, &outfn, &varlena);
			fmgr_info(outfn, &col->outfunc);
		}
		record_field(f, col->name, col->field, record_proto_type(col->kind),
					 col->is_array ? GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REPEATED
					 : col->not_null ? GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REQUIRED
					 : GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_OPTIONAL);
		fieldp[schema->ncols] = f;
		schema->ncols++;
	}
	schema->ntablecols = schema->ncols;

	if (cdc)
	{
		/* _change_type, _commit_lsn, _commit_timestamp, _seq: in every record */
		static const Oid types[ZB_CDC_NFIELDS] = {TEXTOID, INT8OID, TIMESTAMPTZOID, INT8OID};

		for (i = 0; i < ZB_CDC_NFIELDS; i++)
		{
			ZbRecordCol *col = &schema->cols[schema->ncols];
			Google__Protobuf__FieldDescriptorProto *f = &fields[schema->ncols];

			if (++field == PROTO_RESERVED_FIRST)
				field = PROTO_RESERVED_LAST + 1;
			col->name = pstrdup(zb_cdc_field_names[i]);
			col->index = tupdesc->natts + i;
			col->field = field;
			col->not_null = true;
			col->typid = types[i];
			(void) record_kind(col->typid, &col->kind);
			record_field(f, col->name, col->field, record_proto_type(col->kind),
						 GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REQUIRED);
			fieldp[schema->ncols] = f;
			schema->ncols++;
		}
		schema->nvalues = tupdesc->natts + ZB_CDC_NFIELDS;
	}
	else
		schema->nvalues = first_index + schema->ncols;
	desc.n_field = schema->ncols;

	if (key_name)
	{
		/* the dedup key: a string after the columns, present in every record */
		Google__Protobuf__FieldDescriptorProto *f = &fields[schema->ncols];

		if (++field == PROTO_RESERVED_FIRST)
			field = PROTO_RESERVED_LAST + 1;
		schema->key_name = pstrdup(key_name);
		schema->key_field = field;
		record_field(f, schema->key_name, field,
					 GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_STRING,
					 GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_OPTIONAL);
		fieldp[desc.n_field++] = f;
	}

	desc.name = record_valid_field_name(message_name) ? (char *) message_name : "record";
	desc.field = fieldp;
	schema->descriptor_len = google__protobuf__descriptor_proto__get_packed_size(&desc);
	schema->descriptor = palloc(schema->descriptor_len);
	google__protobuf__descriptor_proto__pack(&desc, schema->descriptor);
	schema->fingerprint = zb_record_fingerprint(tupdesc);
	return schema;
}

/*
 * The record schema of a queue table.  Column k (k-th non-dropped column) is
 * read from values[first_index + k].  The table must pass
 * zb_record_check_columns() (and zb_record_check_key() for a key_name, or
 * NULL for no key field).
 */
ZbRecordSchema *
zb_record_schema(TupleDesc tupdesc, const char *message_name, int first_index,
				 const char *key_name)
{
	return record_build_schema(tupdesc, message_name, first_index, key_name, false);
}

/*
 * The record schema of a change-capture stream (docs/DESIGN.md, "Change
 * capture"): the table's columns, read from values[attnum - 1] as
 * heap_deform_tuple() leaves them, all optional, then the change-capture
 * fields from values[natts + i] (ZB_CDC_*): _change_type (text),
 * _commit_lsn (int8), _commit_timestamp (timestamptz), _seq (int8).  The
 * table must pass zb_record_cdc_problem().
 */
ZbRecordSchema *
zb_record_schema_cdc(TupleDesc tupdesc, const char *message_name)
{
	return record_build_schema(tupdesc, message_name, 0, NULL, true);
}

/*
 * Can change-capture records carry this table?  Its columns as for a queue,
 * none named like a change-capture field (ignoring case, as Delta does), and
 * room for the four fields.  NULL, or the problem with *hint and *sqlstate.
 */
char *
zb_record_cdc_problem(TupleDesc tupdesc, const char *relname, char **hint, int *sqlstate)
{
	char	   *problem = zb_record_columns_problem(tupdesc, relname, hint, sqlstate);
	int			ncols = 0;
	int			i;
	int			j;

	if (problem)
		return problem;
	for (i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i);

		if (att->attisdropped)
			continue;
		ncols++;
		for (j = 0; j < ZB_CDC_NFIELDS; j++)
		{
			if (pg_strcasecmp(NameStr(att->attname), zb_cdc_field_names[j]) == 0)
			{
				*sqlstate = ERRCODE_DUPLICATE_COLUMN;
				*hint = psprintf("Rename the column, for example: ALTER TABLE %s RENAME COLUMN %s TO <new name>; change-capture records add the fields _change_type, _commit_lsn, _commit_timestamp and _seq.",
								 relname, quote_identifier(NameStr(att->attname)));
				return psprintf("column \"%s\" of table \"%s\" has the name of a change-capture field",
								NameStr(att->attname), relname);
			}
		}
	}
	if (ncols + ZB_CDC_NFIELDS > ZB_MAX_COLUMNS)
	{
		*sqlstate = ERRCODE_TOO_MANY_COLUMNS;
		*hint = NULL;
		return psprintf("table \"%s\" has %d columns; change-capture records add %d and ZeroBus accepts at most %d",
						relname, ncols, ZB_CDC_NFIELDS, ZB_MAX_COLUMNS);
	}
	return NULL;
}

/* ---------- PROTO encoding ---------- */

static inline void
proto_put_len(MemoryContext cxt, ZbBuf *out, int field, const void *data, size_t len)
{
	uint8	   *p = zb_buf_ensure(cxt, out, len + 2 * PB_MAX_VARINT);

	out->len = pb_put_bytes(p, field, data, len) - out->data;
}

/* One scalar value of a column; false with *error if it cannot be encoded. */
static bool
proto_put_value(const ZbRecordCol *col, Datum d, MemoryContext cxt, ZbBuf *out,
				const char **error)
{
	uint8	   *p;

	switch (col->kind)
	{
		case ZB_COL_INT32:
			p = zb_buf_ensure(cxt, out, 2 * PB_MAX_VARINT);
			p = pb_put_tag(p, col->field, PB_WT_VARINT);
			/* int32 negatives are sign-extended to 64 bits on the wire */
			p = pb_put_varint(p, (uint64) (int64) (col->typid == INT2OID
												   ? DatumGetInt16(d) : DatumGetInt32(d)));
			break;
		case ZB_COL_INT64:
			p = zb_buf_ensure(cxt, out, 2 * PB_MAX_VARINT);
			p = pb_put_tag(p, col->field, PB_WT_VARINT);
			p = pb_put_varint(p, (uint64) DatumGetInt64(d));
			break;
		case ZB_COL_BOOL:
			p = zb_buf_ensure(cxt, out, PB_MAX_VARINT + 1);
			p = pb_put_tag(p, col->field, PB_WT_VARINT);
			*p++ = DatumGetBool(d) ? 1 : 0;
			break;
		case ZB_COL_FLOAT4:
			{
				float4		f = DatumGetFloat4(d);
				uint32		bits;

				memcpy(&bits, &f, sizeof(bits));
				p = zb_buf_ensure(cxt, out, PB_MAX_VARINT + 4);
				p = pb_put_tag(p, col->field, PB_WT_FIXED32);
				p = pb_put_fixed32(p, bits);
				break;
			}
		case ZB_COL_FLOAT8:
			{
				float8		f = DatumGetFloat8(d);
				uint64		bits;

				memcpy(&bits, &f, sizeof(bits));
				p = zb_buf_ensure(cxt, out, PB_MAX_VARINT + 8);
				p = pb_put_tag(p, col->field, PB_WT_FIXED64);
				p = pb_put_fixed64(p, bits);
				break;
			}
		case ZB_COL_TEXT:
		case ZB_COL_BYTEA:
			{
				struct varlena *v = PG_DETOAST_DATUM_PACKED(d);

				proto_put_len(cxt, out, col->field, VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v));
				if ((Pointer) v != DatumGetPointer(d))
					pfree(v);
				return true;
			}
		case ZB_COL_NAME:
			{
				const char *s = NameStr(*DatumGetName(d));

				proto_put_len(cxt, out, col->field, s, strlen(s));
				return true;
			}
		case ZB_COL_NUMERIC:
			{
				Numeric		n = DatumGetNumeric(d);
				char	   *s;

				if (numeric_is_nan(n) || numeric_is_inf(n))
				{
					*error = "NaN and infinity cannot be sent as a DECIMAL";
					return false;
				}
				s = OutputFunctionCall((FmgrInfo *) &col->outfunc, d);
				proto_put_len(cxt, out, col->field, s, strlen(s));
				pfree(s);
				return true;
			}
		case ZB_COL_OUTPUT:
			{
				char	   *s = OutputFunctionCall((FmgrInfo *) &col->outfunc, d);

				proto_put_len(cxt, out, col->field, s, strlen(s));
				pfree(s);
				return true;
			}
		case ZB_COL_DATE:
			{
				DateADT		v = DatumGetDateADT(d);

				if (DATE_NOT_FINITE(v))
				{
					*error = "an infinite date cannot be sent as a DATE";
					return false;
				}
				p = zb_buf_ensure(cxt, out, 2 * PB_MAX_VARINT);
				p = pb_put_tag(p, col->field, PB_WT_VARINT);
				p = pb_put_varint(p, (uint64) (int64) (v + EPOCH_DIFF_DAYS));
				break;
			}
		case ZB_COL_TIMESTAMP:
			{
				Timestamp	v = DatumGetTimestamp(d);

				if (TIMESTAMP_NOT_FINITE(v))
				{
					*error = "an infinite timestamp cannot be sent as a TIMESTAMP";
					return false;
				}
				p = zb_buf_ensure(cxt, out, 2 * PB_MAX_VARINT);
				p = pb_put_tag(p, col->field, PB_WT_VARINT);
				p = pb_put_varint(p, (uint64) (v + EPOCH_DIFF_USECS));
				break;
			}
		default:
			elog(ERROR, "unexpected column kind %d", col->kind);
	}
	out->len = p - out->data;
	return true;
}

/* Deconstruct a one-dimensional array without NULLs; false with *error otherwise. */
static bool
record_array_elems(const ZbRecordCol *col, Datum d, Datum **elems, int *n,
				   const char **error)
{
	ArrayType  *arr = DatumGetArrayTypeP(d);
	bool	   *nulls;
	int			i;

	if (ARR_NDIM(arr) > 1)
	{
		*error = "a multi-dimensional array cannot be sent as a repeated field";
		return false;
	}
	deconstruct_array(arr, ARR_ELEMTYPE(arr), col->elmlen, col->elmbyval, col->elmalign,
					  elems, &nulls, n);
	for (i = 0; i < *n; i++)
	{
		if (nulls[i])
		{
			*error = "an array with NULL elements cannot be sent as a repeated field";
			return false;
		}
	}
	return true;
}

ssize_t
zb_record_encode_proto(const ZbRecordSchema *schema, Datum *values, bool *isnull,
					   const char *key, MemoryContext cxt, ZbBuf *out, const char **error)
{
	size_t		start = out->len;
	int			i;

	for (i = 0; i < schema->ncols; i++)
	{
		const ZbRecordCol *col = &schema->cols[i];
		Datum		d = values[col->index];

		if (isnull[col->index])
			continue;
		if (col->is_array)
		{
			Datum	   *elems;
			int			n;
			int			j;

			if (!record_array_elems(col, d, &elems, &n, error))
				goto fail;
			for (j = 0; j < n; j++)
				if (!proto_put_value(col, elems[j], cxt, out, error))
					goto fail;
		}
		else if (!proto_put_value(col, d, cxt, out, error))
			goto fail;
	}
	if (schema->key_name)
	{
		Assert(key != NULL);
		proto_put_len(cxt, out, schema->key_field, key, strlen(key));
	}
	return out->len - start;

fail:
	out->len = start;
	return -1;
}

/* ---------- JSON encoding ---------- */

static bool
json_put_value(const ZbRecordCol *col, Datum d, StringInfo s, const char **error)
{
	switch (col->kind)
	{
		case ZB_COL_INT32:
			appendStringInfo(s, "%d", col->typid == INT2OID ? DatumGetInt16(d) : DatumGetInt32(d));
			break;
		case ZB_COL_INT64:
			appendStringInfo(s, INT64_FORMAT, DatumGetInt64(d));
			break;
		case ZB_COL_BOOL:
			appendStringInfoString(s, DatumGetBool(d) ? "true" : "false");
			break;
		case ZB_COL_FLOAT4:
		case ZB_COL_FLOAT8:
			{
				char		buf[DOUBLE_SHORTEST_DECIMAL_LEN];
				double		f = col->kind == ZB_COL_FLOAT4 ? DatumGetFloat4(d) : DatumGetFloat8(d);

				if (isnan(f) || isinf(f))
				{
					*error = "NaN and infinity cannot be written in JSON";
					return false;
				}
				if (col->kind == ZB_COL_FLOAT4)
					float_to_shortest_decimal_buf(DatumGetFloat4(d), buf);
				else
					double_to_shortest_decimal_buf(f, buf);
				appendStringInfoString(s, buf);
				break;
			}
		case ZB_COL_TEXT:
			escape_json(s, TextDatumGetCString(d));
			break;
		case ZB_COL_NAME:
			escape_json(s, NameStr(*DatumGetName(d)));
			break;
		case ZB_COL_NUMERIC:
			{
				Numeric		n = DatumGetNumeric(d);

				if (numeric_is_nan(n) || numeric_is_inf(n))
				{
					*error = "NaN and infinity cannot be sent as a DECIMAL";
					return false;
				}
				escape_json(s, OutputFunctionCall((FmgrInfo *) &col->outfunc, d));
				break;
			}
		case ZB_COL_OUTPUT:
			escape_json(s, OutputFunctionCall((FmgrInfo *) &col->outfunc, d));
			break;
		case ZB_COL_DATE:
			{
				DateADT		v = DatumGetDateADT(d);

				if (DATE_NOT_FINITE(v))
				{
					*error = "an infinite date cannot be sent as a DATE";
					return false;
				}
				appendStringInfo(s, "%d", (int) (v + EPOCH_DIFF_DAYS));
				break;
			}
		case ZB_COL_TIMESTAMP:
			{
				Timestamp	v = DatumGetTimestamp(d);

				if (TIMESTAMP_NOT_FINITE(v))
				{
					*error = "an infinite timestamp cannot be sent as a TIMESTAMP";
					return false;
				}
				appendStringInfo(s, INT64_FORMAT, (int64) (v + EPOCH_DIFF_USECS));
				break;
			}
		case ZB_COL_BYTEA:
			{
				bytea	   *v = DatumGetByteaPP(d);
				int			len = VARSIZE_ANY_EXHDR(v);
				int			enclen = pg_b64_enc_len(len);
				char	   *enc = palloc(enclen + 1);
				int			n = zb_b64_encode(VARDATA_ANY(v), len, enc, enclen);

				if (n < 0)
					elog(ERROR, "could not encode bytea as base64");
				appendStringInfoChar(s, '"');
				appendBinaryStringInfo(s, enc, n);
				appendStringInfoChar(s, '"');
				pfree(enc);
				break;
			}
	}
	return true;
}

ssize_t
zb_record_encode_json(const ZbRecordSchema *schema, Datum *values, bool *isnull,
					  const char *key, MemoryContext cxt, ZbBuf *out, const char **error)
{
	StringInfoData s;
	bool		first = true;
	uint8	   *p;
	int			i;

	initStringInfo(&s);
	appendStringInfoChar(&s, '{');
	for (i = 0; i < schema->ncols; i++)
	{
		const ZbRecordCol *col = &schema->cols[i];
		Datum		d = values[col->index];

		if (isnull[col->index])
			continue;
		if (!first)
			appendStringInfoChar(&s, ',');
		first = false;
		escape_json(&s, col->name);
		appendStringInfoChar(&s, ':');
		if (col->is_array)
		{
			Datum	   *elems;
			int			n;
			int			j;

			if (!record_array_elems(col, d, &elems, &n, error))
				return -1;
			appendStringInfoChar(&s, '[');
			for (j = 0; j < n; j++)
			{
				if (j > 0)
					appendStringInfoChar(&s, ',');
				if (!json_put_value(col, elems[j], &s, error))
					return -1;
			}
			appendStringInfoChar(&s, ']');
		}
		else if (!json_put_value(col, d, &s, error))
			return -1;
	}
	if (schema->key_name)
	{
		Assert(key != NULL);
		if (!first)
			appendStringInfoChar(&s, ',');
		escape_json(&s, schema->key_name);
		appendStringInfoChar(&s, ':');
		escape_json(&s, key);
	}
	appendStringInfoChar(&s, '}');

	p = zb_buf_ensure(cxt, out, s.len + 1);
	memcpy(p, s.data, s.len + 1);
	out->len += s.len + 1;
	pfree(s.data);
	return s.len;
}
