export {
  Pipeline,
  type DecidedFrame,
  type DecisionConsumer,
  type PipelineCounters,
  type PipelineStage,
  type StageObserver,
} from './pipeline.js';
