/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 *
 *  This program is free software: you can redistribute it and/or modify
 *  it under the terms of the GNU General Public License as published by
 *  the Free Software Foundation, either version 3 of the License, or
 *  (at your option) any later version.
 */

/*
 * mod-mxfilter: the Knot glue. It turns configuration into a shared engine
 * policy and Knot's hooks into engine calls:
 *
 *   BEGIN      outgoing AXFR/IXFR with "transfer: refuse" -> REFUSED
 *   PREANSWER  MX query at the apex (any plain authoritative name on Knot
 *              3.4+): answer the filtering set before Knot builds the zone's
 *              legacy answer (cheapest, and it cannot leak); what such an
 *              answer may hold is written down above serve_compliant()
 *   ANSWER     any other MX in the answer: mxf_process() rewrites it
 *   END        last line of defence: a response that still holds a legacy
 *              MX (Knot 3.2 skips every later hook once it truncates)
 *              becomes an empty TC answer or SERVFAIL; transfer accounting
 *
 * Signed zones that synthesize the apex MX get an AUTHORITY and a second END
 * hook and a step on the ANSWER hook's MX path (see "Denial records"
 * below): their apex NSEC/NSEC3 lists MX in every DNSSEC answer.
 *
 * Everything that decides or rewrites lives in the engine (policy.c,
 * rewrite.c, audit.c, sign.c, denial.c), which depends on libknot,
 * libdnssec and liburcu only.
 */

#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <knot/module.h>

#include "engine/audit.h"
#include "engine/wire.h"
#include "engine/denial.h"
#include "mxfilter/policy.h"
#include "engine/rewrite.h"
#include "engine/sign.h"
#include "knotconf.h"

/*** Configuration. ***/

#define MOD_EXCHANGE	"\x08""exchange"
#define MOD_MODE	"\x04""mode"
#define MOD_SCOPE	"\x05""scope"
#define MOD_SYNTH	"\x0a""synthesize"
#define MOD_NULLMX	"\x07""null-mx"
#define MOD_TTL		"\x03""ttl"
#define MOD_LOG_INT	"\x0c""log-interval"
#define MOD_TRANSFER	"\x08""transfer"
#define MOD_COUNTERS	"\x08""counters"

static const knot_lookup_t mode_opts[] = {
	{ MXF_MODE_ENFORCE, "enforce" },
	{ MXF_MODE_AUDIT,   "audit" },
	{ 0, NULL }
};

static const knot_lookup_t scope_opts[] = {
	{ MXF_SCOPE_ZONE, "zone" },
	{ MXF_SCOPE_APEX, "apex" },
	{ 0, NULL }
};

static const knot_lookup_t nullmx_opts[] = {
	{ MXF_NULLMX_KEEP,    "keep" },
	{ MXF_NULLMX_REPLACE, "replace" },
	{ 0, NULL }
};

static const knot_lookup_t transfer_opts[] = {
	{ MXF_XFR_ALLOW,  "allow" },
	{ MXF_XFR_LOG,    "log" },
	{ MXF_XFR_REFUSE, "refuse" },
	{ 0, NULL }
};

static int check_exchange(knotd_conf_check_args_t *args);

const yp_item_t mxfilter_conf[] = {
	{ MOD_EXCHANGE, YP_TSTR,  YP_VNONE, YP_FMULTI, { check_exchange } },
	{ MOD_MODE,     YP_TOPT,  YP_VOPT = { mode_opts, MXF_MODE_ENFORCE } },
	{ MOD_SCOPE,    YP_TOPT,  YP_VOPT = { scope_opts, MXF_SCOPE_ZONE } },
	{ MOD_SYNTH,    YP_TBOOL, YP_VBOOL = { true } },
	{ MOD_NULLMX,   YP_TOPT,  YP_VOPT = { nullmx_opts, MXF_NULLMX_KEEP } },
	{ MOD_TTL,      YP_TINT,  YP_VINT = { 0, INT32_MAX, 0, YP_STIME } },
	{ MOD_LOG_INT,  YP_TINT,  YP_VINT = { 0, MXF_MAX_LOG_INTERVAL, 60, YP_STIME } },
	{ MOD_TRANSFER, YP_TOPT,  YP_VOPT = { transfer_opts, MXF_XFR_LOG } },
	{ MOD_COUNTERS, YP_TBOOL, YP_VBOOL = { true } },
	{ NULL }
};

/* Reasons must outlive the callback; one buffer per checking thread. */
static __thread char check_reason[160];

static int check_exchange(knotd_conf_check_args_t *args)
{
	uint16_t pref;
	knot_dname_storage_t name;
	const char *err = mxf_exchange_parse((const char *)args->data, &pref, name);
	if (err != NULL) {
		args->err_str = err;
		return KNOT_EINVAL;
	}
	return KNOT_EOK;
}

static int mxfilter_conf_check(knotd_conf_check_args_t *args)
{
	knotd_conf_t ex = knotd_conf_check_item(args, MOD_EXCHANGE);
	const char *values[MXF_MAX_EXCHANGES + 1];
	size_t count = (ex.count > MXF_MAX_EXCHANGES) ? MXF_MAX_EXCHANGES + 1 : ex.count;
	for (size_t i = 0; i < count; i++) {
		values[i] = ex.multi[i].string;
	}

	int ret = KNOT_EOK;
	const char *bad = NULL;
	const char *err = mxf_exchange_list_check(values, count, &bad);
	if (err != NULL) {
		(void)snprintf(check_reason, sizeof(check_reason),
		               "invalid exchange '%s' (%s)", bad, err);
		args->err_str = check_reason;
		ret = KNOT_EINVAL;
	}
	knotd_conf_free(&ex);
	return ret;
}

/*** Shared state. ***/

/* One audit limiter for every zone (each zone's records are apart in it);
 * it lives from the first module load to the last unload. Knot loads a
 * reloaded configuration's modules before it unloads the old ones, so a
 * reload keeps it (and its thread). */
static pthread_mutex_t limiter_lock = PTHREAD_MUTEX_INITIALIZER;
static mxf_limiter_t *limiter;
static size_t limiter_refs;

static size_t limiter_max_bytes(void);

