/*
 * wiresens._depthparse: one-pass exact parsing of Binance depth messages and
 * per-level order-book apply, for wiresens.binance.fastdepth and wiresens.book.
 *
 * Why C: the numpy path needs ~25-40 vectorised passes per decimal token and ~50
 * numpy calls per book apply, which together cost about what json.loads spends
 * on the whole message. One byte loop here parses a token in a few ns and a
 * binary search + memmove applies a level in tens of ns.
 *
 * Exactness: a token is accepted only in the plain shape digits[.digits] with
 * at most 8 non-zero decimals and a value <= INT64_MAX (8 implied decimals), and
 * the result equals wiresens.fixedpoint.to_fixed. Anything else (sign, blanks,
 * escapes, more decimals, overflow, unexpected JSON) makes the call report
 * failure (-1 / None) and the caller takes the exact Python path, which accepts
 * or refuses as to_fixed does. Nothing here raises on market data, and no input
 * can make it read or write outside the buffers it was given.
 *
 * Only the CPython C API and the buffer protocol are used (numpy arrays,
 * bytearrays and memoryviews all work as int64 buffers).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define INT_LIMIT 92233720368ULL /* whole part of INT64_MAX / 1e8 */
#define FRAC_LIMIT 54775807ULL   /* fraction of INT64_MAX / 1e8 */

static const uint64_t POW10[9] = {
    1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL, 10000000ULL, 100000000ULL,
};

#define IS_DIGIT(c) ((unsigned char)((c) - '0') < 10)
#define IS_WS(c) ((c) == ' ' || (c) == '\n' || (c) == '\r' || (c) == '\t')

static inline const char *
skip_ws(const char *p, const char *end)
{
    while (p < end && IS_WS(*p)) {
        p++;
    }
    return p;
}

/* 8 ASCII digits (little-endian word) -> their value; the classic SWAR parse. */
static inline uint64_t
swar8(uint64_t w)
{
    w &= 0x0F0F0F0F0F0F0F0FULL;
    w = (w * 2561) >> 8;
    w &= 0x00FF00FF00FF00FFULL;
    w = (w * 6553601) >> 16;
    w &= 0x0000FFFF0000FFFFULL;
    w = (w * 42949672960001ULL) >> 32;
    return w;
}

/* Bit 7 set in every byte of w that is not an ASCII digit. Only the lowest flagged
   byte is exact (a borrow or carry may flag bytes above it), which is all we use. */
static inline uint64_t
nondigits8(uint64_t w)
{
    return ((w + 0x4646464646464646ULL) | (w - 0x3030303030303030ULL) | w) &
           0x8080808080808080ULL;
}

#define ZEROS8 0x3030303030303030ULL

/*
 * p: first byte after the opening quote. On success stores the fixed-point value
 * and returns the address of the closing quote; NULL when the token is not in the
 * plain shape (the caller falls back to the exact Python path).
 *
 * Fast path: up to 8 integer digits and up to 8 decimals are each read as one
 * little-endian word, the digit run found from the non-digit mask, padded with
 * '0' bytes and converted with the SWAR parse. Longer runs, or a token within 8
 * bytes of the buffer end, take the byte loop, which gives the same values.
 */
