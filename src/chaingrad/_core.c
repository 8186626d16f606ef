/* chaingrad._core: the compiled twin of the reference engine (engine.py, fused.py, layers.py, optim.py).
 *
 * The same Value, the same op table, the same backward, in C, for single numbers: each op computes its
 * value and local gradients with the formulas of engine.py's table, in the same order, so that every
 * float is bit for bit the reference engine's (compile with -ffp-contract=off). The arithmetic is
 * _kernels.c's (pure C, as libmpdec is apart from _decimal): the op table, the fused ops, the optimizers'
 * steps. This file is the CPython binding around it: the Value type, its walks, the module's functions.
 * Whatever this file does not handle itself (batches, custom ops, micrograd's _backward closures, a mode that is on, higher
 * derivatives, bad arguments) it hands to the reference engine's Python code, which then makes and reads
 * nodes of this type. setup() receives that code once, when chaingrad is imported.
 *
 * Nodes store their data and grad as doubles (an object only when it is not a float), their inputs and
 * local gradients inline, and build `_prev`, `_local` and `_ctx` only when Python asks. Nothing here
 * recurses: the graph is walked with explicit stacks, and deallocation uses CPython's trashcan.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <structmember.h>

#include "_collector.h"
#include "_kernels.h"
#include "_tape.h"
#include "_value.h"

/* ------------------------------------------------------------------------------------------------
 * What install() gives us once from chaingrad._backend's interface, beside the op table of _kernels.c
 * (PRIMITIVES, which install() checks against engine.PRIMITIVES: names, arity, local gradients or a
 * rule). Written once before any use and never again (but modes_seen, which turns from 0 to 1 once), so
 * threads and re-entrant calls cannot corrupt it.
 * ---------------------------------------------------------------------------------------------- */

enum { MAX_ACTIVATIONS = 8 }; /* room for layers' activations: install() refuses more */
enum { F_SUM, F_MEAN, F_DOT, F_LSE, F_SOFTMAX, F_LOG_SOFTMAX, F_CE, F_AFFINE, N_FUSED };
static const char *FUSED_NAMES[N_FUSED] = {"sum",     "mean",        "dot",           "logsumexp",
                                           "softmax", "log_softmax", "cross_entropy", "affine"};

/* One static state, not per-module state (PEP 573's PyModule_GetState), on purpose:
 * - every op reads it (the Value type, the table's Op objects, the modes' flags), and most ops are called
 *   through a number slot or a method, which is given the node but not the module: per-module state
 *   would cost a lookup from the node's type to its module (PyType_GetModuleByDef, a walk of the MRO) on
 *   every op, whose whole time is some tens of nanoseconds;
 * - chaingrad installs one engine per process: the core is loaded once, by chaingrad._backend, and
 *   core_exec refuses a second load (in another interpreter, say) rather than share this state;
 * - its Python objects live as long as the process, as the engine they belong to.
 * Subinterpreters that each load the core would need it per module: then S becomes the module's state
 * and the Value type a heap type that knows its module (PyType_FromModuleAndSpec). */
static struct {
    int ready;
    int modes_seen; /* modes.ever_on: the one field that changes later, once, from 0 to 1 */
    long NO_GRAD, ANOMALY; /* the modes' flags */
    PyTypeObject *Value;
    PyObject *op[N_PRIMITIVES]; /* the table's Op objects: S.op[k] is engine.PRIMITIVES[k], PRIMITIVES[k]'s */
    PyObject *fop[N_FUSED];     /* the fused ops' Op objects, as twin() gives them */
    PyObject *fallback[N_FUSED]; /* fused.py's and layers.py's functions: what the twins leave to Python */
    PyObject *doc[N_FUSED];      /* their docstrings */
    PyTypeObject *Op;            /* engine.Op */
    /* the interface's functions */
    PyObject *evaluate, *output, *local_gradients, *made_by_hand, *chain, *backward, *check_forward;
    PyObject *wait, *wait_time; /* time.sleep, and how long a walk waits for another at a time */
    PyObject *quiet;       /* numerics.quiet */
    PyObject *is_array;    /* numerics.is_array */
    PyObject *constant;    /* numerics.constant */
    PyObject *mode_var;    /* the modes' ContextVar */
    PyObject *empty;       /* "" */
    PyObject *s_enter, *s_exit, *s_chain; /* method names, made once */
    PyObject *k_number, *k_value;         /* cg.compile's keys: a number, a Value */
    /* layers.affine's activations, as the interface names them: each name (None or a str) and the op of
     * the table it applies (its place k in PRIMITIVES and S.op; -1: none) */
    int n_activations;
    PyObject *activation[MAX_ACTIVATIONS];
    int activation_op[MAX_ACTIVATIONS];
} S;

/* ------------------------------------------------------------------------------------------------
 * The Value type
 * ---------------------------------------------------------------------------------------------- */

/* cg.compile's tracing (see "cg.compile's tapes"): how deep, on which thread (another thread's nodes
 * and reads are its own business), whether a node was made meanwhile with a mode on (a no_grad inside
 * the function: its nodes would be constants in the tape), and what a node's `traced` says */
static int tracing, traced_with_a_mode;
static Py_ssize_t traced_made, traced_inputs; /* how many nodes the trace made, with room for how many inputs
                                               * in all: what the tape's writer makes room for */
static unsigned long tracing_thread;
enum { NOT_TRACED, MADE, ARGUMENT };
static int made_while_tracing(void);

#define IS_VALUE(o) (Py_IS_TYPE((o), S.Value))
#define IS_FLOAT_VALUE(o) (IS_VALUE(o) && V(o)->dobj == NULL)

static PyObject *get_ctx(ValueObject *v);

/* type(o).__name__, as the reference engine's messages name a type ("ndarray", not "numpy.ndarray") */
static PyObject *type_name(PyObject *o) { return PyObject_GetAttrString((PyObject *)Py_TYPE(o), "__name__"); }
static PyObject *apply_op(PyObject *op, PyObject *const *args, Py_ssize_t nargs);

/* ------------------------------------------------------------------------------------------------
 * Freed nodes are kept for reuse, as CPython keeps freed floats and tuples. A training step frees its
 * graph and the next builds one as large; given back to the allocator, that memory goes back to the
 * system arena by arena, and every node of the next graph then costs a page fault (two thirds of the
 * time of an op, measured here). At most KEEP_FREED nodes (12 MiB) are kept; a full collection (gc.collect())
 * frees them all, as it frees CPython's own free lists. Only the GIL's holder pushes or pops, and no
 * Python code runs in between, so neither re-entry nor threads can see it half done; a build without
 * the GIL keeps no list.
 * ---------------------------------------------------------------------------------------------- */

#ifndef KEEP_FREED /* -DKEEP_FREED=0 keeps none: a sanitizer then sees every freed node as freed */
#define KEEP_FREED 65536
#endif
static struct {
    ValueObject *top; /* linked through ctx */
    Py_ssize_t n;
} freed;

/* A node of this exact type, its inputs and locals inline, nothing else set */
static ValueObject *fresh_node(void) {
    ValueObject *v = freed.top;
    if (v != NULL) {
        freed.top = (ValueObject *)v->ctx, freed.n--;
        PyObject_Init((PyObject *)v, S.Value);
    } else if ((v = PyObject_GC_New(ValueObject, S.Value)) == NULL) {
        return NULL;
    }
    v->d = v->g = v->cval = 0.0;
    v->dobj = v->gobj = v->label = v->ctx = v->lobj = v->dict = NULL;
    v->op = NULL;
    v->n = v->nl = v->aux = 0;
    v->walk = 0;
    v->lkind = L_DOUBLE;
    v->ckind = C_NONE;
    v->reached = v->astart = v->open = v->born = v->nograd = 0;
    v->traced = tracing && made_while_tracing() ? MADE : NOT_TRACED;
    v->prev = v->inline_prev;
    v->local = v->inline_local;
    return v;
}

/* Give the kept nodes back to the allocator */
static void free_kept(void) {
    while (freed.top != NULL) {
        ValueObject *v = freed.top;
        freed.top = (ValueObject *)v->ctx, freed.n--;
        PyObject_GC_Del(v);
    }
}

/* gc.callbacks calls it at the start and end of every collection */
static PyObject *core_after_collection(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs == 2 && PyUnicode_Check(args[0]) && PyUnicode_CompareWithASCIIString(args[0], "stop") == 0 &&
        PyDict_Check(args[1])) {
        PyObject *generation = PyDict_GetItemString(args[1], "generation"); /* borrowed */
        if (generation != NULL && PyLong_Check(generation) && PyLong_AsLong(generation) == 2) free_kept();
    }
    Py_RETURN_NONE;
}

static ValueObject *alloc_node(Py_ssize_t n) {
    ValueObject *v = fresh_node();
    if (v == NULL) return NULL;
    if (v->traced == MADE) traced_inputs += n;
    if (n > 2) {
        v->prev = PyMem_Malloc(n * sizeof(PyObject *));
        v->local = PyMem_Malloc(n * sizeof(double));
        if (v->prev == NULL || v->local == NULL) {
            PyMem_Free(v->prev == v->inline_prev ? NULL : v->prev);
            PyMem_Free(v->local == v->inline_local ? NULL : v->local);
            v->prev = v->inline_prev;
            v->local = v->inline_local;
            Py_DECREF(v);
            PyErr_NoMemory();
            return NULL;
        }
    }
    return v;
}

static int value_traverse(ValueObject *v, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(v));
    Py_VISIT(v->dobj);
    Py_VISIT(v->gobj);
    Py_VISIT(v->op);
    Py_VISIT(v->label);
    Py_VISIT(v->ctx);
    Py_VISIT(v->lobj);
    Py_VISIT(v->dict);
    for (Py_ssize_t i = 0; i < v->n; i++) Py_VISIT(v->prev[i]);
    return 0;
}

/* A node's state, taken out whole (see take_out) and released later */
typedef struct {
    PyObject *objs[7];          /* dobj, gobj, op, label, ctx, lobj, dict */
    PyObject *inline_prev[2];   /* the inputs, when the node kept them inline */
    PyObject **prev;            /* inline_prev above, or the node's former array */
    double *local;              /* the node's former array of local gradients, or NULL */
    Py_ssize_t n;
} Taken;

/* Take v's state out, leaving it an empty leaf whose op is `op` (a new reference, or NULL), without
 * releasing anything. Releasing a reference can run Python code (a finalizer, a weakref callback), which
 * may read this node, re-initialise it or free what it points to: so the node is made consistent first
 * and the references are released afterwards, by release_taken, from a copy nothing else can reach. */
static void take_out(ValueObject *v, Taken *t, PyObject *op) {
    t->objs[0] = v->dobj, t->objs[1] = v->gobj, t->objs[2] = v->op;
    t->objs[3] = v->label, t->objs[4] = v->ctx, t->objs[5] = v->lobj, t->objs[6] = v->dict;
    v->dobj = v->gobj = v->label = v->ctx = v->lobj = v->dict = NULL;
    v->op = op;
    t->n = v->n;
    if (v->prev == v->inline_prev) {
        for (Py_ssize_t i = 0; i < t->n; i++) t->inline_prev[i] = v->inline_prev[i];
        t->prev = t->inline_prev;
    } else {
        t->prev = v->prev;
    }
    t->local = v->local == v->inline_local ? NULL : v->local;
    v->prev = v->inline_prev, v->local = v->inline_local;
    v->n = v->nl = 0;
    v->lkind = L_DOUBLE, v->ckind = C_NONE;
}

static void release_taken(Taken *t) {
    for (int i = 0; i < 7; i++) Py_XDECREF(t->objs[i]);
    for (Py_ssize_t i = 0; i < t->n; i++) Py_XDECREF(t->prev[i]);
    if (t->prev != t->inline_prev) PyMem_Free(t->prev);
    PyMem_Free(t->local);
}

/* tp_clear (the collector breaking a cycle): the node left an empty leaf (op "", so that the op is never
 * NULL for anything that reads it meanwhile), then what it held released. */
static int value_clear(ValueObject *v) {
    Taken t;
    take_out(v, &t, Py_NewRef(S.empty));
    release_taken(&t);
    return 0;
}

static void value_dealloc(ValueObject *v) {
    PyTypeObject *type = Py_TYPE(v);
    PyObject_GC_UnTrack(v);
    Py_TRASHCAN_BEGIN(v, value_dealloc) /* a chain of a million nodes frees without deep recursion */
    /* nothing can reach v any more (its count is 0, it is untracked, a subclass's weakrefs are gone):
     * its references are released in place, without take_out's copy, which this hot path would pay */
    Py_CLEAR(v->dobj);
    Py_CLEAR(v->gobj);
    Py_CLEAR(v->op);
    Py_CLEAR(v->label);
    Py_CLEAR(v->ctx);
    Py_CLEAR(v->lobj);
    Py_CLEAR(v->dict);
    for (Py_ssize_t i = 0; i < v->n; i++) Py_CLEAR(v->prev[i]);
    v->n = v->nl = 0;
    if (v->prev != v->inline_prev) PyMem_Free(v->prev);
    if (v->local != v->inline_local) PyMem_Free(v->local);
#ifndef Py_GIL_DISABLED
    if (type == S.Value && freed.n < KEEP_FREED) {
        v->ctx = (PyObject *)freed.top, freed.top = v, freed.n++;
    } else
#endif
        type->tp_free((PyObject *)v);
    Py_DECREF(type);
    Py_TRASHCAN_END
}

/* A list's (or a subclass's) or a tuple's items as a tuple of strong references (a tuple itself, with a new reference);
 * NULL without an error for anything else. A list's items are borrowed: whatever allocates an object
 * meanwhile can start a collection whose finalizers change or clear the list and free its items (on
 * 3.11 even PySequence_Tuple, which reads the item array before allocating the tuple). So the tuple is
 * allocated first and filled only if the list kept its length meanwhile, with nothing in between. */
static PyObject *items_tuple(PyObject *seq) {
    if (PyTuple_CheckExact(seq)) return Py_NewRef(seq);
    if (!PyList_Check(seq)) return NULL; /* a list, or a subclass (a model's nn.Outputs): its items alike */
    for (;;) {
        Py_ssize_t n = PyList_GET_SIZE(seq);
        PyObject *t = PyTuple_New(n);
        if (t == NULL) return NULL;
        if (PyList_GET_SIZE(seq) == n) {
            for (Py_ssize_t i = 0; i < n; i++) PyTuple_SET_ITEM(t, i, Py_NewRef(PyList_GET_ITEM(seq, i)));
            return t;
        }
        Py_DECREF(t); /* the list changed while the tuple was made: again, at its new length */
    }
}

static PyObject *value_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    ValueObject *v;
    if (type == S.Value) {
        v = fresh_node(); /* untracked until it holds something: see _collector.h */
        if (v == NULL) return NULL;
    } else {
        v = (ValueObject *)type->tp_alloc(type, 0);
        if (v == NULL) return NULL;
        v->open = 1; /* a subclass's instance has a __dict__ */
        v->traced = tracing && made_while_tracing() ? MADE : NOT_TRACED;
        v->prev = v->inline_prev;
        v->local = v->inline_local;
        v->lkind = L_DOUBLE;
    }
    Py_INCREF(S.empty);
    v->op = S.empty;
    return (PyObject *)v;
}

/* The pieces of a node, as Python sees them ------------------------------------------------------ */

static PyObject *data_of(ValueObject *v) {
    if (v->dobj) return Py_NewRef(v->dobj);
    return PyFloat_FromDouble(v->d);
}

static PyObject *grad_of(ValueObject *v) {
    if (v->nograd) Py_RETURN_NONE;
    if (v->gobj) return Py_NewRef(v->gobj);
    return PyFloat_FromDouble(v->g);
}

static int set_data(ValueObject *v, PyObject *x) {
    if (x == NULL) {
        PyErr_SetString(PyExc_AttributeError, "a Value's data cannot be deleted");
        return -1;
    }
    if (PyFloat_CheckExact(x)) {
        v->d = PyFloat_AS_DOUBLE(x);
        Py_CLEAR(v->dobj);
    } else {
        Py_XSETREF(v->dobj, Py_NewRef(x));
    }
    return collector_hold(v, x);
}

static int set_grad(ValueObject *v, PyObject *x) {
    if (x == NULL) {
        PyErr_SetString(PyExc_AttributeError, "a Value's grad cannot be deleted");
        return -1;
    }
    if (x == Py_None) { /* no gradient yet */
        Py_CLEAR(v->gobj);
        v->g = 0.0, v->nograd = 1, v->reached = 0;
        return 0;
    }
    Py_XSETREF(v->gobj, Py_NewRef(x)); /* kept as given, as the reference engine keeps it */
    v->reached = 1, v->nograd = 0;
    return collector_hold(v, x);
}

/* The tuple's allocation can run a collection whose finalizers re-initialise v: so the tuple is filled
 * only if v kept as many inputs meanwhile, with nothing in between (else made again). */
static PyObject *prev_of(ValueObject *v) {
    for (;;) {
        Py_ssize_t n = v->n;
        PyObject *t = PyTuple_New(n);
        if (t == NULL) return NULL;
        if (v->n == n) {
            for (Py_ssize_t i = 0; i < n; i++) PyTuple_SET_ITEM(t, i, Py_NewRef(v->prev[i]));
            return t;
        }
        Py_DECREF(t);
    }
}

static PyObject *local_of(ValueObject *v) {
    PyObject *t = NULL;
    for (;;) { /* as prev_of: the tuple's allocation may run finalizers that change v */
        if (v->lkind == L_NONE) Py_RETURN_NONE;
        if (v->lkind == L_OBJECT) return Py_NewRef(v->lobj);
        Py_ssize_t nl = v->nl;
        t = PyTuple_New(nl);
        if (t == NULL) return NULL;
        if (v->lkind == L_DOUBLE && v->nl == nl) break;
        Py_DECREF(t);
    }
    /* a float is not tracked by the collector: making one runs no Python code */
    for (Py_ssize_t i = 0; i < v->nl; i++) {
        PyObject *f = PyFloat_FromDouble(v->local[i]);
        if (f == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, f);
    }
    return t;
}

/* add_grad's path for a grad that is an object (a Value, a batch, a user's object): `c.grad += d`.
 * Its __iadd__ is Python code: it may set c.grad again (dropping the grad it runs on), zero it or
 * re-initialise c. So the grad and c are held here, and the sum is stored over whatever c holds then,
 * as `c.grad += d` does in the reference engine. */
static int add_grad_object(ValueObject *c, double d) {
    PyObject *f = PyFloat_FromDouble(d);
    if (f == NULL) return -1;
    PyObject *old = Py_NewRef(c->gobj);
    Py_INCREF(c);
    PyObject *sum = PyNumber_InPlaceAdd(old, f);
    Py_DECREF(old);
    Py_DECREF(f);
    int rc = -1;
    if (sum != NULL) {
        rc = collector_hold(c, sum); /* before storing it: releasing the grad it replaces can run a finalizer */
        if (rc < 0)
            Py_DECREF(sum);
        else
            Py_XSETREF(c->gobj, sum);
    }
    Py_DECREF(c);
    return rc;
}

/* Add d to c's grad, as `c.grad += d` does in the reference engine. On a double (the common case, kept
 * small so that it is inlined into backward's loop) or a float object, it runs no Python code. */
static inline int add_grad(ValueObject *c, double d) {
    c->reached = 1;
    if (c->gobj == NULL) {
        if (c->nograd) /* no gradient yet: 0.0 + d, as engine.add_gradient */
            c->g = 0.0 + d, c->nograd = 0;
        else
            c->g += d;
        return 0;
    }
    if (PyFloat_CheckExact(c->gobj)) {
        c->g = PyFloat_AS_DOUBLE(c->gobj) + d;
        Py_CLEAR(c->gobj); /* a float's release runs nothing */
        return 0;
    }
    return add_grad_object(c, d);
}

/* A new node of an op, its inputs' references taken (new ones made), its locals copied. */
static ValueObject *new_node(double out, PyObject *op, Py_ssize_t n, PyObject **prev, Py_ssize_t nl,
                             const double *local, int lkind) {
    ValueObject *v = alloc_node(n);
    if (v == NULL) return NULL;
    v->d = out;
    v->op = Py_NewRef(op);
    for (Py_ssize_t i = 0; i < n; i++) v->prev[i] = Py_NewRef(prev[i]);
    v->n = n;
    v->lkind = lkind;
    if (lkind == L_DOUBLE) {
        for (Py_ssize_t i = 0; i < nl; i++) v->local[i] = local[i];
        v->nl = nl;
    }
    if (collector_born(v) < 0) {
        Py_DECREF(v);
        return NULL;
    }
    return v;
}

/* ------------------------------------------------------------------------------------------------
 * Modes: an op takes the fast path only while no mode is on (modes.ever_on is False, or the
 * ContextVar holds 0); otherwise the reference engine handles no_grad and detect_anomaly.
 * ---------------------------------------------------------------------------------------------- */

/* The flags in force here (modes.mode()), -1 on error */
static long mode_flags(void) {
    if (!S.modes_seen) return 0;
    PyObject *flags;
    if (PyContextVar_Get(S.mode_var, NULL, &flags) < 0) return -1;
    long f = flags ? PyLong_AsLong(flags) : 0;
    Py_XDECREF(flags);
    return f == -1 && PyErr_Occurred() ? -1 : f;
}

/* 1 when no mode is on, 0 when one is, -1 on error */
static int modes_off(void) {
    long f = mode_flags();
    return f < 0 ? -1 : f == 0;
}

