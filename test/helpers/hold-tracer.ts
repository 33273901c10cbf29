// Child process for the kill -9 test: opens a tracer, prints its program IDs, waits.
import { openTracer } from '../../src/kernel/index.js';

const tracer = await openTracer({ resolveOwners: false });
process.stdout.write(`${JSON.stringify(tracer.programIds())}\n`);
setInterval(() => tracer.counters(), 1000);
setTimeout(() => process.exit(2), 30_000); // bounded even if the test dies
