/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "urls.h"

#include <string.h>
#include <strings.h>

static bool origin_equal(const char *url, size_t ulen, const char *origin)
{
	size_t ol = strlen(origin);
	return ulen == ol && strncasecmp(url, origin, ol) == 0;
}

bool idb_return_to_allowed(const idb_config *cfg, const char *url)
{
	if (!url || !*url || strlen(url) > 2048)
		return false;
	for (const unsigned char *p = (const unsigned char *)url; *p; p++)
		if (*p < 0x20 || *p == 0x7f || *p == '\\')
			return false;
	if (url[0] == '/')
		return url[1] != '/';
	if (strncasecmp(url, "https://", 8) != 0 && strncasecmp(url, "http://", 7) != 0)
		return false;
	const char *host = strstr(url, "://") + 3;
	size_t hl = strcspn(host, "/?#");
	if (memchr(host, '@', hl)) /* userinfo: https://good@evil */
		return false;
	size_t olen = (size_t)(host - url) + hl;
	if (origin_equal(url, olen, cfg->public_origin))
		return true;
	for (size_t i = 0; i < cfg->allowed_origins.count; i++)
		if (origin_equal(url, olen, cfg->allowed_origins.items[i]))
			return true;
	return false;
}
