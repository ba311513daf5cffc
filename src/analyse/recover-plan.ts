/**
 * Read the quantization back out of a QDQ model: which tensor of the float model is quantized for which consumer,
 * with which parameters. With it, analysis works on any QDQ model (ours or another tool's), and variants such as
 * "only this layer quantized" are built by the one realise stage from the float model.
 */
import type { ModelProto, NodeProto } from 'onnx-buf';
import { TensorProto_DataType as DT } from 'onnx-buf';
import { GraphView } from '../ir/graph.ts';
import { decodeTensor, tensorToFloat32 } from '../onnx/tensor-codec.ts';
import type { QuantParams, TensorQuantConfig } from '../quant/config.ts';
import type { PlannedTensor, QuantPlan } from '../quant/plan.ts';

function configFor(dataType: number, zp: Int32Array): TensorQuantConfig {
  const symmetric = zp.every((z) => z === 0);
  switch (dataType) {
    case DT.FLOAT8E4M3FN:
      return { format: 'fp8e4m3', bits: 8, qmin: -448, qmax: 448, symmetric: true, perChannel: false, pow2: false, observer: 'fp8-mse' };
    case DT.FLOAT8E5M2:
      return { format: 'fp8e5m2', bits: 8, qmin: -57344, qmax: 57344, symmetric: true, perChannel: false, pow2: false, observer: 'fp8-mse' };
    case DT.UINT8:
      return { format: 'int', bits: 8, qmin: 0, qmax: 255, symmetric, perChannel: false, pow2: false, observer: 'minmax' };
    case DT.INT16:
      return { format: 'int', bits: 16, qmin: -32768, qmax: 32767, symmetric, perChannel: false, pow2: false, observer: 'minmax' };
    case DT.UINT16:
      return { format: 'int', bits: 16, qmin: 0, qmax: 65535, symmetric, perChannel: false, pow2: false, observer: 'minmax' };
    default:
      return { format: 'int', bits: 8, qmin: -128, qmax: 127, symmetric, perChannel: false, pow2: false, observer: 'minmax' };
  }
}

function paramsOf(view: GraphView, dq: NodeProto): { params: QuantParams; dataType: number } {
  const scaleT = view.initializers.get(dq.input[1]);
  if (!scaleT) throw new Error(`DequantizeLinear '${dq.name}': scale is not a constant`);
  const scale = tensorToFloat32(scaleT);
  const zpT = dq.input[2] ? view.initializers.get(dq.input[2]) : undefined;
  const dataType = zpT?.dataType ?? view.initializers.get(dq.input[0])?.dataType ?? DT.UINT8;
  const isFloat8 = [DT.FLOAT8E4M3FN, DT.FLOAT8E5M2, DT.FLOAT8E4M3FNUZ, DT.FLOAT8E5M2FNUZ].includes(dataType);
  const zeroPoint = zpT && !isFloat8 ? Int32Array.from(decodeTensor(zpT).data as ArrayLike<number>) : new Int32Array(scale.length);
  const axisAttr = dq.attribute.find((a) => a.name === 'axis');
  const params: QuantParams = { scale, zeroPoint, min: new Float32Array(scale.length), max: new Float32Array(scale.length) };
  if (scale.length > 1 || (scaleT.dims.length === 1 && axisAttr)) params.axis = axisAttr ? Number(axisAttr.i) : 1;
  return { params, dataType };
}

export interface RecoveredPlan {
  plan: QuantPlan;
  params: Map<string, QuantParams>;
}

/** `floatModel` must be the formatted float model the QDQ model was made from (layers are matched by output name). */
export function recoverPlan(floatModel: ModelProto, quantModel: ModelProto, ops: readonly string[] = ['Conv', 'ConvTranspose', 'Gemm', 'MatMul', 'LayerNormalization']): RecoveredPlan {
  const qv = new GraphView(quantModel.graph!);
  const fv = new GraphView(floatModel.graph!);
  const tensors = new Map<string, PlannedTensor>();
  const params = new Map<string, QuantParams>();
  const layers: QuantPlan['layers'] = [];
  const skipped: QuantPlan['skipped'] = [];
  for (const qn of qv.graph.node) {
    if (qn.opType === 'QuantizeLinear' || qn.opType === 'DequantizeLinear') continue;
    const fn = qn.output[0] ? fv.producer.get(qn.output[0]) : undefined;
    let quantized = false;
    qn.input.forEach((name, i) => {
      const dq = qv.producer.get(name);
      if (!dq || dq.opType !== 'DequantizeLinear') return;
      if (!fn || fn.opType !== qn.opType) {
        skipped.push({ node: qn.name, reason: 'no matching node in the float model' });
        return;
      }
      const q = qv.producer.get(dq.input[0]);
      const isWeight = qv.isConstant(dq.input[0]);
      if (!isWeight && (!q || q.opType !== 'QuantizeLinear')) return;
      const tensor = fn.input[i];
      const { params: p, dataType } = paramsOf(qv, dq);
      const config = { ...configFor(dataType, p.zeroPoint), perChannel: p.axis !== undefined };
      const role = isWeight ? 'weight' : 'activation';
      const key = `${role}:${tensor}${p.axis !== undefined ? `@${p.axis}` : ''}#${dq.input[1]}`;
      const use = { node: fn.name, op: fn.opType, input: i };
      const t = tensors.get(key);
      if (t) t.uses.push(use);
      else tensors.set(key, { key, tensor, role, config, axis: p.axis, uses: [use] });
      params.set(key, p);
      quantized = true;
    });
    if (quantized && fn && (ops.includes(fn.opType) || fn.opType === 'ReduceMean')) layers.push({ node: fn.name, op: fn.opType, output: fn.output[0] });
  }
  return { plan: { rule: 'recovered', tensors: [...tensors.values()], layers, skipped }, params };
}
