/**
 * The planner: which tensors a rule quantizes, in which role, along which axis. The plan is explicit,
 * serialisable data; only the realise stage writes Q/DQ nodes.
 *
 * OnnxQuant semantics: input 0 (activation) and input 1 (weight) of Conv/ConvTranspose/Gemm/MatMul, input 0 of
 * LayerNormalization — the fused op or the decomposed ReduceMean/Sub pattern of older exports. Bias and outputs
 * stay float. Each consumer has its own input config; consumers of one tensor with the same config share one Q/DQ
 * pair (their statistics are the same tensor's). A MatMul whose second input is not a constant quantizes it as an
 * activation. Nodes inside If/Loop/Scan bodies are left float (reported in `skipped`).
 */
import { TensorProto_DataType as DT, type ModelProto, type NodeProto } from 'onnx-buf';
import { dtypeName } from '../onnx/dtype.ts';
import { UserError } from '../errors.ts';
import { attrInt, GraphView, nodeLabel, nodeSubgraphs } from '../ir/graph.ts';
import { applyOverride, type TensorQuantConfig } from './config.ts';
import type { QuantRule, QuantizedOp } from './rules.ts';

export type TensorRole = 'activation' | 'weight';

export interface PlanUse {
  node: string;
  op: string;
  input: number;
}

export interface PlannedTensor {
  /** Unique key: tensor name plus role. */
  key: string;
  tensor: string;
  role: TensorRole;
  config: TensorQuantConfig;
  /** Weight per-channel axis (undefined for per-tensor). */
  axis?: number;
  uses: PlanUse[];
}

export interface Filter {
  /** Op types to leave float. */
  excludeOps?: string[];
  /** Node names (exact, glob with * and ?, or /regex/) to leave float. */
  excludeNodes?: string[];
  /** When given, only these node names are quantized. */
  includeNodes?: string[];
  /**
   * Per-tensor overrides, keyed by tensor name (exact, glob or /regex/): 'float' leaves the tensor unquantized at
   * every consumer; an object replaces fields of the rule's config for it (e.g. { bits: 16 }, which gets int16's
   * full range — `applyOverride` — or { observer: 'kl' }). The first matching key wins. `prepareModel` raises the
   * opset to what the overridden types need (int16 and int4: 21).
   */
  overrides?: Record<string, 'float' | Partial<TensorQuantConfig>>;
  /**
   * Subgraphs (regions) to leave float, each given by its boundary tensors: the nodes that are downstream of any
   * `from` tensor and upstream of any `to` tensor (both inclusive of the nodes reading `from` / writing `to`) —
   * e.g. a detection head from its first feature map to the graph outputs.
   */
  excludeRegions?: { from: string[]; to: string[] }[];
}

/** Names of the nodes inside any of the regions. */
function regionMembership(view: GraphView, regions: readonly { from: string[]; to: string[] }[]): Set<string> {
  const inside = new Set<string>();
  for (const r of regions) {
    const down = new Set<NodeProto>();
    const stack = r.from.flatMap((t) => view.uses(t));
    while (stack.length) {
      const n = stack.pop()!;
      if (down.has(n)) continue;
      down.add(n);
      for (const o of n.output) stack.push(...view.uses(o));
    }
    const up = new Set<NodeProto>();
    const back = r.to.map((t) => view.producer.get(t)).filter((n): n is NodeProto => !!n);
    while (back.length) {
      const n = back.pop()!;
      if (up.has(n)) continue;
      up.add(n);
      for (const i of n.input) {
        const p = view.producer.get(i);
        if (p) back.push(p);
      }
    }
    for (const n of down) if (up.has(n)) inside.add(n.name);
  }
  return inside;
}

export interface QuantPlan {
  rule: string;
  tensors: PlannedTensor[];
  /** The quantized layers in graph order (for error analysis). */
  layers: { node: string; op: string; output: string }[];
  skipped: { node: string; reason: string }[];
}

/**
 * A filter that names nothing in the model is almost always a typo (a node name from another export, 'Matmul'),
 * and it would silently quantize what the user meant to leave float: every node pattern must match a node, every
 * override key and region boundary a tensor, and every excluded op type must be one the rule quantizes. An op type
 * the rule quantizes but the model lacks is fine (a list kept for several models).
 */
