/* optim.c - AdamW (torch semantics), HF learning-rate schedules, global-norm clipping. */
#include "quorum/train.h"

#include <math.h>

void optim_defaults(OptimCfg *o) {
    *o = (OptimCfg){.lr = 5e-6f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.0f,
                    .grad_clip = 1.0f, .warmup_steps = 0, .total_steps = 1, .cosine = 0};
}

float lr_at(const OptimCfg *o, int step) {
    if (step < o->warmup_steps) return o->lr * (float)step / (float)(o->warmup_steps > 1 ? o->warmup_steps : 1);
    if (!o->cosine) return o->lr;
    int span = o->total_steps - o->warmup_steps;
    double progress = (double)(step - o->warmup_steps) / (double)(span > 1 ? span : 1);
    double f = 0.5 * (1.0 + cos(M_PI * progress));
    return (float)(o->lr * (f > 0 ? f : 0));
}

float grad_clip_coef(double norm, float max_norm) {
    if (max_norm <= 0) return 1.0f;
    double coef = max_norm / (norm + 1e-6);
    return coef >= 1.0 ? 1.0f : (float)coef;
}

void grad_clip_apply(float *g, size_t n, double norm, float max_norm) {
    float c = grad_clip_coef(norm, max_norm);
    if (c == 1.0f) return;
    for (size_t i = 0; i < n; i++) g[i] *= c;
}

void adamw_update(float *p, const float *g, float *m, float *v, const uint8_t *decay_mask, size_t n, float lr,
                  const OptimCfg *o, int t) {
    float b1 = o->beta1, b2 = o->beta2;
    float bc1 = 1.0f - powf(b1, (float)t), bc2 = 1.0f - powf(b2, (float)t);
    float step = lr / bc1, bc2_sqrt = sqrtf(bc2), decay = 1.0f - lr * o->weight_decay;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        m[i] = b1 * m[i] + (1.0f - b1) * gi;
        v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
        if (!decay_mask || decay_mask[i]) p[i] *= decay; /* decoupled: on the weight, not through the gradient */
        p[i] -= step * m[i] / (sqrtf(v[i]) / bc2_sqrt + o->eps);
    }
}
