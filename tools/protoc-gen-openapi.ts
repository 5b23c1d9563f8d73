/**
 * protoc-gen-openapi: a buf/protoc plugin, run by `npm run generate`
 * (buf.gen.yaml), that writes an OpenAPI 3.1 document for the Connect
 * protocol's JSON face of every stockroom.* service: each unary method is
 * `POST /<package>.<Service>/<Method>` with a proto3-JSON body; streaming
 * methods are documented as Connect's enveloped streams (not plain JSON).
 * Schemas follow the proto3 JSON mapping (camelCase names, 64-bit integers
 * as strings, enums by name, well-known types in their JSON forms) and carry
 * the protos' comments as descriptions. Only npm packages are needed.
 */
import {
  create,
  createFileRegistry,
  type DescEnum,
  type DescField,
  type DescMessage,
  type DescMethod,
  type DescService,
  ScalarType,
} from "@bufbuild/protobuf";
import {
  CodeGeneratorResponse_Feature,
  CodeGeneratorResponseSchema,
  FileDescriptorSetSchema,
  type CodeGeneratorRequest,
} from "@bufbuild/protobuf/wkt";
import { getComments, runNodeJs } from "@bufbuild/protoplugin";

type Schema = Record<string, unknown>;

const OUTPUT = "stockroom.openapi.json";
/** The services documented: the public API, not grpc.health or reflection. */
const PUBLIC_PACKAGE = /^stockroom\./;
/** google.rpc detail messages the server attaches to errors (services/common/src/rpc/rpc-errors.ts). */
const ERROR_DETAILS = [
  "google.rpc.ErrorInfo",
  "google.rpc.BadRequest",
  "google.rpc.PreconditionFailure",
  "google.rpc.ResourceInfo",
  "google.rpc.RetryInfo",
  "google.rpc.QuotaFailure",
  "google.rpc.RequestInfo",
];

/** Connect's HTTP status for each error code (https://connectrpc.com/docs/protocol#error-codes). */
const STATUS_CODES: [status: string, codes: string[]][] = [
  ["400", ["invalid_argument", "failed_precondition", "out_of_range"]],
  ["401", ["unauthenticated"]],
  ["403", ["permission_denied"]],
  ["404", ["not_found"]],
  ["409", ["already_exists", "aborted"]],
  ["429", ["resource_exhausted"]],
  ["499", ["canceled"]],
  ["500", ["unknown", "internal", "data_loss"]],
  ["501", ["unimplemented"]],
  ["503", ["unavailable"]],
  ["504", ["deadline_exceeded"]],
];
const ERROR_CODES = STATUS_CODES.flatMap(([, codes]) => codes);

/** The JSON forms of the well-known types (https://protobuf.dev/programming-guides/json/). */
const WELL_KNOWN: Record<string, Schema> = {
  "google.protobuf.Timestamp": {
    type: "string",
    format: "date-time",
    description: 'An RFC 3339 time in UTC, e.g. "2026-01-02T15:04:05.123Z".',
  },
  "google.protobuf.Duration": {
    type: "string",
    pattern: "^-?[0-9]+(\\.[0-9]{1,9})?s$",
    description: 'A duration in seconds with an "s" suffix, e.g. "1.5s".',
  },
  "google.protobuf.FieldMask": {
    type: "string",
    description: 'Field paths, comma-separated, in camelCase, e.g. "title,price,attributes.color".',
  },
  "google.protobuf.Empty": { type: "object", description: "An empty object." },
  "google.protobuf.Struct": { type: "object", additionalProperties: true },
  "google.protobuf.Value": { description: "Any JSON value." },
  "google.protobuf.ListValue": { type: "array", items: {} },
  "google.protobuf.Any": {
    type: "object",
    properties: { "@type": { type: "string" } },
    required: ["@type"],
    additionalProperties: true,
  },
  "google.protobuf.StringValue": { type: ["string", "null"] },
  "google.protobuf.BytesValue": { type: ["string", "null"], contentEncoding: "base64" },
  "google.protobuf.BoolValue": { type: ["boolean", "null"] },
  "google.protobuf.Int32Value": { type: ["integer", "null"], format: "int32" },
  "google.protobuf.UInt32Value": { type: ["integer", "null"], format: "uint32" },
  "google.protobuf.Int64Value": { type: ["string", "null"], format: "int64" },
  "google.protobuf.UInt64Value": { type: ["string", "null"], format: "uint64" },
  "google.protobuf.FloatValue": { type: ["number", "null"], format: "float" },
  "google.protobuf.DoubleValue": { type: ["number", "null"], format: "double" },
};

