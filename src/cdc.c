/*-------------------------------------------------------------------------
 * cdc.c
 *	  Change capture: a stream's replication slot, its initial snapshot,
 *	  the in-process decoding driver, the progress record, commit-time
 *	  wake-ups, and zerobus.peek_changes().
 *
 * docs/DESIGN.md ("Change capture") explains the design; in short:
 *   - the slot (zerobus_<db>_<full xid>, plugin zerobus_fdw) is created by
 *     the process that copies the table, and the copy reads the table with
 *     the snapshot builder's snapshot at the slot's consistent point: no
 *     gap, no overlap;
 *   - decoding runs in the process (CreateDecodingContext, the local WAL
 *     page reader), up to the flush pointer, into a sink;
 *   - after each acknowledgement the progress record (next _seq, how far
 *     acknowledged) is written to the slot's directory, then the slot's
 *     position is confirmed; a restart skips what the record says;
 *   - a committing transaction with an xid wakes the change-capture
 *     waiters of its database;
 *   - slots of dropped streams are dropped just before the dropping
 *     transaction commits, or later by whoever holds them, or the sweep.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <unistd.h>
#include <fcntl.h>

#include "access/attmap.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlogutils.h"
#include "catalog/catalog.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "libpq/pqformat.h"
#include "libpq/pqmq.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "port/pg_crc32c.h"
#include "replication/decode.h"
#include "replication/logical.h"
#include "replication/slot.h"
#include "replication/snapbuild.h"
#include "storage/dsm.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shm_mq.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/acl.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"
#include "utils/wait_event.h"

#include "compat.h"
#include "cdc.h"
#include "option.h"
#include "runas.h"
#include "shmem.h"
#include "stream.h"

#define PROGRESS_FILE "zerobus.progress"
#define PROGRESS_MAGIC 0x5A424350	/* "ZBCP" */
#define PROGRESS_VERSION 1

/* ======================================================================
 * Commit-time wake-ups
 * ====================================================================== */

typedef struct CdcWaiter
{
	Oid			dboid;			/* InvalidOid: free */
	int			procno;
} CdcWaiter;

typedef struct CdcShared
{
	pg_atomic_uint32 nwaiters;	/* zero: commits look no further */
	slock_t		mutex;			/* registering and leaving */
	int			max;
	CdcWaiter	w[FLEXIBLE_ARRAY_MEMBER];
} CdcShared;

static CdcShared *cdc_shared = NULL;
static int	cdc_my_waiter = -1;

static Size
cdc_shmem_size(void)
{
	return add_size(offsetof(CdcShared, w), mul_size(sizeof(CdcWaiter), zb_max_streams + 32));
}

void
zb_cdc_shmem_request(void)
{
	RequestAddinShmemSpace(cdc_shmem_size());
}

void
zb_cdc_shmem_startup(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	cdc_shared = ShmemInitStruct("zerobus_fdw cdc", cdc_shmem_size(), &found);
	if (!found)
	{
		memset(cdc_shared, 0, cdc_shmem_size());
		pg_atomic_init_u32(&cdc_shared->nwaiters, 0);
		SpinLockInit(&cdc_shared->mutex);
		cdc_shared->max = zb_max_streams + 32;
	}
	LWLockRelease(AddinShmemInitLock);
}

static void
cdc_leave_waiters(int code, Datum arg)
{
	if (cdc_shared == NULL || cdc_my_waiter < 0)
		return;
	SpinLockAcquire(&cdc_shared->mutex);
	cdc_shared->w[cdc_my_waiter].dboid = InvalidOid;
	cdc_shared->w[cdc_my_waiter].procno = -1;
	SpinLockRelease(&cdc_shared->mutex);
	pg_atomic_fetch_sub_u32(&cdc_shared->nwaiters, 1);
	cdc_my_waiter = -1;
}

/* Be woken by commits in this database (until the process exits). */
static bool
cdc_join_waiters(void)
{
	int			i;
	static bool registered = false;

	if (cdc_shared == NULL)
		return false;
	if (cdc_my_waiter >= 0)
		return true;
	SpinLockAcquire(&cdc_shared->mutex);
	for (i = 0; i < cdc_shared->max; i++)
	{
		if (!OidIsValid(cdc_shared->w[i].dboid))
		{
			cdc_shared->w[i].procno = GetNumberFromPGProc(MyProc);
			cdc_shared->w[i].dboid = MyDatabaseId;
			cdc_my_waiter = i;
			break;
		}
	}
	SpinLockRelease(&cdc_shared->mutex);
	if (cdc_my_waiter < 0)
		return false;			/* all taken: the caller polls */
	pg_atomic_fetch_add_u32(&cdc_shared->nwaiters, 1);
	if (!registered)
	{
		before_shmem_exit(cdc_leave_waiters, (Datum) 0);
		registered = true;
	}
	return true;
}

/* After a commit that wrote: wake this database's waiters. */
static void
cdc_wake_waiters(void)
{
	int			i;

	if (cdc_shared == NULL || pg_atomic_read_u32(&cdc_shared->nwaiters) == 0)
		return;
	/* unlocked reads: a stale entry wakes someone needlessly, which is harmless */
	for (i = 0; i < cdc_shared->max; i++)
	{
		CdcWaiter	w = cdc_shared->w[i];

		if (w.dboid == MyDatabaseId && w.procno >= 0 && i != cdc_my_waiter)
			SetLatch(&GetPGProcByNumber(w.procno)->procLatch);
	}
}

/* ======================================================================
 * Transaction callback: wake-ups, slot drops at commit, forgotten snapshots
 * ====================================================================== */

static bool cdc_xact_wrote = false;
static List *cdc_drop_slots = NIL;	/* names, in TopMemoryContext */
static bool cdc_drop_database_slots = false;
static ZbCdc *cdc_copying = NULL;	/* holds a registered snapshot and a scan */

static void cdc_forget_copy(ZbCdc *cdc);
static void cdc_drop_now(const char *name, bool missing_ok);

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
cdc_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			cdc_xact_wrote = TransactionIdIsValid(GetTopTransactionIdIfAny());
			/* errors are still allowed here: a slot that cannot go stops the commit */
			if (cdc_drop_slots != NIL || cdc_drop_database_slots)
				cdc_drop_pending();
			return;
		case XACT_EVENT_COMMIT:
			if (cdc_xact_wrote)
				cdc_wake_waiters();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			break;
		default:
			return;
	}
	cdc_xact_wrote = false;
	list_free_deep(cdc_drop_slots);
	cdc_drop_slots = NIL;
	cdc_drop_database_slots = false;
	/* the transaction's resource owner released the snapshot and the scan */
	if (cdc_copying)
		cdc_forget_copy(cdc_copying);
}

/* From _PG_init: every backend wakes waiters when it commits. */
void
zb_cdc_init(void)
{
	RegisterXactCallback(cdc_xact_callback, NULL);
}

/* ======================================================================
 * Slots
 * ====================================================================== */

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
static void
cdc_write_progress(const char *slot_name, const ZbCdcProgress *p)
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

/* ======================================================================
 * The driver
 * ====================================================================== */

/* A transaction whose records were emitted and are not all acknowledged. */
typedef struct CdcTxn
{
	XLogRecPtr	commit_lsn;
	XLogRecPtr	end_lsn;
	int64		first_seq;		/* of its first record not acknowledged */
	uint64		first_index;	/* that record's position in the transaction */
	int64		n;				/* records emitted and not acknowledged */
	bool		complete;		/* its last record was emitted */
} CdcTxn;

struct ZbCdc
{
	MemoryContext cxt;
	ZbCdcConfig cfg;
	char		slot_name[NAMEDATALEN];
	bool		ephemeral;
	bool		have_slot;		/* MyReplicationSlot is ours */
	LogicalDecodingContext *ctx;	/* for decoding; NULL until needed */

