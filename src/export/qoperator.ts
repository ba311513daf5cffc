/**
 * QDQ → QOperator: for runtimes without QDQ support, rewrite the fusable patterns of a QDQ model (best: one made
 * with the `ort-cpu` target, which puts Q/DQ on layer outputs and int32 biases) into standard integer operators:
 * - DQ(x), DQ(w) [, DQ(b) int32 | float b] → Conv → Q(y)  ⇒  QLinearConv (bias int32 with scale s_x·s_w);
 * - DQ(a), DQ(b) → MatMul → Q(y)  ⇒  QLinearMatMul;
 * - DQ → MaxPool/Reshape/Transpose/Flatten/Squeeze/Unsqueeze/Resize(nearest)/Concat → Q with the same scale and
 *   zero point on every input and the output  ⇒  the op on the quantized tensors (these ops are type-agnostic).
 * Everything else stays as DequantizeLinear → float op → QuantizeLinear at its boundaries (ONNX has no standard
 * integer Add, GlobalAveragePool or Gemm). Unused Q/DQ nodes and initializers are removed.
 */
import { clone } from '@bufbuild/protobuf';
import { ModelProtoSchema, TensorProto_DataType as DT, type ModelProto, type NodeProto } from 'onnx-buf';
import { attr, GraphView, makeNode, topologicalSort } from '../ir/graph.ts';
import { makeTensor, tensorToFloat32 } from '../onnx/tensor-codec.ts';
import { quantizeInt } from '../quant/numerics.ts';

const SAME_SCALE_OPS = new Set(['MaxPool', 'Reshape', 'Transpose', 'Flatten', 'Squeeze', 'Unsqueeze', 'Resize', 'Concat']);

export interface QOperatorResult {
  model: ModelProto;
  /** Rewritten nodes per op type (e.g. { QLinearConv: 5, MaxPool: 1 }). */
  converted: Record<string, number>;
  /** Layers left as DQ → float op → Q, with the reason. */
  left: { node: string; reason: string }[];
}

