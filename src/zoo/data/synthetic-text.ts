/**
 * Embedded default dataset for `onnxquant zoo`: text-line images rendered by
 * the project itself, so the mini benchmark needs no downloaded data.
 *
 * Glyph outlines come from opentype.js (DejaVu fonts shipped by the
 * `dejavu-fonts-ttf` npm package) and are rasterised by sharp from an SVG, so
 * no system fonts or font config are involved and output is byte-stable for a
 * given seed. Labels only use printable ASCII, all of which (plus the space
 * class PP-OCRv4 adds with use_space_char) is in ppocr_keys_v1.txt.
 */
import { readFileSync } from 'node:fs';
import { seededRandom } from '../../math.ts';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import opentype from 'opentype.js';
import sharp from 'sharp';

export type Rng = () => number;
export type Rgb = [number, number, number];

export interface RgbImage {
  width: number;
  height: number;
  channels: 3;
  /** RGB, HWC, row-major. */
  data: Uint8Array;
}

export interface TextLineSample {
  id: string;
  label: string;
  image: RgbImage;
}

/** mulberry32 (the project's one seeded PRNG, src/math.ts): fast, good enough for augmentation. */
export const mulberry32: (seed: number) => Rng = seededRandom;

/** FNV-1a, used to derive independent sub-seeds from (seed, tag). */
function hashSeed(seed: number, tag: string): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < tag.length; i++) h = Math.imul(h ^ tag.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

const int = (rng: Rng, lo: number, hi: number): number => lo + Math.floor(rng() * (hi - lo + 1));
const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)];

// ---------------------------------------------------------------- text ----

const WORDS: readonly string[] = (
  'the of and to in is for on with as by at from or an be this that are was ' +
  'price total order invoice number date time open close street road north ' +
  'south east west city park station market coffee tea bread milk water fresh ' +
  'sale offer free delivery service phone email account balance payment cash ' +
  'card receipt item quantity unit weight size color model version update ' +
  'report summary page section chapter table figure note warning error status ' +
  'online store shop hotel room floor gate exit entrance parking lane bridge ' +
  'river valley garden school library museum office bank center house green ' +
  'blue red black white small large quick brown fox jumps over lazy dog light ' +
  'night morning evening monday friday sunday january march june october ' +
  'welcome thank you please call today tomorrow early late daily weekly best ' +
  'value quality network system data signal energy power battery engine'
).split(' ');

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
// Code letters skip I and O: next to digits they are ambiguous even to a human reader.
const CODE_LETTERS = 'ABCDEFGHJKLMNPRSTUVWXYZ';

const pad2 = (n: number): string => String(n).padStart(2, '0');

function word(rng: Rng): string {
  const w = pick(rng, WORDS);
  const r = rng();
  if (r < 0.6) return w;
  if (r < 0.9) return w[0].toUpperCase() + w.slice(1);
  return w.toUpperCase();
}

const TOKENS: readonly ((rng: Rng) => string)[] = [
  (rng) => String(int(rng, 0, 99999)),
  (rng) => String(int(rng, 1, 99)) + ',' + String(int(rng, 0, 999)).padStart(3, '0'),
  (rng) => `${int(rng, 0, 999)}.${pad2(int(rng, 0, 99))}`,
  (rng) => `$${int(rng, 1, 999)}.${pad2(int(rng, 0, 99))}`,
  (rng) => `${int(rng, 2000, 2030)}-${pad2(int(rng, 1, 12))}-${pad2(int(rng, 1, 28))}`,
  (rng) => `${pad2(int(rng, 1, 28))}/${pad2(int(rng, 1, 12))}/${int(rng, 2000, 2030)}`,
  (rng) => `${pick(rng, MONTHS)} ${int(rng, 1, 28)}, ${int(rng, 2000, 2030)}`,
  (rng) => `${pad2(int(rng, 0, 23))}:${pad2(int(rng, 0, 59))}`,
  (rng) => `${int(rng, 1, 99)}.${int(rng, 0, 9)}%`,
  (rng) => `${pick(rng, [...CODE_LETTERS])}${int(rng, 1, 9)}-${int(rng, 100, 999)}`,
  (rng) => `${pick(rng, [...CODE_LETTERS])}${pick(rng, [...CODE_LETTERS])}-${int(rng, 1000, 9999)}`,
  (rng) => `#${int(rng, 100, 99999)}`,
];