static inline const char *
parse_token(const char *p, const char *end, int64_t *out)
{
    uint64_t whole = 0, frac = 0;
    const char *start = p;
    int any = 0;

    if (end - p >= 8) {
        uint64_t w, t;
        int ni;
        memcpy(&w, p, 8);
        t = nondigits8(w);
        if (t != 0) {
            ni = __builtin_ctzll(t) >> 3; /* leading digits */
            if (ni == 0) {
                whole = 0;
            }
            else {
                /* Right-align the ni digits, '0' bytes in front. */
                whole = swar8((w << (8 * (8 - ni))) | (ZEROS8 >> (8 * ni)));
            }
            p += ni;
            any = ni != 0;
            if (*p == '.' && end - p >= 9) {
                memcpy(&w, p + 1, 8);
                t = nondigits8(w);
                if (t == 0) {
                    if (end - p >= 10 && p[9] == '"') {
                        frac = swar8(w);
                        any = 1;
                        p += 9;
                        goto done;
                    }
                }
                else {
                    int nf = __builtin_ctzll(t) >> 3;
                    if (p[1 + nf] == '"') {
                        if (nf) {
                            uint64_t keep = ~0ULL >> (8 * (8 - nf));
                            frac = swar8((w & keep) | (ZEROS8 & ~keep));
                            any = 1;
                        }
                        p += 1 + nf;
                        goto done;
                    }
                }
            }
            else if (*p == '"') {
                goto done;
            }
            /* anything else: start over with the byte loop */
            p = start;
            whole = 0;
            frac = 0;
            any = 0;
        }
    }
    while (p < end && IS_DIGIT(*p)) {
        whole = whole * 10 + (uint64_t)(*p - '0');
        if (whole > INT_LIMIT) {
            return NULL; /* cannot overflow: checked after every digit */
        }
        p++;
    }
    any = p != start;
    if (p < end && *p == '.') {
        const char *fs = ++p;
        int nf = 0;
        while (p < end && IS_DIGIT(*p)) {
            if (nf < 8) {
                frac = frac * 10 + (uint64_t)(*p - '0');
                nf++;
            }
            else if (*p != '0') {
                return NULL; /* a 9th non-zero decimal: to_fixed refuses, never rounds */
            }
            p++;
        }
        if (p != fs) {
            any = 1;
        }
        frac *= POW10[8 - nf];
    }
done:
    if (!any || p >= end || *p != '"') {
        return NULL;
    }
    if (whole > INT_LIMIT || (whole == INT_LIMIT && frac > FRAC_LIMIT)) {
        return NULL;
    }
    *out = (int64_t)(whole * 100000000ULL + frac);
    return p;
}

/*
 * One JSON level array: ws '[' ws ( level ( ws ',' ws level )* )? ws ']', where
 * level = '[' ws "tok" ws ',' ws "tok" ws ']'. Values go to out[*n], out[*n + 1]...
 * Returns the address after the closing ']' or NULL (bad shape, or out is full).
 */
static const char *
parse_array(const char *p, const char *end, int64_t *out, Py_ssize_t cap, Py_ssize_t *n)
{
    Py_ssize_t k = *n;

    p = skip_ws(p, end);
    if (p >= end || *p != '[') {
        return NULL;
    }
    p = skip_ws(p + 1, end);
    if (p < end && *p == ']') {
        return p + 1;
    }
    for (;;) {
        if (p >= end || *p != '[') {
            return NULL;
        }
        if (k + 2 > cap) {
            return NULL;
        }
        p = skip_ws(p + 1, end);
        if (p >= end || *p != '"') {
            return NULL;
        }
        p = parse_token(p + 1, end, &out[k]);
        if (p == NULL) {
            return NULL;
        }
        p = skip_ws(p + 1, end);
        if (p >= end || *p != ',') {
            return NULL;
        }
        p = skip_ws(p + 1, end);
        if (p >= end || *p != '"') {
            return NULL;
        }
        p = parse_token(p + 1, end, &out[k + 1]);
        if (p == NULL) {
            return NULL;
        }
        p = skip_ws(p + 1, end);
        if (p >= end || *p != ']') {
            return NULL;
        }
        k += 2;
        p = skip_ws(p + 1, end);
        if (p >= end) {
            return NULL;
        }
        if (*p == ']') {
            *n = k;
            return p + 1;
        }
        if (*p != ',') {
            return NULL;
        }
        p = skip_ws(p + 1, end);
    }
}

