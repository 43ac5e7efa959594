/*  mxfilter: enforce a mail-filtering MX set in Knot DNS answers.
 *  SPDX-License-Identifier: GPL-3.0-or-later
 */

/*
 * module/knotconf.c, the module's reading of Knot's own configuration,
 * against a configuration shaped as each Knot series answers it. The
 * knotd_* calls it makes are defined here (the module normally gets them
 * from knotd): they answer from a table, the way Knot's query_module.c
 * does (a multi-valued item as a malloc'd array, even of one value; a
 * single one with count 0 when it is the default), and fail the test on a
 * call the running series would not survive: reading "ksk-only", which
 * Knot 3.2 and 3.4 do not know, of a policy whose key store is one value.
 *
 * Built against the knot/module.h of the series installed, so each series'
 * build (tests/debian/run) runs it against its own header.
 */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "knotconf.h"

/*** A configuration, and the knotd calls that read it. ***/

#define MAX_STORES	10

typedef struct {
	const char *id;
	unsigned backend;   /* 1 pem, 2 pkcs11 (Knot's schema.h). */
	const char *config;
	bool ksk_only;
} store_t;

typedef struct {
	const char *zone;
	const char *storage;
	const char *kasp_db;
	bool signs;
	const char *policy;        /* dnssec-policy, or NULL. */
	bool multi;                /* Knot 3.5: policy.keystore is a list. */
	const char *policy_stores[MAX_STORES]; /* The policy's keystore refs. */
	store_t stores[MAX_STORES];
	bool rotation;
	const char *modules[4];    /* Zone module references: "mod-NAME[/ID]". */
} fake_t;

static fake_t F;
static knot_dname_storage_t fake_zone;
static size_t live_arrays;   /* knotd_conf_t.multi not yet freed. */

/* Same yp name: length byte first, so no read past the shorter one. */
#define SAME(a, b)	((a)[0] == (uint8_t)(b)[0] && memcmp((a), (b), (a)[0] + 1) == 0)

static knotd_conf_t single_str(const char *s)
{
	knotd_conf_t out = { .count = (s != NULL) ? 1 : 0 };
	out.single.string = s;
	return out;
}

static knotd_conf_t single_bool(bool b)
{
	knotd_conf_t out = { .count = 1 };
	out.single.boolean = b;
	return out;
}

static knotd_conf_val_t ref(const char *id)
{
	knotd_conf_val_t v;
	memset(&v, 0, sizeof(v));
	v.data = (const uint8_t *)id;
	v.data_len = strlen(id) + 1;
	return v;
}

static knotd_conf_val_t *array(size_t count)
{
	knotd_conf_val_t *a = calloc(count, sizeof(*a));
	assert_non_null(a);
	live_arrays++;
	return a;
}

static const store_t *store(const knotd_conf_t *id)
{
	assert_non_null(id);
	for (size_t i = 0; i < MAX_STORES && F.stores[i].id != NULL; i++) {
		if (strcmp(F.stores[i].id, (const char *)id->single.data) == 0) {
			return &F.stores[i];
		}
	}
	fail_msg("no key store '%s'", (const char *)id->single.data);
	return NULL;
}

