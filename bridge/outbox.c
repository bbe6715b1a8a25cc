/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "outbox.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>

#include "log.h"
#include "outbox_db.h"
#include "util.h"

struct idb_outbox {
	idb_app *app;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
};

/* --- message rendering --- */

typedef struct buf {
	char *s;
	size_t n, cap;
	bool oom;
} buf;

static void put(buf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->n + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		while (cap < b->n + n + 1)
			cap *= 2;
		char *p = realloc(b->s, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->s = p;
		b->cap = cap;
	}
	memcpy(b->s + b->n, s, n);
	b->n += n;
	b->s[b->n] = '\0';
}

static void puts_(buf *b, const char *s)
{
	put(b, s, strlen(s));
}

/* Header value: controls (CR/LF included) become spaces. */
static bool header_text(char *out, size_t outsz, const char *in)
{
	size_t o = 0;
	for (; *in && o + 1 < outsz; in++)
		out[o++] = ((unsigned char)*in < 0x20 || *in == 0x7f) ? ' ' : *in;
	out[o] = '\0';
	return *in == '\0';
}

/* RFC 2047 B-encoded words of at most 45 input bytes each, never splitting a
 * UTF-8 sequence, folded onto continuation lines. */
static void put_encoded(buf *b, const char *s)
{
	bool ascii = true;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		ascii = ascii && *p < 0x80;
	if (ascii && strlen(s) <= 900) {
		puts_(b, s);
		return;
	}
	size_t len = strlen(s), off = 0;
	while (off < len) {
		size_t n = len - off > 45 ? 45 : len - off;
		while (n > 0 && off + n < len && ((unsigned char)s[off + n] & 0xC0) == 0x80)
			n--;
		if (n == 0)
			n = 1;
		char enc[80];
		sodium_bin2base64(enc, sizeof(enc), (const unsigned char *)s + off, n, sodium_base64_VARIANT_ORIGINAL);
		if (off)
			puts_(b, "\r\n ");
		puts_(b, "=?UTF-8?B?");
		puts_(b, enc);
		puts_(b, "?=");
		off += n;
	}
}

/* Body part as base64 in 76-character lines (no line-length limits to
 * worry about, whatever names the text contains). */
static void put_base64_body(buf *b, const char *text)
{
	/* Normalise to CRLF line ends first. */
	buf crlf = {0};
	for (const char *p = text; *p; p++) {
		if (*p == '\n' && (p == text || p[-1] != '\r'))
			put(&crlf, "\r\n", 2);
		else
			put(&crlf, p, 1);
	}
	if (crlf.oom) {
		b->oom = true;
		free(crlf.s);
		return;
	}
	for (size_t off = 0; off < crlf.n; off += 57) {
		size_t n = crlf.n - off > 57 ? 57 : crlf.n - off;
		char enc[80];
		sodium_bin2base64(enc, sizeof(enc), (const unsigned char *)crlf.s + off, n, sodium_base64_VARIANT_ORIGINAL);
		puts_(b, enc);
		puts_(b, "\r\n");
	}
	free(crlf.s);
}

static void envelope_address(char *out, size_t outsz, const char *from)
{
	const char *lt = strrchr(from, '<'), *gt = lt ? strchr(lt, '>') : NULL;
	if (lt && gt)
		snprintf(out, outsz, "%.*s", (int)(gt - lt + 1), lt);
	else
		snprintf(out, outsz, "<%s>", from);
}

