import type { Command } from 'commander';

export function registerAnalyse(program: Command): void {
  program.command('analyse').description('(not yet implemented)').action(() => {
    throw new Error('analyse: not implemented yet');
  });
}
