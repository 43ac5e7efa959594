/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*
 * What the MX RRsets of an answer become: classification against the
 * policy, the reports (legacy records, missing filtering exchangers), and
 * the marks that say, per packet entry, what the writer keeps, replaces by
 * the filtering set or drops (the RRSIGs of a replaced RRset, the address
 * records of blocked exchangers). writer.c writes it, keeping its
 * invariants (writer.h).
 *
 * A packet holding no MX RRset is left alone and nothing is allocated.
 */

#include <string.h>

#include "rewrite.h"
#include "wire.h"

/* Entries marked on the stack before falling back to the packet's mm. */
#define STACK_ENTRIES	32

/* The packet's memory context (a mempool inside knotd). */
static void *pkt_alloc(knot_pkt_t *pkt, size_t size)
{
	return pkt->mm.alloc != NULL ? pkt->mm.alloc(pkt->mm.ctx, size) : NULL;
}

static void pkt_free(knot_pkt_t *pkt, void *ptr)
{
	if (pkt->mm.free != NULL) {
		pkt->mm.free(ptr);
	}
}

/*** Classification. ***/

static bool rdata_is_nullmx(const knot_rdata_t *rd)
{
	return rd->len == 3 && rd->data[0] == 0 && rd->data[1] == 0 &&
	       rd->data[2] == '\0';
}

/* Exchange of an MX rdata, or NULL if malformed. */
static const knot_dname_t *rdata_exchange(const knot_rdata_t *rd)
{
	if (rd->len < 3) {
		return NULL;
	}
	/* A flat name filling the rest of the rdata exactly: labels of at
	 * most 63 bytes (no compression), at most 255 bytes in all. */
	const uint8_t *name = rd->data + 2;
	size_t size = (size_t)rd->len - 2, pos = 0;
	while (pos < size && name[pos] != 0) {
		if (name[pos] > KNOT_DNAME_MAXLABELLEN) {
			return NULL;
		}
		pos += 1 + name[pos];
	}
	return (pos + 1 == size && size <= KNOT_DNAME_MAXLEN) ? name : NULL;
}

/* Index of the policy exchange matching \a rd, or -1. A preference that
 * no exchange has ends it at once (most legacy records), then the size and
 * the preference are compared before the name. */
static int policy_index(const mxf_policy_t *policy, const knot_rdata_t *rd)
{
	if (rd->len < 3) {
		return -1;
	}
	uint16_t pref = knot_wire_read_u16(rd->data);
	if (!((policy->pref_bits >> (pref % 64)) & 1)) {
		return -1;
	}
	uint16_t size = rd->len - 2;
	for (uint16_t i = 0; i < policy->count; i++) {
		const mxf_exchange_t *ex = &policy->ex[i];
		if (ex->pref == pref && ex->size == size &&
		    mxf_wire_case_equal(rd->data + 2, ex->name, size)) {
			return i;
		}
	}
	return -1;
}

bool mxf_rdata_is_legacy(const mxf_policy_t *policy, const knot_rdata_t *rd)
{
	return policy_index(policy, rd) < 0;
}

/* Running verdict over the records of one owner. */
typedef struct {
	uint32_t seen;     /* Bit per policy exchange present. */
	uint32_t records;
	uint32_t legacy;
	bool nullmx;       /* The only record so far is "0 .". */
} verdict_acc_t;

static void acc_add(verdict_acc_t *acc, const mxf_policy_t *policy,
                    const knot_rdataset_t *rrs)
{
	if (mxf_policy_is_rrs(policy, rrs)) {
		acc->seen |= (policy->count >= 32) ? UINT32_MAX :
		            (((uint32_t)1 << policy->count) - 1);
		acc->nullmx = false;
		acc->records += rrs->count;
		return;
	}
	const knot_rdata_t *rd = rrs->rdata;
	for (uint16_t i = 0; i < rrs->count; i++) {
		int idx = policy_index(policy, rd);
		if (idx >= 0) {
			acc->seen |= (uint32_t)1 << idx;
		} else {
			acc->legacy++;
		}
		acc->nullmx = (acc->records == 0) && rdata_is_nullmx(rd);
		acc->records++;
		rd = mxf_rd_next(rd);
	}
}