export function checkFilter(model: ModelProto, filter: Filter, quantizedOps: readonly string[], source: string): void {
  const g = model.graph!;
  const nodes = g.node.map((n) => n.name);
  const tensors = new Set([...g.input.map((v) => v.name), ...g.initializer.map((t) => t.name), ...g.node.flatMap((n) => [...n.input, ...n.output])]);
  const none = (what: string, flag: string, p: string) => new UserError(`${flag} '${p}' matches no ${what} of the model`, source);
  for (const [flag, list] of [['--exclude-node', filter.excludeNodes], ['--include-node', filter.includeNodes]] as const)
    for (const p of list ?? []) if (!nodes.some((n) => matchName(n, p))) throw none('node', flag, p);
  for (const p of Object.keys(filter.overrides ?? {})) if (![...tensors].some((t) => matchName(t, p))) throw none('tensor', '--override', p);
  for (const r of filter.excludeRegions ?? []) for (const t of [...r.from, ...r.to]) if (!tensors.has(t)) throw none('tensor', '--exclude-region', t);
  for (const op of filter.excludeOps ?? [])
    if (!quantizedOps.includes(op)) throw new UserError(`--exclude-op '${op}' is not an op type the rule quantizes (${quantizedOps.join(', ')})`, source);
}

export function matchName(name: string, pattern: string): boolean {
  if (pattern.length > 2 && pattern.startsWith('/') && pattern.endsWith('/')) return new RegExp(pattern.slice(1, -1)).test(name);
  if (!/[*?]/.test(pattern)) return name === pattern;
  const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
  return re.test(name);
}

function weightAxis(n: NodeProto, rule: QuantRule, weightRank: number): number {
  switch (n.opType) {
    case 'ConvTranspose':
      return 1;
    case 'Conv':
      return 0;
    case 'Gemm':
      return rule.matmulWeightAxis === 'ppq' ? 0 : attrInt(n, 'transB', 0) ? 0 : 1;
    default: // MatMul
      return rule.matmulWeightAxis === 'ppq' ? 0 : weightRank - 1;
  }
}

/** ReduceMean nodes that open a decomposed LayerNorm: x → ReduceMean → Sub(x, mean) → Pow/Mul … */
function decomposedLayerNormInputs(view: GraphView): Map<string, NodeProto[]> {
  const found = new Map<string, NodeProto[]>();
  for (const n of view.graph.node) {
    if (n.opType !== 'ReduceMean') continue;
    const x = n.input[0];
    const sub = view.uses(n.output[0]).find((u) => u.opType === 'Sub' && u.input[0] === x && u.input[1] === n.output[0]);
    if (!sub) continue;
    const centred = view.uses(sub.output[0]);
    if (!centred.some((u) => u.opType === 'Pow' || (u.opType === 'Mul' && u.input[0] === u.input[1]))) continue;
    found.set(x, [n, sub]);
  }
  return found;
}

/** onnxruntime contrib ops that hold a layer the rules would quantize in its ONNX form. */
const ORT_LAYER_OPS: ReadonlySet<string> = new Set(['Conv', 'FusedConv', 'FusedGemm', 'FusedMatMul', 'NhwcConv', 'ConvTransposeWithDynamicPads']);
const ALREADY_QUANTIZED = /^(QLinear\w+|ConvInteger|MatMulInteger\w*|QGemm|DynamicQuantize\w+|QAttention|QEmbedLayerNormalization)$/;

