/**
 * `onnxquant inspect model.onnx [--json]`: what a model is made of and what the OnnxQuant rules would quantize.
 * The summary is computed by the pure `inspectModel`, so tests and other tools call it without the CLI.
 */
import type { Command } from 'commander';
import { TensorProto_DataType as DT, type ModelProto, type TensorProto } from 'onnx-buf';
import { dtypeInfo, dtypeName } from '../onnx/dtype.ts';
import { loadModel } from '../onnx/model-io.ts';
import { tensorSize } from '../onnx/tensor-codec.ts';
import { validateModel } from '../onnx/validate.ts';
import { constantTensor } from '../ir/passes/constant-to-initializer.ts';
import { computesInFloat16 } from '../ir/passes/upcast-float16.ts';
import { formatModel } from '../ir/format.ts';
import { GraphView, walkGraphs } from '../ir/graph.ts';
import { planModel } from '../quant/plan.ts';
import { getRule } from '../quant/rules.ts';
import { valueInfoSpec } from '../runtime/inputs.ts';

export interface ValueSummary {
  name: string;
  /** 'float32', 'int64', … */
  dtype: string;
  /** Fixed dims as numbers, symbolic dims by name, unknown dims as null; null when the rank is unknown. */
  shape: (number | string | null)[] | null;
}

/**
 * The `--json` output, one object:
 * {
 *   irVersion: number, producer: { name, version }, opsets: [{ domain, version }],      // domain '' = ai.onnx
 *   inputs: ValueSummary[], outputs: ValueSummary[],                                    // inputs exclude initializers
 *   nodes: number,                                                                      // all graphs, subgraphs included
 *   ops: [{ op, count }],                  // histogram over all graphs, most frequent first; op is 'domain::Op' off ai.onnx
 *   parameters: number,                    // elements of float initializers and float Constant-node tensors
 *   initializerBytes: number,              // stored size of all initializers (all dtypes, all graphs)
 *   initializersAsInputs: number,          // initializers also listed in graph.input (old IR < 4 exports)
 *   subgraphs: { If: number, Loop: number, Scan: number },
 *   float16: boolean,                      // computes in float16: quantized as its float32 graph (ir/passes/upcast-float16.ts)
 *   quantizable: { count: number, byOp: { [op]: number }, nodes: string[] },            // the plan, after formatting
 *   leftFloat: [{ node, reason }]          // layers of a quantized op type the plan leaves float, and why
 * }
 */
export interface InspectSummary {
  irVersion: number;
  producer: { name: string; version: string };
  opsets: { domain: string; version: number }[];
  inputs: ValueSummary[];
  outputs: ValueSummary[];
  nodes: number;
  ops: { op: string; count: number }[];
  parameters: number;
  initializerBytes: number;
  initializersAsInputs: number;
  subgraphs: { If: number; Loop: number; Scan: number };
  float16: boolean;
  quantizable: { count: number; byOp: Record<string, number>; nodes: string[] };
  leftFloat: { node: string; reason: string }[];
}

const FLOAT_TYPES: ReadonlySet<number> = new Set([DT.FLOAT, DT.FLOAT16, DT.BFLOAT16, DT.DOUBLE]);

function valueSummary(v: Parameters<typeof valueInfoSpec>[0]): ValueSummary {
  const s = valueInfoSpec(v);
  return { name: s.name, dtype: dtypeName(s.dataType), shape: s.dims };
}

function storedBytes(t: TensorProto): number {
  if (t.rawData.length) return t.rawData.length;
  if (t.dataType === DT.STRING) return t.stringData.reduce((a, s) => a + s.length, 0);
  return Math.ceil((tensorSize(t) * dtypeInfo(t.dataType).bits) / 8);
}

function isDefaultDomain(d: string): boolean {
  return d === '' || d === 'ai.onnx';
}

