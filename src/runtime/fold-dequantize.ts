/**
 * Constant DequantizeLinear folding for simulation sessions. With graph optimizations disabled (simulate mode),
 * onnxruntime dequantizes every constant weight on every run; its output never changes, so it is computed once
 * here with onnxruntime's own arithmetic and stored as a float32 initializer: y = float32((x − zp) · s) per element
 * (integer x: the difference is an exact integer, the product one float32 rounding, as ORT's kernel;
 * float8 x: the decoded value times s, zero point 0). Outputs are bit-identical (test/qdq-exact.test.ts), runs are
 * cheaper. Blocked (block_size) and non-float32-scale nodes are left alone, as are DQ outputs that are fetched.
 */
import { clone } from '@bufbuild/protobuf';
import { ModelProtoSchema, TensorProto_DataType as DT, type ModelProto } from 'onnx-buf';
import { attrInt, GraphView } from '../ir/graph.ts';
import { dtypeInfo } from '../onnx/dtype.ts';
import { makeTensor, tensorDims, tensorToFloat32 } from '../onnx/tensor-codec.ts';
import { forEachChannelRun } from '../quant/numerics.ts';

export function foldConstantDequantize(input: ModelProto, keep: ReadonlySet<string> = new Set()): { model: ModelProto; folded: number } {
  const view0 = new GraphView(input.graph!);
  const foldable = view0.graph.node.filter((n) => {
    if (n.opType !== 'DequantizeLinear' || n.domain !== '' || !n.output[0] || keep.has(n.output[0]) || view0.graphOutputs.has(n.output[0])) return false;
    if (attrInt(n, 'block_size', 0) !== 0) return false;
    const [x, s, zp] = [n.input[0], n.input[1], n.input[2]];
    if (!view0.isConstant(x) || !view0.isConstant(s) || (zp && !view0.isConstant(zp))) return false;
    return view0.initializers.get(s)!.dataType === DT.FLOAT;
  });
  if (!foldable.length) return { model: input, folded: 0 };
  const model = clone(ModelProtoSchema, input);
  const view = new GraphView(model.graph!);
  const names = new Set(foldable.map((n) => n.output[0]));
  for (const n of view.graph.node.filter((m) => m.opType === 'DequantizeLinear' && names.has(m.output[0]))) {
    const xt = view.initializers.get(n.input[0])!;
    const dims = tensorDims(xt);
    const x = tensorToFloat32(xt);
    const s = tensorToFloat32(view.initializers.get(n.input[1])!);
    const zp = n.input[2] ? tensorToFloat32(view.initializers.get(n.input[2])!) : new Float32Array(s.length);
    const float8 = !!dtypeInfo(xt.dataType).float8;
    if (float8 && zp.some((v) => v !== 0)) continue; // not produced by onnxquant; left to onnxruntime
    const rank = dims.length;
    const y = new Float32Array(x.length);
    forEachChannelRun(dims, s.length > 1 ? (attrInt(n, 'axis', 1) + rank) % rank : undefined, (start, end, c) => {
      const [sc, z] = [s[c], zp[c]];
      for (let i = start; i < end; i++) y[i] = Math.fround((x[i] - z) * sc);
    });
    view.addInitializer(makeTensor(n.output[0], DT.FLOAT, dims, y));
  }
  const folded = new Set(view.graph.initializer.map((t) => t.name));
  view.graph.node = view.graph.node.filter((m) => !(m.opType === 'DequantizeLinear' && names.has(m.output[0]) && folded.has(m.output[0])));
  view.reindex();
  view.pruneInitializers();
  return { model, folded: names.size };
}