knotd_conf_t knotd_conf(knotd_mod_t *mod, const yp_name_t *section_name,
                        const yp_name_t *item_name, const knotd_conf_t *id)
{
	(void)mod;
	if (SAME(section_name, "\x08""database")) {
		if (SAME(item_name, "\x07""storage")) {
			return single_str(F.storage);
		}
		assert_true(SAME(item_name, "\x07""kasp-db"));
		return single_str(F.kasp_db);
	}
	if (SAME(section_name, "\x06""server")) {
		assert_true(SAME(item_name, "\x0f""answer-rotation"));
		return single_bool(F.rotation);
	}
	if (SAME(section_name, "\x06""policy")) {
		assert_true(SAME(item_name, "\x08""keystore"));
		assert_non_null(id);
		assert_string_equal((const char *)id->single.data, F.policy);
		size_t n = 0;
		while (n < MAX_STORES && F.policy_stores[n] != NULL) {
			n++;
		}
		knotd_conf_t out = { .count = 0 };
		if (n == 0) {
			return out; /* The default: Knot's own store. */
		}
		if (F.multi) {
			out.multi = array(n);
			for (size_t i = 0; i < n; i++) {
				out.multi[i] = ref(F.policy_stores[i]);
			}
		} else {
			assert_int_equal(n, 1);
			out.single = ref(F.policy_stores[0]);
		}
		out.count = n;
		return out;
	}
	assert_true(SAME(section_name, "\x08""keystore"));
	const store_t *s = store(id);
	knotd_conf_t out = { .count = 1 };
	if (SAME(item_name, "\x07""backend")) {
		out.single.option = s->backend;
	} else if (SAME(item_name, "\x06""config")) {
		out.single.string = s->config;
	} else {
		assert_true(SAME(item_name, "\x08""ksk-only"));
		/* Knot 3.2 and 3.4 have no such item: knotd_conf() of it would
		 * not return. */
		assert_true(F.multi);
		out.single.boolean = s->ksk_only;
	}
	return out;
}

knotd_conf_t knotd_conf_zone(knotd_mod_t *mod, const yp_name_t *item_name,
                             const knot_dname_t *zone)
{
	(void)mod;
	assert_true(knot_dname_is_equal(zone, fake_zone));
	if (SAME(item_name, "\x0e""dnssec-signing")) {
		return single_bool(F.signs);
	}
	knotd_conf_t out = { .count = 0 };
	if (SAME(item_name, "\x0d""dnssec-policy")) {
		if (F.policy != NULL) {
			out.count = 1;
			out.single = ref(F.policy);
		}
		return out;
	}
	assert_true(SAME(item_name, "\x06""module"));
	size_t n = 0;
	while (n < 4 && F.modules[n] != NULL) {
		n++;
	}
	if (n == 0) {
		return out;
	}
	/* As mod_id_to_bin() stores them: the name as a yp_name_t, then the id
	 * and a NUL. */
	static uint8_t data[4][128];
	out.multi = array(n);
	for (size_t i = 0; i < n; i++) {
		const char *slash = strchr(F.modules[i], '/');
		size_t name = slash != NULL ? (size_t)(slash - F.modules[i]) : strlen(F.modules[i]);
		data[i][0] = (uint8_t)name;
		memcpy(data[i] + 1, F.modules[i], name);
		size_t len = 1 + name;
		if (slash != NULL) {
			size_t id = strlen(slash + 1) + 1;
			memcpy(data[i] + len, slash + 1, id);
			len += id;
		}
		out.multi[i].data = data[i];
		out.multi[i].data_len = len;
	}
	out.count = n;
	return out;
}

void knotd_conf_free(knotd_conf_t *conf)
{
	if (conf->multi != NULL) {
		free(conf->multi);
		live_arrays--;
	}
	conf->multi = NULL;
	conf->count = 0;
}

#ifdef HAVE_KNOTD_CONST_MOD
const knot_dname_t *knotd_mod_zone(const knotd_mod_t *mod)
#else
const knot_dname_t *knotd_mod_zone(knotd_mod_t *mod)
#endif
{
	(void)mod;
	return fake_zone;
}

static knotd_mod_t *const MOD = (knotd_mod_t *)&F;

static void set(const fake_t *f)
{
	F = *f;
	assert_non_null(knot_dname_from_str(fake_zone, F.zone != NULL ? F.zone : "example.com.",
	                                    sizeof(fake_zone)));
}

/* The key stores of the configuration: the directories (NULL-terminated)
 * or the error. */
