/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*
 * Engine-internal helpers on names and rdata in wire form, and the hash the
 * audit limiter and the signature cache share (not installed). Also the
 * one place for libknot calls whose form differs between the Knot series
 * the engine builds against (mxf_dname_next_label()).
 *
 * Label length bytes are at most 63, never ASCII letters, so folding the
 * case of a whole wire-form name touches its letters only, and a byte-wise
 * comparison of two equally sized wire forms is a name comparison.
 */

#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <libknot/libknot.h>

/* Wire size of a flat (uncompressed) name: knot_dname_size() without its
 * compression-pointer case, inlined where the size of a name in rr[] (libknot
 * stores them flat) is needed on the busy path, instead of a call through
 * the PLT per owner (about 15 instructions each on an enforced answer). */
static inline size_t mxf_flat_name_size(const uint8_t *name)
{
	size_t size = 0;
	while (name[size] != 0) {
		size += 1 + name[size];
	}
	return size + 1;
}

/*
 * Next label of an uncompressed domain name (not a name in a packet).
 *
 * Not knot_wire_next_label(name, NULL): libknot 3.4 declares its wire
 * argument non-null (-Werror=nonnull) and asserts it; the 3.4 replacement,
 * knot_dname_next_label(), does not exist in 3.2.
 */
static inline const knot_dname_t *mxf_dname_next_label(const knot_dname_t *name)
{
	return name + name[0] + 1;
}

/* The record after \a rd in its rdataset (libknot's takes a mutable one). */
static inline const knot_rdata_t *mxf_rd_next(const knot_rdata_t *rd)
{
	return knot_rdataset_next((knot_rdata_t *)rd);
}

/* Whether \a rr is an RRSIG RRset over \a type (its first record says). */
static inline bool mxf_rrsig_covers(const knot_rrset_t *rr, uint16_t type)
{
	return rr->type == KNOT_RRTYPE_RRSIG && rr->rrs.count > 0 &&
	       rr->rrs.rdata->len >= 2 &&
	       knot_rrsig_type_covered(rr->rrs.rdata) == type;
}

/* ASCII upper case to lower case, one byte. */
static inline uint8_t mxf_lower(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') ? c | 0x20 : c;
}

/* ASCII upper case to lower case in 8 bytes at once (exact: bytes >= 0x80
 * and non-letters are kept). */
static inline uint64_t mxf_lower8(uint64_t w)
{
	uint64_t hept = w & 0x7f7f7f7f7f7f7f7fULL;
	uint64_t ge_a = hept + 0x3f3f3f3f3f3f3f3fULL; /* bit 7: byte >= 'A' */
	uint64_t gt_z = hept + 0x2525252525252525ULL; /* bit 7: byte > 'Z' */
	uint64_t upper = (ge_a ^ gt_z) & ~w & 0x8080808080808080ULL;
	return w | (upper >> 2);
}

/* Whether \a n bytes of wire name \a a equal the lower-case \a lower,
 * ignoring ASCII case. */
static inline bool mxf_wire_case_equal(const uint8_t *a, const uint8_t *lower, size_t n)
{
	if (n >= 8) {
		/* Whole words, then the last 8 bytes (overlapping the previous
		 * word when n is not a multiple of 8): no byte loop. */
		uint64_t x, y;
		for (size_t i = 0; i + 8 <= n; i += 8) {
			memcpy(&x, a + i, 8);
			memcpy(&y, lower + i, 8);
			if (mxf_lower8(x) != y) {
				return false;
			}
		}
		memcpy(&x, a + n - 8, 8);
		memcpy(&y, lower + n - 8, 8);
		return mxf_lower8(x) == y;
	}
	for (size_t i = 0; i < n; i++) {
		if (mxf_lower(a[i]) != lower[i]) {
			return false;
		}
	}
	return true;
}

/* Whether two flat names are equal ignoring ASCII case: one memcmp when
 * they are the same bytes (a name and its copy), libknot otherwise. */
static inline bool mxf_dname_equal(const uint8_t *a, const uint8_t *b)
{
	size_t n = mxf_flat_name_size(a);
	if (n != mxf_flat_name_size(b)) {
		return false;
	}
	return memcmp(a, b, n) == 0 || knot_dname_is_case_equal(a, b);
}

/*** Hashing (seeded by the caller; not cryptographic). ***/

#define MXF_HASH_MUL	0x9E3779B97F4A7C15ULL

/* Final avalanche of a hash (every input bit reaches every output bit). */
static inline uint64_t mxf_hash_mix(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

/* Folds \a len bytes into \a h, eight per step; \a fold lower-cases them
 * first (inlined with a constant, so each caller gets its own loop). From 8
 * bytes on, the last step reads the last 8 bytes, overlapping the previous
 * step (no partial word to assemble); the length, folded in first, keeps
 * inputs of different sizes apart. */
static inline uint64_t mxf_hash_words(uint64_t h, const uint8_t *p, size_t len, bool fold)
{
	h ^= len;
	uint64_t w = 0;
	if (len < 8) {
		if (len > 0) {
			memcpy(&w, p, len);
		}
	} else {
		const uint8_t *last = p + len - 8;
		for (; p < last; p += 8) {
			memcpy(&w, p, 8);
			h = (h ^ (fold ? mxf_lower8(w) : w)) * MXF_HASH_MUL;
			h ^= h >> 29;
		}
		memcpy(&w, last, 8);
	}
	h = (h ^ (fold ? mxf_lower8(w) : w)) * MXF_HASH_MUL;
	return h ^ (h >> 29);
}
