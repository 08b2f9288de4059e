// Package envoy holds the Envoy configuration for the demo and the tests
// (envoy.yaml.tmpl) and renders it with the ports of a running set of
// processes. Deployments copy the template and fill in their own addresses.
package envoy
