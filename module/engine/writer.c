/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*
 * The packet writer (writer.h has the invariants Q, T, F, I1-I9, P1-P3 and
 * W1-W3 that every function here keeps).
 */

#include <stdlib.h>
#include <string.h>

#include "writer.h"
#include "wire.h"

/* Entries kept on the stack before falling back to the packet's mm. */
#define STACK_ENTRIES	32

/* In place: at most this many entries of as many records. */
#define INPLACE_MAX		8
#define INPLACE_RECORDS		8

#define NOT_WRITTEN	UINT16_MAX

/* A tail entry of a rebuild, saved before the rr[] slots are written again. */
typedef struct {
	knot_rrset_t rr;
	mxf_subst_t *with;  /* MXF_W_SUBST: what is written instead. */
	uint16_t owner_ptr; /* Where the owner pointed in the original wire. */
	uint16_t written;   /* Index in rr[] once written again, or NOT_WRITTEN. */
	uint16_t flags;
	uint8_t act;
	uint8_t section;
} saved_t;

/*** Memory. ***/

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

/* T: whether entries [from, to) hold a TSIG. */
static bool holds_tsig(const knot_pkt_t *pkt, uint16_t from, uint16_t to)
{
	for (uint16_t i = from; i < to; i++) {
		if (pkt->rr[i].type == KNOT_RRTYPE_TSIG) {
			return true;
		}
	}
	return false;
}

/*** The filtering set's wire image (W1-W3). ***/

struct mxf_image {
	uint16_t base;              /* Offset the image was written at. */
	uint16_t size;
	uint16_t count;             /* Records. */
	uint16_t relocs;            /* Compression pointers between exchanges. */
	uint16_t rec_at[MXF_MAX_EXCHANGES];   /* Record starts: owner pointer, TTL at +6. */
	uint16_t reloc_at[MXF_MAX_EXCHANGES];
	uint16_t hint[KNOT_COMPR_HINT_COUNT]; /* Hints left in rr_info, 0 = none. */
	uint16_t hint_end;          /* hint[] is 0 from here on. */
	uint16_t suffix_pos;        /* Compression suffix left behind, 0 = the QNAME. */
	uint16_t suffix_labels;
	uint8_t tld[1 + KNOT_DNAME_MAXLABELLEN]; /* First exchange's last label. */
	uint8_t wire[];
};

/* Last label of a flat name (the terminal zero for the root). */
static const uint8_t *last_label(const uint8_t *name)
{
	const uint8_t *last = name;
	while (*name != 0) {
		last = name;
		name += 1 + *name;
	}
	return last;
}

/* Walks the records knot_pkt_put() wrote from \a base and notes every
 * position-dependent field; false if anything is not as expected. */
static bool image_scan(struct mxf_image *img, const knot_pkt_t *pkt, uint16_t count)
{
	const uint8_t *w = pkt->wire;
	size_t pos = img->base;
	for (uint16_t i = 0; i < count; i++) {
		img->rec_at[i] = (uint16_t)(pos - img->base);
		/* Owner: the pointer to the hint (the QNAME here); header. */
		if (pos + 12 > pkt->size ||
		    knot_wire_read_u16(w + pos) != (0xC000 | KNOT_COMPR_HINT_QNAME) ||
		    knot_wire_read_u16(w + pos + 2) != KNOT_RRTYPE_MX) {
			return false;
		}
		size_t rdend = pos + 12 + knot_wire_read_u16(w + pos + 10);
		pos += 12 + 2; /* Header and preference. */
		/* Exchange: labels, then a zero or a pointer back into the image. */
		while (pos < rdend && w[pos] != 0 && w[pos] <= KNOT_DNAME_MAXLABELLEN) {
			pos += 1 + w[pos];
		}
		if (pos < rdend && (w[pos] & 0xC0) == 0xC0) {
			uint16_t to = knot_wire_read_u16(w + pos) & 0x3FFF;
			if (to < img->base || to >= pos) {
				return false;
			}
			img->reloc_at[img->relocs++] = (uint16_t)(pos - img->base);
			pos += 2;
		} else if (pos < rdend && w[pos] == 0) {
			pos += 1;
		} else {
			return false;
		}
		if (pos != rdend) {
			return false;
		}
	}
	if (pos != pkt->size) {
		return false;
	}

	const knot_rrinfo_t *info = &pkt->rr_info[0];
	if (info->compress_ptr[KNOT_COMPR_HINT_OWNER] != KNOT_COMPR_HINT_QNAME) {
		return false;
	}
	for (int h = KNOT_COMPR_HINT_RDATA; h < KNOT_COMPR_HINT_COUNT; h++) {
		uint16_t v = info->compress_ptr[h];
		if (v != 0 && (v < img->base || v >= pkt->size)) {
			return false;
		}
		img->hint[h] = v;
		if (v != 0) {
			img->hint_end = (uint16_t)(h + 1);
		}
	}
	if (pkt->compr.suffix.pos != KNOT_WIRE_HEADER_SIZE) {
		if (pkt->compr.suffix.pos < img->base || pkt->compr.suffix.pos >= pkt->size) {
			return false;
		}
		img->suffix_pos = pkt->compr.suffix.pos;
		img->suffix_labels = pkt->compr.suffix.labels;
	}
	return true;
}

