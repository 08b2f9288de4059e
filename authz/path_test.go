package authz

import (
	"strings"
	"testing"
)

func TestSplitTarget(t *testing.T) {
	t.Parallel()
	cases := []struct {
		target, path, query string
		bad                 bool
	}{
		{target: "/", path: "/"},
		{target: "/api/orders", path: "/api/orders"},
		{target: "/api/orders/", path: "/api/orders/"},
		{target: "/api/orders?x=1&y=/z", path: "/api/orders", query: "x=1&y=/z"},
		{target: "/public#/../private", path: "/public"},
		{target: "/a?b#c", path: "/a", query: "b"},
		{target: "/private?r=/public", path: "/private", query: "r=/public"},
		{target: "/api/../login", path: "/login"},
		{target: "/api/%2e%2e/x", path: "/x"},
		{target: "/api/%2E%2E/x", path: "/x"},
		{target: "/api/.%2e/x", path: "/x"},
		{target: "/a/./b/.", path: "/a/b/"},
		{target: "/a/b/..", path: "/a/"},
		{target: "/a/b/%2e", path: "/a/b/"},
		{target: "//a///b", path: "/a/b"},
		{target: "/%61%70%69/x", path: "/api/x"},
		{target: "/a%20b/%c3%a9", path: "/a%20b/%C3%A9"},
		{target: "/a%25252F", path: "/a%25252F"},
		{target: "/.../x", path: "/.../x"},
		{target: "/..a/x", path: "/..a/x"},
		{target: "/a/..", path: "/"},
		{target: "/%7euser", path: "/~user"},
		{target: "/api%2Fadmin", bad: true},
		{target: "/api%2fadmin", bad: true},
		{target: "/api%5Cadmin", bad: true},
		{target: "/api\\admin", bad: true},
		{target: "/..", bad: true},
		{target: "/../x", bad: true},
		{target: "/a/../../x", bad: true},
		{target: "/%2e%2e/x", bad: true},
		{target: "/a%00", bad: true},
		{target: "/a%0d%0ab", bad: true},
		{target: "/a%", bad: true},
		{target: "/a%zz", bad: true},
		{target: "/a%2", bad: true},
		{target: "/a b", bad: true},
		{target: "/a\x00", bad: true},
		{target: "/a\tb", bad: true},
		{target: "/a?x=\r\n", bad: true},
		{target: "/é", bad: true},
		{target: "", bad: true},
		{target: "*", bad: true},
		{target: "api/x", bad: true},
		{target: "https://evil.example/api", bad: true},
	}
	for _, tc := range cases {
		path, query, err := splitTarget(tc.target)
		if tc.bad {
			if err == nil {
				t.Errorf("%q → %q, want invalid_path", tc.target, path)
			}
			continue
		}
		if err != nil || path != tc.path || query != tc.query {
			t.Errorf("%q → %q %q %v, want %q %q", tc.target, path, query, err, tc.path, tc.query)
		}
	}
}

func TestNormalisePathCleanDoesNotAllocate(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := normalisePath("/api/v1/orders/42"); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations for a clean path", allocs)
	}
}

// FuzzNormalisePath: normalisation is idempotent and its output never holds
// a dot segment, an empty segment, an encoded slash or a backslash.
func FuzzNormalisePath(f *testing.F) {
	for _, s := range []string{"/", "/api/../x", "/a/%2e%2e/b", "//a//b/", "/%2F", "/a%20b", "/./.", "/a/b/../..", "/%c3%a9", "/%7E"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		n, err := normalisePath(p)
		if err != nil {
			return
		}
		again, err := normalisePath(n)
		if err != nil || again != n {
			t.Fatalf("%q → %q → %q %v: not idempotent", p, n, again, err)
		}
		if !strings.HasPrefix(n, "/") || strings.Contains(n, "//") || strings.Contains(n, "\\") ||
			strings.Contains(strings.ToUpper(n), "%2F") || strings.Contains(n+"/", "/../") || strings.Contains(n+"/", "/./") {
			t.Fatalf("%q → %q", p, n)
		}
	})
}
