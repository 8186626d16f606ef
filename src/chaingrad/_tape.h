/* cg.compile's tapes, apart from the CPython binding: a traced function's nodes as a flat list of entries,
 * replayed on doubles with the kernels of _kernels.h.
 *
 * A tape is the graph one call of the function built, written down once: each entry is one node of it,
 * in the order backward would walk it (micrograd's build_topo order), with its op and the slots its inputs
 * come from. A run replays the forward, entry by entry, keeping each entry's value (and the local
 * gradients of the fused ops that need their forward; the others' are computed again from the values, by
 * the same functions); its backward is backward's walk over those entries, adding local * g in the same
 * order, so that the numbers are the uncompiled graph's bit for bit. Nothing here knows Python.
 *
 * Slots, in this order: the inputs that are Values (their gradients go back to them), the numbers given
 * as arguments, the constants the function made, then one slot per entry (its value).
 */
#ifndef CHAINGRAD_TAPE_H
#define CHAINGRAD_TAPE_H

#include <stddef.h>
#include <stdint.h>

#include "_kernels.h"

/* A slot's number, in 32 bits: every replay reads one for each input of each entry, and half the memory
 * of a pointer-sized number is half the memory read (the tape's writer refuses a graph too large for it) */
typedef int32_t Slot;
#define SLOT_MAX INT32_MAX

enum { T_PRIMITIVE, T_SUM, T_MEAN, T_DOT, T_LOGSUMEXP, T_SOFTMAX, T_LOG_SOFTMAX, T_CROSS_ENTROPY };

typedef struct {
    int kind;
    const Primitive *op; /* T_PRIMITIVE's op */
    ptrdiff_t n;         /* how many inputs */
    ptrdiff_t in;        /* where its inputs' slots begin in the tape's `inputs` */
    ptrdiff_t aux;       /* dot: the vectors' length; softmax, log_softmax: which output; cross_entropy: the
                          * target, unless target_slot says where to read it */
    ptrdiff_t target_slot; /* cross_entropy: the slot holding the target, or -1 */
    int start;             /* dot: its last input is a start */
    ptrdiff_t first;       /* softmax, log_softmax: the entry that computes the whole block (the first) */
    ptrdiff_t local;       /* where its local gradients begin in a run's locals (softmax: its block's) */
} Entry;

typedef struct {
    ptrdiff_t n_values, n_numbers, n_constants, n_entries;
    double *constants;
    Entry *entries;
    Slot *inputs;       /* every entry's input slots, one after another */
    ptrdiff_t n_locals; /* how many doubles a run keeps as local gradients */
    ptrdiff_t widest;   /* the most inputs any entry has: the scratch for gathering them */
    ptrdiff_t output;   /* the slot of the function's value */
} Tape;

static inline ptrdiff_t tape_slots(const Tape *t) { return t->n_values + t->n_numbers + t->n_constants + t->n_entries; }
static inline ptrdiff_t tape_first_entry(const Tape *t) { return t->n_values + t->n_numbers + t->n_constants; }

/* Where the run of an entry `e` needs its locals: how many doubles (called while a tape is built, in order) */
ptrdiff_t tape_locals_of(const Entry *e);

/* The forward: data[0 : n_values + n_numbers] given, the rest written; locals written. scratch has room
 * for widest doubles. Returns 0, or the index + 1 of a cross_entropy entry whose target (read from
 * its slot) is not a class index. */
ptrdiff_t tape_forward(const Tape *t, double *data, double *locals, double *scratch);

/* Where the backward's shares for the Value inputs go. With `give`, give(context, i, share) adds each
 * to input i's grad as add_gradient does (non-zero stops the backward: an error). Without, they are
 * added in grads too, input i's at slot alias[i] (the first place of a Value given in two), whose grads
 * and reached the caller set from the Values' grads before, and reads after. */
typedef int (*TapeGive)(void *context, ptrdiff_t i, double share);
typedef struct {
    TapeGive give;
    void *context;
    const ptrdiff_t *alias;
} TapeSink;

/* The backward from g = d(loss)/d(output), given a run's data and locals, in the order backward adds
 * the shares; grads has room for tape_slots(t) (a number's and a constant's are added to, never read),
 * reached (a share came: 1) for the Value inputs.
 * Returns 0, or what give returned. */
int tape_backward(const Tape *t, const double *data, const double *locals, double g, double *grads,
                  unsigned char *reached, const TapeSink *sink);

#endif
