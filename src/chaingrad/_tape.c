/* cg.compile's tapes replayed on doubles: see _tape.h. */
#include "_tape.h"

ptrdiff_t tape_locals_of(const Entry *e) {
    switch (e->kind) {
    case T_PRIMITIVE:
        return 0; /* backward computes its local gradients (or its rule) from the data again */
    case T_SUM:
        return 0; /* every local gradient is 1.0 */
    case T_DOT:
        return 0; /* b's values, a's and 1.0 for a start, which backward reads from the data */
    case T_SOFTMAX:
    case T_LOG_SOFTMAX: /* the first entry of a block keeps its outputs and every row */
        return e->first == -1 ? e->n + e->n * e->n : 0;
    default: /* mean, logsumexp, cross_entropy: one per input */
        return e->n;
    }
}

/* The data of an entry's inputs, side by side */
static const double *gathered(const double *data, const Slot *in, ptrdiff_t n, double *scratch) {
    for (ptrdiff_t j = 0; j < n; j++) scratch[j] = data[in[j]];
    return scratch;
}

ptrdiff_t tape_forward(const Tape *t, double *data, double *locals, double *scratch) {
    const ptrdiff_t first_entry = tape_first_entry(t);
    for (ptrdiff_t i = 0; i < t->n_constants; i++) data[t->n_values + t->n_numbers + i] = t->constants[i];
    for (ptrdiff_t k = 0; k < t->n_entries; k++) {
        const Entry *e = &t->entries[k];
        const Slot *in = t->inputs + e->in;
        double *local = locals + e->local, out;
        switch (e->kind) {
        case T_PRIMITIVE: {
            double x = data[in[0]], y = e->op->arity == 2 ? data[in[1]] : 0.0;
            out = e->op->forward(x, y);
            break;
        }
        case T_SUM:
            out = cg_total(gathered(data, in, e->n, scratch), e->n);
            break;
        case T_MEAN:
            out = cg_mean(gathered(data, in, e->n, scratch), e->n, local);
            break;
        case T_DOT: {
            const double *x = gathered(data, in, e->n, scratch);
            out = cg_dot(x, x + e->aux, e->aux, e->start ? x + 2 * e->aux : NULL, NULL);
            break;
        }
        case T_LOGSUMEXP:
            out = cg_logsumexp(gathered(data, in, e->n, scratch), e->n, local);
            break;
        case T_SOFTMAX:
        case T_LOG_SOFTMAX: {
            if (e->first == -1) { /* the block's outputs, then its rows of local gradients */
                const double *x = gathered(data, in, e->n, scratch);
                if (e->kind == T_SOFTMAX)
                    cg_softmax(x, e->n, local, local + e->n);
                else
                    cg_log_softmax(x, e->n, local, local + e->n);
            }
            out = local[e->aux];
            break;
        }
        default: { /* T_CROSS_ENTROPY */
            ptrdiff_t target = e->aux;
            if (e->target_slot >= 0) {
                double c = data[e->target_slot];
                if (!(c >= 0 && c < (double)e->n && c == (double)(ptrdiff_t)c)) return k + 1;
                target = (ptrdiff_t)c;
            }
            out = cg_cross_entropy(gathered(data, in, e->n, scratch), e->n, target, local);
            break;
        }
        }
        data[first_entry + k] = out;
    }
    return 0;
}

/* One share of g for slot s: a Value input's goes to the sink given; any other is added to the slot's
 * grad, as add_gradient adds it: a grad of 0.0 where none came yet gives 0.0 + share, as a grad of None
 * does (a number's and a constant's grads are added to, and nothing reads them). */
static inline int share(const Tape *t, ptrdiff_t s, double d, double *grads, unsigned char *reached, const TapeSink *sink) {
    if (s < t->n_values) {
        if (sink->give) return sink->give(sink->context, s, d);
        s = sink->alias[s];
        reached[s] = 1;
    }
    grads[s] += d;
    return 0;
}

int tape_backward(const Tape *t, const double *data, const double *locals, double g, double *grads,
                  unsigned char *reached, const TapeSink *sink) {
    const ptrdiff_t first_entry = tape_first_entry(t);
    int rc = 0;
    /* every entry's grad is reached: the tape holds only the nodes that lead to the output */
    for (ptrdiff_t s = t->n_values; s < tape_slots(t); s++) grads[s] = 0.0;
    if ((rc = share(t, t->output, g, grads, reached, sink)) != 0) return rc;
    for (ptrdiff_t k = t->n_entries - 1; k >= 0; k--) {
        const Entry *e = &t->entries[k];
        const Slot *in = t->inputs + e->in;
        const double *local = locals + e->local;
        double gk = grads[first_entry + k];
        switch (e->kind) {
        case T_PRIMITIVE: { /* from the data as the forward saw it: the local gradients times g, or the rule */
            double x = data[in[0]], y = e->op->arity == 2 ? data[in[1]] : 0.0, out = data[first_entry + k];
            double sx = 0.0, sy = 0.0;
            if (e->op->local) {
                double lx = 0.0, ly = 0.0;
                e->op->local(x, y, out, &lx, &ly);
                sx = lx * gk, sy = ly * gk;
            } else {
                e->op->rule(gk, x, y, out, &sx, &sy);
            }
            rc = share(t, in[0], sx, grads, reached, sink);
            if (rc == 0 && e->op->arity == 2) rc = share(t, in[1], sy, grads, reached, sink);
            break;
        }
        case T_SUM:
            for (ptrdiff_t j = 0; j < e->n && rc == 0; j++) rc = share(t, in[j], 1.0 * gk, grads, reached, sink);
            break;
        case T_DOT: { /* a dot's local gradients: b's values for a, a's for b, 1.0 for the start */
            const ptrdiff_t m = e->aux;
            const Slot *a = in, *b = in + m;
            for (ptrdiff_t j = 0; j < m && rc == 0; j++) rc = share(t, a[j], data[b[j]] * gk, grads, reached, sink);
            for (ptrdiff_t j = 0; j < m && rc == 0; j++) rc = share(t, b[j], data[a[j]] * gk, grads, reached, sink);
            if (e->start && rc == 0) rc = share(t, in[2 * m], 1.0 * gk, grads, reached, sink);
            break;
        }
        case T_SOFTMAX:
        case T_LOG_SOFTMAX: {
            const double *row = locals + e->local + e->n + e->aux * e->n;
            for (ptrdiff_t j = 0; j < e->n && rc == 0; j++) rc = share(t, in[j], row[j] * gk, grads, reached, sink);
            break;
        }
        default: /* mean, logsumexp, cross_entropy: local * g for each input */
            for (ptrdiff_t j = 0; j < e->n && rc == 0; j++) rc = share(t, in[j], local[j] * gk, grads, reached, sink);
            break;
        }
        if (rc != 0) return rc;
    }
    return 0;
}