static int limiter_acquire(void)
{
	int ret = KNOT_EOK;
	pthread_mutex_lock(&limiter_lock);
	if (limiter == NULL) {
		mxf_limiter_opts_t opts = {
			.max_bytes = limiter_max_bytes(),
			.thread = true,
		};
		limiter = mxf_limiter_new(&opts);
	}
	if (limiter != NULL) {
		limiter_refs++;
	} else {
		ret = KNOT_ENOMEM;
	}
	pthread_mutex_unlock(&limiter_lock);
	return ret;
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

#ifdef MXF_FAULT_INJECTION
/* Test build only: MXFILTER_FAULT=enomem makes every enforcement fail,
 * MXFILTER_FAULT=load makes the module's set-up fail for every zone. */
static bool fault(const char *what)
{
	const char *f = getenv("MXFILTER_FAULT");
	return f != NULL && strcmp(f, what) == 0;
}
#define fault_enomem()	fault("enomem")
#define fault_load()	fault("load")

/* MXFILTER_AUDIT_MEMORY=BYTES bounds the audit limiter, to reach the bound
 * in a test. */
static size_t limiter_max_bytes(void)
{
	const char *v = getenv("MXFILTER_AUDIT_MEMORY");
	return v != NULL ? (size_t)strtoull(v, NULL, 10) : 0;
}

/* Test build only: MXFILTER_SIGCACHE=BASE,PER_ZONE,RATE,BURST sets the
 * signature cache's limits (a tiny budget without filling 64 MiB). */
static void fault_sigcache_limits(void)
{
	const char *v = getenv("MXFILTER_SIGCACHE");
	mxf_sigcache_limits_t lim;
	unsigned long base, per_zone, rate, burst;
	if (v != NULL && sscanf(v, "%lu,%lu,%lu,%lu", &base, &per_zone, &rate, &burst) == 4) {
		lim = (mxf_sigcache_limits_t) { base, per_zone, rate, burst };
		mxf_sigcache_set_limits(&lim);
	}
}
#else
#define fault_enomem()	false
#define fault_load()	false

static size_t limiter_max_bytes(void)
{
	return 0; /* MXF_LIMITER_MAX_BYTES */
}
#define fault_sigcache_limits()
#endif

/*** Per-zone context. ***/

typedef struct zone_ctx zone_ctx_t;

/* All a zone holds: the shared policy, a signer if Knot signs it, and two
 * flags read at load. "counters" is glue only, so ids that differ in
 * nothing else share one policy. */
struct zone_ctx {
	const mxf_policy_t *policy;
	mxf_signer_t *signer;
	mxf_audit_zone_t audit; /* The zone's part of the audit limiter. */
	size_t zone_size; /* Wire size of the zone's name: most QNAMEs differ. */
	uint16_t prefix; /* Length of Knot's "[ZONE.] module '...', " in a line. */
	bool rotation; /* server answer-rotation: Knot reorders RRsets per query. */
	bool counters; /* Counters registered (counters: on). */
	bool denial;   /* Denial hooks registered (signed, synthesizing). */
};

/*** Counters (registered in this order). ***/

enum {
	CTR_ENFORCED = 0,
	CTR_SYNTHESIZED,
	CTR_BLOCKED,
	CTR_AUDITED,
	CTR_COMPLIANT,
	CTR_FAILED,
	CTR_TRANSFERS,
};

enum { XFR_ALLOWED = 0, XFR_REFUSED = 1 };

static char *risk_to_str(uint32_t idx, uint32_t count)
{
	return strdup(mxf_risk_str((mxf_risk_t)idx));
}

static char *transfer_to_str(uint32_t idx, uint32_t count)
{
	return strdup(idx == XFR_ALLOWED ? "allowed" : "refused");
}

static int register_counters(knotd_mod_t *mod)
{
	static const struct {
		const char *name;
		uint32_t count;
		knotd_mod_idx_to_str_f to_str;
	} ctrs[] = {
		[CTR_ENFORCED]    = { "enforced",    1, NULL },
		[CTR_SYNTHESIZED] = { "synthesized", 1, NULL },
		[CTR_BLOCKED]     = { "blocked",     2, risk_to_str },
		[CTR_AUDITED]     = { "audited",     1, NULL },
		[CTR_COMPLIANT]   = { "compliant",   1, NULL },
		[CTR_FAILED]      = { "failed",      1, NULL },
		[CTR_TRANSFERS]   = { "transfers",   2, transfer_to_str },
	};
	for (size_t i = 0; i < sizeof(ctrs) / sizeof(ctrs[0]); i++) {
		int ret = knotd_mod_stats_add(mod, ctrs[i].name, ctrs[i].count,
		                              ctrs[i].to_str);
		if (ret != KNOT_EOK) {
			return ret;
		}
	}
	return KNOT_EOK;
}

/* Every counter update goes through here: Knot has no counter storage for
 * a zone that registered none, so the flag is checked before every one. */
static void count_in(const zone_ctx_t *zc, knotd_mod_t *mod, knotd_qdata_t *qdata,
                     uint32_t ctr, uint32_t idx, uint64_t val)
{
	if (val > 0 && zc->counters) {
		knotd_mod_stats_incr(mod, qdata->params->thread_id, ctr, idx, val);
	}
}

static void count(knotd_mod_t *mod, knotd_qdata_t *qdata, uint32_t ctr,
                  uint32_t idx, uint64_t val)
{
	count_in(knotd_mod_ctx(mod), mod, qdata, ctr, idx, val);
}

static void count_result(knotd_mod_t *mod, knotd_qdata_t *qdata,
                         const mxf_result_t *res)
{
	const zone_ctx_t *zc = knotd_mod_ctx(mod);
	count_in(zc, mod, qdata, CTR_ENFORCED, 0, res->enforced);
	count_in(zc, mod, qdata, CTR_BLOCKED, MXF_RISK_BYPASS, res->blocked[MXF_RISK_BYPASS]);
	count_in(zc, mod, qdata, CTR_BLOCKED, MXF_RISK_FALLBACK, res->blocked[MXF_RISK_FALLBACK]);
	count_in(zc, mod, qdata, CTR_AUDITED, 0, res->served);
	count_in(zc, mod, qdata, CTR_COMPLIANT, 0, res->compliant);
}

/*** Audit trail. ***/

/* What the engine's callbacks need about the query being answered. */
typedef struct {
	knotd_mod_t *mod;
	zone_ctx_t *zc;
	knotd_qdata_t *qdata;
	mxf_signer_t *signer;
	knot_rrset_t apex_rrsig; /* Read once for a DO query to a signed zone. */
	knot_rrset_t dnskey;     /* Read only when the signer needs the keys. */
	mxf_audit_t audit;  /* Which records get a log line. */
	const knot_dname_t *served; /* First enforced owner (error lines). */
	knot_dname_storage_t wild;  /* Wildcard owner of an expanded RRset. */
	knot_dname_storage_t served_wild;
} query_ctx_t;

/* Knot's module line is "LEVEL: [ZONE.] module 'mod-mxfilter/ID', TEXT" in
 * one buffer of 512 bytes (LOG_BUFLEN, common/log.c); TEXT gets the rest. */
#define LOG_LINE	512
#define PREFIX_MAX	(LOG_LINE / 2) /* Assumed when the zone is unknown. */

static size_t level_len(int level)
{
	switch (level) {
	case LOG_ERR:     return sizeof("error: ") - 1;
	case LOG_WARNING: return sizeof("warning: ") - 1;
	case LOG_NOTICE:  return sizeof("notice: ") - 1;
	default:          return sizeof("critical: ") - 1;
	}
}

static void log_line(knotd_mod_t *mod, const zone_ctx_t *zc, const mxf_line_t *line)
{
	int level = (line->kind == MXF_LINE_ERROR) ? LOG_ERR :
	            (line->action == MXF_ACTION_AUDIT) ? LOG_WARNING : LOG_NOTICE;
	/* Every field within Knot's line: names are shortened to fit. */
	size_t prefix = level_len(level) + (zc != NULL ? zc->prefix : PREFIX_MAX);
	char text[LOG_LINE];
	size_t size = (prefix < LOG_LINE - 128) ? LOG_LINE - prefix : 128;
	mxf_line_format(text, size, line);
	knotd_mod_log(mod, level, "%s", text);
}

/* Lines of occurrences held by records gone quiet, written where the
 * zone's name is alive: in a query of the zone, or at the load of one of
 * its instances (Knot frees the name before it unloads the module). */
typedef struct {
	knotd_mod_t *mod;
	const zone_ctx_t *zc;
} emit_ctx_t;

static void emit_line(void *data, const mxf_line_t *line)
{
	emit_ctx_t *ec = data;
	log_line(ec->mod, ec->zc, line);
}

static void audit_flush(knotd_mod_t *mod, zone_ctx_t *zc, uint32_t now)
{
	emit_ctx_t ec = { mod, zc };
	(void)mxf_audit_flush(&zc->audit, now != 0 ? now : mxf_now(), emit_line, &ec);
}

/*
 * The owner a wildcard expanded for a CNAME target (Knot gives that RRset a
 * copy of the name asked) is logged and keyed by: the wildcard's own name.
 * From Knot 3.4 (knotd_qdata_zone_rrset()) it is found: the nearest
 * ancestor "*.A" holding this very MX RRset. Knot 3.2 gives modules no look
 * below the apex, so there "*.ZONE." stands for every wildcard of the zone.
 * (A wildcard answered directly keeps its owner "*.A" in the packet.)
 */
static const knot_dname_t *wildcard_owner(knotd_mod_t *mod, knotd_qdata_t *qdata,
                                          const knot_rrset_t *rr, uint8_t *buf)
{
	const knot_dname_t *zone = knotd_mod_zone(mod);
	size_t zone_size = knot_dname_size(zone);
#if KNOTD_MOD_ABI_VERSION >= 600
	const knot_dname_t *n = rr->owner;
	for (int depth = 0; n != NULL && *n != 0 && depth < KNOT_DNAME_MAXLABELS; depth++) {
		n = mxf_dname_next_label(n);
		size_t size = knot_dname_size(n);
		if (size < zone_size || size + 2 > KNOT_DNAME_MAXLEN) {
			break;
		}
		buf[0] = 1;
		buf[1] = '*';
		memcpy(buf + 2, n, size);
		knot_rrset_t wild;
		if (knotd_qdata_zone_rrset(qdata, NULL, buf, KNOT_RRTYPE_MX, &wild) == KNOT_EOK &&
		    !knot_rrset_empty(&wild) && knot_rdataset_eq(&wild.rrs, &rr->rrs)) {
			return buf;
		}
	}
#endif
	if (zone_size + 2 > KNOT_DNAME_MAXLEN) {
		return zone;
	}
	buf[0] = 1;
	buf[1] = '*';
	memcpy(buf + 2, zone, zone_size);
	return buf;
}

/* on_legacy_set() for an expanded wildcard (kept out of its busy path). */
__attribute__((noinline))
static const knot_dname_t *expanded_owner(query_ctx_t *ac, const knot_rrset_t *rr,
                                          mxf_action_t action)
{
	const knot_dname_t *owner = wildcard_owner(ac->mod, ac->qdata, rr, ac->wild);
	if (ac->served == NULL && action == MXF_ACTION_BLOCKED) {
		/* Kept for a failure line (the packet's copy may go). */
		memcpy(ac->served_wild, owner, knot_dname_size(owner));
		ac->served = ac->served_wild;
	}
	return owner;
}

static bool on_legacy_set(const knot_rrset_t *rr, bool expanded, mxf_action_t action,
                          void *data)
{
	query_ctx_t *ac = data;
	const knot_dname_t *owner = rr->owner;
	if (__builtin_expect(expanded, 0)) {
		owner = expanded_owner(ac, rr, action);
	} else if (ac->served == NULL && action == MXF_ACTION_BLOCKED) {
		ac->served = owner; /* Zone data: it stays. */
	}
	return mxf_audit_set(&ac->audit, rr, owner, action);
}

static void on_report(query_ctx_t *ac, const mxf_legacy_t *rec, mxf_line_kind_t kind)
{
	mxf_line_t line;
	if (!mxf_audit_record(&ac->audit, rec, kind, &line)) {
		return;
	}
	line.client = knotd_qdata_remote_addr(ac->qdata);
	log_line(ac->mod, ac->zc, &line);
}

static void on_legacy(const mxf_legacy_t *rec, void *data)
{
	on_report(data, rec, MXF_LINE_LEGACY);
}

static void on_missing(const mxf_legacy_t *rec, void *data)
{
	on_report(data, rec, MXF_LINE_MISSING);
}

/* End of a hook's reports: the zone's held lines due, and at the limiter's
 * bound one notice per interval. */
static void audit_end(query_ctx_t *ac)
{
	mxf_audit_done(&ac->audit);
	if (mxf_audit_due(&ac->zc->audit)) {
		audit_flush(ac->mod, ac->zc, ac->audit.now);
	}
	mxf_limiter_stats_t st;
	if (ac->audit.full && mxf_audit_full(&ac->audit, &st)) {
		knotd_mod_log(ac->mod, LOG_WARNING, "audit limiter full, entries %zu, "
		              "memory %zu, limit %zu", st.entries, st.bytes, st.max_bytes);
	}
}

/* Fail closed: SERVFAIL, counted and logged (rate-limited per zone and
 * served owner). */
static knotd_in_state_t fail_closed(knotd_mod_t *mod, knotd_qdata_t *qdata,
                                    const knot_dname_t *owner, int ret)
{
	qdata->rcode = KNOT_RCODE_SERVFAIL;
	count(mod, qdata, CTR_FAILED, 0, 1);

	zone_ctx_t *zc = knotd_mod_ctx(mod);
	mxf_line_t line;
	if (mxf_audit_error(&zc->audit, owner, ret, 0, &line)) {
		log_line(mod, zc, &line);
	}
	return KNOTD_IN_STATE_ERROR;
}

/*** Hooks. ***/

/* One debug line per RRset signed anew (a signature cache miss). */
__attribute__((noinline, cold))
static void log_signed(knotd_mod_t *mod, const knot_rrset_t *set, uint32_t signatures)
{
	char owner[KNOT_DNAME_TXT_MAXLEN + 1];
	char type[16];
	if (knot_dname_to_str(owner, set->owner, sizeof(owner)) == NULL) {
		strcpy(owner, "?");
	}
	if (knot_rrtype_to_string(set->type, type, sizeof(type)) < 0) {
		strcpy(type, "?");
	}
	knotd_mod_log(mod, LOG_DEBUG, "signed RRset, owner %s, type %s, ttl %u, "
	              "signatures %u", owner, type, set->ttl, signatures);
}

/* The apex DNSKEY set, for a signer whose zone's keys changed. */
static const knot_rdataset_t *get_dnskey(void *data)
{
	query_ctx_t *ac = data;
	ac->dnskey = knotd_qdata_zone_apex_rrset(ac->qdata, KNOT_RRTYPE_DNSKEY);
	return &ac->dnskey.rrs;
}

/* RRSIGs for an enforced RRset, shaped like the zone's own signatures. */
static int sign_set(void *data, const knot_rrset_t *set, knot_rrset_t *rrsig)
{
	query_ctx_t *ac = data;
	if (ac->signer == NULL) {
		return KNOT_DNSSEC_ENOKEY; /* Signed zone we cannot sign for. */
	}
	mxf_zone_keys_t zk = {
		.rrsig = &ac->apex_rrsig.rrs,
		.get_dnskey = get_dnskey,
		.get_data = ac,
	};
	mxf_sign_info_t info;
	int ret = mxf_signer_sign_info(ac->signer, set, &zk, rrsig, &info);
	if (__builtin_expect(info.signatures > 0, 0)) {
		log_signed(ac->mod, set, info.signatures);
	}
	return ret;
}

static mxf_ctx_t engine_ctx(knotd_mod_t *mod, query_ctx_t *ac, knotd_qdata_t *qdata)
{
	zone_ctx_t *zc = knotd_mod_ctx(mod);
	ac->mod = mod;
	ac->zc = zc;
	ac->qdata = qdata;
	ac->signer = zc->signer;
	ac->served = NULL;
	mxf_audit_init(&ac->audit, &zc->audit, zc->policy->log_interval);
	mxf_ctx_t ctx = {
		.policy = zc->policy,
		.zone = knotd_mod_zone(mod),
		.on_legacy = on_legacy,
		.on_legacy_set = on_legacy_set,
		.on_missing = on_missing,
		.cb_data = ac,
	};
	/* A DO query to a signed zone gets signed enforced answers, or none. */
	if (knot_pkt_has_dnssec(qdata->query)) {
		ac->apex_rrsig = knotd_qdata_zone_apex_rrset(qdata, KNOT_RRTYPE_RRSIG);
		if (mxf_zone_is_signed(&ac->apex_rrsig.rrs)) {
			ctx.sign = sign_set;
			ctx.sign_data = ac;
		}
	}
	return ctx;
}

/* "missing MX added|audit" lines for every filtering exchange a synthesized
 * apex answer holds (or, in audit mode, would hold). */
static void report_synthesized(const mxf_ctx_t *ctx, mxf_action_t action, mxf_result_t *res)
{
	knot_rrset_t none;
	knot_rrset_init(&none, (knot_dname_t *)ctx->zone, KNOT_RRTYPE_MX, KNOT_CLASS_IN, 0);
	mxf_report(ctx, &none, false, action, res);
}

/*
 * The zone's MX RRset at the QNAME, when the module can read it before Knot
 * writes its answer: the apex on every Knot series, and any authoritative
 * name where knotd_qdata_zone_rrset() exists (Knot 3.4+, found by meson).
 * Names that are not plain authoritative data (wildcard matches, CNAMEs,
 * names at or below a zone cut or a DNAME) are left to Knot and the ANSWER
 * stage.
 */
static bool early_rrset(knotd_qdata_t *qdata, knotd_mod_t *mod,
                        const knot_dname_t *qname, bool apex, knot_rrset_t *out)
{
	if (apex) {
		*out = knotd_qdata_zone_apex_rrset(qdata, KNOT_RRTYPE_MX);
		return true;
	}
#ifdef HAVE_KNOTD_QDATA_ZONE_RRSET
	const knot_dname_t *zone = knotd_mod_zone(mod);
	if (knotd_qdata_zone_rrset(qdata, NULL, qname, KNOT_RRTYPE_MX, out) != KNOT_EOK ||
	    knot_rrset_empty(out)) {
		return false;
	}
	knot_rrset_t cut;
	for (const knot_dname_t *n = qname; !knot_dname_is_equal(n, zone);
	     n = mxf_dname_next_label(n)) {
		if ((knotd_qdata_zone_rrset(qdata, NULL, n, KNOT_RRTYPE_NS, &cut) == KNOT_EOK &&
		     !knot_rrset_empty(&cut)) ||
		    (n != qname &&
		     knotd_qdata_zone_rrset(qdata, NULL, n, KNOT_RRTYPE_DNAME, &cut) == KNOT_EOK &&
		     !knot_rrset_empty(&cut))) {
			return false;
		}
	}
	return true;
#else
	return false;
#endif
}

/* The query's type, as cheaply as it can be read: every hook tests it first,
 * on every query to the zone. A response without a question (qname_size 0)
 * reads two header bytes instead, which at worst sends it down the slow
 * path, where the type is read again. */
static inline uint16_t hook_qtype(const knot_pkt_t *pkt)
{
	return knot_wire_read_u16(pkt->wire + KNOT_WIRE_HEADER_SIZE + pkt->qname_size);
}

/*
 * What a PREANSWER answer (KNOTD_IN_STATE_HIT) must and must not hold.
 *
 * Knot source, src/knot/nameserver/internet.c, the same in v3.2.6, v3.4.6
 * and v3.5.6 (line numbers for 3.2.6 / 3.4.6 / 3.5.6; 3.5 only adds an ACL
 * check for catalog zones before answer_query() and reformats the licence):
 *
 *   answer_query() (644 / 650 / 639) runs the PREANSWER hooks, then
 *   solve_answer(), which returns at once when the state is HIT ("Do not
 *   solve if already solved", 483 / 485 / 474). Everything solve_answer()
 *   would set is then missing: qdata->extra->node, encloser and previous
 *   stay NULL, no wildcard is recorded (extra->wildcards), no RRSIG is
 *   queued (extra->rrsigs, filled by process_query_put_rr() in
 *   process_query.c), the CNAME chain is not followed, and AA is not set
 *   (knot_wire_set_aa, 498 / 500 / 489).
 *
 *   The later stages still run on the packet as the hook left it:
 *   solve_answer_dnssec() and nsec_append_rrsigs() (nsec_proofs.c) write
 *   only queued RRSIGs, so nothing; the ANSWER hooks (this module's
 *   answer_mx() finds the set or a compliant RRset and leaves it);
 *   solve_authority() does nothing for HIT; solve_authority_dnssec()
 *   walks the empty wildcard list (nsec_prove_wildcards); then
 *   solve_additional() (594 / 599 / 588) calls put_additional()
 *   (216 / 216 / 205) for every NS, MX, SRV, SVCB or HTTPS RRset in the
 *   packet. For an RRset whose additional pointer is set
 *   (rr->additional, 219 / 219 / 208), it calls
 *   glue_node(glue, qdata->extra->node) (249 / 249 / 238), and
 *   binode_node_as() (src/knot/zone/node.h, 175 / 177 / 166) reads
 *   ->flags of that NULL node: knotd dies with SIGSEGV (issue #14). The
 *   ADDITIONAL hooks, OPT, TSIG and the END hooks follow
 *   (process_query.c:process_query_out), none of them reading that state.
 *
 * So a HIT answer must
 *   - hold only RRsets whose additional pointer is NULL. RRsets this module
 *     makes (knot_rrset_init) never have one; the zone's own RRsets, as
 *     knotd_qdata_zone_apex_rrset() and knotd_qdata_zone_rrset() return
 *     them (node_rrset copies rr_data->additional), have one as soon as an
 *     exchange has an A or AAAA record in the zone. Such an RRset is left
 *     to Knot, which writes it and its glue itself;
 *   - set AA itself;
 *   - carry its own RRSIGs when the query has DO and the zone is signed
 *     (mxf_put_rrsig), or leave the answer to Knot (serve_compliant);
 *   - be the whole answer: Knot adds no authority or additional record to
 *     it, and no answer rotation (knot_pkt_put_rotate is only reached
 *     through process_query_put_rr);
 * and must not
 *   - be added to an answer another module's hook has already given (any
 *     state but BEGIN, or a packet that already holds records).
 *
 * preanswer_hit() is the only way out with HIT and checks the packet once
 * more; TRUNC and ERROR end the answer at once (SOLVE_STEP) and are safe.
 */

/* The one exit with HIT: the packet is checked against the rules above
 * (a packet that breaks them fails closed instead of reaching Knot's
 * additional stage), then marked authoritative. */
static knotd_in_state_t preanswer_hit(knot_pkt_t *pkt, knotd_qdata_t *qdata,
                                      knotd_mod_t *mod, const knot_dname_t *owner)
{
	for (uint16_t i = 0; i < pkt->rrset_count; i++) {
		if (__builtin_expect(pkt->rr[i].additional != NULL, 0)) {
			return fail_closed(mod, qdata, owner, KNOT_ERROR);
		}
	}
	mxf_write_aa(pkt);
	return KNOTD_IN_STATE_HIT;
}

/* The zone's own RRset at the QNAME, compliant: written from the policy's
 * wire image when that gives exactly what Knot would write (the same bytes,
 * no RRSIGs asked for, no answer rotation, no glue for Knot to add), which
 * is cheaper than Knot's own lookup and write; otherwise left to Knot.
 * Judged at ANSWER either way. */
static knotd_in_state_t serve_compliant(knotd_in_state_t state, knot_pkt_t *pkt,
                                        knotd_qdata_t *qdata, knotd_mod_t *mod,
                                        const knot_rrset_t *mx)
{
	const zone_ctx_t *zc = knotd_mod_ctx(mod);
	if (mx->additional != NULL || zc->rotation || knot_pkt_has_dnssec(qdata->query)) {
		return state;
	}
	uint16_t flags = (qdata->params->proto == KNOTD_QUERY_PROTO_UDP) ?
	                 KNOT_PF_NULL : KNOT_PF_NOTRUNC;
	if (!mxf_write_verbatim(pkt, zc->policy, mx, KNOT_COMPR_HINT_QNAME, flags)) {
		return state;
	}
	return preanswer_hit(pkt, qdata, mod, mx->owner);
}

/* MX query for a name whose RRset is known up front: answer the filtering
 * set before Knot writes the zone's RRset (cheaper, and it cannot leak). */
__attribute__((noinline))
static knotd_in_state_t preanswer_mx(knotd_in_state_t state, knot_pkt_t *pkt,
                                     knotd_qdata_t *qdata, knotd_mod_t *mod);

static knotd_in_state_t mxfilter_preanswer(knotd_in_state_t state, knot_pkt_t *pkt,
                                           knotd_qdata_t *qdata, knotd_mod_t *mod)
{
	if (__builtin_expect(hook_qtype(pkt) != KNOT_RRTYPE_MX, 1)) {
		return state;
	}
	return preanswer_mx(state, pkt, qdata, mod);
}

static knotd_in_state_t preanswer_mx(knotd_in_state_t state, knot_pkt_t *pkt,
                                     knotd_qdata_t *qdata, knotd_mod_t *mod)
{
	/* Another hook answered: the ANSWER stage judges what it wrote. */
	if (state != KNOTD_IN_STATE_BEGIN || pkt->rrset_count > 0) {
		return state;
	}
	const knot_dname_t *qname = knot_pkt_qname(pkt);
	const zone_ctx_t *zc = knotd_mod_ctx(mod);
	bool apex = pkt->qname_size == zc->zone_size &&
	            knot_dname_is_equal(qname, knotd_mod_zone(mod));
	knot_rrset_t mx;
	if (!early_rrset(qdata, mod, qname, apex, &mx)) {
		return state;
	}

	query_ctx_t ac;
	mxf_ctx_t ctx = engine_ctx(mod, &ac, qdata);
	const mxf_policy_t *policy = ctx.policy;
	if (!apex && policy->scope == MXF_SCOPE_APEX) {
		return state; /* Served; reported as observed at ANSWER. */
	}

	uint32_t ttl;
	mxf_result_t res = { 0 };
	if (knot_rrset_empty(&mx)) {
		if (!apex || !policy->synthesize) {
			return state;
		}
		knot_rrset_t soa = knotd_qdata_zone_apex_rrset(qdata, KNOT_RRTYPE_SOA);
		ttl = policy->ttl_set ? policy->ttl : soa.ttl;
		report_synthesized(&ctx, MXF_ACTION_BLOCKED, &res);
	} else {
		mxf_verdict_t verdict = mxf_classify(policy, &mx.rrs);
		if (verdict == MXF_SET_COMPLIANT ||
		    (verdict == MXF_SET_NULLMX && policy->null_mx == MXF_NULLMX_KEEP)) {
			return serve_compliant(state, pkt, qdata, mod, &mx);
		}
		mxf_report(&ctx, &mx, false, MXF_ACTION_BLOCKED, &res);
		ttl = policy->ttl_set ? policy->ttl : mx.ttl;
	}

	/* The set is made here (no additional pointer), never the zone's. */
	uint16_t flags = (qdata->params->proto == KNOTD_QUERY_PROTO_UDP) ?
	                 KNOT_PF_NULL : KNOT_PF_NOTRUNC;
	const knot_dname_t *owner = knot_rrset_empty(&mx) ? knotd_mod_zone(mod) : mx.owner;
	int ret = fault_enomem() ? KNOT_ENOMEM :
	          mxf_write_set(pkt, policy, owner, ttl, KNOT_COMPR_HINT_QNAME, flags);
	if (ret == KNOT_EOK) {
		mxf_set_writer_t w = { .policy = policy, .sign = ctx.sign, .sign_data = ctx.sign_data };
		ret = mxf_write_rrsig(pkt, &w, flags);
	}
	count_result(mod, qdata, &res);
	audit_end(&ac);
	if (ret == KNOT_ESPACE && qdata->params->proto == KNOTD_QUERY_PROTO_UDP) {
		return KNOTD_IN_STATE_TRUNC; /* TC set: the client retries over TCP. */
	} else if (ret != KNOT_EOK) {
		return fail_closed(mod, qdata, owner, ret);
	}

	knotd_in_state_t out = preanswer_hit(pkt, qdata, mod, owner);
	if (out == KNOTD_IN_STATE_HIT) {
		count(mod, qdata, knot_rrset_empty(&mx) ? CTR_SYNTHESIZED : CTR_ENFORCED, 0, 1);
	}
	return out;
}

static knotd_in_state_t answer_mx(knotd_in_state_t state, knot_pkt_t *pkt,
                                  knotd_qdata_t *qdata, knotd_mod_t *mod);

/* Whether Knot's answer is NODATA for MX at the zone's apex, asked for
 * directly or through an in-zone CNAME chain (Knot leaves the chain's last
 * name in qdata->name): an answer "synthesize: on" replaces. */
static bool nodata_at_apex(knotd_in_state_t state, knot_pkt_t *pkt, knotd_qdata_t *qdata,
                           knotd_mod_t *mod)
{
	return state == KNOTD_IN_STATE_NODATA && hook_qtype(pkt) == KNOT_RRTYPE_MX &&
	       qdata->name != NULL && knot_dname_is_case_equal(qdata->name, knotd_mod_zone(mod));
}

/* Any MX in the answer (subdomains, wildcards, CNAME targets, ANY). */
static knotd_in_state_t mxfilter_answer(knotd_in_state_t state, knot_pkt_t *pkt,
                                        knotd_qdata_t *qdata, knotd_mod_t *mod)
{
	uint16_t qtype = hook_qtype(pkt);
	if (__builtin_expect(qtype != KNOT_RRTYPE_MX && qtype != KNOT_RRTYPE_ANY, 1)) {
		return state;
	}
	return answer_mx(state, pkt, qdata, mod);
}

static knotd_in_state_t answer_apex_nodata(knotd_in_state_t state, knot_pkt_t *pkt,
                                           knotd_qdata_t *qdata, knotd_mod_t *mod);

__attribute__((noinline))
static knotd_in_state_t answer_mx(knotd_in_state_t state, knot_pkt_t *pkt,
                                  knotd_qdata_t *qdata, knotd_mod_t *mod)
{
	/* No MX at the apex (through a CNAME chain, or in audit mode): the
	 * synthesized set, or in audit mode the lines it would bring. */
	const mxf_policy_t *zp = ((const zone_ctx_t *)knotd_mod_ctx(mod))->policy;
	if (zp->synthesize && nodata_at_apex(state, pkt, qdata, mod)) {
		return answer_apex_nodata(state, pkt, qdata, mod);
	}

	query_ctx_t ac;
	mxf_ctx_t ctx = engine_ctx(mod, &ac, qdata);
	mxf_result_t res;
	int ret = mxf_process(pkt, &ctx, &res);
	if (ret == KNOT_EOK && res.enforced > 0 && fault_enomem()) {
		ret = KNOT_ENOMEM;
	}
	if (ret != KNOT_EOK) {
		res.enforced = 0; /* Not served; the legacy records stay blocked. */
	}
	count_result(mod, qdata, &res);
	audit_end(&ac);

	if (ret == KNOT_EOK || ctx.policy->mode == MXF_MODE_AUDIT) {
		return state; /* Audit mode serves the zone's data whatever happens. */
	} else if (ret == KNOT_ESPACE && qdata->params->proto == KNOTD_QUERY_PROTO_UDP) {
		return KNOTD_IN_STATE_TRUNC;
	}
	return fail_closed(mod, qdata, ac.served != NULL ? ac.served : knot_pkt_qname(pkt),
	                   ret);
}

static void log_transfer(knotd_mod_t *mod, knotd_qdata_t *qdata, const char *what)
{
	char addr[INET6_ADDRSTRLEN];
	mxf_addr_str(knotd_qdata_remote_addr(qdata), addr, sizeof(addr));
	knot_rrset_t soa = knotd_qdata_zone_apex_rrset(qdata, KNOT_RRTYPE_SOA);
	const char *type = (qdata->type == KNOTD_QUERY_TYPE_AXFR) ? "AXFR" : "IXFR";
	if (knot_rrset_empty(&soa)) {
		knotd_mod_log(mod, LOG_INFO, "outgoing transfer %s, type %s, client %s",
		              what, type, addr);
	} else {
		knotd_mod_log(mod, LOG_INFO, "outgoing transfer %s, type %s, client %s, "
		              "serial %u", what, type, addr, knot_soa_serial(soa.rrs.rdata));
	}
}

static bool is_transfer(const knotd_qdata_t *qdata)
{
	return qdata->type == KNOTD_QUERY_TYPE_AXFR || qdata->type == KNOTD_QUERY_TYPE_IXFR;
}

/* transfer: refuse. */
static knotd_state_t mxfilter_begin(knotd_state_t state, knot_pkt_t *pkt,
                                    knotd_qdata_t *qdata, knotd_mod_t *mod)
{
	if (!is_transfer(qdata)) {
		return state;
	}
	log_transfer(mod, qdata, "refused");
	count(mod, qdata, CTR_TRANSFERS, XFR_REFUSED, 1);
	qdata->rcode = KNOT_RCODE_REFUSED;
	return KNOTD_STATE_FAIL;
}

static knotd_state_t end_slow(knotd_state_t state, knot_pkt_t *pkt,
                              knotd_qdata_t *qdata, knotd_mod_t *mod);

static knotd_state_t mxfilter_end(knotd_state_t state, knot_pkt_t *pkt,
                                  knotd_qdata_t *qdata, knotd_mod_t *mod)
{
	/* Only MX/ANY answers and transfers matter here (a transfer's later
	 * messages may carry no question: its type is in qdata). */
	uint16_t qtype = hook_qtype(pkt);
	if (__builtin_expect(qtype != KNOT_RRTYPE_MX && qtype != KNOT_RRTYPE_ANY &&
	                     !is_transfer(qdata), 1)) {
		return state;
	}
	return end_slow(state, pkt, qdata, mod);
}

__attribute__((noinline))
static knotd_state_t end_slow(knotd_state_t state, knot_pkt_t *pkt,
                              knotd_qdata_t *qdata, knotd_mod_t *mod)
{
	const mxf_policy_t *policy = ((const zone_ctx_t *)knotd_mod_ctx(mod))->policy;

	if (is_transfer(qdata)) {
		/* Counted once, on the last message of a transfer that was served. */
		if (state == KNOTD_STATE_DONE && policy->transfer != MXF_XFR_REFUSE &&
		    knot_wire_get_rcode(pkt->wire) == KNOT_RCODE_NOERROR) {
			count(mod, qdata, CTR_TRANSFERS, XFR_ALLOWED, 1);
			if (policy->transfer == MXF_XFR_LOG) {
				log_transfer(mod, qdata, "served");
			}
		}
		return state;
	}

	uint16_t qtype = knot_pkt_qtype(pkt);
	if ((qtype != KNOT_RRTYPE_MX && qtype != KNOT_RRTYPE_ANY) ||
	    policy->mode != MXF_MODE_ENFORCE) {
		return state;
	}

	/* A read-only check: the policy and the zone are all it needs. */
	mxf_ctx_t ctx = { .policy = policy, .zone = knotd_mod_zone(mod) };
	int leak = mxf_pkt_leak(pkt, &ctx);
	if (leak < 0) {
		return state;
	}

	/* A legacy MX got past the answer stage (Knot skips later hooks once
	 * it truncates). A truncated reply becomes an empty one, so the client
	 * retries over TCP; anything else is an internal error. */
	if (knot_wire_get_tc(pkt->wire)) {
		qdata->err_truncated = true;
	} else {
		const knot_rrset_t *rr = &pkt->rr[leak];
		knot_dname_storage_t wild;
		(void)fail_closed(mod, qdata, (pkt->rr_info[leak].flags & KNOT_PF_FREE) ?
		                  wildcard_owner(mod, qdata, rr, wild) : rr->owner, KNOT_ERROR);
	}
	return KNOTD_STATE_FAIL;
}

/*** Denial records (signed zones synthesizing the apex MX). ***/

/*
 * A signed zone without MX at its apex answers an apex MX query with the
 * filtering set (synthesize: on), while its apex NSEC, or the NSEC3 of the
 * apex's hash, says the apex holds no MX; a resolver that reuses cached
 * denial records (RFC 8198) would answer MX with NODATA itself. Registered
 * on such zones only (enforce mode, dnssec-signing: on), these steps keep
 * every DNSSEC answer of the zone in line with the synthesized set:
 *
 *   ANSWER     (the MX path of mxfilter_answer, for every zone with
 *              synthesize: on) an MX query that reaches the apex through an
 *              in-zone CNAME gets the filtering set as well (a NODATA proof
 *              from the apex's record would now be bogus)
 *   AUTHORITY  the apex's NSEC/NSEC3 in the answer or authority section
 *              lists MX, signed anew with the zone's keys (denial.c)
 *   END        a truncated response that still holds the unedited record
 *              (Knot skips later hooks once it truncates) becomes an empty
 *              TC answer; any response, if the AUTHORITY hook is missing,
 *              SERVFAIL
 *
 * A query without the DO bit gets no denial record and costs one test.
 */

/* An MX query answered NODATA at the apex (nodata_at_apex()): in enforce
 * mode the apex's synthesized answer, as PREANSWER gives it for the apex
 * itself. Through a CNAME chain ("www CNAME @") this is the only place that
 * can answer it: without it a sender finds no MX for the alias and delivers
 * to the apex's address records (RFC 5321 implicit MX), unfiltered, and in a
 * signed zone the NODATA proof would contradict the apex's edited denial
 * record. Audit mode serves Knot's answer and logs "missing MX audit". */
static knotd_in_state_t answer_apex_nodata(knotd_in_state_t state, knot_pkt_t *pkt,
                                           knotd_qdata_t *qdata, knotd_mod_t *mod)
{
	const zone_ctx_t *zc = knotd_mod_ctx(mod);
	const knot_dname_t *zone = knotd_mod_zone(mod);
	const mxf_policy_t *policy = zc->policy;
	query_ctx_t ac;
	mxf_ctx_t ctx = engine_ctx(mod, &ac, qdata);
	mxf_result_t res = { 0 };
	if (policy->mode == MXF_MODE_AUDIT) {
		report_synthesized(&ctx, MXF_ACTION_AUDIT, &res);
		audit_end(&ac);
		return state;
	}

	report_synthesized(&ctx, MXF_ACTION_BLOCKED, &res);
	knot_rrset_t soa = knotd_qdata_zone_apex_rrset(qdata, KNOT_RRTYPE_SOA);
	uint32_t ttl = policy->ttl_set ? policy->ttl : soa.ttl;
	uint16_t flags = (qdata->params->proto == KNOTD_QUERY_PROTO_UDP) ?
	                 KNOT_PF_NULL : KNOT_PF_NOTRUNC;
	/* The apex itself keeps the query's spelling; after a CNAME the owner
	 * is the chain's last name, compressed as libknot finds it. */
	uint16_t hint = (pkt->sections[KNOT_ANSWER].count == 0) ?
	                KNOT_COMPR_HINT_QNAME : KNOT_COMPR_HINT_NONE;
	int ret = fault_enomem() ? KNOT_ENOMEM :
	          mxf_write_set(pkt, policy, zone, ttl, hint, flags);
	if (ret == KNOT_EOK) {
		mxf_set_writer_t w = { .policy = policy, .sign = ctx.sign, .sign_data = ctx.sign_data };
		ret = mxf_write_rrsig(pkt, &w, flags);
	}
	audit_end(&ac);
	if (ret == KNOT_ESPACE && qdata->params->proto == KNOTD_QUERY_PROTO_UDP) {
		return KNOTD_IN_STATE_TRUNC;
	} else if (ret != KNOT_EOK) {
		return fail_closed(mod, qdata, zone, ret);
	}
	count(mod, qdata, CTR_SYNTHESIZED, 0, 1);
	return KNOTD_IN_STATE_HIT;
}

static knotd_in_state_t authority_denial(knotd_in_state_t state, knot_pkt_t *pkt,
                                         knotd_qdata_t *qdata, knotd_mod_t *mod);

static knotd_in_state_t mxfilter_authority(knotd_in_state_t state, knot_pkt_t *pkt,
                                           knotd_qdata_t *qdata, knotd_mod_t *mod)
{
	if (__builtin_expect(!knot_pkt_has_dnssec(qdata->query), 1)) {
		return state;
	}
	return authority_denial(state, pkt, qdata, mod);
}

__attribute__((noinline))
static knotd_in_state_t authority_denial(knotd_in_state_t state, knot_pkt_t *pkt,
                                         knotd_qdata_t *qdata, knotd_mod_t *mod)
{
	const knot_dname_t *zone = knotd_mod_zone(mod);
	uint16_t idx[MXF_DENIAL_MAX];
	/* An apex record without MX: Knot keeps it in line with the zone, so
	 * the apex has no MX and the module synthesizes it. */
	size_t n = mxf_denial_find(pkt, zone, KNOT_RRTYPE_MX, idx, MXF_DENIAL_MAX);
	if (n == 0) {
		return state;
	}

	const zone_ctx_t *zc = knotd_mod_ctx(mod);
	query_ctx_t ac = {
		.mod = mod, .qdata = qdata, .signer = zc->signer,
		.apex_rrsig = knotd_qdata_zone_apex_rrset(qdata, KNOT_RRTYPE_RRSIG),
	};
	mxf_denial_ctx_t dctx = { .type = KNOT_RRTYPE_MX, .sign = sign_set, .sign_data = &ac };
	int ret = fault_enomem() ? KNOT_ENOMEM : mxf_denial_rewrite(pkt, &dctx, idx, n);
	if (ret == KNOT_EOK) {
		return state;
	} else if (ret == KNOT_ESPACE && qdata->params->proto == KNOTD_QUERY_PROTO_UDP) {
		mxf_write_tc(pkt); /* The client retries over TCP. */
		return KNOTD_IN_STATE_TRUNC;
	}
	return fail_closed(mod, qdata, zone, ret);
}

static knotd_state_t end_denial(knotd_state_t state, knot_pkt_t *pkt,
                                knotd_qdata_t *qdata, knotd_mod_t *mod);

static knotd_state_t mxfilter_denial_end(knotd_state_t state, knot_pkt_t *pkt,
                                         knotd_qdata_t *qdata, knotd_mod_t *mod)
{
	if (__builtin_expect(!knot_pkt_has_dnssec(qdata->query), 1)) {
		return state;
	}
	return end_denial(state, pkt, qdata, mod);
}

__attribute__((noinline))
static knotd_state_t end_denial(knotd_state_t state, knot_pkt_t *pkt,
                                knotd_qdata_t *qdata, knotd_mod_t *mod)
{
	/* The AUTHORITY hook saw every answer Knot did not truncate. A
	 * transfer carries the zone as it is (transfer: refuse for secondaries
	 * that do not run the module). */
	const zone_ctx_t *zc = knotd_mod_ctx(mod);
	bool tc = knot_wire_get_tc(pkt->wire);
	if ((!tc && zc->denial) || is_transfer(qdata)) {
		return state;
	}
	uint16_t idx;
	const knot_dname_t *zone = knotd_mod_zone(mod);
	if (mxf_denial_find(pkt, zone, KNOT_RRTYPE_MX, &idx, 1) == 0) {
		return state;
	}
	if (tc) {
		qdata->err_truncated = true;
	} else {
		(void)fail_closed(mod, qdata, zone, KNOT_ERROR);
	}
	return KNOTD_STATE_FAIL;
}

/*** Load and unload. ***/

static int read_conf(knotd_mod_t *mod, mxf_conf_t *conf, knotd_conf_t *ex,
                     const char **values)
{
	mxf_conf_default(conf);

	*ex = knotd_conf_mod(mod, MOD_EXCHANGE);
	if (ex->count > MXF_MAX_EXCHANGES) {
		return KNOT_EINVAL;
	}
	for (size_t i = 0; i < ex->count; i++) {
		values[i] = ex->multi[i].string;
	}
	if (ex->count > 0) {
		conf->exchange = values;
		conf->exchange_count = ex->count;
	}

	conf->mode = knotd_conf_mod(mod, MOD_MODE).single.option;
	conf->scope = knotd_conf_mod(mod, MOD_SCOPE).single.option;
	conf->synthesize = knotd_conf_mod(mod, MOD_SYNTH).single.boolean;
	conf->null_mx = knotd_conf_mod(mod, MOD_NULLMX).single.option;
	knotd_conf_t ttl = knotd_conf_mod(mod, MOD_TTL);
	conf->ttl_set = ttl.count > 0;
	conf->ttl = (uint32_t)ttl.single.integer;
	conf->log_interval = (uint32_t)knotd_conf_mod(mod, MOD_LOG_INT).single.integer;
	conf->transfer = knotd_conf_mod(mod, MOD_TRANSFER).single.option;
	return KNOT_EOK;
}

static void log_policy(knotd_mod_t *mod, const mxf_policy_t *policy)
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
	/* The version is part of the literal, so the file itself names it too:
	 * strings mxfilter.so | grep 'policy loaded, version'. */
	knotd_mod_log(mod, LOG_INFO, "policy loaded, version " MXF_VERSION
	              ", mode %s, scope %s, exchanges %s",
	              policy->mode == MXF_MODE_ENFORCE ? "enforce" : "audit",
	              policy->scope == MXF_SCOPE_ZONE ? "zone" : "apex", list);
}

