/**
 * Checks that a parsed model is something the pipeline can work on, beyond "it is a protobuf with a graph"
 * (model-io already refuses that). Each failure is a UserError naming the file, so the CLI prints one line.
 */
import type { GraphProto, ModelProto } from 'onnx-buf';
import { UserError } from '../errors.ts';

/** Operator domains onnxruntime implements kernels for, whether or not a model imports them. */
export const ORT_DOMAINS: ReadonlySet<string> = new Set([
  '',
  'ai.onnx',
  'ai.onnx.ml',
  'com.microsoft',
  'com.microsoft.nchwc',
  'ai.onnx.training',
  'ai.onnx.preview.training',
  'com.microsoft.experimental',
  'org.pytorch.aten',
  'com.ms.internal.nhwc',
]);

function* graphsOf(g: GraphProto): Generator<GraphProto> {
  yield g;
  for (const n of g.node) for (const a of n.attribute) for (const sg of a.g ? [a.g, ...a.graphs] : a.graphs) yield* graphsOf(sg);
}

export function validateModel(model: ModelProto, source: string): void {
  const imported = new Set(model.opsetImport.map((o) => o.domain));
  // Model-local functions are operators too: a node may call one by its (domain, name).
  const functions = new Set(model.functions.map((f) => `${f.domain}\0${f.name}`));
  for (const g of graphsOf(model.graph!))
    for (const n of g.node) {
      if (ORT_DOMAINS.has(n.domain) || imported.has(n.domain) || functions.has(`${n.domain}\0${n.opType}`)) continue;
      throw new UserError(`node "${n.name || n.opType}" uses unknown operator domain "${n.domain}"`, source);
    }
  const inits = new Set(model.graph!.initializer.map((t) => t.name));
  if (!model.graph!.input.some((v) => !inits.has(v.name))) throw new UserError('model has no inputs', source);
}
