import { describe, expect, it } from 'vitest';

import { YqpError } from '../src/errors.js';
import { contextNames, place, planPlacement } from '../src/gpu/placement.js';

const names = (n: number, prefix = 'cam'): string[] => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

describe('multi-GPU placement', () => {
  for (let gpus = 1; gpus <= 8; gpus++) {
    it(`round-robin and balanced spread 3 x ${gpus} + 1 items evenly over ${gpus} GPU(s)`, () => {
      const items = names(3 * gpus + 1);
      for (const strategy of ['round-robin', 'balanced'] as const) {
        const p = place(items, { gpus, strategy });
        const counts = [...p.byGpu.values()].map((l) => l.length);
        expect(counts.length).toBe(gpus);
        expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1);
        expect(counts.reduce((a, b) => a + b, 0)).toBe(items.length);
        // Every item placed exactly once, on an ordinal in range, the same in both views.
        for (const [g, list] of p.byGpu) for (const item of list) expect(p.byItem[item]).toBe(g);
        expect(Object.keys(p.byItem).sort()).toEqual([...items].sort());
        expect(p.byItem['cam0']).toBe(0);
        expect(p.byItem[`cam${gpus - 1}`]).toBe(gpus - 1);
      }
    });

    it(`explicit map on ${gpus} GPU(s) is honoured and balanced around`, () => {
      const items = names(2 * gpus);
      const last = gpus - 1;
      const p = place(items, { gpus, map: { cam0: last, cam1: last } });
      expect(p.byItem.cam0).toBe(last);
      expect(p.byItem.cam1).toBe(last);
      const counts = [...p.byGpu.values()].map((l) => l.length);
      expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(gpus === 1 ? 0 : 1);
    });
  }

  it('weights steer balanced placement: one 4K camera weighs as much as four 1080p ones', () => {
    const p = place(['4k', 'a', 'b', 'c', 'd'], { gpus: 2, weights: { '4k': 4 } });
    expect(p.byGpu.get(0)).toEqual(['4k']);
    expect(p.byGpu.get(1)).toEqual(['a', 'b', 'c', 'd']);
    expect(p.load.get(0)).toBe(4);
  });

  it('an explicit ordinal list is used in its order', () => {
    const p = place(names(4), { gpus: [3, 1], strategy: 'round-robin' });
    expect(p.byItem).toEqual({ cam0: 3, cam1: 1, cam2: 3, cam3: 1 });
  });

  it('rejects bad ordinals, unknown names and duplicates with the field named', () => {
    const bad = (f: () => unknown, argument: string, message: RegExp): void => {
      try {
        f();
        expect.unreachable();
      } catch (e) {
        expect(e).toBeInstanceOf(YqpError);
        expect((e as YqpError).argument).toBe(argument);
        expect((e as YqpError).message).toMatch(message);
      }
    };
    bad(() => place(names(2), { gpus: 0 }), 'gpus', /positive integer.*0 of type number/);
    bad(
      () => place(names(2), { gpus: 2, map: { cam0: 2 } }),
      'map.cam0',
      /GPU ordinals 0, 1.*2 of type number/,
    );
    bad(() => place(names(2), { gpus: 2, map: { cam9: 0 } }), 'map.cam9', /placed names/);
    bad(() => place(['a', 'a'], { gpus: 2 }), 'items[1]', /not used before/);
    bad(() => place(names(2), { gpus: [0, -1] }), 'gpus[1]', /GPU ordinal/);
    bad(() => place(names(2), { gpus: [0, 0] }), 'gpus', /distinct/);
    bad(() => place(names(2), { gpus: 2, deviceCount: 1 }), 'gpus', /ordinals 0\.\.0.*1 of type number/);
    bad(() => place(names(2), { gpus: 1, deviceCount: 0 }), 'gpus', /no GPU ordinal/);
    bad(() => place(names(2), { gpus: 2, strategy: 'random' as never }), 'strategy', /round-robin, balanced/);
    bad(() => place(names(2), { gpus: 2, weights: { cam0: 0 } }), 'weights.cam0', /positive number/);
  });

  it('plans contexts of several models and cameras on 1..8 GPUs', () => {
    for (let gpus = 1; gpus <= 8; gpus++) {
      const plan = planPlacement(
        { models: { blazeface: gpus, landmarks: 2 * gpus }, cameras: names(5 * gpus) },
        { gpus, map: { 'blazeface#0': gpus - 1 } },
      );
      expect(Object.keys(plan.contexts.byItem)).toHaveLength(3 * gpus);
      expect(plan.contexts.byItem['blazeface#0']).toBe(gpus - 1);
      for (const list of plan.contexts.byGpu.values()) expect(list.length).toBe(3);
      for (const list of plan.cameras.byGpu.values()) expect(list.length).toBe(5);
    }
    expect(contextNames('m', 2)).toEqual(['m#0', 'm#1']);
    expect(() => planPlacement({ models: { m: 1 } }, { gpus: 1, map: { nope: 0 } })).toThrow(/nope/);
  });
});
