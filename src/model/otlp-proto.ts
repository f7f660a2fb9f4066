import protobuf from 'protobufjs';

/**
 * The OTLP trace protocol (opentelemetry-proto v1.x), only the files an ExportTraceServiceRequest
 * needs and without the comments: collector/trace/v1/trace_service.proto, trace/v1/trace.proto,
 * common/v1/common.proto, resource/v1/resource.proto. Field numbers and types are the upstream
 * ones; messages spanledger never reads (Resource.entity_refs, still in development upstream) are
 * left out, and their fields are skipped as unknown fields on decode.
 *
 * One deliberate difference: AnyValue's `oneof value` is declared as plain fields with explicit
 * presence (edition 2023, the same wire format). protobufjs keeps a oneof through a setter that
 * deletes the other six fields of every decoded value, which took an eighth of the decoding
 * time and leaves the objects slow to read. A set field is an own property of the decoded
 * AnyValue; if a (malformed) value sets several, the decoder takes the first in field order.
 */
const ANY_VALUE_PROTO = `
edition = "2023";
package opentelemetry.proto.common.v1;

message AnyValue {
  string string_value = 1;
  bool bool_value = 2;
  int64 int_value = 3;
  double double_value = 4;
  ArrayValue array_value = 5;
  KeyValueList kvlist_value = 6;
  bytes bytes_value = 7;
}
message ArrayValue { repeated AnyValue values = 1; }
message KeyValueList { repeated KeyValue values = 1; }
`;

const COMMON_PROTO = `
syntax = "proto3";
package opentelemetry.proto.common.v1;

message KeyValue {
  string key = 1;
  AnyValue value = 2;
}
message InstrumentationScope {
  string name = 1;
  string version = 2;
  repeated KeyValue attributes = 3;
  uint32 dropped_attributes_count = 4;
}
`;

const RESOURCE_PROTO = `
syntax = "proto3";
package opentelemetry.proto.resource.v1;
import "opentelemetry/proto/common/v1/common.proto";

message Resource {
  repeated opentelemetry.proto.common.v1.KeyValue attributes = 1;
  uint32 dropped_attributes_count = 2;
}
`;

const TRACE_PROTO = `
syntax = "proto3";
package opentelemetry.proto.trace.v1;
import "opentelemetry/proto/common/v1/common.proto";
import "opentelemetry/proto/resource/v1/resource.proto";

message TracesData { repeated ResourceSpans resource_spans = 1; }
message ResourceSpans {
  reserved 1000;
  opentelemetry.proto.resource.v1.Resource resource = 1;
  repeated ScopeSpans scope_spans = 2;
  string schema_url = 3;
}
message ScopeSpans {
  opentelemetry.proto.common.v1.InstrumentationScope scope = 1;
  repeated Span spans = 2;
  string schema_url = 3;
}
message Span {
  bytes trace_id = 1;
  bytes span_id = 2;
  string trace_state = 3;
  bytes parent_span_id = 4;
  fixed32 flags = 16;
  string name = 5;
  enum SpanKind {
    SPAN_KIND_UNSPECIFIED = 0;
    SPAN_KIND_INTERNAL = 1;
    SPAN_KIND_SERVER = 2;
    SPAN_KIND_CLIENT = 3;
    SPAN_KIND_PRODUCER = 4;
    SPAN_KIND_CONSUMER = 5;
  }
  SpanKind kind = 6;
  fixed64 start_time_unix_nano = 7;
  fixed64 end_time_unix_nano = 8;
  repeated opentelemetry.proto.common.v1.KeyValue attributes = 9;
  uint32 dropped_attributes_count = 10;
  message Event {
    fixed64 time_unix_nano = 1;
    string name = 2;
    repeated opentelemetry.proto.common.v1.KeyValue attributes = 3;
    uint32 dropped_attributes_count = 4;
  }
  repeated Event events = 11;
  uint32 dropped_events_count = 12;
  message Link {
    bytes trace_id = 1;
    bytes span_id = 2;
    string trace_state = 3;
    repeated opentelemetry.proto.common.v1.KeyValue attributes = 4;
    uint32 dropped_attributes_count = 5;
    fixed32 flags = 6;
  }
  repeated Link links = 13;
  uint32 dropped_links_count = 14;
  Status status = 15;
}
message Status {
  reserved 1;
  string message = 2;
  enum StatusCode {
    STATUS_CODE_UNSET = 0;
    STATUS_CODE_OK = 1;
    STATUS_CODE_ERROR = 2;
  }
  StatusCode code = 3;
}
`;

const TRACE_SERVICE_PROTO = `
syntax = "proto3";
package opentelemetry.proto.collector.trace.v1;
import "opentelemetry/proto/trace/v1/trace.proto";

message ExportTraceServiceRequest {
  repeated opentelemetry.proto.trace.v1.ResourceSpans resource_spans = 1;
}
`;

function loadRoot(): protobuf.Root {
  const root = new protobuf.Root();
  // Imports are satisfied by parsing every file into the same root; names resolve across them.
  for (const source of [ANY_VALUE_PROTO, COMMON_PROTO, RESOURCE_PROTO, TRACE_PROTO, TRACE_SERVICE_PROTO]) protobuf.parse(source, root);
  root.resolveAll();
  return root;
}

/** protobufjs type of opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest (fields in lowerCamelCase). */
export const ExportTraceServiceRequestType = loadRoot().lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest');

/** The shapes protobufjs decodes into (fixed64/int64 as Long, bytes as Buffer), as far as spanledger reads them. */
/** Only the field that was set is an own property (see ANY_VALUE_PROTO). */
export interface ProtoAnyValue {
  stringValue: string;
  boolValue: boolean;
  intValue: protobuf.Long;
  doubleValue: number;
  arrayValue: { values: ProtoAnyValue[] };
  kvlistValue: { values: ProtoKeyValue[] };
  bytesValue: Uint8Array;
}
export interface ProtoKeyValue {
  key: string;
  value?: ProtoAnyValue | null;
}
export interface ProtoEvent {
  timeUnixNano: protobuf.Long;
  name: string;
  attributes: ProtoKeyValue[];
}
export interface ProtoLink {
  traceId: Uint8Array;
  spanId: Uint8Array;
  traceState: string;
  attributes: ProtoKeyValue[];
}
export interface ProtoSpan {
  traceId: Uint8Array;
  spanId: Uint8Array;
  traceState: string;
  parentSpanId: Uint8Array;
  name: string;
  kind: number;
  startTimeUnixNano: protobuf.Long;
  endTimeUnixNano: protobuf.Long;
  attributes: ProtoKeyValue[];
  events: ProtoEvent[];
  links: ProtoLink[];
  status?: { message: string; code: number } | null;
}
export interface ProtoScopeSpans {
  scope?: { name: string; version: string; attributes: ProtoKeyValue[] } | null;
  spans: ProtoSpan[];
}
export interface ProtoResourceSpans {
  resource?: { attributes: ProtoKeyValue[] } | null;
  scopeSpans: ProtoScopeSpans[];
}
export interface ProtoExportTraceServiceRequest {
  resourceSpans: ProtoResourceSpans[];
}
