import { TensorProto_DataType as DT } from 'onnx-buf';
import { makeTensor } from '../../onnx/tensor-codec.ts';
import { constFloat } from '../constants.ts';
import { attrInt, attrInts, GraphView } from '../graph.ts';
import { decodeTensor } from '../../onnx/tensor-codec.ts';
import type { Pass } from './pass.ts';

/**
 * Weights reached through shape-only ops on constants — Transpose (tf2onnx NHWC graphs), Reshape, Squeeze,
 * Unsqueeze, Flatten, and Cast to float (fp16 weights upcast at run time) — are folded into one float32
 * initializer, so the planner finds the weight at its consumer and can quantize it. Only float data is folded.
 */
const FOLDABLE = new Set(['Transpose', 'Reshape', 'Squeeze', 'Unsqueeze', 'Flatten', 'Cast']);

export const foldWeightChains: Pass = {
  name: 'fold-weight-chains',
  run(model) {
    const view = new GraphView(model.graph!);
    let changed = false;
    for (const n of [...view.graph.node]) {
      if (!FOLDABLE.has(n.opType) || n.domain) continue;
      const x = constFloat(view, n.input[0]);
      if (!x || view.graphOutputs.has(n.output[0])) continue;
      const shapeArg = n.input[1] && view.isConstant(n.input[1]) ? decodeTensor(view.initializers.get(n.input[1])!).data : undefined;
      if (n.input[1] && !shapeArg) continue;
      let dims: number[] | undefined;
      let data = x.data;
      switch (n.opType) {
        case 'Cast':
          if (attrInt(n, 'to', 0) !== DT.FLOAT) continue;
          dims = x.dims;
          break;
        case 'Transpose': {
          const perm = attrInts(n, 'perm') ?? x.dims.map((_, i) => x.dims.length - 1 - i);
          ({ dims, data } = transpose(x.dims, x.data, perm));
          break;
        }
        case 'Reshape':
          dims = reshapeDims(x.dims, Array.from(shapeArg ?? [], Number), attrInt(n, 'allowzero', 0) === 1);
          break;
        case 'Flatten': {
          let axis = attrInt(n, 'axis', 1);
          if (axis < 0) axis += x.dims.length;
          const a = x.dims.slice(0, axis).reduce((p, q) => p * q, 1);
          dims = [a, x.data.length / a];
          break;
        }
        case 'Squeeze': {
          const axes = (shapeArg ? Array.from(shapeArg, Number) : attrInts(n, 'axes'))?.map((a) => (a < 0 ? a + x.dims.length : a));
          dims = x.dims.filter((d, i) => (axes ? !axes.includes(i) : d !== 1));
          break;
        }
        case 'Unsqueeze': {
          const raw = shapeArg ? Array.from(shapeArg, Number) : attrInts(n, 'axes');
          if (!raw) continue;
          const rank = x.dims.length + raw.length;
          const axes = raw.map((a) => (a < 0 ? a + rank : a));
          dims = [];
          let k = 0;
          for (let i = 0; i < rank; i++) dims.push(axes.includes(i) ? 1 : x.dims[k++]);
          break;
        }
      }
      if (!dims) continue;
      const name = view.freshName(`${n.output[0]}_folded`);
      view.addInitializer(makeTensor(name, DT.FLOAT, dims, data));
      view.removeNode(n);
      view.replaceAllUses(n.output[0], name);
      changed = true;
    }
    if (changed) view.pruneInitializers();
    return changed;
  },
};

export function transpose(dims: number[], data: Float32Array, perm: number[]): { dims: number[]; data: Float32Array } {
  const rank = dims.length;
  const outDims = perm.map((p) => dims[p]);
  const inStrides = new Array<number>(rank);
  let s = 1;
  for (let i = rank - 1; i >= 0; i--) {
    inStrides[i] = s;
    s *= dims[i];
  }
  const out = new Float32Array(data.length);
  const idx = new Array<number>(rank).fill(0);
  const permStrides = perm.map((p) => inStrides[p]);
  for (let o = 0; o < out.length; o++) {
    let src = 0;
    for (let i = 0; i < rank; i++) src += idx[i] * permStrides[i];
    out[o] = data[src];
    for (let i = rank - 1; i >= 0; i--) {
      if (++idx[i] < outDims[i]) break;
      idx[i] = 0;
    }
  }
  return { dims: outDims, data: out };
}

export function reshapeDims(inDims: number[], shape: number[], allowZero: boolean): number[] {
  const total = inDims.reduce((a, b) => a * b, 1);
  const out = shape.map((d, i) => (d === 0 && !allowZero ? inDims[i] : d));
  const known = out.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
  return out.map((d) => (d === -1 ? total / known : d));
}
