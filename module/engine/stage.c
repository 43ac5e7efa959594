/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*
 * What the module does at each stage of Knot's query processing: every
 * decision about a query, from the query, the zone data the glue reads for
 * it and the zone's policy. The answers are written by writer.c (through
 * rewrite.c and denial.c where Knot wrote first), the lines by the audit
 * limiter (audit.c) and zone.c.
 *
 *   BEGIN      outgoing AXFR/IXFR with "transfer: refuse": REFUSED
 *   PREANSWER  an MX query at the apex (any plain authoritative name where
 *              the server lets modules read below the apex, Knot 3.4+):
 *              the filtering set before Knot builds the zone's legacy
 *              answer (cheapest, and it cannot leak); what such an answer
 *              may hold is written down above serve_compliant()
 *   ANSWER     any other MX in the answer: mxf_process() rewrites it; an
 *              MX query reaching the apex without MX through a CNAME gets
 *              the synthesized set
 *   AUTHORITY  signed zones synthesizing the apex MX: the apex's NSEC/NSEC3
 *              lists MX in every DNSSEC answer (denial.c)
 *   END        last line of defence: a response that still holds a legacy
 *              MX or an unedited apex denial record (Knot skips every later
 *              hook once it truncates) becomes an empty TC answer or
 *              SERVFAIL; served transfers are counted and logged
 */

#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include "denial.h"
#include "rewrite.h"
#include "wire.h"
#include "zone.h"

/*** Counters. ***/

static const char *const risk_parts[] = { "bypass", "fallback" };
static const char *const transfer_parts[] = { "allowed", "refused" };

const mxf_counter_t mxf_counters[MXF_CTR_COUNT] = {
	[MXF_CTR_ENFORCED]    = { "enforced",    1, NULL },
	[MXF_CTR_SYNTHESIZED] = { "synthesized", 1, NULL },
	[MXF_CTR_BLOCKED]     = { "blocked",     2, risk_parts },
	[MXF_CTR_AUDITED]     = { "audited",     1, NULL },
	[MXF_CTR_COMPLIANT]   = { "compliant",   1, NULL },
	[MXF_CTR_FAILED]      = { "failed",      1, NULL },
	[MXF_CTR_TRANSFERS]   = { "transfers",   2, transfer_parts },
};

const uint8_t mxf_val_counter[MXF_VAL_COUNT] = {
	[MXF_VAL_ENFORCED]    = MXF_CTR_ENFORCED,
	[MXF_VAL_SYNTHESIZED] = MXF_CTR_SYNTHESIZED,
	[MXF_VAL_BYPASS]      = MXF_CTR_BLOCKED,
	[MXF_VAL_FALLBACK]    = MXF_CTR_BLOCKED,
	[MXF_VAL_AUDITED]     = MXF_CTR_AUDITED,
	[MXF_VAL_COMPLIANT]   = MXF_CTR_COMPLIANT,
	[MXF_VAL_FAILED]      = MXF_CTR_FAILED,
	[MXF_VAL_XFR_ALLOWED] = MXF_CTR_TRANSFERS,
	[MXF_VAL_XFR_REFUSED] = MXF_CTR_TRANSFERS,
};

const uint8_t mxf_val_part[MXF_VAL_COUNT] = {
	[MXF_VAL_BYPASS]      = MXF_RISK_BYPASS,
	[MXF_VAL_FALLBACK]    = MXF_RISK_FALLBACK,
	[MXF_VAL_XFR_REFUSED] = 1,
};

/*** One stage call. ***/

/* What the callbacks of one stage call need. */
typedef struct {
	mxf_zone_t *zone;
	const mxf_query_t *q;
	mxf_step_t step;            /* What the stage says. */
	knot_rrset_t apex_rrsig;    /* Read once for a DO query to a signed zone. */
	knot_rrset_t dnskey;        /* Read only when the signer needs the keys. */
	mxf_audit_t audit;          /* Which records get a log line. */
	const knot_dname_t *served; /* First enforced owner (error lines). */
	knot_dname_storage_t wild;  /* Wildcard owner of an expanded RRset. */
	knot_dname_storage_t served_wild;
} call_t;

