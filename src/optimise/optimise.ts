/**
 * Runs a recipe: 'pre' passes rewrite the float model before planning and calibration (each is calibrated and
 * measured against the unmodified model, and dropped if it does not lower the error); 'post' passes refine the
 * calibrated state and roll themselves back. Returns the final state and a report per pass with its time.
 */
import type { ModelProto } from 'onnx-buf';
import { batchSize, calibrate, type Feeds } from '../calibrate/calibrate.ts';
import type { ExecutionProvider } from '../runtime/session.ts';
import type { QuantParams } from '../quant/config.ts';
import { planModel, type Filter, type QuantPlan } from '../quant/plan.ts';
import type { QuantRule } from '../quant/rules.ts';
import { gib, keepDecision, mean, meanOverOutputs, peakRss, sampleErrorsByOutput, type KeepTest, type OptimiseContext, type PassReport, type QuantState } from './context.ts';
import { passFor, type PassSpec } from './recipes.ts';

export interface OptimiseOptions {
  rule: QuantRule;
  filter?: Filter;
  /** Calibration batches, held in memory (recipes calibrate more than once). */
  calibration: Feeds[];
  /** How many of them the passes use to measure error (default: 4, or 16 samples when batches are small; the CLI's
   * --measure-batches). More samples narrow the paired test's standard error at the cost of each measurement. */
  measureBatches?: number;
  statsOn?: 'quantized-weights' | 'float';
  /** Execution provider of the calibration sessions (the passes' measurements simulate on the CPU provider). */
  provider?: ExecutionProvider;
  /** How each pass's change is judged (context.ts keepDecision); default 'mean'. */
  keepTest?: KeepTest;
  /** Tensors the passes are judged by (default: the graph outputs). */
  outputs?: readonly string[];
  log?: (line: string) => void;
}

async function calibrateWith(model: ModelProto, plan: QuantPlan, o: OptimiseOptions): Promise<Map<string, QuantParams>> {
  async function* data() {
    yield* o.calibration;
  }
  return (await calibrate(model, plan, data, { statsOn: o.statsOn, provider: o.provider })).params;
}

async function calibrated(model: ModelProto, o: OptimiseOptions): Promise<QuantState> {
  const plan = planModel(model, o.rule, o.filter);
  return { model, plan, params: await calibrateWith(model, plan, o) };
}

/**
 * Which calibration batches a recipe judges passes by (`measure`), which they fit to (`fit`), and which the network
 * output searches run on (`fresh`). Passes are judged on 4 batches, or on at least 16 samples when batches are small
 * and the set allows (4 batches of 1 — SR models, detectors, the corpus's batch-1 models — made the keep/roll-back
 * decision a coin toss on held-out data), and fit to the next batches: at least 8, or 32 samples. With too few
 * batches to keep them apart, both start at batch 0. `fresh` is as many batches again after the fitting ones, when
 * the set holds them (else the fitting batches): a search after weight rounding tuned to the batches the rounding
 * was fitted to follows that fit's noise (en_number power-of-2, after `best`: the scale search took the fitting
 * error 1.500% → 1.320% and the measuring error 1.785% → 2.143%).
 */
export function splitCalibration(calibration: readonly Feeds[], measureBatches?: number): { measure: Feeds[]; fit: Feeds[]; fresh: Feeds[] } {
  const n = calibration.length;
  const perBatch = Math.max(1, batchSize(calibration[0]));
  const m = measureBatches ?? Math.max(Math.min(4, n), Math.min(Math.ceil(16 / perBatch), Math.floor(n / 2)));
  const f = Math.max(8, Math.ceil(32 / perBatch));
  const fit = n >= m + 4 ? calibration.slice(m, m + f) : calibration.slice(0, f);
  const fresh = n >= m + f + 4 ? calibration.slice(m + f, m + 2 * f) : fit;
  return { measure: calibration.slice(0, m), fit, fresh };
}

