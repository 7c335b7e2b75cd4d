#!/usr/bin/env node
// npm run check:tensorrt -- <dir>
// Compiles every TensorRT-dependent source file against <dir>/include (a TensorRT release or the public headers of a
// tag of NVIDIA/TensorRT) with -Wall -Wextra -Werror, TensorRT's headers as system headers, and no libnvinfer:
// objects go to a temporary folder and nothing is linked. Exit 0 only when every file compiles.
//   --cxx <compiler>   (default $CXX or g++)     --cuda <dir>  CUDA include folder (default $CUDA_PATH/include,
//   --json             one JSON report on stdout                   /usr/local/cuda/include)
//   --link <out.node>  also link the objects and a minimal Node-API entry into <out.node>, with CUDA's static runtime
//                      and no TensorRT library: TensorRT is dlopen'ed, so no TensorRT symbol may stay unresolved.
//                      The module then loads on machines without TensorRT and reports why it is unavailable.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function usage(message) {
  console.error(`check-tensorrt: ${message}`);
  console.error(
    'usage: npm run check:tensorrt -- <dir holding include/> [--cxx g++] [--cuda <include dir>] [--json]',
  );
  process.exit(2);
}

const args = process.argv.slice(2);
let dir;
let cxx = process.env.CXX || 'g++';
let cudaInclude;
let json = false;
let linkOut;
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--cxx') cxx = args[++i];
  else if (a === '--cuda') cudaInclude = args[++i];
  else if (a === '--json') json = true;
  else if (a === '--link') linkOut = resolve(args[++i] ?? usage('--link needs an output file'));
  else if (a.startsWith('--')) usage(`unknown option ${a}`);
  else if (dir === undefined) dir = a;
  else usage(`unexpected argument ${a}`);
}
if (dir === undefined) usage('expected a TensorRT folder (holding include/NvInfer.h) but received nothing');
const trtInclude = existsSync(join(dir, 'include', 'NvInfer.h')) ? join(dir, 'include') : dir;
if (!existsSync(join(trtInclude, 'NvInfer.h')))
  usage(`expected ${join(dir, 'include', 'NvInfer.h')} to exist but it does not`);

const cudaCandidates = [
  cudaInclude,
  process.env.CUDA_PATH && join(process.env.CUDA_PATH, 'include'),
  process.env.CUDA_HOME && join(process.env.CUDA_HOME, 'include'),
  '/usr/local/cuda/include',
  '/usr/include',
].filter(Boolean);
const cuda = cudaCandidates.find((d) => existsSync(join(d, 'cuda_runtime_api.h')));
if (!cuda) usage(`expected cuda_runtime_api.h (CUDA toolkit headers) in one of ${cudaCandidates.join(', ')}`);

const napiCandidates = [
  join(ROOT, 'node_modules', 'node-api-headers', 'include'),
  join(dirname(dirname(process.execPath)), 'include', 'node'),
  '/usr/include/node',
];
const napi = napiCandidates.find((d) => existsSync(join(d, 'node_api.h')));
const addonApi = join(ROOT, 'node_modules', 'node-addon-api');
if (!napi || !existsSync(join(addonApi, 'napi.h')))
  usage('expected node-api headers (node_modules/node-api-headers) and node-addon-api; run npm install');

const version = readFileSync(join(trtInclude, 'NvInferVersion.h'), 'utf8');
const num = (name) => version.match(new RegExp(`#define ${name}\\s+(\\d+)`))?.[1] ?? '?';
const headerVersion = ['MAJOR', 'MINOR', 'PATCH']
  .map((p) => (num(`TRT_${p}_ENTERPRISE`) !== '?' ? num(`TRT_${p}_ENTERPRISE`) : num(`NV_TENSORRT_${p}`)))
  .join('.');

