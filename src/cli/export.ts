/** `onnxquant export`: quantization parameters for other runtimes, or a QOperator-format ONNX model. */
import type { Command } from 'commander';
import { UserError } from '../errors.ts';
import { ncnnTableFromSidecar, writeNcnnTable } from '../export/ncnn-table.ts';
import { readQParams, writeQParamsJson } from '../export/qparams.ts';
import { toQOperator } from '../export/qoperator.ts';
import { DEFAULT_TRT_HEADER, trtCacheFromSidecar, writeTrtCache } from '../export/trt-cache.ts';
import { loadModel, saveModel, writeFileAtomic } from '../onnx/model-io.ts';
import { checkOutputFile, sameFile } from './output-paths.ts';
import { hasQdqNodes } from '../ir/graph.ts';

const FORMATS = ['trt-cache', 'ncnn-table', 'qparams-json', 'qoperator'] as const;

export function registerExport(program: Command): void {
  program
    .command('export')
    .description('export quantization parameters (TensorRT calibration cache, ncnn int8 table, qparams JSON) or a QOperator ONNX model')
    .argument('<source>', 'a quantized QDQ .onnx model or its .qparams.json sidecar')
    .requiredOption('--format <format>', FORMATS.join(' | '))
    .requiredOption('-o, --output <file>', 'output file')
    .option('--trt-header <line>', 'first line of the TensorRT cache', DEFAULT_TRT_HEADER)
    .action(async (source: string, o: Record<string, unknown>) => {
      const format = String(o.format);
      const out = String(o.output);
      if (!(FORMATS as readonly string[]).includes(format)) throw new UserError(`--format must be one of ${FORMATS.join(', ')}, got '${format}'`);
      checkOutputFile(out);
      if (sameFile(out, source)) throw new UserError('is the source being exported: writing there would replace it (choose another -o)', out);
      if (format === 'qoperator') {
        if (source.endsWith('.json')) throw new UserError('qoperator needs the QDQ .onnx model, not the sidecar', source);
        const qdq = loadModel(source);
        if (!hasQdqNodes(qdq)) throw new UserError('has no QuantizeLinear/DequantizeLinear nodes: nothing to convert (export a quantized QDQ model)', source);
        const { model, converted, left } = toQOperator(qdq);
        // An FP8 or 16-bit model has no QOperator kernels: writing it back unchanged would only look like a result.
        if (Object.keys(converted).length === 0)
          throw new UserError(`no layer converts to a QOperator kernel (e.g. ${left[0]?.node}: ${left[0]?.reason}); nothing written`, source);
        saveModel(model, out);
        const list = Object.entries(converted).map(([op, n]) => `${op}×${n}`).join(', ') || 'nothing';
        process.stdout.write(`wrote ${out}: converted ${list}; ${left.length} layer(s) left as DQ → float op → Q\n`);
        for (const l of left) process.stderr.write(`note: ${l.node} left float (${l.reason})\n`);
        return;
      }
      const header = String(o.trtHeader);
      if (!/^TRT-\d+-\w+$/.test(header)) throw new UserError(`--trt-header must look like TRT-8601-EntropyCalibration2, got '${header}'`);
      const qp = readQParams(source);
      if (qp.tensors.length === 0) throw new UserError('holds no quantization parameters (no quantized tensor): export a quantized QDQ model or its .qparams.json', source);
      const text =
        format === 'trt-cache' ? writeTrtCache(trtCacheFromSidecar(qp, header)) : format === 'ncnn-table' ? writeNcnnTable(ncnnTableFromSidecar(qp)) : writeQParamsJson(qp);
      writeFileAtomic(out, text);
      process.stdout.write(`wrote ${out} (${format}, ${qp.tensors.length} tensors in the source)\n`);
      // TensorRT caches and ncnn tables are int8 formats: a 16-bit, 4-bit or FP8 tensor goes in as an int8 scale
      // for its calibrated range, which is not what the QDQ model computes. Say so rather than let it pass unseen.
      const other = format === 'qparams-json' ? [] : qp.tensors.filter((t) => !(t.format === 'int' && t.bits === 8));
      if (other.length)
        process.stderr.write(`note: ${other.length} tensor(s) are not int8 in the source (${[...new Set(other.map((t) => (t.format === 'int' ? `int${t.bits}` : t.format)))].join(', ')}; e.g. '${other[0].tensor}'); ${format} stores them as int8 scales of their calibrated ranges\n`);
    });
}
