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
 * bf16 (the *_bf16 entry points, bf16 autocast training): x, s, the spike gradient and the input
 * gradient are bfloat16; each block is widened to float32 on the way in and rounded to nearest even
 * on the way out (as torch's .to(torch.bfloat16) does; NaN -> 0x7FC0), and everything in between is
 * the float32 arithmetic above, with the membrane (h, v0, vT) in float32. So the results equal the
 * float32 kernel's on the widened input, rounded: an fp32 island without the casts' extra passes.
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
    const void *x; int64_t xs;      /* input and its stride along t (0 or N) */
    const float *v0;                /* initial membrane or NULL (zeros) */
    void *s; float *h, *vT;         /* spikes, charged membrane (NULL: not kept), final membrane */
    const void *gs;                 /* backward: gradient of the spikes */
    void *gx;                       /* backward: gradient of the input */
    int64_t T, N, i0, i1;
    int bf16;                       /* x, s, gs, gx are bfloat16 (else float32) */
} Job;

static inline float bf16_to_float(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint16_t float_to_bf16(float f) {  /* round to nearest even, as c10::BFloat16 */
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* a block of n values at element offset `at` of a float32 or bf16 array, as float32 (bf16: widened into buf) */
static inline const float *load_block(const void *a, int bf16, int64_t at, int64_t n, float *buf) {
    if (!bf16) return (const float *)a + at;
    const uint16_t *b = (const uint16_t *)a + at;
    for (int64_t k = 0; k < n; ++k) buf[k] = bf16_to_float(b[k]);
    return buf;
}

/* where to compute a block that goes to offset `at`: in place (float32) or in buf (bf16, stored after) */
static inline float *out_block(void *a, int bf16, int64_t at, float *buf) {
    return bf16 ? buf : (float *)a + at;
}

static inline void store_block(void *a, int bf16, int64_t at, int64_t n, const float *buf) {
    if (!bf16) return;
    uint16_t *b = (uint16_t *)a + at;
    for (int64_t k = 0; k < n; ++k) b[k] = float_to_bf16(buf[k]);
}

/* round half to even for 0 <= x < 2^23 (the clipped count), NaN stays NaN: adding 2^23 leaves no
 * fraction bits, so the addition rounds (to nearest, ties to even) and the subtraction is exact. Valid
 * only without -ffast-math, which would cancel the two. */
static inline float round_even(float x) {
    return (x + 8388608.0f) - 8388608.0f;
}

static void forward_block(const Job *j, int64_t b0, int64_t n) {
    const int kind = j->p->kind, hard = j->p->hard;
    const float tau = j->p->tau, th = j->p->th, reset = j->p->reset, decay = j->p->decay, levels = j->p->levels;
    float v[BLOCK], scratch[BLOCK], xbuf[BLOCK], sbuf[BLOCK];
    for (int64_t k = 0; k < n; ++k) v[k] = j->v0 ? j->v0[b0 + k] : 0.0f;
    for (int64_t t = 0; t < j->T; ++t) {
        const float *restrict x = load_block(j->x, j->bf16, t * j->xs + b0, n, xbuf);
        float *restrict s = out_block(j->s, j->bf16, t * j->N + b0, sbuf);
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
        store_block(j->s, j->bf16, t * j->N + b0, n, s);
    }
    if (j->vT) memcpy(j->vT + b0, v, (size_t)n * sizeof(float));
}

static void backward_block(const Job *j, int64_t b0, int64_t n) {
    const int kind = j->p->kind, hard = j->p->hard;
    const float tau = j->p->tau, th = j->p->th, lower = j->p->lower, upper = j->p->upper, dh = j->p->dh;
    const float alpha_a = j->p->alpha_a, alpha_b = j->p->alpha_b;
    float carry[BLOCK], gsbuf[BLOCK], gxbuf[BLOCK];
    for (int64_t k = 0; k < n; ++k) carry[k] = 0.0f;
    for (int64_t t = j->T - 1; t >= 0; --t) {
        const float *restrict h = j->h + t * j->N + b0;
        const float *restrict gs = load_block(j->gs, j->bf16, t * j->N + b0, n, gsbuf);
        float *restrict gx = out_block(j->gx, j->bf16, t * j->N + b0, gxbuf);
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
        store_block(j->gx, j->bf16, t * j->N + b0, n, gx);
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

/* bf16: x, s (forward) and gs, gx (backward) are bfloat16 arrays; h, v0, vT are float32 either way */
int snn_neuron_forward(const Params *p, const void *x, int64_t xs, const float *v0, void *s, float *h, float *vT,
                       int64_t T, int64_t N, int threads, int bf16) {
    Job j = {p, x, xs, v0, s, h, vT, NULL, NULL, T, N, 0, N, bf16};
    parallel(run_forward, j, threads);
    return 0;
}

int snn_neuron_backward(const Params *p, const float *h, const void *gs, void *gx, int64_t T, int64_t N, int threads,
                        int bf16) {
    Job j = {p, NULL, 0, NULL, NULL, (float *)h, NULL, gs, gx, T, N, 0, N, bf16};
    parallel(run_backward, j, threads);
    return 0;
}

int snn_neuron_abi(void) { return 2; }
