/**
 * A network run a piece at a time over a fixed list of batches, for passes that walk the layers in order. Each
 * request runs only the nodes its tensors need that have not run yet, starting from the values kept from earlier
 * requests, and keeps only the values that a node not yet run still reads (the frontier): a walk over all layers
 * costs about one pass over the network and holds the network's widest cut × the batches, where one prefix
 * network per layer (the obvious way) costs O(layers × network) — agllnet_256, 126 layers at 256×256: hours.
 *
 * The model may change between requests in nodes that have not run yet (weight rounding refits layer i, then
 * asks for layer i+1's input, computed through the refitted weights of every earlier layer). A node that has run
 * is not run again unless a value it produced was dropped and is needed again, in which case it is recomputed
 * from the current model. With optimizations disabled (simulate) every node is computed alone, so the values are
 * bit-identical to a whole-network run (tested); optimised pieces fuse differently at their ends (~1e-6 relative).
 */
import { create } from '@bufbuild/protobuf';
import { ModelProtoSchema, TensorProto_DataType as DT, TypeProto_TensorSchema, TypeProtoSchema, ValueInfoProtoSchema, type ModelProto, type NodeProto } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import type { Feeds } from '../calibrate/calibrate.ts';
import { GraphView, nodeReads } from '../ir/graph.ts';
import { createSession, type RunMode } from './session.ts';

export interface NetworkStepper {
  /**
   * Values of `targets` on every batch (index: batch). Runs the nodes they need from the kept values, keeps what
   * nodes not yet run will read, and drops what no such node reads.
   */
  advance(model: ModelProto, targets: readonly string[]): Promise<Record<string, ort.Tensor>[]>;
  /** Values of `targets` on every batch without marking anything as run (a layer's output under weights that are
   * about to change). */
  peek(model: ModelProto, targets: readonly string[]): Promise<Record<string, ort.Tensor>[]>;
  /** Bytes of the values kept now (all batches). */
  keptBytes(): number;
  /** Node executions so far per batch (a walk that cuts well runs each node about once). */
  nodeRuns(): number;
}

/** onnxruntime-node's element types for the values a frontier can hold (quantized Q outputs never cross it). */
const ORT_TYPES: Partial<Record<ort.Tensor.Type, DT>> = {
  float32: DT.FLOAT,
  float16: DT.FLOAT16,
  float64: DT.DOUBLE,
  int8: DT.INT8,
  uint8: DT.UINT8,
  int16: DT.INT16,
  uint16: DT.UINT16,
  int32: DT.INT32,
  uint32: DT.UINT32,
  int64: DT.INT64,
  uint64: DT.UINT64,
  bool: DT.BOOL,
};

const asOrt = (v: Feeds[string]): ort.Tensor => (v instanceof ort.Tensor ? v : new ort.Tensor('float32', v.data, [...v.dims]));
const nodeKey = (n: NodeProto) => n.output.join('\u0000');

export function createStepper(batches: readonly Feeds[], mode: RunMode): NetworkStepper {
  const inputs = new Set(Object.keys(batches[0] ?? {}));
  const kept = new Map<string, ort.Tensor[]>();
  const done = new Set<string>();
  let runs = 0;

  async function values(model: ModelProto, targets: readonly string[], commit: boolean): Promise<Record<string, ort.Tensor>[]> {
    const g = model.graph!;
    // The project's graph index (producers, consumers by nodeReads, initializers); it only reads the graph.
    const view = new GraphView(g);
    const inits = view.initializers;
    const available = (name: string) => kept.has(name) || inputs.has(name) || inits.has(name);
    const need = new Set<NodeProto>();
    const stack: NodeProto[] = [];
    const require = (name: string) => {
      if (available(name)) return;
      const p = view.producer.get(name);
      if (!p) throw new Error(`stepper: '${name}' is neither an input, an initializer nor a node's output`);
      if (!need.has(p)) stack.push(p);
    };
    for (const t of targets) if (inits.has(t) && !inputs.has(t)) throw new Error(`stepper: '${t}' is an initializer, not a computed value`);
    targets.forEach(require);
    while (stack.length) {
      const n = stack.pop()!;
      if (need.has(n)) continue;
      need.add(n);
      nodeReads(n).forEach(require);
      // Quantized values (int8, float8, int4: not all have a JS type) stay inside a piece: a QuantizeLinear comes
      // with the DequantizeLinear nodes that read it.
      if (n.opType === 'QuantizeLinear') for (const c of view.uses(n.output[0])) if (c.opType === 'DequantizeLinear' && !need.has(c)) stack.push(c);
    }
    const nodes = g.node.filter((n) => need.has(n));
    const produced = new Set(nodes.flatMap((n) => n.output));
    // What nodes outside this piece that have not run will read: kept (advance), or already kept (both).
    const pending = new Set(g.node.filter((n) => !need.has(n) && !done.has(nodeKey(n))).flatMap(nodeReads));
    const frontier = commit ? [...produced].filter((o) => o && pending.has(o)) : [];
    const fetch = [...new Set([...targets.filter((t) => produced.has(t)), ...frontier])];
    const readSet = new Set(nodes.flatMap(nodeReads));
    const reads = [...readSet].filter((i) => !produced.has(i) && !inits.has(i));
    let results: Record<string, ort.Tensor>[] = batches.map(() => ({}));
    if (nodes.length) {
      const typeOf = (name: string) => {
        const t = kept.get(name)?.[0] ?? asOrt(batches[0][name]);
        const elemType = ORT_TYPES[t.type];
        if (elemType === undefined) throw new Error(`stepper: cannot feed '${name}' of type ${t.type}`);
        return create(TypeProtoSchema, { value: { case: 'tensorType', value: create(TypeProto_TensorSchema, { elemType }) } });
      };
      const piece = create(ModelProtoSchema, {
        irVersion: model.irVersion,
        opsetImport: model.opsetImport,
        graph: {
          name: `${g.name}_piece`,
          node: nodes,
          initializer: g.initializer.filter((t) => readSet.has(t.name)),
          input: reads.map((name) => create(ValueInfoProtoSchema, { name, type: typeOf(name) })),
          output: fetch.map((name) => create(ValueInfoProtoSchema, { name })),
        },
      });
      runs += nodes.length;
      const s = await createSession(piece, { mode });
      try {
        results = [];
        for (const [b, feeds] of batches.entries())
          results.push(await s.run(Object.fromEntries(reads.map((name) => [name, kept.get(name)?.[b] ?? asOrt(feeds[name])])), fetch));
      } finally {
        await s.release();
      }
    }
    const out = results.map((r, b) => Object.fromEntries(targets.map((t) => [t, r[t] ?? kept.get(t)?.[b] ?? asOrt(batches[b][t])])));
    if (commit) {
      for (const n of nodes) done.add(nodeKey(n));
      for (const o of frontier) kept.set(o, results.map((r) => r[o]));
      for (const name of [...kept.keys()]) if (!pending.has(name)) kept.delete(name);
    }
    return out;
  }

  return {
    advance: (model, targets) => values(model, targets, true),
    peek: (model, targets) => values(model, targets, false),
    nodeRuns: () => runs,
    keptBytes: () => [...kept.values()].reduce((s, vs) => s + vs.reduce((a, v) => a + (v.data as ArrayBufferView).byteLength, 0), 0),
  };
}
