/*-------------------------------------------------------------------------
 * cdcwake.c
 *	  Change capture: commit-time wake-ups.  A process that decodes a
 *	  database's changes (a stream worker, a waiting peek_changes) registers
 *	  in a small shared array; every backend (the library is preloaded)
 *	  sets, after a commit that had an xid, the latches of its database's
 *	  registered processes.  One atomic counter makes a commit look no
 *	  further when nobody waits.  See docs/DESIGN.md, "Decoding in the
 *	  worker's process".
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"

#include "compat.h"
#include "cdc.h"
#include "shmem.h"

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
bool
zb_cdc_join_waiters(void)
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

static bool cdc_xact_wrote = false;

static void
cdc_wake_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			cdc_xact_wrote = TransactionIdIsValid(GetTopTransactionIdIfAny());
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
}

/* From _PG_init (zb_cdc_init): every backend wakes waiters when it commits. */
void
zb_cdc_wake_init(void)
{
	RegisterXactCallback(cdc_wake_xact_callback, NULL);
}
