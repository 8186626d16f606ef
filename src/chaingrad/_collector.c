/* chaingrad._core's support for CPython's cyclic garbage collector (see _collector.h): which nodes it
 * tracks. The riskiest code of the core: a node left untracked that a cycle runs through leaks the cycle
 * (tests/test_collector.py makes each kind of cycle and checks that a collection frees it).
 *
 * A graph by itself has no cycles: a node points only at older nodes. So a node that holds nothing but
 * its inputs, its op and numbers is left untracked by the garbage collector, as CPython leaves a tuple of
 * numbers untracked, and a collection never walks a million-node graph.
 * A cycle needs some other reference: a grad that is a Value (create_graph), a context, a closure,
 * a subclass's attributes. When a Value takes one (collector_hold), it is tracked, and so is every Value
 * the new reference reaches; and a tracked Value's inputs are tracked, all the way down (track). Then
 * every cycle runs through tracked objects only, and the collector frees it.
 *
 * A Value that holds or reaches a mutable container (a list, a dict, a closure's cell) is "open",
 * and nodes made from it are tracked from birth (collector_born), since the container may later come to
 * hold them. Left alone: a container put on a Value after other nodes were made from it, which then gains
 * one of those nodes; and function globals, modules and classes, which live on anyway.
 *
 * No recursion (explicit stacks), and nothing here runs Python code or allocates a Python object
 * (tp_traverse runs none; PyMem does not start a collection), so the borrowed pointers below stay good.
 */
#include "_collector.h"

#include <stdint.h>

static struct {
    PyTypeObject *value; /* the Value type */
    PyTypeObject *op;    /* engine.Op, or NULL before install */
} T;

#define IS_VALUE(o) (Py_IS_TYPE((o), T.value))

void collector_types(PyTypeObject *value, PyTypeObject *op) { T.value = value, T.op = op; }

typedef struct {
    PyObject **items;          /* borrowed: nothing runs Python code or allocates objects meanwhile */
    Py_ssize_t n, cap;
    PyObject **seen;           /* the containers walked: an open-addressing set of pointers */
    Py_ssize_t nseen, capseen;
    int open, found;           /* a mutable container seen; a Value seen */
} Walk;

static int walk_push(PyObject *o, void *arg) {
    Walk *w = arg;
    if (o == NULL || !PyObject_IS_GC(o)) return 0;
    if (w->n == w->cap) {
        Py_ssize_t cap = w->cap ? 2 * w->cap : 64;
        PyObject **items = PyMem_Realloc(w->items, cap * sizeof(PyObject *));
        if (items == NULL) return -1;
        w->items = items, w->cap = cap;
    }
    w->items[w->n++] = o;
    return 0;
}

/* 1 if o was seen before, else 0 after adding it; -1 without memory */
static int walk_seen(Walk *w, PyObject *o) {
    if (2 * (w->nseen + 1) > w->capseen) {
        Py_ssize_t cap = w->capseen ? 2 * w->capseen : 64;
        PyObject **old = w->seen, **seen = PyMem_Calloc(cap, sizeof(PyObject *));
        if (seen == NULL) return -1;
        Py_ssize_t oldcap = w->capseen;
        w->seen = seen, w->capseen = cap, w->nseen = 0;
        for (Py_ssize_t i = 0; i < oldcap; i++)
            if (old[i]) walk_seen(w, old[i]);
        PyMem_Free(old);
    }
    size_t i = ((uintptr_t)o >> 4) & (w->capseen - 1);
    for (; w->seen[i]; i = (i + 1) & (w->capseen - 1))
        if (w->seen[i] == o) return 1;
    w->seen[i] = o;
    w->nseen++;
    return 0;
}

static void walk_free(Walk *w) {
    PyMem_Free(w->items);
    PyMem_Free(w->seen);
}

/* Track v and every untracked Value under it. Untracked Values hold nothing but inputs and numbers,
 * and a tracked one's inputs are tracked, so the walk follows inputs and stops at tracked Values. */
