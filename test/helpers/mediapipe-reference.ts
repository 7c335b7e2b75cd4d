// MediaPipe's own face mesh (the @mediapipe/face_mesh JS solution, WebGL 2 on SwiftShader) in headless Chromium, as a
// real client: the package's files served on 127.0.0.1, one FaceMesh, reset() before each image and that image's
// onResults awaited before the next. Returns the landmarks in image pixels (z scaled by the image width, as
// MediaPipe's normalized z is).
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { basename, extname, join } from 'node:path';
import { DATA_DIR } from './data.js';

export const CHROMIUM = '/usr/bin/chromium';
export const FACE_MESH_DIR = join(DATA_DIR, 'mediapipe-face_mesh-0.4.1633559619', 'package');

/** Why the reference cannot run here, or undefined when it can. */
export function mediapipeUnavailable(): string | undefined {
  if (!existsSync(CHROMIUM))
    return `Chromium is not installed at ${CHROMIUM} (.ci/run installs Debian's chromium)`;
  if (!existsSync(join(FACE_MESH_DIR, 'face_mesh.js')))
    return `@mediapipe/face_mesh is not in ${FACE_MESH_DIR} (npm run data)`;
  return undefined;
}

export interface MediapipeFace {
  image: string;
  width: number;
  height: number;
  /** Landmarks of the first face, [x, y, z] in pixels; empty when MediaPipe found none. */
  landmarks: [number, number, number][];
}

const TYPES: Record<string, string> = {
  '.js': 'text/javascript',
  '.wasm': 'application/wasm',
  '.data': 'application/octet-stream',
  '.binarypb': 'application/octet-stream',
  '.jpg': 'image/jpeg',
  '.png': 'image/png',
  '.html': 'text/html',
};

// Plain JS in the page (a string, so no bundler helper leaks into it): one FaceMesh, reset() before each image.
const PAGE_SCRIPT = `
window.runMesh = async function (names) {
  const mesh = new FaceMesh({ locateFile: (f) => '/mp/' + f });
  mesh.setOptions({ maxNumFaces: 1, refineLandmarks: false, selfieMode: false });
  let resolve = () => {};
  mesh.onResults((r) => resolve(r));
  await mesh.initialize();
  const out = [];
  for (const name of names) {
    const img = new Image();
    img.src = '/img/' + encodeURIComponent(name);
    await img.decode();
    mesh.reset();
    const result = new Promise((r) => (resolve = r));
    await mesh.send({ image: img });
    const r = await result;
    const W = img.naturalWidth, H = img.naturalHeight;
    const face = (r.multiFaceLandmarks && r.multiFaceLandmarks[0]) || [];
    out.push({ image: name, width: W, height: H, landmarks: face.map((p) => [p.x * W, p.y * H, p.z * W]) });
  }
  mesh.close();
  return out;
};
`;

function serve(images: Map<string, string>): Promise<{ server: Server; url: string }> {
  const page = `<!doctype html><html><body><script src="/mp/face_mesh.js"></script><script>${PAGE_SCRIPT}</script></body></html>`;
  const server = createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      let body: Buffer | string | undefined;
      let path = url.pathname;
      if (path === '/') {
        body = page;
        path = '/index.html';
      } else if (path.startsWith('/mp/')) {
        const file = join(FACE_MESH_DIR, basename(path));
        if (existsSync(file)) body = await readFile(file);
      } else if (path.startsWith('/img/')) {
        const file = images.get(decodeURIComponent(basename(path)));
        if (file) body = await readFile(file);
      }
      if (body === undefined) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': TYPES[extname(path)] ?? 'application/octet-stream' }).end(body);
    })().catch(() => res.writeHead(500).end());
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      const a = server.address() as { port: number };
      resolve({ server, url: `http://127.0.0.1:${a.port}/` });
    }),
  );
}

/** Runs MediaPipe's face mesh (maxNumFaces 1, refineLandmarks off: the face_landmark.tflite model) on image files. */
export async function mediapipeLandmarks(
  files: readonly string[],
  timeoutMs = 120_000,
): Promise<MediapipeFace[]> {
  const { chromium } = await import('playwright-core');
  const images = new Map(files.map((f) => [basename(f), f]));
  const { server, url } = await serve(images);
  const profile = await mkdtemp(join(tmpdir(), 'yqp-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--use-gl=angle',
      '--use-angle=swiftshader',
      '--enable-unsafe-swiftshader',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(timeoutMs);
    await page.goto(url);
    await page.waitForFunction(() => 'FaceMesh' in window);
    const names = [...images.keys()];
    return (await page.evaluate(`runMesh(${JSON.stringify(names)})`)) as MediapipeFace[];
  } finally {
    await context.close().catch(() => undefined);
    await new Promise((r) => server.close(r));
    await rm(profile, { recursive: true, force: true });
  }
}
