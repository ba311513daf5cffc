/**
 * Freezing model inputs (`--freeze sr=16000`): each named graph input becomes a constant, and every If whose
 * condition then depends on constants only is replaced by the branch it takes. Layers inside If bodies are left
 * float by the planner (their statistics cannot leave the body); Silero VAD keeps all its Convs in the branches of
 * a sample-rate If, so without this it could not be quantized at all. The frozen model no longer takes those inputs:
 * it is the model for that setting (16 kHz), which is what gets quantized and deployed.
 *
 * Conditions are computed by the caller's `evaluate` (onnxruntime on the condition's cone), so any op may feed
 * them. Branch values whose names the outer graph already uses are renamed, branch initializers move out, and each
 * If output becomes an Identity of the branch output (the formatter removes those).
 */
import { clone } from '@bufbuild/protobuf';
import { ModelProtoSchema, type GraphProto, type ModelProto, type NodeProto, type TensorProto } from 'onnx-buf';
import { ensureUniqueNodeNames, GraphView, makeNode, modelForOutputs, nodeSubgraphs, renameReads, walkGraphs } from './graph.ts';

/** Runs `model` (which has no graph inputs) and returns the named values, flattened. */
export type Evaluate = (model: ModelProto, outputs: readonly string[]) => Promise<Record<string, ArrayLike<number | bigint | boolean>>>;

export interface FreezeResult {
  model: ModelProto;
  /** The Ifs replaced by a branch, as 'name: then|else'. */
  inlined: string[];
}

/** True when `tensor` is computed from initializers alone (no graph input, no subgraph on the way). */
function constantCone(view: GraphView, tensor: string): boolean {
  const seen = new Set<string>();
  const stack = [tensor];
  while (stack.length) {
    const t = stack.pop()!;
    if (!t || seen.has(t)) continue;
    seen.add(t);
    if (view.isConstant(t)) continue;
    const p = view.producer.get(t);
    if (!p || nodeSubgraphs(p).length) return false;
    stack.push(...p.input);
  }
  return true;
}

/** Replaces `ifNode` in `g` by the nodes of `branch`. */
function inlineBranch(g: GraphProto, ifNode: NodeProto, branch: GraphProto): void {
  // Every name defined outside the branch (the main graph and all other bodies): branch names equal to one of them
  // get fresh names, or the inlined nodes would overwrite or shadow them.
  const own = new Set(walkGraphs(branch));
  const taken = new Set<string>();
  for (const sg of walkGraphs(g)) {
    if (own.has(sg)) continue;
    for (const v of sg.input) taken.add(v.name);
    for (const t of sg.initializer) taken.add(t.name);
    for (const n of sg.node) for (const o of n.output) taken.add(o);
  }
  const rename = new Map<string, string>();
  for (const name of [...branch.initializer.map((t) => t.name), ...branch.node.flatMap((n) => n.output)]) {
    if (!name || !taken.has(name)) continue;
    let k = 1;
    while (taken.has(`${name}__${k}`)) k++;
    rename.set(name, `${name}__${k}`);
    taken.add(`${name}__${k}`);
  }
  const to = (name: string) => rename.get(name) ?? name;
  for (const n of branch.node) {
    n.input = n.input.map(to);
    n.output = n.output.map(to);
    for (const sg of nodeSubgraphs(n)) renameReads(sg, rename);
  }
  // Renamed where they clashed, so no initializer of the graph has their names.
  g.initializer.push(...branch.initializer.map((t) => ({ ...t, name: to(t.name) })));
  const outputs = branch.output.map((o, j) => makeNode('Identity', [to(o.name)], [ifNode.output[j]], `${ifNode.name || 'If'}_out${j}`));
  g.node.splice(g.node.indexOf(ifNode), 1, ...branch.node, ...outputs);
  ensureUniqueNodeNames(g);
}

/** The model with `values` in place of the graph inputs of the same names, and the Ifs this decides inlined. */
export async function freezeInputs(input: ModelProto, values: readonly TensorProto[], evaluate: Evaluate): Promise<FreezeResult> {
  const model = clone(ModelProtoSchema, input);
  const g = model.graph!;
  for (const t of values) {
    g.input = g.input.filter((v) => v.name !== t.name);
    g.initializer = g.initializer.filter((x) => x.name !== t.name);
    g.initializer.push(t);
  }
  const inlined: string[] = [];
  // Inlining a branch can expose the Ifs nested in it: repeat until no If's condition is constant.
  for (;;) {
    const view = new GraphView(g);
    const ifs = g.node.filter((n) => n.opType === 'If' && (!n.domain || n.domain === 'ai.onnx') && constantCone(view, n.input[0]));
    if (!ifs.length) break;
    const conds = [...new Set(ifs.map((n) => n.input[0]))];
    const cone = modelForOutputs(model, conds);
    cone.graph!.input = [];
    const got = await evaluate(cone, conds);
    for (const n of ifs) {
      const v = got[n.input[0]];
      if (!v || v.length !== 1) throw new Error(`If '${n.name}': its condition has ${v?.length ?? 0} elements, expected 1`);
      const take = Boolean(v[0]) ? 'then_branch' : 'else_branch';
      const branch = n.attribute.find((a) => a.name === take)?.g;
      if (!branch) throw new Error(`If '${n.name}' has no ${take}`);
      inlineBranch(g, n, branch);
      inlined.push(`${n.name}: ${take === 'then_branch' ? 'then' : 'else'}`);
    }
  }
  new GraphView(g).pruneInitializers();
  return { model, inlined };
}

/**
 * For each top-level If whose condition is computed from graph inputs and constants alone (no body on the way), the
 * inputs it is computed from: freezing them lets `freezeInputs` inline its branch — what the CLI suggests when
 * layers are left float inside If bodies.
 */
export function ifDecidingInputs(model: ModelProto): string[][] {
  const view = new GraphView(model.graph!);
  const found: string[][] = [];
  for (const n of model.graph!.node) {
    if (n.opType !== 'If') continue;
    const leaves = new Set<string>();
    const seen = new Set<string>();
    const stack = [n.input[0]];
    let decidable = true;
    while (stack.length && decidable) {
      const t = stack.pop()!;
      if (!t || seen.has(t) || view.isConstant(t)) continue;
      seen.add(t);
      if (view.graphInputs.has(t)) leaves.add(t);
      else {
        const p = view.producer.get(t);
        if (!p || nodeSubgraphs(p).length) decidable = false;
        else stack.push(...p.input);
      }
    }
    if (decidable && leaves.size) found.push([...leaves]);
  }
  return found;
}
