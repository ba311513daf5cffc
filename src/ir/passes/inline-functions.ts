import { clone, create } from '@bufbuild/protobuf';
import { AttributeProtoSchema, NodeProtoSchema, OperatorSetIdProtoSchema, type AttributeProto, type FunctionProto, type ModelProto, type NodeProto } from 'onnx-buf';
import { nodeSubgraphs, renameReads, walkGraphs } from '../graph.ts';
import type { Pass } from './pass.ts';

/**
 * Model-local functions inlined (ONNX FunctionProto). Exporters that keep modules as functions — torch.onnx's dynamo
 * exporter before it inlined by default, onnxscript — put the Convs inside them, where the planner does not look: such
 * a model quantized nothing. Each call becomes the function's body: formal inputs and outputs bound to the call's,
 * every other value and node name prefixed with the call's name, an attribute that refers to one of the call's
 * (ref_attr_name) given the call's value, else the function's default, else left out (an optional attribute unset).
 * onnxruntime inlines functions the same way when it loads a model, so the float function is unchanged (tested bit
 * for bit). Calls inside bodies and subgraphs are inlined in later rounds; a function whose opset imports disagree
 * with the model's stays a call (its layers stay float), and functions no node calls any more are dropped.
 */
const ROUNDS = 32;

const fnKey = (domain: string, name: string, overload: string) => `${domain}\0${name}\0${overload}`;
const plainDomain = (d: string) => (d === 'ai.onnx' ? '' : d);

/** Every value and node name of the model's graphs: what a prefixed name must not be. */
function namesIn(model: ModelProto): Set<string> {
  const taken = new Set<string>();
  for (const g of walkGraphs(model.graph!)) {
    for (const v of [...g.input, ...g.output, ...g.valueInfo]) taken.add(v.name);
    for (const t of g.initializer) taken.add(t.name);
    for (const n of g.node) {
      taken.add(n.name);
      for (const o of n.output) taken.add(o);
    }
  }
  return taken;
}

/** The call's value of a body attribute that refers to one (`refAttrName`), renamed to the body's name for it. */
function boundAttribute(a: AttributeProto, call: NodeProto, f: FunctionProto): AttributeProto | undefined {
  if (!a.refAttrName) return a;
  const v = call.attribute.find((x) => x.name === a.refAttrName) ?? f.attributeProto.find((x) => x.name === a.refAttrName);
  return v && create(AttributeProtoSchema, { ...clone(AttributeProtoSchema, v), name: a.name });
}

/** The body of `f` for one call, its names bound to the call's or prefixed. */
function instantiate(f: FunctionProto, call: NodeProto, taken: Set<string>): NodeProto[] {
  const base = `${call.name || f.name}/`;
  let prefix = base;
  const internal = f.node.flatMap((n) => [n.name, ...n.output]).filter((x) => x && !f.output.includes(x));
  for (let k = 1; internal.some((x) => taken.has(prefix + x)); k++) prefix = `${base.slice(0, -1)}_${k}/`;
  const map = new Map<string, string>();
  f.input.forEach((name, k) => map.set(name, call.input[k] ?? ''));
  f.output.forEach((name, k) => map.set(name, call.output[k] || prefix + name));
  const to = (x: string) => (x ? (map.get(x) ?? prefix + x) : '');
  // A body's subgraphs read the function's values by their formal or body names.
  const outer = new Map([...new Set([...f.input, ...f.node.flatMap((m) => [...m.input, ...m.output])])].filter(Boolean).map((x) => [x, to(x)]));
  return f.node.map((n) => {
    const out = clone(NodeProtoSchema, n);
    out.name = prefix + (n.name || n.opType);
    out.input = n.input.map(to);
    out.output = n.output.map(to);
    out.attribute = out.attribute.map((a) => boundAttribute(a, call, f)).filter((a): a is AttributeProto => a !== undefined);
    for (const sg of nodeSubgraphs(out)) renameReads(sg, outer);
    for (const x of [out.name, ...out.output]) taken.add(x);
    return out;
  });
}

export const inlineFunctions: Pass = {
  name: 'inline-functions',
  run(model) {
    if (!model.functions.length) return false;
    const fns = new Map(model.functions.map((f) => [fnKey(f.domain, f.name, f.overload), f]));
    const opsets = new Map(model.opsetImport.map((o) => [plainDomain(o.domain), o.version]));
    const inlinable = (f: FunctionProto) => f.opsetImport.every((o) => (opsets.get(plainDomain(o.domain)) ?? o.version) === o.version);
    const taken = namesIn(model);
    let changed = false;
    for (let round = 0; round < ROUNDS; round++) {
      let any = false;
      for (const g of [...walkGraphs(model.graph!)]) {
        for (let i = 0; i < g.node.length; i++) {
          const call = g.node[i];
          const f = fns.get(fnKey(call.domain, call.opType, call.overload));
          if (!f || !inlinable(f)) continue;
          const body = instantiate(f, call, taken);
          g.node.splice(i, 1, ...body);
          i += body.length - 1;
          for (const o of f.opsetImport)
            if (!opsets.has(plainDomain(o.domain))) {
              model.opsetImport.push(clone(OperatorSetIdProtoSchema, o));
              opsets.set(plainDomain(o.domain), o.version);
            }
          any = true;
        }
      }
      if (!any) break;
      changed = true;
    }
    // Functions still called (left as calls, or called from such a function's body) stay.
    const called = new Set<string>();
    const note = (nodes: readonly NodeProto[]) => {
      for (const n of nodes) {
        const k = fnKey(n.domain, n.opType, n.overload);
        if (fns.has(k) && !called.has(k)) {
          called.add(k);
          note(fns.get(k)!.node);
        }
      }
    };
    for (const g of walkGraphs(model.graph!)) note(g.node);
    model.functions = model.functions.filter((f) => called.has(fnKey(f.domain, f.name, f.overload)));
    return changed;
  },
};
