/**
 * The exhaustive check behind src/runtime/emulate-fp8.ts: for every float32 y in [0, 448] (1.14·10^9 values), the
 * emulation's arithmetic — Veltkamp's split p = y·(2^20 + 1), p − (p − y) for y ≥ 2^-6, round(y·512)/512 below —
 * done in float32 (Math.fround after each operation, as onnxruntime's Mul/Sub/Round kernels) equals roundToE4m3fn(y),
 * the E4M3FN value nearest y with ties to even. Negative y follow by symmetry (each step is sign-symmetric), larger
 * ones are clipped to 448 first. `node --import tsx bench/fp8-emulation-check.ts` (~15 s on the 2-core VM).
 */
import { roundHalfEven } from '../src/math.ts';
import { roundToE4m3fn } from '../src/onnx/float-formats.ts';

const f = Math.fround;
const C = 2 ** 20 + 1;
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
f32[0] = 448;
const last = u32[0];
let bad = 0;
for (let u = 0; u <= last; u++) {
  u32[0] = u;
  const y = f32[0];
  let r: number;
  if (y < 2 ** -6) r = f(roundHalfEven(f(y * 512)) * 2 ** -9); // ONNX Round: half to even
  else {
    const p = f(y * C);
    r = f(p - f(p - y));
  }
  if (r !== roundToE4m3fn(y) && bad++ < 5) console.log(`y=${y}: emulated ${r}, E4M3 ${roundToE4m3fn(y)}`);
}
console.log(`${last + 1} float32 values in [0, 448]: ${bad} differ`);
process.exitCode = bad ? 1 : 0;
