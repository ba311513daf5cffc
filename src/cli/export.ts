import type { Command } from 'commander';

export function registerExport(program: Command): void {
  program.command('export').description('(not yet implemented)').action(() => {
    throw new Error('export: not implemented yet');
  });
}