	/* the initial snapshot and the copy */
	Snapshot	snapshot;		/* registered, or NULL */
	XLogRecPtr	consistent_lsn;
	TimestampTz snapshot_time;
	List	   *copy_rels;		/* leaves, in OID order */
	ListCell   *copy_next;
	Relation	copy_rel;
	TableScanDesc copy_scan;
	TupleTableSlot *copy_slot;
	AttrMap    *copy_map;
	ZbRecordSchema *copy_schema;
	ZbCdcEncoder *copy_enc;
	Datum	   *copy_values;
	bool	   *copy_isnull;
	uint64		copy_rows;
	bool		copying;		/* between zb_cdc_create(snapshot) and zb_cdc_copy_done */

	/* acknowledgements */
	ZbCdcProgress progress;		/* acknowledged */
	int64		next_seq;		/* of the next record emitted */
	CdcTxn	   *txns;			/* oldest first */
	int			ntxns;
	int			maxtxns;
	XLogRecPtr	confirmed;
	bool		in_decode;

	/* the sink of the current call, behind ours */
	ZbCdcSink	inner;
	ZbCdcSink  *outer;
	int64		call_records;
	int64		call_bytes;
};

/* Run as the capture role, under the rule of runas.c. */
typedef struct CdcAs
{
	Oid			save_userid;
	int			save_sec;
} CdcAs;

