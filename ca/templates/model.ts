import type { Role } from '../admin-auth/model.js';

/** A workload identity template: every caller of the parent with these selectors gets the rendered ID. */
export interface IdentityTemplate {
  readonly id: string;
  readonly trustDomain: string;
  readonly parentId: string;
  /** Sorted, deduplicated "type:value" strings; empty: every caller of the parent. */
  readonly selectors: readonly string[];
  readonly spiffeIdTemplate: string;
  readonly dnsTemplates: readonly string[];
  readonly x509SvidTtlSeconds: number | null;
  readonly jwtSvidTtlSeconds: number | null;
  readonly hint: string | null;
  readonly admin: boolean;
  readonly adminRole: Role | null;
  readonly federatesWith: readonly string[];
  /** From the entries' sequence: one sync cursor covers entries and templates. */
  readonly revision: number;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

export type NewTemplate = Omit<IdentityTemplate, 'revision' | 'createdAt' | 'updatedAt'>;

export interface TemplateFilter {
  readonly trustDomain?: string | undefined;
  readonly trustDomains?: readonly string[] | undefined;
  readonly parentId?: string | undefined;
}
