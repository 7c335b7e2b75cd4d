import { onnx, type ModelProto, type NodeProto } from './model.js';

/** onnxruntime's contrib domain, where FusedConv lives (its CPU and CUDA kernels, float32). */
export const MS_DOMAIN = 'com.microsoft';

export interface ConvAddReluReport {
  /** Conv -> Add -> Relu chains now one FusedConv with the Add's other input as its sum (Z). */
  fused: number;
}

/**
 * Rewrites each residual Conv -> Add -> Relu chain into one onnxruntime FusedConv(X, W, B, Z, activation Relu):
 * Relu(Conv(X) + Z) in one node. Why: onnxruntime fuses Conv -> Relu by itself but leaves a residual Add between
 * them, so on its CUDA provider such a block is three launches (the convolution, the Add, the Relu); FusedConv
 * hands all three to cuDNN as one operation graph. BlazeFace has 16 such blocks of its 37 Convs.
 *
 * A chain is fused only where nothing else reads the Conv's or the Add's output, the Conv has at most a bias, and
 * the Add's other input is an activation (not an initializer, which could broadcast): the sum must have the
 * Conv output's shape, as in a residual block. FusedConv has float32 kernels only: run this on FP32 models.
 */
export function fuseConvAddRelu(proto: ModelProto): ConvAddReluReport {
  const graph = proto.graph!;
  const nodes = graph.node ?? [];
  const inits = new Set((graph.initializer ?? []).map((t) => t.name ?? ''));
  const outputs = new Set((graph.output ?? []).map((o) => o.name ?? ''));
  const readers = new Map<string, NodeProto[]>();
  const producer = new Map<string, NodeProto>();
  for (const n of nodes) {
    for (const i of n.input ?? []) if (i) readers.set(i, [...(readers.get(i) ?? []), n]);
    for (const o of n.output ?? []) producer.set(o, n);
  }
  const onlyReader = (tensor: string): NodeProto | undefined => {
    const r = readers.get(tensor) ?? [];
    return r.length === 1 && !outputs.has(tensor) ? r[0] : undefined;
  };
  const standard = (n: NodeProto) => !n.domain || n.domain === 'ai.onnx';
  const removed = new Set<NodeProto>(); // each fused chain's Conv, Add and Relu
  const fusedAt = new Map<NodeProto, NodeProto>(); // an Add -> the FusedConv that takes its place
  for (const add of nodes) {
    if (add.opType !== 'Add' || !standard(add) || (add.input ?? []).length !== 2) continue;
    const relu = onlyReader(add.output![0]);
    if (!relu || relu.opType !== 'Relu' || !standard(relu)) continue;
    for (const side of [0, 1]) {
      const convOut = add.input![side];
      const z = add.input![1 - side];
      const conv = producer.get(convOut);
      // The Conv read by this Add alone: no other Add can claim it.
      if (!conv || conv.opType !== 'Conv' || !standard(conv) || onlyReader(convOut) !== add) continue;
      if ((conv.input ?? []).length > 3 || inits.has(z) || z === convOut) continue;
      const [x, w, b] = conv.input!;
      fusedAt.set(
        add,
        onnx.NodeProto.create({
          name: `${conv.name || convOut}_add_relu`,
          opType: 'FusedConv',
          domain: MS_DOMAIN,
          input: [x, w, b ?? '', z],
          output: [relu.output![0]],
          attribute: [
            ...(conv.attribute ?? []),
            onnx.AttributeProto.create({
              name: 'activation',
              type: onnx.AttributeProto.AttributeType.STRING,
              s: new TextEncoder().encode('Relu'),
            }),
          ],
        }),
      );
      removed.add(conv).add(add).add(relu);
      break;
    }
  }
  if (fusedAt.size === 0) return { fused: 0 };
  // The FusedConv sits where the Add was: after the producers of both X and Z (the block's skip), so the order
  // stays topological.
  graph.node = nodes.flatMap((n) => (fusedAt.has(n) ? [fusedAt.get(n)!] : removed.has(n) ? [] : [n]));
  if (!(proto.opsetImport ?? []).some((o) => o.domain === MS_DOMAIN))
    proto.opsetImport = [
      ...(proto.opsetImport ?? []),
      onnx.OperatorSetIdProto.create({ domain: MS_DOMAIN, version: 1 }),
    ];
  return { fused: fusedAt.size };
}
