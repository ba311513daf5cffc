/**
 * A network run a piece at a time over a fixed list of batches, for passes that walk the layers in order. Each
 * request runs only the nodes its tensors need that have not run yet, starting from the values kept from earlier
 * requests, and keeps only the values that a node not yet run still reads (the frontier): a walk over all layers
 * costs about one pass over the network and holds the network's widest cut × the batches, where one prefix
 * network per layer (the obvious way) costs O(layers × network) — agllnet_256, 126 layers at 256×256: hours. What
 * it holds beyond a memory budget goes to files (value-store.ts), and pieces run one batch at a time, so resident
 * memory stays near the budget plus one batch's values whatever the image size.
 *
 * The model may change between requests in nodes that have not run yet (weight rounding refits layer i, then
 * asks for layer i+1's input, computed through the refitted weights of every earlier layer). A node that has run
 * is not run again unless a value it produced was dropped and is needed again, in which case it is recomputed
 * from the current model. With optimizations disabled (simulate) every node is computed alone, so the values are
 * bit-identical to a whole-network run (tested); optimised pieces fuse differently at their ends (~1e-6 relative).
 */
import { totalmem } from 'node:os';
import { create } from '@bufbuild/protobuf';
import { ModelProtoSchema, TensorProto_DataType as DT, TypeProto_TensorSchema, TypeProtoSchema, ValueInfoProtoSchema, type ModelProto, type NodeProto } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import type { Feeds } from '../calibrate/calibrate.ts';
import { GraphView, nodeReads } from '../ir/graph.ts';
import { createSession, type RunMode } from './session.ts';
import { createValueStore, type Stored, type ValueStore } from './value-store.ts';

/** A request's values, batch by batch: read back from the stepper's store when asked (a spilled value from its file).
 * Valid until the stepper's next `advance` or `close`; reading them after that throws. */
export interface BatchValues {
  readonly length: number;
  /** Batch b's values. A value read from a file is read into the buffer of the previous `get`'s: use it before the
   * next `get` (or copy it). */
  get(b: number): Record<string, ort.Tensor>;
}

/** Loads of spilled values into one buffer per name (`buffers`), reused batch after batch. */
function scratchLoader(store: ValueStore, buffers = new Map<string, ArrayBufferView>()): (name: string, h: Stored) => ort.Tensor {
  return (name, h) => {
    const t = store.load(h, buffers.get(name));
    if (!('tensor' in h)) buffers.set(name, t.data as ArrayBufferView);
    return t;
  };
}

export interface NetworkStepper {
  /**
   * Values of `targets` on every batch. Runs the nodes they need from the kept values, keeps what nodes not yet run
   * will read, and drops what no such node reads.
   */
  advance(model: ModelProto, targets: readonly string[]): Promise<BatchValues>;
  /** Values of `targets` on every batch, or on the batches numbered in `only`, without marking anything as run (a
   * layer's output under weights that are about to change; the network's outputs from here under new weights).
   * `get(b)` takes the batch's own number; a batch outside `only` has no values. */
  peek(model: ModelProto, targets: readonly string[], only?: readonly number[]): Promise<BatchValues>;
  /** Bytes of the values kept now (all batches, in memory or spilled). */
  keptBytes(): number;
  /** Bytes written to files so far. */
  spilledBytes(): number;
  /** Node executions so far per batch (a walk that cuts well runs each node about once). */
  nodeRuns(): number;
  /** Frees what it holds and removes its files. */
  close(): void;
}

export interface StepperOptions {
  /** Bytes of values held in memory before further ones go to files (default DEFAULT_STEPPER_MEMORY). */
  memoryBytes?: number;
}

/**
 * An eighth of the machine's memory a stepper, at least 512 MiB (passes run two, float and quantized: a quarter of
 * memory in held values). Spilling is exact but not free: a value read back into fresh memory pays its first touches
 * (~2.6 s/GB on the development VM: a 268 MB read is 17 ms from the page cache, 700 ms of page faults), so reads reuse
 * one buffer per name. srcnn ×4 weight rounding alone (16 fitting images at 1024²): peak RSS 11.6 GiB and 178 s all in
 * memory; with 2 GiB a stepper 6.1 GiB and 351 s reading into fresh memory, 5.8 GiB and 247 s reusing buffers.
 */
export const DEFAULT_STEPPER_MEMORY = Math.max(512 * 1024 ** 2, Math.floor(totalmem() / 8));