/* An int64 buffer: 8-byte items of an integer format numpy or array/memoryview use. */
static int
int64_format(const Py_buffer *view)
{
    const char *f = view->format;
    if (view->itemsize != 8) {
        return 0;
    }
    if (f == NULL) {
        return 0; /* unsigned bytes would have itemsize 1 anyway */
    }
    if (*f == '@' || *f == '=' || *f == '<') {
        f++;
    }
    return (f[0] == 'l' || f[0] == 'q') && f[1] == '\0';
}

static int
get_out_buffer(PyObject *obj, Py_buffer *view, const char *what)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) {
        return -1;
    }
    if (!int64_format(view) || view->ndim != 1) {
        PyErr_Format(PyExc_TypeError, "%s must be a writable 1-d int64 buffer (numpy int64 array)",
                     what);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(parse_levels_doc,
             "parse_levels(raw, out, /) -> int\n\n"
             "Convert every quoted decimal in ``raw`` (JSON level arrays, one or several\n"
             "joined by commas) into ``out`` as int64 fixed point, in order (price, qty,\n"
             "price, qty, ...). Like the numpy path, only the quotes delimit tokens: the\n"
             "bytes between them are not checked. Returns the number of values written,\n"
             "or -1 when a token is outside the plain shape or ``out`` is too small (use\n"
             "the exact Python path then).");

static PyObject *
parse_levels(PyObject *Py_UNUSED(mod), PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer src, dst;
    Py_ssize_t n = 0, cap;
    const char *p, *end;
    int64_t *out;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "parse_levels(raw, out) takes 2 arguments");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &src, PyBUF_C_CONTIGUOUS) < 0) {
        return NULL;
    }
    if (get_out_buffer(args[1], &dst, "out") < 0) {
        PyBuffer_Release(&src);
        return NULL;
    }
    p = (const char *)src.buf;
    end = p + src.len;
    out = (int64_t *)dst.buf;
    cap = dst.shape[0];
    for (;;) {
        p = memchr(p, '"', (size_t)(end - p));
        if (p == NULL) {
            break;
        }
        if (n >= cap) {
            n = -1;
            break;
        }
        p = parse_token(p + 1, end, &out[n]);
        if (p == NULL) {
            n = -1;
            break;
        }
        n++;
        p++;
    }
    PyBuffer_Release(&dst);
    PyBuffer_Release(&src);
    return PyLong_FromSsize_t(n);
}

/* A JSON integer that fits int64 (what msgspec gives an ``int`` field). */
static const char *
parse_int(const char *p, const char *end, int64_t *out)
{
    int neg = 0;
    uint64_t v = 0;

    if (p < end && *p == '-') {
        neg = 1;
        p++;
    }
    if (p >= end || !IS_DIGIT(*p)) {
        return NULL;
    }
    if (*p == '0') {
        p++;
    }
    else {
        while (p < end && IS_DIGIT(*p)) {
            if (v > 922337203685477580ULL) {
                return NULL; /* 19+ digits beyond int64: let msgspec decide */
            }
            v = v * 10 + (uint64_t)(*p - '0');
            p++;
        }
    }
    if (p < end && (IS_DIGIT(*p) || *p == '.' || *p == 'e' || *p == 'E')) {
        return NULL; /* leading zero or a float: not an int64 JSON integer */
    }
    if (v > (uint64_t)INT64_MAX + (uint64_t)neg) {
        return NULL;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return p;
}

/* Skip a string value without escapes or non-ASCII (else NULL: msgspec decides). */
static const char *
skip_string(const char *p, const char *end)
{
    p++;
    while (p < end && *p != '"') {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c >= 0x80 || c == '\\') {
            return NULL;
        }
        p++;
    }
    return p < end ? p + 1 : NULL;
}

/* Skip a JSON number in strict grammar. */
static const char *
skip_number(const char *p, const char *end)
{
    if (p < end && *p == '-') {
        p++;
    }
    if (p >= end || !IS_DIGIT(*p)) {
        return NULL;
    }
    if (*p == '0') {
        p++;
    }
    else {
        while (p < end && IS_DIGIT(*p)) {
            p++;
        }
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || !IS_DIGIT(*p)) {
            return NULL;
        }
        while (p < end && IS_DIGIT(*p)) {
            p++;
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) {
            p++;
        }
        if (p >= end || !IS_DIGIT(*p)) {
            return NULL;
        }
        while (p < end && IS_DIGIT(*p)) {
            p++;
        }
    }
    return p;
}

