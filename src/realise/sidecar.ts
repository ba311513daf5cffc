/** The JSON written beside a quantized model: every quantized tensor's parameters, range and observer. */
import type { QuantParams } from '../quant/config.ts';
import type { QuantPlan } from '../quant/plan.ts';

export const SIDECAR_SCHEMA = 'onnxquant.qparams/1' as const;

export interface SidecarTensor {
  tensor: string;
  role: 'activation' | 'weight';
  format: string;
  bits: number;
  qmin: number;
  qmax: number;
  symmetric: boolean;
  pow2: boolean;
  observer: string;
  axis?: number;
  scale: number[];
  zeroPoint: number[];
  /** The calibrated range. For an activation that is ≥ 0 by construction (after a Relu…) the lower end is not
   * measured and is written as 0: it enters the scale only as min(lo, 0) (calibrate.ts). */
  min: number[];
  max: number[];
  uses: { node: string; op: string; input: number }[];
}

export interface Sidecar {
  schema: typeof SIDECAR_SCHEMA;
  rule: string;
  calibrationBatches: number;
  opset: { from: number; to: number };
  formatPasses: string[];
  tensors: SidecarTensor[];
  skipped: { node: string; reason: string }[];
}

export function buildSidecar(
  plan: QuantPlan,
  params: ReadonlyMap<string, QuantParams>,
  meta: { batches: number; opsetFrom: number; opsetTo: number; formatPasses: string[] },
): Sidecar {
  return {
    schema: SIDECAR_SCHEMA,
    rule: plan.rule,
    calibrationBatches: meta.batches,
    opset: { from: meta.opsetFrom, to: meta.opsetTo },
    formatPasses: meta.formatPasses,
    tensors: plan.tensors.map((t) => {
      const p = params.get(t.key)!;
      return {
        tensor: t.tensor,
        role: t.role,
        format: t.config.format,
        bits: t.config.bits,
        qmin: t.config.qmin,
        qmax: t.config.qmax,
        symmetric: t.config.symmetric,
        pow2: t.config.pow2,
        observer: t.config.observer,
        ...(p.axis !== undefined ? { axis: p.axis } : {}),
        scale: Array.from(p.scale),
        zeroPoint: Array.from(p.zeroPoint),
        min: Array.from(p.min),
        max: Array.from(p.max),
        uses: t.uses,
      };
    }),
    skipped: plan.skipped,
  };
}
