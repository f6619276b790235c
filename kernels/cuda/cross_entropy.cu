// Fused cross-entropy and its gradient: one pass computes each row's log-sum-exp with an online max/sum,
// a second writes the gradient (out of place, into out=, or over the logits themselves).
//
// With per-class coefficients q and s = sum_c q_c (lossk/_reference/classification.py, the specification):
//     loss_row = -sum_c q_c log softmax(z)_c = s lse - sum_c q_c z_c,    d loss / d z = s softmax(z) - q
// class index y:          q = (1 - eps) w_y onehot(y) + (eps / C) w     (0 on ignored rows)
// class probabilities t:  q = w ((1 - eps) t + eps / C)
// softcap c > 0:          z <- c tanh(z / c) first; the gradient is multiplied by 1 - (z / c)^2
// z_loss:                 + z_loss lse^2 per row not ignored; gradient + 2 z_loss lse softmax(z)
// Hessian diagonal (LOSSK_HESS), p = softmax(z), from the same exponential as the gradient:
//     h_c = (s ce_scale + 2 z_loss lse z_scale) p_c (1 - p_c) + 2 z_loss z_scale p_c^2
// and with a softcap, u = tanh(raw / c), g the gradient with respect to the capped logit:
//     h_raw = h (1 - u^2)^2 - g 2 u (1 - u^2) / c          (0 on ignored rows)
// 'mean' divides the cross-entropy part by sum w_y over kept rows (the row count for probabilities) and
// the z part by the number of kept rows. Those divisors come from lossk_class_divisor_* (class_targets.cuh)
// as device scalars, so that nothing waits for the host. Sums over a row are taken relative to the row's
// first logit (ref) to keep s lse - sum q z free of cancellation when logits are large.
//
// Three layouts (LOSSK_LAYOUT), chosen by the host from the shape:
//   0 rows, streamed: one block per row (class axis last, C large; or few rows of (N, C, d1, ...) with
//     large C, read with stride S, no vectors); pass two re-reads the row (from L2 when it is still there).
//   1 rows in shared memory: a row is split across a thread-block cluster of LOSSK_CLUSTER blocks (sm_90
//     distributed shared memory; LOSSK_CLUSTER = 1 is a plain block) and each block keeps its chunk in
//     shared memory, so the logits are read from HBM exactly once. Class-index targets only.
//   2 one thread per row: input (N, C, d1, ...) whose class axis has stride S = d1 * ... > 1 (adjacent
//     threads read adjacent positions, coalesced), and short rows (small C) of any layout.
// Other macros: LOSSK_INPUT (logits dtype), LOSSK_TARGET_KIND (0 class indices, LOSSK_INDEX their type;
// 1 probabilities, LOSSK_TARGET their dtype), LOSSK_WEIGHT, LOSSK_SMOOTHING, LOSSK_SOFTCAP, LOSSK_Z_LOSS,
// LOSSK_GRAD, LOSSK_REDUCE (0: write the per-row loss; 1: per-worker partial sums of [ce, z]),
// LOSSK_GRAD_OUTPUT (1: one upstream gradient per row, in ACC so that it multiplies at full precision),
// LOSSK_HESS (1: also write the Hessian's diagonal into hess, scaled like the gradient; needs LOSSK_GRAD),
// LOSSK_RETURN_Z (1: also write the z term alone,
// per row into z_out for reduction='none', reduced into z_out by the finish kernel), LOSSK_THREADS (block size,
// 32 to 1024). Every block is compiled to fit at least 1024 / LOSSK_THREADS times on an SM (at most 64
// registers per thread), so that at least two blocks, or 1024 threads, overlap one another's barriers.

#include "class_targets.cuh"

