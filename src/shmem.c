/*-------------------------------------------------------------------------
 * shmem.c
 *	  The shared-memory stream table and wake-ups.
 *
 * Requested at postmaster start (shared_preload_libraries).  Backends use
 * it to wake workers at commit and to read metrics; the launcher and scan
 * workers keep the slot table in step with each database's catalog; stream
 * workers publish their state and counters in their slot (metrics.c).  The
 * lock of every field is named in shmem.h.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/shmem.h"

#include "shmem.h"

int			zb_max_streams = 32;
ZbShared   *zb_shared = NULL;

static Size
zb_shmem_size(void)
{
	Size		size = add_size(offsetof(ZbShared, streams),
								mul_size(sizeof(ZbStreamSlot), zb_max_streams));

	size = MAXALIGN(size);
	return add_size(size, mul_size(sizeof(ZbHistory), zb_max_streams));
}

/* From shmem_request_hook. */
void
zb_shmem_request(void)
{
	RequestAddinShmemSpace(zb_shmem_size());
	/* the slot table's, the history's, and each stream's detail_lock */
	RequestNamedLWLockTranche("zerobus_fdw", 2 + zb_max_streams);
}

void
zb_shmem_startup(void)
{
	bool		found;
	int			i;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	zb_shared = ShmemInitStruct("zerobus_fdw", zb_shmem_size(), &found);
	if (!found)
	{
		LWLockPadded *locks = GetNamedLWLockTranche("zerobus_fdw");

		memset(zb_shared, 0, zb_shmem_size());
		zb_shared->lock = &locks[0].lock;
		zb_shared->history_lock = &locks[1].lock;
		zb_shared->launcher_procno = -1;
		zb_shared->max_streams = zb_max_streams;
		zb_shared->rescan_all = true;
		zb_shared->history = (ZbHistory *)
			((char *) zb_shared + MAXALIGN(offsetof(ZbShared, streams) +
										   sizeof(ZbStreamSlot) * zb_max_streams));
		for (i = 0; i < zb_max_streams; i++)
		{
			ZbStreamSlot *s = &zb_shared->streams[i];
			int			w;

			SpinLockInit(&s->mutex);
			s->detail_lock = &locks[2 + i].lock;
			for (w = 0; w < ZB_MAX_STREAM_WORKERS; w++)
				s->workers[w].pgprocno = -1;
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/* The shared state, or a clear error when the library was not preloaded. */
ZbShared *
zb_shmem(void)
{
	if (zb_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("zerobus_fdw must be loaded via shared_preload_libraries"),
				 errhint("Add zerobus_fdw to shared_preload_libraries in postgresql.conf and restart the server.")));
	return zb_shared;
}

/* Slot index of (database, stream), or -1.  Caller holds the lock. */
int
zb_slot_find(Oid dboid, const char *name)
{
	int			i;

	for (i = 0; i < zb_shared->max_streams; i++)
	{
		ZbStreamSlot *s = &zb_shared->streams[i];

		if (s->in_use && s->dboid == dboid && strcmp(s->name, name) == 0)
			return i;
	}
	return -1;
}

static void
zb_set_latch_of(int procno)
{
	if (procno >= 0)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
}

void
zb_wake_launcher(void)
{
	ZbShared   *sh = zb_shmem();
	int			procno;

	LWLockAcquire(sh->lock, LW_SHARED);
	procno = sh->launcher_procno;
	LWLockRelease(sh->lock);
	zb_set_latch_of(procno);
}

/* Ask the launcher to re-read a database's streams from its catalog. */
void
zb_request_rescan(Oid dboid)
{
	ZbShared   *sh = zb_shmem();
	int			i;

	LWLockAcquire(sh->lock, LW_EXCLUSIVE);
	for (i = 0; i < sh->nrescans; i++)
		if (sh->rescans[i] == dboid)
			break;
	if (i == sh->nrescans)
	{
		if (sh->nrescans < ZB_MAX_RESCANS)
			sh->rescans[sh->nrescans++] = dboid;
		else
			sh->rescan_all = true;
	}
	LWLockRelease(sh->lock);
	zb_wake_launcher();
}

/*
 * Forget a database's streams and stop their workers (SIGTERM: a batch in
 * progress rolls back, its rows stay queued), waiting up to 5 seconds for
 * them to leave.  Used before statements that need the database to
 * themselves.
 */
void
zb_release_database(Oid dboid)
{
	pid_t		pids[ZB_MAX_STREAM_WORKERS * 8];
	int			npids = 0;
	int			i;
	int			tries;

	LWLockAcquire(zb_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < zb_shared->max_streams; i++)
	{
		ZbStreamSlot *s = &zb_shared->streams[i];
		int			w;

		if (!s->in_use || s->dboid != dboid)
			continue;
		s->in_use = false;
		s->generation++;
		for (w = 0; w < ZB_MAX_STREAM_WORKERS; w++)
			if (s->workers[w].pid != 0 && npids < (int) lengthof(pids))
				pids[npids++] = s->workers[w].pid;
	}
	LWLockRelease(zb_shared->lock);

	for (i = 0; i < npids; i++)
		kill(pids[i], SIGTERM);
	for (tries = 0; tries < 50; tries++)
	{
		bool		alive = false;

		for (i = 0; i < npids; i++)
			if (kill(pids[i], 0) == 0)
				alive = true;
		if (!alive)
			break;
		pg_usleep(100 * 1000L);
		CHECK_FOR_INTERRUPTS();
	}
}

/* Wake every worker of a stream.  The caller holds zb_shared->lock. */
void
zb_wake_stream(int slot)
{
	ZbStreamSlot *s = &zb_shared->streams[slot];
	int			w;

	Assert(LWLockHeldByMe(zb_shared->lock));
	for (w = 0; w < ZB_MAX_STREAM_WORKERS; w++)
		zb_set_latch_of(s->workers[w].pgprocno);
}

/* Wake every worker of the streams reading a queue table (at commit). */
void
zb_wake_queue(Oid dboid, Oid queue_relid)
{
	int			i;

	if (zb_shared == NULL)
		return;
	LWLockAcquire(zb_shared->lock, LW_SHARED);
	for (i = 0; i < zb_shared->max_streams; i++)
	{
		ZbStreamSlot *s = &zb_shared->streams[i];

		if (s->in_use && s->dboid == dboid && s->queue_relid == queue_relid)
			zb_wake_stream(i);
	}
	LWLockRelease(zb_shared->lock);
}
