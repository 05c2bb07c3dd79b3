/* Internal to src/harness/rb_config*.c and rb_sweep.c: the schema table and shared helpers. */
#ifndef RB_CONFIG_INTERNAL_H
#define RB_CONFIG_INTERNAL_H

#include <stddef.h>

#include "harness/rb_config.h"
#include "harness/rb_yaml.h"

/* Value types of schema entries. */
enum {
    T_MAP = 1, /* nested map (kids) */
    T_STR,     /* any non-empty text */
    T_NAME,    /* [A-Za-z0-9._-]+ */
    T_PATH,    /* text with ${ENV} expansion */
    T_RANGE,   /* "a:b" fractions */
    T_INT,     /* int in [lo, hi] */
    T_U64,     /* uint64_t in [0, 2^63) */
    T_FLOAT,   /* double in [flo, fhi] ((flo, fhi] with F_LOPEN) */
    T_BOOL,    /* true | false */
    T_ENUM,    /* name → int value */
    T_ESTR,    /* name → static const char * (the table's spelling) */
    T_METHOD,  /* a registered rotation method (methods/rb_method.h) → its static name */
    T_BITS,    /* 2,3,4,5,6,8,16 */
    T_GROUP,   /* enum name or an integer > 0 (RB_QGRAN_GROUP); off = the rb_cfg_qtensor */
    T_CLIP,    /* float in (0, 1], or "search" with F_SEARCH; off = the rb_cfg_qtensor */
    T_LIST,    /* list of maps (kids); off = element array (rb_cfg_eval *, rb_cfg_task *), aux = int count,
                  lo = element size, hi = fewest entries */
    T_METRICS, /* list of enum names → bit set (unsigned) */
    T_NAMES,   /* list of unique names; off = char **, aux = int count */
    T_AXES,    /* sweep axes: map key.path → list (checked by rb_sweep.c, stored as nodes) */
    T_OPTS,    /* map name → scalar, checked against rotation.method's option table; off = char ** names,
                  off + sizeof(char **) = char ** values (rb_config.rotation layout), aux = int count */
};

enum {
    F_REQ = 1,     /* must be given */
    F_OPT = 2,     /* may be absent, no default (NULL / -1 / has = 0) */
    F_LOPEN = 4,   /* float range open at flo */
    F_SEARCH = 8,  /* T_CLIP accepts "search" */
    F_NOCASE = 16, /* enum names match case-insensitively */
    F_PRESET = 32, /* the quant map: preset fills bits not given */
    F_TASKS = 64,  /* a data.* key emitted only when data.tasks has entries (a config without tasks keeps
                      its canonical bytes, hence its run id) */
};

#define NOAUX ((size_t)-1)

typedef struct senum {
    const char *name;
    int value;
} senum;

typedef struct sentry {
    const char *name;
    int type, flags;
    const char *def; /* default as YAML text (NULL: required, optional, or a map) */
    size_t off;      /* field offset in the base struct (rb_config, or the element inside T_LIST) */
    size_t aux;      /* has-flag (optional maps/u64) or count (lists) offset; NOAUX */
    long long lo, hi;
    double flo, fhi;
    const senum *en;
    const struct sentry *kids; /* NULL-name terminated */
} sentry;

/* The root map of the schema. */
extern const sentry rb_cfg_schema[];

/* Validates `tree` (ownership taken, freed on error) into *out, emits the canonical YAML. */
int rb_cfg_validate(rb_ynode *tree, rb_config *out, rb_error *err);
/* The validated tree (post composition and overrides) of a config. */
const rb_ynode *rb_cfg_tree(const rb_config *cfg);
/* Canonical YAML of a validated config into *out (heap). RB_ENOMEM. */
int rb_cfg_emit(const rb_config *cfg, char **out);

/* Formats " (did you mean 'x'?)" or " (expected one of: a, b, ...)" for names of kids. */
void rb_cfg_hint_kids(const char *word, const sentry *kids, char *buf, size_t cap);

/* Override kinds: key=value sets any key of the schema (creating the maps on its way), +key=value
 * only a key that is not set, ++key=value like key=value; ~key removes a key that is set and not
 * required. */
enum { OV_SET = 0, OV_ADD, OV_FORCE, OV_DEL };

/* Applies one assignment to tree (a map) at `path` (dots, [N] or .N for list entries): sets `val`
 * (owned; NULL for OV_DEL). Key errors are reported at (file, line, col). */
int rb_cfg_assign(rb_ynode *tree, const char *path, int kind, rb_ynode *val, const char *file, int line, int col,
                  rb_error *err);
/* Schema entry a key path names (NULL with the error filled in). */
const sentry *rb_cfg_resolve(const char *path, const char *file, int line, int col, rb_error *err);

/* Sweep structure checks for a validated tree (used by rb_cfg_validate). */
int rb_sweep_check(const rb_ynode *sweep, rb_error *err);

#endif
