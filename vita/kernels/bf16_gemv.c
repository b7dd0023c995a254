/* y[m, n] = sum_k x[m, k] * w[n, k] (+ b[n]) for bf16 weights, bf16 in/out, float32 accumulation, AVX2 + FMA.
 *
 * Batch-1 decoding reads every weight once per token, so this loop must stream w at memory speed: each 16-byte
 * load of 8 bf16 weights is widened to 8 floats with a zero-extend and a 16-bit shift (bf16 is the top half of a
 * float32), then fused-multiply-added against x, which sits in L1. Four rows share each x load.
 * Rows are split over OpenMP threads. m is small (decode: 1); k must be a multiple of 8 (the caller checks).
 */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

static inline __m256 widen(const uint16_t *p) {
    __m128i v = _mm_loadu_si128((const __m128i *)p);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
}

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t f32_to_bf16(float f) { /* round to nearest even, like torch */
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 0x40); /* NaN stays NaN */
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

/* xf: [m, k] float32 (already widened by the caller's loop below); w: [n, k] bf16; b: [n] bf16 or NULL. */
static void rows(const float *xf, int64_t m, const uint16_t *w, const uint16_t *b, uint16_t *y, int64_t n,
                 int64_t k, int64_t r0, int64_t r1) {
    for (int64_t i = 0; i < m; i++) {
        const float *xi = xf + i * k;
        int64_t r = r0;
        for (; r + 4 <= r1; r += 4) {
            const uint16_t *w0 = w + r * k, *w1 = w0 + k, *w2 = w1 + k, *w3 = w2 + k;
            __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
            __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
            for (int64_t j = 0; j < k; j += 8) {
                __m256 xv = _mm256_loadu_ps(xi + j);
                a0 = _mm256_fmadd_ps(widen(w0 + j), xv, a0);
                a1 = _mm256_fmadd_ps(widen(w1 + j), xv, a1);
                a2 = _mm256_fmadd_ps(widen(w2 + j), xv, a2);
                a3 = _mm256_fmadd_ps(widen(w3 + j), xv, a3);
            }
            float s[4] = {hsum(a0), hsum(a1), hsum(a2), hsum(a3)};
            for (int q = 0; q < 4; q++) {
                float v = s[q] + (b ? bf16_to_f32(b[r + q]) : 0.0f);
                y[i * n + r + q] = f32_to_bf16(v);
            }
        }
        for (; r < r1; r++) {
            const uint16_t *wr = w + r * k;
            __m256 a = _mm256_setzero_ps();
            for (int64_t j = 0; j < k; j += 8) a = _mm256_fmadd_ps(widen(wr + j), _mm256_loadu_ps(xi + j), a);
            float v = hsum(a) + (b ? bf16_to_f32(b[r]) : 0.0f);
            y[i * n + r] = f32_to_bf16(v);
        }
    }
}

/* Entry point. xf_scratch: [m, k] floats the caller owns (x widened once, shared by all threads). */
void vita_bf16_gemv(const uint16_t *x, int64_t m, const uint16_t *w, const uint16_t *b, uint16_t *y, int64_t n,
                    int64_t k, float *xf_scratch, int threads) {
    for (int64_t i = 0; i < m * k; i++) xf_scratch[i] = bf16_to_f32(x[i]);
    if (threads <= 1 || n < 64) {
        rows(xf_scratch, m, w, b, y, n, k, 0, n);
        return;
    }
#pragma omp parallel num_threads(threads)
    {
#ifdef _OPENMP
        extern int omp_get_thread_num(void);
        extern int omp_get_num_threads(void);
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
#else
        int t = 0, nt = 1;
#endif
        int64_t blocks = (n + 3) / 4; /* whole 4-row blocks per thread */
        int64_t r0 = (blocks * t / nt) * 4, r1 = (blocks * (t + 1) / nt) * 4;
        if (r1 > n) r1 = n;
        if (r0 < r1) rows(xf_scratch, m, w, b, y, n, k, r0, r1);
    }
}
