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
import { create } from '@bufbuild/protobuf';
import { TensorProto_DataType as DT, ValueInfoProtoSchema, type ModelProto, type NodeProto } from 'onnx-buf';
import { makeNode, opsetVersion, tensorValueInfo, withGraphLists } from '../ir/graph.ts';
import { makeTensor } from '../onnx/tensor-codec.ts';

export interface OrderStatOutputs {
  /** Output holding the k smallest values (ascending); the last one is the statistic. Absent for an `upperOnly`
   * tensor, whose lower statistic the graph makes irrelevant (calibrate.ts). */
  lo?: string;
  /** Output holding the k largest values (descending); the last one is the statistic. */
  hi: string;
}

/**
 * Row layout of the selection below: the last dimension, or the last two together when they hold at most
 * mergedRowCap(p) elements. onnxruntime's ReduceMax/ReduceMin cost several times a memory-speed pass over short
 * rows (min + max over 4M floats on the 2-core VM: rows of 8 6.6 ms, 16 3.4 ms, 64 2.2 ms, 1024 0.85 ms), and the
 * NCHW activations of small images end in short rows (CIFAR-10 nets: 8×8 maps). Longer rows make fewer of them, and
 * the k rows the first TopK picks (k ≈ n·(1 − p)) must stay a small share of all rows, or the final TopK works on a
 * large part of the tensor: the cap keeps that share ≤ 1/64 (156 elements for p = 0.9999). Measured (32 batches of
 * 32, run time of the statistics above the float pass, A/B interleaved): squeezenet_cifar10 56 → 28 ms,
 * resnet20_cifar10 250 → 180 ms, en_number and PP-OCRv4 rec unchanged within noise; shares of 1/8 and 1/100 gave
 * the same on the first two.
 */
function mergedRowCap(p: number): number {
  return Math.min(4096, Math.floor(1 / (64 * Math.max(1 - p, 1e-12))));
}

export interface StatTensor {
  tensor: string;
  /** Only the upper statistic is computed: the tensor's range (ir/value-range.ts) makes the lower one irrelevant. */
  upperOnly?: boolean;
}

