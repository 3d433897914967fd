/** Messages between the Encoder (main thread) and its inference workers. */

export interface WorkerSetup {
  modelPath: string;
  /** Execution providers to try, in order; the first that opens the model is used. */
  providers: string[];
  intraOpThreads: number | undefined;
  inputName: string;
  outputName: string;
  /** [channels, height, width] of one frame. */
  frameShape: [number, number, number];
  dimension: number;
}

/** A model input or output as ONNX Runtime reports it; symbolic dimensions are strings. */
export interface PortInfo {
  name: string;
  type?: string;
  shape?: (number | string)[];
}

export interface ProviderAttempt {
  provider: string;
  error: string;
}

export type ToWorker = {
  type: 'run';
  id: number;
  count: number;
  /** Transferred in and back out, so a worker's two buffers are never copied or reallocated. */
  input: Float32Array;
  output: Float32Array;
};

export type FromWorker =
  | { type: 'ready'; provider: string; failed: ProviderAttempt[]; inputs: PortInfo[]; outputs: PortInfo[] }
  | { type: 'open-failed'; failed: ProviderAttempt[] }
  | { type: 'done'; id: number; input: Float32Array; output: Float32Array }
  | { type: 'run-failed'; id: number; error: string; input: Float32Array; output: Float32Array };
