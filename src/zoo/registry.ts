/**
 * The benchmark's model registry, as plain data: what each model is, where its file and data live under a
 * QuantZoo root (DESIGN.md §4), how its inputs are prepared, which tensors OQE monitors, how its task is scored, and
 * what PPQ published for it.
 *
 * Sources of the OnnxQuant settings (OpenPPL/ppq, ppq/samples/QuantZoo/):
 *  - QuantZoo_Imagenet.py     — model file names, monitored outputs, Calib/Test folders, batch 32, 32 calib steps;
 *  - QuantZoo_OCR.py          — file names, dictionaries, [3,48,320] / [3,32,320] inputs, IC15 rec_gt_{train,test}.txt;
 *  - QuantZoo_SuperRes.py     — mmedit ×4 models, DIV2K_{train,valid}_{HR,LR_bicubic}, batch 1, outputs ·255 rounded;
 *  - QuantZoo_Segmentation.py — mmseg Cityscapes models, Calib/Test, batch 1, input [1,3,1024,2048];
 *  - QuantZoo_Yolo.py         — mmyolo models at 640, Coco/{Calib,Test}/DetectionAnnotation.json, batch 1, input
 *                               scaling per model (×255 for yolox, BGR-mean shift /255 for ppyoloe);
 *  - QuantZoo_Pose.py         — mmpose models at 256×192, Data/Pose/{Calib,Test} (PPQ reports errors only);
 *  - Readme.md                — the published INT8 per-channel and power-of-2 tables (PUBLISHED below).
 * The `../shared/quantzoo` entries follow ../shared/README.md.
 *
 * Paths: `file` is relative to `<root>/Model/`, data paths to `<root>/Data/` (an absolute path is used as is).
 */
import { IMAGENET_SPEC, type PreprocessSpec } from './data/preprocess.ts';
import { OCR_SPEC } from './data/ocr.ts';

export type RuleName = 'onnxquant-int8-perchannel' | 'onnxquant-int8-pot' | 'onnxquant-fp8';

/** Where a split's samples come from (paths relative to `<root>/Data/`). `skip`/`limit` cut any source. */
export type DataSource = (
  | { kind: 'image-folder'; dir: string; classesFile?: string; limitPerClass?: number }
  | { kind: 'paddle-ocr'; labels: string; imageRoot: string }
  | { kind: 'mnist'; images: string; labels: string }
  | { kind: 'div2k'; dir: string; split: 'train' | 'valid'; scale: 3 | 4; patch?: number }
  | { kind: 'coco'; dir: string; split: string }
  | { kind: 'cityscapes'; dir: string; split: string }
  | { kind: 'images'; dir: string }
  | { kind: 'synthetic-text'; split: 'calib' | 'test'; count: number; seed: number }
  /** Supplied in code (ZooOptions.datasets), for programmatic use and tests. */
  | { kind: 'provided'; name: string }
) & { skip?: number; limit?: number };

/** How the task is scored; every kind has an evaluator in src/zoo/tasks/. */
export type TaskSettings =
  | { kind: 'classification'; numClasses: number }
  | {
      kind: 'ocr';
      /** Relative to `<root>/Model/` (QuantZoo keeps the dictionaries beside the models). */
      dictionary: string;
      useSpaceChar: boolean;
      height: number;
      maxWidth: number;
      /** Right-pad every word to maxWidth (PaddleOCR eval and PPQ's IC15 loader do). */
      pad: boolean;
    }
  | {
      kind: 'super-resolution';
      scale: number;
      /** 'y': BT.601 luma of RGB outputs (mmediting); 'gray': the model works on one (PIL Y) channel; 'rgb'. */
      channel: 'y' | 'rgb' | 'gray';
      /** Border pixels removed before PSNR (= scale by the mmediting convention). */
      crop: number;
      /** Multiply outputs by this to reach 0..255 (255 for models working on 0..1). */
      outputScale: number;
    }
  | {
      kind: 'detection';
      size: number;
      numClasses: number;
      /** Output layout: mmyolo end2end export (num_dets, boxes xyxy, scores, labels). */
      format: 'mmyolo-end2end';
    }
  | { kind: 'segmentation'; numClasses: number; ignoreIndex: number }
  | { kind: 'pose'; keypoints: number }
  | {
      kind: 'agreement';
      /** Unlabelled data: the quantized model is scored against the float model's own predictions. */
      compare: 'top1' | 'ultraface' | 'cosine';
    };

