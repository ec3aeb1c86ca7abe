// Moved to tools/samples.ts. Only backend/src/tools/peerOurs.ts still imports it from here (its owner
// updates that import to './samples'); delete this file then.
export { pickSamples, sourceFiles } from './tools/samples';