/**
 * Does a recipe keep weight rounding's restart from the plain rule (dropping the passes before it)? The restart is an
 * alternative to the chain so far, not a step after it: it must pass the test the chain's passes passed
 * (significantly lower than the plain rule, keepDecision) and end below the chain's mean. Requiring it to beat the
 * chain significantly too favoured whichever came first — a chain kept for a significant gain held its place against
 * a restart lower still by less than 2 SE on few samples (batch-1 models judge on 16).
 */
export function restartDecision(plain: readonly Float64Array[], chain: readonly Float64Array[], restart: readonly Float64Array[], outputs: readonly string[], test: KeepTest = 'mean'): ReturnType<typeof keepDecision> {
  const d = keepDecision(plain, restart, outputs, test);
  return { ...d, kept: d.kept && mean(meanOverOutputs(restart)) < mean(meanOverOutputs(chain)) };
}

/**
 * Weight rounding after the chain (`chained`) or from the plain rule (`restart`)? The restart is kept when it passes
 * restartDecision's test and, if the chained end passes its usual test (significantly below the chain), when it is the
 * lower of the two. When a restart passes, the chained end competes under the restart's own test too — both are
 * alternatives to the chain so far — and the lower end is kept: holding only the chained end to the stricter test let
 * a restart displace a lower one (mobilenet_v2_cifar10 power-of-2: chain (equalization) 0.158%, rounding after it
 * 0.127%, not significantly below 0.158%; restart 0.146% — kept). With no restart passing, the usual test alone
 * decides, as for any pass; with neither passing, the lower end is reported (not kept).
 */
export function weightRoundingStart(plain: readonly Float64Array[], chain: readonly Float64Array[], chained: readonly Float64Array[], restart: readonly Float64Array[], outputs: readonly string[], test: KeepTest = 'mean'): { restart: boolean; decision: ReturnType<typeof keepDecision> } {
  const usual = keepDecision(chain, chained, outputs, test);
  const restartDecided = restartDecision(plain, chain, restart, outputs, test);
  const restartLower = mean(meanOverOutputs(restart)) < mean(meanOverOutputs(chained));
  if (!restartDecided.kept) return !usual.kept && restartLower ? { restart: true, decision: restartDecided } : { restart: false, decision: usual };
  const chainedDecision = usual.kept ? usual : restartDecision(plain, chain, chained, outputs, test);
  return chainedDecision.kept && !restartLower ? { restart: false, decision: chainedDecision } : { restart: true, decision: restartDecided };
}

/** A recipe state as the confirmation below tracks it: the state, its per-output per-sample errors, its reference. */
export interface ChainPoint<S, R> {
  state: S;
  errors: readonly Float64Array[];
  reference: R;
}

/** The 'lower' keep test's record of its last confirmed state (chainConfirmation, below). */
export interface ChainConfirmation<S, R> {
  /** A pass was kept, reaching `now`; `reports` = the reports so far, its own included. Returns the test against the
   * last confirmed state and whether `now` is the confirmed state from here on (`confirms`: the test passed, or the
   * pass was `unconditional`). */
  kept(now: ChainPoint<S, R>, reports: number, o?: { restart?: boolean; unconditional?: boolean }): ReturnType<typeof keepDecision> & { confirms: boolean };
  /** The state the recipe returns; the passes kept after it are marked undone in `reports`. */
  settle(reports: PassReport[]): ChainPoint<S, R> & { undone: number };
}