export type TaskKind = TaskSettings['kind'];

/** A published result row. Metric in the task's unit (% or dB; NaN = not stated); errors as fractions (0.8185 = 81.85%). */
export interface PublishedRow {
  source: string;
  float: number;
  quant: number;
  aqe?: number;
  mqe?: number;
  oqe?: number;
}

export interface ZooEntry {
  id: string;
  /** Which table it belongs to: the OnnxQuant tables, the ../shared workspace, the embedded default, or a registry
   * file of the user's (`zoo --registry`, registry-file.ts). */
  suite: 'onnxquant' | 'shared' | 'embedded' | 'user';
  /** Relative to `<root>/Model/`, or absolute. */
  file: string;
  input: { name: string; shape: number[] };
  /**
   * Values for the model's other inputs (a scale factor, a recurrent state), the same in every batch: a number fills
   * the input (a dimension it shares with `input` follows the batch), `{ dims, values }` is fed as given.
   */
  feeds?: Record<string, number | { dims: number[]; values: number[] }>;
  /** Largest batch the graph accepts (1 for graphs with a fixed batch dimension). */
  maxBatch?: number;
  preprocess: PreprocessSpec;
  /** Tensors monitored for OQE (PPQ's 'Output' lists); default: the graph outputs. */
  outputs?: string[];
  data: { calibration: DataSource; test: DataSource };
  task: TaskSettings;
  published?: Partial<Record<RuleName, PublishedRow[]>>;
  /** Listed but not run, with the reason. */
  skip?: string;
  notes?: string;
}

// ---- preprocessing presets ------------------------------------------------------------------------------------

const IMAGENET_MEAN = IMAGENET_SPEC.mean!;
const IMAGENET_STD = IMAGENET_SPEC.std!;

/** torchvision eval transform: Resize(256) → CenterCrop(224) → ToTensor → Normalize (QuantZoo Data/Imagenet/Eval). */
export const IMAGENET_PREPROCESS: PreprocessSpec = IMAGENET_SPEC;

/** PaddleOCR resize_norm_img (BGR, height H keeping ratio, width ≤ W, (x/255−0.5)/0.5, right-pad 0). */
export const ocrPreprocess = (height: number, maxWidth: number, pad = true): PreprocessSpec => OCR_SPEC(height, maxWidth, pad);

const CIFAR_PREPROCESS: PreprocessSpec = {
  colorOrder: 'rgb',
  scale: 1 / 255,
  mean: [0.4914, 0.4822, 0.4465],
  std: [0.247, 0.2435, 0.2616],
  layout: 'nchw',
};

// ---- published numbers ----------------------------------------------------------------------------------------

const PPQ_README = 'PPQ QuantZoo README (OpenPPL/ppq ppq/samples/QuantZoo/Readme.md)';
const PPQ_SHARED = 'PPQ 0.6.6 on ../shared/quantzoo (../shared/README.md)';

/** [float, quant, AQE%, MQE%, OQE%] as printed; undefined errors were "*" in the README. */
type Pub = [number, number, number?, number?, number?];
function pub(source: string, [float, quant, aqe, mqe, oqe]: Pub): PublishedRow {
  const f = (v: number | undefined) => (v === undefined ? undefined : v / 100);
  return { source, float, quant, ...(aqe !== undefined ? { aqe: f(aqe), mqe: f(mqe), oqe: f(oqe) } : {}) };
}
/** PPQ's srcnn_x4k915 row (per-channel, power-of-2), also shown under srcnn_scale_input_x4 (the same weights at ×4). */
const PPQ_SRCNN: [Pub, Pub] = [
  [27.76, 27.18, 4.89, 29.8, 0.13],
  [27.76, 22.21, 6.38, 16.31, 1.67],
];
function readme(pc?: Pub, pot?: Pub): ZooEntry['published'] {
  return {
    ...(pc ? { 'onnxquant-int8-perchannel': [pub(PPQ_README, pc)] } : {}),
    ...(pot ? { 'onnxquant-int8-pot': [pub(PPQ_README, pot)] } : {}),
  };
}

// ---- the OnnxQuant tables -------------------------------------------------------------------------------------

