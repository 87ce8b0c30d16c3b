/**
 * SALMON's stages before they run (`selfalign run --estimate` and the run's context check): the tokens each sends,
 * evaluates, generates and trains on, from its options and the constitution's salmon.yaml. Upper bounds where the
 * method's yields are not known: every answer as long as its maxTokens, every pair kept and labelled.
 */
import type { z } from "zod";
import type { StageEstimate, StageEstimateContext, StagePromptLength } from "../../pipeline/stage-definition.js";
import { chatPrompt } from "../engrave/prompt.js";
import { evaluatedPromptTokens, commonPrefix } from "../shared/estimate-prompts.js";
import { trainingTokens } from "../shared/estimate-training.js";
import { longestQuery } from "../shared/longest-prompts.js";
import { promptSourceStages } from "../shared/stage-prompts.js";
import { aggregateDefaults } from "./aggregate.js";
import { salmonAggregateStage } from "./aggregate-stage.js";
import type {
  salmonAggregateOptionsSchema,
  salmonPreferencesOptionsSchema,
  salmonResponsesOptionsSchema,
  salmonRewardModelOptionsSchema,
} from "./definitions.js";
import type { SalmonDpoOptions } from "./dpo-definition.js";
import { judgePromptHead, judgePromptTail } from "./judge-prompt.js";
import { policyPair } from "./preference-exports.js";
import { salmonPreferencesStage } from "./preferences.js";
import { salmonResponsesStage, salmonSamplingDefaults, samplesPerPrompt } from "./responses.js";
import { reviewerPrompt, rewardPrinciplesOf, rewardPrincipleText, rlGuidelines, salmonOf } from "./reviewer-prompt.js";
import type { SalmonRlOptions } from "./rl-definition.js";

type Context<S extends z.ZodType> = StageEstimateContext<z.infer<S>>;

const sum = (values: readonly number[]) => values.reduce((total, value) => total + value, 0);

/** What no model is asked for: a stage that only reshapes or writes records. */
const noWork = { requests: 0, promptTokens: 0, evaluatedPromptTokens: 0, completionTokens: 0, trainTokens: 0 };

/** The prompts the stage-1 stages keep, or none when the stage reads a prompt file (not read for the estimate). */
const stagePrompts = (context: Pick<StageEstimateContext<unknown>, "upstreamRecords">, file: unknown) =>
  file === undefined ? sum(promptSourceStages.map((stage) => context.upstreamRecords(stage))) : 0;

const promptFileNote = "a prompt file is not read for the estimate: its prompts are not counted";

/** Tokens of an answer from salmon-responses (what the later stages judge and train on). */
const answerTokens = (context: Pick<StageEstimateContext<unknown>, "upstreamRecordTokens">, stage: string) =>
  context.upstreamRecordTokens(stage) ?? salmonSamplingDefaults.maxTokens;

/** B.1: two samples of every prompt; both share the prompt's evaluation (sent together, one prefix). */
export async function estimateSalmonResponses(
  context: Context<typeof salmonResponsesOptionsSchema>,
): Promise<StageEstimate> {
  const { options, constitution, countTokens, noPrefixReuse } = context;
  salmonOf(constitution);
  const { assistant } = constitution;
  const query = longestQuery(constitution);
  const prompt = await countTokens(chatPrompt(assistant, "concise", query.instruction, query.input));
  const fixed = await countTokens(chatPrompt(assistant, "concise", ""));
  const shared = await countTokens(
    commonPrefix(chatPrompt(assistant, "concise", "a"), chatPrompt(assistant, "concise", "b")),
  );
  const maxTokens = options.sampling.maxTokens ?? salmonSamplingDefaults.maxTokens;
  const n = Math.min(options.maxPrompts ?? Number.POSITIVE_INFINITY, stagePrompts(context, options.prompts));
  const requests = n * samplesPerPrompt;
  return {
    requests,
    promptTokens: requests * prompt,
    evaluatedPromptTokens: evaluatedPromptTokens({
      prompts: noPrefixReuse ? requests : n,
      tokens: prompt,
      shared,
      noPrefixReuse,
    }),
    completionTokens: requests * maxTokens,
    trainTokens: 0,
    records: requests,
    recordTokens: maxTokens,
    prompts: [
      {
        label: "policy prompt",
        tokens: prompt,
        minTokens: fixed,
        maxTokens,
        maxTokensField: "sampling.maxTokens",
        // The default policy is the training base + the SFT adapter on the run's engine settings.
        role: options.policy === undefined ? "generator" : "policy",
      },
    ],
    notes: [
      options.prompts === undefined
        ? `${samplesPerPrompt} samples of each of ${n} stage-1 prompts, every answer kept; the two samples of a prompt share its evaluation${noPrefixReuse ? " (not with engine.deterministic)" : ""}`
        : promptFileNote,
    ],
  };
}