export function appendPercentileStats(input: ModelProto, tensors: readonly (StatTensor & { percentile: number })[]): { model: ModelProto; outputs: Map<string, OrderStatOutputs> } {
  const model = withGraphLists(input);
  const g = model.graph!;
  const c = (name: string, dt: number, dims: number[], v: number[]) => g.initializer.push(makeTensor(name, dt, dims, v));
  c('__st_m1', DT.INT64, [1], [-1]);
  c('__st_i1', DT.INT64, [1], [1]);
  c('__st_neg_a', DT.INT64, [2], [-1, 1]);
  c('__st_ones', DT.INT64, [2], [1, 1]);
  c('__st_rows', DT.INT64, [2], [0, 0]);
  c('__st_m2', DT.INT64, [1], [-2]);
  c('__st_end', DT.INT64, [1], [Number.MAX_SAFE_INTEGER]);
  const opset = opsetVersion(model);
  const outputs = new Map<string, OrderStatOutputs>();
  // Every node here runs once per batch and costs session creation time (~0.25 ms per node on en_number), so the
  // index arithmetic works on [kMin, kMax] pairs: 33 nodes per tensor, 8 of them choosing the row layout.
  tensors.forEach(({ tensor: x, percentile: p, upperOnly }, i) => {
    // p ≤ 1 makes floor(n·(1−p)) ≥ 0, so PPQ's max(0, ·) is the identity and kMin = floor(n·(1−p)) + 1;
    // kMax = n − min(floor(n·p), n − 1) = max(n − floor(n·p), 1).
    if (!(p > 0 && p <= 1)) throw new Error(`percentile must be in (0, 1], got ${p} for '${x}'`);
    const s = (k: string) => `__st${i}_${k}`;
    const add = (op: string, ins: string[], outs: string | string[], attrs = {}) => {
      const o = typeof outs === 'string' ? [s(outs)] : outs.map(s);
      g.node.push(makeNode(op, ins, o, s(`n_${o[0]}`), attrs));
    };
    c(s('q'), DT.DOUBLE, [2], [1 - p, p]);
    // Rows: the last dimension, or the last two together when small (mergedRowCap above). The selection below is
    // exact for any partition of the elements into rows; the partition only changes its speed.
    c(s('cap'), DT.INT64, [1], [mergedRowCap(p) + 1]);
    add('Shape', [x], 'xshape');
    add('Concat', ['__st_ones', s('xshape')], 'xshape11', { axis: 0 }); // [1, 1, d…]: rank 0 and 1 have two dims too
    add('Slice', [s('xshape11'), '__st_m2', '__st_end'], 'last2'); // the last two dims [a, b]
    add('Slice', [s('xshape11'), '__st_m1', '__st_end'], 'b'); // [b]
    add('ReduceProd', [s('last2')], 'ab', { keepdims: 1 }); // [a·b]
    add('Less', [s('ab'), s('cap')], 'merge');
    add('Where', [s('merge'), s('ab'), s('b')], 'len');
    add('Concat', ['__st_m1', s('len')], 'rowshape', { axis: 0 }); // [−1, row length]
    add('Reshape', [x, s('rowshape')], 'rows');
    add('Shape', [s('rows')], 'shape');
    add('ReduceProd', [s('shape')], 'n', { keepdims: 1 });
    add('Cast', [s('n')], 'nd', { to: DT.DOUBLE });
    add('Mul', [s('nd'), s('q')], 'nq');
    add('Floor', [s('nq')], 'nqf');
    add('Cast', [s('nqf')], 'fl', { to: DT.INT64 }); // [floor(n·(1−p)), floor(n·p)]
    add('Mul', [s('fl'), '__st_neg_a'], 'mfl'); // [−floor(n·(1−p)), floor(n·p)]
    add('Concat', ['__st_i1', s('n')], 'onen', { axis: 0 }); // [1, n]
    add('Sub', [s('onen'), s('mfl')], 'k0'); // [floor(n·(1−p)) + 1, n − floor(n·p)]
    add('Max', [s('k0'), '__st_ones'], 'k'); // [kMin, kMax]
    add('Gather', [s('shape'), '__st_rows'], 'rr'); // [rows, rows]
    add('Min', [s('k'), s('rr')], 'kr'); // k capped at the row count, for the TopK over row extremes
    add('Split', [s('k'), '__st_ones'], ['kmin', 'kmax'], { axis: 0 }); // split sizes as an input: opset 13+
    add('Split', [s('kr'), '__st_ones'], ['kminr', 'kmaxr'], { axis: 0 });
    // Exact selection without sorting the whole tensor (TopK over every element was ~3/4 of calibration's extra
    // time on en_number). Take each row's extreme with one ReduceMax (ReduceMin) pass. Let m be the k-th largest
    // row maximum (k capped at the row count): k rows each hold an element ≥ m, so the k-th largest element v ≥ m,
    // and every element > m lies in a row whose maximum is > m — one of the k rows TopK picks. Hence the k-th
    // largest element of those k rows is v (ties at m included), and only k whole rows go to the final TopK.
    const sides = [['lo', 'kmin', 0, 'ReduceMin'], ['hi', 'kmax', 1, 'ReduceMax']] as const;
    for (const [side, k, largest, reduce] of upperOnly ? sides.slice(1) : sides) {
      // ReduceMin/ReduceMax take `axes` as an attribute up to opset 17 and as an input from 18.
      if (opset >= 18) add(reduce, [s('rows'), '__st_i1'], `${side}b`, { keepdims: 0 });
      else add(reduce, [s('rows')], `${side}b`, { axes: [1], keepdims: 0 });
      add('TopK', [s(`${side}b`), s(`${k}r`)], [`${side}bv`, `${side}bi`], { largest, sorted: 0 });
      add('Gather', [s('rows'), s(`${side}bi`)], `${side}g`, { axis: 0 });
      add('Reshape', [s(`${side}g`), '__st_m1'], `${side}c`);
      add('TopK', [s(`${side}c`), s(k)], [side, `${side}i`], { largest, sorted: 1 });
    }
    const out: OrderStatOutputs = upperOnly ? { hi: s('hi') } : { lo: s('lo'), hi: s('hi') };
    for (const o of [out.lo, out.hi]) if (o) g.output.push(create(ValueInfoProtoSchema, { name: o }));
    outputs.set(x, out);
  });
  return { model, outputs };
}

