import { TensorProto_DataType as DT, type GraphProto, type NodeProto, type TensorProto } from 'onnx-buf';
import { makeTensor } from '../../onnx/tensor-codec.ts';
import { walkGraphs } from '../graph.ts';
import type { Pass } from './pass.ts';

/** Constant node → initializer (Paddle2ONNX keeps every weight in Constant nodes; planners look for initializers). */
export function constantTensor(n: NodeProto): TensorProto | undefined {
  const out = n.output[0];
  for (const a of n.attribute) {
    switch (a.name) {
      case 'value':
        if (a.t) return { ...a.t, name: out };
        return undefined;
      case 'value_float':
        return makeTensor(out, DT.FLOAT, [], [a.f]);
      case 'value_floats':
        return makeTensor(out, DT.FLOAT, [a.floats.length], a.floats);
      case 'value_int':
        return makeTensor(out, DT.INT64, [], [Number(a.i)]);
      case 'value_ints':
        return makeTensor(out, DT.INT64, [a.ints.length], a.ints.map(Number));
    }
  }
  return undefined; // sparse_value / value_string(s): left as nodes
}

function convertGraph(g: GraphProto): boolean {
  let changed = false;
  const kept: NodeProto[] = [];
  for (const n of g.node) {
    const t = n.opType === 'Constant' && (n.domain === '' || n.domain === 'ai.onnx') ? constantTensor(n) : undefined;
    if (t) {
      g.initializer.push(t);
      changed = true;
    } else kept.push(n);
  }
  g.node = kept;
  return changed;
}

export const constantToInitializer: Pass = {
  name: 'constant-to-initializer',
  run(model) {
    let changed = false;
    for (const g of walkGraphs(model.graph!)) changed = convertGraph(g) || changed;
    return changed;
  },
};