/**
 * B.2: every pair judged under every principle in both orders, one score call on the two option letters each (no
 * generation). The scorer evaluates the distinct prefixes of what is waiting: the judge's text before the request
 * once; per pair the request once (both orders start with it), each order's two answers, and each principle's tail
 * once per order (the start all tails share once). It shares prefixes on a deterministic engine too (its scoring context is always exact), so
 * `noPrefixReuse` does not apply.
 */
export async function estimateSalmonPreferences(
  context: Context<typeof salmonPreferencesOptionsSchema>,
): Promise<StageEstimate> {
  const { options, constitution, countTokens, upstreamRecords } = context;
  const principles = rewardPrinciplesOf(
    constitution,
    options.principles,
    `stages.${salmonPreferencesStage}.principles`,
  );
  const { assistant } = constitution;
  const answer = answerTokens(context, salmonResponsesStage);
  const query = longestQuery(constitution);
  // The answers are left empty and counted as `answer` tokens each.
  const head = judgePromptHead(assistant, query, "", "");
  const headTokens = (await countTokens(head)) + 2 * answer;
  const shared = await countTokens(
    commonPrefix(
      judgePromptHead(assistant, { instruction: "a" }, "", ""),
      judgePromptHead(assistant, { instruction: "b" }, "", ""),
    ),
  );
  // Both orders of a pair share everything before the first answer.
  const pairShared = await countTokens(
    commonPrefix(judgePromptHead(assistant, query, "a", "b"), judgePromptHead(assistant, query, "b", "a")),
  );
  const tails = principles.map((principle) =>
    judgePromptTail(assistant, principle.dimension, rewardPrincipleText(constitution, principle, false)),
  );
  const full = await Promise.all(tails.map(async (tail) => (await countTokens(head + tail)) + 2 * answer));
  const tailTokens = full.map((tokens) => tokens - headTokens);
  // The principles' tails start alike ("What to judge"): that start once per order.
  const tailShared = await countTokens(tails.reduce(commonPrefix));
  const ownTails = tailShared + sum(tailTokens.map((tokens) => tokens - tailShared));
  const shortestTail = tails.reduce((shortest, tail) => (tail.length < shortest.length ? tail : shortest));
  const pairs = Math.min(
    options.maxPairs ?? Number.POSITIVE_INFINITY,
    Math.floor(upstreamRecords(salmonResponsesStage) / samplesPerPrompt),
  );
  const orders = 2;
  return {
    requests: pairs * principles.length * orders,
    promptTokens: pairs * orders * sum(full),
    evaluatedPromptTokens:
      pairs === 0 ? 0 : shared + pairs * (pairShared - shared + orders * (headTokens - pairShared + ownTails)),
    completionTokens: 0,
    trainTokens: 0,
    records: pairs,
    recordTokens: answer,
    prompts: [
      {
        label: "judge prompt",
        tokens: Math.max(...full),
        minTokens: await countTokens(judgePromptHead(assistant, { instruction: "" }, "", "") + shortestTail),
        // One option letter is scored after it.
        maxTokens: 1,
        lengthField: `stages.${salmonResponsesStage}.sampling.maxTokens`,
        // The default judge is the training base + the SFT adapter on the run's engine settings.
        role: options.judge === undefined ? "generator" : "judge",
      },
    ],
    notes: [
      `${pairs} pairs x ${principles.length} principles x ${orders} orders of score calls on the two option letters, timed as prompt evaluation`,
      `evaluated: the judge prompt's ${shared}-token start once; per pair its request (${pairShared - shared} tokens) once, then each order's answers (${headTokens - pairShared} tokens) and each principle's tail`,
    ],
  };
}