int mxf_image_build(mxf_policy_t *policy)
{
	policy->image = NULL;
	uint16_t count = policy->rrs.count;
	if (count == 0 || count > MXF_MAX_EXCHANGES) {
		return KNOT_EOK;
	}
	const uint8_t *tld = last_label(policy->rrs.rdata->data + 2);
	if (*tld == 0) {
		return KNOT_EOK;
	}

	/* Made after a one-label QNAME that no exchange can be compressed
	 * against: the case mxf_image_put() reproduces. */
	uint8_t qname[3] = { 1, 'a', 0 };
	if (tld[0] == 1 && tld[1] == 'a') {
		qname[1] = 'b';
	}
	knot_pkt_t *pkt = knot_pkt_new(NULL, KNOT_WIRE_MAX_PKTSIZE, NULL);
	if (pkt == NULL) {
		return KNOT_ENOMEM;
	}
	knot_rrset_t rr;
	knot_rrset_init(&rr, qname, KNOT_RRTYPE_MX, KNOT_CLASS_IN, 0);
	rr.rrs = policy->rrs;
	int ret = knot_pkt_put_question(pkt, qname, KNOT_CLASS_IN, KNOT_RRTYPE_MX);
	if (ret == KNOT_EOK) {
		ret = knot_pkt_begin(pkt, KNOT_ANSWER);
	}
	if (ret == KNOT_EOK) {
		ret = knot_pkt_put(pkt, KNOT_COMPR_HINT_QNAME, &rr, KNOT_PF_NULL);
	}
	if (ret != KNOT_EOK) {
		knot_pkt_free(pkt);
		return (ret == KNOT_ENOMEM) ? ret : KNOT_EOK; /* No image. */
	}

	uint16_t base = pkt->rr_info[0].pos;
	struct mxf_image *img = calloc(1, sizeof(*img) + (pkt->size - base));
	if (img == NULL) {
		knot_pkt_free(pkt);
		return KNOT_ENOMEM;
	}
	img->base = base;
	img->size = (uint16_t)(pkt->size - base);
	img->count = count;
	memcpy(img->tld, tld, 1 + tld[0]);
	memcpy(img->wire, pkt->wire + base, img->size);
	if (image_scan(img, pkt, count)) {
		policy->image = img;
	} else {
		free(img);
	}
	knot_pkt_free(pkt);
	return KNOT_EOK;
}

void mxf_image_free(mxf_policy_t *policy)
{
	free(policy->image);
	policy->image = NULL;
}