/** One label: 1-3 tokens, mostly words, single spaces, never padded. */
export function randomTextLine(rng: Rng, maxChars = 18): string {
  for (;;) {
    const n = int(rng, 1, 3);
    const parts: string[] = [];
    for (let i = 0; i < n; i++) {
      let t = rng() < 0.65 ? word(rng) : pick(rng, TOKENS)(rng);
      if (i < n - 1 && rng() < 0.1) t += pick(rng, [',', ':']);
      parts.push(t);
    }
    let line = parts.join(' ');
    if (rng() < 0.08) line += pick(rng, ['.', '!', '?']);
    // Short single words are dull; overly long lines would need tiny fonts at width 320.
    if (line.length >= 3 && line.length <= maxChars) return line;
  }
}

// --------------------------------------------------------------- fonts ----

/** Upright and slanted Sans/Serif/Mono faces; ExtraLight and Math are left out (hard/odd). */
const DEFAULT_FONT_FILES = [
  'DejaVuSans.ttf',
  'DejaVuSans-Bold.ttf',
  'DejaVuSans-Oblique.ttf',
  'DejaVuSansCondensed.ttf',
  'DejaVuSerif.ttf',
  'DejaVuSerif-Bold.ttf',
  'DejaVuSerif-Italic.ttf',
  'DejaVuSansMono.ttf',
  'DejaVuSansMono-Bold.ttf',
];

let fontCache: opentype.Font[] | undefined;

