import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { parseConcurrency } from '../src/cli/commands/bench.js';
import { HttpClient, resolveShapes, syntheticInputs, type BenchClient } from '../src/bench/client.js';
import { plotHtml, plotSvg } from '../src/bench/plot.js';
import { percentile, runConcurrency, runRate, type LoadPoint } from '../src/bench/runner.js';

/** A test double for the load generator: answers after `delayMs`, counting calls in flight. */
class DelayClient implements BenchClient {
  readonly description = 'delay';
  calls = 0;
  inFlight = 0;
  maxInFlight = 0;
  constructor(private readonly delayMs: number) {}
  async infer(): Promise<void> {
    this.calls++;
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    await new Promise((r) => setTimeout(r, this.delayMs));
    this.inFlight--;
  }
  async close(): Promise<void> {}
}

describe('bench runner', () => {
  it('takes nearest-rank percentiles', () => {
    const xs = Float64Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(xs, 50)).toBe(50);
    expect(percentile(xs, 99)).toBe(99);
    expect(percentile(xs, 100)).toBe(100);
    expect(percentile([7], 99)).toBe(7);
    expect(percentile([], 50)).toBeNaN();
  });

  it('keeps exactly `concurrency` requests in flight and measures their latency', async () => {
    const c = new DelayClient(10);
    const p = await runConcurrency(c, 4, { durationMs: 300, warmupMs: 50 });
    expect(c.maxInFlight).toBe(4);
    expect(p.concurrency).toBe(4);
    expect(p.errors).toBe(0);
    expect(p.latencyMs.p50).toBeGreaterThanOrEqual(9);
    // 4 in flight, ~10 ms each: about 400 per second (timers on a busy machine run late, never early).
    expect(p.throughput).toBeGreaterThan(150);
    expect(p.throughput).toBeLessThanOrEqual(420);
  });

  it('sends on a fixed schedule in open loop, whatever the answers do', async () => {
    const c = new DelayClient(40);
    const p = await runRate(c, 100, { durationMs: 400, warmupMs: 100 });
    // 0.5 s at 100/s: 50 sent, several in flight at once because each takes 40 ms.
    expect(c.calls).toBeGreaterThanOrEqual(45);
    expect(c.calls).toBeLessThanOrEqual(51);
    expect(c.maxInFlight).toBeGreaterThan(2);
    expect(p.requestRate).toBe(100);
    expect(p.latencyMs.p50).toBeGreaterThanOrEqual(39);
  });

  it('counts failures and keeps the first message', async () => {
    const failing: BenchClient = {
      description: 'fails',
      infer: () =>
        new Promise((_, reject) => setTimeout(() => reject(new Error('HTTP 503: Queue is full')), 5)),
      close: async () => {},
    };
    const p = await runConcurrency(failing, 2, { durationMs: 100 });
    expect(p.requests).toBe(0);
    expect(p.errors).toBeGreaterThan(0);
    expect(p.firstError).toBe('HTTP 503: Queue is full');
  });

  it('refuses bad load parameters', async () => {
    await expect(runConcurrency(new DelayClient(1), 0, { durationMs: 10 })).rejects.toThrow(
      /Expected positive integer for concurrency but received 0/,
    );
  });
});

describe('bench inputs, ranges and plots', () => {
  it('parses concurrency lists and ranges', () => {
    expect(parseConcurrency(['1', '2,4'])).toEqual([1, 2, 4]);
    expect(parseConcurrency(['1:16:x2'])).toEqual([1, 2, 4, 8, 16]);
    expect(parseConcurrency(['2:8:3'])).toEqual([2, 5, 8]);
    expect(parseConcurrency([3])).toEqual([3]);
    expect(() => parseConcurrency(['0'])).toThrow(
      /Expected a positive integer, .* for --concurrency but received "0"/,
    );
    expect(() => parseConcurrency(['8:2'])).toThrow(/start:end/);
  });

  it('shapes synthetic inputs from the model, asking for dynamic dims it cannot guess', () => {
    const specs = resolveShapes([{ name: 'x', dtype: 'float32', dims: [-1, 3, 8, 8] }], 4);
    expect(specs[0].dims).toEqual([4, 3, 8, 8]);
    const feeds = syntheticInputs(specs);
    expect(feeds.x.data).toHaveLength(4 * 3 * 64);
    expect(Math.max(...(feeds.x.data as Float32Array))).toBeLessThanOrEqual(1);
    expect(syntheticInputs(specs).x.data).toEqual(feeds.x.data);
    expect(() => resolveShapes([{ name: 'img', dtype: 'float32', dims: [-1, 3, -1, -1] }], 1)).toThrow(
      /--shape img:1,3,N,N/,
    );
    expect(
      resolveShapes([{ name: 'img', dtype: 'float32', dims: [-1, 3, -1, -1] }], 1, { img: [1, 3, 32, 32] })[0]
        .dims,
    ).toEqual([1, 3, 32, 32]);
  });

  it('draws throughput against latency as SVG and HTML', async () => {
    const points = [
      await runConcurrency(new DelayClient(2), 1, { durationMs: 60 }),
      await runConcurrency(new DelayClient(2), 4, { durationMs: 60 }),
    ];
    const svg = plotSvg([{ label: 'http <binary>', points }], 'face');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('http &lt;binary&gt; p99');
    expect(svg.match(/<circle/g)).toHaveLength(4);
    const html = plotHtml([{ label: 'a', points }], 'face');
    expect(html).toContain('<table>');
    expect(html.match(/<tr><td>a<\/td>/g)).toHaveLength(2);
    const data = /<script type="application\/json" id="data">(.*)<\/script>/s.exec(html)![1];
    expect(JSON.parse(data)[0].points).toHaveLength(2);
  });
});

