/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*
 * Knot's own configuration as the module reads it (knotconf.h). Item names
 * and values are Knot's (src/knot/conf/schema.h and schema.c, the same in
 * v3.2.6, v3.4.6 and v3.5.6 unless said otherwise); every read goes through
 * the module API (knotd_conf(), knotd_conf_zone()).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "knotconf.h"

#define C_DATABASE	"\x08""database"
#define C_STORAGE	"\x07""storage"
#define C_KASP_DB	"\x07""kasp-db"
#define C_SIGNING	"\x0e""dnssec-signing"
#define C_DNSSEC_POLICY	"\x0d""dnssec-policy"
#define C_POLICY	"\x06""policy"
#define C_KEYSTORE	"\x08""keystore"
#define C_BACKEND	"\x07""backend"
#define C_CONFIG	"\x06""config"
#define C_KSK_ONLY	"\x08""ksk-only" /* Knot 3.5+. */
#define C_SERVER	"\x06""server"
#define C_ANS_ROTATION	"\x0f""answer-rotation"
#define C_MODULE	"\x06""module"

/* Knot's value for "backend: pem" (KEYSTORE_BACKEND_PEM, schema.h; no
 * public header has it). */
#define KEYSTORE_PEM	1

/* A module reference (mod_id_to_bin(), conf/tools.c): the module's name as
 * a yp_name_t (length byte, name), then "ID" and a NUL when it has an id. */
#define ONLINESIGN	"\x0e""mod-onlinesign"
#define MXFILTER_REF	"\x0c""mod-mxfilter"

/* Knot writes a module's log line as "[ZONE.] module 'mod-mxfilter/ID', "
 * and the text (log_msg_text(), common/log.c); the zone as text, without
 * its final dot, inside the brackets. Assumed when the zone is unknown: */
#define PREFIX_ZONE_MAX	256

bool mxf_knot_signs(knotd_mod_t *mod)
{
	return knotd_conf_zone(mod, C_SIGNING, knotd_mod_zone(mod)).single.boolean;
}

bool mxf_knot_rotation(knotd_mod_t *mod)
{
	return knotd_conf(mod, C_SERVER, C_ANS_ROTATION, NULL).single.boolean;
}

static char *path_join(const char *base, const char *path)
{
	if (path == NULL || path[0] == '\0') {
		return strdup(base);
	}
	if (path[0] == '/') {
		return strdup(path);
	}
	size_t len = strlen(base) + strlen(path) + 2;
	char *out = malloc(len);
	if (out != NULL) {
		(void)snprintf(out, len, "%s/%s", base, path);
	}
	return out;
}

/* One key store of the zone's policy. */
typedef struct {
	unsigned backend;
	const char *config; /* Directory of a PEM store, relative to kasp-db. */
	bool ksk_only;      /* Knot 3.5 puts no ZSK there. */
} keystore_t;

/*
 * The key stores of the zone's policy in the order Knot searches them for a
 * private key (Knot's default store, PEM "keys", without a policy or a
 * policy "keystore"): fills up to \a max, returns how many there are.
 * Knot 3.2 and 3.4 allow one store per policy, 3.5 a list: Knot answers the
 * item as multi-valued exactly when it is one, and only then is "ksk-only"
 * read (knotd_conf() of an item the running Knot does not know crashes it).
 */
static size_t policy_keystores(knotd_mod_t *mod, keystore_t *out, size_t max)
{
	knotd_conf_t policy = knotd_conf_zone(mod, C_DNSSEC_POLICY, knotd_mod_zone(mod));
	knotd_conf_t list = { .count = 0 };
	if (policy.count > 0 && policy.single.data_len > 0) {
		list = knotd_conf(mod, C_POLICY, C_KEYSTORE, &policy);
	}
	if (list.count == 0) {
		out[0] = (keystore_t){ .backend = KEYSTORE_PEM, .config = "keys" };
		return 1;
	}
	for (size_t i = 0; i < list.count && i < max; i++) {
		knotd_conf_t id = { .count = 1 };
		id.single = (list.multi != NULL) ? list.multi[i] : list.single;
		out[i].backend = knotd_conf(mod, C_KEYSTORE, C_BACKEND, &id).single.option;
		out[i].config = knotd_conf(mod, C_KEYSTORE, C_CONFIG, &id).single.string;
		out[i].ksk_only = list.multi != NULL &&
		                  knotd_conf(mod, C_KEYSTORE, C_KSK_ONLY, &id).single.boolean;
	}
	size_t count = list.count;
	knotd_conf_free(&list);
	return count;
}

