/* A node of chaingrad._core, as laid out in memory: the Value type's instance struct, which the binding
 * (_core.c) and the collector support (_collector.c) both read. Only the binding makes and changes nodes;
 * the collector reads their inputs and keeps their "open" flag.
 */
#ifndef CHAINGRAD_VALUE_H
#define CHAINGRAD_VALUE_H

#ifndef PY_SSIZE_T_CLEAN
#define PY_SSIZE_T_CLEAN
#endif
#include <Python.h>
#include <stdint.h>

enum { L_DOUBLE, L_OBJECT, L_NONE };                     /* how a node keeps its local gradients */
enum { C_NONE, C_OBJECT, C_RIGHT, C_LEFT, C_FUSED };     /* how it keeps its context */

typedef struct {
    PyObject_HEAD
    double d, g;         /* data and grad, when dobj / gobj are NULL */
    PyObject *dobj;      /* data that is not a float: a batch, an int someone assigned, ... */
    PyObject *gobj;      /* a grad that is not a double: a Value, a batch, or a float whose identity counts */
    PyObject *op;        /* an Op, or a str ("" for a leaf) */
    PyObject *label;     /* NULL: "" */
    PyObject *ctx;       /* with C_OBJECT: the context object */
    PyObject **prev;     /* the n inputs */
    double *local;       /* with L_DOUBLE: nl local gradients */
    PyObject *lobj;      /* with L_OBJECT: the tuple of local gradients */
    PyObject *dict;      /* attributes given to it (p.m = 0.0), as to any object; NULL until one is */
    Py_ssize_t n, nl, aux; /* aux: a fused op's split, output index or target */
    double cval;         /* with C_RIGHT / C_LEFT: the constant */
    uint64_t walk;       /* the serial number of the backward that last visited this node (see Walker) */
    unsigned char lkind, ckind, reached, astart;
    unsigned char open;  /* it holds or reaches a mutable container: see _collector.h */
    unsigned char born;  /* __init__ has run once */
    unsigned char nograd; /* its grad is None, no gradient yet (g is 0, gobj NULL) */
    unsigned char traced; /* cg.compile is tracing: made while it traces, or one of its arguments */
    PyObject *inline_prev[2];
    double inline_local[2];
} ValueObject;

#define V(o) ((ValueObject *)(o))

#endif
