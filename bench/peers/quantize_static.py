#!/usr/bin/env python3
"""Peer of `npm run bench -- calibrate`: onnxruntime's own static INT8 quantization (quantize_static) of the same
model on the same frames, QDQ format, symmetric int8 activations and per-channel symmetric int8 weights (the same
scheme yqp-trt writes), Entropy or Percentile calibration.

The frames come already preprocessed, as raw float32 NHWC [count, 128, 128, 3] (written by bench/calibrate.mjs with
yqp-trt's preprocessing), so the timed section below holds no image decoding. Prints one JSON line.
"""
import argparse
import json
import resource
import sys
import time

import numpy as np
import onnxruntime
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)


class FrameReader(CalibrationDataReader):
    """Feeds one frame per call (BlazeFace's batch is fixed at 1), memory-mapped from the float32 file."""

    def __init__(self, path, count, input_name, shape):
        self.frames = np.memmap(path, dtype=np.float32, mode="r").reshape((-1,) + shape)[:count]
        self.input_name = input_name
        self.i = 0

    def get_next(self):
        if self.i >= len(self.frames):
            return None
        x = np.ascontiguousarray(self.frames[self.i : self.i + 1])
        self.i += 1
        return {self.input_name: x}

    def rewind(self):
        self.i = 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--frames", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--method", choices=["Entropy", "Percentile", "MinMax"], required=True)
    p.add_argument("--percentile", type=float, default=99.99)
    p.add_argument("--out", required=True)
    p.add_argument(
        "--inputs-only",
        action="store_true",
        help="quantize only the inputs of Conv and Add (yqp-trt's placement), not their outputs",
    )
    a = p.parse_args()

    sess = onnxruntime.InferenceSession(a.model, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = tuple(int(d) for d in inp.shape[1:])
    del sess
    reader = FrameReader(a.frames, a.count, inp.name, shape)
    extra = {"ActivationSymmetric": True, "WeightSymmetric": True}
    if a.inputs_only:
        # Without this, onnxruntime also quantizes the head Convs' outputs (the raw logits, range about 1e4).
        extra["OpTypesToExcludeOutputQuantization"] = ["Conv", "Add"]
    if a.method == "Percentile":
        extra["CalibPercentile"] = a.percentile
    started = time.perf_counter()
    quantize_static(
        a.model,
        a.out,
        reader,
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["Conv", "Add"],
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=getattr(CalibrationMethod, a.method),
        extra_options=extra,
    )
    seconds = time.perf_counter() - started
    frames = len(reader.frames)
    print(
        json.dumps(
            {
                "tool": "onnxruntime",
                "version": onnxruntime.__version__,
                "method": a.method,
                "placement": "inputs of Conv/Add" if a.inputs_only else "onnxruntime default (inputs and outputs of Conv/Add)",
                "frames": frames,
                "seconds": seconds,
                "framesPerSecond": frames / seconds,
                # ru_maxrss is in KiB on Linux.
                "maxRssMiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


if __name__ == "__main__":
    sys.exit(main())
