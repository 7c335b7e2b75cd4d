/**
 * The manifests under deploy/, offline. Kubernetes' own kinds are validated with kubernetes-models (validators
 * generated from Kubernetes' OpenAPI schema); KServe's with a schema of ours written from the fields KServe
 * documents for ServingRuntime and InferenceService (its containers, volumes, tolerations and resources by
 * kubernetes-models' validators), and, where YQP_KSERVE_CRD_DIR names KServe's config/crd/full folder, against
 * KServe's published CRD schemas too. Then the wiring: probes, ports, flags, drain times, GPU requests, labels.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { Deployment } from 'kubernetes-models/apps/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { Service } from 'kubernetes-models/v1';
import { validate as validateContainer } from 'kubernetes-models/_schemas/IoK8sApiCoreV1Container';
import { validate as validateResources } from 'kubernetes-models/_schemas/IoK8sApiCoreV1ResourceRequirements';
import { validate as validateToleration } from 'kubernetes-models/_schemas/IoK8sApiCoreV1Toleration';
import { validate as validateVolume } from 'kubernetes-models/_schemas/IoK8sApiCoreV1Volume';
import { parseAllDocuments } from 'yaml';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers/data.js';

// YAML documents: read field by field, checked by the validators above.
type Doc = Record<string, any>;
const DEPLOY = join(ROOT, 'deploy');
const files = ['kubernetes', 'kserve'].flatMap((d) =>
  readdirSync(join(DEPLOY, d))
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => join(d, f)),
);
const docs: { file: string; doc: Doc }[] = files.flatMap((file) =>
  parseAllDocuments(readFileSync(join(DEPLOY, file), 'utf8')).map((d) => {
    if (d.errors.length) throw new Error(`${file}: ${d.errors[0].message}`);
    return { file, doc: d.toJS() as Doc };
  }),
);
const ofKind = (kind: string) => docs.filter((d) => d.doc.kind === kind);

const BUILT_IN: Record<string, new (data: Doc) => { validate(): void }> = {
  'apps/v1/Deployment': Deployment,
  'v1/Service': Service,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
};

/** kubernetes-models' validators as ajv keywords, so our KServe schema can say "a Kubernetes Container". */
const ajv = new Ajv({ allErrors: true, strict: false });
for (const [keyword, fn] of Object.entries({
  k8sContainer: validateContainer,
  k8sResources: validateResources,
  k8sToleration: validateToleration,
  k8sVolume: validateVolume,
}))
  ajv.addKeyword({
    keyword,
    validate: (_: unknown, data: unknown) => (fn as (d: unknown) => boolean)(data),
    errors: false,
  });
const str = { type: 'string' };
const int = { type: 'integer', minimum: 0 };
const map = { type: 'object', additionalProperties: str };
const meta = {
  type: 'object',
  required: ['name'],
  properties: { name: str, namespace: str, labels: map, annotations: map },
  additionalProperties: false,
};
// ServingRuntime (serving.kserve.io/v1alpha1), as KServe documents it: the fields used here, nothing unknown.
const servingRuntimeSchema = {
  type: 'object',
  required: ['apiVersion', 'kind', 'metadata', 'spec'],
  properties: {
    apiVersion: { const: 'serving.kserve.io/v1alpha1' },
    kind: { enum: ['ServingRuntime', 'ClusterServingRuntime'] },
    metadata: meta,
    spec: {
      type: 'object',
      required: ['supportedModelFormats', 'containers'],
      additionalProperties: false,
      properties: {
        annotations: map,
        labels: map,
        supportedModelFormats: {
          type: 'array',
          minItems: 1,
          items: {
            type: 'object',
            required: ['name'],
            additionalProperties: false,
            properties: {
              name: str,
              version: str,
              autoSelect: { type: 'boolean' },
              priority: { type: 'integer', minimum: 1 },
            },
          },
        },
        protocolVersions: { type: 'array', items: { enum: ['v1', 'v2', 'grpc-v1', 'grpc-v2'] } },
        multiModel: { type: 'boolean' },
        disabled: { type: 'boolean' },
        containers: { type: 'array', minItems: 1, items: { k8sContainer: true } },
        volumes: { type: 'array', items: { k8sVolume: true } },
        tolerations: { type: 'array', items: { k8sToleration: true } },
        nodeSelector: map,
      },
    },
  },
};
// InferenceService (serving.kserve.io/v1beta1) with a predictor model spec.
const inferenceServiceSchema = {
  type: 'object',
  required: ['apiVersion', 'kind', 'metadata', 'spec'],
  properties: {
    apiVersion: { const: 'serving.kserve.io/v1beta1' },
    kind: { const: 'InferenceService' },
    metadata: meta,
    spec: {
      type: 'object',
      required: ['predictor'],
      additionalProperties: false,
      properties: {
        predictor: {
          type: 'object',
          required: ['model'],
          additionalProperties: false,
          properties: {
            minReplicas: int,
            maxReplicas: int,
            scaleMetric: { enum: ['cpu', 'memory', 'concurrency', 'rps'] },
            scaleTarget: int,
            terminationGracePeriodSeconds: int,
            model: {
              type: 'object',
              required: ['modelFormat', 'storageUri'],
              additionalProperties: false,
              properties: {
                modelFormat: {
                  type: 'object',
                  required: ['name'],
                  additionalProperties: false,
                  properties: { name: str, version: str },
                },
                runtime: str,
                protocolVersion: { enum: ['v1', 'v2', 'grpc-v2'] },
                storageUri: { type: 'string', pattern: '^(pvc|s3|gs|https?|hdfs|oci)://' },
                resources: { k8sResources: true },
                args: { type: 'array', items: str },
              },
            },
          },
        },
      },
    },
  },
};
const KSERVE: Record<string, ReturnType<typeof ajv.compile>> = {
  ServingRuntime: ajv.compile(servingRuntimeSchema),
  InferenceService: ajv.compile(inferenceServiceSchema),
};

