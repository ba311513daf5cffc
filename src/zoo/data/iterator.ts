/** Programmatic calibration data: wrap tensors or samples produced by code into the Dataset contract. */
import type { FloatTensor } from '../../tensor.ts';
import type { Dataset, Sample } from './types.ts';

type Source<T> = Iterable<T> | AsyncIterable<T>;

/** Numbers unlabelled tensors as samples "0", "1", …; each must already carry the leading batch dim of 1. */
export async function* fromIterator(source: Source<FloatTensor>): AsyncIterable<Sample<null>> {
  let i = 0;
  for await (const input of source) {
    if (input.dims.length === 0 || input.dims[0] !== 1) {
      throw new Error(`fromIterator: sample ${i} has shape [${input.dims.join(',')}]; expected a leading batch dim of 1`);
    }
    yield { id: String(i++), input, label: null };
  }
}

/**
 * A dataset over a generator function, called afresh for every pass so the dataset can be iterated repeatedly.
 * The declared size is enforced: extra samples are not read, and a short generator is an error.
 */
export function iteratorDataset<L>(name: string, size: number, gen: () => Source<Sample<L>>): Dataset<L> {
  return {
    name,
    size,
    async *samples() {
      let n = 0;
      if (size <= 0) return;
      for await (const s of gen()) {
        yield s;
        if (++n >= size) return;
      }
      throw new Error(`iteratorDataset(${name}): declared size ${size} but the generator yielded only ${n} samples`);
    },
  };
}