/* modes.when_first_on calls it */
static PyObject *core_modes_turned_on(PyObject *module, PyObject *unused) {
    S.modes_seen = 1;
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------------------------------
 * The primitive ops on single numbers: the entries of _kernels.c's table, engine.py's formulas
 * ---------------------------------------------------------------------------------------------- */

/* The place of the table's entry p in PRIMITIVES, which is its Op object's in S.op */
static int place(const Primitive *p) {
    int k = 0;
    while (k < N_PRIMITIVES - 1 && PRIMITIVES[k] != p) k++;
    return k;
}

/* out = p(x, y), and its local gradients in local[0], local[1] where p has them (else not written) */
static inline double forward(const Primitive *p, double x, double y, double local[2]) {
    double out = p->forward(x, y);
    if (p->local != NULL) p->local(x, y, out, &local[0], &local[1]);
    return out;
}

/* A number an op can take as a constant on the fast path: an exact float, or an exact int. */
static int constant_of(PyObject *o, double *x) {
    if (PyFloat_CheckExact(o)) {
        *x = PyFloat_AS_DOUBLE(o);
        return 1;
    }
    if (PyLong_CheckExact(o)) {
        *x = PyLong_AsDouble(o);
        return (*x == -1.0 && PyErr_Occurred()) ? -1 : 1;
    }
    return 0;
}

/* x op y for the number slots: the forward method when a is a Value, else the reflected one. As the
 * methods opgen.py writes: the fast path for a Value and a Value (exactly this type, both floats), or a
 * Value and an exact float or int; anything else goes to engine._operator. */
static PyObject *binary(const Primitive *p, PyObject *op, PyObject *a, PyObject *b) {
    int is_forward = PyObject_TypeCheck(a, S.Value);
    PyObject *self = is_forward ? a : b, *other = is_forward ? b : a;
    int rule = p->rule != NULL, off;
    if (V(self)->dobj != NULL) goto general;
    if (is_forward && IS_FLOAT_VALUE(other)) { /* Value op Value */
        if ((off = modes_off()) < 0) return NULL;
        if (!off) goto general;
        double local[2] = {0.0, 0.0}, x = V(self)->d, y = V(other)->d;
        double out = forward(p, x, y, local);
        PyObject *prev[2] = {self, other};
        ValueObject *v = new_node(out, op, 2, prev, 2, local, rule ? L_NONE : L_DOUBLE);
        if (v && rule) v->local[0] = x, v->local[1] = y; /* saved for the rule, as engine.record's _saved */
        return (PyObject *)v;
    }
    if (PyFloat_CheckExact(other) || PyLong_CheckExact(other)) { /* Value op number, number op Value */
        if ((off = modes_off()) < 0) return NULL;
        if (!off) goto general;
        double c = 0.0, local[2] = {0.0, 0.0};
        if (constant_of(other, &c) < 0) return NULL;
        double x = is_forward ? V(self)->d : c, y = is_forward ? c : V(self)->d;
        double out = forward(p, x, y, local);
        ValueObject *v = new_node(out, op, 1, &self, 1, &local[is_forward ? 0 : 1], rule ? L_NONE : L_DOUBLE);
        if (v) {
            v->ckind = is_forward ? C_RIGHT : C_LEFT;
            v->cval = c;
            if (rule) v->local[0] = x, v->local[1] = y; /* saved for the rule */
        }
        return (PyObject *)v;
    }
general:
    if (!PyObject_TypeCheck(other, S.Value)) { /* as engine._operator: not a number, NotImplemented */
        PyObject *c = PyObject_CallOneArg(S.constant, other);
        if (c == NULL) return NULL;
        Py_DECREF(c);
        if (c == Py_None) Py_RETURN_NOTIMPLEMENTED;
    }
    PyObject *ab[2] = {a, b};
    return apply_op(op, ab, 2);
}

static PyObject *unary(const Primitive *p, PyObject *op, PyObject *self) {
    if (V(self)->dobj == NULL) {
        int off = modes_off();
        if (off < 0) return NULL;
        if (off) {
            double local[2] = {0.0, 0.0}, x = V(self)->d; /* a rule op gives no local gradient */
            double out = forward(p, x, 0.0, local);
            ValueObject *v = new_node(out, op, 1, &self, 1, local, p->rule ? L_NONE : L_DOUBLE);
            if (v && p->rule) v->local[0] = x, v->local[1] = 0.0; /* saved for the rule (y: none) */
            return (PyObject *)v;
        }
    }
    return apply_op(op, &self, 1);
}

/* ------------------------------------------------------------------------------------------------
 * backward: engine.backward's walk. Each node's step on single numbers is done here; any other step
 * (a batch, a closure, a custom rule, a grad that is a Value) is engine.chain, in Python.
 * ---------------------------------------------------------------------------------------------- */

static int grad_as_double(ValueObject *v, double *g) {
    if (v->nograd) return 0; /* None */
    if (v->gobj == NULL) {
        *g = v->g;
        return 1;
    }
    if (PyFloat_CheckExact(v->gobj)) {
        *g = PyFloat_AS_DOUBLE(v->gobj);
        return 1;
    }
    return 0;
}

/* The table's entry for op if it is one of the table's ops with a rule (/, log, relu, **), else NULL */
static const Primitive *rule_of(PyObject *op) {
    for (int k = N_PRIMITIVES - 1; k >= 0; k--) /* from the end, where engine.py's table has its rules */
        if (S.op[k] == op) return PRIMITIVES[k]->rule != NULL ? PRIMITIVES[k] : NULL;
    return NULL;
}

/* The data a rule node of the table saved at its forward (x and y in local[0] and local[1]; the value is
 * computed again from them, the same bits) and the table's entry for it, or NULL where the node was
 * recorded by engine.record (its _saved is an object, in lobj), or is not one of those.
 * engine.Op.chain is its Python twin. */
static const Primitive *saved_data(ValueObject *v, double *x, double *y, double *out) {
    if (v->dobj || v->lobj || v->lkind != L_NONE) return NULL;
    const Primitive *p = rule_of(v->op);
    if (p == NULL || (p->arity == 1 && !(v->n == 1 && v->ckind == C_NONE))) return NULL;
    *x = v->local[0], *y = v->local[1];
    *out = p->forward(*x, *y);
    return p;
}

/* One of the table's rules (/, log, relu, **) on single numbers, at the forward's data (so a .data changed
 * since does not mix two points); 0 if Python must take this node. */
static int rule_step(ValueObject *v, double g) {
    double x, y, out, sx = 0.0, sy = 0.0;
    ValueObject *X = NULL, *Y = NULL;
    const Primitive *p = saved_data(v, &x, &y, &out);
    if (p == NULL) return 0;
    if (p->arity == 1) { /* log, relu: saved_data checked that v has one input and no constant */
        X = V(v->prev[0]);
    } else if (v->ckind == C_NONE && v->n == 2) {
        X = V(v->prev[0]), Y = V(v->prev[1]);
    } else if (v->ckind == C_RIGHT && v->n == 1) {
        X = V(v->prev[0]);
    } else if (v->ckind == C_LEFT && v->n == 1) {
        Y = V(v->prev[0]);
    } else {
        return 0;
    }
    p->rule(g, x, y, out, &sx, &sy);
    /* X's grad may be an object whose __iadd__ re-initialises v, which drops Y: both are held meanwhile */
    Py_XINCREF(X), Py_XINCREF(Y);
    int rc = X ? add_grad(X, sx) : 0;
    if (rc == 0 && Y) rc = add_grad(Y, sy);
    Py_XDECREF(X), Py_XDECREF(Y);
    return rc < 0 ? -1 : 1;
}

/* The rest of v's step from input i on, where some input's grad is an object (its __iadd__ Python
 * code, which may re-initialise v and free its inputs and locals): on a copy of v's inputs (held) and
 * local gradients taken first, as the reference engine zips node._prev and node._local once. */
static int careful_step(ValueObject *v, Py_ssize_t i, Py_ssize_t m, double g) {
    Py_ssize_t k = m - i;
    PyObject **prev = PyMem_Malloc(k * sizeof(PyObject *));
    double *local = PyMem_Malloc(k * sizeof(double));
    int rc = 0;
    if (prev == NULL || local == NULL) {
        PyMem_Free(prev), PyMem_Free(local);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t j = 0; j < k; j++) prev[j] = Py_NewRef(v->prev[i + j]), local[j] = v->local[i + j];
    for (Py_ssize_t j = 0; j < k && rc == 0; j++) rc = add_grad(V(prev[j]), local[j] * g);
    for (Py_ssize_t j = 0; j < k; j++) Py_DECREF(prev[j]);
    PyMem_Free(prev), PyMem_Free(local);
    return rc;
}

static int is_run_node(ValueObject *v);
static int run_step(ValueObject *v, double g);

typedef struct {
    ValueObject **items;
    Py_ssize_t len, cap;
} Stack;

/* A backward under way: the thread walking, and its order, whose nodes are marked with its serial number
 * (their `walk`), which no other walk has. A walk waits for another thread's walk that shares a node with
 * it (which, holding the GIL but while it runs Python code, may be under way), and for nothing else; a
 * walk inside a walk of the same thread goes on. The walks under way are linked (`walkers`): a node is
 * marked only while the walk whose number it carries is in that list, so a walk's marks end with it,
 * without a pass over its nodes, and in a forked child, whose other threads are gone, with an empty
 * list (forked()). engine._Walks is the reference engine's twin.
 *
 * The order's nodes are borrowed until the walk first runs Python code: a step in Python (a closure, a
 * custom rule, a batch), a grad's __iadd__, a finalizer of a grad it releases, a signal handler. Until
 * then nothing can drop a node, and a walk made of steps on single numbers never runs any. Before the
 * first Python code, hold_order() makes every node of the order a strong reference (`held`), since that
 * code may drop the graph or re-initialise any node of it; release_order() gives them back. A walk that
 * runs none (the common case) so touches no reference count: two passes over memory fewer. */
typedef struct Walker {
    uint64_t serial; /* its nodes' mark */
    unsigned long thread;
    Stack *order;
    Stack *was;      /* (node, the outer walk of this thread that had marked it) in pairs */
    int held;        /* the order's nodes are strong references */
    PyObject *quiet; /* numerics.quiet(), entered at the first step Python takes; NULL until then */
    struct Walker *prev, *next;
} Walker;
static Walker *walkers = NULL;
static uint64_t last_serial = 0; /* 2**64 walks do not happen */

/* Every node of the order held, before the walk runs Python code (see Walker) */
static void hold_order(Walker *me) {
    if (me->held) return;
    for (Py_ssize_t i = 0; i < me->order->len; i++) Py_INCREF(me->order->items[i]);
    me->held = 1;
}

/* Whether adding to the grads of v's first k inputs can run Python code: a grad that is an object (its
 * __iadd__); on a double or a float it runs nothing */
static int grads_run_python(ValueObject *v, Py_ssize_t k) {
    for (Py_ssize_t i = 0; i < k; i++) {
        PyObject *g = V(v->prev[i])->gobj;
        if (g != NULL && !PyFloat_CheckExact(g)) return 1;
    }
    return 0;
}

/* One node's step: as engine.chain. On single numbers it runs no Python code; where it must (a grad's
 * __iadd__, the step in Python), the walk `me` is held first, and `quiet` entered before the first step
 * in Python. me is NULL when Python calls the step itself (_chain). */
static int step(ValueObject *v, Walker *me) {
    double g;
    if (grad_as_double(v, &g)) {
        if (v->lkind == L_DOUBLE) {
            Py_ssize_t m = v->n < v->nl ? v->n : v->nl;
            for (Py_ssize_t i = 0; i < m; i++) {
                ValueObject *c = V(v->prev[i]);
                if (c->gobj != NULL && !PyFloat_CheckExact(c->gobj)) {
                    if (me) hold_order(me);
                    return careful_step(v, i, m, g);
                }
                add_grad(c, v->local[i] * g); /* a double added to a double: runs nothing, cannot fail */
            }
            return 0;
        }
        if (is_run_node(v)) { /* a cg.compile'd call */
            if (me && grads_run_python(v, v->n)) hold_order(me);
            return run_step(v, g);
        }
        if (v->lkind == L_NONE && Py_IS_TYPE(v->op, S.Op)) {
            if (me && grads_run_python(v, v->n < 2 ? v->n : 2)) hold_order(me); /* rule_step adds to 0 and 1 */
            int done = rule_step(v, g);
            if (done) return done < 0 ? -1 : 0;
        }
    }
    if (me != NULL) {
        hold_order(me);
        if (me->quiet == NULL) {
            PyObject *q = PyObject_CallNoArgs(S.quiet);
            if (q == NULL) return -1;
            PyObject *r = PyObject_CallMethodNoArgs(q, S.s_enter);
            if (r == NULL) {
                Py_DECREF(q);
                return -1;
            }
            Py_DECREF(r);
            me->quiet = q;
        }
    }
    PyObject *r = PyObject_CallOneArg(S.chain, (PyObject *)v);
    if (r == NULL) return -1;
    Py_DECREF(r);
    return 0;
}

/* s made room for k more items, its capacity doubled as often as needed; -1 without memory (no exception
 * set: the caller sets it once it is safe to) */
static int stack_grow(Stack *s, Py_ssize_t k) {
    Py_ssize_t cap = s->cap ? s->cap : 32; /* 256 bytes: a small graph's walk takes no malloc() */
    while (cap - s->len < k) {
        if (cap > PY_SSIZE_T_MAX / 2 / (Py_ssize_t)sizeof(ValueObject *)) return -1;
        cap *= 2;
    }
    ValueObject **items = PyMem_Realloc(s->items, cap * sizeof(ValueObject *));
    if (items == NULL) return -1;
    s->items = items, s->cap = cap;
    return 0;
}

/* Room for k more items on s; -1 without memory (no exception set) */
static inline int reserve(Stack *s, Py_ssize_t k) { return s->cap - s->len >= k ? 0 : stack_grow(s, k); }

/* v pushed on s; -1 without memory (no exception set) */
static inline int push(Stack *s, ValueObject *v) {
    if (s->len == s->cap && stack_grow(s, 1) < 0) return -1;
    s->items[s->len++] = v;
    return 0;
}

/* The walk under way whose mark v carries, if any (not: v is unmarked, or its walk has ended) */
static Walker *marked_by(ValueObject *v) {
    if (v->walk == 0) return NULL;
    for (Walker *w = walkers; w != NULL; w = w->next)
        if (w->serial == v->walk) return w;
    return NULL;
}

/* Whether v is marked by another thread's walk */
static int walked_elsewhere(ValueObject *v, Walker *me) {
    Walker *w = v->walk == me->serial ? NULL : marked_by(v);
    return w != NULL && w->thread != me->thread;
}

/* forked(): in a forked child, the walks of the parent's other threads are not there: their marks go */
static PyObject *core_forked(PyObject *module, PyObject *unused) {
    walkers = NULL;
    Py_RETURN_NONE;
}

/* The end of a walk, unlinked from `walkers` (so its marks are no more): the nodes an outer walk of this
 * thread had marked get that walk's mark back, then the order's nodes are released, if held. A release
 * may free nodes and run a finalizer that starts another backward, which finds them unmarked. */
static void release_order(Walker *me) {
    Stack *order = me->order, *was = me->was;
    for (Py_ssize_t i = 0; i + 1 < was->len; i += 2) was->items[i]->walk = ((Walker *)was->items[i + 1])->serial;
    was->len = 0;
    if (me->held) {
        me->held = 0;
        for (Py_ssize_t i = 0; i < order->len; i++) Py_DECREF(order->items[i]);
    }
    order->len = 0;
}

/* On topo's stack, a node tagged FINISH (its low bit set) is one whose inputs come next (above it): once
 * they are done, it goes into the order. Untagged: an input still to visit. */
#define FINISH ((uintptr_t)1)
#define IS_FINISH(v) ((uintptr_t)(v) & FINISH)
#define UNTAG(v) ((ValueObject *)((uintptr_t)(v) & ~FINISH))

/* engine.topological_order, leaves left out, into me->order: the nodes that lead to root, each after all
 * of its inputs, depth first with the inputs in the order of _prev (micrograd's build_topo), without
 * recursion. Each is marked with this walk's new serial number and its grad set to None (no gradient
 * yet). No Python code runs here, nothing is allocated but memory, and nothing is released: the grads it
 * resets are moved to `dropped` (releasing one can run its finalizer), for the caller to release.
 * 0: done. 1: another thread's walk holds a node of the graph; -1: no memory. On 1 and -1 the order is
 * empty, and the marks it made are no more (the walk is not linked, and takes a new number to try again). */
static int topo(ValueObject *root, Walker *me, Stack *dropped) {
    Stack stack = {NULL, 0, 0}, *order = me->order;
    int rc = -1, alone = walkers == NULL; /* alone: every mark is of a walk that has ended */
    uint64_t mark = me->serial = ++last_serial;
    if (root->n == 0) return 0;
    if (!alone && walked_elsewhere(root, me)) return 1;
    if (push(&stack, root) < 0) goto fail;
    while (stack.len) {
        ValueObject *node = stack.items[--stack.len];
        if (IS_FINISH(node)) { /* every input of it is in the order: it comes next */
            if (push(order, UNTAG(node)) < 0) goto fail;
            continue;
        }
        if (node->walk == mark) continue; /* visited meanwhile, through another of its outputs */
        if (reserve(&stack, node->n + 1) < 0) goto fail;
        if (!alone) { /* marked by an outer walk of this thread (another thread's stopped us at its output)? */
            Walker *was = marked_by(node);
            if (was != NULL && (push(me->was, node) < 0 || push(me->was, (ValueObject *)was) < 0)) goto fail;
        }
        if (node->gobj != NULL) {
            if (push(dropped, (ValueObject *)node->gobj) < 0) goto fail; /* any object */
            node->gobj = NULL;
        }
        node->g = 0.0, node->nograd = 1;
        node->reached = 0;
        node->walk = mark;
        stack.items[stack.len++] = (ValueObject *)((uintptr_t)node | FINISH);
        for (Py_ssize_t i = node->n - 1; i >= 0; i--) { /* pushed last to first: the first comes out first */
            ValueObject *c = V(node->prev[i]);
            if (c->n == 0 || c->walk == mark) continue; /* a leaf, or visited */
            if (!alone && walked_elsewhere(c, me)) {   /* another thread is walking it: wait, then again */
                rc = 1;
                goto fail;
            }
            stack.items[stack.len++] = c;
        }
    }
    PyMem_Free(stack.items);
    return 0;
fail: /* the marks of an outer walk this one took are given back */
    PyMem_Free(stack.items);
    release_order(me);
    if (rc < 0) PyErr_NoMemory(); /* now: making the error may collect, and run a finalizer */
    return rc;
}

/* The step loop asks for the memory of the node it will step PREFETCH_AHEAD nodes later: a graph larger
 * than the cache comes from memory node by node, each a few cache lines, and the order says which comes
 * next long before the step gets there. A hint, which the CPU may ignore; it reads nothing. */
#define PREFETCH_AHEAD 8
#if defined(__GNUC__) || defined(__clang__)
static inline void prefetch_node(const ValueObject *v) {
    const char *p = (const char *)v;
    __builtin_prefetch(p), __builtin_prefetch(p + 64), __builtin_prefetch(p + 128);
    __builtin_prefetch(p + sizeof(ValueObject) - 1);
}
#else
static inline void prefetch_node(const ValueObject *v) { (void)v; }
#endif

/* How many nodes backward steps between two checks for signals (Ctrl-C): a check is an atomic read unless
 * a signal came, but it may run a handler, Python code, so the walk is held before the first one. 65536
 * steps on single numbers take about half a millisecond: a walk of fewer nodes is never held for it, and
 * Ctrl-C still stops a longer one at once. */
#define SIGNAL_EVERY 65536

static PyObject *value_backward(ValueObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"create_graph", NULL};
    int create_graph = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|p:backward", kwlist, &create_graph)) return NULL;
    long flags = mode_flags();
    if (flags < 0) return NULL;
    if (create_graph || (flags & S.ANOMALY) || self->dobj != NULL) /* higher order, anomaly mode, a batch */
        return PyObject_CallFunctionObjArgs(S.backward, self, create_graph ? Py_True : Py_False, NULL);
    Stack order = {NULL, 0, 0}, was = {NULL, 0, 0}, dropped = {NULL, 0, 0};
    Walker me = {0, PyThread_get_thread_ident(), &order, &was, 0, NULL, NULL, NULL};
    int failed, rc;
    while ((rc = topo(self, &me, &dropped)) == 1) {
        /* another thread's walk shares a node with this one, and runs Python code meanwhile: wait for it,
         * the GIL let go, then walk again */
        PyObject *r = PyObject_CallOneArg(S.wait, S.wait_time);
        if (r == NULL) break;
        Py_DECREF(r);
    }
    failed = rc != 0;
    if (!failed) { /* under way: linked, for a forked child to find */
        me.next = walkers;
        if (walkers) walkers->prev = &me;
        walkers = &me;
    }
    /* the grads the walk reset, released now (their finalizers may run) */
    if (dropped.len) hold_order(&me);
    for (Py_ssize_t i = 0; i < dropped.len; i++) Py_DECREF(dropped.items[i]);
    PyMem_Free(dropped.items);
    if (!failed) {
        if (order.len) {
            PyObject *g = self->gobj; /* set again by such a finalizer, if at all */
            self->g = 1.0, self->reached = 1, self->nograd = 0;
            self->gobj = NULL;
            if (g != NULL) {
                hold_order(&me);
                Py_DECREF(g); /* self is held by our caller */
            }
        } else {
            failed = add_grad(self, 1.0) < 0; /* a leaf accumulates d(self)/d(self) too */
        }
    }
    int countdown = SIGNAL_EVERY;
    for (Py_ssize_t i = order.len - 1; !failed && i >= 0; i--) {
        ValueObject *node = order.items[i];
        if (i >= PREFETCH_AHEAD) prefetch_node(order.items[i - PREFETCH_AHEAD]);
        if (node->reached) failed = step(node, &me) < 0; /* else no gradient reached it */
        /* Ctrl-C stops a long backward here (KeyboardInterrupt, or what a handler raises), with every
         * node stepped so far complete, and the cleanup below run as for any other error */
        if (--countdown == 0) {
            countdown = SIGNAL_EVERY;
            if (!failed) {
                hold_order(&me);
                failed = PyErr_CheckSignals() < 0;
            }
        }
    }
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (rc == 0) { /* unlinked before the order is released (which may start another backward) */
        if (me.prev) me.prev->next = me.next;
        else if (walkers == &me) walkers = me.next;
        if (me.next) me.next->prev = me.prev;
    }
    release_order(&me);
    PyMem_Free(order.items);
    PyMem_Free(was.items);
    if (me.quiet) {
        PyObject *x = PyObject_CallMethodObjArgs(me.quiet, S.s_exit, Py_None, Py_None, Py_None, NULL);
        Py_XDECREF(x);
        Py_DECREF(me.quiet);
    }
    if (type) {
        PyErr_Restore(type, value, tb); /* the first error wins */
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *value_chain(ValueObject *self, PyObject *unused) {
    if (step(self, NULL) < 0) return NULL;
    Py_RETURN_NONE;
}

/* _backward: this node's step, or micrograd's closure assigned to it */
static PyObject *get_backward(ValueObject *self, void *c) {
    if (self->lkind == L_NONE && self->ckind == C_OBJECT && PyCallable_Check(self->ctx)) return Py_NewRef(self->ctx);
    return PyObject_GetAttr((PyObject *)self, S.s_chain);
}

static int set_backward(ValueObject *self, PyObject *closure, void *c) {
    if (closure == NULL) {
        PyErr_SetString(PyExc_AttributeError, "_backward cannot be deleted");
        return -1;
    }
    if (!PyCallable_Check(closure)) {
        PyObject *name = type_name(closure);
        if (name != NULL) PyErr_Format(PyExc_TypeError, "_backward must be a function of no arguments, not %U", name);
        Py_XDECREF(name);
        return -1;
    }
    /* as engine.py: in place of local gradients; the op becomes just its name */
    PyObject *op = Py_NewRef(self->op), *name = PyObject_Str(op); /* str() may run Python code */
    Py_DECREF(op);
    if (name == NULL) return -1;
    if (collector_hold(self, closure) < 0) {
        Py_DECREF(name);
        return -1;
    }
    /* the node made whole before what it held is released (that can run a finalizer, which may read it) */
    PyObject *old_op = self->op, *old_local = self->lobj, *old_ctx = self->ctx;
    self->op = name;
    self->lkind = L_NONE, self->nl = 0, self->lobj = NULL;
    self->ctx = Py_NewRef(closure), self->ckind = C_OBJECT;
    Py_DECREF(old_op);
    Py_XDECREF(old_local);
    Py_XDECREF(old_ctx);
    return 0;
}

/* ------------------------------------------------------------------------------------------------
 * The attributes, methods and number slots of Value
 * ---------------------------------------------------------------------------------------------- */

static int refused_while_tracing(ValueObject *v, const char *what, int library_may);
static PyObject *get_data(ValueObject *v, void *c) {
    if (refused_while_tracing(v, "reads .data of", 1)) return NULL;
    return data_of(v);
}
static int set_data_attr(ValueObject *v, PyObject *x, void *c) { return set_data(v, x); }
static PyObject *get_grad(ValueObject *v, void *c) { return grad_of(v); }
static int set_grad_attr(ValueObject *v, PyObject *x, void *c) { return set_grad(v, x); }
static PyObject *get_prev(ValueObject *v, void *c) { return prev_of(v); }
static PyObject *get_local(ValueObject *v, void *c) { return local_of(v); }
static PyObject *get_op(ValueObject *v, void *c) { return Py_NewRef(v->op ? v->op : S.empty); }

static int freeze_ctx(ValueObject *v);

static int set_op(ValueObject *v, PyObject *op, void *c) {
    if (op == NULL) {
        PyErr_SetString(PyExc_AttributeError, "_op cannot be deleted");
        return -1;
    }
    /* a fused node builds its _ctx from its op: kept as it is first, as the reference engine keeps it */
    if (v->ckind == C_FUSED && freeze_ctx(v) < 0) return -1;
    if (collector_hold(v, op) < 0) return -1;
    Py_XSETREF(v->op, Py_NewRef(op));
    return 0;
}

static int set_prev(ValueObject *v, PyObject *prev, void *c) {
    PyErr_SetString(PyExc_AttributeError, "a node's inputs (_prev) are fixed when it is made");
    return -1;
}

static int set_local(ValueObject *v, PyObject *local, void *c) {
    if (local == NULL) {
        PyErr_SetString(PyExc_AttributeError, "_local cannot be deleted");
        return -1;
    }
    /* a fused dot with a constant side builds its _ctx from its locals: kept as it is first */
    if (v->ckind == C_FUSED && freeze_ctx(v) < 0) return -1;
    /* the old tuple released last: its finalizer may read this node, which must be whole by then */
    PyObject *old = v->lobj;
    int rc = 0;
    v->lobj = NULL;
    v->nl = 0;
    v->lkind = L_NONE;
    if (local != Py_None) {
        Py_ssize_t cap = v->n > 2 ? v->n : 2, m = -1, i = 0;
        if (PyTuple_CheckExact(local) && PyTuple_GET_SIZE(local) <= cap) {
            m = PyTuple_GET_SIZE(local);
            for (i = 0; i < m && PyFloat_CheckExact(PyTuple_GET_ITEM(local, i)); i++) v->local[i] = PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(local, i));
        }
        if (i == m) {
            v->lkind = L_DOUBLE;
            v->nl = m;
        } else if ((rc = collector_hold(v, local)) == 0) {
            v->lkind = L_OBJECT;
            v->lobj = Py_NewRef(local);
        }
    }
    Py_XDECREF(old);
    return rc;
}

static PyObject *get_label(ValueObject *v, void *c) { return Py_NewRef(v->label ? v->label : S.empty); }

static int set_label(ValueObject *v, PyObject *label, void *c) {
    if (label == NULL || !PyUnicode_Check(label)) {
        PyObject *name = label ? type_name(label) : PyUnicode_FromString("nothing");
        if (name != NULL) PyErr_Format(PyExc_TypeError, "label must be a str, not %U", name);
        Py_XDECREF(name);
        return -1;
    }
    Py_XSETREF(v->label, Py_NewRef(label));
    return collector_hold(v, label);
}

static PyObject *get_ctx_attr(ValueObject *v, void *c) { return get_ctx(v); }

static int set_ctx(ValueObject *v, PyObject *ctx, void *c) {
    if (ctx == NULL) ctx = Py_None;
    if (collector_hold(v, ctx) < 0) return -1;
    PyObject *old = v->ctx; /* released last: its finalizer may read this node */
    v->ctx = ctx == Py_None ? NULL : Py_NewRef(ctx);
    v->ckind = ctx == Py_None ? C_NONE : C_OBJECT;
    Py_XDECREF(old);
    return 0;
}

/* _saved: the arguments' data and the value as the forward saw them, for a node whose op has a rule */
static PyObject *get_saved(ValueObject *v, void *c) {
    double x, y, out;
    if (v->lkind == L_NONE && v->lobj != NULL) return Py_NewRef(v->lobj); /* what engine.record kept */
    const Primitive *p = saved_data(v, &x, &y, &out);
    if (p == NULL) Py_RETURN_NONE;
    if (p->arity == 1) return Py_BuildValue("(dd)", x, out); /* log, relu */
    return Py_BuildValue("(ddd)", x, y, out);
}

static int set_saved(ValueObject *v, PyObject *saved, void *c) {
    if (saved == NULL || saved == Py_None) { /* none: the node reads its inputs' data, as one made by hand */
        if (v->lkind == L_NONE) Py_CLEAR(v->lobj);
        return 0;
    }
    if (v->lkind != L_NONE) {
        PyErr_SetString(PyExc_AttributeError, "_saved is kept by a node whose op has a rule (its _local is None)");
        return -1;
    }
    Py_XSETREF(v->lobj, Py_NewRef(saved));
    return collector_hold(v, saved);
}

static PyObject *get_batch_size(ValueObject *v, void *c) {
    if (v->dobj == NULL) Py_RETURN_NONE;
    PyObject *data = Py_NewRef(v->dobj); /* len() may run Python code that sets v.data again */
    Py_ssize_t n = PyObject_Length(data);
    Py_DECREF(data);
    return n < 0 ? NULL : PyLong_FromSsize_t(n);
}

/* A Value takes new attributes as any object does (micrograd's demos set p.m, p.v), kept in a dict made
 * when the first one is given, so a node that never gets one costs only the pointer. */
static PyMemberDef value_members[] = {
    {"__dictoffset__", T_PYSSIZET, offsetof(ValueObject, dict), READONLY, NULL},
    {NULL},
};

/* Setting an attribute: as any object, then what the dict now holds is held (see _collector.h) */
static int value_setattro(PyObject *self, PyObject *name, PyObject *x) {
    if (PyObject_GenericSetAttr(self, name, x) < 0) return -1;
    ValueObject *v = V(self);
    return v->dict == NULL ? 0 : collector_hold(v, v->dict);
}

static PyGetSetDef value_getset[] = {
    {"data", (getter)get_data, (setter)set_data_attr, "the number (a float), or a batch (a 1-D NumPy array)", NULL},
    {"grad", (getter)get_grad, (setter)set_grad_attr, "d(output)/d(this value) after output.backward()", NULL},
    {"label", (getter)get_label, (setter)set_label, "a name, shown in pictures of the graph", NULL},
    {"_label", (getter)get_label, (setter)set_label, NULL, NULL},
    {"_prev", (getter)get_prev, (setter)set_prev, "the Values this one was computed from", NULL},
    {"_op", (getter)get_op, (setter)set_op, "the op that computed it; \"\" for a leaf", NULL},
    {"_local", (getter)get_local, (setter)set_local, "d(this)/d(input) for each input, or None", NULL},
    {"_ctx", (getter)get_ctx_attr, (setter)set_ctx, "what the op needs besides its inputs' data", NULL},
    {"_backward", (getter)get_backward, (setter)set_backward, "this node's step of backprop", NULL},
    {"_saved", (getter)get_saved, (setter)set_saved, "the arguments' data and the value, as its op's rule needs them", NULL},
    {"batch_size", (getter)get_batch_size, NULL, "how many samples data holds, or None for a number", NULL},
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL},
};

