/*-------------------------------------------------------------------------
 * net.c
 *	  libcurl's multi interface driven from a PostgreSQL WaitEventSet.
 *
 * libcurl tells us, through its socket and timer callbacks, which sockets
 * it wants watched and when it next needs a tick.  zb_multi_wait() sleeps on
 * exactly those sockets plus the latch and postmaster death, then hands the
 * ready sockets back to curl_multi_socket_action().  The wait is the only
 * place where an interrupt is serviced: curl's callbacks never ereport().
 * Every network wait of the extension (OAuth, SQL Statement API, gRPC, in
 * backends and in background workers) is a loop around zb_multi_wait(), so
 * a query cancel, statement_timeout or SIGTERM ends any of them at once:
 * the wait checks for interrupts before it sleeps and whenever the latch
 * wakes it.  A caller that must not be interrupted at one point (the SQL
 * API submit, until the statement id is known) holds interrupts there and
 * watches zb_interrupt_pending() itself, for a bounded time.
 *
 * Plain http:// is for a local emulator only.  The option validator accepts
 * it only for a numeric loopback host or "localhost"; here, every transfer
 * that is not https:// checks the address it actually connected to, from
 * libcurl's pre-request callback (after the connection is made, before a
 * byte of the request is sent), and refuses any address that is not
 * loopback.  So a name that resolves elsewhere, a server defined before the
 * validator was strict, a proxy, or a plain http:// link from a response
 * never receive a credential in clear text.
 *
 * A ZbMulti lives in a memory context; deleting or resetting that context
 * (for instance when a query errors out) frees the curl handles and the
 * WaitEventSet through a reset callback, so nothing leaks after an ERROR.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/wait_event.h"

#include "compat.h"
#include "net.h"

#if LIBCURL_VERSION_NUM < 0x075000
#error "zerobus_fdw needs libcurl 7.80 or later (CURLOPT_PREREQFUNCTION)"
#endif

#define ZB_MAX_SOCKETS 8

typedef struct ZbSocket
{
	curl_socket_t fd;
	int			what;			/* CURL_POLL_IN / OUT / INOUT */
} ZbSocket;

struct ZbMulti
{
	CURLM	   *multi;
	MemoryContext cxt;
	MemoryContextCallback reset_cb;
	ZbSocket	sockets[ZB_MAX_SOCKETS];
	int			nsockets;
	bool		sockets_changed;
	long		timer_ms;		/* from CURLMOPT_TIMERFUNCTION, -1 = none */
	TimestampTz timer_set_at;
	WaitEventSet *wes;
	int			running;
	/* completed transfers, recorded from curl_multi_info_read() */
	CURL	   *done_easy[ZB_MAX_SOCKETS];
	CURLcode	done_result[ZB_MAX_SOCKETS];
	int			ndone;
};

static bool curl_initialized = false;

void
zb_curl_global_init(void)
{
	if (!curl_initialized)
	{
		CURLcode	rc = curl_global_init(CURL_GLOBAL_ALL);

		if (rc != CURLE_OK)
			ereport(ERROR,
					(errcode(ERRCODE_SYSTEM_ERROR),
					 errmsg("could not initialize libcurl: %s", curl_easy_strerror(rc))));
		curl_initialized = true;
	}
}

static int
net_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	ZbMulti    *m = (ZbMulti *) userp;
	int			i;

	for (i = 0; i < m->nsockets; i++)
		if (m->sockets[i].fd == fd)
			break;

	if (what == CURL_POLL_REMOVE)
	{
		if (i < m->nsockets)
		{
			m->sockets[i] = m->sockets[--m->nsockets];
			m->sockets_changed = true;
		}
		return 0;
	}
	if (i == m->nsockets)
	{
		if (m->nsockets == ZB_MAX_SOCKETS)
			return -1;			/* libcurl fails the transfer; never expected */
		m->sockets[i].fd = fd;
		m->nsockets++;
		m->sockets[i].what = 0;
	}
	if (m->sockets[i].what != what)
	{
		m->sockets[i].what = what;
		m->sockets_changed = true;
	}
	return 0;
}

static int
net_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	ZbMulti    *m = (ZbMulti *) userp;

	m->timer_ms = timeout_ms;
	m->timer_set_at = GetCurrentTimestamp();
	return 0;
}

static void
net_free_wes(ZbMulti *m)
{
	if (m->wes)
	{
		FreeWaitEventSet(m->wes);
		m->wes = NULL;
	}
}

