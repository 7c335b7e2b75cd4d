#!/usr/bin/env python3
"""Checks that TensorRT (Python bindings, when the GPU machine has them) builds a yqp-trt Q/DQ model as INT8:
parses it, builds an engine and counts the layers the engine inspector reports with INT8 inputs or outputs.
Usage: trt_check_qdq.py model.onnx   (prints one JSON line; exit 0 even without TensorRT, saying so)."""
import json
import sys

try:
    import tensorrt as trt
except Exception as e:  # no TensorRT Python bindings on this machine
    print(json.dumps({"tensorrt": None, "reason": f"import tensorrt failed: {e}"}))
    sys.exit(0)

path = sys.argv[1]
logger = trt.Logger(trt.Logger.WARNING)
builder = trt.Builder(logger)
network = builder.create_network(0)
parser = trt.OnnxParser(network, logger)
with open(path, "rb") as f:
    ok = parser.parse(f.read())
errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
out = {"tensorrt": trt.__version__, "parsed": ok, "errors": errors[:5]}
if ok:
    config = builder.create_builder_config()
    # TensorRT 10 wants the INT8 flag for Q/DQ networks that are not strongly typed; 11 has no such flag.
    if hasattr(trt.BuilderFlag, "INT8"):
        config.set_flag(trt.BuilderFlag.INT8)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    plan = builder.build_serialized_network(network, config)
    out["built"] = plan is not None
    if plan is not None:
        engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
        info = json.loads(engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON))
        layers = info.get("Layers", [])
        def formats(layer):
            return " ".join(str(x.get("Format/Datatype", "")) for x in layer.get("Inputs", []) + layer.get("Outputs", []) if isinstance(x, dict))
        int8 = [l for l in layers if isinstance(l, dict) and "Int8" in formats(l)]
        out["layers"] = len(layers)
        out["int8Layers"] = len(int8)
        out["int8Convs"] = sum(1 for l in int8 if "Convolution" in str(l.get("LayerType", "")) or "conv" in str(l.get("Name", "")).lower())
        out["planBytes"] = plan.nbytes
print(json.dumps(out))
