/*-------------------------------------------------------------------------
 * profiles.h
 *	  The generator's traffic profiles, each matching a seed application:
 *	  the queue table it fills, the Delta table it lands in, and the SQL
 *	  that makes its rows.
 *-------------------------------------------------------------------------
 */
#ifndef ZB_PROFILES_H
#define ZB_PROFILES_H

typedef struct ZbProfile
{
	const char *name;
	const char *description;
	const char *columns;		/* PostgreSQL column definitions */
	const char *delta_columns;	/* Databricks column definitions */
	const char *insert_columns; /* the columns the generator fills */
	/* SELECT list over "s", a row of random draws r1..r8 and device d */
	const char *select_list;
	/* the profile's lifecycle in an ordinary table (orders only), or NULL */
	const struct ZbLifecycle *lifecycle;
} ZbProfile;

/*
 * A lifecycle: rows of an ordinary table that are inserted, moved through
 * their statuses by UPDATEs and finally DELETEd (generator.c).  Its table
 * is keyed by key_column, which the table fills (an identity column), and
 * has a status column and an updated_at column that the generator sets.
 */
typedef struct ZbLifecycle
{
	const char *columns;		/* CREATE TABLE body (PostgreSQL) */
	const char *index_columns;	/* an index that finds due rows: (status, updated_at) */
	const char *plain_columns;	/* varlena columns kept inline (STORAGE PLAIN) */
	const char *changes_delta_columns;	/* the Delta table of its change stream */
	const char *key_column;		/* filled by the table */
	const char *required_columns;	/* every column the generator names */
	const char *insert_columns; /* a new row's columns ... */
	const char *select_list;	/* ... and their values over "s", as for queues */
	/*
	 * UPDATE moving at most $1 due rows one status on, and DELETE of at most
	 * $1 due finished rows, oldest first; %1$s is the table (format strings
	 * for psprintf)
	 */
	const char *advance_sql;
	const char *purge_sql;
} ZbLifecycle;

extern const ZbProfile zb_profiles[];
extern const ZbProfile *zb_profile(const char *name);
extern const char *zb_profile_names(void);

#endif							/* ZB_PROFILES_H */
