/* The generated proxy auto-config file served on /proxy.pac and /wpad.dat. */
#ifndef HANDOFF_PAC_H
#define HANDOFF_PAC_H

#include <stddef.h>

/**
 * Builds FindProxyForURL from [pac]: plain host names, each `direct` entry (a name or *.pattern
 * with dnsDomainIs/shExpMatch, an IPv4 CIDR with isInNet) go DIRECT, everything else to proxy.
 * Returns a malloc'd text, or NULL with err filled for a bad entry.
 */
char *pac_generate(const char *proxy, const char *direct, size_t *len, char *err, size_t errlen);

#endif