bool mxf_image_put(knot_pkt_t *pkt, const mxf_policy_t *policy,
                   const knot_rrset_t *rr, uint16_t hint, uint16_t flags)
{
	const struct mxf_image *img = policy->image;
	const knot_dname_t *qname = knot_pkt_qname(pkt);
	if (img == NULL || qname == NULL || (flags & KNOT_PF_CHECKDUP) ||
	    hint < KNOT_WIRE_HEADER_SIZE || hint >= pkt->size || rr->owner[0] == 0 ||
	    (pkt->compr.suffix.pos != 0 && pkt->compr.suffix.pos != KNOT_WIRE_HEADER_SIZE)) {
		return false;
	}
	size_t end = pkt->size + img->size;
	if (end + pkt->reserved > pkt->max_size || end >= KNOT_WIRE_PTR_MAX) {
		return false; /* W2: libknot decides about truncation. */
	}
	/* Would libknot point the first exchange into the question? */
	const uint8_t *q = last_label(qname);
	if (q[0] == img->tld[0] && memcmp(q + 1, img->tld + 1, q[0]) == 0) {
		return false;
	}
	if (pkt->rrset_count >= pkt->rrset_allocd) {
		/* W3: libknot grows its rr arrays on a put, even of an empty
		 * RRset (which writes nothing). */
		knot_rrset_t none;
		knot_rrset_init(&none, rr->owner, KNOT_RRTYPE_MX, KNOT_CLASS_IN, 0);
		if (knot_pkt_put(pkt, hint, &none, KNOT_PF_NULL) != KNOT_EOK ||
		    pkt->rrset_count >= pkt->rrset_allocd) {
			return false;
		}
	}

	uint16_t at = (uint16_t)pkt->size;
	uint16_t delta = at - img->base; /* Modulo 2^16: pointers move by it. */
	uint8_t *dst = pkt->wire + at;
	memcpy(dst, img->wire, img->size);
	for (uint16_t i = 0; i < img->count; i++) {
		knot_wire_write_u16(dst + img->rec_at[i], 0xC000 | hint);
		knot_wire_write_u32(dst + img->rec_at[i] + 6, rr->ttl);
	}
	for (uint16_t i = 0; i < img->relocs; i++) {
		uint8_t *p = dst + img->reloc_at[i];
		knot_wire_write_u16(p, (uint16_t)(knot_wire_read_u16(p) + delta));
	}

	knot_rrinfo_t *info = &pkt->rr_info[pkt->rrset_count];
	memset(info, 0, sizeof(*info));
	info->pos = at;
	info->flags = flags;
	info->compress_ptr[KNOT_COMPR_HINT_OWNER] = hint;
	for (int h = KNOT_COMPR_HINT_RDATA; h < img->hint_end; h++) {
		if (img->hint[h] != 0) {
			info->compress_ptr[h] = (uint16_t)(img->hint[h] + delta);
		}
	}
	pkt->rr[pkt->rrset_count] = *rr;
	pkt->compr.rrinfo = info;
	if (img->suffix_pos != 0) {
		pkt->compr.suffix.pos = (uint16_t)(img->suffix_pos + delta);
		pkt->compr.suffix.labels = img->suffix_labels;
	} else if (pkt->compr.suffix.pos == 0) {
		pkt->compr.suffix.pos = KNOT_WIRE_HEADER_SIZE;
		pkt->compr.suffix.labels = knot_dname_labels(pkt->wire + KNOT_WIRE_HEADER_SIZE,
		                                             pkt->wire);
	}

	pkt->rrset_count++;
	pkt->sections[pkt->current].count++;
	pkt->size = end;
	switch (pkt->current) {
	case KNOT_ANSWER:     knot_wire_add_ancount(pkt->wire, img->count); break;
	case KNOT_AUTHORITY:  knot_wire_add_nscount(pkt->wire, img->count); break;
	case KNOT_ADDITIONAL: knot_wire_add_arcount(pkt->wire, img->count); break;
	}
	return true;
}

/*** Appending. ***/