const INFO_DESCRIPTION = `Every unary RPC of the stockroom API is a plain HTTP call (the [Connect protocol](https://connectrpc.com/docs/protocol)):

    POST /<package>.<Service>/<Method>
    Content-Type: application/json
    Authorization: Bearer srk_...

with the request message as the JSON body; the answer is the response message as JSON (HTTP 200) or an error.

**JSON mapping** (proto3 JSON): field names in lowerCamelCase; fields at their default value (0, "", false, empty lists, the first enum value) are left out of answers; 64-bit integers are strings ("1234"); enums are value names; \`google.protobuf.Timestamp\` is an RFC 3339 string; \`google.protobuf.Duration\` is seconds with an "s" suffix; \`google.protobuf.FieldMask\` is a comma-separated string of camelCase paths; bytes are base64.

**Errors** are JSON objects \`{"code": "...", "message": "...", "details": [...]}\` with the HTTP status Connect maps each code to (invalid_argument, failed_precondition, out_of_range: 400; unauthenticated: 401; permission_denied: 403; not_found: 404; already_exists, aborted: 409; resource_exhausted: 429; canceled: 499; unknown, internal, data_loss: 500; unimplemented: 501; unavailable: 503; deadline_exceeded: 504). Each detail is a \`google.rpc\` message (\`ErrorInfo\` reasons such as ETAG_MISMATCH, \`BadRequest\` field violations, ...): \`type\` names it, \`value\` is its binary protobuf encoding in base64, and \`debug\` the same message as JSON.

**Streaming methods** (marked \`x-connect-streaming\`) are not callable as a plain JSON request: they use Connect's enveloped streaming format (\`Content-Type: application/connect+json\`), in which each message is framed by one flags byte and a 4-byte big-endian length, and the response ends with an end-of-stream message (flags 0x02) carrying the error, if any, and trailers. Use a Connect, gRPC or gRPC-Web client for them.

Optional headers: \`Connect-Protocol-Version: 1\`, \`Connect-Timeout-Ms\` (the call's deadline).`;

