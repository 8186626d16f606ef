/* chaingrad._core's nodes and CPython's cyclic garbage collector: which nodes it is shown (tracks).
 *
 * A graph by itself has no cycles: a node points only at older nodes. So a node that holds nothing but
 * its inputs, its op and numbers is left untracked, as CPython leaves a tuple of numbers untracked, and a
 * collection never walks a million-node graph. A node that comes to hold anything else (a grad that is a
 * Value or a list, a context, a closure, attributes) is tracked, with what a cycle through it needs
 * tracked. The binding (_core.c) calls collector_hold whenever a node takes such a reference and
 * collector_born for every node it makes; _collector.c says how, and tests/test_collector.py checks it.
 */
#ifndef CHAINGRAD_COLLECTOR_H
#define CHAINGRAD_COLLECTOR_H

#include "_value.h"

/* The types the collector must know: the Value type (its subclasses' instances are Values too) and the
 * type of the ops (engine.Op, NULL until chaingrad installs the core), whose instances hold nothing
 * mutable. Set when the module is made, then again at install. */
void collector_types(PyTypeObject *value, PyTypeObject *op);

/* v now holds o (besides its inputs): if o reaches a Value or a mutable container, v is tracked, and so are
 * the Values o reaches, with everything under them; v is open from then on if o reaches a mutable
 * container or an open Value. 0, or -1 with MemoryError set. */
int collector_hold(ValueObject *v, PyObject *o);

/* v, a new node with its inputs set: tracked from birth (and open) if an input is open. 0, or -1 with
 * MemoryError set. */
int collector_born(ValueObject *v);

#endif
