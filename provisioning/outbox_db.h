/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* The transactional outbox: mail is queued in the same transaction as the
 * change it announces and delivered later by the sender thread
 * (bridge/outbox.c), at least once, with exponential back-off. Several
 * instances may send concurrently: a message is claimed with
 * FOR UPDATE SKIP LOCKED and stays locked until it is marked. */
#ifndef IDB_OUTBOX_DB_H
#define IDB_OUTBOX_DB_H

#include "err.h"
#include "store.h"

/* Queues an e-mail {to, subject, text, html?} for org_id (may be NULL) in
 * the caller's transaction. html may be NULL. */
int idb_outbox_enqueue_email(idb_db *db, const char *org_id, const char *to, const char *subject, const char *text,
			     const char *html, idb_err *err);

typedef struct idb_outbox_msg {
	long long id;
	int attempts;  /* failed attempts so far */
	char *payload; /* owned: the JSON payload text */
} idb_outbox_msg;

/* Inside an open transaction: locks the oldest due, unsent message that no
 * other sender holds. IDB_ENOTFOUND when there is none. Release out with
 * idb_outbox_msg_clear. */
int idb_outbox_claim(idb_db *db, idb_outbox_msg *out, idb_err *err);
int idb_outbox_mark_sent(idb_db *db, long long id, idb_err *err);
/* Records a failed attempt: attempts + 1, last_error, and the next attempt
 * after 5 s * 2^attempts (capped at one hour). */
int idb_outbox_mark_failed(idb_db *db, long long id, const char *error, idb_err *err);
void idb_outbox_msg_clear(idb_outbox_msg *m);

#endif
