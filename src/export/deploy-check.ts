/**
 * Deploy check: does the model onnxruntime deploys (optimizations on, Q/DQ fused into integer kernels) compute
 * what the simulation (optimizations off, Q/DQ run as written) computed, which kernels did onnxruntime actually
 * use, and how much faster is it than the float model?
 * - agreement: the same batches through both modes; per output the max |sim − deploy|, the relative L2 error
 *   ‖sim − deploy‖/‖sim‖, and for classifier-like outputs (rank 2 or 3) the share of positions whose argmax over the
 *   last axis agrees (top-1 agreement); the same against the float model when one is given;
 * - kernels: op counts of onnxruntime's saved optimized model (`optimizedModelFilePath`), split into integer
 *   kernels (QLinearConv, QGemm, MatMulIntegerToFloat …), remaining QuantizeLinear/DequantizeLinear, and the rest;
 * - latency: float and deploy sessions alternate run by run (so background load hits both alike) at each batch
 *   size; median, 25th and 75th percentile of N timed runs after warm-up.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ModelProto } from 'onnx-buf';
import * as ort from 'onnxruntime-node';
import type { Feeds } from '../calibrate/calibrate.ts';
import { loadModel } from '../onnx/model-io.ts';
import { graphInputs } from '../runtime/inputs.ts';
import { createSession, type ModelSession } from '../runtime/session.ts';
import type { FloatTensor } from '../tensor.ts';

export const INTEGER_KERNELS = /^(QLinear\w+|NhwcQLinear\w*|QGemm|MatMulInteger\w*|ConvInteger|DynamicQuantize\w*|QAttention|QEmbedLayerNormalization|QOrderedMatMul)$/;

export interface OutputAgreement {
  output: string;
  maxAbsDiff: number;
  relError: number;
  /** Share of argmax positions (over the last axis) that agree; classifier-like outputs only. */
  top1Agreement?: number;
  positions?: number;
}

export interface KernelReport {
  integer: Record<string, number>;
  quantizeLinear: number;
  dequantizeLinear: number;
  other: Record<string, number>;
  /** Conv/ConvTranspose/Gemm/MatMul nodes of the QDQ model (what could become integer kernels). */
  quantizableLayers: number;
}

export interface LatencyResult {
  batch: number;
  runs: number;
  floatMs?: { median: number; p25: number; p75: number };
  quantMs: { median: number; p25: number; p75: number };
  speedup?: number;
  note?: string;
}

export interface DeployCheckReport {
  batches: number;
  simulateVsDeploy: OutputAgreement[];
  floatVsDeploy?: OutputAgreement[];
  kernels: KernelReport;
  latency: LatencyResult[];
}

export interface DeployCheckOptions {
  floatModel?: ModelProto;
  /** Data for the agreement check (and the first sample feeds the latency runs). */
  batches: Feeds[];
  task?: 'auto' | 'classify' | 'regress';
  /** Batch sizes for latency (default [1, 8]); [] skips the latency measurement. */
  latencyBatches?: number[];
  /** Feeds for a latency run at `batch` (default: the first sample of every input tiled to `batch`); for inputs held
   * fixed whose batch dimension is not the first (a recurrent state [2, batch, 128]). */
  latencyFeeds?: (batch: number) => Feeds;
  /** The inputs whose first dimension is the batch (default: every input); a fixed size there skips a latency batch. */
  batchInputs?: readonly string[];
  runs?: number;
  warmup?: number;
  intraOpThreads?: number;
}

function asFloat(t: ort.Tensor): Float32Array {
  return t.data as Float32Array;
}

