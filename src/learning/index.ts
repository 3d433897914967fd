export { Learning, type ActiveModel, type LearningSettings, type LearningStatus, type RefusalReason } from './learning.js';
export { labelRadius } from './radius.js';
