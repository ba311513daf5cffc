#!/usr/bin/env node
// Thin launcher: the CLI is TypeScript run through tsx, so no build step is needed after `npm install`.
import { register } from 'tsx/esm/api';
register();
await import('../src/cli/main.ts');