export function toQOperator(qdq: ModelProto): QOperatorResult {
  const model = clone(ModelProtoSchema, qdq);
  const view = new GraphView(model.graph!);
  const converted: Record<string, number> = {};
  const left: QOperatorResult['left'] = [];
  const count = (op: string) => (converted[op] = (converted[op] ?? 0) + 1);
  const producerOf = (name: string, op: string) => {
    const p = view.producer.get(name);
    return p && p.opType === op ? p : undefined;
  };
  /**
   * The single QuantizeLinear reading a node's output (not a graph output), looking through Relu when the Q's zero
   * point is its type's minimum (the requantization clip then is the Relu: onnxruntime's ReluQuantFusion), and
   * through Clip(0, hi) when, in addition, the Q's largest value does not exceed hi. Returns the Q and the skipped
   * activation nodes (removed with the Q).
   */
  const soleQ = (n: NodeProto, through: NodeProto[] = []): { q: NodeProto; through: NodeProto[] } | undefined => {
    const y = n.output[0];
    if (view.graphOutputs.has(y)) return undefined;
    const cons = view.uses(y);
    if (cons.length !== 1 || cons[0].input[0] !== y) return undefined;
    const c = cons[0];
    if (c.opType === 'QuantizeLinear') return { q: c, through };
    if (c.opType !== 'Relu' && c.opType !== 'Clip') return undefined;
    const found = soleQ(c, [...through, c]);
    if (!found) return undefined;
    const zpT = found.q.input[2] ? view.initializers.get(found.q.input[2]) : undefined;
    const zp = values(found.q.input[2])?.[0] ?? 0;
    const qmin = zpT?.dataType === DT.INT8 ? -128 : 0;
    const qmax = zpT?.dataType === DT.INT8 ? 127 : 255;
    if (zp !== qmin) return undefined;
    if (c.opType === 'Clip') {
      const lo = c.input[1] ? values(c.input[1])?.[0] : -Infinity;
      const hi = c.input[2] ? values(c.input[2])?.[0] : Infinity;
      const s = values(found.q.input[1])?.[0];
      if (lo === undefined || hi === undefined || s === undefined || lo !== 0 || Math.fround((qmax - zp) * s) > hi) return undefined;
    }
    return found;
  };
  const values = (name: string | undefined) => (name && view.initializers.has(name) ? tensorToFloat32(view.initializers.get(name)!) : undefined);
  const sameParams = (a: NodeProto, b: NodeProto) => {
    const [sa, sb, za, zb] = [values(a.input[1]), values(b.input[1]), values(a.input[2]), values(b.input[2])];
    if (!sa || !sb || sa.length !== 1 || sb.length !== 1 || sa[0] !== sb[0]) return false;
    const ta = a.input[2] ? view.initializers.get(a.input[2])?.dataType : DT.UINT8;
    const tb = b.input[2] ? view.initializers.get(b.input[2])?.dataType : DT.UINT8;
    return ta === tb && (za?.[0] ?? 0) === (zb?.[0] ?? 0);
  };
  const q3 = (n: NodeProto) => [n.input[0], n.input[1], n.input[2] ?? ''];
  // QLinearConv/QLinearMatMul and the integer MaxPool/Resize take int8/uint8 only; a 16-bit (or 4-bit) Q/DQ pair
  // (a 16-bit fallback, an override) stays as it is. An absent zero point is uint8.
  const eightBit = (zp: string | undefined) => {
    const t = zp ? view.initializers.get(zp)?.dataType : DT.UINT8;
    return t === DT.INT8 || t === DT.UINT8;
  };

  for (const n of [...view.graph.node]) {
    if (n.opType === 'Conv' || n.opType === 'MatMul') {
      const dx = producerOf(n.input[0], 'DequantizeLinear');
      const dw = producerOf(n.input[1], 'DequantizeLinear');
      const found = soleQ(n);
      const q = found?.q;
      if (!dx || !dw || !q) {
        left.push({ node: n.name, reason: !q ? 'output is not quantized (no sole QuantizeLinear)' : 'an input is not dequantized' });
        continue;
      }
      if (!dx.input[2] || !dw.input[2] || !q.input[2]) {
        left.push({ node: n.name, reason: 'a zero point is implicit' });
        continue;
      }
      if (![dx, dw, q].every((x) => eightBit(x.input[2]))) {
        left.push({ node: n.name, reason: 'not 8-bit (integer operators take int8/uint8)' });
        continue;
      }
      const inputs = [...q3(dx), ...q3(dw), q.input[1], q.input[2]];
      if (n.opType === 'Conv' && n.input[2]) {
        const db = producerOf(n.input[2], 'DequantizeLinear');
        if (db && view.initializers.get(db.input[0])?.dataType === DT.INT32) inputs.push(db.input[0]);
        else if (view.isConstant(n.input[2])) {
          // A float bias: quantize it here with s_x·s_w (zero point 0), as QLinearConv requires.
          const b = values(n.input[2])!;
          const sx = values(dx.input[1])![0];
          const sw = values(dw.input[1])!;
          const qb = Int32Array.from(b, (v, c) => quantizeInt(v, Math.fround(sx * sw[sw.length === 1 ? 0 : c]), 0, -(2 ** 31), 2 ** 31 - 1));
          const name = view.freshName(`${n.input[2]}_int32`);
          view.addInitializer(makeTensor(name, DT.INT32, [b.length], qb));
          inputs.push(name);
        } else {
          left.push({ node: n.name, reason: 'bias is neither an int32 DequantizeLinear nor a constant' });
          continue;
        }
      }
      const op = n.opType === 'Conv' ? 'QLinearConv' : 'QLinearMatMul';
      const idx = view.graph.node.indexOf(n);
      const repl = makeNode(op, inputs, [q.output[0]], n.name);
      if (n.opType === 'Conv') repl.attribute = n.attribute;
      view.removeNode(q);
      for (const a of found!.through) view.removeNode(a);
      view.removeNode(n);
      view.addNode(repl, idx);
      count(op);
      continue;
    }
    if (SAME_SCALE_OPS.has(n.opType)) {
      if (n.opType === 'Resize' && (attr(n, 'mode') ? new TextDecoder().decode(attr(n, 'mode')!.s) : 'nearest') !== 'nearest') continue;
      const slots = n.opType === 'Concat' ? n.input.map((_, i) => i) : [0];
      const dqs = slots.map((i) => producerOf(n.input[i], 'DequantizeLinear'));
      const found = soleQ(n);
      const q = found?.through.length === 0 ? found.q : undefined;
      if (!q || !eightBit(q.input[2]) || dqs.some((d) => !d || !sameParams(d, q))) continue;
      slots.forEach((i, k) => view.setInput(n, i, dqs[k]!.input[0]));
      const y = q.output[0];
      view.removeNode(q);
      view.producer.delete(n.output[0]);
      n.output[0] = y;
      view.producer.set(y, n);
      count(n.opType);
    }
  }
  // Drop Q/DQ nodes nobody reads any more.
  for (let changed = true; changed; ) {
    changed = false;
    for (const n of [...view.graph.node]) {
      if (n.opType !== 'QuantizeLinear' && n.opType !== 'DequantizeLinear') continue;
      if (n.output.every((o) => view.uses(o).length === 0 && !view.graphOutputs.has(o))) {
        view.removeNode(n);
        changed = true;
      }
    }
  }
  view.pruneInitializers();
  topologicalSort(view.graph);
  return { model, converted, left };
}