static mxf_verdict_t acc_verdict(const verdict_acc_t *acc, const mxf_policy_t *policy)
{
	uint32_t all = (policy->count >= 32) ? UINT32_MAX :
	               (((uint32_t)1 << policy->count) - 1);
	if (acc->legacy == 0 && acc->seen == all) {
		return MXF_SET_COMPLIANT;
	}
	if (acc->records == 1 && acc->nullmx) {
		return MXF_SET_NULLMX;
	}
	return MXF_SET_LEGACY;
}

mxf_verdict_t mxf_classify(const mxf_policy_t *policy, const knot_rdataset_t *rrs)
{
	verdict_acc_t acc = { 0 };
	acc_add(&acc, policy, rrs);
	return acc_verdict(&acc, policy);
}

/* Case-insensitive: is \a name (uncompressed) at or below \a zone, of
 * \a zone_size bytes? Walks the label lengths only; compares the one suffix
 * of the zone's size. */
static inline __attribute__((always_inline))
bool in_zone(const knot_dname_t *name, const knot_dname_t *zone, size_t zone_size)
{
	size_t size = mxf_flat_name_size(name);
	size_t pos = 0;
	while (size - pos > zone_size) {
		pos += 1 + name[pos];
	}
	return size - pos == zone_size && mxf_wire_case_equal(name + pos, zone, zone_size);
}

static inline size_t ctx_zone_size(const mxf_ctx_t *ctx)
{
	return ctx->zone_size != 0 ? ctx->zone_size : mxf_flat_name_size(ctx->zone);
}

static bool in_scope(const mxf_ctx_t *ctx, const knot_dname_t *owner)
{
	return ctx->policy->scope == MXF_SCOPE_ZONE ||
	       knot_dname_is_case_equal(owner, ctx->zone);
}

/* Whether the policy removes this group from the packet. */
static bool enforced_here(const mxf_ctx_t *ctx, const knot_dname_t *owner)
{
	return ctx->policy->mode == MXF_MODE_ENFORCE && in_scope(ctx, owner);
}

static mxf_action_t legacy_action(const mxf_ctx_t *ctx, const knot_dname_t *owner)
{
	if (ctx->policy->mode == MXF_MODE_AUDIT) {
		return MXF_ACTION_AUDIT;
	}
	return in_scope(ctx, owner) ? MXF_ACTION_BLOCKED : MXF_ACTION_OBSERVED;
}

static uint16_t sat_add(uint16_t a, uint32_t b)
{
	uint32_t s = a + b;
	return (s > UINT16_MAX) ? UINT16_MAX : (uint16_t)s;
}

/* Policy exchanges an owner's records lack, when none of them is legacy
 * (a partial filtering set, or no MX at all): the answer gains these
 * without replacing anything, and each is reported as missing. */
static uint32_t missing_of(const verdict_acc_t *acc, const mxf_policy_t *policy)
{
	uint32_t all = (policy->count >= 32) ? UINT32_MAX :
	               (((uint32_t)1 << policy->count) - 1);
	return acc->legacy == 0 ? all & ~acc->seen : 0;
}

/* Reports the legacy records of one entry and counts them. Returns whether
 * their lines (and those of what the owner lacks) are wanted. */
