/**
 * Fleet topics: one retained message per shared reference,
 * `linewatch/<site>/fleet/<modelKey>/<deviceId>/ref/<localId>`. docs/operations.md ("Fleet sync")
 * says why this layout.
 */
export interface FleetAddress {
  site: string;
  /** The model key of the vector the message carries. */
  modelKey: string;
  device: string;
  localId: number;
}

/** The fleet id of a reference: unique across the fleet, since a device never reuses a reference id. */
export function fleetId(device: string, localId: number): string {
  return `${device}/${localId}`;
}

export function fleetTopic({ site, modelKey, device, localId }: FleetAddress): string {
  return `linewatch/${site}/fleet/${modelKeyLevel(modelKey)}/${device}/ref/${localId}`;
}

/** Every shared reference of a site, of every model key (another key's references are re-embedded). */
export function fleetFilter(site: string): string {
  return `linewatch/${site}/fleet/+/+/ref/+`;
}

/** The address a fleet topic names, or null when it is not one. */
export function parseFleetTopic(topic: string): FleetAddress | null {
  const levels = topic.split('/');
  if (levels.length !== 7 || levels[0] !== 'linewatch' || levels[2] !== 'fleet' || levels[5] !== 'ref') return null;
  const [, site, , key, device, , id] = levels as [string, string, string, string, string, string, string];
  if (!site || !key || !device || !/^[1-9][0-9]{0,15}$/.test(id)) return null;
  try {
    return { site, modelKey: decodeURIComponent(key), device, localId: Number(id) };
  } catch {
    return null;
  }
}

// A model name is free text: escape what would split or widen a topic level (and the escape itself).
function modelKeyLevel(modelKey: string): string {
  return modelKey.replace(/[%/+#]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
}
