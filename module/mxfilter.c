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
 *   PREANSWER  apex MX query: answer the filtering set before Knot builds
 *              the zone's legacy answer (cheapest, and it cannot leak)
 *   ANSWER     any other MX in the answer: mxf_process() rewrites it
 *   END        last line of defence: a response that still holds a legacy
 *              MX (Knot 3.2 skips every later hook once it truncates)
 *              becomes an empty TC answer or SERVFAIL; transfer accounting
 *
 * Everything that decides or rewrites lives in the engine (policy.c,
 * rewrite.c, audit.c), which depends on libknot only.
 */

#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <knot/module.h>

#include "mxfilter/audit.h"
#include "mxfilter/compat.h"
#include "mxfilter/policy.h"
#include "mxfilter/rewrite.h"
#include "mxfilter/sign.h"

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

/* One audit limiter for every zone (keys include the zone); it lives from
 * the first module load to the last unload. */
#define LIMITER_SLOTS_LOG2	16

static pthread_mutex_t limiter_lock = PTHREAD_MUTEX_INITIALIZER;
static mxf_limiter_t *limiter;
static size_t limiter_refs;

static int limiter_acquire(void)
{
	int ret = KNOT_EOK;
	pthread_mutex_lock(&limiter_lock);
	if (limiter == NULL) {
		limiter = mxf_limiter_new(LIMITER_SLOTS_LOG2);
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
#define fault_sigcache_limits()
#endif

/*** Per-zone context. ***/

/* All a zone holds: the shared policy, a signer if Knot signs it, and two
 * flags read at load. "counters" is glue only, so ids that differ in
 * nothing else share one policy. */
typedef struct {
	const mxf_policy_t *policy;
	mxf_signer_t *signer;
	size_t zone_size; /* Wire size of the zone's name: most QNAMEs differ. */
	bool rotation; /* server answer-rotation: Knot reorders RRsets per query. */
	bool counters; /* Counters registered (counters: on). */
} zone_ctx_t;

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
	knotd_qdata_t *qdata;
	mxf_signer_t *signer;
	knot_rrset_t apex_rrsig; /* Read once for a DO query to a signed zone. */
	knot_rrset_t dnskey;     /* Read only when the signer needs the keys. */
	mxf_audit_t audit;  /* Which legacy records get a log line. */
} query_ctx_t;

static bool on_legacy_set(const knot_rrset_t *rr, bool expanded, mxf_action_t action,
                          void *data)
{
	query_ctx_t *ac = data;
	return mxf_audit_set(&ac->audit, rr, expanded, action);
}

static void on_legacy(const mxf_legacy_t *rec, void *data)
{
	query_ctx_t *ac = data;
	uint32_t suppressed;
	if (!mxf_audit_record(&ac->audit, rec, &suppressed)) {
		return;
	}

	char line[512];
	mxf_audit_format(line, sizeof(line), rec, knotd_qdata_remote_addr(ac->qdata),
	                 suppressed);
	knotd_mod_log(ac->mod, rec->action == MXF_ACTION_AUDIT ? LOG_WARNING : LOG_NOTICE,
	              "%s", line);
}

/* Fail closed: SERVFAIL, counted and logged (rate-limited per owner). */
static knotd_in_state_t fail_closed(knotd_mod_t *mod, knotd_qdata_t *qdata,
                                    const mxf_policy_t *policy,
                                    const knot_dname_t *owner, int ret)
{
	qdata->rcode = KNOT_RCODE_SERVFAIL;
	count(mod, qdata, CTR_FAILED, 0, 1);

	uint32_t suppressed = 0;
	uint64_t key = mxf_limiter_key(limiter, knotd_mod_zone(mod), owner, 0, NULL);
	if (mxf_limiter_hit(limiter, key, mxf_now(), 60, &suppressed)) {
		char name[KNOT_DNAME_TXT_MAXLEN + 1];
		if (knot_dname_to_str(name, owner, sizeof(name)) == NULL) {
			strcpy(name, "?");
		}
		knotd_mod_log(mod, LOG_ERR, "failed to enforce MX, owner %s, answered "
		              "SERVFAIL, suppressed %u (%s)", name, suppressed,
		              knot_strerror(ret));
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
	const zone_ctx_t *zc = knotd_mod_ctx(mod);
	ac->mod = mod;
	ac->qdata = qdata;
	ac->signer = zc->signer;
	mxf_audit_init(&ac->audit, limiter, knotd_mod_zone(mod), zc->policy->log_interval);
	mxf_ctx_t ctx = {
		.policy = zc->policy,
		.zone = knotd_mod_zone(mod),
		.on_legacy = on_legacy,
		.on_legacy_set = on_legacy_set,
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

/*
 * The zone's MX RRset at the QNAME, when the module can read it before Knot
 * writes its answer: the apex on every Knot series, and any authoritative
 * name where knotd_qdata_zone_rrset() exists (module ABI 600, Knot 3.4+).
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
#if KNOTD_MOD_ABI_VERSION >= 600
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

/* The zone's own RRset at the QNAME, compliant: written from the policy's
 * wire image when that gives exactly what Knot would write (the same bytes,
 * no RRSIGs asked for, no answer rotation), which is cheaper than Knot's own
 * lookup and write; otherwise left to Knot. Judged at ANSWER either way. */
static knotd_in_state_t serve_compliant(knotd_in_state_t state, knot_pkt_t *pkt,
                                        knotd_qdata_t *qdata, knotd_mod_t *mod,
                                        const knot_rrset_t *mx)
{
	const zone_ctx_t *zc = knotd_mod_ctx(mod);
	if (zc->rotation || knot_pkt_has_dnssec(qdata->query)) {
		return state;
	}
	uint16_t flags = (qdata->params->proto == KNOTD_QUERY_PROTO_UDP) ?
	                 KNOT_PF_NULL : KNOT_PF_NOTRUNC;
	if (!mxf_put_verbatim(pkt, zc->policy, mx, KNOT_COMPR_HINT_QNAME, flags)) {
		return state;
	}
	knot_wire_set_aa(pkt->wire);
	return KNOTD_IN_STATE_HIT;
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
	} else {
		mxf_verdict_t verdict = mxf_classify(policy, &mx.rrs);
		if (verdict == MXF_SET_COMPLIANT ||
		    (verdict == MXF_SET_NULLMX && policy->null_mx == MXF_NULLMX_KEEP)) {
			return serve_compliant(state, pkt, qdata, mod, &mx);
		}
		mxf_report(&ctx, &mx, false, MXF_ACTION_BLOCKED, &res);
		ttl = policy->ttl_set ? policy->ttl : mx.ttl;
	}

	uint16_t flags = (qdata->params->proto == KNOTD_QUERY_PROTO_UDP) ?
	                 KNOT_PF_NULL : KNOT_PF_NOTRUNC;
	const knot_dname_t *owner = knot_rrset_empty(&mx) ? knotd_mod_zone(mod) : mx.owner;
	int ret = fault_enomem() ? KNOT_ENOMEM :
	          mxf_put_set(pkt, policy, owner, ttl, KNOT_COMPR_HINT_QNAME, flags);
	if (ret == KNOT_EOK) {
		ret = mxf_put_rrsig(pkt, &ctx, flags);
	}
	count_result(mod, qdata, &res);
	if (ret == KNOT_ESPACE && qdata->params->proto == KNOTD_QUERY_PROTO_UDP) {
		return KNOTD_IN_STATE_TRUNC; /* TC set: the client retries over TCP. */
	} else if (ret != KNOT_EOK) {
		return fail_closed(mod, qdata, policy, owner, ret);
	}

	count(mod, qdata, knot_rrset_empty(&mx) ? CTR_SYNTHESIZED : CTR_ENFORCED, 0, 1);
	knot_wire_set_aa(pkt->wire);
	return KNOTD_IN_STATE_HIT;
}

static knotd_in_state_t answer_mx(knotd_in_state_t state, knot_pkt_t *pkt,
                                  knotd_qdata_t *qdata, knotd_mod_t *mod);

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

__attribute__((noinline))
static knotd_in_state_t answer_mx(knotd_in_state_t state, knot_pkt_t *pkt,
                                  knotd_qdata_t *qdata, knotd_mod_t *mod)
{

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

	if (ret == KNOT_EOK || ctx.policy->mode == MXF_MODE_AUDIT) {
		return state; /* Audit mode serves the zone's data whatever happens. */
	} else if (ret == KNOT_ESPACE && qdata->params->proto == KNOTD_QUERY_PROTO_UDP) {
		return KNOTD_IN_STATE_TRUNC;
	}
	return fail_closed(mod, qdata, ctx.policy, knot_pkt_qname(pkt), ret);
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
	if (!mxf_pkt_has_leak(pkt, &ctx)) {
		return state;
	}

	/* A legacy MX got past the answer stage (Knot skips later hooks once
	 * it truncates). A truncated reply becomes an empty one, so the client
	 * retries over TCP; anything else is an internal error. */
	if (knot_wire_get_tc(pkt->wire)) {
		qdata->err_truncated = true;
	} else {
		(void)fail_closed(mod, qdata, policy, knot_pkt_qname(pkt), KNOT_ERROR);
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
	knotd_mod_log(mod, LOG_INFO, "policy loaded, mode %s, scope %s, exchanges %s",
	              policy->mode == MXF_MODE_ENFORCE ? "enforce" : "audit",
	              policy->scope == MXF_SCOPE_ZONE ? "zone" : "apex", list);
}

#define C_DATABASE	"\x08""database"
#define C_STORAGE	"\x07""storage"
#define C_KASP_DB	"\x07""kasp-db"
#define C_SIGNING	"\x0e""dnssec-signing"
#define C_DNSSEC_POLICY	"\x0d""dnssec-policy"
#define C_POLICY	"\x06""policy"
#define C_KEYSTORE	"\x08""keystore"
#define C_BACKEND	"\x07""backend"
#define C_CONFIG	"\x06""config"

#define KEYSTORE_PEM	1 /* Knot's value for "backend: pem". */

static char *path_join(const char *base, const char *path)
{
	if (path == NULL || path[0] == '\0') {
		return strdup(base);
	}
	if (path[0] == '/') {
		return strdup(path);
	}
	size_t len = strlen(base) + strlen(path) + 2;
	char *out = malloc(len);
	if (out != NULL) {
		(void)snprintf(out, len, "%s/%s", base, path);
	}
	return out;
}

/* The zone's PEM key store, resolved as Knot does: keystore "config"
 * relative to database "kasp-db", itself relative to "storage". */
static char *keystore_dir(knotd_mod_t *mod, const char **err)
{
	knotd_conf_t storage = knotd_conf(mod, C_DATABASE, C_STORAGE, NULL);
	knotd_conf_t kaspdb = knotd_conf(mod, C_DATABASE, C_KASP_DB, NULL);
	const char *config = "keys";
	unsigned backend = KEYSTORE_PEM;

	knotd_conf_t policy = knotd_conf_zone(mod, C_DNSSEC_POLICY, knotd_mod_zone(mod));
	if (policy.count > 0 && policy.single.data_len > 0) {
		knotd_conf_t ks = knotd_conf(mod, C_POLICY, C_KEYSTORE, &policy);
		if (ks.count > 0 && ks.single.data_len > 0) {
			backend = knotd_conf(mod, C_KEYSTORE, C_BACKEND, &ks).single.option;
			config = knotd_conf(mod, C_KEYSTORE, C_CONFIG, &ks).single.string;
		}
	}
	if (backend != KEYSTORE_PEM) {
		*err = "only the PEM key store is supported";
		return NULL;
	}

	char *base = path_join("/", storage.single.string);
	char *kasp = (base != NULL) ? path_join(base, kaspdb.single.string) : NULL;
	char *dir = (kasp != NULL) ? path_join(kasp, config) : NULL;
	free(base);
	free(kasp);
	if (dir == NULL) {
		*err = "out of memory";
	}
	return dir;
}

/* A signer for zones Knot signs; without one, DO answers that need
 * enforcing in a signed zone fail closed. */
static mxf_signer_t *signer_load(knotd_mod_t *mod)
{
	if (!knotd_conf_zone(mod, C_SIGNING, knotd_mod_zone(mod)).single.boolean) {
		return NULL;
	}
	fault_sigcache_limits();
	const char *err = NULL;
	char *dir = keystore_dir(mod, &err);
	mxf_signer_t *signer = (dir != NULL) ?
	                       mxf_signer_new(knotd_mod_zone(mod), dir, &err) : NULL;
	if (signer == NULL) {
		knotd_mod_log(mod, LOG_ERR, "cannot sign enforced answers, key store '%s', "
		              "DNSSEC queries needing enforcement will get SERVFAIL (%s)",
		              dir != NULL ? dir : "?", err);
	}
	free(dir);
	return signer;
}

static void zone_ctx_free(zone_ctx_t *zc)
{
	if (zc != NULL) {
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

static zone_ctx_t *zone_ctx_new(knotd_mod_t *mod, const char **err)
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
	zc->signer = signer_load(mod);
	zc->zone_size = knot_dname_size(knotd_mod_zone(mod));
	zc->rotation = knotd_conf(mod, (const yp_name_t *)"\x06""server",
	                          (const yp_name_t *)"\x0f""answer-rotation", NULL).single.boolean;
	return zc;
}

#define C_MODULE	"\x06""module"
#define ONLINESIGN	"\x0e""mod-onlinesign"

/* Whether the zone also runs mod-onlinesign, which signs answers itself:
 * the two modules' answer hooks would race on the same RRsets. */
static bool zone_has_onlinesign(knotd_mod_t *mod)
{
	knotd_conf_t mods = knotd_conf_zone(mod, C_MODULE, knotd_mod_zone(mod));
	bool found = false;
	for (size_t i = 0; i < mods.count && !found; i++) {
		const uint8_t *d = mods.multi[i].data;
		size_t len = mods.multi[i].data_len;
		found = d != NULL && len >= sizeof(ONLINESIGN) - 1 &&
		        memcmp(d, ONLINESIGN, sizeof(ONLINESIGN) - 1) == 0;
	}
	knotd_conf_free(&mods);
	return found;
}

static int mxfilter_load(knotd_mod_t *mod)
{
	if (zone_has_onlinesign(mod)) {
		return load_fail_closed(mod, "mod-onlinesign on the same zone is not "
		                        "supported, use automatic signing");
	}
	const char *err = knot_strerror(KNOT_ENOMEM);
	zone_ctx_t *zc = fault_load() ? NULL : zone_ctx_new(mod, &err);
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
}

KNOTD_MOD_API(mxfilter, KNOTD_MOD_FLAG_SCOPE_ZONE | KNOTD_MOD_FLAG_OPT_CONF,
              mxfilter_load, mxfilter_unload, mxfilter_conf, mxfilter_conf_check);
