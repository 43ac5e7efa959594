/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*
 * Response rewriting.
 *
 * libknot writes RRsets to the wire as they are added and offers no way to
 * remove one. To replace an MX RRset the engine cuts the packet back to the
 * first RRset that changes and writes everything from there again, in the
 * original order, with knot_pkt_put(). The invariants of that rebuild:
 *
 *  I1  Only whole RRsets are cut: the wire is truncated at rr_info[cut].pos.
 *      Bytes before the cut, the compression pointers in them and the
 *      compression hints in rr_info[0..cut) remain valid because nothing
 *      before the cut moves.
 *  I2  The compression suffix hint (pkt->compr.suffix) may point past the
 *      cut; it is reset to the QNAME, which every packet with a question
 *      has at offset 12, so no pointer written after the cut can target
 *      rewritten bytes.
 *  I3  Section bookkeeping is recomputed at the cut: sections[].pos/count of
 *      the cut's section and of later ones, pkt->current, and the wire
 *      counts (ANCOUNT, NSCOUNT, ARCOUNT) from the records kept before the
 *      cut; knot_pkt_put() adds the rest as it writes.
 *  I4  pkt->reserved is untouched: space reserved for OPT and TSIG stays
 *      reserved, so the server can still finish the packet.
 *  I5  An RRset flagged KNOT_PF_FREE that is dropped is freed with the
 *      packet's memory context; a replacement carries KNOT_PF_FREE only when
 *      it owns a private copy of the rdata (the policy's rdata is shared by
 *      every query and must never be freed by a packet).
 *  I6  pkt->opt_rr is cleared when the OPT RRset is cut, and set again by
 *      knot_pkt_put() when it is written back.
 *  I7  Nothing marked for removal is ever written back, and on failure the
 *      packet ends at the last RRset written: whatever the outcome, no
 *      legacy MX of an enforced owner remains.
 *  I8  An owner written after the cut as a pointer to the owner of an
 *      earlier entry after the cut (an RRSIG after its RRset) points to that
 *      entry's owner as written again, so the rebuilt tail is compressed as
 *      the original was.
 *
 * A packet holding no MX RRset is left alone and nothing is allocated.
 * mxf_pkt_replace() runs the same rebuild for entries its caller replaces
 * (the denial records of engine/denial.c), or, when every replacement has
 * the wire size of what it replaces, patches the wire in place instead:
 *
 *  P1  Each record of the replaced entry is found on the wire, after its
 *      owner, with exactly the original rdata bytes (written verbatim: no
 *      compression inside, no rotation); the replacement has as many
 *      records, each of the same rdata length, the same owner and type.
 *  P2  The names inside the rdata (by the type's descriptor) are the same
 *      bytes in both, so no compression pointer into them can change
 *      meaning; only other rdata bytes and the TTL (as knot_pkt_put() would
 *      write it) are overwritten. Owners, sizes, counts and compression
 *      hints stay as they are.
 *  P3  rr[] then holds the replacement (KNOT_PF_FREE as the caller owns
 *      it), the original freed if it was the packet's: the wire holds what
 *      rr[] says, as after a rebuild (the unit tests compare both).
 * Every entry is checked before the first byte changes: all in place, or
 * the rebuild.
 */

#include <string.h>

#include "compat.h"
#include "rewrite.h"
#include "image.h"
#include "wire.h"

enum {
	ACT_KEEP = 0,
	ACT_REPLACE,   /* First MX entry of an owner in ANSWER: the set goes here. */
	ACT_DROP,      /* Removed. */
	ACT_SUBST,     /* Replaced by a caller's RRset (mxf_pkt_replace()). */
	ACT_SEEN = 0x80, /* Classification done (flag). */
};

#define ACT(a)	((a) & 0x7f)

/* Entries kept on the stack before falling back to the packet's mm. */
#define STACK_ENTRIES	32

/* mxf_pkt_replace() in place: at most this many entries of as many records. */
#define MXF_INPLACE_MAX		8
#define MXF_INPLACE_RECORDS	8

#define NOT_WRITTEN	UINT16_MAX

typedef struct {
	knot_rrset_t rr;
	mxf_subst_t *with;  /* ACT_SUBST: what is written instead. */
	uint16_t owner_ptr; /* Where the owner pointed in the original wire. */
	uint16_t written;   /* Index in rr[] once written again, or NOT_WRITTEN. */
	uint16_t flags;
	uint8_t act;
	uint8_t section;
} saved_t;

/*** Small helpers. ***/

static const knot_rdata_t *rd_next(const knot_rdata_t *rd)
{
	return knot_rdataset_next((knot_rdata_t *)rd);
}

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

/* Whether \a rrs is byte for byte the policy's set (canonical order,
 * lower-case names): the common compliant case, one memcmp. */
static inline bool rrs_is_policy(const mxf_policy_t *policy, const knot_rdataset_t *rrs)
{
	return rrs->count == policy->rrs.count && rrs->size == policy->rrs.size &&
	       memcmp(rrs->rdata, policy->rrs.rdata, rrs->size) == 0;
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
	if (rrs_is_policy(policy, rrs)) {
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
		rd = rd_next(rd);
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
static bool in_zone(const knot_dname_t *name, const knot_dname_t *zone, size_t zone_size)
{
	size_t size = mxf_flat_name_size(name);
	size_t pos = 0;
	while (size - pos > zone_size) {
		pos += 1 + name[pos];
	}
	return size - pos == zone_size && mxf_wire_case_equal(name + pos, zone, zone_size);
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
	for (uint16_t i = 0; i < rr->rrs.count; i++, rd = rd_next(rd)) {
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

static int section_of(const knot_pkt_t *pkt, uint16_t idx)
{
	for (int s = KNOT_ANSWER; s <= KNOT_ADDITIONAL; s++) {
		const knot_pktsection_t *sec = &pkt->sections[s];
		if (idx >= sec->pos && idx < sec->pos + sec->count) {
			return s;
		}
	}
	return -1;
}

static bool is_mx_candidate(const mxf_ctx_t *ctx, size_t zone_size,
                            const knot_rrset_t *rr)
{
	return rr->type == KNOT_RRTYPE_MX && rr->rrs.count > 0 &&
	       !mxf_is_own_set(ctx->policy, rr) && in_zone(rr->owner, ctx->zone, zone_size);
}

static bool rrsig_covers(const knot_rrset_t *rr, uint16_t type)
{
	return rr->type == KNOT_RRTYPE_RRSIG && rr->rrs.count > 0 &&
	       rr->rrs.rdata->len >= 2 &&
	       knot_rrsig_type_covered(rr->rrs.rdata) == type;
}

int mxf_put_set(knot_pkt_t *pkt, const mxf_policy_t *policy,
                const knot_dname_t *owner, uint32_t ttl, uint16_t hint,
                uint16_t flags)
{
	if (flags & KNOT_PF_FREE) {
		return KNOT_EINVAL;
	}
	knot_rrset_t rr;
	knot_rrset_init(&rr, (knot_dname_t *)owner, KNOT_RRTYPE_MX, KNOT_CLASS_IN, ttl);
	rr.rrs = policy->rrs;
	if (mxf_image_put(pkt, policy, &rr, hint, flags)) {
		return KNOT_EOK;
	}
	return knot_pkt_put(pkt, hint, &rr, flags);
}

bool mxf_put_verbatim(knot_pkt_t *pkt, const mxf_policy_t *policy,
                      const knot_rrset_t *rr, uint16_t hint, uint16_t flags)
{
	return rr->type == KNOT_RRTYPE_MX && rrs_is_policy(policy, &rr->rrs) &&
	       !(flags & KNOT_PF_FREE) && mxf_image_put(pkt, policy, rr, hint, flags);
}

int mxf_put_rrsig(knot_pkt_t *pkt, const mxf_ctx_t *ctx, uint16_t flags)
{
	if (ctx->sign == NULL) {
		return KNOT_EOK;
	}
	if (pkt->rrset_count == 0) {
		return KNOT_EINVAL;
	}
	const knot_rrset_t *set = &pkt->rr[pkt->rrset_count - 1];
	const knot_rrinfo_t *info = &pkt->rr_info[pkt->rrset_count - 1];
	knot_rrset_t rrsig;
	int ret = ctx->sign(ctx->sign_data, set, &rrsig);
	if (ret != KNOT_EOK) {
		return ret;
	}
	/* The owner is written exactly as the signed RRset's owner was. */
	uint16_t hint = info->compress_ptr[KNOT_COMPR_HINT_OWNER];
	return knot_pkt_put(pkt, hint, &rrsig, flags & ~(KNOT_PF_FREE | KNOT_PF_CHECKDUP));
}

/* Writes the replacement for \a orig (owner and TTL kept). */
static int put_replacement(knot_pkt_t *pkt, const mxf_policy_t *policy,
                           saved_t *orig, uint16_t hint)
{
	uint32_t ttl = policy->ttl_set ? policy->ttl : orig->rr.ttl;
	uint16_t flags = orig->flags & ~(KNOT_PF_FREE | KNOT_PF_CHECKDUP);
	if (!(orig->flags & KNOT_PF_FREE)) {
		return mxf_put_set(pkt, policy, orig->rr.owner, ttl, hint, flags);
	}

	/* The owner belongs to the packet (e.g. expanded wildcard): hand it to
	 * a replacement with a private copy of the set, freed with the packet. */
	knot_rdataset_clear(&orig->rr.rrs, &pkt->mm);
	knot_rrset_t rr;
	knot_rrset_init(&rr, orig->rr.owner, KNOT_RRTYPE_MX, KNOT_CLASS_IN, ttl);
	orig->rr.owner = NULL;
	int ret = knot_rdataset_copy(&rr.rrs, &policy->rrs, &pkt->mm);
	if (ret == KNOT_EOK) {
		ret = knot_pkt_put(pkt, hint, &rr, flags | KNOT_PF_FREE);
	}
	if (ret != KNOT_EOK) {
		knot_rrset_clear(&rr, &pkt->mm);
	}
	return ret;
}

static void free_saved(knot_pkt_t *pkt, saved_t *s)
{
	if (s->flags & KNOT_PF_FREE) {
		knot_rrset_clear(&s->rr, &pkt->mm);
		s->flags &= ~KNOT_PF_FREE;
	}
}

/* Cuts the packet back to the start of entry \a cut (I1-I3, I6). */
static void cut_packet(knot_pkt_t *pkt, uint16_t cut, int cut_sec)
{
	pkt->size = pkt->rr_info[cut].pos;

	for (int s = KNOT_ANSWER; s <= KNOT_ADDITIONAL; s++) {
		knot_pktsection_t *sec = &pkt->sections[s];
		if (s > cut_sec) {
			sec->pos = 0;
			sec->count = 0;
		} else if (s == cut_sec) {
			sec->count = cut - sec->pos;
		}
		uint16_t records = 0;
		for (uint16_t i = 0; i < sec->count; i++) {
			records += pkt->rr[sec->pos + i].rrs.count;
		}
		switch (s) {
		case KNOT_ANSWER:     knot_wire_set_ancount(pkt->wire, records); break;
		case KNOT_AUTHORITY:  knot_wire_set_nscount(pkt->wire, records); break;
		case KNOT_ADDITIONAL: knot_wire_set_arcount(pkt->wire, records); break;
		}
	}

	if (pkt->opt_rr != NULL && pkt->opt_rr >= pkt->rr + cut) {
		pkt->opt_rr = NULL;
	}
	pkt->rrset_count = cut;
	pkt->current = (knot_section_t)cut_sec;

	/* The question's name is flat and was checked when it was parsed or
	 * written. */
	uint16_t labels = 0;
	for (const uint8_t *l = pkt->wire + KNOT_WIRE_HEADER_SIZE; *l != 0; l += 1 + *l) {
		labels++;
	}
	pkt->compr.suffix.pos = KNOT_WIRE_HEADER_SIZE;
	pkt->compr.suffix.labels = labels;
}

/* Fail closed: drop every RRset from entry \a idx on (I5, I7). */
static void drop_from(knot_pkt_t *pkt, uint16_t idx, int sec)
{
	for (uint16_t i = idx; i < pkt->rrset_count; i++) {
		if (pkt->rr_info[i].flags & KNOT_PF_FREE) {
			knot_rrset_clear(&pkt->rr[i], &pkt->mm);
		}
	}
	cut_packet(pkt, idx, sec);
}

/*
 * Compression hint for an owner written again. If the original owner was a
 * pointer to a name before the cut, the same pointer reproduces the original
 * wire exactly: that is how Knot writes the QNAME's spelling (0x20) and how it
 * presents a wildcard RRset (stored with owner "*.x") as the QNAME. Otherwise
 * an owner equal to the QNAME points to the question.
 */
static uint16_t owner_hint(const knot_pkt_t *pkt, const knot_dname_t *owner,
                           uint16_t orig_ptr, size_t cut_pos)
{
	if (orig_ptr >= KNOT_WIRE_HEADER_SIZE && orig_ptr < cut_pos) {
		return orig_ptr;
	}
	const knot_dname_t *qname = knot_pkt_qname(pkt);
	if (qname != NULL && knot_dname_is_case_equal(owner, qname)) {
		return KNOT_COMPR_HINT_QNAME;
	}
	return KNOT_COMPR_HINT_NONE;
}

/*
 * The same for tail entry \a i of a rebuild (I8): an owner that pointed to
 * where an earlier tail entry's owner was, in the original wire, points to
 * where that entry's owner is now. Two entries share an owner position
 * after the cut only that way (knotd writes an RRSIG with its RRset's).
 */
static uint16_t tail_owner_hint(const knot_pkt_t *pkt, const saved_t *saved,
                                uint16_t i, size_t cut_pos)
{
	const saved_t *s = &saved[i];
	if (s->owner_ptr >= cut_pos) {
		for (uint16_t j = 0; j < i; j++) {
			if (saved[j].owner_ptr == s->owner_ptr && saved[j].written != NOT_WRITTEN) {
				return pkt->rr_info[saved[j].written].compress_ptr[KNOT_COMPR_HINT_OWNER];
			}
		}
	}
	return owner_hint(pkt, s->rr.owner, s->owner_ptr, cut_pos);
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
			res->nullmx = sat_add(res->nullmx, 1);
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
		if (j == lead || (!(act[j] & ACT_SEEN) && is_mx_candidate(ctx, zone_size, rr) &&
		                  knot_dname_is_case_equal(rr->owner, owner_rr->owner))) {
			act[j] = ACT_SEEN;
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
		if (act[j] != ACT_SEEN || rr->type != KNOT_RRTYPE_MX ||
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
			act[j] = ACT_SEEN | ((j == lead && sec == KNOT_ANSWER) ?
			                     ACT_REPLACE : ACT_DROP);
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
		if (rr->type != KNOT_RRTYPE_MX || ACT(act[i]) == ACT_KEEP) {
			continue;
		}
		const knot_rdata_t *rd = rr->rrs.rdata;
		for (uint16_t k = 0; k < rr->rrs.count; k++, rd = rd_next(rd)) {
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
		if (rr->type != KNOT_RRTYPE_MX || ACT(act[i]) == ACT_KEEP) {
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
 * exchangers; returns true if a TSIG would have to be rewritten. */
static bool mark_dependents(knot_pkt_t *pkt, const mxf_ctx_t *ctx, uint8_t *act,
                            mxf_result_t *res)
{
	bool tsig = false;
	for (uint16_t i = 0; i < pkt->rrset_count; i++) {
		const knot_rrset_t *rr = &pkt->rr[i];
		if (ACT(act[i]) != ACT_KEEP) {
			continue;
		}
		if (rr->type == KNOT_RRTYPE_TSIG) {
			tsig = true;
			continue;
		}
		if (rrsig_covers(rr, KNOT_RRTYPE_MX) && covers_removed_mx(pkt, act, i)) {
			act[i] = ACT_DROP;
			continue;
		}
		if (section_of(pkt, i) != KNOT_ADDITIONAL) {
			continue;
		}
		bool address = rr->type == KNOT_RRTYPE_A || rr->type == KNOT_RRTYPE_AAAA ||
		               rrsig_covers(rr, KNOT_RRTYPE_A) ||
		               rrsig_covers(rr, KNOT_RRTYPE_AAAA);
		if (address && is_blocked_exchange(pkt, ctx, act, rr->owner)) {
			act[i] = ACT_DROP;
			if (rr->type != KNOT_RRTYPE_RRSIG) {
				res->glue = sat_add(res->glue, rr->rrs.count);
			}
		}
	}
	return tsig;
}

/*** Rebuild. ***/

/* Writes \a s->with in place of the saved entry \a s, then its signatures. */
static int put_subst(knot_pkt_t *pkt, saved_t *s, uint16_t hint)
{
	mxf_subst_t *w = s->with;
	uint16_t flags = s->flags & ~(KNOT_PF_FREE | KNOT_PF_CHECKDUP);
	free_saved(pkt, s); /* The original goes in any case. */
	int ret = knot_pkt_put(pkt, hint, &w->rr, flags | (w->owned ? KNOT_PF_FREE : 0));
	if (ret != KNOT_EOK) {
		return ret;
	}
	w->owned = false; /* The packet frees it now. */
	if (w->sig != NULL && !knot_rrset_empty(w->sig)) {
		uint16_t sig_hint = pkt->rr_info[pkt->rrset_count - 1].compress_ptr[KNOT_COMPR_HINT_OWNER];
		ret = knot_pkt_put(pkt, sig_hint, w->sig, flags);
	}
	return ret;
}

static int rebuild(knot_pkt_t *pkt, const mxf_ctx_t *ctx, const uint8_t *act,
                   bool drop_tsig, mxf_subst_t *subst, uint16_t subst_count)
{
	uint16_t count = pkt->rrset_count;
	uint16_t cut = 0;
	while (cut < count && ACT(act[cut]) == ACT_KEEP &&
	       !(drop_tsig && pkt->rr[cut].type == KNOT_RRTYPE_TSIG)) {
		cut++;
	}
	if (cut == count) {
		return KNOT_EOK;
	}
	int cut_sec = section_of(pkt, cut);
	if (cut_sec < 0) {
		return KNOT_EMALF;
	}

	/* Save the tail: the rr[] slots are overwritten as we write again. */
	uint16_t tail = count - cut;
	saved_t stack[STACK_ENTRIES];
	saved_t *saved = stack;
	if (tail > STACK_ENTRIES) {
		saved = pkt_alloc(pkt, tail * sizeof(*saved));
		if (saved == NULL) {
			drop_from(pkt, cut, cut_sec); /* Cannot rebuild: I7. */
			return KNOT_ENOMEM;
		}
	}
	for (uint16_t i = 0; i < tail; i++) {
		uint16_t idx = cut + i;
		saved[i].rr = pkt->rr[idx];
		saved[i].flags = pkt->rr_info[idx].flags;
		saved[i].owner_ptr = pkt->rr_info[idx].compress_ptr[KNOT_COMPR_HINT_OWNER];
		saved[i].act = ACT(act[idx]);
		saved[i].written = NOT_WRITTEN;
		saved[i].with = NULL;
		for (uint16_t k = 0; saved[i].act == ACT_SUBST && k < subst_count; k++) {
			if (subst[k].idx == idx) {
				saved[i].with = &subst[k];
			}
		}
		if ((drop_tsig && saved[i].rr.type == KNOT_RRTYPE_TSIG) ||
		    (saved[i].act == ACT_SUBST && saved[i].with == NULL)) {
			saved[i].act = ACT_DROP;
		}
		int sec = section_of(pkt, idx);
		saved[i].section = (uint8_t)(sec < 0 ? KNOT_ADDITIONAL : sec);
	}

	knot_section_t orig_current = pkt->current;
	cut_packet(pkt, cut, cut_sec);
	const size_t cut_pos = pkt->size;

	int ret = KNOT_EOK;
	uint16_t i;
	for (i = 0; i < tail; i++) {
		saved_t *s = &saved[i];
		if (s->act == ACT_DROP) {
			free_saved(pkt, s);
			continue;
		}
		/* Begin every section in order, as knotd does (I3). */
		while (ret == KNOT_EOK && s->section > pkt->current) {
			ret = knot_pkt_begin(pkt, (knot_section_t)(pkt->current + 1));
		}
		if (ret != KNOT_EOK) {
			break;
		}
		uint16_t hint = tail_owner_hint(pkt, saved, i, cut_pos);
		uint16_t at = pkt->rrset_count;
		if (s->act == ACT_REPLACE) {
			ret = put_replacement(pkt, ctx->policy, s, hint);
			s->flags &= ~KNOT_PF_FREE; /* Handed over, or freed on error. */
			if (ret == KNOT_EOK) {
				ret = mxf_put_rrsig(pkt, ctx, s->flags);
			}
		} else if (s->act == ACT_SUBST) {
			ret = put_subst(pkt, s, hint);
		} else {
			ret = knot_pkt_put(pkt, hint, &s->rr, s->flags & ~KNOT_PF_CHECKDUP);
			if (ret == KNOT_EOK) {
				s->flags &= ~KNOT_PF_FREE; /* The packet owns it again. */
			}
		}
		if (pkt->rrset_count > at) {
			s->written = at;
		}
		if (ret != KNOT_EOK) {
			break;
		}
	}

	/* I5, I7: after a failure nothing more is written; free the rest. */
	for (; i < tail; i++) {
		free_saved(pkt, &saved[i]);
	}

	/* The caller may go on adding to the section it was in. */
	while (ret == KNOT_EOK && orig_current > pkt->current) {
		ret = knot_pkt_begin(pkt, (knot_section_t)(pkt->current + 1));
	}

	if (saved != stack) {
		pkt_free(pkt, saved);
	}
	return ret;
}

/* Whether an entry before \a idx may depend on an MX RRset: an RRSIG over MX
 * (knotd writes it after the RRset, but the engine takes any order) or a
 * TSIG. */
static bool dependents_before(const knot_pkt_t *pkt, uint16_t idx)
{
	for (uint16_t i = 0; i < idx; i++) {
		const knot_rrset_t *rr = &pkt->rr[i];
		if (rr->type == KNOT_RRTYPE_TSIG || rrsig_covers(rr, KNOT_RRTYPE_MX)) {
			return true;
		}
	}
	return false;
}

/* Whether entry \a sig is the RRSIG knotd writes right after the answer's
 * MX RRset \a mx (DO queries): over MX, at its owner or written with its
 * owner pointer (covers_removed_mx()). */
static bool is_rrsig_of(const knot_pkt_t *pkt, uint16_t mx, uint16_t sig)
{
	const knot_rrset_t *rr = &pkt->rr[sig];
	uint16_t ptr = pkt->rr_info[sig].compress_ptr[KNOT_COMPR_HINT_OWNER];
	return rrsig_covers(rr, KNOT_RRTYPE_MX) &&
	       (knot_dname_is_case_equal(rr->owner, pkt->rr[mx].owner) ||
	        (ptr >= KNOT_WIRE_HEADER_SIZE &&
	         ptr == pkt->rr_info[mx].compress_ptr[KNOT_COMPR_HINT_OWNER]));
}

/*
 * The usual packet at the ANSWER stage (an MX query below the apex): the MX
 * RRset at \a idx is the last thing written, or followed only by its RRSIG
 * (DO), in the answer section being written, and nothing before it depends
 * on MX. Nothing else after it can depend on it (no additional record or
 * TSIG yet), so the general path's bookkeeping reduces to: classify,
 * report, cut at the RRset (its RRSIG goes with it), write the set and its
 * RRSIG. The outcome is the general path's (a unit test compares both on
 * every packet shape it builds; the fuzzer checks both against its model).
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

	saved_t orig = {
		.rr = *rr,
		.flags = info->flags,
		.owner_ptr = info->compress_ptr[KNOT_COMPR_HINT_OWNER],
		.act = ACT_REPLACE,
		.section = KNOT_ANSWER,
	};
	saved_t sig = { .flags = 0 };
	if (idx + 1 < pkt->rrset_count) {
		sig.rr = pkt->rr[idx + 1];
		sig.flags = pkt->rr_info[idx + 1].flags;
	}
	cut_packet(pkt, idx, KNOT_ANSWER);
	uint16_t hint = owner_hint(pkt, orig.rr.owner, orig.owner_ptr, pkt->size);
	int ret = put_replacement(pkt, ctx->policy, &orig, hint);
	if (ret == KNOT_EOK) {
		ret = mxf_put_rrsig(pkt, ctx, orig.flags);
	}
	free_saved(pkt, &sig);
	return ret;
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
				drop_from(pkt, pkt->sections[KNOT_ANSWER].pos, KNOT_ANSWER);
			}
			return KNOT_ENOMEM;
		}
	}
	memset(act, 0, count);

	bool change = false;
	for (uint16_t i = first; i < count; i++) {
		if ((act[i] & ACT_SEEN) ||
		    (i != first && !is_mx_candidate(ctx, zone_size, &pkt->rr[i]))) {
			continue;
		}
		int sec = section_of(pkt, i);
		if (sec < 0) {
			continue;
		}
		change |= mark_group(pkt, ctx, zone_size, act, i, sec, res);
	}

	int ret = KNOT_EOK;
	if (change) {
		bool tsig = mark_dependents(pkt, ctx, act, res);
		ret = rebuild(pkt, ctx, act, tsig, NULL, 0);
		if (ret == KNOT_EOK && tsig) {
			ret = KNOT_EDENIED; /* The TSIG no longer signs this packet. */
		}
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
	size_t zone_size = mxf_flat_name_size(ctx->zone);
	while (first < count && !is_mx_candidate(ctx, zone_size, &pkt->rr[first])) {
		first++;
	}
	if (first == count) {
		return KNOT_EOK;
	}

	if ((first + 1 == count || (first + 2 == count && is_rrsig_of(pkt, first, first + 1))) &&
	    pkt->current == KNOT_ANSWER && section_of(pkt, count - 1) == KNOT_ANSWER &&
	    !ctx->general_only && !dependents_before(pkt, first)) {
		return process_last(pkt, ctx, first, res);
	}
	return process_all(pkt, ctx, zone_size, first, res);
}

/*** In place (P1-P3). ***/

/* Size of the flat name at \a d within \a len bytes, or 0. */
static size_t flat_name_within(const uint8_t *d, size_t len)
{
	size_t pos = 0;
	while (pos < len && d[pos] != 0) {
		if (d[pos] > KNOT_DNAME_MAXLABELLEN) {
			return 0;
		}
		pos += 1 + d[pos];
	}
	return (pos < len && pos + 1 <= KNOT_DNAME_MAXLEN) ? pos + 1 : 0;
}

/* P2: the names in two rdata of \a type of equal length are the same bytes. */
static bool names_equal(uint16_t type, const knot_rdata_t *a, const knot_rdata_t *b)
{
	const knot_rdata_descriptor_t *desc = knot_get_rdata_descriptor(type);
	size_t pos = 0;
	for (int i = 0; desc->block_types[i] != KNOT_RDATA_WF_END; i++) {
		int block = desc->block_types[i];
		if (block > 0) {
			pos += block;
		} else if (block == KNOT_RDATA_WF_REMAINDER) {
			return true;
		} else if (block == KNOT_RDATA_WF_FIXED_DNAME ||
		           block == KNOT_RDATA_WF_COMPRESSIBLE_DNAME ||
		           block == KNOT_RDATA_WF_DECOMPRESSIBLE_DNAME) {
			size_t n = (pos < a->len) ? flat_name_within(a->data + pos, a->len - pos) : 0;
			if (n == 0 || memcmp(a->data + pos, b->data + pos, n) != 0) {
				return false;
			}
			pos += n;
		} else {
			return false; /* NAPTR: not worth it. */
		}
		if (pos > a->len) {
			return false;
		}
	}
	return true;
}

/* Position after the (possibly compressed) name at \a pos, or 0. */
static size_t wire_skip_name(const knot_pkt_t *pkt, size_t pos)
{
	while (pos < pkt->size) {
		uint8_t lab = pkt->wire[pos];
		if ((lab & 0xC0) == 0xC0) {
			return (pos + 2 <= pkt->size) ? pos + 2 : 0;
		} else if (lab & 0xC0) {
			return 0;
		} else if (lab == 0) {
			return pos + 1;
		}
		pos += 1 + lab;
	}
	return 0;
}

/* The TTL knot_pkt_put() writes for record \a rd of \a rr. */
static uint32_t wire_ttl(const knot_rrset_t *rr, const knot_rdata_t *rd, uint16_t flags)
{
	if ((flags & KNOT_PF_ORIGTTL) && rr->type == KNOT_RRTYPE_RRSIG) {
		return knot_rrsig_original_ttl(rd);
	} else if ((flags & KNOT_PF_SOAMINTTL) && rr->type == KNOT_RRTYPE_SOA) {
		return knot_soa_minimum(rd);
	}
	return rr->ttl;
}

/* P1, P2 for one replacement: where each record's TTL field starts, or
 * false. */
static bool fits_in_place(const knot_pkt_t *pkt, const mxf_subst_t *w, size_t *ttl_pos)
{
	const knot_rrset_t *orig = &pkt->rr[w->idx];
	const knot_rrset_t *rep = &w->rr;
	if (w->sig != NULL || rep->type != orig->type || rep->rclass != orig->rclass ||
	    rep->rrs.count != orig->rrs.count || rep->rrs.count == 0 ||
	    rep->rrs.count > MXF_INPLACE_RECORDS || !mxf_dname_equal(rep->owner, orig->owner)) {
		return false;
	}
	size_t pos = pkt->rr_info[w->idx].pos;
	const knot_rdata_t *a = orig->rrs.rdata, *b = rep->rrs.rdata;
	for (uint16_t k = 0; k < orig->rrs.count; k++, a = rd_next(a), b = rd_next(b)) {
		pos = wire_skip_name(pkt, pos);
		if (pos == 0 || pos + 10 > pkt->size) {
			return false;
		}
		ttl_pos[k] = pos + 4;
		uint16_t rdlen = knot_wire_read_u16(pkt->wire + pos + 8);
		pos += 10;
		if (rdlen != a->len || a->len != b->len || pos + rdlen > pkt->size ||
		    knot_wire_read_u16(pkt->wire + pos - 10) != orig->type ||
		    memcmp(pkt->wire + pos, a->data, rdlen) != 0 ||
		    !names_equal(orig->type, a, b)) {
			return false;
		}
		pos += rdlen;
	}
	return true;
}

/* P3: the wire and rr[] take the replacement. */
static void put_in_place(knot_pkt_t *pkt, mxf_subst_t *w, const size_t *ttl_pos)
{
	knot_rrinfo_t *info = &pkt->rr_info[w->idx];
	const knot_rdata_t *b = w->rr.rrs.rdata;
	for (uint16_t k = 0; k < w->rr.rrs.count; k++, b = rd_next(b)) {
		knot_wire_write_u32(pkt->wire + ttl_pos[k], wire_ttl(&w->rr, b, info->flags));
		memcpy(pkt->wire + ttl_pos[k] + 6, b->data, b->len);
	}
	if (info->flags & KNOT_PF_FREE) {
		knot_rrset_clear(&pkt->rr[w->idx], &pkt->mm);
	}
	pkt->rr[w->idx] = w->rr;
	info->flags = (info->flags & ~KNOT_PF_FREE) | (w->owned ? KNOT_PF_FREE : 0);
	w->owned = false;
}

/* Frees the substitutes still owned by the caller's array (I5). */
static void subst_release(knot_pkt_t *pkt, mxf_subst_t *subst, uint16_t count)
{
	for (uint16_t k = 0; k < count; k++) {
		if (subst[k].owned) {
			knot_rrset_clear(&subst[k].rr, &pkt->mm);
			subst[k].owned = false;
		}
	}
}

int mxf_pkt_replace(knot_pkt_t *pkt, mxf_subst_t *subst, uint16_t count,
                    bool rebuild_only)
{
	if (pkt == NULL || (subst == NULL && count > 0)) {
		return KNOT_EINVAL;
	}
	uint16_t first = UINT16_MAX;
	for (uint16_t k = 0; k < count; k++) {
		if (subst[k].idx >= pkt->rrset_count) {
			subst_release(pkt, subst, count);
			return KNOT_EINVAL;
		}
		first = (subst[k].idx < first) ? subst[k].idx : first;
	}
	/* A TSIG after the first change would no longer sign the packet. */
	for (uint16_t i = first; i < pkt->rrset_count; i++) {
		if (pkt->rr[i].type == KNOT_RRTYPE_TSIG) {
			subst_release(pkt, subst, count);
			return KNOT_EDENIED;
		}
	}
	if (count == 0) {
		return KNOT_EOK;
	}

	/* Same sizes everywhere: patch the wire, no rebuild (P1-P3). */
	size_t ttl_pos[MXF_INPLACE_MAX][MXF_INPLACE_RECORDS];
	bool in_place = !rebuild_only && count <= MXF_INPLACE_MAX;
	for (uint16_t k = 0; in_place && k < count; k++) {
		in_place = !knot_rrset_empty(&subst[k].rr) &&
		           fits_in_place(pkt, &subst[k], ttl_pos[k]);
		for (uint16_t j = 0; in_place && j < k; j++) {
			in_place = subst[j].idx != subst[k].idx;
		}
	}
	if (in_place) {
		for (uint16_t k = 0; k < count; k++) {
			put_in_place(pkt, &subst[k], ttl_pos[k]);
		}
		return KNOT_EOK;
	}

	uint8_t act_stack[STACK_ENTRIES];
	uint8_t *act = act_stack;
	if (pkt->rrset_count > STACK_ENTRIES) {
		act = pkt_alloc(pkt, pkt->rrset_count);
		if (act == NULL) {
			subst_release(pkt, subst, count);
			return KNOT_ENOMEM;
		}
	}
	memset(act, ACT_KEEP, pkt->rrset_count);
	for (uint16_t k = 0; k < count; k++) {
		act[subst[k].idx] = knot_rrset_empty(&subst[k].rr) ? ACT_DROP : ACT_SUBST;
	}

	int ret = rebuild(pkt, NULL, act, false, subst, count);
	subst_release(pkt, subst, count);
	if (act != act_stack) {
		pkt_free(pkt, act);
	}
	return ret;
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
		    mxf_is_own_set(ctx->policy, rr) || rrs_is_policy(ctx->policy, &rr->rrs) ||
		    !in_zone(rr->owner, ctx->zone, mxf_flat_name_size(ctx->zone)) ||
		    !in_scope(ctx, rr->owner)) {
			continue;
		}
		const knot_rdata_t *rd = rr->rrs.rdata;
		for (uint16_t k = 0; k < rr->rrs.count; k++, rd = rd_next(rd)) {
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

bool mxf_pkt_has_leak(const knot_pkt_t *pkt, const mxf_ctx_t *ctx)
{
	return mxf_pkt_leak(pkt, ctx) >= 0;
}
