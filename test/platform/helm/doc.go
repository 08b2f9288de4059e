// Package helm checks the envoy-bff Helm chart (envoy/helm/envoy-bff) the way
// Helm and the cluster would: it renders the chart with Helm's own Go library
// (helm.sh/helm/v4) for the defaults and several value sets, lints it with
// Helm's lint package, decodes every rendered object strictly into its
// k8s.io/api (or prometheus-operator) type, so a misspelled field fails,
// checks what ties the objects together (selectors, ports, probes, Secret
// mounts without subPath), and runs the rendered envoy-bff config through
// `envoy-bff serve --check` ($ENVOY_BFF_BIN).
package helm
