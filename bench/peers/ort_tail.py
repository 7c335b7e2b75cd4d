"""Peer for bench/serve-tail.mjs: Python onnxruntime, none of our code, at the same rate and threads.

python3 ort_tail.py MODEL SESSIONS THREADS RATE SECONDS [--runs] -> one JSON line: run-time p50/p99 (ms) of
BlazeFace batch 1, SESSIONS sessions of THREADS intra-op threads each, each in its own thread sending on a
fixed schedule (RATE / SESSIONS per second), as the bench's open loop does. Also the latency p50/p99 from each
request's due time to its end (a run that starts late, behind a slow one, counts its wait), as an open loop's
latency. With --runs, also every run as [wall ms, the calling thread's CPU ms, its involuntary context
switches, its minor page faults].
"""
import json
import resource
import sys
import threading
import time

import numpy as np
import onnxruntime as ort

model, sessions, threads, rate, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
with_runs = '--runs' in sys.argv[6:]


def session():
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(model, so, providers=['CPUExecutionProvider'])


x = np.random.default_rng(1).uniform(-1, 1, (1, 128, 128, 3)).astype(np.float32)
interval = sessions / rate
warmup = min(1.0, seconds / 3)


def loop(s, out, late, phase):
    t0 = time.perf_counter() + phase
    i = 0
    while True:
        due = t0 + i * interval
        if due > t0 + warmup + seconds:
            return
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        u0 = resource.getrusage(resource.RUSAGE_THREAD)
        c0 = time.thread_time()
        start = time.perf_counter()
        s.run(None, {'input:0': x})
        end = time.perf_counter()
        c1 = time.thread_time()
        u1 = resource.getrusage(resource.RUSAGE_THREAD)
        if start >= t0 + warmup:
            late.append((end - due) * 1e3)
            out.append(((end - start) * 1e3, (c1 - c0) * 1e3, u1.ru_nivcsw - u0.ru_nivcsw, u1.ru_minflt - u0.ru_minflt))
        i += 1


ss = [session() for _ in range(sessions)]
outs = [[] for _ in range(sessions)]
lates = [[] for _ in range(sessions)]
ts = [threading.Thread(target=loop, args=(ss[i], outs[i], lates[i], i * interval / sessions)) for i in range(sessions)]
for t in ts:
    t.start()
for t in ts:
    t.join()
runs = sum(outs, [])
a = np.array([r[0] for r in runs])
lat = np.array(sum(lates, []))
result = {'count': len(a), 'p50': float(np.percentile(a, 50)), 'p99': float(np.percentile(a, 99)),
          'latencyP50': float(np.percentile(lat, 50)), 'latencyP99': float(np.percentile(lat, 99)), 'ort': ort.__version__}
if with_runs:
    result['runs'] = runs
print(json.dumps(result))
