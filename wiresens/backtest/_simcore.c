/*
 * wiresens.backtest._simcore: the back-test loop and the simulated venue in C.
 *
 * A line-for-line port of the pure-Python engine in wiresens/backtest/engine.py
 * (Simulation._run and the venue methods it calls), which stays the reference and the
 * fallback. Both give bit-identical fills, orders, samples and reports; a test runs
 * them side by side (tests/backtest/test_compiled.py). The policy is still Python: the
 * loop calls its deliver_book / deliver_trade / deliver_execution / deliver_timer, and
 * its requests come back through Core.submit (its OrderSink), which runs the Python
 * pre-trade check (wiresens.risk.check_filters) handed in at construction.
 *
 * Why C: with a market-making policy the Python venue, heaps and report plumbing
 * cost about twice what the policy itself costs (0.43 M events/s); here they cost a
 * few percent of the run.
 *
 * Ordering that results depend on, kept as in Python:
 *   - one sequence number orders arrivals and reports that share a timestamp;
 *   - resting price levels are walked in the order they were first created (Python
 *     dict insertion order), orders within a level in arrival order;
 *   - a crossing order takes market levels in price order.
 * Sums of qty * price are 128-bit (Python ints never overflow); floor division
 * follows Python's rounding toward minus infinity.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef __int128 i128;

#define BIG ((int64_t)1 << 62)
#define SCALE 100000000LL
#define EMPTY INT64_MIN

/* RecordKind / Side / OrderType / TimeInForce / ExecStatus / ExecType / RejectReason
   values; the module's CONSTANTS dict carries them, and wiresens.backtest.engine checks
   it against wiresens.records at import. */
#define K_NEW 10
#define K_CANCEL 11
#define K_REPLACE 12
#define SIDE_BUY 1
#define OT_MARKET 2
#define OT_LIMIT_MAKER 3
#define TIF_IOC 2
#define TIF_FOK 3
#define EV_TRADE 1
#define EV_RESET 2
#define S_NEW 1
#define S_PART 2
#define S_FILLED 3
#define S_CANCELED 4
#define S_REJECTED 6
#define S_EXPIRED 7
#define X_NEW 1
#define X_CANCELED 2
#define X_REJECTED 4
#define X_TRADE 5
#define X_EXPIRED 6
#define R_EXCHANGE 11
#define R_UNKNOWN_ORDER 9

static inline int64_t
floordiv(i128 a, int64_t b)
{
    i128 q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) {
        q -= 1;
    }
    return (int64_t)q;
}

static PyObject *
pylong_from_i128(i128 v)
{
    /* (hi << 64) + lo, exact for any 128-bit value. */
    int64_t hi = (int64_t)(v >> 64);
    uint64_t lo = (uint64_t)v;
    if (hi == 0 && lo <= (uint64_t)INT64_MAX) {
        return PyLong_FromLongLong((long long)lo);
    }
    if (hi == -1 && lo >= (uint64_t)INT64_MIN) {
        return PyLong_FromLongLong((long long)(int64_t)lo);
    }
    PyObject *h = PyLong_FromLongLong(hi);
    PyObject *l = PyLong_FromUnsignedLongLong(lo);
    PyObject *s = PyLong_FromLong(64);
    PyObject *r = NULL, *hs = NULL;
    if (h && l && s) {
        hs = PyNumber_Lshift(h, s);
        if (hs) {
            r = PyNumber_Add(hs, l);
        }
    }
    Py_XDECREF(h);
    Py_XDECREF(l);
    Py_XDECREF(s);
    Py_XDECREF(hs);
    return r;
}

/* -- int64 -> int64 hash map (open addressing, linear probing, backward-shift delete) */

typedef struct {
    int64_t key;
    int64_t val;
} Slot;

typedef struct {
    Slot *s;
    uint32_t cap; /* power of two */
    uint32_t n;
    int bits;
} Map;

static inline uint32_t
map_hash(const Map *m, int64_t key)
{
    return (uint32_t)(((uint64_t)key * 0x9E3779B97F4A7C15ULL) >> (64 - m->bits));
}

static int
map_init(Map *m, int bits)
{
    m->bits = bits;
    m->cap = 1u << bits;
    m->n = 0;
    m->s = PyMem_Malloc(sizeof(Slot) * m->cap);
    if (!m->s) {
        PyErr_NoMemory();
        return -1;
    }
    for (uint32_t i = 0; i < m->cap; i++) {
        m->s[i].key = EMPTY;
    }
    return 0;
}

static void
map_free(Map *m)
{
    PyMem_Free(m->s);
    m->s = NULL;
}

static inline int64_t
map_find(const Map *m, int64_t key)
{
    uint32_t mask = m->cap - 1;
    uint32_t i = map_hash(m, key);
    for (;;) {
        int64_t k = m->s[i].key;
        if (k == key) {
            return (int64_t)i;
        }
        if (k == EMPTY) {
            return -1;
        }
        i = (i + 1) & mask;
    }
}

static inline int64_t
map_get(const Map *m, int64_t key, int64_t dflt)
{
    int64_t i = map_find(m, key);
    return i < 0 ? dflt : m->s[i].val;
}

static int map_put(Map *m, int64_t key, int64_t val);

static int
map_grow(Map *m)
{
    Map bigger;
    if (map_init(&bigger, m->bits + 1) < 0) {
        return -1;
    }
    for (uint32_t i = 0; i < m->cap; i++) {
        if (m->s[i].key != EMPTY) {
            map_put(&bigger, m->s[i].key, m->s[i].val);
        }
    }
    map_free(m);
    *m = bigger;
    return 0;
}

static int
map_put(Map *m, int64_t key, int64_t val)
{
    uint32_t mask = m->cap - 1;
    uint32_t i = map_hash(m, key);
    for (;;) {
        int64_t k = m->s[i].key;
        if (k == key) {
            m->s[i].val = val;
            return 0;
        }
        if (k == EMPTY) {
            break;
        }
        i = (i + 1) & mask;
    }
    if ((m->n + 1) * 2 > m->cap) {
        if (map_grow(m) < 0) {
            return -1;
        }
        return map_put(m, key, val);
    }
    m->s[i].key = key;
    m->s[i].val = val;
    m->n++;
    return 0;
}

static void
map_del_at(Map *m, uint32_t i)
{
    uint32_t mask = m->cap - 1;
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (m->s[j].key == EMPTY) {
            break;
        }
        uint32_t k = map_hash(m, m->s[j].key);
        /* Entry j may move into the hole at i unless its home k lies cyclically in (i, j]. */
        int stays = (i <= j) ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) {
            m->s[i] = m->s[j];
            i = j;
        }
    }
    m->s[i].key = EMPTY;
    m->n--;
}

static inline int64_t
map_pop(Map *m, int64_t key, int64_t dflt)
{
    int64_t i = map_find(m, key);
    if (i < 0) {
        return dflt;
    }
    int64_t v = m->s[i].val;
    map_del_at(m, (uint32_t)i);
    return v;
}

static void
map_clear(Map *m)
{
    if (m->n == 0) {
        return;
    }
    for (uint32_t i = 0; i < m->cap; i++) {
        m->s[i].key = EMPTY;
    }
    m->n = 0;
}

/* -- venue state --------------------------------------------------------------------- */

typedef struct {
    int64_t cid, exch_id, price, qty, leaves, cum_qty, cum_quote, ahead;
    int32_t side, sym;
    int32_t next_free;
} Order;

typedef struct {
    int64_t price;
    int32_t prev, next; /* insertion-ordered list of a side's resting levels */
    int32_t n;
    Py_ssize_t cap;
    int32_t *ids; /* order indexes, arrival order */
} Level;

typedef struct {
    Map mkt;    /* replayed market levels: price -> qty */
    Map rest;   /* our resting levels: price -> Level index */
    Map traded; /* quantity traded at a price since the market last set it */
    int32_t head, tail;
} BSide;

typedef struct {
    BSide side[2]; /* 0: bids (our buys rest here), 1: asks */
    int64_t best_bid, best_ask;
} Book;

typedef struct {
    int64_t t, seq;
    int64_t kind, sym, cid, orig, price, qty, side, otype, tif;
} Arrival;

