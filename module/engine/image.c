/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*
 * The filtering set's wire image (see image.h for what it is and when it
 * applies).
 */

#include <stdlib.h>
#include <string.h>

#include "image.h"

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
		return false; /* libknot decides about truncation. */
	}
	/* Would libknot point the first exchange into the question? */
	const uint8_t *q = last_label(qname);
	if (q[0] == img->tld[0] && memcmp(q + 1, img->tld + 1, q[0]) == 0) {
		return false;
	}
	if (pkt->rrset_count >= pkt->rrset_allocd) {
		/* libknot grows its rr arrays on a put, even of an empty RRset
		 * (which writes nothing). */
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
