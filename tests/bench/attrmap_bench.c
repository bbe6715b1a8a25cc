/* SPDX-License-Identifier: AGPL-3.0-or-later */
/* Mapping throughput: one identity with 200 group values (AD DNs) through a
 * map with 50 rules — 20 exact and 15 regex group_mapping rules, 10 exact and
 * 5 regex role_rules (only the last regex rule matches, so every rule is
 * tried) — plus dn_to_cn and an exclude filter. Prints ns per mapping.
 * Usage: attrmap_bench [iterations] (default 100000). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attrmap.h"

static double now_ns(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	long iters = argc > 1 ? strtol(argv[1], NULL, 10) : 100000;
	if (iters <= 0)
		iters = 100000;
	char settings[16384];
	size_t o = 0;
	o += (size_t)snprintf(settings + o, sizeof(settings) - o,
			      "{\"group_attribute\": \"memberOf\", \"group_transforms\": [\"dn_to_cn\"],"
			      " \"group_exclude\": [\"Domain Users\", \"re:^SQL-\"], \"max_role\": \"configure\","
			      " \"group_mapping\": [");
	for (int i = 0; i < 20; i++)
		o += (size_t)snprintf(settings + o, sizeof(settings) - o, "{\"idp\": \"app-%03d\", \"group\": \"App %d\"},",
				      i * 7, i);
	for (int i = 0; i < 15; i++)
		o += (size_t)snprintf(settings + o, sizeof(settings) - o,
				      "{\"idp\": \"re:^team-(\\\\w+)-%d$\", \"group\": \"Team $1 %d\"}%s", i, i,
				      i == 14 ? "" : ",");
	o += (size_t)snprintf(settings + o, sizeof(settings) - o, "], \"role_rules\": [");
	for (int i = 0; i < 10; i++)
		o += (size_t)snprintf(settings + o, sizeof(settings) - o, "{\"group\": \"Admins %d\", \"role\": \"admin\"},",
				      i);
	for (int i = 0; i < 5; i++)
		o += (size_t)snprintf(settings + o, sizeof(settings) - o,
				      "{\"group\": \"re:^Team \\\\w+ %d$\", \"role\": \"%s\"}%s", i == 4 ? 14 : 90 + i,
				      i == 4 ? "train" : "configure", i == 4 ? "" : ",");
	snprintf(settings + o, sizeof(settings) - o, "]}");

	idb_err err;
	idb_attrmap *m = NULL;
	if (idb_attrmap_compile(&m, settings, &err) != 0) {
		fprintf(stderr, "compile: %s: %s\n", err.field, err.msg);
		return 1;
	}
	idb_identity id;
	memset(&id, 0, sizeof(id));
	idb_identity_add(&id, "email", "bench.user@acme.example", &err);
	idb_identity_add(&id, "displayName", "Bench User", &err);
	char v[128];
	for (int i = 0; i < 200; i++) {
		if (i % 5 == 0)
			snprintf(v, sizeof(v), "CN=team-blue-%d,OU=Teams,DC=acme,DC=com", (i / 5) % 15);
		else if (i == 199)
			snprintf(v, sizeof(v), "CN=Domain Users,CN=Users,DC=acme,DC=com");
		else
			snprintf(v, sizeof(v), "CN=app-%03d,OU=Groups,DC=acme,DC=com", i);
		idb_identity_add(&id, "memberOf", v, &err);
	}
	idb_profile p;
	if (idb_attrmap_apply(m, &id, &p, &err) != 0) {
		fprintf(stderr, "apply: %s: %s\n", err.field, err.msg);
		return 1;
	}
	printf("groups in: 200, groups out: %zu, role %d (from rule: %s)\n", p.ngroups, p.role,
	       p.role_from_rule ? "yes" : "no");
	idb_profile_clear(&p);
	for (int i = 0; i < 1000; i++) { /* warm-up */
		idb_attrmap_apply(m, &id, &p, &err);
		idb_profile_clear(&p);
	}
	double t0 = now_ns(CLOCK_MONOTONIC), c0 = now_ns(CLOCK_PROCESS_CPUTIME_ID);
	for (long i = 0; i < iters; i++) {
		idb_attrmap_apply(m, &id, &p, &err);
		idb_profile_clear(&p);
	}
	double per = (now_ns(CLOCK_MONOTONIC) - t0) / (double)iters;
	double cpu = (now_ns(CLOCK_PROCESS_CPUTIME_ID) - c0) / (double)iters;
	/* CPU time is the figure to compare: wall time includes other load. */
	printf("attrmap_apply: %ld iterations, %.0f ns CPU per mapping (%.1f us), %.0f ns wall\n", iters, cpu,
	       cpu / 1000.0, per);
	idb_identity_clear(&id);
	idb_attrmap_free(m);
	return 0;
}
