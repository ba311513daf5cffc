/**
 * onnxruntime-node sessions in the three modes the pipeline needs:
 * - float: the model as given, optimizations on;
 * - simulate: graph optimizations DISABLED, so QuantizeLinear/DequantizeLinear run as written — exact fake-quant
 *   (two exact rewrites make it cheaper: constant weights dequantized once, FP8 Q→DQ pairs as float32 arithmetic);
 * - deploy: optimizations ALL, so onnxruntime fuses Q/DQ into integer kernels as it would in production.
 * Intermediate tensors are fetched by adding them to graph.output (`extraOutputs`).
 */
import { create } from '@bufbuild/protobuf';
import { ValueInfoProtoSchema, type ModelProto } from 'onnx-buf';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { serializeModel } from '../onnx/model-io.ts';
import { float16ToFloat32, float32ToFloat16 } from '../onnx/float-formats.ts';
import { UserError } from '../errors.ts';
import { foldConstantDequantize } from './fold-dequantize.ts';
import { emulateFp8QuantDequant } from './emulate-fp8.ts';
import { withGraphLists } from '../ir/graph.ts';
import type { FloatTensor } from '../tensor.ts';

export type RunMode = 'float' | 'simulate' | 'deploy';

export interface SessionOptions {
  mode?: RunMode;
  /** Names of intermediate values to return besides the graph outputs. */
  extraOutputs?: readonly string[];
  intraOpThreads?: number;
  /** Simulate mode: dequantize constant weights once instead of on every run (bit-identical; default true). */
  foldConstantDequantize?: boolean;
  /** Simulate mode: FP8 QuantizeLinear → DequantizeLinear pairs as float32 arithmetic instead of onnxruntime's
   * float8 kernels — same bits, simulated FP8 runs 1.5–2.4× faster (emulate-fp8.ts; default true). */
  emulateFp8?: boolean;
  /** Where onnxruntime writes its optimized model (deploy-check reads it to list integer kernels). */
  optimizedModelPath?: string;
  /** Execution provider. 'webgpu' (Dawn over Vulkan on Linux) is for float and calibration sessions only: the
   * simulation must run the CPU kernels whose results the deployment check compares against. Nodes the WebGPU
   * provider lacks fall back to the CPU provider inside onnxruntime. */
  provider?: ExecutionProvider;
}

/**
 * onnxruntime's intra-op threads when a caller names none: `ONNXQUANT_THREADS` if set (0 = onnxruntime's default,
 * one per physical core). Two jobs on one machine, each with a pool spinning on every core, run slower together
 * than one after the other; a user sharing a machine sets it to their share.
 */
export function defaultIntraOpThreads(env: NodeJS.ProcessEnv = process.env): number {
  const v = env.ONNXQUANT_THREADS;
  if (v === undefined || v === '') return 0;
  if (!/^\d+$/.test(v.trim())) throw new UserError(`ONNXQUANT_THREADS must be an integer ≥ 0 (0: onnxruntime's default), got '${v}'`);
  return Number(v.trim());
}

export type ExecutionProvider = 'cpu' | 'webgpu';
export const EXECUTION_PROVIDERS: readonly ExecutionProvider[] = ['cpu', 'webgpu'];

export interface ModelSession {
  inputNames: readonly string[];
  outputNames: readonly string[];
  run(feeds: Record<string, FloatTensor | ort.Tensor>, fetch?: readonly string[]): Promise<Record<string, ort.Tensor>>;
  release(): Promise<void>;
}

export function withExtraOutputs(model: ModelProto, names: readonly string[]): ModelProto {
  if (names.length === 0) return model;
  const m = withGraphLists(model);
  const present = new Set(m.graph!.output.map((o) => o.name));
  for (const name of names) if (!present.has(name)) m.graph!.output.push(create(ValueInfoProtoSchema, { name }));
  return m;
}

