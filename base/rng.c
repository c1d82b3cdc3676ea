#include "base/vn_rng.h"

#include <math.h>

uint64_t vn_mix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

void vn_rng_seed(vn_rng *rng, uint64_t seed, uint64_t stream_a, uint64_t stream_b)
{
    uint64_t h = vn_mix64(seed);
    h = vn_mix64(h ^ vn_mix64(stream_a + 0x632BE59BD9B4E019ull));
    h = vn_mix64(h ^ vn_mix64(stream_b + 0x8CB92BA72F3D8DD7ull));
    for (int i = 0; i < 4; i++) {
        h = vn_mix64(h + (uint64_t)i);
        rng->s[i] = h;
    }
    if (!(rng->s[0] | rng->s[1] | rng->s[2] | rng->s[3])) rng->s[0] = 1;
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t vn_rng_u64(vn_rng *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float vn_rng_uniform(vn_rng *rng) { return (float)(vn_rng_u64(rng) >> 40) * 0x1.0p-24f; }

double vn_rng_uniform_double(vn_rng *rng) { return (double)(vn_rng_u64(rng) >> 11) * 0x1.0p-53; }

uint64_t vn_rng_below(vn_rng *rng, uint64_t n)
{
    uint64_t limit = -n % n; /* 2^64 mod n: reject the first `limit` values */
    for (;;) {
        uint64_t r = vn_rng_u64(rng);
        if (r >= limit) return r % n;
    }
}

double vn_rng_normal(vn_rng *rng)
{
    double u1 = 1.0 - vn_rng_uniform_double(rng); /* (0, 1] */
    double u2 = vn_rng_uniform_double(rng);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

double vn_rng_trunc_normal(vn_rng *rng, double mean, double std, double a, double b)
{
    for (;;) {
        double v = mean + std * vn_rng_normal(rng);
        if (v >= a && v <= b) return v;
    }
}
