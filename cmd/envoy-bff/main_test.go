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