/* Value(data, _children=(), _op="", label=""): engine.made_by_hand checks data and op and gives the
 * node's data, op and local gradients, as for the reference engine's Value. */
static int value_init(ValueObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"data", "_children", "_op", "label", NULL};
    PyObject *data, *children = NULL, *op = NULL, *label = NULL, *d = NULL, *parts = NULL, *given_local;
    int rc = -1;
    data = kwds == NULL && PyTuple_GET_SIZE(args) == 1 ? PyTuple_GET_ITEM(args, 0) : NULL;
    if (data != NULL && (PyFloat_CheckExact(data) || PyLong_CheckExact(data))) {
        /* Value(x), a leaf, the common case: what engine.made_by_hand gives, without calling it */
        double x = PyFloat_CheckExact(data) ? PyFloat_AS_DOUBLE(data) : PyLong_AsDouble(data);
        if (x == -1.0 && PyErr_Occurred()) return -1; /* an int too large for a float, as float() says */
        d = PyFloat_FromDouble(x);
        children = PyTuple_New(0);
        if (d == NULL || children == NULL) goto done;
        op = S.empty, given_local = children; /* no inputs, no local gradients */
    } else {
        if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|OOO:Value", kwlist, &data, &children, &op, &label))
            return -1;
        if (PyObject_TypeCheck(data, S.Value)) {
            PyErr_SetString(PyExc_TypeError,
                            "Value() takes an int, a float or a 1-D NumPy array of numbers, not another Value");
            return -1;
        }
        /* a list through items_tuple: see there */
        children = !children ? PyTuple_New(0) : PyList_CheckExact(children) ? items_tuple(children) : PySequence_Tuple(children);
        if (children == NULL) return -1;
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(children); i++)
            if (!PyObject_TypeCheck(PyTuple_GET_ITEM(children, i), S.Value)) {
                PyErr_SetString(PyExc_TypeError, "Value(): _children must be Values (the inputs this value was computed from)");
                goto done;
            }
        parts = PyObject_CallFunctionObjArgs(S.made_by_hand, data, children, op ? op : S.empty, NULL);
        if (parts == NULL) goto done;
        if (!PyTuple_CheckExact(parts) || PyTuple_GET_SIZE(parts) != 3) {
            PyErr_SetString(PyExc_SystemError, "engine.made_by_hand gave no (data, op, local)");
            goto done;
        }
        d = Py_NewRef(PyTuple_GET_ITEM(parts, 0));
        op = PyTuple_GET_ITEM(parts, 1), given_local = PyTuple_GET_ITEM(parts, 2); /* parts holds them */
    }
    Py_ssize_t n = PyTuple_GET_SIZE(children);
    PyObject **prev = self->inline_prev;
    double *local = self->inline_local;
    if (n > 2) {
        prev = PyMem_Malloc(n * sizeof(PyObject *));
        local = PyMem_Malloc(n * sizeof(double));
        if (prev == NULL || local == NULL) {
            PyMem_Free(prev), PyMem_Free(local);
            PyErr_NoMemory();
            goto done;
        }
    }
    /* From here to release_taken nothing runs Python code: the old state is taken out whole first and
     * released at the end, so that a finalizer it runs (even one calling __init__ again, or one reading
     * this node mid-backward) finds a consistent node, never a half-cleared one. */
    Taken old;
    take_out(self, &old, Py_NewRef(S.empty));
    self->prev = prev, self->local = local;
    for (Py_ssize_t i = 0; i < n; i++) self->prev[i] = Py_NewRef(PyTuple_GET_ITEM(children, i));
    self->n = n;
    self->g = 0.0, self->nograd = 0;
    /* the first time, its inputs are older than it; __init__ again may give it newer ones */
    if ((self->born ? collector_hold(self, children) : collector_born(self)) < 0) goto release;
    self->born = 1;
    if (set_data(self, d) < 0 || set_op(self, op, NULL) < 0 || set_local(self, given_local, NULL) < 0) goto release;
    if (label != NULL) {
        int empty = PyUnicode_Check(label) && PyUnicode_GET_LENGTH(label) == 0;
        if (!empty && set_label(self, label, NULL) < 0) goto release;
    }
    rc = 0;
release:
    release_taken(&old);
done:
    Py_XDECREF(children);
    Py_XDECREF(d);
    Py_XDECREF(parts);
    return rc;
}

static PyObject *value_repr(ValueObject *v) {
    /* the label held too: repr(data) may run Python code that sets v.label again */
    PyObject *data = data_of(v), *grad = grad_of(v), *label = Py_XNewRef(v->label), *r = NULL;
    if (data && grad) {
        if (label && PyUnicode_GET_LENGTH(label))
            r = PyUnicode_FromFormat("Value(data=%R, grad=%R, label=%R)", data, grad, label);
        else
            r = PyUnicode_FromFormat("Value(data=%R, grad=%R)", data, grad);
    }
    Py_XDECREF(data);
    Py_XDECREF(grad);
    Py_XDECREF(label);
    return r;
}

/* engine.NOT_A_NUMBER: a Value is not a number to math.tanh(v), float(v), int(v) or round(v), which would
 * drop its gradient */
static PyObject *not_a_number(void) {
    PyErr_SetString(PyExc_TypeError,
                    "a Value is not a number to math, float(), int() or round(), which would drop its gradient: for "
                    "the op, use its method or chaingrad's function (v.tanh(), cg.tanh(v)); for the number, v.item() "
                    "(or v.data)");
    return NULL;
}

static PyObject *value_float(ValueObject *v) { return not_a_number(); }
static PyObject *value_int(ValueObject *v) { return not_a_number(); }
static PyObject *value_round(ValueObject *v, PyObject *const *args, Py_ssize_t nargs) { return not_a_number(); }

/* item(): engine.Value.item */
/* bool(v): True, as for any object, but where cg.compile traces (the graph would depend on it) */
static int value_bool(PyObject *v) { return refused_while_tracing(V(v), "takes bool() of", 0) ? -1 : 1; }

static PyObject *value_item(ValueObject *v, PyObject *unused) {
    if (refused_while_tracing(v, "calls .item() on", 0)) return NULL;
    if (v->dobj == NULL) return PyFloat_FromDouble(v->d);
    /* held: its __float__ or __len__ may set v.data again, and CPython reads the object after the call */
    PyObject *data = Py_NewRef(v->dobj), *r = NULL;
    PyObject *batch = PyObject_CallOneArg(S.is_array, data);
    if (batch != NULL) {
        int is_batch = batch == Py_True;
        Py_DECREF(batch);
        if (!is_batch) {
            r = PyNumber_Float(data); /* what was assigned to .data: an int, a NumPy number */
        } else {
            Py_ssize_t n = PyObject_Length(data);
            if (n >= 0)
                PyErr_Format(PyExc_ValueError, "item() of a batch of %zd samples: reduce it first with cg.batch_mean(v)", n);
        }
    }
    Py_DECREF(data);
    return r;
}

static PyObject *value_pos(PyObject *v) { return Py_NewRef(v); }
static Py_hash_t value_hash(PyObject *v) { return PyBaseObject_Type.tp_hash(v); }

static PyObject *value_richcompare(PyObject *a, PyObject *b, int op) {
    if (op == Py_EQ || op == Py_NE) return PyBaseObject_Type.tp_richcompare(a, b, op); /* by identity */
    if ((PyObject_TypeCheck(a, S.Value) && refused_while_tracing(V(a), "compares", 0)) ||
        (PyObject_TypeCheck(b, S.Value) && refused_while_tracing(V(b), "compares", 0)))
        return NULL;
    PyObject *x = PyObject_TypeCheck(a, S.Value) ? data_of(V(a)) : Py_NewRef(a);
    PyObject *y = PyObject_TypeCheck(b, S.Value) ? data_of(V(b)) : Py_NewRef(b);
    PyObject *r = (x && y) ? PyObject_RichCompare(x, y, op) : NULL;
    Py_XDECREF(x);
    Py_XDECREF(y);
    return r;
}

/* The number slots and methods of the table's ops: each calls binary() or unary() with its entry of the
 * table and that entry's Op object, S.op[k], whose place k it finds at its first call and keeps (searching
 * PRIMITIVES on every op cost 2-3% of the chain benchmark's forward). Two threads finding it at once
 * store the same k. */
#define OP_OF(entry) (k >= 0 ? S.op[k] : S.op[k = place(&entry)])
#define BINARY_SLOT(name, entry)                                    \
    static PyObject *name(PyObject *a, PyObject *b) {               \
        static int k = -1;                                          \
        return binary(&entry, OP_OF(entry), a, b);                  \
    }
#define UNARY_METHOD(name, entry)                                   \
    static PyObject *name(PyObject *self, PyObject *unused) {       \
        static int k = -1;                                          \
        return unary(&entry, OP_OF(entry), self);                   \
    }
BINARY_SLOT(value_add, ADD)
BINARY_SLOT(value_sub, SUB)
BINARY_SLOT(value_mul, MUL)
BINARY_SLOT(value_truediv, DIV)
BINARY_SLOT(value_pow, POW)

static PyObject *value_power(PyObject *a, PyObject *b, PyObject *m) {
    if (m != Py_None) Py_RETURN_NOTIMPLEMENTED;
    return value_pow(a, b);
}

UNARY_METHOD(value_neg_m, NEG)
UNARY_METHOD(value_exp, EXP)
UNARY_METHOD(value_tanh, TANH)
UNARY_METHOD(value_sigmoid, SIGMOID)
UNARY_METHOD(value_sqrt, SQRT)
UNARY_METHOD(value_abs_m, ABS)
UNARY_METHOD(value_sin, SIN)
UNARY_METHOD(value_cos, COS)
UNARY_METHOD(value_log, LOG)
UNARY_METHOD(value_relu, RELU)
static PyObject *value_neg(PyObject *self) { return value_neg_m(self, NULL); }
static PyObject *value_abs(PyObject *self) { return value_abs_m(self, NULL); }

static PyMethodDef value_methods[] = {
    {"backward", (PyCFunction)(void (*)(void))value_backward, METH_VARARGS | METH_KEYWORDS,
     "Fill .grad of every node that leads here with d(self)/d(node).\n\nLeaves accumulate (zero them "
     "between steps); intermediate nodes are recomputed, so a second call adds the same again to the "
     "leaves only. With create_graph=True the gradients are Values with graphs of their own."},
    {"_chain", (PyCFunction)value_chain, METH_NOARGS, NULL},
    {"exp", value_exp, METH_NOARGS, "exp(x): the op 'exp'."},
    {"log", value_log, METH_NOARGS, "log(x): the op 'log'."},
    {"tanh", value_tanh, METH_NOARGS, "tanh(x): the op 'tanh'."},
    {"sigmoid", value_sigmoid, METH_NOARGS, "sigmoid(x): the op 'sigmoid'."},
    {"relu", value_relu, METH_NOARGS, "relu(x): the op 'relu'."},
    {"sqrt", value_sqrt, METH_NOARGS, "sqrt(x): the op 'sqrt'."},
    {"abs", value_abs_m, METH_NOARGS, "abs(x): the op 'abs'."},
    {"sin", value_sin, METH_NOARGS, "sin(x): the op 'sin'."},
    {"cos", value_cos, METH_NOARGS, "cos(x): the op 'cos'."},
    {"__round__", (PyCFunction)(void (*)(void))value_round, METH_FASTCALL, NULL},
    {"item", (PyCFunction)value_item, METH_NOARGS, "The number this Value holds, as a float; a batch must be reduced first."},
    {NULL},
};

static const char value_doc[] =
    "Value(data, _children=(), _op='', label='')\n--\n\n"
    "A number, or a batch of numbers, that remembers how it was computed (the compiled twin of\n"
    "chaingrad.engine's Value: the same attributes, ops and gradients, bit for bit).";

static PyType_Slot value_slots[] = {
    {Py_tp_dealloc, value_dealloc},
    {Py_tp_traverse, value_traverse},
    {Py_tp_clear, value_clear},
    {Py_tp_new, value_new},
    {Py_tp_init, value_init},
    {Py_tp_repr, value_repr},
    {Py_tp_hash, value_hash},
    {Py_tp_richcompare, value_richcompare},
    {Py_tp_getset, value_getset},
    {Py_tp_members, value_members},
    {Py_tp_setattro, value_setattro},
    {Py_tp_methods, value_methods},
    {Py_tp_doc, (void *)value_doc},
    {Py_nb_add, value_add},
    {Py_nb_subtract, value_sub},
    {Py_nb_multiply, value_mul},
    {Py_nb_true_divide, value_truediv},
    {Py_nb_power, value_power},
    {Py_nb_negative, value_neg},
    {Py_nb_positive, value_pos},
    {Py_nb_absolute, value_abs},
    {Py_nb_float, value_float},
    {Py_nb_bool, value_bool},
    {Py_nb_int, value_int},
    {0, NULL},
};

static PyType_Spec value_spec = {
    "chaingrad._core.Value",
    sizeof(ValueObject),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    value_slots,
};

/* ------------------------------------------------------------------------------------------------
 * A node's context, built when Python asks: engine.py keeps a node's arguments (with constants in
 * place) in _ctx when they are more than its inputs; fused ops keep their structure there.
 * ---------------------------------------------------------------------------------------------- */

enum { S_START = 1, S_A_CONST = 2, S_B_CONST = 4 };

static PyObject *floats_tuple(const double *xs, Py_ssize_t n) {
    PyObject *t = PyTuple_New(n);
    if (t == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *f = PyFloat_FromDouble(xs[i]);
        if (f == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, f);
    }
    return t;
}

