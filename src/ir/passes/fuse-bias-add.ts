import { addFloatInitializer, constFloat } from '../constants.ts';
import { attrFloat, GraphView, setAttr } from '../graph.ts';
import { weightChannelMap } from './fold-batchnorm.ts';
import type { Pass } from './pass.ts';

/**
 * Conv/ConvTranspose/Gemm followed by Add of a per-channel constant (TF and old exports add the bias separately):
 * the constant joins the layer's bias, so the bias stays float and the quantizer sees a single layer. The constant
 * must broadcast along the channel axis only: shape [C,1,…] / [1,C,1,…] for convolutions, [C] / [1,C] for Gemm,
 * or a single value.
 */
export const fuseBiasAdd: Pass = {
  name: 'fuse-bias-add',
  run(model) {
    const view = new GraphView(model.graph!);
    let changed = false;
    for (const add of [...view.graph.node]) {
      if (add.opType !== 'Add' || add.domain) continue;
      for (const side of [0, 1]) {
        const layer = view.producer.get(add.input[side]);
        const k = constFloat(view, add.input[1 - side]);
        // ConvTranspose is left alone: onnxruntime 1.30 returned garbage (~1e32) for stride-1 ConvTranspose with a fused
        // bias on agllnet_256 (corpus) while the Add form is exact; the bias stays float either way.
        if (!layer || !k || !['Conv', 'Gemm'].includes(layer.opType) || layer.domain) continue;
        if (view.uses(add.input[side]).length !== 1 || view.graphOutputs.has(add.input[side])) continue;
        const w = constFloat(view, layer.input[1]);
        if (!w) continue;
        const C = layer.opType === 'ConvTranspose' ? w.dims[1] * Number(layer.attribute.find((a) => a.name === 'group')?.i ?? 1) : layer.opType === 'Gemm' ? (Number(layer.attribute.find((a) => a.name === 'transB')?.i ?? 0) ? w.dims[0] : w.dims[1]) : w.dims[0];
        if (!weightChannelMap(layer, w.dims, C)) continue;
        if (!perChannel(k.dims, C, layer.opType === 'Gemm', w.dims.length - 2)) continue;
        const bias = layer.input[2] ? constFloat(view, layer.input[2]) : undefined;
        if (layer.input[2] && (!bias || (bias.data.length !== C && bias.data.length !== 1))) continue;
        const betaGemm = layer.opType === 'Gemm' ? attrFloat(layer, 'beta', 1) : 1;
        const nb = new Float32Array(C);
        for (let c = 0; c < C; c++) {
          const b = bias ? bias.data[bias.data.length === 1 ? 0 : c] : 0;
          nb[c] = betaGemm * b + k.data[k.data.length === 1 ? 0 : c];
        }
        if (layer.input.length < 3) layer.input.push('');
        view.setInput(layer, 2, addFloatInitializer(view, `${layer.name || layer.output[0]}_bias_fused`, [C], nb));
        if (layer.opType === 'Gemm') setAttr(layer, 'beta', { float: 1 });
        const out = add.output[0];
        view.removeNode(add);
        layer.output[0] = out;
        view.reindex();
        changed = true;
        break;
      }
    }
    if (changed) view.pruneInitializers();
    return changed;
  },
};

/** Does a constant of these dims add one value per output channel (or one value overall)? */
function perChannel(dims: number[], C: number, gemm: boolean, spatialRank: number): boolean {
  const n = dims.reduce((a, b) => a * b, 1);
  if (n === 1) return dims.length <= (gemm ? 2 : spatialRank + 2);
  if (n !== C) return false;
  if (gemm) return dims.length === 1 || (dims.length === 2 && dims[0] === 1);
  // C must sit at the channel axis once right-aligned against [N, C, spatial…]: [C,1,1] or [1,C,1,1] for 2-D
  // convolutions; a bare [C] would broadcast along the last spatial axis — not a bias.
  const nonOne = dims.map((d, i) => (d === 1 ? -1 : i)).filter((i) => i >= 0);
  return nonOne.length === 1 && dims.length - nonOne[0] === spatialRank + 1 && dims.length <= spatialRank + 2;
}