/* A signer searching the zone's PEM key stores in Knot's order
 * (knotconf.c); \a dir: the first directory, named in the error line. */
static mxf_signer_t *signer_for_keystores(knotd_mod_t *mod, const mxf_knot_keys_t *keys,
                                          const char **err)
{
	if (keys->error != NULL) {
		*err = keys->error;
		return NULL;
	}
	mxf_signer_t *signer = mxf_signer_new(knotd_mod_zone(mod), keys->dir[0], err);
	for (size_t i = 1; i < keys->count && signer != NULL; i++) {
		if (mxf_signer_add_keystore(signer, keys->dir[i]) != KNOT_EOK) {
			*err = "out of memory";
			mxf_signer_free(signer);
			signer = NULL;
		}
	}
	return signer;
}

/* A signer for zones Knot signs; without one, DO answers that need
 * enforcing in a signed zone fail closed. */
static mxf_signer_t *signer_load(knotd_mod_t *mod)
{
	if (!mxf_knot_signs(mod)) {
		return NULL;
	}
	fault_sigcache_limits();
	const char *err = NULL;
	mxf_knot_keys_t keys;
	mxf_knot_keystores(mod, &keys);
	mxf_signer_t *signer = signer_for_keystores(mod, &keys, &err);
	if (signer == NULL) {
		knotd_mod_log(mod, LOG_ERR, "cannot sign enforced answers, key store '%s', "
		              "DNSSEC queries needing enforcement will get SERVFAIL (%s)",
		              keys.count > 0 ? keys.dir[0] : "?", err);
	}
	mxf_knot_keys_free(&keys);
	return signer;
}

