/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "fetch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "util.h"

typedef struct sink {
	char *buf;
	size_t len, max;
	bool over;
} sink;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
	sink *s = ud;
	size_t n = size * nmemb;
	if (s->len + n > s->max) {
		s->over = true;
		return 0;
	}
	char *nb = realloc(s->buf, s->len + n + 1);
	if (!nb)
		return 0;
	memcpy(nb + s->len, ptr, n);
	s->buf = nb;
	s->len += n;
	s->buf[s->len] = '\0';
	return n;
}

static int perform(CURL *c, const char *url, size_t max_bytes, long timeout_ms, idb_fetch_result *out, idb_err *err)
{
	memset(out, 0, sizeof(*out));
	sink s = {.max = max_bytes};
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "https");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < 5000 ? timeout_ms : 5000L);
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_USERAGENT, "idbridge/" IDB_VERSION);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
	curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max_bytes);
	CURLcode rc = curl_easy_perform(c);
	if (s.over) {
		free(s.buf);
		return idb_err_set(err, IDB_ETOOBIG, NULL, "%s answered more than %zu bytes", url, max_bytes);
	}
	if (rc != CURLE_OK) {
		free(s.buf);
		return idb_err_set(err, IDB_EUNAVAIL, NULL, "cannot fetch %s: %s", url, curl_easy_strerror(rc));
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
	char *ct = NULL;
	curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
	if (ct)
		idb_strlcpy(out->content_type, ct, sizeof(out->content_type));
	out->body = s.buf ? s.buf : strdup("");
	out->len = s.len;
	return out->body ? 0 : idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
}

int idb_fetch_get(const char *url, size_t max_bytes, long timeout_ms, idb_fetch_result *out, idb_err *err)
{
	CURL *c = curl_easy_init();
	if (!c)
		return idb_err_set(err, IDB_EINTERNAL, NULL, "curl init failed");
	int rc = perform(c, url, max_bytes, timeout_ms, out, err);
	curl_easy_cleanup(c);
	return rc;
}

int idb_fetch_get_bearer(const char *url, const char *token, size_t max_bytes, long timeout_ms, idb_fetch_result *out,
			 idb_err *err)
{
	CURL *c = curl_easy_init();
	if (!c)
		return idb_err_set(err, IDB_EINTERNAL, NULL, "curl init failed");
	size_t n = strlen(token) + 32;
	char *hv = malloc(n);
	if (!hv) {
		curl_easy_cleanup(c);
		return idb_err_set(err, IDB_EINTERNAL, NULL, "out of memory");
	}
	snprintf(hv, n, "Authorization: Bearer %s", token);
	struct curl_slist *h = curl_slist_append(NULL, "Accept: application/json");
	h = curl_slist_append(h, hv);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	int rc = perform(c, url, max_bytes, timeout_ms, out, err);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	free(hv);
	return rc;
}

int idb_fetch_post_form(const char *url, const char *form, const char *basic_auth, size_t max_bytes, long timeout_ms,
			idb_fetch_result *out, idb_err *err)
{
	CURL *c = curl_easy_init();
	if (!c)
		return idb_err_set(err, IDB_EINTERNAL, NULL, "curl init failed");
	struct curl_slist *h = curl_slist_append(NULL, "Accept: application/json");
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, form);
	if (basic_auth) {
		curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
		curl_easy_setopt(c, CURLOPT_USERPWD, basic_auth);
	}
	int rc = perform(c, url, max_bytes, timeout_ms, out, err);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	return rc;
}

void idb_fetch_result_clear(idb_fetch_result *r)
{
	if (r) {
		free(r->body);
		memset(r, 0, sizeof(*r));
	}
}