static void
cdc_as_begin(ZbCdc *cdc, CdcAs *as)
{
	GetUserIdAndSecContext(&as->save_userid, &as->save_sec);
	SetUserIdAndSecContext(OidIsValid(cdc->cfg.role) ? cdc->cfg.role : as->save_userid,
						   as->save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
}

static void
cdc_as_end(CdcAs *as)
{
	SetUserIdAndSecContext(as->save_userid, as->save_sec);
}

ZbCdc *
zb_cdc_open(const ZbCdcConfig *cfg, MemoryContext parent)
{
	MemoryContext cxt = AllocSetContextCreate(parent, "zerobus_fdw change capture",
											  ALLOCSET_DEFAULT_SIZES);
	ZbCdc	   *cdc = MemoryContextAllocZero(cxt, sizeof(ZbCdc));

	cdc->cxt = cxt;
	cdc->cfg = *cfg;
	strlcpy(cdc->slot_name, cfg->slot_name, NAMEDATALEN);
	cdc->cfg.slot_name = cdc->slot_name;
	cdc->progress.next_seq = cfg->seq_base;
	cdc->next_seq = cfg->seq_base;
	return cdc;
}

const ZbCdcProgress *
zb_cdc_progress(ZbCdc *cdc)
{
	return &cdc->progress;
}

XLogRecPtr
zb_cdc_confirmed(ZbCdc *cdc)
{
	return cdc->confirmed;
}

/*
 * Acquire the stream's slot.  An established stream (its initial copy
 * committed) must find its slot and progress record; a stream that is not
 * established yet starts over: a slot left by an interrupted copy is
 * dropped.  *detail says why for ZB_CDC_LOST, ZB_CDC_INVALID, ZB_CDC_BUSY.
 */
ZbCdcStart
zb_cdc_start(ZbCdc *cdc, bool established, char **detail)
{
	ReplicationSlot *s;
	pid_t		active = 0;
	bool		invalid = false;

	*detail = NULL;
	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	s = SearchNamedReplicationSlot(cdc->slot_name, false);
	if (s)
	{
		SpinLockAcquire(&s->mutex);
		active = s->active_pid;
		invalid = zb_slot_invalidated(s);
		SpinLockRelease(&s->mutex);
	}
	LWLockRelease(ReplicationSlotControlLock);

	if (s == NULL)
	{
		if (!established)
			return ZB_CDC_CREATE;
		*detail = psprintf("replication slot \"%s\" no longer exists (dropped by hand, or this server was restored or promoted); changes since the last acknowledgement may be missing",
						   cdc->slot_name);
		return ZB_CDC_LOST;
	}
	if (active != 0 && active != MyProcPid)
	{
		*detail = psprintf("replication slot \"%s\" is in use by process %d",
						   cdc->slot_name, (int) active);
		return ZB_CDC_BUSY;
	}
	if (invalid)
	{
		*detail = psprintf("replication slot \"%s\" was invalidated: the WAL it needed was removed (max_slot_wal_keep_size) or it was too old",
						   cdc->slot_name);
		return ZB_CDC_INVALID;
	}
	if (!established)
	{
		/* a copy that never finished: start over */
		cdc_drop_now(cdc->slot_name, true);
		return ZB_CDC_CREATE;
	}
	zb_slot_acquire(cdc->slot_name, true);
	cdc->have_slot = true;
	if (!zb_cdc_read_progress(cdc->slot_name, &cdc->progress))
	{
		ReplicationSlotRelease();
		cdc->have_slot = false;
		*detail = psprintf("the progress record of replication slot \"%s\" is missing or damaged, so the _seq of its next changes is unknown",
						   cdc->slot_name);
		return ZB_CDC_LOST;
	}
	cdc->next_seq = cdc->progress.next_seq;
	cdc->confirmed = MyReplicationSlot->data.confirmed_flush;
	return ZB_CDC_STREAM;
}

static void
cdc_noop_write(LogicalDecodingContext *ctx, XLogRecPtr lsn, TransactionId xid, bool last_write)
{
}

/*
 * Create the stream's slot (ephemeral: dropped when released, for
 * peek_changes) in this process.  With 'snapshot', this must be the first
 * thing of its transaction, which has taken no snapshot yet: the
 * transaction becomes REPEATABLE READ with the snapshot at the slot's
 * consistent point, which zb_cdc_copy() reads the table with (as
 * walsender's CREATE_REPLICATION_SLOT … (SNAPSHOT 'use') does).  In any
 * case the transaction must not have an xid.  The slot stays acquired.
 */
void
zb_cdc_create(ZbCdc *cdc, bool ephemeral, bool snapshot)
{
	LogicalDecodingContext *ctx;
	MemoryContext old;

	CheckLogicalDecodingRequirements();
	Assert(MyReplicationSlot == NULL);
	if (snapshot)
	{
		if (!IsTransactionState() || IsSubTransaction() || FirstSnapshotSet)
			elog(ERROR, "the initial snapshot of a change capture needs a transaction that has taken no snapshot");
		/* the way SnapBuildExportSnapshot() sets it: before the first snapshot */
		XactIsoLevel = XACT_REPEATABLE_READ;
	}
	cdc->ephemeral = ephemeral;
	/* ephemeral until persisted at the end: an error on the way drops it */
	zb_slot_create(cdc->slot_name, RS_EPHEMERAL);
	cdc->have_slot = true;
	old = MemoryContextSwitchTo(cdc->cxt);
	ctx = CreateInitDecodingContext(ZB_CDC_PLUGIN, NIL, snapshot, InvalidXLogRecPtr,
									XL_ROUTINE(.page_read = read_local_xlog_page,
											   .segment_open = wal_segment_open,
											   .segment_close = wal_segment_close),
									cdc_noop_write, cdc_noop_write, NULL);
	MemoryContextSwitchTo(old);
	DecodingContextFindStartpoint(ctx);
	cdc->consistent_lsn = MyReplicationSlot->data.confirmed_flush;
	cdc->confirmed = cdc->consistent_lsn;
	cdc->snapshot_time = GetCurrentTimestamp();
	if (snapshot)
	{
		Snapshot	snap;

		/* a catalog lookup's snapshot would have set our xmin: forget it */
		InvalidateCatalogSnapshot();
		snap = SnapBuildInitialSnapshot(ctx->snapshot_builder);
		RestoreTransactionSnapshot(snap, MyProc);
		cdc->snapshot = RegisterSnapshot(GetTransactionSnapshot());
		cdc->copying = true;
		cdc->copy_rels = NIL;
		cdc->copy_next = NULL;
		cdc->copy_rows = 0;
		cdc_copying = cdc;
	}
	FreeDecodingContext(ctx);
	if (!ephemeral)
		ReplicationSlotPersist();
	cdc->progress.next_seq = cdc->cfg.seq_base;
	cdc->progress.acked_end = InvalidXLogRecPtr;
	cdc->progress.acked_in_txn = 0;
	cdc->next_seq = cdc->cfg.seq_base;
}

/* The end of the transaction that held the copy's snapshot and scan. */
static void
cdc_forget_copy(ZbCdc *cdc)
{
	cdc->snapshot = NULL;
	cdc->copy_scan = NULL;
	cdc->copy_rel = NULL;
	cdc->copy_slot = NULL;
	if (cdc_copying == cdc)
		cdc_copying = NULL;
}

static void
cdc_copy_end_rel(ZbCdc *cdc)
{
	if (cdc->copy_scan)
		table_endscan(cdc->copy_scan);
	if (cdc->copy_slot)
		ExecDropSingleTupleTableSlot(cdc->copy_slot);
	if (cdc->copy_rel)
		table_close(cdc->copy_rel, AccessShareLock);
	if (cdc->copy_map)
		free_attrmap(cdc->copy_map);
	cdc->copy_scan = NULL;
	cdc->copy_slot = NULL;
	cdc->copy_rel = NULL;
	cdc->copy_map = NULL;
}

/*
 * Send up to max_records rows of the table, as it was at the slot's
 * consistent point, to the sink as 'insert' records; false once every row
 * was sent.  Must run in the transaction of zb_cdc_create(); the sink may
 * block and call zb_cdc_ack().
 */
bool
zb_cdc_copy(ZbCdc *cdc, ZbCdcSink *sink, int64 max_records)
{
	int64		n = 0;
	CdcAs		as;
	bool		more = true;

	if (!cdc->copying || cdc->snapshot == NULL)
		elog(ERROR, "the initial snapshot of the change capture is gone (its transaction ended)");
	cdc_as_begin(cdc, &as);
	if (cdc->copy_schema == NULL)
	{
		Relation	root = table_open(cdc->cfg.source, AccessShareLock);
		MemoryContext old = MemoryContextSwitchTo(cdc->cxt);
		char	   *hint;
		int			sqlstate;
		char	   *problem = zb_record_cdc_problem(RelationGetDescr(root),
													RelationGetRelationName(root), &hint,
													&sqlstate);

		if (problem)
			ereport(ERROR,
					(errcode(sqlstate), errmsg_internal("%s", problem),
					 hint ? errhint("%s", hint) : 0));
		cdc->copy_schema = zb_record_schema_cdc(RelationGetDescr(root), RelationGetRelationName(root));
		cdc->copy_values = palloc(sizeof(Datum) * cdc->copy_schema->nvalues);
		cdc->copy_isnull = palloc(sizeof(bool) * cdc->copy_schema->nvalues);
		cdc->copy_enc = zb_cdc_encoder_create(cdc->cfg.json, cdc->cxt);
		if (root->rd_rel->relkind == RELKIND_PARTITIONED_TABLE)
		{
			List	   *all = find_all_inheritors(cdc->cfg.source, AccessShareLock, NULL);
			ListCell   *lc;

			foreach(lc, all)
				if (get_rel_relkind(lfirst_oid(lc)) == RELKIND_RELATION)
					cdc->copy_rels = lappend_oid(cdc->copy_rels, lfirst_oid(lc));
			list_sort(cdc->copy_rels, list_oid_cmp);
		}
		else
			cdc->copy_rels = list_make1_oid(cdc->cfg.source);
		cdc->copy_next = list_head(cdc->copy_rels);
		MemoryContextSwitchTo(old);
		table_close(root, AccessShareLock);
		sink->schema(sink, cdc->copy_schema);
	}

	while (n < max_records)
	{
		CHECK_FOR_INTERRUPTS();
		if (cdc->copy_scan == NULL)
		{
			Relation	root;
			MemoryContext old;

			if (cdc->copy_next == NULL)
			{
				more = false;
				break;
			}
			cdc->copy_rel = table_open(lfirst_oid(cdc->copy_next), AccessShareLock);
			cdc->copy_next = lnext(cdc->copy_rels, cdc->copy_next);
			root = table_open(cdc->cfg.source, AccessShareLock);
			old = MemoryContextSwitchTo(cdc->cxt);
			cdc->copy_map = RelationGetRelid(cdc->copy_rel) == cdc->cfg.source ? NULL
				: zb_attrmap_by_name_if_req(RelationGetDescr(cdc->copy_rel), RelationGetDescr(root));
			MemoryContextSwitchTo(old);
			table_close(root, AccessShareLock);
			cdc->copy_slot = table_slot_create(cdc->copy_rel, NULL);
			/* physical order from block 0: no synchronized scan */
			cdc->copy_scan = table_beginscan_strat(cdc->copy_rel, cdc->snapshot, 0, NULL,
												   true, false);
		}
		if (!table_scan_getnextslot(cdc->copy_scan, ForwardScanDirection, cdc->copy_slot))
		{
			cdc_copy_end_rel(cdc);
			continue;
		}
		slot_getallattrs(cdc->copy_slot);
		{
			int			natts = cdc->copy_schema->nvalues - ZB_CDC_NFIELDS;
			ZbCdcRecord rec;
			int			i;

			for (i = 0; i < natts; i++)
			{
				AttrNumber	a = cdc->copy_map == NULL ? i + 1
					: (i < cdc->copy_map->maplen ? cdc->copy_map->attnums[i] : 0);

				if (a > 0 && a <= cdc->copy_slot->tts_nvalid)
				{
					cdc->copy_values[i] = cdc->copy_slot->tts_values[a - 1];
					cdc->copy_isnull[i] = cdc->copy_slot->tts_isnull[a - 1];
				}
				else
				{
					cdc->copy_values[i] = (Datum) 0;
					cdc->copy_isnull[i] = true;
				}
			}
			memset(&rec, 0, sizeof(rec));
			rec.seq = cdc->next_seq++;
			rec.change = ZB_CDC_INSERT;
			rec.commit_lsn = cdc->consistent_lsn;
			rec.end_lsn = cdc->consistent_lsn;
			rec.commit_time = cdc->snapshot_time;
			rec.txn_index = cdc->copy_rows++;
			zb_cdc_encoder_emit(cdc->copy_enc, cdc->copy_schema, cdc->copy_values,
								cdc->copy_isnull, &rec, sink);
		}
		n++;
	}
	cdc_as_end(&as);
	return more;
}

/*
 * The copy is over and every record of it acknowledged: forget the
 * snapshot, write the first progress record, and release the slot's data
 * xmin (it would hold back every table's VACUUM) by releasing and
 * re-acquiring the slot.  The caller then marks the stream established
 * (cdc_started_at) and commits.  Also right after zb_cdc_create() without
 * a snapshot.
 */
void
zb_cdc_copy_done(ZbCdc *cdc)
{
	cdc_copy_end_rel(cdc);
	if (cdc->snapshot)
		UnregisterSnapshot(cdc->snapshot);
	cdc_forget_copy(cdc);
	cdc->copying = false;
	cdc->progress.next_seq = cdc->next_seq;
	cdc->progress.acked_end = InvalidXLogRecPtr;
	cdc->progress.acked_in_txn = 0;
	if (cdc->ephemeral)
		return;
	cdc_write_progress(cdc->slot_name, &cdc->progress);
	ReplicationSlotRelease();
	cdc->have_slot = false;
	zb_slot_acquire(cdc->slot_name, true);
	cdc->have_slot = true;
}

/* ---------- decoding ---------- */

static void
cdc_inner_schema(ZbCdcSink *sink, const ZbRecordSchema *schema)
{
	ZbCdc	   *cdc = sink->arg;

	cdc->outer->schema(cdc->outer, schema);
}

static void
cdc_inner_record(ZbCdcSink *sink, const ZbCdcRecord *rec)
{
	ZbCdc	   *cdc = sink->arg;
	CdcTxn	   *t = cdc->ntxns > 0 ? &cdc->txns[cdc->ntxns - 1] : NULL;

	if (t == NULL || t->end_lsn != rec->end_lsn)
	{
		if (cdc->ntxns == cdc->maxtxns)
		{
			cdc->maxtxns = Max(64, cdc->maxtxns * 2);
			cdc->txns = cdc->txns
				? repalloc(cdc->txns, sizeof(CdcTxn) * cdc->maxtxns)
				: MemoryContextAlloc(cdc->cxt, sizeof(CdcTxn) * cdc->maxtxns);
		}
		t = &cdc->txns[cdc->ntxns++];
		t->commit_lsn = rec->commit_lsn;
		t->end_lsn = rec->end_lsn;
		t->first_seq = rec->seq;
		t->first_index = rec->txn_index;
		t->n = 0;
		t->complete = false;
	}
	t->n++;
	cdc->next_seq = rec->seq + 1;
	cdc->call_records++;
	cdc->call_bytes += rec->len;
	cdc->outer->record(cdc->outer, rec);
}

static void
cdc_inner_commit(ZbCdcSink *sink, XLogRecPtr commit_lsn, XLogRecPtr end_lsn, uint64 nrecords)
{
	ZbCdc	   *cdc = sink->arg;
	CdcTxn	   *t = cdc->ntxns > 0 ? &cdc->txns[cdc->ntxns - 1] : NULL;

	if (t && t->end_lsn == end_lsn)
	{
		t->complete = true;
		/* already acknowledged to its last record: the progress record covers it */
		if (t->n == 0)
			cdc->ntxns--;
	}
	if (cdc->outer->commit)
		cdc->outer->commit(cdc->outer, commit_lsn, end_lsn, nrecords);
}

static void
cdc_confirm(ZbCdc *cdc, XLogRecPtr lsn)
{
	if (cdc->ephemeral || cdc->cfg.no_confirm || !cdc->have_slot || lsn <= cdc->confirmed)
		return;
	LogicalConfirmReceivedLocation(lsn);
	cdc->confirmed = lsn;
}

static void
cdc_start_decoding(ZbCdc *cdc)
{
	ZbCdcPluginOptions opts;
	MemoryContext old;

	opts.source = cdc->cfg.source;
	opts.json = cdc->cfg.json;
	opts.preimage = cdc->cfg.preimage;
	old = MemoryContextSwitchTo(cdc->cxt);
	/* from the slot's confirmed position */
	cdc->ctx = CreateDecodingContext(InvalidXLogRecPtr, zb_cdc_plugin_options(&opts), false,
									 XL_ROUTINE(.page_read = read_local_xlog_page,
												.segment_open = wal_segment_open,
												.segment_close = wal_segment_close),
									 cdc_noop_write, cdc_noop_write, NULL);
	MemoryContextSwitchTo(old);
	if (XLogRecPtrIsInvalid(MyReplicationSlot->data.restart_lsn))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("replication slot \"%s\" has no WAL reserved any more", cdc->slot_name),
				 errdetail("It was invalidated."),
				 errhint("SELECT zerobus.resync_stream(…); starts the stream over.")));
	cdc->inner.schema = cdc_inner_schema;
	cdc->inner.record = cdc_inner_record;
	cdc->inner.commit = cdc_inner_commit;
	cdc->inner.arg = cdc;
	zb_cdc_plugin_bind(cdc->ctx, &cdc->inner, &cdc->progress);
	/* the transactions it replays start at the restart position */
	XLogBeginRead(cdc->ctx->reader, MyReplicationSlot->data.restart_lsn);
	cdc->ntxns = 0;
	cdc->next_seq = cdc->progress.next_seq;
}

