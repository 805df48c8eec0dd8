/*-------------------------------------------------------------------------
 * cdcslot.c
 *	  Change capture: the life of a stream's replication slot outside the
 *	  decoding.  Its name, its progress record (pg_replslot/<slot>/
 *	  zerobus.progress), and dropping it: now, just before the dropping
 *	  transaction commits (drop_stream, resync_stream, DROP EXTENSION), or
 *	  later by the sweep when its holder has let it go.  See docs/DESIGN.md,
 *	  "Durability: the progress record" and "Lifecycle of slots".
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <unistd.h>
#include <fcntl.h>

#include "access/transam.h"
#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "port/pg_crc32c.h"
#include "replication/slot.h"
#include "storage/fd.h"
#include "storage/lwlock.h"
#include "storage/spin.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "cdc.h"
#include "runas.h"
#include "stream.h"

#define PROGRESS_FILE "zerobus.progress"
#define PROGRESS_MAGIC 0x5A424350	/* "ZBCP" */
#define PROGRESS_VERSION 1

static List *cdc_drop_slots = NIL;	/* names, in TopMemoryContext */
static bool cdc_drop_database_slots = false;

char *
zb_cdc_slot_name(Oid dboid, FullTransactionId fxid)
{
	return psprintf(ZB_CDC_SLOT_PREFIX "%u_" UINT64_FORMAT, dboid, U64FromFullTransactionId(fxid));
}

/* Drop a slot nobody uses (and so its progress record); active ones are left. */
static void
cdc_drop_now(const char *name, bool missing_ok)
{
	ReplicationSlot *s;
	pid_t		active;

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	s = SearchNamedReplicationSlot(name, false);
	active = 0;
	if (s)
	{
		SpinLockAcquire(&s->mutex);
		active = s->active_pid;
		SpinLockRelease(&s->mutex);
	}
	LWLockRelease(ReplicationSlotControlLock);
	if (s == NULL)
	{
		if (!missing_ok)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("replication slot \"%s\" does not exist", name)));
		return;
	}
	if (active != 0)
	{
		/* its holder (a stream worker) drops it when it sees its stream gone */
		ereport(LOG,
				(errmsg("zerobus_fdw: replication slot \"%s\" is in use by process %d; it is dropped when released",
						name, (int) active)));
		return;
	}
	ReplicationSlotDrop(name, true);
}

/* Does a slot of this name exist (in any state)? */
bool
zb_cdc_slot_exists(const char *slot_name)
{
	bool		found;

	if (slot_name == NULL || max_replication_slots <= 0)
		return false;
	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	found = SearchNamedReplicationSlot(slot_name, false) != NULL;
	LWLockRelease(ReplicationSlotControlLock);
	return found;
}

/* Drop a slot now (it must not be in use). */
void
zb_cdc_drop_slot(const char *slot_name)
{
	cdc_drop_now(slot_name, true);
}

/* Drop a slot just before the current transaction commits (a rollback keeps it). */
void
zb_cdc_drop_at_commit(const char *slot_name)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	cdc_drop_slots = lappend(cdc_drop_slots, pstrdup(slot_name));
	MemoryContextSwitchTo(old);
}

/* DROP EXTENSION: every slot of the extension in this database, at commit. */
void
zb_cdc_drop_database_slots_at_commit(void)
{
	cdc_drop_database_slots = true;
}

/*
 * Drop this database's slots of ours that no stream names and nobody uses
 * (a stream dropped while its worker held the slot, a resync's old slot).
 * The slots are listed before the catalog is read: a slot is created only
 * after its stream's row committed, so a slot that exists now is named by a
 * row that this later read sees, unless the row is gone.  Returns how many
 * were dropped.
 */
int
zb_cdc_sweep(void)
{
	char		prefix[NAMEDATALEN];
	List	   *candidates = NIL;
	List	   *named = NIL;
	ListCell   *lc;
	int			dropped = 0;
	int			i;

	if (max_replication_slots <= 0)
		return 0;
	snprintf(prefix, sizeof(prefix), ZB_CDC_SLOT_PREFIX "%u_", MyDatabaseId);
	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	for (i = 0; i < max_replication_slots; i++)
	{
		ReplicationSlot *s = &ReplicationSlotCtl->replication_slots[i];
		const char *name = NameStr(s->data.name);

		if (!s->in_use || s->data.database != MyDatabaseId ||
			strncmp(name, prefix, strlen(prefix)) != 0 ||
			strspn(name + strlen(prefix), "0123456789") != strlen(name + strlen(prefix)))
			continue;
		if (s->active_pid != 0)
			continue;
		candidates = lappend(candidates, pstrdup(name));
	}
	LWLockRelease(ReplicationSlotControlLock);
	if (candidates == NIL)
		return 0;

	if (OidIsValid(zb_catalog_relid("stream_settings", true)))
	{
		PushActiveSnapshot(GetLatestSnapshot());
		SPI_connect();
		(void) zb_spi_as(zb_catalog_owner(),
						 "SELECT slot_name::pg_catalog.text FROM zerobus.stream_settings"
						 " WHERE slot_name IS NOT NULL",
						 0, NULL, NULL, NULL, true, 0);
		for (i = 0; i < (int) SPI_processed; i++)
		{
			MemoryContext old = MemoryContextSwitchTo(CurTransactionContext);

			named = lappend(named, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
			MemoryContextSwitchTo(old);
		}
		SPI_finish();
		PopActiveSnapshot();
	}
	foreach(lc, candidates)
	{
		char	   *name = lfirst(lc);
		ListCell   *lc2;
		bool		found = false;

		foreach(lc2, named)
			if (strcmp(lfirst(lc2), name) == 0)
				found = true;
		if (!found)
		{
			cdc_drop_now(name, true);
			dropped++;
		}
	}
	return dropped;
}

/* ---------- drops at commit ---------- */

static void
cdc_drop_pending(void)
{
	ListCell   *lc;

	foreach(lc, cdc_drop_slots)
		cdc_drop_now(lfirst(lc), true);
	if (cdc_drop_database_slots)
	{
		/* DROP EXTENSION: every slot of ours in this database */
		char		prefix[NAMEDATALEN];
		int			i;
		List	   *names = NIL;

		snprintf(prefix, sizeof(prefix), ZB_CDC_SLOT_PREFIX "%u_", MyDatabaseId);
		LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
		for (i = 0; i < max_replication_slots; i++)
		{
			ReplicationSlot *s = &ReplicationSlotCtl->replication_slots[i];

			if (s->in_use && s->data.database == MyDatabaseId &&
				strncmp(NameStr(s->data.name), prefix, strlen(prefix)) == 0)
				names = lappend(names, pstrdup(NameStr(s->data.name)));
		}
		LWLockRelease(ReplicationSlotControlLock);
		foreach(lc, names)
			cdc_drop_now(lfirst(lc), true);
	}
}

static void
cdc_slot_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			/* errors are still allowed here: a slot that cannot go stops the commit */
			if (cdc_drop_slots != NIL || cdc_drop_database_slots)
				cdc_drop_pending();
			return;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			break;
		default:
			return;
	}
	list_free_deep(cdc_drop_slots);
	cdc_drop_slots = NIL;
	cdc_drop_database_slots = false;
}

