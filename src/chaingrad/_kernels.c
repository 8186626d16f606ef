/* TEMPORARY scaffold of _kernels.c for building the tape before the real split lands */
#include "_kernels.h"
#include <math.h>

static const double PLUS_NAN = (double)NAN;
double cg_div(double x, double y) {
    if (y != 0.0) return x / y;
    if (x != x || x == 0.0) return PLUS_NAN;
    return copysign(INFINITY, x) * copysign(1.0, y);
}
double cg_log(double x) { return x > 0 ? log(x) : (x == 0 ? -INFINITY : PLUS_NAN); }
static double c_sigmoid(double x) { if (x >= 0) return 1.0 / (1.0 + exp(-x)); double e = exp(x); return e / (1.0 + e); }
static double c_sqrt(double x) { return x >= 0 ? sqrt(x) : PLUS_NAN; }
static double c_relu(double x) { return x < 0 ? 0.0 : x; }
static double c_sin(double x) { return isinf(x) ? PLUS_NAN : sin(x); }
static double c_cos(double x) { return isinf(x) ? PLUS_NAN : cos(x); }
static double c_sign(double x) { return x > 0 ? 1.0 : (x < 0 ? -1.0 : 0.0); }
static int odd_integer(double y) { return isfinite(y) && floor(y) == y && fabs(fmod(y, 2.0)) == 1.0; }
double cg_power(double x, double y) {
    double r;
    if (!isfinite(x) || !isfinite(y)) {
        if (isnan(x)) r = y == 0. ? 1. : x;
        else if (isnan(y)) r = x == 1. ? 1. : y;
        else if (isinf(x)) { int odd_y = isfinite(y) && fmod(fabs(y), 2.0) == 1.0;
            if (y > 0.) r = odd_y ? x : fabs(x); else if (y == 0.) r = 1.; else r = odd_y ? copysign(0., x) : 0.; }
        else { if (fabs(x) == 1.0) r = 1.; else if (y > 0. && fabs(x) > 1.0) r = y; else if (y < 0. && fabs(x) < 1.0) r = -y; else r = 0.; }
        return r;
    }
    r = pow(x, y);
    if (isfinite(r)) return r;
    if (isnan(r)) return x == 0 ? (odd_integer(y) ? copysign(INFINITY, x) : INFINITY) : PLUS_NAN;
    if (x == 0) return odd_integer(y) ? copysign(INFINITY, x) : INFINITY;
    return (x < 0 && odd_integer(y)) ? -INFINITY : INFINITY;
}
static double f_add(double x, double y) { return x + y; }
static void l_add(double x, double y, double o, double *a, double *b) { *a = 1.0, *b = 1.0; }
static double f_sub(double x, double y) { return x - y; }
static void l_sub(double x, double y, double o, double *a, double *b) { *a = 1.0, *b = -1.0; }
static double f_mul(double x, double y) { return x * y; }
static void l_mul(double x, double y, double o, double *a, double *b) { *a = y, *b = x; }
static double f_neg(double x, double y) { return -x; }
static void l_neg(double x, double y, double o, double *a, double *b) { *a = -1.0; }
static double f_exp(double x, double y) { return exp(x); }
static void l_exp(double x, double y, double o, double *a, double *b) { *a = o; }
static double f_tanh(double x, double y) { return tanh(x); }
static void l_tanh(double x, double y, double o, double *a, double *b) { *a = 1.0 - o * o; }
static double f_sig(double x, double y) { return c_sigmoid(x); }
static void l_sig(double x, double y, double o, double *a, double *b) { *a = o * (1.0 - o); }
static double f_sqrt(double x, double y) { return c_sqrt(x); }
static void l_sqrt(double x, double y, double o, double *a, double *b) { *a = cg_div(0.5, o); }
static double f_abs(double x, double y) { return fabs(x); }
static void l_abs(double x, double y, double o, double *a, double *b) { *a = c_sign(x); }
static double f_sin(double x, double y) { return c_sin(x); }
static void l_sin(double x, double y, double o, double *a, double *b) { *a = c_cos(x); }
static double f_cos(double x, double y) { return c_cos(x); }
static void l_cos(double x, double y, double o, double *a, double *b) { *a = -c_sin(x); }
static double f_div(double x, double y) { return cg_div(x, y); }
static void r_div(double g, double x, double y, double o, double *a, double *b) { *a = cg_div(g, y), *b = -g * cg_div(o, y); }
static double f_log(double x, double y) { return cg_log(x); }
static void r_log(double g, double x, double y, double o, double *a, double *b) { *a = cg_div(g, x); }
static double f_relu(double x, double y) { return c_relu(x); }
static void r_relu(double g, double x, double y, double o, double *a, double *b) { *a = o <= 0 ? 0.0 : g; }
static double f_pow(double x, double y) { return cg_power(x, y); }
static void r_pow(double g, double x, double y, double o, double *a, double *b) {
    *a = y == 0 ? 0.0 : g * (y * cg_power(x, y - 1.0));
    *b = g * ((x == 0) & (y >= 0) ? 0.0 : o * cg_log(x));
}
const Primitive ADD = {"+", 2, f_add, l_add, 0}, SUB = {"-", 2, f_sub, l_sub, 0}, MUL = {"*", 2, f_mul, l_mul, 0},
    NEG = {"neg", 1, f_neg, l_neg, 0}, EXP = {"exp", 1, f_exp, l_exp, 0}, TANH = {"tanh", 1, f_tanh, l_tanh, 0},
    SIGMOID = {"sigmoid", 1, f_sig, l_sig, 0}, SQRT = {"sqrt", 1, f_sqrt, l_sqrt, 0}, ABS = {"abs", 1, f_abs, l_abs, 0},
    SIN = {"sin", 1, f_sin, l_sin, 0}, COS = {"cos", 1, f_cos, l_cos, 0}, DIV = {"/", 2, f_div, 0, r_div},
    LOG = {"log", 1, f_log, 0, r_log}, RELU = {"relu", 1, f_relu, 0, r_relu}, POW = {"**", 2, f_pow, 0, r_pow};