/**
 * Min/max statistics computed inside onnxruntime: ReduceMin/ReduceMax over all axes (no `axes`: every opset
 * reduces everything), so two scalars per tensor leave the runtime instead of the tensor. Exact: min and max of
 * float32 values are float32 values.
 */
export function appendMinMaxStats(input: ModelProto, tensors: readonly StatTensor[]): { model: ModelProto; outputs: Map<string, OrderStatOutputs> } {
  const model = withGraphLists(input);
  const g = model.graph!;
  const outputs = new Map<string, OrderStatOutputs>();
  tensors.forEach(({ tensor: x, upperOnly }, i) => {
    const lo = upperOnly ? undefined : `__mm${i}_min`;
    const hi = `__mm${i}_max`;
    if (lo) g.node.push(makeNode('ReduceMin', [x], [lo], `__mm${i}_reducemin`, { keepdims: 0 }));
    g.node.push(makeNode('ReduceMax', [x], [hi], `__mm${i}_reducemax`, { keepdims: 0 }));
    for (const o of [lo, hi]) if (o) g.output.push(create(ValueInfoProtoSchema, { name: o }));
    outputs.set(x, { lo, hi });
  });
  return { model, outputs };
}

export interface SampleOutputs {
  /** Graph input (double [count]) to feed with the observer's uniforms u for this batch. */
  uniforms: string;
  /** x.flat[floor(u[j]·n)] for each j (the index arithmetic in double, as the JS observer does it). */
  sample: string;
  /** The first min(n, count) values in order: the whole tensor when it has no more than `count` values. */
  head: string;
  /** n, the tensor's element count (scalar int64). */
  size: string;
}

/**
 * Random samples of activations gathered inside onnxruntime (the FP8 observer's 4096 per batch), so a few thousand
 * values leave the runtime instead of whole tensors. One entry per observer, in order; entries may share a tensor.
 */
export function appendSamples(input: ModelProto, entries: readonly { tensor: string; count: number }[]): { model: ModelProto; outputs: SampleOutputs[] } {
  const model = withGraphLists(input);
  const g = model.graph!;
  g.initializer.push(makeTensor('__sm_m1', DT.INT64, [1], [-1]), makeTensor('__sm_zero', DT.INT64, [1], [0]));
  const outputs = entries.map(({ tensor: x, count }, i) => {
    const s = (k: string) => `__sm${i}_${k}`;
    const add = (op: string, ins: string[], out: string, attrs = {}) => g.node.push(makeNode(op, ins, [s(out)], s(`n_${out}`), attrs));
    g.initializer.push(makeTensor(s('count'), DT.INT64, [1], [count]));
    g.input.push(tensorValueInfo(s('u'), DT.DOUBLE, [count]));
    add('Reshape', [x, '__sm_m1'], 'flat');
    add('Size', [x], 'n');
    add('Cast', [s('n')], 'nd', { to: DT.DOUBLE });
    add('Mul', [s('u'), s('nd')], 'un');
    add('Floor', [s('un')], 'unf');
    add('Cast', [s('unf')], 'idx', { to: DT.INT64 });
    add('Gather', [s('flat'), s('idx')], 'sample', { axis: 0 });
    add('Slice', [s('flat'), '__sm_zero', s('count')], 'head');
    for (const o of ['sample', 'head', 'n']) g.output.push(create(ValueInfoProtoSchema, { name: s(o) }));
    return { uniforms: s('u'), sample: s('sample'), head: s('head'), size: s('n') };
  });
  return { model, outputs };
}