/** B.3: no model; at most one example per pair and pass (a draw without a label is skipped). */
export async function estimateSalmonAggregate(
  context: Context<typeof salmonAggregateOptionsSchema>,
): Promise<StageEstimate> {
  const { options, upstreamRecords } = context;
  const pairs = upstreamRecords(salmonPreferencesStage);
  return {
    ...noWork,
    records: pairs * options.passes,
    recordTokens: answerTokens(context, salmonPreferencesStage),
    prompts: [],
    notes: [`${options.passes} passes over ${pairs} pairs, every draw labelled (no model)`],
  };
}

/**
 * Tokens of the longest reviewer prompt of a reward-model example: the longest request, an answer of `answer`
 * tokens and a guideline of the longest `count` reward principles (each as its longer wording, plain or negated).
 */
async function longestRewardSequence(
  context: Pick<StageEstimateContext<unknown>, "constitution" | "countTokens">,
  answer: number,
  count: number,
): Promise<number> {
  const { constitution, countTokens } = context;
  const texts = salmonOf(constitution)
    .rewardPrinciples.map(
      (principle) =>
        [rewardPrincipleText(constitution, principle, false), rewardPrincipleText(constitution, principle, true)].sort(
          (a, b) => b.length - a.length,
        )[0]!,
    )
    .sort((a, b) => b.length - a.length)
    .slice(0, count);
  const query = longestQuery(constitution);
  const text = reviewerPrompt({
    assistantName: constitution.assistant.name,
    instruction: query.instruction,
    input: query.input,
    response: "",
    guidelines: texts,
  });
  return (await countTokens(text)) + answer;
}

/** B.4: the reward model trains on both reviewer texts of every example (chosen and rejected), all epochs. */
export async function estimateSalmonRewardModel(
  context: Context<typeof salmonRewardModelOptionsSchema>,
): Promise<StageEstimate> {
  const { options, upstreamRecords } = context;
  const examples = upstreamRecords(salmonAggregateStage);
  const answer = answerTokens(context, salmonAggregateStage);
  const sequence = await longestRewardSequence(context, answer, aggregateDefaults.maxPrinciples);
  return {
    ...noWork,
    trainTokens: trainingTokens(options.train, { examples: 2 * examples, exampleTokens: sequence }),
    records: examples,
    prompts: [],
    notes: [
      `${examples} pairs of 2 reviewer texts of at most ${sequence} tokens (${aggregateDefaults.maxPrinciples} principles, salmon-aggregate's default maxPrinciples), the held-out share included`,
    ],
  };
}

/**
 * DPO on the aggregated examples: the policy trains on chosen and rejected (prompt + answer) each epoch; the frozen
 * reference's log-probabilities are one forward over every pair before training, counted as one more pass at the
 * training speed (an upper bound: a forward alone costs less than a training step).
 */
export async function estimateSalmonDpo(context: StageEstimateContext<SalmonDpoOptions>): Promise<StageEstimate> {
  const { options, constitution, countTokens, upstreamRecords } = context;
  const examples = upstreamRecords(salmonAggregateStage);
  const answer = answerTokens(context, salmonAggregateStage);
  const query = longestQuery(constitution);
  const pair = policyPair({
    id: "",
    instruction: query.instruction,
    input: query.input,
    prompt: chatPrompt(constitution.assistant, "concise", query.instruction, query.input),
    chosen: "",
    rejected: "",
    chosenEnded: true,
    rejectedEnded: true,
    principles: [],
    negated: [],
  });
  const sequence = (await countTokens(pair.prompt + pair.chosen)) + answer;
  const policy = trainingTokens(options.train, { examples: 2 * examples, exampleTokens: sequence });
  const { maxSteps: _maxSteps, ...once } = options.train;
  const reference = trainingTokens({ ...once, epochs: 1 }, { examples: 2 * examples, exampleTokens: sequence });
  return {
    ...noWork,
    trainTokens: policy + reference,
    records: examples,
    prompts: [],
    notes: [
      `${examples} pairs of 2 sequences of at most ${sequence} tokens; the reference's forward over them (${reference} tokens) counted at the training speed`,
    ],
  };
}

