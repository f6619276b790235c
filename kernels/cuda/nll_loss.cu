// Negative log-likelihood and its gradient (lossk/_reference/classification.py, nll_loss):
//     loss_row = -w_y x_y (0 on ignored rows),    d loss / d x = -w_y onehot(y) * scale
// The loss reads one value per row; the gradient is a fill of zeros with one value per row, so it is a
// separate grid-stride kernel over all elements (16-byte vector stores). Launch order makes the in-place
// gradient safe: lossk_nll_rows reads x_y before lossk_nll_grad overwrites the input.
//
// Input (N, C, d1, ...): row r = (n, s) with s < S = d1 * ...; element (n, c, s) at n C S + c S + s.
// Macros: LOSSK_INPUT, LOSSK_INDEX, LOSSK_WEIGHT (class_targets.cuh), LOSSK_REDUCE (0: write the per-row
// loss, 1: per-block partial sums of [-w_y x_y, w_y]), LOSSK_GRAD_OUTPUT (1: one upstream gradient per row,
// in ACC so that it multiplies at full precision).

#include "class_targets.cuh"

#ifndef LOSSK_REDUCE
#define LOSSK_REDUCE 1
#endif
#ifndef LOSSK_GRAD_OUTPUT
#define LOSSK_GRAD_OUTPUT 0
#endif

// Per row: the loss, written (reduction='none') or summed per block together with w_y (the mean's divisor).
extern "C" __global__ void __launch_bounds__(CLASS_THREADS)
lossk_nll_rows(const T* input, const IDX* __restrict__ target, const ACC* __restrict__ class_weight, index_t rows,
               index_t classes, index_t inner, index_t ignore_index, T* __restrict__ loss_out,
               ACC* __restrict__ partials) {
#if LOSSK_REDUCE
    ACC loss_sum = (ACC)0, weight_sum = (ACC)0;
#endif
    for (index_t r = (index_t)blockIdx.x * blockDim.x + threadIdx.x; r < rows; r += (index_t)gridDim.x * blockDim.x) {
        const class_target t = read_class_target(target, r, classes, ignore_index, class_weight);
        const index_t n = r / inner, s = r - n * inner;
        const ACC loss = t.index >= 0 ? -t.weight * (ACC)to_acc(input[(n * classes + t.index) * inner + s]) : (ACC)0;
#if LOSSK_REDUCE
        loss_sum += loss;
        weight_sum += t.weight;
#else
        loss_out[r] = element<T>::from(loss);
#endif
    }
#if LOSSK_REDUCE
    __shared__ ACC scratch[32];
    loss_sum = block_sum(loss_sum, scratch);
    weight_sum = block_sum(weight_sum, scratch);
    if (threadIdx.x == 0) {
        partials[2 * blockIdx.x] = loss_sum;
        partials[2 * blockIdx.x + 1] = weight_sum;
    }
#endif
}

// Stage two for 'mean' and 'sum': loss = (sum of partial losses) * loss_scale [/ sum of w_y], and the
// divisor kept on the device (divisor[0] = sum of w_y) for the gradient kernel.
extern "C" __global__ void __launch_bounds__(FINISH_THREADS)
lossk_nll_finish(const ACC* __restrict__ partials, index_t count, ACC loss_scale, int divide, T* __restrict__ out,
                 ACC* __restrict__ divisor) {
    finish_sum<ACC>(partials + 1, count, 2, 1, (ACC)1, (ACC)0, 0, divisor);
    __syncthreads();
    finish_sum<T>(partials, count, 2, 1, loss_scale, (ACC)0, divide ? divisor : 0, out);
}

#define NLL_GRAD_THREADS 256

// The position (n, c, s) of element e, advanced one element at a time so that the divisions are paid once
// per vector rather than once per element.
struct nll_position {
    index_t n, c, s;
};

__device__ __forceinline__ nll_position position_of(index_t e, index_t classes, index_t inner) {
    nll_position p;
    const index_t row_block = e / inner;  // n * C + c
    p.s = e - row_block * inner;
    p.n = row_block / classes;
    p.c = row_block - p.n * classes;
    return p;
}

__device__ __forceinline__ void advance(nll_position& p, index_t classes, index_t inner) {
    if (++p.s == inner) {
        p.s = 0;
        if (++p.c == classes) {
            p.c = 0;
            ++p.n;
        }
    }
}

__device__ __forceinline__ ACC nll_grad_at(const nll_position& p, const IDX* target, const ACC* class_weight,
                                           index_t classes, index_t inner, index_t ignore_index, ACC scale,
                                           const ACC* grad_output) {
    const index_t r = p.n * inner + p.s;
    const class_target t = read_class_target(target, r, classes, ignore_index, class_weight);
    if (t.index != p.c) return (ACC)0;
#if LOSSK_GRAD_OUTPUT
    scale *= grad_output[r];
#endif
    return -t.weight * scale;
}

// The gradient, every element: -w_y * scale at (row, y), 0 elsewhere. scale = grad_scale [* upstream[0]]
// [/ divisor[0]]. VEC consecutive elements per step, stored as one 16-byte vector when aligned.
extern "C" __global__ void __launch_bounds__(NLL_GRAD_THREADS)
lossk_nll_grad(const IDX* __restrict__ target, const ACC* __restrict__ class_weight, const ACC* __restrict__ grad_output,
               T* grad, index_t elements, index_t classes, index_t inner, index_t ignore_index, int vectorised,
               ACC grad_scale, const ACC* __restrict__ upstream, const ACC* __restrict__ divisor) {
    ACC scale = grad_scale;
    if (upstream != 0) scale *= upstream[0];
    if (divisor != 0) scale /= divisor[0];
    const index_t stride = (index_t)gridDim.x * blockDim.x;
    const index_t start = (index_t)blockIdx.x * blockDim.x + threadIdx.x;
    const index_t vectors = vectorised ? elements / VEC : 0;
    for (index_t v = start; v < vectors; v += stride) {
        nll_position p = position_of(v * VEC, classes, inner);
        ACC g[VEC];
#pragma unroll
        for (int k = 0; k < VEC; ++k) {
            g[k] = nll_grad_at(p, target, class_weight, classes, inner, ignore_index, scale, grad_output);
            advance(p, classes, inner);
        }
        store_vec(grad, v * VEC, g);
    }
    for (index_t e = vectors * VEC + start; e < elements; e += stride) {
        const nll_position p = position_of(e, classes, inner);
        grad[e] = element<T>::from(nll_grad_at(p, target, class_weight, classes, inner, ignore_index, scale, grad_output));
    }
}
