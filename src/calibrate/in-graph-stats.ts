/**
 * Percentile statistics computed inside onnxruntime: for each activation the graph gets PPQ's index arithmetic
 * (in double, as Python does it) and two TopK nodes, so only two scalars per tensor leave the runtime instead of the
 * whole tensor — the fetch and the JS selection were over half of calibration time on en_number (bench/). For a
 * tensor x with n elements and percentile p:
 *   kMin = max(0, floor(n·(1−p))) + 1   → the kMin-th smallest = TopK(flat(x), kMin, largest=0)[last]
 *   kMax = n − min(floor(n·p), n−1)     → the kMax-th largest  = TopK(flat(x), kMax, largest=1)[last]
 * which are exactly the order statistics PercentileObserver selects in JS (tested equal). The TopKs run on a few
 * rows picked by one ReduceMin/ReduceMax pass (see below), so the cost is close to that of the min/max observer.
 */
import { clone, create } from '@bufbuild/protobuf';
import { ModelProtoSchema, TensorProto_DataType as DT, ValueInfoProtoSchema, type ModelProto } from 'onnx-buf';
import { makeNode, opsetVersion } from '../ir/graph.ts';
import { makeTensor } from '../onnx/tensor-codec.ts';

export interface OrderStatOutputs {
  /** Output holding the k smallest values (ascending); the last one is the statistic. */
  lo: string;
  /** Output holding the k largest values (descending); the last one is the statistic. */
  hi: string;
}

export function appendPercentileStats(input: ModelProto, tensors: readonly { tensor: string; percentile: number }[]): { model: ModelProto; outputs: Map<string, OrderStatOutputs> } {
  const model = clone(ModelProtoSchema, input);
  const g = model.graph!;
  const c = (name: string, dt: number, dims: number[], v: number[]) => g.initializer.push(makeTensor(name, dt, dims, v));
  c('__st_m1', DT.INT64, [1], [-1]);
  c('__st_one', DT.INT64, [], [1]);
  c('__st_zero', DT.INT64, [], [0]);
  c('__st_i1', DT.INT64, [1], [1]);
  c('__st_big', DT.INT64, [1], [2 ** 31 - 1]);
  const opset = opsetVersion(model);
  const outputs = new Map<string, OrderStatOutputs>();
  tensors.forEach(({ tensor: x, percentile: p }, i) => {
    const s = (k: string) => `__st${i}_${k}`;
    const add = (op: string, ins: string[], out: string, attrs = {}) => g.node.push(makeNode(op, ins, [out], s(`n_${out}`), attrs));
    c(s('p'), DT.DOUBLE, [], [p]);
    c(s('1mp'), DT.DOUBLE, [], [1 - p]);
    add('Size', [x], s('n'));
    add('Cast', [s('n')], s('nd'), { to: DT.DOUBLE });
    add('Mul', [s('nd'), s('1mp')], s('a'));
    add('Floor', [s('a')], s('af'));
    add('Cast', [s('af')], s('ai'), { to: DT.INT64 });
    add('Max', [s('ai'), '__st_zero'], s('minIdx'));
    add('Add', [s('minIdx'), '__st_one'], s('kmin0'));
    add('Reshape', [s('kmin0'), '__st_m1'], s('kmin'));
    add('Mul', [s('nd'), s('p')], s('b'));
    add('Floor', [s('b')], s('bf'));
    add('Cast', [s('bf')], s('bi'), { to: DT.INT64 });
    add('Sub', [s('n'), '__st_one'], s('nm1'));
    add('Min', [s('bi'), s('nm1')], s('maxIdx'));
    add('Sub', [s('n'), s('maxIdx')], s('kmax0'));
    add('Reshape', [s('kmax0'), '__st_m1'], s('kmax'));
    // Exact selection without sorting the whole tensor (TopK over every element was ~3/4 of calibration's extra
    // time on en_number). View x as rows of its last dimension and take each row's extreme with one ReduceMax
    // (ReduceMin) pass. Let m be the k-th largest row maximum (k capped at the row count): k rows each hold an
    // element ≥ m, so the k-th largest element v ≥ m, and every element > m lies in a row whose maximum is > m —
    // one of the k rows TopK picks. Hence the k-th largest element of those k rows is v (ties at m included), and
    // only k whole rows go to the final TopK.
    add('Shape', [x], s('shape'));
    add('Slice', [s('shape'), '__st_m1', '__st_big'], s('last'));
    g.node.push(makeNode('Concat', ['__st_m1', s('last')], [s('rshape')], s('n_rshape'), { axis: 0 }));
    add('Reshape', [x, s('rshape')], s('rows'));
    for (const [side, k, largest, reduce] of [['lo', 'kmin', 0, 'ReduceMin'], ['hi', 'kmax', 1, 'ReduceMax']] as const) {
      // ReduceMin/ReduceMax take `axes` as an attribute up to opset 17 and as an input from 18.
      if (opset >= 18) g.node.push(makeNode(reduce, [s('rows'), '__st_i1'], [s(`${side}b`)], s(`n_${side}b`), { keepdims: 0 }));
      else add(reduce, [s('rows')], s(`${side}b`), { axes: [1], keepdims: 0 });
      add('Shape', [s(`${side}b`)], s(`${side}nb`));
      add('Min', [s(k), s(`${side}nb`)], s(`${k}b`));
      g.node.push(makeNode('TopK', [s(`${side}b`), s(`${k}b`)], [s(`${side}bv`), s(`${side}bi`)], s(`topk_${side}_rows`), { largest, sorted: 0 }));
      g.node.push(makeNode('Gather', [s('rows'), s(`${side}bi`)], [s(`${side}g`)], s(`n_${side}g`), { axis: 0 }));
      add('Reshape', [s(`${side}g`), '__st_m1'], s(`${side}c`));
      g.node.push(makeNode('TopK', [s(`${side}c`), s(k)], [s(side), s(`${side}i`)], s(`topk_${side}`), { largest, sorted: 1 }));
    }
    for (const o of [s('lo'), s('hi')]) g.output.push(create(ValueInfoProtoSchema, { name: o }));
    outputs.set(x, { lo: s('lo'), hi: s('hi') });
  });
  return { model, outputs };
}

/**
 * Min/max statistics computed inside onnxruntime: ReduceMin/ReduceMax over all axes (no `axes`: every opset
 * reduces everything), so two scalars per tensor leave the runtime instead of the tensor. Exact: min and max of
 * float32 values are float32 values.
 */
export function appendMinMaxStats(input: ModelProto, tensors: readonly string[]): { model: ModelProto; outputs: Map<string, OrderStatOutputs> } {
  const model = clone(ModelProtoSchema, input);
  const g = model.graph!;
  const outputs = new Map<string, OrderStatOutputs>();
  tensors.forEach((x, i) => {
    const lo = `__mm${i}_min`;
    const hi = `__mm${i}_max`;
    g.node.push(makeNode('ReduceMin', [x], [lo], `__mm${i}_reducemin`, { keepdims: 0 }));
    g.node.push(makeNode('ReduceMax', [x], [hi], `__mm${i}_reducemax`, { keepdims: 0 }));
    for (const o of [lo, hi]) g.output.push(create(ValueInfoProtoSchema, { name: o }));
    outputs.set(x, { lo, hi });
  });
  return { model, outputs };
}
