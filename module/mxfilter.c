/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 *
 *  This program is free software: you can redistribute it and/or modify
 *  it under the terms of the GNU General Public License as published by
 *  the Free Software Foundation, either version 3 of the License, or
 *  (at your option) any later version.
 */

/*
 * mod-mxfilter: the Knot glue, and nothing but glue. It reads the module's
 * configuration (the schema and its checks here; Knot's own configuration
 * in knotconf.c), sets up the engine for each zone, registers the hooks and
 * counters the engine says the zone needs, and turns each hook call into
 * one engine call (include/mxfilter/engine.h): it fills the query's view
 * from Knot's query data, counts what the engine's outcome says, sets the
 * rcode and returns the state it says. The engine writes its lines through
 * log_text(). Every decision and every byte written into a response is the
 * engine's (module/engine/: stage.c decides, writer.c writes).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <knot/module.h>

#include "mxfilter/conf.h"
#include "mxfilter/engine.h"
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

/* The options' names, as in docs/mxfilter.rst. */
static const knot_lookup_t mode_opts[] = {
	{ MXF_MODE_ENFORCE, "enforce" }, { MXF_MODE_AUDIT, "audit" }, { 0, NULL }
};
static const knot_lookup_t scope_opts[] = {
	{ MXF_SCOPE_ZONE, "zone" }, { MXF_SCOPE_APEX, "apex" }, { 0, NULL }
};
static const knot_lookup_t nullmx_opts[] = {
	{ MXF_NULLMX_KEEP, "keep" }, { MXF_NULLMX_REPLACE, "replace" }, { 0, NULL }
};
static const knot_lookup_t transfer_opts[] = {
	{ MXF_XFR_ALLOW, "allow" }, { MXF_XFR_LOG, "log" }, { MXF_XFR_REFUSE, "refuse" },
	{ 0, NULL }
};

static int check_exchange(knotd_conf_check_args_t *args);

