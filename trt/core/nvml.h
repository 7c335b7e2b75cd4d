// NVML monitor: libnvidia-ml.so.1 is opened at run time (never linked), so the addon loads without a driver.
// exports.nvml.sample() -> {available: true, driverVersion, gpus: [...]} or {available: false, reason}.
#pragma once

#include <napi.h>

namespace yqp {

void InitNvml(Napi::Env env, Napi::Object exports);

}  // namespace yqp