const Primitive *const PRIMITIVES[N_PRIMITIVES] = {&ADD, &SUB, &MUL, &NEG, &EXP, &TANH, &SIGMOID, &SQRT, &ABS, &SIN, &COS, &DIV, &LOG, &RELU, &POW};

double cg_total(const double *x, ptrdiff_t n) { double o = x[0]; for (ptrdiff_t i = 1; i < n; i++) o = o + x[i]; return o; }
double cg_mean(const double *x, ptrdiff_t n, double *local) {
    double o = cg_div(cg_total(x, n), (double)n);
    if (local) { double e = cg_div(1.0, (double)n); for (ptrdiff_t i = 0; i < n; i++) local[i] = e; }
    return o;
}
double cg_dot(const double *a, const double *b, ptrdiff_t n, const double *start, double *local) {
    double o = a[0] * b[0];
    for (ptrdiff_t i = 1; i < n; i++) o = o + a[i] * b[i];
    if (start) o = o + *start;
    if (local) { for (ptrdiff_t i = 0; i < n; i++) local[i] = b[i], local[n + i] = a[i]; if (start) local[2 * n] = 1.0; }
    return o;
}
double cg_logsumexp(const double *x, ptrdiff_t n, double *local) {
    double top = x[0];
    for (ptrdiff_t i = 1; i < n; i++) if (x[i] > top) top = x[i];
    if (!(-INFINITY < top && top < INFINITY)) top = 0.0;
    double t = exp(x[0] - top);
    for (ptrdiff_t i = 1; i < n; i++) t = t + exp(x[i] - top);
    double o = top + cg_log(t);
    if (local) for (ptrdiff_t i = 0; i < n; i++) local[i] = exp(x[i] - o);
    return o;
}
static void parts(const double *x, ptrdiff_t n, double *e, double *m, double *t) {
    double top = x[0];
    for (ptrdiff_t i = 1; i < n; i++) if (x[i] > top) top = x[i];
    for (ptrdiff_t i = 0; i < n; i++) e[i] = exp(x[i] - top);
    double s = e[0];
    for (ptrdiff_t i = 1; i < n; i++) s = s + e[i];
    *m = top, *t = s;
}
void cg_softmax(const double *x, ptrdiff_t n, double *out, double *local) {
    double m, t;
    parts(x, n, out, &m, &t);
    for (ptrdiff_t j = 0; j < n; j++) out[j] = cg_div(out[j], t);
    if (local) for (ptrdiff_t i = 0; i < n; i++) for (ptrdiff_t j = 0; j < n; j++) local[i * n + j] = out[i] * ((double)(i == j) - out[j]);
}
void cg_log_softmax(const double *x, ptrdiff_t n, double *out, double *local) {
    double m, t;
    parts(x, n, out, &m, &t);
    for (ptrdiff_t j = 0; j < n; j++) out[j] = cg_div(out[j], t);
    if (local) for (ptrdiff_t i = 0; i < n; i++) for (ptrdiff_t j = 0; j < n; j++) local[i * n + j] = (double)(i == j) - out[j];
    double lse = cg_log(t);
    for (ptrdiff_t i = 0; i < n; i++) out[i] = (x[i] - m) - lse;
}
double cg_cross_entropy(const double *x, ptrdiff_t n, ptrdiff_t target, double *local) {
    /* scaffold: e kept in local when given */
    double m = x[0];
    for (ptrdiff_t i = 1; i < n; i++) if (x[i] > m) m = x[i];
    double t = exp(x[0] - m);
    for (ptrdiff_t i = 1; i < n; i++) t = t + exp(x[i] - m);
    double o = cg_log(t) - (x[target] - m);
    if (local) for (ptrdiff_t j = 0; j < n; j++) local[j] = cg_div(exp(x[j] - m), t) - (double)(target == j);
    return o;
}