function imagenet(id: string, file: string, output: string, published: ZooEntry['published'], extra: Partial<ZooEntry> = {}): ZooEntry {
  return {
    id,
    suite: 'onnxquant',
    file: `Imagenet/${file}.onnx`,
    input: { name: 'input', shape: [32, 3, 224, 224] },
    preprocess: IMAGENET_PREPROCESS,
    outputs: [output],
    data: { calibration: { kind: 'image-folder', dir: 'Imagenet/Calib' }, test: { kind: 'image-folder', dir: 'Imagenet/Test' } },
    task: { kind: 'classification', numClasses: 1000 },
    published,
    ...extra,
  };
}

const CLASSIFICATION: ZooEntry[] = [
  imagenet('efficientnet_v1_b0', 'efficientnet_v1_b0', '/features/features.8/features.8.2/Mul_output_0',
    readme([76.9, 66.19, 20.81, 60.34, 70.51], [76.9, 0.06, 20609, 746505, 12887])),
  imagenet('efficientnet_v1_b1', 'efficientnet_v1_b1', '/features/features.8/features.8.2/Mul_output_0',
    readme([76.66, 75.64, 4.16, 20.23, 15.5], [76.66, 0.46, 279.77, 5344.33, 138.59])),
  imagenet('efficientnet_v2', 'efficientnet_v2_s', '/features/features.7/features.7.2/Mul_output_0',
    readme([80.29, 80.03, 6.52, 44.53, 41.45], [80.29, 78.83, 10.39, 56.11, 24.38])),
  imagenet('mnasnet0_5', 'mnasnet0_5', '/layers/layers.16/Relu_output_0',
    readme([67.75, 64.42, 5.4, 15.51, 24.88], [67.75, 0.08, 524.41, 5873.77, 255.34])),
  imagenet('mnasnet1_0', 'mnasnet1_0', '/layers/layers.16/Relu_output_0',
    readme([73.48, 72.54, 2.29, 5.51, 5.71], [73.48, 67.37, 12.74, 27.71, 30.01])),
  imagenet('mobilenet_v2', 'mobilenet_v2', '/features/features.18/features.18.2/Clip_output_0',
    readme([71.37, 70.99, 4.75, 21.13, 6.02], [71.37, 62.3, 16.56, 44.13, 37.9])),
  imagenet('mobilenet_v3_small', 'mobilenet_v3_small', '/classifier/classifier.1/Mul_output_0',
    readme([67.89, 2.8, 55.57, 123.36, 131.26], [67.89, 0.14, 3537.28, 183137.5, 173.55])),
  imagenet('mobilenet_v3_large', 'mobilenet_v3_large', '/classifier/classifier.1/Mul_output_0',
    readme([73.37, 72.48, 2.17, 7.1, 5.57], [73.37, 68.53, 7.96, 21.39, 24.24])),
  imagenet('resnet18', 'resnet18', '/layer4/layer4.1/relu_1/Relu_output_0',
    readme([69.65, 69.51, 0.55, 1.48, 1.17], [69.65, 68.45, 1.98, 5.39, 4.2])),
  imagenet('resnet50', 'resnet50', '/layer4/layer4.2/relu_2/Relu_output_0',
    readme([75.56, 75.48, 1.24, 3.6, 1.95], [75.56, 75.18, 3.19, 11.04, 5.06])),
  imagenet('once_for_all_71', 'v100_gpu64@5ms_top1@71.6_finetune@25', '471',
    readme([72.3, 71.75, 4.11, 33.14, 7.88], [72.3, 0.24, 324.85, 1351.2, 248.77])),
  imagenet('once_for_all_73', 'v100_gpu64@6ms_top1@73.0_finetune@25', '471',
    readme([74.54, 74.38, 3.49, 32.25, 5.51], [74.54, 0.48, 352.27, 1570.9, 218.98])),
  // QuantZoo_Imagenet.py: "vit_b_16 requires BATCHSIZE = 1" (and minmax calibration; we keep the rule's observer).
  imagenet('vit_b_16', 'vit_b_16', 'onnx::Gather_1703', readme([80.0, 77.9]), { maxBatch: 1 }),
];

function seg(id: string, output: string, published: ZooEntry['published']): ZooEntry {
  return {
    id,
    suite: 'onnxquant',
    file: `mmseg/${id}.onnx`,
    input: { name: 'input', shape: [1, 3, 1024, 2048] },
    maxBatch: 1,
    // mmseg Cityscapes normalisation: ImageNet mean/std ·255 on RGB, full resolution.
    preprocess: { colorOrder: 'rgb', scale: 1 / 255, mean: IMAGENET_MEAN, std: IMAGENET_STD, layout: 'nchw' },
    outputs: [output],
    data: { calibration: { kind: 'cityscapes', dir: 'Cityscapes', split: 'Calib' }, test: { kind: 'cityscapes', dir: 'Cityscapes', split: 'Test' } },
    task: { kind: 'segmentation', numClasses: 19, ignoreIndex: 255 },
    published,
  };
}

