import type { E2eSection, MemorySection, SwapSection } from './e2e.js';
import type { EncoderSection } from './encoder.js';
import type { KnnSection } from './knn.js';
import type { PreprocessSection } from './preprocess.js';

export interface BenchDocument {
  /** The command line that reproduces this document. */
  command: string;
  quick: boolean;
  machine: {
    cpu: string;
    cores: number;
    /** 1-minute load average before and after the run: how busy the cores were with other work. */
    loadBefore: number;
    loadAfter: number;
    node: string;
    onnxruntime: string;
    sharp: string;
    hnswlib: string;
  };
  startedAt: string;
  durationS: number;
  encoder: EncoderSection;
  preprocess: PreprocessSection;
  e2e: E2eSection;
  knn: KnnSection;
  memory: MemorySection;
  swap: SwapSection;
  targets: Target[];
}

/** One target of issue #3: met or not, with the measured ratio or value; never a pass/fail of the run. */
export interface Target {
  name: string;
  met: boolean;
  /** The measured figure the target is judged on (a ratio, ms or %). */
  value: number;
  goal: string;
  detail: string;
}
