/**
 * Raise a model's ai.onnx opset (QDQ needs 10; per-channel DequantizeLinear needs 13; FP8 needs 19) while keeping
 * its meaning: operators whose signature changed between the old and the new opset are rewritten. Covered: Clip
 * (attributes → inputs at 11), Slice (10), Pad (11), TopK (10), Squeeze/Unsqueeze/Split/ReduceSum (axes or split →
 * input at 13), other Reduce* (18), Softmax/LogSoftmax/Hardmax (2-D coercion → single axis at 13), Dropout (ratio
 * at 12; removed at inference), BatchNormalization (spatial, 9), Scatter → ScatterElements (11). Anything else
 * whose semantics changed (Upsample, Resize-10) is refused with an error naming the node, never silently altered.
 */
import { TensorProto_DataType as DT, type GraphProto, type ModelProto, type NodeProto } from 'onnx-buf';
import { makeTensor } from '../onnx/tensor-codec.ts';
import { attr, attrFloat, makeNode, opsetVersion, removeAttr, setOpsetVersion, walkGraphs } from './graph.ts';
import { removeIdentity } from './passes/remove-identity.ts';

const REDUCE_18 = ['ReduceMax', 'ReduceMin', 'ReduceMean', 'ReduceProd', 'ReduceL1', 'ReduceL2', 'ReduceLogSum', 'ReduceLogSumExp', 'ReduceSumSquare'];

export class OpsetUpgradeError extends Error {}