const SEGMENTATION: ZooEntry[] = [
  seg('stdc1_512x1024_80k_cityscapes', '/convs/convs.0/activate/Relu_output_0', readme([71.44, 71.21, 1.31, 2.88, 0.66], [71.44, 71.36, 2.45, 5.56, 1.36])),
  seg('pspnet_r50-d8_512x1024_40k_cityscapes', '/bottleneck/activate/Relu_output_0', readme([76.48, 76.34, 1.77, 4.77, 1.4], [76.48, 76.02, 3.75, 6.76, 3.04])),
  seg('pointrend_r50_512x1024_80k_cityscapes', '/Concat_60_output_0', readme([75.66, 75.99], [75.66, 75.79])),
  seg('fpn_r50_512x1024_80k_cityscapes', '/Add_2_output_0', readme([73.86, 75.2, 1.73, 5.62, 0.61], [73.86, 74.06, 5.29, 15.85, 2.53])),
  seg('icnet_r18-d8_832x832_80k_cityscapes', '/convs/convs.0/activate/Relu_output_0', readme([67.07, 66.72, 0.61, 1.27, 0.31], [67.07, 67.02, 0.97, 2.21, 0.51])),
  seg('fcn_unet_s5-d16_4x4_512x1024_160k_cityscapes', '/convs/convs.0/activate/Relu_output_0', readme([68.34, 68.17, 1.26, 2.92, 0.54], [68.34, 67.3, 3.23, 7.67, 4.7])),
  seg('fast_scnn_lr0.12_8x4_160k_cityscapes', '/convs/convs.1/pointwise_conv/activate/Relu_output_0', readme([70.22, 69.38, 3.71, 10.19, 0.75], [70.22, 68.33, 10.04, 24.91, 2.03])),
  seg('fcn_r50-d8_512x1024_40k_cityscapes', '/conv_cat/activate/Relu_output_0', readme([70.96, 73.67, 2.12, 7.81, 2.14], [70.96, 73.1, 4.55, 15.92, 4.18])),
  seg('bisenetv2_fcn_4x4_1024x1024_160k_cityscapes', '/convs/convs.0/activate/Relu_output_0', readme([71.67, 71.91, 1.28, 5.8, 0.92], [71.67, 71.39, 4.21, 44.38, 2.76])),
  seg('deeplabv3_r50-d8_512x1024_40k_cityscapes', '/bottleneck/activate/Relu_output_0', readme([77.9, 77.48, 1.97, 7.95, 1.17], [77.9, 77.92, 4.14, 9.54, 2.74])),
];

function sr(id: string, file: string, output: string, published: ZooEntry['published']): ZooEntry {
  return {
    id,
    suite: 'onnxquant',
    file: `mmedit/${file}.onnx`,
    // QuantZoo_SuperRes.py traces [1,3,480,640]; whole LR images, batch 1, RGB in 0..1 (outputs ·255).
    input: { name: 'input', shape: [1, 3, 480, 640] },
    maxBatch: 1,
    preprocess: { colorOrder: 'rgb', scale: 1 / 255, layout: 'nchw' },
    outputs: [output],
    data: {
      calibration: { kind: 'div2k', dir: 'DIV2K', split: 'train', scale: 4 },
      test: { kind: 'div2k', dir: 'DIV2K', split: 'valid', scale: 4 },
    },
    task: { kind: 'super-resolution', scale: 4, channel: 'rgb', crop: 4, outputScale: 255 },
    published,
  };
}

const SUPER_RESOLUTION: ZooEntry[] = [
  sr('edsr', 'edsr_x4c64b16_g1_300k_div2k', '/generator/conv_last/Conv_output_0', readme([28.98, 28.76, 0.15, 0.36, 0.06], [28.98, 28.83, 4.4, 12.12, 0.06])),
  sr('rdn', 'rdn_x4c64b16_g1_1000k_div2k', 'output', readme([29.2, 28.65, 7.99, 19.94, 0.3], [29.2, 28.83, 3.91, 26.16, 0.07])),
  sr('srcnn', 'srcnn_x4k915_g1_1000k_div2k', 'output', readme(...PPQ_SRCNN)),
  sr('srgan', 'srgan_x4c64b16_g1_1000k_div2k', 'output', readme([26.56, 26.53, 2.56, 6.16, 0.1], [26.56, 26.25, 9.19, 23.23, 0.33])),
];

