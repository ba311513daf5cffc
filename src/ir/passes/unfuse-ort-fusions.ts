import { TensorProto_DataType as DT, type NodeProto } from 'onnx-buf';
import { makeTensor } from '../../onnx/tensor-codec.ts';
import { attr, attrString, GraphView, makeNode, opsetVersion, type AttrValue } from '../graph.ts';
import type { Pass } from './pass.ts';

/**
 * onnxruntime's layer + activation fusions (com.microsoft FusedConv, FusedGemm) split back into the ONNX layer and its
 * activation. A model saved by onnxruntime after its 'extended' optimisations (`optimized_model_filepath`) holds its
 * Conv → Relu/Clip/… and Gemm → Relu pairs as those contrib ops, whose layers the rules never saw: they stayed float
 * without a word (resnet20 saved so: 12 of 22 layers quantized; KWS-DNN_S: 1 of 4).
 * - FusedConv computes Y = act(Conv(X, W, B) + Z), act one of MLAS's fused activations (Relu, Tanh, Sigmoid,
 *   LeakyRelu(α), Clip(min, max), HardSigmoid(α, β): contrib_ops/cpu/fused_activation.cc), accumulating W·X onto Z
 *   and adding B after: the split keeps that order, ((W·X) + Z) + B.
 * - FusedGemm computes act(α·A'·B' + β·C) with Gemm's own kernel and the activation after it; split for the
 *   activations without parameters (Relu, Tanh, Sigmoid).
 * Each split is tested bit for bit against onnxruntime's kernel, and every shared, corpus and npm model saved at level
 * 'extended' plans what the model itself plans. A fusion with another activation stays, and the planner reports it.
 */
const CONV_ACTIVATIONS: Record<string, (params: number[]) => Record<string, AttrValue> | undefined> = {
  Relu: () => ({}),
  Tanh: () => ({}),
  Sigmoid: () => ({}),
  LeakyRelu: (p) => (p.length === 1 ? { alpha: { float: p[0] } } : undefined),
  HardSigmoid: (p) => (p.length === 2 ? { alpha: { float: p[0] }, beta: { float: p[1] } } : undefined),
  Clip: (p) => (p.length === 2 ? {} : undefined),
};
const GEMM_ACTIVATIONS = new Set(['Relu', 'Tanh', 'Sigmoid']);
const CONV_ATTRS = new Set(['auto_pad', 'dilations', 'group', 'kernel_shape', 'pads', 'strides']);
const GEMM_ATTRS = new Set(['alpha', 'beta', 'transA', 'transB']);

/** The nodes FusedConv `n` splits into, or undefined where it stays. */
function splitConv(view: GraphView, n: NodeProto, opset: number): NodeProto[] | undefined {
  const kind = attrString(n, 'activation', '');
  const params = [...(attr(n, 'activation_params')?.floats ?? [])];
  const actAttrs = kind ? CONV_ACTIVATIONS[kind]?.(params) : {};
  if (!actAttrs) return undefined;
  const [x, w, b, z] = n.input;
  const y = n.output[0];
  // With Z the kernel accumulates W·X onto Z and adds B after, ((W·X) + Z) + B: the same order here, B as a
  // per-channel constant after Z (without Z, Conv adds B to W·X as the kernel does).
  const wRank = view.initializers.get(w)?.dims.length;
  const bias = b ? view.initializers.get(b) : undefined;
  if (z && b && (!bias || wRank === undefined)) return undefined;
  const conv = makeNode('Conv', [x, w, ...(b && !z ? [b] : [])], [kind || z ? view.freshName(`${y}_conv`) : y], n.name || `${y}_Conv`);
  conv.attribute = n.attribute.filter((a) => CONV_ATTRS.has(a.name));
  const nodes = [conv];
  const then = (op: string, inputs: string[], tag: string, final: boolean, attrs: Record<string, AttrValue> = {}) =>
    nodes.push(makeNode(op, [nodes.at(-1)!.output[0], ...inputs], [final ? y : view.freshName(`${y}_${tag}`)], `${conv.name}_${tag}`, attrs));
  if (z) then('Add', [z], 'add_z', !kind && !bias);
  if (z && bias) {
    const channelBias = view.freshName(`${b}_per_channel`);
    view.addInitializer({ ...bias, name: channelBias, dims: [1n, ...bias.dims, ...Array<bigint>(wRank! - 2).fill(1n)] });
    then('Add', [channelBias], 'add_bias', !kind);
  }
  if (kind === 'Clip' && opset >= 11) {
    const bounds = ['min', 'max'].map((m, i) => {
      const name = view.freshName(`${conv.name}_clip_${m}`);
      view.addInitializer(makeTensor(name, DT.FLOAT, [], [params[i]]));
      return name;
    });
    then('Clip', bounds, 'clip', true);
  } else if (kind) then(kind, [], kind.toLowerCase(), true, kind === 'Clip' ? { min: { float: params[0] }, max: { float: params[1] } } : actAttrs);
  return nodes;
}

/** The nodes FusedGemm `n` splits into, or undefined where it stays. */
function splitGemm(view: GraphView, n: NodeProto): NodeProto[] | undefined {
  const kind = attrString(n, 'activation', ''); // onnxruntime's kernel refuses a FusedGemm without one
  if (!GEMM_ACTIVATIONS.has(kind)) return undefined;
  const y = n.output[0];
  const gemm = makeNode('Gemm', [...n.input], [view.freshName(`${y}_gemm`)], n.name || `${y}_Gemm`);
  gemm.attribute = n.attribute.filter((a) => GEMM_ATTRS.has(a.name));
  return [gemm, makeNode(kind, [gemm.output[0]], [y], `${gemm.name}_${kind.toLowerCase()}`)];
}

export const unfuseOrtFusions: Pass = {
  name: 'unfuse-ort-fusions',
  run(model) {
    const view = new GraphView(model.graph!);
    const opset = opsetVersion(model);
    let changed = false;
    for (const n of [...view.graph.node]) {
      if (n.domain !== 'com.microsoft') continue;
      const nodes = n.opType === 'FusedConv' ? splitConv(view, n, opset) : n.opType === 'FusedGemm' ? splitGemm(view, n) : undefined;
      if (!nodes) continue;
      const at = view.graph.node.indexOf(n);
      view.removeNode(n);
      nodes.forEach((m, i) => view.addNode(m, at + i));
      changed = true;
    }
    return changed;
  },
};
