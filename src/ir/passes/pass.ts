import type { ModelProto } from 'onnx-buf';

/**
 * A formatter pass rewrites the model it is given in place and says whether it changed anything. Stages stay pure
 * because `formatModel` clones the input once before running passes.
 */
export interface Pass {
  name: string;
  run(model: ModelProto): boolean;
}