static void zone_ctx_free(zone_ctx_t *zc)
{
	if (zc != NULL) {
		/* Its records go to the zone's newest instance (a reload), or
		 * are forgotten: the zone's name is already freed, no line
		 * can be written for it now. */
		(void)mxf_audit_zone_clear(&zc->audit);
		mxf_signer_free(zc->signer);
		mxf_policy_release(zc->policy);
		free(zc);
	}
}

/*
 * A zone whose module cannot be set up (out of memory, a configuration that
 * reached the server unchecked) must not fall back to serving legacy MX:
 * when a module's load fails, Knot serves the zone without it. So load then
 * succeeds with this hook alone, and MX and ANY queries get SERVFAIL.
 */
static knotd_state_t mxfilter_broken(knotd_state_t state, knot_pkt_t *pkt,
                                     knotd_qdata_t *qdata, knotd_mod_t *mod)
{
	uint16_t qtype = knot_pkt_qtype(qdata->query);
	if (qdata->type == KNOTD_QUERY_TYPE_NORMAL &&
	    (qtype == KNOT_RRTYPE_MX || qtype == KNOT_RRTYPE_ANY)) {
		qdata->rcode = KNOT_RCODE_SERVFAIL;
		return KNOTD_STATE_FAIL;
	}
	return state;
}