export async function createSession(model: ModelProto | Uint8Array, opts: SessionOptions = {}): Promise<ModelSession> {
  const mode = opts.mode ?? 'float';
  const provider = opts.provider ?? 'cpu';
  if (provider !== 'cpu' && mode !== 'float')
    throw new UserError(`the ${provider} provider runs float and calibration sessions only; '${mode}' sessions run on the CPU provider`);
  checkProvider(provider);
  let bytes: Uint8Array;
  // onnxruntime 1.30's level-'all' Q/DQ fusions build invalid graphs for float8 Q/DQ (QLinearConv over fp8,
  // ClipQuantFusion throws on an fp8 zero point) and its CPU provider has no float8 kernels to fuse into anyway:
  // deploy FP8 models at 'basic' (constant folding and float fusions only).
  const fp8 = !(model instanceof Uint8Array) && model.graph!.initializer.some((t) => t.dataType >= 17 && t.dataType <= 20);
  if (model instanceof Uint8Array) {
    if (opts.extraOutputs?.length) throw new Error('extraOutputs needs a ModelProto, not bytes');
    bytes = model;
  } else {
    let m = model;
    if (mode === 'simulate' && opts.foldConstantDequantize !== false) m = foldConstantDequantize(m, new Set(opts.extraOutputs ?? [])).model;
    if (mode === 'simulate' && opts.emulateFp8 !== false) m = emulateFp8QuantDequant(m, new Set(opts.extraOutputs ?? [])).model;
    bytes = serializeModel(withExtraOutputs(m, opts.extraOutputs ?? []));
  }
  const so: ort.InferenceSession.SessionOptions = {
    graphOptimizationLevel: mode === 'simulate' ? 'disabled' : fp8 ? 'basic' : 'all',
    intraOpNumThreads: opts.intraOpThreads ?? defaultIntraOpThreads(),
    interOpNumThreads: 1,
    executionMode: 'sequential',
    logSeverityLevel: 3,
    executionProviders: [provider],
  };
  if (opts.optimizedModelPath) so.optimizedModelFilePath = opts.optimizedModelPath;
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(bytes, so);
  } catch (e) {
    const msg = oneLine(e);
    // Dawn finds no adapter without a GPU and a Vulkan loader (libvulkan.so.1): say so rather than blame the model.
    if (provider === 'webgpu' && /WebGPU|adapter|Dawn/i.test(msg)) throw new UserError(`${WEBGPU_MISSING}: ${msg}`);
    throw new UserError(`onnxruntime cannot load the model: ${msg}`);
  }
  // A float16 model (one shipped as such: its float16 graph is what `float` mode runs) takes the float32 data rounded
  // to float16 here, on the host, as a caller converting its data does — a Cast in the graph would not do: onnxruntime
  // drops a float32 → float16 → float32 pair it finds around its own casts — and its float16 outputs come back as
  // float32 (exact), so data, metrics and comparisons stay float32.
  const half = new Set(session.inputMetadata.filter((m) => m.isTensor && m.type === 'float16').map((m) => m.name));
  const toHalf = (t: ort.Tensor) => new ort.Tensor('float16', Uint16Array.from(t.data as Float32Array, float32ToFloat16), [...t.dims]);
  // Only a model with a float16 output pays for the look at each run's outputs (calibration and simulation run often).
  const halfOut = session.outputMetadata.some((m) => m.isTensor && m.type === 'float16');
  const widen = (r: Record<string, ort.Tensor>) => {
    if (halfOut) for (const [k, t] of Object.entries(r)) if (t.type === 'float16') r[k] = new ort.Tensor('float32', Float32Array.from(t.data as Uint16Array, float16ToFloat32), [...t.dims]);
    return r;
  };
  return {
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    async run(feeds, fetch) {
      const ortFeeds: Record<string, ort.Tensor> = {};
      for (const [k, v] of Object.entries(feeds)) {
        if (!session.inputNames.includes(k))
          throw new UserError(`model has no input named '${k}' (inputs: ${session.inputNames.join(', ')})`);
        const t = v instanceof ort.Tensor ? v : new ort.Tensor('float32', v.data, [...v.dims]);
        ortFeeds[k] = half.has(k) && t.type === 'float32' ? toHalf(t) : t;
      }
      const missing = session.inputNames.filter((n) => !(n in ortFeeds));
      if (missing.length) throw new UserError(`missing model input(s): ${missing.join(', ')}`);
      try {
        return widen(await (fetch ? session.run(ortFeeds, [...fetch]) : session.run(ortFeeds)));
      } catch (e) {
        throw new UserError(`onnxruntime run failed: ${oneLine(e)}`);
      }
    },
    release: () => session.release(),
  };
}

const WEBGPU_MISSING = 'the WebGPU provider is not available here (it needs a GPU with a Vulkan driver and libvulkan.so.1)';

/**
 * On Linux onnxruntime's WebGPU provider (Dawn) reaches the GPU through the Vulkan loader. Without it Dawn prints
 * several lines of warnings of its own before failing, so look for the loader first: in the dynamic linker's cache
 * (its file holds the library names as strings) or on LD_LIBRARY_PATH.
 */
function vulkanLoaderMissing(): boolean {
  if (process.platform !== 'linux') return false;
  if ((process.env.LD_LIBRARY_PATH ?? '').split(':').some((d) => d && existsSync(join(d, 'libvulkan.so.1')))) return false;
  try {
    return !readFileSync('/etc/ld.so.cache').includes('libvulkan.so.1');
  } catch {
    return false; // no cache to read: let onnxruntime try
  }
}

/** Refuse a provider that cannot load here before any work (the WebGPU provider without a Vulkan loader). */
export function checkProvider(provider: ExecutionProvider): void {
  if (provider === 'webgpu' && vulkanLoaderMissing()) throw new UserError(`${WEBGPU_MISSING}: no libvulkan.so.1 in the loader's cache or LD_LIBRARY_PATH`);
}

/** onnxruntime's message on one line: its details (which index, got, expected) are on the lines after the first. */
function oneLine(e: unknown): string {
  const s = e instanceof Error ? e.message : String(e);
  const one = s.split('\n').map((l) => l.trim()).filter((l) => l).join('; ').slice(0, 400);
  return /invalid dimensions/.test(one) ? `${one} (does the data's shape match the model's input? check its preprocessing)` : one;
}

export function toFloatTensor(t: ort.Tensor): FloatTensor {
  if (t.type !== 'float32') throw new Error(`expected a float32 tensor, got ${t.type}`);
  return { dims: [...t.dims], data: t.data as Float32Array };
}
