import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { backendAvailability, getBackend } from '../src/backends/index.js';
import {
  calibrationBatchesFrom,
  canonicalJson,
  engineCacheKey,
  planAffectingOptions,
  planIncompatibility,
  planLoadError,
  tensorrtAvailability,
  validateBuildOptions,
  type EngineCacheKeyParts,
} from '../src/tensorrt/index.js';
import { readCachedEngine, writeCachedEngine } from '../src/tensorrt/cache-key.js';
import type { TensorRTPlanMetadata } from '../src/tensorrt/metadata.js';
import { ROOT } from './helpers/data.js';

const HEADERS = join(ROOT, '.trt-headers');
const SCRIPT = join(ROOT, 'scripts', 'check-tensorrt.mjs');

function checkTensorRT(...args: string[]) {
  return spawnSync(process.execPath, [SCRIPT, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 300_000 });
}

describe('check:tensorrt compiles the adapter against real TensorRT headers', () => {
  for (const tag of ['v11.1', 'v10.16']) {
    const dir = join(HEADERS, tag);
    it.skipIf(!existsSync(join(dir, 'include', 'NvInfer.h')))(
      `passes for TensorRT ${tag} headers${existsSync(dir) ? '' : ' (skipped: .trt-headers/' + tag + ' is absent; fetch the public headers of that tag)'}`,
      () => {
        const r = checkTensorRT(dir, '--json');
        const report = JSON.parse(r.stdout) as {
          tensorrtHeaders: string;
          results: { file: string; ok: boolean; diagnostics: string }[];
        };
        const failures = report.results.filter((x) => !x.ok);
        expect(failures, failures.map((f) => `${f.file}\n${f.diagnostics}`).join('\n')).toEqual([]);
        expect(r.status).toBe(0);
        expect(report.tensorrtHeaders.startsWith(tag.slice(1))).toBe(true);
        // Every TensorRT-facing translation unit is in the check, the builder and the calibrator included.
        const files = report.results.map((x) => x.file);
        for (const f of ['builder.cc', 'calibrator.cc', 'build_binding.cc', 'library.cc', 'logger.cc'])
          expect(files).toContain(`trt/tensorrt/${f}`);
      },
    );
  }

  it('fails, naming the file, when a source does not compile against the given headers', () => {
    const fake = mkdtempSync(join(tmpdir(), 'yqp-fake-trt-'));
    mkdirSync(join(fake, 'include'));
    writeFileSync(join(fake, 'include', 'NvInfer.h'), '#error "not TensorRT"\n');
    writeFileSync(join(fake, 'include', 'NvInferVersion.h'), '#define TRT_MAJOR_ENTERPRISE 99\n');
    const r = checkTensorRT(fake);
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/FAIL trt\/tensorrt\/builder\.cc/);
    expect(r.stdout).toMatch(/not TensorRT/);
    expect(r.stdout).toMatch(/^FAIL: \d+\/\d+ files compile/m);
  });

  it('refuses a folder without NvInfer.h, with a one-line reason', () => {
    const r = checkTensorRT(tmpdir());
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/expected .*NvInfer\.h to exist/);
  });
});

describe('availability where TensorRT is absent', () => {
  const availability = tensorrtAvailability();

  it.skipIf(availability.available)(
    `reports unavailable with the reason${availability.available ? ' (skipped: TensorRT is present here)' : ''}`,
    async () => {
      expect(availability.available).toBe(false);
      expect(availability.reason).toMatch(/native addon|without TensorRT|libnvinfer|no usable GPU/);
      expect(await backendAvailability('tensorrt')).toEqual(availability);
      await expect(getBackend('tensorrt')).rejects.toMatchObject({
        code: 'E_BACKEND_UNAVAILABLE',
        message: expect.stringContaining(availability.reason!),
      });
      const { buildEngine } = await import('../src/tensorrt/index.js');
      await expect(
        buildEngine('model.onnx', { profiles: [] } as never, { precision: 'fp16' }),
      ).rejects.toMatchObject({ code: 'E_BACKEND_UNAVAILABLE' });
    },
  );
});

