"""Writer process of the frame-ring IPC test, in Python with CuPy: attaches to a ring a Node process created
(descriptor JSON in argv[1]), writes the raw frames of argv[2] (count x height x width x 3 uint8) into its slots
on a CuPy stream, records each slot's interprocess event after the write, publishes the metadata in the shared
memory (layout in trt/core/frame_ring.h) and prints {frameIndex, sha256} per frame as JSON lines."""
import hashlib
import json
import mmap
import os
import struct
import sys
import time

import cupy as cp
import numpy as np

desc = json.loads(sys.argv[1])
raw = np.fromfile(sys.argv[2], dtype=np.uint8)
width, height, count, camera = (int(a) for a in sys.argv[3:7])
frame_bytes = width * height * 3
frames = raw.reshape(count, frame_bytes)

n = len(desc["slots"])
fd = os.open("/dev/shm" + desc["shm"], os.O_RDWR)
shm = mmap.mmap(fd, 64 + 64 * n)
assert struct.unpack_from("<I", shm, 0)[0] == 0x52505159, "not a frame ring"

cp.cuda.Device(desc["device"]).use()
rt = cp.cuda.runtime
ptrs = [rt.ipcOpenMemHandle(bytes.fromhex(s["mem"])) for s in desc["slots"]]
events = [rt.ipcOpenEventHandle(bytes.fromhex(s["event"])) for s in desc["slots"]]
stream = cp.cuda.Stream(non_blocking=True)

FREE, WRITING, READY = 0, 1, 2
for i in range(count):
    slot = -1
    deadline = time.time() + 30
    while slot < 0:
        # A free slot first; else the oldest ready slot no reader holds (the ring's own writer policy).
        states = [struct.unpack_from("<IIQ", shm, 64 + 64 * j) for j in range(n)]
        free = [j for j in range(n) if states[j][0] == FREE]
        stale = sorted((states[j][2], j) for j in range(n) if states[j][0] == READY and states[j][1] == 0)
        pick = free[0] if free else (stale[0][1] if stale else -1)
        if pick >= 0:
            struct.pack_into("<I", shm, 64 + 64 * pick, WRITING)
            slot = pick
        if slot < 0:
            assert time.time() < deadline, "no free slot"
            time.sleep(0.001)
    off = 64 + 64 * slot
    host = frames[i]
    mem = cp.cuda.UnownedMemory(ptrs[slot], desc["slotBytes"], None)
    dev = cp.ndarray((frame_bytes,), dtype=cp.uint8, memptr=cp.cuda.MemoryPointer(mem, 0))
    dev.set(host, stream=stream)
    rt.eventRecord(events[slot], stream.ptr)
    last_seq = struct.unpack_from("<Q", shm, 24)[0] + 1
    struct.pack_into("<Q", shm, 24, last_seq)
    struct.pack_into("<IIIIQQQ", shm, off + 16, camera, 0, width, height, i, int(time.time() * 1e6), frame_bytes)
    struct.pack_into("<Q", shm, off + 8, last_seq)
    struct.pack_into("<I", shm, off, READY)
    print(json.dumps({"frameIndex": i, "seq": last_seq, "sha256": hashlib.sha256(host.tobytes()).hexdigest()}), flush=True)

stream.synchronize()
for p in ptrs:
    rt.ipcCloseMemHandle(p)
