/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*
 * The configuration's checks and defaults (include/mxfilter/conf.h), and
 * the policy built from it: the filtering set as MX rdata in canonical
 * order, indexed for classification, with its wire image (writer.c), shared
 * by every zone of the same configuration through a registry touched only
 * at module load and unload.
 */

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "writer.h"

const char *const mxf_default_exchanges[] = {
	"10 france.security-mail.net.",
	"20 europe.security-mail.net.",
};
const size_t mxf_default_exchange_count =
	sizeof(mxf_default_exchanges) / sizeof(mxf_default_exchanges[0]);

void mxf_conf_default(mxf_conf_t *conf)
{
	*conf = (mxf_conf_t) {
		.exchange = mxf_default_exchanges,
		.exchange_count = mxf_default_exchange_count,
		.mode = MXF_DEFAULT_MODE,
		.scope = MXF_DEFAULT_SCOPE,
		.synthesize = MXF_DEFAULT_SYNTHESIZE,
		.null_mx = MXF_DEFAULT_NULL_MX,
		.ttl_set = false,
		.log_interval = MXF_DEFAULT_LOG_INTERVAL,
		.transfer = MXF_DEFAULT_TRANSFER,
	};
}

/*** Exchange parsing. ***/

const char *mxf_exchange_parse(const char *text, uint16_t *pref,
                               knot_dname_storage_t name)
{
	if (text == NULL) {
		return "empty exchange";
	}

	const char *p = text;
	while (isspace((unsigned char)*p)) {
		p++;
	}
	if (*p == '\0') {
		return "empty exchange";
	}

	/* Preference: decimal digits only, 0-65535. */
	if (!isdigit((unsigned char)*p)) {
		return "preference is not a number 0-65535";
	}
	uint32_t value = 0;
	while (isdigit((unsigned char)*p)) {
		value = value * 10 + (uint32_t)(*p - '0');
		if (value > UINT16_MAX) {
			return "preference out of range 0-65535";
		}
		p++;
	}
	if (*p != '\0' && !isspace((unsigned char)*p)) {
		return "preference is not a number 0-65535";
	}
	while (isspace((unsigned char)*p)) {
		p++;
	}
	if (*p == '\0') {
		return "missing exchange name";
	}

	/* Name: up to the next blank, nothing after it. */
	const char *end = p;
	while (*end != '\0' && !isspace((unsigned char)*end)) {
		end++;
	}
	const char *rest = end;
	while (isspace((unsigned char)*rest)) {
		rest++;
	}
	if (*rest != '\0') {
		return "unexpected text after exchange name";
	}

	size_t len = (size_t)(end - p);
	char txt[KNOT_DNAME_TXT_MAXLEN + 2];
	if (len >= KNOT_DNAME_TXT_MAXLEN) {
		return "exchange name too long";
	}
	memcpy(txt, p, len);
	txt[len] = '\0';
	if (len == 1 && txt[0] == '.') {
		return "null exchange '.' not allowed";
	}
	/* A missing final dot means the same absolute name. */
	if (txt[len - 1] != '.') {
		txt[len] = '.';
		txt[len + 1] = '\0';
	} else if (len >= 2 && txt[len - 2] == '.' &&
	           (len < 3 || txt[len - 3] != '\\')) {
		return "invalid exchange name";
	}

	if (knot_dname_from_str(name, txt, KNOT_DNAME_MAXLEN) == NULL) {
		return "invalid exchange name";
	}
	knot_dname_to_lower(name);

	*pref = (uint16_t)value;
	return NULL;
}

/* Parses and checks a list into \a prefs and \a names (each value once). */
static const char *list_parse(const char *const *values, size_t count, const char **bad,
                              uint16_t *prefs, knot_dname_storage_t *names)
{
	if (count > MXF_MAX_EXCHANGES) {
		*bad = values[MXF_MAX_EXCHANGES];
		return "too many exchanges (at most 32)";
	}

	for (size_t i = 0; i < count; i++) {
		const char *err = mxf_exchange_parse(values[i], &prefs[i], names[i]);
		if (err != NULL) {
			*bad = values[i];
			return err;
		}
		for (size_t j = 0; j < i; j++) {
			if (prefs[j] == prefs[i] &&
			    knot_dname_is_equal(names[j], names[i])) {
				*bad = values[i];
				return "duplicate exchange";
			}
		}
	}

	return NULL;
}

const char *mxf_exchange_list_check(const char *const *values, size_t count,
                                    const char **bad)
{
	uint16_t prefs[MXF_MAX_EXCHANGES];
	knot_dname_storage_t names[MXF_MAX_EXCHANGES];
	return list_parse(values, count, bad, prefs, names);
}

/*** Policy. ***/

static int mx_rdata_put(knot_rdataset_t *rrs, uint16_t pref, const knot_dname_t *name)
{
	size_t name_len = knot_dname_size(name);
	if (name_len > KNOT_DNAME_MAXLEN) {
		return KNOT_EINVAL;
	}
	uint8_t data[2 + KNOT_DNAME_MAXLEN];
	knot_wire_write_u16(data, pref);
	memcpy(data + 2, name, name_len);
	uint8_t buf[knot_rdata_size(2 + KNOT_DNAME_MAXLEN)];
	knot_rdata_t *rd = (knot_rdata_t *)buf;
	knot_rdata_init(rd, (uint16_t)(2 + name_len), data);
	return knot_rdataset_add(rrs, rd, NULL);
}