/**
 * Puts the statistic nodes appended after the first `networkNodes` nodes in the order that lets onnxruntime run each
 * tensor's statistics as soon as the tensor exists. onnxruntime's default execution order is a reverse depth-first
 * search from the graph's leaf nodes, the leaf with the highest node index first (GraphViewer: ReverseDFSFrom over
 * the leaves in index order, as a stack), and node indices follow the proto's node list. With the chains appended
 * in tensor order, the deepest tensor's chain was searched first: the whole network ran before any statistic, and
 * every tapped activation stayed alive to the end (PP-OCRv4 rec, batch 16: 404 MB in use at the peak against 105 MB
 * for the float model, a 1 GB arena, and page faults that made the first runs twice as slow). So the chains go in
 * reverse order of the network position of the tensor they read: the earliest tensor's chain gets the highest
 * indices and is searched first. Values are unchanged (only the order of independent nodes moves). The order is
 * left as it is if the chains are not independent per tensor (then a reorder could break the proto's topological
 * order).
 */
export function orderForEarlyRelease(model: ModelProto, networkNodes: number): void {
  const g = model.graph!;
  const position = new Map<string, number>(); // network value → index of its producer (graph inputs: −1)
  g.node.slice(0, networkNodes).forEach((n, i) => n.output.forEach((o) => o && position.set(o, i)));
  const appended = g.node.slice(networkNodes);
  // Each appended node's anchor: the latest network value it reads, directly or through other appended nodes.
  const anchorOf = new Map<string, number>();
  const anchors = appended.map((n) => {
    let a = -1;
    for (const x of n.input) a = Math.max(a, position.get(x) ?? anchorOf.get(x) ?? -1);
    for (const o of n.output) anchorOf.set(o, a);
    return a;
  });
  const order = appended.map((_, i) => i).sort((i, j) => anchors[j] - anchors[i] || i - j);
  const sorted: NodeProto[] = order.map((i) => appended[i]);
  // Valid only if every appended input is produced earlier in the new order (true when chains are independent).
  const seen = new Set<string>();
  const produced = new Set(appended.flatMap((n) => n.output));
  for (const n of sorted) {
    if (n.input.some((x) => produced.has(x) && !seen.has(x))) return;
    n.output.forEach((o) => seen.add(o));
  }
  // A network output whose producer onnxruntime replaces (a Conv turned into an NCHWc Conv, a MatMul + Add fused)
  // gets a new, highest index and would be searched first, running the whole network before any statistic. A
  // consumer of each output that stays in place keeps those producers from being leaves: two nodes reading one
  // element (Reshape is a view; unlike Shape they cannot be constant-folded away when shapes are static).
  const guards: NodeProto[] = [];
  g.initializer.push(makeTensor('__order_flat', DT.INT64, [1], [-1]), makeTensor('__order_0', DT.INT64, [1], [0]), makeTensor('__order_1', DT.INT64, [1], [1]));
  g.output.slice().forEach((o, i) => {
    // Tensor outputs only (a sequence or map output has no Reshape); an output without a declared type is a tensor.
    if (!position.has(o.name) || (o.type?.value.case && o.type.value.case !== 'tensorType')) return;
    guards.push(makeNode('Reshape', [o.name, '__order_flat'], [`__order${i}_flat`], `__order${i}_reshape`));
    guards.push(makeNode('Slice', [`__order${i}_flat`, '__order_0', '__order_1'], [`__order${i}_guard`], `__order${i}_slice`));
    g.output.push(create(ValueInfoProtoSchema, { name: `__order${i}_guard` }));
  });
  g.node.splice(networkNodes, appended.length, ...guards, ...sorted);
}
