// Moved to tools/bench.ts. Only backend/src/tools/peerBench.ts and peerOurs.ts still import it from
// here (their owner updates those imports to './bench'); delete this file then.
export { machineName, MIN_FILE_CHARS, SOURCE_DIRS, writeAtomic } from './tools/bench';