export function upgradeOpset(model: ModelProto, target: number): boolean {
  const from = opsetVersion(model, '');
  if (from >= target) return false;
  let counter = 0;
  // Names in use per graph, built once (rebuilding it for every new constant made the upgrade quadratic in the
  // graph's size: 55 ms of PP-OCRv4 rec's preparation).
  const takenIn = new Map<GraphProto, Set<string>>();
  const unique = (g: GraphProto, base: string) => {
    let taken = takenIn.get(g);
    if (!taken) takenIn.set(g, (taken = new Set([...g.initializer.map((t) => t.name), ...g.node.flatMap((n) => n.output)])));
    let name = `${base}_up${counter++}`;
    while (taken.has(name)) name = `${base}_up${counter++}`;
    taken.add(name);
    return name;
  };
  for (const g of [...walkGraphs(model.graph!)]) {
    const out: NodeProto[] = [];
    // Values are taken as bigint where they come from INTS attributes: Slice ends of INT64_MAX (9223372036854775807,
    // common in PyTorch exports) do not survive a round trip through Number — BigInt(2^63) wraps to INT64_MIN in the
    // BigInt64Array, which turned `x[:, 2:]` into an empty slice (ultraface_slim_320, version-RFB-320).
    const constI64 = (base: string, values: readonly (number | bigint)[]) => {
      const name = unique(g, base);
      g.initializer.push(makeTensor(name, DT.INT64, [values.length], BigInt64Array.from(values, (v) => BigInt(v))));
      return name;
    };
    /** An INTS attribute as exact int64 values (see constI64). */
    const intsAttr = (n: NodeProto, name: string): bigint[] | undefined => attr(n, name)?.ints.slice();
    const constF32 = (base: string, value: number) => {
      const name = unique(g, base);
      g.initializer.push(makeTensor(name, DT.FLOAT, [], [value]));
      return name;
    };
    for (const n of g.node) {
      if (n.domain && n.domain !== 'ai.onnx') {
        out.push(n);
        continue;
      }
      const label = n.name || n.output[0];
      const axesToInput = (since: number) => {
        if (from >= since || target < since) return;
        const axes = intsAttr(n, 'axes');
        removeAttr(n, 'axes');
        if (axes) {
          while (n.input.length < 1) n.input.push('');
          n.input[1] = constI64(`${label}_axes`, axes);
        }
      };
      switch (n.opType) {
        case 'Clip':
          if (from < 11 && target >= 11) {
            const lo = attr(n, 'min') ? attrFloat(n, 'min', 0) : undefined;
            const hi = attr(n, 'max') ? attrFloat(n, 'max', 0) : undefined;
            removeAttr(n, 'min');
            removeAttr(n, 'max');
            n.input = [n.input[0], lo !== undefined ? constF32(`${label}_min`, lo) : '', hi !== undefined ? constF32(`${label}_max`, hi) : ''];
            while (n.input.length > 1 && !n.input[n.input.length - 1]) n.input.pop();
          }
          break;
        case 'Slice':
          if (from < 10 && target >= 10) {
            const starts = intsAttr(n, 'starts') ?? [];
            const ends = intsAttr(n, 'ends') ?? [];
            const axes = intsAttr(n, 'axes');
            n.attribute = [];
            n.input = [n.input[0], constI64(`${label}_starts`, starts), constI64(`${label}_ends`, ends)];
            if (axes) n.input.push(constI64(`${label}_axes`, axes));
          }
          break;
        case 'Pad':
          if (from < 11 && target >= 11) {
            const pads = intsAttr(n, 'pads') ?? intsAttr(n, 'paddings') ?? [];
            const value = attrFloat(n, 'value', 0);
            removeAttr(n, 'pads');
            removeAttr(n, 'paddings');
            removeAttr(n, 'value');
            n.input = [n.input[0], constI64(`${label}_pads`, pads), constF32(`${label}_value`, value)];
          }
          break;
        case 'TopK':
          if (from < 10 && target >= 10) {
            const k = Number(attr(n, 'k')?.i ?? 1);
            removeAttr(n, 'k');
            n.input = [n.input[0], constI64(`${label}_k`, [k])];
          }
          break;
        case 'Squeeze':
        case 'Unsqueeze':
        case 'ReduceSum':
          axesToInput(13);
          break;
        case 'Split':
          if (from < 13 && target >= 13) {
            const split = intsAttr(n, 'split');
            removeAttr(n, 'split');
            if (split) n.input = [n.input[0], constI64(`${label}_split`, split)];
          }
          break;
        case 'Softmax':
        case 'LogSoftmax':
        case 'Hardmax':
          if (from < 13 && target >= 13) {
            const axis = Number(attr(n, 'axis')?.i ?? 1);
            if (axis !== -1) {
              // Old semantics: flatten to 2-D at `axis`, normalise over the second dim, restore the shape.
              const shape = unique(g, `${label}_shape`);
              const flat = unique(g, `${label}_flat`);
              const normed = unique(g, `${label}_2d`);
              out.push(makeNode('Shape', [n.input[0]], [shape], `${label}_shape`));
              out.push(makeNode('Flatten', [n.input[0]], [flat], `${label}_flatten`, { axis }));
              out.push(makeNode(n.opType, [flat], [normed], `${label}_2d`, { axis: 1 }));
              out.push(makeNode('Reshape', [normed, shape], [n.output[0]], `${label}_restore`));
              continue;
            }
          }
          break;
        case 'Dropout':
          if (from < 12 && target >= 12) {
            removeAttr(n, 'ratio');
            removeAttr(n, 'is_test');
          }
          break;
        case 'BatchNormalization':
          if (from < 9 && target >= 9) {
            removeAttr(n, 'spatial');
            removeAttr(n, 'is_test');
            removeAttr(n, 'consumed_inputs');
          }
          break;
        case 'Scatter':
          if (target >= 11) n.opType = 'ScatterElements';
          break;
        case 'Upsample':
          if (target >= 10) throw new OpsetUpgradeError(`node '${label}': Upsample cannot be carried to opset ${target} (deprecated at 10)`);
          break;
        case 'Resize':
          if (from < 11 && target >= 11) throw new OpsetUpgradeError(`node '${label}': Resize-10 cannot be carried to opset ${target} yet`);
          break;
        default:
          if (REDUCE_18.includes(n.opType)) axesToInput(18);
      }
      out.push(n);
    }
    g.node = out;
  }
  if (from < 12 && target >= 12) removeIdentity.run(model); // Dropout at inference is the identity
  setOpsetVersion(model, target, '');
  const minIr = target >= 21 ? 10n : target >= 19 ? 9n : target >= 15 ? 8n : target >= 13 ? 7n : target >= 11 ? 6n : 5n;
  if (model.irVersion < minIr) model.irVersion = minIr;
  return true;
}
