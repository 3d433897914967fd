export type { Frame, FrameHandler, FrameSource, FrameSourceKind, CaptureState, CaptureStatus, JpegSplitterStats } from './frame.js';
export { FrameQueue } from './frame-queue.js';
export { JpegSplitter, defaultMaxFrameBytes } from './jpeg-splitter.js';
export { ReplaySource, replayDefaults, type ReplayOptions } from './replay.js';
export { createGstreamerSource, gstreamerDefaults, type GstreamerOptions, type GstreamerPreset } from './gstreamer.js';
export { createLibcameraSource, libcameraDefaults, type LibcameraOptions } from './libcamera.js';
export { restartDelay, supervisionDefaults, type SupervisionOptions } from './supervisor.js';
export { createFrameSource, type FrameSourceOptions } from './factory.js';
export { Camera, type CameraStatus } from './camera.js';