static const char *
skip_value(const char *p, const char *end)
{
    if (p >= end) {
        return NULL;
    }
    switch (*p) {
    case '"':
        return skip_string(p, end);
    case 't':
        return (end - p >= 4 && memcmp(p, "true", 4) == 0) ? p + 4 : NULL;
    case 'f':
        return (end - p >= 5 && memcmp(p, "false", 5) == 0) ? p + 5 : NULL;
    case 'n':
        return (end - p >= 4 && memcmp(p, "null", 4) == 0) ? p + 4 : NULL;
    default:
        return skip_number(p, end); /* objects and arrays: not expected, NULL */
    }
}

enum { K_U = 1, K_u = 2, K_pu = 4, K_E = 8, K_T = 16, K_b = 32, K_a = 64 };

PyDoc_STRVAR(decode_diff_doc,
             "decode_diff(payload, bids, bid_off, asks, ask_off, /) -> tuple | None\n\n"
             "Decode one ``depthUpdate`` body: the levels of ``b`` go to ``bids`` from\n"
             "index ``bid_off``, those of ``a`` to ``asks`` from ``ask_off``. Returns\n"
             "``(U, u, pu, E, T, n_bid_values, n_ask_values)`` (``pu`` -1, ``E``/``T`` 0\n"
             "when absent) or None when the body is not in the plain shape or a buffer\n"
             "is too small: the caller then decodes it the exact way.");

static PyObject *
decode_diff(PyObject *Py_UNUSED(mod), PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer src, bv, av;
    Py_ssize_t boff, aoff, nb, na;
    int64_t ids[5] = {0, 0, -1, 0, 0}; /* U, u, pu, E, T */
    int seen = 0, ok = 0;
    const char *p, *end;
    PyObject *res = NULL;

    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "decode_diff(payload, bids, bid_off, asks, ask_off) takes 5 arguments");
        return NULL;
    }
    boff = PyLong_AsSsize_t(args[2]);
    if (boff == -1 && PyErr_Occurred()) {
        return NULL;
    }
    aoff = PyLong_AsSsize_t(args[4]);
    if (aoff == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &src, PyBUF_C_CONTIGUOUS) < 0) {
        return NULL;
    }
    if (get_out_buffer(args[1], &bv, "bids") < 0) {
        PyBuffer_Release(&src);
        return NULL;
    }
    if (get_out_buffer(args[3], &av, "asks") < 0) {
        PyBuffer_Release(&bv);
        PyBuffer_Release(&src);
        return NULL;
    }
    nb = boff;
    na = aoff;
    if (boff < 0 || aoff < 0 || boff > bv.shape[0] || aoff > av.shape[0]) {
        goto out;
    }
    p = (const char *)src.buf;
    end = p + src.len;
    p = skip_ws(p, end);
    if (p >= end || *p != '{') {
        goto out;
    }
    p = skip_ws(p + 1, end);
    for (;;) {
        const char *key;
        Py_ssize_t klen;
        int bit = 0, idx = -1;

        if (p >= end || *p != '"') {
            goto out;
        }
        key = ++p;
        while (p < end && *p != '"') {
            unsigned char c = (unsigned char)*p;
            if (c < 0x20 || c >= 0x80 || c == '\\') {
                goto out;
            }
            p++;
        }
        if (p >= end) {
            goto out;
        }
        klen = p - key;
        p = skip_ws(p + 1, end);
        if (p >= end || *p != ':') {
            goto out;
        }
        p = skip_ws(p + 1, end);
        if (klen == 1) {
            switch (key[0]) {
            case 'U': bit = K_U; idx = 0; break;
            case 'u': bit = K_u; idx = 1; break;
            case 'E': bit = K_E; idx = 3; break;
            case 'T': bit = K_T; idx = 4; break;
            case 'b': bit = K_b; break;
            case 'a': bit = K_a; break;
            default: break;
            }
        }
        else if (klen == 2 && key[0] == 'p' && key[1] == 'u') {
            bit = K_pu;
            idx = 2;
        }
        if (bit & seen) {
            goto out; /* a repeated field: leave the semantics to msgspec */
        }
        seen |= bit;
        if (idx >= 0) {
            p = parse_int(p, end, &ids[idx]);
        }
        else if (bit == K_b) {
            p = parse_array(p, end, (int64_t *)bv.buf, bv.shape[0], &nb);
        }
        else if (bit == K_a) {
            p = parse_array(p, end, (int64_t *)av.buf, av.shape[0], &na);
        }
        else {
            p = skip_value(p, end);
        }
        if (p == NULL) {
            goto out;
        }
        p = skip_ws(p, end);
        if (p >= end) {
            goto out;
        }
        if (*p == '}') {
            break;
        }
        if (*p != ',') {
            goto out;
        }
        p = skip_ws(p + 1, end);
    }
    p = skip_ws(p + 1, end);
    if (p != end || (seen & (K_U | K_u | K_b | K_a)) != (K_U | K_u | K_b | K_a)) {
        goto out;
    }
    ok = 1;
