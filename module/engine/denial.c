/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*
 * Denial records that agree with a synthesized apex MX (see denial.h).
 *
 * Type bitmaps (RFC 4034, 4.1.2; the same format in NSEC3, RFC 5155,
 * 3.2.1): a sequence of windows, each a window number (the type's high
 * byte), a length of 1 to 32 and that many bytes, bit 0x80 of the first
 * byte standing for the type (window << 8) | 0. Windows come in increasing
 * order; a window without types is left out, and so are trailing zero bytes.
 */

#include <string.h>

#include "denial.h"
#include "wire.h"

/*** Type bitmaps. ***/

bool mxf_bitmap_valid(const uint8_t *bitmap, size_t len)
{
	size_t pos = 0;
	int last = -1;
	while (pos < len) {
		if (len - pos < 2) {
			return false;
		}
		uint8_t win = bitmap[pos];
		uint8_t blen = bitmap[pos + 1];
		if ((int)win <= last || blen < 1 || blen > 32 || len - pos - 2 < blen) {
			return false;
		}
		last = win;
		pos += 2 + blen;
	}
	return true;
}

bool mxf_bitmap_has(const uint8_t *bitmap, size_t len, uint16_t type)
{
	uint8_t win = type >> 8;
	uint8_t byte = (type & 0xff) >> 3;
	uint8_t bit = 0x80 >> (type & 7);
	size_t pos = 0;
	while (pos + 2 <= len && bitmap[pos] <= win) {
		uint8_t blen = bitmap[pos + 1];
		if (bitmap[pos] == win) {
			return byte < blen && pos + 2 + byte < len &&
			       (bitmap[pos + 2 + byte] & bit) != 0;
		}
		pos += 2 + blen;
	}
	return false;
}

int mxf_bitmap_add(const uint8_t *bitmap, size_t len, uint16_t type,
                   uint8_t *out, size_t *out_len)
{
	if (!mxf_bitmap_valid(bitmap, len)) {
		return KNOT_EMALF;
	}
	uint8_t win = type >> 8;
	uint8_t byte = (type & 0xff) >> 3;
	uint8_t bit = 0x80 >> (type & 7);

	/* The type's window, or where it goes. */
	size_t pos = 0;
	while (pos < len && bitmap[pos] < win) {
		pos += 2 + bitmap[pos + 1];
	}
	memcpy(out, bitmap, pos);
	size_t o = pos;
	if (pos < len && bitmap[pos] == win) {
		/* Grow the window to the type's byte if needed. */
		uint8_t blen = bitmap[pos + 1];
		uint8_t nlen = (byte < blen) ? blen : byte + 1;
		out[o++] = win;
		out[o++] = nlen;
		memcpy(out + o, bitmap + pos + 2, blen);
		memset(out + o + blen, 0, nlen - blen);
		out[o + byte] |= bit;
		o += nlen;
		pos += 2 + blen;
	} else {
		/* A new window before the next one. */
		out[o++] = win;
		out[o++] = byte + 1;
		memset(out + o, 0, byte);
		out[o + byte] = bit;
		o += byte + 1;
	}
	memcpy(out + o, bitmap + pos, len - pos);
	*out_len = o + len - pos;
	return KNOT_EOK;
}

/*** Denial records. ***/

int mxf_denial_bitmap(uint16_t type, const knot_rdata_t *rd, size_t *offset)
{
	size_t len = rd->len;
	const uint8_t *d = rd->data;
	size_t pos = 0;
	switch (type) {
	case KNOT_RRTYPE_NSEC:
		/* Next owner name, uncompressed (RFC 4034, 4.1.1). */
		while (pos < len && d[pos] != 0) {
			if (d[pos] > KNOT_DNAME_MAXLABELLEN) {
				return KNOT_EMALF;
			}
			pos += 1 + d[pos];
		}
		if (pos >= len || pos + 1 > KNOT_DNAME_MAXLEN) {
			return KNOT_EMALF;
		}
		*offset = pos + 1;
		return KNOT_EOK;
	case KNOT_RRTYPE_NSEC3:
		/* Algorithm, flags, iterations, salt, next hashed owner. */
		if (len < 5) {
			return KNOT_EMALF;
		}
		pos = 5 + (size_t)d[4];
		if (pos >= len) {
			return KNOT_EMALF;
		}
		pos += 1 + (size_t)d[pos];
		if (pos > len) {
			return KNOT_EMALF;
		}
		*offset = pos;
		return KNOT_EOK;
	default:
		return KNOT_EINVAL;
	}
}

/* Whether \a owner (flat) is the apex (NSEC) or one label below it (NSEC3),
 * \a zone being lower-case, of \a zone_size bytes. */
