import type onnxProto from 'onnx-proto';
import { YqpError } from '../errors.js';
import { int64Initializer, onnx, readInt64s, type ModelProto, type TensorProto } from './model.js';

export interface DynamicBatchReport {
  /** Graph inputs and outputs whose first dimension became the symbolic 'batch'. */
  tensors: string[];
  /** Reshape nodes whose constant target hard-coded batch 1. */
  reshapes: string[];
  /** ConstantOfShape nodes whose constant shape hard-coded batch 1. */
  constantOfShapes: string[];
}

const BATCH_PARAM = 'batch';

/**
 * Turns a fixed batch dimension (dim 0 of every graph input and output) into a dynamic one.
 * Constant Reshape targets and ConstantOfShape shapes that hard-code batch 1 are rewritten to take the
 * batch from the first graph input at run time (Shape -> Gather(0) -> Concat with the other dims), which
 * is exact for batch-first models and keeps TensorRT's shape analysis simple. value_info entries are
 * dropped since they record the old fixed batch. The caller proves the result (batch N == N single runs).
 */
export function makeBatchDynamic(proto: ModelProto): DynamicBatchReport {
  const graph = proto.graph!;
  const initializers = new Map((graph.initializer ?? []).map((t) => [t.name!, t]));
  const constantNodes = new Map(
    (graph.node ?? [])
      .filter((n) => n.opType === 'Constant')
      .map((n) => [n.output![0], n.attribute?.find((a) => a.name === 'value')?.t as TensorProto | undefined]),
  );
  const inputs = (graph.input ?? []).filter((i) => !initializers.has(i.name!));
  if (inputs.length === 0) throw new YqpError('E_MODEL_FILE', 'Model has no graph inputs to batch');
  const report: DynamicBatchReport = { tensors: [], reshapes: [], constantOfShapes: [] };

  for (const vi of [...inputs, ...(graph.output ?? [])]) {
    const dims = vi.type?.tensorType?.shape?.dim;
    if (!dims || dims.length === 0) {
      throw new YqpError(
        'E_MODEL_FILE',
        `Cannot add a batch dimension: ${vi.name} is a scalar or has no shape`,
        {
          argument: vi.name ?? '',
        },
      );
    }
    dims[0] = onnx.TensorShapeProto.Dimension.create({ dimParam: BATCH_PARAM });
    report.tensors.push(vi.name!);
  }
  graph.valueInfo = [];

  // One shared batch-size tensor: Gather(Shape(first input), [0]) -> int64[1].
  const first = inputs[0].name!;
  const prefix = 'yqp_dynamic_batch';
  const shapeOut = `${prefix}/shape`;
  const batchOut = `${prefix}/batch`;
  const indexName = `${prefix}/index0`;
  let needBatchTensor = false;
  const newNodes: onnxProto.onnx.INodeProto[] = [];

  const constantValues = (name: string): number[] | undefined => {
    const t = initializers.get(name) ?? constantNodes.get(name);
    return t && t.dataType === 7 ? readInt64s(t) : undefined;
  };

  for (const node of graph.node ?? []) {
    const isReshape = node.opType === 'Reshape';
    const isConstantOfShape = node.opType === 'ConstantOfShape';
    if (!isReshape && !isConstantOfShape) continue;
    const shapeInput = isReshape ? node.input![1] : node.input![0];
    const values = constantValues(shapeInput);
    if (!values || values.length < 2 || values[0] !== 1) continue;
    needBatchTensor = true;
    const restName = `${prefix}/${node.name || node.output![0]}/rest`;
    const concatOut = `${prefix}/${node.name || node.output![0]}/shape`;
    graph.initializer!.push(int64Initializer(restName, values.slice(1)));
    newNodes.push(
      onnx.NodeProto.create({
        name: `${prefix}/${node.name || node.output![0]}/concat`,
        opType: 'Concat',
        input: [batchOut, restName],
        output: [concatOut],
        attribute: [
          onnx.AttributeProto.create({ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 0 }),
        ],
      }),
    );
    if (isReshape) {
      node.input![1] = concatOut;
      report.reshapes.push(node.name || node.output![0]);
    } else {
      node.input![0] = concatOut;
      report.constantOfShapes.push(node.name || node.output![0]);
    }
  }

  if (needBatchTensor) {
    graph.initializer!.push(int64Initializer(indexName, [0]));
    const head = [
      onnx.NodeProto.create({ name: `${prefix}/Shape`, opType: 'Shape', input: [first], output: [shapeOut] }),
      onnx.NodeProto.create({
        name: `${prefix}/Gather`,
        opType: 'Gather',
        input: [shapeOut, indexName],
        output: [batchOut],
        attribute: [
          onnx.AttributeProto.create({ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 0 }),
        ],
      }),
    ];
    // Nodes must stay topologically sorted: the new ones only depend on the graph input and initializers.
    graph.node = [...head, ...newNodes, ...(graph.node ?? [])];
  }
  removeUnusedInitializers(proto);
  return report;
}

/** Drops initializers no node reads (the replaced constant shapes), so runtimes do not warn about them. */
export function removeUnusedInitializers(proto: ModelProto): void {
  const graph = proto.graph!;
  // Subgraphs (If, Loop, Scan) may read outer initializers by name: leave such models alone.
  if ((graph.node ?? []).some((n) => (n.attribute ?? []).some((a) => a.g || (a.graphs ?? []).length))) return;
  const used = new Set<string>();
  for (const n of graph.node ?? []) for (const i of n.input ?? []) used.add(i);
  for (const o of graph.output ?? []) used.add(o.name!);
  graph.initializer = (graph.initializer ?? []).filter((t) => used.has(t.name!));
}
