/**
 * Test and benchmark support: an OTLP/HTTP trace receiver (what Jaeger's
 * port 4318 is) that decodes the protobuf requests the services' exporters
 * send, so a test can check the spans of real processes. Point a process at
 * it with OTEL_EXPORTER_OTLP_ENDPOINT=<url>.
 */
import http from "node:http";
import type net from "node:net";
import { gunzipSync } from "node:zlib";
import { BinaryReader, type WireType } from "@bufbuild/protobuf/wire";

export type AttributeValue = string | number | boolean;

export interface ReceivedSpan {
  /** Hex, as Jaeger shows them. */
  traceId: string;
  spanId: string;
  /** "" for a root span. */
  parentSpanId: string;
  name: string;
  /** OTLP SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind: number;
  startNs: bigint;
  endNs: bigint;
  attributes: Record<string, AttributeValue>;
  links: { traceId: string; spanId: string }[];
  /** OTLP status code: 0 unset, 1 ok, 2 error. */
  statusCode: number;
  /** The process's resource: service.name, service.instance.id, process.pid, host.name, … */
  resource: Record<string, AttributeValue>;
}

export interface OtlpReceiver {
  /** The base URL for OTEL_EXPORTER_OTLP_ENDPOINT (the exporter appends /v1/traces). */
  url: string;
  /** Every span received so far (when keep is on). */
  spans: ReceivedSpan[];
  /** Export requests and their bytes received so far. */
  stats(): { requests: number; bytes: number };
  close(): Promise<void>;
}

/** startOtlpReceiver listens on a free loopback port; keep: false only counts (benchmarks). */
export async function startOtlpReceiver(options: { keep?: boolean } = {}): Promise<OtlpReceiver> {
  const keep = options.keep ?? true;
  const spans: ReceivedSpan[] = [];
  let requests = 0;
  let bytes = 0;
  const server = http.createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on("data", (b: Buffer) => parts.push(b));
    req.on("end", () => {
      let body = Buffer.concat(parts);
      requests++;
      bytes += body.length;
      try {
        if (req.headers["content-encoding"] === "gzip") body = gunzipSync(body);
        if (keep && req.url === "/v1/traces") spans.push(...decodeTraces(body));
        res.writeHead(200, { "content-type": "application/x-protobuf" }).end();
      } catch (error) {
        res.writeHead(400, { "content-type": "text/plain" }).end(String(error));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    spans,
    stats: () => ({ requests, bytes }),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** decodeTraces reads an ExportTraceServiceRequest (opentelemetry/proto/collector/trace/v1). */
export function decodeTraces(body: Uint8Array): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  fields(body, (no, r, wt) => {
    if (no !== 1) return r.skip(wt); // resource_spans
    let resource: Record<string, AttributeValue> = {};
    const scopeSpans: Uint8Array[] = [];
    fields(r.bytes(), (no2, r2, wt2) => {
      if (no2 === 1) resource = attributesOf(r2.bytes(), 1);
      else if (no2 === 2) scopeSpans.push(r2.bytes());
      else r2.skip(wt2);
    });
    for (const ss of scopeSpans) {
      fields(ss, (no3, r3, wt3) => {
        if (no3 === 2) out.push(decodeSpan(r3.bytes(), resource));
        else r3.skip(wt3);
      });
    }
  });
  return out;
}

function decodeSpan(bytes: Uint8Array, resource: Record<string, AttributeValue>): ReceivedSpan {
  const span: ReceivedSpan = {
    traceId: "",
    spanId: "",
    parentSpanId: "",
    name: "",
    kind: 0,
    startNs: 0n,
    endNs: 0n,
    attributes: {},
    links: [],
    statusCode: 0,
    resource,
  };
  fields(bytes, (no, r, wt) => {
    switch (no) {
      case 1:
        span.traceId = hex(r.bytes());
        break;
      case 2:
        span.spanId = hex(r.bytes());
        break;
      case 4:
        span.parentSpanId = hex(r.bytes());
        break;
      case 5:
        span.name = r.string();
        break;
      case 6:
        span.kind = r.int32();
        break;
      case 7:
        span.startNs = BigInt(r.fixed64());
        break;
      case 8:
        span.endNs = BigInt(r.fixed64());
        break;
      case 9:
        Object.assign(span.attributes, keyValue(r.bytes()));
        break;
      case 13: {
        const link = { traceId: "", spanId: "" };
        fields(r.bytes(), (ln, lr, lwt) => {
          if (ln === 1) link.traceId = hex(lr.bytes());
          else if (ln === 2) link.spanId = hex(lr.bytes());
          else lr.skip(lwt);
        });
        span.links.push(link);
        break;
      }
      case 15:
        fields(r.bytes(), (sn, sr, swt) => {
          if (sn === 3) span.statusCode = sr.int32();
          else sr.skip(swt);
        });
        break;
      default:
        r.skip(wt);
    }
  });
  return span;
}

/** attributesOf reads the repeated KeyValue field `no` of a message. */
function attributesOf(bytes: Uint8Array, no: number): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {};
  fields(bytes, (n, r, wt) => (n === no ? Object.assign(out, keyValue(r.bytes())) : r.skip(wt)));
  return out;
}

function keyValue(bytes: Uint8Array): Record<string, AttributeValue> {
  let key = "";
  let value: AttributeValue = "";
  fields(bytes, (no, r, wt) => {
    if (no === 1) key = r.string();
    else if (no === 2) {
      fields(r.bytes(), (vn, vr, vwt) => {
        if (vn === 1) value = vr.string();
        else if (vn === 2) value = vr.bool();
        else if (vn === 3) value = Number(vr.int64());
        else if (vn === 4) value = vr.double();
        else vr.skip(vwt);
      });
    } else r.skip(wt);
  });
  return { [key]: value };
}

/** fields calls each for every field of a message, which must read or skip it. */
function fields(bytes: Uint8Array, each: (fieldNo: number, r: BinaryReader, wireType: WireType) => unknown): void {
  const r = new BinaryReader(bytes);
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    each(no, r, wt);
  }
}

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString("hex");
}
