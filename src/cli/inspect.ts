/**
 * `onnxquant inspect model.onnx [--json]`: what a model is made of and what the OnnxQuant rules would quantize.
 * The summary is computed by the pure `inspectModel`, so tests and other tools call it without the CLI.
 */
import type { Command } from 'commander';
import { TensorProto_DataType as DT, type GraphProto, type ModelProto, type TensorProto } from 'onnx-buf';
import { dtypeInfo, dtypeName } from '../onnx/dtype.ts';
import { loadModel } from '../onnx/model-io.ts';
import { tensorSize } from '../onnx/tensor-codec.ts';
import { validateModel } from '../onnx/validate.ts';
import { constantTensor } from '../ir/passes/constant-to-initializer.ts';
import { formatModel } from '../ir/format.ts';
import { nodeLabel, nodeSubgraphs, walkGraphs } from '../ir/graph.ts';
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
 *   quantizable: { count: number, byOp: { [op]: number }, nodes: string[] }             // after formatting
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
  quantizable: { count: number; byOp: Record<string, number>; nodes: string[] };
}

const FLOAT_TYPES: ReadonlySet<number> = new Set([DT.FLOAT, DT.FLOAT16, DT.BFLOAT16, DT.DOUBLE]);
/** Layers whose weight (input 1) the OnnxQuant rules quantize when it is a constant. */
const WEIGHTED = new Set(['Conv', 'ConvTranspose', 'Gemm', 'MatMul']);

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

/** Quantizable nodes of one graph; `outer` holds the constants visible from enclosing graphs. */
function quantizableIn(g: GraphProto, outer: ReadonlySet<string>, found: { op: string; label: string }[]): void {
  const constants = new Set(outer);
  for (const v of g.input) constants.delete(v.name); // a subgraph input shadows an outer constant
  const inputs = new Set(g.input.map((v) => v.name));
  for (const t of g.initializer) if (!inputs.has(t.name)) constants.add(t.name);
  g.node.forEach((n, i) => {
    if (isDefaultDomain(n.domain)) {
      if (WEIGHTED.has(n.opType) && constants.has(n.input[1])) found.push({ op: n.opType, label: nodeLabel(n, i) });
      else if (n.opType === 'MatMul' && !constants.has(n.input[0]) && !constants.has(n.input[1]))
        found.push({ op: 'MatMul(activations)', label: nodeLabel(n, i) });
      else if (n.opType === 'LayerNormalization') found.push({ op: n.opType, label: nodeLabel(n, i) });
    }
    for (const sg of nodeSubgraphs(n)) quantizableIn(sg, constants, found);
  });
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
  const found: { op: string; label: string }[] = [];
  quantizableIn(formatModel(model).model.graph!, new Set(), found);
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
    quantizable: { count: found.length, byOp, nodes: found.map((f) => f.label) },
  };
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
    `quantizable  ${s.quantizable.count} by the OnnxQuant rules (${Object.entries(s.quantizable.byOp).map(([op, c]) => `${op} ${c}`).join(', ') || 'none'})`,
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
