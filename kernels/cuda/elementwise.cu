// Fused loss + gradient of the elementwise losses, in one pass over memory.
//
// One grid-stride kernel reads input and target once (16-byte vector loads where every pointer is
// 16-byte aligned, a scalar loop for the tail and for unaligned arrays), writes the gradient once and
// either writes the unreduced loss (reduction='none') or one partial sum per block; `lossk_finish`
// then sums the partials in a fixed order. No floating-point atomics: the same input and launch
// configuration give bit-identical losses. The formulas are those of lossk/_reference (the
// specification); each case below names its reference function.
//
// Specialisation macros (besides LOSSK_INPUT / LOSSK_TARGET, see common.cuh):
//   LOSSK_LOSS        0 mse, 1 l1, 2 huber (param = delta), 3 smooth_l1 (param = beta > 0), 4 bce,
//                     5 bce_with_logits, 6 kl_div
//   LOSSK_WEIGHT      0 none, 1 an array shaped like the input, 2 periodic: weight[i % weight_period]
//                     (a broadcast view whose leading axes have stride 0); weights are in ACC
//   LOSSK_POS_WEIGHT  the same three modes for bce_with_logits' pos_weight
//   LOSSK_LOG_TARGET  kl_div only: the target holds log-probabilities
//   LOSSK_GRAD        1: write the gradient
//   LOSSK_REDUCE      0: write the unreduced loss; 1: write one partial sum per block
//   LOSSK_GRAD_OUTPUT 0: the upstream gradient is a scalar (grad_scale, times *upstream if given);
//                     1: an array shaped like the input (reduction='none')
// The gradient is scaled by grad_scale [* upstream[0]] [/ divisor[0]]: divisor is a device scalar (the
// sum of the weights, for a weighted mean) so that no host synchronisation is needed.
// input and grad may be the same array (in-place gradient): every element is read before it is written,
// by the same thread, so they are not marked __restrict__.

#include "common.cuh"

#define LOSS_MSE 0
#define LOSS_L1 1
#define LOSS_HUBER 2
#define LOSS_SMOOTH_L1 3
#define LOSS_BCE 4
#define LOSS_BCE_WITH_LOGITS 5
#define LOSS_KL_DIV 6

#ifndef LOSSK_LOSS
#error "LOSSK_LOSS must be defined"
#endif
#ifndef LOSSK_WEIGHT
#define LOSSK_WEIGHT 0
#endif
#ifndef LOSSK_POS_WEIGHT
#define LOSSK_POS_WEIGHT 0
#endif
#ifndef LOSSK_LOG_TARGET
#define LOSSK_LOG_TARGET 0
#endif
#ifndef LOSSK_GRAD
#define LOSSK_GRAD 1
#endif
#ifndef LOSSK_REDUCE
#define LOSSK_REDUCE 1
#endif
#ifndef LOSSK_GRAD_OUTPUT
#define LOSSK_GRAD_OUTPUT 0
#endif

#define OPTION_NONE 0
#define OPTION_FULL 1
#define OPTION_PERIODIC 2

#define ELEMENTWISE_THREADS 256