static int load_fail_closed(knotd_mod_t *mod, const char *reason)
{
	knotd_mod_log(mod, LOG_ERR, "cannot enforce, MX and ANY queries will get "
	              "SERVFAIL (%s)", reason);
	knotd_mod_ctx_set(mod, NULL);
	return knotd_mod_hook(mod, KNOTD_STAGE_BEGIN, mxfilter_broken);
}

static zone_ctx_t *zone_ctx_new(knotd_mod_t *mod, size_t id_len, const char **err)
{
	mxf_conf_t conf;
	knotd_conf_t ex;
	const char *values[MXF_MAX_EXCHANGES];
	*err = "too many exchanges";
	const mxf_policy_t *policy = NULL;
	if (read_conf(mod, &conf, &ex, values) == KNOT_EOK) {
		policy = mxf_policy_acquire(&conf, err);
	}
	knotd_conf_free(&ex);
	if (policy == NULL) {
		return NULL;
	}

	zone_ctx_t *zc = calloc(1, sizeof(*zc));
	if (zc == NULL || limiter_acquire() != KNOT_EOK) {
		free(zc);
		mxf_policy_release(policy);
		*err = knot_strerror(KNOT_ENOMEM);
		return NULL;
	}
	zc->policy = policy;
	mxf_audit_zone_init(&zc->audit, limiter, knotd_mod_zone(mod));
	zc->prefix = mxf_knot_line_prefix(mod, id_len);
	/* A reload: what the zone's old instance has to write, written now. */
	audit_flush(mod, zc, 0);
	zc->signer = signer_load(mod);
	zc->zone_size = knot_dname_size(knotd_mod_zone(mod));
	zc->rotation = mxf_knot_rotation(mod);
	return zc;
}