typedef struct {
    int64_t t, seq;
    int64_t sym;
    int64_t ts_exch, cid, orig, exch_id, trade_id, price, qty, last_px, last_qty, cum_qty,
        cum_quote, commission;
    int32_t side, status, exec_type, reason, err;
} Report;

typedef struct {
    char *p;
    size_t len, cap;
} Buf;

static int
buf_reserve(Buf *b, size_t extra)
{
    if (b->len + extra <= b->cap) {
        return 0;
    }
    size_t cap = b->cap ? b->cap : 1 << 16;
    while (cap < b->len + extra) {
        cap *= 2;
    }
    char *p = PyMem_Realloc(b->p, cap);
    if (!p) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

#define PUT64(p, off, v)                                                                  \
    do {                                                                                  \
        int64_t _v = (int64_t)(v);                                                        \
        memcpy((p) + (off), &_v, 8);                                                      \
    } while (0)

/* -- the Clock: simulated time, callable like time.time_ns --------------------------- */

typedef struct {
    PyObject_HEAD int64_t now;
} Clock;

static PyObject *
Clock_call(Clock *self, PyObject *args, PyObject *kw)
{
    return PyLong_FromLongLong(self->now);
}

static PyMemberDef Clock_members[] = {
    {"now", T_LONGLONG, offsetof(Clock, now), 0, "simulated time, ns"},
    {NULL},
};

static PyTypeObject ClockType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "wiresens.backtest._simcore.Clock",
    .tp_basicsize = sizeof(Clock),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_call = (ternaryfunc)Clock_call,
    .tp_members = Clock_members,
    .tp_doc = "Simulated time (ns): clock() returns clock.now.",
};

/* -- the Core --------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD Clock *clock;
    PyObject *er_obj, *er_void, *er_b, *tr_obj, *tr_void;
    Py_buffer er_view, tr_view;
    int have_er, have_tr;
    char *er, *tr;
    Py_ssize_t er_sym_off;
    Py_ssize_t tr_off_ts_exch, tr_off_ts_recv, tr_off_px, tr_off_qty, tr_off_id, tr_off_flags,
        tr_off_sym;
    PyObject *check, *risk_table, *entry_draws;
    int nsym;
    int64_t maker_rate, taker_rate, response_ns, local_ns;
    int queue_prob;
    double power;
    int entry_const;
    int64_t entry_base, entry_last;
    int64_t *draws;
    Py_ssize_t ndraws, idraw;
    int policy_byte, account_byte;
    /* venue */
    Book *books;
    Order *orders;
    Py_ssize_t norders, cap_orders;
    int32_t free_order;
    Level *levels;
    Py_ssize_t nlevels, cap_levels;
    int32_t free_level;
    Map by_cid; /* cid -> order index */
    Arrival *arr;
    Py_ssize_t narr, cap_arr;
    Report *rep;
    Py_ssize_t nrep, cap_rep;
    int64_t seq, exch_seq, trade_seq, now_exch;
    int64_t *pos, *mids;
    i128 cash_raw, fee_total, volume;
    int64_t orders_sent, cancels_sent, replaces_sent, risk_rejects, venue_rejects, book_calls,
        trade_calls;
    i128 sent_qty;
    /* scratch (no Python call runs while they are in use) */
    int64_t *scratch_px;
    Py_ssize_t cap_scratch_px;
    int32_t *scratch_ids;
    Py_ssize_t cap_scratch_ids;
    /* results */
    Buf fills, ords, samples;
    int overflow;
    /* policy hooks during run() */
    PyObject *deliver_execution;
} Core;

static int
grow_arr(void **p, Py_ssize_t *cap, Py_ssize_t need, size_t elem)
{
    if (need <= *cap) {
        return 0;
    }
    Py_ssize_t c = *cap ? *cap : 64;
    while (c < need) {
        c *= 2;
    }
    void *q = PyMem_Realloc(*p, (size_t)c * elem);
    if (!q) {
        PyErr_NoMemory();
        return -1;
    }
    *p = q;
    *cap = c;
    return 0;
}

/* -- heaps ordered by (t, seq) --------------------------------------------------------- */

#define HEAP_LESS(a, b) ((a).t < (b).t || ((a).t == (b).t && (a).seq < (b).seq))

#define DEFINE_HEAP(NAME, T)                                                              \
    static void NAME##_up(T *h, Py_ssize_t i)                                             \
    {                                                                                     \
        T x = h[i];                                                                       \
        while (i > 0) {                                                                   \
            Py_ssize_t p = (i - 1) >> 1;                                                  \
            if (!HEAP_LESS(x, h[p])) {                                                    \
                break;                                                                    \
            }                                                                             \
            h[i] = h[p];                                                                  \
            i = p;                                                                        \
        }                                                                                 \
        h[i] = x;                                                                         \
    }                                                                                     \
    static void NAME##_pop(T *h, Py_ssize_t n, T *out)                                    \
    {                                                                                     \
        *out = h[0];                                                                      \
        n -= 1;                                                                           \
        if (n == 0) {                                                                     \
            return;                                                                       \
        }                                                                                 \
        T x = h[n];                                                                       \
        Py_ssize_t i = 0;                                                                 \
        for (;;) {                                                                        \
            Py_ssize_t l = 2 * i + 1;                                                     \
            if (l >= n) {                                                                 \
                break;                                                                    \
            }                                                                             \
            Py_ssize_t r = l + 1;                                                         \
            Py_ssize_t m = (r < n && HEAP_LESS(h[r], h[l])) ? r : l;                      \
            if (!HEAP_LESS(h[m], x)) {                                                    \
                break;                                                                    \
            }                                                                             \
            h[i] = h[m];                                                                  \
            i = m;                                                                        \
        }                                                                                 \
        h[i] = x;                                                                         \
    }

DEFINE_HEAP(arrh, Arrival)
DEFINE_HEAP(reph, Report)

static int
report(Core *c, int64_t sym, int64_t ts_exch, int64_t deliver, int64_t cid, int64_t orig,
       int64_t exch_id, int64_t side, int64_t price, int64_t qty, int64_t trade_id,
       int64_t last_px, int64_t last_qty, int64_t cum_qty, int64_t cum_quote,
       int64_t commission, int status, int exec_type, int reason, int err)
{
    if (grow_arr((void **)&c->rep, &c->cap_rep, c->nrep + 1, sizeof(Report)) < 0) {
        return -1;
    }
    c->seq += 1;
    Report *r = &c->rep[c->nrep];
    r->t = deliver;
    r->seq = c->seq;
    r->sym = sym;
    r->ts_exch = ts_exch;
    r->cid = cid;
    r->orig = orig;
    r->exch_id = exch_id;
    r->trade_id = trade_id;
    r->price = price;
    r->qty = qty;
    r->last_px = last_px;
    r->last_qty = last_qty;
    r->cum_qty = cum_qty;
    r->cum_quote = cum_quote;
    r->commission = commission;
    r->side = (int32_t)side;
    r->status = status;
    r->exec_type = exec_type;
    r->reason = reason;
    r->err = err;
    reph_up(c->rep, c->nrep);
    c->nrep += 1;
    return 0;
}

static PyObject *
deliver_report(Core *c)
{
    Report r;
    reph_pop(c->rep, c->nrep, &r);
    c->nrep -= 1;
    char *e = c->er;
    uint32_t sym = (uint32_t)r.sym;
    memcpy(e + c->er_sym_off, &sym, 4);
    PUT64(e, 8, r.ts_exch);
    PUT64(e, 16, r.t);
    PUT64(e, 24, r.t);
    PUT64(e, 32, r.cid);
    PUT64(e, 40, r.orig);
    PUT64(e, 48, r.exch_id);
    PUT64(e, 56, r.trade_id);
    PUT64(e, 64, r.price);
    PUT64(e, 72, r.qty);
    PUT64(e, 80, r.last_px);
    PUT64(e, 88, r.last_qty);
    PUT64(e, 96, r.cum_qty);
    PUT64(e, 104, r.cum_quote);
    PUT64(e, 112, r.commission);
    e[120] = (char)c->policy_byte;
    e[121] = (char)c->account_byte;
    e[122] = (char)r.side;
    e[123] = (char)r.status;
    e[124] = (char)r.exec_type;
    e[125] = (char)r.reason;
    int16_t err = (int16_t)r.err;
    memcpy(e + 126, &err, 2);
    c->clock->now = r.t;
    PyObject *args[2] = {c->er_void, c->er_b};
    return PyObject_Vectorcall(c->deliver_execution, args, 2, NULL);
}

