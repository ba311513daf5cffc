import type { Pass } from './pass.ts';

/**
 * Old PyTorch exports (IR < 4) also list every initializer as a graph input. onnxruntime then treats weights as
 * overridable inputs, which blocks constant folding and makes planners think weights are activations.
 * IR ≥ 4 allows initializers that are not inputs, so the IR version is raised to 4 when needed.
 */
export const initializersNotInputs: Pass = {
  name: 'initializers-not-inputs',
  run(model) {
    const g = model.graph!;
    const inits = new Set(g.initializer.map((t) => t.name));
    const before = g.input.length;
    g.input = g.input.filter((v) => !inits.has(v.name));
    if (g.input.length === before) return false;
    if (model.irVersion < 4n) model.irVersion = 4n;
    return true;
  },
};
