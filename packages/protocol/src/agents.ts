import { z } from 'zod';

const opt = <T extends z.ZodType>(t: T) => t.nullable().optional();

/**
 * MCP Mesh 3.7's rule for new agent ids, names and namespaces: lowercase
 * alphanumerics and hyphens, starting and ending alphanumeric.
 */
export const agentIdentifierPattern = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;
/** Longest agent name or namespace (3.7); agent ids may have 253 characters. */
export const maxAgentNameLength = 63;

/** A dependency of a tool (MCP Mesh `MeshToolDependencyRegistration`). */
export const toolDependency = z.object({
  capability: opt(z.string()),
  // A plain tag is required, `+t` preferred, `-t` excluded; an inner array is an OR group.
  tags: opt(z.array(z.union([z.string(), z.array(z.string())]))),
  version: opt(z.string()),
  namespace: opt(z.string()),
  required: opt(z.boolean()),
});
export type ToolDependency = z.infer<typeof toolDependency>;

/** One tool of an agent (MCP Mesh `MeshToolRegistration`; unknown keys are kept). */
export const toolRegistration = z.looseObject({
  function_name: opt(z.string()),
  capability: opt(z.string()),
  version: opt(z.string()),
  tags: opt(z.array(z.string())),
  description: opt(z.string()),
  dependencies: opt(z.array(toolDependency)),
  kwargs: opt(z.record(z.string(), z.unknown())),
});
export type ToolRegistration = z.infer<typeof toolRegistration>;

/** `POST /heartbeat` body (MCP Mesh `MeshAgentRegistration`). */
export const agentRegistration = z.object({
  agent_id: opt(z.string()),
  name: opt(z.string()),
  agent_type: opt(z.string()),
  runtime: opt(z.string()),
  version: opt(z.string()),
  description: opt(z.string()),
  http_host: opt(z.string()),
  http_port: opt(z.number().int()),
  namespace: opt(z.string()),
  tools: opt(z.array(toolRegistration)),
});
export type AgentRegistration = z.infer<typeof agentRegistration>;

/** One element of `dependencies_resolved[function_name]`, positional with the declared dependencies. */
export interface ResolvedDependency {
  agent_id: string;
  function_name: string;
  endpoint: string;
  capability: string;
  status: 'available' | 'unresolved';
  kwargs?: Record<string, unknown>;
}

export interface RegistrationResponse {
  agent_id: string;
  status: 'success' | 'error';
  message: string;
  timestamp: string;
  dependencies_resolved?: Record<string, ResolvedDependency[]>;
  llm_tools?: Record<string, unknown[]>;
}

/** `GET /agents` element, the shape `meshctl` 3.7.1 decodes. */
export interface AgentInfo {
  id: string;
  name: string;
  agent_type: string;
  runtime: string;
  status: 'healthy' | 'unhealthy';
  endpoint: string;
  version: string;
  description: string;
  a2a_producer: boolean;
  a2a_consumer: boolean;
  created_at: string;
  last_seen: string;
  total_dependencies: number;
  dependencies_resolved: number;
  capabilities:
    | {
        name: string;
        function_name: string;
        version: string;
        description: string;
        tags: string[];
        available: boolean;
        unavailable_reason?: string;
        task?: boolean;
      }[]
    | null;
  dependency_resolutions:
    | {
        function_name: string;
        capability: string;
        tags?: string[];
        mcp_tool?: string;
        provider_agent_id?: string;
        endpoint?: string;
        status: 'available' | 'unresolved' | 'unavailable';
      }[]
    | null;
  llm_tool_resolutions: null;
  llm_provider_resolutions: null;
  /** Ours: the SDK version the agent reported (X-Mesh-Sdk-Version), null for older SDKs. */
  sdk_version: string | null;
}

export interface AgentsListResponse {
  agents: AgentInfo[] | null;
  count: number;
  timestamp: string;
  /** Ours: present (true) when more agents exist than one answer lists (`limits.maxAgentsListed`). */
  truncated?: boolean;
}
