/* Fused multi-step neuron kernels (forward and backward) for CPU, float32.
 *
 * One call runs the whole time loop of a layer of neurons: state stays in registers / a small block
 * buffer instead of a dozen full-size temporary tensors per timestep. The arithmetic is written
 * operation by operation as SpikingJelly 2.0's CPU implementation does it (each operation rounded to
 * float32, no fused multiply-add: build with -ffp-contract=off), so spikes and gradients are
 * bit-identical to it; tests/test_neuron_kernels.py checks that.
 *
 * Layout: x, s, h and the gradients are (T, N) row-major; x may repeat one step for every t
 * (x_tstride = 0, the encoding layer's output repeated over T). Elements are processed in blocks so
 * that the inner loop runs over contiguous memory and vectorises.
 *
 * kind: 0 = LIF (H = V + (X - (V - R)) / tau), 1 = IF (H = V + X),
 *       2 = I-LIF (H = decay * V + X, C = round(clip(H / th, 0, D)), V = H - C th).
 * reset (LIF / IF): hard = 1 -> V = R after a spike, else soft: V = H - th. The reset is detached
 * from the gradient (SpikingJelly's detach_reset=True, the project's setting).
 * Surrogate gradient (LIF / IF backward): ATan, the project's default. Other surrogates use the
 * PyTorch path (SpikingJelly's sigmoid goes through torch's own vectorised exp, which C cannot match
 * bit for bit).
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#define BLOCK 512

typedef struct {
    int kind, hard;
    float tau, th, reset, decay, levels, alpha_a, alpha_b, lower, upper, dh;
} Params;

typedef struct {
    const Params *p;
    const float *x; int64_t xs;     /* input and its stride along t (0 or N) */
    const float *v0;                /* initial membrane or NULL (zeros) */
    float *s, *h, *vT;              /* spikes, charged membrane (NULL: not kept), final membrane */
    const float *gs;                /* backward: gradient of the spikes */
    float *gx;                      /* backward: gradient of the input */
    int64_t T, N, i0, i1;
} Job;

/* round half to even for 0 <= x < 2^23 (the clipped count), NaN stays NaN: adding 2^23 leaves no
 * fraction bits, so the addition rounds (to nearest, ties to even) and the subtraction is exact. Valid
 * only without -ffast-math, which would cancel the two. */
static inline float round_even(float x) {
    return (x + 8388608.0f) - 8388608.0f;
}

static void forward_block(const Job *j, int64_t b0, int64_t n) {
    const int kind = j->p->kind, hard = j->p->hard;
    const float tau = j->p->tau, th = j->p->th, reset = j->p->reset, decay = j->p->decay, levels = j->p->levels;
    float v[BLOCK], scratch[BLOCK];
    for (int64_t k = 0; k < n; ++k) v[k] = j->v0 ? j->v0[b0 + k] : 0.0f;
    for (int64_t t = 0; t < j->T; ++t) {
        const float *restrict x = j->x + t * j->xs + b0;
        float *restrict s = j->s + t * j->N + b0;
        float *restrict h = j->h ? j->h + t * j->N + b0 : scratch;  /* inference: H is not kept */
        /* one branch-free loop per neuron kind, so that the compiler vectorises each */
        if (kind == 2) {
            for (int64_t k = 0; k < n; ++k) {
                float hk = decay * v[k];
                hk = hk + x[k];
                float c = hk / th;
                c = c < 0.0f ? 0.0f : c;       /* comparisons are false for NaN: NaN passes, as in torch */
                c = c > levels ? levels : c;
                c = round_even(c);
                float rs = c * th;
                v[k] = hk - rs;
                s[k] = c;
                h[k] = hk;
            }
        } else if (kind == 0) {
            for (int64_t k = 0; k < n; ++k) {
                float d = v[k] - reset;
                d = x[k] - d;
                d = d / tau;
                float hk = v[k] + d;
                int fire = hk >= th;
                v[k] = fire ? (hard ? reset : hk - th) : hk;  /* `hard` is loop-invariant: unswitched */
                s[k] = fire ? 1.0f : 0.0f;
                h[k] = hk;
            }
        } else {
            for (int64_t k = 0; k < n; ++k) {
                float hk = v[k] + x[k];
                int fire = hk >= th;
                v[k] = fire ? (hard ? reset : hk - th) : hk;
                s[k] = fire ? 1.0f : 0.0f;
                h[k] = hk;
            }
        }
    }
    if (j->vT) memcpy(j->vT + b0, v, (size_t)n * sizeof(float));
}