/*
 * Decode into 'sink' from where the last call stopped (the first call: from
 * the slot's confirmed position, skipping what the progress record says is
 * acknowledged), until max_records records (or max_bytes bytes, 0: no
 * limit) were emitted, or everything flushed when the call began was read.
 * A transaction is replayed whole once its commit is read, so a call can
 * emit more than asked.
 */
ZbCdcDecoded
zb_cdc_decode(ZbCdc *cdc, ZbCdcSink *sink, int64 max_records, int64 max_bytes)
{
	XLogRecPtr	end_of_wal;
	ResourceOwner owner = CurrentResourceOwner;
	bool		bound = false;
	bool		in_xact = IsTransactionState();
	CdcAs		as;

	if (!cdc->have_slot)
		elog(ERROR, "change capture: replication slot \"%s\" is not acquired", cdc->slot_name);
	cdc_as_begin(cdc, &as);
	if (in_xact)
		InvalidateSystemCaches();	/* no time-travel entries into or out of the caller's caches */
	if (cdc->ctx == NULL)
		cdc_start_decoding(cdc);
	if (cdc->inner.want_json != sink->want_json)
		cdc->inner.want_json = sink->want_json;
	cdc->outer = sink;
	cdc->call_records = 0;
	cdc->call_bytes = 0;
	end_of_wal = GetFlushRecPtr(NULL);

	cdc->in_decode = true;
	while (cdc->ctx->reader->EndRecPtr < end_of_wal)
	{
		XLogRecord *record;
		char	   *errm = NULL;

		record = XLogReadRecord(cdc->ctx->reader, &errm);
		if (errm)
			elog(ERROR, "could not read the WAL for change capture: %s", errm);
		if (record != NULL)
			LogicalDecodingProcessRecord(cdc->ctx, cdc->ctx->reader);
		if (cdc->call_records >= max_records || (max_bytes > 0 && cdc->call_bytes >= max_bytes))
		{
			bound = true;
			break;
		}
		CHECK_FOR_INTERRUPTS();
	}
	cdc->in_decode = false;
	/* decoding can leave another resource owner current (as logicalfuncs.c notes) */
	CurrentResourceOwner = owner;
	if (in_xact)
		InvalidateSystemCaches();
	cdc_as_end(&as);

	/* nothing unacknowledged: the slot can move past what was read */
	if (cdc->ntxns == 0)
		cdc_confirm(cdc, cdc->ctx->reader->EndRecPtr);
	return bound ? ZB_CDC_BOUND : ZB_CDC_CAUGHT_UP;
}

/*
 * ZeroBus acknowledged every record up to 'seq' as durable: write the
 * progress record, then confirm the slot (docs/DESIGN.md, "Durability").
 * May be called from inside a sink callback.
 */