/*
 * The denial hooks, for zones where the module may synthesize the apex MX
 * under DNSSEC: enforce mode, synthesize: on, signed by Knot. Whether the
 * apex lacks MX is read per answer (the zone may change). The END check
 * goes first: registered alone, it still keeps unedited records out. Two
 * hooks, no more: every hook costs every query of the zone ~20
 * instructions (docs/performance.md), so the CNAME case rides on the
 * ANSWER hook's MX path.
 */
static int register_denial(knotd_mod_t *mod, const mxf_policy_t *policy)
{
	if (policy->mode != MXF_MODE_ENFORCE || !policy->synthesize || !mxf_knot_signs(mod)) {
		return KNOT_EOK;
	}
	int ret = knotd_mod_hook(mod, KNOTD_STAGE_END, mxfilter_denial_end);
	if (ret == KNOT_EOK) {
		ret = knotd_mod_in_hook(mod, KNOTD_STAGE_AUTHORITY, mxfilter_authority);
	}
	zone_ctx_t *zc = knotd_mod_ctx(mod);
	zc->denial = (ret == KNOT_EOK); /* The ANSWER hook's MX path reads it. */
	return ret;
}

static int mxfilter_load(knotd_mod_t *mod)
{
	mxf_knot_modules_t mods;
	mxf_knot_modules(mod, &mods);
	if (mods.onlinesign) {
		return load_fail_closed(mod, "mod-onlinesign on the same zone is not "
		                        "supported, use automatic signing");
	}
	const char *err = knot_strerror(KNOT_ENOMEM);
	zone_ctx_t *zc = fault_load() ? NULL : zone_ctx_new(mod, mods.id_len, &err);
	if (zc == NULL) {
		return load_fail_closed(mod, err);
	}
	/* Knot stores each counter per zone and worker thread: with 10^5
	 * zones that is most of the module's memory, hence "counters: off". */
	zc->counters = knotd_conf_mod(mod, MOD_COUNTERS).single.boolean;
	int ret = zc->counters ? register_counters(mod) : KNOT_EOK;
	if (ret != KNOT_EOK) {
		zone_ctx_free(zc);
		limiter_release();
		return load_fail_closed(mod, knot_strerror(ret));
	}
	knotd_mod_ctx_set(mod, zc);

	/* Hooks last. Knot does not remove the hooks of a module whose load
	 * fails, so once one is registered the load must succeed. */
	const mxf_policy_t *policy = zc->policy;
	ret = knotd_mod_hook(mod, KNOTD_STAGE_END, mxfilter_end);
	if (ret != KNOT_EOK) {
		zone_ctx_free(zc);
		limiter_release();
		return load_fail_closed(mod, knot_strerror(ret));
	}
	ret = knotd_mod_in_hook(mod, KNOTD_STAGE_ANSWER, mxfilter_answer);
	if (ret == KNOT_EOK && policy->mode == MXF_MODE_ENFORCE) {
		ret = knotd_mod_in_hook(mod, KNOTD_STAGE_PREANSWER, mxfilter_preanswer);
	}
	if (ret == KNOT_EOK && policy->transfer == MXF_XFR_REFUSE) {
		ret = knotd_mod_hook(mod, KNOTD_STAGE_BEGIN, mxfilter_begin);
	}
	if (ret == KNOT_EOK) {
		ret = register_denial(mod, policy);
	}
	if (ret != KNOT_EOK) {
		/* The END check still keeps legacy MX out of answers. */
		knotd_mod_log(mod, LOG_ERR, "failed to register all hooks, enforcing "
		              "at the end stage only (%s)", knot_strerror(ret));
	}

	if (mxf_policy_refs(policy) == 1) {
		log_policy(mod, policy);
	}
	return KNOT_EOK;
}

static void mxfilter_unload(knotd_mod_t *mod)
{
	zone_ctx_t *zc = knotd_mod_ctx(mod);
	if (zc != NULL) {
		zone_ctx_free(zc);
		limiter_release();
	}
	/* Knot 3.5 calls unload again when it closes a module whose context is
	 * still set (e.g. after a reload's load failed): never a stale one. */
	knotd_mod_ctx_set(mod, NULL);
}

KNOTD_MOD_API(mxfilter, KNOTD_MOD_FLAG_SCOPE_ZONE | KNOTD_MOD_FLAG_OPT_CONF,
              mxfilter_load, mxfilter_unload, mxfilter_conf, mxfilter_conf_check);