#ifndef LOSSK_LAYOUT
#define LOSSK_LAYOUT 0
#endif
#ifndef LOSSK_CLUSTER
#define LOSSK_CLUSTER 1
#endif
#ifndef LOSSK_TARGET_KIND
#define LOSSK_TARGET_KIND 0
#endif
#ifndef LOSSK_SMOOTHING
#define LOSSK_SMOOTHING 0
#endif
#ifndef LOSSK_SOFTCAP
#define LOSSK_SOFTCAP 0
#endif
#ifndef LOSSK_Z_LOSS
#define LOSSK_Z_LOSS 0
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
#ifndef LOSSK_RETURN_Z
#define LOSSK_RETURN_Z 0
#endif
#ifndef LOSSK_HESS
#define LOSSK_HESS 0
#endif
#ifndef LOSSK_THREADS
#define LOSSK_THREADS 256
#endif
#define MIN_BLOCKS (LOSSK_THREADS >= 1024 ? 1 : 1024 / LOSSK_THREADS)
#if LOSSK_RETURN_Z && !LOSSK_Z_LOSS
#error "LOSSK_RETURN_Z needs LOSSK_Z_LOSS"
#endif
#if LOSSK_HESS && !LOSSK_GRAD
#error "LOSSK_HESS needs LOSSK_GRAD"
#endif

#define LAYOUT_ROWS_STREAMED 0
#define LAYOUT_ROWS_SHARED 1
#define LAYOUT_THREAD_PER_ROW 2
#define TARGET_INDEX 0
#define TARGET_PROBABILITY 1

#if LOSSK_LAYOUT == LAYOUT_ROWS_SHARED && LOSSK_TARGET_KIND != TARGET_INDEX
#error "the shared-memory layout takes class-index targets only"
#endif
#if LOSSK_CLUSTER != 1 && LOSSK_LAYOUT != LAYOUT_ROWS_SHARED
#error "LOSSK_CLUSTER > 1 needs LOSSK_LAYOUT 1"
#endif
#if LOSSK_CLUSTER != 1 && LOSSK_CLUSTER != 2 && LOSSK_CLUSTER != 4 && LOSSK_CLUSTER != 8
#error "LOSSK_CLUSTER must be 1, 2, 4 or 8 (portable cluster sizes)"
#endif

// ---- everything a row needs, read once -------------------------------------------------------------
struct row_options {
    index_t classes;
    ACC smoothing;  // eps
    ACC softcap;    // c (used when LOSSK_SOFTCAP)
    const ACC* class_weight;
#if LOSSK_TARGET_KIND == TARGET_PROBABILITY
    const TT* probabilities;
#endif
};

// Softcap, applied to every logit before anything else.
__device__ __forceinline__ ACC capped(ACC z, ACC cap) {
#if LOSSK_SOFTCAP
    return cap * acc_tanh(z / cap);
#else
    return z;
#endif
}

// The value the row's sums are taken relative to: its first (capped) logit, or 0 when that is +-inf or NaN
// (a masked first class must not turn every relative sum into inf - inf).
__device__ __forceinline__ ACC reference_logit(ACC first) {
    return first - first == (ACC)0 ? first : (ACC)0;
}

__device__ __forceinline__ ACC class_weight_at(const ACC* class_weight, index_t c) {
#if LOSSK_WEIGHT
    return class_weight[c];
#else
    return (ACC)1;
#endif
}

// ---- online statistics of a row: max, sum of exp relative to it, and two plain sums ---------------------
// a, b: smoothing with class indices: sum w_c (z_c - ref), sum w_c;  probabilities: sum q_c (z_c - ref), sum q_c.
struct row_stats {
    ACC max, sum_exp, a, b;
};

__device__ __forceinline__ row_stats empty_stats() {
    row_stats s;
    s.max = negative_infinity<ACC>();
    s.sum_exp = (ACC)0;
    s.a = (ACC)0;
    s.b = (ACC)0;
    return s;
}

// Adds one (capped) logit z of class c. -inf logits (masked classes) add nothing and never make NaN; a NaN
// logit makes the row NaN, as in PyTorch.
__device__ __forceinline__ void add_logit(row_stats& s, ACC z, ACC ref, index_t c, const row_options& o,
                                          index_t element_offset) {
    if (z > s.max) {
        s.sum_exp = s.sum_exp * acc_exp(s.max - z) + (ACC)1;
        s.max = z;
    } else if (z != negative_infinity<ACC>()) {
        s.sum_exp += acc_exp(z - s.max);
    }
#if LOSSK_TARGET_KIND == TARGET_PROBABILITY
    const ACC t = (ACC)to_acc(o.probabilities[element_offset]);
    const ACC q = class_weight_at(o.class_weight, c) * (((ACC)1 - o.smoothing) * t + o.smoothing / (ACC)o.classes);
    s.a += q * (z - ref);
    s.b += q;
#elif LOSSK_SMOOTHING
    const ACC w = class_weight_at(o.class_weight, c);
    s.a += w * (z - ref);
    s.b += w;
#endif
}

