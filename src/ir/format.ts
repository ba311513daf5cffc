/**
 * The format stage: canonicalise a model so that planning sees weights as initializers at their consumers.
 * Pure at stage level: the input model is cloned; passes run in order until none changes anything.
 */
import { clone } from '@bufbuild/protobuf';
import { ModelProtoSchema, type ModelProto } from 'onnx-buf';
import { ensureUniqueNodeNames, topologicalSort } from './graph.ts';
import { constantToInitializer } from './passes/constant-to-initializer.ts';
import { foldBatchNorm } from './passes/fold-batchnorm.ts';
import { foldWeightChains } from './passes/fold-weight-chains.ts';
import { fuseBiasAdd } from './passes/fuse-bias-add.ts';
import { initializersNotInputs } from './passes/initializers-not-inputs.ts';
import { inlineFunctions } from './passes/inline-functions.ts';
import type { Pass } from './passes/pass.ts';
import { removeIdentity } from './passes/remove-identity.ts';
import { unfuseOrtFusions } from './passes/unfuse-ort-fusions.ts';
import { upcastFloat16 } from './passes/upcast-float16.ts';

export const DEFAULT_PASSES: readonly Pass[] = [
  inlineFunctions,
  upcastFloat16,
  unfuseOrtFusions,
  constantToInitializer,
  initializersNotInputs,
  removeIdentity,
  foldWeightChains,
  foldBatchNorm,
  fuseBiasAdd,
];

export interface FormatResult {
  model: ModelProto;
  /** Names of passes that changed the model, in the order they ran (repeats when a pass ran again). */
  applied: string[];
}

export function formatModel(input: ModelProto, passes: readonly Pass[] = DEFAULT_PASSES): FormatResult {
  const model = clone(ModelProtoSchema, input);
  const applied: string[] = [];
  for (let round = 0; round < 10; round++) {
    let any = false;
    for (const p of passes) {
      let changed: boolean;
      try {
        changed = p.run(model);
      } catch (e) {
        throw new Error(`formatter pass '${p.name}' failed: ${e instanceof Error ? e.message : String(e)}`);
      }
      if (changed) {
        applied.push(p.name);
        any = true;
      }
    }
    if (!any) break;
  }
  topologicalSort(model.graph!);
  ensureUniqueNodeNames(model.graph!);
  return { model, applied };
}
