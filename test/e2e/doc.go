// Package e2e is the end-to-end suite: real Keycloak (imported from
// realm.json; frontends-realm.json and partner-realm.json for the
// multi-frontend walk; tokens-realm.json for token exchange and step-up),
// headless Chromium driven through the DevTools protocol, real Envoy and
// Redis, and two or three envoy-bff replicas. It needs what
// `make bootstrap` installs and fails, never skips, without it.
package e2e