export function compareOutputs(ref: Record<string, ort.Tensor>[], got: Record<string, ort.Tensor>[], task: DeployCheckOptions['task'] = 'auto'): OutputAgreement[] {
  const names = Object.keys(ref[0] ?? {});
  return names.map((name) => {
    let maxAbs = 0;
    let num = 0;
    let den = 0;
    let agree = 0;
    let positions = 0;
    const dims = ref[0][name].dims;
    const classify = task === 'classify' || (task === 'auto' && (dims.length === 2 || dims.length === 3) && dims[dims.length - 1] >= 2);
    for (let b = 0; b < ref.length; b++) {
      const r = ref[b][name];
      const g = got[b][name];
      if (r.type !== 'float32' || g.type !== 'float32') continue;
      const a = asFloat(r);
      const c = asFloat(g);
      for (let i = 0; i < a.length; i++) {
        const d = Math.abs(a[i] - c[i]);
        if (d > maxAbs || Number.isNaN(d)) maxAbs = Number.isNaN(d) ? Infinity : d;
        num += (a[i] - c[i]) ** 2;
        den += a[i] * a[i];
      }
      if (classify) {
        const C = r.dims[r.dims.length - 1];
        for (let p = 0; p < a.length / C; p++) {
          let ia = 0;
          let ic = 0;
          for (let k = 1; k < C; k++) {
            if (a[p * C + k] > a[p * C + ia]) ia = k;
            if (c[p * C + k] > c[p * C + ic]) ic = k;
          }
          if (ia === ic) agree++;
          positions++;
        }
      }
    }
    return {
      output: name,
      maxAbsDiff: maxAbs,
      relError: den > 0 ? Math.sqrt(num / den) : Math.sqrt(num),
      ...(classify ? { top1Agreement: positions ? agree / positions : 0, positions } : {}),
    };
  });
}

export function countKernels(optimized: ModelProto, qdq: ModelProto): KernelReport {
  const integer: Record<string, number> = {};
  const other: Record<string, number> = {};
  let q = 0;
  let dq = 0;
  for (const n of optimized.graph!.node) {
    if (n.opType === 'QuantizeLinear') q++;
    else if (n.opType === 'DequantizeLinear') dq++;
    else if (INTEGER_KERNELS.test(n.opType)) integer[n.opType] = (integer[n.opType] ?? 0) + 1;
    else other[n.opType] = (other[n.opType] ?? 0) + 1;
  }
  const quantizableLayers = qdq.graph!.node.filter((n) => /^(Conv|ConvTranspose|Gemm|MatMul)$/.test(n.opType)).length;
  return { integer, quantizeLinear: q, dequantizeLinear: dq, other, quantizableLayers };
}

async function runAll(s: ModelSession, batches: Feeds[]): Promise<Record<string, ort.Tensor>[]> {
  const out: Record<string, ort.Tensor>[] = [];
  for (const b of batches) out.push(await s.run(b));
  return out;
}

/** The first sample of `feeds`, repeated to `batch` along axis 0. */
export function tileFeeds(feeds: Feeds, batch: number): Feeds {
  const out: Feeds = {};
  for (const [k, v] of Object.entries(feeds)) {
    const dims = [...v.dims];
    const per = dims.slice(1).reduce((a, b) => a * b, 1);
    if (v instanceof ort.Tensor) {
      if (v.type !== 'float32') {
        out[k] = v;
        continue;
      }
    }
    const src = (v as FloatTensor).data as Float32Array;
    const data = new Float32Array(per * batch);
    for (let b = 0; b < batch; b++) data.set(src.subarray(0, per), b * per);
    out[k] = { dims: [batch, ...dims.slice(1)], data };
  }
  return out;
}

function stats(xs: number[]): { median: number; p25: number; p75: number } {
  const s = [...xs].sort((a, b) => a - b);
  const at = (p: number) => {
    const i = (s.length - 1) * p;
    const lo = Math.floor(i);
    return s[lo] + (s[Math.min(lo + 1, s.length - 1)] - s[lo]) * (i - lo);
  };
  return { median: at(0.5), p25: at(0.25), p75: at(0.75) };
}

