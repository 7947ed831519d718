/*
 * quorum/rng.h - a small, fast, seedable RNG (SplitMix64 seeding xoshiro256**), identical on every
 * platform and rank count, so generated data, weight init and data order are reproducible from a seed.
 * Header-only (static inline).
 */
#ifndef QUORUM_RNG_H
#define QUORUM_RNG_H

#include <math.h>
#include <stdint.h>

typedef struct {
    uint64_t s[4];
} Rng;

static inline uint64_t rng_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Counter-based draw: the i-th (0-based) output of the SplitMix64 stream whose state starts at seed, i.e.
 * mix(seed + (i + 1) * 0x9e3779b97f4a7c15). Stateless, so element i of a dropout mask (quorum/ops.h
 * dropout_forward) is the same on any backend and thread layout; kernels/pointwise.cu has the device twin. */
static inline uint64_t rng_counter_u64(uint64_t seed, uint64_t i) {
    uint64_t x = seed + i * 0x9e3779b97f4a7c15ULL;
    return rng_splitmix64(&x);
}

/* Seeds from (seed, stream): different streams of one seed are independent (e.g. one per member). */
static inline void rng_seed(Rng *r, uint64_t seed, uint64_t stream) {
    uint64_t x = seed ^ (stream * 0xd1342543de82ef95ULL);
    for (int i = 0; i < 4; i++) r->s[i] = rng_splitmix64(&x);
}

static inline uint64_t rng_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t rng_u64(Rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rng_rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rng_rotl(s[3], 45);
    return result;
}

/* Uniform in [0, 1) with 24 random bits (exact in float). */
static inline float rng_uniform(Rng *r) { return (float)(rng_u64(r) >> 40) * (1.0f / 16777216.0f); }

/* Uniform integer in [0, n). */
static inline uint64_t rng_below(Rng *r, uint64_t n) { return n ? rng_u64(r) % n : 0; }

/* Standard normal (Box-Muller). */
static inline float rng_normal(Rng *r) {
    float u1 = rng_uniform(r), u2 = rng_uniform(r);
    if (u1 < 1e-12f) u1 = 1e-12f;
    return sqrtf(-2.0f * logf(u1)) * cosf(6.28318530718f * u2);
}

#endif /* QUORUM_RNG_H */