void
zb_cdc_ack(ZbCdc *cdc, int64 seq)
{
	XLogRecPtr	confirm = InvalidXLogRecPtr;
	int			done = 0;

	if (seq < cdc->progress.next_seq)
		return;
	if (seq >= cdc->next_seq)
		elog(ERROR, "change capture: acknowledgement of _seq " INT64_FORMAT " not sent yet (next " INT64_FORMAT ")",
			 seq, cdc->next_seq);
	if (cdc->copying)
	{
		/* snapshot rows: the progress record is written when the copy is done */
		cdc->progress.next_seq = seq + 1;
		return;
	}
	while (done < cdc->ntxns)
	{
		CdcTxn	   *t = &cdc->txns[done];
		int64		last = t->first_seq + t->n - 1;

		if (seq >= last && t->complete)
		{
			/* all of it */
			cdc->progress.acked_end = t->end_lsn;
			cdc->progress.acked_in_txn = ZB_CDC_ALL;
			confirm = t->end_lsn;
			done++;
			if (seq == last)
				break;
			continue;
		}
		/* part of it: acknowledged up to seq (possibly all emitted so far) */
		{
			int64		k = Min(seq, last) - t->first_seq + 1;

			t->first_index += k;
			t->first_seq += k;
			t->n -= k;
			cdc->progress.acked_end = t->end_lsn;
			cdc->progress.acked_in_txn = t->first_index;
			confirm = t->commit_lsn;
		}
		break;
	}
	if (done > 0)
	{
		memmove(cdc->txns, cdc->txns + done, sizeof(CdcTxn) * (cdc->ntxns - done));
		cdc->ntxns -= done;
	}
	cdc->progress.next_seq = seq + 1;
	if (!cdc->ephemeral && !cdc->cfg.no_confirm)
		cdc_write_progress(cdc->slot_name, &cdc->progress);
	if (cdc->ntxns == 0 && !cdc->in_decode && cdc->ctx)
		confirm = Max(confirm, cdc->ctx->reader->EndRecPtr);
	if (!XLogRecPtrIsInvalid(confirm))
		cdc_confirm(cdc, confirm);
}

/*
 * Sleep until a transaction of this database commits, the latch is set,
 * or timeout_ms passes.
 */
void
zb_cdc_wait(ZbCdc *cdc, long timeout_ms)
{
	int			rc;

	if (!cdc_join_waiters())
		timeout_ms = Min(timeout_ms, 100);
	rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, timeout_ms,
				   PG_WAIT_EXTENSION);
	if (rc & WL_LATCH_SET)
		ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

/*
 * Free the decoding context and release the slot (an ephemeral slot goes
 * with it).  Also after an ERROR, once the transaction is aborted.
 */
void
zb_cdc_close(ZbCdc *cdc)
{
	if (cdc->ctx)
	{
		if (MyReplicationSlot != NULL)
			FreeDecodingContext(cdc->ctx);
		cdc->ctx = NULL;
	}
	if (cdc->snapshot && IsTransactionState() && cdc_copying == cdc)
	{
		cdc_copy_end_rel(cdc);
		UnregisterSnapshot(cdc->snapshot);
	}
	cdc_forget_copy(cdc);
	cdc->copying = false;
	if (cdc->have_slot && MyReplicationSlot != NULL)
		ReplicationSlotRelease();
	cdc->have_slot = false;
	cdc->ntxns = 0;
	/* (outside a transaction, the replays' own aborts cleaned the caches) */
	if (IsTransactionState())
		InvalidateSystemCaches();
}

/* ======================================================================
 * Who may capture what
 * ====================================================================== */

/*
 * The capture role must own the table, or have REPLICATION (or be
 * superuser) and SELECT on it; USAGE on its schema; and no row-level
 * security may apply to it on the table or its partitions (the copy and the
 * decoding read every row below the executor).  NULL, or the problem with
 * the statement that fixes it.
 */
char *
zb_cdc_capture_problem(Oid source, Oid role, int *sqlstate, char **hint)
{
	HeapTuple	tup;
	Form_pg_authid auth;
	bool		replication;
	bool		super;
	char	   *rolename;
	char	   *relname;
	Oid			nsp;
	List	   *rels;
	ListCell   *lc;

	*sqlstate = ERRCODE_INSUFFICIENT_PRIVILEGE;
	*hint = NULL;
	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(role));
	if (!HeapTupleIsValid(tup))
		return psprintf("the capture role (OID %u) no longer exists", role);
	auth = (Form_pg_authid) GETSTRUCT(tup);
	replication = auth->rolreplication;
	super = auth->rolsuper;
	rolename = pstrdup(NameStr(auth->rolname));
	ReleaseSysCache(tup);
	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(source)))
	{
		*sqlstate = ERRCODE_UNDEFINED_TABLE;
		return psprintf("the source table (OID %u) no longer exists", source);
	}
	nsp = get_rel_namespace(source);
	relname = quote_qualified_identifier(get_namespace_name(nsp), get_rel_name(source));
	if (object_aclcheck(NamespaceRelationId, nsp, role, ACL_USAGE) != ACLCHECK_OK)
	{
		*hint = psprintf("GRANT USAGE ON SCHEMA %s TO %s;",
						 quote_identifier(get_namespace_name(nsp)), quote_identifier(rolename));
		return psprintf("role \"%s\" has no USAGE on the schema of table %s", rolename, relname);
	}
	if (!object_ownercheck(RelationRelationId, source, role))
	{
		if (!replication && !super)
		{
			*hint = psprintf("Capture as the table's owner, or ALTER ROLE %s REPLICATION;",
							 quote_identifier(rolename));
			return psprintf("role \"%s\" neither owns table %s nor has the REPLICATION attribute",
							rolename, relname);
		}
		if (pg_class_aclcheck(source, role, ACL_SELECT) != ACLCHECK_OK)
		{
			*hint = psprintf("GRANT SELECT ON %s TO %s;", relname, quote_identifier(rolename));
			return psprintf("role \"%s\" has no SELECT privilege on table %s", rolename, relname);
		}
	}
	rels = get_rel_relkind(source) == RELKIND_PARTITIONED_TABLE
		? find_all_inheritors(source, NoLock, NULL) : list_make1_oid(source);
	foreach(lc, rels)
	{
		Oid			relid = lfirst_oid(lc);

		if (check_enable_rls(relid, role, true) == RLS_ENABLED)
		{
			*hint = psprintf("ALTER TABLE %s NO FORCE ROW LEVEL SECURITY; or capture as a role row-level security does not apply to (the owner, or a role with BYPASSRLS).",
							 quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
														get_rel_name(relid)));
			return psprintf("row-level security applies to role \"%s\" on table %s, so it may not read every row",
							rolename, get_rel_name(relid));
		}
	}
	return NULL;
}

/* Does output_plugin_libraries (a GUC list) name our plugin? */
static bool
cdc_plugin_trusted(const char *allowed)
{
	char	   *copy = pstrdup(allowed);
	List	   *names = NIL;
	ListCell   *lc;

	if (!SplitGUCList(copy, ',', &names))
		return false;
	foreach(lc, names)
		if (strcmp(lfirst(lc), ZB_CDC_PLUGIN) == 0)
			return true;
	return false;
}

/*
 * Can this table's changes be captured at all?  wal_level, a free slot, the
 * kind of table, its replica identity, its columns.  NULL, or the problem
 * (*sqlstate, *hint).  *warning: something that works but may stop the
 * stream later (an UPDATE keeping a TOASTed value without REPLICA IDENTITY
 * FULL): the message, a newline, and its hint.
 */
