/**
 * The execution lifecycle: every state change of sessions and executions, each as one
 * optimistic KV transaction that checks what it read, appends its events, clears the active
 * slot, interrupt flag and grace record only when they name the execution it ends, promotes
 * the next queued execution and arms the deadlines it needs, all in the same commit.
 *
 * Side effects on sockets never happen here: a transition posts inbox messages to the
 * instance that holds a connection (in the same commit); once it committed, `change()` hands
 * what it stored to `ctx.committed`, which pushes it to local viewers. Every transition
 * returns an {@link Outcome}: a value, or a refusal with a domain code that only the routes
 * turn into an HTTP status or a close code.
 *
 * Where things are:
 * - `lifecycle/transition.ts`: the context and `change()`, the transaction frame;
 * - `lifecycle/finish.ts`: ending an execution or, on deletion, a whole session (the only
 *   code that clears the active slot and the interrupt flag), fail and interrupt;
 * - `lifecycle/sessions.ts`, `lifecycle/executions.ts`: creation, deletion, views;
 * - `lifecycle/connections.ts`: ingest admission, frame commits, disconnects;
 * - `lifecycle/deadlines.ts`: what each deadline does when it fires;
 * - `lifecycle/input.ts`: accepting inputs for the agent and their delivery confirmations.
 *
 * @module
 */
export type { Effects, LifecycleContext, Outcome, Refusal } from "./lifecycle/transition.ts";
export * from "./lifecycle/sessions.ts";
export * from "./lifecycle/executions.ts";
export { type ExecutionNotFound, failExecution, interruptExecution } from "./lifecycle/finish.ts";
export * from "./lifecycle/connections.ts";
export * from "./lifecycle/deadlines.ts";
export { acceptInput, type InputRefusal } from "./lifecycle/input.ts";