/** Parses (once) the DejaVu faces from the dejavu-fonts-ttf package. */
export function loadDefaultFonts(): opentype.Font[] {
  if (fontCache) return fontCache;
  const dir = join(dirname(createRequire(import.meta.url).resolve('dejavu-fonts-ttf/package.json')), 'ttf');
  fontCache = DEFAULT_FONT_FILES.map((f) => {
    const b = readFileSync(join(dir, f));
    return opentype.parse(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  });
  return fontCache;
}

// ----------------------------------------------------------- rendering ----

export interface RenderTextOptions {
  font: opentype.Font;
  height: number;
  /** px; default 0.66 * height. Shrunk automatically to respect maxWidth. */
  fontSize?: number;
  fg?: Rgb;
  bg?: Rgb;
  paddingX?: number;
  /** Max per-glyph baseline wobble in px (needs rng for variety; default 0). */
  jitter?: number;
  /** Vertical offset of the whole line in px. */
  offsetY?: number;
  /** Extra spacing between glyphs, in em. */
  tracking?: number;
  maxWidth?: number;
  /** Gaussian blur sigma in px (sharp needs >= 0.3; smaller means none). */
  blur?: number;
  /** Std-dev of additive pixel noise (0-255 scale). */
  noise?: number;
  /** Source of jitter/noise; defaults to a generator seeded from the text. */
  rng?: Rng;
}

/**
 * Lays glyphs out one by one instead of font.getPath(text): opentype.js 2.0's
 * shaper throws on DejaVu's GSUB ccmp lookups, and plain per-glyph advances
 * plus kerning are all a Latin text line needs.
 */
function layout(font: opentype.Font, text: string, size: number, tracking: number) {
  const glyphs = [...text].map((c) => font.charToGlyph(c));
  const scale = size / font.unitsPerEm;
  const xs: number[] = [];
  let x = 0;
  glyphs.forEach((g, i) => {
    xs.push(x);
    x += (g.advanceWidth ?? 0) * scale + tracking * size;
    if (i < glyphs.length - 1) x += font.getKerningValue(g, glyphs[i + 1]) * scale;
  });
  return { glyphs, xs, advance: x - (glyphs.length ? tracking * size : 0) };
}

const rgbCss = ([r, g, b]: Rgb): string => `rgb(${r},${g},${b})`;

export async function renderTextLine(text: string, opts: RenderTextOptions): Promise<RgbImage> {
  const { font, height } = opts;
  const paddingX = opts.paddingX ?? Math.round(height * 0.25);
  const tracking = opts.tracking ?? 0;
  const rng = opts.rng ?? mulberry32(hashSeed(0, text));
  let size = opts.fontSize ?? height * 0.66;
  let lay = layout(font, text, size, tracking);
  if (opts.maxWidth !== undefined && lay.advance + 2 * paddingX > opts.maxWidth) {
    size *= (opts.maxWidth - 2 * paddingX) / lay.advance;
    lay = layout(font, text, size, tracking);
  }
  const width = Math.min(Math.ceil(lay.advance + 2 * paddingX), opts.maxWidth ?? Infinity);

  // Centre the ascender..descender box vertically so every font sits alike.
  const asc = (font.ascender / font.unitsPerEm) * size;
  const desc = (-font.descender / font.unitsPerEm) * size;
  const baseline = (height - asc - desc) / 2 + asc + (opts.offsetY ?? 0);
  const jitter = opts.jitter ?? 0;
  const d = lay.glyphs
    .map((g, i) => g.getPath(paddingX + lay.xs[i], baseline + (rng() * 2 - 1) * jitter, size).toPathData(2))
    .join('');

  const svg =
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">` +
    `<rect width="100%" height="100%" fill="${rgbCss(opts.bg ?? [255, 255, 255])}"/>` +
    `<path d="${d}" fill="${rgbCss(opts.fg ?? [0, 0, 0])}"/></svg>`;
  let img = sharp(Buffer.from(svg)).removeAlpha();
  if ((opts.blur ?? 0) >= 0.3) img = img.blur(opts.blur);
  const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
  const out = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const noise = opts.noise ?? 0;
  if (noise > 0) {
    for (let i = 0; i < out.length; i++) {
      // Irwin-Hall(4) approximates a Gaussian cheaply and deterministically.
      const g = (rng() + rng() + rng() + rng() - 2) * Math.sqrt(3);
      out[i] = Math.max(0, Math.min(255, Math.round(out[i] + g * noise)));
    }
  }
  if (info.channels !== 3 || info.width !== width || info.height !== height) {
    throw new Error(`sharp produced ${info.width}x${info.height}x${info.channels}, expected ${width}x${height}x3`);
  }
  return { width, height, channels: 3, data: out };
}

// ------------------------------------------------------------- dataset ----

export const DEFAULT_SEED = 20240611;
export const LINE_HEIGHT = 48;
export const MAX_LINE_WIDTH = 320;
/**
 * Disjointness: calib and test texts come from generators seeded with
 * hashSeed(seed, 'calib') and hashSeed(seed, 'test'). On top of that the test
 * split regenerates the first CALIB_RESERVE calib labels (text only, cheap)
 * and skips any test text among them. The calib split refuses counts above
 * CALIB_RESERVE, so the two splits of a seed can never share a label.
 */
export const CALIB_RESERVE = 4096;

function labelStream(seed: number, split: 'calib' | 'test'): () => string {
  const rng = mulberry32(hashSeed(seed, `text:${split}`));
  const seen = new Set<string>(); // also keeps each split free of repeats
  return () => {
    for (;;) {
      const t = randomTextLine(rng);
      if (!seen.has(t)) {
        seen.add(t);
        return t;
      }
    }
  };
}

/** Style drawn per line: mostly dark-on-light print, a few coloured/inverted ones. */
function drawStyle(rng: Rng, fonts: readonly opentype.Font[]): Omit<RenderTextOptions, 'font' | 'height'> & { font: opentype.Font } {
  const light = (): number => int(rng, 200, 255);
  const dark = (): number => int(rng, 0, 70);
  let fg: Rgb = [dark(), dark(), dark()];
  let bg: Rgb = [light(), light(), light()];
  const r = rng();
  if (r < 0.15) fg = [int(rng, 0, 120), int(rng, 0, 120), int(rng, 0, 160)]; // blue/red-ish ink
  else if (r < 0.22) [fg, bg] = [bg, fg]; // light text on dark
  return {
    font: pick(rng, fonts),
    fontSize: LINE_HEIGHT * (0.58 + rng() * 0.14),
    fg,
    bg,
    paddingX: int(rng, 2, 6),
    jitter: rng() * 0.8,
    offsetY: (rng() * 2 - 1) * 2,
    tracking: rng() * 0.04,
    blur: rng() < 0.3 ? 0.3 + rng() * 0.4 : 0,
    noise: rng() < 0.3 ? rng() * 6 : 0,
    maxWidth: MAX_LINE_WIDTH,
  };
}

export async function* syntheticTextLines(opts: {
  split: 'calib' | 'test';
  count: number;
  seed?: number;
}): AsyncIterable<TextLineSample> {
  const seed = opts.seed ?? DEFAULT_SEED;
  if (opts.split === 'calib' && opts.count > CALIB_RESERVE) {
    throw new Error(`calib count ${opts.count} exceeds CALIB_RESERVE=${CALIB_RESERVE} (needed for disjointness)`);
  }
  const excluded = new Set<string>();
  if (opts.split === 'test') {
    const calib = labelStream(seed, 'calib');
    for (let i = 0; i < CALIB_RESERVE; i++) excluded.add(calib());
  }
  const nextLabel = labelStream(seed, opts.split);
  const styleRng = mulberry32(hashSeed(seed, `style:${opts.split}`));
  const fonts = loadDefaultFonts();
  for (let i = 0; i < opts.count; i++) {
    let label = nextLabel();
    while (excluded.has(label)) label = nextLabel();
    const style = drawStyle(styleRng, fonts);
    const image = await renderTextLine(label, { ...style, height: LINE_HEIGHT, rng: styleRng });
    yield { id: `${opts.split}-${String(i).padStart(4, '0')}`, label, image };
  }
}
