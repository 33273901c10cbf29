/** From a socket's cgroup id to its container and pod: what src/agent and the CLI import. */
export * from './cgroupfs.js';
export * from './conventions.js';
export * from './cri.js';
export * from './resolver.js';
export * from './pod.js';
