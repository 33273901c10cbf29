#!/usr/bin/env node
// The installed command: runs the compiled CLI.
//
// Ink (the `top` and `replay` screens) draws only the final frame when CI or
// CONTINUOUS_INTEGRATION is set, and it reads them once, when first imported.
// A person at a terminal wants live frames whatever their environment says,
// so on a terminal those two are dropped before anything imports Ink.
if (process.stdout.isTTY) {
  delete process.env.CI;
  delete process.env.CONTINUOUS_INTEGRATION;
}
const { main } = await import('../dist/cli/main.js');

process.exitCode = await main(process.argv);