static void call_init(call_t *c, mxf_zone_t *zone, const mxf_query_t *q)
{
	c->zone = zone;
	c->q = q;
	c->step = MXF_PASS;
	c->served = NULL;
}

static void count(const call_t *c, unsigned val, uint32_t n)
{
	if (n > 0 && c->zone->counters) {
		c->q->server->count(c->q, val, n);
	}
}

static void count_result(call_t *c, const mxf_result_t *res)
{
	if (!c->zone->counters) {
		return;
	}
	count(c, MXF_VAL_ENFORCED, res->enforced);
	count(c, MXF_VAL_BYPASS, res->blocked[MXF_RISK_BYPASS]);
	count(c, MXF_VAL_FALLBACK, res->blocked[MXF_RISK_FALLBACK]);
	count(c, MXF_VAL_AUDITED, res->served);
	count(c, MXF_VAL_COMPLIANT, res->compliant);
}

static bool udp(const call_t *c)
{
	return c->q->udp;
}

/* knot_pkt_put() flags of what the engine writes: over TCP the answer must
 * fit, or it fails closed. */
static uint16_t put_flags(const call_t *c)
{
	return udp(c) ? KNOT_PF_NULL : KNOT_PF_NOTRUNC;
}

/* Fail closed: SERVFAIL, counted and logged (rate-limited per zone and
 * served owner). */
static void fail_closed(call_t *c, const knot_dname_t *owner, int ret)
{
	c->step = MXF_SERVFAIL;
	count(c, MXF_VAL_FAILED, 1);
	mxf_line_t line;
	if (mxf_audit_error(&c->zone->audit, owner, ret, 0, &line)) {
		mxf_zone_line(c->zone, c->q->server->log, c->q->log_data, &line);
	}
}

/* An enforced answer that does not fit: TC over UDP (the client retries
 * over TCP), closed otherwise. */
static void put_failed(call_t *c, const knot_dname_t *owner, int ret)
{
	if (ret == KNOT_ESPACE && udp(c)) {
		c->step = MXF_TRUNC;
	} else {
		fail_closed(c, owner, ret);
	}
}

/*** Audit trail. ***/

/*
 * The owner a wildcard expanded for a CNAME target (Knot gives that RRset a
 * copy of the name asked) is logged and keyed by: the wildcard's own name.
 * Where the reader can look below the apex (Knot 3.4+) it is found: the
 * nearest ancestor "*.A" holding this very MX RRset. Knot 3.2 gives modules
 * no look below the apex, so there "*.ZONE." stands for every wildcard of
 * the zone. (A wildcard answered directly keeps its owner "*.A" in the
 * packet.)
 */
