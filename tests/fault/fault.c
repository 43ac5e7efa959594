/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*
 * Test-only: the fault injection of mxfilter-faulty.so, the module built
 * from the product's own objects with a few engine calls wrapped at link
 * time (-Wl,--wrap=NAME, tests/fault/meson.build), so that the shipped
 * mxfilter.so holds none of this. Read from knotd's environment:
 *
 *   MXFILTER_FAULT=enomem        every enforcement fails: the filtering set
 *                                cannot be written, a rewrite that
 *                                enforced reports no memory, denial
 *                                records cannot be edited (the e2e suite
 *                                proves the module then fails closed)
 *   MXFILTER_FAULT=load          the module's set-up fails for every zone
 *   MXFILTER_AUDIT_MEMORY=BYTES  the audit limiter's bound (to reach it)
 *   MXFILTER_SIGCACHE=BASE,PER_ZONE,RATE,BURST
 *                                the signature cache's limits (a tiny
 *                                budget without filling 64 MiB)
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mxfilter/engine.h"
#include "engine/audit.h"
#include "engine/denial.h"
#include "engine/rewrite.h"
#include "engine/sign.h"
#include "engine/writer.h"

static bool fault(const char *what)
{
	const char *f = getenv("MXFILTER_FAULT");
	return f != NULL && strcmp(f, what) == 0;
}

/* The wrapped calls (their prototypes: the engine's headers). */
mxf_zone_t *__real_mxf_zone_new(const mxf_zone_conf_t *conf, const char **err);
mxf_zone_t *__wrap_mxf_zone_new(const mxf_zone_conf_t *conf, const char **err);
int __real_mxf_write_set(knot_pkt_t *pkt, const mxf_policy_t *policy,
                         const knot_dname_t *owner, uint32_t ttl, uint16_t hint,
                         uint16_t flags);
int __wrap_mxf_write_set(knot_pkt_t *pkt, const mxf_policy_t *policy,
                         const knot_dname_t *owner, uint32_t ttl, uint16_t hint,
                         uint16_t flags);
int __real_mxf_process(knot_pkt_t *pkt, const mxf_ctx_t *ctx, mxf_result_t *res);
int __wrap_mxf_process(knot_pkt_t *pkt, const mxf_ctx_t *ctx, mxf_result_t *res);
int __real_mxf_denial_rewrite(knot_pkt_t *pkt, const mxf_denial_ctx_t *ctx,
                              const uint16_t *idx, size_t count);
int __wrap_mxf_denial_rewrite(knot_pkt_t *pkt, const mxf_denial_ctx_t *ctx,
                              const uint16_t *idx, size_t count);
mxf_limiter_t *__real_mxf_limiter_new(const mxf_limiter_opts_t *opts);
mxf_limiter_t *__wrap_mxf_limiter_new(const mxf_limiter_opts_t *opts);
mxf_signer_t *__real_mxf_signer_new(const knot_dname_t *zone, const char *keystore_dir,
                                    const mxf_sigcache_limits_t *limits, const char **err);
mxf_signer_t *__wrap_mxf_signer_new(const knot_dname_t *zone, const char *keystore_dir,
                                    const mxf_sigcache_limits_t *limits, const char **err);

/* MXFILTER_FAULT=load: no zone can be set up. */
mxf_zone_t *__wrap_mxf_zone_new(const mxf_zone_conf_t *conf, const char **err)
{
	if (fault("load")) {
		*err = knot_strerror(KNOT_ENOMEM);
		return NULL;
	}
	return __real_mxf_zone_new(conf, err);
}

/* MXFILTER_FAULT=enomem: the set the engine writes itself (PREANSWER, an
 * apex without MX reached through a CNAME). */
int __wrap_mxf_write_set(knot_pkt_t *pkt, const mxf_policy_t *policy,
                         const knot_dname_t *owner, uint32_t ttl, uint16_t hint,
                         uint16_t flags)
{
	if (fault("enomem")) {
		return KNOT_ENOMEM;
	}
	return __real_mxf_write_set(pkt, policy, owner, ttl, hint, flags);
}

/* ... a rewrite at ANSWER that enforced (the packet holds the set). */
int __wrap_mxf_process(knot_pkt_t *pkt, const mxf_ctx_t *ctx, mxf_result_t *res)
{
	int ret = __real_mxf_process(pkt, ctx, res);
	if (ret == KNOT_EOK && res->enforced > 0 && fault("enomem")) {
		ret = KNOT_ENOMEM;
	}
	return ret;
}

/* ... and the edit of a denial record at AUTHORITY. */
int __wrap_mxf_denial_rewrite(knot_pkt_t *pkt, const mxf_denial_ctx_t *ctx,
                              const uint16_t *idx, size_t count)
{
	if (fault("enomem")) {
		return KNOT_ENOMEM;
	}
	return __real_mxf_denial_rewrite(pkt, ctx, idx, count);
}

/* MXFILTER_AUDIT_MEMORY=BYTES bounds the audit limiter. */
mxf_limiter_t *__wrap_mxf_limiter_new(const mxf_limiter_opts_t *opts)
{
	mxf_limiter_opts_t o = *opts;
	const char *v = getenv("MXFILTER_AUDIT_MEMORY");
	if (v != NULL) {
		o.max_bytes = (size_t)strtoull(v, NULL, 10);
	}
	return __real_mxf_limiter_new(&o);
}

/* MXFILTER_SIGCACHE=BASE,PER_ZONE,RATE,BURST sets the signature cache's
 * limits. */
mxf_signer_t *__wrap_mxf_signer_new(const knot_dname_t *zone, const char *keystore_dir,
                                    const mxf_sigcache_limits_t *limits, const char **err)
{
	const char *v = getenv("MXFILTER_SIGCACHE");
	mxf_sigcache_limits_t lim;
	unsigned long base, per_zone, rate, burst;
	if (v != NULL && sscanf(v, "%lu,%lu,%lu,%lu", &base, &per_zone, &rate, &burst) == 4) {
		lim = (mxf_sigcache_limits_t) { base, per_zone, rate, burst };
		limits = &lim;
	}
	return __real_mxf_signer_new(zone, keystore_dir, limits, err);
}
