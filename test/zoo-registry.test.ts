/** The zoo registry is well-formed data: unique ids, parseable preprocessing, an evaluator per task, every OnnxQuant model. */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { IMAGENET_SPEC, OCR_SPEC, parsePreprocessSpec } from '../src/zoo/data/index.ts';
import { embeddedEntries } from '../src/zoo/embedded.ts';
import { findEntries, ONNXQUANT_ENTRIES, REGISTRY, SHARED_ENTRIES, type ZooEntry } from '../src/zoo/registry.ts';
import { keepTestFor, makeEvaluator, TASK_KINDS } from '../src/zoo/tasks/index.ts';
import { onnxFiles, SHARED } from './helpers/models.ts';

const ONNXQUANT_TABLES = {
  classification: ['efficientnet_v1_b0', 'efficientnet_v1_b1', 'efficientnet_v2', 'mnasnet0_5', 'mnasnet1_0', 'mobilenet_v2', 'mobilenet_v3_small', 'mobilenet_v3_large', 'resnet18', 'resnet50', 'once_for_all_71', 'once_for_all_73', 'vit_b_16'],
  segmentation: ['stdc1_512x1024_80k_cityscapes', 'pspnet_r50-d8_512x1024_40k_cityscapes', 'pointrend_r50_512x1024_80k_cityscapes', 'fpn_r50_512x1024_80k_cityscapes', 'icnet_r18-d8_832x832_80k_cityscapes', 'fcn_unet_s5-d16_4x4_512x1024_160k_cityscapes', 'fast_scnn_lr0.12_8x4_160k_cityscapes', 'fcn_r50-d8_512x1024_40k_cityscapes', 'bisenetv2_fcn_4x4_1024x1024_160k_cityscapes', 'deeplabv3_r50-d8_512x1024_40k_cityscapes'],
  'super-resolution': ['edsr', 'rdn', 'srcnn', 'srgan'],
  ocr: ['en_PP-OCRv3_rec_infer', 'en_number_mobile_v2.0_rec_infer', 'ch_PP-OCRv2_rec_infer', 'ch_PP-OCRv3_rec_infer', 'ch_ppocr_mobile_v2.0_rec_infer', 'ch_ppocr_server_v2.0_rec_infer'],
  detection: ['yolov6p5_n', 'yolov6p5_t', 'yolov5s6_n', 'yolov5s6_s', 'yolov7p5_tiny', 'yolov7p5_l', 'yolox_s', 'yolox_tiny', 'ppyoloe_m', 'ppyoloe_s'],
  pose: ['deeppose_res50_coco_256x192', 'hrnet_w32', 'simcc-mobilenet_v2', 'rtmpose-s'],
} as const;

const SHARED_IDS = ['en_number_mobile_v2.0_rec_infer', 'squeezenet_cifar10', 'resnet20_cifar10', 'mobilenet_v2_cifar10', 'mobilenet_v3_small_cifar10', 'vit_tiny_cifar10_opset14', 'vit_tiny_cifar10_opset17', 'mobilenetv2-7', 'squeezenet1.1', 'srcnn_x3_256', 'srcnn_scale_input_x4', 'espcn_x3_y224', 'mnist-8', 'version-RFB-320', 'en_PP-OCRv3_det'];

const all: ZooEntry[] = [...REGISTRY, ...embeddedEntries()];

test('ids are unique', () => {
  const ids = all.map((e) => e.id);
  assert.deepEqual(ids.filter((id, i) => ids.indexOf(id) !== i), []);
});

test('every model of the OnnxQuant tables is listed with its task', () => {
  for (const [task, ids] of Object.entries(ONNXQUANT_TABLES)) {
    for (const id of ids) {
      const e = ONNXQUANT_ENTRIES.find((x) => x.id === id);
      assert.ok(e, `${id} missing`);
      assert.equal(e.task.kind, task, id);
    }
  }
  assert.equal(ONNXQUANT_ENTRIES.length, Object.values(ONNXQUANT_TABLES).flat().length);
});

test('every ../shared/quantzoo model is listed; the detector without data is skipped with a reason', () => {
  for (const id of SHARED_IDS) assert.ok(findEntries([id]).length === 1, id);
  assert.match(SHARED_ENTRIES.find((e) => e.id === 'en_PP-OCRv3_det')!.skip ?? '', /no .*images/);
  assert.throws(() => findEntries(['nope']), /unknown zoo model 'nope'/);
});

const MODELS = join(SHARED, 'quantzoo', 'Model');
test('every model file in ../shared/quantzoo has a zoo entry (onnxruntime\'s int8 release is a peer result, not a float model)', { skip: existsSync(MODELS) ? false : `../shared/quantzoo not found (${MODELS})` }, () => {
  const files = onnxFiles(MODELS).map((f) => relative(MODELS, f)).filter((f) => !f.includes('int8_ort_reference'));
  assert.deepEqual(files.filter((f) => !REGISTRY.some((e) => e.file === f)), []);
});

