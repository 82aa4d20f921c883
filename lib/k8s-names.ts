const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/**
 * `NAMESPACE/NAME` of a namespaced Kubernetes object, checked as the API server would (namespace: a
 * DNS label; name: a DNS subdomain). Throws an Error whose message says what is wrong.
 */
export function parseNamespacedName(text: string): { namespace: string; name: string } {
  const [namespace, name, ...rest] = text.split('/');
  if (rest.length > 0 || namespace === undefined || name === undefined) throw new Error(`"${text}" is not NAMESPACE/NAME`);
  if (!DNS_LABEL.test(namespace)) throw new Error(`"${namespace}" is not a Kubernetes namespace name (lower-case letters, digits and "-", at most 63)`);
  if (!DNS_SUBDOMAIN.test(name)) throw new Error(`"${name}" is not a Kubernetes object name (lower-case letters, digits, "-" and ".", at most 253)`);
  return { namespace, name };
}