/** text normalizes a proto comment: one leading space off each line, no trailing blank lines. */
function text(comment: string | undefined): string | undefined {
  if (comment === undefined) return undefined;
  const lines = comment.split("\n").map((l) => l.replace(/^ /, "").trimEnd());
  while (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  return lines.length > 0 ? lines.join("\n") : undefined;
}

function describe(desc: DescMessage | DescEnum | DescField | DescService | DescMethod): { description?: string } {
  const d = text(getComments(desc).leading);
  return d === undefined ? {} : { description: d };
}

function ref(typeName: string): Schema {
  return { $ref: `#/components/schemas/${typeName}` };
}

function scalarSchema(t: ScalarType): Schema {
  switch (t) {
    case ScalarType.STRING:
      return { type: "string" };
    case ScalarType.BOOL:
      return { type: "boolean" };
    case ScalarType.BYTES:
      return { type: "string", contentEncoding: "base64" };
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return { type: "integer", format: "int32" };
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return { type: "integer", format: "uint32", minimum: 0 };
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return { type: "string", format: "int64", pattern: "^-?[0-9]+$" };
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return { type: "string", format: "uint64", pattern: "^[0-9]+$" };
    case ScalarType.FLOAT:
    case ScalarType.DOUBLE:
      return {
        anyOf: [
          { type: "number", format: t === ScalarType.FLOAT ? "float" : "double" },
          { type: "string", enum: ["NaN", "Infinity", "-Infinity"] },
        ],
      };
  }
}

/** Collects the schemas of the messages and enums reachable from the documented methods. */
class Schemas {
  readonly out: Record<string, Schema> = {};

  message(m: DescMessage): Schema {
    if (!(m.typeName in this.out)) {
      const known = WELL_KNOWN[m.typeName];
      if (known) {
        this.out[m.typeName] = known;
      } else {
        const properties: Record<string, Schema> = {};
        this.out[m.typeName] = { type: "object", ...describe(m), properties }; // placeholder first: messages may recurse
        for (const f of m.fields) properties[f.jsonName] = { ...this.field(f), ...describe(f) };
        const oneofs = m.oneofs.filter((o) => o.fields.length > 1 || !o.fields[0]?.proto.proto3Optional);
        if (oneofs.length > 0) {
          // At most one field of each oneof may be set.
          this.out[m.typeName]!["allOf"] = oneofs.map((o) => ({
            not: { anyOf: o.fields.flatMap((a, i) => o.fields.slice(i + 1).map((b) => ({ required: [a.jsonName, b.jsonName] }))) },
          }));
          for (const o of oneofs) {
            for (const f of o.fields) {
              const p = properties[f.jsonName]!;
              const all = o.fields.map((x) => x.jsonName).join(", ");
              p["description"] =
                `${p["description"] ?? ""}${p["description"] ? "\n\n" : ""}Part of oneof \`${o.name}\`: at most one of ${all} is set.`;
            }
          }
        }
      }
    }
    return ref(m.typeName);
  }

  enumeration(e: DescEnum): Schema {
    if (!(e.typeName in this.out)) {
      const values = e.values.map((v) => {
        const d = text(getComments(v).leading);
        return `- \`${v.name}\`${d ? `: ${d.replace(/\n/g, " ")}` : ""}`;
      });
      const head = describe(e).description;
      this.out[e.typeName] = {
        type: "string",
        enum: e.values.map((v) => v.name),
        description: `${head ? `${head}\n\n` : ""}${values.join("\n")}`,
      };
    }
    return ref(e.typeName);
  }

  field(f: DescField): Schema {
    switch (f.fieldKind) {
      case "scalar":
        return scalarSchema(f.scalar);
      case "enum":
        return this.enumeration(f.enum);
      case "message":
        return this.message(f.message);
      case "list":
        return {
          type: "array",
          items:
            f.listKind === "scalar" ? scalarSchema(f.scalar) : f.listKind === "enum" ? this.enumeration(f.enum) : this.message(f.message),
        };
      case "map": {
        const value =
          f.mapKind === "scalar" ? scalarSchema(f.scalar) : f.mapKind === "enum" ? this.enumeration(f.enum) : this.message(f.message);
        return { type: "object", additionalProperties: value };
      }
    }
  }
}

function errorComponents(schemas: Schemas, details: DescMessage[]): { schemas: Record<string, Schema>; responses: Record<string, Schema> } {
  for (const d of details) schemas.message(d);
  const names = details.map((d) => d.typeName);
  const detail: Schema = {
    type: "object",
    description:
      "One google.rpc error detail: `type` is its message name, `value` its binary protobuf encoding (standard base64, unpadded), `debug` the same message in JSON.",
    required: ["type", "value"],
    properties: {
      type: { type: "string", description: "The detail's fully-qualified message name, e.g. google.rpc.BadRequest." },
      value: { type: "string", contentEncoding: "base64", description: "The detail as binary protobuf, base64." },
      debug: { type: "object", description: "The detail as proto3 JSON." },
    },
    anyOf: [
      ...names.map((n) => ({ properties: { type: { const: n }, debug: ref(n) } })),
      { properties: { type: { not: { enum: names } } } },
    ],
  };
  const error: Schema = {
    type: "object",
    description: "A Connect error.",
    required: ["code"],
    properties: {
      code: { type: "string", enum: ERROR_CODES, description: "The error code, in snake_case." },
      message: { type: "string", description: "A developer-facing description of the error." },
      details: { type: "array", items: ref("connect.ErrorDetail") },
    },
  };
  const endStream: Schema = {
    type: "object",
    description: "The last message of a Connect stream (flags 0x02): the error that ended it, if any, and trailers.",
    properties: {
      error: ref("connect.Error"),
      metadata: { type: "object", additionalProperties: { type: "array", items: { type: "string" } } },
    },
  };
  const responses: Record<string, Schema> = {
    Error: {
      description: "A Connect error, with the HTTP status of its code (see the document's description).",
      content: { "application/json": { schema: ref("connect.Error") } },
    },
  };
  for (const [status, codes] of STATUS_CODES) {
    responses[`Error${status}`] = {
      description: `A Connect error with code ${codes.join(", ")}.`,
      content: {
        "application/json": {
          schema: { allOf: [ref("connect.Error"), { properties: { code: { enum: codes } } }] },
        },
      },
    };
  }
  return { schemas: { "connect.Error": error, "connect.ErrorDetail": detail, "connect.EndStreamMessage": endStream }, responses };
}

function streamingKind(m: DescMethod): "server" | "client" | "bidi" | undefined {
  switch (m.methodKind) {
    case "server_streaming":
      return "server";
    case "client_streaming":
      return "client";
    case "bidi_streaming":
      return "bidi";
    default:
      return undefined;
  }
}

function operation(schemas: Schemas, service: DescService, m: DescMethod): Schema {
  const comments = describe(m).description;
  const summary = comments?.split(/\n\n/)[0]?.replace(/\n/g, " ");
  const streaming = streamingKind(m);
  const parameters = [{ $ref: "#/components/parameters/ConnectProtocolVersion" }, { $ref: "#/components/parameters/ConnectTimeoutMs" }];
  const base = {
    operationId: `${service.name}_${m.name}`,
    tags: [service.typeName],
    ...(summary ? { summary } : {}),
  };
  const input = schemas.message(m.input);
  const output = schemas.message(m.output);
  if (!streaming) {
    const errors: Record<string, Schema> = {};
    for (const [status] of STATUS_CODES) errors[status] = { $ref: `#/components/responses/Error${status}` };
    return {
      ...base,
      ...(comments ? { description: comments } : {}),
      parameters,
      requestBody: { required: true, content: { "application/json": { schema: input } } },
      responses: {
        "200": { description: `The ${m.output.name}.`, content: { "application/json": { schema: output } } },
        ...errors,
      },
    };
  }
  const what =
    streaming === "server"
      ? `Server streaming: one ${m.input.name} in, a stream of ${m.output.name} out.`
      : streaming === "client"
        ? `Client streaming: a stream of ${m.input.name} in, one ${m.output.name} out.`
        : `Bidirectional streaming: ${m.input.name} messages in, ${m.output.name} messages out (HTTP/2 only).`;
  const note = `${what} Not callable as plain JSON: the request and response bodies are Connect enveloped streams (\`application/connect+json\`: per message a flags byte and a 4-byte big-endian length, then the message's JSON), and the response ends with an end-of-stream message (\`connect.EndStreamMessage\`, flags 0x02) carrying the error, if any; an error usually arrives there with HTTP 200. Use a Connect, gRPC or gRPC-Web client.`;
  const envelope = (message: Schema, end: boolean): Schema => ({
    schema: { type: "string", format: "binary" },
    "x-connect-message": message,
    ...(end ? { "x-connect-end-stream": ref("connect.EndStreamMessage") } : {}),
  });
  return {
    ...base,
    description: comments ? `${comments}\n\n${note}` : note,
    "x-connect-streaming": streaming,
    parameters,
    requestBody: { required: true, content: { "application/connect+json": envelope(input, false) } },
    responses: {
      "200": {
        description: `A stream of enveloped ${m.output.name} messages, then the end-of-stream message.`,
        content: { "application/connect+json": envelope(output, true) },
      },
      default: { $ref: "#/components/responses/Error" },
    },
  };
}

/** buildDocument is the whole document for a set of proto files (a CodeGeneratorRequest's). */
function buildDocument(request: CodeGeneratorRequest): Schema {
  const registry = createFileRegistry(create(FileDescriptorSetSchema, { file: request.protoFile }));
  const toGenerate = new Set(request.fileToGenerate);
  const services: DescService[] = [];
  for (const file of registry.files) {
    if (!toGenerate.has(file.proto.name) || !PUBLIC_PACKAGE.test(file.proto.package)) continue;
    services.push(...file.services);
  }
  services.sort((a, b) => a.typeName.localeCompare(b.typeName));
  const schemas = new Schemas();
  const paths: Record<string, Schema> = {};
  for (const s of services) {
    for (const m of s.methods) paths[`/${s.typeName}/${m.name}`] = { post: operation(schemas, s, m) };
  }
  const details = ERROR_DETAILS.map((n) => {
    const d = registry.getMessage(n);
    if (!d) throw new Error(`${n} is not among the proto files`);
    return d;
  });
  const errors = errorComponents(schemas, details);
  const sorted = Object.fromEntries(Object.entries({ ...schemas.out, ...errors.schemas }).sort(([a], [b]) => a.localeCompare(b)));
  return {
    openapi: "3.1.0",
    info: {
      title: "stockroom API (Connect JSON)",
      version: "v1",
      description: INFO_DESCRIPTION,
    },
    tags: services.map((s) => ({ name: s.typeName, ...describe(s) })),
    security: [{ apiKey: [] }],
    paths,
    components: {
      securitySchemes: {
        apiKey: {
          type: "http",
          scheme: "bearer",
          bearerFormat: "srk_<merchant id>_<key id>_<secret>",
          description:
            "The merchant's API key (`npm run merchant:create`), as `Authorization: Bearer <api key>`. A missing or unknown key is `unauthenticated` (401).",
        },
      },
      parameters: {
        ConnectProtocolVersion: {
          name: "Connect-Protocol-Version",
          in: "header",
          required: false,
          description: "The Connect protocol version; 1 if sent.",
          schema: { type: "string", enum: ["1"] },
        },
        ConnectTimeoutMs: {
          name: "Connect-Timeout-Ms",
          in: "header",
          required: false,
          description: "The call's deadline in milliseconds; past it the call fails with deadline_exceeded (504).",
          schema: { type: "string", pattern: "^[0-9]{1,10}$" },
        },
      },
      responses: errors.responses,
      schemas: sorted,
    },
  };
}

runNodeJs({
  name: "protoc-gen-openapi",
  version: "v1",
  run(request) {
    const content = `${JSON.stringify(buildDocument(request), null, 2)}\n`;
    return create(CodeGeneratorResponseSchema, {
      supportedFeatures: BigInt(CodeGeneratorResponse_Feature.PROTO3_OPTIONAL),
      file: [{ name: OUTPUT, content }],
    });
  },
});