static void expect_keys(const fake_t *f, const char *error, const char *const *dirs)
{
	set(f);
	mxf_knot_keys_t keys;
	mxf_knot_keystores(MOD, &keys);
	if (error != NULL) {
		assert_non_null(keys.error);
		assert_string_equal(keys.error, error);
	} else {
		assert_null(keys.error);
	}
	size_t n = 0;
	while (dirs != NULL && dirs[n] != NULL) {
		assert_true(n < keys.count);
		assert_string_equal(keys.dir[n], dirs[n]);
		n++;
	}
	assert_int_equal(keys.count, n);
	mxf_knot_keys_free(&keys);
	assert_int_equal(live_arrays, 0);
}

#define DIRS(...)	((const char *const[]){ __VA_ARGS__, NULL })

/*** Key stores. ***/

/* No policy, or a policy without a key store: Knot's own PEM store "keys"
 * in kasp-db, itself in storage (or absolute). */
static void test_default_store(void **state)
{
	(void)state;
	fake_t f = { .storage = "/var/lib/knot", .kasp_db = "keys", .signs = true };
	expect_keys(&f, NULL, DIRS("/var/lib/knot/keys/keys"));
	f.policy = "p";
	expect_keys(&f, NULL, DIRS("/var/lib/knot/keys/keys"));
	f.kasp_db = "/srv/kasp";
	expect_keys(&f, NULL, DIRS("/srv/kasp/keys"));
	/* A relative storage is taken from the root (knotd's working
	 * directory as a service; Knot itself resolves it against its working
	 * directory): the module's path keeps the double slash it names in
	 * its error line. */
	f.storage = "var/knot";
	f.kasp_db = "kasp";
	expect_keys(&f, NULL, DIRS("//var/knot/kasp/keys"));
}

/* Knot 3.2 and 3.4: one store per policy, PEM or not. */
static void test_one_store(void **state)
{
	(void)state;
	fake_t f = {
		.storage = "/var/lib/knot", .kasp_db = "keys", .signs = true,
		.policy = "p", .policy_stores = { "pem" },
		.stores = { { "pem", 1, "store" }, { "abs", 1, "/keys/abs" }, { "hsm", 2, "pkcs11:x" } },
	};
	expect_keys(&f, NULL, DIRS("/var/lib/knot/keys/store"));
	f.policy_stores[0] = "abs";
	expect_keys(&f, NULL, DIRS("/keys/abs"));
	f.policy_stores[0] = "hsm";
	expect_keys(&f, "only the PEM key store is supported", NULL);
	/* "ksk-only" exists only with lists: asking for it would crash 3.4. */
	f.stores[2].ksk_only = true;
	expect_keys(&f, "only the PEM key store is supported", NULL);
}

/* Knot 3.5: a list, searched in order; ZSKs live in the first store that
 * is not "ksk-only", which must be PEM. */
static void test_store_list(void **state)
{
	(void)state;
	fake_t f = {
		.storage = "/var/lib/knot", .kasp_db = "keys", .signs = true,
		.policy = "p", .multi = true, .policy_stores = { "hsm", "pem" },
		.stores = { { "pem", 1, "store" }, { "old", 1, "/keys/old" },
		            { "hsm", 2, "pkcs11:x", true } },
	};
	expect_keys(&f, NULL, DIRS("/var/lib/knot/keys/store"));
	f.stores[2].ksk_only = false; /* ZSKs in the HSM. */
	expect_keys(&f, "only the PEM key store is supported", NULL);
	f.policy_stores[0] = "pem";
	f.policy_stores[1] = "old";
	f.policy_stores[2] = "hsm";
	expect_keys(&f, NULL, DIRS("/var/lib/knot/keys/store", "/keys/old"));
	f.stores[0].ksk_only = true; /* ZSKs in "old", still PEM. */
	expect_keys(&f, NULL, DIRS("/var/lib/knot/keys/store", "/keys/old"));
	/* A list of one is still a list (Knot answers it as one). */
	f.policy_stores[1] = NULL;
	f.policy_stores[2] = NULL;
	expect_keys(&f, NULL, DIRS("/var/lib/knot/keys/store"));
}