// The per-element loss and local gradient (before weighting and the upstream scale).
__device__ __forceinline__ void pointwise(ACC x, ACC y, ACC pos_weight, ACC param, ACC& loss, ACC& grad) {
#if LOSSK_LOSS == LOSS_MSE
    // regression.mse_loss: (x - y)^2, gradient 2 (x - y)
    const ACC d = x - y;
    loss = d * d;
    grad = (ACC)2 * d;
#elif LOSSK_LOSS == LOSS_L1
    // regression.l1_loss: |x - y|, gradient sign(x - y); 0 at a zero residual and, as PyTorch's sign, at NaN
    const ACC d = x - y;
    loss = acc_abs(d);
    grad = d > (ACC)0 ? (ACC)1 : (d < (ACC)0 ? (ACC)-1 : (ACC)0);
#elif LOSSK_LOSS == LOSS_HUBER
    // regression.huber_loss: ½ d² for |d| < delta, delta (|d| - ½ delta) beyond; gradient clip(d, ±delta)
    const ACC d = x - y, m = acc_abs(d);
    loss = m < param ? (ACC)0.5 * d * d : param * (m - (ACC)0.5 * param);
    grad = acc_min(acc_max(d, -param), param);
#elif LOSSK_LOSS == LOSS_SMOOTH_L1
    // regression.smooth_l1_loss (beta > 0; the host sends beta == 0 to l1): ½ d² / beta or |d| - ½ beta;
    // gradient clip(d / beta, -1, 1)
    const ACC d = x - y, m = acc_abs(d);
    loss = m < param ? (ACC)0.5 * d * d / param : m - (ACC)0.5 * param;
    grad = acc_min(acc_max(d / param, (ACC)-1), (ACC)1);
#elif LOSSK_LOSS == LOSS_BCE
    // binary.binary_cross_entropy: -[y max(log x, -100) + (1 - y) max(log(1 - x), -100)];
    // gradient (x - y) / max(x (1 - x), eps), eps = 1e-12 rounded to float32 (as PyTorch holds it)
    const ACC floor = (ACC)-100;
    loss = -(y * acc_max(acc_log(x), floor) + ((ACC)1 - y) * acc_max(acc_log1p(-x), floor));
    grad = (x - y) / acc_max(x * ((ACC)1 - x), (ACC)9.999999960041972e-13);
#elif LOSSK_LOSS == LOSS_BCE_WITH_LOGITS
    // binary.binary_cross_entropy_with_logits: (1 - y) x + l softplus(-x), l = 1 + (p - 1) y;
    // gradient l sigmoid(x) - p y. softplus(-x) = log1p(exp(-|x|)) + max(-x, 0) never overflows and
    // sigmoid comes from the same exp(-|x|).
    const ACC decay = acc_exp(-acc_abs(x));
    const ACC softplus_neg = acc_log1p(decay) + acc_max(-x, (ACC)0);
    const ACC log_weight = (ACC)1 + (pos_weight - (ACC)1) * y;
    loss = ((ACC)1 - y) * x + log_weight * softplus_neg;
    const ACC sigmoid = x >= (ACC)0 ? (ACC)1 / ((ACC)1 + decay) : decay / ((ACC)1 + decay);
    grad = log_weight * sigmoid - pos_weight * y;
#elif LOSSK_LOSS == LOSS_KL_DIV
#if LOSSK_LOG_TARGET
    // divergence.kl_div, log_target: exp(y) (y - x), gradient -exp(y)
    const ACC p = acc_exp(y);
    loss = p * (y - x);
    grad = -p;
#else
    // divergence.kl_div: y log y - y x with 0 log 0 = 0 (xlogy), gradient -y
    loss = (y == (ACC)0 ? (ACC)0 : y * acc_log(y)) - y * x;
    grad = -y;
#endif
#else
#error "unknown LOSSK_LOSS"
#endif
}

__device__ __forceinline__ ACC option_at(const ACC* values, index_t period, index_t i) {
    return values[i % period];
}

