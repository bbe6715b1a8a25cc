/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* The daemon's long-lived state handed to every handler: the immutable
 * config and the pools. Built in main.c in start-up order, freed in reverse. */
#ifndef IDB_APP_H
#define IDB_APP_H

#include <stdatomic.h>

#include "cache.h"
#include "config.h"
#include "store.h"

struct idb_saml;
struct idb_presets;
struct idb_oidc;
struct idb_conncache;

typedef struct idb_app {
	const idb_config *cfg;
	idb_store *store;
	idb_cache *cache;
	struct idb_saml *saml;
	const struct idb_presets *presets;
	struct idb_oidc *oidc;
	struct idb_conncache *conns; /* IdP connections by slug, NOTIFY-invalidated */
	atomic_int inflight; /* requests between first byte and completion */
} idb_app;

#endif
