/* chaingrad's arithmetic on C doubles (see _kernels.h): engine.py's op table, fused.py's fused ops and
 * optim.py's steps, each written out with the formulas of the Python code it mirrors, in the same order,
 * so that every result is bit for bit the reference engine's. Compiled with -ffp-contract=off (setup.py):
 * a fused multiply-add would round once where Python rounds twice.
 *
 * Pure C: no Python.h, no allocation, no recursion.
 */
#include "_kernels.h"

#include <math.h>

/* ------------------------------------------------------------------------------------------------
 * numerics.py on floats, line for line: the same results, and the same nan where it returns math.nan.
 * ---------------------------------------------------------------------------------------------- */

static const double PLUS_NAN = (double)NAN; /* math.nan: a positive quiet nan */

double cg_div(double x, double y) {
    if (y != 0.0) return x / y;
    if (x != x || x == 0.0) return PLUS_NAN; /* 0 / 0, nan / 0 */
    return copysign(INFINITY, x) * copysign(1.0, y);
}

double cg_log(double x) { return x > 0 ? log(x) : (x == 0 ? -INFINITY : PLUS_NAN); }

static double cg_sigmoid(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

static double cg_sqrt(double x) { return x >= 0 ? sqrt(x) : PLUS_NAN; }

static double cg_relu(double x) { return x < 0 ? 0.0 : x; }

static double cg_sin(double x) { return isinf(x) ? PLUS_NAN : sin(x); } /* math.sin raises at inf: math.nan */

static double cg_cos(double x) { return isinf(x) ? PLUS_NAN : cos(x); }

static double cg_sign(double x) { return x > 0 ? 1.0 : (x < 0 ? -1.0 : 0.0); }

static int odd_integer(double y) { return isfinite(y) && floor(y) == y && fabs(fmod(y, 2.0)) == 1.0; } /* y % 2 == 1 */

/* numerics.power = math.pow, with IEEE results where it raises: CPython's math_pow, line for line. */
double cg_power(double x, double y) {
    double r;
    if (!isfinite(x) || !isfinite(y)) {
        if (isnan(x))
            r = y == 0. ? 1. : x;
        else if (isnan(y))
            r = x == 1. ? 1. : y;
        else if (isinf(x)) {
            int odd_y = isfinite(y) && fmod(fabs(y), 2.0) == 1.0;
            if (y > 0.)
                r = odd_y ? x : fabs(x);
            else if (y == 0.)
                r = 1.;
            else
                r = odd_y ? copysign(0., x) : 0.;
        } else {
            if (fabs(x) == 1.0)
                r = 1.;
            else if (y > 0. && fabs(x) > 1.0)
                r = y;
            else if (y < 0. && fabs(x) < 1.0)
                r = -y;
            else
                r = 0.;
        }
        return r;
    }
    r = pow(x, y);
    if (isfinite(r)) return r;
    /* where math.pow raises, numerics.power returns what C's pow gives, written out as it does */
    if (isnan(r)) return x == 0 ? (odd_integer(y) ? copysign(INFINITY, x) : INFINITY) : PLUS_NAN;
    if (x == 0) return odd_integer(y) ? copysign(INFINITY, x) : INFINITY; /* a negative power of 0 */
    return (x < 0 && odd_integer(y)) ? -INFINITY : INFINITY;              /* overflow */
}

/* ------------------------------------------------------------------------------------------------
 * The primitive ops: engine.py's table, each line of it quoted above its C, in its order. An op of one
 * input ignores y (and does not write ly, sy).
 * ---------------------------------------------------------------------------------------------- */

#define UNUSED(x) (void)(x)

/* ADD = Op(     "+",       lambda x, y: x + y,  lambda x, y, out: (1.0, 1.0)) */
static double add_forward(double x, double y) { return x + y; }
static void add_local(double x, double y, double out, double *lx, double *ly) {
    UNUSED(x), UNUSED(y), UNUSED(out);
    *lx = 1.0, *ly = 1.0;
}
const Primitive ADD = {"+", 2, add_forward, add_local, NULL};

/* SUB = Op(     "-",       lambda x, y: x - y,  lambda x, y, out: (1.0, -1.0)) */
static double sub_forward(double x, double y) { return x - y; }
static void sub_local(double x, double y, double out, double *lx, double *ly) {
    UNUSED(x), UNUSED(y), UNUSED(out);
    *lx = 1.0, *ly = -1.0;
}
const Primitive SUB = {"-", 2, sub_forward, sub_local, NULL};

/* MUL = Op(     "*",       lambda x, y: x * y,  lambda x, y, out: (y, x)) */
static double mul_forward(double x, double y) { return x * y; }
static void mul_local(double x, double y, double out, double *lx, double *ly) {
    UNUSED(out);
    *lx = y, *ly = x;
}
const Primitive MUL = {"*", 2, mul_forward, mul_local, NULL};

/* NEG = Op(     "neg",     lambda x: -x,        lambda x, out: (-1.0,)) */
static double neg_forward(double x, double y) {
    UNUSED(y);
    return -x;
}
static void neg_local(double x, double y, double out, double *lx, double *ly) {
    UNUSED(x), UNUSED(y), UNUSED(out), UNUSED(ly);
    *lx = -1.0;
}
const Primitive NEG = {"neg", 1, neg_forward, neg_local, NULL};

/* EXP = Op(     "exp",     exp,                 lambda x, out: (out,)) */
static double exp_forward(double x, double y) {
    UNUSED(y);
    return exp(x);
}
static void exp_local(double x, double y, double out, double *lx, double *ly) {
    UNUSED(x), UNUSED(y), UNUSED(ly);
    *lx = out;
}
const Primitive EXP = {"exp", 1, exp_forward, exp_local, NULL};

/* TANH = Op(    "tanh",    tanh,                lambda x, out: (1.0 - out * out,)) */
static double tanh_forward(double x, double y) {
    UNUSED(y);
    return tanh(x);
}
static void tanh_local(double x, double y, double out, double *lx, double *ly) {
    UNUSED(x), UNUSED(y), UNUSED(ly);
    *lx = 1.0 - out * out;
}
const Primitive TANH = {"tanh", 1, tanh_forward, tanh_local, NULL};

/* SIGMOID = Op( "sigmoid", sigmoid,             lambda x, out: (out * (1.0 - out),)) */
static double sigmoid_forward(double x, double y) {
    UNUSED(y);
    return cg_sigmoid(x);
}
static void sigmoid_local(double x, double y, double out, double *lx, double *ly) {
    UNUSED(x), UNUSED(y), UNUSED(ly);
    *lx = out * (1.0 - out);
}
const Primitive SIGMOID = {"sigmoid", 1, sigmoid_forward, sigmoid_local, NULL};

/* SQRT = Op(    "sqrt",    sqrt,                lambda x, out: (div(0.5, out),)) */
static double sqrt_forward(double x, double y) {
    UNUSED(y);
    return cg_sqrt(x);
}
static void sqrt_local(double x, double y, double out, double *lx, double *ly) {
    UNUSED(x), UNUSED(y), UNUSED(ly);
    *lx = cg_div(0.5, out);
}
const Primitive SQRT = {"sqrt", 1, sqrt_forward, sqrt_local, NULL};

/* ABS = Op(     "abs",     abs,                 lambda x, out: (sign(x),)) */
static double abs_forward(double x, double y) {
    UNUSED(y);
    return fabs(x);
}
static void abs_local(double x, double y, double out, double *lx, double *ly) {
    UNUSED(y), UNUSED(out), UNUSED(ly);
    *lx = cg_sign(x);
}
const Primitive ABS = {"abs", 1, abs_forward, abs_local, NULL};

/* SIN = Op(     "sin",     sin,                 lambda x, out: (cos(x),)) */
static double sin_forward(double x, double y) {
    UNUSED(y);
    return cg_sin(x);
}
static void sin_local(double x, double y, double out, double *lx, double *ly) {
    UNUSED(y), UNUSED(out), UNUSED(ly);
    *lx = cg_cos(x);
}
const Primitive SIN = {"sin", 1, sin_forward, sin_local, NULL};

/* COS = Op(     "cos",     cos,                 lambda x, out: (-sin(x),)) */
static double cos_forward(double x, double y) {
    UNUSED(y);
    return cg_cos(x);
}
static void cos_local(double x, double y, double out, double *lx, double *ly) {
    UNUSED(y), UNUSED(out), UNUSED(ly);
    *lx = -cg_sin(x);
}
const Primitive COS = {"cos", 1, cos_forward, cos_local, NULL};

/* the ops whose backward is a rule: each input's share of g, given the inputs and out */

/* DIV = Op(     "/",       div,      rule=lambda g, x, y, out: (div(g, y), -g * div(out, y))) */
static double div_forward(double x, double y) { return cg_div(x, y); }
static void div_rule(double g, double x, double y, double out, double *sx, double *sy) {
    UNUSED(x);
    *sx = cg_div(g, y), *sy = -g * cg_div(out, y);
}
const Primitive DIV = {"/", 2, div_forward, NULL, div_rule};

/* LOG = Op(     "log",     log,      rule=lambda g, x, out: (div(g, x),)) */
static double log_forward(double x, double y) {
    UNUSED(y);
    return cg_log(x);
}
static void log_rule(double g, double x, double y, double out, double *sx, double *sy) {
    UNUSED(y), UNUSED(out), UNUSED(sy);
    *sx = cg_div(g, x);
}
const Primitive LOG = {"log", 1, log_forward, NULL, log_rule};

/* RELU = Op(    "relu",    relu,     rule=lambda g, x, out: (where(out <= 0, 0.0, g),)) */
static double relu_forward(double x, double y) {
    UNUSED(y);
    return cg_relu(x);
}
static void relu_rule(double g, double x, double y, double out, double *sx, double *sy) {
    UNUSED(x), UNUSED(y), UNUSED(sy);
    *sx = out <= 0 ? 0.0 : g;
}
const Primitive RELU = {"relu", 1, relu_forward, NULL, relu_rule};

/* POW = Op(     "**",      power,    rule=lambda g, x, y, out: (
 *                                        where(is_zero(y), 0.0, g * (y * power(x, y - 1.0))),
 *                                        g * where(is_zero(x) & (y >= 0), 0.0, out * log(x)))) */
static double pow_forward(double x, double y) { return cg_power(x, y); }
static void pow_rule(double g, double x, double y, double out, double *sx, double *sy) {
    *sx = y == 0 ? 0.0 : g * (y * cg_power(x, y - 1.0));
    *sy = g * ((x == 0) & (y >= 0) ? 0.0 : out * cg_log(x));
}
const Primitive POW = {"**", 2, pow_forward, NULL, pow_rule};

/* PRIMITIVES = (ADD, SUB, MUL, NEG, EXP, TANH, SIGMOID, SQRT, ABS, SIN, COS, DIV, LOG, RELU, POW) */
const Primitive *const PRIMITIVES[N_PRIMITIVES] = {&ADD, &SUB,  &MUL, &NEG, &EXP,  &TANH, &SIGMOID, &SQRT,
                                                   &ABS, &SIN,  &COS, &DIV, &LOG,  &RELU, &POW};

/* ------------------------------------------------------------------------------------------------
 * The fused ops: fused.py's formulas, sums left to right (fused.total).
 * ---------------------------------------------------------------------------------------------- */

/* fused.total */
double cg_total(const double *x, ptrdiff_t n) {
    double out = x[0];
    for (ptrdiff_t i = 1; i < n; i++) out = out + x[i];
    return out;
}

/* MEAN = Op("mean", lambda xs: div(total(xs), len(xs)), lambda xs, out: _ones(len(xs), div(1.0, len(xs)))) */
double cg_mean(const double *x, ptrdiff_t n, double *local) {
    double out = cg_div(cg_total(x, n), (double)n);
    if (local != NULL) {
        double each = cg_div(1.0, (double)n);
        for (ptrdiff_t i = 0; i < n; i++) local[i] = each;
    }
    return out;
}

/* DOT = Op("dot", _dot, lambda a, b, start, out: (*b, *a, *_ones(len(start)))), where
 * _dot(a, b, start) is total([*(x * y for x, y in zip(a, b)), *start]) */
double cg_dot(const double *a, const double *b, ptrdiff_t n, const double *start, double *local) {
    double out = a[0] * b[0];
    for (ptrdiff_t i = 1; i < n; i++) out = out + a[i] * b[i];
    if (start != NULL) out = out + *start; /* the start (a neuron's bias) added after the products */
    if (local != NULL) {
        for (ptrdiff_t i = 0; i < n; i++) local[i] = b[i], local[n + i] = a[i];
        if (start != NULL) local[2 * n] = 1.0;
    }
    return out;
}

/* fused.shift: the largest x (the first of equals; a nan is never larger), by which every exp is
 * shifted; with finite (logsumexp's), 0 where that is infinite or nan */
static double shift(const double *x, ptrdiff_t n, int finite) {
    double m = x[0];
    for (ptrdiff_t i = 1; i < n; i++)
        if (x[i] > m) m = x[i];
    return !finite || (-INFINITY < m && m < INFINITY) ? m : 0.0;
}

/* total([exp(x - m) for x in xs]), each exp also written to e[i] where e is not NULL */
static double exp_total(const double *x, ptrdiff_t n, double m, double *e) {
    double t = 0.0;
    for (ptrdiff_t i = 0; i < n; i++) {
        double ei = exp(x[i] - m);
        t = i == 0 ? ei : t + ei;
        if (e != NULL) e[i] = ei;
    }
    return t;
}

/* LOGSUMEXP = Op("logsumexp", _logsumexp, lambda xs, out: tuple(exp(x - out) for x in xs)), where
 * _logsumexp(xs) is m + log(total([exp(x - m) for x in xs])), m = shift(xs, finite=True) */
double cg_logsumexp(const double *x, ptrdiff_t n, double *local) {
    double m = shift(x, n, 1);
    double out = m + cg_log(exp_total(x, n, m, NULL));
    if (local != NULL)
        for (ptrdiff_t i = 0; i < n; i++) local[i] = exp(x[i] - out);
    return out;
}

/* fused.softmax: s = _softmax(xs), [div(e_i, t) for e_i in e] with e = [exp(x - m) ...], t = total(e);
 * the local gradients of output i, _softmax_row(s, i): s[i] * ((i == j) - s_j) for each j */
void cg_softmax(const double *x, ptrdiff_t n, double *out, double *local) {
    double t = exp_total(x, n, shift(x, n, 0), out);
    for (ptrdiff_t j = 0; j < n; j++) out[j] = cg_div(out[j], t);
    if (local != NULL)
        for (ptrdiff_t i = 0; i < n; i++)
            for (ptrdiff_t j = 0; j < n; j++) local[i * n + j] = out[i] * ((double)(i == j) - out[j]);
}

/* fused.log_softmax: (x_i - m) - lse with lse = log(t); the local gradients of output i,
 * _log_softmax_row(s, i): (i == j) - s_j for each j, s_j = div(e_j, t) */
void cg_log_softmax(const double *x, ptrdiff_t n, double *out, double *local) {
    double m = shift(x, n, 0), t = exp_total(x, n, m, out); /* out holds e until the end */
    if (local != NULL) {
        double *s = local + (n - 1) * n; /* the last row holds s until it is made last */
        for (ptrdiff_t j = 0; j < n; j++) s[j] = cg_div(out[j], t);
        for (ptrdiff_t i = 0; i < n; i++)
            for (ptrdiff_t j = 0; j < n; j++) local[i * n + j] = (double)(i == j) - s[j];
    }
    double lse = cg_log(t);
    for (ptrdiff_t i = 0; i < n; i++) out[i] = (x[i] - m) - lse;
}

/* fused.cross_entropy: log(tot) - (x[target] - m); its local gradients,
 * _cross_entropy_row([div(ei, tot) for ei in e], t): s_j - onehot(t, j) for each j */
double cg_cross_entropy(const double *x, ptrdiff_t n, ptrdiff_t target, double *local) {
    double m = shift(x, n, 0), t = exp_total(x, n, m, local); /* local holds e until it is made */
    double out = cg_log(t) - (x[target] - m);
    if (local != NULL)
        for (ptrdiff_t j = 0; j < n; j++) local[j] = cg_div(local[j], t) - (double)(target == j);
    return out;
}

/* ------------------------------------------------------------------------------------------------
 * The optimizers: optim.py's loops, one parameter at a time
 * ---------------------------------------------------------------------------------------------- */

/* SGD.step:
 *     if wd: g = g + wd * p.data
 *     if mu:
 *         buf[i] = mu * buf[i] + g if own[i] else g  # PyTorch starts the buffer at g
 *         g = g + mu * buf[i] if self.nesterov else buf[i]
 *     p.data -= lr * g */
double cg_sgd(const SgdSettings *s, double p, double g, double *buf) {
    if (s->weight_decay != 0.0) g = g + s->weight_decay * p;
    if (s->momentum != 0.0) {
        double b = s->started ? s->momentum * *buf + g : g;
        *buf = b;
        g = s->nesterov ? g + s->momentum * b : b;
    }
    return p - s->lr * g;
}

/* Adam.step:
 *     if self._decoupled: p.data *= 1 - lr * wd
 *     elif wd: g = g + wd * p.data
 *     m[i] = b1 * m[i] + (1 - b1) * g
 *     v[i] = b2 * v[i] + (1 - b2) * g * g
 *     p.data -= div(step_size * m[i], math.sqrt(v[i]) / bias_correction2_sqrt + eps) */
double cg_adam(const AdamSettings *s, double p, double g, double *m, double *v) {
    if (s->decoupled)
        p = p * (1 - s->lr * s->weight_decay);
    else if (s->weight_decay != 0.0)
        g = g + s->weight_decay * p;
    double mi = s->beta1 * *m + (1 - s->beta1) * g;
    double vi = s->beta2 * *v + (1 - s->beta2) * g * g;
    *m = mi, *v = vi;
    return p - cg_div(s->step_size * mi, sqrt(vi) / s->bias_correction2_sqrt + s->eps);
}
