#!/usr/bin/env python3
"""The PyTorch peer of `npm run bench -- gpu-inference`: the same dynamic-batch BlazeFace graph, run by a small ONNX
interpreter on PyTorch (cuDNN), input already on the GPU, eager and under torch.cuda.CUDAGraph, FP32 and FP16.

The graph comes as JSON plus raw initializers written by the bench (bench/gpu-inference.mjs exports them with the
project's ONNX reader), so the peer needs no `onnx` Python package. Prints one JSON line per (precision, mode, batch).
Usage: onnx_torch.py GRAPH_JSON WEIGHTS_BIN --batches 1,16,64 --iterations 300
"""
import argparse
import json
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F


def load(graph_path, weights_path):
    g = json.load(open(graph_path))
    blob = open(weights_path, 'rb').read()
    inits = {}
    for t in g['initializers']:
        dtype = {'float32': np.float32, 'int64': np.int64}[t['dtype']]
        a = np.frombuffer(blob, dtype=dtype, count=int(np.prod(t['dims'])) if t['dims'] else 1, offset=t['offset'])
        inits[t['name']] = a.reshape(t['dims']).copy()
    return g, inits


class Interpreter:
    """Evaluates the graph's ops; shape tensors (int64) stay Python lists on the host, as onnxruntime keeps them."""

    def __init__(self, g, inits, dtype):
        self.g = g
        self.dtype = dtype
        self.w = {}
        for k, v in inits.items():
            self.w[k] = v.tolist() if v.dtype == np.int64 else torch.from_numpy(v).cuda().to(dtype)

    def __call__(self, x):
        env = dict(self.w)
        env[self.g['input']] = x
        for n in self.g['nodes']:
            ins = [env[i] if i else None for i in n['inputs']]
            a = n['attrs']
            op = n['op']
            if op == 'Conv':
                w = ins[0 + 1]
                pads = a.get('pads', [0, 0, 0, 0])
                xin = ins[0]
                if pads[0] != pads[2] or pads[1] != pads[3]:
                    xin = F.pad(xin, (pads[1], pads[3], pads[0], pads[2]))
                    pad = 0
                else:
                    pad = (pads[0], pads[1])
                y = F.conv2d(xin, w, ins[2] if len(ins) > 2 else None, a.get('strides', [1, 1]), pad,
                             a.get('dilations', [1, 1]), a.get('group', 1))
            elif op == 'Relu':
                y = F.relu(ins[0])
            elif op == 'Add':
                y = ins[0] + ins[1]
            elif op == 'MaxPool':
                pads = a.get('pads', [0, 0, 0, 0])
                y = F.max_pool2d(ins[0], a['kernel_shape'], a.get('strides', a['kernel_shape']), (pads[0], pads[1]))
            elif op == 'Transpose':
                y = ins[0].permute(*a['perm'])
            elif op == 'Reshape':
                shape = [int(s) for s in ins[1]]
                shape = [ins[0].shape[i] if s == 0 else s for i, s in enumerate(shape)]
                y = ins[0].reshape(shape)
            elif op == 'Concat':
                if isinstance(ins[0], list):
                    y = [v for part in ins for v in (part if isinstance(part, list) else [part])]
                else:
                    y = torch.cat(ins, dim=a['axis'])
            elif op == 'Shape':
                y = list(ins[0].shape)
            elif op == 'Gather':
                idx = ins[1]
                y = [ins[0][i] for i in idx] if isinstance(idx, list) and np.ndim(idx) > 0 else ins[0][int(np.array(idx).item())]
                if not isinstance(y, list):
                    y = [y]
            elif op == 'ConstantOfShape':
                y = torch.full([int(s) for s in ins[0]], float(a.get('value', 0.0)), device='cuda', dtype=self.dtype)
            else:
                raise SystemExit(f'onnx_torch.py: operator {op} is not supported')
            for o in n['outputs']:
                env[o] = y
        return [env[o] for o in self.g['outputs']]


def timed(fn, iterations):
    torch.cuda.synchronize()
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.99)]


def gpu_time(fn, iterations=60):
    """The GPU's time alone for fn: events after a sleep kernel, by which time the host has launched fn."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(iterations):
        torch.cuda._sleep(4_000_000)  # about 2 ms: far above the host's launch time
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def main():
    p = argparse.ArgumentParser()
    p.add_argument('graph')
    p.add_argument('weights')
    p.add_argument('--batches', default='1,16,64')
    p.add_argument('--iterations', type=int, default=300)
    args = p.parse_args()
    g, inits = load(args.graph, args.weights)
    torch.backends.cudnn.benchmark = True
    for precision, dtype in (('fp32', torch.float32), ('fp16', torch.float16)):
        model = Interpreter(g, inits, dtype)
        for batch in [int(b) for b in args.batches.split(',')]:
            x = torch.rand(batch, *g['inputDims'][1:], device='cuda', dtype=dtype) * 2 - 1
            with torch.no_grad():
                for _ in range(20):
                    model(x)
                eager = timed(lambda: model(x), args.iterations)
                s = torch.cuda.Stream()
                s.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(s):
                    for _ in range(3):
                        model(x)
                torch.cuda.current_stream().wait_stream(s)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    model(x)
                replay = timed(graph.replay, args.iterations)
                gpu = {'eager': gpu_time(lambda: model(x)), 'graph': gpu_time(graph.replay)}
            for mode, (p50, p99) in (('eager', eager), ('graph', replay)):
                print(json.dumps({'peer': 'pytorch', 'torch': torch.__version__, 'cudnn': torch.backends.cudnn.version(),
                                  'precision': precision, 'mode': mode, 'batch': batch, 'p50Ms': p50, 'p99Ms': p99, 'gpuMs': gpu[mode],
                                  'imagesPerSecond': batch / p50 * 1e3}), flush=True)


if __name__ == '__main__':
    sys.exit(main())