/* -- orders and resting levels ------------------------------------------------------- */

static int32_t
order_new(Core *c)
{
    if (c->free_order >= 0) {
        int32_t i = c->free_order;
        c->free_order = c->orders[i].next_free;
        return i;
    }
    if (c->norders >= INT32_MAX ||
        grow_arr((void **)&c->orders, &c->cap_orders, c->norders + 1, sizeof(Order)) < 0) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_OverflowError, "more than 2**31 resting orders");
        }
        return -1;
    }
    return (int32_t)c->norders++;
}

static void
order_release(Core *c, int32_t i)
{
    c->orders[i].next_free = c->free_order;
    c->free_order = i;
}

static int32_t
level_new(Core *c)
{
    if (c->free_level >= 0) {
        int32_t i = c->free_level;
        c->free_level = c->levels[i].next;
        c->levels[i].n = 0;
        return i;
    }
    if (c->nlevels >= INT32_MAX ||
        grow_arr((void **)&c->levels, &c->cap_levels, c->nlevels + 1, sizeof(Level)) < 0) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_OverflowError, "more than 2**31 resting price levels");
        }
        return -1;
    }
    Level *l = &c->levels[c->nlevels];
    l->n = 0;
    l->cap = 0;
    l->ids = NULL;
    return (int32_t)c->nlevels++;
}

static inline BSide *
side_of(Book *bk, int32_t side)
{
    return &bk->side[side == SIDE_BUY ? 0 : 1];
}

static inline int
has_rest(const Book *bk)
{
    return bk->side[0].rest.n || bk->side[1].rest.n;
}

/* Append order oi at its price level (created at the end of the side's level list). */
static int
rest_add(Core *c, BSide *s, int32_t oi)
{
    int64_t price = c->orders[oi].price;
    int64_t li = map_get(&s->rest, price, -1);
    if (li < 0) {
        int32_t nl = level_new(c);
        if (nl < 0) {
            return -1;
        }
        Level *l = &c->levels[nl];
        l->price = price;
        l->prev = s->tail;
        l->next = -1;
        if (s->tail >= 0) {
            c->levels[s->tail].next = nl;
        }
        else {
            s->head = nl;
        }
        s->tail = nl;
        if (map_put(&s->rest, price, nl) < 0) {
            return -1;
        }
        li = nl;
    }
    Level *l = &c->levels[li];
    if (grow_arr((void **)&l->ids, &l->cap, l->n + 1, sizeof(int32_t)) < 0) {
        return -1;
    }
    l->ids[l->n++] = oi;
    return 0;
}

/* Python's _unrest: off its level (the level goes when empty, with its traded count),
   out of by_cid; the order slot is released. */
static void
unrest(Core *c, int32_t oi)
{
    Order *o = &c->orders[oi];
    Book *bk = &c->books[o->sym];
    BSide *s = side_of(bk, o->side);
    int64_t li = map_get(&s->rest, o->price, -1);
    if (li >= 0) {
        Level *l = &c->levels[li];
        for (int32_t k = 0; k < l->n; k++) {
            if (l->ids[k] == oi) {
                memmove(l->ids + k, l->ids + k + 1, sizeof(int32_t) * (size_t)(l->n - k - 1));
                l->n--;
                break;
            }
        }
        if (l->n == 0) {
            map_pop(&s->rest, o->price, 0);
            map_pop(&s->traded, o->price, 0);
            if (l->prev >= 0) {
                c->levels[l->prev].next = l->next;
            }
            else {
                s->head = l->next;
            }
            if (l->next >= 0) {
                c->levels[l->next].prev = l->prev;
            }
            else {
                s->tail = l->prev;
            }
            l->next = c->free_level;
            c->free_level = (int32_t)li;
        }
    }
    map_pop(&c->by_cid, o->cid, 0);
    order_release(c, oi);
}

/* -- the venue ------------------------------------------------------------------------- */

static int
fill(Core *c, int32_t oi, int64_t qty, int64_t px, int maker, int64_t ts)
{
    Order *o = &c->orders[oi];
    i128 raw = (i128)qty * px;
    int64_t notional = floordiv(raw, SCALE);
    int64_t fee = floordiv((i128)notional * (maker ? c->maker_rate : c->taker_rate), SCALE);
    o->leaves -= qty;
    o->cum_qty += qty;
    o->cum_quote += notional;
    c->trade_seq += 1;
    if (buf_reserve(&c->fills, 46) < 0) {
        return -1;
    }
    /* FILL_DTYPE, packed: ts, cl_ord_id, side u1, maker u1, price, qty, fee, symbol u4 */
    char *p = c->fills.p + c->fills.len;
    PUT64(p, 0, ts);
    PUT64(p, 8, o->cid);
    p[16] = (char)o->side;
    p[17] = (char)(maker ? 1 : 0);
    PUT64(p, 18, px);
    PUT64(p, 26, qty);
    PUT64(p, 34, fee);
    uint32_t sym = (uint32_t)o->sym;
    memcpy(p + 42, &sym, 4);
    c->fills.len += 46;
    if (o->side == SIDE_BUY) {
        c->pos[o->sym] += qty;
        c->cash_raw -= raw;
    }
    else {
        c->pos[o->sym] -= qty;
        c->cash_raw += raw;
    }
    c->fee_total += fee;
    c->volume += notional;
    int status = o->leaves == 0 ? S_FILLED : S_PART;
    return report(c, o->sym, ts, ts + c->response_ns, o->cid, 0, o->exch_id, o->side, o->price,
                  o->qty, c->trade_seq, px, qty, o->cum_qty, o->cum_quote, fee, status, X_TRADE,
                  0, 0);
}

static int
fill_resting_all(Core *c, int32_t oi, int64_t ts)
{
    Order *o = &c->orders[oi];
    if (fill(c, oi, o->leaves, o->price, 1, ts) < 0) {
        return -1;
    }
    unrest(c, oi);
    return 0;
}

/* The resting levels of a side whose price passes `keep`, in insertion order. */
static Py_ssize_t
collect_levels(Core *c, BSide *s, int64_t bound, int mode, int64_t **out)
{
    Py_ssize_t n = 0;
    for (int32_t li = s->head; li >= 0; li = c->levels[li].next) {
        int64_t p = c->levels[li].price;
        int keep = mode == 0 ? p >= bound : mode == 1 ? p <= bound : mode == 2 ? p > bound
                                                                              : p < bound;
        if (keep) {
            if (grow_arr((void **)&c->scratch_px, &c->cap_scratch_px, n + 1, 8) < 0) {
                return -1;
            }
            c->scratch_px[n++] = p;
        }
    }
    *out = c->scratch_px;
    return n;
}

/* Fill every order of the listed levels, a snapshot taken first as Python's list(). */
static int
fill_levels(Core *c, BSide *s, Py_ssize_t nlev, int64_t ts)
{
    /* The price list lives in scratch_px; copy it since nothing else may reuse it. */
    int64_t stack[16];
    int64_t *prices = nlev <= 16 ? stack : PyMem_Malloc(sizeof(int64_t) * (size_t)nlev);
    if (!prices) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(prices, c->scratch_px, sizeof(int64_t) * (size_t)nlev);
    int rc = 0;
    for (Py_ssize_t k = 0; k < nlev && rc == 0; k++) {
        int64_t li = map_get(&s->rest, prices[k], -1);
        if (li < 0) {
            continue;
        }
        Level *l = &c->levels[li];
        int32_t n = l->n;
        if (grow_arr((void **)&c->scratch_ids, &c->cap_scratch_ids, n, 4) < 0) {
            rc = -1;
            break;
        }
        int32_t *ids = c->scratch_ids;
        memcpy(ids, l->ids, sizeof(int32_t) * (size_t)n);
        for (int32_t j = 0; j < n; j++) {
            if (fill_resting_all(c, ids[j], ts) < 0) {
                rc = -1;
                break;
            }
        }
    }
    if (prices != stack) {
        PyMem_Free(prices);
    }
    return rc;
}