// Every source under trt/ that includes a TensorRT header, plus everything in trt/tensorrt/.
function walk(d) {
  if (!existsSync(d)) return [];
  return readdirSync(d).flatMap((f) => {
    const p = join(d, f);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
}
const sources = walk(join(ROOT, 'trt'))
  .filter((f) => /\.(cc|cpp|cxx)$/.test(f))
  .filter((f) => !f.includes(`${join('trt', 'tensorrt', 'testing')}/`)) // test-only modules, not the addon
  .filter(
    (f) =>
      f.includes(`${join('trt', 'tensorrt')}/`) ||
      /#\s*include\s*[<"]Nv(Infer|Onnx)/.test(readFileSync(f, 'utf8')),
  )
  .sort();
if (sources.length === 0) usage('found no TensorRT-dependent source under trt/');

const out = mkdtempSync(join(tmpdir(), 'check-tensorrt-'));
const flags = [
  '-std=c++17',
  '-c',
  '-O1', // some -Wextra diagnostics (maybe-uninitialized) need the optimizer
  '-Wall',
  '-Wextra',
  '-Werror',
  '-fPIC',
  '-DYQP_WITH_TENSORRT',
  '-DNAPI_VERSION=8',
  '-DNAPI_CPP_EXCEPTIONS',
  '-DNODE_ADDON_API_DISABLE_DEPRECATED',
  `-I${join(ROOT, 'trt')}`,
  `-isystem${trtInclude}`,
  `-isystem${cuda}`,
  `-isystem${napi}`,
  `-isystem${addonApi}`,
];

function run(argv, file) {
  return new Promise((resolveRun) => {
    const started = Date.now();
    const child = spawn(cxx, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let diagnostics = '';
    child.stdout.on('data', (b) => (diagnostics += b));
    child.stderr.on('data', (b) => (diagnostics += b));
    child.on('error', (e) =>
      resolveRun({ file, ok: false, diagnostics: `cannot run ${cxx}: ${e.message}`, ms: 0 }),
    );
    child.on('close', (code) =>
      resolveRun({
        file: relative(ROOT, file),
        ok: code === 0,
        diagnostics: diagnostics.trim(),
        ms: Date.now() - started,
      }),
    );
  });
}

const objects = sources.map((file, index) => join(out, `${index}-${basename(file)}.o`));
const compile = (file, index) => run([...flags, file, '-o', objects[index]], file);

const results = new Array(sources.length);
let next = 0;
const workers = Array.from({ length: Math.max(1, Math.min(cpus().length, sources.length)) }, async () => {
  while (next < sources.length) {
    const i = next++;
    results[i] = await compile(sources[i], i);
    if (!json) {
      const r = results[i];
      console.log(`${r.ok ? 'ok  ' : 'FAIL'} ${r.file} (${(r.ms / 1000).toFixed(1)} s)`);
      if (!r.ok) console.log(r.diagnostics.replace(/^/gm, '     '));
    }
  }
});
await Promise.all(workers);

// Optional link: the entry registers exports.tensorrt exactly as addon.cc does under YQP_WITH_TENSORRT.
if (linkOut && results.every((r) => r.ok)) {
  const entry = join(out, 'check_entry.cc');
  writeFileSync(
    entry,
    '#include <napi.h>\n#include "tensorrt/tensorrt_binding.h"\n' +
      'static Napi::Object Init(Napi::Env env, Napi::Object exports) { InitTensorRT(env, exports); return exports; }\n' +
      'NODE_API_MODULE(yqp_trt_check, Init)\n',
  );
  const entryObj = join(out, 'check_entry.o');
  let compiled = await run([...flags, entry, '-o', entryObj], entry);
  // The CUDA core services the runtime uses (streams, pools, completion, graphs), compiled for the link only.
  const coreObjects = [];
  for (const f of ['stream_pool.cc', 'buffer_pool.cc', 'completion.cc', 'graph_cache.cc']) {
    const src = join(ROOT, 'trt', 'core', f);
    if (!existsSync(src) || !compiled.ok) continue;
    const obj = join(out, `core-${f}.o`);
    compiled = await run([...flags, src, '-o', obj], src);
    coreObjects.push(obj);
  }
  const cudaLib = [join(dirname(cuda), 'lib64'), join(dirname(cuda), 'lib')].find((d) =>
    existsSync(join(d, 'libcudart_static.a')),
  );
  let linked = compiled;
  if (compiled.ok) {
    linked = await run(
      [
        '-shared',
        '-o',
        linkOut,
        ...objects,
        entryObj,
        ...(cudaLib ? [`-L${cudaLib}`] : []),
        '-lcudart_static',
        '-ldl',
        '-lrt',
        '-lpthread',
      ],
      linkOut,
    );
  }
  if (linked.ok) {
    // nm -u lists what the loader must resolve; a TensorRT symbol there would mean libnvinfer became a link dependency.
    const nm = spawnSync('nm', ['-u', '-C', linkOut], { encoding: 'utf8' });
    const trtSymbols = (nm.stdout || '')
      .split('\n')
      .filter((l) => /nvinfer1|nvonnxparser|_INTERNAL|getInferLib/.test(l));
    if (trtSymbols.length > 0)
      linked = {
        ...linked,
        ok: false,
        diagnostics: `unresolved TensorRT symbols:\n${trtSymbols.join('\n')}`,
      };
  }
  const r = { ...linked, file: relative(ROOT, linkOut) || linkOut, link: true };
  results.push(r);
  if (!json) {
    console.log(`${r.ok ? 'ok  ' : 'FAIL'} link ${linkOut}`);
    if (!r.ok) console.log(r.diagnostics.replace(/^/gm, '     '));
  }
}
rmSync(out, { recursive: true, force: true });
const failed = results.filter((r) => !r.ok);
if (json) {
  console.log(
    JSON.stringify(
      { tensorrtHeaders: headerVersion, include: trtInclude, cuda, compiler: cxx, results },
      null,
      2,
    ),
  );
} else {
  const compiled = results.filter((r) => !r.link);
  const link = results.find((r) => r.link);
  console.log(
    `${failed.length === 0 ? 'PASS' : 'FAIL'}: ${compiled.filter((r) => r.ok).length}/${compiled.length} files compile against TensorRT ${headerVersion} headers (${trtInclude}) with -Wall -Wextra -Werror${link ? (link.ok ? '; linked without TensorRT' : '; link FAILED') : ''}`,
  );
}
process.exit(failed.length === 0 ? 0 : 1);