out:
    PyBuffer_Release(&av);
    PyBuffer_Release(&bv);
    PyBuffer_Release(&src);
    if (!ok) {
        Py_RETURN_NONE;
    }
    res = PyTuple_New(7);
    if (res == NULL) {
        return NULL;
    }
    for (int i = 0; i < 5; i++) {
        PyObject *v = PyLong_FromLongLong(ids[i]);
        if (v == NULL) {
            Py_DECREF(res);
            return NULL;
        }
        PyTuple_SET_ITEM(res, i, v);
    }
    {
        PyObject *v = PyLong_FromSsize_t(nb - boff);
        PyObject *w = v ? PyLong_FromSsize_t(na - aoff) : NULL;
        if (w == NULL) {
            Py_XDECREF(v);
            Py_DECREF(res);
            return NULL;
        }
        PyTuple_SET_ITEM(res, 5, v);
        PyTuple_SET_ITEM(res, 6, w);
    }
    return res;
}

typedef struct {
    int64_t key;
    int64_t q;
} level_t;

/* Stable merge sort by key (arrival order decides between equal keys). */
static void
sort_levels(level_t *a, level_t *tmp, Py_ssize_t n)
{
    if (n <= 24) {
        for (Py_ssize_t i = 1; i < n; i++) {
            level_t x = a[i];
            Py_ssize_t j = i;
            while (j > 0 && a[j - 1].key > x.key) {
                a[j] = a[j - 1];
                j--;
            }
            a[j] = x;
        }
        return;
    }
    Py_ssize_t h = n / 2, i = 0, j = h, k = 0;
    sort_levels(a, tmp, h);
    sort_levels(a + h, tmp, n - h);
    if (a[h - 1].key <= a[h].key) {
        return; /* already in order: the common case, a diff lists its levels sorted */
    }
    while (i < h && j < n) {
        tmp[k++] = (a[j].key < a[i].key) ? a[j++] : a[i++];
    }
    while (i < h) {
        tmp[k++] = a[i++];
    }
    while (j < n) {
        tmp[k++] = a[j++];
    }
    memcpy(a, tmp, (size_t)n * sizeof(level_t));
}

#define STACK_LEVELS 256
#define SCRATCH_KEEP 65536 /* larger one-off calls (snapshots of huge books) free theirs */
static level_t *scratch = NULL;
static Py_ssize_t scratch_cap = 0;

