/* chaingrad's arithmetic on C doubles, apart from the CPython binding (as libmpdec is apart from _decimal):
 * the primitive ops of engine.py's table, the fused ops of fused.py and the optimizers' loops of optim.py,
 * each the same formulas in the same order as the Python code it mirrors, so that every result is bit for
 * bit the reference engine's (compiled with -ffp-contract=off). Nothing here knows Python: no Python.h,
 * no allocation, no error but what a double says (nan, inf).
 *
 * Used by the Value type (_core.c) and by the tapes of cg.compile (_tape.c).
 */
#ifndef CHAINGRAD_KERNELS_H
#define CHAINGRAD_KERNELS_H

#include <stddef.h>

/* ------------------------------------------------------------------------------------------------
 * The primitive ops: engine.py's table, one entry per line of it, in its order.
 * ---------------------------------------------------------------------------------------------- */

typedef struct {
    const char *name; /* engine.py's name for it: "+", "exp", ... */
    int arity;        /* 1 or 2 */
    /* the value: op(x, y); y is not read when arity is 1 */
    double (*forward)(double x, double y);
    /* the local gradients d out/dx and d out/dy at (x, y, out); ly is not written when arity is 1.
     * NULL for an op with a rule. */
    void (*local)(double x, double y, double out, double *lx, double *ly);
    /* an op whose backward is not local * g: each input's share of g at (x, y, out); sy is not written
     * when arity is 1. NULL for an op with local gradients. */
    void (*rule)(double g, double x, double y, double out, double *sx, double *sy);
} Primitive;

enum { N_PRIMITIVES = 15 };
extern const Primitive ADD, SUB, MUL, NEG, EXP, TANH, SIGMOID, SQRT, ABS, SIN, COS, DIV, LOG, RELU, POW;
extern const Primitive *const PRIMITIVES[N_PRIMITIVES]; /* in engine.PRIMITIVES' order */

/* numerics.py's functions on floats that other kernels and the binding use */
double cg_div(double x, double y);   /* numerics.div: x / y, with IEEE results where Python raises */
double cg_power(double x, double y); /* numerics.power */
double cg_log(double x);             /* numerics.log */

/* ------------------------------------------------------------------------------------------------
 * The fused ops (fused.py) on n >= 1 doubles. `local`, where given, receives the local gradients in
 * the order of the node's inputs; NULL: only the value is computed.
 * ---------------------------------------------------------------------------------------------- */

/* fused.total: x[0] + x[1] + ..., left to right (sum's start, if any, is its last x); every local is 1.0 */
double cg_total(const double *x, ptrdiff_t n);
/* mean: div(total(x), n); locals div(1.0, n) (n of them) */
double cg_mean(const double *x, ptrdiff_t n, double *local);
/* dot: a[0]*b[0] + ... + a[n-1]*b[n-1], then + *start when start is not NULL (added last);
 * locals (2n, + 1 with a start): b's n values, then a's, then 1.0 */
double cg_dot(const double *a, const double *b, ptrdiff_t n, const double *start, double *local);
/* logsumexp, shifted by the largest finite x; locals exp(x_i - out) (n) */
double cg_logsumexp(const double *x, ptrdiff_t n, double *local);
/* softmax: out[i] = s_i; local, n*n row-major: row i is output i's local gradients s_i * (1[i=j] - s_j).
 * out must not alias x. */
void cg_softmax(const double *x, ptrdiff_t n, double *out, double *local);
/* log_softmax: out[i] = (x_i - m) - log(total); row i of local: 1[i=j] - s_j. out must not alias x. */
void cg_log_softmax(const double *x, ptrdiff_t n, double *out, double *local);
/* cross_entropy: log(total) - (x[target] - m), 0 <= target < n; locals (n) s_j - 1[j=target] */
double cg_cross_entropy(const double *x, ptrdiff_t n, ptrdiff_t target, double *local);

/* ------------------------------------------------------------------------------------------------
 * The optimizers (optim.py): one parameter's step, given its data and grad (a float each); the new
 * data. The loop over the parameters, and the buffers' storage, are the caller's.
 * ---------------------------------------------------------------------------------------------- */

typedef struct {
    double lr, momentum, weight_decay;
    int nesterov;
    int started; /* steps were taken before: the momentum buffer holds one (else it starts at g) */
} SgdSettings;

/* SGD.step: g + weight_decay * p (where weight_decay is not 0), through the momentum buffer *buf (read
 * when started, written, where momentum is not 0; else not touched), then p - lr * g */
double cg_sgd(const SgdSettings *s, double p, double g, double *buf);

typedef struct {
    double lr, weight_decay, eps, beta1, beta2;
    double step_size;             /* lr / (1 - beta1 ** t) */
    double bias_correction2_sqrt; /* sqrt(1 - beta2 ** t) */
    int decoupled;                /* AdamW: p *= 1 - lr * weight_decay, in place of g + weight_decay * p */
} AdamSettings;

/* Adam.step: the running means *m and *v updated (read and written), then the new data */
double cg_adam(const AdamSettings *s, double p, double g, double *m, double *v);

#endif