/* A fused node's context, from a copy of its inputs (all, a tuple of strong references, which prev_of
 * makes safely) and of its locals, taken with nothing run in between: making the tuples below can start
 * a collection whose finalizers re-initialise v, and nothing here reads v again. */
static PyObject *fused_ctx(PyObject *op, PyObject *all, const double *local, Py_ssize_t aux, int bits) {
    Py_ssize_t n = PyTuple_GET_SIZE(all), start = bits & S_START;
    if (op == S.fop[F_DOT]) {
        int a_const = (bits & S_A_CONST) != 0, b_const = (bits & S_B_CONST) != 0;
        Py_ssize_t na = aux, values = (a_const || b_const) ? na : 2 * na;
        if (na < 0 || values + start != n) return PyErr_Format(PyExc_SystemError, "a dot node's structure is broken");
        PyObject *a, *b, *s = PyTuple_GetSlice(all, n - start, n);
        if (a_const) { /* the inputs are b; their local gradients are a */
            a = floats_tuple(local, na), b = PyTuple_GetSlice(all, 0, na);
        } else if (b_const) {
            a = PyTuple_GetSlice(all, 0, na), b = floats_tuple(local, na);
        } else {
            a = PyTuple_GetSlice(all, 0, na), b = PyTuple_GetSlice(all, na, 2 * na);
        }
        if (a == NULL || b == NULL || s == NULL) {
            Py_XDECREF(a), Py_XDECREF(b), Py_XDECREF(s);
            return NULL;
        }
        return Py_BuildValue("(NNN)", a, b, s);
    }
    PyObject *xs = PyTuple_GetSlice(all, 0, n - start);
    if (xs == NULL) return NULL;
    if (op == S.fop[F_SUM]) {
        PyObject *s = PyTuple_GetSlice(all, n - start, n);
        return s ? Py_BuildValue("(NN)", xs, s) : (Py_DECREF(xs), NULL);
    }
    if (op == S.fop[F_MEAN] || op == S.fop[F_LSE]) return Py_BuildValue("(N)", xs);
    return Py_BuildValue("(Nn)", xs, aux); /* softmax, log_softmax: the output; cross_entropy: the target */
}

static PyObject *get_ctx(ValueObject *v) {
    for (;;) {
        switch (v->ckind) {
        case C_OBJECT:
            return Py_NewRef(v->ctx);
        case C_RIGHT:
        case C_LEFT: {
            PyObject *x = Py_NewRef(v->prev[0]); /* held: the tuple's allocation may run finalizers */
            int right = v->ckind == C_RIGHT;
            double c = v->cval;
            PyObject *f = PyFloat_FromDouble(c), *r = f ? (right ? PyTuple_Pack(2, x, f) : PyTuple_Pack(2, f, x)) : NULL;
            Py_DECREF(x);
            Py_XDECREF(f);
            return r;
        }
        case C_FUSED: {
            PyObject *all = prev_of(v); /* its allocation may run finalizers that change v */
            if (all == NULL) return NULL;
            Py_ssize_t n = PyTuple_GET_SIZE(all);
            double *local = PyMem_Malloc((n ? n : 1) * sizeof(double)); /* PyMem runs no Python code */
            if (local == NULL) {
                Py_DECREF(all);
                return PyErr_NoMemory();
            }
            if (v->ckind != C_FUSED || v->n != n) {
                Py_DECREF(all), PyMem_Free(local); /* v changed meanwhile: again, as it is now */
                continue;
            }
            if (v->lkind != L_DOUBLE || v->nl != n) { /* cannot happen: set_local freezes the context first */
                Py_DECREF(all), PyMem_Free(local);
                return PyErr_Format(PyExc_SystemError, "a fused node lost its local gradients");
            }
            memcpy(local, v->local, n * sizeof(double));
            PyObject *op = Py_NewRef(v->op), *r = fused_ctx(op, all, local, v->aux, v->astart);
            Py_DECREF(op), Py_DECREF(all), PyMem_Free(local);
            return r;
        }
        default:
            Py_RETURN_NONE;
        }
    }
}

/* A fused node's context kept as an object (what the reference engine keeps in _context), before its op
 * or local gradients, from which fused_ctx builds it, change */
static int freeze_ctx(ValueObject *v) {
    PyObject *ctx = get_ctx(v);
    if (ctx == NULL) return -1;
    if (v->ckind == C_FUSED) { /* else a finalizer changed v while ctx was made */
        if (collector_hold(v, ctx) < 0) {
            Py_DECREF(ctx);
            return -1;
        }
        PyObject *old = v->ctx;
        v->ctx = ctx, v->ckind = C_OBJECT;
        Py_XDECREF(old);
    } else {
        Py_DECREF(ctx);
    }
    return 0;
}

/* A node with these parts, as engine.node makes one (no checks: apply and record check them) */
static PyObject *make_node(PyObject *data, PyObject *prev, PyObject *local, PyObject *op, PyObject *ctx) {
    Py_ssize_t n = PyTuple_GET_SIZE(prev);
    ValueObject *v = alloc_node(n);
    if (v == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) v->prev[i] = Py_NewRef(PyTuple_GET_ITEM(prev, i));
    v->n = n;
    v->op = Py_NewRef(op);
    if (collector_born(v) < 0 || collector_hold(v, v->op) < 0 || set_data(v, data) < 0 || set_local(v, local, NULL) < 0 ||
        set_ctx(v, ctx, NULL) < 0) {
        Py_DECREF(v);
        return NULL;
    }
    return (PyObject *)v;
}

/* node(data, prev, local, op, ctx): engine.node, for this type */
static PyObject *core_node(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5 || !PyTuple_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "node(data, prev: tuple, local, op, ctx)");
        return NULL;
    }
    return make_node(args[0], args[1], args[2], args[3], args[4]);
}

/* The arguments spliced into one list: a fused op's sequences (tuples) item by item (engine._flat) */
static PyObject *flat_arguments(PyObject *args) {
    PyObject *flat = PyList_New(0);
    for (Py_ssize_t i = 0; flat != NULL && i < PyTuple_GET_SIZE(args); i++) {
        PyObject *a = PyTuple_GET_ITEM(args, i);
        int rc = PyTuple_CheckExact(a) ? PyList_SetSlice(flat, PY_SSIZE_T_MAX, PY_SSIZE_T_MAX, a) : PyList_Append(flat, a);
        if (rc < 0) Py_CLEAR(flat);
    }
    return flat;
}

/* An argument's data (engine._data_or_constants): a Value's, a constant itself, a sequence item by item */
static PyObject *argument_data(PyObject *a) {
    if (PyObject_TypeCheck(a, S.Value)) {
        ValueObject *v = V(a);
        if (v->dobj == NULL) return PyFloat_FromDouble(v->d);
        PyObject *data = Py_NewRef(v->dobj), *batch = PyObject_CallOneArg(S.is_array, data), *r = NULL;
        if (batch != NULL) /* a batch as it is; anything else assigned to .data (a NumPy float32) as a float */
            r = batch == Py_True ? Py_NewRef(data) : PyNumber_Float(data);
        Py_XDECREF(batch);
        Py_DECREF(data);
        return r;
    }
    if (!PyTuple_CheckExact(a)) return Py_NewRef(a);
    Py_ssize_t n = PyTuple_GET_SIZE(a);
    PyObject *t = PyTuple_New(n);
    for (Py_ssize_t i = 0; t != NULL && i < n; i++) {
        PyObject *x = argument_data(PyTuple_GET_ITEM(a, i)); /* one level: a sequence holds no sequence */
        if (x == NULL) Py_CLEAR(t);
        else PyTuple_SET_ITEM(t, i, x);
    }
    return t;
}

/* (*the arguments' data, value): what a node whose op has a rule keeps for it (engine.record's _saved) */
static PyObject *saved_for_rule(PyObject *args, PyObject *value) {
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    PyObject *t = PyTuple_New(n + 1);
    for (Py_ssize_t i = 0; t != NULL && i < n; i++) {
        PyObject *x = argument_data(PyTuple_GET_ITEM(args, i));
        if (x == NULL) Py_CLEAR(t);
        else PyTuple_SET_ITEM(t, i, x);
    }
    if (t != NULL) PyTuple_SET_ITEM(t, n, Py_NewRef(value));
    return t;
}

/* engine.record: the node for out = op(*args), given the local gradients of the arguments (None: the
 * op's rule). Its inputs are the arguments that are Values; the arguments stay in _ctx when they hold
 * more than those (constants, a fused op's sequences). Under no_grad the node is a leaf. */
static PyObject *record_node(PyObject *op, PyObject *out, PyObject *args, PyObject *local) {
    PyObject *value = NULL, *flat = NULL, *prev = NULL, *checked = NULL, *r = NULL;
    long flags = mode_flags();
    if (flags < 0) return NULL;
    value = PyFloat_CheckExact(out) ? Py_NewRef(out) : PyObject_CallFunctionObjArgs(S.output, op, out, NULL);
    if (value == NULL || (flat = flat_arguments(args)) == NULL) goto done;
    if (flags & S.ANOMALY) {
        PyObject *ok = PyObject_CallFunctionObjArgs(S.check_forward, op, value, flat, NULL);
        if (ok == NULL) goto done;
        Py_DECREF(ok);
    }
    if (flags & S.NO_GRAD) {
        PyObject *none = PyTuple_New(0);
        if (none != NULL) r = make_node(value, none, none, S.empty, Py_None);
        Py_XDECREF(none);
        goto done;
    }
    Py_ssize_t n = PyList_GET_SIZE(flat), k = 0, plain = 1;
    for (Py_ssize_t i = 0; i < n; i++) k += PyObject_TypeCheck(PyList_GET_ITEM(flat, i), S.Value);
    if ((prev = PyTuple_New(k)) == NULL) goto done;
    for (Py_ssize_t i = 0, j = 0; i < n && j < k; i++) {
        PyObject *a = PyList_GET_ITEM(flat, i);
        if (PyObject_TypeCheck(a, S.Value)) PyTuple_SET_ITEM(prev, j++, Py_NewRef(a));
    }
    if (local != Py_None) {
        checked = PyObject_CallFunctionObjArgs(S.local_gradients, op, local, flat, value, (PyObject *)S.Value, NULL);
        if (checked == NULL) goto done;
    }
    plain = k == PyTuple_GET_SIZE(args);
    for (Py_ssize_t i = 0; plain && i < PyTuple_GET_SIZE(args); i++) plain = !PyTuple_CheckExact(PyTuple_GET_ITEM(args, i));
    r = make_node(value, prev, checked ? checked : Py_None, op, plain ? Py_None : args);
    if (r != NULL && local == Py_None) { /* the op's rule will need the arguments' data as they are now */
        PyObject *saved = saved_for_rule(args, value);
        if (saved == NULL || set_saved(V(r), saved, NULL) < 0) Py_CLEAR(r);
        Py_XDECREF(saved);
    }
done:
    Py_XDECREF(value);
    Py_XDECREF(flat);
    Py_XDECREF(prev);
    Py_XDECREF(checked);
    return r;
}

/* record(op, out, args, local): engine.record, for this type */
static PyObject *core_record(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4 || !PyTuple_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "record(op, out, args: tuple, local)");
        return NULL;
    }
    return record_node(args[0], args[1], args[2], args[3]);
}

/* One argument of an op, checked (engine._argument), and its data: a Value and its data; a number or
 * batch as engine keeps it, twice; a sequence (a fused op's) as a tuple of those, and of their data. */
static int argument(PyObject *op, PyObject *a, Py_ssize_t i, int in_sequence, PyObject **checked, PyObject **data) {
    if (PyObject_TypeCheck(a, S.Value)) {
        *checked = Py_NewRef(a);
        *data = data_of(V(a));
        if (*data != NULL) return 0;
        Py_CLEAR(*checked);
        return -1;
    }
    if (!in_sequence && (PyList_Check(a) || PyTuple_Check(a))) {
        PyObject *items = items_tuple(a); /* a copy: nothing can change it under us */
        if (items == NULL && !PyErr_Occurred()) items = PySequence_Tuple(a); /* a tuple's subclass */
        if (items == NULL) return -1;
        Py_ssize_t n = PyTuple_GET_SIZE(items);
        *checked = PyTuple_New(n), *data = PyTuple_New(n);
        for (Py_ssize_t j = 0; *checked && *data && j < n; j++) {
            PyObject *c, *x;
            if (argument(op, PyTuple_GET_ITEM(items, j), i, 1, &c, &x) < 0) {
                Py_CLEAR(*checked);
                break;
            }
            PyTuple_SET_ITEM(*checked, j, c);
            PyTuple_SET_ITEM(*data, j, x);
        }
        Py_DECREF(items);
        if (*checked == NULL || *data == NULL) {
            Py_CLEAR(*checked);
            Py_CLEAR(*data);
            return -1;
        }
        return 0;
    }
    PyObject *c = PyObject_CallOneArg(S.constant, a);
    if (c == NULL) return -1;
    if (c == Py_None) {
        Py_DECREF(c);
        PyObject *repr = PyObject_Repr(a), *cut = repr ? PyUnicode_Substring(repr, 0, 60) : NULL;
        PyObject *name = cut ? type_name(a) : NULL;
        if (name != NULL)
            PyErr_Format(PyExc_TypeError, "%S(): argument %zd is %U %U; expected a Value or a number", op, i, name, cut);
        Py_XDECREF(repr);
        Py_XDECREF(cut);
        Py_XDECREF(name);
        return -1;
    }
    *checked = c, *data = Py_NewRef(c);
    return 0;
}

/* engine.apply: the node for op(*args), its value and local gradients engine.evaluate's */
static PyObject *apply_op(PyObject *op, PyObject *const *args, Py_ssize_t nargs) {
    PyObject *checked = PyTuple_New(nargs), *xs = PyList_New(nargs), *pair = NULL, *r = NULL;
    if (checked == NULL || xs == NULL) goto done;
    for (Py_ssize_t i = 0; i < nargs; i++) {
        PyObject *c, *x;
        if (argument(op, args[i], i, 0, &c, &x) < 0) goto done;
        PyTuple_SET_ITEM(checked, i, c);
        PyList_SET_ITEM(xs, i, x);
    }
    if ((pair = PyObject_CallFunctionObjArgs(S.evaluate, op, xs, NULL)) == NULL) goto done;
    if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2) {
        PyErr_SetString(PyExc_SystemError, "engine.evaluate gave no (out, local)");
        goto done;
    }
    r = record_node(op, PyTuple_GET_ITEM(pair, 0), checked, PyTuple_GET_ITEM(pair, 1));
done:
    Py_XDECREF(checked);
    Py_XDECREF(xs);
    Py_XDECREF(pair);
    return r;
}

/* apply(op, *args): engine.apply, for this type (what cg.Op's call does where the core runs) */
static PyObject *core_apply(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1 || !PyObject_TypeCheck(args[0], S.Op)) {
        PyErr_SetString(PyExc_TypeError, "apply(op, *args): op must be a chaingrad Op");
        return NULL;
    }
    return apply_op(args[0], args + 1, nargs - 1);
}

/* ------------------------------------------------------------------------------------------------
 * Fused ops on single numbers: fused.py's formulas, sums left to right. Anything else (a batch, a
 * constant among softmax's inputs, a bad argument, a mode on) goes to fused.py, which also says
 * what is wrong with bad arguments.
 * ---------------------------------------------------------------------------------------------- */

/* The items of a list or tuple as Values of floats (1), as exact numbers (2), or neither (0). The
 * items are borrowed: good until anything allocates an object or runs Python code. */
static int items_kind(PyObject *seq, PyObject ***items, Py_ssize_t *n) {
    if (seq == NULL || (!PyList_CheckExact(seq) && !PyTuple_CheckExact(seq))) return 0;
    *n = PySequence_Fast_GET_SIZE(seq);
    *items = PySequence_Fast_ITEMS(seq);
    if (*n == 0) return 0;
    int values = 1, numbers = 1;
    for (Py_ssize_t i = 0; i < *n && (values || numbers); i++) {
        PyObject *o = (*items)[i];
        values &= IS_FLOAT_VALUE(o);
        numbers &= PyFloat_CheckExact(o) || PyLong_CheckExact(o);
    }
    return values ? 1 : numbers ? 2 : 0;
}

static PyObject *fallback(int which, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    return PyObject_Vectorcall(S.fallback[which], args, nargs, kwnames);
}

static int zero_number(PyObject *o) {
    if (PyFloat_CheckExact(o)) return PyFloat_AS_DOUBLE(o) == 0.0;
    if (!PyLong_CheckExact(o)) return 0;
    int overflow;
    long x = PyLong_AsLongAndOverflow(o, &overflow);
    return x == 0 && !overflow;
}

/* the optional `start` of sum and dot: absent (0), a Value of a number (1: *d its data), or something else
 * (-1). Its data may be an int, as micrograd's Value(0) biases are: added last to a total of floats, it
 * is converted as Python converts an int added to a float (PyLong_AsDouble; too large, Python raises). */
static int start_kind(PyObject *start, double *d) {
    *d = 0.0;
    if (start == NULL || zero_number(start)) return 0;
    if (!IS_VALUE(start)) return -1;
    if (V(start)->dobj == NULL) {
        *d = V(start)->d;
        return 1;
    }
    if (!PyLong_CheckExact(V(start)->dobj)) return -1;
    *d = PyLong_AsDouble(V(start)->dobj);
    if (*d == -1.0 && PyErr_Occurred()) { /* too large for a float: the Python path raises it */
        PyErr_Clear();
        return -1;
    }
    return 1;
}

static int numbers_of(PyObject **items, Py_ssize_t n, double *out) {
    for (Py_ssize_t i = 0; i < n; i++) {
        if (IS_VALUE(items[i]))
            out[i] = V(items[i])->d;
        else if (constant_of(items[i], &out[i]) < 0)
            return -1;
    }
    return 0;
}

/* Fill v, a node alloc_node(n) made, as a fused node; runs no Python code and allocates no object */
static PyObject *fill_fused(ValueObject *v, double out, int kind, PyObject **prev, Py_ssize_t n, const double *local,
                            Py_ssize_t aux, int bits) {
    v->d = out;
    v->op = Py_NewRef(S.fop[kind]);
    for (Py_ssize_t i = 0; i < n; i++) {
        v->prev[i] = Py_NewRef(prev[i]);
        v->local[i] = local[i];
    }
    v->n = v->nl = n;
    v->ckind = C_FUSED;
    v->aux = aux;
    v->astart = (unsigned char)bits;
    if (collector_born(v) < 0) {
        Py_DECREF(v);
        return NULL;
    }
    return (PyObject *)v;
}

/* A fused node over prev, which must be held (prev's pointers are used after the allocation) */
static PyObject *fused_node(double out, int kind, PyObject **prev, Py_ssize_t n, const double *local, Py_ssize_t aux,
                            int bits) {
    ValueObject *v = alloc_node(n);
    if (v == NULL) return NULL;
    return fill_fused(v, out, kind, prev, n, local, aux, bits);
}

/* parse (a, b[, start]) or (values[, start]) from vectorcall arguments; NULL kwnames only */
static int simple_args(Py_ssize_t nargs, PyObject *kwnames, Py_ssize_t least, Py_ssize_t most) {
    return kwnames == NULL && nargs >= least && nargs <= most;
}

/* sum, mean, logsumexp, dot and cross_entropy make one node: it is allocated before their lists are
 * read, since the allocation can start a collection whose finalizers change the caller's lists (and
 * free the Values they alone held). The lists are looked at again after it, and read only then, with
 * nothing allocated or run until the node holds its inputs; if they changed, the node is dropped and
 * all starts again. (softmax and affine, which make many nodes, read copies: see items_tuple.) */
static PyObject *core_dot(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    PyObject **a, **b;
    Py_ssize_t na, nb;
    int ka, kb, ks, off;
    ValueObject *v = NULL;
    Py_ssize_t cap = -1; /* the size v was allocated for */
    if (!simple_args(nargs, kwnames, 2, 3)) goto general;
    if ((off = modes_off()) < 0) return NULL;
    if (!off) goto general;
    for (;;) {
        if (!PyList_CheckExact(args[0]) && !PyTuple_CheckExact(args[0])) goto general;
        if (!PyList_CheckExact(args[1]) && !PyTuple_CheckExact(args[1])) goto general;
        /* at most both sides' Values and a start: the node is allocated for that many, then the lists
         * read (once, in the common case) with nothing allocated until the node holds its inputs */
        Py_ssize_t most = PySequence_Fast_GET_SIZE(args[0]) + PySequence_Fast_GET_SIZE(args[1]) + 1;
        if (v == NULL || most > cap) {
            Py_CLEAR(v);
            if ((v = alloc_node(cap = most)) == NULL) return NULL;
            continue; /* the lists again, as they are now */
        }
        ka = items_kind(args[0], &a, &na), kb = items_kind(args[1], &b, &nb);
        double start;
        ks = start_kind(nargs == 3 ? args[2] : NULL, &start);
        if (!ka || !kb || na != nb || ks < 0 || (ka == 2 && kb == 2)) goto general;
        Py_ssize_t n = (ka == 1 ? na : 0) + (kb == 1 ? nb : 0) + ks;
        PyObject **prev = PyMem_Malloc((n + 1) * sizeof(PyObject *)), *r = NULL; /* PyMem: no collection */
        double *x = PyMem_Malloc((4 * na + 1) * sizeof(double));
        if (prev == NULL || x == NULL) {
            PyErr_NoMemory();
            Py_DECREF(v);
        } else if (numbers_of(a, na, x) < 0 || numbers_of(b, nb, x + na) < 0) {
            Py_DECREF(v);
        } else {
            double *y = x + na, *local = y + na;
            /* cg_dot's locals are b's values (a's locals), a's (b's), then 1.0 (the start's): the node's are
             * those of its inputs, the sides that are Values and the start */
            double out = cg_dot(x, y, na, ks ? &start : NULL, local);
            Py_ssize_t k = 0;
            if (ka == 1)
                for (Py_ssize_t i = 0; i < na; i++) prev[k++] = a[i];
            if (kb == 1)
                for (Py_ssize_t i = 0; i < nb; i++) prev[k++] = b[i];
            if (ks) prev[k++] = args[2];
            if (ka == 2) /* a's numbers are constants: the node's locals start at b's */
                local += na;
            else if (kb == 2 && ks) /* b's numbers are constants: the start's local follows a's */
                local[na] = local[2 * na];
            r = fill_fused(v, out, F_DOT, prev, n, local, na,
                           (ks ? S_START : 0) | (ka == 2 ? S_A_CONST : 0) | (kb == 2 ? S_B_CONST : 0));
        }
        PyMem_Free(prev);
        PyMem_Free(x);
        return r;
    }
general:
    Py_XDECREF(v);
    return fallback(F_DOT, args, nargs, kwnames);
}