__device__ __forceinline__ ACC scaled_sum_exp(ACC max, ACC sum_exp, ACC new_max) {
    return max == negative_infinity<ACC>() ? (ACC)0 : sum_exp * acc_exp(max - new_max);
}

__device__ __forceinline__ row_stats merge(const row_stats& x, const row_stats& y) {
    row_stats r;
    r.max = acc_max(x.max, y.max);
    r.sum_exp = scaled_sum_exp(x.max, x.sum_exp, r.max) + scaled_sum_exp(y.max, y.sum_exp, r.max);
    if (x.max != x.max || y.max != y.max) r.max = x.max + y.max;  // keep a NaN maximum NaN
    r.a = x.a + y.a;
    r.b = x.b + y.b;
    return r;
}

__device__ __forceinline__ row_stats shuffle_down(const row_stats& s, int offset) {
    row_stats r;
    r.max = __shfl_down_sync(0xffffffffu, s.max, offset);
    r.sum_exp = __shfl_down_sync(0xffffffffu, s.sum_exp, offset);
    r.a = __shfl_down_sync(0xffffffffu, s.a, offset);
    r.b = __shfl_down_sync(0xffffffffu, s.b, offset);
    return r;
}

// Merges the statistics of every thread of the block in a fixed order; the result is in every thread.
__device__ __forceinline__ row_stats block_merge(row_stats s, row_stats* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) s = merge(s, shuffle_down(s, offset));
    if (lane == 0) scratch[warp] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        row_stats total = scratch[0];
        for (int w = 1; w < (int)(blockDim.x >> 5); ++w) total = merge(total, scratch[w]);
        scratch[32] = total;
    }
    __syncthreads();
    const row_stats total = scratch[32];
    __syncthreads();  // scratch may be reused
    return total;
}

// ---- what a row's statistics give: its loss and the factors of its gradient -------------------------
struct row_result {
    ACC ce, z;              // the row's cross-entropy and z-loss terms (unscaled)
    ACC lse;                // log-sum-exp of the capped logits
    ACC grad_sum_q;         // s * ce scale, multiplies softmax
    ACC grad_target;        // (1 - eps) w_y * ce scale, subtracted at the target class
    ACC grad_smooth;        // (eps / C) * ce scale, times w_c, subtracted everywhere (class indices)
    ACC grad_q;             // ce scale (probabilities: q_c times it is subtracted)
    ACC grad_z;             // 2 z_loss lse * z scale, multiplies softmax
    ACC hess_z;             // 2 z_loss * z scale, multiplies softmax^2 in the Hessian
    index_t target;
    bool active;            // false: ignored row, gradient 0
};

// ce_scale, z_scale: the upstream gradient of the row divided by the mean's divisors.
__device__ __forceinline__ row_result finish_row(const row_stats& s, ACC ref, ACC target_logit, const class_target& t,
                                                 const row_options& o, ACC z_loss, ACC ce_scale, ACC z_scale) {
    row_result r;
    const ACC lse_rel = (s.max - ref) + acc_log(s.sum_exp);
    r.lse = ref + lse_rel;
    r.target = t.index;
    r.active = t.kept;
#if LOSSK_TARGET_KIND == TARGET_INDEX
    const ACC hit = t.index >= 0 ? ((ACC)1 - o.smoothing) * t.weight : (ACC)0;
    r.ce = t.index >= 0 ? hit * (lse_rel - (target_logit - ref)) : (ACC)0;
    ACC sum_q = hit;
#if LOSSK_SMOOTHING
    const ACC smooth = t.kept ? o.smoothing / (ACC)o.classes : (ACC)0;
    r.ce += smooth * (s.b * lse_rel - s.a);
    sum_q += smooth * s.b;
    r.grad_smooth = smooth * ce_scale;
#else
    r.grad_smooth = (ACC)0;
#endif
    r.grad_target = hit * ce_scale;
    r.grad_q = (ACC)0;
#else
    r.ce = s.b * lse_rel - s.a;
    const ACC sum_q = s.b;
    r.grad_target = (ACC)0;
    r.grad_smooth = (ACC)0;
    r.grad_q = ce_scale;
#endif
    r.grad_sum_q = sum_q * ce_scale;
#if LOSSK_Z_LOSS
    r.z = t.kept ? z_loss * r.lse * r.lse : (ACC)0;
    r.grad_z = t.kept ? (ACC)2 * z_loss * r.lse * z_scale : (ACC)0;
    r.hess_z = t.kept ? (ACC)2 * z_loss * z_scale : (ACC)0;
#else
    r.z = (ACC)0;
    r.grad_z = (ACC)0;
    r.hess_z = (ACC)0;
#endif
    if (!t.kept) {
        r.ce = (ACC)0;
        r.grad_sum_q = (ACC)0;
        r.grad_target = (ACC)0;
        r.grad_smooth = (ACC)0;
    }
    return r;
}