/** Every container that runs the image, with the pod-level fields that go with it. */
function servers(): { file: string; container: Doc; grace?: number; pod: Doc }[] {
  const out: { file: string; container: Doc; grace?: number; pod: Doc }[] = [];
  for (const { file, doc } of ofKind('Deployment')) {
    const pod = doc.spec.template.spec;
    for (const c of pod.containers)
      out.push({ file, container: c, grace: pod.terminationGracePeriodSeconds, pod });
  }
  for (const { file, doc } of ofKind('ServingRuntime'))
    for (const c of doc.spec.containers) out.push({ file, container: c, pod: doc.spec });
  return out;
}

function flag(args: string[], name: string): string | undefined {
  const a = args.find((x) => x === `--${name}` || x.startsWith(`--${name}=`));
  return a?.includes('=') ? a.slice(a.indexOf('=') + 1) : a === undefined ? undefined : 'true';
}

describe('deploy/ manifests', () => {
  it('are all parsed, and every kind is one we validate', () => {
    expect(files.length).toBeGreaterThanOrEqual(9);
    for (const { file, doc } of docs) {
      const key = `${doc.apiVersion}/${doc.kind}`;
      expect(
        BUILT_IN[key] ?? KSERVE[doc.kind] ?? (doc.kind === 'Kustomization' ? 1 : undefined),
        `${file}: ${key}`,
      ).toBeDefined();
    }
  });

  it("validate as Kubernetes' own kinds (kubernetes-models), and an invalid one is refused", () => {
    for (const { file, doc } of docs) {
      const Kind = BUILT_IN[`${doc.apiVersion}/${doc.kind}`];
      if (Kind) expect(() => new Kind(doc).validate(), file).not.toThrow();
    }
    const bad = structuredClone(ofKind('Deployment')[0].doc);
    bad.spec.template.spec.containers[0].ports[0].containerPort = 'eighty';
    expect(() => new Deployment(bad).validate()).toThrow(/containerPort must be integer/);
  });

  it("validate as KServe's ServingRuntime and InferenceService, and a misspelt field is refused", () => {
    for (const { file, doc } of docs) {
      const v = KSERVE[doc.kind];
      if (v) expect(v(doc) ? [] : v.errors, file).toEqual([]);
    }
    const bad = structuredClone(ofKind('InferenceService')[0].doc);
    bad.spec.predictor.model.storageURI = bad.spec.predictor.model.storageUri;
    delete bad.spec.predictor.model.storageUri;
    expect(KSERVE.InferenceService(bad)).toBe(false);
    const badRuntime = structuredClone(ofKind('ServingRuntime')[0].doc);
    badRuntime.spec.containers[0].ports[0].containerPort = '8080';
    expect(KSERVE.ServingRuntime(badRuntime)).toBe(false);
  });

  const crdDir = process.env.YQP_KSERVE_CRD_DIR;
  it.skipIf(!crdDir)(
    "validate against KServe's CRD schemas (set YQP_KSERVE_CRD_DIR to KServe's config/crd/full)",
    () => {
      const crdAjv = new Ajv({ allErrors: true, strict: false, validateFormats: false });
      for (const [kind, file] of [
        ['ServingRuntime', 'serving.kserve.io_servingruntimes.yaml'],
        ['InferenceService', 'serving.kserve.io_inferenceservices.yaml'],
      ]) {
        const crd = parseAllDocuments(readFileSync(join(crdDir!, file), 'utf8'))[0].toJS() as Doc;
        const schema = crd.spec.versions.find((v: Doc) => v.served).schema.openAPIV3Schema;
        const v = crdAjv.compile(schema);
        for (const { file: f, doc } of ofKind(kind)) expect(v(doc) ? [] : v.errors, f).toEqual([]);
      }
    },
  );

  it('run yqp-trt serve with flags it has, on the port the probes, Service and scrape annotations use', () => {
    const help = spawnSync(process.execPath, [join(ROOT, 'dist/cli/main.js'), 'serve', '--help'], {
      encoding: 'utf8',
    });
    const known = new Set([...help.stdout.matchAll(/^\s+--([a-z-]+)/gm)].map((m) => m[1]));
    expect(known.has('model-repository')).toBe(true);
    for (const { file, container } of servers()) {
      const args: string[] = container.args;
      for (const a of args) {
        const name = /^--(?:no-)?([a-z-]+)/.exec(a)?.[1];
        expect(name && known.has(name), `${file}: ${a} is not a serve flag`).toBe(true);
      }
      expect(flag(args, 'model-repository'), file).toBe('/mnt/models');
      expect(flag(args, 'host'), file).toBe('0.0.0.0');
      const port = Number(flag(args, 'port'));
      // gRPC on Triton's port beside HTTP. A Deployment lists both ports; a ServingRuntime lists HTTP's alone
      // (KServe routes the one port a container lists; an InferenceService names h2c for gRPC).
      const grpcPort = Number(flag(args, 'grpc-port'));
      expect(grpcPort, file).toBe(8001);
      expect(flag(args, 'http-workers') ?? '1', `${file}: gRPC is served by one process`).toBe('1');
      expect(
        container.ports.map((p: Doc) => p.containerPort),
        file,
      ).toEqual(file.startsWith('kserve/') ? [port] : [port, grpcPort]);
      if (!file.startsWith('kserve/')) expect(container.ports[1].name, file).toBe('grpc');
      const portName = container.ports[0].name;
      const probePort = (p: Doc) => (p.httpGet.port === portName ? port : p.httpGet.port);
      expect([container.readinessProbe.httpGet.path, probePort(container.readinessProbe)], file).toEqual([
        '/v2/health/ready',
        port,
      ]);
      expect([container.livenessProbe.httpGet.path, probePort(container.livenessProbe)], file).toEqual([
        '/v2/health/live',
        port,
      ]);
      expect(container.startupProbe.httpGet.path, file).toBe('/v2/health/live');
      // Node counts the node's cores, not the pod's limit: contexts and threads are given, and fit the CPUs.
      const cpus = Number(container.resources.limits.cpu);
      const contexts = Number(flag(args, 'contexts'));
      expect(contexts * Number(flag(args, 'threads-per-context')), file).toBeLessThanOrEqual(cpus);
      expect(container.resources.requests, file).toEqual(container.resources.limits);
    }
    for (const { file, doc } of ofKind('Deployment')) {
      const a = doc.spec.template.metadata.annotations;
      const port = doc.spec.template.spec.containers[0].ports[0].containerPort;
      expect(
        [a['prometheus.io/scrape'], Number(a['prometheus.io/port']), a['prometheus.io/path']],
        file,
      ).toEqual(['true', port, '/metrics']);
    }
    for (const { file, doc } of ofKind('ServingRuntime'))
      expect(doc.spec.annotations, file).toEqual({
        'prometheus.kserve.io/port': '8080',
        'prometheus.kserve.io/path': '/metrics',
      });
  });

  it('give the drain its time: grace period >= preStop sleep + queue timeout + 5 s', () => {
    const isvcGrace = ofKind('InferenceService').map(
      ({ doc }) => doc.spec.predictor.terminationGracePeriodSeconds,
    );
    for (const { file, container, grace } of servers()) {
      const cmd: string[] = container.lifecycle.preStop.exec.command;
      const sleepMs = Number(/setTimeout\(\(\) => \{\}, (\d+)\)/.exec(cmd.join(' '))?.[1]);
      expect(sleepMs, file).toBeGreaterThanOrEqual(5000);
      const queueMs = Number(flag(container.args, 'queue-timeout-ms'));
      expect(queueMs, file).toBeGreaterThan(0);
      for (const g of grace === undefined ? isvcGrace : [grace])
        expect(g * 1000, file).toBeGreaterThanOrEqual(sleepMs + queueMs + 5000);
    }
  });

  it('run as the image user, read-only, without privileges; the repository is mounted read-only', () => {
    for (const { file, container, pod } of servers()) {
      const sc = { ...(pod.securityContext ?? {}), ...container.securityContext };
      expect(sc, file).toMatchObject({
        runAsNonRoot: true,
        runAsUser: 10001,
        readOnlyRootFilesystem: true,
        allowPrivilegeEscalation: false,
        capabilities: { drop: ['ALL'] },
      });
      expect(
        container.volumeMounts.find((m: Doc) => m.mountPath === '/tmp'),
        file,
      ).toBeDefined();
      const models = container.volumeMounts.find((m: Doc) => m.mountPath === '/mnt/models');
      if (models) expect(models.readOnly, file).toBe(true);
    }
  });

  it('give the GPU variants the -cuda image, a GPU, and one server process', () => {
    const gpu = servers().filter(
      ({ container }) => container.resources.limits['nvidia.com/gpu'] !== undefined,
    );
    expect(gpu.map((g) => g.file).sort()).toEqual([
      'kserve/servingruntime-gpu.yaml',
      'kubernetes/deployment-gpu.yaml',
    ]);
    for (const { file, container, pod } of gpu) {
      expect(container.image, file).toMatch(/:[\w.]+-cuda$/);
      expect(container.resources.limits['nvidia.com/gpu'], file).toBe('1');
      expect(flag(container.args, 'http-workers'), file).toBe('1');
      expect(
        pod.tolerations.map((t: Doc) => t.key),
        file,
      ).toContain('nvidia.com/gpu');
    }
    for (const { file, doc } of ofKind('InferenceService'))
      if (doc.spec.predictor.model.runtime.endsWith('-gpu'))
        expect(doc.spec.predictor.model.resources.limits['nvidia.com/gpu'], file).toBe('1');
  });

  it('point Services, the PDB and the HPA at the Deployments, and InferenceServices at a runtime that fits', () => {
    const deployments = ofKind('Deployment').map(({ doc }) => doc);
    const selects = (sel: Record<string, string>) =>
      deployments.filter((d) =>
        Object.entries(sel).every(([k, v]) => d.spec.template.metadata.labels[k] === v),
      );
    for (const { file, doc } of ofKind('Service')) {
      const selected = selects(doc.spec.selector);
      expect(selected, file).toHaveLength(1);
      // Every Service port reaches a named port of the container, on the same number (HTTP and gRPC).
      const ports = selected[0].spec.template.spec.containers[0].ports as Doc[];
      expect(
        doc.spec.ports.map((p: Doc) => [p.targetPort, p.port]),
        file,
      ).toEqual(ports.map((p) => [p.name, p.containerPort]));
      expect(doc.spec.ports.find((p: Doc) => p.name === 'grpc')?.appProtocol, file).toBe('kubernetes.io/h2c');
    }
    for (const { file, doc } of ofKind('ServingRuntime'))
      expect(doc.spec.protocolVersions, file).toEqual(['v2', 'grpc-v2']);
    for (const { file, doc } of ofKind('PodDisruptionBudget'))
      expect(selects(doc.spec.selector.matchLabels), file).toHaveLength(1);
    for (const { file, doc } of ofKind('HorizontalPodAutoscaler')) {
      expect(
        deployments.map((d) => d.metadata.name),
        file,
      ).toContain(doc.spec.scaleTargetRef.name);
      const metrics = readFileSync(join(ROOT, 'src/serve/metrics.ts'), 'utf8');
      for (const m of doc.spec.metrics.filter((x: Doc) => x.type === 'Pods'))
        expect(metrics, `${file}: ${m.pods.metric.name}`).toContain(`'${m.pods.metric.name}'`);
    }
    const kustomization = ofKind('Kustomization')[0].doc;
    for (const r of kustomization.resources) expect(existsSync(join(DEPLOY, 'kubernetes', r)), r).toBe(true);
    const runtimes = new Map(ofKind('ServingRuntime').map(({ doc }) => [doc.metadata.name, doc.spec]));
    for (const { file, doc } of ofKind('InferenceService')) {
      const model = doc.spec.predictor.model;
      const rt = runtimes.get(model.runtime);
      expect(rt, file).toBeDefined();
      expect(
        rt.supportedModelFormats.map((f: Doc) => f.name),
        file,
      ).toContain(model.modelFormat.name);
      expect(rt.protocolVersions, file).toContain(model.protocolVersion);
    }
  });
});
