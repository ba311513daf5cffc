import type { Command } from 'commander';

export function registerDeployCheck(program: Command): void {
  program.command('deploy-check').description('(not yet implemented)').action(() => {
    throw new Error('deploy-check: not implemented yet');
  });
}