// The gradient of one logit (raw, before the softcap) of class c and, with LOSSK_HESS, the Hessian's diagonal
// entry in *hess_value (from the same softmax value).
__device__ __forceinline__ ACC logit_grad(ACC raw, index_t c, const row_result& r, const row_options& o,
                                          index_t element_offset, ACC* hess_value) {
    if (!r.active) {
#if LOSSK_HESS
        *hess_value = (ACC)0;
#endif
        return (ACC)0;
    }
    const ACC z = capped(raw, o.softcap);
    const ACC p = acc_exp(z - r.lse);
    const ACC softmax_coefficient = r.grad_sum_q + r.grad_z;
    ACC g = softmax_coefficient * p;
#if LOSSK_TARGET_KIND == TARGET_INDEX
    if (c == r.target) g -= r.grad_target;
#if LOSSK_SMOOTHING
    g -= r.grad_smooth * class_weight_at(o.class_weight, c);
#endif
#else
    const ACC t = (ACC)to_acc(o.probabilities[element_offset]);
    g -= r.grad_q * class_weight_at(o.class_weight, c) * (((ACC)1 - o.smoothing) * t + o.smoothing / (ACC)o.classes);
#endif
#if LOSSK_HESS
    ACC h = softmax_coefficient * p * ((ACC)1 - p);
#if LOSSK_Z_LOSS
    h += r.hess_z * p * p;
#endif
#endif
#if LOSSK_SOFTCAP
    const ACC u = z / o.softcap;
    const ACC bend = (ACC)1 - u * u;
#if LOSSK_HESS
    h = h * bend * bend - g * (ACC)2 * u * bend / o.softcap;
#endif
    g *= bend;
#endif
#if LOSSK_HESS
    *hess_value = h;
#endif
    return g;
}

// Per-row scales: ce_scale = host * upstream / divisors[0], z_scale = host * upstream / divisors[1].
struct row_scales {
    ACC ce, z;
};

__device__ __forceinline__ row_scales base_scales(ACC ce_scale, ACC z_scale, const ACC* upstream, const ACC* divisors) {
    row_scales s;
    s.ce = ce_scale;
    s.z = z_scale;
    if (upstream != 0) {
        s.ce *= upstream[0];
        s.z *= upstream[0];
    }
    if (divisors != 0) {
        s.ce /= divisors[0];
        s.z /= divisors[1];
    }
    return s;
}

__device__ __forceinline__ row_scales row_scale(row_scales base, const ACC* grad_output, index_t row) {
#if LOSSK_GRAD_OUTPUT
    const ACC g = grad_output[row];
    base.ce *= g;
    base.z *= g;
#endif
    return base;
}

__device__ __forceinline__ class_target row_target(const IDX* target_index, index_t row, const row_options& o,
                                                   index_t ignore_index) {
#if LOSSK_TARGET_KIND == TARGET_INDEX
    return read_class_target(target_index, row, o.classes, ignore_index, o.class_weight);
#else
    class_target t;
    t.index = -1;
    t.weight = (ACC)1;
    t.kept = true;
    return t;
#endif
}