int mxf_write_set(knot_pkt_t *pkt, const mxf_policy_t *policy,
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

bool mxf_write_verbatim(knot_pkt_t *pkt, const mxf_policy_t *policy,
                        const knot_rrset_t *rr, uint16_t hint, uint16_t flags)
{
	return rr->type == KNOT_RRTYPE_MX && mxf_policy_is_rrs(policy, &rr->rrs) &&
	       !(flags & KNOT_PF_FREE) && mxf_image_put(pkt, policy, rr, hint, flags);
}

int mxf_write_rrsig(knot_pkt_t *pkt, const mxf_set_writer_t *w, uint16_t flags)
{
	if (w == NULL || w->sign == NULL) {
		return KNOT_EOK;
	}
	if (pkt->rrset_count == 0) {
		return KNOT_EINVAL;
	}
	const knot_rrset_t *set = &pkt->rr[pkt->rrset_count - 1];
	const knot_rrinfo_t *info = &pkt->rr_info[pkt->rrset_count - 1];
	knot_rrset_t rrsig;
	int ret = w->sign(w->sign_data, set, &rrsig);
	if (ret != KNOT_EOK) {
		return ret;
	}
	/* The owner is written exactly as the signed RRset's owner was. */
	uint16_t hint = info->compress_ptr[KNOT_COMPR_HINT_OWNER];
	return knot_pkt_put(pkt, hint, &rrsig, flags & ~(KNOT_PF_FREE | KNOT_PF_CHECKDUP));
}

/*** Rebuild (I1-I9). ***/

/* Writes the replacement for \a orig (owner and TTL kept). */
static int put_replacement(knot_pkt_t *pkt, const mxf_policy_t *policy,
                           saved_t *orig, uint16_t hint)
{
	uint32_t ttl = mxf_policy_ttl(policy, orig->rr.ttl);
	uint16_t flags = orig->flags & ~(KNOT_PF_FREE | KNOT_PF_CHECKDUP);
	if (!(orig->flags & KNOT_PF_FREE)) {
		return mxf_write_set(pkt, policy, orig->rr.owner, ttl, hint, flags);
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

	/* Q: the question's name is flat and was checked when it was parsed
	 * or written; without one, libknot compresses nothing. */
	uint16_t labels = 0, pos = 0;
	if (__builtin_expect(pkt->qname_size > 0, 1)) {
		for (const uint8_t *l = pkt->wire + KNOT_WIRE_HEADER_SIZE; *l != 0; l += 1 + *l) {
			labels++;
		}
		pos = KNOT_WIRE_HEADER_SIZE;
	}
	pkt->compr.suffix.pos = pos;
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

int mxf_write_rebuild(knot_pkt_t *pkt, const uint8_t *act, mxf_subst_t *subst,
                      uint16_t subst_count, const mxf_set_writer_t *w)
{
	uint16_t count = pkt->rrset_count;
	uint16_t cut = 0;
	while (cut < count && MXF_W_ACT(act[cut]) == MXF_W_KEEP) {
		cut++;
	}
	if (cut == count) {
		return KNOT_EOK;
	}
	int cut_sec = mxf_section_of(pkt, cut);
	if (cut_sec < 0) {
		return KNOT_EMALF;
	}
	if (holds_tsig(pkt, 0, count)) {
		drop_from(pkt, cut, cut_sec); /* T, I7. */
		return KNOT_EDENIED;
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
		saved[i].act = MXF_W_ACT(act[idx]);
		saved[i].written = NOT_WRITTEN;
		saved[i].with = NULL;
		for (uint16_t k = 0; saved[i].act == MXF_W_SUBST && k < subst_count; k++) {
			if (subst[k].idx == idx) {
				saved[i].with = &subst[k];
			}
		}
		if ((saved[i].act == MXF_W_SUBST && saved[i].with == NULL) ||
		    (saved[i].act == MXF_W_SET && w == NULL)) {
			saved[i].act = MXF_W_DROP;
		}
		int sec = mxf_section_of(pkt, idx);
		saved[i].section = (uint8_t)(sec < 0 ? KNOT_ADDITIONAL : sec);
	}

	knot_section_t orig_current = pkt->current;
	cut_packet(pkt, cut, cut_sec);
	const size_t cut_pos = pkt->size;

	int ret = KNOT_EOK;
	uint16_t i;
	for (i = 0; i < tail; i++) {
		saved_t *s = &saved[i];
		if (s->act == MXF_W_DROP) {
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
		if (s->act == MXF_W_SET) {
			ret = put_replacement(pkt, w->policy, s, hint);
			s->flags &= ~KNOT_PF_FREE; /* Handed over, or freed on error. */
			if (ret == KNOT_EOK) {
				ret = mxf_write_rrsig(pkt, w, s->flags);
			}
		} else if (s->act == MXF_W_SUBST) {
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

void mxf_write_drop_from(knot_pkt_t *pkt, uint16_t idx)
{
	int sec = mxf_section_of(pkt, idx);
	if (idx < pkt->rrset_count && sec >= 0) {
		drop_from(pkt, idx, sec);
	}
}

/*** A tail of one RRset and its RRSIG. ***/

int mxf_write_tail(knot_pkt_t *pkt, uint16_t idx, const mxf_set_writer_t *w)
{
	int sec = (int)pkt->current;
	if (holds_tsig(pkt, 0, idx)) {
		drop_from(pkt, idx, sec); /* T, I7. */
		return KNOT_EDENIED;
	}
	/* The RRset (what put_replacement() reads of it) and its RRSIG, which
	 * goes with it (I5). */
	const knot_rrinfo_t *info = &pkt->rr_info[idx];
	saved_t orig;
	orig.rr = pkt->rr[idx];
	orig.flags = info->flags;
	uint16_t owner_ptr = info->compress_ptr[KNOT_COMPR_HINT_OWNER];
	if (idx + 1 < pkt->rrset_count && (pkt->rr_info[idx + 1].flags & KNOT_PF_FREE)) {
		knot_rrset_clear(&pkt->rr[idx + 1], &pkt->mm);
	}
	cut_packet(pkt, idx, sec);
	uint16_t hint = owner_hint(pkt, orig.rr.owner, owner_ptr, pkt->size);
	int ret = put_replacement(pkt, w->policy, &orig, hint);
	if (ret == KNOT_EOK) {
		ret = mxf_write_rrsig(pkt, w, orig.flags);
	}
	return ret;
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
	    rep->rrs.count > INPLACE_RECORDS || !mxf_dname_equal(rep->owner, orig->owner)) {
		return false;
	}
	size_t pos = pkt->rr_info[w->idx].pos;
	const knot_rdata_t *a = orig->rrs.rdata, *b = rep->rrs.rdata;
	for (uint16_t k = 0; k < orig->rrs.count; k++, a = mxf_rd_next(a), b = mxf_rd_next(b)) {
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
	for (uint16_t k = 0; k < w->rr.rrs.count; k++, b = mxf_rd_next(b)) {
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

int mxf_write_replace(knot_pkt_t *pkt, mxf_subst_t *subst, uint16_t count)
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
	if (count == 0) {
		return KNOT_EOK;
	}
	if (holds_tsig(pkt, 0, pkt->rrset_count)) {
		subst_release(pkt, subst, count);
		mxf_write_drop_from(pkt, first); /* T, I7. */
		return KNOT_EDENIED;
	}

	/* Same sizes everywhere: patch the wire, no rebuild (P1-P3). */
	size_t ttl_pos[INPLACE_MAX][INPLACE_RECORDS];
	bool in_place = count <= INPLACE_MAX;
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
			mxf_write_drop_from(pkt, first); /* I7. */
			return KNOT_ENOMEM;
		}
	}
	memset(act, MXF_W_KEEP, pkt->rrset_count);
	for (uint16_t k = 0; k < count; k++) {
		act[subst[k].idx] = knot_rrset_empty(&subst[k].rr) ? MXF_W_DROP : MXF_W_SUBST;
	}

	int ret = mxf_write_rebuild(pkt, act, subst, count, NULL);
	subst_release(pkt, subst, count);
	if (act != act_stack) {
		pkt_free(pkt, act);
	}
	return ret;
}
