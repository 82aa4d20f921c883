import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { clearField, create, createFileRegistry, fromBinary, fromJson, type FileRegistry, type JsonValue } from '@bufbuild/protobuf';
import { DescriptorProtoSchema, FieldDescriptorProto_Label, FieldDescriptorProtoSchema, FileDescriptorProtoSchema, FileDescriptorSetSchema, type FileDescriptorProto } from '@bufbuild/protobuf/wkt';
import * as protoLoader from '@grpc/proto-loader';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { packageRoot } from '../../lib/paths.js';
import { ENVOY_PROTO_DIRS } from '../support/envoy-sds.js';

/**
 * The Envoy bootstrap in deploy/envoy parses as an envoy.config.bootstrap.v3.Bootstrap under Envoy's
 * official protos (from @grpc/grpc-js-xds, loaded by proto-loader; strict proto3 JSON: an unknown
 * field, a misspelt enum, an Any whose @type names no message all fail), and its SDS configs point
 * at the agent's socket with the names the agent serves. No envoy binary here: this is as far as a
 * test can go without one.
 */

const ROOT = packageRoot();
const SDS_NAMES = new Set(['default', 'ROOTCA', 'ALL']);

function officialRegistry(): FileRegistry {
  const definition = protoLoader.loadSync(
    [
      'envoy/config/bootstrap/v3/bootstrap.proto',
      'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
      'envoy/extensions/filters/http/router/v3/router.proto',
      'envoy/extensions/transport_sockets/tls/v3/tls.proto',
      'envoy/extensions/transport_sockets/tls/v3/tls_spiffe_validator_config.proto',
      'envoy/extensions/upstreams/http/v3/http_protocol_options.proto',
    ],
    { keepCase: true, includeDirs: ENVOY_PROTO_DIRS },
  );
  const files = new Map<string, FileDescriptorProto>();
  for (const entry of Object.values(definition)) {
    for (const bytes of (entry as { fileDescriptorProtos?: Buffer[] }).fileDescriptorProtos ?? []) {
      const file = fromBinary(FileDescriptorProtoSchema, bytes);
      if (!files.has(file.name)) files.set(file.name, file);
    }
  }
  qualifyTypeNames([...files.values()]);
  return createFileRegistry(create(FileDescriptorSetSchema, { file: [asOneFile([...files.values()])] }));
}

type Msg = FileDescriptorProto['messageType'][number];

/**
 * proto-loader (protobufjs) writes one descriptor per package, without imports, and packages refer
 * to each other both ways, which no registry accepts as files. So the packages become nested
 * container messages of one file without a package: "envoy.config.core.v3.Node" keeps its full
 * name, and every type can see every other.
 */
function asOneFile(files: FileDescriptorProto[]): FileDescriptorProto {
  const root: Msg[] = [];
  const rootEnums: FileDescriptorProto['enumType'][number][] = [];
  for (const f of files) {
    let level = root;
    let enums = rootEnums;
    for (const part of f.package ? f.package.split('.') : []) {
      let container = level.find((m) => m.name === part);
      if (!container) {
        container = create(DescriptorProtoSchema, { name: part });
        level.push(container);
      }
      level = container.nestedType;
      enums = container.enumType;
    }
    for (const m of f.messageType) level.push(proto3(m));
    enums.push(...f.enumType);
  }
  return create(FileDescriptorProtoSchema, { name: 'envoy-official.proto', syntax: 'proto3', messageType: root, enumType: rootEnums });
}

/** proto2 leftovers (validate.proto) in a proto3 file: no required labels, no defaults, no extension ranges. */
function proto3(m: Msg): Msg {
  for (const field of m.field) {
    if (field.label === FieldDescriptorProto_Label.REQUIRED) field.label = FieldDescriptorProto_Label.OPTIONAL;
    clearField(field, FieldDescriptorProtoSchema.field.defaultValue);
  }
  m.extensionRange = [];
  m.extension = [];
  m.nestedType.forEach(proto3);
  return m;
}

/**
 * proto-loader writes field type names relative to their scope ("core.v3.Node"); descriptors want
 * them fully qualified (".envoy.config.core.v3.Node"). Resolved with protobuf's scoping rule: the
 * innermost enclosing scope that has the name wins.
 */