test('entries are well-formed: preprocessing parses, shapes, data sources, published numbers', () => {
  for (const e of all) {
    assert.deepEqual(parsePreprocessSpec(JSON.parse(JSON.stringify(e.preprocess)), e.id), e.preprocess, `${e.id}: preprocess round-trips`);
    assert.equal(e.input.shape.length, 4, `${e.id}: input shape`);
    assert.ok(e.input.name.length > 0);
    assert.ok(e.file.endsWith('.onnx'), e.id);
    assert.ok(TASK_KINDS.includes(e.task.kind), `${e.id}: task ${e.task.kind}`);
    assert.ok(!e.outputs || e.outputs.length > 0, `${e.id}: outputs`);
    for (const src of [e.data.calibration, e.data.test]) assert.ok(['image-folder', 'paddle-ocr', 'mnist', 'div2k', 'coco', 'cityscapes', 'images', 'synthetic-text'].includes(src.kind), `${e.id}: ${src.kind}`);
    for (const rows of Object.values(e.published ?? {}))
      for (const p of rows!) {
        assert.ok(Number.isFinite(p.quant) && p.source.length > 0, `${e.id}: published quant`);
        for (const v of [p.aqe, p.mqe, p.oqe]) assert.ok(v === undefined || (v >= 0 && Number.isFinite(v)), `${e.id}: published error`);
      }
  }
});

test('every task kind has an evaluator, and a keep test for recipes that follows its metric', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'zoo-reg-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const dict = join(dir, 'dict.txt');
  writeFileSync(dict, 'a\nb\n');
  const seen = new Set<string>();
  for (const e of all) {
    const entry = e.task.kind === 'ocr' ? { ...e, task: { ...e.task, dictionary: dict } } : e;
    const ev = makeEvaluator(entry, dir);
    assert.ok(ev.metric.name && (ev.metric.unit === '%' || ev.metric.unit === 'dB'), e.id);
    // Recipes judge passes on log errors too exactly where the metric is a mean of log errors (PSNR).
    assert.equal(keepTestFor(e), ev.metric.name === 'PSNR' ? 'mean-or-log' : 'mean', e.id);
    seen.add(e.task.kind);
  }
  assert.deepEqual([...seen].sort(), [...TASK_KINDS].sort());
});

test('published PPQ rows quoted in the issue are in the registry', () => {
  const pc = (id: string) => findEntries([id])[0].published!['onnxquant-int8-perchannel']![0];
  const pot = (id: string) => findEntries([id])[0].published!['onnxquant-int8-pot']![0];
  assert.deepEqual([pc('en_number_mobile_v2.0_rec_infer').float, pc('en_number_mobile_v2.0_rec_infer').quant, pot('en_number_mobile_v2.0_rec_infer').quant], [46.22, 21.47, 3.42]);
  assert.ok(Math.abs(pc('en_number_mobile_v2.0_rec_infer').aqe! - 0.8185) < 1e-12 && Math.abs(pot('en_number_mobile_v2.0_rec_infer').mqe! - 5.6663) < 1e-12);
  assert.deepEqual([pc('srcnn').float, pc('srcnn').quant, pot('srcnn').quant], [27.76, 27.18, 22.21]);
  assert.deepEqual([pc('mobilenet_v3_small').quant, pot('mobilenet_v3_small').quant], [2.8, 0.14]);
  assert.deepEqual([pc('efficientnet_v1_b0').quant, pot('efficientnet_v1_b0').quant], [66.19, 0.06]);
  assert.deepEqual([pc('ch_PP-OCRv3_rec_infer').float, pc('ch_PP-OCRv3_rec_infer').quant], [62.69, 0.63]);
  assert.equal(findEntries(['resnet20_cifar10'])[0].published!['onnxquant-fp8']![0].quant, 83.87);
});

test('shared-workspace preprocessing equals what reproduced the README float accuracies (test/data-accuracy.test.ts)', () => {
  const e = (id: string) => findEntries([id])[0];
  assert.deepEqual(e('mobilenetv2-7').preprocess, IMAGENET_SPEC);
  assert.deepEqual(e('en_number_mobile_v2.0_rec_infer').preprocess, OCR_SPEC(32, 320, true));
  assert.deepEqual(e('squeezenet_cifar10').preprocess, { colorOrder: 'rgb', scale: 1 / 255, layout: 'nhwc' });
  assert.deepEqual(e('squeezenet_cifar10').data.test, { kind: 'image-folder', dir: 'Cifar10/Test', limitPerClass: 200 });
  assert.deepEqual(e('mnist-8').preprocess, {});
  assert.equal(e('mnist-8').data.test.skip, 1000);
  assert.equal(e('mnist-8').data.calibration.limit, 1000);
  assert.ok(existsSync(embeddedEntries()[0].file), 'the embedded PP-OCRv4 model resolves from the npm package');
});
