/* The peak arithmetic rate of this CPU, for benchmarks/engine.py, which compiles it with
   `cc -O2 -march=native -pthread` and runs `peak SECONDS THREADS SEED`.

   One pinned thread per core runs 16 independent accumulators (12 with AVX2's 16
   registers) of one instruction: _mm512_fmadd_ps for f32 (_mm256_fmadd_ps without
   AVX-512), _mm512_dpbf16_ps for bf16 (AVX512_BF16) and _mm512_dpbusd_epi32 for int8
   (AVX512_VNNI; AVX_VNNI's 256-bit form without it). A chain of dependent one-cycle adds
   gives each core's clock. The seed comes from the command line so that nothing can be
   folded at build time. Each precision prints one line:

       NAME ISA OPS_PER_INSTRUCTION BEST_GOPS SUSTAINED_GOPS THREADS SINK

   BEST is each core's best 20 ms window, summed over the cores; SUSTAINED the whole run;
   a precision this compiler and CPU have no kernel for prints ISA "none". */
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* 16 independent accumulators (12 with AVX2's 16 registers) hide the instruction
   latency; ROUNDS x that many instructions run between two clock reads. */
#define ROUNDS 2048
#define R12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define R16(X) R12(X) X(12) X(13) X(14) X(15)

typedef struct {
    int cpu;
    double seconds, window, seed;
    double best, ops, elapsed, sink;
} job_t;

static pthread_barrier_t barrier;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

/* Runs STEP (REPEAT: 12 or 16 instructions of OPS operations each) until j->seconds
   have passed; records the operations done, the time, and the best rate over j->window. */
#define TIMED(OPS, STEP, REPEAT, COUNT)                                           \
    pin(j->cpu);                                                                  \
    pthread_barrier_wait(&barrier);                                               \
    double per_round = (double)ROUNDS * (COUNT) * (OPS);                          \
    double start = now(), mark = start, end, done = 0, since = 0;                 \
    do {                                                                          \
        for (int r = 0; r < ROUNDS; r++) { REPEAT(STEP) }                         \
        done += per_round;                                                        \
        since += per_round;                                                       \
        end = now();                                                              \
        if (end - mark >= j->window) {                                            \
            if (since / (end - mark) > j->best) j->best = since / (end - mark);   \
            since = 0;                                                            \
            mark = end;                                                           \
        }                                                                         \
    } while (end - start < j->seconds);                                           \
    j->ops = done;                                                                \
    j->elapsed = end - start;                                                     \
    if (j->best == 0) j->best = done / (end - start);

/* A kernel: SETUP its operands, declare the accumulators (DECL), run STEP under TIMED,
   then add the accumulators up (SUM) so that nothing is optimised away. */
#define KERNEL(NAME, REPEAT, COUNT, OPS, SETUP, DECL, STEP, SUM) \
    static void *NAME(void *arg) {                               \
        job_t *j = arg;                                          \
        SETUP                                                    \
        REPEAT(DECL)                                             \
        TIMED(OPS, STEP, REPEAT, COUNT)                          \
        double sink = 0;                                         \
        REPEAT(SUM)                                              \
        j->sink = sink;                                          \
        return NULL;                                             \
    }

#if defined(__AVX512F__)
#define F32_ISA "avx512f:_mm512_fmadd_ps"
#define F32_OPS 32
#define F32_D(i) __m512 c##i = _mm512_set1_ps((float)(i) * (float)j->seed);
#define F32_S(i) c##i = _mm512_fmadd_ps(c##i, a, b);
#define F32_A(i) sink += _mm512_reduce_add_ps(c##i);
KERNEL(kernel_f32, R16, 16, F32_OPS,
       __m512 a = _mm512_set1_ps((float)(1.0 - 1e-7 * j->seed));
       __m512 b = _mm512_set1_ps((float)(1e-7 * j->seed));, F32_D, F32_S, F32_A)
#elif defined(__AVX2__) && defined(__FMA__)
#define F32_ISA "avx2:_mm256_fmadd_ps"
#define F32_OPS 16
#define F32_D(i) __m256 c##i = _mm256_set1_ps((float)(i) * (float)j->seed);
#define F32_S(i) c##i = _mm256_fmadd_ps(c##i, a, b);
#define F32_A(i) _mm256_storeu_ps(lanes, c##i); for (int k = 0; k < 8; k++) sink += lanes[k];
KERNEL(kernel_f32, R12, 12, F32_OPS,
       __m256 a = _mm256_set1_ps((float)(1.0 - 1e-7 * j->seed));
       __m256 b = _mm256_set1_ps((float)(1e-7 * j->seed)); float lanes[8];,
       F32_D, F32_S, F32_A)
#endif

#if defined(__AVX512BF16__)
#define BF16_ISA "avx512_bf16:_mm512_dpbf16_ps"
#define BF16_OPS 64
#define BF16_D(i) __m512 c##i = _mm512_set1_ps((float)(i));
#define BF16_S(i) c##i = _mm512_dpbf16_ps(c##i, a, a);
#define BF16_A(i) sink += _mm512_reduce_add_ps(c##i);
KERNEL(kernel_bf16, R16, 16, BF16_OPS,
       __m512 x = _mm512_set1_ps((float)(1e-3 * j->seed));
       __m512bh a = _mm512_cvtne2ps_pbh(x, x);, BF16_D, BF16_S, BF16_A)
#endif

#if defined(__AVX512VNNI__)
#define INT8_ISA "avx512_vnni:_mm512_dpbusd_epi32"
#define INT8_OPS 128
#define INT8_D(i) __m512i c##i = _mm512_set1_epi32(i);
#define INT8_S(i) c##i = _mm512_dpbusd_epi32(c##i, a, b);
#define INT8_A(i) sink += _mm512_reduce_add_epi32(c##i);
KERNEL(kernel_int8, R16, 16, INT8_OPS,
       __m512i a = _mm512_set1_epi8((char)(1 + (int)j->seed));
       __m512i b = _mm512_set1_epi8((char)(2 + (int)j->seed));, INT8_D, INT8_S, INT8_A)
#elif defined(__AVXVNNI__)
#define INT8_ISA "avx_vnni:_mm256_dpbusd_avx_epi32"
#define INT8_OPS 64
#define INT8_D(i) __m256i c##i = _mm256_set1_epi32(i);
#define INT8_S(i) c##i = _mm256_dpbusd_avx_epi32(c##i, a, b);
#define INT8_A(i) _mm256_storeu_si256((__m256i *)lanes, c##i); \
                  for (int k = 0; k < 8; k++) sink += lanes[k];
KERNEL(kernel_int8, R12, 12, INT8_OPS,
       __m256i a = _mm256_set1_epi8((char)(1 + (int)j->seed));
       __m256i b = _mm256_set1_epi8((char)(2 + (int)j->seed)); int lanes[8];,
       INT8_D, INT8_S, INT8_A)
#endif

#if defined(__x86_64__)
#define CLOCK_ISA "x86_64:dependent-add-chain"
/* one dependent 1-cycle add after another: instructions per second = cycles per second */
static void *kernel_clock(void *arg) {
    job_t *j = arg;
    unsigned long x = (unsigned long)j->seed, y = 1;
#define S(i) __asm__ volatile("add %1, %0" : "+r"(x) : "r"(y));
    TIMED(1, S, R16, 16)
    j->sink = (double)x;
#undef S
    return NULL;
}
#endif

/* one line: NAME ISA OPS_PER_INSTRUCTION BEST_GOPS SUSTAINED_GOPS THREADS */
static void run(const char *name, const char *isa, int ops, void *(*kernel)(void *),
                int threads, double seconds, double seed) {
    cpu_set_t allowed;
    int cpus[1024], n = 0;
    sched_getaffinity(0, sizeof allowed, &allowed);
    for (int c = 0; c < CPU_SETSIZE && n < 1024; c++)
        if (CPU_ISSET(c, &allowed)) cpus[n++] = c;
    pthread_t *tid = calloc(threads, sizeof *tid);
    job_t *jobs = calloc(threads, sizeof *jobs);
    pthread_barrier_init(&barrier, NULL, threads);
    double window = seconds / 5 < 0.02 ? seconds / 5 : 0.02;
    for (int t = 0; t < threads; t++) {
        jobs[t].cpu = cpus[t % (n ? n : 1)];
        jobs[t].seconds = seconds;
        jobs[t].window = window;
        jobs[t].seed = seed;
        pthread_create(&tid[t], NULL, kernel, &jobs[t]);
    }
    double best = 0, sustained = 0, sink = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(tid[t], NULL);
        best += jobs[t].best;
        sustained += jobs[t].ops / jobs[t].elapsed;
        sink += jobs[t].sink;
    }
    pthread_barrier_destroy(&barrier);
    printf("%s %s %d %.3f %.3f %d %g\n", name, isa, ops, best / 1e9, sustained / 1e9, threads,
           sink);
    fflush(stdout);
    free(tid);
    free(jobs);
}

int main(int argc, char **argv) {
    if (argc < 4) return 2;
    double seconds = atof(argv[1]);
    int threads = atoi(argv[2]);
    double seed = atof(argv[3]);
#ifdef CLOCK_ISA
    run("clock", CLOCK_ISA, 1, kernel_clock, threads, seconds / 4, seed);
#endif
#ifdef F32_ISA
    run("f32", F32_ISA, F32_OPS, kernel_f32, threads, seconds, seed);
#else
    printf("f32 none 0 0 0 %d 0\n", threads);
#endif
#ifdef BF16_ISA
    run("bf16", BF16_ISA, BF16_OPS, kernel_bf16, threads, seconds, seed);
#else
    printf("bf16 none 0 0 0 %d 0\n", threads);
#endif
#ifdef INT8_ISA
    run("int8", INT8_ISA, INT8_OPS, kernel_int8, threads, seconds, seed);
#else
    printf("int8 none 0 0 0 %d 0\n", threads);
#endif
    return 0;
}