export function inspectModel(model: ModelProto): InspectSummary {
  const g = model.graph!;
  const hist = new Map<string, number>();
  const subgraphs = { If: 0, Loop: 0, Scan: 0 };
  let nodes = 0;
  let parameters = 0;
  let initializerBytes = 0;
  for (const sg of walkGraphs(g)) {
    for (const t of sg.initializer) {
      initializerBytes += storedBytes(t);
      if (FLOAT_TYPES.has(t.dataType)) parameters += tensorSize(t);
    }
    for (const n of sg.node) {
      nodes++;
      const op = isDefaultDomain(n.domain) ? n.opType : `${n.domain}::${n.opType}`;
      hist.set(op, (hist.get(op) ?? 0) + 1);
      if (isDefaultDomain(n.domain) && (n.opType === 'If' || n.opType === 'Loop' || n.opType === 'Scan')) subgraphs[n.opType]++;
      if (n.opType === 'Constant' && isDefaultDomain(n.domain)) {
        const t = constantTensor(n);
        if (t && FLOAT_TYPES.has(t.dataType)) parameters += tensorSize(t);
      }
    }
  }
  const inits = new Set(g.initializer.map((t) => t.name));
  // What the rules quantize is what the planner plans (all three OnnxQuant rules quantize the same layers): the
  // formatted model's plan, with the layers it leaves float and why (inside an If body, a float16 weight, …).
  const formatted = formatModel(model).model;
  const plan = planModel(formatted, getRule('onnxquant-int8-perchannel'));
  const fv = new GraphView(formatted.graph!);
  const found = plan.layers.map((l) => {
    const n = fv.graph.node.find((x) => x.name === l.node);
    const activations = l.op === 'MatMul' && n !== undefined && !fv.isConstant(n.input[1]);
    return { op: activations ? 'MatMul(activations)' : l.op, label: l.node };
  });
  const byOp: Record<string, number> = {};
  for (const f of found) byOp[f.op] = (byOp[f.op] ?? 0) + 1;
  return {
    irVersion: Number(model.irVersion),
    producer: { name: model.producerName, version: model.producerVersion },
    opsets: model.opsetImport.map((o) => ({ domain: o.domain, version: Number(o.version) })),
    inputs: g.input.filter((v) => !inits.has(v.name)).map(valueSummary),
    outputs: g.output.map(valueSummary),
    nodes,
    ops: [...hist].map(([op, count]) => ({ op, count })).sort((a, b) => b.count - a.count || a.op.localeCompare(b.op)),
    parameters,
    initializerBytes,
    initializersAsInputs: g.input.filter((v) => inits.has(v.name)).length,
    subgraphs,
    float16: computesInFloat16(model),
    quantizable: { count: found.length, byOp, nodes: found.map((f) => f.label) },
    leftFloat: plan.skipped,
  };
}

/** Layers left float, counted by reason: "36 inside a If body, 2 weight is float16, not float32 (left float)". */
function leftFloatText(list: InspectSummary['leftFloat']): string {
  const by = new Map<string, number>();
  for (const l of list) {
    const reason = l.reason.replace(/^(inside a \w+ body).*/, '$1');
    by.set(reason, (by.get(reason) ?? 0) + 1);
  }
  return [...by].map(([r, n]) => `${n} ${r}`).join(', ');
}

function shapeText(s: ValueSummary['shape']): string {
  return s ? `[${s.map((d) => d ?? '?').join(', ')}]` : '(unknown rank)';
}

function bytesText(n: number): string {
  return n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(2)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`;
}

export function renderInspect(file: string, s: InspectSummary): string {
  const lines = [
    `model        ${file}`,
    `ir version   ${s.irVersion}`,
    `opsets       ${s.opsets.map((o) => `${o.domain || 'ai.onnx'} ${o.version}`).join(', ')}`,
    `producer     ${[s.producer.name, s.producer.version].filter(Boolean).join(' ') || '(none)'}`,
    'inputs',
    ...s.inputs.map((v) => `  ${v.name}  ${v.dtype} ${shapeText(v.shape)}`),
    'outputs',
    ...s.outputs.map((v) => `  ${v.name}  ${v.dtype} ${shapeText(v.shape)}`),
    `nodes        ${s.nodes}`,
    `ops          ${s.ops.map((o) => `${o.op} ${o.count}`).join(', ')}`,
    `parameters   ${s.parameters.toLocaleString('en-US')}`,
    `initializers ${bytesText(s.initializerBytes)}${s.initializersAsInputs ? `, ${s.initializersAsInputs} also listed as graph inputs` : ', none listed as graph inputs'}`,
    `subgraphs    If ${s.subgraphs.If}, Loop ${s.subgraphs.Loop}, Scan ${s.subgraphs.Scan}`,
    ...(s.float16 ? [`float16      computes in float16: quantized as its float32 graph${[...s.inputs, ...s.outputs].some((v) => v.dtype === 'float16' || v.dtype === 'bfloat16') ? ' (its float16 inputs and outputs become float32)' : ''}`] : []),
    `quantizable  ${s.quantizable.count} by the OnnxQuant rules (${Object.entries(s.quantizable.byOp).map(([op, c]) => `${op} ${c}`).join(', ') || 'none'})`,
    ...(s.leftFloat.length ? [`left float   ${s.leftFloat.length}: ${leftFloatText(s.leftFloat)}`] : []),
  ];
  return `${lines.join('\n')}\n`;
}

export function registerInspect(program: Command): void {
  program
    .command('inspect')
    .description('summarise a model: opsets, inputs/outputs, ops, parameters, what the OnnxQuant rules would quantize')
    .argument('<model>', 'an .onnx file')
    .option('--json', 'print one JSON object (see InspectSummary in src/cli/inspect.ts) and nothing else')
    .action((file: string, opts: { json?: boolean }) => {
      const model = loadModel(file);
      validateModel(model, file);
      const summary = inspectModel(model);
      process.stdout.write(opts.json ? `${JSON.stringify(summary, null, 2)}\n` : renderInspect(file, summary));
    });
}