char *idb_outbox_render(const char *payload_json, const char *from, long long msg_id, char **rcpt)
{
	*rcpt = NULL;
	json_t *p = json_loads(payload_json, 0, NULL);
	const char *to = json_string_value(json_object_get(p, "to"));
	const char *subject = json_string_value(json_object_get(p, "subject"));
	const char *text = json_string_value(json_object_get(p, "text"));
	const char *html = json_string_value(json_object_get(p, "html"));
	char to_h[300], subj_h[1000], from_h[300], env[300];
	if (!to || !subject || !text || !header_text(to_h, sizeof(to_h), to) || strcmp(to_h, to) != 0 ||
	    strchr(to, '<') || strchr(to, '>') || !*to) {
		json_decref(p);
		return NULL;
	}
	header_text(subj_h, sizeof(subj_h), subject);
	header_text(from_h, sizeof(from_h), from);
	envelope_address(env, sizeof(env), from_h);
	const char *at = strchr(env, '@');
	char domain[200];
	snprintf(domain, sizeof(domain), "%.*s", at ? (int)strcspn(at + 1, ">") : 9, at ? at + 1 : "localhost");
	char date[64], rnd[17], boundary[40], line[1024];
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	idb_random_hex(rnd, sizeof(rnd), 8);
	snprintf(boundary, sizeof(boundary), "idb-%s", rnd);

	buf b = {0};
	snprintf(line, sizeof(line), "From: %s\r\nTo: <%s>\r\nSubject: ", from_h, to_h);
	puts_(&b, line);
	put_encoded(&b, subj_h);
	snprintf(line, sizeof(line),
		 "\r\nDate: %s\r\nMessage-ID: <idb.%lld.%s@%s>\r\nMIME-Version: 1.0\r\nAuto-Submitted: auto-generated\r\n",
		 date, msg_id, rnd, domain);
	puts_(&b, line);
	if (html) {
		snprintf(line, sizeof(line), "Content-Type: multipart/alternative; boundary=\"%s\"\r\n\r\n--%s\r\n", boundary,
			 boundary);
		puts_(&b, line);
	}
	puts_(&b, "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n");
	put_base64_body(&b, text);
	if (html) {
		snprintf(line, sizeof(line),
			 "--%s\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n",
			 boundary);
		puts_(&b, line);
		put_base64_body(&b, html);
		snprintf(line, sizeof(line), "--%s--\r\n", boundary);
		puts_(&b, line);
	}
	if (!b.oom)
		*rcpt = strdup(to);
	json_decref(p);
	if (b.oom || !*rcpt) {
		free(b.s);
		free(*rcpt);
		*rcpt = NULL;
		return NULL;
	}
	return b.s;
}

/* --- SMTP --- */

typedef struct reader {
	const char *data;
	size_t len, off;
} reader;

static size_t read_cb(char *ptr, size_t size, size_t nmemb, void *userp)
{
	reader *r = userp;
	size_t room = size * nmemb, left = r->len - r->off;
	size_t n = left < room ? left : room;
	memcpy(ptr, r->data + r->off, n);
	r->off += n;
	return n;
}

static bool smtp_send(const idb_config *cfg, const char *rcpt, const char *msg, char errbuf[CURL_ERROR_SIZE])
{
	errbuf[0] = '\0';
	CURL *c = curl_easy_init();
	if (!c) {
		snprintf(errbuf, CURL_ERROR_SIZE, "curl_easy_init failed");
		return false;
	}
	char from[300], to[300];
	envelope_address(from, sizeof(from), cfg->smtp_from);
	snprintf(to, sizeof(to), "<%s>", rcpt);
	struct curl_slist *rcpts = curl_slist_append(NULL, to);
	reader r = {.data = msg, .len = strlen(msg)};
	curl_easy_setopt(c, CURLOPT_URL, cfg->smtp_url);
	if (strncmp(cfg->smtp_url, "smtp://", 7) == 0)
		curl_easy_setopt(c, CURLOPT_USE_SSL, (long)CURLUSESSL_TRY); /* STARTTLS when offered */
	curl_easy_setopt(c, CURLOPT_MAIL_FROM, from);
	curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rcpts);
	curl_easy_setopt(c, CURLOPT_READFUNCTION, read_cb);
	curl_easy_setopt(c, CURLOPT_READDATA, &r);
	curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)cfg->smtp_timeout_s);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)(cfg->smtp_timeout_s < 10 ? cfg->smtp_timeout_s : 10));
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	CURLcode rc = curl_easy_perform(c);
	if (rc != CURLE_OK && !errbuf[0])
		snprintf(errbuf, CURL_ERROR_SIZE, "%s", curl_easy_strerror(rc));
	curl_slist_free_all(rcpts);
	curl_easy_cleanup(c);
	return rc == CURLE_OK;
}