// The row's loss: written (reduction='none') or added to the worker's running [ce, z] sums.
__device__ __forceinline__ void emit_loss(const row_result& r, index_t row, T* loss_out, T* z_out, ACC& sum_ce,
                                          ACC& sum_z) {
#if LOSSK_REDUCE
    sum_ce += r.ce;
    sum_z += r.z;
#else
    loss_out[row] = element<T>::from(r.ce + r.z);
#if LOSSK_RETURN_Z
    z_out[row] = element<T>::from(r.z);
#endif
#endif
}

// An ignored row's loss (and z term) under reduction='none': 0.
__device__ __forceinline__ void emit_ignored(index_t row, T* loss_out, T* z_out) {
#if !LOSSK_REDUCE
    loss_out[row] = element<T>::from((ACC)0);
#if LOSSK_RETURN_Z
    z_out[row] = element<T>::from((ACC)0);
#endif
#endif
}

__device__ __forceinline__ void emit_partials(ACC* partials, index_t worker, ACC sum_ce, ACC sum_z) {
#if LOSSK_REDUCE
#if LOSSK_Z_LOSS
    partials[2 * worker] = sum_ce;
    partials[2 * worker + 1] = sum_z;
#else
    partials[worker] = sum_ce;
#endif
#endif
}

#define KERNEL_ARGS                                                                                           \
    const T *logits, const IDX *__restrict__ target_index, const TT *__restrict__ target_probability,          \
        const ACC *__restrict__ class_weight, const ACC *__restrict__ grad_output, T *grad, T *__restrict__ loss_out, \
        T *__restrict__ z_out, ACC *__restrict__ partials, index_t rows, index_t classes, index_t inner, int vectorised,              \
        index_t ignore_index, ACC smoothing, ACC softcap, ACC z_loss, ACC ce_scale, ACC z_scale,             \
        const ACC *__restrict__ upstream, const ACC *__restrict__ divisors, T *__restrict__ hess

__device__ __forceinline__ row_options make_options(index_t classes, ACC smoothing, ACC softcap,
                                                    const ACC* class_weight, const TT* target_probability) {
    row_options o;
    o.classes = classes;
    o.smoothing = smoothing;
    o.softcap = softcap;
    o.class_weight = class_weight;
#if LOSSK_TARGET_KIND == TARGET_PROBABILITY
    o.probabilities = target_probability;
#endif
    return o;
}

#if LOSSK_LAYOUT == LAYOUT_THREAD_PER_ROW
// ---- one thread per row: row r = (n, s) holds logits[n C S + c S + s], c < C ------------------------------
extern "C" __global__ void __launch_bounds__(LOSSK_THREADS, MIN_BLOCKS) lossk_cross_entropy(KERNEL_ARGS) {
    const row_options o = make_options(classes, smoothing, softcap, class_weight, target_probability);
    const row_scales base = base_scales(ce_scale, z_scale, upstream, divisors);
    ACC sum_ce = (ACC)0, sum_z = (ACC)0;
    for (index_t row = (index_t)blockIdx.x * blockDim.x + threadIdx.x; row < rows;
         row += (index_t)gridDim.x * blockDim.x) {
        const index_t n = row / inner, s = row - n * inner;
        const index_t start = n * classes * inner + s;
        const class_target t = row_target(target_index, row, o, ignore_index);
        if (!t.kept) {
#if LOSSK_GRAD
            for (index_t c = 0; c < classes; ++c) grad[start + c * inner] = element<T>::from((ACC)0);
#endif
#if LOSSK_HESS
            for (index_t c = 0; c < classes; ++c) hess[start + c * inner] = element<T>::from((ACC)0);
#endif
            emit_ignored(row, loss_out, z_out);
            continue;
        }
        const ACC ref = reference_logit(capped((ACC)to_acc(logits[start]), softcap));
        const ACC target_logit = t.index >= 0 ? capped((ACC)to_acc(logits[start + t.index * inner]), softcap) : (ACC)0;
        row_stats stats = empty_stats();
        for (index_t c = 0; c < classes; ++c)
            add_logit(stats, capped((ACC)to_acc(logits[start + c * inner]), softcap), ref, c, o, start + c * inner);
        const row_scales sc = row_scale(base, grad_output, row);
        const row_result r = finish_row(stats, ref, target_logit, t, o, z_loss, sc.ce, sc.z);
        emit_loss(r, row, loss_out, z_out, sum_ce, sum_z);
#if LOSSK_GRAD
        for (index_t c = 0; c < classes; ++c) {
            const index_t e = start + c * inner;
            ACC h;
            grad[e] = element<T>::from(logit_grad((ACC)to_acc(logits[e]), c, r, o, e, &h));
#if LOSSK_HESS
            hess[e] = element<T>::from(h);
#endif
        }
#endif
    }
#if LOSSK_REDUCE
    __shared__ ACC scratch[32];
    sum_ce = block_sum(sum_ce, scratch);
#if LOSSK_Z_LOSS
    sum_z = block_sum(sum_z, scratch);
#endif
    if (threadIdx.x == 0) emit_partials(partials, blockIdx.x, sum_ce, sum_z);
#endif
}