/** For a pass's detail: how much the walk's steppers wrote to files, if anything (it explains a slower pass). */
export function spillNote(steppers: readonly NetworkStepper[]): string {
  const bytes = steppers.reduce((s, st) => s + st.spilledBytes(), 0);
  return bytes ? `; ${(bytes / 1e9).toFixed(1)} GB of layer values held in files (memory budget ${(DEFAULT_STEPPER_MEMORY / 1024 ** 3).toFixed(1)} GiB a side)` : '';
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

export function createStepper(batches: readonly Feeds[], mode: RunMode, opts: StepperOptions = {}): NetworkStepper {
  const inputs = new Set(Object.keys(batches[0] ?? {}));
  const store = createValueStore(opts.memoryBytes ?? DEFAULT_STEPPER_MEMORY);
  const kept = new Map<string, Stored[]>();
  const done = new Set<string>();
  // Values handed out that are not kept (peeked values, dropped targets): freed at the next advance.
  let lent: Stored[] = [];
  // What handed-out BatchValues reach (their values and read buffers): emptied at the next advance, so that one a
  // caller still holds cannot keep freed values resident. An async caller can hold one without meaning to: V8 keeps
  // a suspended function's dead locals until they are overwritten. Weight rounding on srcnn ×4 held 12.2 GiB of
  // ArrayBuffers after a forced collection with 5.7 GiB in its two stores: the previous layer's values, freed by the
  // stores and kept by the BatchValues it had read them through. One refit peaked at 8.3 GiB RSS once they were emptied.
  let issued: { held: Record<string, Stored>[]; buffers: Map<string, ArrayBufferView> }[] = [];
  const recallIssued = () => {
    for (const v of issued) {
      v.held.length = 0;
      v.buffers.clear();
    }
    issued = [];
  };
  let runs = 0;

  async function values(model: ModelProto, targets: readonly string[], commit: boolean, only?: readonly number[]): Promise<BatchValues> {
    if (commit) {
      lent.forEach((h) => store.free(h));
      lent = [];
      recallIssued();
    }
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
    const frontierSet = new Set(frontier);
    const fetch = [...new Set([...targets.filter((t) => produced.has(t)), ...frontier])];
    const readSet = new Set(nodes.flatMap(nodeReads));
    const reads = [...readSet].filter((i) => !produced.has(i) && !inits.has(i));
    // Per batch: where each target's value is (a stored value; absent: the batch's own feed).
    const held: Record<string, Stored>[] = batches.map((_, b) => Object.fromEntries(targets.flatMap((t) => (kept.has(t) ? [[t, kept.get(t)![b]]] : []))));
    const fresh = new Map<string, Stored[]>(frontier.map((o) => [o, []]));
    if (nodes.length) {
      const typeOf = (name: string) => {
        const h = kept.get(name)?.[0];
        const type = h ? ('tensor' in h ? h.tensor.type : h.type) : asOrt(batches[0][name]).type;
        const elemType = ORT_TYPES[type];
        if (elemType === undefined) throw new Error(`stepper: cannot feed '${name}' of type ${type}`);
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
        // One batch at a time: its results go to the store before the next batch runs.
        const load = scratchLoader(store);
        for (const b of only ?? batches.keys()) {
          const feeds = batches[b];
          const r = await s.run(Object.fromEntries(reads.map((name) => [name, kept.has(name) ? load(name, kept.get(name)![b]) : asOrt(feeds[name])])), fetch);
          for (const o of frontier) fresh.get(o)!.push((held[b][o] = store.put(r[o])));
          for (const t of targets) if (produced.has(t) && !frontierSet.has(t)) lent.push((held[b][t] = store.put(r[t])));
        }
      } finally {
        await s.release();
      }
    }
    if (commit) {
      for (const n of nodes) done.add(nodeKey(n));
      for (const [o, hs] of fresh) kept.set(o, hs);
      const handedOut = new Set(held.flatMap((h) => Object.values(h)));
      for (const [name, hs] of [...kept]) {
        if (pending.has(name)) continue;
        kept.delete(name);
        // A value this request hands out stays readable until the next advance.
        for (const h of hs) {
          if (handedOut.has(h)) lent.push(h);
          else store.free(h);
        }
      }
    }
    const buffers = new Map<string, ArrayBufferView>();
    issued.push({ held, buffers });
    const load = scratchLoader(store, buffers);
    return {
      length: batches.length,
      get: (b) => {
        if (!held.length) throw new Error('stepper: values read after the next advance or close (they are valid until then)');
        if (only && !only.includes(b)) throw new Error(`stepper: batch ${b} was not among the batches asked for`);
        return Object.fromEntries(targets.map((t) => [t, held[b][t] ? load(t, held[b][t]) : asOrt(batches[b][t])]));
      },
    };
  }

  return {
    advance: (model, targets) => values(model, targets, true),
    peek: (model, targets, only) => values(model, targets, false, only),
    nodeRuns: () => runs,
    keptBytes: () => [...kept.values()].reduce((s, hs) => s + hs.reduce((a, h) => a + h.bytes, 0), 0),
    spilledBytes: () => store.spilledBytes(),
    close: () => {
      kept.clear();
      lent = [];
      recallIssued();
      store.close();
    },
  };
}