/* sum, mean, logsumexp: one node over Values of floats (allocated first: see core_dot) */
static PyObject *reduce_op(int kind, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    PyObject **xs;
    Py_ssize_t n;
    int ks = 0, off;
    ValueObject *v = NULL;
    Py_ssize_t cap = -1; /* the size v was allocated for */
    if (!simple_args(nargs, kwnames, 1, kind == F_SUM ? 2 : 1)) goto general;
    if ((off = modes_off()) < 0) return NULL;
    if (!off) goto general;
    for (;;) {
        if (!PyList_CheckExact(args[0]) && !PyTuple_CheckExact(args[0])) goto general;
        Py_ssize_t most = PySequence_Fast_GET_SIZE(args[0]) + 1; /* the items and a start */
        if (v == NULL || most > cap) {
            Py_CLEAR(v);
            if ((v = alloc_node(cap = most)) == NULL) return NULL;
            continue; /* the list again, as it is now */
        }
        if (items_kind(args[0], &xs, &n) != 1) goto general;
        double start = 0.0;
        if (kind == F_SUM && (ks = start_kind(nargs == 2 ? args[1] : NULL, &start)) < 0) goto general;
        Py_ssize_t m = n + ks;
        PyObject **prev = PyMem_Malloc((m + 1) * sizeof(PyObject *)), *r = NULL;
        double *x = PyMem_Malloc(2 * (m + 1) * sizeof(double)), out;
        if (prev == NULL || x == NULL) {
            PyErr_NoMemory();
            Py_DECREF(v);
        } else {
            double *local = x + m + 1;
            for (Py_ssize_t i = 0; i < n; i++) prev[i] = xs[i], x[i] = V(xs[i])->d;
            if (ks) prev[n] = args[1], x[n] = start; /* sum's start, added last */
            if (kind == F_LSE) {
                out = cg_logsumexp(x, n, local);
            } else if (kind == F_MEAN) {
                out = cg_mean(x, n, local);
            } else {
                out = cg_total(x, m);
                for (Py_ssize_t i = 0; i < m; i++) local[i] = 1.0;
            }
            r = fill_fused(v, out, kind, prev, m, local, 0, ks ? S_START : 0);
        }
        PyMem_Free(prev);
        PyMem_Free(x);
        return r;
    }
general:
    Py_XDECREF(v);
    return fallback(kind, args, nargs, kwnames);
}

static PyObject *core_sum(PyObject *m, PyObject *const *a, Py_ssize_t n, PyObject *k) { return reduce_op(F_SUM, a, n, k); }
static PyObject *core_mean(PyObject *m, PyObject *const *a, Py_ssize_t n, PyObject *k) { return reduce_op(F_MEAN, a, n, k); }
static PyObject *core_logsumexp(PyObject *m, PyObject *const *a, Py_ssize_t n, PyObject *k) { return reduce_op(F_LSE, a, n, k); }

/* The data of n Values of floats */
static void data_of_values(PyObject **xs, Py_ssize_t n, double *x) {
    for (Py_ssize_t i = 0; i < n; i++) x[i] = V(xs[i])->d;
}

static PyObject *softmax_op(int kind, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    PyObject **xs, *t = NULL, *outs = NULL;
    Py_ssize_t n;
    int off;
    if (!simple_args(nargs, kwnames, 1, 1)) goto general;
    if ((t = items_tuple(args[0])) == NULL && PyErr_Occurred()) return NULL;
    if (items_kind(t, &xs, &n) != 1) goto general;
    if ((off = modes_off()) < 0) goto done;
    if (!off) goto general;
    {
        /* each output node is allocated in turn, and any allocation may run finalizers: the inputs are
         * held by t, and their data read once, first. The local gradients are n rows of n. */
        double *x = n < PY_SSIZE_T_MAX / (Py_ssize_t)sizeof(double) / (n + 2) ? PyMem_Malloc((n + 2) * n * sizeof(double)) : NULL;
        if (x == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        double *out = x + n, *local = out + n;
        data_of_values(xs, n, x);
        (kind == F_SOFTMAX ? cg_softmax : cg_log_softmax)(x, n, out, local);
        outs = PyList_New(n);
        if (outs == NULL) {
            PyMem_Free(x);
            goto done;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *node = fused_node(out[i], kind, xs, n, local + i * n, i, 0);
            if (node == NULL) {
                Py_CLEAR(outs);
                break;
            }
            PyList_SET_ITEM(outs, i, node);
        }
        PyMem_Free(x);
    }
done:
    Py_XDECREF(t);
    return outs;
general:
    Py_XDECREF(t);
    return fallback(kind, args, nargs, kwnames);
}

static PyObject *core_softmax(PyObject *m, PyObject *const *a, Py_ssize_t n, PyObject *k) { return softmax_op(F_SOFTMAX, a, n, k); }
static PyObject *core_log_softmax(PyObject *m, PyObject *const *a, Py_ssize_t n, PyObject *k) { return softmax_op(F_LOG_SOFTMAX, a, n, k); }

/* While cg.compile traces, a number given to the function stands as a Value (so that it is read at every
 * call); as cross_entropy's target it is an index: *target is its int and *by the Value (0 returned),
 * or a TypeError; *by is NULL for anything else. traced_from() keeps which node took it, for tape(). */
static PyObject *traced_targets; /* {id(node): the Value its target came from}, while tracing */

static int traced_index(PyObject *x, Py_ssize_t *target, PyObject **by) {
    *by = NULL;
    if (!tracing || !PyObject_TypeCheck(x, S.Value) || V(x)->traced == NOT_TRACED) return 0;
    double d = V(x)->d;
    if (V(x)->dobj != NULL || V(x)->n != 0 || !(d >= 0 && d < 9e15 && d == floor(d))) {
        PyErr_SetString(PyExc_TypeError, "cross_entropy(): target must be an int class index (cg.compile passes "
                                         "the function's ints as Values that only cross_entropy takes as targets)");
        return -1;
    }
    *target = (Py_ssize_t)d, *by = x;
    return 0;
}

static int traced_from(PyObject *node, PyObject *by) {
    if (traced_targets == NULL && (traced_targets = PyDict_New()) == NULL) return -1;
    PyObject *key = PyLong_FromVoidPtr(node);
    int rc = key ? PyDict_SetItem(traced_targets, key, by) : -1;
    Py_XDECREF(key);
    return rc;
}

static PyObject *core_cross_entropy(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    PyObject **xs;
    Py_ssize_t n, t;
    int off;
    ValueObject *v = NULL;
    Py_ssize_t cap = -1; /* the size v was allocated for */
    PyObject *traced_target = NULL; /* a Value standing for a number cg.compile was given: see below */
    if (!simple_args(nargs, kwnames, 2, 2)) goto general;
    if (traced_index(args[1], &t, &traced_target) < 0) return NULL;
    if (traced_target == NULL) {
        if (!PyLong_CheckExact(args[1])) goto general;
        t = PyLong_AsSsize_t(args[1]);
        if (t == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            goto general;
        }
    }
    if ((off = modes_off()) < 0) return NULL;
    if (!off) goto general;
    for (;;) { /* the node allocated first: see core_dot */
        if (!PyList_CheckExact(args[0]) && !PyTuple_CheckExact(args[0])) goto general;
        Py_ssize_t most = PySequence_Fast_GET_SIZE(args[0]);
        if (v == NULL || most > cap) {
            Py_CLEAR(v);
            if ((v = alloc_node(cap = most)) == NULL) return NULL;
            continue;
        }
        if (items_kind(args[0], &xs, &n) != 1) goto general;
        if (t < 0 || t >= n) goto general; /* fused.py says what is wrong */
        double *x = PyMem_Malloc(2 * n * sizeof(double));
        if (x == NULL) {
            Py_DECREF(v);
            return PyErr_NoMemory();
        }
        double *local = x + n;
        data_of_values(xs, n, x);
        double out = cg_cross_entropy(x, n, t, local);
        PyObject *r = fill_fused(v, out, F_CE, xs, n, local, t, 0);
        PyMem_Free(x);
        if (r != NULL && traced_target != NULL && traced_from(r, traced_target) < 0) Py_CLEAR(r);
        return r;
    }
general:
    Py_XDECREF(v);
    return fallback(F_CE, args, nargs, kwnames);
}

/* layers.affine on single numbers: one dot node per row (the bias added last), then the activation.
 * The rows (the row lists themselves), the inputs and the biases are held as tuples for the whole loop:
 * each row's dot and activation allocate nodes, and so may run finalizers that change the caller's
 * lists. A row list changed meanwhile is read as it is then (core_dot looks at it after allocating);
 * emptied, fused.dot says so. */
static PyObject *core_affine(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    PyObject *biases = nargs > 2 ? args[2] : Py_None, *activation = nargs > 3 ? args[3] : Py_None;
    PyObject **xs, **bs = NULL, *trows = NULL, *txs = NULL, *tbs = NULL, *outs = NULL;
    Py_ssize_t nrows, nx, nb = 0;
    int act = -2, kx, off; /* act: the place of the activation's op in the table, -1 for none, -2 for a name not known */
    if (kwnames != NULL || nargs < 2 || nargs > 4) goto general;
    for (int i = 0; i < S.n_activations; i++)
        if (activation == S.activation[i] || (PyUnicode_Check(S.activation[i]) && PyUnicode_Check(activation) &&
                                              PyUnicode_Compare(activation, S.activation[i]) == 0))
            act = S.activation_op[i];
    if (act == -2) goto general;
    if (((txs = items_tuple(args[1])) == NULL || (trows = items_tuple(args[0])) == NULL ||
         (biases != Py_None && (tbs = items_tuple(biases)) == NULL)) && PyErr_Occurred())
        goto done;
    if (trows == NULL || (nrows = PyTuple_GET_SIZE(trows)) == 0 || !(kx = items_kind(txs, &xs, &nx))) goto general;
    if (biases != Py_None) { /* Values, each a row's start: its dot takes it (holding a float or an int) */
        if (tbs == NULL || (nb = PyTuple_GET_SIZE(tbs)) != nrows) goto general;
        bs = &PyTuple_GET_ITEM(tbs, 0);
        for (Py_ssize_t i = 0; i < nb; i++)
            if (!IS_VALUE(bs[i])) goto general;
    }
    for (Py_ssize_t r = 0; r < nrows; r++) {
        PyObject **w;
        Py_ssize_t nw;
        if (items_kind(PyTuple_GET_ITEM(trows, r), &w, &nw) != 1 || nw != nx) goto general;
    }
    if ((off = modes_off()) < 0) goto done;
    if (!off) goto general;
    if ((outs = PyList_New(nrows)) == NULL) goto done;
    for (Py_ssize_t r = 0; r < nrows; r++) {
        PyObject *dargs[3] = {PyTuple_GET_ITEM(trows, r), txs, bs ? bs[r] : NULL};
        PyObject *z = core_dot(module, dargs, bs ? 3 : 2, NULL);
        if (z != NULL && act >= 0) Py_SETREF(z, unary(PRIMITIVES[act], S.op[act], z));
        if (z == NULL) {
            Py_CLEAR(outs);
            break;
        }
        PyList_SET_ITEM(outs, r, z);
    }
done:
    Py_XDECREF(trows), Py_XDECREF(txs), Py_XDECREF(tbs);
    return outs;
general:
    Py_XDECREF(trows), Py_XDECREF(txs), Py_XDECREF(tbs);
    return fallback(F_AFFINE, args, nargs, kwnames);
}

/* ------------------------------------------------------------------------------------------------
 * Loops over many Values: zero_grad, floats, and the optimizers' steps (their arithmetic _kernels.c's).
 * Each gives NotImplemented, having changed nothing, where Python must do the work (a parameter that is
 * not a Value holding a float with a float grad, a list that is not a list), as a binary operator does.
 * ---------------------------------------------------------------------------------------------- */

static int simple_params(PyObject *params, Py_ssize_t *n) {
    if (!PyList_CheckExact(params)) return 0;
    *n = PyList_GET_SIZE(params);
    for (Py_ssize_t i = 0; i < *n; i++) {
        PyObject *p = PyList_GET_ITEM(params, i);
        double g;
        if (!IS_FLOAT_VALUE(p) || !grad_as_double(V(p), &g)) return 0;
    }
    return 1;
}

/* An optimizer's per-parameter buffer: n doubles, writable in place (an array('d')), viewed; 0 if it
 * is anything else (Python's loop then does the work). Viewed, an array cannot change its size. */
static int doubles_view(PyObject *xs, Py_ssize_t n, Py_buffer *view) {
    if (PyObject_GetBuffer(xs, view, PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) {
        PyErr_Clear();
        return 0;
    }
    if (view->itemsize == sizeof(double) && view->format && strcmp(view->format, "d") == 0 &&
        view->len == n * (Py_ssize_t)sizeof(double))
        return 1;
    PyBuffer_Release(view);
    return 0;
}

static PyObject *core_zero_grad(PyObject *module, PyObject *params) {
    if (!PyList_CheckExact(params)) Py_RETURN_NOTIMPLEMENTED;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(params); i++)
        if (!IS_VALUE(PyList_GET_ITEM(params, i))) Py_RETURN_NOTIMPLEMENTED;
    /* Dropping a grad can run its finalizer, which may change the list (clear it, as the reference
     * engine's `for v in values` then stops) or free the parameter: so the length is read again at every
     * step, the parameter is held, and the grad is released after the parameter reads 0. Should an item
     * that is not a Value appear meanwhile, Python does it all again (setting 0 twice changes nothing). */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(params); i++) {
        PyObject *item = PyList_GET_ITEM(params, i);
        if (!IS_VALUE(item)) Py_RETURN_NOTIMPLEMENTED;
        ValueObject *p = (ValueObject *)Py_NewRef(item);
        PyObject *g = p->gobj;
        p->g = 0.0, p->gobj = NULL, p->nograd = 0;
        Py_XDECREF(g);
        Py_DECREF(p);
    }
    Py_RETURN_NONE;
}

/* layers._batched's parameters: the data of every item of a list, packed as C doubles (bytes, for
 * numpy.frombuffer), when each is a Value holding a float; NotImplemented otherwise, and Python reads them. */
static PyObject *core_floats(PyObject *module, PyObject *values) {
    if (!PyList_CheckExact(values)) Py_RETURN_NOTIMPLEMENTED;
    Py_ssize_t n = PyList_GET_SIZE(values);
    for (Py_ssize_t i = 0; i < n; i++)
        if (!IS_FLOAT_VALUE(PyList_GET_ITEM(values, i))) Py_RETURN_NOTIMPLEMENTED;
    PyObject *packed = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(double));
    if (packed == NULL) return NULL;
    char *out = PyBytes_AS_STRING(packed);
    for (Py_ssize_t i = 0; i < n; i++) memcpy(out + i * sizeof(double), &V(PyList_GET_ITEM(values, i))->d, sizeof(double));
    return packed;
}

/* 1 if a call of `name` gave its `count` arguments all by keyword (the parser then checks their names),
 * else 0 with a TypeError */
static int all_by_keyword(const char *name, PyObject *args, PyObject *kwds, Py_ssize_t count) {
    if (PyTuple_GET_SIZE(args) == 0 && kwds != NULL && PyDict_GET_SIZE(kwds) == count) return 1;
    PyErr_Format(PyExc_TypeError, "%s() takes its %zd arguments by keyword, all of them", name, count);
    return 0;
}

/* SGD.step's loop: sgd_step(*, params, lr, momentum, weight_decay, nesterov, buffers, steps) */
static PyObject *core_sgd_step(PyObject *module, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"params", "lr", "momentum", "weight_decay", "nesterov", "buffers", "steps", NULL};
    PyObject *params, *buf;
    double lr, mu, wd;
    int nesterov;
    Py_ssize_t steps, n;
    if (!all_by_keyword("sgd_step", args, kwds, 7) ||
        !PyArg_ParseTupleAndKeywords(args, kwds, "|$OdddpOn:sgd_step", kwlist, &params, &lr, &mu, &wd, &nesterov, &buf,
                                     &steps))
        return NULL;
    Py_buffer b;
    if (!simple_params(params, &n) || !doubles_view(buf, n, &b)) Py_RETURN_NOTIMPLEMENTED;
    SgdSettings s = {lr, mu, wd, nesterov, steps != 0};
    double *bs = b.buf;
    for (Py_ssize_t i = 0; i < n; i++) { /* doubles: no Python code runs */
        ValueObject *p = V(PyList_GET_ITEM(params, i));
        double g = 0.0;
        grad_as_double(p, &g);
        p->d = cg_sgd(&s, p->d, g, &bs[i]);
    }
    PyBuffer_Release(&b);
    Py_RETURN_NONE;
}

/* Adam.step's loop: adam_step(*, params, lr, weight_decay, eps, beta1, beta2, exp_avg, exp_avg_sq, step_size,
 * bias_correction2_sqrt, decoupled) */
static PyObject *core_adam_step(PyObject *module, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"params",    "lr",         "weight_decay", "eps",       "beta1",
                             "beta2",     "exp_avg",    "exp_avg_sq",   "step_size", "bias_correction2_sqrt",
                             "decoupled", NULL};
    PyObject *params, *m, *v;
    double lr, wd, eps, b1, b2, step_size, bc2;
    int decoupled;
    Py_ssize_t n;
    if (!all_by_keyword("adam_step", args, kwds, 11) ||
        !PyArg_ParseTupleAndKeywords(args, kwds, "|$OdddddOOddp:adam_step", kwlist, &params, &lr, &wd, &eps, &b1, &b2, &m,
                                     &v, &step_size, &bc2, &decoupled))
        return NULL;
    Py_buffer mb, vb;
    if (!simple_params(params, &n) || !doubles_view(m, n, &mb)) Py_RETURN_NOTIMPLEMENTED;
    if (!doubles_view(v, n, &vb) || vb.buf == mb.buf) { /* two buffers, or one given twice */
        if (vb.buf == mb.buf) PyBuffer_Release(&vb);
        PyBuffer_Release(&mb);
        Py_RETURN_NOTIMPLEMENTED;
    }
    AdamSettings s = {lr, wd, eps, b1, b2, step_size, bc2, decoupled};
    double *ms = mb.buf, *vs = vb.buf;
    for (Py_ssize_t i = 0; i < n; i++) { /* doubles: no Python code runs */
        ValueObject *p = V(PyList_GET_ITEM(params, i));
        double g = 0.0;
        grad_as_double(p, &g);
        p->d = cg_adam(&s, p->d, g, &ms[i], &vs[i]);
    }
    PyBuffer_Release(&mb), PyBuffer_Release(&vb);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------------------------------
 * install(interface): what chaingrad._backend gives, once, when chaingrad is imported
 * ---------------------------------------------------------------------------------------------- */

/* interface.name, a new reference, or NULL with an error naming it */
static PyObject *get(PyObject *interface, const char *name) {
    PyObject *x = PyObject_GetAttrString(interface, name);
    if (x == NULL) PyErr_Format(PyExc_RuntimeError, "chaingrad._core.install: the interface has no %s", name);
    return x;
}

/* How many arguments an op's forward takes (its code object's, or 1 for a builtin such as abs) */
static Py_ssize_t arity(PyObject *op) {
    PyObject *forward = PyObject_GetAttrString(op, "forward"), *code = NULL, *count = NULL;
    Py_ssize_t n = -1;
    if (forward == NULL) return -1;
    if (PyCFunction_Check(forward)) {
        n = 1;
    } else if ((code = PyObject_GetAttrString(forward, "__code__")) != NULL &&
               (count = PyObject_GetAttrString(code, "co_argcount")) != NULL) {
        n = PyLong_AsSsize_t(count);
    }
    Py_DECREF(forward);
    Py_XDECREF(code);
    Py_XDECREF(count);
    return n;
}

/* The table's entry k (_kernels.c) against engine.PRIMITIVES[k]: its name, arity, and whether it has a
 * rule (the entry: either local gradients or a rule) */
static int check_primitive(int k, PyObject *op) {
    const Primitive *p = PRIMITIVES[k];
    if (p == NULL || p->forward == NULL || (p->local == NULL) == (p->rule == NULL)) {
        PyErr_Format(PyExc_RuntimeError, "op %d of the core's table has no forward, or not one of local gradients "
                     "and a rule", k);
        return -1;
    }
    if (!PyObject_TypeCheck(op, S.Op) || PyUnicode_CompareWithASCIIString(op, p->name) != 0) {
        PyErr_Format(PyExc_RuntimeError, "op %d of engine.py's table is %R, the core's is %s", k, op, p->name);
        return -1;
    }
    PyObject *rule = PyObject_GetAttrString(op, "rule");
    if (rule == NULL) return -1;
    int has_rule = rule != Py_None, core_rule = p->rule != NULL;
    Py_DECREF(rule);
    Py_ssize_t n = arity(op);
    if (n < 0 && PyErr_Occurred()) return -1;
    if (has_rule != core_rule || n != p->arity) {
        PyErr_Format(PyExc_RuntimeError, "the op %s takes %zd inputs and %s in engine.py's table, %d and %s in the core's",
                     p->name, n, has_rule ? "a rule" : "local gradients", p->arity,
                     core_rule ? "a rule" : "local gradients");
        return -1;
    }
    return 0;
}

/* A flag of the modes, interface.name, as a C long */
static int get_flag(PyObject *interface, const char *name, long *flag) {
    PyObject *x = get(interface, name);
    if (x == NULL) return -1;
    *flag = PyLong_AsLong(x);
    Py_DECREF(x);
    return *flag == -1 && PyErr_Occurred() ? -1 : 0;
}

/* interface.activations, a dict: each name layers.affine takes (None or a str) with the op it applies
 * (None: none), found by identity among the table's ops and applied by unary() */
