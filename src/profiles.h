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
} ZbProfile;

extern const ZbProfile zb_profiles[];
extern const ZbProfile *zb_profile(const char *name);
extern const char *zb_profile_names(void);

#endif							/* ZB_PROFILES_H */
