/*
 * slow_dns.c: an LD_PRELOAD shim for t/107_slow_dns.pl.  getaddrinfo() of
 * any name under "slowdns.test" takes 30 seconds and then fails, the way a
 * DNS server that does not answer behaves; every other name resolves as
 * usual.  Built by the test with the compiler PostgreSQL was built with.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <string.h>
#include <unistd.h>

int
getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
			struct addrinfo **res)
{
	static int	(*real) (const char *, const char *, const struct addrinfo *,
						 struct addrinfo **);

	if (node && strstr(node, "slowdns.test"))
	{
		sleep(30);
		return EAI_AGAIN;
	}
	if (real == NULL)
		real = dlsym(RTLD_NEXT, "getaddrinfo");
	return real(node, service, hints, res);
}