/** Data/DIV2K at ×`scale`: BSD68 LR images to calibrate, Set5+Set14 LR/HR pairs to test, `patch`² LR inputs. */
const div2k = (scale: 3 | 4, patch: number): ZooEntry['data'] => ({
  calibration: { kind: 'div2k', dir: 'DIV2K', split: 'train', scale, patch },
  test: { kind: 'div2k', dir: 'DIV2K', split: 'valid', scale, patch },
});

function ocr(id: string, output: string, dictionary: string, height: number, published: ZooEntry['published'], extra: Partial<ZooEntry> = {}): ZooEntry {
  return {
    id,
    suite: 'onnxquant',
    file: `ocr/${id}.onnx`,
    input: { name: 'x', shape: [32, 3, height, 320] },
    preprocess: ocrPreprocess(height, 320, true),
    outputs: [output],
    data: {
      calibration: { kind: 'paddle-ocr', labels: 'IC15/rec_gt_train.txt', imageRoot: 'IC15' },
      test: { kind: 'paddle-ocr', labels: 'IC15/rec_gt_test.txt', imageRoot: 'IC15' },
    },
    task: { kind: 'ocr', dictionary: `ocr/${dictionary}`, useSpaceChar: true, height, maxWidth: 320, pad: true },
    published,
    ...extra,
  };
}

const OCR: ZooEntry[] = [
  ocr('en_PP-OCRv3_rec_infer', 'swish_13.tmp_0', 'en_dict.txt', 48, readme([67.36, 40.64, 24.41, 64.69, 22.11], [67.36, 0.0, 123.0, 813.22, 92.18])),
  // Also in ../shared/quantzoo (same file, same data): PPQ 0.6.6 was rerun there.
  ocr('en_number_mobile_v2.0_rec_infer', 'save_infer_model/scale_0.tmp_1', 'en_dict.txt', 32, {
    'onnxquant-int8-perchannel': [pub(PPQ_README, [46.22, 21.47, 81.85, 398.62, 6.48]), pub(PPQ_SHARED, [NaN, 21.62, 82.2, 401])],
    'onnxquant-int8-pot': [pub(PPQ_README, [46.22, 3.42, 141.8, 566.63, 9.33]), pub(PPQ_SHARED, [NaN, 3.51, 142.3, 573])],
    'onnxquant-fp8': [pub(PPQ_SHARED, [NaN, 4.19, 245, 2154])],
  }, { notes: 'float 47.8% on ../shared (README), 46.22% published' }),
  ocr('ch_PP-OCRv2_rec_infer', 'p2o.LSTM.5', 'ppocr_keys_v1.txt', 32, readme([54.89, 4.91, 114.55, 985.66, 99.83], [54.89, 0.0, 211218, 5565940, 430.37])),
  ocr('ch_PP-OCRv3_rec_infer', 'swish_27.tmp_0', 'ppocr_keys_v1.txt', 48, readme([62.69, 0.63, 116.2, 516.44, 72.43], [62.69, 0.0, 430.96, 5892.44, 218.08])),
  ocr('ch_ppocr_mobile_v2.0_rec_infer', 'p2o.LSTM.5', 'ppocr_keys_v1.txt', 32, readme([40.15, 10.39, 97.96, 523.46, 41.99], [40.15, 0.0, 364.47, 5660.18, 54.53])),
  ocr('ch_ppocr_server_v2.0_rec_infer', 'p2o.LSTM.5', 'ppocr_keys_v1.txt', 32, readme([54.98, 53.92, 3.3, 14.72, 8.95], [54.98, 54.41, 3.84, 13.75, 5.47])),
];