static bool report_entry(const mxf_ctx_t *ctx, const knot_rrset_t *rr,
                         uint16_t flags, mxf_action_t action, bool all_legacy,
                         mxf_result_t *res)
{
	const mxf_policy_t *policy = ctx->policy;
	bool expanded = (flags & KNOT_PF_FREE) != 0;
	bool lines = (ctx->on_legacy != NULL || ctx->on_missing != NULL) &&
	             (ctx->on_legacy_set == NULL ||
	              ctx->on_legacy_set(rr, expanded, action, ctx->cb_data));
	mxf_legacy_cb on_legacy = lines ? ctx->on_legacy : NULL;
	const knot_rdata_t *rd = rr->rrs.rdata;
	for (uint16_t i = 0; i < rr->rrs.count; i++, rd = mxf_rd_next(rd)) {
		if (!all_legacy && !mxf_rdata_is_legacy(policy, rd)) {
			continue;
		}
		uint16_t pref = (rd->len >= 2) ? knot_wire_read_u16(rd->data) : 0;
		mxf_risk_t risk = mxf_risk(policy, pref);
		if (action == MXF_ACTION_BLOCKED) {
			res->blocked[risk] = sat_add(res->blocked[risk], 1);
		} else {
			res->served = sat_add(res->served, 1);
		}
		if (on_legacy != NULL) {
			mxf_legacy_t rec = {
				.owner = rr->owner,
				.exchange = rdata_exchange(rd),
				.pref = pref,
				.risk = risk,
				.action = action,
				.expanded = expanded,
			};
			on_legacy(&rec, ctx->cb_data);
		}
	}
	return lines;
}

/* Reports the policy exchanges in \a missing (not counted: nothing legacy
 * is served or blocked for them). */
static void report_missing(const mxf_ctx_t *ctx, const knot_rrset_t *rr, uint16_t flags,
                           mxf_action_t action, uint32_t missing)
{
	const mxf_policy_t *policy = ctx->policy;
	for (uint16_t p = 0; ctx->on_missing != NULL && p < policy->count; p++) {
		if (missing & ((uint32_t)1 << p)) {
			mxf_legacy_t rec = {
				.owner = rr->owner,
				.exchange = policy->ex[p].name,
				.pref = policy->ex[p].pref,
				.risk = mxf_risk(policy, policy->ex[p].pref),
				.action = action,
				.expanded = (flags & KNOT_PF_FREE) != 0,
			};
			ctx->on_missing(&rec, ctx->cb_data);
		}
	}
}

void mxf_report(const mxf_ctx_t *ctx, const knot_rrset_t *rr, bool expanded,
                mxf_action_t action, mxf_result_t *res)
{
	uint16_t flags = expanded ? KNOT_PF_FREE : 0;
	uint32_t before = res->blocked[0] + res->blocked[1] + res->served;
	bool lines = report_entry(ctx, rr, flags, action, false, res);
	/* No legacy record reported (a partial set, or none): what is missing. */
	if (lines && before == (uint32_t)res->blocked[0] + res->blocked[1] + res->served) {
		verdict_acc_t acc = { 0 };
		acc_add(&acc, ctx->policy, &rr->rrs);
		report_missing(ctx, rr, flags, action, missing_of(&acc, ctx->policy));
	}
}

/*** Packet helpers. ***/
static bool is_mx_candidate(const mxf_ctx_t *ctx, size_t zone_size,
                            const knot_rrset_t *rr)
{
	return rr->type == KNOT_RRTYPE_MX && rr->rrs.count > 0 &&
	       !mxf_is_own_set(ctx->policy, rr) && in_zone(rr->owner, ctx->zone, zone_size);
}


/*** Marking. ***/

/* Whether a classified group holds legacy records to report; a group kept
 * as it is (compliant, or a Null MX kept) is counted here. */
static bool group_is_legacy(const mxf_ctx_t *ctx, const verdict_acc_t *acc,
                            mxf_result_t *res)
{
	switch (acc_verdict(acc, ctx->policy)) {
	case MXF_SET_COMPLIANT:
		res->compliant = sat_add(res->compliant, 1);
		return false;
	case MXF_SET_NULLMX:
		if (ctx->policy->null_mx == MXF_NULLMX_KEEP) {
			return false;
		}
		return true;
	case MXF_SET_LEGACY:
		break;
	}
	return true;
}

/* Classifies the MX group led by entry \a lead; marks and reports it.
 * Returns true if the group changes. */
