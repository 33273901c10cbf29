/** An error a person running the bench can fix: printed as one sentence, exit 1. */
export class BenchError extends Error {}