static int
cross_check(Core *c, Book *bk, int64_t ts)
{
    int64_t *px;
    int64_t ba = bk->best_ask;
    if (ba && bk->side[0].rest.n) {
        Py_ssize_t n = collect_levels(c, &bk->side[0], ba, 0, &px);
        if (n < 0 || (n && fill_levels(c, &bk->side[0], n, ts) < 0)) {
            return -1;
        }
    }
    int64_t bb = bk->best_bid;
    if (bb && bk->side[1].rest.n) {
        Py_ssize_t n = collect_levels(c, &bk->side[1], bb, 1, &px);
        if (n < 0 || (n && fill_levels(c, &bk->side[1], n, ts) < 0)) {
            return -1;
        }
    }
    return 0;
}

static int64_t
queue_on_cancel(Core *c, int64_t ahead, int64_t before, int64_t cancelled, int64_t after)
{
    if (!c->queue_prob) {
        return ahead < after ? ahead : after;
    }
    if (ahead <= 0) {
        return 0;
    }
    int64_t behind = before - ahead;
    if (behind < 0) {
        behind = 0;
    }
    double fa = pow((double)ahead, c->power);
    double fb = pow((double)behind, c->power);
    double share = fa / (fa + fb);
    int64_t nw = ahead - (int64_t)((double)cancelled * share);
    if (nw > after) {
        nw = after;
    }
    return nw > 0 ? nw : 0;
}

static void
level_changed(Core *c, BSide *s, int64_t p, int64_t old, int64_t nw)
{
    int64_t dec = old - nw;
    int64_t t = map_pop(&s->traded, p, 0);
    if (dec <= 0) {
        return;
    }
    int64_t cancelled = dec - t;
    if (cancelled <= 0) {
        return;
    }
    Level *l = &c->levels[map_get(&s->rest, p, -1)];
    for (int32_t k = 0; k < l->n; k++) {
        Order *o = &c->orders[l->ids[k]];
        o->ahead = queue_on_cancel(c, o->ahead, old - t, cancelled, nw);
    }
}

static int
on_trade(Core *c, Book *bk, int64_t px, int64_t qty, int64_t buyer_maker, int64_t ts)
{
    /* The seller took when the buyer was the maker: the trade hit the bids. */
    BSide *s = buyer_maker ? &bk->side[0] : &bk->side[1];
    int64_t *through;
    Py_ssize_t n = collect_levels(c, s, px, buyer_maker ? 2 : 3, &through);
    if (n < 0 || (n && fill_levels(c, s, n, ts) < 0)) {
        return -1;
    }
    int64_t li = map_get(&s->rest, px, -1);
    if (li < 0) {
        return 0;
    }
    if (map_put(&s->traded, px, map_get(&s->traded, px, 0) + qty) < 0) {
        return -1;
    }
    int64_t avail = qty;
    Level *l = &c->levels[li];
    int32_t nl = l->n;
    if (grow_arr((void **)&c->scratch_ids, &c->cap_scratch_ids, nl, 4) < 0) {
        return -1;
    }
    int32_t *ids = c->scratch_ids;
    memcpy(ids, l->ids, sizeof(int32_t) * (size_t)nl);
    for (int32_t k = 0; k < nl; k++) {
        Order *o = &c->orders[ids[k]];
        if (o->ahead >= avail) {
            o->ahead -= avail;
            break;
        }
        avail -= o->ahead;
        o->ahead = 0;
        int64_t f = avail < o->leaves ? avail : o->leaves;
        if (f) {
            avail -= f;
            if (fill(c, ids[k], f, o->price, 1, ts) < 0) {
                return -1;
            }
            if (c->orders[ids[k]].leaves == 0) {
                unrest(c, ids[k]);
            }
        }
        if (avail <= 0) {
            break;
        }
    }
    return 0;
}

static int
cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int
cmp_i64_desc(const void *a, const void *b)
{
    return cmp_i64(b, a);
}

static int
venue_new(Core *c, const Arrival *q, int64_t ts, int64_t back)
{
    int64_t sym = q->sym, cid = q->cid, px = q->price, qty = q->qty;
    int64_t side = q->side, otype = q->otype, tif = q->tif;
    if (sym < 1 || sym > c->nsym) {
        PyErr_Format(PyExc_ValueError, "order for symbol %lld, the run has %d",
                     (long long)sym, c->nsym);
        return -1;
    }
    Book *bk = &c->books[sym];
    int64_t limit = px;
    int buy = side == SIDE_BUY;
    Map *book = buy ? &bk->side[1].mkt : &bk->side[0].mkt;
    if (otype == OT_MARKET) {
        px = buy ? BIG : 0;
    }
    int64_t top = buy ? bk->best_ask : bk->best_bid;
    Py_ssize_t ncross = 0;
    if (!(top && (buy ? px < top : px > top))) {
        for (uint32_t i = 0; i < book->cap; i++) {
            int64_t p = book->s[i].key;
            if (p != EMPTY && (buy ? p <= px : p >= px)) {
                if (grow_arr((void **)&c->scratch_px, &c->cap_scratch_px, ncross + 1, 8) < 0) {
                    return -1;
                }
                c->scratch_px[ncross++] = p;
            }
        }
        qsort(c->scratch_px, (size_t)ncross, 8, buy ? cmp_i64 : cmp_i64_desc);
    }
    int64_t *crossing = c->scratch_px;
    c->exch_seq += 1;
    int64_t exch_id = c->exch_seq;
    if (otype == OT_LIMIT_MAKER && ncross) {
        c->venue_rejects += 1;
        return report(c, sym, ts, back, cid, 0, 0, side, limit, qty, 0, 0, 0, 0, 0, 0,
                      S_REJECTED, X_REJECTED, R_EXCHANGE, -2010);
    }
    if (report(c, sym, ts, back, cid, 0, exch_id, side, limit, qty, 0, 0, 0, 0, 0, 0, S_NEW,
               X_NEW, 0, 0) < 0) {
        return -1;
    }
    if (tif == TIF_FOK) {
        i128 total = 0;
        for (Py_ssize_t k = 0; k < ncross; k++) {
            total += map_get(book, crossing[k], 0);
        }
        if (total < qty) {
            return report(c, sym, ts, back, cid, 0, exch_id, side, limit, qty, 0, 0, 0, 0, 0, 0,
                          S_EXPIRED, X_EXPIRED, 0, 0);
        }
    }
    int32_t oi = order_new(c);
    if (oi < 0) {
        return -1;
    }
    Order *o = &c->orders[oi];
    o->cid = cid;
    o->exch_id = exch_id;
    o->side = (int32_t)side;
    o->price = limit;
    o->qty = qty;
    o->leaves = qty;
    o->cum_qty = 0;
    o->cum_quote = 0;
    o->ahead = 0;
    o->sym = (int32_t)sym;
    for (Py_ssize_t k = 0; k < ncross; k++) {
        o = &c->orders[oi];
        if (o->leaves == 0) {
            break;
        }
        int64_t p = crossing[k];
        int64_t slot = map_find(book, p);
        int64_t avail = book->s[slot].val;
        int64_t f = avail < o->leaves ? avail : o->leaves;
        /* Taken liquidity stays taken until the market next sets this price. */
        if (avail == f) {
            map_del_at(book, (uint32_t)slot);
        }
        else {
            book->s[slot].val = avail - f;
        }
        if (fill(c, oi, f, p, 0, ts) < 0) {
            return -1;
        }
    }
    o = &c->orders[oi];
    if (o->leaves == 0) {
        order_release(c, oi);
        return 0;
    }
    if (otype == OT_MARKET || tif == TIF_IOC || tif == TIF_FOK) {
        int rc = report(c, sym, ts, back, cid, 0, exch_id, side, limit, qty, 0, 0, 0, o->cum_qty,
                        o->cum_quote, 0, S_EXPIRED, X_EXPIRED, 0, 0);
        order_release(c, oi);
        return rc;
    }
    BSide *own = buy ? &bk->side[0] : &bk->side[1];
    o->ahead = map_get(&own->mkt, limit, 0);
    int64_t li = map_get(&own->rest, limit, -1);
    if (li >= 0) {
        /* Earlier orders of ours at this price stand ahead too. */
        Level *l = &c->levels[li];
        for (int32_t k = 0; k < l->n; k++) {
            o->ahead += c->orders[l->ids[k]].leaves;
        }
    }
    if (rest_add(c, own, oi) < 0) {
        return -1;
    }
    return map_put(&c->by_cid, cid, oi);
}

