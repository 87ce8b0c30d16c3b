/** Typed progress events. The library emits them and never prints; the CLI renders them. */
export type ProgressEvent =
  | { type: "stage-start"; stage: string; total?: number; done?: number }
  | {
      type: "record-end";
      stage: string;
      done: number;
      total?: number;
      /** Whether this input kept a record (an input may give several records, e.g. a list of questions). */
      kept?: boolean;
      reason?: string;
      /**
       * The stage folder's record counts after this input (its manifest's, earlier runs included): what the run's
       * summary reports, so a renderer showing these agrees with it.
       */
      records?: { kept: number; rejected: number };
    }
  | { type: "stage-end"; stage: string; done: number; kept?: number; rejected?: number }
  | {
      type: "train-step";
      /** The stage that trains (set by the pipeline; absent for a plain `selfalign train`). */
      stage?: string;
      step: number;
      totalSteps: number;
      loss: number;
      learningRate: number;
      tokensPerSecond?: number;
      /** Pairs kinds (preference, reward): share of the step's pairs ranked right. */
      accuracy?: number;
      /** Pairs kinds: mean reward of chosen minus rejected. */
      margin?: number;
      /** PPO: mean sequence reward of the step's rollouts. */
      reward?: number;
      /** PPO: mean KL to the reference per response (summed log-ratio). */
      kl?: number;
    }
  | {
      type: "train-eval";
      stage?: string;
      step: number;
      totalSteps: number;
      loss: number;
      accuracy?: number;
      margin?: number;
    }
  | { type: "download-progress"; file: string; downloadedBytes: number; totalBytes?: number }
  | {
      /** A request to a server failed and is tried again after `delayMs` (the HTTP backend). */
      type: "request-retry";
      url: string;
      /** 1 for the first retry of this request. */
      attempt: number;
      maxRetries: number;
      delayMs: number;
      /** Why the attempt failed (never contains an API key). */
      reason: string;
      statusCode?: number;
    }
  | { type: "message"; level: "info" | "warn"; text: string };

export type ProgressEventType = ProgressEvent["type"];

/** Receives progress events; must not throw. */
export type ProgressListener = (event: ProgressEvent) => void;
