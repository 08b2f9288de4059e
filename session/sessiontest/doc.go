// Package sessiontest holds what tests of session stores share: the one
// contract suite every Store must pass, a settable clock, and a real
// redis-server for tests.
package sessiontest