static int
arrive(Core *c, const Arrival *q, int64_t ts)
{
    int64_t back = ts + c->response_ns;
    if (q->kind == K_CANCEL || q->kind == K_REPLACE) {
        int64_t oi = map_get(&c->by_cid, q->orig, -1);
        if (oi < 0) {
            c->venue_rejects += 1;
            return report(c, q->sym, ts, back, q->cid, q->orig, 0, q->side, q->price, q->qty, 0,
                          0, 0, 0, 0, 0, S_REJECTED, X_REJECTED, R_UNKNOWN_ORDER, -2011);
        }
        Order o = c->orders[oi];
        unrest(c, (int32_t)oi);
        if (q->kind == K_CANCEL) {
            return report(c, o.sym, ts, back, q->cid, q->orig, o.exch_id, o.side, o.price, o.qty,
                          0, 0, 0, o.cum_qty, o.cum_quote, 0, S_CANCELED, X_CANCELED, 0, 0);
        }
        if (report(c, o.sym, ts, back, q->orig, 0, o.exch_id, o.side, o.price, o.qty, 0, 0, 0,
                   o.cum_qty, o.cum_quote, 0, S_CANCELED, X_CANCELED, 0, 0) < 0) {
            return -1;
        }
    }
    return venue_new(c, q, ts, back);
}

/* -- entry latency --------------------------------------------------------------------- */

static int
entry_arrival(Core *c, int64_t now, int64_t *out)
{
    int64_t d;
    if (c->entry_const) {
        d = c->entry_base;
    }
    else {
        if (c->idraw >= c->ndraws) {
            /* A batch of the Python model's draws: the same sequence as one per call. */
            PyObject *lst = PyObject_CallFunction(c->entry_draws, "n", (Py_ssize_t)1024);
            if (!lst) {
                return -1;
            }
            PyObject *fast = PySequence_Fast(lst, "entry draws must be a sequence");
            Py_DECREF(lst);
            if (!fast) {
                return -1;
            }
            Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
            if (n <= 0) {
                Py_DECREF(fast);
                PyErr_SetString(PyExc_ValueError, "entry latency model returned no draws");
                return -1;
            }
            int64_t *p = PyMem_Realloc(c->draws, sizeof(int64_t) * (size_t)n);
            if (!p) {
                Py_DECREF(fast);
                PyErr_NoMemory();
                return -1;
            }
            c->draws = p;
            for (Py_ssize_t i = 0; i < n; i++) {
                p[i] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(fast, i));
            }
            Py_DECREF(fast);
            if (PyErr_Occurred()) {
                return -1;
            }
            c->ndraws = n;
            c->idraw = 0;
        }
        d = c->draws[c->idraw++];
    }
    int64_t t = now + d;
    if (t < c->entry_last) {
        t = c->entry_last;
    }
    c->entry_last = t;
    *out = t;
    return 0;
}

/* -- Python methods --------------------------------------------------------------------- */