/**
 * The 'lower' keep test's guard. Each pass is kept when its measuring mean falls at all, which keeps a change with no
 * real effect half the time; so a recipe under 'lower' also tracks its last *confirmed* state (at first the plain
 * rule): a kept pass confirms the chain when it is significantly below the confirmed state by the 'mean-or-log' test
 * (lower mean, significantly lower mean or log ratios, no output significantly worse). The recipe returns the last
 * confirmed state, and passes kept after it are reported undone. Small real gains add up to a confirmation; a tail of
 * noise is dropped — ch_ppocr_mobile_v2.0_cls per-channel kept only the shift (held-out OQE 0.412% → 0.413% on 256
 * feeds). Confirming against the last confirmed state, not the plain rule, keeps a significant early pass whose
 * noisy successors would widen the whole chain's standard error: silero_vad_v4_lstm per-channel, outlier migration
 * 1.778% → 1.183% ± 0.296%, then a scale search → 0.725%, the chain ± 0.646% against the plain rule. The log test
 * is there for heavy tails: KWS-DNN_S per-channel (16 measuring samples, one carrying the plain rule's mean) went
 * 1.680% → 0.033% ± 1.110%, held-out OQE 0.857% → 0.048% (64 feeds); the mean test alone returned the plain rule.
 * A restart (weight rounding from the plain rule) drops the confirmed passes before it; a pass that changes what is
 * quantized (fallback) confirms unconditionally, as the plain rule is no alternative after it.
 */
export function chainConfirmation<S, R>(start: ChainPoint<S, R>, outputs: readonly string[]): ChainConfirmation<S, R> {
  let confirmed = { ...start, reports: 0 };
  return {
    kept(now, reports, o = {}) {
      if (o.restart) confirmed = { ...start, reports: 0 };
      const d = keepDecision(confirmed.errors, now.errors, outputs, 'mean-or-log');
      const confirms = o.unconditional === true || d.kept;
      if (confirms) confirmed = { ...now, reports };
      return { ...d, confirms };
    },
    settle(reports) {
      const tail = reports.slice(confirmed.reports).filter((r) => r.kept);
      for (const rep of tail) Object.assign(rep, { kept: false, detail: `${rep.detail ? `${rep.detail}; ` : ''}undone: not confirmed (the passes kept since the last confirmed state were not significantly below it)` });
      return { ...confirmed, undone: tail.length };
    },
  };
}

/**
 * `reference` is the float model the final plan refers to: the prepared model after the kept 'pre' passes, which
 * keep the float function (equalization, outlier migration) but rescale channels, so layer-by-layer error analysis
 * must compare against it rather than against the unmodified model. 'post' passes change weights or biases toward
 * their quantized values and are never part of it.
 */
