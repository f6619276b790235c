// Fused loss, gradient and (optionally) second derivative of every elementwise loss, in one pass over memory.
//
// One grid-stride kernel serves every loss of the spec table (lossk/_losses): it reads input and target
// once (16-byte vector loads where every pointer is 16-byte aligned, a scalar loop for the tail and for
// unaligned arrays), evaluates the loss's device function of pointwise.cuh, writes the gradient (and the
// second derivative) once and either writes the unreduced loss (reduction='none') or one partial sum per
// block; `lossk_finish` then sums the partials in a fixed order. No floating-point atomics: the same input
// and launch configuration give bit-identical losses.
//
// Specialisation macros (besides LOSSK_INPUT / LOSSK_TARGET, see common.cuh), all set by
// lossk/_backends/cupy/specialisation.py from the loss's spec:
//   LOSSK_ELEMENT          the device function of pointwise.cuh (the spec's cuda_function)
//   LOSSK_ELEMENT_OPTIONS  its option arguments in the spec's order, each in parentheses and followed by
//                          LOSSK_COMMA (nvcc splits a -D value at commas): LOSSK_SCALAR(k) (the k-th scalar
//                          option), true / false (a flag), LOSSK_OPTION(k) (the k-th array option at this
//                          element) or a literal (an array option not given: its neutral value)
//   LOSSK_<CONSTANT>       every spec constant, cast to ACC
//   LOSSK_WEIGHT           0 none, 1 an array shaped like the input, 2 periodic: weight[i % weight_period]
//                          (a broadcast view whose leading axes have stride 0); weights are in ACC
//   LOSSK_OPTION0/1        the same three modes for the loss's array options (pos_weight), in ACC
//   LOSSK_GRAD             1: write the gradient
//   LOSSK_HESS             1: write the second derivative, weighted and scaled like the gradient
//   LOSSK_SURROGATE        1 (with LOSSK_HESS): the surrogate second derivative instead, d2 raised to the loss's
//                          floor before weighting (d2 < floor ? floor : d2, NaN kept; lossk._spec.surrogate_hessian)
//   LOSSK_HESSIAN_FLOOR    the element with its floor, pointwise.cuh's <loss>_hessian_floor (called instead of
//                          LOSSK_ELEMENT in the surrogate variant); not defined for a loss without a floor: 0
//   LOSSK_REDUCE           0: write the unreduced loss; 1: write one partial sum per block
//   LOSSK_GRAD_OUTPUT      0: the upstream gradient is a scalar (grad_scale, times *upstream if given);
//                          1: an ACC array shaped like the input (reduction='none')
// The derivatives are scaled by grad_scale [* upstream[0]] [/ divisor[0]]: divisor is a device scalar (the
// sum of the weights, for a weighted mean) so that no host synchronisation is needed.
// input and grad may be the same array (in-place gradient): every element is read before it is written,
// by the same thread, so they are not marked __restrict__.

#include "common.cuh"
#include "pointwise.cuh"

#ifndef LOSSK_ELEMENT
#error "LOSSK_ELEMENT (the loss's device function) must be defined"
#endif
#ifndef LOSSK_ELEMENT_OPTIONS
#define LOSSK_ELEMENT_OPTIONS
#endif
#ifndef LOSSK_WEIGHT
#define LOSSK_WEIGHT 0
#endif
#ifndef LOSSK_OPTION0
#define LOSSK_OPTION0 0
#endif
#ifndef LOSSK_OPTION1
#define LOSSK_OPTION1 0
#endif
#ifndef LOSSK_GRAD
#define LOSSK_GRAD 1
#endif
#ifndef LOSSK_HESS
#define LOSSK_HESS 0
#endif
#ifndef LOSSK_SURROGATE
#define LOSSK_SURROGATE 0
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

#define LOSSK_DERIVATIVES (LOSSK_GRAD || LOSSK_HESS)

#define ELEMENTWISE_THREADS 256

#define LOSSK_COMMA ,
#define LOSSK_SCALAR(k) scalar##k
#define LOSSK_OPTION(k) option_value##k

// The loss's device function with this call's options (loss, d1, d2 before weighting and scaling); d2 is the
// surrogate in the LOSSK_SURROGATE variant.
__device__ __forceinline__ void evaluate(ACC x, ACC y, ACC option_value0, ACC option_value1, ACC scalar0, ACC scalar1,
                                         ACC scalar2, ACC scalar3, ACC& loss, ACC& d1, ACC& d2) {
#if LOSSK_SURROGATE && defined(LOSSK_HESSIAN_FLOOR)
    ACC floor_value;
    LOSSK_HESSIAN_FLOOR(x, y, LOSSK_ELEMENT_OPTIONS loss, d1, d2, floor_value);
#else
    LOSSK_ELEMENT(x, y, LOSSK_ELEMENT_OPTIONS loss, d1, d2);
#if LOSSK_SURROGATE
    const ACC floor_value = (ACC)0;
#endif
#endif
#if LOSSK_SURROGATE
    d2 = d2 < floor_value ? floor_value : d2;
#endif
}

