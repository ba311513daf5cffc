/**
 * Graph outputs computed through a comparison or a rounding (a detector's peak mask Equal(heat, MaxPool(heat)), a
 * threshold, an arg-max turned back into values): piecewise constant in the values before it, so any error flips some
 * of its results and an output's power ratio then counts flips, not error. mlsd_320_tiny's 'scores' (random feeds,
 * per-channel): 100.09% under the plain rule, whose heat map has collapsed to ~0 (so has the masked output), and 1290%
 * with `best`, whose heat map is within 2.25% and whose peaks its noise moves. Found here so that the CLI can say
 * which tensors to measure instead (`--outputs`).
 */
import { TensorProto_DataType as DT } from 'onnx-buf';
import type { ModelProto, NodeProto } from 'onnx-buf';
import { GraphView } from './graph.ts';

/** Ops whose output does not move with a small change of their float inputs (most of the time), then jumps. */
const STEP_OPS = new Set(['Equal', 'Greater', 'GreaterOrEqual', 'Less', 'LessOrEqual', 'ArgMax', 'ArgMin', 'Round', 'Floor', 'Ceil', 'Sign', 'NonMaxSuppression']);

export interface MaskedOutput {
  output: string;
  /** The step op nearest the output (breadth-first from it), and its non-constant inputs: the values to measure. */
  node: string;
  op: string;
  inputs: string[];
}

/** Ops whose output carries their input's shape, not its values: a walk for value dependences stops there. */
const SHAPE_OPS = new Set(['Shape', 'Size']);
const LAYER_OPS = new Set(['Conv', 'ConvTranspose', 'Gemm', 'MatMul']);

/** The nodes `t` is computed by, through ops that pass values (breadth-first, nearest first). */
function* upstream(view: GraphView, t: string): Generator<NodeProto> {
  const seen = new Set<string>([t]);
  const queue = [t];
  while (queue.length) {
    const x = queue.shift()!;
    const n = view.producer.get(x);
    if (!n || SHAPE_OPS.has(n.opType)) continue;
    yield n;
    for (const i of n.input) if (i && !seen.has(i)) (seen.add(i), queue.push(i));
  }
}

/**
 * Float graph outputs whose values pass through a step op that reads a layer's output values: not a setting (Silero
 * VAD's Equal(sr, 16000) deciding an If) nor a shape computation (Shape → … → Equal → Where), which quantization
 * cannot flip. `floatOutputs`: the outputs OQE compares.
 */
export function maskedOutputs(view: GraphView, floatOutputs: readonly string[]): MaskedOutput[] {
  const fromLayer = (t: string) => {
    for (const node of upstream(view, t)) if (LAYER_OPS.has(node.opType)) return true;
    return false;
  };
  const found: MaskedOutput[] = [];
  for (const output of floatOutputs) {
    for (const n of upstream(view, output)) {
      if (!STEP_OPS.has(n.opType)) continue;
      const inputs = n.input.filter((i) => i && !view.isConstant(i) && fromLayer(i));
      if (!inputs.length) continue;
      found.push({ output, node: n.name || n.output[0], op: n.opType, inputs });
      break;
    }
  }
  return found;
}

/** The graph outputs of float type (what OQE compares). */
export function floatGraphOutputs(view: GraphView): string[] {
  return view.graph.output.filter((o) => o.type?.value.case === 'tensorType' && [DT.FLOAT, DT.FLOAT16, DT.BFLOAT16, DT.DOUBLE].includes(o.type.value.value.elemType)).map((o) => o.name);
}

/** One line per masked float graph output of `model`, for the CLI, naming what `--outputs` could measure instead. */
export function maskedOutputHints(model: ModelProto): string[] {
  const view = new GraphView(model.graph!);
  const outputs = floatGraphOutputs(view);
  const masked = maskedOutputs(view, outputs);
  return masked.map((m) => {
    const instead = [...new Set([...outputs.filter((o) => !masked.some((x) => x.output === o)), ...m.inputs])];
    return `output '${m.output}' passes through ${m.op} (${m.node}): its error counts flipped ${m.op === 'ArgMax' || m.op === 'ArgMin' ? 'choices' : 'comparisons'}, not how far the values moved; --outputs ${instead.join(',')} measures the values before it`;
  });
}
