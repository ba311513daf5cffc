// Summarise a V8 .cpuprofile: self time by function (top N) and by file. `node bench/prof-summary.mjs FILE [N]`
import { readFileSync } from 'node:fs';
const [file, nStr = '25'] = process.argv.slice(2);
const p = JSON.parse(readFileSync(file, 'utf8'));
const dt = new Map();
for (let i = 0; i < p.samples.length; i++) dt.set(p.samples[i], (dt.get(p.samples[i]) ?? 0) + (p.timeDeltas[i] ?? 0) / 1000);
const byFn = new Map();
const byFile = new Map();
let total = 0;
for (const n of p.nodes) {
  const ms = dt.get(n.id) ?? 0;
  if (!ms) continue;
  total += ms;
  const cf = n.callFrame;
  const url = (cf.url || '').replace(/^file:\/\/.*?\/(src|bench|node_modules)\//, '$1/');
  const key = `${cf.functionName || '(anonymous)'}  ${url}${cf.url ? `:${cf.lineNumber + 1}` : ''}`;
  byFn.set(key, (byFn.get(key) ?? 0) + ms);
  const f = url || cf.functionName;
  byFile.set(f, (byFile.get(f) ?? 0) + ms);
}
const show = (m, n) => [...m].sort((a, b) => b[1] - a[1]).slice(0, n).forEach(([k, v]) => console.log(`${v.toFixed(0).padStart(7)} ms ${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}`));
console.log(`total sampled ${total.toFixed(0)} ms\n-- self time by function --`);
show(byFn, Number(nStr));
console.log('-- self time by file --');
show(byFile, 12);
