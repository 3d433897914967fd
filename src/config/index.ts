export { configSchema, type Config } from './schema.js';
export { loadConfig, envName, configKeys, ConfigError, DEFAULT_CONFIG_PATH, type LoadedConfig } from './load.js';
