/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*
 * mod-hookfloor: a benchmark-only Knot module (never installed) that
 * registers 1, 2 or 3 hooks doing nothing, on the stages mod-mxfilter uses
 * (END; + ANSWER; + PREANSWER). tests/bench/server.py serves a zone with it
 * next to the enrolled one, so every run measures what knotd itself spends
 * to dispatch a zone's query plan: the floor under mod-mxfilter's cost for
 * a query it has nothing to do with.
 *
 *   mod-hookfloor:
 *     - id: three
 *       hooks: 3
 */

#include <knot/module.h>

#define MOD_HOOKS	"\x05""hooks"

static const yp_item_t hookfloor_conf[] = {
	{ MOD_HOOKS, YP_TINT, YP_VINT = { 1, 3, 3 } },
	{ NULL }
};

static knotd_state_t floor_hook(knotd_state_t state, knot_pkt_t *pkt,
                                knotd_qdata_t *qdata, knotd_mod_t *mod)
{
	(void)pkt;
	(void)qdata;
	(void)mod;
	return state;
}

static knotd_in_state_t floor_in_hook(knotd_in_state_t state, knot_pkt_t *pkt,
                                      knotd_qdata_t *qdata, knotd_mod_t *mod)
{
	(void)pkt;
	(void)qdata;
	(void)mod;
	return state;
}

static int hookfloor_load(knotd_mod_t *mod)
{
	int64_t hooks = knotd_conf_mod(mod, MOD_HOOKS).single.integer;
	int ret = knotd_mod_hook(mod, KNOTD_STAGE_END, floor_hook);
	if (ret == KNOT_EOK && hooks >= 2) {
		ret = knotd_mod_in_hook(mod, KNOTD_STAGE_ANSWER, floor_in_hook);
	}
	if (ret == KNOT_EOK && hooks >= 3) {
		ret = knotd_mod_in_hook(mod, KNOTD_STAGE_PREANSWER, floor_in_hook);
	}
	return ret;
}

KNOTD_MOD_API(hookfloor, KNOTD_MOD_FLAG_SCOPE_ZONE | KNOTD_MOD_FLAG_OPT_CONF,
              hookfloor_load, NULL, hookfloor_conf, NULL);
