import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { loadBinding } from '../../src/native/binding.js';
import { pcieLinkBytesPerSec, sample } from '../../src/gpu/nvml.js';
import { NO_GPU, skipNote } from './gpu-env.js';

describe.skipIf(NO_GPU)(`NVML monitor${skipNote}`, () => {
  it('reports every GPU with the values nvidia-smi shows', () => {
    const s = sample();
    if (!s.available) throw new Error(s.reason);
    const devices = loadBinding().binding!.cudaInfo().devices;
    expect(s.gpus).toHaveLength(devices.length);
    const smi = spawnSync(
      'nvidia-smi',
      ['--query-gpu=name,memory.total,pcie.link.width.current', '--format=csv,noheader,nounits'],
      {
        encoding: 'utf8',
      },
    );
    const [name, totalMiB, width] = smi.stdout.trim().split('\n')[0].split(', ');
    const g = s.gpus[0];
    expect(g.name).toBe(name);
    expect(g.memoryTotal! / 2 ** 20).toBeCloseTo(Number(totalMiB), -1);
    expect(g.pcieLinkWidth).toBe(Number(width));
    expect(g.utilizationGpu).toBeGreaterThanOrEqual(0);
    expect(g.utilizationGpu).toBeLessThanOrEqual(100);
    expect(g.temperatureC).toBeGreaterThan(10);
    expect(g.powerW).toBeGreaterThan(10);
    expect(g.memoryUsed).toBeGreaterThan(0);
    expect(g.pcieTxBytesPerSec).toBeGreaterThanOrEqual(0);
    expect(g.pcieRxBytesPerSec).toBeGreaterThanOrEqual(0);
    expect(pcieLinkBytesPerSec(g.pcieLinkGeneration!, g.pcieLinkWidth!)).toBeGreaterThan(1e9);
    const quick = sample({ pcie: false });
    expect(quick.available && quick.gpus[0].pcieTxBytesPerSec).toBeUndefined();
  });
});