static int get_activations(PyObject *interface) {
    PyObject *activations = get(interface, "activations"), *name, *op;
    Py_ssize_t pos = 0;
    int ok = 0;
    if (activations == NULL) return -1;
    for (int i = 0; i < S.n_activations; i++) Py_CLEAR(S.activation[i]); /* left by an install that failed */
    S.n_activations = 0;
    if (!PyDict_Check(activations) || PyDict_GET_SIZE(activations) > MAX_ACTIVATIONS) {
        PyErr_Format(PyExc_TypeError, "chaingrad._core.install: activations must be a dict of at most %d names",
                     MAX_ACTIVATIONS);
        goto done;
    }
    while (PyDict_Next(activations, &pos, &name, &op)) {
        int k = op == Py_None ? -1 : 0;
        while (k >= 0 && k < N_PRIMITIVES && S.op[k] != op) k++;
        if ((name != Py_None && !PyUnicode_CheckExact(name)) || k == N_PRIMITIVES || (k >= 0 && PRIMITIVES[k]->arity != 1)) {
            PyErr_Format(PyExc_RuntimeError, "the activation %R applies %R (%s), not None or an op of one input of engine.py's table",
                         name, op, Py_TYPE(op)->tp_name);
            goto done;
        }
        S.activation[S.n_activations] = Py_NewRef(name);
        S.activation_op[S.n_activations++] = k;
    }
    ok = 1;
done:
    Py_DECREF(activations);
    return ok ? 0 : -1;
}

static PyObject *core_install(PyObject *module, PyObject *interface) {
    if (S.ready) return PyErr_Format(PyExc_RuntimeError, "chaingrad._core is installed once, by chaingrad._backend");
    PyObject *ops = NULL, *tell = NULL, *ever_on = NULL, *turned_on = NULL;
    int ok = 0;
    if ((S.Op = (PyTypeObject *)get(interface, "Op")) == NULL || !PyType_Check(S.Op) ||
        (ops = get(interface, "primitives")) == NULL || !PyTuple_Check(ops))
        goto done;
    collector_types(S.Value, S.Op);
    if (PyTuple_GET_SIZE(ops) != N_PRIMITIVES) {
        PyErr_Format(PyExc_RuntimeError, "engine.py's table has %zd ops, the core's %d", PyTuple_GET_SIZE(ops), N_PRIMITIVES);
        goto done;
    }
    for (int k = 0; k < N_PRIMITIVES; k++) {
        if (check_primitive(k, PyTuple_GET_ITEM(ops, k)) < 0) goto done;
        S.op[k] = Py_NewRef(PyTuple_GET_ITEM(ops, k));
    }
    if (get_activations(interface) < 0) goto done;
    if ((S.evaluate = get(interface, "evaluate")) == NULL || (S.output = get(interface, "output")) == NULL ||
        (S.local_gradients = get(interface, "local_gradients")) == NULL ||
        (S.made_by_hand = get(interface, "made_by_hand")) == NULL || (S.chain = get(interface, "chain")) == NULL ||
        (S.backward = get(interface, "backward")) == NULL || (S.check_forward = get(interface, "check_forward")) == NULL ||
        (S.wait = get(interface, "wait")) == NULL || (S.wait_time = PyFloat_FromDouble(0.0002)) == NULL ||
        (S.quiet = get(interface, "quiet")) == NULL ||
        (S.is_array = get(interface, "is_array")) == NULL || (S.constant = get(interface, "constant")) == NULL ||
        (S.mode_var = get(interface, "mode")) == NULL || get_flag(interface, "NO_GRAD", &S.NO_GRAD) < 0 ||
        get_flag(interface, "ANOMALY", &S.ANOMALY) < 0)
        goto done;
    if ((tell = get(interface, "when_first_on")) == NULL || (ever_on = get(interface, "ever_on")) == NULL ||
        (turned_on = PyObject_GetAttrString(module, "modes_turned_on")) == NULL)
        goto done;
    if (!PyList_Check(tell)) {
        PyErr_SetString(PyExc_TypeError, "chaingrad._core.install: when_first_on must be a list");
        goto done;
    }
    if (PyList_Append(tell, turned_on) < 0 || (S.modes_seen = PyObject_IsTrue(ever_on)) < 0) goto done;
    S.ready = ok = 1;
done:
    Py_XDECREF(ops);
    Py_XDECREF(tell);
    Py_XDECREF(ever_on);
    Py_XDECREF(turned_on);
    return ok ? Py_NewRef(Py_None) : NULL;
}

/* The compiled twins of fused.py's functions and of layers.affine, by their ops' names */
static PyMethodDef twin_defs[N_FUSED] = {
    {"sum", (PyCFunction)(void (*)(void))core_sum, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"mean", (PyCFunction)(void (*)(void))core_mean, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"dot", (PyCFunction)(void (*)(void))core_dot, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"logsumexp", (PyCFunction)(void (*)(void))core_logsumexp, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"softmax", (PyCFunction)(void (*)(void))core_softmax, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"log_softmax", (PyCFunction)(void (*)(void))core_log_softmax, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"cross_entropy", (PyCFunction)(void (*)(void))core_cross_entropy, METH_FASTCALL | METH_KEYWORDS, NULL},
    {"affine", (PyCFunction)(void (*)(void))core_affine, METH_FASTCALL | METH_KEYWORDS, NULL},
};

/* twin(op, function): the compiled twin of fused.py's or layers.py's function for op, which it calls for
 * what it does not do itself; made with that function's docstring, so help() reads the same */
static PyObject *core_twin(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyObject_TypeCheck(args[0], S.Op) || !PyCallable_Check(args[1]))
        return PyErr_Format(PyExc_TypeError, "twin(op, function)");
    int k = 0;
    while (k < N_FUSED && PyUnicode_CompareWithASCIIString(args[0], FUSED_NAMES[k]) != 0) k++;
    if (k == N_FUSED) return PyErr_Format(PyExc_ValueError, "the core has no twin for the op %R", args[0]);
    if (S.fallback[k] != NULL) return PyErr_Format(PyExc_RuntimeError, "the twin of %R is made once", args[0]);
    PyObject *doc = PyObject_GetAttrString(args[1], "__doc__");
    if (doc == NULL) return NULL;
    if (PyUnicode_Check(doc) && (twin_defs[k].ml_doc = PyUnicode_AsUTF8(doc)) == NULL) {
        Py_DECREF(doc);
        return NULL;
    }
    PyObject *name = PyModule_GetNameObject(module);
    PyObject *f = name ? PyCFunction_NewEx(&twin_defs[k], NULL, name) : NULL;
    Py_XDECREF(name);
    if (f == NULL) {
        Py_DECREF(doc);
        return NULL;
    }
    S.doc[k] = doc; /* keeps the docstring's text alive */
    S.fop[k] = Py_NewRef(args[0]);
    S.fallback[k] = Py_NewRef(args[1]);
    return f;
}

/* ------------------------------------------------------------------------------------------------
 * cg.compile's tapes: compiler.py is their Python side, _tape.c their arithmetic. trace() turns the
 * tracing on and off, tape() writes down the graph a traced call built, run() replays a tape for other
 * numbers and returns one node, whose step is the tape's backward.
 * ---------------------------------------------------------------------------------------------- */

/* While cg.compile traces, what would tie the graph to this call's numbers is refused: reading the data
 * of a Value made from the arguments (or of an argument), comparing it, bool() of it. chaingrad's own
 * code may read .data (an op's Python path computes with it), which `library_may` allows. */
/* Whether a node made now is made by the trace (on its thread); notes a mode that is on */
static int made_while_tracing(void) {
    if (PyThread_get_thread_ident() != tracing_thread) return 0;
    long flags = mode_flags();
    if (flags < 0) PyErr_Clear(); /* unknown: taken as on */
    if (flags != 0) traced_with_a_mode = 1;
    traced_made++;
    return 1;
}

static int refused_while_tracing(ValueObject *v, const char *what, int library_may) {
    if (!tracing || v->traced == NOT_TRACED || PyThread_get_thread_ident() != tracing_thread) return 0;
    PyFrameObject *frame = PyEval_GetFrame(); /* borrowed: the Python code asking, if any */
    PyObject *file = NULL;
    int line = 0;
    if (frame != NULL) {
        if (library_may) {
            PyObject *globals = PyFrame_GetGlobals(frame);
            PyObject *name = globals ? PyDict_GetItemString(globals, "__name__") : NULL; /* borrowed */
            const char *module = name && PyUnicode_Check(name) ? PyUnicode_AsUTF8(name) : NULL;
            int ours = module != NULL && strncmp(module, "chaingrad.", 10) == 0;
            Py_XDECREF(globals);
            if (module == NULL) PyErr_Clear();
            if (ours) return 0;
        }
        PyCodeObject *code = PyFrame_GetCode(frame);
        file = Py_NewRef(code->co_filename);
        line = PyFrame_GetLineNumber(frame);
        Py_DECREF(code);
    }
    PyErr_Format(PyExc_TypeError,
                 "cg.compile: the function %s a Value that depends on its arguments (%S, line %d), so the "
                 "graph it builds would depend on this call's numbers, which a replay does not look at. "
                 "Compute with ops on Values instead (cg.relu(x) for max(x, 0), cg.softmax or "
                 "cg.logsumexp rather than a max over .data), or call the function uncompiled "
                 "(its __wrapped__).",
                 what, file ? file : Py_None, line);
    Py_XDECREF(file);
    return 1;
}

/* trace(on, arguments): tracing on (the arguments marked as such) or off again (their marks taken off) */
static PyObject *core_trace(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyBool_Check(args[0]) || !PyTuple_Check(args[1]))
        return PyErr_Format(PyExc_TypeError, "trace(on, arguments)");
    int on = args[0] == Py_True;
    if (on && tracing && PyThread_get_thread_ident() != tracing_thread)
        return PyErr_Format(PyExc_RuntimeError, "cg.compile traces on one thread at a time");
    if (on && !tracing) tracing_thread = PyThread_get_thread_ident(), traced_with_a_mode = 0, traced_made = traced_inputs = 0;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(args[1]); i++) {
        PyObject *a = PyTuple_GET_ITEM(args[1], i);
        if (PyObject_TypeCheck(a, S.Value)) V(a)->traced = on ? ARGUMENT : NOT_TRACED;
    }
    tracing += on ? 1 : -1;
    if (!tracing) Py_CLEAR(traced_targets);
    Py_RETURN_NONE;
}

static PyObject *core_tracing(PyObject *module, PyObject *unused) { return PyBool_FromLong(tracing > 0); }

/* A map from a node's address to a number, by open addressing: writing a tape looks up every input of
 * every node, and a dict of ints made for each costs ten times as much. Each key is held while in it. */
typedef struct {
    struct MapItem {
        PyObject *key; /* NULL: free */
        ptrdiff_t value;
    } *items;
    Py_ssize_t cap, n; /* cap: a power of 2, at least twice n */
} Map;

static struct MapItem *map_item(const Map *m, PyObject *key) {
    /* Fibonacci hashing: the product's high bits (its low ones repeat the address's alignment) */
    uint64_t h = (uint64_t)(uintptr_t)key * 0x9E3779B97F4A7C15ull;
    size_t mask = (size_t)m->cap - 1, i = (size_t)(h >> 32) & mask;
    for (;; i = (i + 1) & mask)
        if (m->items[i].key == key || m->items[i].key == NULL) return &m->items[i];
}

/* key's number, or -1 when it has none */
static ptrdiff_t map_get(const Map *m, PyObject *key) {
    if (m->cap == 0) return -1;
    const struct MapItem *item = map_item(m, key);
    return item->key == key ? item->value : -1;
}

/* An empty map with room for about `expected` keys, so that filling it grows it seldom if ever */
static int map_init(Map *m, Py_ssize_t expected) {
    Py_ssize_t cap = 1024;
    while (cap < 2 * expected) cap *= 2;
    if ((m->items = PyMem_Calloc(cap, sizeof(struct MapItem))) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    m->cap = cap, m->n = 0;
    return 0;
}

/* key -> value (a new key is held until map_clear or map_free) */
static int map_set(Map *m, PyObject *key, ptrdiff_t value) {
    if (2 * (m->n + 1) > m->cap) { /* twice the room, the items moved over */
        Map grown;
        if (map_init(&grown, m->cap) < 0) return -1;
        for (Py_ssize_t i = 0; i < m->cap; i++)
            if (m->items[i].key != NULL) *map_item(&grown, m->items[i].key) = m->items[i];
        grown.n = m->n;
        PyMem_Free(m->items);
        *m = grown;
    }
    struct MapItem *item = map_item(m, key);
    if (item->key == NULL) item->key = Py_NewRef(key), m->n++;
    item->value = value;
    return 0;
}

/* Every key let go (their finalizers may run): m empty, its room kept */
static void map_clear(Map *m) {
    for (Py_ssize_t i = 0; i < m->cap; i++) Py_CLEAR(m->items[i].key);
    m->n = 0;
}

static void map_free(Map *m) {
    map_clear(m);
    PyMem_Free(m->items);
    m->items = NULL, m->cap = m->n = 0;
}

/* The tape writer's map of refs, kept from one tape to the next (when its room is what the next needs,
 * up to a limit) so that each trace does not fault fresh memory in for it: taken while a writer uses it,
 * so that a writer started meanwhile (by a finalizer) makes its own. */
static Map kept_refs;
enum { KEPT_REFS_MAX = 1 << 16 }; /* 1 MiB */

static int refs_map(Map *m, Py_ssize_t expected) {
    if (kept_refs.items != NULL && kept_refs.cap >= 2 * expected && kept_refs.cap <= 8 * expected + 1024) {
        *m = kept_refs;
        kept_refs = (Map){0};
        return 0;
    }
    return map_init(m, expected);
}

/* A writer's map of refs, emptied: kept for the next writer if it is the larger (and within the limit) */
static void refs_map_done(Map *m) {
    Map done = *m;
    *m = (Map){0};
    map_clear(&done);
    if (done.cap <= KEPT_REFS_MAX && done.cap > kept_refs.cap) {
        map_free(&kept_refs);
        kept_refs = done;
    } else {
        map_free(&done);
    }
}

/* A node's place while the tape is written: what kind of slot it is and its number among them */
enum { R_VALUE, R_NUMBER, R_CONSTANT, R_ENTRY, R_PENDING };
#define REF(kind, i) ((ptrdiff_t)(i) * 8 + (kind))

typedef struct {
    Entry *entries;
    Py_ssize_t n_entries, cap_entries;
    Slot *inputs;      /* refs while written (a ref fits a Slot: see add_input), slots at the end */
    Py_ssize_t n_inputs, cap_inputs;
    double *constants;
    Py_ssize_t n_constants, cap_constants;
    PyObject **values; /* the Value inputs found, strong references */
    Py_ssize_t *argument;
    Py_ssize_t n_values, cap_values, cap_argument;
    Map refs;          /* node -> its ref, for every node met (each held meanwhile, so that no address
                        * is reused while the tape is written) */
    Map arguments;     /* Value argument -> its index among them */
    ptrdiff_t last_block[2]; /* the last softmax and log_softmax entries that compute a block */
} Writer;

static int grow(void **items, Py_ssize_t *cap, Py_ssize_t need, size_t size) {
    if (need <= *cap) return 0;
    Py_ssize_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *grown = PyMem_Realloc(*items, c * size);
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *items = grown, *cap = c;
    return 0;
}

typedef struct {
    PyObject_HEAD
    Tape t;
    Py_ssize_t *argument; /* each Value slot's argument (its index among the Values given), or -1 */
    PyObject **held;      /* each Value slot's Value when it is no argument (closed over), else NULL */
    Map held_at;          /* each Value closed over -> its slot (an argument may be one of them) */
    Py_ssize_t *arguments, n_arguments; /* the Value slots that are arguments */
} TapeObject;

static void tape_free(Tape *t) {
    PyMem_Free(t->constants), PyMem_Free(t->entries), PyMem_Free(t->inputs);
    t->constants = NULL, t->entries = NULL, t->inputs = NULL;
}

static int tape_traverse(TapeObject *self, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(self));
    for (Py_ssize_t i = 0; self->held && i < self->t.n_values; i++) Py_VISIT(self->held[i]);
    for (Py_ssize_t i = 0; i < self->held_at.cap; i++) Py_VISIT(self->held_at.items[i].key);
    return 0;
}

static int tape_clear(TapeObject *self) {
    for (Py_ssize_t i = 0; self->held && i < self->t.n_values; i++) Py_CLEAR(self->held[i]);
    map_free(&self->held_at);
    return 0;
}

static void tape_dealloc(TapeObject *self) {
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    tape_clear(self);
    PyMem_Free(self->held), PyMem_Free(self->argument), PyMem_Free(self->arguments);
    tape_free(&self->t);
    type->tp_free(self);
    Py_DECREF(type);
}

/* A call's run: its tape, and the values and local gradients of its entries, kept for its backward. Not
 * tracked by the collector: it holds only its tape, which holds no node. */
typedef struct {
    PyObject_VAR_HEAD
    TapeObject *tape;
    double *data, *locals; /* data: every slot's value; locals: the entries' local gradients, then scratch */
    double doubles[1];     /* where both are (ob_size of them) */
} RunObject;

static PyObject *tape_get_entries(TapeObject *self, void *c) { return PyLong_FromSsize_t(self->t.n_entries); }
static PyObject *tape_get_inputs(TapeObject *self, void *c) { return PyLong_FromSsize_t(self->t.n_values); }
static Py_ssize_t run_doubles(const Tape *t) { return tape_slots(t) + t->n_locals; }

static PyObject *tape_get_run_bytes(TapeObject *self, void *c) {
    return PyLong_FromSsize_t(offsetof(RunObject, doubles) + run_doubles(&self->t) * (Py_ssize_t)sizeof(double));
}
static PyObject *tape_get_bytes(TapeObject *self, void *c) {
    const Tape *t = &self->t;
    Py_ssize_t n_inputs = 0;
    for (Py_ssize_t k = 0; k < t->n_entries; k++) n_inputs += t->entries[k].n;
    return PyLong_FromSsize_t(sizeof(TapeObject) + t->n_entries * sizeof(Entry) + n_inputs * sizeof(Slot) +
                              t->n_constants * sizeof(double) + t->n_values * (2 * sizeof(Py_ssize_t) + sizeof(PyObject *)) +
                              self->held_at.cap * sizeof(struct MapItem));
}

static PyGetSetDef tape_getset[] = {
    {"entries", (getter)tape_get_entries, NULL, "how many nodes the tape replays", NULL},
    {"inputs", (getter)tape_get_inputs, NULL, "how many Values it reads (arguments and Values it closes over)", NULL},
    {"bytes", (getter)tape_get_bytes, NULL, "the memory the tape itself takes", NULL},
    {"run_bytes", (getter)tape_get_run_bytes, NULL, "the memory each call's node keeps for its backward", NULL},
    {NULL},
};

static PyType_Slot tape_slots_[] = {
    {Py_tp_dealloc, tape_dealloc}, {Py_tp_traverse, tape_traverse}, {Py_tp_clear, tape_clear},
    {Py_tp_getset, tape_getset},   {Py_tp_doc, "A traced function's graph, written down to be replayed"},
    {0, NULL},
};
static PyType_Spec tape_spec = {"chaingrad._core.Tape", sizeof(TapeObject), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, tape_slots_};
static PyTypeObject *TapeType;


static void run_dealloc(RunObject *self) {
    PyTypeObject *type = Py_TYPE(self);
    Py_XDECREF(self->tape);
    type->tp_free(self);
    Py_DECREF(type);
}

static PyObject *run_reduce(RunObject *self, PyObject *unused) {
    return PyErr_Format(PyExc_TypeError, "a node made by a cg.compile'd function cannot be pickled or copied: "
                                         "save the model's parameters (its state_dict) instead");
}

static PyMethodDef run_methods[] = {{"__reduce__", (PyCFunction)run_reduce, METH_NOARGS, NULL}, {NULL}};
static PyMemberDef run_members[] = {
    {"tape", T_OBJECT, offsetof(RunObject, tape), READONLY, "the tape this call replayed"},
    {NULL},
};
static PyType_Slot run_slots[] = {
    {Py_tp_dealloc, run_dealloc}, {Py_tp_methods, run_methods}, {Py_tp_members, run_members},
    {Py_tp_doc, "One call of a cg.compile'd function: what its backward needs"}, {0, NULL},
};
static PyType_Spec run_spec = {"chaingrad._core.Run", offsetof(RunObject, doubles), sizeof(double), Py_TPFLAGS_DEFAULT, run_slots};
static PyTypeObject *RunType;

/* ---- writing a tape down ---- */

/* A node's ref: -1 when not met yet */
static ptrdiff_t ref_of(Writer *w, PyObject *node) { return map_get(&w->refs, node); }

static int set_ref(Writer *w, PyObject *node, ptrdiff_t ref) { return map_set(&w->refs, node, ref); }

static ptrdiff_t constant_ref(Writer *w, double c) {
    if (grow((void **)&w->constants, &w->cap_constants, w->n_constants + 1, sizeof(double)) < 0) return -2;
    w->constants[w->n_constants] = c;
    return REF(R_CONSTANT, w->n_constants++);
}

/* A Value's data as a tape reads it: a float, or an int someone assigned (as the engine's ops read it);
 * 0 for anything else (a batch), which a tape does not replay */