static bool apex_owner(uint16_t type, const knot_dname_t *owner,
                       const knot_dname_t *zone, size_t zone_size)
{
	if (type == KNOT_RRTYPE_NSEC3) {
		if (*owner == 0) {
			return false;
		}
		owner += 1 + *owner;
	}
	return mxf_flat_name_size(owner) == zone_size &&
	       mxf_wire_case_equal(owner, zone, zone_size);
}

/* One rdata's bitmap: -1 if malformed or without SOA (not the apex's
 * record), else whether \a type is listed. */
static int apex_bitmap(uint16_t rtype, const knot_rdata_t *rd, uint16_t type)
{
	size_t off;
	if (mxf_denial_bitmap(rtype, rd, &off) != KNOT_EOK) {
		return -1;
	}
	/* Most records are not the apex's: SOA (6) is bit 0x02 of window 0's
	 * first byte, always the bitmap's third byte when listed. */
	const uint8_t *bm = rd->data + off;
	if (rd->len - off < 3 || bm[0] != 0 || !(bm[2] & 0x02) ||
	    !mxf_bitmap_valid(rd->data + off, rd->len - off) ||
	    !mxf_bitmap_has(rd->data + off, rd->len - off, KNOT_RRTYPE_SOA)) {
		return -1; /* Only the apex has SOA: for NSEC3, the apex's hash. */
	}
	return mxf_bitmap_has(rd->data + off, rd->len - off, type);
}

static bool lacks(const knot_rrset_t *rr, const knot_dname_t *zone, size_t zone_size,
                  uint16_t type)
{
	if ((rr->type != KNOT_RRTYPE_NSEC && rr->type != KNOT_RRTYPE_NSEC3) ||
	    rr->rrs.count == 0 || !apex_owner(rr->type, rr->owner, zone, zone_size)) {
		return false;
	}
	bool missing = false;
	const knot_rdata_t *rd = rr->rrs.rdata;
	for (uint16_t i = 0; i < rr->rrs.count; i++, rd = mxf_rd_next(rd)) {
		int has = apex_bitmap(rr->type, rd, type);
		if (has < 0) {
			return false; /* Not a record this engine can edit. */
		}
		missing |= !has;
	}
	return missing;
}

size_t mxf_denial_find(const knot_pkt_t *pkt, const knot_dname_t *zone, uint16_t type,
                       uint16_t *idx, size_t max)
{
	size_t found = 0;
	size_t zone_size = 0;
	for (int s = KNOT_ANSWER; s <= KNOT_AUTHORITY && s <= (int)pkt->current; s++) {
		const knot_pktsection_t *sec = &pkt->sections[s];
		for (uint16_t i = sec->pos; i < sec->pos + sec->count && found < max; i++) {
			const knot_rrset_t *rr = &pkt->rr[i];
			/* Cheapest first: most responses hold no denial record. */
			if (rr->type != KNOT_RRTYPE_NSEC && rr->type != KNOT_RRTYPE_NSEC3) {
				continue;
			}
			if (zone_size == 0) {
				zone_size = mxf_flat_name_size(zone);
			}
			if (lacks(rr, zone, zone_size, type)) {
				idx[found++] = i;
			}
		}
	}
	return found;
}

/* A copy of \a rr listing \a type, owner and rdata from the packet's memory
 * (each rdata grows in place: the canonical order does not change, the
 * rdatas differing before their bitmaps). */
static int edited_copy(knot_pkt_t *pkt, const knot_rrset_t *rr, uint16_t type,
                       knot_rrset_t *out)
{
	knot_rrset_init(out, NULL, rr->type, rr->rclass, rr->ttl);
	size_t size = rr->rrs.size + rr->rrs.count * (MXF_BITMAP_GROWTH + 1);
	knot_dname_t *owner = knot_dname_copy(rr->owner, &pkt->mm);
	uint8_t *mem = (pkt->mm.alloc != NULL && owner != NULL) ?
	               pkt->mm.alloc(pkt->mm.ctx, size) : NULL;
	if (mem == NULL) {
		knot_dname_free(owner, &pkt->mm);
		return KNOT_ENOMEM;
	}
	out->owner = owner;
	out->rrs.rdata = (knot_rdata_t *)mem;

	const knot_rdata_t *rd = rr->rrs.rdata;
	knot_rdata_t *nrd = out->rrs.rdata;
	for (uint16_t i = 0; i < rr->rrs.count; i++) {
		size_t off = 0, blen = 0;
		int ret = mxf_denial_bitmap(rr->type, rd, &off);
		if (ret == KNOT_EOK) {
			memcpy(nrd->data, rd->data, off);
			ret = mxf_bitmap_add(rd->data + off, rd->len - off, type,
			                     nrd->data + off, &blen);
		}
		if (ret == KNOT_EOK && off + blen > UINT16_MAX) {
			ret = KNOT_ESPACE;
		}
		if (ret != KNOT_EOK) {
			knot_rrset_clear(out, &pkt->mm);
			return ret;
		}
		nrd->len = (uint16_t)(off + blen);
		if (nrd->len & 1) {
			nrd->data[nrd->len] = 0; /* Padding: rdatasets compare by memcmp. */
		}
		out->rrs.count++;
		out->rrs.size += knot_rdata_size(nrd->len);
		rd = mxf_rd_next(rd);
		nrd = knot_rdataset_next(nrd);
	}
	return KNOT_EOK;
}

