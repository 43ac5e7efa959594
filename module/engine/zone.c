/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*
 * A zone's engine: set up at module load (the shared policy, the zone's
 * part of the audit limiter, a signer when Knot signs the zone), the stages
 * it needs hooks on, and the lines written for it.
 */

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "zone.h"

/*** Lines. ***/

/* Knot writes a module's line as "LEVEL: [ZONE.] module 'mod-mxfilter/ID',
 * TEXT" into one buffer of 512 bytes (LOG_BUFLEN, common/log.c, every
 * series): TEXT gets what the level word and the zone's prefix leave. */
#define LOG_LINE	512

static size_t level_len(int level)
{
	switch (level) {
	case LOG_ERR:     return sizeof("error: ") - 1;
	case LOG_WARNING: return sizeof("warning: ") - 1;
	case LOG_NOTICE:  return sizeof("notice: ") - 1;
	default:          return sizeof("critical: ") - 1;
	}
}

void mxf_zone_line(const mxf_zone_t *zone, mxf_log_cb log, void *log_data,
                   const mxf_line_t *line)
{
	int level = (line->kind == MXF_LINE_ERROR) ? LOG_ERR :
	            (line->action == MXF_ACTION_AUDIT) ? LOG_WARNING : LOG_NOTICE;
	/* Every field within Knot's line: names are shortened to fit. */
	size_t prefix = level_len(level) + zone->prefix;
	char text[LOG_LINE];
	size_t size = (prefix < LOG_LINE - 128) ? LOG_LINE - prefix : 128;
	mxf_line_format(text, size, line);
	log(log_data, level, text);
}

void mxf_zone_log(mxf_log_cb log, void *log_data, int level, const char *fmt, ...)
{
	/* Longer than Knot's line: Knot cuts it as it cuts its own. */
	char text[2 * LOG_LINE];
	va_list ap;
	va_start(ap, fmt);
	(void)vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	log(log_data, level, text);
}

typedef struct {
	const mxf_zone_t *zone;
	mxf_log_cb log;
	void *log_data;
} emit_t;

static void emit_line(void *data, const mxf_line_t *line)
{
	const emit_t *e = data;
	mxf_zone_line(e->zone, e->log, e->log_data, line);
}

/* Lines of occurrences held by records gone quiet, written where the
 * zone's name is alive: in a query of the zone, or at the load of one of
 * its instances (Knot frees the name before it unloads the module). */
void mxf_zone_flush(mxf_zone_t *zone, mxf_log_cb log, void *log_data, uint32_t now)
{
	emit_t e = { zone, log, log_data };
	(void)mxf_audit_flush(&zone->audit, now != 0 ? now : mxf_now(), emit_line, &e);
}

/* "policy loaded", once per policy: the version is part of the literal, so
 * the file itself names it too (strings mxfilter.so | grep 'policy loaded,
 * version'). */
static void log_policy(mxf_log_cb log, void *log_data, const mxf_policy_t *policy)
{
	char list[MXF_MAX_EXCHANGES * 24 + 1] = "";
	size_t off = 0;
	for (uint16_t i = 0; i < policy->count && off < sizeof(list); i++) {
		char name[KNOT_DNAME_TXT_MAXLEN + 1];
		if (knot_dname_to_str(name, policy->ex[i].name, sizeof(name)) == NULL) {
			continue;
		}
		int n = snprintf(list + off, sizeof(list) - off, "%s%u %s",
		                 i > 0 ? " " : "", policy->ex[i].pref, name);
		off += (n > 0) ? (size_t)n : 0;
	}
	mxf_zone_log(log, log_data, LOG_INFO, "policy loaded, version "
	             MXF_VERSION ", mode %s, scope %s, exchanges %s",
	             policy->mode == MXF_MODE_ENFORCE ? "enforce" : "audit",
	             policy->scope == MXF_SCOPE_ZONE ? "zone" : "apex", list);
}

/*** The shared audit limiter. ***/

/* One audit limiter for every zone (each zone's records are apart in it);
 * it lives from the first zone set up to the last one freed. Knot loads a
 * reloaded configuration's modules before it unloads the old ones, so a
 * reload keeps it (and its thread). */
static pthread_mutex_t limiter_lock = PTHREAD_MUTEX_INITIALIZER;
static mxf_limiter_t *limiter;
static size_t limiter_refs;

static mxf_limiter_t *limiter_acquire(void)
{
	pthread_mutex_lock(&limiter_lock);
	if (limiter == NULL) {
		mxf_limiter_opts_t opts = {
			.max_bytes = 0, /* MXF_LIMITER_MAX_BYTES */
			.thread = true,
		};
		limiter = mxf_limiter_new(&opts);
	}
	if (limiter != NULL) {
		limiter_refs++;
	}
	mxf_limiter_t *lim = limiter;
	pthread_mutex_unlock(&limiter_lock);
	return lim;
}

static void limiter_release(void)
{
	pthread_mutex_lock(&limiter_lock);
	if (limiter_refs > 0 && --limiter_refs == 0) {
		mxf_limiter_free(limiter);
		limiter = NULL;
	}
	pthread_mutex_unlock(&limiter_lock);
}