static int number_data(ValueObject *v, double *d) {
    if (v->dobj == NULL) {
        *d = v->d;
        return 1;
    }
    if (!PyLong_CheckExact(v->dobj)) return 0;
    *d = PyLong_AsDouble(v->dobj);
    if (*d == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

/* A node whose place is known without its inputs: a Value input, a constant (a leaf the function made) */
static ptrdiff_t leaf_ref(Writer *w, ValueObject *v) {
    double d;
    if (!number_data(v, &d)) goto not_a_float;
    if (v->traced == MADE && v->n == 0) return constant_ref(w, d);
    ptrdiff_t index = map_get(&w->arguments, (PyObject *)v);
    if (grow((void **)&w->values, &w->cap_values, w->n_values + 1, sizeof(PyObject *)) < 0 ||
        grow((void **)&w->argument, &w->cap_argument, w->n_values + 1, sizeof(Py_ssize_t)) < 0)
        return -2;
    w->values[w->n_values] = Py_NewRef(v);
    w->argument[w->n_values] = index;
    return REF(R_VALUE, w->n_values++);
not_a_float:
    PyErr_SetString(PyExc_TypeError, "cg.compile replays single numbers: a Value holding a batch (or data that is "
                                     "not a float) cannot be compiled; call the function uncompiled");
    return -2;
}

/* Whether a node is one the tape replays as an entry (made while tracing, with inputs) */
static int is_entry(ValueObject *v) { return v->traced == MADE && v->n > 0; }

static int primitive_index(PyObject *op) {
    for (int k = 0; k < N_PRIMITIVES; k++)
        if (op == S.op[k]) return k;
    return -1;
}

static int fused_index(PyObject *op) {
    for (int k = 0; k < N_FUSED; k++)
        if (op == S.fop[k]) return k;
    return -1;
}

static int add_input(Writer *w, ptrdiff_t ref) {
    if (ref < 0) return -1;
    if (ref > SLOT_MAX) { /* a slot past 2**28: a graph of hundreds of millions of nodes */
        PyErr_SetString(PyExc_MemoryError, "cg.compile: the graph is too large to write down as a tape; call the "
                                           "function uncompiled (its __wrapped__)");
        return -1;
    }
    if (w->n_inputs == w->cap_inputs && grow((void **)&w->inputs, &w->cap_inputs, w->n_inputs + 1, sizeof(Slot)) < 0)
        return -1;
    w->inputs[w->n_inputs++] = ref;
    return 0;
}

static int input_ref(Writer *w, PyObject *x) {
    ptrdiff_t r = ref_of(w, x);
    if (r == -1) PyErr_SetString(PyExc_SystemError, "cg.compile: a node's input was not written down first");
    return add_input(w, r);
}

static int refuse_node(ValueObject *v, const char *why) {
    PyErr_Format(PyExc_TypeError,
                 "cg.compile cannot replay a node of op %R (%s); the function can run only uncompiled",
                 v->op ? v->op : Py_None, why);
    return -1;
}

/* The inputs in a tuple of a node's context (engine.record's args): Values, and constants in place */
static Py_ssize_t context_inputs(Writer *w, ValueObject *v, PyObject *part) {
    if (!PyTuple_Check(part)) return refuse_node(v, "its context is not engine.record's");
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(part); i++) {
        PyObject *a = PyTuple_GET_ITEM(part, i);
        if (PyObject_TypeCheck(a, S.Value)) {
            if (input_ref(w, a) < 0) return -1;
        } else if (PyFloat_CheckExact(a)) {
            if (add_input(w, constant_ref(w, PyFloat_AS_DOUBLE(a))) < 0) return -1;
        } else {
            return refuse_node(v, "an argument that is neither a Value nor a float");
        }
    }
    return PyTuple_GET_SIZE(part);
}

/* A fused node made by fused.py (constants among its inputs, say), from its context: (xs, start) for
 * sum, (xs,) for mean and logsumexp, (a, b, start) for dot, (xs, i) for softmax and log_softmax, (xs,
 * target) for cross_entropy */
static int fused_from_context(Writer *w, ValueObject *v, int f, PyObject *ctx, Entry *e) {
    Py_ssize_t size = PyTuple_GET_SIZE(ctx), n;
    int parts = f == F_DOT ? 3 : (f == F_MEAN || f == F_LSE) ? 1 : 2;
    if (size != parts) return refuse_node(v, "its context is not engine.record's");
    if ((n = context_inputs(w, v, PyTuple_GET_ITEM(ctx, 0))) < 0) return -1;
    e->n = n;
    switch (f) {
    case F_SUM:
    case F_DOT: {
        Py_ssize_t m = 0, s;
        if (f == F_DOT && (m = context_inputs(w, v, PyTuple_GET_ITEM(ctx, 1))) < 0) return -1;
        if ((s = context_inputs(w, v, PyTuple_GET_ITEM(ctx, parts - 1))) < 0) return -1;
        if (f == F_DOT && (m != n || s > 1)) return refuse_node(v, "its context is not engine.record's");
        e->kind = f == F_SUM ? T_SUM : T_DOT, e->aux = n, e->start = s, e->n = n + m + s;
        return 0;
    }
    case F_MEAN:
    case F_LSE:
        e->kind = f == F_MEAN ? T_MEAN : T_LOGSUMEXP;
        return 0;
    default: { /* softmax, log_softmax, cross_entropy: an int */
        PyObject *i = PyTuple_GET_ITEM(ctx, 1);
        e->aux = PyLong_CheckExact(i) ? PyLong_AsSsize_t(i) : -1;
        if (e->aux < 0 || e->aux >= n) {
            PyErr_Clear();
            return refuse_node(v, "its output or target is not an int in range");
        }
        e->kind = f == F_SOFTMAX ? T_SOFTMAX : f == F_LOG_SOFTMAX ? T_LOG_SOFTMAX : T_CROSS_ENTROPY;
        return 0;
    }
    }
}

/* The entry for node v, whose inputs all have refs (prev_refs[i]: v->prev[i]'s): its op, and its inputs
 * with constants in place */
static int write_entry(Writer *w, ValueObject *v, const ptrdiff_t *prev_refs) {
    Entry e = {0};
    e.in = w->n_inputs, e.target_slot = -1, e.first = -1;
    int k = primitive_index(v->op), f = k < 0 ? fused_index(v->op) : -1;
    if (v->dobj != NULL) return refuse_node(v, "its data is not a float");
    if (k >= 0) {
        const Primitive *op = PRIMITIVES[k];
        e.kind = T_PRIMITIVE, e.op = op, e.n = op->arity;
        if (v->ckind == C_NONE && v->n == op->arity) {
            for (Py_ssize_t i = 0; i < v->n; i++)
                if (add_input(w, prev_refs[i]) < 0) return -1;
        } else if ((v->ckind == C_RIGHT || v->ckind == C_LEFT) && v->n == 1 && op->arity == 2) {
            if (v->ckind == C_LEFT && add_input(w, constant_ref(w, v->cval)) < 0) return -1;
            if (add_input(w, prev_refs[0]) < 0) return -1;
            if (v->ckind == C_RIGHT && add_input(w, constant_ref(w, v->cval)) < 0) return -1;
        } else if (v->ckind == C_OBJECT && PyTuple_Check(v->ctx) && PyTuple_GET_SIZE(v->ctx) == op->arity) {
            PyObject *ctx = Py_NewRef(v->ctx); /* held: writing allocates */
            Py_ssize_t rc = context_inputs(w, v, ctx); /* engine.record's arguments, constants in place */
            Py_DECREF(ctx);
            if (rc < 0) return -1;
        } else {
            return refuse_node(v, "its inputs were changed after it was made");
        }
    } else if (f >= 0 && v->ckind == C_FUSED) {
        Py_ssize_t n = v->n;
        if (f == F_DOT) {
            Py_ssize_t na = v->aux;
            int a_const = (v->astart & S_A_CONST) != 0, b_const = (v->astart & S_B_CONST) != 0;
            e.kind = T_DOT, e.aux = na, e.start = (v->astart & S_START) != 0;
            e.n = 2 * na + e.start;
            if (v->lkind != L_DOUBLE || n != (a_const || b_const ? na : 2 * na) + e.start)
                return refuse_node(v, "its structure was changed");
            for (Py_ssize_t i = 0; i < na; i++) /* a: inputs, or constants kept as b's local gradients */
                if ((a_const ? add_input(w, constant_ref(w, v->local[i])) : add_input(w, prev_refs[i])) < 0) return -1;
            for (Py_ssize_t i = 0; i < na; i++) {
                Py_ssize_t j = a_const ? i : na + i;
                if ((b_const ? add_input(w, constant_ref(w, v->local[i])) : add_input(w, prev_refs[j])) < 0) return -1;
            }
            if (e.start && add_input(w, prev_refs[n - 1]) < 0) return -1;
        } else {
            e.n = n, e.aux = v->aux;
            e.kind = f == F_SUM ? T_SUM : f == F_MEAN ? T_MEAN : f == F_LSE ? T_LOGSUMEXP : f == F_SOFTMAX ? T_SOFTMAX
                   : f == F_LOG_SOFTMAX ? T_LOG_SOFTMAX : f == F_CE ? T_CROSS_ENTROPY : -1;
            if (e.kind < 0) return refuse_node(v, "no kernel replays it");
            for (Py_ssize_t i = 0; i < n; i++)
                if (add_input(w, prev_refs[i]) < 0) return -1;
        }
    } else if (f >= 0 && f != F_AFFINE && v->ckind == C_OBJECT && PyTuple_Check(v->ctx)) {
        PyObject *ctx = Py_NewRef(v->ctx); /* held: writing allocates, and so may run finalizers */
        int rc = fused_from_context(w, v, f, ctx, &e);
        Py_DECREF(ctx);
        if (rc < 0) return -1;
    } else {
        return refuse_node(v, "a custom op, a micrograd _backward, a batch op or a node made by hand has no kernel");
    }
    if (e.kind == T_CROSS_ENTROPY && traced_targets != NULL) { /* a target read from a number given */
        PyObject *key = PyLong_FromVoidPtr(v), *by;
        if (key == NULL) return -1;
        by = PyDict_GetItemWithError(traced_targets, key); /* borrowed: the dict holds it until the end */
        Py_DECREF(key);
        if (by == NULL && PyErr_Occurred()) return -1;
        if (by != NULL) {
            ptrdiff_t r = ref_of(w, by);
            if (r == -1 && ((r = leaf_ref(w, V(by))) < 0 || set_ref(w, by, r) < 0)) return -1;
            e.target_slot = r; /* a ref until tape() makes it a slot */
        }
    }
    if (e.kind == T_SOFTMAX || e.kind == T_LOG_SOFTMAX) { /* the rows of one softmax share a block */
        ptrdiff_t last = w->last_block[e.kind == T_LOG_SOFTMAX];
        if (last >= 0 && w->entries[last].n == e.n &&
            memcmp(w->inputs + w->entries[last].in, w->inputs + e.in, e.n * sizeof(Slot)) == 0)
            e.first = last;
        else
            w->last_block[e.kind == T_LOG_SOFTMAX] = w->n_entries;
    }
    if (grow((void **)&w->entries, &w->cap_entries, w->n_entries + 1, sizeof(Entry)) < 0) return -1;
    w->entries[w->n_entries] = e;
    return set_ref(w, (PyObject *)v, REF(R_ENTRY, w->n_entries++));
}

typedef struct {
    ValueObject *node; /* a strong reference: writing allocates, which may run finalizers */
    Py_ssize_t n, next; /* its number of inputs when met, and the next to visit */
    Py_ssize_t refs;    /* where its inputs' refs go in the walk's array of refs (n of them) */
    Py_ssize_t dest;    /* where its own ref goes there once written: its place among its user's inputs */
} WriteFrame;

/* The entries of the nodes that lead to `out`, each after its inputs: backward's order (topo above).
 * Each input is looked up once, as the walk meets it, and its ref kept there for its user's entry. */
static int write_entries(Writer *w, ValueObject *out) {
    WriteFrame *stack = NULL;
    ptrdiff_t *refs = NULL;
    Py_ssize_t len = 0, cap = 0, n_refs = 1 + out->n, cap_refs = 0; /* refs[0]: out's own */
    int rc = 0;
    if (grow((void **)&stack, &cap, 1, sizeof(WriteFrame)) < 0 || grow((void **)&refs, &cap_refs, n_refs, sizeof(ptrdiff_t)) < 0) {
        PyMem_Free(stack);
        return -1;
    }
    stack[len++] = (WriteFrame){(ValueObject *)Py_NewRef(out), out->n, 0, 1, 0};
    if (set_ref(w, (PyObject *)out, R_PENDING) < 0) rc = -1;
    while (rc == 0 && len) {
        WriteFrame *top = &stack[len - 1];
        if (top->node->n != top->n) { /* a finalizer run while writing gave it other inputs */
            rc = refuse_node(top->node, "its inputs were changed while the tape was written");
        } else if (top->next < top->n) {
            Py_ssize_t at = top->refs + top->next;
            PyObject *c = top->node->prev[top->next++];
            ptrdiff_t ref = ref_of(w, c); /* looked up by address: c itself is not read (nor its memory) */
            if (ref == R_PENDING) { /* its own input, through others: no order puts it after itself */
                PyErr_SetString(PyExc_ValueError, "cg.compile: the graph has a cycle (a node's inputs lead back to it: "
                                                  "__init__ called again on a node?), which no backward can order; "
                                                  "build each node from older ones");
                rc = -1;
            } else if (ref != -1) { /* met before */
                refs[at] = ref;
            } else {
                Py_INCREF(c); /* held while its place is made (writing allocates) */
                if (!PyObject_TypeCheck(c, S.Value)) {
                    PyErr_SetString(PyExc_TypeError, "cg.compile: a node's input is not a Value");
                    rc = -1;
                } else if (is_entry(V(c))) { /* its ref goes to refs[at] once it is written */
                    Py_ssize_t n = V(c)->n;
                    if ((rc = grow((void **)&stack, &cap, len + 1, sizeof(WriteFrame))) == 0 &&
                        (rc = grow((void **)&refs, &cap_refs, n_refs + n, sizeof(ptrdiff_t))) == 0 &&
                        (rc = set_ref(w, c, R_PENDING)) == 0) {
                        stack[len++] = (WriteFrame){(ValueObject *)Py_NewRef(c), n, 0, n_refs, at};
                        n_refs += n;
                    }
                } else if ((ref = leaf_ref(w, V(c))) < 0 || set_ref(w, c, ref) < 0) {
                    rc = -1;
                } else {
                    refs[at] = ref;
                }
                Py_DECREF(c);
            }
        } else {
            rc = write_entry(w, top->node, refs + top->refs);
            refs[top->dest] = REF(R_ENTRY, w->n_entries - 1);
            n_refs = top->refs; /* the last frame's refs are the last in the array */
            Py_DECREF(top->node);
            len--;
        }
    }
    while (len) Py_DECREF(stack[--len].node);
    PyMem_Free(stack);
    PyMem_Free(refs);
    return rc;
}

static void writer_free(Writer *w) {
    for (Py_ssize_t i = 0; i < w->n_values; i++) Py_XDECREF(w->values[i]);
    PyMem_Free(w->values), PyMem_Free(w->argument), PyMem_Free(w->entries), PyMem_Free(w->inputs);
    PyMem_Free(w->constants);
    refs_map_done(&w->refs), map_free(&w->arguments);
}

/* A ref as the slot it is, once every Value input is known */
static ptrdiff_t slot_of(ptrdiff_t ref, Py_ssize_t n_values, Py_ssize_t n_numbers, Py_ssize_t n_constants) {
    ptrdiff_t i = (size_t)ref / 8; /* a ref is never negative: unsigned, a shift and a mask */
    switch ((size_t)ref % 8) {
    case R_VALUE: return i;
    case R_NUMBER: return n_values + i;
    case R_CONSTANT: return n_values + n_numbers + i;
    default: return n_values + n_numbers + n_constants + i;
    }
}

/* tape(out, values, numbers): the tape of the graph that leads to out, made while tracing. `values` are
 * the Values given as arguments, `numbers` the leaves that stood for the numbers given. */
static PyObject *core_tape(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyObject_TypeCheck(args[0], S.Value) || !PyTuple_Check(args[1]) || !PyTuple_Check(args[2]))
        return PyErr_Format(PyExc_TypeError, "tape(out, values, numbers)");
    PyObject *out = args[0], *values = args[1], *numbers = args[2];
    if (traced_with_a_mode)
        return PyErr_Format(PyExc_TypeError, "cg.compile: the function turned no_grad or detect_anomaly on while "
                                             "it was traced, which a tape cannot replay; turn it on around the "
                                             "call instead (the function then runs uncompiled)");
    Writer w = {0};
    w.last_block[0] = w.last_block[1] = -1;
    TapeObject *tape = NULL;
    ptrdiff_t out_ref;
    /* room for every node the trace made as an entry, and for as many leaves (a model's parameters) */
    if (refs_map(&w.refs, 2 * traced_made) < 0 || grow((void **)&w.entries, &w.cap_entries, traced_made, sizeof(Entry)) < 0 ||
        grow((void **)&w.inputs, &w.cap_inputs, traced_inputs + traced_made, sizeof(Slot)) < 0) /* + a constant each */
        goto fail;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(values); i++) /* stand-ins: each in one place */
        if (map_set(&w.arguments, PyTuple_GET_ITEM(values, i), i) < 0) goto fail;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(numbers); i++)
        if (set_ref(&w, PyTuple_GET_ITEM(numbers, i), REF(R_NUMBER, i)) < 0) goto fail;
    out_ref = ref_of(&w, out);
    if (out_ref == -1) {
        if (is_entry(V(out))) {
            if (write_entries(&w, V(out)) < 0) goto fail;
            out_ref = REF(R_ENTRY, w.n_entries - 1);
        } else if ((out_ref = leaf_ref(&w, V(out))) < 0) {
            goto fail;
        }
    }
    if ((tape = PyObject_GC_New(TapeObject, TapeType)) == NULL) goto fail;
    Tape *t = &tape->t;
    memset(t, 0, sizeof(Tape));
    tape->argument = NULL, tape->held = NULL, tape->arguments = NULL, tape->n_arguments = 0;
    memset(&tape->held_at, 0, sizeof(Map));
    Py_ssize_t nn = PyTuple_GET_SIZE(numbers);
    t->n_values = w.n_values, t->n_numbers = nn, t->n_constants = w.n_constants, t->n_entries = w.n_entries;
    t->entries = w.entries, t->inputs = w.inputs, t->constants = w.constants; /* the tape takes them */
    w.entries = NULL, w.inputs = NULL, w.constants = NULL;
    tape->argument = w.argument, tape->held = w.values; /* and the Value inputs (arguments' let go below) */
    w.argument = NULL, w.values = NULL;
    w.n_values = 0;
    if ((tape->arguments = PyMem_Malloc((t->n_values ? t->n_values : 1) * sizeof(Py_ssize_t))) == NULL) {
        PyErr_NoMemory();
        goto fail_tape;
    }
    for (Py_ssize_t i = 0; i < t->n_values; i++) {
        if (tape->argument[i] >= 0) {
            Py_CLEAR(tape->held[i]); /* an argument is read at every call */
            tape->arguments[tape->n_arguments++] = i;
        } else if (map_set(&tape->held_at, tape->held[i], i) < 0) {
            goto fail_tape;
        }
    }
    for (Py_ssize_t k = 0; k < t->n_entries; k++) {
        Entry *e = &t->entries[k];
        for (Py_ssize_t j = 0; j < e->n; j++) t->inputs[e->in + j] = (Slot)slot_of(t->inputs[e->in + j], t->n_values, nn, t->n_constants);
        if (e->target_slot >= 0) e->target_slot = slot_of(e->target_slot, t->n_values, nn, t->n_constants);
        if (e->n > t->widest) t->widest = e->n;
        e->local = e->first >= 0 ? t->entries[e->first].local : t->n_locals;
        t->n_locals += tape_locals_of(e);
    }
    t->output = slot_of(out_ref, t->n_values, nn, t->n_constants);
    writer_free(&w);
    PyObject_GC_Track(tape);
    return (PyObject *)tape;
fail_tape:
    writer_free(&w);
    Py_DECREF(tape);
    return NULL;
fail:
    writer_free(&w);
    return NULL;
}

/* ---- replaying it ---- */

/* A call's arguments, as a tape reads them: the key of their structure, their Values, their numbers */
typedef struct {
    PyObject *key;    /* a list while made, then a tuple */
    PyObject *values; /* a list while made, then a tuple */
    double *numbers;
    Py_ssize_t n_numbers, cap_numbers;
} Arguments;

static void arguments_free(Arguments *a) {
    Py_CLEAR(a->key);
    Py_CLEAR(a->values);
    PyMem_Free(a->numbers), a->numbers = NULL;
}

static int add_number(Arguments *a, double x) {
    if (grow((void **)&a->numbers, &a->cap_numbers, a->n_numbers + 1, sizeof(double)) < 0) return -1;
    a->numbers[a->n_numbers++] = x;
    return PyList_Append(a->key, S.k_number);
}

/* The structure of (args, kwargs), walked depth first, left to right: a Value, a number (a float, an int
 * that is no bool, or what `other` turns into a float) or a list or tuple of them (its type, its
 * length, then its items: no other mark is a type or an int), kwargs as their names and then their values; anything else is part of the
 * key as other(x) gives it. Lists are read through tuple copies of their items (see items_tuple). */
enum { MAX_NESTING = 100 }; /* lists in lists: deeper is a list that holds itself, not a call's arguments */

static int structure_of(PyObject *args, PyObject *kwargs, PyObject *other, Arguments *a) {
    typedef struct {
        PyObject *items; /* a tuple, held */
        Py_ssize_t next;
    } Level;
    Level stack[MAX_NESTING + 2]; /* the kwargs, the args, and lists in them up to MAX_NESTING deep */
    Py_ssize_t len = 0;
    int rc = -1;
    if ((a->key = PyList_New(0)) == NULL || (a->values = PyList_New(0)) == NULL) return -1;
    PyObject *names = kwargs && PyDict_GET_SIZE(kwargs) ? PyDict_Keys(kwargs) : NULL;
    PyObject *kwvalues = names ? PyDict_Values(kwargs) : NULL;
    PyObject *kwtuple = kwvalues ? PyList_AsTuple(kwvalues) : NULL, *nametuple = names ? PyList_AsTuple(names) : NULL;
    Py_XDECREF(names), Py_XDECREF(kwvalues);
    if (kwargs && PyDict_GET_SIZE(kwargs) && (kwtuple == NULL || nametuple == NULL)) goto done;
    if (nametuple && PyList_Append(a->key, nametuple) < 0) goto done;
    if (kwtuple) stack[len++] = (Level){Py_NewRef(kwtuple), 0};
    stack[len++] = (Level){Py_NewRef(args), 0};
    while (len) {
        Level *top = &stack[len - 1];
        if (top->next == PyTuple_GET_SIZE(top->items)) {
            Py_DECREF(top->items);
            len--;
            continue;
        }
        PyObject *x = Py_NewRef(PyTuple_GET_ITEM(top->items, top->next++)), *items = NULL;
        int r = 0;
        if (PyObject_TypeCheck(x, S.Value)) {
            r = PyList_Append(a->key, S.k_value) < 0 || PyList_Append(a->values, x) < 0 ? -1 : 0;
        } else if (PyFloat_Check(x)) {
            r = add_number(a, PyFloat_AS_DOUBLE(x));
        } else if (PyLong_Check(x) && !PyBool_Check(x)) {
            double d = PyLong_AsDouble(x);
            r = d == -1.0 && PyErr_Occurred() ? -1 : add_number(a, d);
        } else if ((items = items_tuple(x)) != NULL) { /* a list (or subclass) or a tuple */
            /* its type, then its length: two marks of the key (a small int is CPython's own, made once) */
            PyObject *length = len < MAX_NESTING ? PyLong_FromSsize_t(PyTuple_GET_SIZE(items)) : NULL;
            if (len >= MAX_NESTING)
                PyErr_Format(PyExc_ValueError, "cg.compile: the arguments nest lists more than %d deep (a list "
                                               "that holds itself?)", MAX_NESTING);
            r = length == NULL || PyList_Append(a->key, (PyObject *)Py_TYPE(x)) < 0 || PyList_Append(a->key, length) < 0 ? -1 : 0;
            Py_XDECREF(length);
            if (r == 0) stack[len++] = (Level){Py_NewRef(items), 0};
            Py_DECREF(items);
        } else if (PyErr_Occurred()) {
            r = -1;
        } else { /* anything else: what compiler._other says it is */
            PyObject *said = PyObject_CallOneArg(other, x);
            if (said == NULL)
                r = -1;
            else if (PyFloat_CheckExact(said))
                r = add_number(a, PyFloat_AS_DOUBLE(said));
            else
                r = PyList_Append(a->key, said);
            Py_XDECREF(said);
        }
        Py_DECREF(x);
        if (r < 0) goto done;
    }
    PyObject *key = PyList_AsTuple(a->key), *values = key ? PyList_AsTuple(a->values) : NULL;
    Py_SETREF(a->key, key);
    Py_SETREF(a->values, values);
    rc = key && values ? 0 : -1;
done:
    while (len) Py_DECREF(stack[--len].items);
    Py_XDECREF(kwtuple), Py_XDECREF(nametuple);
    return rc;
}

