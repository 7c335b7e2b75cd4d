// exports.kernels: the fused sampler (preprocessing and face-ROI crops) for JavaScript.
//
//   sample(job)                 device frames -> device output, enqueued on job.stream; returns at once
//   done(stream)                Promise resolved when the work enqueued so far on stream has finished
//   Session                     host frames (Uint8Array) -> host output through pinned staging, one stream;
//                               run(job) -> Promise, all copies and the wait happen off the event loop
//   sampleOnHost(job)           the kernel's own per-pixel code on the CPU (reference; no GPU needed)
//   timeSample(job, opts)       per-iteration GPU milliseconds from CUDA events (benchmarks)
//   benchChain(opts)            CUDA graph against eager launches for a preprocess -> model -> decode chain
//   malloc/free/upload/download/memset/streamCreate/streamDestroy/streamSynchronize/deviceInfo
//                               raw helpers for tests and benchmarks (the core's pools serve the library)
//
// A job is { spec, frames, items, out, outBytes?, stream? }: frames are device pointers (BigInt) for the
// device path or typed arrays for the host paths; each item names its frame by index. src/gpu/preprocess.ts
// builds jobs; it validates arguments first, so the checks here only guard memory safety.
#include "kernels/kernels_binding.h"

#include "kernels/host_session.h"
#include "kernels/kernel_bench.h"
#include "kernels/raw_helpers.h"
#include "kernels/sampler.h"
#include "kernels/sampling.h"

// One file per concern: job.* (job parsing, shared helpers), raw_helpers.*, sampling.*, host_session.*,
// kernel_bench.*; this one only assembles exports.kernels.
void InitKernels(Napi::Env env, Napi::Object exports) {
  using namespace yqp::kernels;
  Napi::Object k = Napi::Object::New(env);
  k.Set("maxItemsPerLaunch", kMaxItemsPerLaunch);
  AddRawHelpers(env, k);
  AddSampling(env, k);
  AddBenchmarks(env, k);
  AddHostSession(env, k);
  exports.Set("kernels", k);
}
