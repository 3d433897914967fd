export {
  Pipeline,
  type DecidedFrame,
  type DecisionConsumer,
  type ModelLease,
  type ModelSource,
  type PipelineCounters,
  type PipelineStage,
  type StageObserver,
} from './pipeline.js';
