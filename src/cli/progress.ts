/** A progress bar on stderr when it is a terminal; plain stage lines otherwise (CI logs, pipes). */
import cliProgress from 'cli-progress';

export interface Progress {
  stage(name: string, total: number): void;
  tick(done: number): void;
  stop(): void;
}

export function makeProgress(quiet = false): Progress {
  if (quiet) return { stage() {}, tick() {}, stop() {} };
  if (!process.stderr.isTTY) {
    return {
      stage(name, total) {
        process.stderr.write(`${name} (${total})\n`);
      },
      tick() {},
      stop() {},
    };
  }
  const bar = new cliProgress.SingleBar(
    { format: '{stage} [{bar}] {value}/{total} | ETA {eta_formatted}', stream: process.stderr, hideCursor: true, clearOnComplete: true },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    stage(name, total) {
      if (started) bar.stop();
      bar.start(total, 0, { stage: name });
      started = true;
    },
    tick(done) {
      bar.update(done);
    },
    stop() {
      if (started) bar.stop();
      started = false;
    },
  };
}
