/*-------------------------------------------------------------------------
 * net.h
 *	  libcurl's multi interface driven from a PostgreSQL wait loop.
 *
 * A ZbMulti owns a CURLM handle and waits on its sockets, its timer, the
 * process latch and postmaster death in one WaitEventSet, so that query
 * cancel, SIGTERM and commit-time wake-ups are never stuck behind network I/O.
 *-------------------------------------------------------------------------
 */
#ifndef ZB_NET_H
#define ZB_NET_H

#include <curl/curl.h>

#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "buf.h"
#include "zb_error.h"

typedef struct ZbMulti ZbMulti;

/*
 * Where a plain http:// transfer may go: a loopback address only, checked
 * against the address actually connected to, after the connection is made
 * and before the request (and its credentials) is sent.  One per transfer;
 * it must live as long as the transfer.
 */
typedef struct ZbPeerCheck
{
	bool		plain;			/* not https://: the peer must be loopback */
	bool		refused;		/* the peer was not loopback: nothing was sent */
	char		peer[64];		/* the address refused */
} ZbPeerCheck;

/* Results of zb_multi_wait(), a bit mask. */
#define ZB_WAKE_IO		0x01		/* curl made progress (or may have) */
#define ZB_WAKE_LATCH	0x02		/* our latch was set (and has been reset) */
#define ZB_WAKE_TIMEOUT 0x04		/* the caller's timeout passed */

extern void zb_curl_global_init(void);
extern ZbMulti *zb_multi_create(MemoryContext cxt);
extern CURLM *zb_multi_handle(ZbMulti *m);
extern int	zb_multi_nsockets(ZbMulti *m);
extern void zb_multi_add(ZbMulti *m, CURL *easy);
extern void zb_multi_remove(ZbMulti *m, CURL *easy);
extern int	zb_multi_wait(ZbMulti *m, long timeout_ms, uint32 wait_event_info);
extern bool zb_multi_done(ZbMulti *m, CURL *easy, CURLcode *result);
extern void zb_multi_kick(ZbMulti *m);

extern bool zb_interrupt_pending(void);

extern long zb_ms_until(TimestampTz deadline);
extern void zb_curl_set_common(CURL *easy, const char *ca_file, long connect_timeout_ms,
							   char *errbuf);
extern void zb_curl_set_url(CURL *easy, const char *url, ZbPeerCheck *check);
extern void zb_error_from_curl(ZbError *err, CURLcode rc, const char *errbuf,
							   const char *what);
extern bool zb_peer_refused(const ZbPeerCheck *check, ZbError *err, const char *what);

extern bool zb_ip_is_loopback(const char *ip);
extern bool zb_host_is_loopback(const char *host);

#endif							/* ZB_NET_H */
