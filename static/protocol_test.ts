import assert from "node:assert/strict";
import {
  ApiErrorCode,
  CLOSE_CODE_HTTP_STATUS,
  CloseCode,
  EventType,
  TERMINAL_STATUSES,
} from "./protocol.js";
import {
  AcpEventType,
  CloseCode as ServiceCloseCode,
  ErrorCode,
  EventType as ServiceEventType,
  ExecutionStatus,
  InputEventType,
  RESERVED_EVENT_TYPES,
  STREAM_EVENT_TYPE_RE,
} from "../src/protocol.ts";

Deno.test("the page's close codes are the service's, under the same names", () => {
  for (const [name, code] of Object.entries(CloseCode)) {
    assert.equal(code, ServiceCloseCode[name as keyof typeof ServiceCloseCode], name);
  }
  assert.deepEqual(Object.keys(CLOSE_CODE_HTTP_STATUS).map(Number), [
    ServiceCloseCode.unauthorized,
    ServiceCloseCode.forbidden,
    ServiceCloseCode.notFound,
  ]);
});

Deno.test("the page's event types are valid names and include the reserved ones", () => {
  for (const type of Object.values(EventType)) assert.match(type, STREAM_EVENT_TYPE_RE);
  for (const reserved of RESERVED_EVENT_TYPES) {
    assert.ok(Object.values(EventType).includes(reserved as never), reserved);
  }
});

Deno.test("the page's terminal statuses are the contract's", () => {
  const terminal = ExecutionStatus.options.filter((s) => s !== "pending" && s !== "running");
  assert.deepEqual([...TERMINAL_STATUSES], terminal);
});

Deno.test("the page's error codes and input event types are the service's", () => {
  const codes: Record<string, string> = ErrorCode;
  for (const [name, code] of Object.entries(ApiErrorCode)) assert.equal(code, codes[name], name);
  assert.deepEqual([EventType.input, EventType.inputDelivered], [
    InputEventType.input,
    InputEventType.delivered,
  ]);
});

Deno.test("the page's ACP event types are the wrapper's (PROTOCOL.md 14)", () => {
  assert.deepEqual(
    [EventType.acp, EventType.acpTurn, EventType.permissionRequest, EventType.acpInputIgnored],
    [
      AcpEventType.update,
      AcpEventType.turn,
      AcpEventType.permissionRequest,
      AcpEventType.inputIgnored,
    ],
  );
});

Deno.test("the page's event types of sections 5.1 and 7 are the service's, under the same names", () => {
  const service: Record<string, string> = ServiceEventType;
  for (const [name, type] of Object.entries(EventType)) {
    if (name in service) assert.equal(type, service[name], name);
  }
  const named = new Set([
    ...Object.values(ServiceEventType),
    ...Object.values(InputEventType),
    ...Object.values(AcpEventType),
  ]);
  for (const type of Object.values(EventType)) assert.ok(named.has(type as never), type);
});
