// Package kubernetes holds flagwarden's Kubernetes manifests (a Kustomize base) and the
// tests that keep them deployable: every manifest decodes as a valid object of its kind,
// the references between them resolve, the ConfigMap's configuration passes
// `flagwarden check-config` with the environment the Deployment provides, and the
// probes point at paths the server really serves. The Dockerfile is checked here too.
package kubernetes
