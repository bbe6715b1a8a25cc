/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "verlist.h"

#include <stdbool.h>
#include <string.h>

#include "util.h"

void idb_verlist_init(idb_verlist *l, void (*release)(idb_verobj *o))
{
	pthread_mutex_init(&l->mu, NULL);
	l->head = NULL;
	l->release = release;
}

void idb_verlist_destroy(idb_verlist *l)
{
	for (idb_verobj *o = l->head, *n; o; o = n) {
		n = o->next;
		l->release(o);
	}
	l->head = NULL;
	pthread_mutex_destroy(&l->mu);
}

idb_verobj *idb_verlist_get(idb_verlist *l, const char *conn_id, int64_t version)
{
	idb_verobj *found = NULL;
	pthread_mutex_lock(&l->mu);
	for (idb_verobj *o = l->head; o && !found; o = o->next)
		if (o->version == version && !strcmp(o->conn_id, conn_id)) {
			o->refs++;
			found = o;
		}
	pthread_mutex_unlock(&l->mu);
	return found;
}

void idb_verlist_add(idb_verlist *l, idb_verobj *o, const char *conn_id, int64_t version)
{
	idb_strlcpy(o->conn_id, conn_id, sizeof(o->conn_id));
	o->version = version;
	o->refs = 2; /* the list and the caller */
	idb_verobj *dropped = NULL;
	pthread_mutex_lock(&l->mu);
	for (idb_verobj **pp = &l->head; *pp;) {
		idb_verobj *old = *pp;
		if (!strcmp(old->conn_id, conn_id)) {
			*pp = old->next;
			if (--old->refs == 0) {
				old->next = dropped;
				dropped = old;
			}
		} else {
			pp = &old->next;
		}
	}
	o->next = l->head;
	l->head = o;
	pthread_mutex_unlock(&l->mu);
	for (idb_verobj *n; dropped; dropped = n) {
		n = dropped->next;
		l->release(dropped);
	}
}

void idb_verlist_put(idb_verlist *l, idb_verobj *o)
{
	if (!o)
		return;
	pthread_mutex_lock(&l->mu);
	bool last = --o->refs == 0;
	pthread_mutex_unlock(&l->mu);
	if (last)
		l->release(o);
}
