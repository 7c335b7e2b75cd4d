"""Peer for bench/serve-tail.mjs: Python onnxruntime, none of our code, at the same rate and threads.

python3 ort_tail.py MODEL SESSIONS THREADS RATE SECONDS -> one JSON line: run-time p50/p99 (ms) of
BlazeFace batch 1, SESSIONS sessions of THREADS intra-op threads each, each in its own thread sending on a
fixed schedule (RATE / SESSIONS per second), as the bench's open loop does.
"""
import json
import sys
import threading
import time

import numpy as np
import onnxruntime as ort

model, sessions, threads, rate, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])


def session():
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(model, so, providers=['CPUExecutionProvider'])


x = np.random.default_rng(1).uniform(-1, 1, (1, 128, 128, 3)).astype(np.float32)
interval = sessions / rate
warmup = min(1.0, seconds / 3)


def loop(s, out, phase):
    t0 = time.perf_counter() + phase
    i = 0
    while True:
        due = t0 + i * interval
        if due > t0 + warmup + seconds:
            return
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        start = time.perf_counter()
        s.run(None, {'input:0': x})
        if start >= t0 + warmup:
            out.append((time.perf_counter() - start) * 1e3)
        i += 1


ss = [session() for _ in range(sessions)]
outs = [[] for _ in range(sessions)]
ts = [threading.Thread(target=loop, args=(ss[i], outs[i], i * interval / sessions)) for i in range(sessions)]
for t in ts:
    t.start()
for t in ts:
    t.join()
a = np.array(sum(outs, []))
print(json.dumps({'runs': len(a), 'p50': float(np.percentile(a, 50)), 'p99': float(np.percentile(a, 99)), 'ort': ort.__version__}))
