// What the main job prints at its end: the next commands a newcomer runs, each exact (test/cli-newcomer.test.ts
// runs them against a test repository).
export function nextSteps({ model, media, repo = 'models' }) {
  const steps = [
    [`npx yqp-trt infer ${repo}/face --image ${media}`, 'every photo of a folder'],
    [`npx yqp-trt serve --model-repository ${repo}`, 'KServe v2 / Triton HTTP on 127.0.0.1:8000 (Ctrl-C stops)'],
    [`npx yqp-trt bench http://127.0.0.1:8000 --model face --concurrency 1:8:x2 --plot bench.html`, 'while it serves'],
    [`npx yqp-trt bench ${repo}/face --concurrency 1:8:x2`, 'the same load, in process'],
    [`mkdir -p frames/calib && cp ${media}/*.jpg frames/calib/`, 'INT8: calibration photos'],
    [`npx yqp-trt build ${model} --name face-int8 --int8 --calib frames/calib`, 'README "INT8": the held-out check'],
    ['npx yqp-trt doctor', 'what this machine has for GPU and TensorRT'],
  ];
  return `\nmodels/face is built. Next, in this folder:\n${steps.map(([c, why]) => `  ${c}\n      # ${why}\n`).join('')}`;
}