static PyObject *
Core_submit(Core *c, PyObject *rec)
{
    Py_buffer v;
    if (PyObject_GetBuffer(rec, &v, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (v.len < 96) {
        PyBuffer_Release(&v);
        PyErr_SetString(PyExc_ValueError, "an ORDER_REQUEST is 128 bytes");
        return NULL;
    }
    const unsigned char *b = v.buf;
    Arrival q;
    uint32_t sym;
    q.kind = b[0];
    memcpy(&sym, b + 4, 4);
    q.sym = sym;
    memcpy(&q.cid, b + 32, 8);
    memcpy(&q.orig, b + 40, 8);
    memcpy(&q.price, b + 56, 8);
    memcpy(&q.qty, b + 64, 8);
    q.side = b[92];
    q.otype = b[93];
    q.tif = b[94];
    PyBuffer_Release(&v);
    int64_t now = c->clock->now;
    if (q.kind != K_CANCEL) {
        if (q.kind == K_NEW) {
            c->orders_sent += 1;
        }
        else {
            c->replaces_sent += 1;
        }
        PyObject *args[5] = {NULL, NULL, NULL, NULL, c->risk_table};
        args[0] = PyLong_FromLongLong(q.sym);
        args[1] = PyLong_FromLongLong(q.otype);
        args[2] = PyLong_FromLongLong(q.price);
        args[3] = PyLong_FromLongLong(q.qty);
        PyObject *res = NULL;
        if (args[0] && args[1] && args[2] && args[3]) {
            res = PyObject_Vectorcall(c->check, args, 5, NULL);
        }
        for (int i = 0; i < 4; i++) {
            Py_XDECREF(args[i]);
        }
        if (!res) {
            return NULL;
        }
        long reason = PyLong_AsLong(res);
        Py_DECREF(res);
        if (reason == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (reason != 0) {
            /* Execution rejects locally: a ring hop back, no venue round trip. */
            c->risk_rejects += 1;
            if (report(c, q.sym, now, now + c->local_ns, q.cid, q.orig, 0, q.side, q.price, q.qty,
                       0, 0, 0, 0, 0, 0, S_REJECTED, X_REJECTED, (int)reason, 0) < 0) {
                return NULL;
            }
            Py_RETURN_TRUE;
        }
        c->sent_qty += q.qty;
    }
    else {
        c->cancels_sent += 1;
    }
    c->seq += 1;
    int64_t arrival;
    if (entry_arrival(c, now, &arrival) < 0) {
        return NULL;
    }
    if (buf_reserve(&c->ords, 56) < 0) {
        return NULL;
    }
    /* ORDER_DTYPE, packed: ts, arrival, kind u1, cl_ord_id, orig, side u1, order_type u1,
       tif u1, price, qty, symbol u4 */
    char *p = c->ords.p + c->ords.len;
    PUT64(p, 0, now);
    PUT64(p, 8, arrival);
    p[16] = (char)q.kind;
    PUT64(p, 17, q.cid);
    PUT64(p, 25, q.orig);
    p[33] = (char)q.side;
    p[34] = (char)q.otype;
    p[35] = (char)q.tif;
    PUT64(p, 36, q.price);
    PUT64(p, 44, q.qty);
    memcpy(p + 52, &sym, 4);
    c->ords.len += 56;
    if (grow_arr((void **)&c->arr, &c->cap_arr, c->narr + 1, sizeof(Arrival)) < 0) {
        return NULL;
    }
    q.t = arrival;
    q.seq = c->seq;
    c->arr[c->narr] = q;
    arrh_up(c->arr, c->narr);
    c->narr += 1;
    Py_RETURN_TRUE;
}

static int
sample(Core *c, int64_t ts)
{
    i128 marked = 0;
    for (int s = 1; s <= c->nsym; s++) {
        marked += (i128)c->pos[s] * c->mids[s];
    }
    i128 eq = (c->cash_raw + marked);
    i128 q = eq / SCALE;
    if ((eq % SCALE != 0) && eq < 0) {
        q -= 1;
    }
    i128 equity = q - c->fee_total;
    if (equity > INT64_MAX || equity < INT64_MIN || c->fee_total > INT64_MAX ||
        c->fee_total < INT64_MIN || c->volume > INT64_MAX) {
        c->overflow = 1;
    }
    if (buf_reserve(&c->samples, 48) < 0) {
        return -1;
    }
    char *p = c->samples.p + c->samples.len;
    PUT64(p, 0, ts);
    PUT64(p, 8, c->mids[1]);
    PUT64(p, 16, c->pos[1]);
    PUT64(p, 24, (int64_t)equity);
    PUT64(p, 32, (int64_t)c->fee_total);
    PUT64(p, 40, (int64_t)c->volume);
    c->samples.len += 48;
    return 0;
}

static PyObject *
Core_sample(Core *c, PyObject *arg)
{
    long long ts = PyLong_AsLongLong(arg);
    if (ts == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (sample(c, ts) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static int
drain(Core *c, int64_t until)
{
    while (c->narr || c->nrep) {
        int64_t ta = c->narr ? c->arr[0].t : BIG;
        int64_t tr = c->nrep ? c->rep[0].t : BIG;
        if ((ta < tr ? ta : tr) > until) {
            break;
        }
        if (ta <= tr) {
            Arrival q;
            arrh_pop(c->arr, c->narr, &q);
            c->narr -= 1;
            if (arrive(c, &q, q.t) < 0) {
                return -1;
            }
        }
        else {
            PyObject *r = deliver_report(c);
            if (!r) {
                return -1;
            }
            Py_DECREF(r);
        }
    }
    return 0;
}

static PyObject *
Core_drain(Core *c, PyObject *args)
{
    PyObject *policy;
    long long until;
    if (!PyArg_ParseTuple(args, "OL", &policy, &until)) {
        return NULL;
    }
    PyObject *de = PyObject_GetAttrString(policy, "deliver_execution");
    if (!de) {
        return NULL;
    }
    Py_XSETREF(c->deliver_execution, de);
    int rc = drain(c, until);
    Py_CLEAR(c->deliver_execution);
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

typedef struct {
    Py_buffer b;
    int held;
} Col;

static int
get_col(PyObject *obj, Col *col, Py_ssize_t itemsize, Py_ssize_t n, const char *name)
{
    if (PyObject_GetBuffer(obj, &col->b, PyBUF_C_CONTIGUOUS) < 0) {
        return -1;
    }
    col->held = 1;
    if (col->b.len != itemsize * n) {
        PyErr_Format(PyExc_ValueError, "column %s: %zd bytes, expected %zd", name, col->b.len,
                     itemsize * n);
        return -1;
    }
    return 0;
}

static PyObject *str_bid_px, *str_bid_qty, *str_ask_px, *str_ask_qty, *str_ts;

static int
set_int(PyObject *obj, PyObject *name, int64_t v)
{
    PyObject *x = PyLong_FromLongLong(v);
    if (!x) {
        return -1;
    }
    int rc = PyObject_SetAttr(obj, name, x);
    Py_DECREF(x);
    return rc;
}

#define NCOLS 15

/* run(columns, n, nlevels, views, policy, trades_wanted, timer_ns, next_timer, sample_ns,
       next_sample, progress, mask) -> None: Python's Simulation._run loop. */
static PyObject *
Core_run(Core *c, PyObject *args)
{
    PyObject *cols, *views, *policy, *progress;
    Py_ssize_t n, nlv;
    int trades_wanted;
    long long timer_ns, next_timer, sample_ns, next_sample, mask;
    if (!PyArg_ParseTuple(args, "O!nnO!OpLLLLOL", &PyTuple_Type, &cols, &n, &nlv, &PyList_Type,
                          &views, &policy, &trades_wanted, &timer_ns, &next_timer, &sample_ns,
                          &next_sample, &progress, &mask)) {
        return NULL;
    }
    if (PyTuple_GET_SIZE(cols) != NCOLS || PyList_GET_SIZE(views) != c->nsym + 1) {
        PyErr_SetString(PyExc_ValueError, "run(): wrong number of columns or views");
        return NULL;
    }
    if (sample_ns <= 0) {
        PyErr_SetString(PyExc_ValueError, "sample interval must be positive");
        return NULL;
    }
    static const char *names[NCOLS] = {"E", "L", "K", "A", "B", "C", "D", "LO",
                                       "HI", "PX", "QT", "SD", "DV", "TSR", "SY"};
    static const Py_ssize_t sizes[NCOLS] = {8, 8, 1, 8, 8, 8, 8, 8, 8, 8, 8, 1, 1, 8, 4};
    Col col[NCOLS];
    memset(col, 0, sizeof(col));
    PyObject *result = NULL;
    PyObject *deliver_book = NULL, *deliver_trade = NULL, *deliver_timer = NULL;
    for (int i = 0; i < NCOLS; i++) {
        Py_ssize_t len = (i >= 9 && i <= 11) ? nlv : n;
        if (get_col(PyTuple_GET_ITEM(cols, i), &col[i], sizes[i], len, names[i]) < 0) {
            goto done;
        }
    }
    const int64_t *E = col[0].b.buf, *L = col[1].b.buf;
    const uint8_t *K = col[2].b.buf;
    const int64_t *A = col[3].b.buf, *B = col[4].b.buf, *C = col[5].b.buf, *D = col[6].b.buf;
    const int64_t *LO = col[7].b.buf, *HI = col[8].b.buf, *PX = col[9].b.buf, *QT = col[10].b.buf;
    const uint8_t *SD = col[11].b.buf, *DV = col[12].b.buf;
    const int64_t *TSR = col[13].b.buf;
    const uint32_t *SY = col[14].b.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (SY[i] < 1 || SY[i] > (uint32_t)c->nsym || LO[i] < 0 || HI[i] > nlv || LO[i] > HI[i]) {
            PyErr_Format(PyExc_ValueError, "market event %zd: symbol or level range out of bounds",
                         i);
            goto done;
        }
    }
    Py_XSETREF(c->deliver_execution, PyObject_GetAttrString(policy, "deliver_execution"));
    deliver_book = PyObject_GetAttrString(policy, "deliver_book");
    deliver_trade = PyObject_GetAttrString(policy, "deliver_trade");
    deliver_timer = PyObject_GetAttrString(policy, "deliver_timer");
    if (!c->deliver_execution || !deliver_book || !deliver_trade || !deliver_timer) {
        goto done;
    }
    Clock *clock = c->clock;
    int cur = 1;
    Book *bk = &c->books[cur];
    Py_ssize_t ie = 0;
    for (Py_ssize_t il = 0; il < n; il++) {
        int64_t tl = L[il];
        for (;;) {
            /* Venue events due before this delivery, in time order. */
            int64_t te = ie < n ? E[ie] : BIG;
            int64_t ta, tr, m;
            if (c->narr || c->nrep || next_timer <= tl) {
                ta = c->narr ? c->arr[0].t : BIG;
                tr = c->nrep ? c->rep[0].t : BIG;
                m = te < ta ? te : ta;
                if (tr < m) {
                    m = tr;
                }
                if (next_timer < m) {
                    m = next_timer;
                }
            }
            else {
                ta = tr = m = te;
            }
            if (m > tl) {
                break;
            }
            if (te == m) {
                int k = K[ie];
                c->now_exch = te;
                if ((int)SY[ie] != cur) {
                    cur = (int)SY[ie];
                    bk = &c->books[cur];
                }
                if (k == EV_TRADE) {
                    if (has_rest(bk) && on_trade(c, bk, A[ie], B[ie], C[ie], te) < 0) {
                        goto done;
                    }
                }
                else {
                    if (k == EV_RESET) {
                        map_clear(&bk->side[0].mkt);
                        map_clear(&bk->side[1].mkt);
                    }
                    for (int64_t j = LO[ie]; j < HI[ie]; j++) {
                        int64_t p = PX[j], q = QT[j];
                        BSide *s = SD[j] == 1 ? &bk->side[0] : &bk->side[1];
                        /* The level's old quantity matters only where we rest. */
                        if (s->rest.n && map_find(&s->rest, p) >= 0) {
                            level_changed(c, s, p, map_get(&s->mkt, p, 0), q);
                        }
                        if (q) {
                            if (map_put(&s->mkt, p, q) < 0) {
                                goto done;
                            }
                        }
                        else {
                            map_pop(&s->mkt, p, 0);
                        }
                    }
                    bk->best_bid = A[ie];
                    bk->best_ask = C[ie];
                    if (has_rest(bk) && cross_check(c, bk, te) < 0) {
                        goto done;
                    }
                }
                ie++;
            }
            else if (ta == m) {
                Arrival q;
                arrh_pop(c->arr, c->narr, &q);
                c->narr -= 1;
                if (arrive(c, &q, q.t) < 0) {
                    goto done;
                }
            }
            else if (tr == m) {
                PyObject *r = deliver_report(c);
                if (!r) {
                    goto done;
                }
                Py_DECREF(r);
            }
            else {
                clock->now = next_timer;
                PyObject *t = PyLong_FromLongLong(next_timer);
                if (!t) {
                    goto done;
                }
                PyObject *r = PyObject_Vectorcall(deliver_timer, &t, 1, NULL);
                Py_DECREF(t);
                if (!r) {
                    goto done;
                }
                Py_DECREF(r);
                next_timer += timer_ns;
            }
        }
        if (tl >= next_sample) {
            if (sample(c, next_sample) < 0) {
                goto done;
            }
            next_sample += sample_ns;
            if (tl >= next_sample) {
                next_sample = tl - (tl - next_sample) % sample_ns;
            }
        }
        if (DV[il]) {
            clock->now = tl;
            int sy = (int)SY[il];
            if (K[il] == EV_TRADE) {
                if (trades_wanted) {
                    char *t = c->tr;
                    PUT64(t, c->tr_off_ts_exch, E[il]);
                    PUT64(t, c->tr_off_ts_recv, TSR[il]);
                    PUT64(t, c->tr_off_px, A[il]);
                    PUT64(t, c->tr_off_qty, B[il]);
                    uint16_t fl = (uint16_t)C[il];
                    memcpy(t + c->tr_off_flags, &fl, 2);
                    PUT64(t, c->tr_off_id, D[il]);
                    uint32_t s32 = (uint32_t)sy;
                    memcpy(t + c->tr_off_sym, &s32, 4);
                    c->trade_calls += 1;
                    PyObject *a[2] = {PyLong_FromLong(sy), c->tr_void};
                    if (!a[0]) {
                        goto done;
                    }
                    PyObject *r = PyObject_Vectorcall(deliver_trade, a, 2, NULL);
                    Py_DECREF(a[0]);
                    if (!r) {
                        goto done;
                    }
                    Py_DECREF(r);
                }
            }
            else {
                PyObject *view = PyList_GET_ITEM(views, sy);
                int64_t bp = A[il], ap = C[il];
                if (set_int(view, str_bid_px, bp) < 0 || set_int(view, str_bid_qty, B[il]) < 0 ||
                    set_int(view, str_ask_px, ap) < 0 || set_int(view, str_ask_qty, D[il]) < 0 ||
                    set_int(view, str_ts, tl) < 0) {
                    goto done;
                }
                if (bp && ap) {
                    c->mids[sy] = (bp + ap) >> 1;
                }
                c->book_calls += 1;
                PyObject *a[2] = {PyLong_FromLong(sy), view};
                if (!a[0]) {
                    goto done;
                }
                PyObject *r = PyObject_Vectorcall(deliver_book, a, 2, NULL);
                Py_DECREF(a[0]);
                if (!r) {
                    goto done;
                }
                Py_DECREF(r);
            }
        }
        /* Ctrl-C must stop a replay whose policy is rarely called (signals are only
           seen when Python code runs or when asked). */
        if (!(il & 0xFFFF) && PyErr_CheckSignals() < 0) {
            goto done;
        }
        if (progress != Py_None && !(il & mask)) {
            PyObject *r = PyObject_CallFunction(progress, "nn", il, n);
            if (!r) {
                goto done;
            }
            Py_DECREF(r);
        }
    }
    result = Py_None;
    Py_INCREF(result);
done:
    for (int i = 0; i < NCOLS; i++) {
        if (col[i].held) {
            PyBuffer_Release(&col[i].b);
        }
    }
    Py_XDECREF(deliver_book);
    Py_XDECREF(deliver_trade);
    Py_XDECREF(deliver_timer);
    Py_CLEAR(c->deliver_execution);
    return result;
}

static PyObject *
Core_state(Core *c, PyObject *Py_UNUSED(ignored))
{
    PyObject *pos = PyList_New(c->nsym + 1), *mids = PyList_New(c->nsym + 1);
    PyObject *resting = PyList_New(0);
    PyObject *d = NULL;
    if (!pos || !mids || !resting) {
        goto fail;
    }
    for (int s = 0; s <= c->nsym; s++) {
        PyList_SET_ITEM(pos, s, PyLong_FromLongLong(c->pos[s]));
        PyList_SET_ITEM(mids, s, PyLong_FromLongLong(c->mids[s]));
    }
    /* Resting orders in by_cid's insertion order is not kept; sort by exchange id (the
       order they were placed), which is what Python's dict order gives. */
    for (uint32_t i = 0; i < c->by_cid.cap; i++) {
        if (c->by_cid.s[i].key == EMPTY) {
            continue;
        }
        Order *o = &c->orders[c->by_cid.s[i].val];
        PyObject *t = Py_BuildValue("(LLiLLLLLLi)", (long long)o->cid, (long long)o->exch_id,
                                    (int)o->side, (long long)o->price, (long long)o->qty,
                                    (long long)o->leaves, (long long)o->cum_qty,
                                    (long long)o->cum_quote, (long long)o->ahead, (int)o->sym);
        if (!t || PyList_Append(resting, t) < 0) {
            Py_XDECREF(t);
            goto fail;
        }
        Py_DECREF(t);
    }
    PyObject *cash = pylong_from_i128(c->cash_raw);
    PyObject *fees = pylong_from_i128(c->fee_total);
    PyObject *vol = pylong_from_i128(c->volume);
    PyObject *sent = pylong_from_i128(c->sent_qty);
    if (cash && fees && vol && sent) {
        d = Py_BuildValue(
            "{" "sOsOsOsOsOsOsO" "sLsLsLsLsLsLsLsLsLsLsLsL" "snsnsi}", "pos", pos, "mids", mids, "resting",
            resting, "cash_raw", cash, "fee_total", fees, "volume", vol, "sent_qty", sent,
            "orders_sent", (long long)c->orders_sent, "cancels_sent", (long long)c->cancels_sent,
            "replaces_sent", (long long)c->replaces_sent, "risk_rejects",
            (long long)c->risk_rejects, "venue_rejects", (long long)c->venue_rejects,
            "book_calls", (long long)c->book_calls, "trade_calls", (long long)c->trade_calls,
            "seq", (long long)c->seq, "exch_seq", (long long)c->exch_seq, "trade_seq",
            (long long)c->trade_seq, "now_exch", (long long)c->now_exch, "entry_last",
            (long long)c->entry_last, "arrivals", c->narr, "reports", c->nrep, "overflow",
            c->overflow);
    }
    Py_XDECREF(cash);
    Py_XDECREF(fees);
    Py_XDECREF(vol);
    Py_XDECREF(sent);
fail:
    Py_XDECREF(pos);
    Py_XDECREF(mids);
    Py_XDECREF(resting);
    return d;
}

static PyObject *
Core_results(Core *c, PyObject *Py_UNUSED(ignored))
{
    return Py_BuildValue("(y#y#y#)", c->fills.p ? c->fills.p : "", (Py_ssize_t)c->fills.len,
                         c->ords.p ? c->ords.p : "", (Py_ssize_t)c->ords.len,
                         c->samples.p ? c->samples.p : "", (Py_ssize_t)c->samples.len);
}

static int
Core_init(Core *c, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"clock",       "er",          "er_void",     "er_b",
                             "er_symbol_offset",          "tr",          "tr_void",
                             "tr_offsets",  "nsym",        "maker_rate",  "taker_rate",
                             "queue_probabilistic",       "power",       "response_ns",
                             "local_ns",    "entry_ns",    "entry_draws", "check",
                             "risk_table",  "policy_byte", "account_byte", NULL};
    PyObject *clock, *er, *er_void, *er_b, *tr, *tr_void, *entry_draws, *check, *risk_table;
    Py_ssize_t er_sym_off;
    Py_ssize_t t0, t1, t2, t3, t4, t5, t6;
    int nsym, qprob, pb, ab;
    long long maker, taker, resp, local, entry_ns;
    double power;
    if (!PyArg_ParseTupleAndKeywords(
            args, kw, "O!OOOnOO(nnnnnnn)iLLpdLLLOOOii", kwlist,
            &ClockType, &clock, &er, &er_void, &er_b, &er_sym_off, &tr, &tr_void, &t0, &t1, &t2,
            &t3, &t4, &t5, &t6, &nsym, &maker, &taker, &qprob, &power, &resp, &local, &entry_ns,
            &entry_draws, &check, &risk_table, &pb, &ab)) {
        return -1;
    }
    if (c->books) {
        PyErr_SetString(PyExc_RuntimeError, "Core is initialised once");
        return -1;
    }
    if (nsym < 1) {
        PyErr_SetString(PyExc_ValueError, "nsym must be >= 1");
        return -1;
    }
    if (PyObject_GetBuffer(er, &c->er_view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        return -1;
    }
    c->have_er = 1;
    if (PyObject_GetBuffer(tr, &c->tr_view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        return -1;
    }
    c->have_tr = 1;
    Py_ssize_t offs[7] = {t0, t1, t2, t3, t4, t5, t6};
    if (c->er_view.len < 128 || er_sym_off < 0 || er_sym_off + 4 > 128) {
        PyErr_SetString(PyExc_ValueError, "er must be one 128-byte EXECUTION_REPORT");
        return -1;
    }
    for (int i = 0; i < 7; i++) {
        if (offs[i] < 0 || offs[i] + 8 > c->tr_view.len) {
            PyErr_SetString(PyExc_ValueError, "tr_offsets outside the TRADE record");
            return -1;
        }
    }
    c->er = c->er_view.buf;
    c->tr = c->tr_view.buf;
    c->er_sym_off = er_sym_off;
    c->tr_off_ts_exch = t0;
    c->tr_off_ts_recv = t1;
    c->tr_off_px = t2;
    c->tr_off_qty = t3;
    c->tr_off_id = t4;
    c->tr_off_flags = t5;
    c->tr_off_sym = t6;
    Py_INCREF(clock);
    c->clock = (Clock *)clock;
    Py_INCREF(er);
    c->er_obj = er;
    Py_INCREF(er_void);
    c->er_void = er_void;
    Py_INCREF(er_b);
    c->er_b = er_b;
    Py_INCREF(tr);
    c->tr_obj = tr;
    Py_INCREF(tr_void);
    c->tr_void = tr_void;
    Py_INCREF(entry_draws);
    c->entry_draws = entry_draws;
    Py_INCREF(check);
    c->check = check;
    Py_INCREF(risk_table);
    c->risk_table = risk_table;
    c->nsym = nsym;
    c->maker_rate = maker;
    c->taker_rate = taker;
    c->queue_prob = qprob;
    c->power = power;
    c->response_ns = resp;
    c->local_ns = local;
    c->entry_const = entry_draws == Py_None;
    c->entry_base = entry_ns;
    c->policy_byte = pb;
    c->account_byte = ab;
    c->free_order = -1;
    c->free_level = -1;
    c->books = PyMem_Calloc((size_t)nsym + 1, sizeof(Book));
    c->pos = PyMem_Calloc((size_t)nsym + 1, sizeof(int64_t));
    c->mids = PyMem_Calloc((size_t)nsym + 1, sizeof(int64_t));
    if (!c->books || !c->pos || !c->mids) {
        PyErr_NoMemory();
        return -1;
    }
    for (int s = 0; s <= nsym; s++) {
        for (int k = 0; k < 2; k++) {
            BSide *bs = &c->books[s].side[k];
            bs->head = bs->tail = -1;
            if (map_init(&bs->mkt, s ? 6 : 1) < 0 || map_init(&bs->rest, 3) < 0 ||
                map_init(&bs->traded, 3) < 0) {
                return -1;
            }
        }
    }
    return map_init(&c->by_cid, 4);
}

static void
Core_dealloc(Core *c)
{
    if (c->books) {
        for (int s = 0; s <= c->nsym; s++) {
            for (int k = 0; k < 2; k++) {
                map_free(&c->books[s].side[k].mkt);
                map_free(&c->books[s].side[k].rest);
                map_free(&c->books[s].side[k].traded);
            }
        }
        PyMem_Free(c->books);
    }
    map_free(&c->by_cid);
    for (int32_t i = 0; i < c->nlevels; i++) {
        PyMem_Free(c->levels[i].ids);
    }
    PyMem_Free(c->levels);
    PyMem_Free(c->orders);
    PyMem_Free(c->arr);
    PyMem_Free(c->rep);
    PyMem_Free(c->pos);
    PyMem_Free(c->mids);
    PyMem_Free(c->draws);
    PyMem_Free(c->scratch_px);
    PyMem_Free(c->scratch_ids);
    PyMem_Free(c->fills.p);
    PyMem_Free(c->ords.p);
    PyMem_Free(c->samples.p);
    if (c->have_er) {
        PyBuffer_Release(&c->er_view);
    }
    if (c->have_tr) {
        PyBuffer_Release(&c->tr_view);
    }
    Py_XDECREF(c->clock);
    Py_XDECREF(c->er_obj);
    Py_XDECREF(c->er_void);
    Py_XDECREF(c->er_b);
    Py_XDECREF(c->tr_obj);
    Py_XDECREF(c->tr_void);
    Py_XDECREF(c->entry_draws);
    Py_XDECREF(c->check);
    Py_XDECREF(c->risk_table);
    Py_XDECREF(c->deliver_execution);
    Py_TYPE(c)->tp_free((PyObject *)c);
}

static PyMethodDef Core_methods[] = {
    {"submit", (PyCFunction)Core_submit, METH_O,
     "submit(record) -> True: the policy's OrderSink.try_submit."},
    {"run", (PyCFunction)Core_run, METH_VARARGS, "Replay the market (Simulation._run's loop)."},
    {"drain", (PyCFunction)Core_drain, METH_VARARGS,
     "drain(policy, until): settle arrivals and reports due by `until`."},
    {"sample", (PyCFunction)Core_sample, METH_O, "sample(ts): one equity sample."},
    {"state", (PyCFunction)Core_state, METH_NOARGS, "Counters, positions, resting orders."},
    {"results", (PyCFunction)Core_results, METH_NOARGS,
     "(fills, orders, samples) as packed bytes of FILL_DTYPE / ORDER_DTYPE / SAMPLE_DTYPE."},
    {NULL},
};

static PyTypeObject CoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "wiresens.backtest._simcore.Core",
    .tp_basicsize = sizeof(Core),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Core_init,
    .tp_dealloc = (destructor)Core_dealloc,
    .tp_methods = Core_methods,
    .tp_doc = "The simulated venue and replay loop of one back-test run.",
};

static struct PyModuleDef simcore_module = {
    PyModuleDef_HEAD_INIT, "wiresens.backtest._simcore",
    "The back-test loop and simulated venue in C (see wiresens.backtest.engine).", -1, NULL,
};

PyMODINIT_FUNC
PyInit__simcore(void)
{
    if (PyType_Ready(&ClockType) < 0 || PyType_Ready(&CoreType) < 0) {
        return NULL;
    }
    str_bid_px = PyUnicode_InternFromString("bid_px");
    str_bid_qty = PyUnicode_InternFromString("bid_qty");
    str_ask_px = PyUnicode_InternFromString("ask_px");
    str_ask_qty = PyUnicode_InternFromString("ask_qty");
    str_ts = PyUnicode_InternFromString("ts");
    if (!str_bid_px || !str_bid_qty || !str_ask_px || !str_ask_qty || !str_ts) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&simcore_module);
    if (!m) {
        return NULL;
    }
    Py_INCREF(&ClockType);
    Py_INCREF(&CoreType);
    PyObject *consts = Py_BuildValue(
        "{sisisisisisisisisisisisisisisisisisisisisisisi}", "ORDER_NEW", K_NEW, "ORDER_CANCEL",
        K_CANCEL, "ORDER_REPLACE", K_REPLACE, "BUY", SIDE_BUY, "MARKET", OT_MARKET,
        "LIMIT_MAKER", OT_LIMIT_MAKER, "IOC", TIF_IOC, "FOK", TIF_FOK, "TRADE_EVENT", EV_TRADE,
        "RESET_EVENT", EV_RESET, "S_NEW", S_NEW, "S_PARTIALLY_FILLED", S_PART, "S_FILLED",
        S_FILLED, "S_CANCELED", S_CANCELED, "S_REJECTED", S_REJECTED, "S_EXPIRED", S_EXPIRED,
        "X_NEW", X_NEW, "X_CANCELED", X_CANCELED, "X_REJECTED", X_REJECTED, "X_TRADE", X_TRADE,
        "X_EXPIRED", X_EXPIRED, "R_EXCHANGE", R_EXCHANGE, "R_UNKNOWN_ORDER", R_UNKNOWN_ORDER);
    if (!consts || PyModule_AddObject(m, "CONSTANTS", consts) < 0) {
        Py_XDECREF(consts);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddObject(m, "Clock", (PyObject *)&ClockType) < 0 ||
        PyModule_AddObject(m, "Core", (PyObject *)&CoreType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
