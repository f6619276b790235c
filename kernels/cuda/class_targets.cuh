// Class-index targets, shared by cross_entropy.cu and nll_loss.cu: the index type, what a row's target
// means (its class, its weight w_y, whether it counts), and the divisor of PyTorch's weighted mean.
//
//   LOSSK_INDEX    the target's integer type: 0 int64, 1 int32, 2 int16, 3 int8, 4 uint8
//   LOSSK_WEIGHT   1: per-class weights (C values in ACC)
//
// A row whose target equals ignore_index contributes nothing and is left out of the mean. An index outside
// [0, C) - which lossk does not check on a GPU, since that would cost a synchronisation - selects no class
// (a zero one-hot row, as the reference's comparison gives); its weight is 1 without class weights and 0
// with them (there is no weight to read).

#pragma once

#include "common.cuh"

#ifndef LOSSK_INDEX
#define LOSSK_INDEX 0
#endif
#ifndef LOSSK_WEIGHT
#define LOSSK_WEIGHT 0
#endif

#if LOSSK_INDEX == 0
typedef long long IDX;
#elif LOSSK_INDEX == 1
typedef int IDX;
#elif LOSSK_INDEX == 2
typedef short IDX;
#elif LOSSK_INDEX == 3
typedef signed char IDX;
#elif LOSSK_INDEX == 4
typedef unsigned char IDX;
#else
#error "unknown LOSSK_INDEX"
#endif

struct class_target {
    index_t index;  // the target class, or -1 when the row is ignored or the index is out of range
    ACC weight;     // w_y (0 on ignored rows): the row's share of the weighted mean's divisor
    bool kept;      // target != ignore_index
};

__device__ __forceinline__ class_target read_class_target(const IDX* target, index_t row, index_t classes,
                                                          index_t ignore_index, const ACC* class_weight) {
    class_target t;
    const index_t y = (index_t)target[row];
    t.kept = y != ignore_index;
    const bool in_range = t.kept && y >= 0 && y < classes;
    t.index = in_range ? y : (index_t)-1;
#if LOSSK_WEIGHT
    t.weight = in_range ? class_weight[y] : (ACC)0;
#else
    t.weight = t.kept ? (ACC)1 : (ACC)0;
#endif
    return t;
}

#define CLASS_THREADS 256

// Stage one of the divisors of a mean over class-index targets: per block, (sum of w_y, rows kept).
extern "C" __global__ void __launch_bounds__(CLASS_THREADS)
lossk_class_divisor_partials(const IDX* __restrict__ target, const ACC* __restrict__ class_weight, index_t rows,
                             index_t classes, index_t ignore_index, ACC* __restrict__ partials) {
    ACC weight_sum = (ACC)0, kept = (ACC)0;
    for (index_t r = (index_t)blockIdx.x * blockDim.x + threadIdx.x; r < rows; r += (index_t)gridDim.x * blockDim.x) {
        const class_target t = read_class_target(target, r, classes, ignore_index, class_weight);
        weight_sum += t.weight;
        kept += t.kept ? (ACC)1 : (ACC)0;
    }
    __shared__ ACC scratch[32];
    weight_sum = block_sum(weight_sum, scratch);
    kept = block_sum(kept, scratch);
    if (threadIdx.x == 0) {
        partials[2 * blockIdx.x] = weight_sum;
        partials[2 * blockIdx.x + 1] = kept;
    }
}

// Stage two: divisors[0] = sum of w_y, divisors[1] = rows kept, summed in a fixed order.
extern "C" __global__ void __launch_bounds__(FINISH_THREADS)
lossk_class_divisor_finish(const ACC* __restrict__ partials, index_t count, ACC* __restrict__ divisors) {
    finish_sum<ACC>(partials, count, 2, 1, (ACC)1, (ACC)0, 0, divisors);
    finish_sum<ACC>(partials + 1, count, 2, 1, (ACC)1, (ACC)0, 0, divisors + 1);
}
