/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* The outbox sender: one thread per daemon that delivers queued e-mail
 * (provisioning/outbox_db.h) over SMTP with libcurl, using its own pooled
 * PostgreSQL connection per attempt. It polls every second; a message is
 * locked (FOR UPDATE SKIP LOCKED) while it is sent, so several instances can
 * run side by side. A failure is recorded with exponential back-off; with an
 * empty smtp.url the thread is not started and mail stays queued. Delivery is
 * at least once: a crash between the SMTP answer and the commit resends. */
#ifndef IDB_OUTBOX_H
#define IDB_OUTBOX_H

#include "app.h"
#include "err.h"

typedef struct idb_outbox idb_outbox;

/* Starts the sender (curl_global_init must have run). *out is NULL, and 0 is
 * returned, when smtp.url is empty. */
int idb_outbox_start(idb_outbox **out, idb_app *app, idb_err *err);
/* Asks the thread to stop, waits for the message in flight (bounded by
 * smtp.timeout_s) and joins it. NULL is a no-op. */
void idb_outbox_stop(idb_outbox *o);

/* Builds the RFC 5322 message for a payload {to, subject, text, html?}:
 * malloc'd CRLF text, NULL on a malformed payload. *rcpt gets the recipient
 * (malloc'd). Exposed for unit tests. */
char *idb_outbox_render(const char *payload_json, const char *from, long long msg_id, char **rcpt);

#endif