#else
// ---- rows: a block (or a cluster of blocks) per contiguous row -----------------------------------------

#if LOSSK_LAYOUT == LAYOUT_ROWS_SHARED && LOSSK_CLUSTER > 1
// Distributed shared memory through PTX (no cooperative_groups header, which NVRTC may not find).
__device__ __forceinline__ unsigned int cluster_rank() {
    unsigned int r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
    return r;
}
__device__ __forceinline__ void cluster_sync() {
    asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
}
// Reads a value of type ACC at `local` (a shared-memory address of this block) in block `rank` of the cluster.
__device__ __forceinline__ ACC load_remote(const ACC* local, unsigned int rank) {
    const unsigned int address = (unsigned int)__cvta_generic_to_shared(local);
    unsigned int remote;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(address), "r"(rank));
    ACC value;
    if (sizeof(ACC) == 4) {
        float f;
        asm volatile("ld.shared::cluster.f32 %0, [%1];" : "=f"(f) : "r"(remote) : "memory");
        value = (ACC)f;
    } else {
        double d;
        asm volatile("ld.shared::cluster.f64 %0, [%1];" : "=d"(d) : "r"(remote) : "memory");
        value = (ACC)d;
    }
    return value;
}
#define CLUSTER_ATTRIBUTE __cluster_dims__(LOSSK_CLUSTER, 1, 1)
#else
#define CLUSTER_ATTRIBUTE
#endif