char *
zb_cdc_source_problem(Oid source, bool preimage, int *sqlstate, char **hint, char **warning)
{
	Relation	rel;
	char	   *relname;
	char	   *problem = NULL;
	List	   *leaves = NIL;
	ListCell   *lc;
	int			free_slots = 0;
	int			i;
	const char *allowed;

	*hint = NULL;
	*warning = NULL;
	*sqlstate = ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE;
	if (wal_level < WAL_LEVEL_LOGICAL)
	{
		*hint = pstrdup("ALTER SYSTEM SET wal_level = logical; then restart the server (wal_level takes effect only at a restart).");
		return pstrdup("change capture needs wal_level = logical");
	}
	/*
	 * Minor releases from 2026 on (15.20, 18.6) load as an output plugin only
	 * a library output_plugin_libraries names, for every user.
	 */
	allowed = GetConfigOption("output_plugin_libraries", true, false);
	if (allowed != NULL && !cdc_plugin_trusted(allowed))
	{
		/* a list: each name its own literal, or ALTER SYSTEM keeps one long name */
		StringInfoData list;
		char	   *copy = pstrdup(allowed);
		List	   *names = NIL;
		ListCell   *name;

		initStringInfo(&list);
		if (SplitGUCList(copy, ',', &names))
			foreach(name, names)
				appendStringInfo(&list, "%s, ", quote_literal_cstr(lfirst(name)));
		*hint = psprintf("ALTER SYSTEM SET output_plugin_libraries = %s'" ZB_CDC_PLUGIN "'; SELECT pg_reload_conf();",
						 list.data);
		return pstrdup("output_plugin_libraries does not name zerobus_fdw, so PostgreSQL refuses it as the output plugin of change capture");
	}
	if (max_replication_slots > 0)
	{
		LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
		for (i = 0; i < max_replication_slots; i++)
			if (!ReplicationSlotCtl->replication_slots[i].in_use)
				free_slots++;
		LWLockRelease(ReplicationSlotControlLock);
	}
	if (free_slots == 0)
	{
		*sqlstate = ERRCODE_CONFIGURATION_LIMIT_EXCEEDED;
		*hint = psprintf("Each change capture stream uses a replication slot: ALTER SYSTEM SET max_replication_slots = %d; then restart the server, or drop unused slots (pg_replication_slots).",
						 max_replication_slots + 10);
		return psprintf("all %d replication slots are in use (max_replication_slots)",
						max_replication_slots);
	}

	rel = table_open(source, AccessShareLock);
	relname = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
										 RelationGetRelationName(rel));
	if (rel->rd_rel->relkind != RELKIND_RELATION &&
		rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
	{
		*sqlstate = ERRCODE_WRONG_OBJECT_TYPE;
		*hint = pstrdup("Capture an ordinary or a partitioned table.");
		problem = psprintf("\"%s\" is not a table whose changes can be captured", relname);
	}
	else if (rel->rd_rel->relpersistence != RELPERSISTENCE_PERMANENT)
	{
		*hint = rel->rd_rel->relpersistence == RELPERSISTENCE_UNLOGGED
			? psprintf("ALTER TABLE %s SET LOGGED;", relname) : NULL;
		problem = psprintf("table %s is not logged, so its changes are not in the WAL", relname);
	}
	else if (IsCatalogRelation(rel))
	{
		*sqlstate = ERRCODE_INSUFFICIENT_PRIVILEGE;
		problem = pstrdup("the changes of a system catalog cannot be captured");
	}
	else
	{
		char	   *cols_hint;
		int			cols_state;

		problem = zb_record_cdc_problem(RelationGetDescr(rel), RelationGetRelationName(rel),
										&cols_hint, &cols_state);
		if (problem)
		{
			*sqlstate = cols_state;
			*hint = cols_hint;
		}
	}
	if (problem == NULL)
	{
		if (rel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE)
			leaves = find_all_inheritors(source, AccessShareLock, NULL);
		else
			leaves = list_make1_oid(source);
	}
	foreach(lc, leaves)
	{
		Oid			relid = lfirst_oid(lc);
		char		kind = get_rel_relkind(relid);
		Relation	leaf;
		char	   *leafname;

		if (kind == RELKIND_PARTITIONED_TABLE)
			continue;
		leaf = relid == source ? rel : table_open(relid, AccessShareLock);
		leafname = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(leaf)),
											  RelationGetRelationName(leaf));
		if (kind != RELKIND_RELATION)
		{
			*sqlstate = ERRCODE_WRONG_OBJECT_TYPE;
			problem = psprintf("partition %s of table %s is not an ordinary table (a foreign table's rows are not in this server's WAL)",
							   leafname, relname);
		}
		else if (leaf->rd_rel->relpersistence != RELPERSISTENCE_PERMANENT)
		{
			*hint = psprintf("ALTER TABLE %s SET LOGGED;", leafname);
			problem = psprintf("partition %s is not logged, so its changes are not in the WAL",
							   leafname);
		}
		else
		{
			char		ident = leaf->rd_rel->relreplident;
			bool		has_key;

			list_free(RelationGetIndexList(leaf));
			has_key = ident == REPLICA_IDENTITY_FULL ||
				(ident == REPLICA_IDENTITY_INDEX && OidIsValid(RelationGetReplicaIndex(leaf))) ||
				(ident == REPLICA_IDENTITY_DEFAULT && OidIsValid(leaf->rd_pkindex));
			if (!has_key)
			{
				*hint = psprintf("Add a primary key, or ALTER TABLE %s REPLICA IDENTITY FULL; (or REPLICA IDENTITY USING INDEX).",
								 leafname);
				problem = psprintf("table %s has no replica identity, so the WAL would not say which row an UPDATE or DELETE changed",
								   leafname);
			}
			else if (preimage && ident != REPLICA_IDENTITY_FULL)
			{
				*hint = psprintf("ALTER TABLE %s REPLICA IDENTITY FULL;", leafname);
				problem = psprintf("update_preimage needs the old rows in the WAL: table %s has no REPLICA IDENTITY FULL",
								   leafname);
			}
			else if (ident != REPLICA_IDENTITY_FULL && *warning == NULL)
			{
				TupleDesc	td = RelationGetDescr(leaf);
				int			a;

				for (a = 0; a < td->natts; a++)
				{
					Form_pg_attribute att = TupleDescAttr(td, a);

					if (!att->attisdropped && att->attlen == -1 && att->attstorage != TYPSTORAGE_PLAIN)
					{
						*warning = psprintf("an UPDATE of %s that leaves column \"%s\" unchanged while its value is stored out of line (TOAST, values over about 2 kB) cannot be captured without REPLICA IDENTITY FULL, and would pause the stream\n"
											"ALTER TABLE %s REPLICA IDENTITY FULL; makes every UPDATE of it capturable (it logs whole old rows).",
											leafname, NameStr(att->attname), leafname);
						break;
					}
				}
			}
		}
		if (leaf != rel)
			table_close(leaf, AccessShareLock);
		if (problem)
			break;
	}
	table_close(rel, AccessShareLock);
	return problem;
}

/* ======================================================================
 * zerobus.peek_changes(stream, max_records, wait)
 *
 * A stream that is not established yet has no slot: what it would send is
 * an initial copy at a new slot's consistent point and the changes after
 * it.  The copy needs a transaction that has taken no snapshot, which a
 * SQL function is not, so a helper process does it: a background worker
 * that creates an ephemeral slot and copies the table exactly as the
 * stream's worker would, decodes what follows, and sends the records back
 * over a shared memory queue (its errors over a second one, as parallel
 * workers do).  An established stream is read from its own slot here.
 * ====================================================================== */

#define PEEK_QUEUE_SIZE (1024 * 1024)
#define PEEK_ERROR_QUEUE_SIZE (16 * 1024)

typedef struct PeekArgs
{
	Oid			dboid;
	Oid			role;
	Oid			source;
	bool		json;
	bool		preimage;
	bool		snapshot;
	int64		seq_base;
	int64		max_records;
	int64		wait_ms;
	int			caller_pid;
	char		slot_name[NAMEDATALEN];
} PeekArgs;

/* One record on the queue: this header, then data, json and error bytes. */
typedef struct PeekMsg
{
	int64		seq;
	int32		change;
	int32		has_data;
	XLogRecPtr	commit_lsn;
	TimestampTz commit_time;
	uint32		data_len;
	uint32		json_len;
	uint32		error_len;
} PeekMsg;

