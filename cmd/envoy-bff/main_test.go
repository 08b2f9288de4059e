package main

import (
	"strings"
	"testing"
)

func TestCommands(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args     []string
		wantCode int
		wantOut  string
	}{
		{[]string{"--help"}, 0, "Commands:"},
		{[]string{"help", "serve"}, 0, "Usage: envoy-bff serve"},
		{[]string{"serve", "--help"}, 0, "-config"},
		{[]string{"version"}, 0, "envoy-bff "},
		{[]string{"version", "--help"}, 0, "Usage: envoy-bff version"},
		{[]string{"sessions", "--help"}, 0, "envoy-bff sessions list"},
		{[]string{"sessions", "list", "--help"}, 0, "-sub"},
		{[]string{"help", "sessions"}, 0, "envoy-bff sessions revoke"},
		{[]string{"sessions"}, 2, "Usage:"},
		{[]string{"sessions", "list"}, 2, "give --sub"},
		{[]string{"sessions", "revoke", "--sub", "a", "--ref", "b"}, 2, "exactly one of --sub and --ref"},
		{[]string{"sessions", "list", "--sub", "a", "--admin", "http://127.0.0.1:1"}, 1, "call the admin listener"},
		{[]string{}, 2, "Commands:"},
		{[]string{"frobnicate"}, 2, "unknown command"},
		{[]string{"serve", "--no-such-flag"}, 2, "flag provided but not defined"},
		{[]string{"serve", "--config", "testdata/valid.yaml", "--check"}, 0, "configuration OK"},
		{[]string{"serve", "--config", "testdata/many-bad.yaml", "--check"}, 1, "session.backend"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, "_"), func(t *testing.T) {
			t.Parallel()
			var out, errOut strings.Builder
			code := run(t.Context(), tc.args, &out, &errOut, env(nil))
			if code != tc.wantCode {
				t.Errorf("code = %d, want %d\nstdout: %s\nstderr: %s", code, tc.wantCode, out.String(), errOut.String())
			}
			if all := out.String() + errOut.String(); !strings.Contains(all, tc.wantOut) {
				t.Errorf("output lacks %q:\n%s", tc.wantOut, all)
			}
		})
	}
}