describe('bench plot order and labels', () => {
  const point = (concurrency: number, throughput: number, p99: number): LoadPoint => ({
    concurrency,
    requests: 100,
    errors: 0,
    durationS: 1,
    throughput,
    latencyMs: { mean: p99 / 2, p50: p99 / 2, p90: p99, p95: p99, p99, min: 0, max: p99 },
  });

  it('draws past saturation in concurrency order (throughput falls back) and labels each point', () => {
    // Saturated at 4: concurrency 8 gives less throughput than 4, so throughput order would put it between 2 and 4.
    const points = [point(1, 100, 2), point(2, 180, 3), point(4, 260, 5), point(8, 220, 12)];
    const svg = plotSvg([{ label: 'a', points: [points[3], points[0], points[2], points[1]] }], 'face');
    const p99 = [...svg.matchAll(/<polyline points="([^"]+)"[^>]*stroke-dasharray/g)][0][1].split(' ');
    const xs = p99.map((xy) => Number(xy.split(',')[0]));
    const [x1, x2, x4, x8] = xs;
    expect(x1).toBeLessThan(x2);
    expect(x2).toBeLessThan(x4);
    expect(x8).toBeLessThan(x4); // drawn last, back left of concurrency 4
    expect(x8).toBeGreaterThan(x2);
    const labels = [...svg.matchAll(/<text [^>]*font-size="10"[^>]*>([^<]+)<\/text>/g)].map((m) => m[1]);
    expect(labels).toEqual(['c1', 'c2', 'c4', 'c8']);
    const rate = plotSvg([
      { label: 'r', points: [{ ...point(1, 50, 2), concurrency: undefined, requestRate: 50 }] },
    ]);
    expect(rate).toMatch(/>50\/s<\/text>/);
  });
});

describe('HTTP load generator connections', () => {
  /** A bare server that answers every request and records which connection (client port) carried it. */
  async function recordingServer(): Promise<{ url: string; ports: number[]; close: () => Promise<void> }> {
    const ports: number[] = [];
    const server = http.createServer((req, res) => {
      ports.push(req.socket.remotePort!);
      req.resume();
      req.on('end', () => res.end('{}'));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    return {
      url: `http://127.0.0.1:${port}`,
      ports,
      close: () =>
        new Promise((r) => {
          server.closeAllConnections();
          server.close(() => r());
        }),
    };
  }
  const feeds = syntheticInputs([{ name: 'x', dtype: 'float32', dims: [1, 4] }]);

  /** The client port of each of `requests` requests sent one after another, with `clients` or one pool. */
  async function portsOf(requests: number, clients?: number): Promise<number[]> {
    const s = await recordingServer();
    const client = new HttpClient({
      url: s.url,
      model: 'm',
      protocol: 'binary',
      feeds,
      connections: 256,
      clients,
    });
    try {
      for (let i = 0; i < requests; i++) await client.infer();
    } finally {
      await client.close();
      await s.close();
    }
    return s.ports;
  }

  it('with `clients`, sends as that many clients in turn, each on its own connection', async () => {
    const ports = await portsOf(9, 3);
    // Round robin over three connections: a, b, c, a, b, c, ...
    expect(new Set(ports).size).toBe(3);
    for (let i = 3; i < 9; i++) expect(ports[i]).toBe(ports[i - 3]);
  });

  it('without `clients`, reuses the connection just freed (one pool)', async () => {
    expect(new Set(await portsOf(6)).size).toBe(1);
  });
});