/* structure(other, args, kwargs): (key, values, numbers) of a call, as replay() reads them */
static PyObject *core_structure(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyTuple_Check(args[1]) || (args[2] != Py_None && !PyDict_Check(args[2])))
        return PyErr_Format(PyExc_TypeError, "structure(other, args, kwargs)");
    Arguments a = {0};
    PyObject *r = NULL;
    if (structure_of(args[1], args[2] == Py_None ? NULL : args[2], args[0], &a) == 0) {
        PyObject *numbers = PyTuple_New(a.n_numbers);
        for (Py_ssize_t i = 0; numbers && i < a.n_numbers; i++) {
            PyObject *f = PyFloat_FromDouble(a.numbers[i]);
            if (f == NULL) Py_CLEAR(numbers);
            else PyTuple_SET_ITEM(numbers, i, f);
        }
        if (numbers) r = PyTuple_Pack(3, a.key, a.values, numbers);
        Py_XDECREF(numbers);
    }
    arguments_free(&a);
    return r;
}

/* The node of one call of a tape, given its arguments' Values and numbers; NotImplemented where the
 * function must run uncompiled (a mode is on, an input holds a batch) */
static PyObject *run_tape(TapeObject *tape, PyObject *op, PyObject *values, const double *numbers, Py_ssize_t n_numbers) {
    const Tape *t = &tape->t;
    int off = modes_off();
    if (off <= 0) return off < 0 ? NULL : Py_NewRef(Py_NotImplemented);
    if (n_numbers != t->n_numbers) return PyErr_Format(PyExc_SystemError, "a tape of %zd numbers given %zd", t->n_numbers, n_numbers);
    Py_INCREF(tape), Py_INCREF(values), Py_INCREF(op); /* held: allocating may run finalizers */
    PyObject *made = NULL;
    Py_ssize_t slots = tape_slots(t);
    ValueObject *v = alloc_node(t->n_values);
    RunObject *run = v ? PyObject_NewVar(RunObject, RunType, run_doubles(t)) : NULL;
    if (run == NULL) goto done;
    run->tape = (TapeObject *)Py_NewRef(tape);
    run->data = run->doubles;
    run->locals = run->data + slots;
    if (n_numbers) memcpy(run->data + t->n_values, numbers, n_numbers * sizeof(double)); /* numbers: NULL if none */
    /* with nothing run or allocated in between, every Value input read and held */
    for (Py_ssize_t i = 0; i < t->n_values; i++) {
        Py_ssize_t a = tape->argument[i];
        PyObject *x = a >= 0 ? (a < PyTuple_GET_SIZE(values) ? PyTuple_GET_ITEM(values, a) : NULL) : tape->held[i];
        if (x == NULL || !PyObject_TypeCheck(x, S.Value) || !number_data(V(x), &run->data[i])) {
            made = Py_NewRef(Py_NotImplemented); /* a batch: uncompiled */
            goto done;
        }
        v->prev[i] = Py_NewRef(x);
        v->n = i + 1;
    }
    enum { ON_STACK = 256 };
    double stack_scratch[ON_STACK], *scratch = t->widest <= ON_STACK ? stack_scratch : PyMem_Malloc(t->widest * sizeof(double));
    if (scratch == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    ptrdiff_t bad = tape_forward(t, run->data, run->locals, scratch);
    if (scratch != stack_scratch) PyMem_Free(scratch);
    if (bad) {
        const Entry *e = &t->entries[bad - 1];
        PyObject *target = PyFloat_FromDouble(run->data[e->target_slot]);
        if (target != NULL) {
            PyErr_Format(PyExc_IndexError, "cross_entropy(): target %R is not a class index for %zd classes", target, e->n);
            Py_DECREF(target);
        }
        goto done;
    }
    v->d = run->data[t->output];
    v->op = Py_NewRef(op);
    v->lkind = L_NONE;
    v->ctx = (PyObject *)run, v->ckind = C_OBJECT;
    run = NULL;
    if (collector_born(v) == 0 && collector_hold(v, v->op) == 0) made = (PyObject *)Py_NewRef(v);
done:
    Py_XDECREF(run);
    Py_XDECREF(v);
    Py_DECREF(tape), Py_DECREF(values), Py_DECREF(op);
    return made;
}

/* replay(tapes, op, other, args, kwargs): a compiled function's call where its tape is known (tapes: {key:
 * tape}): the node run_tape makes; NotImplemented where Python must do it (no tape yet, a mode, a batch) */
static PyObject *core_replay(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5 || !PyDict_Check(args[0]) || !PyTuple_Check(args[3]) || (args[4] != Py_None && !PyDict_Check(args[4])))
        return PyErr_Format(PyExc_TypeError, "replay(tapes, op, other, args, kwargs)");
    Arguments a = {0};
    PyObject *made = NULL;
    if (structure_of(args[3], args[4] == Py_None ? NULL : args[4], args[2], &a) == 0) {
        PyObject *tape = PyDict_GetItemWithError(args[0], a.key); /* borrowed: run_tape holds it first thing */
        if (tape != NULL && Py_IS_TYPE(tape, TapeType))
            made = run_tape((TapeObject *)tape, args[1], a.values, a.numbers, a.n_numbers);
        else if (!PyErr_Occurred())
            made = Py_NewRef(Py_NotImplemented);
    }
    arguments_free(&a);
    return made;
}

/* cg.compile's Compiled: a call goes straight to replay() in C, and only what replay() leaves to Python
 * (no tape yet, a mode, a batch) to its _first_call(args, kwargs), which compiler.py defines */
typedef struct {
    PyObject_HEAD
    PyObject *tapes;  /* {structure: tape} */
    PyObject *op;     /* its nodes' op */
    PyObject *other;  /* compiler._other */
    PyObject *dict;   /* functools.update_wrapper's attributes */
    vectorcallfunc vectorcall;
} CompiledObject;

/* A call with its arguments as a tuple and a dict (or NULL) */
static PyObject *compiled_call(PyObject *self, PyObject *args, PyObject *kwargs) {
    CompiledObject *c = (CompiledObject *)self;
    if (c->tapes == NULL || !PyDict_Check(c->tapes) || c->op == NULL || c->other == NULL) {
        PyErr_SetString(PyExc_TypeError, "a Compiled made without tapes, op and other");
        return NULL;
    }
    PyObject *replay_args[5] = {c->tapes, c->op, c->other, args, kwargs ? kwargs : Py_None};
    PyObject *made = core_replay(NULL, replay_args, 5);
    if (made == Py_NotImplemented) {
        Py_DECREF(made);
        made = PyObject_CallMethod(self, "_first_call", "OO", args, kwargs ? kwargs : Py_None);
    }
    return made;
}

/* The same, called the vectorcall way (the base type's own instances; CPython 3.11 calls a Python
 * subclass's through tp_call, with a tuple already made) */
static PyObject *compiled_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *made = NULL, *kwargs = NULL, *tuple = PyTuple_New(nargs);
    if (tuple == NULL) return NULL;
    for (Py_ssize_t i = 0; i < nargs; i++) PyTuple_SET_ITEM(tuple, i, Py_NewRef(args[i]));
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames)) {
        if ((kwargs = PyDict_New()) == NULL) goto done;
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); i++)
            if (PyDict_SetItem(kwargs, PyTuple_GET_ITEM(kwnames, i), args[nargs + i]) < 0) goto done;
    }
    made = compiled_call(self, tuple, kwargs);
done:
    Py_DECREF(tuple);
    Py_XDECREF(kwargs);
    return made;
}

static PyObject *compiled_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    CompiledObject *c = (CompiledObject *)type->tp_alloc(type, 0);
    if (c != NULL) c->vectorcall = compiled_vectorcall;
    return (PyObject *)c;
}

static int compiled_traverse(CompiledObject *c, visitproc visit, void *arg) {
    Py_VISIT(Py_TYPE(c));
    Py_VISIT(c->tapes);
    Py_VISIT(c->op);
    Py_VISIT(c->other);
    Py_VISIT(c->dict);
    return 0;
}

static int compiled_clear(CompiledObject *c) {
    Py_CLEAR(c->tapes);
    Py_CLEAR(c->op);
    Py_CLEAR(c->other);
    Py_CLEAR(c->dict);
    return 0;
}

static void compiled_dealloc(CompiledObject *c) {
    PyTypeObject *type = Py_TYPE(c);
    PyObject_GC_UnTrack(c);
    compiled_clear(c);
    type->tp_free(c);
    Py_DECREF(type);
}

static PyMemberDef compiled_members[] = {
    {"tapes", T_OBJECT, offsetof(CompiledObject, tapes), 0, "{argument structure: tape}, oldest first"},
    {"op", T_OBJECT, offsetof(CompiledObject, op), 0, "the op of the nodes its calls make"},
    {"_other", T_OBJECT, offsetof(CompiledObject, other), 0, NULL},
    {"__dictoffset__", T_PYSSIZET, offsetof(CompiledObject, dict), READONLY, NULL},
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(CompiledObject, vectorcall), READONLY, NULL},
    {NULL},
};

static PyGetSetDef compiled_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL},
};

static PyType_Slot compiled_slots[] = {
    {Py_tp_getset, compiled_getset},
    {Py_tp_new, compiled_new},           {Py_tp_dealloc, compiled_dealloc}, {Py_tp_traverse, compiled_traverse},
    {Py_tp_clear, compiled_clear},       {Py_tp_members, compiled_members}, {Py_tp_call, compiled_call},
    {Py_tp_doc, "The compiled core's part of cg.compile's Compiled: its calls"}, {0, NULL},
};
static PyType_Spec compiled_spec = {
    "chaingrad._core.Compiled", sizeof(CompiledObject), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL, compiled_slots,
};

typedef struct {
    PyObject **prev;
} Giving;

static int give_share(void *context, ptrdiff_t i, double share) {
    return add_grad(V(((Giving *)context)->prev[i]), share) < 0 ? -1 : 0;
}

/* Where a Value given in two places (a name's repeated letter) or given and also closed over adds its
 * shares: one slot for all its places, so that they are added one after another as backward adds them */
static int pointer_order(const void *a, const void *b) {
    PyObject *x = *(PyObject *const *)a, *y = *(PyObject *const *)b;
    return x < y ? -1 : x > y;
}

static int alias_inputs(const TapeObject *tape, PyObject *const *prev, ptrdiff_t *alias) {
    enum { ON_STACK = 16 };
    struct Place {
        PyObject *value;
        Py_ssize_t slot;
    } stack_places[ON_STACK], *places = stack_places;
    Py_ssize_t n = tape->t.n_values, k = tape->n_arguments;
    for (Py_ssize_t i = 0; i < n; i++) alias[i] = i;
    if (k > ON_STACK && (places = PyMem_Malloc(k * sizeof(struct Place))) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    /* the arguments by address (a Value in two places side by side), each given its Value's first slot */
    for (Py_ssize_t j = 0; j < k; j++) places[j] = (struct Place){prev[tape->arguments[j]], tape->arguments[j]};
    qsort(places, k, sizeof(struct Place), pointer_order);
    for (Py_ssize_t j = 0; j < k; j++) {
        ptrdiff_t held = map_get(&tape->held_at, places[j].value);
        if (held >= 0)
            alias[places[j].slot] = held;
        else if (j > 0 && places[j].value == places[j - 1].value)
            alias[places[j].slot] = alias[places[j - 1].slot];
    }
    if (places != stack_places) PyMem_Free(places);
    return 0;
}

/* The step of a node run() made: the tape's backward from g, each Value input's share added to its
 * grad in backward's order. Where every input's grad is a number, the shares are added in an array, one
 * after another as backward would add them, and the grads written back at the end. Where one is an
 * object, its __iadd__ is Python code, which may re-initialise the node: its inputs are then held and
 * each share added in its grad as it comes (its run is held always). A small tape's grads are kept on
 * the stack. */
static int run_step(ValueObject *v, double g) {
    enum { ON_STACK = 512 };
    double stack_grads[ON_STACK];
    unsigned char stack_reached[ON_STACK];
    ptrdiff_t stack_alias[ON_STACK];
    RunObject *run = (RunObject *)Py_NewRef(v->ctx);
    const Tape *t = &run->tape->t;
    Py_ssize_t n = v->n, slots = tape_slots(t);
    if (n != t->n_values) {
        Py_DECREF(run);
        PyErr_SetString(PyExc_RuntimeError, "a node of a cg.compile'd function had its inputs changed");
        return -1;
    }
    int small = slots <= ON_STACK, careful = 0, rc = -1;
    double *grads = small ? stack_grads : PyMem_Malloc(slots * (sizeof(double) + sizeof(ptrdiff_t) + 1));
    ptrdiff_t *alias = small ? stack_alias : (ptrdiff_t *)(grads + slots);
    unsigned char *reached = small ? stack_reached : (unsigned char *)(alias + slots);
    if (grads == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) { /* each input's grad as it is now: 0 None, 2 a number */
        ValueObject *c = V(v->prev[i]);
        if (c->gobj != NULL && !PyFloat_CheckExact(c->gobj)) {
            careful = 1; /* an object: its += is Python code */
            break;
        }
        grads[i] = c->gobj ? PyFloat_AS_DOUBLE(c->gobj) : c->g;
        reached[i] = c->nograd ? 0 : 2;
    }
    if (careful) {
        PyObject **prev = PyMem_Malloc(n * sizeof(PyObject *));
        if (prev == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        for (Py_ssize_t i = 0; i < n; i++) prev[i] = Py_NewRef(v->prev[i]);
        Giving giving = {prev};
        TapeSink sink = {give_share, &giving, NULL};
        rc = tape_backward(t, run->data, run->locals, g, grads, reached, &sink);
        for (Py_ssize_t i = 0; i < n; i++) Py_DECREF(prev[i]);
        PyMem_Free(prev);
    } else if (alias_inputs(run->tape, v->prev, alias) == 0) {
        TapeSink sink = {NULL, NULL, alias};
        rc = tape_backward(t, run->data, run->locals, g, grads, reached, &sink); /* runs nothing */
        for (Py_ssize_t i = 0; i < n; i++) { /* each that a share reached (1), as add_grad leaves it */
            if (reached[i] != 1 || alias[i] != i) continue;
            ValueObject *c = V(v->prev[i]);
            c->g = grads[i], c->nograd = 0, c->reached = 1;
            Py_CLEAR(c->gobj); /* a float: its release runs nothing */
        }
    }
done:
    if (!small) PyMem_Free(grads);
    Py_DECREF(run);
    return rc;
}

static int is_run_node(ValueObject *v) { return v->lkind == L_NONE && v->ckind == C_OBJECT && Py_IS_TYPE(v->ctx, RunType); }

/* run_step(node): the step of a node run() made, for backward's Python paths (compiler.TapeOp.chain) */
static PyObject *core_run_step(PyObject *module, PyObject *node) {
    double g;
    if (!PyObject_TypeCheck(node, S.Value) || !is_run_node(V(node)))
        return PyErr_Format(PyExc_TypeError, "run_step() takes a node made by a cg.compile'd function");
    if (!grad_as_double(V(node), &g))
        return PyErr_Format(PyExc_TypeError, "a cg.compile'd function's backward takes a float gradient; "
                                             "create_graph=True (higher derivatives) needs the function uncompiled");
    Py_INCREF(node);
    int rc = run_step(V(node), g);
    Py_DECREF(node);
    if (rc < 0) return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef core_functions[] = {
    {"install", core_install, METH_O, "install(interface): once, by chaingrad._backend"},
    {"trace", (PyCFunction)(void (*)(void))core_trace, METH_FASTCALL, "trace(on, arguments): cg.compile's tracing on or off"},
    {"tracing", core_tracing, METH_NOARGS, "whether cg.compile is tracing"},
    {"tape", (PyCFunction)(void (*)(void))core_tape, METH_FASTCALL, "tape(out, values, numbers): the traced graph, written down"},
    {"structure", (PyCFunction)(void (*)(void))core_structure, METH_FASTCALL, "structure(other, args, kwargs): a call's key, Values and numbers"},
    {"replay", (PyCFunction)(void (*)(void))core_replay, METH_FASTCALL, "replay(tapes, op, other, args, kwargs): a compiled call"},
    {"run_step", core_run_step, METH_O, "run_step(node): a compiled call's step of backward"},
    {"twin", (PyCFunction)(void (*)(void))core_twin, METH_FASTCALL, "twin(op, function): the compiled twin of a fused op's function"},
    {"apply", (PyCFunction)(void (*)(void))core_apply, METH_FASTCALL, "apply(op, *args): engine.apply, making this type's nodes"},
    {"record", (PyCFunction)(void (*)(void))core_record, METH_FASTCALL, "record(op, out, args, local): engine.record, for this type"},
    {"node", (PyCFunction)(void (*)(void))core_node, METH_FASTCALL, "node(data, prev, local, op, ctx): engine.node, for this type"},
    {"modes_turned_on", core_modes_turned_on, METH_NOARGS, "modes.when_first_on calls it, once"},
    {"forked", core_forked, METH_NOARGS, "in a forked child: the walks of the parent's other threads unmarked"},
    {"floats", core_floats, METH_O, "the data of a list of float Values as packed doubles (NotImplemented: not all are)"},
    {"zero_grad", core_zero_grad, METH_O, "every parameter's grad set to 0 (NotImplemented: do it in Python)"},
    {"sgd_step", (PyCFunction)(void (*)(void))core_sgd_step, METH_VARARGS | METH_KEYWORDS,
     "SGD.step's loop over the parameters, its arguments by keyword (NotImplemented: do it in Python)"},
    {"adam_step", (PyCFunction)(void (*)(void))core_adam_step, METH_VARARGS | METH_KEYWORDS,
     "Adam.step's loop over the parameters, its arguments by keyword (NotImplemented: do it in Python)"},
    {"after_collection", (PyCFunction)(void (*)(void))core_after_collection, METH_FASTCALL,
     "gc.callbacks entry: a full collection frees the nodes kept for reuse"},
    {NULL},
};

static int core_exec(PyObject *module) {
    if (S.Value != NULL) {
        PyErr_SetString(PyExc_ImportError, "chaingrad._core can be loaded once per process");
        return -1;
    }
    S.Value = (PyTypeObject *)PyType_FromSpec(&value_spec);
    if (S.Value == NULL) return -1;
    collector_types(S.Value, NULL);
    /* __name__ set again sets the name Python's messages show ("'Value' object is not iterable") to
     * "Value", as on the reference engine, in place of the spec's dotted name */
    PyObject *name = PyUnicode_FromString("Value");
    if (name == NULL) return -1;
    int failed = PyObject_SetAttrString((PyObject *)S.Value, "__name__", name);
    Py_DECREF(name);
    if (failed < 0) return -1;
    if (PyObject_SetAttrString((PyObject *)S.Value, "__array_ufunc__", Py_None) < 0) return -1;
    PyObject *slots = Py_BuildValue("(sssssssss)", "data", "grad", "_prev", "_op", "_local", "_ctx", "_saved", "_label", "__dict__");
    if (slots == NULL || PyObject_SetAttrString((PyObject *)S.Value, "__slots__", slots) < 0) return -1;
    Py_DECREF(slots);
    if (PyModule_AddObjectRef(module, "Value", (PyObject *)S.Value) < 0) return -1;
    if ((TapeType = (PyTypeObject *)PyType_FromSpec(&tape_spec)) == NULL) return -1;
    if ((RunType = (PyTypeObject *)PyType_FromSpec(&run_spec)) == NULL) return -1;
    PyObject *compiled = PyType_FromSpec(&compiled_spec);
    if (compiled == NULL || PyModule_AddObject(module, "Compiled", compiled) < 0) {
        Py_XDECREF(compiled);
        return -1;
    }
    /* chaingrad._backend uses this module only if the numbers agree: bump both when the interface changes */
    if (PyModule_AddIntConstant(module, "INTERFACE", 8) < 0) return -1; /* chaingrad._backend.INTERFACE */
    S.empty = PyUnicode_FromString("");
    S.s_enter = PyUnicode_InternFromString("__enter__");
    S.s_exit = PyUnicode_InternFromString("__exit__");
    S.s_chain = PyUnicode_InternFromString("_chain");
    if (!S.s_enter || !S.s_exit || !S.s_chain) return -1;
    S.k_number = PyUnicode_InternFromString("number");
    S.k_value = PyUnicode_InternFromString("Value");
    if (!S.k_number || !S.k_value) return -1;
    if (!S.empty) return -1;
    PyObject *gc = PyImport_ImportModule("gc"), *callbacks = NULL, *hook = NULL;
    int rc = -1;
    if (gc && (callbacks = PyObject_GetAttrString(gc, "callbacks")) && (hook = PyObject_GetAttrString(module, "after_collection")))
        rc = PyList_Check(callbacks) ? PyList_Append(callbacks, hook) : 0; /* else the kept nodes stay kept */
    Py_XDECREF(gc), Py_XDECREF(callbacks), Py_XDECREF(hook);
    return rc;
}

static PyModuleDef_Slot core_slots[] = {{Py_mod_exec, core_exec}, {0, NULL}};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT,
    "chaingrad._core",
    "The compiled twin of chaingrad's reference engine (engine.py): the same Value, bit for bit.",
    0,
    core_functions,
    core_slots,
};

PyMODINIT_FUNC PyInit__core(void) { return PyModuleDef_Init(&core_module); }
