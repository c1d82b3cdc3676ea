/* A small, fast, reproducible random number generator (xoshiro256**), with streams
 * derived from tuples such as (seed, epoch, sample index) so that every consumer can
 * rebuild exactly the numbers it drew, whatever the thread count or resume point. */
#ifndef VN_RNG_H
#define VN_RNG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vn_rng {
    uint64_t s[4];
} vn_rng;

/* Seeds from a base seed and two stream identifiers (use 0 when unused). */
void vn_rng_seed(vn_rng *rng, uint64_t seed, uint64_t stream_a, uint64_t stream_b);
uint64_t vn_rng_u64(vn_rng *rng);
/* Uniform in [0, 1) with 24 (float) or 53 (double) random bits. */
float vn_rng_uniform(vn_rng *rng);
double vn_rng_uniform_double(vn_rng *rng);
/* Uniform integer in [0, n), without modulo bias. n must be > 0. */
uint64_t vn_rng_below(vn_rng *rng, uint64_t n);
/* Standard normal (Box-Muller, one value per call, no cached state). */
double vn_rng_normal(vn_rng *rng);
/* Normal(mean, std) truncated to [a, b] by rejection (as timm's trunc_normal_ bounds). */
double vn_rng_trunc_normal(vn_rng *rng, double mean, double std, double a, double b);
/* A splitmix64 step: a strong 64-bit mixer, also useful for hashing tuples. */
uint64_t vn_mix64(uint64_t x);

#ifdef __cplusplus
}
#endif
#endif
