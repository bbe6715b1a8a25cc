/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* What a protocol layer builds from one version of an IdP connection (a
 * lasso server, an OIDC client with its keys, a compiled attribute mapping),
 * shared by concurrent requests: found by (connection id, version), counted
 * by reference, replaced when the connection changes; the replaced object is
 * released when its last borrower returns it. The object embeds an
 * idb_verobj as its first member. */
#ifndef IDB_VERLIST_H
#define IDB_VERLIST_H

#include <pthread.h>
#include <stdint.h>

typedef struct idb_verobj {
	char conn_id[37];
	int64_t version;
	int refs; /* the list's own reference + borrowers; under the list's mutex */
	struct idb_verobj *next;
} idb_verobj;

typedef struct idb_verlist {
	pthread_mutex_t mu;
	idb_verobj *head;
	void (*release)(idb_verobj *o); /* frees the object that embeds o */
} idb_verlist;

void idb_verlist_init(idb_verlist *l, void (*release)(idb_verobj *o));
/* Releases every object still listed (no borrower may remain). */
void idb_verlist_destroy(idb_verlist *l);
/* The object built for (conn_id, version), borrowed; NULL when there is none. */
idb_verobj *idb_verlist_get(idb_verlist *l, const char *conn_id, int64_t version);
/* Lists o, newly built for (conn_id, version) and borrowed by the caller, in
 * place of any other version of that connection. */
void idb_verlist_add(idb_verlist *l, idb_verobj *o, const char *conn_id, int64_t version);
/* Returns a borrowed object (NULL ok). */
void idb_verlist_put(idb_verlist *l, idb_verobj *o);

#endif