static bool mark_group(knot_pkt_t *pkt, const mxf_ctx_t *ctx, size_t zone_size,
                       uint8_t *act, uint16_t lead, int sec, mxf_result_t *res)
{
	const knot_rrset_t *owner_rr = &pkt->rr[lead];
	const knot_pktsection_t *s = &pkt->sections[sec];
	uint16_t end = s->pos + s->count;

	verdict_acc_t acc = { 0 };
	for (uint16_t j = lead; j < end; j++) {
		const knot_rrset_t *rr = &pkt->rr[j];
		if (j == lead || (!(act[j] & MXF_W_SEEN) && is_mx_candidate(ctx, zone_size, rr) &&
		                  knot_dname_is_case_equal(rr->owner, owner_rr->owner))) {
			act[j] = MXF_W_SEEN;
			acc_add(&acc, ctx->policy, &rr->rrs);
		}
	}
	if (!group_is_legacy(ctx, &acc, res)) {
		return false;
	}

	bool change = enforced_here(ctx, owner_rr->owner);
	mxf_action_t action = legacy_action(ctx, owner_rr->owner);
	for (uint16_t j = lead; j < end; j++) {
		const knot_rrset_t *rr = &pkt->rr[j];
		if (act[j] != MXF_W_SEEN || rr->type != KNOT_RRTYPE_MX ||
		    (j != lead && !knot_dname_is_case_equal(rr->owner, owner_rr->owner))) {
			continue;
		}
		/* No filtering exchange seen in the group: every record is legacy.
		 * What the group lacks is reported once, with its first entry. */
		uint32_t missing = (j == lead) ? missing_of(&acc, ctx->policy) : 0;
		if (report_entry(ctx, rr, pkt->rr_info[j].flags, action, acc.seen == 0, res) &&
		    missing != 0) {
			report_missing(ctx, rr, pkt->rr_info[j].flags, action, missing);
		}
		if (change) {
			act[j] = MXF_W_SEEN | ((j == lead && sec == KNOT_ANSWER) ?
			                     MXF_W_SET : MXF_W_DROP);
		}
	}
	if (change && sec == KNOT_ANSWER) {
		res->enforced = sat_add(res->enforced, 1);
	}
	return change;
}

/* Whether \a name is the exchange of a removed legacy record. */
static bool is_blocked_exchange(const knot_pkt_t *pkt, const mxf_ctx_t *ctx,
                                const uint8_t *act, const knot_dname_t *name)
{
	if (knot_dname_size(name) <= 1) {
		return false;
	}
	for (uint16_t i = 0; i < pkt->rrset_count; i++) {
		const knot_rrset_t *rr = &pkt->rr[i];
		if (rr->type != KNOT_RRTYPE_MX || MXF_W_ACT(act[i]) == MXF_W_KEEP) {
			continue;
		}
		const knot_rdata_t *rd = rr->rrs.rdata;
		for (uint16_t k = 0; k < rr->rrs.count; k++, rd = mxf_rd_next(rd)) {
			const knot_dname_t *ex = rdata_exchange(rd);
			if (ex != NULL && knot_dname_is_case_equal(ex, name)) {
				/* Still needed if it also is a filtering exchange. */
				for (uint16_t p = 0; p < ctx->policy->count; p++) {
					if (knot_dname_is_case_equal(ctx->policy->ex[p].name, name)) {
						return false;
					}
				}
				return true;
			}
		}
	}
	return false;
}

/*
 * Whether the RRSIG at \a sig covers a removed MX RRset. Usually the owners
 * are equal. For a wildcard answer reached through a CNAME, Knot gives the
 * MX a copy of the expanded name but keeps the RRSIG under the wildcard
 * owner ("*.x"), written with the MX's owner pointer: that pointer matches.
 */
static bool covers_removed_mx(const knot_pkt_t *pkt, const uint8_t *act, uint16_t sig)
{
	const knot_dname_t *sig_owner = pkt->rr[sig].owner;
	uint16_t sig_ptr = pkt->rr_info[sig].compress_ptr[KNOT_COMPR_HINT_OWNER];
	for (uint16_t i = 0; i < pkt->rrset_count; i++) {
		const knot_rrset_t *rr = &pkt->rr[i];
		if (rr->type != KNOT_RRTYPE_MX || MXF_W_ACT(act[i]) == MXF_W_KEEP) {
			continue;
		}
		if (knot_dname_is_case_equal(rr->owner, sig_owner) ||
		    (sig_ptr >= KNOT_WIRE_HEADER_SIZE &&
		     sig_ptr == pkt->rr_info[i].compress_ptr[KNOT_COMPR_HINT_OWNER])) {
			return true;
		}
	}
	return false;
}

