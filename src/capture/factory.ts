import { UserError } from '../common/index.js';
import type { FrameSource } from './frame.js';
import { createGstreamerSource, type GstreamerOptions } from './gstreamer.js';
import { createLibcameraSource, type LibcameraOptions } from './libcamera.js';
import { ReplaySource, type ReplayOptions } from './replay.js';

export type FrameSourceOptions = ReplayOptions | GstreamerOptions | LibcameraOptions;

/** Builds the source named by `kind`; invalid options throw a UserError here, before anything starts. */
export function createFrameSource(options: FrameSourceOptions): FrameSource {
  switch (options.kind) {
    case 'replay':
      return new ReplaySource(options);
    case 'gstreamer':
      return createGstreamerSource(options);
    case 'libcamera':
      return createLibcameraSource(options);
    default:
      throw new UserError(`unknown capture source kind "${String((options as { kind: unknown }).kind)}"`, 'use one of: replay, gstreamer, libcamera');
  }
}
