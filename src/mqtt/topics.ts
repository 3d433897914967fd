import { UserError } from '../common/index.js';

/** The device's names; they make the default topic root and client id. A device of several cameras is named by its line alone. */
export interface DeviceNames {
  site: string;
  line: string;
  camera?: string;
}

export function defaultTopicRoot({ site, line, camera }: DeviceNames): string {
  return camera === undefined ? `linewatch/${site}/${line}/` : `linewatch/${site}/${line}/${camera}/`;
}

export function defaultClientId({ site, line, camera }: DeviceNames): string {
  return camera === undefined ? `linewatch-${site}-${line}` : `linewatch-${site}-${line}-${camera}`;
}

/** The topic root every linewatch topic of this device hangs off, checked and ending in `/`. */
export function topicRoot(names: DeviceNames, configured?: string | null): string {
  for (const [name, value] of Object.entries(names)) {
    if (value === undefined) continue;
    if (!value || /[/+#]/.test(value)) {
      throw new UserError(`the ${name} name "${value}" cannot be part of an MQTT topic`, `use a ${name} name without "/", "+" or "#"`);
    }
  }
  const root = configured ?? defaultTopicRoot(names);
  if (/[+#]/.test(root)) throw new UserError(`the MQTT topic root "${root}" contains a wildcard`, 'remove "+" and "#" from topicRoot');
  return root.endsWith('/') ? root : `${root}/`;
}