export async function deployCheck(quantModel: ModelProto, opts: DeployCheckOptions): Promise<DeployCheckReport> {
  if (opts.batches.length === 0) throw new Error('deploy-check needs at least one batch of data');
  const threads = opts.intraOpThreads;
  const dir = mkdtempSync(join(tmpdir(), 'onnxquant-deploy-'));
  const optimizedPath = join(dir, 'optimized.onnx');
  const sim = await createSession(quantModel, { mode: 'simulate', intraOpThreads: threads });
  const dep = await createSession(quantModel, { mode: 'deploy', intraOpThreads: threads, optimizedModelPath: optimizedPath });
  const flt = opts.floatModel ? await createSession(opts.floatModel, { mode: 'float', intraOpThreads: threads }) : undefined;
  try {
    const simOut = await runAll(sim, opts.batches);
    await sim.release();
    const depOut = await runAll(dep, opts.batches);
    const report: DeployCheckReport = {
      batches: opts.batches.length,
      simulateVsDeploy: compareOutputs(simOut, depOut, opts.task),
      kernels: countKernels(loadModel(optimizedPath), quantModel),
      latency: [],
    };
    if (flt) report.floatVsDeploy = compareOutputs(await runAll(flt, opts.batches), depOut, opts.task);
    const runs = opts.runs ?? 20;
    const warmup = opts.warmup ?? 3;
    const inputs = graphInputs(quantModel);
    for (const batch of opts.latencyBatches ?? [1, 8]) {
      const fixed = inputs.find((i) => (opts.batchInputs ?? [i.name]).includes(i.name) && typeof i.dims?.[0] === 'number' && i.dims[0] !== batch && i.dims[0] > 0);
      if (fixed) {
        report.latency.push({ batch, runs: 0, quantMs: { median: NaN, p25: NaN, p75: NaN }, note: `input '${fixed.name}' has a fixed batch size ${fixed.dims![0]}` });
        continue;
      }
      const feeds = opts.latencyFeeds ? opts.latencyFeeds(batch) : tileFeeds(opts.batches[0], batch);
      for (let i = 0; i < warmup; i++) {
        await dep.run(feeds);
        if (flt) await flt.run(feeds);
      }
      const tq: number[] = [];
      const tf: number[] = [];
      for (let i = 0; i < runs; i++) {
        let t0 = performance.now();
        await dep.run(feeds);
        tq.push(performance.now() - t0);
        if (flt) {
          t0 = performance.now();
          await flt.run(feeds);
          tf.push(performance.now() - t0);
        }
      }
      const quantMs = stats(tq);
      const floatMs = flt ? stats(tf) : undefined;
      report.latency.push({ batch, runs, quantMs, ...(floatMs ? { floatMs, speedup: floatMs.median / quantMs.median } : {}) });
    }
    return report;
  } finally {
    await dep.release();
    if (flt) await flt.release();
    rmSync(dir, { recursive: true, force: true });
  }
}

export function formatDeployReport(r: DeployCheckReport): string {
  const lines: string[] = [];
  const fmt = (a: OutputAgreement) =>
    `  ${a.output}: max |diff| ${a.maxAbsDiff.toExponential(3)}, relative error ${a.relError.toExponential(3)}` +
    (a.top1Agreement !== undefined ? `, top-1 agreement ${(100 * a.top1Agreement).toFixed(2)}% of ${a.positions}` : '');
  lines.push(`simulate vs deploy (${r.batches} batches):`, ...r.simulateVsDeploy.map(fmt));
  if (r.floatVsDeploy) lines.push('float vs deploy:', ...r.floatVsDeploy.map(fmt));
  const k = r.kernels;
  const list = (o: Record<string, number>) => Object.entries(o).sort((a, b) => b[1] - a[1]).map(([op, n]) => `${op}×${n}`).join(', ') || 'none';
  lines.push(
    `onnxruntime optimized model: integer kernels ${list(k.integer)}; QuantizeLinear×${k.quantizeLinear}, DequantizeLinear×${k.dequantizeLinear}; ` +
      `${k.quantizableLayers} Conv/Gemm/MatMul in the QDQ model`,
    `  other ops: ${list(k.other)}`,
  );
  for (const l of r.latency) {
    if (l.note) {
      lines.push(`latency batch ${l.batch}: skipped (${l.note})`);
      continue;
    }
    const q = `${l.quantMs.median.toFixed(2)} ms [${l.quantMs.p25.toFixed(2)}–${l.quantMs.p75.toFixed(2)}]`;
    const f = l.floatMs ? `${l.floatMs.median.toFixed(2)} ms [${l.floatMs.p25.toFixed(2)}–${l.floatMs.p75.toFixed(2)}]` : 'n/a (pass --float)';
    lines.push(`latency batch ${l.batch} (median [p25–p75] of ${l.runs}): float ${f}, quantized ${q}${l.speedup ? `, speed-up ×${l.speedup.toFixed(2)}` : ''}`);
  }
  return lines.join('\n') + '\n';
}
