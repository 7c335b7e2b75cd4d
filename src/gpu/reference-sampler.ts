import type { HostJob, NativeItem } from '../native/kernels.js';
import { toHalfBits } from '../preprocess/half.js';

// The GPU sampler in plain TypeScript (same convention, float64 arithmetic, float32 sample positions).

const f32 = Math.fround;

function fetchRgb(data: Uint8Array, item: NativeItem, x: number, y: number, out: number[]): void {
  const row = y * item.pitch;
  if (item.format <= 3) {
    const bpp = item.format >= 2 ? 4 : 3;
    const p = row + x * bpp;
    const bgr = item.format === 1 || item.format === 3;
    out[0] = data[bgr ? p + 2 : p];
    out[1] = data[p + 1];
    out[2] = data[bgr ? p : p + 2];
    return;
  }
  const Y = data[row + x];
  const q = item.uvOffset + (y >> 1) * item.uvPitch + (x >> 1) * 2;
  const U = data[q] - 128;
  const V = data[q + 1] - 128;
  const yy = 1.164383 * (Y - 16);
  const clamp = (v: number) => Math.min(255, Math.max(0, v));
  out[0] = clamp(yy + 1.596027 * V);
  out[1] = clamp(yy - 0.391762 * U - 0.812968 * V);
  out[2] = clamp(yy + 2.017232 * U);
}

function window(center: number, scale: number, size: number) {
  const support = scale >= 1 ? scale : 1;
  const inv = scale >= 1 ? f32(1 / scale) : 1;
  const lo = Math.max(0, Math.trunc(f32(f32(center - support) + 0.5)));
  const hi = Math.min(size, Math.trunc(f32(f32(center + support) + 0.5)));
  return { lo, hi, inv };
}

const tri = (x: number) => Math.max(0, 1 - Math.abs(x));

/**
 * The kernel's function in plain TypeScript: sample positions, windows and tap indices are computed in float32
 * exactly as the kernel does; interpolation is float64. The GPU suite holds the kernel to it (max abs diff
 * ~1e-5 of the output range). Slow (a reference, not a CPU backend).
 */
export function referenceSample(job: HostJob): void {
  const { spec, items, frames, out } = job;
  const plane = spec.width * spec.height;
  const half = out instanceof Uint16Array;
  const px = [0, 0, 0];
  const rgb = [0, 0, 0];
  for (const item of items) {
    const data = frames[item.frame];
    const m = item.m.map(f32);
    const W = item.width;
    const H = item.height;
    const fetchOrPad = (x: number, y: number, o: number[]) => {
      if (x < 0 || y < 0 || x >= W || y >= H) o[0] = o[1] = o[2] = f32(spec.padValue);
      else fetchRgb(data, item, x, y, o);
    };
    for (let oy = 0; oy < spec.height; oy++) {
      for (let ox = 0; ox < spec.width; ox++) {
        if (ox < item.rect[0] || ox >= item.rect[2] || oy < item.rect[1] || oy >= item.rect[3]) {
          rgb[0] = rgb[1] = rgb[2] = f32(spec.padValue);
        } else {
          const u = ox + 0.5;
          const v = oy + 0.5;
          const sx = f32(f32(f32(m[0] * u) + f32(m[1] * v)) + m[2]);
          const sy = f32(f32(f32(m[3] * u) + f32(m[4] * v)) + m[5]);
          if (spec.filter === 1) {
            const wx = window(sx, m[0], W);
            const wy = window(sy, m[4], H);
            let totx = 0;
            let toty = 0;
            for (let x = wx.lo; x < wx.hi; x++) totx += tri((x - sx + 0.5) * wx.inv);
            for (let y = wy.lo; y < wy.hi; y++) toty += tri((y - sy + 0.5) * wy.inv);
            rgb[0] = rgb[1] = rgb[2] = 0;
            for (let y = wy.lo; y < wy.hi; y++) {
              const wyv = tri((y - sy + 0.5) * wy.inv) / toty;
              for (let x = wx.lo; x < wx.hi; x++) {
                const w = (wyv * tri((x - sx + 0.5) * wx.inv)) / totx;
                fetchRgb(data, item, x, y, px);
                for (let c = 0; c < 3; c++) rgb[c] += w * px[c];
              }
            }
          } else {
            let fx = f32(sx - 0.5);
            let fy = f32(sy - 0.5);
            let x0: number, y0: number, x1: number, y1: number;
            let outside = false;
            if (spec.border === 0) {
              fx = Math.min(Math.max(fx, 0), W - 1);
              fy = Math.min(Math.max(fy, 0), H - 1);
              x0 = Math.floor(fx);
              y0 = Math.floor(fy);
              x1 = Math.min(x0 + 1, W - 1);
              y1 = Math.min(y0 + 1, H - 1);
            } else {
              outside = !(fx > -1 && fy > -1 && fx < W && fy < H);
              x0 = Math.floor(fx);
              y0 = Math.floor(fy);
              x1 = x0 + 1;
              y1 = y0 + 1;
            }
            if (outside) {
              rgb[0] = rgb[1] = rgb[2] = f32(spec.padValue);
            } else {
              const lx = fx - x0;
              const ly = fy - y0;
              rgb[0] = rgb[1] = rgb[2] = 0;
              const taps: [number, number, number][] = [
                [x0, y0, (1 - lx) * (1 - ly)],
                [x1, y0, lx * (1 - ly)],
                [x0, y1, (1 - lx) * ly],
                [x1, y1, lx * ly],
              ];
              for (const [x, y, w] of taps) {
                fetchOrPad(x, y, px);
                for (let c = 0; c < 3; c++) rgb[c] += w * px[c];
              }
            }
          }
        }
        const base = item.outIndex * plane * 3;
        const pix = oy * spec.width + ox;
        for (let c = 0; c < 3; c++) {
          const value = rgb[spec.bgr ? 2 - c : c] * f32(spec.a[c]) + f32(spec.b[c]);
          const o = spec.nchw ? base + c * plane + pix : base + pix * 3 + c;
          out[o] = half ? toHalfBits(value) : value;
        }
      }
    }
  }
}
