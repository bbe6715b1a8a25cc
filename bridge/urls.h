/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* Redirect targets: return_to / RelayState may only point at the deployment's
 * own origin or a configured allowed origin (no open redirects). */
#ifndef IDB_URLS_H
#define IDB_URLS_H

#include <stdbool.h>

#include "config.h"

/* True for a local path ("/x", not "//x" or "/\x") or an absolute http(s) URL
 * whose origin is server.public_url's or in server.allowed_origins. Control
 * characters and backslashes are refused anywhere. */
bool idb_return_to_allowed(const idb_config *cfg, const char *url);

#endif
