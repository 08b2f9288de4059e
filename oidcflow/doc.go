// Package oidcflow is everything that talks to the OpenID provider: the
// browser endpoints (login, callback, user, logout) and token refresh.
package oidcflow
