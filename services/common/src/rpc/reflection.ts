import { createFileRegistry, toBinary, type DescFile, type DescService, type FileRegistry } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import * as v1 from "@stockroom/sdk/gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "@stockroom/sdk/gen/grpc/reflection/v1alpha/reflection_pb.js";

type Request = v1.ServerReflectionRequest;

/**
 * registerReflection serves grpc.reflection.v1 and v1alpha from the generated
 * descriptors, so grpcurl and `buf curl` work without local protos.
 */
export function registerReflection(router: ConnectRouter, services: DescService[]): void {
  const all = new Map<string, DescFile>();
  const collect = (f: DescFile) => {
    if (all.has(`${f.name}.proto`)) return;
    all.set(`${f.name}.proto`, f);
    f.dependencies.forEach(collect);
  };
  for (const s of services) collect(s.file);
  const registry = createFileRegistry(
    ...[...new Set(services.map((s) => s.file))].map((f) => createFileRegistry(f.proto, (name) => all.get(name))),
  );
  const names = services.map((s) => s.typeName);
  const answer = (req: Request) => respond(registry, names, req);
  // v1alpha is wire-identical to v1, so one implementation serves both.
  for (const service of [v1.ServerReflection, v1alpha.ServerReflection as unknown as typeof v1.ServerReflection]) {
    router.service(service, {
      async *serverReflectionInfo(requests) {
        for await (const req of requests) {
          yield { validHost: req.host, originalRequest: req, messageResponse: answer(req) };
        }
      },
    });
  }
}

function respond(registry: FileRegistry, services: string[], req: Request) {
  const r = req.messageRequest;
  switch (r.case) {
    case "listServices":
      return {
        case: "listServicesResponse" as const,
        value: { service: services.map((name) => ({ name })) },
      };
    case "fileByFilename": {
      const file = registry.getFile(r.value);
      return file ? files(file) : notFound(`file "${r.value}" not found`);
    }
    case "fileContainingSymbol": {
      const file = findSymbolFile(registry, r.value);
      return file ? files(file) : notFound(`symbol "${r.value}" not found`);
    }
    case "fileContainingExtension":
      return notFound("no extensions are registered");
    case "allExtensionNumbersOfType":
      return registry.getMessage(r.value)
        ? { case: "allExtensionNumbersResponse" as const, value: { baseTypeName: r.value, extensionNumber: [] } }
        : notFound(`type "${r.value}" not found`);
    default:
      return { case: "errorResponse" as const, value: { errorCode: 3, errorMessage: "unsupported request" } };
  }
}

function notFound(message: string) {
  return { case: "errorResponse" as const, value: { errorCode: 5, errorMessage: message } };
}

/** findSymbolFile resolves a fully-qualified message, enum, service or method name. */
function findSymbolFile(registry: FileRegistry, symbol: string): DescFile | undefined {
  const desc = registry.get(symbol);
  if (desc) return desc.file;
  const dot = symbol.lastIndexOf(".");
  if (dot < 0) return undefined;
  const parent = registry.get(symbol.slice(0, dot));
  if (parent?.kind === "service" && parent.methods.some((m) => m.name === symbol.slice(dot + 1))) return parent.file;
  if (parent?.kind === "message" && parent.fields.some((f) => f.name === symbol.slice(dot + 1))) return parent.file;
  return undefined;
}

/** files answers with the file and every file it imports, transitively. */
function files(root: DescFile) {
  const seen = new Map<string, DescFile>();
  const visit = (f: DescFile) => {
    if (seen.has(f.proto.name)) return;
    seen.set(f.proto.name, f);
    f.dependencies.forEach(visit);
  };
  visit(root);
  return {
    case: "fileDescriptorResponse" as const,
    value: { fileDescriptorProto: [...seen.values()].map((f) => toBinary(FileDescriptorProtoSchema, f.proto)) },
  };
}