typedef struct PeekSink
{
	ZbCdcSink	sink;
	ReturnSetInfo *rsinfo;		/* the caller's result, or NULL in the helper */
	shm_mq_handle *mqh;			/* the helper's queue */
	int64		max;
	int64		stored;
} PeekSink;

static void
peek_schema(ZbCdcSink *sink, const ZbRecordSchema *schema)
{
}

static void
peek_store(PeekSink *ps, int64 seq, ZbCdcChange change, XLogRecPtr commit_lsn,
		   TimestampTz commit_time, const uint8 *data, size_t len, const char *json,
		   const char *error)
{
	Datum		values[7];
	bool		nulls[7];

	memset(nulls, false, sizeof(nulls));
	values[0] = Int64GetDatum(seq);
	values[1] = CStringGetTextDatum(zb_cdc_change_names[change]);
	values[2] = LSNGetDatum(commit_lsn);
	values[3] = TimestampTzGetDatum(commit_time);
	if (json)
		values[4] = DirectFunctionCall1(jsonb_in, CStringGetDatum(json));
	else
		nulls[4] = true;
	if (data)
	{
		bytea	   *b = palloc(VARHDRSZ + len);

		SET_VARSIZE(b, VARHDRSZ + len);
		memcpy(VARDATA(b), data, len);
		values[5] = PointerGetDatum(b);
	}
	else
		nulls[5] = true;
	if (error)
		values[6] = CStringGetTextDatum(error);
	else
		nulls[6] = true;
	tuplestore_putvalues(ps->rsinfo->setResult, ps->rsinfo->setDesc, values, nulls);
	ps->stored++;
}

static void
peek_record(ZbCdcSink *sink, const ZbCdcRecord *rec)
{
	PeekSink   *ps = (PeekSink *) sink;
	const char *json = rec->json ? rec->json : rec->dead_json;

	if (ps->stored >= ps->max)
		return;
	if (ps->rsinfo)
	{
		peek_store(ps, rec->seq, rec->change, rec->commit_lsn, rec->commit_time, rec->data,
				   rec->len, json, rec->error);
		return;
	}
	else
	{
		/* in the helper: to the caller */
		PeekMsg		m;
		shm_mq_iovec iov[4];
		int			n = 0;

		memset(&m, 0, sizeof(m));
		m.seq = rec->seq;
		m.change = rec->change;
		m.has_data = rec->data != NULL;
		m.commit_lsn = rec->commit_lsn;
		m.commit_time = rec->commit_time;
		m.data_len = rec->data ? rec->len : 0;
		m.json_len = json ? strlen(json) : 0;
		m.error_len = rec->error ? strlen(rec->error) : 0;
		iov[n].data = (const char *) &m;
		iov[n++].len = sizeof(m);
		if (m.data_len)
		{
			iov[n].data = (const char *) rec->data;
			iov[n++].len = m.data_len;
		}
		if (m.json_len)
		{
			iov[n].data = json;
			iov[n++].len = m.json_len;
		}
		if (m.error_len)
		{
			iov[n].data = rec->error;
			iov[n++].len = m.error_len;
		}
		if (shm_mq_sendv(ps->mqh, iov, n, false, true) != SHM_MQ_SUCCESS)
			proc_exit(0);		/* the caller is gone */
		ps->stored++;
	}
}

/* Decode into the sink until max records, or the deadline once caught up. */
static void
peek_decode(ZbCdc *cdc, PeekSink *ps, TimestampTz deadline)
{
	while (ps->stored < ps->max)
	{
		long		left;

		if (zb_cdc_decode(cdc, &ps->sink, ps->max - ps->stored, 0) == ZB_CDC_BOUND)
			continue;
		left = (long) ((deadline - GetCurrentTimestamp()) / 1000);
		if (left <= 0)
			break;
		zb_cdc_wait(cdc, left);
	}
}

PGDLLEXPORT void zerobus_cdc_peek_main(Datum arg);

/* The helper process of peek_changes for a stream that is not established. */
void
zerobus_cdc_peek_main(Datum arg)
{
	dsm_segment *seg;
	PeekArgs   *args;
	shm_mq	   *mq;
	shm_mq	   *errq;
	PeekSink	ps;
	ZbCdcConfig cfg;
	ZbCdc	   *cdc;
	TimestampTz deadline;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	seg = dsm_attach(DatumGetUInt32(arg));
	if (seg == NULL)
		proc_exit(0);			/* the caller gave up already */
	args = dsm_segment_address(seg);
	mq = (shm_mq *) ((char *) args + MAXALIGN(sizeof(PeekArgs)));
	errq = (shm_mq *) ((char *) mq + PEEK_QUEUE_SIZE);
	shm_mq_set_sender(errq, MyProc);
	/* errors (and only errors) reach the caller, who raises them */
	pq_redirect_to_shm_mq(seg, shm_mq_attach(errq, seg, NULL));
	shm_mq_set_sender(mq, MyProc);
	memset(&ps, 0, sizeof(ps));
	ps.mqh = shm_mq_attach(mq, seg, NULL);
	ps.sink.schema = peek_schema;
	ps.sink.record = peek_record;
	ps.sink.want_json = true;
	ps.max = args->max_records;

	BackgroundWorkerInitializeConnectionByOid(args->dboid, InvalidOid, 0);
	/* which session it works for (t/040_cdc_decode.pl waits for it by this name) */
	{
		char		appname[NAMEDATALEN];

		snprintf(appname, sizeof(appname), "zerobus_fdw peek_changes for PID %d",
				 args->caller_pid);
		pgstat_report_appname(appname);
	}
	SetConfigOption("client_min_messages", "error", PGC_SUSET, PGC_S_OVERRIDE);

	memset(&cfg, 0, sizeof(cfg));
	cfg.slot_name = args->slot_name;
	cfg.source = args->source;
	cfg.role = args->role;
	cfg.json = args->json;
	cfg.preimage = args->preimage;
	cfg.seq_base = args->seq_base;
	cfg.no_confirm = true;
	cdc = zb_cdc_open(&cfg, TopMemoryContext);
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), args->wait_ms);

	/* what the stream's worker does at its first start */
	StartTransactionCommand();
	zb_cdc_create(cdc, true, args->snapshot);
	if (args->snapshot)
		while (ps.stored < ps.max && zb_cdc_copy(cdc, &ps.sink, ps.max - ps.stored))
			;
	zb_cdc_copy_done(cdc);
	CommitTransactionCommand();

	/* then the changes, decoded outside any transaction, as the worker does */
	peek_decode(cdc, &ps, deadline);
	zb_cdc_close(cdc);
	proc_exit(0);
}

