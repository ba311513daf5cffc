import type { Command } from 'commander';

export function registerZoo(program: Command): void {
  program.command('zoo').description('(not yet implemented)').action(() => {
    throw new Error('zoo: not implemented yet');
  });
}
