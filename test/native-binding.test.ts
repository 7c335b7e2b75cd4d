import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { PACKAGE_ROOT, loadBinding } from '../src/native/binding.js';
import { place } from '../src/gpu/placement.js';
import { sample, pcieLinkBytesPerSec } from '../src/gpu/nvml.js';
import { loadRuntime, requireRuntime } from '../src/gpu/runtime.js';

const ADDON = join(PACKAGE_ROOT, 'build', 'Release', 'yqp_trt.node');
const BUILT = existsSync(ADDON);
const loaded = loadBinding();
const HAS_DRIVER = BUILT && loaded.binding !== undefined && !loaded.binding.cudaInfo().driverError;

describe('native binding loader', () => {
  it('never throws: a missing addon is reported with its path and possible solutions', () => {
    const script = `import { loadBinding } from './src/native/binding.ts'; const r = loadBinding(); console.log(JSON.stringify(r));`;
    const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: PACKAGE_ROOT,
      env: { ...process.env, YQP_TRT_ADDON: '/nonexistent/yqp_trt.node' },
      encoding: 'utf8',
    });
    const r = JSON.parse(out);
    expect(r.errors[0]).toBe('/nonexistent/yqp_trt.node does not exist');
    if (!BUILT) {
      expect(r.binding).toBeUndefined();
      expect(r.solutions.join(' ')).toMatch(/npm run build:native/);
    }
  });

  it.skipIf(!BUILT)(
    `loads build/Release/yqp_trt.node and describes CUDA${BUILT ? '' : ' (skipped: addon not built)'}`,
    () => {
      expect(loaded.errors).toEqual([]);
      const info = loaded.binding!.cudaInfo();
      expect(info.runtimeVersion).toMatch(/^\d+\.\d+$/);
      expect(typeof info.tensorrt.compiled).toBe('boolean');
      if (info.driverError) expect(info.devices).toEqual([]);
      else expect(info.devices.length).toBeGreaterThan(0);
    },
  );

  it.skipIf(!BUILT || HAS_DRIVER)(
    `without a driver the runtime says why, with the CUDA error and call site${!BUILT ? ' (skipped: addon not built)' : HAS_DRIVER ? ' (skipped: this machine has a driver)' : ''}`,
    () => {
      const state = loadRuntime();
      expect(state.runtime).toBeUndefined();
      expect(state.reason).toMatch(/driver/i);
      expect(() => requireRuntime()).toThrow(/the CUDA runtime is unavailable: .*driver/);
      const raw = loaded.binding!.runtime as {
        allocDevice(n: number): unknown;
        StreamPool: new (d: number, n: number) => unknown;
      };
      expect(() => raw.allocDevice(16)).toThrow(/^cudaSetDevice \(device pool\) failed: cudaError\w+: .+/);
      expect(() => new raw.StreamPool(0, 0)).toThrow(/StreamPool count: expected 1\.\.256 streams, got 0/);
      const s = sample();
      expect(s.available).toBe(false);
      if (!s.available) expect(s.reason).toMatch(/libnvidia-ml\.so\.1|nvmlInit/);
    },
  );

  it.skipIf(!BUILT)(
    `asks the driver once per process, not on every allocDevice or copy${BUILT ? '' : ' (skipped: addon not built)'}`,
    () => {
      // cudaInfo queries every device's properties and free memory: about 30 us a call on the H200, which the
      // ring path paid on each frame's allocDevice before.
      const binding = loaded.binding! as unknown as { cudaInfo: () => unknown };
      const first = loadRuntime();
      const spy = vi.spyOn(binding, 'cudaInfo');
      try {
        for (let i = 0; i < 5; i++) expect(loadRuntime()).toBe(first);
        if (!first.runtime) expect(() => requireRuntime()).toThrow(first.reason);
        expect(spy).not.toHaveBeenCalled();
      } finally {
        spy.mockRestore();
      }
    },
  );

  it('computes PCIe link rates and places on the GPUs that exist', () => {
    expect(pcieLinkBytesPerSec(5, 16) / 1e9).toBeCloseTo(63.0, 1);
    expect(pcieLinkBytesPerSec(4, 16) / 1e9).toBeCloseTo(31.5, 1);
    const devices = HAS_DRIVER ? loaded.binding!.cudaInfo().devices.length : 1;
    expect(place(['a', 'b'], { gpus: devices, deviceCount: devices }).byItem.a).toBe(0);
  });
});
