export {
  Pipeline,
  roiOf,
  type CameraCounters,
  type DecidedFrame,
  type DecisionConsumer,
  type PipelineCounters,
  type PipelineStage,
  type StageObserver,
} from './pipeline.js';
