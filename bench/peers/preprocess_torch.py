#!/usr/bin/env python3
"""PyTorch peer of bench/gpu-preprocess.mjs, run in the same command on the same GPU.

uint8 NHWC frames on the GPU -> permute -> float -> F.interpolate(bilinear, align_corners=False[, antialias])
-> (x / 127.5 - 1) -> NHWC contiguous float32: what users write in PyTorch for the same model input.
Timed with CUDA events (warm-up first, median of --iterations). With --check DIR it also recomputes the
outputs that the Node side saved there (frame.bin + ours_<size>_<filter>.bin, batch 1) and reports the max
absolute difference, so both sides are shown to compute the same function.
Prints one JSON object on stdout.
"""
import argparse
import json
import os
import statistics

import torch
import torch.nn.functional as F


def preprocess(frames, size, antialias):
    x = frames.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=antialias)
    x = x / 127.5 - 1.0
    return x.permute(0, 2, 3, 1).contiguous()


def thetas(matrices, width, height, size):
    """Our pixel-centre matrices (source = M [u, v, 1]) as affine_grid thetas (align_corners=False)."""
    rows = []
    for m in matrices:
        h = size / 2
        rows.append([
            [m[0] * size / width, m[1] * size / width, 2 / width * (m[0] * h + m[1] * h + m[2]) - 1],
            [m[3] * size / height, m[4] * size / height, 2 / height * (m[3] * h + m[4] * h + m[5]) - 1],
        ])
    return torch.tensor(rows, dtype=torch.float32, device="cuda")


def crops(frames_nhwc, frame_index, theta, size):
    x = frames_nhwc.permute(0, 3, 1, 2).float()[frame_index]
    grid = F.affine_grid(theta, (theta.shape[0], 3, size, size), align_corners=False)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return (y / 127.5 - 1.0).permute(0, 2, 3, 1).contiguous()


def time_ms(fn, iterations, warmup=5):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iterations):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="128,256")
    p.add_argument("--batches", default="1,8,64")
    p.add_argument("--width", type=int, default=1920)
    p.add_argument("--height", type=int, default=1080)
    p.add_argument("--iterations", type=int, default=50)
    p.add_argument("--check", default="")
    a = p.parse_args()
    dev = torch.device("cuda")
    torch.manual_seed(0)
    batches = [int(b) for b in a.batches.split(",")]
    sizes = [int(s) for s in a.sizes.split(",")]
    # Random frames: rotated among (batch 64 is 400 MB, far beyond L2), never zeros.
    frames = torch.randint(0, 256, (max(batches), a.height, a.width, 3), dtype=torch.uint8, device=dev)
    out = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0), "results": []}
    for size in sizes:
        for batch in batches:
            for aa in (False, True):
                x = frames[:batch]
                ms = time_ms(lambda: preprocess(x, size, aa), a.iterations)
                out["results"].append(
                    {"size": size, "batch": batch, "filter": "antialias" if aa else "bilinear", "ms": ms}
                )
    meta = json.load(open(os.path.join(a.check, "meta.json"))) if a.check else None
    if meta and "roi" in meta:
        r = meta["roi"]
        out["roi"] = []
        for n in (1, 8, 64):
            t = r["timing"][:n]
            th = thetas([x["m"] for x in t], a.width, a.height, r["size"])
            idx = torch.tensor([x["frame"] for x in t], device=dev)
            ms = time_ms(lambda: crops(frames[:8], idx, th, r["size"]), a.iterations)
            out["roi"].append({"crops": n, "ms": ms})
    if a.check:
        import numpy as np

        w, h = meta["width"], meta["height"]
        frame = torch.from_numpy(np.fromfile(os.path.join(a.check, "frame.bin"), dtype=np.uint8).reshape(1, h, w, 3)).to(dev)
        checks = []
        for name in meta["outputs"]:
            size, flt = name["size"], name["filter"]
            ours = np.fromfile(os.path.join(a.check, name["file"]), dtype=np.float32).reshape(1, size, size, 3)
            ref = preprocess(frame, size, flt == "antialias").cpu().numpy()
            checks.append({"size": size, "filter": flt, "maxAbsDiff": float(np.abs(ours - ref).max()),
                           "meanAbsDiff": float(np.abs(ours - ref).mean())})
        out["checks"] = checks
        if "roi" in meta:
            r = meta["roi"]
            n = len(r["check"])
            th = thetas(r["check"], w, h, r["size"])
            ref = crops(frame, torch.zeros(n, dtype=torch.long, device=dev), th, r["size"]).cpu().numpy()
            ours = np.fromfile(os.path.join(a.check, r["file"]), dtype=np.float32).reshape(ref.shape)
            out["roiCheck"] = {"maxAbsDiff": float(np.abs(ours - ref).max()), "meanAbsDiff": float(np.abs(ours - ref).mean())}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