/* Memory context reset callback: release everything libcurl holds. */
static void
net_multi_release(void *arg)
{
	ZbMulti    *m = (ZbMulti *) arg;

	net_free_wes(m);
	if (m->multi)
	{
		curl_multi_cleanup(m->multi);
		m->multi = NULL;
	}
}

ZbMulti *
zb_multi_create(MemoryContext cxt)
{
	ZbMulti    *m;

	zb_curl_global_init();
	m = MemoryContextAllocZero(cxt, sizeof(ZbMulti));
	m->cxt = cxt;
	m->timer_ms = -1;
	m->multi = curl_multi_init();
	if (m->multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl multi handle")));
	m->reset_cb.func = net_multi_release;
	m->reset_cb.arg = m;
	MemoryContextRegisterResetCallback(cxt, &m->reset_cb);

	curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, net_socket_cb);
	curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m);
	curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, net_timer_cb);
	curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m);
	return m;
}

/* How many sockets libcurl currently wants watched. */
int
zb_multi_nsockets(ZbMulti *m)
{
	return m->nsockets;
}

CURLM *
zb_multi_handle(ZbMulti *m)
{
	return m->multi;
}

void
zb_multi_add(ZbMulti *m, CURL *easy)
{
	CURLMcode	rc = curl_multi_add_handle(m->multi, easy);

	if (rc != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not start a transfer: %s", curl_multi_strerror(rc))));
}

void
zb_multi_remove(ZbMulti *m, CURL *easy)
{
	int			i;

	curl_multi_remove_handle(m->multi, easy);
	for (i = 0; i < m->ndone; i++)
	{
		if (m->done_easy[i] == easy)
		{
			m->done_easy[i] = m->done_easy[m->ndone - 1];
			m->done_result[i] = m->done_result[m->ndone - 1];
			m->ndone--;
			break;
		}
	}
}

/* Collect finished transfers so callers can ask about their own handle. */
static void
net_collect_done(ZbMulti *m)
{
	CURLMsg    *msg;
	int			left;

	while ((msg = curl_multi_info_read(m->multi, &left)) != NULL)
	{
		if (msg->msg != CURLMSG_DONE)
			continue;
		if (m->ndone < ZB_MAX_SOCKETS)
		{
			m->done_easy[m->ndone] = msg->easy_handle;
			m->done_result[m->ndone] = msg->data.result;
			m->ndone++;
		}
	}
}

bool
zb_multi_done(ZbMulti *m, CURL *easy, CURLcode *result)
{
	int			i;

	for (i = 0; i < m->ndone; i++)
	{
		if (m->done_easy[i] == easy)
		{
			if (result)
				*result = m->done_result[i];
			return true;
		}
	}
	return false;
}

static void
net_socket_action(ZbMulti *m, curl_socket_t fd, int ev)
{
	if (fd == CURL_SOCKET_TIMEOUT)
		m->timer_ms = -1;
	curl_multi_socket_action(m->multi, fd, ev, &m->running);
	net_collect_done(m);
}

/* Run curl's timeout handling now (after a pause/unpause, or a new handle). */
void
zb_multi_kick(ZbMulti *m)
{
	net_socket_action(m, CURL_SOCKET_TIMEOUT, 0);
}

static void
net_build_wes(ZbMulti *m)
{
	int			i;

	net_free_wes(m);
	m->wes = zb_create_wait_event_set(m->cxt, m->nsockets + 2);
	AddWaitEventToSet(m->wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(m->wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	for (i = 0; i < m->nsockets; i++)
	{
		uint32		events = 0;

		if (m->sockets[i].what & CURL_POLL_IN)
			events |= WL_SOCKET_READABLE;
		if (m->sockets[i].what & CURL_POLL_OUT)
			events |= WL_SOCKET_WRITEABLE;
		AddWaitEventToSet(m->wes, events, m->sockets[i].fd, NULL,
						  (void *) (intptr_t) m->sockets[i].fd);
	}
	m->sockets_changed = false;
}

/* Milliseconds until curl's timer fires; -1 if none. */
static long
net_timer_remaining(ZbMulti *m)
{
	long		elapsed;

	if (m->timer_ms < 0)
		return -1;
	if (m->timer_ms == 0)
		return 0;
	elapsed = (long) ((GetCurrentTimestamp() - m->timer_set_at) / 1000);
	return Max(0, m->timer_ms - elapsed);
}

/*
 * Whether an interrupt that ends the current query (cancel, statement
 * timeout, terminate) is pending.  Meant for code that holds interrupts for
 * a moment and must decide how long to go on waiting.
 */
bool
zb_interrupt_pending(void)
{
	return InterruptPending && (QueryCancelPending || ProcDiePending);
}

long
zb_ms_until(TimestampTz deadline)
{
	TimestampTz now = GetCurrentTimestamp();

	if (deadline <= now)
		return 0;
	/* round up so that a wait never ends just short of the deadline */
	return (long) ((deadline - now + 999) / 1000);
}

/*
 * Wait for network progress, the latch, or timeout_ms (-1: no limit of our
 * own).  Services interrupts (CHECK_FOR_INTERRUPTS) before sleeping and
 * after a latch wake-up, so a cancel or SIGTERM ends the wait with an
 * ERROR/FATAL as usual.  The check before sleeping matters: a latch already
 * consumed elsewhere (for instance while interrupts were held) would not
 * wake us again.
 */
int
zb_multi_wait(ZbMulti *m, long timeout_ms, uint32 wait_event_info)
{
	WaitEvent	events[ZB_MAX_SOCKETS + 2];
	long		curl_ms;
	long		wait_ms;
	int			nevents;
	int			result = 0;
	int			i;

	CHECK_FOR_INTERRUPTS();
	curl_ms = net_timer_remaining(m);
	if (curl_ms == 0)
	{
		net_socket_action(m, CURL_SOCKET_TIMEOUT, 0);
		return ZB_WAKE_IO;
	}

	if (curl_ms < 0)
		wait_ms = timeout_ms;
	else if (timeout_ms < 0)
		wait_ms = curl_ms;
	else
		wait_ms = Min(curl_ms, timeout_ms);

	if (m->wes == NULL || m->sockets_changed)
		net_build_wes(m);

	nevents = WaitEventSetWait(m->wes, wait_ms, events, lengthof(events),
							   wait_event_info);

	for (i = 0; i < nevents; i++)
	{
		WaitEvent  *ev = &events[i];

		if (ev->events & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			result |= ZB_WAKE_LATCH;
		}
		else if (ev->events & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE))
		{
			int			flags = 0;

			if (ev->events & WL_SOCKET_READABLE)
				flags |= CURL_CSELECT_IN;
			if (ev->events & WL_SOCKET_WRITEABLE)
				flags |= CURL_CSELECT_OUT;
			net_socket_action(m, (curl_socket_t) (intptr_t) ev->user_data, flags);
			result |= ZB_WAKE_IO;
		}
	}

	if (nevents == 0)
	{
		/* Timed out: curl's timer, ours, or both. */
		if (m->timer_ms >= 0 && net_timer_remaining(m) == 0)
		{
			net_socket_action(m, CURL_SOCKET_TIMEOUT, 0);
			result |= ZB_WAKE_IO;
		}
		if (timeout_ms >= 0 && (curl_ms < 0 || timeout_ms <= curl_ms))
			result |= ZB_WAKE_TIMEOUT;
	}

	if (result & ZB_WAKE_LATCH)
		CHECK_FOR_INTERRUPTS();
	return result;
}

/* Options every Databricks-bound handle gets. */
void
zb_curl_set_common(CURL *easy, const char *ca_file, long connect_timeout_ms, char *errbuf)
{
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, errbuf);
	errbuf[0] = '\0';
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
	if (ca_file && ca_file[0])
		curl_easy_setopt(easy, CURLOPT_CAINFO, ca_file);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, connect_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
#if LIBCURL_VERSION_NUM >= 0x075700
	/*
	 * A transfer abandoned while its host name is being resolved (a cancel
	 * during a slow DNS lookup) must not wait for the resolver thread:
	 * without this, curl_multi_remove_handle() joins it, uninterruptibly,
	 * until getaddrinfo() gives up.  The thread then cleans up after itself.
	 */
	curl_easy_setopt(easy, CURLOPT_QUICK_EXIT, 1L);
#endif
	/* never follow redirects: a token must not travel to another host */
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
}

/* ---------- plain http:// only to loopback ---------- */

/* A numeric IPv4 or IPv6 address in 127.0.0.0/8 or ::1 (or ::ffff:127.x.y.z). */
bool
zb_ip_is_loopback(const char *ip)
{
	struct in_addr a4;
	struct in6_addr a6;
	char		buf[INET6_ADDRSTRLEN + 8];
	size_t		len;

	if (ip == NULL || ip[0] == '\0')
		return false;
	if (inet_pton(AF_INET, ip, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;

	/* a URL's host keeps IPv6 brackets: [::1] */
	len = strlen(ip);
	if (ip[0] == '[' && len >= 2 && ip[len - 1] == ']' && len - 2 < sizeof(buf))
	{
		memcpy(buf, ip + 1, len - 2);
		buf[len - 2] = '\0';
		ip = buf;
	}
	if (inet_pton(AF_INET6, ip, &a6) == 1)
	{
		if (IN6_IS_ADDR_LOOPBACK(&a6))
			return true;
		if (IN6_IS_ADDR_V4MAPPED(&a6))
			return a6.s6_addr[12] == 127;
	}
	return false;
}

/*
 * The validator's rule for a plain http:// URL: its host, as libcurl parsed
 * it, is a numeric loopback address or exactly "localhost" (which libcurl
 * resolves to loopback without asking DNS).  Never a name prefix such as
 * "127.": 127.attacker.example is anybody's host.
 */
bool
zb_host_is_loopback(const char *host)
{
	if (host == NULL)
		return false;
	return pg_strcasecmp(host, "localhost") == 0 || zb_ip_is_loopback(host);
}

/*
 * libcurl's pre-request callback: the connection is made (or reused) and
 * nothing of the request has been sent yet.  Refuses a plain http:// peer
 * that is not loopback.  Must not ereport().
 */
static int
net_prereq_cb(void *clientp, char *conn_primary_ip, char *conn_local_ip,
			  int conn_primary_port, int conn_local_port)
{
	ZbPeerCheck *check = (ZbPeerCheck *) clientp;

	if (!check->plain || zb_ip_is_loopback(conn_primary_ip))
		return CURL_PREREQFUNC_OK;
	check->refused = true;
	strlcpy(check->peer, conn_primary_ip ? conn_primary_ip : "an unknown address",
			sizeof(check->peer));
	return CURL_PREREQFUNC_ABORT;
}

/*
 * Set a transfer's URL, with the loopback rule for anything but https://
 * (a URL without a scheme is plain http to libcurl, so it counts as plain).
 */
void
zb_curl_set_url(CURL *easy, const char *url, ZbPeerCheck *check)
{
	memset(check, 0, sizeof(ZbPeerCheck));
	check->plain = pg_strncasecmp(url, "https://", 8) != 0;
	curl_easy_setopt(easy, CURLOPT_URL, url);
	curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION, net_prereq_cb);
	curl_easy_setopt(easy, CURLOPT_PREREQDATA, check);
}

/* If the loopback rule stopped a transfer, say so in err and return true. */
bool
zb_peer_refused(const ZbPeerCheck *check, ZbError *err, const char *what)
{
	if (!check->refused)
		return false;
	zb_error_set(err, ZB_ERR_CONFIG, false,
				 "refused to send a plain http:// request to %s: it connected to %s, which is not a loopback address",
				 what, check->peer);
	err->curl_code = CURLE_ABORTED_BY_CALLBACK;
	return true;
}

/* Turn a libcurl failure into a ZbError a user can act on. */
void
zb_error_from_curl(ZbError *err, CURLcode rc, const char *errbuf, const char *what)
{
	const char *detail = (errbuf && errbuf[0]) ? errbuf : curl_easy_strerror(rc);

	switch (rc)
	{
		case CURLE_PEER_FAILED_VERIFICATION:
		case CURLE_SSL_CACERT_BADFILE:
		case CURLE_SSL_CONNECT_ERROR:
		case CURLE_SSL_CERTPROBLEM:
		case CURLE_SSL_CIPHER:
		case CURLE_SSL_ISSUER_ERROR:
		case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
		case CURLE_SSL_INVALIDCERTSTATUS:
			zb_error_set(err, ZB_ERR_TLS, false, "TLS failure talking to %s: %s", what, detail);
			break;
		case CURLE_OPERATION_TIMEDOUT:
			zb_error_set(err, ZB_ERR_TIMEOUT, true, "timed out talking to %s: %s", what, detail);
			break;
		case CURLE_URL_MALFORMAT:
		case CURLE_UNSUPPORTED_PROTOCOL:
			zb_error_set(err, ZB_ERR_CONFIG, false, "invalid URL for %s: %s", what, detail);
			break;
		default:
			zb_error_set(err, ZB_ERR_TRANSPORT, true, "could not reach %s: %s", what, detail);
			break;
	}
	err->curl_code = rc;
}