describe('builder option validation', () => {
  it('fills defaults', () => {
    const o = validateBuildOptions({}, 10);
    expect(o).toMatchObject({
      precision: 'fp32',
      int8Calibrator: false,
      stronglyTyped: false,
      hardwareCompatibility: 'none',
      tf32: true,
      device: 0,
    });
    expect(validateBuildOptions({}, 11).stronglyTyped).toBe(true);
  });

  it.each([
    [{ optimizationLevel: 7 }, 10, /integer between 0 and 5 for tensorrt.optimizationLevel but received 7/],
    [{ precision: 'int4' }, 10, /one of fp32, fp16, bf16, int8 for tensorrt.precision but received "int4"/],
    [{ workspaceMib: 512 }, 10, /tensorrt option name but received "workspaceMib"/],
    [{ workspaceMiB: -1 }, 10, /positive number for tensorrt.workspaceMiB but received -1/],
    [{ hardwareCompatibility: 'hopper' }, 10, /tensorrt.hardwareCompatibility/],
    [{ excludeLeanRuntime: true }, 10, /versionCompatible: true alongside it/],
    [
      { precision: 'int8', int8Calibrator: true, calibrationBatches: async () => null },
      11,
      /TensorRT 11 removed implicit INT8/,
    ],
    [{ precision: 'fp16', int8Calibrator: true }, 10, /precision int8 with the calibrator/],
    [{ precision: 'int8', int8Calibrator: true }, 10, /batch source function/],
    [{ stronglyTyped: false }, 11, /strongly typed networks only/],
    [{ timingCache: 3 }, 10, /non-empty path or false for tensorrt.timingCache/],
  ])('rejects %j on TensorRT %i', (raw, major, message) => {
    expect(() => validateBuildOptions(raw as Record<string, unknown>, major)).toThrow(message);
    try {
      validateBuildOptions(raw as Record<string, unknown>, major);
    } catch (e) {
      expect((e as { code: string }).code).toBe('E_ARGUMENT');
      expect((e as Error).message.split('\n')).toHaveLength(1);
    }
  });

  it('accepts the CLI spelling builderOptimizationLevel', () => {
    expect(
      validateBuildOptions({ builderOptimizationLevel: 5, timingCache: undefined }, 10).optimizationLevel,
    ).toBe(5);
    expect(() => validateBuildOptions({ builderOptimizationLevel: 9 }, 10)).toThrow(
      /tensorrt.builderOptimizationLevel/,
    );
  });

  it('serves calibration batches in order and ends with null', async () => {
    async function* frames() {
      for (let i = 0; i < 3; i++) yield [new Float32Array([i, i])];
    }
    const pull = calibrationBatchesFrom(frames());
    // The native side asks for several at once (prefetch); answers must still come in stream order.
    const got = await Promise.all([pull(), pull(), pull(), pull()]);
    expect(got.map((b) => (b ? Array.from(b[0] as Float32Array)[0] : null))).toEqual([0, 1, 2, null]);
  });

  it('keeps only plan-affecting options for the cache key', () => {
    const a = planAffectingOptions(
      validateBuildOptions({ precision: 'fp16', timingCache: '/tmp/a', device: 0 }, 10),
    );
    const b = planAffectingOptions(
      validateBuildOptions({ precision: 'fp16', timingCache: false, engineCache: false }, 10),
    );
    expect(a).toEqual(b);
    expect(a).not.toHaveProperty('timingCache');
    const c = planAffectingOptions(validateBuildOptions({ precision: 'fp16', optimizationLevel: 5 }, 10));
    expect(c).not.toEqual(a);
  });
});