/* Run the helper and store what it sends; raise its error if it fails. */
static void
peek_with_helper(PeekSink *ps, PeekArgs *a)
{
	dsm_segment *seg;
	PeekArgs   *args;
	shm_mq	   *mq;
	shm_mq	   *errq;
	shm_mq_handle *mqh;
	shm_mq_handle *errqh;
	BackgroundWorker bgw;
	BackgroundWorkerHandle *handle;
	Size		size = MAXALIGN(sizeof(PeekArgs)) + PEEK_QUEUE_SIZE + PEEK_ERROR_QUEUE_SIZE;

	seg = dsm_create(size, 0);
	args = dsm_segment_address(seg);
	*args = *a;
	mq = shm_mq_create((char *) args + MAXALIGN(sizeof(PeekArgs)), PEEK_QUEUE_SIZE);
	errq = shm_mq_create((char *) mq + PEEK_QUEUE_SIZE, PEEK_ERROR_QUEUE_SIZE);
	shm_mq_set_receiver(mq, MyProc);
	shm_mq_set_receiver(errq, MyProc);
	mqh = shm_mq_attach(mq, seg, NULL);
	errqh = shm_mq_attach(errq, seg, NULL);

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_ConsistentState;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(bgw.bgw_library_name, "zerobus_fdw", BGW_MAXLEN);
	strlcpy(bgw.bgw_function_name, "zerobus_cdc_peek_main", BGW_MAXLEN);
	snprintf(bgw.bgw_name, BGW_MAXLEN, "zerobus_fdw peek_changes for PID %d", MyProcPid);
	strlcpy(bgw.bgw_type, "zerobus_fdw peek_changes", BGW_MAXLEN);
	bgw.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
	bgw.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&bgw, &handle))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start the helper process of peek_changes"),
				 errdetail("A stream that is not established yet is read by a background worker, as its own worker would read it."),
				 errhint("Raise max_worker_processes, or try again later.")));
	shm_mq_set_handle(mqh, handle);
	shm_mq_set_handle(errqh, handle);

	PG_TRY();
	{
		for (;;)
		{
			Size		len;
			void	   *data;
			PeekMsg		m;
			char	   *p;
			char	   *json = NULL;
			char	   *error = NULL;

			if (shm_mq_receive(mqh, &len, &data, false) != SHM_MQ_SUCCESS)
				break;			/* the helper is done (or failed) */
			if (len < sizeof(m))
				elog(ERROR, "peek_changes: a short message from its helper");
			memcpy(&m, data, sizeof(m));
			p = (char *) data + sizeof(m);
			if (m.json_len)
				json = pnstrdup(p + m.data_len, m.json_len);
			if (m.error_len)
				error = pnstrdup(p + m.data_len + m.json_len, m.error_len);
			if (ps->stored < ps->max)
				peek_store(ps, m.seq, (ZbCdcChange) m.change, m.commit_lsn, m.commit_time,
						   m.has_data ? (uint8 *) p : NULL, m.data_len, json, error);
		}
		/* an error of the helper is this function's error */
		for (;;)
		{
			Size		len;
			void	   *data;
			StringInfoData msg;
			ErrorData	edata;
			char		type;

			if (shm_mq_receive(errqh, &len, &data, true) != SHM_MQ_SUCCESS)
				break;
			/* a read-only view of the message, as parallel.c reads its workers' */
			msg.data = data;
			msg.len = len;
			msg.maxlen = len;
			msg.cursor = 0;
			type = pq_getmsgbyte(&msg);
			if (type != 'E')
				continue;
			pq_parse_errornotice(&msg, &edata);
			edata.elevel = ERROR;
			ThrowErrorData(&edata);
		}
	}
	PG_CATCH();
	{
		TerminateBackgroundWorker(handle);
		PG_RE_THROW();
	}
	PG_END_TRY();
	dsm_detach(seg);
}

PG_FUNCTION_INFO_V1(zerobus_peek_changes);

/*
 * What a change-capture stream would send next, without sending or
 * confirming anything.  A stream not established yet: (a helper process
 * creates) an ephemeral slot, the initial copy (if the stream takes one)
 * and the changes committed since.  An established stream: from its slot's
 * confirmed position, skipping what its progress record says is
 * acknowledged.  With 'wait', it waits up to that long for commits until it
 * has max_records records.  The stream's capture role (or a member) only.
 */
Datum
zerobus_peek_changes(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *name;
	int64		max;
	int64		wait_ms = 0;
	ZbStreamRow row;
	PeekSink	ps;
	char	   *problem;
	char	   *hint;
	char	   *warning;
	int			sqlstate;
	TimestampTz deadline;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", PG_ARGISNULL(0) ? "stream" : "max_records")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	max = PG_GETARG_INT32(1);
	if (max < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_records must not be negative")));
	if (!PG_ARGISNULL(2))
	{
		wait_ms = zb_interval_ms(PG_GETARG_INTERVAL_P(2));
		if (wait_ms < 0 || wait_ms > 3600 * 1000)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("wait must be between 0 and 1 hour")));
	}

	(void) zb_shmem();
	if (!zb_stream_lookup(name, false, &row))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("stream \"%s\" does not exist", name),
				 errhint("SELECT name FROM zerobus.streams; lists the streams of this database.")));
	if (!OidIsValid(row.source))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("stream \"%s\" consumes a queue: it has no change capture", name),
				 errhint("peek_changes shows what a stream created with source => … would send.")));
	if (!OidIsValid(row.owner) || !has_privs_of_role(GetUserId(), row.owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to read the changes of stream \"%s\"", name),
				 OidIsValid(row.owner)
				 ? errdetail("Only role \"%s\", the stream's capture role, and its members may.",
							 GetUserNameFromId(row.owner, false))
				 : errdetail("Its capture role no longer exists.")));
	problem = zb_cdc_capture_problem(row.source, row.owner, &sqlstate, &hint);
	if (problem == NULL)
		problem = zb_cdc_source_problem(row.source, row.update_preimage, &sqlstate, &hint, &warning);
	if (problem)
		ereport(ERROR,
				(errcode(sqlstate),
				 errmsg("stream \"%s\" cannot capture changes: %s", name, problem),
				 hint ? errhint("%s", hint) : 0));
	if (MyReplicationSlot != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("this session already uses replication slot \"%s\"",
						NameStr(MyReplicationSlot->data.name))));

	InitMaterializedSRF(fcinfo, 0);
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), wait_ms);
	memset(&ps, 0, sizeof(ps));
	ps.sink.schema = peek_schema;
	ps.sink.record = peek_record;
	ps.sink.want_json = true;
	ps.rsinfo = rsinfo;
	ps.max = max;

	if (!row.cdc_started)
	{
		PeekArgs	a;

		memset(&a, 0, sizeof(a));
		a.dboid = MyDatabaseId;
		a.role = row.owner;
		a.source = row.source;
		a.json = strcmp(row.record_format, "json") == 0;
		a.preimage = row.update_preimage;
		a.snapshot = row.snapshot;
		a.seq_base = row.seq_base;
		a.max_records = max;
		a.wait_ms = wait_ms;
		a.caller_pid = MyProcPid;
		/* ephemeral, and named so that no stream's and no sweep's */
		snprintf(a.slot_name, NAMEDATALEN, ZB_CDC_SLOT_PREFIX "peek_%d", MyProcPid);
		peek_with_helper(&ps, &a);
	}
	else
	{
		ZbCdcConfig cfg;
		ZbCdc	   *cdc;

		memset(&cfg, 0, sizeof(cfg));
		cfg.source = row.source;
		cfg.role = row.owner;
		cfg.json = strcmp(row.record_format, "json") == 0;
		cfg.preimage = row.update_preimage;
		cfg.seq_base = row.seq_base;
		cfg.no_confirm = true;
		cfg.slot_name = row.slot_name;
		cdc = zb_cdc_open(&cfg, CurrentMemoryContext);
		PG_TRY();
		{
			char	   *detail;

			switch (zb_cdc_start(cdc, true, &detail))
			{
				case ZB_CDC_STREAM:
					break;
				case ZB_CDC_BUSY:
					ereport(ERROR,
							(errcode(ERRCODE_OBJECT_IN_USE),
							 errmsg("stream \"%s\" is being delivered: %s", name, detail),
							 errhint("SELECT zerobus.stop_stream('%s'); then peek.", name)));
					break;
				default:
					ereport(ERROR,
							(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
							 errmsg("stream \"%s\" cannot resume: %s", name, detail),
							 errhint("SELECT zerobus.resync_stream('%s'); starts it over with a new snapshot.",
									 name)));
			}
			peek_decode(cdc, &ps, deadline);
			zb_cdc_close(cdc);
		}
		PG_CATCH();
		{
			/* no time-travel catalog entries may survive (as logicalfuncs.c does) */
			InvalidateSystemCaches();
			PG_RE_THROW();
		}
		PG_END_TRY();
	}
	return (Datum) 0;
}
