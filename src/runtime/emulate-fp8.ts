/**
 * FP8 (E4M3FN) QuantizeLinear → DequantizeLinear pairs rewritten as float32 arithmetic, for simulation sessions.
 * onnxruntime's CPU float8 kernels convert one element at a time: on en_number under the FP8 rule they took 61% of a
 * simulated run (QuantizeLinear 47%, DequantizeLinear 14%; int8's pair 8% under the per-channel rule), and FP8
 * simulation ran at 2.7–2.9× the optimisation-free float model (bench (b′)). The pair computes
 * x̂ = float32(s · e4m3(float32(x / s))), saturating at ±448, ties to even; here, with y = clip(x / s, −448, 448):
 * - |y| ≥ 2^-6 (E4M3's normals): Veltkamp's split, p = y·(2^20 + 1), hi = p − (p − y), is y rounded to 24 − 20 = 4
 *   significant bits, to nearest, ties to even — checked against roundToE4m3fn on every float32 in [0, 448]
 *   (1.14·10^9 values, bench/fp8-emulation-check.ts; the arithmetic is sign-symmetric);
 * - |y| < 2^-6 (subnormals, multiples of 2^-9): Round(y · 512) / 512, Round being half to even;
 * - x̂ = where(|y| ≥ 2^-6, hi, sub) · s.
 * With a power-of-two scale (the OnnxQuant FP8 rule's candidates) x / s and r · s are exact and both roundings are
 * scale-invariant, so the same is computed on x itself — clip to ±448·s, split x, Round(x · 512/s) · s/512, threshold
 * 2^-6·s — two nodes fewer (10, against 12).
 * Same bits as onnxruntime's pair (test/fold-dequantize.test.ts: every tie and its neighbours, a dense sweep, ±0,
 * saturation, NaN; real FP8 models' outputs). One trap, found by that test: onnxruntime's Where returns +0 for a −0
 * taken from its first value input but keeps it from the second, so the branch that can be zero comes second.
 * Only pairs this exact reading covers are rewritten: a float32 one-element constant scale shared by both nodes, zero
 * points that are E4M3FN zeros, saturation on, the quantized value read by nothing else and not fetched.
 */
import { TensorProto_DataType as DT, type ModelProto, type NodeProto } from 'onnx-buf';
import { attrInt, GraphView, makeNode, withGraphLists } from '../ir/graph.ts';
import { tensorToFloat32 } from '../onnx/tensor-codec.ts';
import { addFloatInitializer, isFloat32, scalar } from '../ir/constants.ts';