extern "C" __global__ void __launch_bounds__(ELEMENTWISE_THREADS)
lossk_elementwise(const T* input, const TT* __restrict__ target, const ACC* __restrict__ weight,
                  index_t weight_period, const ACC* __restrict__ pos_weight, index_t pos_weight_period,
                  const T* __restrict__ grad_output, T* grad, T* __restrict__ loss_out,
                  ACC* __restrict__ partials, index_t n, int vectorised, ACC param, ACC grad_scale,
                  const ACC* __restrict__ upstream, const ACC* __restrict__ divisor) {
#if LOSSK_GRAD
    ACC scale = grad_scale;
#if !LOSSK_GRAD_OUTPUT
    if (upstream != 0) scale *= upstream[0];
#endif
    if (divisor != 0) scale /= divisor[0];
#endif
#if LOSSK_REDUCE
    ACC thread_sum = (ACC)0;
#endif
    const index_t stride = (index_t)gridDim.x * blockDim.x;
    const index_t start = (index_t)blockIdx.x * blockDim.x + threadIdx.x;

    // 16-byte vectors: VEC elements per step
    const index_t vectors = vectorised ? n / VEC : 0;
    for (index_t v = start; v < vectors; v += stride) {
        const index_t first = v * VEC;
        ACC x[VEC], y[VEC], p[VEC], l[VEC], g[VEC];
#if LOSSK_WEIGHT != OPTION_NONE
        ACC w[VEC];
#endif
        load_vec(input, first, x);
        load_vec(target, first, y);
#if LOSSK_WEIGHT == OPTION_FULL
        load_vec(weight, first, w);
#elif LOSSK_WEIGHT == OPTION_PERIODIC
        {
            index_t j = first % weight_period;
#pragma unroll
            for (int k = 0; k < VEC; ++k) {
                w[k] = weight[j];
                j = j + 1 == weight_period ? 0 : j + 1;
            }
        }
#endif
#if LOSSK_POS_WEIGHT == OPTION_FULL
        load_vec(pos_weight, first, p);
#elif LOSSK_POS_WEIGHT == OPTION_PERIODIC
        {
            index_t j = first % pos_weight_period;
#pragma unroll
            for (int k = 0; k < VEC; ++k) {
                p[k] = pos_weight[j];
                j = j + 1 == pos_weight_period ? 0 : j + 1;
            }
        }
#else
#pragma unroll
        for (int k = 0; k < VEC; ++k) p[k] = (ACC)1;
#endif
#if LOSSK_GRAD && LOSSK_GRAD_OUTPUT
        ACC upstream_values[VEC];
        load_vec(grad_output, first, upstream_values);
#endif
#pragma unroll
        for (int k = 0; k < VEC; ++k) {
            pointwise(x[k], y[k], p[k], param, l[k], g[k]);
#if LOSSK_WEIGHT != OPTION_NONE
            l[k] *= w[k];
            g[k] *= w[k];
#endif
#if LOSSK_GRAD && LOSSK_GRAD_OUTPUT
            g[k] *= scale * upstream_values[k];
#elif LOSSK_GRAD
            g[k] *= scale;
#endif
#if LOSSK_REDUCE
            thread_sum += l[k];
#endif
        }
#if LOSSK_GRAD
        store_vec(grad, first, g);
#endif
#if !LOSSK_REDUCE
        store_vec(loss_out, first, l);
#endif
    }

    // the scalar tail (and every element when some pointer is not 16-byte aligned)
    for (index_t i = vectors * VEC + start; i < n; i += stride) {
        const ACC x = (ACC)to_acc(input[i]), y = (ACC)to_acc(target[i]);
#if LOSSK_POS_WEIGHT == OPTION_FULL
        const ACC p = pos_weight[i];
#elif LOSSK_POS_WEIGHT == OPTION_PERIODIC
        const ACC p = option_at(pos_weight, pos_weight_period, i);
#else
        const ACC p = (ACC)1;
#endif
        ACC l, g;
        pointwise(x, y, p, param, l, g);
#if LOSSK_WEIGHT == OPTION_FULL
        const ACC w = weight[i];
#elif LOSSK_WEIGHT == OPTION_PERIODIC
        const ACC w = option_at(weight, weight_period, i);
#endif
#if LOSSK_WEIGHT != OPTION_NONE
        l *= w;
        g *= w;
#endif
#if LOSSK_GRAD
#if LOSSK_GRAD_OUTPUT
        g *= scale * (ACC)to_acc(grad_output[i]);
#else
        g *= scale;
#endif
        grad[i] = element<T>::from(g);
#endif
#if LOSSK_REDUCE
        thread_sum += l;
#else
        loss_out[i] = element<T>::from(l);
#endif
    }

#if LOSSK_REDUCE
    __shared__ ACC scratch[32];
    const ACC block_total = block_sum(thread_sum, scratch);
    if (threadIdx.x == 0) partials[blockIdx.x] = block_total;
#endif
}

// Stage one of a plain sum of an ACC array (the weights, for a weighted mean's divisor): one partial per block.
extern "C" __global__ void __launch_bounds__(ELEMENTWISE_THREADS)
lossk_sum_partials(const ACC* __restrict__ values, index_t n, ACC* __restrict__ partials) {
    ACC thread_sum = (ACC)0;
    for (index_t i = (index_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (index_t)gridDim.x * blockDim.x)
        thread_sum += values[i];
    __shared__ ACC scratch[32];
    const ACC block_total = block_sum(thread_sum, scratch);
    if (threadIdx.x == 0) partials[blockIdx.x] = block_total;
}

// Stage two: the loss in the input's dtype, sum(partials) * loss_scale [/ divisor[0]].
extern "C" __global__ void __launch_bounds__(FINISH_THREADS)
lossk_finish(const ACC* __restrict__ partials, index_t count, ACC loss_scale, const ACC* __restrict__ divisor,
             T* __restrict__ out) {
    finish_sum<T>(partials, count, 1, 1, loss_scale, (ACC)0, divisor, out);
}

// Stage two of lossk_sum_partials: the sum in ACC (a divisor, kept on the device).
extern "C" __global__ void __launch_bounds__(FINISH_THREADS)
lossk_finish_acc(const ACC* __restrict__ partials, index_t count, ACC* __restrict__ out) {
    finish_sum<ACC>(partials, count, 1, 1, (ACC)1, (ACC)0, 0, out);
}