export async function runRecipe(prepared: ModelProto, recipe: readonly PassSpec[], o: OptimiseOptions): Promise<{ state: QuantState; reports: PassReport[]; reference: ModelProto }> {
  const { measure, fit, fresh } = splitCalibration(o.calibration, o.measureBatches);
  const ctx: OptimiseContext = {
    rule: o.rule,
    reference: prepared,
    batches: measure,
    fitBatches: fit,
    freshBatches: fresh,
    outputs: o.outputs?.length ? [...o.outputs] : prepared.graph!.output.map((v) => v.name),
    keepTest: o.keepTest,
    recalibrate: (model, plan) => calibrateWith(model, plan, o),
    log: o.log ?? (() => {}),
  };
  const reports: PassReport[] = [];
  const initial = await calibrated(prepared, o);
  let state = initial;
  // Per monitored output, per measuring sample; `avg` is their mean over the outputs.
  let errors = await sampleErrorsByOutput(state, ctx);
  const initialErrors = errors;
  const avg = (e: readonly Float64Array[]) => mean(meanOverOutputs(e));
  let reference = prepared;
  // Set once a kept pass has changed what is quantized: the plain rule is no alternative then.
  let quantizedSetChanged = false;
  const pct = (x: number) => `${(x * 100).toFixed(3)}%`;
  const confirmation = o.keepTest === 'lower' ? chainConfirmation({ state: initial, errors: initialErrors, reference }, ctx.outputs) : undefined;
  ctx.log(`plain rule: output error ${pct(avg(errors))} (peak RSS ${gib(peakRss())})`);
  for (const spec of recipe) {
    const pass = passFor(spec);
    const t0 = performance.now();
    const r = await pass.run(state, ctx);
    let detail = r.detail;
    // A pass that changed nothing (grid equalization under per-channel weights, no pair found) returns its input:
    // recalibrating it would only reproduce the same state at the cost of a calibration and a measurement.
    let next = r.state === state ? state : pass.stage === 'pre' ? await calibrated(r.state.model, o) : r.state;
    let nextErrors = next === state ? errors : await sampleErrorsByOutput(next, ctx);
    let restart = false;
    // Judged against the current state.
    let decision = keepDecision(errors, nextErrors, ctx.outputs, ctx.keepTest);
    // Not after a pass that changed what is quantized: the plain rule would quantize what it left float.
    if (spec.pass === 'weight-rounding' && spec.alsoFromStart && state !== initial && !quantizedSetChanged) {
      // The passes before it lower the error at their own step but can leave a worse starting point for weight
      // rounding (en_number per-channel: outlier migration + range search 6.86% → 4.15%, then rounding → 1.81%;
      // rounding from the plain rule → 1.35%). Round from the plain rule too; weightRoundingStart chooses.
      const startCtx = { ...ctx, reference: prepared };
      const alt = await pass.run(initial, startCtx);
      const altErrors = await sampleErrorsByOutput(alt.state, startCtx);
      const choice = weightRoundingStart(initialErrors, errors, nextErrors, altErrors, ctx.outputs, ctx.keepTest);
      const chained = avg(nextErrors);
      const chainedByRestartTest = !choice.restart && choice.decision.kept && !decision.kept;
      decision = choice.decision;
      if (choice.restart) {
        restart = true;
        next = alt.state;
        nextErrors = altErrors;
        detail = `${alt.detail}; started from the plain rule, dropping the earlier passes (${pct(avg(altErrors))}; after them: ${pct(chained)})`;
      } else detail = `${detail}; after the earlier passes (from the plain rule: ${pct(avg(altErrors))}${chainedByRestartTest ? '; kept by the restart\'s test, below the plain rule' : ''})`;
    }
    const unconditional = pass.changesWhatIsQuantized === true;
    const kept = unconditional ? next !== state : decision.kept;
    const se = decision.se;
    if (decision.worse && !unconditional) detail = `${detail ? `${detail}; ` : ''}'${decision.worse}' got worse`;
    if (kept && decision.onLogs) detail = `${detail ? `${detail}; ` : ''}kept on the log test (mean-or-log)`;
    if (kept && restart) {
      for (const rep of reports) if (rep.kept) Object.assign(rep, { kept: false, detail: `${rep.detail ?? ''} (superseded: weight rounding started from the plain rule)` });
      reference = prepared;
      ctx.reference = prepared;
    }
    const peak = peakRss();
    const ms = performance.now() - t0;
    reports.push({ pass: pass.name, before: avg(errors), after: avg(nextErrors), kept, se, ms, peakRss: peak, detail });
    ctx.log(`${pass.name}: output error ${pct(avg(errors))} → ${pct(avg(nextErrors))} ± ${pct(se)} (${kept ? (decision.onLogs ? 'kept on the log test' : 'kept') : decision.worse ? `rolled back: '${decision.worse}' worse` : 'rolled back'}; ${(ms / 1000).toFixed(1)} s, peak RSS ${gib(peak)})`);
    if (kept) {
      state = next;
      errors = nextErrors;
      if (unconditional) quantizedSetChanged = true;
      if (pass.stage === 'pre') {
        // Same float function, rescaled channels: later passes compare layer outputs against this model.
        reference = next.model;
        ctx.reference = reference;
      }
      const c = confirmation?.kept({ state, errors, reference }, reports.length, { restart, unconditional });
      if (c) ctx.log(`${pass.name}: ${c.confirms ? 'confirms the chain' : 'not yet confirmed'} (${pct(avg(errors))} against the last confirmed state ± ${pct(c.se)})`);
    }
  }
  if (confirmation) {
    const settled = confirmation.settle(reports);
    if (settled.undone) {
      ctx.log(`${settled.undone} pass${settled.undone > 1 ? 'es' : ''} kept after the last confirmed state undone: output error ${pct(avg(errors))} → ${pct(avg(settled.errors))}`);
      ({ state, reference } = settled);
    }
  }
  return { state, reports, reference };
}