function yolo(id: string, outputs: string[], scaling: 'unit' | 'byte' | 'ppyoloe', published: ZooEntry['published']): ZooEntry {
  // QuantZoo_Yolo.py collate_fn: x (RGB/255 letterbox) as is; ×255 for yolox; (x·255 − [103.53,116.28,123.675])/255 for ppyoloe.
  const preprocess: PreprocessSpec =
    scaling === 'unit'
      ? { colorOrder: 'rgb', scale: 1 / 255, layout: 'nchw' }
      : scaling === 'byte'
        ? { colorOrder: 'rgb', scale: 1, layout: 'nchw' }
        : { colorOrder: 'rgb', scale: 1 / 255, mean: [103.53 / 255, 116.28 / 255, 123.675 / 255], std: [1, 1, 1], layout: 'nchw' };
  return {
    id,
    suite: 'onnxquant',
    file: `yolo/${id}.onnx`,
    input: { name: 'images', shape: [1, 3, 640, 640] },
    maxBatch: 1,
    preprocess,
    outputs,
    data: { calibration: { kind: 'coco', dir: 'Coco', split: 'Calib' }, test: { kind: 'coco', dir: 'Coco', split: 'Test' } },
    task: { kind: 'detection', size: 640, numClasses: 80, format: 'mmyolo-end2end' },
    published,
  };
}

const DETECTION: ZooEntry[] = [
  yolo('yolov6p5_n', ['/Concat_5_output_0', '/Concat_4_output_0'], 'unit', readme([49.8, 47.1, 2.4, 13.36, 1.46], [49.8, 42.7, 19.2, 111.97, 9.81])),
  yolo('yolov6p5_t', ['/Concat_5_output_0', '/Concat_4_output_0'], 'unit', readme([52.4, 50.6, 6.0, 17.56, 3.4], [52.4, 20.4, 54.68, 153.04, 34.37])),
  yolo('yolov5s6_n', ['/baseModel/head_module/convs_pred.1/Conv_output_0', '/baseModel/head_module/convs_pred.2/Conv_output_0', '/baseModel/head_module/convs_pred.0/Conv_output_0'], 'unit',
    readme([39.8, 35.6, 1.2, 2.6, 0.29], [39.8, 32.1, 4.56, 11.63, 1.16])),
  yolo('yolov5s6_s', ['/baseModel/head_module/convs_pred.1/Conv_output_0', '/baseModel/head_module/convs_pred.2/Conv_output_0', '/baseModel/head_module/convs_pred.0/Conv_output_0'], 'unit',
    readme([47.9, 42.4, 1.29, 3.05, 0.2], [47.9, 38.1, 4.73, 9.8, 0.8])),
  yolo('yolov7p5_tiny', ['/Concat_4_output_0', '/Concat_5_output_0', '/Concat_6_output_0'], 'unit', readme([46.6, 41.5, 1.63, 3.6, 3.03], [46.6, 37.5, 7.02, 14.71, 10.45])),
  yolo('yolov7p5_l', ['/Concat_4_output_0', '/Concat_5_output_0', '/Concat_6_output_0'], 'unit', readme([59.5, 51.2, 1.29, 2.54, 2.68], [59.5, 39.7, 7.72, 20.07, 12.56])),
  yolo('yolox_s', ['/Concat_4_output_0', '/Concat_5_output_0', '/Concat_6_output_0'], 'byte', readme([49.3, 43.0, 4.64, 12.61, 3.96], [49.3, 37.4, 15.44, 35.91, 12.0])),
  yolo('yolox_tiny', ['/Concat_4_output_0', '/Concat_5_output_0', '/Concat_6_output_0'], 'byte', readme([45.0, 39.1, 1.35, 3.12, 0.9], [45.0, 34.7, 4.27, 11.52, 3.66])),
  yolo('ppyoloe_m', ['/Concat_4_output_0', '/Concat_5_output_0'], 'ppyoloe', readme([55.8, 54.6, 2.69, 8.1, 0.87], [55.8, 51.2, 14.31, 35.48, 4.74])),
  yolo('ppyoloe_s', ['/Concat_4_output_0', '/Concat_5_output_0'], 'ppyoloe', readme([50.3, 49.0, 1.55, 3.97, 0.77], [50.3, 45.5, 14.69, 36.28, 6.52])),
];

function pose(id: string, output: string): ZooEntry {
  return {
    id,
    suite: 'onnxquant',
    file: `mmpose/${id}.onnx`,
    input: { name: 'input', shape: [1, 3, 256, 192] },
    maxBatch: 1,
    preprocess: { resize: { height: 256, width: 192 }, interpolation: 'bilinear', colorOrder: 'rgb', scale: 1 / 255, mean: IMAGENET_MEAN, std: IMAGENET_STD, layout: 'nchw' },
    outputs: [output],
    data: { calibration: { kind: 'images', dir: 'Pose/Calib' }, test: { kind: 'images', dir: 'Pose/Test' } },
    task: { kind: 'pose', keypoints: 17 },
    notes: 'PPQ publishes no pose metric (QuantZoo_Pose.py reports errors only); scored as keypoint agreement with the float model',
  };
}