export function emulateFp8QuantDequant(input: ModelProto, keep: ReadonlySet<string> = new Set()): { model: ModelProto; rewritten: number } {
  // Every simulation session passes through here: without an E4M3FN initializer (the pairs' zero points) no pair can
  // match, and the graph index is not built.
  if (!input.graph!.initializer.some((t) => t.dataType === DT.FLOAT8E4M3FN)) return { model: input, rewritten: 0 };
  const view0 = new GraphView(input.graph!);
  // A float32 constant of one element (a per-tensor scale).
  const scalarFloat = (v: GraphView, name: string) => (isFloat32(v.initializers.get(name)) ? scalar(v, name) : undefined);
  const e4m3Zero = (v: GraphView, name: string | undefined) => {
    const t = name && v.isConstant(name) ? v.initializers.get(name)! : undefined;
    return !!t && t.dataType === DT.FLOAT8E4M3FN && tensorToFloat32(t).every((x) => x === 0 && !Object.is(x, -0));
  };
  const pairs: [NodeProto, NodeProto][] = [];
  for (const q of view0.graph.node) {
    if (q.opType !== 'QuantizeLinear' || q.domain || attrInt(q, 'saturate', 1) !== 1 || q.attribute.some((a) => a.name === 'output_dtype' || a.name === 'block_size')) continue;
    const [x, s, z] = q.input;
    const scale = scalarFloat(view0, s);
    if (!x || scale === undefined || !e4m3Zero(view0, z) || keep.has(q.output[0]) || view0.graphOutputs.has(q.output[0])) continue;
    const readers = view0.uses(q.output[0]);
    if (readers.length !== 1) continue;
    const dq = readers[0];
    if (dq.opType !== 'DequantizeLinear' || dq.domain || dq.input[0] !== q.output[0] || dq.attribute.some((a) => a.name === 'block_size')) continue;
    if (scalarFloat(view0, dq.input[1]) !== scale || !e4m3Zero(view0, dq.input[2])) continue;
    pairs.push([q, dq]);
  }
  if (!pairs.length) return { model: input, rewritten: 0 };
  const model = withGraphLists(input);
  const view = new GraphView(model.graph!);
  const c = (name: string, value: number) => addFloatInitializer(view, name, [], Float32Array.of(value));
  const split = c('__fp8const_split', 2 ** 20 + 1);
  // The constants for a scale: the unit scale's for the general form (x / s first), the scaled ones for a power of two.
  const constants = new Map<number, { lo: string; hi: string; up: string; down: string; normal: string }>();
  const constantsFor = (unit: number) => {
    let k = constants.get(unit);
    if (!k) {
      const tag = constants.size;
      k = { lo: c(`__fp8const${tag}_lo`, -448 * unit), hi: c(`__fp8const${tag}_hi`, 448 * unit), up: c(`__fp8const${tag}_up`, 512 / unit), down: c(`__fp8const${tag}_down`, unit / 512), normal: c(`__fp8const${tag}_min_normal`, 2 ** -6 * unit) };
      constants.set(unit, k);
    }
    return k;
  };
  const chains = new Map<NodeProto, NodeProto[]>();
  const drop = new Set<NodeProto>();
  pairs.forEach(([q, dq], i) => {
    const [x, s] = q.input;
    const scale = scalarFloat(view0, s)!;
    // 2^-100 … 2^100 keeps 448·s, 512/s and x·(2^20 + 1) for |x| ≤ 448·s far inside float32's normal range.
    const exp = Math.round(Math.log2(scale));
    const pow2 = scale > 0 && Math.abs(exp) <= 100 && 2 ** exp === scale;
    const K = constantsFor(pow2 ? scale : 1);
    const v = (k: string) => view.freshName(`__fp8emu${i}_${k}`);
    const [y, yc, p, d, hi, up, rounded, sub, abs, isNormal, r] = ['y', 'yc', 'p', 'd', 'hi', 'up', 'rounded', 'sub', 'abs', 'normal', 'r'].map(v);
    const out = dq.output[0];
    const nodes = [
      ...(pow2 ? [] : [makeNode('Div', [x, s], [y], `${y}_div`)]),
      makeNode('Clip', [pow2 ? x : y, K.lo, K.hi], [yc], `${yc}_clip`),
      makeNode('Mul', [yc, split], [p], `${p}_mul`),
      makeNode('Sub', [p, yc], [d], `${d}_sub`),
      makeNode('Sub', [p, d], [hi], `${hi}_sub`),
      makeNode('Mul', [yc, K.up], [up], `${up}_mul`),
      makeNode('Round', [up], [rounded], `${rounded}_round`),
      makeNode('Mul', [rounded, K.down], [sub], `${sub}_mul`),
      makeNode('Abs', [yc], [abs], `${abs}_abs`),
      makeNode('GreaterOrEqual', [abs, K.normal], [isNormal], `${isNormal}_ge`),
      makeNode('Where', [isNormal, hi, sub], [pow2 ? out : r], `${r}_where`), // the ±0 branch second (see above)
      ...(pow2 ? [] : [makeNode('Mul', [r, s], [out], `${r}_scale`)]),
    ];
    // In the Q node's place: its input exists there, and the DQ's readers all come after it.
    chains.set(q, nodes);
    drop.add(dq);
  });
  model.graph!.node = model.graph!.node.flatMap((n) => chains.get(n) ?? (drop.has(n) ? [] : [n]));
  view.reindex();
  view.pruneInitializers();
  return { model, rewritten: pairs.length };
}