void mxf_knot_keystores(knotd_mod_t *mod, mxf_knot_keys_t *keys)
{
	*keys = (mxf_knot_keys_t) { .count = 0 };
	keystore_t ks[MXF_MAX_KEYSTORES];
	size_t count = policy_keystores(mod, ks, MXF_MAX_KEYSTORES);
	if (count > MXF_MAX_KEYSTORES) {
		keys->error = "too many key stores";
		return;
	}
	size_t zsk = 0;
	while (zsk + 1 < count && ks[zsk].ksk_only) {
		zsk++;
	}
	if (ks[zsk].backend != KEYSTORE_PEM) {
		keys->error = "only the PEM key store is supported";
		return;
	}

	knotd_conf_t storage = knotd_conf(mod, C_DATABASE, C_STORAGE, NULL);
	knotd_conf_t kaspdb = knotd_conf(mod, C_DATABASE, C_KASP_DB, NULL);
	char *base = path_join("/", storage.single.string);
	char *kasp = (base != NULL) ? path_join(base, kaspdb.single.string) : NULL;
	free(base);
	for (size_t i = 0; i < count && kasp != NULL; i++) {
		if (ks[i].backend != KEYSTORE_PEM) {
			continue;
		}
		char *path = path_join(kasp, ks[i].config);
		if (path == NULL) {
			break;
		}
		keys->dir[keys->count++] = path;
	}
	if (kasp == NULL || keys->count == 0) {
		keys->error = "out of memory";
	}
	free(kasp);
}

void mxf_knot_keys_free(mxf_knot_keys_t *keys)
{
	for (size_t i = 0; i < keys->count; i++) {
		free(keys->dir[i]);
	}
	keys->count = 0;
}

void mxf_knot_modules(knotd_mod_t *mod, mxf_knot_modules_t *out)
{
	knotd_conf_t mods = knotd_conf_zone(mod, C_MODULE, knotd_mod_zone(mod));
	*out = (mxf_knot_modules_t) { .onlinesign = false };
	for (size_t i = 0; i < mods.count; i++) {
		const uint8_t *d = mods.multi[i].data;
		size_t len = mods.multi[i].data_len;
		out->onlinesign |= d != NULL && len >= sizeof(ONLINESIGN) - 1 &&
		                   memcmp(d, ONLINESIGN, sizeof(ONLINESIGN) - 1) == 0;
		/* Name, id, NUL: the id is len - sizeof(MXFILTER_REF) long. */
		if (d != NULL && len > sizeof(MXFILTER_REF) &&
		    memcmp(d, MXFILTER_REF, sizeof(MXFILTER_REF) - 1) == 0 &&
		    len - sizeof(MXFILTER_REF) > out->id_len) {
			out->id_len = len - sizeof(MXFILTER_REF);
		}
	}
	knotd_conf_free(&mods);
}

uint16_t mxf_knot_line_prefix(knotd_mod_t *mod, size_t id_len)
{
	knot_dname_txt_storage_t txt;
	size_t zone = PREFIX_ZONE_MAX;
	if (knot_dname_to_str(txt, knotd_mod_zone(mod), sizeof(txt)) != NULL) {
		zone = strlen(txt);
		zone -= (zone > 0 && txt[zone - 1] == '.');
	}
	size_t len = sizeof("[") - 1 + zone + sizeof(".] ") - 1 +
	             sizeof("module 'mod-mxfilter") - 1 + (id_len > 0 ? 1 + id_len : 0) +
	             sizeof("', ") - 1;
	return (len < UINT16_MAX) ? (uint16_t)len : UINT16_MAX;
}
