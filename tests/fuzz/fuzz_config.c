/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*
 * libFuzzer harness of the configuration parsers: mxf_exchange_parse(),
 * mxf_exchange_list_check() and mxf_policy_new() on arbitrary strings.
 *
 * Input: byte 0 holds options (mode, scope, ...), the rest is split at
 * '\n' into exchange values (at most 40). Checks, abort() on violation:
 *  - no crash, no memory error (ASan/UBSan);
 *  - a value the parser accepts has a valid, lower-case, non-root name and
 *    round-trips: parse -> "PREF NAME" printed with knot_dname_to_str ->
 *    parse again gives the same preference and name;
 *  - the list check accepts exactly when every value parses, there are at
 *    most 32 and no two are equal; the offending value is one of the list;
 *  - mxf_policy_new() succeeds exactly when the list check does; the policy
 *    holds every value once, its minimum preference, and classifies its own
 *    rdataset as compliant;
 *  - mxf_policy_acquire() twice shares one policy and releasing both
 *    leaves the registry as it was.
 */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libknot/libknot.h>

#include "engine/policy.h"
#include "engine/rewrite.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond, ...) do { if (!(cond)) { \
	fprintf(stderr, "fuzz_config: invariant violated at line %d: ", __LINE__); \
	fprintf(stderr, __VA_ARGS__); \
	fprintf(stderr, "\n"); \
	abort(); \
} } while (0)

#define MAX_VALUES	40

static bool is_lower(const knot_dname_t *name)
{
	knot_dname_storage_t low;
	knot_dname_copy_lower(low, name);
	return knot_dname_is_equal(low, name);
}

static void check_value(const char *text, uint16_t *pref_out, knot_dname_t *name_out,
                        bool *ok)
{
	uint16_t pref = 0;
	knot_dname_storage_t name;
	const char *err = mxf_exchange_parse(text, &pref, name);
	*ok = (err == NULL);
	if (err != NULL) {
		CHECK(err[0] != '\0', "empty reason for '%s'", text);
		return;
	}
	int len = knot_dname_wire_check(name, name + KNOT_DNAME_MAXLEN, NULL);
	CHECK(len > 1, "accepted '%s' with an invalid or root name", text);
	CHECK(is_lower(name), "accepted name of '%s' is not lower-case", text);

	/* Round trip through the presentation format. */
	char txt[KNOT_DNAME_TXT_MAXLEN + 1];
	CHECK(knot_dname_to_str(txt, name, sizeof(txt)) != NULL,
	      "name of '%s' does not print", text);
	char again[KNOT_DNAME_TXT_MAXLEN + 16];
	snprintf(again, sizeof(again), "%u %s", pref, txt);
	uint16_t pref2 = 0;
	knot_dname_storage_t name2;
	const char *err2 = mxf_exchange_parse(again, &pref2, name2);
	CHECK(err2 == NULL, "'%s' accepted, its printed form '%s' refused (%s)",
	      text, again, err2);
	CHECK(pref2 == pref && knot_dname_is_equal(name, name2),
	      "'%s' and its printed form '%s' differ", text, again);

	*pref_out = pref;
	memcpy(name_out, name, knot_dname_size(name));
}

/* Whether (pref, name) is one of the policy's exchanges, as the engine
 * classifies an MX record with that rdata. */