function qualifyTypeNames(files: FileDescriptorProto[]): void {
  const known = new Set<string>();
  const collect = (scope: string, messages: readonly Msg[], enums: readonly { name: string }[]): void => {
    for (const e of enums) known.add(`${scope}.${e.name}`);
    for (const m of messages) {
      known.add(`${scope}.${m.name}`);
      collect(`${scope}.${m.name}`, m.nestedType, m.enumType);
    }
  };
  for (const f of files) collect(f.package ? `.${f.package}` : '', f.messageType, f.enumType);
  const resolve = (scope: string, name: string): string => {
    if (name.startsWith('.')) return name;
    for (let s = scope; ; s = s.slice(0, Math.max(0, s.lastIndexOf('.')))) {
      if (known.has(`${s}.${name}`)) return `${s}.${name}`;
      if (s === '') throw new Error(`cannot resolve ${name} from ${scope}`);
    }
  };
  const visit = (scope: string, messages: readonly Msg[]): void => {
    for (const m of messages) {
      const inner = `${scope}.${m.name}`;
      for (const field of m.field) if (field.typeName) field.typeName = resolve(inner, field.typeName);
      visit(inner, m.nestedType);
    }
  };
  for (const f of files) visit(f.package ? `.${f.package}` : '', f.messageType);
}

/** Every object in a JSON tree that has `key`, with that key's value. */
function findAll(tree: unknown, key: string, out: unknown[] = []): unknown[] {
  if (Array.isArray(tree)) tree.forEach((t) => findAll(t, key, out));
  else if (tree && typeof tree === 'object') {
    for (const [k, v] of Object.entries(tree)) {
      if (k === key) out.push(v);
      findAll(v, key, out);
    }
  }
  return out;
}

describe('deploy/envoy/envoy.yaml: an Envoy sidecar bootstrap using the agent over SDS', () => {
  const yaml = parse(readFileSync(join(ROOT, 'deploy/envoy/envoy.yaml'), 'utf8')) as JsonValue;

  it('is a valid envoy.config.bootstrap.v3.Bootstrap under the official protos, typed configs included', { timeout: 120_000 }, () => {
    const registry = officialRegistry();
    const bootstrap = registry.getMessage('envoy.config.bootstrap.v3.Bootstrap')!;
    expect(bootstrap).toBeDefined();
    expect(() => fromJson(bootstrap, yaml, { registry })).not.toThrow();
    // and the check has teeth: a misspelt field or type is refused
    const typo = JSON.parse(JSON.stringify(yaml).replace('"tls_certificate_sds_secret_configs"', '"tls_certificate_sds_secret_config"')) as JsonValue;
    expect(() => fromJson(bootstrap, typo, { registry })).toThrow();
    const badType = JSON.parse(JSON.stringify(yaml).replace('tls.v3.DownstreamTlsContext', 'tls.v3.DownstreamTLSContext')) as JsonValue;
    expect(() => fromJson(bootstrap, badType, { registry })).toThrow();
    // every @type names a message of the official protos
    for (const type of findAll(yaml, '@type')) expect(registry.getMessage(String(type).replace(/^type\.googleapis\.com\//, '')), String(type)).toBeDefined();
  });

  it('fetches default, ROOTCA and ALL over gRPC v3 from the spire_agent cluster, an HTTP/2 cluster on the agent\'s Unix socket', () => {
    const sds = [...findAll(yaml, 'tls_certificate_sds_secret_configs').flat(), ...findAll(yaml, 'validation_context_sds_secret_config')] as {
      name: string;
      sds_config: { resource_api_version: string; api_config_source: { api_type: string; transport_api_version: string; grpc_services: { envoy_grpc: { cluster_name: string } }[] } };
    }[];
    expect(new Set(sds.map((s) => s.name))).toEqual(SDS_NAMES);
    for (const s of sds) {
      expect(s.sds_config.resource_api_version).toBe('V3');
      expect(s.sds_config.api_config_source.api_type).toBe('GRPC');
      expect(s.sds_config.api_config_source.transport_api_version).toBe('V3');
      expect(s.sds_config.api_config_source.grpc_services.map((g) => g.envoy_grpc.cluster_name)).toEqual(['spire_agent']);
    }
    const clusters = (yaml as { static_resources: { clusters: Record<string, unknown>[] } }).static_resources.clusters;
    const agent = clusters.find((c) => c.name === 'spire_agent')!;
    expect(findAll(agent, 'pipe')).toEqual([{ path: '/run/cairn/agent.sock' }]);
    expect(findAll(agent, 'http2_protocol_options')).toEqual([{}]);
    // the systemd unit serves the socket the bootstrap names
    expect(readFileSync(join(ROOT, 'deploy/systemd/cairn-agent.service'), 'utf8')).toContain('--socket /run/cairn/agent.sock');
  });
});