static const knot_dname_t *wildcard_owner(const call_t *c, const knot_rrset_t *rr,
                                          uint8_t *buf)
{
	const knot_dname_t *zone = c->zone->name;
	size_t zone_size = c->zone->zone_size;
	const mxf_server_t *read = c->q->server;
	const knot_dname_t *n = rr->owner;
	for (int depth = 0; read->rrset != NULL && n != NULL && *n != 0 &&
	     depth < KNOT_DNAME_MAXLABELS; depth++) {
		n = mxf_dname_next_label(n);
		size_t size = knot_dname_size(n);
		if (size < zone_size || size + 2 > KNOT_DNAME_MAXLEN) {
			break;
		}
		buf[0] = 1;
		buf[1] = '*';
		memcpy(buf + 2, n, size);
		knot_rrset_t wild;
		if (read->rrset(c->q->data, buf, KNOT_RRTYPE_MX, &wild) == KNOT_EOK &&
		    !knot_rrset_empty(&wild) && knot_rdataset_eq(&wild.rrs, &rr->rrs)) {
			return buf;
		}
	}
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
static const knot_dname_t *expanded_owner(call_t *c, const knot_rrset_t *rr,
                                          mxf_action_t action)
{
	const knot_dname_t *owner = wildcard_owner(c, rr, c->wild);
	if (c->served == NULL && action == MXF_ACTION_BLOCKED) {
		/* Kept for a failure line (the packet's copy may go). */
		memcpy(c->served_wild, owner, knot_dname_size(owner));
		c->served = c->served_wild;
	}
	return owner;
}

static bool on_legacy_set(const knot_rrset_t *rr, bool expanded, mxf_action_t action,
                          void *data)
{
	call_t *c = data;
	const knot_dname_t *owner = rr->owner;
	if (__builtin_expect(expanded, 0)) {
		owner = expanded_owner(c, rr, action);
	} else if (c->served == NULL && action == MXF_ACTION_BLOCKED) {
		c->served = owner; /* Zone data: it stays. */
	}
	return mxf_audit_set(&c->audit, rr, owner, action);
}

static void on_report(call_t *c, const mxf_legacy_t *rec, mxf_line_kind_t kind)
{
	mxf_line_t line;
	if (!mxf_audit_record(&c->audit, rec, kind, &line)) {
		return;
	}
	line.client = c->q->server->client(c->q->data);
	mxf_zone_line(c->zone, c->q->server->log, c->q->log_data, &line);
}

static void on_legacy(const mxf_legacy_t *rec, void *data)
{
	on_report(data, rec, MXF_LINE_LEGACY);
}

static void on_missing(const mxf_legacy_t *rec, void *data)
{
	on_report(data, rec, MXF_LINE_MISSING);
}

/* End of a stage's reports: the zone's held lines due, and at the limiter's
 * bound one notice per interval. */
static void audit_end(call_t *c)
{
	mxf_audit_done(&c->audit);
	if (mxf_audit_due(&c->zone->audit)) {
		mxf_zone_flush(c->zone, c->q->server->log, c->q->log_data, c->audit.now);
	}
	mxf_limiter_stats_t st;
	if (c->audit.full && mxf_audit_full(&c->audit, &st)) {
		mxf_zone_log(c->q->server->log, c->q->log_data, LOG_WARNING, "audit limiter full, "
		             "entries %zu, memory %zu, limit %zu",
		             st.entries, st.bytes, st.max_bytes);
	}
}

/*** Signing. ***/

/* One debug line per RRset signed anew (a signature cache miss). */
__attribute__((noinline, cold))
static void log_signed(const call_t *c, const knot_rrset_t *set, uint32_t signatures)
{
	char owner[KNOT_DNAME_TXT_MAXLEN + 1];
	char type[16];
	if (knot_dname_to_str(owner, set->owner, sizeof(owner)) == NULL) {
		strcpy(owner, "?");
	}
	if (knot_rrtype_to_string(set->type, type, sizeof(type)) < 0) {
		strcpy(type, "?");
	}
	mxf_zone_log(c->q->server->log, c->q->log_data, LOG_DEBUG, "signed RRset, owner %s, "
	             "type %s, ttl %u, signatures %u", owner, type, set->ttl, signatures);
}

/* The apex DNSKEY set, for a signer whose zone's keys changed. */
static const knot_rdataset_t *get_dnskey(void *data)
{
	call_t *c = data;
	c->dnskey = c->q->server->apex(c->q->data, KNOT_RRTYPE_DNSKEY);
	return &c->dnskey.rrs;
}

/* RRSIGs for an enforced RRset, shaped like the zone's own signatures. */
static int sign_set(void *data, const knot_rrset_t *set, knot_rrset_t *rrsig)
{
	call_t *c = data;
	if (c->zone->signer == NULL) {
		return KNOT_DNSSEC_ENOKEY; /* Signed zone we cannot sign for. */
	}
	mxf_zone_keys_t zk = {
		.rrsig = &c->apex_rrsig.rrs,
		.get_dnskey = get_dnskey,
		.get_data = c,
	};
	mxf_sign_info_t info;
	int ret = mxf_signer_sign_info(c->zone->signer, set, &zk, rrsig, &info);
	if (__builtin_expect(info.signatures > 0, 0)) {
		log_signed(c, set, info.signatures);
	}
	return ret;
}

/* The engine context of a call that classifies, reports and writes. */
static mxf_ctx_t ctx_init(call_t *c)
{
	const mxf_policy_t *policy = c->zone->policy;
	mxf_audit_init(&c->audit, &c->zone->audit, policy->log_interval);
	mxf_ctx_t ctx = {
		.policy = policy,
		.zone = c->zone->name,
		.zone_size = c->zone->zone_size,
		.on_legacy = on_legacy,
		.on_legacy_set = on_legacy_set,
		.on_missing = on_missing,
		.cb_data = c,
	};
	/* A DO query to a signed zone gets signed enforced answers, or none. */
	if (knot_pkt_has_dnssec(c->q->query)) {
		c->apex_rrsig = c->q->server->apex(c->q->data, KNOT_RRTYPE_RRSIG);
		if (mxf_zone_is_signed(&c->apex_rrsig.rrs)) {
			ctx.sign = sign_set;
			ctx.sign_data = c;
		}
	}
	return ctx;
}

/* The filtering set at \a owner and, for a DO query to a signed zone, its
 * RRSIGs: an answer of the engine's own. */
static int put_set(call_t *c, const mxf_ctx_t *ctx, const knot_dname_t *owner,
                   uint32_t ttl, uint16_t hint)
{
	int ret = mxf_write_set(c->q->pkt, ctx->policy, owner, ttl, hint, put_flags(c));
	if (ret == KNOT_EOK) {
		mxf_set_writer_t w = {
			.policy = ctx->policy, .sign = ctx->sign, .sign_data = ctx->sign_data,
		};
		ret = mxf_write_rrsig(c->q->pkt, &w, put_flags(c));
	}
	return ret;
}

/* "missing MX added|audit" lines for every filtering exchange a synthesized
 * apex answer holds (or, in audit mode, would hold). */
static void report_synthesized(const mxf_ctx_t *ctx, mxf_action_t action, mxf_result_t *res)
{
	knot_rrset_t none;
	knot_rrset_init(&none, (knot_dname_t *)ctx->zone, KNOT_RRTYPE_MX, KNOT_CLASS_IN, 0);
	mxf_report(ctx, &none, false, action, res);
}

/*** BEGIN. ***/

static bool is_transfer(const mxf_query_t *q)
{
	return q->type == MXF_QUERY_AXFR || q->type == MXF_QUERY_IXFR;
}

static void log_transfer(const call_t *c, const char *what)
{
	char addr[INET6_ADDRSTRLEN];
	mxf_addr_str(c->q->server->client(c->q->data), addr, sizeof(addr));
	knot_rrset_t soa = c->q->server->apex(c->q->data, KNOT_RRTYPE_SOA);
	const char *type = (c->q->type == MXF_QUERY_AXFR) ? "AXFR" : "IXFR";
	if (knot_rrset_empty(&soa)) {
		mxf_zone_log(c->q->server->log, c->q->log_data, LOG_INFO, "outgoing transfer %s, "
		             "type %s, client %s", what, type, addr);
	} else {
		mxf_zone_log(c->q->server->log, c->q->log_data, LOG_INFO, "outgoing transfer %s, "
		             "type %s, client %s, serial %u", what, type, addr,
		             knot_soa_serial(soa.rrs.rdata));
	}
}

mxf_step_t mxf_begin(mxf_zone_t *zone, const mxf_query_t *q)
{
	call_t c;
	call_init(&c, zone, q);
	if (!is_transfer(q) || zone->policy->transfer != MXF_XFR_REFUSE) {
		return c.step;
	}
	log_transfer(&c, "refused");
	count(&c, MXF_VAL_XFR_REFUSED, 1);
	c.step = MXF_REFUSED;
	return c.step;
}

/*** PREANSWER. ***/

/*
 * The zone's MX RRset at the QNAME, when the engine can read it before Knot
 * writes its answer: the apex on every Knot series, and any authoritative
 * name where the reader can look below the apex (Knot 3.4+). Names that are
 * not plain authoritative data (wildcard matches, CNAMEs, names at or below
 * a zone cut or a DNAME) are left to Knot and the ANSWER stage.
 */
static bool early_rrset(const call_t *c, const knot_dname_t *qname, bool apex,
                        knot_rrset_t *out)
{
	const mxf_server_t *read = c->q->server;
	void *data = c->q->data;
	if (apex) {
		*out = read->apex(data, KNOT_RRTYPE_MX);
		return true;
	}
	if (read->rrset == NULL ||
	    read->rrset(data, qname, KNOT_RRTYPE_MX, out) != KNOT_EOK || knot_rrset_empty(out)) {
		return false;
	}
	const knot_dname_t *zone = c->zone->name;
	knot_rrset_t cut;
	for (const knot_dname_t *n = qname; !knot_dname_is_equal(n, zone);
	     n = mxf_dname_next_label(n)) {
		if ((read->rrset(data, n, KNOT_RRTYPE_NS, &cut) == KNOT_EOK &&
		     !knot_rrset_empty(&cut)) ||
		    (n != qname && read->rrset(data, n, KNOT_RRTYPE_DNAME, &cut) == KNOT_EOK &&
		     !knot_rrset_empty(&cut))) {
			return false;
		}
	}
	return true;
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
 *   only queued RRSIGs, so nothing; the ANSWER hooks (mxf_answer() finds
 *   the set or a compliant RRset and leaves it); solve_authority() does
 *   nothing for HIT; solve_authority_dnssec() walks the empty wildcard list
 *   (nsec_prove_wildcards); then solve_additional() (594 / 599 / 588) calls
 *   put_additional() (216 / 216 / 205) for every NS, MX, SRV, SVCB or HTTPS
 *   RRset in the packet. For an RRset whose additional pointer is set
 *   (rr->additional, 219 / 219 / 208), it calls
 *   glue_node(glue, qdata->extra->node) (249 / 249 / 238), and
 *   binode_node_as() (src/knot/zone/node.h, 175 / 177 / 166) reads
 *   ->flags of that NULL node: knotd dies with SIGSEGV (issue #14). The
 *   ADDITIONAL hooks, OPT, TSIG and the END hooks follow
 *   (process_query.c:process_query_out), none of them reading that state.
 *
 * So a HIT answer must
 *   - hold only RRsets whose additional pointer is NULL. RRsets the engine
 *     makes (knot_rrset_init) never have one; the zone's own RRsets, as
 *     knotd_qdata_zone_apex_rrset() and knotd_qdata_zone_rrset() return
 *     them to the glue's reader (node_rrset copies rr_data->additional),
 *     have one as soon as an exchange has an A or AAAA record in the zone.
 *     Such an RRset is left to Knot, which writes it and its glue itself;
 *   - set AA itself;
 *   - carry its own RRSIGs when the query has DO and the zone is signed
 *     (mxf_write_rrsig), or leave the answer to Knot (serve_compliant);
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
static bool preanswer_hit(call_t *c, const knot_dname_t *owner)
{
	const knot_pkt_t *pkt = c->q->pkt;
	for (uint16_t i = 0; i < pkt->rrset_count; i++) {
		if (__builtin_expect(pkt->rr[i].additional != NULL, 0)) {
			fail_closed(c, owner, KNOT_ERROR);
			return false;
		}
	}
	mxf_write_aa(c->q->pkt);
	c->step = MXF_HIT;
	return true;
}

/* The zone's own RRset at the QNAME, compliant: written from the policy's
 * wire image when that gives exactly what Knot would write (the same bytes,
 * no RRSIGs asked for, no answer rotation, no glue for Knot to add), which
 * is cheaper than Knot's own lookup and write; otherwise left to Knot.
 * Judged at ANSWER either way. */
static void serve_compliant(call_t *c, const knot_rrset_t *mx)
{
	if (mx->additional != NULL || c->zone->rotation || knot_pkt_has_dnssec(c->q->query)) {
		return;
	}
	if (mxf_write_verbatim(c->q->pkt, c->zone->policy, mx, KNOT_COMPR_HINT_QNAME,
	                       put_flags(c))) {
		(void)preanswer_hit(c, mx->owner);
	}
}

/* Whether the QNAME is the zone's apex (knotd has lower-cased the QNAME of
 * the response by then, as the zone's name is: the same bytes). */
static inline bool is_apex(const mxf_zone_t *zone, const knot_pkt_t *pkt)
{
	return pkt->qname_size == zone->zone_size &&
	       memcmp(pkt->wire + KNOT_WIRE_HEADER_SIZE, zone->name, zone->zone_size) == 0;
}

bool mxf_preanswer_reaches(const mxf_zone_t *zone, const knot_pkt_t *pkt, bool begun,
                           bool below)
{
	/* Another hook answered: the ANSWER stage judges what it wrote. */
	return begun && pkt->rrset_count == 0 && (below || is_apex(zone, pkt));
}

mxf_step_t mxf_preanswer(mxf_zone_t *zone, const mxf_query_t *q)
{
	call_t c;
	call_init(&c, zone, q);
	knot_pkt_t *pkt = q->pkt;
	bool apex = is_apex(zone, pkt);
	if (q->state != MXF_KNOT_BEGIN || pkt->rrset_count > 0 ||
	    (!apex && q->server->rrset == NULL)) {
		return c.step; /* As mxf_preanswer_reaches(). */
	}
	const knot_dname_t *qname = knot_pkt_qname(pkt);
	knot_rrset_t mx;
	if (!early_rrset(&c, qname, apex, &mx)) {
		return c.step;
	}

	mxf_ctx_t ctx = ctx_init(&c);
	const mxf_policy_t *policy = ctx.policy;
	if (!apex && policy->scope == MXF_SCOPE_APEX) {
		return c.step; /* Served; reported as observed at ANSWER. */
	}

	uint32_t ttl;
	mxf_result_t res = { 0 };
	if (knot_rrset_empty(&mx)) {
		if (!apex || !policy->synthesize) {
			return c.step;
		}
		knot_rrset_t soa = q->server->apex(q->data, KNOT_RRTYPE_SOA);
		ttl = mxf_policy_ttl(policy, soa.ttl);
		report_synthesized(&ctx, MXF_ACTION_BLOCKED, &res);
	} else {
		mxf_verdict_t verdict = mxf_classify(policy, &mx.rrs);
		if (verdict == MXF_SET_COMPLIANT ||
		    (verdict == MXF_SET_NULLMX && policy->null_mx == MXF_NULLMX_KEEP)) {
			serve_compliant(&c, &mx);
			return c.step;
		}
		mxf_report(&ctx, &mx, false, MXF_ACTION_BLOCKED, &res);
		ttl = mxf_policy_ttl(policy, mx.ttl);
	}

	/* The set is made here (no additional pointer), never the zone's. */
	const knot_dname_t *owner = knot_rrset_empty(&mx) ? zone->name : mx.owner;
	int ret = put_set(&c, &ctx, owner, ttl, KNOT_COMPR_HINT_QNAME);
	count_result(&c, &res);
	audit_end(&c);
	if (ret != KNOT_EOK) {
		put_failed(&c, owner, ret);
	} else if (preanswer_hit(&c, owner)) {
		count(&c, knot_rrset_empty(&mx) ? MXF_VAL_SYNTHESIZED : MXF_VAL_ENFORCED, 1);
	}
	return c.step;
}

/*** ANSWER. ***/

/* Whether Knot's answer is NODATA for MX at the zone's apex, asked for
 * directly or through an in-zone CNAME chain (Knot leaves the chain's last
 * name in qdata->name): an answer "synthesize: on" replaces. */
static bool nodata_at_apex(const mxf_zone_t *zone, const mxf_query_t *q)
{
	return q->state == MXF_KNOT_NODATA && mxf_qtype(q->pkt) == KNOT_RRTYPE_MX &&
	       q->name != NULL && knot_dname_is_case_equal(q->name, zone->name);
}

/*
 * An MX query answered NODATA at the apex: in enforce mode the apex's
 * synthesized answer, as PREANSWER gives it for the apex itself. Through a
 * CNAME chain ("www CNAME @") this is the only place that can answer it:
 * without it a sender finds no MX for the alias and delivers to the apex's
 * address records (RFC 5321 implicit MX), unfiltered, and in a signed zone
 * the NODATA proof would contradict the apex's edited denial record. Audit
 * mode serves Knot's answer and logs "missing MX audit".
 */
static void answer_apex_nodata(call_t *c)
{
	const mxf_query_t *q = c->q;
	const mxf_zone_t *zone = c->zone;
	const mxf_policy_t *policy = c->zone->policy;
	mxf_ctx_t ctx = ctx_init(c);
	mxf_result_t res = { 0 };
	if (policy->mode == MXF_MODE_AUDIT) {
		report_synthesized(&ctx, MXF_ACTION_AUDIT, &res);
		audit_end(c);
		return;
	}

	report_synthesized(&ctx, MXF_ACTION_BLOCKED, &res);
	knot_rrset_t soa = q->server->apex(q->data, KNOT_RRTYPE_SOA);
	uint32_t ttl = mxf_policy_ttl(policy, soa.ttl);
	/* The apex itself keeps the query's spelling; after a CNAME the owner
	 * is the chain's last name, compressed as libknot finds it. */
	uint16_t hint = (q->pkt->sections[KNOT_ANSWER].count == 0) ?
	                KNOT_COMPR_HINT_QNAME : KNOT_COMPR_HINT_NONE;
	int ret = put_set(c, &ctx, zone->name, ttl, hint);
	audit_end(c);
	if (ret != KNOT_EOK) {
		put_failed(c, zone->name, ret);
		return;
	}
	count(c, MXF_VAL_SYNTHESIZED, 1);
	c->step = MXF_HIT;
}

mxf_step_t mxf_answer(mxf_zone_t *zone, const mxf_query_t *q)
{
	call_t c;
	call_init(&c, zone, q);
	/* No MX at the apex (through a CNAME chain, or in audit mode): the
	 * synthesized set, or in audit mode the lines it would bring. */
	if (zone->policy->synthesize && nodata_at_apex(zone, q)) {
		answer_apex_nodata(&c);
		return c.step;
	}

	mxf_ctx_t ctx = ctx_init(&c);
	mxf_result_t res;
	int ret = mxf_process(q->pkt, &ctx, &res);
	if (ret != KNOT_EOK) {
		res.enforced = 0; /* Not served; the legacy records stay blocked. */
	}
	count_result(&c, &res);
	audit_end(&c);
	/* Audit mode serves the zone's data whatever happens. */
	if (ret != KNOT_EOK && ctx.policy->mode != MXF_MODE_AUDIT) {
		put_failed(&c, c.served != NULL ? c.served : knot_pkt_qname(q->pkt), ret);
	}
	return c.step;
}

/*** AUTHORITY. ***/

mxf_step_t mxf_authority(mxf_zone_t *zone, const mxf_query_t *q)
{
	call_t c;
	call_init(&c, zone, q);
	if (!knot_pkt_has_dnssec(q->query)) {
		return c.step;
	}
	uint16_t idx[MXF_DENIAL_MAX];
	/* An apex record without MX: Knot keeps it in line with the zone, so
	 * the apex has no MX and the module synthesizes it. */
	size_t n = mxf_denial_find(q->pkt, zone->name, KNOT_RRTYPE_MX, idx, MXF_DENIAL_MAX);
	if (n == 0) {
		return c.step;
	}

	c.apex_rrsig = q->server->apex(q->data, KNOT_RRTYPE_RRSIG);
	mxf_denial_ctx_t dctx = { .type = KNOT_RRTYPE_MX, .sign = sign_set, .sign_data = &c };
	int ret = mxf_denial_rewrite(q->pkt, &dctx, idx, n);
	if (ret == KNOT_ESPACE && udp(&c)) {
		mxf_write_tc(q->pkt); /* The client retries over TCP. */
		c.step = MXF_TRUNC;
	} else if (ret != KNOT_EOK) {
		fail_closed(&c, zone->name, ret);
	}
	return c.step;
}

/*** END. ***/

/* A legacy MX got past the answer stage (Knot skips later hooks once it
 * truncates). A truncated reply becomes an empty one, so the client retries
 * over TCP; anything else is an internal error. */
static void end_leak(call_t *c, int leak)
{
	knot_pkt_t *pkt = c->q->pkt;
	if (knot_wire_get_tc(pkt->wire)) {
		c->step = MXF_EMPTY_TC;
		return;
	}
	const knot_rrset_t *rr = &pkt->rr[leak];
	knot_dname_storage_t wild;
	/* F (writer.h): a packet-owned MX owner is an expanded wildcard. */
	fail_closed(c, (pkt->rr_info[leak].flags & KNOT_PF_FREE) ?
	            wildcard_owner(c, rr, wild) : rr->owner, KNOT_ERROR);
}

/* The AUTHORITY stage saw every answer Knot did not truncate. A transfer
 * carries the zone as it is (transfer: refuse for secondaries that do not
 * run the module). */
static void end_denial(call_t *c)
{
	knot_pkt_t *pkt = c->q->pkt;
	bool tc = knot_wire_get_tc(pkt->wire);
	if (!tc && (c->zone->stages & MXF_STAGE_AUTHORITY)) {
		return;
	}
	uint16_t idx;
	if (mxf_denial_find(pkt, c->zone->name, KNOT_RRTYPE_MX, &idx, 1) == 0) {
		return;
	}
	if (tc) {
		c->step = MXF_EMPTY_TC;
	} else {
		fail_closed(c, c->zone->name, KNOT_ERROR);
	}
}

mxf_step_t mxf_end(mxf_zone_t *zone, const mxf_query_t *q)
{
	call_t c;
	call_init(&c, zone, q);
	const mxf_policy_t *policy = zone->policy;
	knot_pkt_t *pkt = q->pkt;

	if (is_transfer(q)) {
		/* Counted once, on the last message of a transfer that was served. */
		if (q->state == MXF_KNOT_DONE && policy->transfer != MXF_XFR_REFUSE &&
		    knot_wire_get_rcode(pkt->wire) == KNOT_RCODE_NOERROR) {
			count(&c, MXF_VAL_XFR_ALLOWED, 1);
			if (policy->transfer == MXF_XFR_LOG) {
				log_transfer(&c, "served");
			}
		}
		return c.step;
	}

	uint16_t qtype = knot_pkt_qtype(pkt);
	if ((qtype == KNOT_RRTYPE_MX || qtype == KNOT_RRTYPE_ANY) &&
	    policy->mode == MXF_MODE_ENFORCE) {
		/* A read-only check: the policy and the zone are all it needs. */
		mxf_ctx_t ctx = { .policy = policy, .zone = zone->name,
		                  .zone_size = zone->zone_size };
		int leak = mxf_pkt_leak(pkt, &ctx);
		if (leak >= 0) {
			end_leak(&c, leak);
			return c.step;
		}
	}
	if ((zone->stages & MXF_STAGE_END_DO) && knot_pkt_has_dnssec(q->query)) {
		end_denial(&c);
	}
	return c.step;
}

mxf_step_t mxf_unloaded(const knot_pkt_t *query, mxf_query_type_t type)
{
	uint16_t qtype = knot_pkt_qtype(query);
	return (type == MXF_QUERY_NORMAL &&
	        (qtype == KNOT_RRTYPE_MX || qtype == KNOT_RRTYPE_ANY)) ? MXF_SERVFAIL : MXF_PASS;
}