/*
 * Apply m (price, qty) updates in order to one side: keys[0:n] ascending, qty
 * alongside; key = price (bids) or -price (asks). 0 deletes; deleting a missing
 * level is a no-op; the last update of a price wins. The caller guarantees
 * n + m <= capacity. Returns the new n, or -1 when scratch memory is unavailable
 * (nothing changed then).
 *
 * Why not a memmove per insert/delete: diffs touch levels hundreds of slots below
 * the top, so per-level moves cost ~10 us per message. Instead existing levels are
 * updated in place (a delete leaves a zero-quantity tombstone, which a later update
 * of the same price revives), new prices are collected, stably sorted (last one
 * wins), and one backward merge rewrites only the slots from the deepest change up
 * to the top (the best level is last): O(m log m + moved slots) per call.
 */
static Py_ssize_t
apply_core(int64_t *keys, int64_t *qty, Py_ssize_t n, const char *pp, Py_ssize_t ps,
           const char *qp, Py_ssize_t qs, Py_ssize_t m, int neg)
{
    level_t stack_ins[STACK_LEVELS], stack_tmp[STACK_LEVELS];
    level_t *ins = stack_ins, *tmp = stack_tmp;
    Py_ssize_t k = 0, lo = n, tomb = 0, hint = n;

    if (m > STACK_LEVELS) {
        /* A batch of diffs: reuse one scratch area instead of a malloc per call, whose
           fresh pages cost more than the sort (the GIL serialises every caller). */
        if (m <= SCRATCH_KEEP) {
            if (m > scratch_cap) {
                level_t *grown = PyMem_Realloc(scratch, (size_t)m * 2 * sizeof(level_t));
                if (grown == NULL) {
                    return -1;
                }
                scratch = grown;
                scratch_cap = m;
            }
            ins = scratch;
        }
        else {
            ins = PyMem_Malloc((size_t)m * 2 * sizeof(level_t));
            if (ins == NULL) {
                return -1;
            }
        }
        tmp = ins + m;
    }
    for (Py_ssize_t i = 0; i < m; i++) {
        int64_t price, q, key;
        Py_ssize_t a = 0, b = n;

        memcpy(&price, pp + i * ps, 8);
        memcpy(&q, qp + i * qs, 8);
        /* Unsigned negation: wraps like numpy's for INT64_MIN instead of being UB. */
        key = neg ? (int64_t)(0 - (uint64_t)price) : price;
        if (n == 0 || keys[n - 1] < key) {
            a = n; /* above the best level: no search */
        }
        else {
            /* Gallop down from the top first: most updates are near it, so the
               binary search below runs over a short range. keys[b] >= key. */
            Py_ssize_t step = 1;
            /* A diff lists its levels from the top down (keys descending on both
               sides): start from the previous level's slot when it is above. */
            b = (hint < n && keys[hint] >= key) ? hint : n - 1;
            while (b - step >= 0 && keys[b - step] >= key) {
                b -= step;
                step <<= 1;
            }
            a = b - step + 1 > 0 ? b - step + 1 : 0;
            {
                /* Branchless lower bound in keys[a..b] (keys[b] >= key): the
                   comparisons are unpredictable, a conditional move is not. */
                const int64_t *base = keys + a;
                Py_ssize_t len = b - a + 1;
                while (len > 1) {
                    Py_ssize_t half = len >> 1;
                    base = (base[half] < key) ? base + half : base;
                    len -= half;
                }
                a = (Py_ssize_t)(base - keys) + (*base < key);
            }
        }
        hint = a;
        if (a < n && keys[a] == key) {
            int64_t old = qty[a];
            if (old != 0 && q == 0) {
                tomb++;
                if (a < lo) {
                    lo = a;
                }
            }
            else if (old == 0 && q != 0) {
                tomb--;
            }
            qty[a] = q;
        }
        else {
            /* Filled from the back: a diff's levels arrive with keys descending, so
               each diff's run ends up ascending and the sort below has little to do. */
            k++;
            ins[m - k].key = key;
            ins[m - k].q = q;
            if (a < lo) {
                lo = a;
            }
        }
    }
    if (k > 0) {
        level_t *arr = ins + (m - k);
        Py_ssize_t w = 0;
        sort_levels(arr, tmp, k);
        for (Py_ssize_t i = 0; i < k; i++) {
            /* Equal keys keep their (reversed) arrival order: the first is the last
               update of that price, which wins. Writes trail reads (w <= m - k + i). */
            if (i > 0 && arr[i - 1].key == arr[i].key) {
                continue;
            }
            if (arr[i].q != 0) {
                ins[w++] = arr[i];
            }
        }
        k = w;
    }
    if (k > 0 || tomb > 0) {
        /* Backward merge of keys[lo:n] (dropping tombstones) and ins[0:k] into the
           slots ending at n + k - 1: the write index never passes the read index. */
        Py_ssize_t r = n - 1, w = n + k - 1, j = k - 1, len;
        while (j >= 0) {
            if (r >= lo && keys[r] > ins[j].key) {
                if (qty[r] != 0) {
                    keys[w] = keys[r];
                    qty[w] = qty[r];
                    w--;
                }
                r--;
            }
            else {
                keys[w] = ins[j].key;
                qty[w] = ins[j].q;
                w--;
                j--;
            }
        }
        while (r >= lo) {
            if (qty[r] != 0) {
                keys[w] = keys[r];
                qty[w] = qty[r];
                w--;
            }
            r--;
        }
        len = n + k - (w + 1);
        if (w + 1 != lo) {
            memmove(keys + lo, keys + w + 1, (size_t)len * 8);
            memmove(qty + lo, qty + w + 1, (size_t)len * 8);
        }
        n = lo + len;
    }
    if (ins != stack_ins && ins != scratch) {
        PyMem_Free(ins);
    }
    return n;
}

