/* eslint-disable */
// Generated from schemas/realtime-payloads.schema.json by scripts/gen-types.mjs (json-schema-to-typescript).
// Do not edit: change the pydantic models, then run `make sdk-types`.

export type RealtimePayload = null;