/* The defaults are the engine's (mxfilter/conf.h); no exchange: its set. */
const yp_item_t mxfilter_conf[] = {
	{ MOD_EXCHANGE, YP_TSTR,  YP_VNONE, YP_FMULTI, { check_exchange } },
	{ MOD_MODE,     YP_TOPT,  YP_VOPT = { mode_opts, MXF_DEFAULT_MODE } },
	{ MOD_SCOPE,    YP_TOPT,  YP_VOPT = { scope_opts, MXF_DEFAULT_SCOPE } },
	{ MOD_SYNTH,    YP_TBOOL, YP_VBOOL = { MXF_DEFAULT_SYNTHESIZE } },
	{ MOD_NULLMX,   YP_TOPT,  YP_VOPT = { nullmx_opts, MXF_DEFAULT_NULL_MX } },
	{ MOD_TTL,      YP_TINT,  YP_VINT = { 0, INT32_MAX, 0, YP_STIME } },
	{ MOD_LOG_INT,  YP_TINT,  YP_VINT = { 0, MXF_MAX_LOG_INTERVAL,
	                                      MXF_DEFAULT_LOG_INTERVAL, YP_STIME } },
	{ MOD_TRANSFER, YP_TOPT,  YP_VOPT = { transfer_opts, MXF_DEFAULT_TRANSFER } },
	{ MOD_COUNTERS, YP_TBOOL, YP_VBOOL = { MXF_DEFAULT_COUNTERS } },
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

/*** Counters (registered in the engine's order). ***/

static char *blocked_to_str(uint32_t idx, uint32_t count)
{
	return strdup(mxf_counters[MXF_CTR_BLOCKED].part[idx]);
}

static char *transfers_to_str(uint32_t idx, uint32_t count)
{
	return strdup(mxf_counters[MXF_CTR_TRANSFERS].part[idx]);
}

static int register_counters(knotd_mod_t *mod)
{
	for (unsigned i = 0; i < MXF_CTR_COUNT; i++) {
		knotd_mod_idx_to_str_f to_str = (i == MXF_CTR_BLOCKED) ? blocked_to_str :
		                                (i == MXF_CTR_TRANSFERS) ? transfers_to_str : NULL;
		int ret = knotd_mod_stats_add(mod, mxf_counters[i].name, mxf_counters[i].parts,
		                              to_str);
		if (ret != KNOT_EOK) {
			return ret;
		}
	}
	return KNOT_EOK;
}

/* What the engine counts (only for a zone with "counters: on": Knot has no
 * counter storage for the others). */
static void count(const mxf_query_t *q, unsigned val, uint32_t n)
{
	const knotd_qdata_t *qdata = q->data;
	knotd_mod_stats_incr(q->log_data, qdata->params->thread_id, mxf_val_counter[val],
	                     mxf_val_part[val], n);
}

/*** Queries: Knot's query data as the engine reads it. ***/

static void log_text(void *data, int level, const char *text)
{
	knotd_mod_log(data, level, "%s", text);
}

static knot_rrset_t read_apex(void *data, uint16_t type)
{
	return knotd_qdata_zone_apex_rrset(data, type);
}

#ifdef HAVE_KNOTD_QDATA_ZONE_RRSET
/* Knot 3.4+ (module/meson.build tests the installed header). */
static int read_rrset(void *data, const knot_dname_t *name, uint16_t type,
                      knot_rrset_t *out)
{
	return knotd_qdata_zone_rrset(data, NULL, name, type, out);
}
#else
#define read_rrset	NULL
#endif

static const struct sockaddr_storage *read_client(void *data)
{
	return knotd_qdata_remote_addr(data);
}

static const mxf_server_t server = {
	.apex = read_apex,
	.rrset = read_rrset,
	.client = read_client,
	.log = log_text,
	.count = count,
};

/* The engine takes Knot's query types as they are. */
_Static_assert(MXF_QUERY_NORMAL == (int)KNOTD_QUERY_TYPE_NORMAL &&
               MXF_QUERY_AXFR == (int)KNOTD_QUERY_TYPE_AXFR &&
               MXF_QUERY_IXFR == (int)KNOTD_QUERY_TYPE_IXFR &&
               MXF_QUERY_NOTIFY == (int)KNOTD_QUERY_TYPE_NOTIFY &&
               MXF_QUERY_UPDATE == (int)KNOTD_QUERY_TYPE_UPDATE,
               "knotd_query_type_t changed");

static bool is_transfer(const knotd_qdata_t *qdata)
{
	return qdata->type == KNOTD_QUERY_TYPE_AXFR || qdata->type == KNOTD_QUERY_TYPE_IXFR;
}

static inline void query_init(mxf_query_t *q, knot_pkt_t *pkt, knotd_qdata_t *qdata,
                              knotd_mod_t *mod, mxf_knot_state_t state)
{
	q->pkt = pkt;
	q->query = qdata->query;
	q->name = qdata->name;
	q->server = &server;
	q->data = qdata;
	q->log_data = mod;
	q->type = (uint8_t)qdata->type;
	q->state = (uint8_t)state;
	q->udp = qdata->params->proto == KNOTD_QUERY_PROTO_UDP;
}

typedef mxf_step_t (*stage_f)(mxf_zone_t *, const mxf_query_t *);

/* An in-hook's engine call, and Knot's state for what it says (inlined
 * into each hook's slow path: the stage is called directly). */
static inline __attribute__((always_inline))
knotd_in_state_t run_in(stage_f stage, mxf_zone_t *zone, knotd_in_state_t state,
                        knot_pkt_t *pkt, knotd_qdata_t *qdata, knotd_mod_t *mod,
                        mxf_knot_state_t kstate)
{
	mxf_query_t q;
	query_init(&q, pkt, qdata, mod, kstate);
	switch (stage(zone, &q)) {
	case MXF_HIT:      return KNOTD_IN_STATE_HIT;
	case MXF_TRUNC:    return KNOTD_IN_STATE_TRUNC;
	case MXF_SERVFAIL:
		qdata->rcode = KNOT_RCODE_SERVFAIL;
		return KNOTD_IN_STATE_ERROR;
	default:           return state;
	}
}

/* A zone hook's engine call, and Knot's state for what it says. */
static knotd_state_t run(stage_f stage, knotd_state_t state, knot_pkt_t *pkt,
                         knotd_qdata_t *qdata, knotd_mod_t *mod)
{
	mxf_query_t q;
	query_init(&q, pkt, qdata, mod,
	           state == KNOTD_STATE_DONE ? MXF_KNOT_DONE : MXF_KNOT_OTHER);
	switch (stage(knotd_mod_ctx(mod), &q)) {
	case MXF_REFUSED:
		qdata->rcode = KNOT_RCODE_REFUSED;
		return KNOTD_STATE_FAIL;
	case MXF_SERVFAIL:
		qdata->rcode = KNOT_RCODE_SERVFAIL;
		return KNOTD_STATE_FAIL;
	case MXF_EMPTY_TC:
		qdata->err_truncated = true;
		return KNOTD_STATE_FAIL;
	default:
		return state;
	}
}

/*** Hooks: the first test inline (every query of the zone pays it), the
 *** engine call out of line. ***/

__attribute__((noinline))
static knotd_in_state_t preanswer(knotd_in_state_t state, knot_pkt_t *pkt,
                                  knotd_qdata_t *qdata, knotd_mod_t *mod)
{
	/* Most MX queries on Knot 3.2 (below the apex) end here. */
	mxf_zone_t *zone = knotd_mod_ctx(mod);
	if (!mxf_preanswer_reaches(zone, pkt, state == KNOTD_IN_STATE_BEGIN,
	                           server.rrset != NULL)) {
		return state;
	}
	return run_in(mxf_preanswer, zone, state, pkt, qdata, mod, MXF_KNOT_BEGIN);
}

__attribute__((noinline))
static knotd_in_state_t answer(knotd_in_state_t state, knot_pkt_t *pkt,
                               knotd_qdata_t *qdata, knotd_mod_t *mod)
{
	return run_in(mxf_answer, knotd_mod_ctx(mod), state, pkt, qdata, mod,
	              state == KNOTD_IN_STATE_NODATA ? MXF_KNOT_NODATA : MXF_KNOT_OTHER);
}

__attribute__((noinline))
static knotd_in_state_t authority(knotd_in_state_t state, knot_pkt_t *pkt,
                                  knotd_qdata_t *qdata, knotd_mod_t *mod)
{
	return run_in(mxf_authority, knotd_mod_ctx(mod), state, pkt, qdata, mod,
	              MXF_KNOT_OTHER);
}

/* The in-hooks: what the stage looks at, tested inline. */
#define IN_HOOK(name, wants, slow) \
static knotd_in_state_t name(knotd_in_state_t state, knot_pkt_t *pkt, \
                             knotd_qdata_t *qdata, knotd_mod_t *mod) \
{ \
	if (__builtin_expect(!(wants), 1)) { \
		return state; \
	} \
	return slow(state, pkt, qdata, mod); \
}

IN_HOOK(hook_preanswer, mxf_preanswer_wants(pkt), preanswer)
IN_HOOK(hook_answer, mxf_answer_wants(pkt), answer)
IN_HOOK(hook_authority, knot_pkt_has_dnssec(qdata->query), authority)

static knotd_state_t hook_begin(knotd_state_t state, knot_pkt_t *pkt,
                                knotd_qdata_t *qdata, knotd_mod_t *mod)
{
	if (!is_transfer(qdata)) {
		return state;
	}
	return run(mxf_begin, state, pkt, qdata, mod);
}

__attribute__((noinline))
static knotd_state_t end(knotd_state_t state, knot_pkt_t *pkt,
                         knotd_qdata_t *qdata, knotd_mod_t *mod)
{
	return run(mxf_end, state, pkt, qdata, mod);
}

/* The END hooks, one per set of what a zone's END stage looks at (MX and
 * ANY answers, transfers: a transfer's later messages may carry no
 * question, its type is in qdata; DNSSEC answers): the first test reads
 * only what the zone needs. */
#define END_HOOK(name, mx, xfr, dnssec) \
static knotd_state_t name(knotd_state_t state, knot_pkt_t *pkt, \
                          knotd_qdata_t *qdata, knotd_mod_t *mod) \
{ \
	if (__builtin_expect(!((mx && mxf_answer_wants(pkt)) || \
	                       (xfr && is_transfer(qdata)) || \
	                       (dnssec && knot_pkt_has_dnssec(qdata->query))), 1)) { \
		return state; \
	} \
	return end(state, pkt, qdata, mod); \
}

END_HOOK(hook_end_mx, true, false, false)
END_HOOK(hook_end_xfr, false, true, false)
END_HOOK(hook_end_mx_xfr, true, true, false)
END_HOOK(hook_end_mx_do, true, false, true)
END_HOOK(hook_end_mx_xfr_do, true, true, true)

/* The END hook for a zone's END stages (NULL: none). */
static knotd_mod_hook_f end_hook(unsigned stages)
{
	switch (stages & (MXF_STAGE_END_MX | MXF_STAGE_END_XFR | MXF_STAGE_END_DO)) {
	case MXF_STAGE_END_MX:                                        return hook_end_mx;
	case MXF_STAGE_END_XFR:                                       return hook_end_xfr;
	case MXF_STAGE_END_MX | MXF_STAGE_END_XFR:                    return hook_end_mx_xfr;
	case MXF_STAGE_END_MX | MXF_STAGE_END_DO:                     return hook_end_mx_do;
	case MXF_STAGE_END_MX | MXF_STAGE_END_XFR | MXF_STAGE_END_DO: return hook_end_mx_xfr_do;
	default:                                                      return NULL;
	}
}

/*
 * A zone whose module cannot be set up (out of memory, a configuration that
 * reached the server unchecked) must not fall back to serving legacy MX:
 * when a module's load fails, Knot serves the zone without it. So load then
 * succeeds with this hook alone, and MX and ANY queries get SERVFAIL.
 */
static knotd_state_t hook_unloaded(knotd_state_t state, knot_pkt_t *pkt,
                                   knotd_qdata_t *qdata, knotd_mod_t *mod)
{
	if (mxf_unloaded(qdata->query, (mxf_query_type_t)qdata->type) == MXF_SERVFAIL) {
		qdata->rcode = KNOT_RCODE_SERVFAIL;
		return KNOTD_STATE_FAIL;
	}
	return state;
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

static int load_fail_closed(knotd_mod_t *mod, const char *reason)
{
	knotd_mod_log(mod, LOG_ERR, "cannot enforce, MX and ANY queries will get "
	              "SERVFAIL (%s)", reason);
	knotd_mod_ctx_set(mod, NULL);
	return knotd_mod_hook(mod, KNOTD_STAGE_BEGIN, hook_unloaded);
}

/* The engine's zone for this module instance, from the module's section and
 * what Knot's own configuration says about the zone. */
static mxf_zone_t *zone_new(knotd_mod_t *mod, size_t id_len, bool counters,
                            const char **err)
{
	mxf_conf_t conf;
	knotd_conf_t ex;
	const char *values[MXF_MAX_EXCHANGES];
	if (read_conf(mod, &conf, &ex, values) != KNOT_EOK) {
		knotd_conf_free(&ex);
		*err = "too many exchanges";
		return NULL;
	}
	mxf_knot_keys_t keys = { .count = 0 };
	bool signs = mxf_knot_signs(mod);
	if (signs) {
		mxf_knot_keystores(mod, &keys);
	}
	mxf_zone_conf_t zconf = {
		.name = knotd_mod_zone(mod),
		.conf = &conf,
		.counters = counters,
		.signs = signs,
		.keystores = (const char *const *)keys.dir,
		.keystore_count = keys.count,
		.keystore_error = keys.error,
		.rotation = mxf_knot_rotation(mod),
		.line_prefix = mxf_knot_line_prefix(mod, id_len),
		.log = log_text,
		.log_data = mod,
	};
	mxf_zone_t *zone = mxf_zone_new(&zconf, err);
	mxf_knot_keys_free(&keys);
	knotd_conf_free(&ex);
	return zone;
}

/* The hooks of the zone's stages; the END hook first: registered alone, it
 * still keeps legacy MX out of answers. Returns the stages hooked. */
static unsigned register_hooks(knotd_mod_t *mod, unsigned stages, int *ret)
{
	unsigned hooked = 0;
	knotd_mod_hook_f end_f = end_hook(stages);
	*ret = (end_f != NULL) ? knotd_mod_hook(mod, KNOTD_STAGE_END, end_f) : KNOT_EOK;
	if (*ret == KNOT_EOK) {
		hooked |= stages & (MXF_STAGE_END_MX | MXF_STAGE_END_XFR | MXF_STAGE_END_DO);
	}
	static const struct {
		unsigned stage;
		knotd_stage_t knot;
		knotd_mod_in_hook_f in_hook;
		knotd_mod_hook_f hook;
	} hooks[] = {
		{ MXF_STAGE_ANSWER,    KNOTD_STAGE_ANSWER,    hook_answer, NULL },
		{ MXF_STAGE_PREANSWER, KNOTD_STAGE_PREANSWER, hook_preanswer, NULL },
		{ MXF_STAGE_BEGIN,     KNOTD_STAGE_BEGIN,     NULL, hook_begin },
		{ MXF_STAGE_AUTHORITY, KNOTD_STAGE_AUTHORITY, hook_authority, NULL },
	};
	for (size_t i = 0; i < sizeof(hooks) / sizeof(hooks[0]) && *ret == KNOT_EOK; i++) {
		if (!(stages & hooks[i].stage)) {
			continue;
		}
		*ret = (hooks[i].in_hook != NULL) ?
		       knotd_mod_in_hook(mod, hooks[i].knot, hooks[i].in_hook) :
		       knotd_mod_hook(mod, hooks[i].knot, hooks[i].hook);
		if (*ret == KNOT_EOK) {
			hooked |= hooks[i].stage;
		}
	}
	return hooked;
}

static int mxfilter_load(knotd_mod_t *mod)
{
	mxf_knot_modules_t mods;
	mxf_knot_modules(mod, &mods);
	if (mods.onlinesign) {
		return load_fail_closed(mod, "mod-onlinesign on the same zone is not "
		                        "supported, use automatic signing");
	}
	/* Knot stores each counter per zone and worker thread: with 10^5
	 * zones that is most of the module's memory, hence "counters: off". */
	bool counters = knotd_conf_mod(mod, MOD_COUNTERS).single.boolean;
	const char *err = NULL;
	mxf_zone_t *zone = zone_new(mod, mods.id_len, counters, &err);
	if (zone == NULL) {
		return load_fail_closed(mod, err);
	}
	int ret = counters ? register_counters(mod) : KNOT_EOK;
	if (ret != KNOT_EOK) {
		mxf_zone_free(zone);
		return load_fail_closed(mod, knot_strerror(ret));
	}
	knotd_mod_ctx_set(mod, zone);

	/* Hooks last. Knot does not remove the hooks of a module whose load
	 * fails, so once one is registered the load must succeed. */
	unsigned stages = mxf_zone_stages(zone);
	unsigned hooked = register_hooks(mod, stages, &ret);
	if (hooked == 0 && ret != KNOT_EOK) {
		knotd_mod_ctx_set(mod, NULL);
		mxf_zone_free(zone);
		return load_fail_closed(mod, knot_strerror(ret));
	} else if (ret != KNOT_EOK) {
		/* The END check still keeps legacy MX out of answers. */
		knotd_mod_log(mod, LOG_ERR, "failed to register all hooks, enforcing "
		              "at the end stage only (%s)", knot_strerror(ret));
	}
	mxf_zone_ready(zone, hooked, log_text, mod);
	return KNOT_EOK;
}

static void mxfilter_unload(knotd_mod_t *mod)
{
	mxf_zone_free(knotd_mod_ctx(mod));
	/* Knot 3.5 calls unload again when it closes a module whose context is
	 * still set (e.g. after a reload's load failed): never a stale one. */
	knotd_mod_ctx_set(mod, NULL);
}

KNOTD_MOD_API(mxfilter, KNOTD_MOD_FLAG_SCOPE_ZONE | KNOTD_MOD_FLAG_OPT_CONF,
              mxfilter_load, mxfilter_unload, mxfilter_conf, mxfilter_conf_check);