/* From _PG_init (zb_cdc_init). */
void
zb_cdc_slot_init(void)
{
	RegisterXactCallback(cdc_slot_xact_callback, NULL);
}

/* ======================================================================
 * The progress record: pg_replslot/<slot>/zerobus.progress
 * ====================================================================== */

typedef struct ProgressFile
{
	uint32		magic;
	uint32		version;
	int64		next_seq;
	uint64		acked_end;
	uint64		acked_in_txn;
	pg_crc32c	crc;			/* of everything above */
} ProgressFile;

static void
cdc_progress_path(char *path, const char *slot_name, const char *suffix)
{
	snprintf(path, MAXPGPATH, "pg_replslot/%s/" PROGRESS_FILE "%s", slot_name, suffix);
}

/* Read a slot's progress record: false if there is none (or it is damaged). */
bool
zb_cdc_read_progress(const char *slot_name, ZbCdcProgress *p)
{
	char		path[MAXPGPATH];
	ProgressFile f;
	pg_crc32c	crc;
	int			fd;
	int			n;

	cdc_progress_path(path, slot_name, "");
	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
	{
		if (errno == ENOENT)
			return false;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\": %m", path)));
	}
	n = read(fd, &f, sizeof(f));
	CloseTransientFile(fd);
	if (n != sizeof(f) || f.magic != PROGRESS_MAGIC || f.version != PROGRESS_VERSION)
		return false;
	INIT_CRC32C(crc);
	COMP_CRC32C(crc, &f, offsetof(ProgressFile, crc));
	FIN_CRC32C(crc);
	if (!EQ_CRC32C(crc, f.crc))
		return false;
	p->next_seq = f.next_seq;
	p->acked_end = (XLogRecPtr) f.acked_end;
	p->acked_in_txn = f.acked_in_txn;
	return true;
}

/* Write it durably: a temporary file, fsync, rename, fsync of the directory. */
void
zb_cdc_write_progress(const char *slot_name, const ZbCdcProgress *p)
{
	char		tmp[MAXPGPATH];
	char		path[MAXPGPATH];
	ProgressFile f;
	int			fd;

	memset(&f, 0, sizeof(f));
	f.magic = PROGRESS_MAGIC;
	f.version = PROGRESS_VERSION;
	f.next_seq = p->next_seq;
	f.acked_end = (uint64) p->acked_end;
	f.acked_in_txn = p->acked_in_txn;
	INIT_CRC32C(f.crc);
	COMP_CRC32C(f.crc, &f, offsetof(ProgressFile, crc));
	FIN_CRC32C(f.crc);

	cdc_progress_path(tmp, slot_name, ".tmp");
	cdc_progress_path(path, slot_name, "");
	fd = OpenTransientFile(tmp, O_CREAT | O_TRUNC | O_WRONLY | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create file \"%s\": %m", tmp)));
	errno = 0;
	if (write(fd, &f, sizeof(f)) != sizeof(f))
	{
		int			save = errno;

		CloseTransientFile(fd);
		errno = save ? save : ENOSPC;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write file \"%s\": %m", tmp)));
	}
	if (pg_fsync(fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not fsync file \"%s\": %m", tmp)));
	if (CloseTransientFile(fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not close file \"%s\": %m", tmp)));
	(void) durable_rename(tmp, path, ERROR);
}

/*
 * The first _seq of a new slot: above the clock (microseconds since 1970)
 * and the previous slot's numbers (docs/DESIGN.md, "_seq").
 */
int64
zb_cdc_seq_base(const char *old_slot)
{
	/* microseconds since 1970 (timestamps count from 2000) */
	int64		base = (int64) GetCurrentTimestamp() +
		(int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;
	ZbCdcProgress p;

	if (old_slot && zb_cdc_read_progress(old_slot, &p) && p.next_seq > base)
		base = p.next_seq;
	return base;
}