/*** Set-up. ***/

/* A signer searching the zone's PEM key stores in Knot's order; without
 * one, DO answers that need enforcing in the signed zone fail closed. */
static mxf_signer_t *signer_new(const mxf_zone_conf_t *conf)
{
	const char *err = conf->keystore_error;
	mxf_signer_t *signer = NULL;
	if (err == NULL && conf->keystore_count > 0) {
		signer = mxf_signer_new(conf->name, conf->keystores[0], NULL, &err);
		for (size_t i = 1; i < conf->keystore_count && signer != NULL; i++) {
			if (mxf_signer_add_keystore(signer, conf->keystores[i]) != KNOT_EOK) {
				err = "out of memory";
				mxf_signer_free(signer);
				signer = NULL;
			}
		}
	} else if (err == NULL) {
		err = "no key store";
	}
	if (signer == NULL) {
		mxf_zone_log(conf->log, conf->log_data, LOG_ERR, "cannot sign enforced "
		             "answers, key store '%s', DNSSEC queries needing enforcement "
		             "will get SERVFAIL (%s)",
		             conf->keystore_count > 0 ? conf->keystores[0] : "?", err);
	}
	return signer;
}

mxf_zone_t *mxf_zone_new(const mxf_zone_conf_t *conf, const char **err)
{
	const mxf_policy_t *policy = mxf_policy_acquire(conf->conf, err);
	if (policy == NULL) {
		return NULL;
	}
	mxf_zone_t *zone = calloc(1, sizeof(*zone));
	mxf_limiter_t *lim = (zone != NULL) ? limiter_acquire() : NULL;
	if (lim == NULL) {
		free(zone);
		mxf_policy_release(policy);
		*err = knot_strerror(KNOT_ENOMEM);
		return NULL;
	}
	zone->name = conf->name;
	zone->policy = policy;
	mxf_audit_zone_init(&zone->audit, lim, conf->name);
	zone->zone_size = (uint16_t)knot_dname_size(conf->name);
	zone->prefix = conf->line_prefix;
	zone->signs = conf->signs;
	zone->rotation = conf->rotation;
	zone->counters = conf->counters;
	/* A reload: what the zone's old instance has to write, written now. */
	mxf_zone_flush(zone, conf->log, conf->log_data, 0);
	if (conf->signs) {
		zone->signer = signer_new(conf);
	}
	return zone;
}

void mxf_zone_free(mxf_zone_t *zone)
{
	if (zone == NULL) {
		return;
	}
	/* Its records go to the zone's newest instance (a reload), or are
	 * forgotten: the zone's name is already freed, no line can be
	 * written for it now. */
	(void)mxf_audit_zone_clear(&zone->audit);
	mxf_signer_free(zone->signer);
	mxf_policy_release(zone->policy);
	free(zone);
	limiter_release();
}

/*
 * The stages a zone needs, from its configuration and whether Knot signs it
 * (never from its contents: Knot reloads a zone's data without reloading
 * its modules, so a zone without MX today may hold one tomorrow).
 *
 *   PREANSWER  enforce: the apex (every plain authoritative owner on Knot
 *              3.4+) answered before Knot writes the zone's RRset
 *   ANSWER     always: what Knot wrote (rewritten in enforce mode,
 *              reported in audit mode)
 *   END_MX     enforce: the last line of defence; Knot skips every later
 *              hook once it truncates, and only END sees such an answer.
 *              Zone data can hold RRSIGs without dnssec-signing (a zone
 *              signed elsewhere), so every enforcing zone has it
 *   BEGIN      transfer: refuse
 *   END_XFR    a served transfer that is counted or logged: transfer log,
 *              or allow with counters
 *   AUTHORITY, END_DO
 *              enforce, synthesize: on, dnssec-signing: on: the apex's
 *              denial record must list the MX the module synthesizes
 *
 * END_MX, END_XFR and END_DO are one hook: the glue picks the one whose
 * first test looks only at what the zone needs.
 */
unsigned mxf_zone_stages(const mxf_zone_t *zone)
{
	const mxf_policy_t *policy = zone->policy;
	unsigned stages = MXF_STAGE_ANSWER;
	if (policy->mode == MXF_MODE_ENFORCE) {
		stages |= MXF_STAGE_PREANSWER | MXF_STAGE_END_MX;
		if (policy->synthesize && zone->signs) {
			stages |= MXF_STAGE_AUTHORITY | MXF_STAGE_END_DO;
		}
	}
	if (policy->transfer == MXF_XFR_REFUSE) {
		stages |= MXF_STAGE_BEGIN;
	} else if (policy->transfer == MXF_XFR_LOG || zone->counters) {
		stages |= MXF_STAGE_END_XFR;
	}
	return stages;
}

void mxf_zone_ready(mxf_zone_t *zone, unsigned stages, mxf_log_cb log, void *log_data)
{
	zone->stages = (uint8_t)stages;
	if (mxf_policy_refs(zone->policy) == 1) {
		log_policy(log, log_data, zone->policy);
	}
}