/**
 * B.5, embedded PPO: per step, rolloutBatch rollouts (prompt + responseLength new tokens, one sequence each from an
 * empty cache), one reward-model text per rollout, and the update: 3 forwards (policy, reference and value
 * log-probs) and ppoEpochs x 2 trained passes (policy and value) over the rollouts, at the training speed.
 * `trainer: openrlhf` only writes the prompts and a launch script: nothing runs here.
 */
export async function estimateSalmonRl(context: StageEstimateContext<SalmonRlOptions>): Promise<StageEstimate> {
  const { options, constitution, countTokens } = context;
  salmonOf(constitution);
  const n = Math.min(options.maxPrompts ?? Number.POSITIVE_INFINITY, stagePrompts(context, options.prompts));
  if (options.trainer === "openrlhf")
    return {
      ...noWork,
      records: n,
      prompts: [],
      notes: [`writes ${n} prompts and a launch script for OpenRLHF: the cluster's run is not estimated`],
    };
  const ppo = options.embedded;
  const query = longestQuery(constitution);
  const promptText = chatPrompt(constitution.assistant, options.style, query.instruction, query.input);
  // Longer prompts are left out of PPO; the longest kept is at most queryLength.
  const prompt = Math.min(ppo.queryLength, await countTokens(promptText));
  const fixed = await countTokens(chatPrompt(constitution.assistant, options.style, ""));
  const drawn = [...salmonOf(constitution).rlPrinciples]
    .sort((a, b) => b.definition.length - a.definition.length)
    .slice(0, ppo.reward.principles);
  const reviewer =
    (await countTokens(
      reviewerPrompt({
        assistantName: constitution.assistant.name,
        instruction: query.instruction,
        input: query.input,
        response: "",
        guidelines: rlGuidelines(constitution, drawn),
      }),
    )) + ppo.responseLength;
  // Even the shortest prompt is left out when its fixed part is longer than queryLength: PPO stops before a step.
  const fits = fixed <= ppo.queryLength;
  const steps = ppo.maxSteps ?? Math.max(1, Math.floor((ppo.epochs * n) / ppo.rolloutBatch));
  const rollouts = n === 0 || !fits ? 0 : steps * ppo.rolloutBatch;
  const sequence = prompt + ppo.responseLength;
  const passes = 3 + 2 * ppo.ppoEpochs;
  const prompts: StagePromptLength[] = [
    {
      label: "rollout prompt",
      tokens: prompt,
      minTokens: Math.min(prompt, fixed),
      maxTokens: ppo.responseLength,
      maxTokensField: "embedded.responseLength",
      // PPO samples on a context of its own (queryLength + responseLength).
      role: "policy",
    },
    {
      label: "reward-model prompt",
      tokens: reviewer,
      minTokens: reviewer - ppo.responseLength,
      maxTokens: 0,
      lengthField: "stages.salmon-rl.embedded.responseLength",
      // The reward model, on a context of its own.
      role: "judge",
    },
  ];
  return {
    requests: 2 * rollouts,
    promptTokens: rollouts * (prompt + reviewer),
    evaluatedPromptTokens: rollouts * (prompt + reviewer),
    completionTokens: rollouts * ppo.responseLength,
    trainTokens: rollouts * sequence * passes,
    records: rollouts,
    recordTokens: ppo.responseLength,
    prompts,
    notes: fits
      ? [
          `${steps} PPO steps x ${ppo.rolloutBatch} rollouts of at most ${prompt} + ${ppo.responseLength} tokens (no prompt left out as longer than queryLength), each rewarded on a ${reviewer}-token reviewer text`,
          `the update: ${passes} passes over each rollout (3 forwards, ${ppo.ppoEpochs} ppoEpochs x policy and value) counted at the training speed`,
          "rollouts decode one sequence at a time (rolloutThreads): timed at the speed measured over the run's sequences, so they may take longer",
        ]
      : [
          `the prompt's fixed part (${fixed} tokens) is longer than queryLength ${ppo.queryLength}: every prompt would be left out and PPO stop before its first step; raise embedded.queryLength`,
        ],
  };
}