describe('engine cache keys', () => {
  const base: EngineCacheKeyParts = {
    modelSha256: 'a'.repeat(64),
    profiles: [{ 'input:0': { min: [1, 128, 128, 3], opt: [4, 128, 128, 3], max: [8, 128, 128, 3] } }],
    buildOptions: planAffectingOptions(validateBuildOptions({ precision: 'fp16' }, 10)),
    tensorrtVersion: '10.16.0',
    gpu: 'NVIDIA H100 80GB HBM3',
    sm: '9.0',
  };

  it('is a stable sha256 whatever the key order', () => {
    const k = engineCacheKey(base);
    expect(k).toMatch(/^[0-9a-f]{64}$/);
    const reordered = Object.fromEntries(Object.entries(base).reverse()) as unknown as EngineCacheKeyParts;
    expect(engineCacheKey(reordered)).toBe(k);
    expect(canonicalJson({ b: 1, a: [{ d: 2, c: 3 }] })).toBe('{"a":[{"c":3,"d":2}],"b":1}');
  });

  it.each([
    ['model hash', { modelSha256: 'b'.repeat(64) }],
    [
      'profile max',
      { profiles: [{ 'input:0': { min: [1, 128, 128, 3], opt: [4, 128, 128, 3], max: [16, 128, 128, 3] } }] },
    ],
    ['precision', { buildOptions: planAffectingOptions(validateBuildOptions({ precision: 'fp32' }, 10)) }],
    ['TensorRT version', { tensorrtVersion: '10.16.1' }],
    ['GPU', { gpu: 'NVIDIA H200', sm: '9.0' }],
    ['calibration cache', { calibrationCacheSha256: 'c'.repeat(64) }],
  ])('changes with the %s', (_what, change) => {
    expect(engineCacheKey({ ...base, ...change })).not.toBe(engineCacheKey(base));
  });

  it('stores and finds a plan, and treats a changed plan file as a miss', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'yqp-engine-cache-'));
    const plan = new Uint8Array([1, 2, 3, 4, 5]);
    const { createHash } = await import('node:crypto');
    const metadata = {
      version: '10.16.0',
      gpu: base.gpu,
      sm: base.sm,
      buildOptions: base.buildOptions,
      planSha256: createHash('sha256').update(plan).digest('hex'),
    } as TensorRTPlanMetadata;
    const key = engineCacheKey(base);
    expect(await readCachedEngine(dir, key)).toBeUndefined();
    await writeCachedEngine(dir, key, { plan, metadata });
    const hit = await readCachedEngine(dir, key);
    expect(Array.from(hit!.plan)).toEqual([1, 2, 3, 4, 5]);
    expect(hit!.metadata.version).toBe('10.16.0');
    writeFileSync(join(dir, `${key}.plan`), new Uint8Array([9, 9]));
    expect(await readCachedEngine(dir, key)).toBeUndefined();
    expect(JSON.parse(readFileSync(join(dir, `${key}.json`), 'utf8')).gpu).toBe(base.gpu);
  });
});

describe('plans from another TensorRT version or GPU', () => {
  const meta = { version: '10.16.0', gpu: 'NVIDIA H100 80GB HBM3', sm: '9.0', buildOptions: {} };
  const here = { version: '10.16.0', gpu: 'NVIDIA H100 80GB HBM3', sm: '9.0' };

  it('accepts the same version and GPU', () => {
    expect(planIncompatibility(meta, here)).toBeUndefined();
  });
  it('names both versions on a version mismatch', () => {
    expect(planIncompatibility(meta, { ...here, version: '11.1.0' })).toMatch(
      /built by TensorRT 10\.16\.0 .* TensorRT 11\.1\.0/,
    );
  });
  it('names both GPUs on a GPU mismatch', () => {
    expect(planIncompatibility(meta, { ...here, gpu: 'NVIDIA A100-SXM4-80GB', sm: '8.0' })).toMatch(
      /built for NVIDIA H100 80GB HBM3 \(sm 9\.0\) but this GPU is NVIDIA A100-SXM4-80GB \(sm 8\.0\)/,
    );
  });
  it('lets version-compatible plans run on a newer minor of the same major only', () => {
    const vc = { ...meta, buildOptions: { versionCompatible: true } };
    expect(planIncompatibility(vc, { ...here, version: '10.17.2' })).toBeUndefined();
    expect(planIncompatibility(vc, { ...here, version: '10.15.0' })).toMatch(/version-compatible/);
  });
  it('honours hardware compatibility levels', () => {
    const ampere = { ...meta, buildOptions: { hardwareCompatibility: 'ampere-plus' } };
    expect(planIncompatibility(ampere, { ...here, gpu: 'NVIDIA A10', sm: '8.6' })).toBeUndefined();
    expect(planIncompatibility(ampere, { ...here, gpu: 'Tesla T4', sm: '7.5' })).toMatch(/Ampere and newer/);
  });
  it('makes one E_BACKEND error with our reason first and TensorRT message after', () => {
    const e = planLoadError(
      '/repo/m/1/model.plan',
      meta,
      { ...here, version: '10.17.0' },
      'Serialization assertion failed',
    );
    expect(e.code).toBe('E_BACKEND');
    expect(e.message).toMatch(
      /^Cannot load TensorRT plan \/repo\/m\/1\/model\.plan: the plan was built by TensorRT 10\.16\.0 .*TensorRT says: Serialization assertion failed$/,
    );
  });
});