/* Whether entry \a j holds RRSIGs over \a rr (knotd writes them as one
 * RRset per covered RRset, in the same section, owned by a copy of its
 * owner). */
static bool signs(const knot_pkt_t *pkt, uint16_t j, const knot_rrset_t *rr)
{
	const knot_rrset_t *sig = &pkt->rr[j];
	return sig->type == KNOT_RRTYPE_RRSIG && sig->rrs.count > 0 &&
	       sig->rrs.rdata->len >= 2 &&
	       knot_rrsig_type_covered(sig->rrs.rdata) == rr->type &&
	       mxf_dname_equal(sig->owner, rr->owner);
}

static bool listed(const mxf_subst_t *subst, size_t n, uint16_t idx)
{
	for (size_t k = 0; k < n; k++) {
		if (subst[k].idx == idx) {
			return true;
		}
	}
	return false;
}

/* Room for every edited record, one RRSIG entry in its place and a few
 * more dropped (knotd writes one). */
#define SUBST_MAX	(4 * MXF_DENIAL_MAX)

int mxf_denial_rewrite(knot_pkt_t *pkt, const mxf_denial_ctx_t *ctx,
                       const uint16_t *idx, size_t count)
{
	if (pkt == NULL || ctx == NULL || ctx->sign == NULL || idx == NULL ||
	    count > MXF_DENIAL_MAX) {
		return KNOT_EINVAL;
	}
	mxf_subst_t subst[SUBST_MAX];
	knot_rrset_t sigs[MXF_DENIAL_MAX];
	size_t n = 0;
	int ret = KNOT_EOK;

	for (size_t r = 0; r < count && ret == KNOT_EOK; r++) {
		uint16_t i = idx[r];
		if (i >= pkt->rrset_count || listed(subst, n, i)) {
			ret = KNOT_EINVAL;
			break;
		}
		mxf_subst_t *rec = &subst[n];
		ret = edited_copy(pkt, &pkt->rr[i], ctx->type, &rec->rr);
		if (ret != KNOT_EOK) {
			break;
		}
		rec->idx = i;
		rec->owned = true;
		rec->sig = NULL;
		n++;

		/* Signed like the zone's own records, with its keys. */
		ret = ctx->sign(ctx->sign_data, &rec->rr, &sigs[r]);
		if (ret != KNOT_EOK) {
			break;
		}

		/* The RRSIGs over the original: the first gets the new ones. */
		const knot_pktsection_t *sec = NULL;
		for (int s = KNOT_ANSWER; s <= KNOT_ADDITIONAL; s++) {
			const knot_pktsection_t *ps = &pkt->sections[s];
			if (i >= ps->pos && i < ps->pos + ps->count) {
				sec = ps;
			}
		}
		bool placed = false;
		for (uint16_t j = sec->pos; j < sec->pos + sec->count && ret == KNOT_EOK; j++) {
			if (!signs(pkt, j, &pkt->rr[i]) || listed(subst, n, j)) {
				continue;
			}
			if (n == SUBST_MAX) {
				ret = KNOT_ELIMIT;
				break;
			}
			subst[n].idx = j;
			subst[n].owned = false;
			subst[n].sig = NULL;
			if (placed) {
				knot_rrset_init_empty(&subst[n].rr);
			} else {
				subst[n].rr = sigs[r];
				placed = true;
			}
			n++;
		}
		if (!placed) {
			rec->sig = &sigs[r];
		}
	}

	if (ret != KNOT_EOK) {
		for (size_t k = 0; k < n; k++) {
			if (subst[k].owned) {
				knot_rrset_clear(&subst[k].rr, &pkt->mm);
			}
		}
		return ret;
	}
	return mxf_write_replace(pkt, subst, (uint16_t)n);
}
