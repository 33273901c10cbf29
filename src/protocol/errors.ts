/**
 * Errors a user can hit: one plain sentence that names the fix, and an exit
 * code. Every layer throws them; the CLI prints the sentence, the agent turns
 * them into INVALID_ARGUMENT.
 */
export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'UserError';
  }
}