static void backward_block(const Job *j, int64_t b0, int64_t n) {
    const int kind = j->p->kind, hard = j->p->hard;
    const float tau = j->p->tau, th = j->p->th, lower = j->p->lower, upper = j->p->upper, dh = j->p->dh;
    const float alpha_a = j->p->alpha_a, alpha_b = j->p->alpha_b;
    float carry[BLOCK];
    for (int64_t k = 0; k < n; ++k) carry[k] = 0.0f;
    for (int64_t t = j->T - 1; t >= 0; --t) {
        const float *restrict h = j->h + t * j->N + b0;
        const float *restrict gs = j->gs + t * j->N + b0;
        float *restrict gx = j->gx + t * j->N + b0;
        if (kind == 2) {
            /* straight-through: (gs * window) / th, as autograd differentiates SpikingJelly's
             * count = hard + window * (H/th - detach(H/th)); the reset uses the detached count */
            for (int64_t k = 0; k < n; ++k) {
                float scaled = h[k] / th;
                float w = (scaled >= lower) & (scaled <= upper) ? 1.0f : 0.0f;
                float a = gs[k] * w;
                a = a / th;
                float gh = a + carry[k];
                gx[k] = gh;
                carry[k] = gh * dh;
            }
        } else {
            for (int64_t k = 0; k < n; ++k) {
                /* ATan surrogate gradient: (alpha/2) * reciprocal(1 + z*z), z = (H - th) * (pi/2 alpha) */
                float z = h[k] - th;
                z = z * alpha_a;
                float q = z * z;
                q = 1.0f + q;
                q = 1.0f / q;
                float sg = q * alpha_b;
                /* detached reset: a hard reset passes the membrane gradient only where no spike fired */
                float rg = hard ? 1.0f - (h[k] >= th ? 1.0f : 0.0f) : 1.0f;
                float a = gs[k] * sg;
                float b = carry[k] * rg;
                float gh = a + b;
                if (kind == 0) {
                    float g = gh / tau;
                    gx[k] = g;
                    carry[k] = gh - g;
                } else {
                    gx[k] = gh;
                    carry[k] = gh;
                }
            }
        }
    }
}

static void *run_forward(void *arg) {
    const Job *j = (const Job *)arg;
    for (int64_t b = j->i0; b < j->i1; b += BLOCK) forward_block(j, b, (j->i1 - b) < BLOCK ? (j->i1 - b) : BLOCK);
    return NULL;
}

static void *run_backward(void *arg) {
    const Job *j = (const Job *)arg;
    for (int64_t b = j->i0; b < j->i1; b += BLOCK) backward_block(j, b, (j->i1 - b) < BLOCK ? (j->i1 - b) : BLOCK);
    return NULL;
}

#define MAX_THREADS 64
#define MIN_PER_THREAD 16384  /* elements x timesteps below which one thread is faster */

static void parallel(void *(*fn)(void *), Job base, int threads) {
    int64_t work = base.N * base.T;
    int n = threads < 1 ? 1 : (threads > MAX_THREADS ? MAX_THREADS : threads);
    while (n > 1 && work / n < MIN_PER_THREAD) --n;
    Job jobs[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    int started[MAX_THREADS];
    int64_t chunk = ((base.N + n - 1) / n + BLOCK - 1) / BLOCK * BLOCK;
    for (int i = 0; i < n; ++i) {
        jobs[i] = base;
        jobs[i].i0 = (int64_t)i * chunk < base.N ? (int64_t)i * chunk : base.N;
        jobs[i].i1 = (int64_t)(i + 1) * chunk < base.N ? (int64_t)(i + 1) * chunk : base.N;
        started[i] = 0;
    }
    for (int i = 1; i < n; ++i) started[i] = pthread_create(&tid[i], NULL, fn, &jobs[i]) == 0;
    fn(&jobs[0]);
    for (int i = 1; i < n; ++i) {
        if (started[i]) pthread_join(tid[i], NULL);
        else fn(&jobs[i]);  /* could not start a thread: do its share here */
    }
}

int snn_neuron_forward(const Params *p, const float *x, int64_t xs, const float *v0, float *s, float *h, float *vT,
                       int64_t T, int64_t N, int threads) {
    Job j = {p, x, xs, v0, s, h, vT, NULL, NULL, T, N, 0, N};
    parallel(run_forward, j, threads);
    return 0;
}

int snn_neuron_backward(const Params *p, const float *h, const float *gs, float *gx, int64_t T, int64_t N, int threads) {
    Job j = {p, NULL, 0, NULL, NULL, (float *)h, NULL, gs, gx, T, N, 0, N};
    parallel(run_backward, j, threads);
    return 0;
}

int snn_neuron_abi(void) { return 1; }
