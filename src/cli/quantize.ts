import type { Command } from 'commander';

export function registerQuantize(program: Command): void {
  program.command('quantize').description('(not yet implemented)').action(() => {
    throw new Error('quantize: not implemented yet');
  });
}