static void test_too_many_stores(void **state)
{
	(void)state;
	fake_t f = {
		.storage = "/var/lib/knot", .kasp_db = "keys", .signs = true,
		.policy = "p", .multi = true, .stores = { { "pem", 1, "store" } },
	};
	for (size_t i = 0; i < MXF_MAX_KEYSTORES; i++) {
		f.policy_stores[i] = "pem";
	}
	set(&f);
	mxf_knot_keys_t keys;
	mxf_knot_keystores(MOD, &keys);
	assert_null(keys.error);
	assert_int_equal(keys.count, MXF_MAX_KEYSTORES);
	mxf_knot_keys_free(&keys);
	f.policy_stores[MXF_MAX_KEYSTORES] = "pem";
	expect_keys(&f, "too many key stores", NULL);
}

/*** The rest. ***/

static void test_signs_rotation(void **state)
{
	(void)state;
	fake_t f = { .signs = true };
	set(&f);
	assert_true(mxf_knot_signs(MOD));
	assert_false(mxf_knot_rotation(MOD));
	f.signs = false;
	f.rotation = true;
	set(&f);
	assert_false(mxf_knot_signs(MOD));
	assert_true(mxf_knot_rotation(MOD));
}

static void expect_modules(const char *const *mods, bool onlinesign, size_t id_len)
{
	fake_t f = { .zone = "example.com." };
	for (size_t i = 0; mods[i] != NULL; i++) {
		f.modules[i] = mods[i];
	}
	set(&f);
	mxf_knot_modules_t m;
	mxf_knot_modules(MOD, &m);
	assert_int_equal(m.onlinesign, onlinesign);
	assert_int_equal(m.id_len, id_len);
	assert_int_equal(live_arrays, 0);
}

#define MODS(...)	((const char *const[]){ __VA_ARGS__, NULL })

/* The zone's module references: another module that signs answers, and the
 * id of this instance (the longest, with two). */
static void test_modules(void **state)
{
	(void)state;
	expect_modules(MODS(NULL), false, 0);
	expect_modules(MODS("mod-mxfilter"), false, 0);
	expect_modules(MODS("mod-mxfilter/securemail"), false, 10);
	expect_modules(MODS("mod-mxfilter/a", "mod-mxfilter/longer"), false, 6);
	expect_modules(MODS("mod-stats", "mod-onlinesign", "mod-mxfilter/x"), true, 1);
	expect_modules(MODS("mod-onlinesign/signer"), true, 0);
	/* Other modules whose names start the same way are others. */
	expect_modules(MODS("mod-mxfilter2/abc", "mod-onlinesigner"), false, 0);
}

/* Knot's "[ZONE.] module 'mod-mxfilter/ID', " before a line's text. */
static void test_line_prefix(void **state)
{
	(void)state;
	fake_t f = { .zone = "Example.COM." };
	set(&f);
	const char *with_id = "[example.com.] module 'mod-mxfilter/securemail', ";
	const char *without = "[example.com.] module 'mod-mxfilter', ";
	assert_int_equal(mxf_knot_line_prefix(MOD, 10), strlen(with_id));
	assert_int_equal(mxf_knot_line_prefix(MOD, 0), strlen(without));
	f.zone = ".";
	set(&f);
	assert_int_equal(mxf_knot_line_prefix(MOD, 0), strlen("[.] module 'mod-mxfilter', "));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_default_store),
		cmocka_unit_test(test_one_store),
		cmocka_unit_test(test_store_list),
		cmocka_unit_test(test_too_many_stores),
		cmocka_unit_test(test_signs_rotation),
		cmocka_unit_test(test_modules),
		cmocka_unit_test(test_line_prefix),
	};
	return cmocka_run_group_tests_name("knotconf", tests, NULL, NULL);
}