extern "C" __global__ void __launch_bounds__(LOSSK_THREADS, MIN_BLOCKS) CLUSTER_ATTRIBUTE lossk_cross_entropy(KERNEL_ARGS) {
    __shared__ row_stats scratch[33];
#if LOSSK_LAYOUT == LAYOUT_ROWS_SHARED && LOSSK_CLUSTER > 1
    __shared__ ACC cluster_slot[4];  // this block's statistics, read by the other blocks of the cluster
    __shared__ ACC cluster_total[4];
#endif
#if LOSSK_LAYOUT == LAYOUT_ROWS_SHARED
    extern __shared__ uint4 chunk_storage[];
    T* chunk_values = reinterpret_cast<T*>(chunk_storage);
#endif
#if LOSSK_LAYOUT == LAYOUT_ROWS_SHARED && LOSSK_CLUSTER > 1
    const unsigned int rank = cluster_rank();
#else
    const unsigned int rank = 0;
#endif
    const index_t worker = blockIdx.x / LOSSK_CLUSTER, workers = gridDim.x / LOSSK_CLUSTER;
    // classes per block of the cluster, a multiple of VEC (launch.shared_chunk_elements)
    const index_t chunk = ((classes + LOSSK_CLUSTER - 1) / LOSSK_CLUSTER + VEC - 1) / VEC * VEC;

    const row_options o = make_options(classes, smoothing, softcap, class_weight, target_probability);
    const row_scales base = base_scales(ce_scale, z_scale, upstream, divisors);
    ACC sum_ce = (ACC)0, sum_z = (ACC)0;

    for (index_t row = worker; row < rows; row += workers) {
        // row r = (n, s): class c at start + c S (S = inner; 1 for contiguous rows, the only ones with vectors)
        const index_t n = row / inner, start = n * classes * inner + (row - n * inner);
        // The row's head: the classes before its first 16-byte boundary, read one at a time (a row length
        // that is not a multiple of 16 bytes, such as GPT-2's 50257, moves that boundary from row to row).
        // The host sets `vectorised` only when the gradient (and Hessian) has the logits' offset from 16
        // bytes, so the same classes are aligned in each. The aligned rest [head, C) is split into chunks of `chunk`:
        // block r of the cluster takes [lo, hi) = [head + r chunk, head + (r + 1) chunk) clipped to C, and
        // block 0 also the head. Its vectors start at vector_begin, aligned; scalars cover [lo, vector_begin)
        // and [vector_end, hi). In layout 1, class c sits at chunk_values[c - origin], origin VEC before
        // vector_begin when there is a head, so shared-memory vectors are aligned too (chunk + VEC values).
        const index_t misalignment = (index_t)((reinterpret_cast<unsigned long long>(logits + start) & 15ull) / sizeof(T));
        index_t head = vectorised && misalignment != 0 ? (index_t)VEC - misalignment : 0;
        head = head < classes ? head : classes;
        index_t lo = rank == 0 ? 0 : head + (index_t)rank * chunk;
        lo = lo < classes ? lo : classes;
        index_t hi = rank == LOSSK_CLUSTER - 1 ? classes : head + ((index_t)rank + 1) * chunk;
        hi = hi < classes ? hi : classes;
        const index_t vector_begin = rank == 0 ? head : lo;
        const index_t vector_end = vectorised ? vector_begin + (hi - vector_begin) / VEC * VEC : vector_begin;
        const index_t head_count = vector_begin - lo, scalar_count = head_count + (hi - vector_end);
#if LOSSK_LAYOUT == LAYOUT_ROWS_SHARED
        const index_t origin = head_count > 0 ? vector_begin - (index_t)VEC : vector_begin;
#endif
        const class_target t = row_target(target_index, row, o, ignore_index);
        // an ignored row: the gradient is zero and nothing needs reading (uniform over the cluster)
        if (!t.kept) {
#if LOSSK_GRAD
            for (index_t c = lo + threadIdx.x; c < hi; c += blockDim.x) grad[start + c * inner] = element<T>::from((ACC)0);
#endif
#if LOSSK_HESS
            for (index_t c = lo + threadIdx.x; c < hi; c += blockDim.x) hess[start + c * inner] = element<T>::from((ACC)0);
#endif
            if (rank == 0 && threadIdx.x == 0) emit_ignored(row, loss_out, z_out);
            continue;
        }
        // read before any block of the cluster can overwrite them (in-place gradient)
        const ACC ref = reference_logit(capped((ACC)to_acc(logits[start]), softcap));
        const ACC target_logit = t.index >= 0 ? capped((ACC)to_acc(logits[start + t.index * inner]), softcap) : (ACC)0;

        // pass one: statistics (and, in layout 1, the chunk into shared memory)
        row_stats stats = empty_stats();
        for (index_t c = vector_begin + (index_t)threadIdx.x * VEC; c < vector_end; c += (index_t)blockDim.x * VEC) {
            const typename vector_of<T>::chunk raw = *reinterpret_cast<const typename vector_of<T>::chunk*>(logits + start + c);
            typename vector_of<T>::storage v;
            v.raw[0] = raw;
#if LOSSK_LAYOUT == LAYOUT_ROWS_SHARED
            *reinterpret_cast<typename vector_of<T>::chunk*>(chunk_values + (c - origin)) = raw;
#endif
#pragma unroll
            for (int k = 0; k < VEC; ++k)
                add_logit(stats, capped((ACC)to_acc(v.values[k]), softcap), ref, c + k, o, start + c + k);
        }
        for (index_t i = threadIdx.x; i < scalar_count; i += blockDim.x) {  // the head, then the tail
            const index_t c = i < head_count ? lo + i : vector_end + (i - head_count);
            const T raw = logits[start + c * inner];
#if LOSSK_LAYOUT == LAYOUT_ROWS_SHARED
            chunk_values[c - origin] = raw;
#endif
            add_logit(stats, capped((ACC)to_acc(raw), softcap), ref, c, o, start + c * inner);
        }
        stats = block_merge(stats, scratch);

#if LOSSK_LAYOUT == LAYOUT_ROWS_SHARED && LOSSK_CLUSTER > 1
        if (threadIdx.x == 0) {
            cluster_slot[0] = stats.max;
            cluster_slot[1] = stats.sum_exp;
            cluster_slot[2] = stats.a;
            cluster_slot[3] = stats.b;
        }
        cluster_sync();  // every block's statistics are visible
        if (threadIdx.x == 0) {
            row_stats total = empty_stats();
            for (unsigned int b = 0; b < LOSSK_CLUSTER; ++b) {  // fixed order: identical in every block
                row_stats part;
                part.max = load_remote(&cluster_slot[0], b);
                part.sum_exp = load_remote(&cluster_slot[1], b);
                part.a = load_remote(&cluster_slot[2], b);
                part.b = load_remote(&cluster_slot[3], b);
                total = b == 0 ? part : merge(total, part);
            }
            cluster_total[0] = total.max;
            cluster_total[1] = total.sum_exp;
            cluster_total[2] = total.a;
            cluster_total[3] = total.b;
        }
        cluster_sync();  // every block has read every slot: the slots may be rewritten for the next row
        stats.max = cluster_total[0];
        stats.sum_exp = cluster_total[1];
        stats.a = cluster_total[2];
        stats.b = cluster_total[3];
#endif
        const row_scales sc = row_scale(base, grad_output, row);
        const row_result r = finish_row(stats, ref, target_logit, t, o, z_loss, sc.ce, sc.z);
        if (rank == 0 && threadIdx.x == 0) emit_loss(r, row, loss_out, z_out, sum_ce, sum_z);

        // pass two: the gradient, from shared memory (layout 1) or from the logits again (layout 0)
#if LOSSK_GRAD
        for (index_t c = vector_begin + (index_t)threadIdx.x * VEC; c < vector_end; c += (index_t)blockDim.x * VEC) {
            typename vector_of<T>::storage v;
#if LOSSK_LAYOUT == LAYOUT_ROWS_SHARED
            v.raw[0] = *reinterpret_cast<const typename vector_of<T>::chunk*>(chunk_values + (c - origin));
#else
            v.raw[0] = *reinterpret_cast<const typename vector_of<T>::chunk*>(logits + start + c);
#endif
            ACC g[VEC], h[VEC];
#pragma unroll
            for (int k = 0; k < VEC; ++k) g[k] = logit_grad((ACC)to_acc(v.values[k]), c + k, r, o, start + c + k, &h[k]);
            store_vec(grad, start + c, g);
#if LOSSK_HESS
            store_vec(hess, start + c, h);
#endif
        }
        for (index_t i = threadIdx.x; i < scalar_count; i += blockDim.x) {
            const index_t c = i < head_count ? lo + i : vector_end + (i - head_count);
#if LOSSK_LAYOUT == LAYOUT_ROWS_SHARED
            const T raw = chunk_values[c - origin];
#else
            const T raw = logits[start + c * inner];
#endif
            ACC h;
            grad[start + c * inner] = element<T>::from(logit_grad((ACC)to_acc(raw), c, r, o, start + c * inner, &h));
#if LOSSK_HESS
            hess[start + c * inner] = element<T>::from(h);
#endif
        }
#endif
#if LOSSK_LAYOUT == LAYOUT_ROWS_SHARED
        __syncthreads();  // the chunk is rewritten by the next row
#endif
    }
    if (rank == 0 && threadIdx.x == 0) emit_partials(partials, worker, sum_ce, sum_z);
}
#endif

// Stage two of the reduction: the loss in the logits' dtype,
//     (sum of ce partials) * ce_scale / divisors[0] + (sum of z partials) * z_scale / divisors[1]
// and, with LOSSK_RETURN_Z, the z term alone into z_out. divisors may be null (no division).
extern "C" __global__ void __launch_bounds__(FINISH_THREADS)
lossk_cross_entropy_finish(const ACC* __restrict__ partials, index_t count, ACC ce_scale, ACC z_scale,
                           const ACC* __restrict__ divisors, T* __restrict__ out, T* __restrict__ z_out) {
#if LOSSK_Z_LOSS
    finish_sum<T>(partials, count, 2, 2, ce_scale, z_scale, divisors, out);
#if LOSSK_RETURN_Z
    __syncthreads();
    finish_sum<T>(partials + 1, count, 2, 1, z_scale, (ACC)0, divisors == 0 ? divisors : divisors + 1, z_out);
#endif
#else
    finish_sum<T>(partials, count, 1, 1, ce_scale, z_scale, divisors, out);
#endif
}
