package main

import (
	"strings"
	"testing"
)

// TestSpliceReadme: --readme replaces only what is between the markers,
// and refuses a README without them rather than appending somewhere.
func TestSpliceReadme(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want, err string
	}{
		{"replaces", "a\n" + readmeStart + "\nold\n" + readmeEnd + "\nb\n", "a\n" + readmeStart + "\nNEW\n" + readmeEnd + "\nb\n", ""},
		{"empty_block", readmeStart + readmeEnd, readmeStart + "\nNEW\n" + readmeEnd, ""},
		{"no_start", "a\n" + readmeEnd, "", "no " + readmeStart},
		{"no_end", readmeStart + "\nold\n", "", "no " + readmeEnd},
		{"end_before_start", readmeEnd + "\n" + readmeStart, "", "no " + readmeEnd},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := spliceReadme(tc.in, "NEW\n")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