const POSE: ZooEntry[] = [
  pose('deeppose_res50_coco_256x192', '/backbone/layer4/layer4.2/relu_2/Relu_output_0'),
  pose('hrnet_w32', 'onnx::Conv_2946'),
  pose('simcc-mobilenet_v2', '537'),
  pose('rtmpose-s', 'onnx::Conv_439'),
];

// ---- ../shared/quantzoo ---------------------------------------------------------------------------------------

function cifar(id: string, published?: ZooEntry['published'], limitPerClass = 300): ZooEntry {
  return {
    id,
    suite: 'shared',
    file: `cifar10/${id}.onnx`,
    input: { name: 'input', shape: [32, 3, 32, 32] },
    preprocess: CIFAR_PREPROCESS,
    data: {
      calibration: { kind: 'image-folder', dir: 'Cifar10/Calib' },
      // The first 300 test images per class: the PPQ 0.6.6 runs in ../shared/README.md used these.
      test: { kind: 'image-folder', dir: 'Cifar10/Test', limitPerClass },
    },
    task: { kind: 'classification', numClasses: 10 },
    ...(published ? { published } : {}),
  };
}

function shared3(float: number, pc: number, pot: number, fp8: number): ZooEntry['published'] {
  return {
    'onnxquant-int8-perchannel': [pub(PPQ_SHARED, [float, pc])],
    'onnxquant-int8-pot': [pub(PPQ_SHARED, [float, pot])],
    'onnxquant-fp8': [pub(PPQ_SHARED, [float, fp8])],
  };
}

