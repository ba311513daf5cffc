/** Named preprocessing specs, shared by the CLI's --preprocess and zoo registry files ("preprocess": "imagenet"). */
import { OCR_SPEC } from './ocr.ts';
import { IMAGENET_SPEC, type PreprocessSpec } from './preprocess.ts';

export const PREPROCESS_PRESETS: Record<string, PreprocessSpec> = {
  imagenet: IMAGENET_SPEC,
  'cifar10-nchw': { resize: { height: 32, width: 32 }, colorOrder: 'rgb', scale: 1 / 255, mean: [0.4914, 0.4822, 0.4465], std: [0.247, 0.2435, 0.2616], layout: 'nchw' },
  'rgb01-nhwc': { colorOrder: 'rgb', scale: 1 / 255, layout: 'nhwc' },
  'ocr-32x320': OCR_SPEC(32, 320, true),
  'ocr-48x320': OCR_SPEC(48, 320, true),
  'raw-rgb': { colorOrder: 'rgb', layout: 'nchw' },
};
