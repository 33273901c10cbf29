/** From events and snapshots to the numbers a person reads. Pure: no I/O, no clock. */
export { Aggregator, byTrouble, shortAddress, type SourceOptions } from './aggregator.js';
export type { ProcessFdFacts } from './source-state.js';
export * from './view.js';
