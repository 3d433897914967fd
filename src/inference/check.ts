import { UserError } from '../common/index.js';
import type { Manifest } from './manifest.js';
import type { PortInfo } from './protocol.js';

/** Refuse a model whose input/output names, types or shapes disagree with its manifest. */
export function checkModelAgainstManifest(manifest: Manifest, modelPath: string, inputs: PortInfo[], outputs: PortInfo[]): void {
  const channels = manifest.input.colour === 'gray' ? 1 : 3;
  const differences = [
    ...checkPort('input', manifest.input.name, inputs, [channels, manifest.input.height, manifest.input.width]),
    ...checkPort('output', manifest.output.name, outputs, [manifest.output.dimension]),
  ];
  if (inputs.length > 1) differences.push(`the model has ${inputs.length} inputs (${inputs.map((p) => p.name).join(', ')}); an encoder has one`);
  if (differences.length > 0) {
    throw new UserError(
      `${modelPath} does not match its manifest: ${differences.join('; ')}`,
      'use the manifest.json that came with this model, or re-export the model to match it',
    );
  }
}

/** Differences for one port; `expected` are the dimensions after the batch axis. */
function checkPort(kind: 'input' | 'output', name: string, ports: PortInfo[], expected: number[]): string[] {
  const port = ports.find((p) => p.name === name);
  if (!port) {
    return [`manifest ${kind}.name is "${name}" but the model's ${kind}s are ${ports.map((p) => `"${p.name}"`).join(', ')}`];
  }
  const found: string[] = [];
  if (port.type !== undefined && port.type !== 'float32') found.push(`${kind} "${name}" is ${port.type}, not float32`);
  const shape = port.shape;
  if (shape === undefined) return found;
  const show = (dims: (number | string)[]): string => `[${dims.map((d) => (d === '' ? '?' : d)).join(', ')}]`;
  if (shape.length !== expected.length + 1) {
    found.push(`${kind} "${name}" has shape ${show(shape)}, manifest implies ${show(['N', ...expected])}`);
    return found;
  }
  if (typeof shape[0] === 'number') {
    found.push(`${kind} "${name}" has a fixed batch size ${shape[0]}; frames are batched, so export it with a dynamic batch axis`);
  }
  // Symbolic dimensions (strings) accept any size; only fixed ones can disagree.
  if (expected.some((dim, i) => typeof shape[i + 1] === 'number' && shape[i + 1] !== dim)) {
    found.push(`${kind} "${name}" has shape ${show(shape)}, manifest implies ${show(['N', ...expected])}`);
  }
  return found;
}
