import { TensorProto_DataType as DT } from 'onnx-buf';
import { makeTensor } from '../../onnx/tensor-codec.ts';
import { attr, attrString, GraphView, makeNode, opsetVersion, type AttrValue } from '../graph.ts';
import type { Pass } from './pass.ts';

/**
 * onnxruntime's FusedConv (com.microsoft) split back into Conv → (Add Z) → activation. A model saved by onnxruntime
 * after its 'extended' optimisations (`optimized_model_filepath`) has its Conv → Relu/Clip/… pairs fused into that
 * contrib op, whose Convs the rules never saw: they stayed float without a word. FusedConv computes
 * Y = act(Conv(X, W, B) + Z) with act one of MLAS's fused activations (Relu, Tanh, Sigmoid, LeakyRelu(α), Clip(min,
 * max), HardSigmoid(α, β); contrib_ops/cpu/fused_activation.cc); the split computes the same in the same order (tested
 * bit for bit against the kernel for each activation, with and without Z), and a real network saved that way formats
 * to the original network's outputs bit for bit. A FusedConv with another activation stays, and the planner reports
 * it.
 */
const ACTIVATIONS: Record<string, (params: number[]) => Record<string, AttrValue> | undefined> = {
  Relu: () => ({}),
  Tanh: () => ({}),
  Sigmoid: () => ({}),
  LeakyRelu: (p) => (p.length === 1 ? { alpha: { float: p[0] } } : undefined),
  HardSigmoid: (p) => (p.length === 2 ? { alpha: { float: p[0] }, beta: { float: p[1] } } : undefined),
  Clip: (p) => (p.length === 2 ? {} : undefined),
};
const CONV_ATTRS = new Set(['auto_pad', 'dilations', 'group', 'kernel_shape', 'pads', 'strides']);

export const unfuseFusedConv: Pass = {
  name: 'unfuse-fused-conv',
  run(model) {
    const view = new GraphView(model.graph!);
    const opset = opsetVersion(model);
    let changed = false;
    for (const n of [...view.graph.node]) {
      if (n.opType !== 'FusedConv' || n.domain !== 'com.microsoft') continue;
      const kind = attrString(n, 'activation', '');
      const params = [...(attr(n, 'activation_params')?.floats ?? [])];
      const actAttrs = kind ? ACTIVATIONS[kind]?.(params) : {};
      if (!actAttrs) continue;
      const [x, w, b, z] = n.input;
      const y = n.output[0];
      // With Z the kernel accumulates W·X onto Z and adds B after, ((W·X) + Z) + B: the same order here, B as a
      // per-channel constant after Z (without Z, Conv adds B to W·X as the kernel does).
      const wDims = view.initializers.get(w)?.dims.length;
      const bias = b && view.initializers.get(b);
      if (z && b && (!bias || wDims === undefined)) continue;
      const conv = makeNode('Conv', [x, w, ...(b && !z ? [b] : [])], [kind || z ? view.freshName(`${y}_conv`) : y], n.name || `${y}_Conv`);
      conv.attribute = n.attribute.filter((a) => CONV_ATTRS.has(a.name));
      const nodes = [conv];
      let last = conv.output[0];
      const then = (op: string, other: string, tag: string, final: boolean) => {
        nodes.push(makeNode(op, [last, other], [final ? y : view.freshName(`${y}_${tag}`)], `${conv.name}_${tag}`));
        last = nodes.at(-1)!.output[0];
      };
      if (z) then('Add', z, 'add_z', !kind && !b);
      if (z && bias) {
        const channelBias = view.freshName(`${b}_per_channel`);
        view.addInitializer({ ...bias, name: channelBias, dims: [1n, ...bias.dims, ...Array<bigint>(wDims! - 2).fill(1n)] });
        then('Add', channelBias, 'add_bias', !kind);
      }
      if (kind === 'Clip' && opset >= 11) {
        const [lo, hi] = ['min', 'max'].map((m, i) => {
          const name = view.freshName(`${conv.name}_clip_${m}`);
          view.addInitializer(makeTensor(name, DT.FLOAT, [], [params[i]]));
          return name;
        });
        nodes.push(makeNode('Clip', [last, lo, hi], [y], `${conv.name}_clip`));
      } else if (kind) nodes.push(makeNode(kind, [last], [y], `${conv.name}_${kind.toLowerCase()}`, kind === 'Clip' ? { min: { float: params[0] }, max: { float: params[1] } } : actAttrs));
      const at = view.graph.node.indexOf(n);
      view.removeNode(n);
      nodes.forEach((m, i) => view.addNode(m, at + i));
      changed = true;
    }
    return changed;
  },
};