static bool policy_has(const mxf_policy_t *p, uint16_t pref, const knot_dname_t *name)
{
	uint8_t buf[knot_rdata_size(2 + KNOT_DNAME_MAXLEN)];
	knot_rdata_t *rd = (knot_rdata_t *)buf;
	uint8_t rdata[2 + KNOT_DNAME_MAXLEN];
	knot_wire_write_u16(rdata, pref);
	size_t len = knot_dname_size(name);
	memcpy(rdata + 2, name, len);
	knot_rdata_init(rd, (uint16_t)(2 + len), rdata);
	return !mxf_rdata_is_legacy(p, rd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0 || size > 8192) {
		return 0;
	}
	uint8_t opts = data[0];
	char *buf = malloc(size);
	memcpy(buf, data + 1, size - 1);
	buf[size - 1] = '\0';

	const char *values[MAX_VALUES];
	size_t count = 0;
	char *p = buf;
	while (count < MAX_VALUES) {
		values[count++] = p;
		char *nl = memchr(p, '\n', (size_t)(buf + size - 1 - p));
		if (nl == NULL) {
			break;
		}
		*nl = '\0';
		p = nl + 1;
	}

	static uint16_t prefs[MAX_VALUES];
	static knot_dname_storage_t names[MAX_VALUES];
	bool all_ok = true, dup = false;
	size_t first_bad = SIZE_MAX;
	for (size_t i = 0; i < count; i++) {
		bool ok;
		check_value(values[i], &prefs[i], names[i], &ok);
		if (!ok && first_bad == SIZE_MAX) {
			first_bad = i;
		}
		all_ok &= ok;
		for (size_t j = 0; ok && j < i && i < MXF_MAX_EXCHANGES; j++) {
			if (first_bad == SIZE_MAX && prefs[j] == prefs[i] &&
			    knot_dname_is_equal(names[j], names[i])) {
				dup = true;
			}
		}
	}
	(void)mxf_exchange_parse(NULL, &prefs[0], names[0]);

	/* The list as a whole. */
	const char *bad = NULL;
	const char *err = mxf_exchange_list_check(values, count, &bad);
	bool list_ok = count <= MXF_MAX_EXCHANGES && all_ok && !dup;
	if (count <= MXF_MAX_EXCHANGES && first_bad != SIZE_MAX) {
		/* Refused for a bad value (or an earlier duplicate). */
		CHECK(err != NULL, "list with bad value %zu accepted", first_bad);
	}
	CHECK((err == NULL) == list_ok, "list check %s, expected %s (count %zu)",
	      err ? err : "ok", list_ok ? "ok" : "refused", count);
	if (err != NULL) {
		bool found = false;
		for (size_t i = 0; i < count; i++) {
			found |= (bad == values[i]);
		}
		CHECK(found, "offending value is not one of the list");
	}

	/* A policy from the list. */
	mxf_conf_t conf;
	mxf_conf_default(&conf);
	conf.exchange = values;
	conf.exchange_count = count;
	conf.mode = (opts & 1) ? MXF_MODE_AUDIT : MXF_MODE_ENFORCE;
	conf.scope = (opts & 2) ? MXF_SCOPE_APEX : MXF_SCOPE_ZONE;
	conf.null_mx = (opts & 4) ? MXF_NULLMX_REPLACE : MXF_NULLMX_KEEP;
	conf.ttl_set = (opts & 8) != 0;
	conf.ttl = opts * 1000u;
	conf.log_interval = (opts & 0x80) ? MXF_MAX_LOG_INTERVAL + (opts & 0x10) : opts & 0x3f;
	bool interval_ok = conf.log_interval <= MXF_MAX_LOG_INTERVAL;

	const char *perr = NULL;
	mxf_policy_t *pol = mxf_policy_new(&conf, &perr);
	CHECK((pol != NULL) == (list_ok && interval_ok), "policy_new %s, list %s",
	      pol ? "ok" : perr, err ? err : "ok");
	if (pol != NULL) {
		CHECK(pol->count == (count ? count : mxf_default_exchange_count),
		      "policy holds %u exchanges of %zu", pol->count, count);
		uint16_t min = UINT16_MAX;
		for (size_t i = 0; i < count; i++) {
			CHECK(policy_has(pol, prefs[i], names[i]), "value %zu missing", i);
			min = prefs[i] < min ? prefs[i] : min;
		}
		CHECK(count == 0 || pol->min_pref == min, "min_pref %u, expected %u",
		      pol->min_pref, min);
		CHECK(mxf_classify(pol, &pol->rrs) == MXF_SET_COMPLIANT,
		      "policy's own set is not compliant");
		const knot_rdata_t *rd = pol->rrs.rdata;
		for (uint16_t i = 0; i < pol->rrs.count; i++) {
			CHECK(!mxf_rdata_is_legacy(pol, rd), "own rdata %u legacy", i);
			rd = knot_rdataset_next((knot_rdata_t *)rd);
		}
		mxf_policy_free(pol);

		/* Shared policies. */
		const mxf_policy_t *a = mxf_policy_acquire(&conf, &perr);
		const mxf_policy_t *b = mxf_policy_acquire(&conf, &perr);
		CHECK(a != NULL && a == b && mxf_policy_refs(a) == 2, "acquire not shared");
		mxf_policy_release(b);
		CHECK(mxf_policy_refs(a) == 1, "release dropped %zu references", 2 - mxf_policy_refs(a));
		mxf_policy_release(a);
		CHECK(mxf_policy_refs(a) == 0, "policy still registered after the last release");
	}

	free(buf);
	return 0;
}