__device__ __forceinline__ ACC option_at(const ACC* values, index_t period, index_t i) {
    return values[i % period];
}

// VEC values of an option array from element `first` on, in `mode` (OPTION_NONE leaves `out` alone).
template <int MODE>
__device__ __forceinline__ void load_option(const ACC* values, index_t period, index_t first, ACC out[VEC]) {
    if (MODE == OPTION_FULL) {
        load_vec(values, first, out);
    } else if (MODE == OPTION_PERIODIC) {
        index_t j = first % period;
#pragma unroll
        for (int k = 0; k < VEC; ++k) {
            out[k] = values[j];
            j = j + 1 == period ? 0 : j + 1;
        }
    }
}

// The value at element i of an option array in `mode` (0 for OPTION_NONE: never read then).
template <int MODE>
__device__ __forceinline__ ACC option_value(const ACC* values, index_t period, index_t i) {
    if (MODE == OPTION_FULL) return values[i];
    if (MODE == OPTION_PERIODIC) return option_at(values, period, i);
    return (ACC)0;
}

extern "C" __global__ void __launch_bounds__(ELEMENTWISE_THREADS)
lossk_elementwise(const T* input, const TT* __restrict__ target, const ACC* __restrict__ weight,
                  index_t weight_period, const ACC* __restrict__ option0, index_t option0_period,
                  const ACC* __restrict__ option1, index_t option1_period, const ACC* __restrict__ grad_output,
                  T* grad, T* __restrict__ hess, T* __restrict__ loss_out, ACC* __restrict__ partials, index_t n,
                  int vectorised, ACC scalar0, ACC scalar1, ACC scalar2, ACC scalar3, ACC grad_scale,
                  const ACC* __restrict__ upstream, const ACC* __restrict__ divisor) {
#if LOSSK_DERIVATIVES
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
        ACC x[VEC], y[VEC], w[VEC], o0[VEC], o1[VEC], l[VEC], g[VEC], h[VEC];
        load_vec(input, first, x);
        load_vec(target, first, y);
        load_option<LOSSK_WEIGHT>(weight, weight_period, first, w);
        load_option<LOSSK_OPTION0>(option0, option0_period, first, o0);
        load_option<LOSSK_OPTION1>(option1, option1_period, first, o1);
#if LOSSK_DERIVATIVES && LOSSK_GRAD_OUTPUT
        ACC upstream_values[VEC];
        load_vec(grad_output, first, upstream_values);
#endif
#pragma unroll
        for (int k = 0; k < VEC; ++k) {
            evaluate(x[k], y[k], LOSSK_OPTION0 ? o0[k] : (ACC)0, LOSSK_OPTION1 ? o1[k] : (ACC)0, scalar0, scalar1,
                     scalar2, scalar3, l[k], g[k], h[k]);
#if LOSSK_WEIGHT != OPTION_NONE
            l[k] *= w[k];
            g[k] *= w[k];
            h[k] *= w[k];
#endif
#if LOSSK_DERIVATIVES && LOSSK_GRAD_OUTPUT
            const ACC factor = scale * upstream_values[k];
#elif LOSSK_DERIVATIVES
            const ACC factor = scale;
#endif
#if LOSSK_GRAD
            g[k] *= factor;
#endif
#if LOSSK_HESS
            h[k] *= factor;
#endif
#if LOSSK_REDUCE
            thread_sum += l[k];
#endif
        }
#if LOSSK_GRAD
        store_vec(grad, first, g);
#endif
#if LOSSK_HESS
        store_vec(hess, first, h);
#endif
#if !LOSSK_REDUCE
        store_vec(loss_out, first, l);
#endif
    }

    // the scalar tail (and every element when some pointer is not 16-byte aligned)
    for (index_t i = vectors * VEC + start; i < n; i += stride) {
        const ACC x = (ACC)to_acc(input[i]), y = (ACC)to_acc(target[i]);
        ACC l, g, h;
        evaluate(x, y, option_value<LOSSK_OPTION0>(option0, option0_period, i),
                 option_value<LOSSK_OPTION1>(option1, option1_period, i), scalar0, scalar1, scalar2, scalar3, l, g, h);
#if LOSSK_WEIGHT != OPTION_NONE
        const ACC w = option_value<LOSSK_WEIGHT>(weight, weight_period, i);
        l *= w;
        g *= w;
        h *= w;
#endif
#if LOSSK_DERIVATIVES && LOSSK_GRAD_OUTPUT
        const ACC factor = scale * grad_output[i];
#elif LOSSK_DERIVATIVES
        const ACC factor = scale;
#endif
#if LOSSK_GRAD
        grad[i] = element<T>::from(g * factor);
#endif
#if LOSSK_HESS
        hess[i] = element<T>::from(h * factor);
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
