import type { NodeProto } from 'onnx-buf';
import { addFloatInitializer, constFloat } from '../constants.ts';
import { attrFloat, attrInt, GraphView, setAttr } from '../graph.ts';
import type { Pass } from './pass.ts';

/**
 * BatchNormalization after Conv / ConvTranspose / Gemm folds into the weight and bias:
 *   s = γ / √(var + ε),  W'[o] = W[o]·s[o],  b' = (b − mean)·s + β.
 * Computed in float64 and rounded once to float32, so the folded layer differs from the pair by float32 rounding only.
 */
export const foldBatchNorm: Pass = {
  name: 'fold-batchnorm',
  run(model) {
    const view = new GraphView(model.graph!);
    let changed = false;
    for (const bn of [...view.graph.node]) {
      if (bn.opType !== 'BatchNormalization' || bn.domain) continue;
      if (bn.output.slice(1).some((o) => o)) continue; // training outputs requested
      const layer = view.producer.get(bn.input[0]);
      if (!layer || !['Conv', 'Gemm'].includes(layer.opType) || layer.domain) continue;
      if (view.uses(bn.input[0]).length !== 1 || view.graphOutputs.has(bn.input[0])) continue;
      const [gamma, beta, mean, variance] = bn.input.slice(1, 5).map((n) => constFloat(view, n));
      const w = constFloat(view, layer.input[1]);
      if (!gamma || !beta || !mean || !variance || !w) continue;
      const eps = attrFloat(bn, 'epsilon', 1e-5);
      const C = gamma.data.length;
      const s = new Float64Array(C);
      for (let c = 0; c < C; c++) s[c] = gamma.data[c] / Math.sqrt(variance.data[c] + eps);
      const channelOf = weightChannelMap(layer, w.dims, C);
      if (!channelOf) continue;
      const bias = layer.input[2] ? constFloat(view, layer.input[2]) : undefined;
      if (layer.input[2] && !bias) continue;
      if (layer.opType === 'Gemm' && bias && bias.data.length !== C && bias.data.length !== 1) continue;
      const biasAt = (c: number) => (bias ? (bias.data.length === 1 ? bias.data[0] : bias.data[c]) : 0);
      const betaGemm = layer.opType === 'Gemm' ? attrFloat(layer, 'beta', 1) : 1;
      const nw = new Float32Array(w.data.length);
      for (let i = 0; i < nw.length; i++) nw[i] = w.data[i] * s[channelOf(i)];
      const nb = new Float32Array(C);
      for (let c = 0; c < C; c++) nb[c] = (betaGemm * biasAt(c) - mean.data[c]) * s[c] + beta.data[c];
      view.setInput(layer, 1, addFloatInitializer(view, `${layer.input[1]}_bnfold`, w.dims, nw));
      const biasName = addFloatInitializer(view, `${layer.name || layer.output[0]}_bias_bnfold`, [C], nb);
      if (layer.input.length < 3) layer.input.push('');
      view.setInput(layer, 2, biasName);
      if (layer.opType === 'Gemm') setAttr(layer, 'beta', { float: 1 });
      // The layer now writes the BN's output name directly.
      const out = bn.output[0];
      view.removeNode(bn);
      layer.output[0] = out;
      view.reindex();
      changed = true;
    }
    if (changed) view.pruneInitializers();
    return changed;
  },
};

/** For each flat weight index, the output channel it feeds; undefined when the layout does not match C channels. */
export function weightChannelMap(layer: NodeProto, dims: number[], C: number): ((i: number) => number) | undefined {
  const inner = dims.slice(2).reduce((a, b) => a * b, 1);
  if (layer.opType === 'Conv') {
    if (dims[0] !== C) return undefined;
    const per = dims.slice(1).reduce((a, b) => a * b, 1);
    return (i) => Math.floor(i / per);
  }
  if (layer.opType === 'ConvTranspose') {
    const group = attrInt(layer, 'group', 1);
    const cinPerGroup = dims[0] / group;
    const coutPerGroup = dims[1];
    if (coutPerGroup * group !== C) return undefined;
    return (i) => {
      const j = Math.floor(i / inner) % coutPerGroup;
      const cin = Math.floor(i / (inner * coutPerGroup));
      return Math.floor(cin / cinPerGroup) * coutPerGroup + j;
    };
  }
  if (layer.opType === 'Gemm') {
    if (dims.length !== 2) return undefined;
    const transB = attrInt(layer, 'transB', 0);
    if (transB ? dims[0] !== C : dims[1] !== C) return undefined;
    return transB ? (i) => Math.floor(i / dims[1]) : (i) => i % dims[1];
  }
  return undefined;
}