static int
side_buffers(PyObject *const *args, Py_buffer *kv, Py_buffer *qv, Py_ssize_t *n, Py_ssize_t *cap)
{
    *n = PyLong_AsSsize_t(args[2]);
    if (*n == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (get_out_buffer(args[0], kv, "keys") < 0) {
        return -1;
    }
    if (get_out_buffer(args[1], qv, "qty") < 0) {
        PyBuffer_Release(kv);
        return -1;
    }
    *cap = kv->shape[0] < qv->shape[0] ? kv->shape[0] : qv->shape[0];
    if (*n < 0 || *n > *cap) {
        PyErr_SetString(PyExc_ValueError, "n must lie between 0 and the capacity of keys/qty");
        PyBuffer_Release(qv);
        PyBuffer_Release(kv);
        return -1;
    }
    return 0;
}

static int
get_sign(PyObject *obj, int *neg)
{
    long s = PyLong_AsLong(obj);
    if (s == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (s != 1 && s != -1) {
        PyErr_SetString(PyExc_ValueError, "sign must be +1 (bids) or -1 (asks)");
        return -1;
    }
    *neg = s < 0;
    return 0;
}

PyDoc_STRVAR(apply_levels_doc,
             "apply_levels(keys, qty, n, values, start, stop, sign, /) -> int\n\n"
             "Apply the (price, qty) pairs ``values[start:stop]`` in order to a book side\n"
             "whose used slots are ``keys[:n]``/``qty[:n]``. Returns the new length, or -1\n"
             "(nothing changed) when the side lacks room for ``(stop - start) / 2`` inserts.");

static PyObject *
apply_levels(PyObject *Py_UNUSED(mod), PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer kv, qv, vv;
    Py_ssize_t n, cap, start, stop, m;
    int neg;

    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "apply_levels(keys, qty, n, values, start, stop, sign) takes 7 arguments");
        return NULL;
    }
    start = PyLong_AsSsize_t(args[4]);
    if (start == -1 && PyErr_Occurred()) {
        return NULL;
    }
    stop = PyLong_AsSsize_t(args[5]);
    if (stop == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (get_sign(args[6], &neg) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[3], &vv, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) {
        return NULL;
    }
    if (!int64_format(&vv) || vv.ndim != 1 || start < 0 || stop > vv.shape[0] || stop < start ||
        ((stop - start) & 1)) {
        PyBuffer_Release(&vv);
        PyErr_SetString(PyExc_ValueError,
                        "values must be a 1-d int64 buffer and start:stop an even slice of it");
        return NULL;
    }
    if (side_buffers(args, &kv, &qv, &n, &cap) < 0) {
        PyBuffer_Release(&vv);
        return NULL;
    }
    m = (stop - start) / 2;
    if (n + m > cap) {
        n = -1;
    }
    else {
        const char *base = (const char *)vv.buf + start * 8;
        n = apply_core((int64_t *)kv.buf, (int64_t *)qv.buf, n, base, 16, base + 8, 16, m, neg);
        if (n < 0) {
            PyErr_NoMemory();
        }
    }
    PyBuffer_Release(&qv);
    PyBuffer_Release(&kv);
    PyBuffer_Release(&vv);
    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    return PyLong_FromSsize_t(n);
}

PyDoc_STRVAR(apply_side_doc,
             "apply_side(keys, qty, n, prices, quantities, sign, /) -> int\n\n"
             ":func:`apply_levels` for separate (possibly strided) int64 price and\n"
             "quantity arrays of equal length.");

static PyObject *
apply_side(PyObject *Py_UNUSED(mod), PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer kv, qv, pv, sv;
    Py_ssize_t n, cap, m;
    int neg;

    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "apply_side(keys, qty, n, prices, quantities, sign) takes 6 arguments");
        return NULL;
    }
    if (get_sign(args[5], &neg) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[3], &pv, PyBUF_FORMAT | PyBUF_STRIDES) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[4], &sv, PyBUF_FORMAT | PyBUF_STRIDES) < 0) {
        PyBuffer_Release(&pv);
        return NULL;
    }
    if (!int64_format(&pv) || !int64_format(&sv) || pv.ndim != 1 || sv.ndim != 1 ||
        pv.shape[0] != sv.shape[0]) {
        PyBuffer_Release(&sv);
        PyBuffer_Release(&pv);
        PyErr_SetString(PyExc_ValueError,
                        "prices and quantities must be 1-d int64 arrays of equal length");
        return NULL;
    }
    if (side_buffers(args, &kv, &qv, &n, &cap) < 0) {
        PyBuffer_Release(&sv);
        PyBuffer_Release(&pv);
        return NULL;
    }
    m = pv.shape[0];
    if (n + m > cap) {
        n = -1;
    }
    else {
        n = apply_core((int64_t *)kv.buf, (int64_t *)qv.buf, n, (const char *)pv.buf,
                       pv.strides[0], (const char *)sv.buf, sv.strides[0], m, neg);
        if (n < 0) {
            PyErr_NoMemory();
        }
    }
    PyBuffer_Release(&qv);
    PyBuffer_Release(&kv);
    PyBuffer_Release(&sv);
    PyBuffer_Release(&pv);
    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    return PyLong_FromSsize_t(n);
}

static PyMethodDef methods[] = {
    {"parse_levels", (PyCFunction)(void (*)(void))parse_levels, METH_FASTCALL, parse_levels_doc},
    {"decode_diff", (PyCFunction)(void (*)(void))decode_diff, METH_FASTCALL, decode_diff_doc},
    {"apply_levels", (PyCFunction)(void (*)(void))apply_levels, METH_FASTCALL, apply_levels_doc},
    {"apply_side", (PyCFunction)(void (*)(void))apply_side, METH_FASTCALL, apply_side_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "wiresens._depthparse",
    "Exact one-pass parsing of Binance depth levels and per-level book apply.",
    0,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__depthparse(void)
{
    return PyModuleDef_Init(&module);
}