/* Marks RRSIGs of removed MX groups and additional records of blocked
 * exchangers. */
static void mark_dependents(knot_pkt_t *pkt, const mxf_ctx_t *ctx, uint8_t *act)
{
	for (uint16_t i = 0; i < pkt->rrset_count; i++) {
		const knot_rrset_t *rr = &pkt->rr[i];
		if (MXF_W_ACT(act[i]) != MXF_W_KEEP) {
			continue;
		}
		if (mxf_rrsig_covers(rr, KNOT_RRTYPE_MX) && covers_removed_mx(pkt, act, i)) {
			act[i] = MXF_W_DROP;
			continue;
		}
		if (mxf_section_of(pkt, i) != KNOT_ADDITIONAL) {
			continue;
		}
		bool address = rr->type == KNOT_RRTYPE_A || rr->type == KNOT_RRTYPE_AAAA ||
		               mxf_rrsig_covers(rr, KNOT_RRTYPE_A) ||
		               mxf_rrsig_covers(rr, KNOT_RRTYPE_AAAA);
		if (address && is_blocked_exchange(pkt, ctx, act, rr->owner)) {
			act[i] = MXF_W_DROP;
		}
	}
}

/* Whether an RRSIG over MX precedes entry \a idx (knotd writes it after
 * the RRset, but the engine takes any order): the general path finds it. */
static bool dependents_before(const knot_pkt_t *pkt, uint16_t idx)
{
	for (uint16_t i = 0; i < idx; i++) {
		if (mxf_rrsig_covers(&pkt->rr[i], KNOT_RRTYPE_MX)) {
			return true;
		}
	}
	return false;
}

/* The writer for the sets this call writes. */
static mxf_set_writer_t set_writer(const mxf_ctx_t *ctx)
{
	return (mxf_set_writer_t) {
		.policy = ctx->policy, .sign = ctx->sign, .sign_data = ctx->sign_data,
	};
}

/*
 * The usual packet at the ANSWER stage (an MX query below the apex): the MX
 * RRset at \a idx is the last thing written, or followed only by its RRSIG
 * (DO), in the answer section being written (mxf_write_is_tail()), and no
 * RRSIG over MX precedes it. Nothing else after it can depend on it (no
 * additional record yet), so the general path's bookkeeping reduces to:
 * classify, report, and let the writer cut at the RRset (its RRSIG goes
 * with it) and write the set and its RRSIG. The outcome is the general
 * path's (a unit test compares both on every packet shape it builds; the
 * fuzzer checks both against its model).
 */
static int process_last(knot_pkt_t *pkt, const mxf_ctx_t *ctx, uint16_t idx,
                        mxf_result_t *res)
{
	const knot_rrset_t *rr = &pkt->rr[idx];
	verdict_acc_t acc = { 0 };
	acc_add(&acc, ctx->policy, &rr->rrs);
	if (!group_is_legacy(ctx, &acc, res)) {
		return KNOT_EOK;
	}
	const knot_rrinfo_t *info = &pkt->rr_info[idx];
	mxf_action_t action = legacy_action(ctx, rr->owner);
	if (report_entry(ctx, rr, info->flags, action, acc.seen == 0, res) && acc.legacy == 0) {
		report_missing(ctx, rr, info->flags, action, missing_of(&acc, ctx->policy));
	}
	if (!enforced_here(ctx, rr->owner)) {
		return KNOT_EOK;
	}
	res->enforced = sat_add(res->enforced, 1);
	mxf_set_writer_t w = set_writer(ctx);
	return mxf_write_tail(pkt, idx, &w);
}

/* The general path: any number of MX RRsets in any sections, with what
 * depends on them, from entry \a first (the first candidate) on. */