export function planModel(model: ModelProto, rule: QuantRule, filter: Filter = {}): QuantPlan {
  const view = new GraphView(model.graph!);
  const tensors = new Map<string, PlannedTensor>();
  const layers: QuantPlan['layers'] = [];
  const skipped: QuantPlan['skipped'] = [];
  const ops = new Set<string>(rule.ops);
  const inRegion = regionMembership(view, filter.excludeRegions ?? []);
  const excluded = (name: string, op: string) =>
    inRegion.has(name) ||
    (filter.excludeOps ?? []).includes(op) ||
    (filter.excludeNodes ?? []).some((p) => matchName(name, p)) ||
    (filter.includeNodes !== undefined && !filter.includeNodes.some((p) => matchName(name, p)));

  const overrideFor = (tensor: string) => Object.entries(filter.overrides ?? {}).find(([p]) => matchName(tensor, p))?.[1];
  const add = (tensor: string, role: TensorRole, ruleConfig: TensorQuantConfig, use: PlanUse, axis?: number) => {
    const o = overrideFor(tensor);
    if (o === 'float') return;
    const config = o ? applyOverride(ruleConfig, o, `override for '${tensor}'`) : ruleConfig;
    if (config.perChannel === false) axis = undefined;
    const key = `${role}:${tensor}${axis !== undefined ? `@${axis}` : ''}`;
    const t = tensors.get(key);
    if (t) t.uses.push(use);
    else tensors.set(key, { key, tensor, role, config, axis, uses: [use] });
  };

  const lnDecomposed = ops.has('LayerNormalization') ? decomposedLayerNormInputs(view) : new Map<string, NodeProto[]>();
  view.graph.node.forEach((n, i) => {
    const name = nodeLabel(n, i);
    if (!n.name) n.name = name; // plans refer to nodes by name; give unnamed nodes a stable one
    for (const sg of nodeSubgraphs(n))
      for (const inner of sg.node) if (ops.has(inner.opType)) skipped.push({ node: `${name}/${nodeLabel(inner)}`, reason: `inside a ${n.opType} body` });
    // Already-quantized models (onnxruntime QOperator format: QLinearConv, MatMulInteger …) are left as they are;
    // say so rather than returning an empty plan without a word.
    if (ALREADY_QUANTIZED.test(n.opType)) {
      skipped.push({ node: name, reason: `already quantized (${n.opType}); left as is` });
      return;
    }
    // A model saved after onnxruntime's optimisations holds its layers as contrib ops (FusedConv and FusedGemm split
    // back in formatting, ir/passes/unfuse-ort-fusions.ts; NCHWc Convs with blocked weights, FusedMatMul and fusions
    // with other activations do not): say so rather than skip them unseen.
    if (n.domain.startsWith('com.microsoft') && ORT_LAYER_OPS.has(n.opType)) {
      skipped.push({ node: name, reason: `onnxruntime-optimized layer (${n.domain}::${n.opType}): quantize the model as exported, before onnxruntime optimizes it` });
      return;
    }
    if (n.domain && n.domain !== 'ai.onnx') return;
    const op = n.opType as QuantizedOp;
    if (!ops.has(op)) {
      // Decomposed LayerNorm: quantize x where the ReduceMean and the Sub read it.
      if (n.opType === 'ReduceMean' && lnDecomposed.get(n.input[0])?.[0] === n && !excluded(name, 'LayerNormalization')) {
        const [mean, sub] = lnDecomposed.get(n.input[0])!;
        add(n.input[0], 'activation', rule.activation, { node: name, op: 'ReduceMean', input: 0 });
        if (!sub.name) sub.name = nodeLabel(sub, view.graph.node.indexOf(sub));
        add(n.input[0], 'activation', rule.activation, { node: sub.name, op: 'Sub', input: 0 });
        layers.push({ node: name, op: 'LayerNormalization(decomposed)', output: mean.output[0] });
      }
      return;
    }
    if (excluded(name, op)) {
      skipped.push({ node: name, reason: 'excluded by filter' });
      return;
    }
    const x = n.input[0];
    if (!x || view.isConstant(x)) {
      skipped.push({ node: name, reason: 'input 0 is a constant' });
      return;
    }
    if (op === 'LayerNormalization') {
      add(x, 'activation', rule.activation, { node: name, op, input: 0 });
      layers.push({ node: name, op, output: n.output[0] });
      return;
    }
    const w = n.input[1];
    if (!w) return;
    if (!view.isConstant(w) && op !== 'MatMul') {
      skipped.push({ node: name, reason: 'weight is computed at run time (not a constant after formatting)' });
      return;
    }
    // Q/DQ compute in float32 (scales are float32): a float16/bfloat16/double layer would get float32 inputs and be
    // rejected by onnxruntime. Such layers stay float.
    if (view.isConstant(w) && view.initializers.get(w)!.dataType !== DT.FLOAT) {
      skipped.push({ node: name, reason: `weight is ${dtypeName(view.initializers.get(w)!.dataType)}, not float32 (left float)` });
      return;
    }
    add(x, 'activation', rule.activation, { node: name, op, input: 0 });
    if (view.isConstant(w)) {
      const rank = view.initializers.get(w)!.dims.length;
      const axis = rule.weight.perChannel && rank > 1 ? weightAxis(n, rule, rank) : undefined;
      add(w, 'weight', rule.weight, { node: name, op, input: 1 }, axis);
    } else add(w, 'activation', rule.activation, { node: name, op, input: 1 });
    layers.push({ node: name, op, output: n.output[0] });
  });
  return { rule: rule.name, tensors: [...tensors.values()], layers, skipped };
}