const SHARED: ZooEntry[] = [
  {
    ...cifar('squeezenet_cifar10', undefined, 200),
    input: { name: 'input_1', shape: [32, 32, 32, 3] },
    preprocess: { colorOrder: 'rgb', scale: 1 / 255, layout: 'nhwc' },
    notes: 'NHWC Keras export; 75.8% float on the first 200 test images per class',
  },
  cifar('resnet20_cifar10', shared3(84.07, 84.2, 84.1, 83.87)),
  cifar('mobilenet_v2_cifar10', shared3(82.63, 82.7, 82.87, 82.1)),
  cifar('mobilenet_v3_small_cifar10', shared3(80.23, 79.93, 78.8, 79.67)),
  { ...cifar('vit_tiny_cifar10_opset14'), notes: 'LayerNorm decomposed; PPQ executor fails on it' },
  { ...cifar('vit_tiny_cifar10_opset17'), notes: 'LayerNormalization op; PPQ executor fails on it' },
  ...['mobilenetv2-7', 'squeezenet1.1'].map(
    (id): ZooEntry => ({
      id,
      suite: 'shared',
      file: `Imagenet/${id}.onnx`,
      input: { name: id === 'squeezenet1.1' ? 'data' : 'input', shape: [25, 3, 224, 224] },
      preprocess: IMAGENET_PREPROCESS,
      data: {
        calibration: { kind: 'image-folder', dir: 'Imagenet/Calib', classesFile: 'Imagenet/classes.txt' },
        test: { kind: 'image-folder', dir: 'Imagenet/Test', classesFile: 'Imagenet/classes.txt' },
      },
      task: { kind: 'classification', numClasses: 1000 },
    }),
  ),
  {
    id: 'srcnn_x3_256',
    suite: 'shared',
    file: 'mmedit/srcnn_x3_256.onnx',
    input: { name: 'input', shape: [1, 3, 256, 256] },
    maxBatch: 1,
    preprocess: { colorOrder: 'rgb', layout: 'nchw' },
    data: div2k(3, 256),
    task: { kind: 'super-resolution', scale: 3, channel: 'y', crop: 3, outputScale: 1 },
    notes: 'RGB 0–255 in and out; Set5+Set14 ×3, Y-PSNR, border 3',
  },
  {
    // The same SRCNN weights (mmediting srcnn_x4k915) with the Resize scales as a second input, fed the ×4 they were
    // trained for: the OnnxQuant srcnn row's scale, on Set5+Set14.
    id: 'srcnn_scale_input_x4',
    suite: 'shared',
    file: 'mmedit/srcnn_scale_input.onnx',
    input: { name: 'input', shape: [1, 3, 256, 256] },
    feeds: { factor: { dims: [4], values: [1, 1, 4, 4] } },
    maxBatch: 1,
    preprocess: { colorOrder: 'rgb', layout: 'nchw' },
    data: div2k(4, 256),
    task: { kind: 'super-resolution', scale: 4, channel: 'y', crop: 4, outputScale: 1 },
    // PPQ's srcnn row: these weights at this scale, but PSNR on its own test images, not Set5+Set14.
    published: {
      'onnxquant-int8-perchannel': [pub(`${PPQ_README}, on its own test data`, PPQ_SRCNN[0])],
      'onnxquant-int8-pot': [pub(`${PPQ_README}, on its own test data`, PPQ_SRCNN[1])],
    },
    notes: 'factor input fed [1, 1, 4, 4]; RGB 0–255 in and out; Set5+Set14 ×4, Y-PSNR, border 4',
  },
  {
    id: 'espcn_x3_y224',
    suite: 'shared',
    file: 'mmedit/espcn_x3_y224.onnx',
    input: { name: 'input', shape: [1, 1, 224, 224] },
    preprocess: { colorOrder: 'gray', scale: 1 / 255, layout: 'nchw' },
    data: div2k(3, 224),
    task: { kind: 'super-resolution', scale: 3, channel: 'gray', crop: 3, outputScale: 255 },
    notes: 'PIL Y in [0,1]; PSNR on the Y channel (PIL luma of HR), border 3',
  },
  {
    id: 'mnist-8',
    suite: 'shared',
    file: 'mnist/mnist-8.onnx',
    input: { name: 'Input3', shape: [1, 1, 28, 28] },
    maxBatch: 1,
    preprocess: {},
    data: {
      calibration: { kind: 'mnist', images: 'Mnist/t10k-images-idx3-ubyte.gz', labels: 'Mnist/t10k-labels-idx1-ubyte.gz', limit: 1000 },
      test: { kind: 'mnist', images: 'Mnist/t10k-images-idx3-ubyte.gz', labels: 'Mnist/t10k-labels-idx1-ubyte.gz', skip: 1000 },
    },
    task: { kind: 'classification', numClasses: 10 },
  },
  {
    id: 'version-RFB-320',
    suite: 'shared',
    file: 'face/version-RFB-320.onnx',
    input: { name: 'input', shape: [1, 3, 240, 320] },
    maxBatch: 1,
    preprocess: { resize: { height: 240, width: 320 }, interpolation: 'bilinear', colorOrder: 'rgb', scale: 1, mean: [127, 127, 127], std: [128, 128, 128], layout: 'nchw' },
    // 24 unlabelled photos: the first 8 (sorted) calibrate, the other 16 are scored against the float model.
    data: { calibration: { kind: 'images', dir: 'Faces', limit: 8 }, test: { kind: 'images', dir: 'Faces', skip: 8 } },
    task: { kind: 'agreement', compare: 'ultraface' },
    notes: 'Ultra-Light face detector; metric = box mAP against the float model (score ≥ 0.7, NMS 0.3)',
  },
  {
    id: 'en_PP-OCRv3_det',
    suite: 'shared',
    file: 'ocr/en_PP-OCRv3_det_infer.onnx',
    input: { name: 'x', shape: [1, 3, 640, 640] },
    preprocess: { colorOrder: 'rgb', scale: 1 / 255, mean: IMAGENET_MEAN, std: IMAGENET_STD, layout: 'nchw' },
    data: { calibration: { kind: 'images', dir: 'TextDet/Calib' }, test: { kind: 'images', dir: 'TextDet/Test' } },
    task: { kind: 'agreement', compare: 'cosine' },
    skip: 'no scene-text images in the workspace to detect on',
  },
];

export const ONNXQUANT_ENTRIES: readonly ZooEntry[] = [...CLASSIFICATION, ...SEGMENTATION, ...SUPER_RESOLUTION, ...OCR, ...DETECTION, ...POSE];
export const SHARED_ENTRIES: readonly ZooEntry[] = SHARED;
export const REGISTRY: readonly ZooEntry[] = [...ONNXQUANT_ENTRIES, ...SHARED_ENTRIES];

export function findEntries(ids: readonly string[] | undefined, registry: readonly ZooEntry[] = REGISTRY): ZooEntry[] {
  if (!ids || ids.length === 0) return [...registry];
  const byId = new Map(registry.map((e) => [e.id, e]));
  return ids.map((id) => {
    const e = byId.get(id);
    if (!e) throw new Error(`unknown zoo model '${id}' (known: ${registry.map((x) => x.id).join(', ')})`);
    return e;
  });
}
