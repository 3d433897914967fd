/** Sparkplug B 3.0 topic namespace (§4 "Topics and Messages Definitions"). */
export const NAMESPACE = 'spBv1.0';

export type NodeVerb = 'NBIRTH' | 'NDEATH' | 'NDATA' | 'NCMD';
export type DeviceVerb = 'DBIRTH' | 'DDEATH' | 'DDATA' | 'DCMD';

/** The edge node's identity: its topics are built from it (its devices are its cameras). */
export interface EdgeNodeIdentity {
  groupId: string;
  edgeNodeId: string;
}

export function nodeTopic(id: EdgeNodeIdentity, verb: NodeVerb): string {
  return `${NAMESPACE}/${id.groupId}/${verb}/${id.edgeNodeId}`;
}

export function deviceTopic(id: EdgeNodeIdentity, verb: DeviceVerb, deviceId: string): string {
  return `${NAMESPACE}/${id.groupId}/${verb}/${id.edgeNodeId}/${deviceId}`;
}

/** Where a host application publishes its STATE (3.0: `spBv1.0/STATE/<host_id>`, JSON, retained). */
export function stateTopic(hostId: string): string {
  return `${NAMESPACE}/STATE/${hostId}`;
}