mxf_policy_t *mxf_policy_new(const mxf_conf_t *conf, const char **err)
{
	const char *const *values = conf->exchange;
	size_t count = conf->exchange_count;
	if (count == 0) {
		values = mxf_default_exchanges;
		count = mxf_default_exchange_count;
	}

	const char *bad = NULL;
	uint16_t prefs[MXF_MAX_EXCHANGES];
	knot_dname_storage_t names[MXF_MAX_EXCHANGES];
	*err = list_parse(values, count, &bad, prefs, names);
	if (*err != NULL) {
		return NULL;
	}
	if (conf->log_interval > MXF_MAX_LOG_INTERVAL) {
		*err = "log-interval out of range";
		return NULL;
	}

	mxf_policy_t *policy = calloc(1, sizeof(*policy));
	if (policy == NULL) {
		*err = "out of memory";
		return NULL;
	}
	policy->mode = conf->mode;
	policy->scope = conf->scope;
	policy->synthesize = conf->synthesize;
	policy->null_mx = conf->null_mx;
	policy->ttl_set = conf->ttl_set;
	policy->ttl = conf->ttl;
	policy->log_interval = conf->log_interval;
	policy->transfer = conf->transfer;

	for (size_t i = 0; i < count; i++) {
		if (mx_rdata_put(&policy->rrs, prefs[i], names[i]) != KNOT_EOK) {
			mxf_policy_free(policy);
			*err = "out of memory";
			return NULL;
		}
	}

	/* Index the exchanges in the rdataset's canonical order. */
	policy->count = policy->rrs.count;
	policy->min_pref = UINT16_MAX;
	knot_rdata_t *rd = policy->rrs.rdata;
	for (uint16_t i = 0; i < policy->count; i++) {
		policy->ex[i].pref = knot_wire_read_u16(rd->data);
		policy->ex[i].name = rd->data + 2;
		policy->ex[i].size = rd->len - 2;
		if (policy->ex[i].pref < policy->min_pref) {
			policy->min_pref = policy->ex[i].pref;
		}
		policy->pref_bits |= (uint64_t)1 << (policy->ex[i].pref % 64);
		rd = knot_rdataset_next(rd);
	}

	if (mxf_image_build(policy) != KNOT_EOK) {
		mxf_policy_free(policy);
		*err = "out of memory";
		return NULL;
	}

	return policy;
}

void mxf_policy_free(mxf_policy_t *policy)
{
	if (policy == NULL) {
		return;
	}
	mxf_image_free(policy);
	knot_rdataset_clear(&policy->rrs, NULL);
	free(policy);
}

/*** Registry of shared policies. ***/

/*
 * Zones with the same configuration share one policy. The registry is a
 * short list keyed by the canonical text of the configuration; it is touched
 * only at module load and unload, under a mutex, never on the query path.
 * Its size is the number of distinct configurations (a handful), not the
 * number of zones.
 */

typedef struct entry {
	struct entry *next;
	char *key;
	size_t refs;
	mxf_policy_t *policy;
} entry_t;

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static entry_t *registry;

/* Canonical, unambiguous text of a configuration. */
static char *conf_key(const mxf_conf_t *conf)
{
	size_t len = 128;
	for (size_t i = 0; i < conf->exchange_count; i++) {
		len += strlen(conf->exchange[i]) + 1;
	}
	char *key = malloc(len);
	if (key == NULL) {
		return NULL;
	}
	int n = snprintf(key, len, "%d %d %d %d %d %u %u %d %zu|",
	                 conf->mode, conf->scope, conf->synthesize, conf->null_mx,
	                 conf->ttl_set, conf->ttl_set ? conf->ttl : 0,
	                 conf->log_interval, conf->transfer, conf->exchange_count);
	size_t off = (n > 0) ? (size_t)n : 0;
	for (size_t i = 0; i < conf->exchange_count; i++) {
		size_t l = strlen(conf->exchange[i]);
		memcpy(key + off, conf->exchange[i], l);
		off += l;
		key[off++] = '\n'; /* Cannot occur inside a value. */
	}
	key[off] = '\0';
	return key;
}

const mxf_policy_t *mxf_policy_acquire(const mxf_conf_t *conf, const char **err)
{
	char *key = conf_key(conf);
	if (key == NULL) {
		*err = "out of memory";
		return NULL;
	}

	pthread_mutex_lock(&registry_lock);
	for (entry_t *e = registry; e != NULL; e = e->next) {
		if (strcmp(e->key, key) == 0) {
			e->refs++;
			pthread_mutex_unlock(&registry_lock);
			free(key);
			return e->policy;
		}
	}

	entry_t *e = calloc(1, sizeof(*e));
	mxf_policy_t *policy = (e != NULL) ? mxf_policy_new(conf, err) : NULL;
	if (policy == NULL) {
		pthread_mutex_unlock(&registry_lock);
		if (e == NULL) {
			*err = "out of memory";
		}
		free(e);
		free(key);
		return NULL;
	}
	e->key = key;
	e->refs = 1;
	e->policy = policy;
	e->next = registry;
	registry = e;
	pthread_mutex_unlock(&registry_lock);

	return policy;
}

void mxf_policy_release(const mxf_policy_t *policy)
{
	if (policy == NULL) {
		return;
	}

	pthread_mutex_lock(&registry_lock);
	for (entry_t **pe = &registry; *pe != NULL; pe = &(*pe)->next) {
		entry_t *e = *pe;
		if (e->policy != policy) {
			continue;
		}
		if (--e->refs == 0) {
			*pe = e->next;
			mxf_policy_free(e->policy);
			free(e->key);
			free(e);
		}
		break;
	}
	pthread_mutex_unlock(&registry_lock);
}

size_t mxf_policy_refs(const mxf_policy_t *policy)
{
	size_t refs = 0;
	pthread_mutex_lock(&registry_lock);
	for (entry_t *e = registry; e != NULL; e = e->next) {
		if (e->policy == policy) {
			refs = e->refs;
			break;
		}
	}
	pthread_mutex_unlock(&registry_lock);
	return refs;
}
