/* SPDX-License-Identifier: AGPL-3.0-or-later */
#include "sso.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void idb_html_escape(char *out, size_t outsz, const char *in)
{
	size_t o = 0;
	for (; in && *in && o + 7 < outsz; in++) {
		const char *rep = NULL;
		switch (*in) {
		case '<': rep = "&lt;"; break;
		case '>': rep = "&gt;"; break;
		case '&': rep = "&amp;"; break;
		case '\'': rep = "&#39;"; break;
		case '"': rep = "&quot;"; break;
		}
		if (rep) {
			size_t n = strlen(rep);
			memcpy(out + o, rep, n);
			o += n;
		} else {
			out[o++] = *in;
		}
	}
	out[o] = '\0';
}

int idb_sso_fail(idb_req *req, unsigned status, const char *type, const char *title, const char *detail)
{
	if (idb_req_wants_json(req) && !idb_req_is_form(req))
		return idb_resp_problem(req, status, type, title, detail, NULL);
	const char *accept = idb_req_header(req, "Accept");
	if (accept && strstr(accept, "application/json"))
		return idb_resp_problem(req, status, type, title, detail, NULL);
	char et[200], ed[600], page[1400];
	idb_html_escape(et, sizeof(et), title);
	idb_html_escape(ed, sizeof(ed), detail);
	int n = snprintf(page, sizeof(page),
			 "<!doctype html><html lang=en><head><meta charset=utf-8><title>%s · idbridge</title>"
			 "<meta name=viewport content='width=device-width,initial-scale=1'>"
			 "<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}"
			 "</style></head><body><h1>%s</h1><p>%s</p><p><a href=/login>Back to sign-in</a></p>"
			 "<!-- %s --></body></html>",
			 et, et, ed, type);
	idb_resp_header(req, "Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'");
	return idb_resp_body(req, status, "text/html; charset=utf-8", page, (size_t)(n < (int)sizeof(page) ? n : (int)sizeof(page) - 1));
}
