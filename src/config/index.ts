export { configSchema, decodeThreads, replayFpsMax, type Config } from './schema.js';
export { loadConfig, envName, configKeys, DEFAULT_CONFIG_PATH, type LoadedConfig } from './load.js';
export { ConfigError } from './error.js';
export { cameraKey, configuredCameras, frameLimits, type CameraConfig } from './cameras.js';