/* 1 when a message was attempted, 0 when there was none (or no database). */
static int deliver_one(idb_outbox *o)
{
	const idb_config *cfg = o->app->cfg;
	idb_err err;
	idb_err_clear(&err);
	idb_db *db;
	if (idb_store_acquire(o->app->store, &db, &err) != 0)
		return 0;
	if (idb_db_begin(db, &err) != 0) {
		idb_store_release(db);
		return 0;
	}
	idb_outbox_msg m;
	int rc = idb_outbox_claim(db, &m, &err);
	if (rc != 0) {
		if (rc != IDB_ENOTFOUND)
			idb_log_warn("outbox: cannot claim a message: %s", err.msg);
		idb_db_rollback(db);
		idb_store_release(db);
		return 0;
	}
	char *rcpt = NULL;
	char *msg = idb_outbox_render(m.payload, cfg->smtp_from, m.id, &rcpt);
	char errbuf[CURL_ERROR_SIZE];
	bool ok = false;
	if (!msg)
		snprintf(errbuf, sizeof(errbuf), "malformed outbox payload");
	else
		ok = smtp_send(cfg, rcpt, msg, errbuf);
	if (ok) {
		rc = idb_outbox_mark_sent(db, m.id, &err);
		/* The recipient is personal data: log the message id only. */
		idb_log_info("outbox: message %lld delivered", m.id);
	} else {
		rc = idb_outbox_mark_failed(db, m.id, errbuf, &err);
		idb_log_warn("outbox: message %lld not delivered (attempt %d): %s", m.id, m.attempts + 1, errbuf);
	}
	if (rc == 0)
		rc = idb_db_commit(db, &err);
	if (rc != 0) {
		idb_log_error("outbox: cannot record the result for message %lld: %s", m.id, err.msg);
		idb_db_rollback(db);
	}
	idb_store_release(db);
	free(msg);
	free(rcpt);
	idb_outbox_msg_clear(&m);
	return 1;
}

static void *sender_main(void *arg)
{
	idb_outbox *o = arg;
	idb_log_set_request_id("outbox");
	for (;;) {
		pthread_mutex_lock(&o->mu);
		bool stop = o->stop;
		pthread_mutex_unlock(&o->mu);
		if (stop)
			break;
		if (deliver_one(o) > 0)
			continue; /* drain the queue before sleeping */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_mutex_lock(&o->mu);
		if (!o->stop)
			pthread_cond_timedwait(&o->cv, &o->mu, &ts);
		pthread_mutex_unlock(&o->mu);
	}
	idb_log_set_request_id(NULL);
	return NULL;
}

int idb_outbox_start(idb_outbox **out, idb_app *app, idb_err *err)
{
	*out = NULL;
	if (!app->cfg->smtp_url[0]) {
		idb_log_info("smtp.url is empty: outgoing mail stays queued in the outbox");
		return 0;
	}
	idb_outbox *o = calloc(1, sizeof(*o));
	if (!o)
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	o->app = app;
	pthread_mutex_init(&o->mu, NULL);
	pthread_cond_init(&o->cv, NULL);
	if (pthread_create(&o->thread, NULL, sender_main, o) != 0) {
		pthread_mutex_destroy(&o->mu);
		pthread_cond_destroy(&o->cv);
		free(o);
		return idb_err_set(err, IDB_EINTERNAL, NULL, "cannot start the outbox sender thread");
	}
	/* The URL may carry credentials: name the scheme only. */
	idb_log_info("outbox sender started (%s)", strncmp(app->cfg->smtp_url, "smtps://", 8) == 0 ? "smtps" : "smtp");
	*out = o;
	return 0;
}

void idb_outbox_stop(idb_outbox *o)
{
	if (!o)
		return;
	pthread_mutex_lock(&o->mu);
	o->stop = true;
	pthread_cond_signal(&o->cv);
	pthread_mutex_unlock(&o->mu);
	pthread_join(o->thread, NULL);
	pthread_mutex_destroy(&o->mu);
	pthread_cond_destroy(&o->cv);
	free(o);
}
