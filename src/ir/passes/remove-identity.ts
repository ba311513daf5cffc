import { GraphView } from '../graph.ts';
import type { Pass } from './pass.ts';

/**
 * Identity (and inference-time Dropout) nodes forward their input. Removing them lets the planner see a weight
 * directly at its consumer. When the output is a graph output the producer of the input is renamed instead, unless
 * the input is itself a graph input or initializer, or feeds other readers — then the node stays.
 */
export const removeIdentity: Pass = {
  name: 'remove-identity',
  run(model) {
    const view = new GraphView(model.graph!);
    let changed = false;
    for (const n of [...view.graph.node]) {
      const isDropout = n.opType === 'Dropout' && (n.output.length < 2 || !n.output[1] || view.uses(n.output[1]).length === 0);
      if ((n.opType !== 'Identity' && !isDropout) || n.domain) continue;
      const [src] = n.input;
      const dst = n.output[0];
      if (!view.graphOutputs.has(dst)) {
        view.removeNode(n);
        view.replaceAllUses(dst, src);
        changed = true;
        continue;
      }
      const producer = view.producer.get(src);
      if (!producer || view.graphOutputs.has(src) || view.uses(src).length > 1) continue;
      view.removeNode(n);
      producer.output[producer.output.indexOf(src)] = dst;
      view.reindex();
      changed = true;
    }
    return changed;
  },
};