static int process_all(knot_pkt_t *pkt, const mxf_ctx_t *ctx, size_t zone_size,
                       uint16_t first, mxf_result_t *res)
{
	uint16_t count = pkt->rrset_count;
	uint8_t act_stack[STACK_ENTRIES];
	uint8_t *act = act_stack;
	if (count > STACK_ENTRIES) {
		act = pkt_alloc(pkt, count);
		if (act == NULL) {
			/* Cannot even classify. Audit mode serves the data as it
			 * is; enforce mode keeps nothing that may be legacy or
			 * sign it: everything from the answer on goes (I7). */
			if (ctx->policy->mode != MXF_MODE_AUDIT) {
				mxf_write_drop_from(pkt, pkt->sections[KNOT_ANSWER].pos);
			}
			return KNOT_ENOMEM;
		}
	}
	memset(act, 0, count);

	bool change = false;
	for (uint16_t i = first; i < count; i++) {
		if ((act[i] & MXF_W_SEEN) ||
		    (i != first && !is_mx_candidate(ctx, zone_size, &pkt->rr[i]))) {
			continue;
		}
		int sec = mxf_section_of(pkt, i);
		if (sec < 0) {
			continue;
		}
		change |= mark_group(pkt, ctx, zone_size, act, i, sec, res);
	}

	int ret = KNOT_EOK;
	if (change) {
		mark_dependents(pkt, ctx, act);
		mxf_set_writer_t w = set_writer(ctx);
		ret = mxf_write_rebuild(pkt, act, NULL, 0, &w);
	}

	if (act != act_stack) {
		pkt_free(pkt, act);
	}
	return ret;
}

int mxf_process(knot_pkt_t *pkt, const mxf_ctx_t *ctx, mxf_result_t *res)
{
	memset(res, 0, sizeof(*res));
	if (pkt == NULL || ctx == NULL || ctx->policy == NULL || ctx->zone == NULL) {
		return KNOT_EINVAL;
	}

	/* Most responses hold no MX at all: one look at each type. */
	uint16_t count = pkt->rrset_count;
	uint16_t first = 0;
	while (first < count && pkt->rr[first].type != KNOT_RRTYPE_MX) {
		first++;
	}
	if (first == count) {
		return KNOT_EOK;
	}
	size_t zone_size = ctx_zone_size(ctx);
	while (first < count && !is_mx_candidate(ctx, zone_size, &pkt->rr[first])) {
		first++;
	}
	if (first == count) {
		return KNOT_EOK;
	}

	if (pkt->current == KNOT_ANSWER && mxf_write_is_tail(pkt, first) &&
	    !dependents_before(pkt, first)) {
		return process_last(pkt, ctx, first, res);
	}
	return process_all(pkt, ctx, zone_size, first, res);
}

int mxf_pkt_leak(const knot_pkt_t *pkt, const mxf_ctx_t *ctx)
{
	if (ctx->policy->mode != MXF_MODE_ENFORCE) {
		return -1;
	}
	for (uint16_t i = 0; i < pkt->rrset_count; i++) {
		const knot_rrset_t *rr = &pkt->rr[i];
		/* Cheapest first: a compliant RRset is one memcmp. */
		if (rr->type != KNOT_RRTYPE_MX || rr->rrs.count == 0 ||
		    mxf_is_own_set(ctx->policy, rr) || mxf_policy_is_rrs(ctx->policy, &rr->rrs) ||
		    !in_zone(rr->owner, ctx->zone, ctx_zone_size(ctx)) ||
		    !in_scope(ctx, rr->owner)) {
			continue;
		}
		const knot_rdata_t *rd = rr->rrs.rdata;
		for (uint16_t k = 0; k < rr->rrs.count; k++, rd = mxf_rd_next(rd)) {
			if (!mxf_rdata_is_legacy(ctx->policy, rd)) {
				continue;
			}
			if (rdata_is_nullmx(rd) && rr->rrs.count == 1 &&
			    ctx->policy->null_mx == MXF_NULLMX_KEEP) {
				continue;
			}
			return i;
		}
	}
	return -1;
}