static int track(ValueObject *v) {
    if (PyObject_GC_IsTracked((PyObject *)v)) return 0;
    Walk w = {0};
    int rc = walk_push((PyObject *)v, &w);
    while (rc == 0 && w.n) {
        ValueObject *u = V(w.items[--w.n]);
        if (!PyObject_TypeCheck(u, T.value) || PyObject_GC_IsTracked((PyObject *)u)) continue;
        PyObject_GC_Track(u);
        for (Py_ssize_t i = 0; i < u->n && rc == 0; i++) rc = walk_push(u->prev[i], &w);
    }
    walk_free(&w);
    if (rc < 0) PyErr_NoMemory();
    return rc;
}

/* Find the Values that o reaches and whether it reaches a mutable container. Values found are
 * collected in w->items from index 0 up; a Value's own inputs are not followed (track does that). */
static int walk_from(PyObject *o, Walk *w) {
    Py_ssize_t values = 0; /* items[0:values] are the Values found; the rest is the stack */
    if (walk_push(o, w) < 0) return -1;
    while (w->n > values) {
        PyObject *x = w->items[--w->n];
        if (PyObject_TypeCheck(x, T.value)) {
            w->found = 1;
            w->open |= V(x)->open || !IS_VALUE(x); /* a subclass has a __dict__ */
            w->items[values++] = x;
            continue;
        }
        int seen = walk_seen(w, x);
        if (seen) {
            if (seen < 0) return -1;
            continue;
        }
        int rc = 0;
        if (PyModule_Check(x) || PyType_Check(x)) continue;
        if (PyFunction_Check(x)) {
            if ((rc = walk_push(PyFunction_GET_CLOSURE(x), w)) == 0 && (rc = walk_push(PyFunction_GET_DEFAULTS(x), w)) == 0)
                rc = walk_push(PyFunction_GET_KW_DEFAULTS(x), w);
        } else {
            int frozen = (PyTuple_Check(x) && Py_TYPE(x)->tp_dictoffset == 0) || Py_IS_TYPE(x, T.op) || PyMethod_Check(x);
            w->open |= !frozen;
            traverseproc traverse = Py_TYPE(x)->tp_traverse;
            if (traverse) rc = traverse(x, walk_push, w);
        }
        if (rc) return -1;
    }
    w->n = values;
    return 0;
}

/* v now holds o (besides its inputs): track what a cycle through it could need tracked. */
/* A str of a subclass with neither a __dict__ nor slots of its own (cg.compile's ops, compiler.TapeOp):
 * it holds nothing but its type */
static int bare_str(PyObject *o) {
    PyTypeObject *t = Py_TYPE(o);
    return PyUnicode_Check(o) && t->tp_dictoffset == 0 && t->tp_basicsize == PyUnicode_Type.tp_basicsize;
}

int collector_hold(ValueObject *v, PyObject *o) {
    if (o == NULL || !PyObject_IS_GC(o) || bare_str(o)) return 0;
    /* CPython untracks a tuple only when nothing in it may be tracked (no Value), and a tuple cannot
     * gain items; a dict or list may be untracked while empty and gain a Value later */
    if (PyTuple_CheckExact(o) && !PyObject_GC_IsTracked(o)) return 0;
    Walk w = {0};
    int rc = walk_from(o, &w);
    if (rc == 0 && (w.found || w.open)) {
        v->open |= w.open;
        rc = track(v);
        for (Py_ssize_t i = 0; i < w.n && rc == 0; i++) rc = track(V(w.items[i]));
    } else if (rc < 0) {
        PyErr_NoMemory();
    }
    walk_free(&w);
    return rc;
}

/* A new node: tracked from birth if an input is open (and then so is it). */
int collector_born(ValueObject *v) {
    for (Py_ssize_t i = 0; i < v->n; i++)
        if (!(IS_VALUE(v->prev[i]) && !V(v->prev[i])->open) &&
            (!PyObject_TypeCheck(v->prev[i], T.value) || V(v->prev[i])->open)) {
            v->open = 1;
            return track(v);
        }
    return 0;
}
