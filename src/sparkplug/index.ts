export { EdgeNode, type EdgeNodeOptions, type EdgeNodeStatus } from './edge-node.js';
export { type LineState } from './metrics.js';
export { NAMESPACE, deviceTopic, nodeTopic, stateTopic, type EdgeNodeIdentity } from './topics.js';
